#![no_main]
//! See `wxauth::fuzzing::parse_if_match`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::fuzzing::parse_if_match(data));

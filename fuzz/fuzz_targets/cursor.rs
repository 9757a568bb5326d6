#![no_main]
//! See `wxauth::fuzzing::decode_cursor`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::fuzzing::decode_cursor(data));

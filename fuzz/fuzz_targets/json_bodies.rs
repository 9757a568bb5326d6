#![no_main]
//! See `wxauth::fuzzing::parse_request_bodies`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::fuzzing::parse_request_bodies(data));

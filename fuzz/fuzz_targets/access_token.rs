#![no_main]
//! See `wxauth::fuzzing::verify_access_token`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::fuzzing::verify_access_token(data));

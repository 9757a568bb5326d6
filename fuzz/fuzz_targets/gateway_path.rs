#![no_main]
//! See `wxauth::fuzzing::gateway_path`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::fuzzing::gateway_path(data));

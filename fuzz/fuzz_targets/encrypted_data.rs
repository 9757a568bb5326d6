#![no_main]
//! See `wxauth::fuzzing::decrypt_encrypted_data`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::fuzzing::decrypt_encrypted_data(data));

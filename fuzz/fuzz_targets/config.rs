#![no_main]

libfuzzer_sys::fuzz_target!(|data: &str| cloakroom::fuzzing::config(data));

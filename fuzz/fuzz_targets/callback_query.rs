#![no_main]

libfuzzer_sys::fuzz_target!(|data: &str| cloakroom::fuzzing::callback_query(data));

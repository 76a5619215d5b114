#![no_main]
// See FUZZING.md; the harness (and its invariants) is meshwall_fuzz::validate::json_body.
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwall_fuzz::validate::json_body(data));

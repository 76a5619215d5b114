#![no_main]
// See FUZZING.md; the harness (and its invariants) is meshwall_fuzz::canon::request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwall_fuzz::canon::request(data));

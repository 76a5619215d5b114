#![no_main]
// See FUZZING.md; the harness (and its invariants) is meshwall_fuzz::rls::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwall_fuzz::rls::config(data));

#![no_main]
// See FUZZING.md; the harness (and its invariants) is meshwall_fuzz::config::policy_config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwall_fuzz::config::policy_config(data));

#![no_main]
// See FUZZING.md; the harness (and its invariants) is meshwall_fuzz::ratelimit::table.
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwall_fuzz::ratelimit::table(data));

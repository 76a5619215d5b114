#![no_main]
// See FUZZING.md; the harness (and its invariants) is meshwall_fuzz::ratelimit::rls_messages.
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwall_fuzz::ratelimit::rls_messages(data));

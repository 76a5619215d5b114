//! Comparing secrets (API key digests, the last token hashed) without telling where they
//! differ.

/// Whether `a` and `b` are equal, in time that depends on their lengths only.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_for_the_same_bytes() {
        let a = [0x5au8; 32];
        assert!(ct_eq(&a, &a));
        for i in [0, 7, 8, 31] {
            let mut b = a;
            b[i] ^= 1;
            assert!(!ct_eq(&a, &b), "byte {i}");
        }
        assert!(ct_eq(b"", b""));
        assert!(!ct_eq(b"abc", b"ab"), "a prefix is not equal");
        assert!(!ct_eq(b"ab", b"abc"));
    }
}

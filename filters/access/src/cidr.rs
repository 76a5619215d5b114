//! CIDR blocks as they are configured: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one
//! address: `/32` or `/128`). Parsing is strict, so that an entry means one thing:
//!
//! - the address is what Rust's `IpAddr` parser accepts: four decimal IPv4 octets without
//!   leading zeros (`010.0.0.1` is octal 8 to `inet_aton`, so it is refused), IPv6 in RFC 4291
//!   text form; no zone (`%eth0`), no brackets, no port, no surrounding spaces;
//! - the prefix length is decimal, at most 32 (IPv4) or 128 (IPv6), without sign or leading
//!   zeros;
//! - **host bits must be zero**: `10.0.0.1/8` is refused rather than widened to `10.0.0.0/8`
//!   (a typo for `10.0.0.1/32` must not open a whole /8);
//! - an IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) is the IPv4 block it maps
//!   (`10.0.0.0/8`), as client addresses are (core's `canonical_ip`). Other IPv6 blocks match
//!   IPv6 clients only: a client seen as `::ffff:a.b.c.d` is the IPv4 client `a.b.c.d`, so the
//!   mapped part of a wider block such as `::/0` matches nobody.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One CIDR block, canonical: host bits zero, IPv4-mapped blocks folded to IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cidr {
    V4 { net: u32, len: u8 },
    V6 { net: u128, len: u8 },
}

/// The mask of the first `len` bits of a `bits`-bit word (as u128; callers truncate).
pub(crate) fn mask(len: u8, bits: u32) -> u128 {
    let len = u32::from(len).min(bits);
    if len == 0 {
        return 0;
    }
    let ones = u128::MAX.checked_shr(128 - bits).unwrap_or(0);
    ones & !(ones.checked_shr(len).unwrap_or(0))
}

fn parse_len(s: &str, max: u8) -> Result<u8, String> {
    let ok = !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    let len: u8 = if ok { s.parse().ok() } else { None }
        .ok_or_else(|| format!("prefix length `{s}` is not a decimal number"))?;
    if len > max {
        return Err(format!("prefix length {len} is larger than {max}"));
    }
    Ok(len)
}

impl Cidr {
    /// Parses one configured entry; the error is the reason (the caller names the field).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not an IPv4 or IPv6 address or CIDR block (like `10.0.0.0/8`)")
        })?;
        let cidr = match ip {
            IpAddr::V4(v4) => {
                let len = len.map_or(Ok(32), |l| parse_len(l, 32))?;
                Cidr::V4 {
                    net: u32::from(v4),
                    len,
                }
            }
            IpAddr::V6(v6) => {
                let len = len.map_or(Ok(128), |l| parse_len(l, 128))?;
                Cidr::V6 {
                    net: u128::from(v6),
                    len,
                }
            }
        };
        if !cidr.host_bits_zero() {
            let network = cidr.network();
            let single = match cidr {
                Cidr::V4 { .. } => 32,
                Cidr::V6 { .. } => 128,
            };
            return Err(format!(
                "`{s}` has host bits set: write `{network}` for the network, or `{addr}/{single}` for the one address"
            ));
        }
        Ok(cidr.folded())
    }

    fn host_bits_zero(&self) -> bool {
        match *self {
            Cidr::V4 { net, len } => u128::from(net) & !mask(len, 32) & u128::from(u32::MAX) == 0,
            Cidr::V6 { net, len } => net & !mask(len, 128) == 0,
        }
    }

    /// The block with its host bits cleared.
    fn network(&self) -> Cidr {
        match *self {
            Cidr::V4 { net, len } => Cidr::V4 {
                net: u32::try_from(u128::from(net) & mask(len, 32)).unwrap_or(0),
                len,
            },
            Cidr::V6 { net, len } => Cidr::V6 {
                net: net & mask(len, 128),
                len,
            },
        }
    }

    /// An IPv4-mapped IPv6 block (`::ffff:0:0/96` or narrower) as the IPv4 block it maps.
    fn folded(self) -> Cidr {
        match self {
            Cidr::V6 { net, len } if len >= 96 => match Ipv6Addr::from(net).to_ipv4_mapped() {
                Some(v4) => Cidr::V4 {
                    net: u32::from(v4),
                    len: len - 96,
                },
                None => self,
            },
            other => other,
        }
    }

    /// The first and last address of an IPv4 block.
    pub fn v4_range(&self) -> Option<(u32, u32)> {
        match *self {
            Cidr::V4 { net, len } => {
                let host = u32::try_from(!mask(len, 32) & u128::from(u32::MAX)).unwrap_or(0);
                Some((net, net | host))
            }
            Cidr::V6 { .. } => None,
        }
    }

    /// The first and last address of an IPv6 block.
    pub fn v6_range(&self) -> Option<(u128, u128)> {
        match *self {
            Cidr::V6 { net, len } => Some((net, net | !mask(len, 128))),
            Cidr::V4 { .. } => None,
        }
    }

    /// Whether `ip` (canonical: IPv4-mapped addresses already folded) is in the block, by
    /// comparing the first `len` bits: the definition the range set is tested against.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Cidr::V4 { net, len }, IpAddr::V4(a)) => {
                (u128::from(u32::from(a)) ^ u128::from(net)) & mask(len, 32) == 0
            }
            (Cidr::V6 { net, len }, IpAddr::V6(a)) => (u128::from(a) ^ net) & mask(len, 128) == 0,
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cidr::V4 { net, len } => write!(f, "{}/{len}", Ipv4Addr::from(net)),
            Cidr::V6 { net, len } => write!(f, "{}/{len}", Ipv6Addr::from(net)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        match Cidr::parse(s) {
            Ok(c) => c.to_string(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn valid_entries_and_their_canonical_form() {
        for (given, canonical) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("192.0.2.255/32", "192.0.2.255/32"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:DB8:0:0::/48", "2001:db8::/48"),
            ("::/0", "::/0"),
            ("::1", "::1/128"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            ("::ffff:192.0.2.1", "192.0.2.1/32"),
            ("::ffff:c000:0201/128", "192.0.2.1/32"),
            // IPv4-compatible (deprecated) and NAT64 addresses are IPv6 addresses.
            ("::192.0.2.1", "::c000:201/128"),
            ("64:ff9b::/96", "64:ff9b::/96"),
        ] {
            assert_eq!(ok(given), canonical, "{given}");
        }
    }

    #[test]
    fn invalid_entries_say_why() {
        for (bad, why) in [
            ("", "not an IPv4 or IPv6 address"),
            ("garbage", "not an IPv4 or IPv6 address"),
            ("10.0.0/8", "not an IPv4 or IPv6 address"),
            ("10.0.0.0.0/8", "not an IPv4 or IPv6 address"),
            ("010.0.0.0/8", "not an IPv4 or IPv6 address"),
            ("256.0.0.0/8", "not an IPv4 or IPv6 address"),
            (" 10.0.0.0/8", "not an IPv4 or IPv6 address"),
            ("10.0.0.0 /8", "not an IPv4 or IPv6 address"),
            ("[::1]/128", "not an IPv4 or IPv6 address"),
            ("fe80::1%eth0/64", "not an IPv4 or IPv6 address"),
            ("10.0.0.0:80", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/33", "larger than 32"),
            ("2001:db8::/129", "larger than 128"),
            ("::ffff:10.0.0.0/129", "larger than 128"),
            ("10.0.0.0/", "not a decimal number"),
            ("10.0.0.0/08", "not a decimal number"),
            ("10.0.0.0/+8", "not a decimal number"),
            ("10.0.0.0/-1", "not a decimal number"),
            ("10.0.0.0/8 ", "not a decimal number"),
            ("10.0.0.0/1000", "not a decimal number"),
            ("10.0.0.0/8/8", "not a decimal number"),
            (
                "10.0.0.1/8",
                "write `10.0.0.0/8` for the network, or `10.0.0.1/32`",
            ),
            ("10.0.0.128/24", "host bits set"),
            ("0.0.0.1/0", "write `0.0.0.0/0`"),
            (
                "2001:db8::1/32",
                "write `2001:db8::/32` for the network, or `2001:db8::1/128`",
            ),
            ("::ffff:10.0.0.1/104", "host bits set"),
            ("::ffff:0:0/95", "host bits set"),
        ] {
            let e = Cidr::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn ranges_and_membership() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert_eq!(c.v4_range(), Some((0x0a01_0000, 0x0a01_ffff)));
        assert_eq!(c.v6_range(), None);
        assert!(c.contains("10.1.255.255".parse().unwrap()));
        assert!(!c.contains("10.2.0.0".parse().unwrap()));
        assert!(
            !c.contains("::ffff:10.1.0.1".parse().unwrap()),
            "callers fold first"
        );
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert_eq!(all.v4_range(), Some((0, u32::MAX)));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert_eq!(
            v6.v6_range(),
            Some((
                0x2001_0db8_u128 << 96,
                (0x2001_0db8_u128 << 96) | (u128::MAX >> 32)
            ))
        );
        assert_eq!(
            Cidr::parse("::/0").unwrap().v6_range(),
            Some((0, u128::MAX))
        );
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }
}

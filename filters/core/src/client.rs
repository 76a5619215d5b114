//! The client's IP address, one implementation for every policy that keys or decides on it
//! (ratelimit's `remote_address`, access control): the downstream peer, or an entry of
//! `x-forwarded-for` when trusted proxies stand in front of Envoy.

use crate::canon::Ambiguity;
use crate::http::{client_ip_from_address, Request};
use std::net::IpAddr;

/// An address in its canonical form: an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the
/// IPv4 address it maps, so a v4 rule cannot be sidestepped by a dual-stack listener.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses one address as Envoy or a proxy writes it (`1.2.3.4`, `1.2.3.4:5678`, `::1`,
/// `[::1]:443`), canonical.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    client_ip_from_address(s.trim())
        .parse()
        .ok()
        .map(canonical_ip)
}

/// The client address: with `xff_num_trusted_hops` = N > 0, the entry N places from the right
/// of `x-forwarded-for` (all its headers, in order: Envoy with `use_remote_address: true`
/// counts as one of the N); the downstream peer when N = 0 or the header has fewer entries.
///
/// With N > 0, `x-forwarded-for` in another spelling (`x_forwarded_for`, which CGI-style
/// backends read into the same list) is ambiguous, and a trusted entry that is not an address
/// means the client is unknown (`None`: never the peer, which is then the proxy).
pub fn client_ip(req: &Request, xff_num_trusted_hops: u32) -> Result<Option<IpAddr>, Ambiguity> {
    let hops = usize::try_from(xff_num_trusted_hops).unwrap_or(usize::MAX);
    if hops > 0 {
        req.headers.check_spellings(["x-forwarded-for"])?;
        let entries: Vec<&str> = req
            .headers
            .get_all("x-forwarded-for")
            .flat_map(|v| v.split(','))
            .collect();
        if let Some(entry) = entries.len().checked_sub(hops).and_then(|i| entries.get(i)) {
            return Ok(parse_ip(entry));
        }
    }
    Ok(req.client_ip.as_deref().and_then(parse_ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, xff: &[&str]) -> Request {
        let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
        Request {
            client_ip: Some(peer.to_string()),
            ..Request::new("GET", "/", &headers)
        }
    }

    #[test]
    fn the_peer_without_trusted_hops() {
        let ok = |s| Ok(parse_ip(s));
        assert_eq!(client_ip(&req("10.0.0.1", &["1.2.3.4"]), 0), ok("10.0.0.1"));
        assert_eq!(client_ip(&req("::ffff:10.0.0.1", &[]), 0), ok("10.0.0.1"));
    }

    #[test]
    fn trusted_hops_count_from_the_right_across_headers() {
        let ok = |s| Ok(parse_ip(s));
        let r = req("10.0.0.9", &["6.6.6.6, 1.2.3.4", "10.0.0.2"]);
        assert_eq!(client_ip(&r, 1), ok("10.0.0.2"));
        assert_eq!(client_ip(&r, 2), ok("1.2.3.4"));
        assert_eq!(client_ip(&r, 3), ok("6.6.6.6"));
        assert_eq!(
            client_ip(&r, 4),
            ok("10.0.0.9"),
            "too few entries: the peer"
        );
        let junk = req("10.0.0.9", &["not-an-ip"]);
        assert_eq!(
            client_ip(&junk, 1),
            Ok(None),
            "a trusted entry that is no address: unknown"
        );
    }

    #[test]
    fn another_spelling_of_the_trusted_header_is_ambiguous() {
        let headers = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_for", "6.6.6.6"),
        ];
        let r = Request {
            client_ip: Some("10.0.0.9".into()),
            ..Request::new("GET", "/", &headers)
        };
        let spelling = Ambiguity::HeaderSpelling("x-forwarded-for".into());
        assert_eq!(client_ip(&r, 1), Err(spelling));
        assert_eq!(
            client_ip(&r, 0),
            Ok(parse_ip("10.0.0.9")),
            "not read without trusted hops"
        );
    }

    #[test]
    fn addresses_are_canonical() {
        assert_eq!(
            parse_ip(" [::ffff:192.0.2.1]:443 "),
            "192.0.2.1".parse().ok()
        );
        assert_eq!(parse_ip("192.0.2.1:8080"), "192.0.2.1".parse().ok());
        assert_eq!(parse_ip("2001:db8::1"), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip("[2001:db8::1]:80"), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip("::1"), "::1".parse().ok());
        assert_eq!(parse_ip("300.1.1.1"), None);
    }
}

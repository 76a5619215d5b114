//! The Envoy Rate Limit Service v3 messages global rules use
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), as `prost` derives: only
//! the fields meshwall sends or reads, with their field numbers from
//! `envoy/service/ratelimit/v3/rls.proto`, `envoy/extensions/common/ratelimit/v3/ratelimit.proto`
//! and `envoy/config/core/v3/base.proto`. Unknown fields of an answer are skipped, as protobuf
//! wants; a field of the wrong type or a string that is not UTF-8 makes it unreadable.

use prost::Message;

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Hits per descriptor (0: the server counts 1).
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

#[cfg(test)]
impl RateLimitRequest {
    /// Each descriptor as its `(key, value)` entries (what tests compare).
    pub fn entry_pairs(&self) -> Vec<Vec<(String, String)>> {
        self.descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .collect()
    }
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// `google.protobuf.UInt64Value`.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    /// One per descriptor of the request, in order.
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
    #[prost(message, repeated, tag = "3")]
    pub response_headers_to_add: Vec<HeaderValue>,
    #[prost(message, repeated, tag = "4")]
    pub request_headers_to_add: Vec<HeaderValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimit {
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
    /// Used when `value` is empty (Envoy's rule).
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

/// The request for these descriptors (each a list of `(key, value)` entries).
pub fn request<'a>(
    domain: &str,
    descriptors: impl Iterator<Item = &'a [(String, String)]>,
) -> Vec<u8> {
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors: descriptors
            .map(|entries| RateLimitDescriptor {
                entries: entries
                    .iter()
                    .map(|(key, value)| Entry {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                limit: None,
                hits_addend: None,
            })
            .collect(),
        hits_addend: 0,
    }
    .encode_to_vec()
}

/// Seconds of a limit's unit (a month is 30 days, a year 365, as envoyproxy/ratelimit);
/// `None` for `UNKNOWN` or a unit this code does not know.
pub fn unit_secs(unit: i32) -> Option<u64> {
    match Unit::try_from(unit).ok()? {
        Unit::Unknown => None,
        Unit::Second => Some(1),
        Unit::Minute => Some(60),
        Unit::Hour => Some(3_600),
        Unit::Day => Some(86_400),
        Unit::Week => Some(604_800),
        Unit::Month => Some(2_592_000),
        Unit::Year => Some(31_536_000),
    }
}

/// Whole seconds, rounded up (`None` for a negative or out-of-range duration).
pub fn ceil_secs(d: &Duration) -> Option<u64> {
    let secs = u64::try_from(d.seconds).ok()?;
    match d.nanos {
        0 => Some(secs),
        1..=999_999_999 => secs.checked_add(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_the_field_numbers_of_rls_proto() {
        let entries = [("user".to_string(), "alice".to_string())];
        let bytes = request("edge", [&entries[..]].into_iter());
        // domain=1 "edge"; descriptors=2 { entries=1 { key=1 "user", value=2 "alice" } }
        let want: &[u8] = b"\x0a\x04edge\x12\x0f\x0a\x0d\x0a\x04user\x12\x05alice";
        assert_eq!(bytes, want);
        let back = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.domain, "edge");
        assert_eq!(back.descriptors[0].entries[0].value, "alice");
        // Two descriptors, one of two entries, an empty value (an anonymous part).
        let a = [
            ("k".to_string(), "".to_string()),
            ("p".to_string(), "/x".to_string()),
        ];
        let b = [("generic_key".to_string(), "all".to_string())];
        let back = RateLimitRequest::decode(request("d", [&a[..], &b[..]].into_iter()).as_slice())
            .unwrap();
        assert_eq!(back.entry_pairs(), [a.to_vec(), b.to_vec()]);
    }

    #[test]
    fn answers_are_read_with_the_field_numbers_of_rls_proto() {
        // overall_code=1 OVER_LIMIT(2); statuses=2 { code=1 OVER_LIMIT, current_limit=2
        // {requests_per_unit=1 50, unit=2 MINUTE, name=3 "u"}, limit_remaining=3 0,
        // duration_until_reset=4 {seconds=1 7, nanos=2 5} }; response_headers_to_add=3
        // {key "x-a", value "1"}; request_headers_to_add=4 {key "x-b", raw_value=3 "2"};
        // an unknown field 9 (varint) is skipped.
        let limit = b"\x08\x32\x10\x02\x1a\x01u";
        let dur = b"\x08\x07\x10\x05";
        let mut status = vec![0x08, 0x02, 0x12, limit.len() as u8];
        status.extend_from_slice(limit);
        status.extend_from_slice(&[0x18, 0x00, 0x22, dur.len() as u8]);
        status.extend_from_slice(dur);
        let mut msg = vec![0x08, 0x02, 0x12, status.len() as u8];
        msg.extend_from_slice(&status);
        msg.extend_from_slice(b"\x1a\x08\x0a\x03x-a\x12\x011");
        msg.extend_from_slice(b"\x22\x08\x0a\x03x-b\x1a\x012");
        msg.extend_from_slice(b"\x48\x01");
        let r = RateLimitResponse::decode(msg.as_slice()).unwrap();
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        let s = &r.statuses[0];
        assert_eq!(s.code, Code::OverLimit as i32);
        let l = s.current_limit.as_ref().unwrap();
        assert_eq!(
            (l.requests_per_unit, unit_secs(l.unit), l.name.as_str()),
            (50, Some(60), "u")
        );
        assert_eq!(ceil_secs(s.duration_until_reset.as_ref().unwrap()), Some(8));
        assert_eq!(r.response_headers_to_add[0].value, "1");
        assert_eq!(r.request_headers_to_add[0].raw_value, b"2");
        // What cannot be read: a string that is not UTF-8, a cut-off message, a wrong type.
        for bad in [
            &b"\x1a\x05\x0a\x03x\xff\x01"[..],
            &b"\x12\x05\x08"[..],
            &b"\x12\x01"[..],
            &b"\x0a\x00"[..],
        ] {
            assert!(RateLimitResponse::decode(bad).is_err(), "{bad:?}");
        }
        // An empty message is a valid answer: UNKNOWN, no statuses.
        assert_eq!(RateLimitResponse::decode(&b""[..]).unwrap().overall_code, 0);
    }

    #[test]
    fn units_and_durations() {
        assert_eq!(unit_secs(Unit::Week as i32), Some(604_800));
        assert_eq!(unit_secs(0), None);
        assert_eq!(unit_secs(42), None);
        let d = |seconds, nanos| Duration { seconds, nanos };
        assert_eq!(ceil_secs(&d(0, 0)), Some(0));
        assert_eq!(ceil_secs(&d(0, 1)), Some(1));
        assert_eq!(ceil_secs(&d(-1, 0)), None);
        assert_eq!(ceil_secs(&d(1, -5)), None);
        assert_eq!(ceil_secs(&d(1, 1_000_000_000)), None);
    }
}

//! The `device-events` record: `{"timestamp": <string or number>, "device_ip": "a.b.c.d",
//! "error_code": 0..10}`, and its validation by the tracker.
//!
//! The tracker must not rely on record keys (producers other than Freshet's generator may not
//! key by IP), so everything it needs comes from the value.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;

/// Topic the generator writes and the tracker reads.
pub const DEVICE_EVENTS: &str = "device-events";
/// Where the tracker puts events it rejects, with the reason in the [`REASON_HEADER`] header.
pub const DEVICE_EVENTS_DLQ: &str = "device-events.dlq";
/// Header of a dead-letter record that says why the event was rejected.
pub const REASON_HEADER: &str = "freshet.reason";
/// Header of a dead-letter record that says where it came from: `<topic>/<partition>/<offset>`.
pub const ORIGIN_HEADER: &str = "freshet.origin";
/// Header of the dead-letter record of a batch that cannot be read: the batch's last offset
/// (the origin names the first one skipped).
pub const ORIGIN_LAST_OFFSET_HEADER: &str = "freshet.origin.last-offset";
/// Largest error code a device reports.
pub const MAX_ERROR_CODE: u8 = 10;
/// Largest event accepted; a device event is under 100 bytes, so anything this big is not one.
pub const MAX_EVENT_BYTES: usize = 4096;

/// A validated event: what the tracker counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceEvent {
    pub ip: IpAddr,
    /// Event time in Unix milliseconds, from the normalised timestamp.
    pub time_ms: i64,
    pub error_code: u8,
}

/// The raw shape. Strings are borrowed unless they contain escapes.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    timestamp: Option<RawTimestamp<'a>>,
    #[serde(borrow)]
    device_ip: Option<Cow<'a, str>>,
    error_code: Option<serde_json::Number>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTimestamp<'a> {
    #[serde(borrow)]
    Str(Cow<'a, str>),
    Number(serde_json::Number),
}

/// Why an event was rejected: what kind of problem (a fixed set, for metrics) and the reason
/// written to the DLQ header, which names the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEvent {
    pub kind: InvalidKind,
    pub reason: String,
}

/// The kinds of [`InvalidEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    /// A record without a value (a tombstone).
    NoValue,
    /// Larger than [`MAX_EVENT_BYTES`].
    TooLarge,
    /// Not a JSON object of the event's shape.
    Json,
    /// `device_ip` missing or not an address.
    DeviceIp,
    /// `timestamp` missing or not a timestamp.
    Timestamp,
    /// `error_code` missing or out of range.
    ErrorCode,
    /// Not an event but a whole record batch the consumer cannot read (a decompression bomb,
    /// a corrupt batch): its one dead-letter record has no value, only the reason and the
    /// offsets it covers.
    UnreadableBatch,
}

impl InvalidKind {
    pub const ALL: [InvalidKind; 7] = [
        InvalidKind::NoValue,
        InvalidKind::TooLarge,
        InvalidKind::Json,
        InvalidKind::DeviceIp,
        InvalidKind::Timestamp,
        InvalidKind::ErrorCode,
        InvalidKind::UnreadableBatch,
    ];

    /// Position in [`Self::ALL`], for counters kept per kind.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::NoValue => "no_value",
            InvalidKind::TooLarge => "too_large",
            InvalidKind::Json => "invalid_json",
            InvalidKind::DeviceIp => "device_ip",
            InvalidKind::Timestamp => "timestamp",
            InvalidKind::ErrorCode => "error_code",
            InvalidKind::UnreadableBatch => "unreadable_batch",
        }
    }
}

impl InvalidEvent {
    fn new(kind: InvalidKind, reason: impl Into<String>) -> Self {
        InvalidEvent {
            kind,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Parses and validates one record value.
pub fn parse_event(value: Option<&[u8]>) -> Result<DeviceEvent, InvalidEvent> {
    let bytes =
        value.ok_or_else(|| InvalidEvent::new(InvalidKind::NoValue, "record has no value"))?;
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(InvalidEvent::new(
            InvalidKind::TooLarge,
            format!(
                "event is {} bytes, more than the {MAX_EVENT_BYTES} a device event can be",
                bytes.len()
            ),
        ));
    }
    if let Some(event) = fast::parse(bytes) {
        return Ok(event);
    }
    let raw: RawEvent<'_> = serde_json::from_slice(bytes)
        .map_err(|e| InvalidEvent::new(InvalidKind::Json, format!("invalid JSON: {e}")))?;
    let ip = parse_ip(raw.device_ip.as_deref())
        .map_err(|reason| InvalidEvent::new(InvalidKind::DeviceIp, reason))?;
    let time_ms = parse_time(raw.timestamp.as_ref())
        .map_err(|reason| InvalidEvent::new(InvalidKind::Timestamp, reason))?;
    let error_code = parse_error_code(raw.error_code.as_ref())
        .map_err(|reason| InvalidEvent::new(InvalidKind::ErrorCode, reason))?;
    Ok(DeviceEvent {
        ip,
        time_ms,
        error_code,
    })
}

fn parse_ip(field: Option<&str>) -> Result<IpAddr, String> {
    let text = field.ok_or_else(|| "missing field device_ip".to_string())?;
    text.parse::<IpAddr>()
        .map_err(|_| format!("device_ip {:?} is not an IPv4 or IPv6 address", clip(text)))
}

fn parse_time(field: Option<&RawTimestamp<'_>>) -> Result<i64, String> {
    let millis = match field.ok_or_else(|| "missing field timestamp".to_string())? {
        RawTimestamp::Str(s) => freshet_timestamp::unix_millis(s.as_ref()),
        RawTimestamp::Number(n) => {
            if let Some(i) = n.as_i64() {
                freshet_timestamp::unix_millis(i)
            } else if let Some(u) = n.as_u64() {
                freshet_timestamp::unix_millis(u)
            } else {
                freshet_timestamp::unix_millis(n.as_f64().unwrap_or(f64::NAN))
            }
        }
    };
    millis.map_err(|e| format!("timestamp: {e}"))
}

fn parse_error_code(field: Option<&serde_json::Number>) -> Result<u8, String> {
    let number = field.ok_or_else(|| "missing field error_code".to_string())?;
    match number.as_u64() {
        Some(code) if code <= u64::from(MAX_ERROR_CODE) => Ok(code as u8),
        _ => Err(format!(
            "error_code {number} is not an integer from 0 to {MAX_ERROR_CODE}"
        )),
    }
}

/// Keeps a hostile value from making the reason header huge.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A parser for the common shape only: one flat object with the three fields, string
/// timestamp and IP without escapes, a plain integer error code, valid values. It answers
/// `None` for anything else, valid or not, and the general path decides (and words the
/// error). About four times faster than serde_json on generator events, which is most of
/// the tracker's parsing time.
mod fast {
    use std::net::{IpAddr, Ipv4Addr};

    use super::{DeviceEvent, MAX_ERROR_CODE};

    pub(super) fn parse(bytes: &[u8]) -> Option<DeviceEvent> {
        let mut p = Parser { bytes, at: 0 };
        p.skip_ws();
        p.expect(b'{')?;
        let (mut ts, mut ip, mut code) = (None, None, None);
        loop {
            p.skip_ws();
            let key = p.string()?;
            p.skip_ws();
            p.expect(b':')?;
            p.skip_ws();
            match key {
                b"timestamp" if ts.is_none() => ts = Some(p.string()?),
                b"device_ip" if ip.is_none() => ip = Some(p.string()?),
                b"error_code" if code.is_none() => code = Some(p.small_uint()?),
                _ => return None,
            }
            p.skip_ws();
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
        p.skip_ws();
        if p.at != bytes.len() {
            return None;
        }
        let ip = ip?;
        let ip = match ipv4(ip) {
            Some(v4) => IpAddr::V4(v4),
            None => std::str::from_utf8(ip).ok()?.parse().ok()?,
        };
        let ts = std::str::from_utf8(ts?).ok()?;
        let time_ms = freshet_timestamp::unix_millis(ts).ok()?;
        let error_code = u8::try_from(code?).ok().filter(|c| *c <= MAX_ERROR_CODE)?;
        Some(DeviceEvent {
            ip,
            time_ms,
            error_code,
        })
    }

    /// A dotted-quad IPv4 address, accepting exactly what `Ipv4Addr`'s `FromStr` accepts (four
    /// decimal octets of one to three digits, at most 255, no leading zero); `None` for
    /// anything else, IPv6 included, which the caller then parses with the standard library.
    /// Straight from the bytes: the standard parser and its UTF-8 check took 3-5% of the
    /// tracker's CPU in a profile (docs/BENCHMARKS.md, "Parsing straight to numbers").
    pub(super) fn ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
        let mut octets = [0u8; 4];
        let mut parts = bytes.split(|&b| b == b'.');
        for octet in &mut octets {
            let part = parts.next()?;
            let leading_zero = part.len() > 1 && part[0] == b'0';
            if part.is_empty() || part.len() > 3 || leading_zero {
                return None;
            }
            let mut value = 0u16;
            for &b in part {
                if !b.is_ascii_digit() {
                    return None;
                }
                value = value * 10 + u16::from(b - b'0');
            }
            *octet = u8::try_from(value).ok()?;
        }
        parts.next().is_none().then_some(Ipv4Addr::from(octets))
    }

    /// Index of the first byte that ends a fast-path string: `"`, `\` or a control
    /// character. Eight bytes at a time: parsing is a seventh of the tracker's time, and most
    /// of it was this scan, a byte per step.
    pub(super) fn string_end(bytes: &[u8]) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        // High bit set in each byte of `word` below `n` (n <= 0x80). Bytes above the first
        // such byte may be flagged wrongly (the subtraction borrows), but the first is exact.
        let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
        let ends = |word: u64| {
            below(word ^ (ONES * u64::from(b'"')), 1)
                | below(word ^ (ONES * u64::from(b'\\')), 1)
                | below(word, 0x20)
        };
        let mut words = bytes.chunks_exact(8);
        for (index, word) in words.by_ref().enumerate() {
            let word = u64::from_le_bytes(word.try_into().ok()?);
            let found = ends(word);
            if found != 0 {
                return Some(index * 8 + (found.trailing_zeros() / 8) as usize);
            }
        }
        let tail = words.remainder();
        let at = bytes.len() - tail.len();
        tail.iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .map(|i| at + i)
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl<'a> Parser<'a> {
        fn next(&mut self) -> Option<u8> {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            Some(b)
        }

        fn expect(&mut self, want: u8) -> Option<()> {
            (self.next()? == want).then_some(())
        }

        fn skip_ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
                self.at += 1;
            }
        }

        /// A string without escapes or control characters.
        fn string(&mut self) -> Option<&'a [u8]> {
            self.expect(b'"')?;
            let rest = &self.bytes[self.at..];
            let end = string_end(rest)?;
            if rest[end] != b'"' {
                return None;
            }
            self.at += end + 1;
            Some(&rest[..end])
        }

        /// A JSON integer without sign, fraction or exponent, below 1000.
        fn small_uint(&mut self) -> Option<u32> {
            let start = self.at;
            let mut value = 0u32;
            while let Some(d @ b'0'..=b'9') = self.bytes.get(self.at) {
                value = value * 10 + u32::from(d - b'0');
                self.at += 1;
                if self.at - start > 3 {
                    return None;
                }
            }
            let digits = self.at - start;
            let leading_zero = digits > 1 && self.bytes[start] == b'0';
            let continues = matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E'));
            (digits > 0 && !leading_zero && !continues).then_some(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DeviceEvent, String> {
        parse_event(Some(text.as_bytes())).map_err(|e| e.reason)
    }

    fn kind_of(text: &str) -> InvalidKind {
        parse_event(Some(text.as_bytes())).expect_err(text).kind
    }

    #[test]
    fn accepts_every_timestamp_form_and_both_ip_versions() {
        for ts in [
            r#""2024-09-18T13:59:02.123456Z""#,
            r#""2024-09-18T13:59:02.123456""#,
            r#""2024-09-18T13:59:02""#,
            r#""2024-09-18 13:59:02.123456""#,
            r#""2024-09-18 13:59:02""#,
            r#""1726667942123""#,
            r#""1726667942""#,
            "1726667942",
            "1726667942.5",
        ] {
            let event = parse(&format!(
                r#"{{"timestamp": {ts}, "device_ip": "10.0.0.1", "error_code": 3}}"#
            ))
            .unwrap_or_else(|e| panic!("{ts}: {e}"));
            assert_eq!(event.time_ms / 1000, 1_726_667_942, "{ts}");
            assert_eq!(event.error_code, 3);
        }
        let v6 = parse(r#"{"timestamp": 0, "device_ip": "2001:db8::1", "error_code": 0}"#);
        assert_eq!(v6.map(|e| e.ip.is_ipv6()), Ok(true));
    }

    #[test]
    fn rejections_name_the_problem() {
        let cases = [
            ("not json", "invalid JSON"),
            (
                r#"{"device_ip": "1.2.3.4", "error_code": 1}"#,
                "missing field timestamp",
            ),
            (
                r#"{"timestamp": 1, "error_code": 1}"#,
                "missing field device_ip",
            ),
            (
                r#"{"timestamp": 1, "device_ip": "1.2.3.4"}"#,
                "missing field error_code",
            ),
            (
                r#"{"timestamp": 1, "device_ip": "1.2.3.256", "error_code": 1}"#,
                "not an IPv4",
            ),
            (
                r#"{"timestamp": "2024-02-30", "device_ip": "1.2.3.4", "error_code": 1}"#,
                "timestamp:",
            ),
            (
                r#"{"timestamp": 1, "device_ip": "1.2.3.4", "error_code": 11}"#,
                "error_code 11",
            ),
            (
                r#"{"timestamp": 1, "device_ip": "1.2.3.4", "error_code": -1}"#,
                "error_code -1",
            ),
            (
                r#"{"timestamp": 1, "device_ip": "1.2.3.4", "error_code": 1e400}"#,
                "invalid JSON",
            ),
            (
                r#"{"timestamp": true, "device_ip": "1.2.3.4", "error_code": 1}"#,
                "invalid JSON",
            ),
            (
                r#"{"timestamp": 1, "device_ip": 5, "error_code": 1}"#,
                "invalid JSON",
            ),
        ];
        for (text, expected) in cases {
            let reason = parse(text).expect_err(text);
            assert!(reason.contains(expected), "{text}: {reason}");
        }
        assert_eq!(
            parse_event(None),
            Err(InvalidEvent::new(
                InvalidKind::NoValue,
                "record has no value"
            ))
        );
        let huge = format!(r#"{{"device_ip": "{}"}}"#, "9".repeat(10_000));
        assert!(parse(&huge).expect_err("huge").contains("more than"));
    }

    #[test]
    fn rejections_have_a_kind_per_problem() {
        let cases = [
            ("not json", InvalidKind::Json),
            (
                r#"{"timestamp": 1, "error_code": 1}"#,
                InvalidKind::DeviceIp,
            ),
            (
                r#"{"timestamp": 1, "device_ip": "1.2.3.256", "error_code": 1}"#,
                InvalidKind::DeviceIp,
            ),
            (
                r#"{"timestamp": "yesterday", "device_ip": "1.2.3.4", "error_code": 1}"#,
                InvalidKind::Timestamp,
            ),
            (
                r#"{"timestamp": 1, "device_ip": "1.2.3.4", "error_code": 11}"#,
                InvalidKind::ErrorCode,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(kind_of(text), kind, "{text}");
        }
        let huge = format!(r#"{{"device_ip": "{}"}}"#, "9".repeat(10_000));
        assert_eq!(kind_of(&huge), InvalidKind::TooLarge);
        for (index, kind) in InvalidKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), index, "{kind:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_ipv4_fast_path_accepts_exactly_what_the_standard_parser_does(
            text in "[0-9.]{0,18}|([0-9]{1,4}\\.){3}[0-9]{1,4}|[0-9a-f:.]{0,12}"
        ) {
            proptest::prop_assert_eq!(
                fast::ipv4(text.as_bytes()),
                text.parse::<std::net::Ipv4Addr>().ok(),
                "{:?}", text
            );
        }

        #[test]
        fn the_string_scan_finds_the_first_quote_backslash_or_control_byte(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'"'),
                    proptest::strategy::Just(b'\\'),
                    0u8..0x20,
                    0x20u8..=0xff,
                    0x20u8..=0xff,
                    0x20u8..=0xff,
                ],
                0..40,
            )
        ) {
            let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            proptest::prop_assert_eq!(fast::string_end(&bytes), expected);
        }
    }

    /// Event text in the shapes devices send, with optional oddities the fast path must
    /// either read exactly like serde_json or leave to it.
    fn event_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let ts = prop_oneof![
            Just(r#""2024-09-18T13:59:02.123456Z""#.to_string()),
            Just(r#""2024-09-18 13:59:02""#.to_string()),
            Just(r#""1726667942123""#.to_string()),
            Just("1726667942".to_string()),
            Just(r#""2024-02-30T00:00:00""#.to_string()),
            Just(r#""2024-09-18T13:59:02\u005a""#.to_string()),
            "[0-9]{1,13}".prop_map(|d| format!("\"{d}\"")),
        ];
        let ip = prop_oneof![
            Just(r#""10.1.2.3""#.to_string()),
            Just(r#""2001:db8::7""#.to_string()),
            Just(r#""300.1.2.3""#.to_string()),
            Just(r#""10.1.2.3 ""#.to_string()),
            Just(r#""10.1.2.\u0033""#.to_string()),
        ];
        let code = prop_oneof![
            (0u32..13).prop_map(|c| c.to_string()),
            Just("03".to_string()),
            Just("3.0".to_string()),
            Just("-1".to_string()),
            Just("1e0".to_string()),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\n\t")];
        (ts, ip, code, ws, any::<bool>(), any::<bool>()).prop_map(
            |(ts, ip, code, ws, swap, extra)| {
                let mut fields = vec![
                    format!(r#""timestamp":{ws}{ts}"#),
                    format!(r#""device_ip": {ip}"#),
                    format!(r#""error_code" :{code}"#),
                ];
                if swap {
                    fields.swap(0, 2);
                }
                if extra {
                    fields.push(r#""firmware": "1.2""#.to_string());
                }
                format!("{ws}{{{}}}{ws}", fields.join(","))
            },
        )
    }

    proptest::proptest! {
        #[test]
        fn the_fast_path_agrees_with_serde_json(text in event_text()) {
            let bytes = text.as_bytes();
            if let Some(fast) = fast::parse(bytes) {
                let raw: RawEvent<'_> = serde_json::from_slice(bytes).expect("fast accepted, serde must too");
                let slow = (
                    parse_ip(raw.device_ip.as_deref()),
                    parse_time(raw.timestamp.as_ref()),
                    parse_error_code(raw.error_code.as_ref()),
                );
                proptest::prop_assert_eq!(slow, (Ok(fast.ip), Ok(fast.time_ms), Ok(fast.error_code)));
            }
        }

        #[test]
        fn mutated_events_never_differ(text in event_text(), at in 0usize..80, byte in proptest::prelude::any::<u8>()) {
            let mut bytes = text.into_bytes();
            if let Some(b) = bytes.get_mut(at) {
                *b = byte;
            }
            if let Some(fast) = fast::parse(&bytes) {
                // Bypass the fast path: the general path alone must give the same event.
                let raw: Result<RawEvent<'_>, _> = serde_json::from_slice(&bytes);
                let raw = raw.expect("fast accepted, serde must too");
                proptest::prop_assert_eq!(parse_ip(raw.device_ip.as_deref()), Ok(fast.ip));
                proptest::prop_assert_eq!(parse_time(raw.timestamp.as_ref()), Ok(fast.time_ms));
                proptest::prop_assert_eq!(parse_error_code(raw.error_code.as_ref()), Ok(fast.error_code));
            }
        }
    }

    #[test]
    fn the_fast_path_takes_generator_events() {
        let text = r#"{"timestamp": "2024-09-18 13:59:02.123456", "device_ip": "10.0.0.1", "error_code": 10}"#;
        assert!(fast::parse(text.as_bytes()).is_some());
        assert!(
            fast::parse(br#"{"timestamp": 1, "device_ip": "10.0.0.1", "error_code": 1}"#).is_none()
        );
    }
}

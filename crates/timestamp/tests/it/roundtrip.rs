//! Property tests against an independent implementation (jiff): random instants are written
//! in every supported form with jiff's own formatting and arithmetic, normalised, and compared
//! with jiff's RFC 3339 rendering of the same instant at millisecond precision (`{:.3}`, which
//! truncates).

use freshet_timestamp::{normalize, unix_millis, TsInput};
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use proptest::prelude::*;

/// 0000-01-02T00:00:00Z and 9999-12-30T23:59:59Z: any offset keeps the local date in 0000-9999.
const FIRST_SECOND: i64 = -62_167_132_800;
const LAST_SECOND: i64 = 253_402_214_399;

fn expected(ts: Timestamp) -> String {
    format!("{ts:.3}")
}

/// The normalised form, or the error; checks on the way that `unix_millis` gives the same
/// instant (or the same error) as the normalised form does.
fn normalized(input: TsInput<'_>) -> String {
    let result = normalize(input);
    let millis = unix_millis(input).map_err(|e| e.to_string());
    assert_eq!(
        millis,
        result
            .as_ref()
            .map(|ts| ts.unix_millis())
            .map_err(|e| e.to_string()),
        "unix_millis disagrees with normalize on {input:?}"
    );
    match result {
        Ok(ts) => ts.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// An instant whose sub-second part has exactly `digits` significant fraction digits.
fn instant(digits: u32) -> impl Strategy<Value = Timestamp> {
    let step = 10i32.pow(9 - digits);
    (FIRST_SECOND..=LAST_SECOND, 0..1_000_000_000i32).prop_map(move |(secs, nanos)| {
        Timestamp::new(secs, nanos / step * step).expect("in jiff's range")
    })
}

#[derive(Debug, Clone, Copy)]
enum Zone {
    None,
    Z,
    Lower,
    Colon,
    NoColon,
    HoursOnly,
}

fn zone() -> impl Strategy<Value = (Zone, i32)> {
    prop_oneof![
        Just((Zone::None, 0)),
        Just((Zone::Z, 0)),
        Just((Zone::Lower, 0)),
        (-1439..=1439i32).prop_map(|m| (Zone::Colon, m)),
        (-1439..=1439i32).prop_map(|m| (Zone::NoColon, m)),
        (-23..=23i32).prop_map(|h| (Zone::HoursOnly, h * 60)),
    ]
}

/// `ts` written as local time at `offset_minutes` with jiff's formatting.
fn iso(ts: Timestamp, digits: u32, sep: char, zone: Zone, offset_minutes: i32) -> String {
    let offset = Offset::from_seconds(offset_minutes * 60).expect("offset");
    let local = ts.to_zoned(TimeZone::fixed(offset));
    let date_time = local
        .strftime(&format!("%Y-%m-%d{sep}%H:%M:%S"))
        .to_string();
    let fraction = match digits {
        0 => String::new(),
        n => local.strftime(&format!("%.{n}f")).to_string(),
    };
    let zone = match zone {
        Zone::None => String::new(),
        Zone::Z => "Z".into(),
        Zone::Lower => "z".into(),
        Zone::Colon => local.strftime("%:z").to_string(),
        Zone::NoColon => local.strftime("%z").to_string(),
        Zone::HoursOnly => local.strftime("%z").to_string()[..3].to_string(),
    };
    format!("{date_time}{fraction}{zone}")
}

fn iso_case() -> impl Strategy<Value = (Timestamp, u32, char, Zone, i32)> {
    (0..=9u32).prop_flat_map(|digits| {
        (
            instant(digits),
            Just(digits),
            prop_oneof![Just('T'), Just('t'), Just(' ')],
            zone(),
        )
            .prop_map(|(ts, d, sep, (zone, offset))| (ts, d, sep, zone, offset))
    })
}

/// Seconds, milliseconds, microseconds, nanoseconds: the range of integers that the
/// magnitude rule reads in that unit and that lies within years 0000-9999.
fn epoch_case() -> impl Strategy<Value = (i64, Timestamp)> {
    let secs = (-62_167_219_200..100_000_000_000i64)
        .prop_map(|n| (n, Timestamp::from_second(n).expect("range")));
    let millis = prop_oneof![
        100_000_000_000..100_000_000_000_000i64,
        -62_167_219_200_000..=-100_000_000_000i64,
    ]
    .prop_map(|n| (n, Timestamp::from_millisecond(n).expect("range")));
    let micros = prop_oneof![
        100_000_000_000_000..100_000_000_000_000_000i64,
        -62_167_219_200_000_000..=-100_000_000_000_000i64,
    ]
    .prop_map(|n| (n, Timestamp::from_microsecond(n).expect("range")));
    let nanos = prop_oneof![
        100_000_000_000_000_000..=i64::MAX,
        i64::MIN..=-100_000_000_000_000_000i64
    ]
    .prop_map(|n| (n, Timestamp::from_nanosecond(i128::from(n)).expect("range")));
    prop_oneof![secs, millis, micros, nanos]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn iso_strings_round_trip((ts, digits, sep, zone, offset) in iso_case()) {
        let text = iso(ts, digits, sep, zone, offset);
        prop_assert_eq!(normalized(TsInput::Str(&text)), expected(ts), "input {}", text);
    }

    #[test]
    fn epoch_integers_and_digit_strings_round_trip((n, ts) in epoch_case()) {
        prop_assert_eq!(normalized(TsInput::Int(n)), expected(ts));
        prop_assert_eq!(normalized(TsInput::Str(&n.to_string())), expected(ts));
    }

    #[test]
    fn float_seconds_with_milliseconds_round_trip(
        ms in -62_167_219_200_000..100_000_000_000_000i64
    ) {
        // The f64 nearest to ms/1000 (at most 14 significant digits, so its shortest decimal
        // is ms/1000 itself).
        let ts = Timestamp::from_millisecond(ms).expect("range");
        let f = ms as f64 / 1000.0;
        prop_assert_eq!(normalized(TsInput::Float(f)), expected(ts), "input {}", f);
        let text = format!("{f}");
        prop_assert_eq!(normalized(TsInput::Str(&text)), expected(ts), "input {}", text);
    }

    #[test]
    fn a_float_means_its_shortest_decimal(
        f in prop_oneof![-7e10..1e11f64, -1e3..1e3f64, (-62_167_219_200_000..100_000_000_000_000i64).prop_map(|ms| ms as f64 / 1000.0)]
    ) {
        let text = format!("{f}");
        prop_assert_eq!(normalized(TsInput::Float(f)), normalized(TsInput::Str(&text)), "input {}", text);
    }

    #[test]
    fn any_short_text_gets_the_same_instant_or_error_from_both_entry_points(
        text in "[-0-9T :.,Zz+]{0,32}"
    ) {
        normalized(TsInput::Str(&text));
    }

    #[test]
    fn unix_millis_matches_jiff(ts in instant(3)) {
        let ours = normalize(TsInput::Str(&expected(ts))).expect("valid").unix_millis();
        prop_assert_eq!(ours, ts.as_millisecond());
    }

    #[test]
    fn from_unix_millis_matches_jiff(ts in instant(3)) {
        let ours = freshet_timestamp::NormalizedTs::from_unix_millis(ts.as_millisecond()).expect("in range");
        prop_assert_eq!(ours.as_str(), expected(ts));
    }
}

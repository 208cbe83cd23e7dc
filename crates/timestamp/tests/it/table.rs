//! The examples that define the behaviour (every row of the table in `docs/REFERENCE.md`), then
//! a larger table of accepted and rejected forms with their exact outputs and error messages.

use freshet_timestamp::{normalize, ErrorKind, TsInput};

fn ok(input: TsInput<'_>) -> String {
    match normalize(input) {
        Ok(ts) => ts.to_string(),
        Err(e) => panic!("{input:?} rejected: {e}"),
    }
}

fn err(input: TsInput<'_>) -> String {
    match normalize(input) {
        Ok(ts) => panic!("{input:?} accepted as {ts}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn reference_examples() {
    use TsInput::{Int, Str};
    let table: &[(TsInput<'_>, &str)] = &[
        (Str("2021-12-03T16:15:30.235Z"), "2021-12-03T16:15:30.235Z"),
        (Str("2021-12-03T16:15:30.235"), "2021-12-03T16:15:30.235Z"),
        (Str("2011-12-03T10:15:30"), "2011-12-03T10:15:30.000Z"),
        (Int(1726668850124), "2024-09-18T14:14:10.124Z"),
        (Str("1726668850124"), "2024-09-18T14:14:10.124Z"),
        (Int(1726667942), "2024-09-18T13:59:02.000Z"),
        (Str("1726667942"), "2024-09-18T13:59:02.000Z"),
        (Int(969286895000), "2000-09-18T14:21:35.000Z"),
        (Int(3336042095), "2075-09-18T14:21:35.000Z"),
    ];
    for &(input, expected) in table {
        assert_eq!(ok(input), expected, "{input:?}");
    }
}

#[test]
fn accepted_forms() {
    use TsInput::{Float, Int, Str, UInt};
    let table: &[(TsInput<'_>, &str)] = &[
        // Separators, fraction lengths (truncated, never rounded), zones.
        (Str("2021-12-03 16:15:30Z"), "2021-12-03T16:15:30.000Z"),
        (Str("2021-12-03t16:15:30z"), "2021-12-03T16:15:30.000Z"),
        (Str("2021-12-03T16:15"), "2021-12-03T16:15:00.000Z"),
        (Str("2021-12-03T16:15:30.2"), "2021-12-03T16:15:30.200Z"),
        (Str("2021-12-03T16:15:30,25"), "2021-12-03T16:15:30.250Z"),
        (
            Str("2021-12-03T16:15:30.999999999Z"),
            "2021-12-03T16:15:30.999Z",
        ),
        (Str("2021-12-03T16:15:30.2359"), "2021-12-03T16:15:30.235Z"),
        (Str("2021-12-03T16:15:30+02:00"), "2021-12-03T14:15:30.000Z"),
        (
            Str("2021-12-03T16:15:30.5-0500"),
            "2021-12-03T21:15:30.500Z",
        ),
        (Str("2021-12-03T16:15:30+02"), "2021-12-03T14:15:30.000Z"),
        (Str("2021-12-03T16:15:30+05:45"), "2021-12-03T10:30:30.000Z"),
        (Str("2021-12-03T16:15:30-00:00"), "2021-12-03T16:15:30.000Z"),
        (Str("2021-12-31T23:30:00-01:00"), "2022-01-01T00:30:00.000Z"),
        (Str("2021-03-01T00:30:00+01:00"), "2021-02-28T23:30:00.000Z"),
        (Str("2024-02-29T12:00:00Z"), "2024-02-29T12:00:00.000Z"),
        (Str("2000-02-29T12:00:00Z"), "2000-02-29T12:00:00.000Z"),
        (Str("0000-01-01T00:00:00Z"), "0000-01-01T00:00:00.000Z"),
        (
            Str("9999-12-31T23:59:59.999999999"),
            "9999-12-31T23:59:59.999Z",
        ),
        (Str("1969-12-31T23:59:59.9999Z"), "1969-12-31T23:59:59.999Z"),
        // Epoch numbers: the magnitude rule at its boundaries.
        (Int(0), "1970-01-01T00:00:00.000Z"),
        (Int(99_999_999_999), "5138-11-16T09:46:39.000Z"),
        (Int(100_000_000_000), "1973-03-03T09:46:40.000Z"),
        (Int(99_999_999_999_999), "5138-11-16T09:46:39.999Z"),
        (Int(100_000_000_000_000), "1973-03-03T09:46:40.000Z"),
        (Int(1_726_668_850_124_999), "2024-09-18T14:14:10.124Z"),
        (Int(1_726_668_850_124_999_999), "2024-09-18T14:14:10.124Z"),
        (Int(i64::MAX), "2262-04-11T23:47:16.854Z"),
        (Int(i64::MIN), "1677-09-21T00:12:43.145Z"),
        (
            UInt(10_000_000_000_000_000_000 - 1),
            "2286-11-20T17:46:39.999Z",
        ),
        (Str("1726668850124999999"), "2024-09-18T14:14:10.124Z"),
        (Str("0001726667942"), "2024-09-18T13:59:02.000Z"),
        // Negative epochs count back from 1970, truncated towards the past.
        (Int(-1), "1969-12-31T23:59:59.000Z"),
        (Int(-62_167_219_200), "0000-01-01T00:00:00.000Z"),
        (Int(-100_000_000_000), "1966-10-31T14:13:20.000Z"),
        (Int(-1_000_000_000_000_001), "1938-04-24T22:13:19.999Z"),
        (Str("-1.5"), "1969-12-31T23:59:58.500Z"),
        (Str("-0.0001"), "1969-12-31T23:59:59.999Z"),
        (Float(-0.0001), "1969-12-31T23:59:59.999Z"),
        (Float(-0.0), "1970-01-01T00:00:00.000Z"),
        // Floats and decimal strings: seconds with a fraction, or larger units.
        (Float(1726667942.123), "2024-09-18T13:59:02.123Z"),
        (Float(1726667942.9999), "2024-09-18T13:59:02.999Z"),
        (Str("1726667942.1239"), "2024-09-18T13:59:02.123Z"),
        (Float(1726668850124.9), "2024-09-18T14:14:10.124Z"),
        (Str("1726668850124.000"), "2024-09-18T14:14:10.124Z"),
        (Float(1.726668850124e12), "2024-09-18T14:14:10.124Z"),
        (Float(1.726668850124e18), "2024-09-18T14:14:10.124Z"),
        (Float(0.25), "1970-01-01T00:00:00.250Z"),
    ];
    for &(input, expected) in table {
        assert_eq!(ok(input), expected, "{input:?}");
    }
}

#[test]
fn rejected_forms() {
    use TsInput::{Float, Int, Str, UInt};
    let table: &[(TsInput<'_>, &str)] = &[
        (Str(""), "empty input"),
        (
            Str("2021-13-03T00:00:00Z"),
            "month 13 out of range (01-12) at byte 5",
        ),
        (
            Str("2021-00-03T00:00:00Z"),
            "month 0 out of range (01-12) at byte 5",
        ),
        (
            Str("2021-12-32T00:00:00Z"),
            "day 32 out of range (01-31) at byte 8",
        ),
        (
            Str("2021-12-00T00:00:00Z"),
            "day 0 out of range (01-31) at byte 8",
        ),
        (
            Str("2023-02-30T00:00:00Z"),
            "February 30 does not exist in 2023 at byte 8",
        ),
        (
            Str("2023-02-29T00:00:00Z"),
            "February 29 does not exist in 2023 at byte 8",
        ),
        (
            Str("1900-02-29T00:00:00Z"),
            "February 29 does not exist in 1900 at byte 8",
        ),
        (
            Str("2021-04-31T00:00:00Z"),
            "April 31 does not exist in 2021 at byte 8",
        ),
        (
            Str("2021-12-03T24:00:00Z"),
            "hour 24 out of range (00-23) at byte 11",
        ),
        (
            Str("2021-12-03T23:60:00Z"),
            "minute 60 out of range (00-59) at byte 14",
        ),
        (
            Str("2016-12-31T23:59:60Z"),
            "second 60 (leap second) is not supported at byte 17",
        ),
        (
            Str("2021-12-03T23:59:61Z"),
            "second 61 out of range (00-59) at byte 17",
        ),
        (
            Str("2021-12-03T16:15:30.235Z   "),
            "trailing characters at byte 24",
        ),
        (
            Str("2021-12-03T16:15:30.235Zx"),
            "trailing characters at byte 24",
        ),
        (
            Str("2021-12-03T16:15:30.1234567890Z"),
            "more than 9 fraction digits at byte 29",
        ),
        (
            Str("2021-12-03T16:15:30.Z"),
            "expected a fraction digit, found 'Z' at byte 20",
        ),
        (
            Str("2021-12-03T16:15:30+24:00"),
            "offset hour 24 out of range (00-23) at byte 20",
        ),
        (
            Str("2021-12-03T16:15:30+02:60"),
            "offset minute 60 out of range (00-59) at byte 23",
        ),
        (
            Str("2021-12-03T16:15:30+2"),
            "expected a digit, found end of input at byte 21",
        ),
        (
            Str("2021-12-03T16:15:30 UTC"),
            "expected 'Z', '+', '-' or the end, found ' ' at byte 19",
        ),
        (Str("2021-12-03"), "date without a time of day at byte 10"),
        (
            Str("2021-12-03X16:15:30"),
            "expected 'T' or ' ', found 'X' at byte 10",
        ),
        (
            Str("2021-12-3T16:15:30"),
            "expected a digit, found 'T' at byte 9",
        ),
        (
            Str("2021-12-03T1:15:30"),
            "expected a digit, found ':' at byte 12",
        ),
        (
            Str("2021-12-03T16.15.30"),
            "expected ':', found '.' at byte 13",
        ),
        (
            Str("2021-12-03T16:15:30Ω"),
            "expected 'Z', '+', '-' or the end, found 'Ω' at byte 19",
        ),
        (
            Str("0000-01-01T00:00:00+00:01"),
            "instant outside years 0000-9999 in UTC",
        ),
        (
            Str("9999-12-31T23:59:59-00:01"),
            "instant outside years 0000-9999 in UTC",
        ),
        (
            Str("20211203T161530Z"),
            "expected a digit or '.', found 'T' at byte 8",
        ),
        (
            Str("garbage"),
            "expected a digit (ISO 8601 date or epoch number), found 'g' at byte 0",
        ),
        (
            Str(" 1726667942"),
            "expected a digit (ISO 8601 date or epoch number), found ' ' at byte 0",
        ),
        (
            Str("1726667942 "),
            "expected a digit or '.', found ' ' at byte 10",
        ),
        (
            Str("1726667942."),
            "expected a fraction digit, found end of input at byte 11",
        ),
        (Str("17266.6794x"), "expected a digit, found 'x' at byte 10"),
        (Str("-"), "expected a digit, found end of input at byte 1"),
        (Str("1e12"), "expected a digit or '.', found 'e' at byte 1"),
        (
            Str("12345678901234567890"),
            "epoch nanoseconds value outside years 0000-9999 at byte 0",
        ),
        (
            Int(-62_167_219_201),
            "epoch seconds value outside years 0000-9999",
        ),
        (
            Int(-99_999_999_999_999_999),
            "epoch microseconds value outside years 0000-9999",
        ),
        (
            UInt(u64::MAX),
            "epoch nanoseconds value outside years 0000-9999",
        ),
        (Float(f64::NAN), "NaN or infinite number"),
        (Float(f64::INFINITY), "NaN or infinite number"),
        (
            Float(1e19),
            "epoch nanoseconds value outside years 0000-9999",
        ),
        (Float(-7e10), "epoch seconds value outside years 0000-9999"),
    ];
    for &(input, expected) in table {
        assert_eq!(err(input), expected, "{input:?}");
    }
}

#[test]
fn errors_expose_kind_and_position() {
    let e = normalize("2021-13-03T00:00:00Z").expect_err("rejected");
    assert_eq!(e.kind(), &ErrorKind::MonthOutOfRange(13));
    assert_eq!(e.position(), Some(5));
    assert_eq!(normalize("").expect_err("rejected").position(), None);
}

#[test]
fn unix_millis_reads_the_output_back() {
    for (input, ms) in [
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
        ("1726668850124", 1_726_668_850_124),
        ("0000-01-01T00:00:00Z", -62_167_219_200_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ] {
        assert_eq!(
            normalize(input).map(|ts| ts.unix_millis()),
            Ok(ms),
            "{input}"
        );
    }
}

#[cfg(feature = "serde_json")]
#[test]
fn json_values() {
    use freshet_timestamp::normalize_json;
    use serde_json::json;
    let ok = |v: serde_json::Value| normalize_json(&v).map(|t| t.to_string());
    assert_eq!(
        ok(json!(1726668850124_i64)).as_deref(),
        Ok("2024-09-18T14:14:10.124Z")
    );
    assert_eq!(
        ok(json!("1726667942")).as_deref(),
        Ok("2024-09-18T13:59:02.000Z")
    );
    assert_eq!(
        ok(json!(1726667942.5)).as_deref(),
        Ok("2024-09-18T13:59:02.500Z")
    );
    for (v, name) in [
        (json!(true), "boolean"),
        (json!(null), "null"),
        (json!([1]), "array"),
        (json!({}), "object"),
    ] {
        assert_eq!(
            normalize_json(&v).expect_err("rejected").to_string(),
            format!("unsupported type {name}")
        );
    }
}

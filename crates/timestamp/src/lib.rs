//! Normalises the timestamps devices send to one form: UTC ISO 8601 with exactly three fraction
//! digits and a `Z`, `YYYY-MM-DDTHH:MM:SS.mmmZ` (every accepted form, with its output, is in
//! `tests/it/table.rs`).
//!
//! ```
//! use freshet_timestamp::{normalize, TsInput};
//! assert_eq!(normalize("2021-12-03 16:15:30.2359+02:00").unwrap().as_str(), "2021-12-03T14:15:30.235Z");
//! assert_eq!(normalize(1726668850124_i64).unwrap().as_str(), "2024-09-18T14:14:10.124Z");
//! assert_eq!(normalize(TsInput::Float(1726667942.5)).unwrap().as_str(), "2024-09-18T13:59:02.500Z");
//! assert_eq!(normalize("2023-02-30T00:00:00Z").unwrap_err().to_string(), "February 30 does not exist in 2023 at byte 8");
//! // The same instant as a number, for code that only computes with it:
//! assert_eq!(freshet_timestamp::unix_millis("2024-09-18T16:14:10.124+02:00").unwrap(), 1726668850124);
//! ```
//!
//! # Accepted forms
//!
//! **Strings in ISO 8601 / RFC 3339 extended form** (a string is read as one when its fifth
//! byte is `-`): `YYYY-MM-DD`, then `T`, `t` or a space, then `HH:MM`, optionally `:SS`,
//! optionally `.` or `,` and 1 to 9 fraction digits, then optionally a zone: `Z`, `z`, or a
//! numeric offset `±HH`, `±HHMM` or `±HH:MM` (hours 00-23, minutes 00-59). No zone means UTC.
//! Fractions are truncated to milliseconds, never rounded. Strictly validated: month 01-12,
//! the day must exist in that month of that year (Feb 29 only in leap years), hour 00-23
//! (`24:00:00` is rejected: write `00:00:00` of the next day), minute 00-59, second 00-59
//! (a leap second `:60` is rejected: Unix time cannot represent it). Years are 0000-9999, and
//! the instant in UTC must stay inside them after the offset is applied. No surrounding
//! whitespace, no date-only values, no basic format (`20211203T161530Z`), no zone names.
//!
//! **Unix epoch numbers**: [`TsInput::Int`], [`TsInput::UInt`], [`TsInput::Float`], or a string
//! of the form `-?[0-9]+(\.[0-9]+)?` (anything else that is not ISO is an error). The unit is
//! chosen by the magnitude of the integer part, `n = |integer part|`:
//!
//! | `n` | unit | covers |
//! |---|---|---|
//! | `n < 10^11` | seconds | up to 5138-11-16 |
//! | `10^11 <= n < 10^14` | milliseconds | 1973-03-03 to 5138-11-16 |
//! | `10^14 <= n < 10^17` | microseconds | same |
//! | `10^17 <= n < 10^19` | nanoseconds | 1973-03-03 to 2286-11-20 (to 2262 for `i64`) |
//!
//! So `969286895000` is milliseconds (2000-09-18T14:21:35.000Z) and `3336042095` is seconds
//! (2075-09-18T14:21:35.000Z). Seconds after year 5138, or milliseconds before 1973-03-03,
//! cannot be written as epoch numbers; use ISO for them. Negative numbers count back from
//! 1970 down to 0000-01-01 with the same rule on `|n|`. Sub-millisecond parts are truncated
//! towards the past (`-0.0005` s is `1969-12-31T23:59:59.999Z`, like the ISO digits). A float
//! is read as the shortest decimal that converts back to the same `f64` (what a JSON encoder
//! writes), so `1726667942.123` means .123 s, not the binary value just below it. NaN and
//! infinities are rejected; so are `n >= 10^19` and anything outside years 0000-9999.
//!
//! # Errors
//!
//! [`TimestampError`] says what is wrong and, where it applies, at which byte (0-based) of the
//! string: `month 13 out of range (01-12) at byte 5`, `February 29 does not exist in 2023 at
//! byte 8`, `trailing characters at byte 23`, `empty input`, `unsupported type boolean`.
//!
//! # Cost
//!
//! No allocation: the result is a 24-byte [`NormalizedTs`]. With the `serde_json` feature,
//! [`normalize_json`] takes a `&serde_json::Value` directly.

mod civil;
mod epoch;
mod error;
mod iso;

use std::fmt;

use civil::Civil;
pub use error::{ErrorKind, TimestampError, Unit};

/// A timestamp as it arrives: the string or number of a JSON field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TsInput<'a> {
    /// ISO 8601 text or a decimal epoch number.
    Str(&'a str),
    /// An epoch number (JSON integer).
    Int(i64),
    /// An epoch number (JSON integer above `i64::MAX`).
    UInt(u64),
    /// An epoch number (JSON number with a fraction or exponent).
    Float(f64),
}

impl<'a> From<&'a str> for TsInput<'a> {
    fn from(s: &'a str) -> Self {
        TsInput::Str(s)
    }
}

impl From<i64> for TsInput<'_> {
    fn from(n: i64) -> Self {
        TsInput::Int(n)
    }
}

impl From<u64> for TsInput<'_> {
    fn from(n: u64) -> Self {
        TsInput::UInt(n)
    }
}

impl From<f64> for TsInput<'_> {
    fn from(f: f64) -> Self {
        TsInput::Float(f)
    }
}

/// A normalised timestamp, `YYYY-MM-DDTHH:MM:SS.mmmZ` (always 24 ASCII bytes). Ordering is
/// chronological.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalizedTs([u8; 24]);

impl NormalizedTs {
    pub fn as_str(&self) -> &str {
        match std::str::from_utf8(&self.0) {
            Ok(s) => s,
            Err(_) => unreachable!("NormalizedTs is ASCII by construction"),
        }
    }

    pub fn as_bytes(&self) -> &[u8; 24] {
        &self.0
    }

    /// The instant `ms` milliseconds after 1970-01-01T00:00:00Z, or `None` outside years
    /// 0000..=9999 (what the 24-byte form can show).
    pub fn from_unix_millis(ms: i64) -> Option<NormalizedTs> {
        (civil::MIN_MS..=civil::MAX_MS)
            .contains(&ms)
            .then(|| NormalizedTs(Civil::from_unix_ms(ms).format()))
    }

    /// Milliseconds since 1970-01-01T00:00:00Z (negative before).
    pub fn unix_millis(&self) -> i64 {
        let b = &self.0;
        let n = |range: std::ops::Range<usize>| {
            b[range]
                .iter()
                .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'))
        };
        // Two-digit fields are below 100, so the casts cannot truncate.
        let civil = Civil {
            year: n(0..4),
            month: n(5..7) as u8,
            day: n(8..10) as u8,
            hour: n(11..13) as u8,
            minute: n(14..16) as u8,
            second: n(17..19) as u8,
            milli: n(20..23),
        };
        civil.to_unix_ms()
    }
}

impl fmt::Display for NormalizedTs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NormalizedTs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NormalizedTs({:?})", self.as_str())
    }
}

impl AsRef<str> for NormalizedTs {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Normalises one timestamp; see the crate docs for the accepted forms.
pub fn normalize<'a>(input: impl Into<TsInput<'a>>) -> Result<NormalizedTs, TimestampError> {
    match input.into() {
        // ISO fields go straight to the normalised form, not through milliseconds.
        TsInput::Str(s) if matches!(string_form(s.as_bytes())?, StringForm::Iso) => {
            Ok(NormalizedTs(iso::parse(s.as_bytes())?.format()))
        }
        other => unix_millis(other).map(from_unix_ms),
    }
}

/// The instant of one timestamp in Unix milliseconds: `normalize(input)?.unix_millis()`,
/// with the same errors, without writing the normalised form and reading it back.
pub fn unix_millis<'a>(input: impl Into<TsInput<'a>>) -> Result<i64, TimestampError> {
    match input.into() {
        TsInput::Str(s) => match string_form(s.as_bytes())? {
            StringForm::Iso => Ok(iso::parse(s.as_bytes())?.to_unix_ms()),
            StringForm::Epoch => epoch::from_decimal(s.as_bytes()),
        },
        TsInput::Int(n) => epoch::from_integer(n < 0, n.unsigned_abs()),
        TsInput::UInt(n) => epoch::from_integer(false, n),
        TsInput::Float(f) => epoch::from_float(f),
    }
}

/// How a string is read.
enum StringForm {
    Iso,
    Epoch,
}

/// ISO 8601 when the fifth byte is `-`, otherwise a decimal epoch number.
fn string_form(s: &[u8]) -> Result<StringForm, TimestampError> {
    match s {
        [] => Err(TimestampError::new(ErrorKind::Empty)),
        [_, _, _, _, b'-', ..] => Ok(StringForm::Iso),
        [b'0'..=b'9' | b'-', ..] => Ok(StringForm::Epoch),
        _ => Err(TimestampError::unexpected(
            "a digit (ISO 8601 date or epoch number)",
            s,
            0,
        )),
    }
}

/// `ms` must lie within years 0000-9999.
fn from_unix_ms(ms: i64) -> NormalizedTs {
    NormalizedTs(Civil::from_unix_ms(ms).format())
}

#[cfg(feature = "serde_json")]
impl<'a> TryFrom<&'a serde_json::Value> for TsInput<'a> {
    type Error = TimestampError;

    /// Strings and numbers; other JSON types are `unsupported type <name>`.
    fn try_from(value: &'a serde_json::Value) -> Result<Self, Self::Error> {
        use serde_json::Value;
        let unsupported = |name| Err(TimestampError::new(ErrorKind::UnsupportedType(name)));
        match value {
            Value::String(s) => Ok(TsInput::Str(s)),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Ok(TsInput::Int(i)),
                (None, Some(u), _) => Ok(TsInput::UInt(u)),
                (None, None, Some(f)) => Ok(TsInput::Float(f)),
                (None, None, None) => unsupported("number"),
            },
            Value::Null => unsupported("null"),
            Value::Bool(_) => unsupported("boolean"),
            Value::Array(_) => unsupported("array"),
            Value::Object(_) => unsupported("object"),
        }
    }
}

/// Normalises a JSON field's value (strings and numbers; see the crate docs).
#[cfg(feature = "serde_json")]
pub fn normalize_json(value: &serde_json::Value) -> Result<NormalizedTs, TimestampError> {
    normalize(TsInput::try_from(value)?)
}

//! What went wrong, and where.

use std::fmt;

/// Why an input is not a timestamp, with the byte position (0-based, into the string input or
/// into the digit form of a number) where the problem starts, when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct TimestampError {
    kind: ErrorKind,
    position: Option<usize>,
}

/// The kinds of [`TimestampError`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The string is empty.
    Empty,
    /// A JSON value that is neither a string nor a number (`"boolean"`, `"null"`, ...).
    UnsupportedType(&'static str),
    /// Another character (or the end of input, `None`) where `expected` should be.
    Unexpected {
        expected: &'static str,
        found: Option<char>,
    },
    /// Characters after a complete timestamp.
    Trailing,
    /// A date with no time of day (`2021-12-03`).
    DateWithoutTime,
    MonthOutOfRange(u8),
    DayOutOfRange(u8),
    /// A day that the month does not have in that year (February 30, or February 29 in a
    /// common year).
    DayNotInMonth {
        year: u16,
        month: u8,
        day: u8,
    },
    /// Hours run from 00 to 23 (`24:00:00` is rejected too).
    HourOutOfRange(u8),
    MinuteOutOfRange(u8),
    /// Seconds run from 00 to 59; 60 (a leap second) cannot be represented in Unix time.
    SecondOutOfRange(u8),
    /// More than 9 digits after the decimal point of a time of day.
    TooManyFractionDigits,
    OffsetHourOutOfRange(u8),
    OffsetMinuteOutOfRange(u8),
    /// The instant falls outside `0000-01-01T00:00:00Z..=9999-12-31T23:59:59.999Z`.
    OutOfRange,
    /// An epoch number whose instant falls outside years 0000-9999 (or a digit string with
    /// more than 19 integer digits).
    EpochOutOfRange(Unit),
    /// NaN or an infinity.
    NotFinite,
}

/// The unit an epoch number was read in, chosen by its magnitude (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Milliseconds => "milliseconds",
            Unit::Microseconds => "microseconds",
            Unit::Nanoseconds => "nanoseconds",
        }
    }
}

impl TimestampError {
    pub(crate) fn at(kind: ErrorKind, position: usize) -> Self {
        TimestampError {
            kind,
            position: Some(position),
        }
    }

    pub(crate) fn new(kind: ErrorKind) -> Self {
        TimestampError {
            kind,
            position: None,
        }
    }

    pub(crate) fn unexpected(expected: &'static str, input: &[u8], position: usize) -> Self {
        let found = input.get(position).map(|&b| {
            if b.is_ascii() {
                char::from(b)
            } else {
                // Report the whole character, not one byte of it.
                decode_char_at(input, position)
            }
        });
        Self::at(ErrorKind::Unexpected { expected, found }, position)
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Byte offset (0-based) where the problem starts, if it has one.
    pub fn position(&self) -> Option<usize> {
        self.position
    }
}

fn decode_char_at(input: &[u8], position: usize) -> char {
    let end = (position + 4).min(input.len());
    (position + 1..=end)
        .rev()
        .find_map(|e| std::str::from_utf8(&input[position..e]).ok())
        .and_then(|s| s.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Empty => f.write_str("empty input"),
            ErrorKind::UnsupportedType(t) => write!(f, "unsupported type {t}"),
            ErrorKind::Unexpected {
                expected,
                found: Some(c),
            } => write!(f, "expected {expected}, found {c:?}"),
            ErrorKind::Unexpected {
                expected,
                found: None,
            } => write!(f, "expected {expected}, found end of input"),
            ErrorKind::Trailing => f.write_str("trailing characters"),
            ErrorKind::DateWithoutTime => f.write_str("date without a time of day"),
            ErrorKind::MonthOutOfRange(m) => write!(f, "month {m} out of range (01-12)"),
            ErrorKind::DayOutOfRange(d) => write!(f, "day {d} out of range (01-31)"),
            ErrorKind::DayNotInMonth { year, month, day } => {
                let name = MONTHS[usize::from(month.saturating_sub(1)) % 12];
                write!(f, "{name} {day} does not exist in {year:04}")
            }
            ErrorKind::HourOutOfRange(h) => write!(f, "hour {h} out of range (00-23)"),
            ErrorKind::MinuteOutOfRange(m) => write!(f, "minute {m} out of range (00-59)"),
            ErrorKind::SecondOutOfRange(60) => {
                f.write_str("second 60 (leap second) is not supported")
            }
            ErrorKind::SecondOutOfRange(s) => write!(f, "second {s} out of range (00-59)"),
            ErrorKind::TooManyFractionDigits => f.write_str("more than 9 fraction digits"),
            ErrorKind::OffsetHourOutOfRange(h) => {
                write!(f, "offset hour {h} out of range (00-23)")
            }
            ErrorKind::OffsetMinuteOutOfRange(m) => {
                write!(f, "offset minute {m} out of range (00-59)")
            }
            ErrorKind::OutOfRange => f.write_str("instant outside years 0000-9999 in UTC"),
            ErrorKind::EpochOutOfRange(unit) => {
                write!(f, "epoch {} value outside years 0000-9999", unit.name())
            }
            ErrorKind::NotFinite => f.write_str("NaN or infinite number"),
        }
    }
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(at) => write!(f, "{} at byte {at}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for TimestampError {}

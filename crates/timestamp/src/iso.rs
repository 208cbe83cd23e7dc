//! ISO 8601 / RFC 3339 date-times: `YYYY-MM-DD(T|t| )HH:MM[:SS[(.|,)F{1,9}]][Z|z|±HH[[:]MM]]`.

use crate::civil::{days_in_month, Civil, MAX_MS, MIN_MS};
use crate::error::{ErrorKind, TimestampError};

type Result<T> = std::result::Result<T, TimestampError>;

/// Parses a whole ISO 8601 string into a UTC instant.
pub(crate) fn parse(s: &[u8]) -> Result<Civil> {
    let mut civil = date(s)?;
    let mut at = 10;
    match s.get(at) {
        Some(b'T' | b't' | b' ') => at += 1,
        None => return Err(TimestampError::at(ErrorKind::DateWithoutTime, at)),
        Some(_) => return Err(TimestampError::unexpected("'T' or ' '", s, at)),
    }
    at = time(s, at, &mut civil)?;
    let offset_minutes = match s.get(at) {
        None => 0,
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(b'+' | b'-') => {
            let (minutes, end) = offset(s, at)?;
            at = end;
            minutes
        }
        Some(_) => {
            return Err(TimestampError::unexpected(
                "'Z', '+', '-' or the end",
                s,
                at,
            ))
        }
    };
    if at != s.len() {
        return Err(TimestampError::at(ErrorKind::Trailing, at));
    }
    if offset_minutes == 0 {
        return Ok(civil);
    }
    shift(civil, offset_minutes)
}

/// `YYYY-MM-DD`, validated (month range, days of that month in that year).
fn date(s: &[u8]) -> Result<Civil> {
    let year = digits4(s, 0)?;
    expect(s, 4, b'-', "'-'")?;
    let month = digits2(s, 5)?;
    if !(1..=12).contains(&month) {
        return Err(TimestampError::at(ErrorKind::MonthOutOfRange(month), 5));
    }
    expect(s, 7, b'-', "'-'")?;
    let day = digits2(s, 8)?;
    if !(1..=31).contains(&day) {
        return Err(TimestampError::at(ErrorKind::DayOutOfRange(day), 8));
    }
    if day > days_in_month(year, month) {
        let kind = ErrorKind::DayNotInMonth { year, month, day };
        return Err(TimestampError::at(kind, 8));
    }
    Ok(Civil {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        milli: 0,
    })
}

/// `HH:MM[:SS[.F]]` from `at`; returns the position after it.
fn time(s: &[u8], mut at: usize, civil: &mut Civil) -> Result<usize> {
    civil.hour = bounded(s, at, 23, ErrorKind::HourOutOfRange)?;
    expect(s, at + 2, b':', "':'")?;
    civil.minute = bounded(s, at + 3, 59, ErrorKind::MinuteOutOfRange)?;
    at += 5;
    if s.get(at) != Some(&b':') {
        return Ok(at);
    }
    civil.second = bounded(s, at + 1, 59, ErrorKind::SecondOutOfRange)?;
    at += 3;
    if let Some(b'.' | b',') = s.get(at) {
        let (milli, end) = fraction(s, at + 1)?;
        civil.milli = milli;
        at = end;
    }
    Ok(at)
}

/// 1 to 9 fraction digits from `at`, truncated to milliseconds.
fn fraction(s: &[u8], at: usize) -> Result<(u16, usize)> {
    let count = s[at.min(s.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if count == 0 {
        return Err(TimestampError::unexpected("a fraction digit", s, at));
    }
    if count > 9 {
        return Err(TimestampError::at(ErrorKind::TooManyFractionDigits, at + 9));
    }
    let milli = s[at..at + count.min(3)]
        .iter()
        .chain([b'0', b'0'].iter())
        .take(3)
        .fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0'));
    Ok((milli, at + count))
}

/// `±HH`, `±HHMM` or `±HH:MM` from `at` (the sign); returns minutes east of UTC and the end.
fn offset(s: &[u8], at: usize) -> Result<(i32, usize)> {
    let sign = if s[at] == b'-' { -1 } else { 1 };
    let hours = bounded(s, at + 1, 23, ErrorKind::OffsetHourOutOfRange)?;
    let mut end = at + 3;
    let minutes_at = match s.get(end) {
        None => return Ok((sign * i32::from(hours) * 60, end)),
        Some(b':') => end + 1,
        Some(_) => end,
    };
    let minutes = bounded(s, minutes_at, 59, ErrorKind::OffsetMinuteOutOfRange)?;
    end = minutes_at + 2;
    Ok((sign * (i32::from(hours) * 60 + i32::from(minutes)), end))
}

/// Converts local `civil` at `offset_minutes` east of UTC to UTC.
fn shift(civil: Civil, offset_minutes: i32) -> Result<Civil> {
    let ms = civil.to_unix_ms() - i64::from(offset_minutes) * 60_000;
    if !(MIN_MS..=MAX_MS).contains(&ms) {
        return Err(TimestampError::new(ErrorKind::OutOfRange));
    }
    Ok(Civil::from_unix_ms(ms))
}

fn expect(s: &[u8], at: usize, byte: u8, what: &'static str) -> Result<()> {
    if s.get(at) == Some(&byte) {
        Ok(())
    } else {
        Err(TimestampError::unexpected(what, s, at))
    }
}

fn digit(s: &[u8], at: usize) -> Result<u8> {
    match s.get(at) {
        Some(b) if b.is_ascii_digit() => Ok(b - b'0'),
        _ => Err(TimestampError::unexpected("a digit", s, at)),
    }
}

fn digits2(s: &[u8], at: usize) -> Result<u8> {
    Ok(digit(s, at)? * 10 + digit(s, at + 1)?)
}

fn digits4(s: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from(digits2(s, at)?) * 100 + u16::from(digits2(s, at + 2)?))
}

/// Two digits at `at` that must not exceed `max`.
fn bounded(s: &[u8], at: usize, max: u8, kind: fn(u8) -> ErrorKind) -> Result<u8> {
    let value = digits2(s, at)?;
    if value > max {
        return Err(TimestampError::at(kind(value), at));
    }
    Ok(value)
}

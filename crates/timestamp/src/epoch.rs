//! Unix epoch numbers: integers, floats and decimal digit strings, in a unit chosen by magnitude.

use std::fmt::Write as _;

use crate::civil::{MAX_MS, MIN_MS};
use crate::error::{ErrorKind, TimestampError, Unit};

type Result<T> = std::result::Result<T, TimestampError>;

/// The unit of an epoch number whose integer part has magnitude `abs`.
pub(crate) fn unit_of(abs: u64) -> Unit {
    match abs {
        0..100_000_000_000 => Unit::Seconds,
        100_000_000_000..100_000_000_000_000 => Unit::Milliseconds,
        100_000_000_000_000..100_000_000_000_000_000 => Unit::Microseconds,
        _ => Unit::Nanoseconds,
    }
}

/// Unix milliseconds of the integer `±abs`.
pub(crate) fn from_integer(negative: bool, abs: u64) -> Result<i64> {
    // `from_parts` with no fraction digits, written out so no fraction code is on this path.
    let unit = unit_of(abs);
    let (abs_ms, rest_nonzero) = match unit {
        Unit::Seconds => (abs * 1000, false),
        Unit::Milliseconds => (abs, false),
        Unit::Microseconds => (abs / 1000, abs % 1000 != 0),
        Unit::Nanoseconds if abs < 10_000_000_000_000_000_000 => {
            (abs / 1_000_000, abs % 1_000_000 != 0)
        }
        Unit::Nanoseconds => return Err(TimestampError::new(ErrorKind::EpochOutOfRange(unit))),
    };
    // abs_ms < 10^16 in every unit (abs < 10^19), so it fits in i64.
    let abs_ms = abs_ms as i64;
    let ms = if negative {
        -abs_ms - i64::from(rest_nonzero)
    } else {
        abs_ms
    };
    in_range(ms, unit)
}

/// Unix milliseconds of `±int.frac` (`frac` holds ASCII digits), rounded towards the past.
fn from_parts(negative: bool, int: u64, frac: &[u8]) -> Result<i64> {
    let unit = unit_of(int);
    if int >= 10_000_000_000_000_000_000 {
        return Err(TimestampError::new(ErrorKind::EpochOutOfRange(unit)));
    }
    let frac_nonzero = |from: usize| frac.iter().skip(from).any(|&b| b != b'0');
    let (abs_ms, rest_nonzero) = match unit {
        Unit::Seconds => (int * 1000 + u64::from(frac_millis(frac)), frac_nonzero(3)),
        Unit::Milliseconds => (int, frac_nonzero(0)),
        Unit::Microseconds => (int / 1000, int % 1000 != 0 || frac_nonzero(0)),
        Unit::Nanoseconds => (int / 1_000_000, int % 1_000_000 != 0 || frac_nonzero(0)),
    };
    // abs_ms < 10^16 in every unit (int < 10^19), so it fits in i64.
    let abs_ms = abs_ms as i64;
    let ms = if negative {
        -abs_ms - i64::from(rest_nonzero)
    } else {
        abs_ms
    };
    in_range(ms, unit)
}

fn in_range(ms: i64, unit: Unit) -> Result<i64> {
    if !(MIN_MS..=MAX_MS).contains(&ms) {
        return Err(TimestampError::new(ErrorKind::EpochOutOfRange(unit)));
    }
    Ok(ms)
}

/// The floats whose shortest decimal is known without writing it out: integral floats below
/// 2^53 are that integer, and a seconds float (|f| < 10^11) equal to the `f64` nearest to a
/// whole number of milliseconds `r / 1000` is `r` ms (there an `f64`'s rounding interval is
/// narrower than 1 ms, so its shortest decimal is that multiple of 0.001).
fn fast_float(f: f64) -> Option<Result<i64>> {
    if f.trunc() == f && f.abs() < 9e15 {
        let n = f as i64;
        return Some(from_integer(n < 0, n.unsigned_abs()));
    }
    if f.abs() < 1e11 {
        let r = (f * 1000.0).round();
        if r / 1000.0 == f {
            return Some(in_range(r as i64, Unit::Seconds));
        }
    }
    None
}

/// The first three fraction digits as milliseconds (missing digits are zeros).
fn frac_millis(frac: &[u8]) -> u16 {
    frac.iter()
        .chain(b"000")
        .take(3)
        .fold(0, |acc, &b| acc * 10 + u16::from(b - b'0'))
}

/// Unix milliseconds of a decimal string `-?[0-9]+(\.[0-9]+)?`.
pub(crate) fn from_decimal(s: &[u8]) -> Result<i64> {
    let negative = s.first() == Some(&b'-');
    let start = usize::from(negative);
    let int_len = digit_run(&s[start..]);
    if int_len == 0 {
        return Err(TimestampError::unexpected("a digit", s, start));
    }
    let int_end = start + int_len;
    let int = if int_len <= 19 {
        // At most 19 digits: below 10^19 < u64::MAX, no overflow possible.
        Some(parse_digits(&s[start..int_end]))
    } else {
        s[start..int_end].iter().try_fold(0u64, |acc, &b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
    };
    let Some(int) = int.filter(|&v| v < 10_000_000_000_000_000_000) else {
        let kind = ErrorKind::EpochOutOfRange(Unit::Nanoseconds);
        return Err(TimestampError::at(kind, start));
    };
    let frac = match s.get(int_end) {
        None => &s[int_end..],
        Some(b'.') => fraction_digits(s, int_end + 1)?,
        Some(_) => return Err(TimestampError::unexpected("a digit or '.'", s, int_end)),
    };
    from_parts(negative, int, frac)
}

/// The number of ASCII digits at the start of `s`, eight bytes at a time where possible.
fn digit_run(s: &[u8]) -> usize {
    let mut len = 0;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        if !all_digits8(load8(chunk)) {
            break;
        }
        len += 8;
    }
    len + s[len..].iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Eight bytes, the first in the lowest byte.
#[inline(always)]
fn load8(chunk: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(chunk);
    u64::from_le_bytes(bytes)
}

/// Whether all eight bytes of `v` are ASCII digits (Lemire's `is_made_of_eight_digits_fast`).
#[inline(always)]
fn all_digits8(v: u64) -> bool {
    (v & v.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) == 0x3030_3030_3030_3030
}

/// The value of eight ASCII digits loaded by [`load8`] (SWAR, Lemire's
/// `parse_eight_digits_unrolled`).
#[inline(always)]
fn parse8(v: u64) -> u64 {
    let v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul((10 << 8) + 1) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul((100 << 16) + 1) >> 16;
    (v & 0x0000_FFFF_0000_FFFF).wrapping_mul((10_000 << 32) + 1) >> 32
}

/// The value of 1 to 19 ASCII digits.
fn parse_digits(digits: &[u8]) -> u64 {
    let mut value = 0;
    let mut chunks = digits.chunks_exact(8);
    for chunk in &mut chunks {
        value = value * 100_000_000 + parse8(load8(chunk));
    }
    chunks
        .remainder()
        .iter()
        .fold(value, |acc, &b| acc * 10 + u64::from(b - b'0'))
}

/// The digits from `at` to the end of `s` (at least one, nothing else).
fn fraction_digits(s: &[u8], at: usize) -> Result<&[u8]> {
    let frac = &s[at..];
    match frac.iter().position(|b| !b.is_ascii_digit()) {
        _ if frac.is_empty() => Err(TimestampError::unexpected("a fraction digit", s, at)),
        Some(bad) => Err(TimestampError::unexpected("a digit", s, at + bad)),
        None => Ok(frac),
    }
}

/// Unix milliseconds of a float, read as the shortest decimal that converts back to the same
/// `f64` (so `1726667942.123` means .123 s, not the binary value just below it).
pub(crate) fn from_float(f: f64) -> Result<i64> {
    if !f.is_finite() {
        return Err(TimestampError::new(ErrorKind::NotFinite));
    }
    if f.abs() >= 1e19 {
        return Err(TimestampError::new(ErrorKind::EpochOutOfRange(
            Unit::Nanoseconds,
        )));
    }
    if f.abs() < 1e-3 {
        // Seconds below one millisecond: the epoch itself, or 1 ms before it.
        return Ok(if f < 0.0 { -1 } else { 0 });
    }
    if let Some(result) = fast_float(f) {
        return result;
    }
    let mut buf = DecimalBuf::default();
    // |f| in [1e-3, 1e19): at most 20 integer digits, or "0." + 2 zeros + 17 digits.
    let _ = write!(buf, "{f}");
    from_decimal(&buf.bytes[..buf.len])
}

/// A fixed stack buffer for `f64`'s `Display` output.
struct DecimalBuf {
    bytes: [u8; 48],
    len: usize,
}

impl Default for DecimalBuf {
    fn default() -> Self {
        DecimalBuf {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl std::fmt::Write for DecimalBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_digits_match_bytewise() {
        for s in [
            &b"0"[..],
            b"12345678",
            b"1726668850124",
            b"9999999999999999999",
            b"0000000000000000001",
            b"1234567890123456789",
            b"87654321x",
            b"1234567/",
            b"12345:78",
        ] {
            let run = s.iter().take_while(|b| b.is_ascii_digit()).count();
            assert_eq!(digit_run(s), run, "{s:?}");
            let slow = s[..run]
                .iter()
                .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
            assert_eq!(parse_digits(&s[..run]), slow, "{s:?}");
        }
        // Every byte value in every position of an 8-byte chunk.
        for pos in 0..8 {
            for b in 0..=255u8 {
                let mut chunk = *b"12345678";
                chunk[pos] = b;
                assert_eq!(all_digits8(load8(&chunk)), b.is_ascii_digit(), "{pos} {b}");
            }
        }
    }
}

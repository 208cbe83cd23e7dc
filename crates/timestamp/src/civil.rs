//! Proleptic Gregorian calendar arithmetic (Howard Hinnant's `days_from_civil` and
//! `civil_from_days`) and the fixed-width output writer.

/// Milliseconds per day.
pub(crate) const MS_PER_DAY: i64 = 86_400_000;
/// `0000-01-01T00:00:00.000Z` in Unix milliseconds.
pub(crate) const MIN_MS: i64 = -62_167_219_200_000;
/// `9999-12-31T23:59:59.999Z` in Unix milliseconds.
pub(crate) const MAX_MS: i64 = 253_402_300_799_999;

/// A broken-down UTC instant with millisecond precision. Fields are trusted to be in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub milli: u16,
}

pub(crate) fn is_leap(year: u16) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(crate) fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a valid date.
pub(crate) fn days_from_civil(year: u16, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01; `days` must lie within years 0000-9999.
fn civil_from_days(days: i64) -> (u16, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // In range by the caller's contract (MIN_MS..=MAX_MS), so the casts cannot truncate.
    (year as u16, month as u8, day as u8)
}

impl Civil {
    /// Unix milliseconds of this instant.
    pub(crate) fn to_unix_ms(self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs =
            i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        days * MS_PER_DAY + secs * 1000 + i64::from(self.milli)
    }

    /// The instant `ms` Unix milliseconds; `ms` must lie within `MIN_MS..=MAX_MS`.
    pub(crate) fn from_unix_ms(ms: i64) -> Self {
        let days = ms.div_euclid(MS_PER_DAY);
        let in_day = ms.rem_euclid(MS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let secs = in_day / 1000;
        // All below 86_400_000, so the casts cannot truncate.
        Civil {
            year,
            month,
            day,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
            milli: (in_day % 1000) as u16,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub(crate) fn format(self) -> [u8; 24] {
        let mut out = *b"0000-00-00T00:00:00.000Z";
        put4(&mut out, 0, self.year);
        put2(&mut out, 5, self.month);
        put2(&mut out, 8, self.day);
        put2(&mut out, 11, self.hour);
        put2(&mut out, 14, self.minute);
        put2(&mut out, 17, self.second);
        out[20] = b'0' + (self.milli / 100) as u8;
        put2(&mut out, 21, (self.milli % 100) as u8);
        out
    }
}

fn put2(out: &mut [u8; 24], at: usize, value: u8) {
    out[at] = b'0' + value / 10;
    out[at + 1] = b'0' + value % 10;
}

fn put4(out: &mut [u8; 24], at: usize, value: u16) {
    put2(out, at, (value / 100) as u8);
    put2(out, at + 2, (value % 100) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip_over_the_whole_range() {
        let first = days_from_civil(0, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        assert_eq!(first * MS_PER_DAY, MIN_MS);
        assert_eq!((last + 1) * MS_PER_DAY - 1, MAX_MS);
        for days in first..=last {
            let (y, m, d) = civil_from_days(days);
            assert!(d >= 1 && d <= days_in_month(y, m), "{y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}

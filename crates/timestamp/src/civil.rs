//! Proleptic Gregorian calendar arithmetic (Howard Hinnant's `days_from_civil`, Neri and
//! Schneider's `civil_from_days`, both in 32-bit arithmetic) and the fixed-width output writer.

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

/// Days from 0000-01-01 to 1970-01-01.
const UNIX_EPOCH_DAY: u32 = 719_528;
/// Days in a 400-year Gregorian cycle.
const DAYS_PER_ERA: u32 = 146_097;

/// Days since 1970-01-01 of a valid date.
pub(crate) fn days_from_civil(year: u16, month: u8, day: u8) -> i64 {
    // Hinnant's algorithm in u32, on years shifted by one era so they stay non-negative.
    let (m, d) = (u32::from(month), u32::from(day));
    let y = u32::from(year) + 400 - u32::from(month <= 2);
    let era = y / 400;
    let yoe = y % 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // era * 146_097 + doe counts from 0000-03-01 minus one era (-400-03-01).
    i64::from(era * DAYS_PER_ERA + doe) - i64::from(DAYS_PER_ERA + UNIX_EPOCH_DAY - 60)
}

/// The date `days` after 0000-01-01 (at most 9999-12-31), by Neri and Schneider's Euclidean
/// affine functions in 32-bit arithmetic ("Euclidean affine functions and their application to
/// calendar algorithms", 2022).
fn civil_from_days0(days: u32) -> (u16, u8, u8) {
    // Days since -400-03-01 (a March-based year, shifted one era to stay non-negative; year 0
    // is a leap year, so 0000-03-01 is day 60 of 0000).
    let n = days + DAYS_PER_ERA - 60;
    let n1 = 4 * n + 3;
    let century = n1 / DAYS_PER_ERA;
    let day_of_century = n1 % DAYS_PER_ERA / 4;
    let n2 = 4 * day_of_century + 3;
    let p2 = 2_939_745 * u64::from(n2);
    let year_of_century = (p2 >> 32) as u32;
    let day_of_year = (p2 as u32) / 2_939_745 / 4;
    let n3 = 2141 * day_of_year + 197_913;
    let month = n3 >> 16;
    let day = (n3 & 0xFFFF) / 2141 + 1;
    let jan_feb = day_of_year >= 306;
    let year = 100 * century + year_of_century + u32::from(jan_feb) - 400;
    let month = if jan_feb { month - 12 } else { month };
    // Year <= 9999, month 1-12, day 1-31 for days within 0000-01-01..=9999-12-31.
    (year as u16, month as u8, day as u8)
}

/// The date `days` after 1970-01-01; `days` must lie within years 0000-9999.
#[cfg(test)]
fn civil_from_days(days: i64) -> (u16, u8, u8) {
    civil_from_days0((days + i64::from(UNIX_EPOCH_DAY)) as u32)
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
        // MIN_MS is a whole number of days (0000-01-01), so counting from it keeps the value
        // non-negative and the day split is the Euclidean one.
        let since_min = ms.wrapping_sub(MIN_MS) as u64;
        let days = (since_min / MS_PER_DAY as u64) as u32;
        let in_day = (since_min % MS_PER_DAY as u64) as u32;
        let (year, month, day) = civil_from_days0(days);
        let secs = in_day / 1000;
        let mins = secs / 60;
        // All below 86_400_000, so the casts cannot truncate.
        Civil {
            year,
            month,
            day,
            hour: (mins / 60) as u8,
            minute: (mins % 60) as u8,
            second: (secs % 60) as u8,
            milli: (in_day % 1000) as u16,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    #[inline]
    pub(crate) fn format(self) -> [u8; 24] {
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let year = usize::from(self.year);
        put2(&mut out, 0, year / 100);
        put2(&mut out, 2, year % 100);
        put2(&mut out, 5, usize::from(self.month));
        put2(&mut out, 8, usize::from(self.day));
        put2(&mut out, 11, usize::from(self.hour));
        put2(&mut out, 14, usize::from(self.minute));
        put2(&mut out, 17, usize::from(self.second));
        let milli = usize::from(self.milli);
        out[20] = b'0' + (milli / 100) as u8;
        put2(&mut out, 21, milli % 100);
        out
    }
}

/// `"00" "01" ... "99"`: two ASCII digits per entry.
const PAIRS: [[u8; 2]; 100] = {
    let mut table = [[0; 2]; 100];
    let mut i = 0;
    while i < 100 {
        table[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    table
};

/// Writes `value` (below 100) as two digits at `at`.
#[inline(always)]
fn put2(out: &mut [u8; 24], at: usize, value: usize) {
    let pair = PAIRS[value % 100];
    out[at] = pair[0];
    out[at + 1] = pair[1];
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
            assert_eq!((y, m, d), hinnant_civil_from_days(days), "{days}");
        }
    }

    /// The previous (i64, Hinnant) conversion, as a reference for the 32-bit one.
    fn hinnant_civil_from_days(days: i64) -> (u16, u8, u8) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year as u16, month as u8, day as u8)
    }

    #[test]
    fn from_unix_ms_matches_euclidean_split() {
        let probes = [
            MIN_MS,
            MIN_MS + 1,
            -86_400_001,
            -86_400_000,
            -1,
            0,
            1,
            86_399_999,
        ];
        let probes = probes.into_iter().chain([MAX_MS - 1, MAX_MS]);
        for ms in probes.chain((0..200_000).map(|i| MIN_MS + i * 1_267_011_234_567)) {
            if ms > MAX_MS {
                continue;
            }
            let c = Civil::from_unix_ms(ms);
            let in_day = ms.rem_euclid(MS_PER_DAY);
            let date = hinnant_civil_from_days(ms.div_euclid(MS_PER_DAY));
            assert_eq!((c.year, c.month, c.day), date, "{ms}");
            let secs = in_day / 1000;
            assert_eq!(i64::from(c.hour), secs / 3600);
            assert_eq!(i64::from(c.minute), secs / 60 % 60);
            assert_eq!(i64::from(c.second), secs % 60);
            assert_eq!(i64::from(c.milli), in_day % 1000);
            assert_eq!(c.to_unix_ms(), ms);
        }
    }
}

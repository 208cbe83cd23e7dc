//! Rendering events: the JSON value, and timestamps in the seven forms devices send.
//!
//! Hand-written because the generator renders more than a million events per second: the
//! calendar fields change once a second and are cached, and nothing allocates beyond the one
//! reused record buffer.

use std::time::{SystemTime, UNIX_EPOCH};

use super::pool::{write_small, DeviceAddr};

/// The forms the old generator chose from at random (`%f` = 6 digits, UTC, no zone unless `Z`;
/// see `docs/REFERENCE.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampForm {
    /// `%Y-%m-%dT%H:%M:%S.%fZ`
    IsoMicrosZ,
    /// `%Y-%m-%dT%H:%M:%S.%f`
    IsoMicros,
    /// `%Y-%m-%dT%H:%M:%S`
    IsoSeconds,
    /// `%Y-%m-%d %H:%M:%S.%f`
    SpaceMicros,
    /// `%Y-%m-%d %H:%M:%S`
    SpaceSeconds,
    /// Unix milliseconds, as a string of digits.
    UnixMillis,
    /// Unix seconds, as a string of digits.
    UnixSeconds,
}

impl TimestampForm {
    pub(crate) const ALL: [TimestampForm; 7] = [
        TimestampForm::IsoMicrosZ,
        TimestampForm::IsoMicros,
        TimestampForm::IsoSeconds,
        TimestampForm::SpaceMicros,
        TimestampForm::SpaceSeconds,
        TimestampForm::UnixMillis,
        TimestampForm::UnixSeconds,
    ];
}

/// 9999-12-31T23:59:59: the last second with a four-digit year, which the fixed-width
/// calendar rendering relies on.
const MAX_UNIX_SECONDS: u64 = 253_402_300_799;

/// Microseconds since the Unix epoch now. A clock set before 1970 reads as the epoch: the
/// generator needs a plausible time, not a failure.
pub(crate) fn now_micros() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// Renders timestamps, remembering `YYYY-MM-DDTHH:MM:SS` of the last second it rendered.
#[derive(Debug, Clone)]
pub(crate) struct TimestampWriter {
    second: u64,
    date_time: [u8; 19],
}

impl Default for TimestampWriter {
    fn default() -> Self {
        TimestampWriter {
            second: 0,
            date_time: civil_date_time(0),
        }
    }
}

impl TimestampWriter {
    /// Appends the instant `micros` (since the epoch) in `form` to `out`.
    pub(crate) fn write(&mut self, form: TimestampForm, micros: u64, out: &mut Vec<u8>) {
        let micros = micros.min(MAX_UNIX_SECONDS * 1_000_000 + 999_999);
        let seconds = micros / 1_000_000;
        let fraction = (micros % 1_000_000) as u32;
        match form {
            TimestampForm::UnixMillis => write_u64(micros / 1000, out),
            TimestampForm::UnixSeconds => write_u64(seconds, out),
            TimestampForm::IsoMicrosZ => {
                self.write_date_time(seconds, b'T', out);
                write_fraction(fraction, out);
                out.push(b'Z');
            }
            TimestampForm::IsoMicros => {
                self.write_date_time(seconds, b'T', out);
                write_fraction(fraction, out);
            }
            TimestampForm::IsoSeconds => self.write_date_time(seconds, b'T', out),
            TimestampForm::SpaceMicros => {
                self.write_date_time(seconds, b' ', out);
                write_fraction(fraction, out);
            }
            TimestampForm::SpaceSeconds => self.write_date_time(seconds, b' ', out),
        }
    }

    fn write_date_time(&mut self, seconds: u64, separator: u8, out: &mut Vec<u8>) {
        if seconds != self.second {
            self.second = seconds;
            self.date_time = civil_date_time(seconds);
        }
        out.extend_from_slice(&self.date_time[..10]);
        out.push(separator);
        out.extend_from_slice(&self.date_time[11..]);
    }
}

/// `.ffffff`
fn write_fraction(micros: u32, out: &mut Vec<u8>) {
    out.push(b'.');
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
}

/// Decimal digits of `value`, no leading zeros.
fn write_u64(value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second (at most [`MAX_UNIX_SECONDS`]).
fn civil_date_time(seconds: u64) -> [u8; 19] {
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let second_of_day = seconds % 86_400;
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], u64::from(year));
    put_digits(&mut text[5..7], u64::from(month));
    put_digits(&mut text[8..10], u64::from(day));
    put_digits(&mut text[11..13], second_of_day / 3600);
    put_digits(&mut text[14..16], second_of_day / 60 % 60);
    put_digits(&mut text[17..19], second_of_day % 60);
    text
}

/// Fills `slot` with the last `slot.len()` decimal digits of `value`, zero-padded.
fn put_digits(slot: &mut [u8], value: u64) {
    let mut rest = value;
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

/// Year, month, day of a day count since 1970-01-01, by Howard Hinnant's `civil_from_days`
/// (exact for the proleptic Gregorian calendar; only non-negative days occur here).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let shifted = days + 719_468; // days since 0000-03-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC, milliseconds), as job status reports times.
pub(crate) fn rfc3339_millis(time: SystemTime) -> String {
    let micros = time
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(32);
    TimestampWriter::default().write(TimestampForm::IsoMicrosZ, micros, &mut out);
    // Drop the microsecond digits after the milliseconds, keeping the `Z`.
    out.drain(23..26);
    String::from_utf8(out).unwrap_or_default()
}

/// One event's value, and where its device address sits inside it (the record key).
#[derive(Debug, Default)]
pub(crate) struct EventBuffer {
    bytes: Vec<u8>,
    ip: std::ops::Range<usize>,
    timestamps: TimestampWriter,
}

impl EventBuffer {
    /// Renders `{"timestamp": "...", "device_ip": "...", "error_code": N}`, spaced like the
    /// old generator's `json.dumps`, replacing the previous event.
    pub(crate) fn render(
        &mut self,
        form: TimestampForm,
        micros: u64,
        device: DeviceAddr,
        error_code: u8,
    ) {
        let out = &mut self.bytes;
        out.clear();
        out.extend_from_slice(b"{\"timestamp\": \"");
        self.timestamps.write(form, micros, out);
        out.extend_from_slice(b"\", \"device_ip\": \"");
        let ip_start = out.len();
        device.write_to(out);
        self.ip = ip_start..out.len();
        out.extend_from_slice(b"\", \"error_code\": ");
        write_small(error_code, out);
        out.push(b'}');
    }

    pub(crate) fn value(&self) -> &[u8] {
        &self.bytes
    }

    /// The device address text: records are keyed by it.
    pub(crate) fn key(&self) -> &[u8] {
        &self.bytes[self.ip.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::pool::SplitMix64;

    fn render(form: TimestampForm, micros: u64) -> String {
        let mut out = Vec::new();
        TimestampWriter::default().write(form, micros, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn each_form_renders_like_strftime() {
        // 2024-09-18T14:14:10.124056Z
        let micros = 1_726_668_850_124_056;
        let expected = [
            (TimestampForm::IsoMicrosZ, "2024-09-18T14:14:10.124056Z"),
            (TimestampForm::IsoMicros, "2024-09-18T14:14:10.124056"),
            (TimestampForm::IsoSeconds, "2024-09-18T14:14:10"),
            (TimestampForm::SpaceMicros, "2024-09-18 14:14:10.124056"),
            (TimestampForm::SpaceSeconds, "2024-09-18 14:14:10"),
            (TimestampForm::UnixMillis, "1726668850124"),
            (TimestampForm::UnixSeconds, "1726668850"),
        ];
        for (form, text) in expected {
            assert_eq!(render(form, micros), text, "{form:?}");
        }
        assert_eq!(
            render(TimestampForm::IsoMicrosZ, 0),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(render(TimestampForm::UnixMillis, 999), "0");
        assert_eq!(
            render(TimestampForm::IsoSeconds, u64::MAX),
            "9999-12-31T23:59:59"
        );
    }

    #[test]
    fn calendar_matches_jiff_over_four_centuries() {
        let mut rng = SplitMix64::new(5);
        let mut writer = TimestampWriter::default();
        let mut out = Vec::new();
        for _ in 0..100_000 {
            // 1970 to 2370, covering leap years, 2100 (not leap) and 2000 (leap).
            let micros = rng.below(400 * 366 * 86_400 * 1_000_000);
            out.clear();
            writer.write(TimestampForm::IsoMicrosZ, micros, &mut out);
            let ts = jiff::Timestamp::from_microsecond(micros as i64).expect("in range");
            let expected = ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
            assert_eq!(std::str::from_utf8(&out).expect("ascii"), expected);
        }
    }

    #[test]
    fn cached_second_is_replaced_when_time_moves_back() {
        let mut writer = TimestampWriter::default();
        let mut out = Vec::new();
        writer.write(TimestampForm::SpaceSeconds, 86_400_000_000, &mut out);
        out.clear();
        writer.write(TimestampForm::SpaceSeconds, 1_000_000, &mut out);
        assert_eq!(out, b"1970-01-01 00:00:01");
    }

    #[test]
    fn job_times_are_rfc3339_with_milliseconds() {
        let time = UNIX_EPOCH + std::time::Duration::from_micros(1_726_668_850_124_956);
        assert_eq!(rfc3339_millis(time), "2024-09-18T14:14:10.124Z");
    }

    #[test]
    fn event_value_and_key() {
        let mut event = EventBuffer::default();
        event.render(
            TimestampForm::UnixSeconds,
            1_726_667_942_000_000,
            DeviceAddr::V4(0x0A00_0001),
            10,
        );
        assert_eq!(
            std::str::from_utf8(event.value()).expect("ascii"),
            r#"{"timestamp": "1726667942", "device_ip": "10.0.0.1", "error_code": 10}"#
        );
        assert_eq!(event.key(), b"10.0.0.1");
    }
}

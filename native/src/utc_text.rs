//! Instants as the text Python's `datetime` and `email.utils` write for them, without a time
//! library.
//!
//! The instant is split as `datetime.fromtimestamp(created, UTC)` splits it (whole seconds
//! and the fraction rounded to the microsecond, half to even), so the text is the one the
//! Python code wrote for the same `time.time()`, to the digit.

/// `datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`:
/// `2025-12-03T10:00:00.123+00:00`.
pub fn write_iso_millis(out: &mut Vec<u8>, created: f64) {
    let (seconds, micros) = split(created);
    write_civil(out, seconds, b'T');
    out.push(b'.');
    write_digits(out, micros / 1000, 3);
    out.extend_from_slice(b"+00:00");
}

/// `datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")`:
/// `2025-12-03 10:00:00.123456` (how SQLite's date functions read a time).
pub fn write_sqlite_micros(out: &mut Vec<u8>, created: f64) {
    let (seconds, micros) = split(created);
    write_civil(out, seconds, b' ');
    out.push(b'.');
    write_digits(out, micros, 6);
}

/// `write_sqlite_micros` for instants that mostly fall in the same second as the one before
/// (a batch of spend rows): the date and time of day are written once per second.
#[derive(Default)]
pub struct SqliteMicros {
    second: Option<i64>,
    civil: Vec<u8>,
}

impl SqliteMicros {
    pub fn write(&mut self, out: &mut Vec<u8>, created: f64) {
        let (seconds, micros) = split(created);
        if self.second != Some(seconds) {
            self.civil.clear();
            write_civil(&mut self.civil, seconds, b' ');
            self.second = Some(seconds);
        }
        out.extend_from_slice(&self.civil);
        out.push(b'.');
        write_digits(out, micros, 6);
    }
}

/// An HTTP `Date` header line for `seconds` since the epoch, as `email.utils.formatdate(seconds,
/// usegmt=True)` writes the date: `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n` (RFC 9110's
/// IMF-fixdate). Heads carry one; formatting it in Python cost ~33k instructions, once a
/// second, on whichever answer's head came first in that second.
pub fn write_http_date_line(out: &mut Vec<u8>, seconds: i64) {
    const WEEKDAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = seconds.div_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let of_day = seconds.rem_euclid(86_400).unsigned_abs();
    out.extend_from_slice(b"Date: ");
    // 1970-01-01 was a Thursday.
    out.extend_from_slice(WEEKDAYS[days.rem_euclid(7).unsigned_abs() as usize]);
    out.extend_from_slice(b", ");
    write_digits(out, day, 2);
    out.push(b' ');
    out.extend_from_slice(MONTHS[(month - 1) as usize]);
    out.push(b' ');
    write_digits(out, year.unsigned_abs(), 4);
    out.push(b' ');
    write_time_of_day(out, of_day);
    out.extend_from_slice(b" GMT\r\n");
}

/// Whole seconds and microseconds, rounded as CPython's `_PyTime_DoubleToDenominator` does.
fn split(created: f64) -> (i64, u64) {
    let mut whole = created.trunc();
    let mut micros = ((created - whole) * 1e6).round_ties_even();
    if micros >= 1e6 {
        micros -= 1e6;
        whole += 1.0;
    } else if micros < 0.0 {
        micros += 1e6;
        whole -= 1.0;
    }
    (whole as i64, micros as u64)
}

fn write_civil(out: &mut Vec<u8>, seconds: i64, separator: u8) {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400).unsigned_abs();
    write_digits(out, year.unsigned_abs(), 4);
    out.push(b'-');
    write_digits(out, month, 2);
    out.push(b'-');
    write_digits(out, day, 2);
    out.push(separator);
    write_time_of_day(out, of_day);
}

/// `HH:MM:SS` for `of_day` seconds since midnight.
fn write_time_of_day(out: &mut Vec<u8>, of_day: u64) {
    write_digits(out, of_day / 3600, 2);
    out.push(b':');
    write_digits(out, of_day % 3600 / 60, 2);
    out.push(b':');
    write_digits(out, of_day % 60, 2);
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month.unsigned_abs(), day.unsigned_abs())
}

/// `value` in decimal, zero-padded to at least `width` digits.
pub fn write_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut buffer = [b'0'; 20];
    let mut start = buffer.len();
    while (value > 0 || buffer.len() - start < width) && start > 0 {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&buffer[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn iso(created: f64) -> String {
        written(|out| write_iso_millis(out, created))
    }

    fn sqlite(created: f64) -> String {
        written(|out| write_sqlite_micros(out, created))
    }

    fn http_date(seconds: i64) -> String {
        written(|out| write_http_date_line(out, seconds))
    }

    #[test]
    fn iso_text_matches_python() {
        assert_eq!(iso(0.0), "1970-01-01T00:00:00.000+00:00");
        // A leap day's last millisecond: rounded to the microsecond, not up a second.
        assert_eq!(iso(1_709_251_199.999_5), "2024-02-29T23:59:59.999+00:00");
        assert_eq!(iso(4_102_444_800.0), "2100-01-01T00:00:00.000+00:00");
        assert_eq!(iso(1_764_756_000.123_456), "2025-12-03T10:00:00.123+00:00");
    }

    #[test]
    fn sqlite_text_matches_python() {
        assert_eq!(sqlite(1_764_756_000.123_456), "2025-12-03 10:00:00.123456");
        assert_eq!(sqlite(1_709_251_199.999_998), "2024-02-29 23:59:59.999998");
        assert_eq!(sqlite(-0.5), "1969-12-31 23:59:59.500000");
        assert_eq!(sqlite(-1.000_000_5), "1969-12-31 23:59:58.999999");
        assert_eq!(sqlite(1_709_251_199.999_999_95), "2024-03-01 00:00:00.000000");
    }

    #[test]
    fn cached_seconds_write_the_same_text() {
        let mut cached = SqliteMicros::default();
        for created in [1_764_756_000.123_456, 1_764_756_000.9, 1_764_756_001.0, -0.5, 1.0e9] {
            assert_eq!(written(|out| cached.write(out, created)), sqlite(created));
        }
    }

    #[test]
    fn http_dates_match_formatdate() {
        // Each beside `email.utils.formatdate(seconds, usegmt=True)`'s text.
        assert_eq!(http_date(0), "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
        assert_eq!(http_date(784_111_777), "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        assert_eq!(http_date(1_709_251_199), "Date: Thu, 29 Feb 2024 23:59:59 GMT\r\n");
        assert_eq!(http_date(1_709_251_200), "Date: Fri, 01 Mar 2024 00:00:00 GMT\r\n");
        assert_eq!(http_date(1_796_515_200), "Date: Sun, 06 Dec 2026 00:00:00 GMT\r\n");
        assert_eq!(http_date(4_102_444_799), "Date: Thu, 31 Dec 2099 23:59:59 GMT\r\n");
        assert_eq!(http_date(-1), "Date: Wed, 31 Dec 1969 23:59:59 GMT\r\n");
    }

    #[test]
    fn digits_pad_and_fit() {
        let mut out = Vec::new();
        write_digits(&mut out, 0, 1);
        write_digits(&mut out, 7, 3);
        write_digits(&mut out, u64::MAX, 1);
        assert_eq!(out, b"0007".iter().chain(u64::MAX.to_string().as_bytes()).copied().collect::<Vec<_>>());
    }
}

//! SOA serial numbers: the next serial under each scheme, in RFC 1982 arithmetic.
//!
//! This module owns one rule: a new serial is always "greater" than the old one in serial
//! arithmetic, so secondaries never see it go backwards, whatever the clock says and however
//! many changes happen in one second or one day.

use serde::{Deserialize, Serialize};

/// How serials are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SerialScheme {
    /// YYYYMMDDnn: today's date and a two-digit counter; past 99 changes a day it runs ahead.
    #[default]
    Date,
    /// Seconds since the Unix epoch.
    Unixtime,
    /// The old serial plus one.
    Increment,
}

/// RFC 1982 §3.2: `a` is greater than `b`.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// The serial that follows `old` at time `now` (seconds since the epoch).
pub fn next_serial(scheme: SerialScheme, old: u32, now: u64) -> u32 {
    let candidate = match scheme {
        SerialScheme::Date => {
            let (y, m, d) = civil_date(now);
            // Fits in u32 until the year 4294.
            Some((y * 10000 + m * 100 + d) * 100).and_then(|v| u32::try_from(v).ok())
        }
        SerialScheme::Unixtime => u32::try_from(now).ok(),
        SerialScheme::Increment => None,
    };
    match candidate {
        Some(c) if serial_gt(c, old) => c,
        _ => old.wrapping_add(1),
    }
}

/// (year, month, day) in UTC of a Unix time (Howard Hinnant's days-to-civil algorithm).
pub fn civil_date(secs: u64) -> (u64, u64, u64) {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as u64, m as u64, d as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23T10:00:00Z
    const NOW: u64 = 1_795_428_000;

    #[test]
    fn date_scheme_starts_the_day_at_00_then_counts() {
        assert_eq!(next_serial(SerialScheme::Date, 1, NOW), 2026112300);
        assert_eq!(next_serial(SerialScheme::Date, 2026112300, NOW), 2026112301);
    }

    #[test]
    fn date_scheme_never_goes_back_after_99_changes() {
        let mut s = 2026112300;
        for _ in 0..250 {
            let n = next_serial(SerialScheme::Date, s, NOW);
            assert!(serial_gt(n, s));
            s = n;
        }
    }

    #[test]
    fn a_serial_ahead_of_the_clock_is_incremented() {
        assert_eq!(
            next_serial(SerialScheme::Unixtime, 1_900_000_000, NOW),
            1_900_000_001
        );
        assert_eq!(next_serial(SerialScheme::Date, 2030010100, NOW), 2030010101);
    }

    #[test]
    fn increment_wraps_in_serial_arithmetic() {
        let n = next_serial(SerialScheme::Increment, u32::MAX, NOW);
        assert_eq!(n, 0);
        assert!(serial_gt(n, u32::MAX));
    }

    #[test]
    fn unixtime_scheme_uses_the_clock() {
        assert_eq!(next_serial(SerialScheme::Unixtime, 5, NOW), NOW as u32);
    }
}

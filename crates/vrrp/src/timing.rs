//! VRRP timer arithmetic, kept apart so the formulas can be checked against the RFCs.
//!
//! * v2 (RFC 3768 §6.1): `Skew_Time = (256 - Priority) / 256` seconds,
//!   `Master_Down_Interval = 3 * Advertisement_Interval + Skew_Time`.
//! * v3 (RFC 5798 §6.1): `Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256`
//!   centiseconds, `Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time`,
//!   where `Master_Adver_Interval` is learnt from the master's adverts.
//!
//! Skew is computed in microseconds (as keepalived does) rather than truncated to
//! centiseconds, so 10 ms adverts at priority 100 give 6.09375 ms, not 6 ms.

use crate::Version;
use std::time::Duration;

/// Skew_Time for a router of `priority`, given the master's advert interval (v3) or our
/// own (v2, where it does not matter).
pub fn skew(version: Version, priority: u8, master_adver_interval: Duration) -> Duration {
    let weight = 256 - u64::from(priority);
    let us = match version {
        Version::V2 => weight * 1_000_000 / 256,
        Version::V3 => weight * master_adver_interval.as_micros() as u64 / 256,
    };
    Duration::from_micros(us)
}

/// Master_Down_Interval; `adverts` is 3 per the RFCs (keepalived's `down_timer_adverts`).
pub fn master_down_interval(
    version: Version,
    priority: u8,
    master_adver_interval: Duration,
    adverts: u8,
) -> Duration {
    master_adver_interval * u32::from(adverts) + skew(version, priority, master_adver_interval)
}

/// Centiseconds in a duration, rounded to nearest, clamped to the 12-bit v3 field.
pub fn to_centis(d: Duration) -> u16 {
    (((d.as_micros() + 5_000) / 10_000) as u64).clamp(0, 0x0fff) as u16
}

pub fn from_centis(cs: u16) -> Duration {
    Duration::from_millis(u64::from(cs) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn field_notes_examples() {
        // v3 prio 100 at 10 ms -> skew 6.1 ms, down interval 36.1 ms.
        assert_eq!(
            skew(Version::V3, 100, ms(10)),
            Duration::from_nanos(6_093_000)
        );
        assert_eq!(
            master_down_interval(Version::V3, 100, ms(10), 3),
            Duration::from_micros(36_093)
        );
        // ... at 1 s -> 3.61 s.
        assert_eq!(
            master_down_interval(Version::V3, 100, ms(1000), 3),
            Duration::from_micros(3_609_375)
        );
    }

    #[test]
    fn v2_skew_is_in_seconds_whatever_the_interval() {
        assert_eq!(
            skew(Version::V2, 100, ms(3000)),
            Duration::from_micros(609_375)
        );
        assert_eq!(
            master_down_interval(Version::V2, 255, ms(1000), 3),
            Duration::from_micros(3_003_906)
        );
        assert_eq!(skew(Version::V2, 0, ms(1000)), Duration::from_secs(1));
    }

    #[test]
    fn higher_priority_means_shorter_skew() {
        for p in 1..255u8 {
            assert!(skew(Version::V3, p, ms(100)) > skew(Version::V3, p + 1, ms(100)));
        }
    }

    #[test]
    fn centis() {
        assert_eq!(to_centis(ms(10)), 1);
        assert_eq!(to_centis(ms(1000)), 100);
        assert_eq!(to_centis(Duration::from_secs(100)), 0x0fff);
        assert_eq!(from_centis(4095), ms(40_950));
    }
}

//! FILE_CHECK: the integer in a `track_file`'s file decides.
//!
//! The value `v` (a missing or unreadable file, or text that is not a number, counts
//! as 0, as for VRRP track files) is multiplied by the FILE_CHECK's `weight` (default:
//! the track_file's weight, itself default 1; `reverse` negates it):
//!
//! * weight 0: up iff `v == 0`, the server's weight is untouched;
//! * otherwise the server's weight would become `configured + v × weight`; the checker
//!   is down when that is negative. With `dynamic` the server gets that weight; without
//!   it only up/down follows the file.
//!
//! keepalived watches the file with inotify; vipd reads it every second (the runner
//! reads each file at most once per 500 ms, however many checkers use it).

use std::path::{Path, PathBuf};

use crate::sched::Outcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// The track_file's name.
    pub name: String,
    pub path: PathBuf,
    /// Signed: `reverse` is already applied.
    pub weight: i64,
    pub dynamic: bool,
    /// The real server's configured weight.
    pub rs_weight: i64,
}

/// The first word of the file as an integer; 0 when missing or unreadable.
pub fn read_value(path: &Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|w| w.parse().ok()))
        .unwrap_or(0)
}

impl FileCheck {
    pub fn evaluate(&self, value: i64) -> Outcome {
        if self.weight == 0 {
            return if value == 0 {
                Outcome::ok()
            } else {
                Outcome::fail(format!("track_file {}: value {value}", self.name))
            };
        }
        let delta = value.saturating_mul(self.weight);
        let total = self.rs_weight.saturating_add(delta);
        if total < 0 {
            return Outcome::fail(format!(
                "track_file {}: value {value} gives weight {total}",
                self.name
            ));
        }
        let reason = format!("track_file {}: value {value}", self.name);
        if self.dynamic {
            Outcome::weighted(delta, reason)
        } else {
            Outcome {
                ok: true,
                reason: reason.into(),
                weight: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(weight: i64, dynamic: bool) -> FileCheck {
        FileCheck {
            name: "f".into(),
            path: "/nonexistent".into(),
            weight,
            dynamic,
            rs_weight: 10,
        }
    }

    #[test]
    fn semantics() {
        // weight 0: a flag.
        assert!(fc(0, true).evaluate(0).ok);
        assert!(!fc(0, true).evaluate(3).ok);
        assert_eq!(fc(0, true).evaluate(0).weight, None);
        // Non-dynamic: only up/down.
        let o = fc(2, false).evaluate(4);
        assert!(o.ok && o.weight.is_none());
        assert!(fc(2, false).evaluate(-5).ok); // 10 - 10 = 0
        assert!(!fc(2, false).evaluate(-6).ok); // 10 - 12 < 0
                                                // Dynamic: a delta.
        assert_eq!(fc(2, true).evaluate(4).weight, Some(8));
        assert_eq!(fc(-1, true).evaluate(4).weight, Some(-4));
        assert!(!fc(-1, true).evaluate(11).ok);
        // Huge values do not overflow.
        assert!(!fc(i64::MAX, true).evaluate(-5).ok);
        assert_eq!(read_value(Path::new("/nonexistent/x")), 0);
    }
}

//! keepalived's `reload_time_file FILE` / `reload_repeat`: the first line of FILE is a
//! time (`HH:MM:SS`) or date and time (`YY-MM-DD HH:MM:SS`, `YYYY-MM-DD HH:MM:SS`),
//! local time unless it ends in `Z` (UTC); vipd reloads then. The file is watched
//! (re-read every second): created, changed or removed, the schedule follows. After the
//! reload the file is removed, unless `reload_repeat` (then a time without a date
//! reloads every day at that time).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// When `line` says to reload, seen at `now`: `Ok(None)` for a date and time already
/// past (ignored, as keepalived does); a time without a date is the next one to come.
pub fn reload_at(line: &str, now: SystemTime) -> Result<Option<SystemTime>, String> {
    let bad = || {
        format!("`{line}` is not HH:MM:SS, YY-MM-DD HH:MM:SS or YYYY-MM-DD HH:MM:SS (optionally with Z)")
    };
    let (text, utc) = match line.strip_suffix('Z') {
        Some(t) => (t, true),
        None => (line, false),
    };
    let (date, time) = match text.split_once(' ') {
        Some((d, t)) => (Some(d), t),
        None => (None, text),
    };
    let nums = |s: &str, sep: char, widths: &[usize]| -> Option<Vec<i32>> {
        let parts: Vec<&str> = s.split(sep).collect();
        (parts.len() == widths.len()
            && parts
                .iter()
                .zip(widths)
                .all(|(p, w)| p.len() == *w && p.bytes().all(|b| b.is_ascii_digit())))
        .then(|| parts.iter().map(|p| p.parse().unwrap_or(0)).collect())
    };
    let hms = nums(time, ':', &[2, 2, 2]).ok_or_else(bad)?;
    if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return Err(bad());
    }
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let mut tm = broken_down(now_secs, utc);
    if let Some(d) = date {
        let ymd = nums(d, '-', &[4, 2, 2])
            .or_else(|| nums(d, '-', &[2, 2, 2]).map(|v| vec![v[0] + 2000, v[1], v[2]]))
            .ok_or_else(bad)?;
        if !(1..=12).contains(&ymd[1]) || !(1..=31).contains(&ymd[2]) {
            return Err(bad());
        }
        (tm.tm_year, tm.tm_mon, tm.tm_mday) = (ymd[0] - 1900, ymd[1] - 1, ymd[2]);
    }
    (tm.tm_hour, tm.tm_min, tm.tm_sec) = (hms[0], hms[1], hms[2]);
    tm.tm_isdst = -1;
    let mut at = to_epoch(&mut tm, utc);
    if at <= now_secs {
        if date.is_some() {
            return Ok(None);
        }
        at += 86_400;
    }
    Ok(Some(UNIX_EPOCH + Duration::from_secs(at as u64)))
}

fn broken_down(secs: i64, utc: bool) -> libc::tm {
    let t = secs as libc::time_t;
    // SAFETY: an all-zero tm is valid; gmtime_r/localtime_r fill it from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe {
        if utc {
            libc::gmtime_r(&t, &mut tm);
        } else {
            libc::localtime_r(&t, &mut tm);
        }
    }
    tm
}

fn to_epoch(tm: &mut libc::tm, utc: bool) -> i64 {
    // SAFETY: timegm/mktime read (and normalise) a tm we own.
    (unsafe {
        if utc {
            libc::timegm(tm)
        } else {
            libc::mktime(tm)
        }
    }) as i64
}

/// Watches `file` and calls `reload` at the time it names.
pub fn start(
    file: PathBuf,
    repeat: bool,
    reload: vipd_linux::control::ReloadHook,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("vipd-reload-at".into())
        .spawn(move || {
            let mut seen: Option<String> = None;
            let mut due: Option<SystemTime> = None;
            loop {
                let line = std::fs::read_to_string(&file)
                    .ok()
                    .map(|t| t.lines().next().unwrap_or_default().to_string());
                if line != seen {
                    due = match &line {
                        None => None,
                        Some(l) => match reload_at(l, SystemTime::now()) {
                            Ok(at) => at,
                            Err(e) => {
                                warn!("reload_time_file {}: {e}", file.display());
                                None
                            }
                        },
                    };
                    if let Some(at) = due {
                        let secs = at.duration_since(SystemTime::now()).unwrap_or_default();
                        info!("reload_time_file {}: reload in {secs:?}", file.display());
                    }
                    seen = line;
                }
                if due.is_some_and(|at| at <= SystemTime::now()) {
                    info!("reload_time_file {}: reloading now", file.display());
                    if !repeat {
                        let _ = std::fs::remove_file(&file);
                    }
                    let _ = reload();
                    // A time without a date comes again tomorrow (reload_repeat).
                    due = seen
                        .as_deref()
                        .and_then(|l| reload_at(l, SystemTime::now()).ok().flatten());
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s.parse().unwrap())
    }

    #[test]
    fn reload_times_in_utc() {
        // 2026-12-06 15:00:00 UTC.
        let now = at("1796569200");
        assert_eq!(
            reload_at("15:00:10Z", now),
            Ok(Some(at("1796569210"))),
            "later today"
        );
        assert_eq!(
            reload_at("14:59:59Z", now),
            Ok(Some(at("1796655599"))),
            "a time past today is tomorrow's"
        );
        assert_eq!(
            reload_at("2026-12-06 16:00:00Z", now),
            Ok(Some(at("1796572800")))
        );
        assert_eq!(
            reload_at("26-12-07 15:00:00Z", now),
            Ok(Some(at("1796655600")))
        );
        assert_eq!(
            reload_at("2026-12-06 14:00:00Z", now),
            Ok(None),
            "past date: ignored"
        );
        for bad in [
            "",
            "1:00:00",
            "25:00:00Z",
            "15:00",
            "2026-13-01 00:00:00",
            " 15:00:00",
            "15:00:00 ",
        ] {
            assert!(reload_at(bad, now).is_err(), "{bad:?}");
        }
    }
}

//! keepalived's process tuning keywords, mapped onto vipd's one process: what keepalived
//! sets on its VRRP or checker child, vipd sets on the protocol or checker thread (Linux
//! keeps nice values and scheduling policies per thread); memory locking and the umask
//! are process-wide.

use std::io;

/// Nice value of the calling thread (`vrrp_priority`, `checker_priority`).
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority with PRIO_PROCESS and 0 acts on the calling thread on Linux.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SCHED_RR at `priority` for the calling thread (`vrrp_rt_priority`,
/// `checker_rt_priority`).
pub fn set_thread_rt(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins the calling thread to `cpus` (`vrrp_cpu_affinity`, `checker_cpu_affinity`);
/// sched_setaffinity with pid 0 acts on the calling thread only. As keepalived, a CPU
/// number at or above the count of online CPUs leaves the affinity alone (an error).
pub fn set_thread_affinity(cpus: &[u16]) -> io::Result<()> {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
    if let Some(c) = cpus.iter().find(|&&c| i64::from(c) >= online as i64) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "CPU {c} is not one of the {online} online CPUs (0..={})",
                online - 1
            ),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: c < online <= CPU_SETSIZE (the schema caps numbers at 1023).
        unsafe { libc::CPU_SET(usize::from(c), &mut set) };
    }
    // SAFETY: a valid set of its own size, for the calling thread (0).
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Applies `<what>_priority` (nice), `<what>_rt_priority` (SCHED_RR) and
/// `<what>_cpu_affinity` to the calling thread; what failed, as messages naming the
/// keyword (`what`: `vrrp`, `checker`).
pub fn tune_thread(
    what: &str,
    nice: Option<i32>,
    rt_priority: Option<u8>,
    cpus: &[u16],
) -> Vec<String> {
    let mut failed = Vec::new();
    if let Some(n) = nice {
        if let Err(e) = set_thread_nice(n) {
            failed.push(format!("{what}_priority {n}: {e}"));
        }
    }
    if let Some(p) = rt_priority {
        if let Err(e) = set_thread_rt(p) {
            failed.push(format!("{what}_rt_priority {p}: {e}"));
        }
    }
    if !cpus.is_empty() {
        if let Err(e) = set_thread_affinity(cpus) {
            failed.push(format!("{what}_cpu_affinity: {e}"));
        }
    }
    failed
}

/// keepalived's RLIMIT_RTTIME when a thread is real-time and its `*_rlimit_rttime` is
/// not written (µs).
pub const DEFAULT_RLIMIT_RTTIME: u32 = 10_000;

/// One thread's side of RLIMIT_RTTIME: its `*_rlimit_rttime` and whether it may run
/// real-time (`*_rt_priority`, or `max_auto_priority` for the protocol thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtThread {
    pub rlimit_rttime: Option<u32>,
    pub realtime: bool,
}

/// The process's RLIMIT_RTTIME hard limit (µs) for `vrrp_rlimit_rttime` /
/// `checker_rlimit_rttime` / `bfd_rlimit_rttime`, or `None` when none is written.
///
/// keepalived sets it on each real-time child process separately. Linux keeps one
/// RLIMIT_RTTIME per process but counts it per thread, and only for threads under a
/// real-time policy, so in vipd's one process it binds exactly the real-time threads,
/// all with the same value. That value is the largest that applies to any real-time
/// thread (its keyword, or keepalived's default 10000 µs when it has none), so no
/// thread is stopped sooner than keepalived would stop its process. A thread that is
/// not real-time never counts, whatever the limit.
pub fn rttime_limit(threads: &[RtThread]) -> Option<u64> {
    if threads.iter().all(|t| t.rlimit_rttime.is_none()) {
        return None;
    }
    threads
        .iter()
        .filter(|t| t.realtime)
        .map(|t| u64::from(t.rlimit_rttime.unwrap_or(DEFAULT_RLIMIT_RTTIME)))
        .max()
        // No real-time thread: the limit binds nothing, but is still set as written.
        .or_else(|| {
            threads
                .iter()
                .filter_map(|t| t.rlimit_rttime)
                .max()
                .map(u64::from)
        })
}

/// Sets RLIMIT_RTTIME as keepalived does: the hard limit `hard_us` (SIGKILL past it), the
/// soft limit half of it (SIGXCPU, which vipd logs as a warning).
pub fn set_rttime_limit(hard_us: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: (hard_us / 2).max(1),
        rlim_max: hard_us,
    };
    // SAFETY: setrlimit with a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_RTTIME, &lim) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Logs SIGXCPU (the soft RLIMIT_RTTIME, reached by a real-time thread that has not
/// blocked for half its `*_rlimit_rttime`) on stderr instead of ending vipd, as
/// keepalived logs it. The hard limit still kills vipd (SIGKILL cannot be caught).
pub fn log_sigxcpu() -> io::Result<()> {
    extern "C" fn on_sigxcpu(_: libc::c_int) {
        const MSG: &[u8] = b"vipd: SIGXCPU: a real-time thread ran for half its *_rlimit_rttime without blocking\n";
        // SAFETY: write(2) is async-signal-safe; a static buffer.
        unsafe { libc::write(2, MSG.as_ptr().cast(), MSG.len()) };
    }
    // SAFETY: a zeroed sigaction with a handler that only calls write(2).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigxcpu as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: installing a valid handler for SIGXCPU.
    if unsafe { libc::sigaction(libc::SIGXCPU, &sa, std::ptr::null_mut()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `max_auto_priority` / `min_auto_priority_delay` for the protocol thread: when a timer
/// runs more than `min_delay` late, the thread switches to SCHED_RR at priority 1, and
/// on each further late timer raises it by one, up to `max` (keepalived does this for
/// its whole VRRP process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPriority {
    max: u8,
    min_delay: std::time::Duration,
    current: Option<u8>,
}

/// keepalived's default `min_auto_priority_delay`: one second.
pub const DEFAULT_MIN_AUTO_PRIORITY_DELAY_US: u32 = 1_000_000;

impl AutoPriority {
    /// `max` 0 never raises; `current` is the thread's `vrrp_rt_priority`, if any.
    pub fn new(max: u8, min_delay_us: Option<u32>, current: Option<u8>) -> Self {
        AutoPriority {
            max,
            min_delay: std::time::Duration::from_micros(u64::from(
                min_delay_us.unwrap_or(DEFAULT_MIN_AUTO_PRIORITY_DELAY_US),
            )),
            current,
        }
    }

    /// Whether late timers can raise the priority at all.
    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    /// A timer ran `late` after it was due: the SCHED_RR priority to switch to, if any.
    pub fn late(&mut self, late: std::time::Duration) -> Option<u8> {
        if self.max == 0 || late <= self.min_delay {
            return None;
        }
        let next = match self.current {
            Some(p) if p >= self.max => return None,
            Some(p) => p + 1,
            None => 1,
        };
        self.current = Some(next);
        Some(next)
    }
}

/// `vrrp_no_swap` / `checker_no_swap`: lock all of vipd's memory, now and to come.
pub fn lock_memory() -> io::Result<()> {
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the process umask; returns the previous one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_nice_is_per_thread() {
        // A thread of our own: lowering its priority (raising nice) needs no privilege.
        let (mine, other) = std::thread::spawn(|| {
            set_thread_nice(7).unwrap();
            // SAFETY: getpriority on the calling thread.
            let mine = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            (
                mine,
                std::thread::spawn(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
                    .join()
                    .unwrap(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(mine, 7);
        // A thread it starts afterwards inherits it; the test's main thread does not.
        assert_eq!(other, 7);
        // SAFETY: getpriority on the calling thread.
        assert_ne!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, 7);
    }

    fn affinity() -> Vec<usize> {
        // SAFETY: reading the calling thread's affinity into a zeroed set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let r =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(r, 0);
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }

    #[test]
    fn cpu_affinity_is_per_thread() {
        let before = affinity();
        let pinned = std::thread::spawn(|| {
            assert!(tune_thread("vrrp", None, None, &[0]).is_empty());
            affinity()
        })
        .join()
        .unwrap();
        assert_eq!(pinned, vec![0]);
        assert_eq!(affinity(), before);
    }

    #[test]
    fn cpu_affinity_refuses_a_cpu_that_is_not_online_and_changes_nothing() {
        let (errors, after) = std::thread::spawn(|| {
            let before = affinity();
            let errors = tune_thread("checker", None, None, &[0, 1023]);
            assert_eq!(affinity(), before);
            (errors, before)
        })
        .join()
        .unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("checker_cpu_affinity: CPU 1023 is not one of the"),
            "{errors:?}"
        );
        assert!(!after.is_empty());
    }

    #[test]
    fn rttime_limit_binds_the_real_time_threads_with_the_largest_that_applies() {
        let t = |rlimit_rttime, realtime| RtThread {
            rlimit_rttime,
            realtime,
        };
        // Neither keyword written: no limit (vipd does not add keepalived's default).
        assert_eq!(rttime_limit(&[t(None, true), t(None, true)]), None);
        assert_eq!(
            rttime_limit(&[t(Some(50_000), true), t(None, false)]),
            Some(50_000)
        );
        // The checker is real-time without a keyword: keepalived's 10000 µs for it.
        assert_eq!(
            rttime_limit(&[t(Some(5_000), true), t(None, true)]),
            Some(10_000)
        );
        assert_eq!(
            rttime_limit(&[t(Some(5_000), true), t(Some(80_000), true)]),
            Some(80_000)
        );
        // A non-real-time thread's keyword does not raise the real-time thread's limit.
        assert_eq!(
            rttime_limit(&[t(Some(5_000), true), t(Some(80_000), false)]),
            Some(5_000)
        );
        // No real-time thread: set as written (it binds nothing).
        assert_eq!(
            rttime_limit(&[t(Some(7_000), false), t(None, false)]),
            Some(7_000)
        );
    }

    #[test]
    fn auto_priority_climbs_one_step_per_late_timer_up_to_the_max() {
        let ms = std::time::Duration::from_millis;
        let mut off = AutoPriority::new(0, None, None);
        assert!(!off.enabled());
        assert_eq!(off.late(ms(60_000)), None);
        let mut a = AutoPriority::new(3, Some(200_000), None);
        assert_eq!(a.late(ms(200)), None, "not later than the minimum delay");
        assert_eq!(a.late(ms(201)), Some(1));
        assert_eq!(a.late(ms(5)), None);
        assert_eq!(a.late(ms(300)), Some(2));
        assert_eq!(a.late(ms(300)), Some(3));
        assert_eq!(a.late(ms(300)), None, "capped at max_auto_priority");
        // Default delay 1 s; starting from vrrp_rt_priority.
        let mut b = AutoPriority::new(99, None, Some(40));
        assert_eq!(b.late(ms(999)), None);
        assert_eq!(b.late(ms(1001)), Some(41));
        let mut c = AutoPriority::new(10, None, Some(50));
        assert_eq!(c.late(ms(5000)), None, "already above the max");
    }
}

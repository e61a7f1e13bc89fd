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

/// Applies `<what>_priority` (nice) and `<what>_rt_priority` (SCHED_RR) to the calling
/// thread; what failed, as messages naming the keyword (`what`: `vrrp`, `checker`).
pub fn tune_thread(what: &str, nice: Option<i32>, rt_priority: Option<u8>) -> Vec<String> {
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
    failed
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
}

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

/// keepalived's `umask NUMBER|BITS`: a number (decimal, `0` octal or `0x` hex) or
/// `I{R|W|X}{USR|GRP|OTH}` and `IRWX{U|G|O}` bits joined by `|`.
pub fn parse_umask(text: &str) -> Result<u32, String> {
    let text: String = text.split_whitespace().collect();
    let first = text.chars().next().ok_or("umask: no value")?;
    let mask = if first.is_ascii_digit() {
        let parsed = if let Some(hex) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
            u32::from_str_radix(hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            u32::from_str_radix(&text[1..], 8)
        } else {
            text.parse()
        };
        parsed.map_err(|_| format!("umask: `{text}` is not a number"))?
    } else {
        let mut mask = 0;
        for bit in text.split('|') {
            mask |= match bit {
                "IRUSR" => 0o400,
                "IWUSR" => 0o200,
                "IXUSR" => 0o100,
                "IRWXU" => 0o700,
                "IRGRP" => 0o040,
                "IWGRP" => 0o020,
                "IXGRP" => 0o010,
                "IRWXG" => 0o070,
                "IROTH" => 0o004,
                "IWOTH" => 0o002,
                "IXOTH" => 0o001,
                "IRWXO" => 0o007,
                other => return Err(format!("umask: unknown bit `{other}`")),
            };
        }
        mask
    };
    if mask > 0o777 {
        return Err(format!("umask: {mask:#o} is more than 0777"));
    }
    Ok(mask)
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
    fn umask_spellings() {
        assert_eq!(parse_umask("022"), Ok(0o022));
        assert_eq!(parse_umask("0x12"), Ok(0o022));
        assert_eq!(parse_umask("18"), Ok(0o022));
        assert_eq!(parse_umask("IWGRP|IWOTH"), Ok(0o022));
        assert_eq!(parse_umask("IWGRP | IRWXO"), Ok(0o027));
        assert_eq!(
            parse_umask("IWGRP|IWEVERYONE"),
            Err("umask: unknown bit `IWEVERYONE`".into())
        );
        assert_eq!(
            parse_umask("01777"),
            Err("umask: 0o1777 is more than 0777".into())
        );
        assert_eq!(parse_umask("0z"), Err("umask: `0z` is not a number".into()));
    }

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

//! What the daemon does about its own memory (issue 16, item 1): one malloc arena, the
//! heap's holes given back after start and reload, and the start-up code dropped from
//! the resident set once running.

use std::ops::Range;
use std::path::Path;

/// One malloc arena for the whole process. glibc gives each thread that allocates an
/// arena of its own, up to 8 per CPU; vipd has a dozen mostly idle threads, and each
/// arena keeps its own free and fragmented pages resident (1–2 MB in all at 510
/// instances, most of it the protocol thread's status snapshots). vipd's threads
/// allocate rarely (the protocol thread: one status snapshot per 100 ms), so sharing
/// one arena costs no measurable contention. Call before any thread starts.
pub(crate) fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; called while vipd is still one thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives the heap's free pages back to the kernel: after the configuration is dropped
/// its memory lies in holes between live allocations, which glibc's automatic trimming
/// (top of the heap only) never returns. Called after start and after each reload.
pub(crate) fn return_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory inside the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops the executable's code and read-only data from the resident set, once start-up
/// (or a reload) is over. Start-up runs code from all over the binary — argument
/// parsing, the configuration parser, netlink and nftables set-up — and the kernel maps
/// it in 64 KB fault-around windows, so ~6 MB of vipd's ~8 MB of text stayed resident
/// although the running daemon uses a fraction of it. `MADV_PAGEOUT` unmaps those clean,
/// file-backed pages (nothing is written anywhere: they are read back from the file
/// if ever needed again, e.g. by the next reload); what the daemon runs faults back in.
/// Only the executable's own non-writable mappings are touched: shared libraries are
/// shared with other processes, and writable pages hold data. Returns the bytes
/// advised; a kernel without `MADV_PAGEOUT` (before 5.4) refuses it and nothing changes.
pub(crate) fn page_out_own_code() -> std::io::Result<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let mut advised = 0;
    for range in image_ranges(&maps, &exe) {
        // SAFETY: the range is a whole mapping of this process's executable, read-only
        // (no data lives there); MADV_PAGEOUT only changes what is resident.
        let rc = unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_PAGEOUT,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        advised += range.end - range.start;
    }
    Ok(advised)
}

/// The address ranges of `exe`'s non-writable mappings in a `/proc/PID/maps` text.
/// A binary replaced on disk while running (a package upgrade) is listed with a
/// ` (deleted)` suffix, which still names it.
fn image_ranges(maps: &str, exe: &Path) -> Vec<Range<usize>> {
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    maps.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode path (the path may hold spaces)
            let mut fields = line.splitn(6, ' ');
            let (range, perms) = (fields.next()?, fields.next()?);
            let path = fields.nth(3)?.trim_start();
            let path = path.strip_suffix(" (deleted)").unwrap_or(path);
            if path != exe || perms.contains('w') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start < end).then_some(start..end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d4c0a00000-55d4c0c00000 r--p 00000000 fd:01 1234                       /usr/sbin/vipd
55d4c0c00000-55d4c1400000 r-xp 00200000 fd:01 1234                       /usr/sbin/vipd
55d4c1400000-55d4c1500000 r--p 00a00000 fd:01 1234                       /usr/sbin/vipd
55d4c1500000-55d4c1510000 rw-p 00b00000 fd:01 1234                       /usr/sbin/vipd
55d4c2000000-55d4c2100000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000200000 r-xp 00028000 fd:01 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000400000 r-xp 00000000 fd:01 77                         /usr/sbin/vipd-other
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn only_the_executables_read_only_mappings_are_paged_out() {
        let ranges = image_ranges(MAPS, Path::new("/usr/sbin/vipd"));
        assert_eq!(
            ranges,
            vec![
                0x55d4c0a00000..0x55d4c0c00000,
                0x55d4c0c00000..0x55d4c1400000,
                0x55d4c1400000..0x55d4c1500000,
            ]
        );
    }

    #[test]
    fn a_binary_replaced_while_running_is_still_found() {
        let maps = MAPS.replace("/usr/sbin/vipd\n", "/usr/sbin/vipd (deleted)\n");
        let ranges = image_ranges(&maps, Path::new("/usr/sbin/vipd (deleted)"));
        assert_eq!(ranges.len(), 3);
        assert!(image_ranges(MAPS, Path::new("/usr/sbin/other")).is_empty());
    }

    #[test]
    fn this_test_binary_pages_out_its_own_code_and_keeps_running() {
        // The real call on the test process: the kernel accepts it (root or the
        // file's owner), the advised span is this binary's text at least, and the
        // code still runs afterwards (it is faulted back in).
        match page_out_own_code() {
            Ok(advised) => assert!(advised > 4096, "advised {advised} bytes"),
            // Kernels before 5.4 have no MADV_PAGEOUT.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}"),
        }
        assert!(image_ranges("", Path::new("/x")).is_empty());
    }

    /// build.rs writes each line of hot-text.txt into a linker script as
    /// `*(.text.LINE .text.unlikely.LINE)`: a line with white space, a parenthesis or a
    /// quote would break the release link (or match something else), and an empty list
    /// would leave the daemon's code scattered again.
    #[test]
    fn the_hot_text_list_is_linker_script_safe() {
        let list = include_str!("../hot-text.txt");
        let globs: Vec<&str> = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(globs.len() >= 20, "only {} entries", globs.len());
        for g in &globs {
            assert!(
                g.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_$.*".contains(c)),
                "{g:?}"
            );
        }
        // The engine's timer and advert paths are the core of the running daemon.
        assert!(globs.iter().any(|g| g.contains("handle_timeout")));
        assert!(globs.iter().any(|g| g.contains("send_advert")));
    }
}

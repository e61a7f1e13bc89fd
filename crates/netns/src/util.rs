//! Small helpers shared by the rest of the crate.

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Netns;

/// Runs `program args...`, returns its stdout; fails with stderr on a
/// non-zero exit status.
pub(crate) fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(cmd, None)
}

/// Runs a prepared command (optionally feeding `stdin`), returns stdout.
pub(crate) fn run_command(mut cmd: Command, stdin: Option<&str>) -> Result<String> {
    use std::io::Write;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().with_context(|| format!("cannot run {shown}"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("writing stdin of {shown}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdin
                .map(|s| format!("\n--- stdin ---\n{s}"))
                .unwrap_or_default()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `cond` every `poll` until it returns `true` (→ `true`) or `timeout`
/// has passed (→ `false`, after one last check).
///
/// ```
/// # use std::time::Duration;
/// assert!(vipd_netns::wait_for(Duration::from_millis(10), Duration::from_millis(1), || true));
/// ```
pub fn wait_for(timeout: Duration, poll: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll.min(deadline - now));
    }
}

/// `true` if the namespace `ns` has address `addr` (any prefix length) on
/// interface `dev`. Errors (missing device, …) count as "no".
pub fn has_address(ns: &Netns, dev: &str, addr: IpAddr) -> bool {
    match ns.ip(["-o", "addr", "show", "dev", dev]) {
        Ok(out) => parse_addresses(&out).iter().any(|(a, _)| *a == addr),
        Err(_) => false,
    }
}

/// Parses `ip -o addr` output into `(address, rest-of-line)` pairs.
pub(crate) fn parse_addresses(out: &str) -> Vec<(IpAddr, String)> {
    let mut v = Vec::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == "inet" || w == "inet6" {
                if let Some(a) = words.next() {
                    let a = a.split('/').next().unwrap_or(a);
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        v.push((ip, line.to_string()));
                    }
                }
                break;
            }
        }
    }
    v
}

/// `true` when running with effective uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// For tests: returns `true` (after printing `skipped: needs root`) when
/// the process can't build namespaces, so a test can `return` early.
///
/// ```
/// if vipd_netns::skip_unless_root() { return; }
/// ```
pub fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root");
        return true;
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: needs `ip` (iproute2)");
        return true;
    }
    false
}

/// A scratch directory `/tmp/vpd-<pid>-<n>-<tag>` for logs, configs and pid
/// files. Removed on drop — except while panicking, so the logs of a failed
/// test stay around for inspection.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates a fresh, unique directory under the system temp dir.
    pub fn new(tag: &str) -> Result<WorkDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vpd-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path, keep: false })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Don't delete the directory on drop.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_o_addr() {
        let out = "2: eth0    inet 192.0.2.11/24 scope global eth0\\       valid_lft forever preferred_lft forever\n\
                   2: eth0    inet6 2001:db8::b/64 scope global \\       valid_lft forever preferred_lft forever\n\
                   2: eth0    inet6 fe80::1/64 scope link tentative \\       valid_lft forever preferred_lft forever\n";
        let a = parse_addresses(out);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].0, "192.0.2.11".parse::<IpAddr>().unwrap());
        assert_eq!(a[1].0, "2001:db8::b".parse::<IpAddr>().unwrap());
        assert!(a[2].1.contains("tentative"));
    }

    #[test]
    fn wait_for_times_out() {
        let t = Instant::now();
        assert!(!wait_for(
            Duration::from_millis(30),
            Duration::from_millis(5),
            || false
        ));
        assert!(t.elapsed() >= Duration::from_millis(30));
        let mut n = 0;
        assert!(wait_for(
            Duration::from_secs(1),
            Duration::from_millis(1),
            || {
                n += 1;
                n == 3
            }
        ));
    }

    #[test]
    fn workdir_is_unique_and_removed() {
        let a = WorkDir::new("t").unwrap();
        let b = WorkDir::new("t").unwrap();
        assert_ne!(a.path(), b.path());
        let p = a.path().to_path_buf();
        std::fs::write(a.join("x"), "y").unwrap();
        drop(a);
        assert!(!p.exists());
    }
}

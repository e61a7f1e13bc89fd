//! The [`Proc`] guard.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A child process with its stdout+stderr in a log file.
///
/// The child leads its own process group. Dropping the guard SIGKILLs the
/// whole group and reaps the child.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
    label: String,
}

impl Proc {
    /// Spawns `cmd` (stdin from /dev/null, stdout and stderr appended to the
    /// freshly truncated file `log`) in a new process group.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<Proc> {
        if let Some(dir) = log.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let out: File = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let label = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("spawning {label}"))?;
        Ok(Proc {
            child,
            log: log.to_path_buf(),
            status: None,
            label,
        })
    }

    /// The child's PID (also its process-group id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the process itself (not its group), e.g. `SIGTERM` for
    /// a graceful stop or `SIGHUP` for a reload. No-op once it has exited.
    pub fn signal(&mut self, sig: Signal) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        kill(Pid::from_raw(self.pid()), sig).with_context(|| format!("kill -{sig} {}", self.pid()))
    }

    /// Sends `sig` to the whole process group (the process and children that
    /// stayed in its group).
    pub fn signal_group(&mut self, sig: Signal) -> Result<()> {
        match killpg(Pid::from_raw(self.pid()), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("kill -{sig} -{}", self.pid())),
        }
    }

    /// Simulates a crash: SIGKILL to the whole process group (so e.g.
    /// keepalived's VRRP child dies too, without sending a priority-0
    /// advert) and reaps the process. Returns its exit status.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let _ = self.signal_group(Signal::SIGKILL);
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
        self.wait_timeout(Duration::from_secs(5))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
        }
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status
    }

    /// `true` while the process hasn't exited.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// The log file (stdout + stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log as a (lossy) string.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log, prefixed with the command line — handy
    /// for assertion messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(n);
        format!(
            "--- last {} lines of {} ({}) ---\n{}",
            lines.len() - start,
            self.log.display(),
            self.label,
            lines[start..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Always hit the group: children may outlive an exited leader.
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lifecycle() {
        let dir = crate::WorkDir::new("proc").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello; echo oops >&2; exec sleep 30"]);
        let mut p = Proc::spawn(cmd, &dir.join("p.log")).unwrap();
        assert!(p.is_running());
        assert!(crate::wait_for(
            Duration::from_secs(5),
            Duration::from_millis(5),
            || p.log().contains("oops")
        ));
        assert!(p.log_tail(5).contains("hello"));
        assert!(p.wait_timeout(Duration::from_millis(20)).is_none());
        p.signal(Signal::SIGTERM).unwrap();
        let st = p
            .wait_timeout(Duration::from_secs(5))
            .expect("exits on SIGTERM");
        assert!(!st.success());
        assert!(!p.is_running());
        // Signalling an exited process is fine.
        p.signal(Signal::SIGTERM).unwrap();
    }

    #[test]
    fn kill9_takes_the_group() {
        let dir = crate::WorkDir::new("proc9").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo $! > child.pid; wait"])
            .current_dir(dir.path());
        let mut p = Proc::spawn(cmd, &dir.join("p.log")).unwrap();
        let pidfile = dir.join("child.pid");
        assert!(crate::wait_for(
            Duration::from_secs(5),
            Duration::from_millis(5),
            || {
                std::fs::read_to_string(&pidfile)
                    .map(|s| s.ends_with('\n'))
                    .unwrap_or(false)
            }
        ));
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(p.kill9().is_some());
        // The grandchild got SIGKILL as well (it is reaped by init, so poll).
        assert!(crate::wait_for(
            Duration::from_secs(5),
            Duration::from_millis(5),
            || {
                match std::fs::read_to_string(format!("/proc/{child}/stat")) {
                    Err(_) => true,
                    Ok(s) => s.contains(") Z "),
                }
            }
        ));
    }
}

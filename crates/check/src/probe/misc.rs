//! MISC_CHECK: run `misc_path` (split into words like keepalived, no shell) in a
//! process group of its own, with stdin/stdout/stderr on /dev/null, as `user` (or the
//! global `script_user`). Exit 0 is success, anything else failure, except with
//! `misc_dynamic`: 1 is failure and 2..=255 success with the real server's weight set
//! to `code - 2`. Past `misc_timeout` the whole process group is killed (SIGKILL) and
//! the check fails; the same happens when the checkers stop or the probe is dropped.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::secs;
use crate::sched::Outcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misc {
    pub argv: Vec<String>,
    /// The file `enable_script_security` checked, executed (with `argv[0]` as written)
    /// instead of looking `argv[0]` up again.
    pub program: Option<std::path::PathBuf>,
    pub timeout: Duration,
    pub dynamic: bool,
    /// uid, gid.
    pub run_as: Option<(u32, u32)>,
    /// The real server's configured weight (dynamic weights are deltas from it).
    pub rs_weight: i64,
}

/// Kills the process group when dropped while armed.
struct Group(Option<i32>);

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Misc {
    /// What an exit code means.
    pub fn outcome(&self, code: i32) -> Outcome {
        match code {
            0 if self.dynamic => Outcome::weighted(0, "exit status 0"),
            0 => Outcome::ok(),
            2..=255 if self.dynamic => Outcome::weighted(
                (code as i64 - 2) - self.rs_weight,
                format!("exit status {code}: weight {}", code - 2),
            ),
            c => Outcome::fail(format!("exit status {c}")),
        }
    }

    /// Runs the program; `None` when `stop` completed first (the group was killed).
    pub async fn run_until(&self, stop: impl Future<Output = ()>) -> Option<Outcome> {
        let Some((prog, args)) = self.argv.split_first() else {
            return Some(Outcome::fail("empty misc_path"));
        };
        let deadline = Instant::now() + self.timeout;
        let mut cmd = match &self.program {
            Some(p) => {
                let mut c = tokio::process::Command::new(p);
                c.arg0(prog);
                c
            }
            None => tokio::process::Command::new(prog),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Some(Outcome::fail(format!("{prog}: {}", super::short(&e)))),
        };
        let mut group = Group(child.id().map(|p| p as i32));
        tokio::select! {
            status = child.wait() => {
                // Exited: what it left behind in its group is its own business.
                group.0 = None;
                Some(match status {
                    Ok(s) => match (s.code(), s.signal()) {
                        (Some(c), _) => self.outcome(c),
                        (None, Some(sig)) => Outcome::fail(format!("killed by signal {sig}")),
                        _ => Outcome::fail("exited"),
                    },
                    Err(e) => Outcome::fail(format!("wait: {}", super::short(&e))),
                })
            }
            _ = tokio::time::sleep_until(deadline) => {
                group.kill();
                let _ = child.wait().await;
                Some(Outcome::fail(format!("timed out after {}", secs(self.timeout))))
            }
            _ = stop => {
                group.kill();
                let _ = child.wait().await;
                None
            }
        }
    }

    pub async fn run(&self) -> Outcome {
        self.run_until(std::future::pending())
            .await
            .expect("never stopped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn misc(dynamic: bool) -> Misc {
        Misc {
            argv: vec![],
            program: None,
            timeout: Duration::from_secs(1),
            dynamic,
            run_as: None,
            rs_weight: 3,
        }
    }

    #[test]
    fn exit_codes() {
        let m = misc(false);
        assert!(m.outcome(0).ok);
        assert_eq!(m.outcome(0).weight, None);
        assert!(!m.outcome(1).ok);
        assert!(!m.outcome(12).ok);
        assert_eq!(m.outcome(12).reason, "exit status 12");
        let d = misc(true);
        assert_eq!(d.outcome(0).weight, Some(0));
        assert!(!d.outcome(1).ok);
        // Weight = code - 2, as a delta from the configured 3.
        assert_eq!(
            d.outcome(2),
            Outcome::weighted(-3, "exit status 2: weight 0")
        );
        assert_eq!(d.outcome(12).weight, Some(7));
        assert_eq!(d.outcome(255).weight, Some(250));
        assert!(!d.outcome(256).ok);
        assert!(!d.outcome(-1).ok);
    }
}

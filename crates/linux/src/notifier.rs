//! Notifications on state changes: `notify_master` / `notify_backup` / `notify_fault`
//! / `notify_stop`, the generic `notify` (called with `INSTANCE name STATE priority`,
//! as keepalived does) and the `notify_fifo` line (`INSTANCE "name" STATE priority`).
//! Each instance has its own worker, so its scripts run one at a time and in the order
//! of the transitions (a "start nginx" never overtakes the "stop nginx" before it),
//! while a hung script of one instance delays no other; every script is killed at its
//! timeout. Nothing here runs on, or waits for, the protocol thread.

use crate::scripts::{Outcome, Script};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

/// The notify scripts of one instance, split into words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyPlan {
    pub master: Option<Script>,
    pub backup: Option<Script>,
    pub fault: Option<Script>,
    pub stop: Option<Script>,
    /// `notify`: gets `INSTANCE <name> <STATE> <priority>` appended.
    pub generic: Option<Script>,
    pub timeout: Duration,
    /// `smtp_alert` (resolved with the global defaults): mail the transitions.
    pub mail: bool,
}

impl NotifyPlan {
    pub fn is_empty(&self) -> bool {
        self.master.is_none()
            && self.backup.is_none()
            && self.fault.is_none()
            && self.stop.is_none()
            && self.generic.is_none()
    }
}

/// One state change to announce. `state` is keepalived's word: MASTER, BACKUP, FAULT
/// or STOP.
#[derive(Debug, Clone)]
pub struct Event {
    /// `INSTANCE` or `GROUP` (a `vrrp_sync_group`), as keepalived passes it.
    pub kind: &'static str,
    pub instance: String,
    pub state: &'static str,
    pub priority: u8,
    pub plan: NotifyPlan,
}

/// What happened to a notify script, for the log.
#[derive(Debug, Clone)]
pub struct NotifyResult {
    pub instance: String,
    pub state: &'static str,
    pub script: String,
    pub outcome: Outcome,
}

pub struct Notifier {
    workers: HashMap<String, (Sender<Event>, std::thread::JoinHandle<()>)>,
    fifo: Option<std::fs::File>,
    results: Sender<NotifyResult>,
}

impl Notifier {
    /// `fifo`: created if missing and held open for the notifier's life, as keepalived
    /// does, so a reader (`while read line; do …; done < FIFO`) never sees end-of-file
    /// between two lines.
    pub fn new(fifo: Option<PathBuf>, results: Sender<NotifyResult>) -> Notifier {
        Notifier {
            workers: HashMap::new(),
            fifo: fifo.and_then(|p| match open_fifo(&p) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!("notify_fifo {}: {e}; no FIFO lines", p.display());
                    None
                }
            }),
            results,
        }
    }

    pub fn notify(&mut self, ev: Event) {
        if let Some(fifo) = &mut self.fifo {
            // Non-blocking: a reader that stopped reading costs lines, never the daemon.
            let _ = fifo.write_all(
                format!(
                    "{} \"{}\" {} {}\n",
                    ev.kind, ev.instance, ev.state, ev.priority
                )
                .as_bytes(),
            );
        }
        if ev.plan.is_empty() {
            return;
        }
        if !self.workers.contains_key(&ev.instance) {
            let (tx, rx) = mpsc::channel::<Event>();
            let results = self.results.clone();
            let spawned = std::thread::Builder::new()
                .name("vipd-notify".into())
                .spawn(move || {
                    for ev in rx {
                        run_event(&ev, &results);
                    }
                });
            match spawned {
                Ok(handle) => {
                    self.workers.insert(ev.instance.clone(), (tx, handle));
                }
                Err(_) => return,
            }
        }
        if let Some((tx, _)) = self.workers.get(&ev.instance) {
            let _ = tx.send(ev);
        }
    }

    /// Let queued scripts (a `notify_stop` at shutdown) finish, waiting at most `limit`.
    pub fn finish(self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        let handles: Vec<_> = self
            .workers
            .into_values()
            .map(|(tx, h)| {
                drop(tx);
                h
            })
            .collect();
        while handles.iter().any(|h| !h.is_finished()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn run_event(ev: &Event, results: &Sender<NotifyResult>) {
    let specific = match ev.state {
        "MASTER" => &ev.plan.master,
        "BACKUP" => &ev.plan.backup,
        "FAULT" => &ev.plan.fault,
        "STOP" => &ev.plan.stop,
        _ => &None,
    };
    let generic_args = vec![
        ev.kind.to_string(),
        ev.instance.clone(),
        ev.state.to_string(),
        ev.priority.to_string(),
    ];
    for (cmd, extra) in [(specific, Vec::new()), (&ev.plan.generic, generic_args)] {
        if let Some(cmd) = cmd {
            let outcome = cmd.run(&extra, ev.plan.timeout);
            let _ = results.send(NotifyResult {
                instance: ev.instance.clone(),
                state: ev.state,
                script: cmd.argv.join(" "),
                outcome,
            });
        }
    }
}

/// Opened read-write and non-blocking (keepalived's flags): the open never waits for a
/// reader, and the FIFO never reports end-of-file to one while vipd runs.
fn open_fifo(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    crate::scripts::ensure_fifo(path)?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn scripts_run_in_order_with_keepalived_arguments() {
        let dir = std::env::temp_dir().join(format!("vipd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let sh = |what: &str| {
            Some(Script::new(&format!(
                "/bin/sh -c 'sleep 0.05; echo {what} \"$@\" >> {}' notify",
                log.display()
            )))
        };
        let plan = NotifyPlan {
            master: sh("master"),
            backup: sh("backup"),
            generic: sh("generic"),
            timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel();
        let mut n = Notifier::new(None, tx);
        for state in ["MASTER", "BACKUP", "MASTER"] {
            n.notify(Event {
                kind: "INSTANCE",
                instance: "VI_1".into(),
                state,
                priority: 100,
                plan: plan.clone(),
            });
        }
        let results: Vec<NotifyResult> = (0..6)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert!(results.iter().all(|r| r.outcome.success()), "{results:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "master",
                "generic INSTANCE VI_1 MASTER 100",
                "backup",
                "generic INSTANCE VI_1 BACKUP 100",
                "master",
                "generic INSTANCE VI_1 MASTER 100"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_hanging_script_is_killed_and_reported() {
        let plan = NotifyPlan {
            fault: Some(Script::new("sleep 10")),
            timeout: Duration::from_millis(100),
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel();
        let mut n = Notifier::new(None, tx);
        let t = Instant::now();
        n.notify(Event {
            kind: "INSTANCE",
            instance: "VI_2".into(),
            state: "FAULT",
            priority: 50,
            plan,
        });
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(r.outcome, Outcome::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn fifo_lines_in_keepalived_format() {
        let path = std::env::temp_dir().join(format!("vipd-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || std::fs::read_to_string(path).unwrap())
        };
        std::thread::sleep(Duration::from_millis(100)); // let the reader open it
        let (tx, _rx) = mpsc::channel();
        let mut n = Notifier::new(Some(path.clone()), tx);
        for (state, gap) in [("MASTER", 0), ("BACKUP", 50)] {
            // A pause between lines: the reader must not see end-of-file in it.
            std::thread::sleep(Duration::from_millis(gap));
            n.notify(Event {
                kind: "INSTANCE",
                instance: "VI_1".into(),
                state,
                priority: 100,
                plan: NotifyPlan::default(),
            });
        }
        drop(n);
        assert_eq!(
            reader.join().unwrap(),
            "INSTANCE \"VI_1\" MASTER 100\nINSTANCE \"VI_1\" BACKUP 100\n"
        );
        let _ = std::fs::remove_file(&path);
    }
}

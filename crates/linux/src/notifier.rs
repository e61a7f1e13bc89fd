//! Notifications on state changes: `notify_master` / `notify_backup` / `notify_fault`
//! / `notify_stop`, the generic `notify` (called with `INSTANCE name STATE priority`,
//! as keepalived does) and the `notify_fifo` line (`INSTANCE "name" STATE priority`).
//! Each instance has its own worker, so its scripts run one at a time and in the order
//! of the transitions (a "start nginx" never overtakes the "stop nginx" before it),
//! while a hung script of one instance delays no other; every script is killed at its
//! timeout. Nothing here runs on, or waits for, the protocol thread.
//!
//! [`Fifos`] is the one writer of keepalived's three FIFOs, shared by the VRRP notifier
//! and the load balancer: `notify_fifo` gets every line, `vrrp_notify_fifo` the VRRP
//! lines, `lvs_notify_fifo` the load-balancer (`VS …` / `RS …`) lines.

use crate::plan::{FifoPlan, NotifyPlan};
use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;
use vipd_exec::scripts::{Helper, Outcome};

/// The open notify FIFOs and their running reader scripts (stopped when this is
/// dropped). Each line is one `write(2)` of less than `PIPE_BUF` bytes, so lines from
/// the VRRP and load-balancer threads never interleave.
#[derive(Default)]
pub struct Fifos {
    general: Option<std::fs::File>,
    vrrp: Option<std::fs::File>,
    lvs: Option<std::fs::File>,
    /// Each reader script with (a second descriptor of) the FIFO it reads.
    readers: Vec<(Helper, Option<std::fs::File>)>,
}

impl Fifos {
    /// Creates each FIFO that is missing, starts its script before any line is written,
    /// and opens it. A script that cannot start is an error (vipd does not start); a
    /// FIFO that cannot be opened costs its lines, with a warning.
    pub fn open(plan: &FifoPlan) -> Result<Fifos, String> {
        let mut fifos = Fifos::default();
        for (kw, spec, slot) in [
            ("notify_fifo", &plan.general, &mut fifos.general),
            ("vrrp_notify_fifo", &plan.vrrp, &mut fifos.vrrp),
            ("lvs_notify_fifo", &plan.lvs, &mut fifos.lvs),
        ] {
            let Some(spec) = spec else { continue };
            let path = &spec.path;
            let mut reader = None;
            if let Some(script) = &spec.script {
                let started = vipd_exec::scripts::ensure_fifo(path)
                    .and_then(|()| Helper::start(script, &[path.display().to_string()]));
                match started {
                    Ok(h) => {
                        tracing::info!(
                            "{kw}_script started (pid {}) on {}",
                            h.pid(),
                            path.display()
                        );
                        reader = Some(h);
                    }
                    Err(e) => return Err(format!("{kw}_script on {}: {e}", path.display())),
                }
            }
            match open_fifo(path) {
                Ok(f) => {
                    if let Some(h) = reader.take() {
                        fifos.readers.push((h, f.try_clone().ok()));
                    }
                    *slot = Some(f);
                }
                Err(e) => tracing::warn!("{kw} {}: {e}; no FIFO lines", path.display()),
            }
            if let Some(h) = reader {
                fifos.readers.push((h, None));
            }
        }
        Ok(fifos)
    }

    /// A VRRP line (`INSTANCE "VI_1" MASTER 100`): to `notify_fifo` and `vrrp_notify_fifo`.
    pub fn vrrp_line(&self, line: &str) {
        write_line([&self.general, &self.vrrp], line);
    }

    /// A load-balancer line (`RS [198.51.100.1]:tcp:80 [192.0.2.15]:tcp:80 DOWN`): to
    /// `notify_fifo` and `lvs_notify_fifo`.
    pub fn lvs_line(&self, line: &str) {
        write_line([&self.general, &self.lvs], line);
    }
}

impl Drop for Fifos {
    /// Gives each reader script up to a second to read what is still in its FIFO (the
    /// lines of the way out: `notify_stop`'s state, omega's `DOWN`s) before it is stopped.
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let unread = |f: &std::fs::File| {
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD into a c_int on a FIFO descriptor we own.
            let ok = unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n) } == 0;
            ok && n > 0
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while self.readers.iter().filter_map(|r| r.1.as_ref()).any(unread)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn write_line(to: [&Option<std::fs::File>; 2], line: &str) {
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    for mut f in to.into_iter().flatten() {
        // Non-blocking: a reader that stopped reading costs lines, never the daemon.
        let _ = f.write_all(&bytes);
    }
}

/// One state change to announce. `state` is keepalived's word: MASTER, BACKUP, FAULT
/// or STOP, or the event MASTER_RX_LOWER_PRI.
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
    fifos: Arc<Fifos>,
    results: Sender<NotifyResult>,
}

impl Notifier {
    /// `fifos`: where the state lines go (held open for vipd's life, as keepalived
    /// does, so a reader's `while read line; do …; done < FIFO` never sees end-of-file
    /// between two lines).
    pub fn new(fifos: Arc<Fifos>, results: Sender<NotifyResult>) -> Notifier {
        Notifier {
            workers: HashMap::new(),
            fifos,
            results,
        }
    }

    /// `notify_priority_changes`: `INSTANCE "VI_1" MASTER_PRIORITY 90` (or
    /// `BACKUP_PRIORITY` in any other state), on the FIFOs only, as keepalived.
    pub fn priority_changed(&self, instance: &str, master: bool, priority: u8) {
        let state = if master {
            "MASTER_PRIORITY"
        } else {
            "BACKUP_PRIORITY"
        };
        self.fifos
            .vrrp_line(&format!("INSTANCE \"{instance}\" {state} {priority}"));
    }

    pub fn notify(&mut self, ev: Event) {
        self.fifos.vrrp_line(&format!(
            "{} \"{}\" {} {}",
            ev.kind, ev.instance, ev.state, ev.priority
        ));
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

/// keepalived's word for the event behind `notify_master_rx_lower_pri`.
pub const MASTER_RX_LOWER_PRI: &str = "MASTER_RX_LOWER_PRI";

fn run_event(ev: &Event, results: &Sender<NotifyResult>) {
    let specific = match ev.state {
        "MASTER" => &ev.plan.master,
        "BACKUP" => &ev.plan.backup,
        "FAULT" => &ev.plan.fault,
        "STOP" => &ev.plan.stop,
        "DELETED" => &ev.plan.deleted,
        MASTER_RX_LOWER_PRI => &ev.plan.master_rx_lower_pri,
        _ => &None,
    };
    // keepalived runs only the event's own script for MASTER_RX_LOWER_PRI.
    let generic = match ev.state {
        MASTER_RX_LOWER_PRI => &None,
        _ => &ev.plan.generic,
    };
    let generic_args = vec![
        ev.kind.to_string(),
        ev.instance.clone(),
        ev.state.to_string(),
        ev.priority.to_string(),
    ];
    for (cmd, extra) in [(specific, Vec::new()), (generic, generic_args)] {
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
    vipd_exec::scripts::ensure_fifo(path)?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FifoSpec;
    use std::time::Instant;
    use vipd_exec::scripts::Script;

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
        let mut n = Notifier::new(Arc::default(), tx);
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
        let mut n = Notifier::new(Arc::default(), tx);
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
        let plan = FifoPlan {
            general: Some(FifoSpec {
                path: path.clone(),
                script: None,
            }),
            ..Default::default()
        };
        let mut n = Notifier::new(Arc::new(Fifos::open(&plan).unwrap()), tx);
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

    #[test]
    fn each_fifo_gets_its_kind_of_line() {
        let dir = std::env::temp_dir().join(format!("vipd-fifos-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = |name: &str| {
            Some(FifoSpec {
                path: dir.join(name),
                script: None,
            })
        };
        let plan = FifoPlan {
            general: spec("all"),
            vrrp: spec("vrrp"),
            lvs: spec("lvs"),
        };
        let fifos = Fifos::open(&plan).unwrap();
        fifos.vrrp_line("INSTANCE \"VI_1\" MASTER 100");
        fifos.lvs_line("RS [198.51.100.1]:tcp:80 [192.0.2.15]:tcp:80 DOWN");
        let read = |name: &str| {
            use std::io::Read;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(dir.join(name))
                .unwrap();
            let mut buf = vec![0; 4096];
            let n = f.read(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        assert_eq!(
            read("all"),
            "INSTANCE \"VI_1\" MASTER 100\nRS [198.51.100.1]:tcp:80 [192.0.2.15]:tcp:80 DOWN\n"
        );
        assert_eq!(read("vrrp"), "INSTANCE \"VI_1\" MASTER 100\n");
        assert_eq!(
            read("lvs"),
            "RS [198.51.100.1]:tcp:80 [192.0.2.15]:tcp:80 DOWN\n"
        );
        drop(fifos);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn master_rx_lower_pri_runs_its_script_alone() {
        let dir = std::env::temp_dir().join(format!("vipd-rxlow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let sh = |what: &str| {
            Some(Script::new(&format!(
                "/bin/sh -c 'echo {what} \"$@\" >> {}' notify",
                log.display()
            )))
        };
        let plan = NotifyPlan {
            master: sh("master"),
            generic: sh("generic"),
            master_rx_lower_pri: sh("lower"),
            timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel();
        let mut n = Notifier::new(Arc::default(), tx);
        n.notify(Event {
            kind: "INSTANCE",
            instance: "VI_1".into(),
            state: MASTER_RX_LOWER_PRI,
            priority: 150,
            plan,
        });
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(r.outcome.success(), "{r:?}");
        n.finish(Duration::from_secs(5));
        assert!(rx.try_recv().is_err(), "only one script ran");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "lower\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

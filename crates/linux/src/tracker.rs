//! The tracking thread ("vipd-track"): keeps the state of every tracked object
//! (interfaces from link events, `vrrp_script` results), evaluates each instance's
//! tracking with [`crate::track::evaluate`] and tells the protocol thread only when
//! an instance's verdict changes. Scripts are scheduled here and each run waits on a
//! thread of its own, so a hung script delays nothing but itself.

use crate::linkwatch::LinkEvent;
use crate::status::{Snapshot, TrackLine};
use crate::track::{
    evaluate, Kind, ObjectId, ObjectState, ParamMatch, ProcessPlan, RiseFall, ScriptPlan,
    TrackPlan, Verdict, VerdictSink,
};
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vipd_exec::scripts::{self, Outcome};

/// How often files and processes are looked at. keepalived uses inotify and the
/// process connector; polling is simpler, bounded and container-proof — a documented
/// difference.
pub const FILE_POLL: Duration = Duration::from_millis(200);
pub const PROCESS_POLL: Duration = Duration::from_millis(500);

pub enum Msg {
    /// New configuration; the ack is sent once the resulting verdicts are queued for
    /// the protocol thread.
    Configure(TrackPlan, Option<Sender<()>>),
    /// Link events were lost: re-read every tracked interface.
    Resync,
    /// A link event: interface index, usable or not.
    Link { ifindex: u32, running: bool },
    ScriptDone {
        name: String,
        generation: u64,
        outcome: Outcome,
    },
    /// A `bfd_instance` session went Up (`true`) or left Up (`false`).
    Bfd { name: String, up: bool },
}

impl From<LinkEvent> for Msg {
    fn from(e: LinkEvent) -> Msg {
        match e {
            LinkEvent::Resync => Msg::Resync,
            LinkEvent::Link { ifindex, running } => Msg::Link { ifindex, running },
        }
    }
}

/// What the daemon logs about tracking.
#[derive(Debug, Clone)]
pub enum TrackNotice {
    ObjectChanged {
        object: ObjectId,
        state: ObjectState,
        detail: String,
    },
    Verdict {
        instance: String,
        priority_adjustment: i32,
        faults: Vec<ObjectId>,
    },
    /// A tracked interface is back (up) under a new index: it was deleted and
    /// re-created. Sockets, multicast memberships and the plan still name the old
    /// index, so the daemon reloads to rebind.
    Recreated { interface: String, ifindex: u32 },
    /// An interface the plan lacks (`dynamic_interfaces`) exists now (and is up, or
    /// existed already when the plan was applied): the daemon reloads to use it.
    Appeared { interface: String, ifindex: u32 },
}

#[derive(Clone)]
pub struct TrackerHandle {
    tx: Sender<Msg>,
}

impl TrackerHandle {
    pub fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
    }

    /// Configure and wait until the verdicts are on their way to the protocol thread.
    pub fn configure(&self, plan: TrackPlan) {
        let (ack, done) = mpsc::channel();
        if self.tx.send(Msg::Configure(plan, Some(ack))).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }
}

pub fn start(
    protocol: impl VerdictSink,
    notices: Sender<TrackNotice>,
    status: Arc<Mutex<Snapshot>>,
) -> std::io::Result<TrackerHandle> {
    let (tx, rx) = mpsc::channel();
    let handle = TrackerHandle { tx: tx.clone() };
    std::thread::Builder::new()
        .name("vipd-track".into())
        .spawn(move || {
            Tracker {
                plan: TrackPlan::default(),
                states: HashMap::new(),
                verdicts: HashMap::new(),
                scripts: HashMap::new(),
                ifindex: HashMap::new(),
                generation: 0,
                status,
                process_since: HashMap::new(),
                protocol: Box::new(protocol),
                notices,
                tx,
            }
            .run(rx)
        })?;
    Ok(handle)
}

struct ScriptState {
    plan: ScriptPlan,
    filter: RiseFall,
    next_run: Instant,
    running: bool,
}

struct Tracker {
    status: Arc<Mutex<Snapshot>>,
    /// A process quorum change waiting out its delay: (new state, since).
    process_since: HashMap<String, (ObjectState, Instant)>,
    plan: TrackPlan,
    states: HashMap<ObjectId, ObjectState>,
    verdicts: HashMap<String, Verdict>,
    scripts: HashMap<String, ScriptState>,
    /// Interface index → name, for the tracked interfaces.
    ifindex: HashMap<u32, String>,
    generation: u64,
    /// The protocol thread.
    protocol: Box<dyn VerdictSink>,
    notices: Sender<TrackNotice>,
    tx: Sender<Msg>,
}

impl Tracker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut next_file_poll = Instant::now();
        let mut next_process_poll = Instant::now();
        loop {
            let now = Instant::now();
            self.launch_due_scripts(now);
            if now >= next_file_poll {
                self.poll_files();
                next_file_poll = now + FILE_POLL;
            }
            if now >= next_process_poll {
                self.poll_processes();
                self.poll_addresses();
                next_process_poll = now + PROCESS_POLL;
            }
            let polls = (!self.plan.files.is_empty())
                .then_some(next_file_poll)
                .into_iter()
                .chain(
                    (!self.plan.processes.is_empty() || !self.tracked_addresses().is_empty())
                        .then_some(next_process_poll),
                );
            let next = self
                .scripts
                .values()
                .filter(|s| !s.running)
                .map(|s| s.next_run)
                .chain(polls)
                .min();
            let msg = match next {
                Some(t) => match rx.recv_timeout(t.saturating_duration_since(Instant::now())) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
            };
            match msg {
                Msg::Configure(plan, ack) => {
                    self.configure(plan);
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                }
                Msg::Resync => {
                    for (_, name) in self.ifindex.clone() {
                        let up = crate::linkwatch::is_running(&name);
                        let state = if up {
                            ObjectState::Good
                        } else {
                            ObjectState::Bad
                        };
                        self.set(
                            ObjectId {
                                kind: Kind::Interface,
                                name,
                            },
                            state,
                            "resync".into(),
                        );
                    }
                }
                Msg::Link { ifindex, running } => {
                    if running && !self.ifindex.contains_key(&ifindex) {
                        self.recreated(ifindex);
                    }
                    if let Some(name) = self.ifindex.get(&ifindex).cloned() {
                        let state = if running {
                            ObjectState::Good
                        } else {
                            ObjectState::Bad
                        };
                        let detail = if running { "up" } else { "down or no carrier" };
                        self.set(
                            ObjectId {
                                kind: Kind::Interface,
                                name,
                            },
                            state,
                            detail.into(),
                        );
                    }
                }
                Msg::Bfd { name, up } => {
                    let (state, detail) = if up {
                        (ObjectState::Good, "session Up")
                    } else {
                        (ObjectState::Bad, "session not Up")
                    };
                    self.set(
                        ObjectId {
                            kind: Kind::Bfd,
                            name,
                        },
                        state,
                        detail.into(),
                    );
                }
                Msg::ScriptDone {
                    name,
                    generation,
                    outcome,
                } => {
                    if generation != self.generation {
                        continue;
                    }
                    let Some(s) = self.scripts.get_mut(&name) else {
                        continue;
                    };
                    s.running = false;
                    if let Some(good) = s.filter.record(outcome.success()) {
                        let state = if good {
                            ObjectState::Good
                        } else {
                            ObjectState::Bad
                        };
                        self.set(
                            ObjectId {
                                kind: Kind::Script,
                                name,
                            },
                            state,
                            format!("{outcome:?}"),
                        );
                    }
                }
            }
        }
    }

    fn configure(&mut self, plan: TrackPlan) {
        self.generation += 1;
        // Keep what we know about objects that are still tracked (a reload must not
        // forget that a script is failing), start the rest afresh.
        let mut scripts = HashMap::new();
        for sp in &plan.scripts {
            let kept = self.scripts.remove(&sp.name).filter(|s| s.plan == *sp);
            let state = kept.unwrap_or_else(|| ScriptState {
                filter: RiseFall::new(sp.rise, sp.fall, sp.init_fail),
                plan: sp.clone(),
                next_run: Instant::now(),
                running: false,
            });
            scripts.insert(
                sp.name.clone(),
                ScriptState {
                    running: false,
                    ..state
                },
            );
            if sp.init_fail
                && !self.states.contains_key(&ObjectId {
                    kind: Kind::Script,
                    name: sp.name.clone(),
                })
            {
                self.states.insert(
                    ObjectId {
                        kind: Kind::Script,
                        name: sp.name.clone(),
                    },
                    ObjectState::Bad,
                );
            }
        }
        self.scripts = scripts;
        self.ifindex.clear();
        for (_, refs) in &plan.instances {
            for r in refs.iter().filter(|r| r.object.kind == Kind::Interface) {
                let name = &r.object.name;
                let state = match nix::net::if_::if_nametoindex(name.as_str()) {
                    Ok(i) => {
                        self.ifindex.insert(i, name.clone());
                        if crate::linkwatch::is_running(name) {
                            ObjectState::Good
                        } else {
                            ObjectState::Bad
                        }
                    }
                    Err(_) => ObjectState::Bad,
                };
                self.states.insert(r.object.clone(), state);
            }
        }
        // A tracked BFD session counts as down until the BFD thread says it is Up (as
        // keepalived); one already known keeps its state.
        for (_, refs) in &plan.instances {
            for r in refs.iter().filter(|r| r.object.kind == Kind::Bfd) {
                self.states
                    .entry(r.object.clone())
                    .or_insert(ObjectState::Bad);
            }
        }
        self.verdicts
            .retain(|name, _| plan.instances.iter().any(|(n, _)| n == name));
        for f in &plan.files {
            if let Some((value, overwrite)) = f.init {
                if overwrite || !f.path.exists() {
                    let _ = std::fs::write(&f.path, format!("{value}\n"));
                }
            }
            self.states.insert(
                ObjectId {
                    kind: Kind::File,
                    name: f.name.clone(),
                },
                ObjectState::Value(read_value(&f.path)),
            );
        }
        // An awaited interface that appeared while the plan was being made.
        for name in &plan.awaited {
            if let Ok(ifindex) = nix::net::if_::if_nametoindex(name.as_str()) {
                let _ = self.notices.send(TrackNotice::Appeared {
                    interface: name.clone(),
                    ifindex,
                });
            }
        }
        self.plan = plan;
        self.reevaluate(true);
    }

    /// An unknown interface index came up: if it is a tracked interface's name
    /// under a new index (deleted and re-created), follow the new index and say so.
    fn recreated(&mut self, ifindex: u32) {
        let mut tracked: Vec<String> = (self.plan.instances.iter())
            .flat_map(|(_, refs)| refs.iter())
            .filter(|r| r.object.kind == Kind::Interface)
            .map(|r| r.object.name.clone())
            .collect();
        tracked.dedup();
        for name in tracked {
            if nix::net::if_::if_nametoindex(name.as_str()) != Ok(ifindex) {
                continue;
            }
            self.ifindex.retain(|_, n| *n != name);
            self.ifindex.insert(ifindex, name.clone());
            let _ = self.notices.send(TrackNotice::Recreated {
                interface: name,
                ifindex,
            });
            return;
        }
        for name in &self.plan.awaited {
            if nix::net::if_::if_nametoindex(name.as_str()) == Ok(ifindex) {
                // Known from now on: its further events ask for no second reload.
                self.ifindex.insert(ifindex, name.clone());
                let _ = self.notices.send(TrackNotice::Appeared {
                    interface: name.clone(),
                    ifindex,
                });
                return;
            }
        }
    }

    fn set(&mut self, object: ObjectId, state: ObjectState, detail: String) {
        if self.states.get(&object) == Some(&state) {
            return;
        }
        self.states.insert(object.clone(), state);
        let _ = self.notices.send(TrackNotice::ObjectChanged {
            object,
            state,
            detail,
        });
        self.reevaluate(false);
    }

    /// Tell the protocol thread about every instance whose verdict changed (all of
    /// them when `all`, after a reconfiguration).
    fn reevaluate(&mut self, all: bool) {
        for (name, refs) in &self.plan.instances {
            let v = evaluate(refs, &self.states);
            if !all && self.verdicts.get(name) == Some(&v) {
                continue;
            }
            if self.verdicts.get(name) != Some(&v) {
                let _ = self.notices.send(TrackNotice::Verdict {
                    instance: name.clone(),
                    priority_adjustment: v.adjustment,
                    faults: v.faults.clone(),
                });
            }
            self.protocol.verdict(name.clone(), v.adjustment, v.fault());
            self.verdicts.insert(name.clone(), v);
        }
        self.publish();
    }

    /// An object's state as `vipd status` shows it: good, bad, unknown or a file's value.
    fn state_text(&self, kind: Kind, name: &str) -> String {
        let id = ObjectId {
            kind,
            name: name.to_string(),
        };
        match self.states.get(&id) {
            None => "unknown".into(),
            Some(ObjectState::Good) => "good".into(),
            Some(ObjectState::Bad) => "bad".into(),
            Some(ObjectState::Value(v)) => v.to_string(),
        }
    }

    /// Put every instance's tracked objects into the status snapshot, and the scripts,
    /// files and processes tracked with their states (for SNMP).
    fn publish(&self) {
        let mut map = std::collections::BTreeMap::new();
        for (name, refs) in &self.plan.instances {
            let lines = refs
                .iter()
                .map(|r| {
                    let alone = evaluate(std::slice::from_ref(r), &self.states);
                    TrackLine {
                        kind: r.object.kind.as_str().to_string(),
                        name: r.object.name.clone(),
                        state: self.state_text(r.object.kind, &r.object.name),
                        weight: r.weight,
                        reverse: r.reverse,
                        effect: if alone.fault() {
                            "FAULT".into()
                        } else {
                            format!("{:+}", alone.adjustment)
                        },
                    }
                })
                .collect();
            map.insert(name.clone(), lines);
        }
        let with_state = |kind, name: &str| self.state_text(kind, name);
        let scripts = (self.plan.scripts.iter())
            .map(|p| (p.clone(), with_state(Kind::Script, &p.name)))
            .collect();
        let files = (self.plan.files.iter())
            .map(|p| (p.clone(), with_state(Kind::File, &p.name)))
            .collect();
        let processes = (self.plan.processes.iter())
            .map(|p| (p.clone(), with_state(Kind::Process, &p.name)))
            .collect();
        let bfds = (self.plan.bfds.iter())
            .map(|p| (p.clone(), with_state(Kind::Bfd, &p.name)))
            .collect();
        if let Ok(mut snap) = self.status.lock() {
            snap.tracking = map;
            snap.track_scripts = scripts;
            snap.track_files = files;
            snap.track_processes = processes;
            snap.track_bfds = bfds;
        }
    }

    fn poll_files(&mut self) {
        for f in self.plan.files.clone() {
            let value = read_value(&f.path);
            self.set(
                ObjectId {
                    kind: Kind::File,
                    name: f.name.clone(),
                },
                ObjectState::Value(value),
                format!("{} = {value}", f.path.display()),
            );
        }
    }

    /// The addresses instances track (`track_src_ip`).
    fn tracked_addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .plan
            .instances
            .iter()
            .flat_map(|(_, refs)| refs)
            .filter(|r| r.object.kind == Kind::Address)
            .map(|r| r.object.name.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `track_src_ip`: each tracked address is good while an interface has it (read
    /// with the process table's period).
    fn poll_addresses(&mut self) {
        let tracked = self.tracked_addresses();
        if tracked.is_empty() {
            return;
        }
        let local: Vec<String> = match nix::ifaddrs::getifaddrs() {
            Ok(list) => list
                .filter_map(|ifa| ifa.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|s| std::net::IpAddr::V4(s.ip()).to_string())
                        .or_else(|| {
                            a.as_sockaddr_in6()
                                .map(|s| std::net::IpAddr::V6(s.ip()).to_string())
                        })
                })
                .collect(),
            Err(e) => {
                tracing::warn!("track_src_ip: listing the local addresses: {e}");
                return;
            }
        };
        for addr in tracked {
            let present = local.contains(&addr);
            self.set(
                ObjectId {
                    kind: Kind::Address,
                    name: addr,
                },
                if present {
                    ObjectState::Good
                } else {
                    ObjectState::Bad
                },
                if present {
                    "present"
                } else {
                    "on no interface"
                }
                .into(),
            );
        }
    }

    fn poll_processes(&mut self) {
        if self.plan.processes.is_empty() {
            return;
        }
        let table = process_table();
        for p in self.plan.processes.clone() {
            let n = table
                .iter()
                .filter(|(comm, args)| matches(&p, comm, args))
                .count() as u32;
            let good = n >= p.quorum && p.quorum_max.is_none_or(|m| n <= m);
            let state = if good {
                ObjectState::Good
            } else {
                ObjectState::Bad
            };
            let id = ObjectId {
                kind: Kind::Process,
                name: p.name.clone(),
            };
            // Hold a change back until it has lasted the configured delay.
            let delay = if good {
                p.fork_delay
            } else {
                p.terminate_delay
            };
            if self.states.contains_key(&id) && self.states.get(&id) != Some(&state) {
                let since = *self
                    .process_since
                    .entry(p.name.clone())
                    .or_insert((state, Instant::now()));
                let since = if since.0 == state {
                    since.1
                } else {
                    self.process_since
                        .insert(p.name.clone(), (state, Instant::now()));
                    Instant::now()
                };
                if since.elapsed() < delay {
                    continue;
                }
            }
            self.process_since.remove(&p.name);
            self.set(
                ObjectId {
                    kind: Kind::Process,
                    name: p.name.clone(),
                },
                state,
                format!("{n} running (quorum {})", p.quorum),
            );
        }
    }

    fn launch_due_scripts(&mut self, now: Instant) {
        for s in self
            .scripts
            .values_mut()
            .filter(|s| !s.running && s.next_run <= now)
        {
            s.running = true;
            // A fixed rate, as keepalived: the next run is due one interval after this
            // one started (a run still going when it is due is not doubled).
            s.next_run = now + s.plan.interval;
            let (plan, tx, generation) = (s.plan.clone(), self.tx.clone(), self.generation);
            let spawned = std::thread::Builder::new()
                .name("vipd-script".into())
                .spawn(move || {
                    let outcome = scripts::run_program(
                        plan.program.as_deref(),
                        &plan.argv,
                        &[],
                        plan.timeout,
                        plan.run_as,
                    );
                    let _ = tx.send(Msg::ScriptDone {
                        name: plan.name,
                        generation,
                        outcome,
                    });
                });
            if spawned.is_err() {
                s.running = false;
                s.next_run = now + s.plan.interval;
            }
        }
    }
}

/// A tracked file's integer; a missing or unreadable file, or text that is not a
/// number, counts as 0 (no effect), as keepalived does.
fn read_value(path: &std::path::Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|w| w.parse().ok()))
        .unwrap_or(0)
}

/// (comm, argv) of every process, from /proc.
fn process_table() -> Vec<(String, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm"))
                .ok()?
                .trim_end()
                .to_string();
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((comm, args))
        })
        .collect()
}

fn matches(p: &ProcessPlan, comm: &str, argv: &[String]) -> bool {
    let Some(name) = p.process.first() else {
        return false;
    };
    let name_ok = if p.full_command {
        argv.first().is_some_and(|a| a == name)
    } else {
        comm == name.as_str()
            || argv
                .first()
                .and_then(|a| a.rsplit('/').next())
                .is_some_and(|b| b == name)
    };
    let want = &p.process[1..];
    let args = argv.get(1..).unwrap_or(&[]);
    name_ok
        && (want.is_empty()
            || match p.param_match {
                ParamMatch::Exact => args == want,
                ParamMatch::Initial => args.starts_with(want),
                ParamMatch::Partial => args.windows(want.len()).any(|w| w == want),
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_matching() {
        let p = ProcessPlan {
            name: "n".into(),
            process: vec!["nginx".into()],
            full_command: false,
            quorum: 1,
            quorum_max: None,
            param_match: ParamMatch::Exact,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
            weight: 1,
            reverse: false,
        };
        assert!(matches(&p, "nginx", &["nginx: master process".into()]));
        assert!(matches(
            &p,
            "other",
            &["/usr/sbin/nginx".into(), "-g".into()]
        ));
        assert!(!matches(&p, "sshd", &["sshd".into()]));
        let full = ProcessPlan {
            process: vec!["/usr/bin/python3".into(), "app.py".into()],
            full_command: true,
            ..p.clone()
        };
        assert!(matches(
            &full,
            "python3",
            &["/usr/bin/python3".into(), "app.py".into()]
        ));
        assert!(!matches(
            &full,
            "python3",
            &["/usr/bin/python3".into(), "other.py".into()]
        ));
        let argv: Vec<String> = ["/usr/bin/python3", "app.py", "--port", "8080"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(
            !matches(&full, "python3", &argv),
            "exact: extra arguments do not match"
        );
        let initial = ProcessPlan {
            param_match: ParamMatch::Initial,
            ..full.clone()
        };
        assert!(matches(&initial, "python3", &argv));
        let partial = ProcessPlan {
            process: vec!["/usr/bin/python3".into(), "--port".into(), "8080".into()],
            param_match: ParamMatch::Partial,
            ..full
        };
        assert!(matches(&partial, "python3", &argv));
    }

    #[test]
    fn this_process_is_in_the_table_and_files_read_as_integers() {
        let me = std::process::id();
        let table = process_table();
        assert!(!table.is_empty());
        let _ = me;
        let f = std::env::temp_dir().join(format!("vipd-trackfile-{}", std::process::id()));
        std::fs::write(&f, "  -7\n").unwrap();
        assert_eq!(read_value(&f), -7);
        std::fs::write(&f, "junk").unwrap();
        assert_eq!(read_value(&f), 0);
        std::fs::remove_file(&f).unwrap();
        assert_eq!(read_value(&f), 0, "missing file");
    }
}

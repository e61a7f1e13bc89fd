//! Tracking: what `track_interface`, `track_script`, `track_file` and
//! `track_process` do to an instance, computed from the tracked objects' states.
//! Pure code; `tracker.rs` feeds it and hands the results to the protocol thread. The
//! tracker's plan types ([`TrackPlan`] and its scripts, files, processes) live here too,
//! so the plan that builds them and the tracker that runs them share no other module.
//!
//! keepalived's rules, which vipd follows:
//! * weight 0: the object failing puts the instance in FAULT;
//! * weight > 0: the object being good adds the weight to the priority;
//! * weight < 0: the object failing subtracts |weight|;
//! * `reverse` reverses the direction of the adjustment (a positive weight is then
//!   subtracted while the object is good, a negative one added while it fails); with
//!   weight 0 it makes the instance FAULT while the object is *good*;
//! * a tracked file holds an integer that is multiplied by the weight (weight 0: a
//!   non-zero value means FAULT); a product of -254 or less also means FAULT.
//!
//! The resulting priority is clamped to 1..=254 by the engine; owners are never moved.

use std::collections::HashMap;
use std::time::Duration;
use vipd_exec::scripts::RunAs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Interface,
    Script,
    File,
    Process,
    /// A `bfd_instance` (`track_bfd`): good while its session is Up.
    Bfd,
    /// A local address (`track_src_ip`): good while some interface has it.
    Address,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Interface => "interface",
            Kind::Script => "script",
            Kind::File => "file",
            Kind::Process => "process",
            Kind::Bfd => "bfd",
            Kind::Address => "address",
        }
    }
}

/// A tracked object, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub kind: Kind,
    pub name: String,
}

/// What an object reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectState {
    /// Interface up / script succeeding / process running.
    Good,
    Bad,
    /// A tracked file's value.
    Value(i64),
}

/// One `track_*` line of an instance, with the weight resolved (the line's own, else
/// the object's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRef {
    pub object: ObjectId,
    pub weight: i64,
    pub reverse: bool,
}

/// What tracking asks of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Sum of the weights in force, to add to the configured priority.
    pub adjustment: i32,
    /// Objects that put the instance in FAULT (empty: no fault).
    pub faults: Vec<ObjectId>,
}

impl Verdict {
    pub fn fault(&self) -> bool {
        !self.faults.is_empty()
    }
}

/// Evaluate an instance's tracking. Objects with no state yet count as good (a
/// script's `init_fail` is applied by whoever reports its first state).
pub fn evaluate(refs: &[TrackRef], states: &HashMap<ObjectId, ObjectState>) -> Verdict {
    let mut v = Verdict::default();
    for r in refs {
        let state = states.get(&r.object).copied().unwrap_or(ObjectState::Good);
        match state {
            ObjectState::Value(n) => {
                let n = if r.reverse { -n } else { n };
                if r.weight == 0 {
                    if n != 0 {
                        v.faults.push(r.object.clone());
                    }
                } else {
                    let product = n.saturating_mul(r.weight);
                    if product <= -254 {
                        v.faults.push(r.object.clone());
                    } else {
                        v.adjustment = v.adjustment.saturating_add(product.clamp(-254, 254) as i32);
                    }
                }
            }
            ObjectState::Good | ObjectState::Bad => {
                let good = state == ObjectState::Good;
                if r.weight == 0 {
                    // `weight 0 reverse`: down when the object is good, and vice versa.
                    if good == r.reverse {
                        v.faults.push(r.object.clone());
                    }
                } else {
                    let adj = match r.weight {
                        w if w > 0 && good => w,
                        w if w < 0 && !good => w,
                        _ => 0,
                    };
                    // `reverse` reverses the direction of the adjustment.
                    let adj = if r.reverse { -adj } else { adj };
                    v.adjustment = v.adjustment.saturating_add(adj.clamp(-254, 254) as i32);
                }
            }
        }
    }
    v
}

/// Consecutive-result filter of a `vrrp_script`: `rise` successes to become good,
/// `fall` failures to become bad. The first result decides at once (no history yet),
/// unless `init_fail` made the script start bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    state: Option<bool>,
    streak: u32,
}

impl RiseFall {
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> RiseFall {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            state: init_fail.then_some(false),
            streak: 0,
        }
    }

    /// Record one result; returns the new state when it changed (or was first set).
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        match self.state {
            None => {
                self.state = Some(ok);
                Some(ok)
            }
            Some(s) if s == ok => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let need = if ok { self.rise } else { self.fall };
                if self.streak >= need {
                    self.state = Some(ok);
                    self.streak = 0;
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }

    pub fn state(&self) -> Option<bool> {
        self.state
    }
}

/// Where the tracker sends each instance's verdict: the protocol thread (the runtime's
/// `Commander` implements it). Defined here so that the tracker knows nothing of the
/// runtime that starts it.
pub trait VerdictSink: Send + 'static {
    /// Tracking's verdict for the instance of that name: priority adjustment and fault.
    fn verdict(&self, instance: String, adjustment: i32, fault: bool);
}

// What the tracker watches: built by the plan, run by the tracker.

/// A `vrrp_script`, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptPlan {
    pub name: String,
    pub argv: Vec<String>,
    /// The file `enable_script_security` checked, executed instead of looking
    /// `argv[0]` up again.
    pub program: Option<std::path::PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub init_fail: bool,
    pub run_as: Option<RunAs>,
    /// The block's `weight N [reverse]` (the default of the instances' lines).
    pub weight: i64,
    pub reverse: bool,
}

/// A `track_file`: an integer in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    pub name: String,
    pub path: std::path::PathBuf,
    /// `init_file [VALUE] [overwrite]`: (value, overwrite).
    pub init: Option<(i64, bool)>,
    /// The block's `weight N [reverse]`.
    pub weight: i64,
    pub reverse: bool,
}

/// A `track_process`: how many processes match, against a quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub name: String,
    /// The process name (`comm`), or with `full_command` the full command line's
    /// first word; `param_match` / extra words: the arguments must match too.
    pub process: Vec<String>,
    pub full_command: bool,
    pub quorum: u32,
    pub quorum_max: Option<u32>,
    pub param_match: ParamMatch,
    /// `fork_delay` / `terminate_delay` (`delay` sets both): how long the quorum must
    /// be met / lost before it counts, so a restart does not move the VIP.
    pub fork_delay: Duration,
    pub terminate_delay: Duration,
    /// The block's `weight N [reverse]`.
    pub weight: i64,
    pub reverse: bool,
}

/// A `bfd_instance` some instance tracks (`track_bfd`), with its block's weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdTrackPlan {
    pub name: String,
    pub weight: i64,
    pub reverse: bool,
}

/// `param_match`: how the extra words of `process` compare with the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamMatch {
    /// The arguments are exactly those words (keepalived's default).
    #[default]
    Exact,
    /// The arguments start with those words.
    Initial,
    /// Those words appear, in order and together, somewhere in the arguments.
    Partial,
}

/// What the tracker watches, for one configuration generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackPlan {
    /// Instance name → its tracked objects.
    pub instances: Vec<(String, Vec<TrackRef>)>,
    pub scripts: Vec<ScriptPlan>,
    pub files: Vec<FilePlan>,
    pub processes: Vec<ProcessPlan>,
    pub bfds: Vec<BfdTrackPlan>,
    /// `dynamic_interfaces`: interfaces the plan lacks; when one appears (up) the
    /// tracker says so ([`crate::tracker::TrackNotice::Appeared`]), for a reload.
    pub awaited: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: Kind, name: &str) -> ObjectId {
        ObjectId {
            kind,
            name: name.into(),
        }
    }

    fn r(kind: Kind, name: &str, weight: i64, reverse: bool) -> TrackRef {
        TrackRef {
            object: obj(kind, name),
            weight,
            reverse,
        }
    }

    #[test]
    fn weights_follow_keepalived() {
        let refs = vec![
            r(Kind::Script, "chk_down", -2, false),
            r(Kind::Script, "chk_nginx", 10, false),
            r(Kind::Interface, "eth1", 0, false),
        ];
        let mut st = HashMap::new();
        // Nothing known yet: all good → only the positive weight counts.
        assert_eq!(
            evaluate(&refs, &st),
            Verdict {
                adjustment: 10,
                faults: vec![]
            }
        );
        st.insert(obj(Kind::Script, "chk_down"), ObjectState::Bad);
        assert_eq!(evaluate(&refs, &st).adjustment, 8);
        st.insert(obj(Kind::Script, "chk_nginx"), ObjectState::Bad);
        assert_eq!(evaluate(&refs, &st).adjustment, -2);
        st.insert(obj(Kind::Interface, "eth1"), ObjectState::Bad);
        let v = evaluate(&refs, &st);
        assert!(v.fault());
        assert_eq!(v.faults, vec![obj(Kind::Interface, "eth1")]);
    }

    #[test]
    fn reverse_reverses_the_direction() {
        // keepalived: "the direction of adjustment of the priority is reversed".
        let refs = vec![r(Kind::Interface, "backup-link", 20, true)];
        let mut st = HashMap::new();
        st.insert(obj(Kind::Interface, "backup-link"), ObjectState::Good);
        assert_eq!(evaluate(&refs, &st).adjustment, -20);
        st.insert(obj(Kind::Interface, "backup-link"), ObjectState::Bad);
        assert_eq!(evaluate(&refs, &st).adjustment, 0);
        // "Use reverse to increase priority if an interface is down."
        let refs = vec![r(Kind::Interface, "backup-link", -20, true)];
        assert_eq!(evaluate(&refs, &st).adjustment, 20);
        let refs = vec![r(Kind::Script, "s", 0, true)];
        st.insert(obj(Kind::Script, "s"), ObjectState::Good);
        assert!(
            evaluate(&refs, &st).fault(),
            "reverse + weight 0: success means fault"
        );
    }

    #[test]
    fn files_multiply_and_fault() {
        let f = obj(Kind::File, "prio");
        let mut st = HashMap::new();
        st.insert(f.clone(), ObjectState::Value(3));
        assert_eq!(
            evaluate(&[r(Kind::File, "prio", 5, false)], &st).adjustment,
            15
        );
        assert_eq!(
            evaluate(&[r(Kind::File, "prio", 5, true)], &st).adjustment,
            -15
        );
        assert!(evaluate(&[r(Kind::File, "prio", 0, false)], &st).fault());
        st.insert(f.clone(), ObjectState::Value(0));
        assert!(!evaluate(&[r(Kind::File, "prio", 0, false)], &st).fault());
        st.insert(f, ObjectState::Value(-300));
        assert!(
            evaluate(&[r(Kind::File, "prio", 1, false)], &st).fault(),
            "≤ -254 is a fault"
        );
    }

    #[test]
    fn rise_and_fall() {
        let mut rf = RiseFall::new(2, 3, false);
        assert_eq!(rf.record(true), Some(true), "first result decides");
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(false), Some(false), "three failures in a row");
        assert_eq!(rf.record(true), None);
        assert_eq!(rf.record(false), None, "a failure resets the rising streak");
        assert_eq!(rf.record(true), None);
        assert_eq!(rf.record(true), Some(true));
        let mut init_fail = RiseFall::new(1, 1, true);
        assert_eq!(init_fail.state(), Some(false));
        assert_eq!(init_fail.record(true), Some(true));
    }
}

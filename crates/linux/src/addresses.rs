//! The one owner of virtual addresses in the kernel: a worker thread fed by the engine
//! thread, so a slow netlink round trip never delays an advert or an announcement.

use crate::netlink::{AddOutcome, AddressSpec, Rtnetlink, VIPD_ADDR_PROTO};
use crate::routes::{RouteSpec, RuleSpec};
use anyhow::Result;
use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

/// Called by the worker once an `Add` is done (added, found present, or failed).
pub type Done = Box<dyn FnOnce() + Send>;

pub enum AddrCommand {
    Add(Vec<AddressSpec>, Option<Done>),
    /// Install routes and rules (after the addresses they may use as source).
    AddRoutes(Vec<RouteSpec>, Vec<RuleSpec>),
    /// Remove routes and rules vipd added (before the addresses go).
    RemoveRoutes(Vec<RouteSpec>, Vec<RuleSpec>),
    Remove(Vec<AddressSpec>),
    /// Reply when every earlier command is done.
    Sync(Sender<()>),
    /// The static addresses, routes and rules to put back when something deletes them
    /// (checked every [`RESTORE_EVERY`]); a `Remove` / `RemoveRoutes` drops its
    /// specs from this set.
    Restore(Vec<AddressSpec>, Vec<RouteSpec>, Vec<RuleSpec>),
}

/// Told of a VIP without `no_track` that someone else deleted (the worker no longer
/// owns it).
pub type OnDeleted = Box<dyn Fn(AddressSpec) + Send>;

/// How often the worker checks that the static lines and the tracked VIPs are still
/// there.
pub const RESTORE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the worker reports back (for logs).
#[derive(Debug, Clone)]
pub enum AddrNotice {
    Added(AddressSpec),
    Removed(AddressSpec),
    /// Present before we added it: left alone, and never removed by us.
    Foreign(AddressSpec),
    StaleRemoved(AddressSpec),
    /// A route or rule added or removed (a description for the log).
    Routing(String),
    /// A deleted static address, route or rule put back (a description for the log).
    Restored(String),
    /// A VIP without `no_track` that someone else deleted: its instance leaves MASTER.
    Deleted(AddressSpec),
    Failed(String),
}

pub struct AddressWorker {
    pub tx: Sender<AddrCommand>,
    thread: Option<JoinHandle<()>>,
}

impl AddressWorker {
    /// Remove stale VIPs a previous vipd left behind (ours by IFA_PROTO, and configured)
    /// and stale `virtual_routes` (`stale_routes`: removed only when marked as vipd's,
    /// proto 118), then start the worker. A crashed master's routes must not outlive it:
    /// a routing daemon redistributing them (BGP mode) would keep announcing the VIP.
    pub fn start(
        configured: &[AddressSpec],
        stale_routes: &[RouteSpec],
        notices: Sender<AddrNotice>,
        on_deleted: OnDeleted,
    ) -> Result<AddressWorker> {
        let mut nl = Rtnetlink::open()?;
        for r in stale_routes
            .iter()
            .filter(|r| r.dev != Some(crate::plan::UNBOUND))
        {
            if nl.delete_route(r)? {
                let _ = notices.send(AddrNotice::Routing(format!(
                    "removed stale route {}/{} left by an earlier vipd",
                    r.dst, r.dst_len
                )));
            }
        }
        let wanted: HashSet<(u32, std::net::IpAddr)> =
            configured.iter().map(|s| (s.ifindex, s.addr)).collect();
        for k in nl.dump_addresses()? {
            if k.proto == Some(VIPD_ADDR_PROTO) && wanted.contains(&(k.ifindex, k.addr)) {
                if let Some(spec) = configured
                    .iter()
                    .find(|s| s.ifindex == k.ifindex && s.addr == k.addr)
                {
                    nl.delete_address(spec)?;
                    let _ = notices.send(AddrNotice::StaleRemoved(spec.clone()));
                }
            }
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vipd-addr".into())
            .spawn(move || run(nl, rx, notices, on_deleted))?;
        Ok(AddressWorker {
            tx,
            thread: Some(thread),
        })
    }

    /// Wait until everything queued so far is done.
    pub fn sync(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(AddrCommand::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

impl Drop for AddressWorker {
    fn drop(&mut self) {
        self.sync();
        let (dead_tx, _) = mpsc::channel();
        self.tx = dead_tx; // disconnect: the worker's loop ends
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    mut nl: Rtnetlink,
    rx: Receiver<AddrCommand>,
    notices: Sender<AddrNotice>,
    on_deleted: OnDeleted,
) {
    // Addresses, routes and rules we added and may therefore remove.
    let mut owned: HashSet<AddressSpec> = HashSet::new();
    let mut owned_routes: HashSet<RouteSpec> = HashSet::new();
    let mut owned_rules: HashSet<RuleSpec> = HashSet::new();
    let mut restore = Restore::default();
    let mut next_restore = Instant::now() + RESTORE_EVERY;
    loop {
        if Instant::now() >= next_restore {
            let owners = (&mut owned, &mut owned_routes, &mut owned_rules);
            restore.run(&mut nl, owners, &notices);
            deleted_vips(&mut nl, &mut owned, &notices, &on_deleted);
            next_restore = Instant::now() + RESTORE_EVERY;
        }
        let cmd = match rx.recv_timeout(next_restore.saturating_duration_since(Instant::now())) {
            Ok(cmd) => cmd,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match cmd {
            AddrCommand::Restore(addresses, routes, rules) => {
                restore = Restore {
                    addresses,
                    routes,
                    rules,
                    failing: std::mem::take(&mut restore.failing),
                };
            }
            AddrCommand::Add(specs, done) => {
                for s in specs {
                    if owned.contains(&s) {
                        continue;
                    }
                    match nl.add_address(&s) {
                        Ok(AddOutcome::Added) => {
                            owned.insert(s.clone());
                            let _ = notices.send(AddrNotice::Added(s));
                        }
                        Ok(AddOutcome::AlreadyPresent) => {
                            let _ = notices.send(AddrNotice::Foreign(s));
                        }
                        Err(e) => {
                            let _ = notices.send(AddrNotice::Failed(format!("{e:#}")));
                        }
                    }
                }
                if let Some(done) = done {
                    done();
                }
            }
            AddrCommand::Remove(specs) => {
                restore.addresses.retain(|a| !specs.contains(a));
                for s in specs {
                    if !owned.remove(&s) {
                        continue;
                    }
                    match nl.delete_address(&s) {
                        Ok(()) => {
                            let _ = notices.send(AddrNotice::Removed(s));
                        }
                        Err(e) => {
                            let _ = notices.send(AddrNotice::Failed(format!("{e:#}")));
                        }
                    }
                }
            }
            AddrCommand::AddRoutes(routes, rules) => {
                for r in routes {
                    if owned_routes.contains(&r) {
                        continue;
                    }
                    let note = match nl.add_route(&r) {
                        Ok(AddOutcome::Added) => {
                            let n =
                                AddrNotice::Routing(format!("added route {}/{}", r.dst, r.dst_len));
                            owned_routes.insert(r);
                            n
                        }
                        Ok(AddOutcome::AlreadyPresent) => AddrNotice::Routing(format!(
                            "route {}/{} was already there; vipd will not remove it",
                            r.dst, r.dst_len
                        )),
                        Err(e) => AddrNotice::Failed(format!("{e:#}")),
                    };
                    let _ = notices.send(note);
                }
                for r in rules {
                    if owned_rules.contains(&r) {
                        continue;
                    }
                    let note = match nl.add_rule(&r) {
                        Ok(AddOutcome::Added) => {
                            owned_rules.insert(r);
                            AddrNotice::Routing("added rule".into())
                        }
                        Ok(AddOutcome::AlreadyPresent) => AddrNotice::Routing(
                            "rule was already there; vipd will not remove it".into(),
                        ),
                        Err(e) => AddrNotice::Failed(format!("{e:#}")),
                    };
                    let _ = notices.send(note);
                }
            }
            AddrCommand::RemoveRoutes(routes, rules) => {
                restore.routes.retain(|r| !routes.contains(r));
                restore.rules.retain(|r| !rules.contains(r));
                for r in rules.into_iter().filter(|r| owned_rules.remove(r)) {
                    if let Err(e) = nl.delete_rule(&r) {
                        let _ = notices.send(AddrNotice::Failed(format!("{e:#}")));
                    }
                }
                for r in routes.into_iter().filter(|r| owned_routes.remove(r)) {
                    let note = match nl.delete_route(&r) {
                        Ok(_) => {
                            AddrNotice::Routing(format!("removed route {}/{}", r.dst, r.dst_len))
                        }
                        Err(e) => AddrNotice::Failed(format!("{e:#}")),
                    };
                    let _ = notices.send(note);
                }
            }
            AddrCommand::Sync(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// keepalived: a VIP (or eVIP) without `no_track` that someone else deletes takes its
/// instance to BACKUP (and back to MASTER after Skew_Time, which puts it back). The
/// worker looks for its tracked VIPs every [`RESTORE_EVERY`]; one that is gone is no
/// longer its own, and `on_deleted` tells the protocol thread.
fn deleted_vips(
    nl: &mut Rtnetlink,
    owned: &mut HashSet<AddressSpec>,
    notices: &Sender<AddrNotice>,
    on_deleted: &OnDeleted,
) {
    if !owned.iter().any(|s| s.opts.track) {
        return;
    }
    let Ok(present) = nl.dump_addresses() else {
        return;
    };
    let gone: Vec<AddressSpec> = owned
        .iter()
        .filter(|s| s.opts.track)
        .filter(|s| {
            !present
                .iter()
                .any(|k| k.ifindex == s.ifindex && k.addr == s.addr)
        })
        .cloned()
        .collect();
    for s in gone {
        owned.remove(&s);
        let _ = notices.send(AddrNotice::Deleted(s.clone()));
        on_deleted(s);
    }
}

/// The static lines the worker keeps in place (keepalived re-adds a deleted static
/// address, route or rule at once; vipd checks every [`RESTORE_EVERY`]).
#[derive(Default)]
struct Restore {
    addresses: Vec<AddressSpec>,
    routes: Vec<RouteSpec>,
    rules: Vec<RuleSpec>,
    /// The lines that could not be put back last time (their error is logged once).
    failing: HashSet<String>,
}

impl Restore {
    /// Put back what is missing; what is put back becomes the worker's (`owned`).
    fn run(
        &mut self,
        nl: &mut Rtnetlink,
        (owned, owned_routes, owned_rules): (
            &mut HashSet<AddressSpec>,
            &mut HashSet<RouteSpec>,
            &mut HashSet<RuleSpec>,
        ),
        notices: &Sender<AddrNotice>,
    ) {
        for a in &self.addresses.clone() {
            let what = format!(
                "static address {}/{} (ifindex {})",
                a.addr, a.prefix_len, a.ifindex
            );
            let added = nl.add_address(a);
            if self.outcome(what, added, notices) {
                owned.insert(a.clone());
            }
        }
        for r in &self.routes.clone() {
            let what = format!("static route {}/{}", r.dst, r.dst_len);
            let added = nl.add_route(r);
            if self.outcome(what, added, notices) {
                owned_routes.insert(r.clone());
            }
        }
        for r in &self.rules.clone() {
            let what = format!("static rule {r:?}");
            let added = nl.add_rule(r);
            if self.outcome(what, added, notices) {
                owned_rules.insert(r.clone());
            }
        }
    }

    /// Report one attempt; true when the line was missing and is back.
    fn outcome(
        &mut self,
        what: String,
        added: Result<AddOutcome>,
        notices: &Sender<AddrNotice>,
    ) -> bool {
        match added {
            Ok(AddOutcome::Added) => {
                self.failing.remove(&what);
                let _ = notices.send(AddrNotice::Restored(format!("restored deleted {what}")));
                true
            }
            Ok(AddOutcome::AlreadyPresent) => {
                self.failing.remove(&what);
                false
            }
            Err(e) => {
                if self.failing.insert(what.clone()) {
                    let _ = notices.send(AddrNotice::Failed(format!(
                        "{what} is gone and cannot be restored (retried every second): {e:#}"
                    )));
                }
                false
            }
        }
    }
}

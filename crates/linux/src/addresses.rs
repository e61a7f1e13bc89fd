//! The one owner of virtual addresses in the kernel: a worker thread fed by the engine
//! thread, so a slow netlink round trip never delays an advert or an announcement.

use crate::netlink::{AddOutcome, AddressSpec, Rtnetlink, VIPD_ADDR_PROTO};
use crate::routes::{RouteSpec, RuleSpec};
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Called by the worker once an `Add` is done (added, found present, or failed).
pub type Done = Box<dyn FnOnce() + Send>;

pub enum AddrCommand {
    Add(Vec<AddressSpec>, Option<Done>),
    /// Install routes and rules (after the addresses they may use as source).
    AddRoutes(Vec<RouteSpec>, Vec<RuleSpec>),
    /// Remove routes and rules vipd added (before the addresses go).
    RemoveRoutes(Vec<RouteSpec>, Vec<RuleSpec>),
    Remove(Vec<AddressSpec>),
    /// A graceful release with `@vipd release_drain`: addresses, routes and rules stay
    /// until `withdraw_at`; then the addresses are replaced by local routes (the host
    /// still answers for them, a routing daemon no longer announces them) for `drain`,
    /// while the routes and rules go. Re-adding an address before `withdraw_at`
    /// cancels its part.
    Release {
        addresses: Vec<AddressSpec>,
        routes: Vec<RouteSpec>,
        rules: Vec<RuleSpec>,
        withdraw_at: Instant,
        drain: Duration,
    },
    /// The static addresses, routes and rules to put back when something deletes them
    /// (checked every [`RESTORE_EVERY`]); a `Remove` / `RemoveRoutes` drops its
    /// specs from this set.
    Restore(Vec<AddressSpec>, Vec<RouteSpec>, Vec<RuleSpec>),
    /// Reply when every earlier command is done.
    Sync(Sender<()>),
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
    /// The addresses one command added (one notice, however many: thousands of VIPs
    /// must not mean thousands of messages to the logging thread).
    Added(Vec<AddressSpec>),
    /// The addresses one command removed.
    Removed(Vec<AddressSpec>),
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
    /// proto 118; one without a metric: at any metric), then start the worker. A crashed master's routes must not outlive it:
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
            // Without a metric the kernel deletes one matching route of any metric
            // (a standby route's follows the priority): until none is left.
            for _ in 0..256 {
                if !nl.delete_route(r)? {
                    break;
                }
                let _ = notices.send(AddrNotice::Routing(format!(
                    "removed stale route {}/{} left by an earlier vipd",
                    r.dst, r.dst_len
                )));
            }
        }
        // A drain (`@vipd release_drain`) cut short by a crash.
        let drains: Vec<_> = configured.iter().map(|s| (s.addr, s.ifindex)).collect();
        for (d, gone) in drains.iter().zip(nl.delete_local_routes(&drains)) {
            if gone? {
                let _ = notices.send(AddrNotice::Routing(format!(
                    "removed stale release-drain route {} left by an earlier vipd",
                    d.0
                )));
            }
        }
        let wanted: HashMap<(u32, std::net::IpAddr), &AddressSpec> = configured
            .iter()
            .map(|s| ((s.ifindex, s.addr), s))
            .collect();
        let stale: Vec<AddressSpec> = nl
            .dump_addresses()?
            .into_iter()
            .filter(|k| k.proto == Some(VIPD_ADDR_PROTO))
            .filter_map(|k| wanted.get(&(k.ifindex, k.addr)).map(|s| (*s).clone()))
            .collect();
        for (spec, r) in stale.iter().zip(nl.delete_addresses(&stale)) {
            r?;
            let _ = notices.send(AddrNotice::StaleRemoved(spec.clone()));
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

/// A graceful release with `@vipd release_drain`: the addresses (and routes, rules)
/// stay until `withdraw_at`; then each address is replaced by a local route (still
/// answered, no longer announced), removed at `gone_at`.
struct Drain {
    addresses: Vec<AddressSpec>,
    routes: Vec<RouteSpec>,
    rules: Vec<RuleSpec>,
    withdraw_at: Instant,
    gone_at: Instant,
    /// Local routes in place (after `withdraw_at`): (address, ifindex).
    local: Vec<(std::net::IpAddr, u32)>,
}

struct Worker {
    nl: Rtnetlink,
    notices: Sender<AddrNotice>,
    // Addresses, routes and rules we added and may therefore remove.
    owned: HashSet<AddressSpec>,
    owned_routes: HashSet<RouteSpec>,
    owned_rules: HashSet<RuleSpec>,
    drains: Vec<Drain>,
    /// Static lines kept in place, checked with the tracked VIPs at `next_restore`.
    restore: Restore,
    next_restore: Instant,
    on_deleted: OnDeleted,
}

fn run(
    nl: Rtnetlink,
    rx: Receiver<AddrCommand>,
    notices: Sender<AddrNotice>,
    on_deleted: OnDeleted,
) {
    let mut w = Worker {
        nl,
        notices,
        owned: HashSet::new(),
        owned_routes: HashSet::new(),
        owned_rules: HashSet::new(),
        drains: Vec::new(),
        restore: Restore::default(),
        next_restore: Instant::now() + RESTORE_EVERY,
        on_deleted,
    };
    loop {
        let now = Instant::now();
        if now >= w.next_restore {
            w.check_restore();
            w.next_restore = Instant::now() + RESTORE_EVERY;
        }
        let at = w
            .next_deadline()
            .map_or(w.next_restore, |d| d.min(w.next_restore));
        let cmd = match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) => {
                w.run_drains(Instant::now());
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        w.handle(cmd);
        w.run_drains(Instant::now());
    }
    // Shutting down: the drains run to their end (vipd exits after them).
    while let Some(at) = w.next_deadline() {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        w.run_drains(Instant::now());
    }
}

impl Worker {
    fn handle(&mut self, cmd: AddrCommand) {
        match cmd {
            AddrCommand::Add(specs, done) => {
                self.cancel_withdrawal(&specs, &[]);
                self.add(specs);
                if let Some(done) = done {
                    done();
                }
            }
            AddrCommand::Restore(addresses, routes, rules) => {
                self.restore = Restore {
                    addresses,
                    routes,
                    rules,
                    failing: std::mem::take(&mut self.restore.failing),
                };
            }
            AddrCommand::Remove(specs) => {
                if !self.restore.addresses.is_empty() {
                    let gone: HashSet<&AddressSpec> = specs.iter().collect();
                    self.restore.addresses.retain(|a| !gone.contains(a));
                }
                self.remove(specs)
            }
            AddrCommand::AddRoutes(routes, rules) => {
                self.cancel_withdrawal(&[], &routes);
                self.add_routes(routes, rules);
            }
            AddrCommand::RemoveRoutes(routes, rules) => {
                self.restore.routes.retain(|r| !routes.contains(r));
                self.restore.rules.retain(|r| !rules.contains(r));
                self.remove_routes(routes, rules)
            }
            AddrCommand::Release {
                addresses,
                routes,
                rules,
                withdraw_at,
                drain,
            } => self.drains.push(Drain {
                addresses,
                routes,
                rules,
                withdraw_at,
                gone_at: withdraw_at + drain,
                local: Vec::new(),
            }),
            AddrCommand::Sync(done) => {
                let _ = done.send(());
            }
        }
    }

    /// Put back deleted static lines; report tracked VIPs someone else deleted.
    fn check_restore(&mut self) {
        let owners = (
            &mut self.owned,
            &mut self.owned_routes,
            &mut self.owned_rules,
        );
        self.restore.run(&mut self.nl, owners, &self.notices);
        deleted_vips(
            &mut self.nl,
            &mut self.owned,
            &self.notices,
            &self.on_deleted,
        );
    }

    /// The next drain step (`@vipd release_drain`).
    fn next_deadline(&self) -> Option<Instant> {
        self.drains
            .iter()
            .map(|d| {
                if d.local.is_empty() && !d.addresses.is_empty() {
                    d.withdraw_at
                } else {
                    d.gone_at
                }
            })
            .min()
    }

    /// Taken over again before the withdrawal: what was re-added stays.
    fn cancel_withdrawal(&mut self, specs: &[AddressSpec], routes: &[RouteSpec]) {
        if self.drains.is_empty() {
            return;
        }
        let specs: HashSet<&AddressSpec> = specs.iter().collect();
        for d in self.drains.iter_mut().filter(|d| d.local.is_empty()) {
            d.addresses.retain(|a| !specs.contains(a));
            d.routes.retain(|r| !routes.contains(r));
        }
    }

    fn run_drains(&mut self, now: Instant) {
        let mut drains = std::mem::take(&mut self.drains);
        for d in drains.iter_mut() {
            if d.local.is_empty() && now >= d.withdraw_at {
                // Answer for each address through a local route before it goes.
                let which: Vec<_> = d
                    .addresses
                    .iter()
                    .filter(|a| self.owned.contains(a))
                    .map(|a| (a.addr, a.ifindex))
                    .collect();
                for (w, r) in which.iter().zip(self.nl.add_local_routes(&which)) {
                    match r {
                        Ok(AddOutcome::Added) => d.local.push(*w),
                        Ok(AddOutcome::AlreadyPresent) => {}
                        Err(e) => {
                            let _ = self.notices.send(AddrNotice::Failed(format!("{e:#}")));
                        }
                    }
                }
                if !d.local.is_empty() {
                    let _ = self.notices.send(AddrNotice::Routing(format!(
                        "release drain: {} address(es) withdrawn, answered for {} ms more",
                        d.local.len(),
                        d.gone_at.saturating_duration_since(now).as_millis()
                    )));
                }
                self.remove_routes(std::mem::take(&mut d.routes), std::mem::take(&mut d.rules));
                self.remove(std::mem::take(&mut d.addresses));
                if d.local.is_empty() {
                    d.gone_at = now; // nothing to drain
                }
            }
        }
        for d in drains
            .iter()
            .filter(|d| d.addresses.is_empty() && now >= d.gone_at)
        {
            for (&(addr, _), r) in d.local.iter().zip(self.nl.delete_local_routes(&d.local)) {
                match r {
                    Ok(_) => {
                        let _ = self
                            .notices
                            .send(AddrNotice::Routing(format!("release drain of {addr} over")));
                    }
                    Err(e) => {
                        let _ = self.notices.send(AddrNotice::Failed(format!("{e:#}")));
                    }
                }
            }
        }
        drains.retain(|d| !(d.addresses.is_empty() && now >= d.gone_at));
        self.drains = drains;
    }

    /// Add the addresses not ours yet, pipelined (one netlink datagram per
    /// [`crate::netlink`] batch, not a round trip per address).
    fn add(&mut self, specs: Vec<AddressSpec>) {
        let mut seen = HashSet::new();
        let todo: Vec<AddressSpec> = specs
            .into_iter()
            .filter(|s| !self.owned.contains(s) && seen.insert(s.clone()))
            .collect();
        let results = self.nl.add_addresses(&todo);
        let mut added = Vec::new();
        for (s, r) in todo.into_iter().zip(results) {
            match r {
                Ok(AddOutcome::Added) => {
                    self.owned.insert(s.clone());
                    added.push(s);
                }
                Ok(AddOutcome::AlreadyPresent) => {
                    let _ = self.notices.send(AddrNotice::Foreign(s));
                }
                Err(e) => {
                    let _ = self.notices.send(AddrNotice::Failed(format!("{e:#}")));
                }
            }
        }
        if !added.is_empty() {
            let _ = self.notices.send(AddrNotice::Added(added));
        }
    }

    /// Remove the addresses that are ours, pipelined like [`Self::add`].
    fn remove(&mut self, specs: Vec<AddressSpec>) {
        let todo: Vec<AddressSpec> = specs.into_iter().filter(|s| self.owned.remove(s)).collect();
        let results = self.nl.delete_addresses(&todo);
        let mut removed = Vec::new();
        for (s, r) in todo.into_iter().zip(results) {
            match r {
                Ok(()) => removed.push(s),
                Err(e) => {
                    let _ = self.notices.send(AddrNotice::Failed(format!("{e:#}")));
                }
            }
        }
        if !removed.is_empty() {
            let _ = self.notices.send(AddrNotice::Removed(removed));
        }
    }

    fn add_routes(&mut self, routes: Vec<RouteSpec>, rules: Vec<RuleSpec>) {
        for r in routes {
            if self.owned_routes.contains(&r) {
                continue;
            }
            let note = match self.nl.add_route(&r) {
                Ok(AddOutcome::Added) => {
                    let n = AddrNotice::Routing(format!("added route {}/{}", r.dst, r.dst_len));
                    self.owned_routes.insert(r);
                    n
                }
                Ok(AddOutcome::AlreadyPresent) => AddrNotice::Routing(format!(
                    "route {}/{} was already there; vipd will not remove it",
                    r.dst, r.dst_len
                )),
                Err(e) => AddrNotice::Failed(format!("{e:#}")),
            };
            let _ = self.notices.send(note);
        }
        for r in rules {
            if self.owned_rules.contains(&r) {
                continue;
            }
            let note = match self.nl.add_rule(&r) {
                Ok(AddOutcome::Added) => {
                    self.owned_rules.insert(r);
                    AddrNotice::Routing("added rule".into())
                }
                Ok(AddOutcome::AlreadyPresent) => {
                    AddrNotice::Routing("rule was already there; vipd will not remove it".into())
                }
                Err(e) => AddrNotice::Failed(format!("{e:#}")),
            };
            let _ = self.notices.send(note);
        }
    }

    fn remove_routes(&mut self, routes: Vec<RouteSpec>, rules: Vec<RuleSpec>) {
        for r in rules.into_iter().filter(|r| self.owned_rules.remove(r)) {
            if let Err(e) = self.nl.delete_rule(&r) {
                let _ = self.notices.send(AddrNotice::Failed(format!("{e:#}")));
            }
        }
        for r in routes.into_iter().filter(|r| self.owned_routes.remove(r)) {
            let note = match self.nl.delete_route(&r) {
                Ok(_) => AddrNotice::Routing(format!("removed route {}/{}", r.dst, r.dst_len)),
                Err(e) => AddrNotice::Failed(format!("{e:#}")),
            };
            let _ = self.notices.send(note);
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
    let present: HashSet<(u32, std::net::IpAddr)> =
        present.iter().map(|k| (k.ifindex, k.addr)).collect();
    let gone: Vec<AddressSpec> = owned
        .iter()
        .filter(|s| s.opts.track && !present.contains(&(s.ifindex, s.addr)))
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

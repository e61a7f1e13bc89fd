//! The one owner of virtual addresses in the kernel: a worker thread fed by the engine
//! thread, so a slow netlink round trip never delays an advert or an announcement.

use crate::netlink::{AddOutcome, AddressSpec, Rtnetlink, VIPD_ADDR_PROTO};
use crate::routes::{RouteSpec, RuleSpec};
use anyhow::Result;
use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

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
}

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
            .spawn(move || run(nl, rx, notices))?;
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

fn run(mut nl: Rtnetlink, rx: Receiver<AddrCommand>, notices: Sender<AddrNotice>) {
    // Addresses, routes and rules we added and may therefore remove.
    let mut owned: HashSet<AddressSpec> = HashSet::new();
    let mut owned_routes: HashSet<RouteSpec> = HashSet::new();
    let mut owned_rules: HashSet<RuleSpec> = HashSet::new();
    for cmd in rx {
        match cmd {
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

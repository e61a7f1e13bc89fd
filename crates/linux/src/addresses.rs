//! The one owner of virtual addresses in the kernel: a worker thread fed by the engine
//! thread, so a slow netlink round trip never delays an advert or an announcement.

use crate::netlink::{AddOutcome, AddressSpec, Rtnetlink, VIPD_ADDR_PROTO};
use anyhow::Result;
use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// Called by the worker once an `Add` is done (added, found present, or failed).
pub type Done = Box<dyn FnOnce() + Send>;

pub enum AddrCommand {
    Add(Vec<AddressSpec>, Option<Done>),
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
    Failed(String),
}

pub struct AddressWorker {
    pub tx: Sender<AddrCommand>,
    thread: Option<JoinHandle<()>>,
}

impl AddressWorker {
    /// Remove stale VIPs a previous vipd left behind (ours by IFA_PROTO, and configured),
    /// then start the worker.
    pub fn start(configured: &[AddressSpec], notices: Sender<AddrNotice>) -> Result<AddressWorker> {
        let mut nl = Rtnetlink::open()?;
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
    // Addresses we added and may therefore remove.
    let mut owned: HashSet<AddressSpec> = HashSet::new();
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
            AddrCommand::Sync(done) => {
                let _ = done.send(());
            }
        }
    }
}

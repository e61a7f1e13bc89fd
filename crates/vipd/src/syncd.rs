//! Connection sync between directors (`lvs_sync_daemon`, and an instance's old
//! `lvs_sync_daemon_interface`): its own thread, which follows the VRRP state of the
//! named instance as keepalived does.
//!
//! On IPVS it runs the kernel's sync daemon ([`vipd_lb::ipvs::syncd`]): while the
//! instance is MASTER only the master daemon runs (it sends this director's
//! connections), otherwise only the backup daemon (it receives the MASTER's), so the
//! director that takes over already has the established connections in its table. With
//! no instance named, both run as long as vipd runs. Stopped when vipd stops.
//!
//! On the nftables backend it runs `conntrackd` instead ([`crate::conntrackd`]) and
//! switches it the way conntrackd's primary-backup script does; that needs a followed
//! instance.
//!
//! The sync id defaults to the instance's virtual_router_id (0 without an instance),
//! as in keepalived.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tracing::{error, info, warn};
use vipd_config::model::{Config, LvsSyncDaemon};
use vipd_lb::ipvs::syncd::{Role, SyncConfig, SyncDaemons};

use crate::balancer::Backend;
use crate::conntrackd::Conntrackd;

/// What the configuration asks for, resolved: the daemon settings and the instance
/// they follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    pub cfg: SyncConfig,
    pub instance: Option<String>,
    /// `file:line` of the keyword, for messages.
    pub at: String,
    /// `net_namespace_ipvs`: the namespace whose IPVS runs the daemons.
    pub netns: Option<String>,
}

impl SyncPlan {
    /// `None` when the configuration has no sync daemon.
    pub fn from_config(config: &Config) -> Option<SyncPlan> {
        let d: &LvsSyncDaemon = config.global.lvs_sync_daemon.as_ref()?;
        let vrid = d.instance.as_ref().and_then(|name| {
            config
                .instances
                .iter()
                .find(|i| &i.name == name)
                .map(|i| i.virtual_router_id)
        });
        Some(SyncPlan {
            cfg: SyncConfig {
                ifname: d.interface.clone(),
                sync_id: d.sync_id.or(vrid).unwrap_or(0),
                maxlen: d.maxlen,
                port: d.port,
                ttl: d.ttl,
                group: d.group,
            },
            instance: d.instance.clone(),
            at: format!("{}:{}", d.span.file.display(), d.span.line),
            netns: config.global.net_namespace_ipvs.clone(),
        })
    }

    /// The daemons to run when the followed instance is (`true`) or is not MASTER.
    fn roles(&self, master: bool) -> &'static [Role] {
        match (&self.instance, master) {
            (None, _) => &[Role::Master, Role::Backup],
            (Some(_), true) => &[Role::Master],
            (Some(_), false) => &[Role::Backup],
        }
    }
}

enum Input {
    Vrrp { instance: String, master: bool },
    Reload(Option<SyncPlan>),
    Stop,
}

/// Tells the sync thread of VRRP state changes.
#[derive(Clone)]
pub struct SyncNotifier(Sender<Input>);

impl SyncNotifier {
    /// VRRP instance `instance` changed state (`master`: it is MASTER now).
    pub fn vrrp(&self, instance: &str, master: bool) {
        let _ = self.0.send(Input::Vrrp {
            instance: instance.to_string(),
            master,
        });
    }
}

/// Handle of the sync thread.
pub struct ConnSync {
    tx: Sender<Input>,
    thread: Option<JoinHandle<()>>,
}

/// Which engine syncs the connections: the kernel's IPVS daemon, following the
/// load-balancer backend choice.
fn uses_ipvs(backend: Backend, netns: Option<&str>) -> bool {
    match backend {
        Backend::Ipvs => true,
        Backend::Nftables => false,
        Backend::Auto => {
            let ns = netns.and_then(|n| vipd_lb::netns::Netns::named(n).ok());
            vipd_lb::ipvs::Ipvs::available_in(ns.as_ref())
        }
    }
}

impl ConnSync {
    /// Starts the sync thread when the configuration has `lvs_sync_daemon`; the daemons
    /// start at once (the backup daemon until the instance is MASTER). `dir`: where
    /// conntrackd's files go (nftables backend). An error names the keyword's
    /// `file:line`.
    pub fn start(config: &Config, backend: Backend, dir: &Path) -> Result<Option<ConnSync>> {
        let Some(plan) = SyncPlan::from_config(config) else {
            return Ok(None);
        };
        let ipvs = uses_ipvs(backend, plan.netns.as_deref());
        let engine = open(&plan, ipvs, dir)?;
        let (tx, rx) = mpsc::channel();
        let mut owner = Owner {
            plan,
            ipvs,
            dir: dir.to_path_buf(),
            engine: Some(engine),
            masters: HashMap::new(),
            applied: None,
        };
        owner.apply();
        let thread = std::thread::Builder::new()
            .name("vipd-syncd".into())
            .spawn(move || owner.run(rx))?;
        Ok(Some(ConnSync {
            tx,
            thread: Some(thread),
        }))
    }

    /// Where VRRP states go.
    pub fn notifier(&self) -> SyncNotifier {
        SyncNotifier(self.tx.clone())
    }

    /// A reloaded configuration: the daemons restart only if their settings changed.
    pub fn reload(&self, config: &Config) {
        let _ = self.tx.send(Input::Reload(SyncPlan::from_config(config)));
    }

    /// Stops the daemons vipd started.
    pub fn stop(mut self) {
        let _ = self.tx.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The engine that syncs: the kernel's IPVS daemons, or conntrackd.
enum Engine {
    Ipvs(SyncDaemons),
    Conntrackd(Conntrackd),
}

impl Engine {
    fn stop(&mut self) {
        match self {
            Engine::Ipvs(d) => match d.stop_all() {
                Ok(()) => info!("IPVS sync daemons stopped"),
                Err(e) => error!("stopping the IPVS sync daemons: {e:#}"),
            },
            Engine::Conntrackd(c) => c.stop(),
        }
    }
}

fn open(plan: &SyncPlan, ipvs: bool, dir: &Path) -> Result<Engine> {
    if ipvs {
        // The daemons' sockets, and so their interface, are those of net_namespace_ipvs.
        let ns = plan
            .netns
            .as_deref()
            .map(vipd_lb::netns::Netns::named)
            .transpose()
            .with_context(|| format!("{}: lvs_sync_daemon", plan.at))?;
        let cfg = plan.cfg.clone();
        return vipd_lb::netns::within(ns.as_ref(), move || SyncDaemons::open(cfg))
            .and_then(|r| r)
            .map(Engine::Ipvs)
            .with_context(|| format!("{}: lvs_sync_daemon", plan.at));
    }
    if plan.netns.is_some() {
        anyhow::bail!(
            "{}: lvs_sync_daemon: with net_namespace_ipvs the nftables backend's conntrackd is not supported (it would run in vipd's namespace); use `--lb-backend ipvs`",
            plan.at
        );
    }
    if plan.instance.is_none() {
        anyhow::bail!(
            "{}: lvs_sync_daemon: on the nftables backend (conntrackd) the sync follows a VRRP instance; name it (`inst INSTANCE`)",
            plan.at
        );
    }
    Conntrackd::start(&plan.cfg, dir)
        .map(Engine::Conntrackd)
        .with_context(|| format!("{}: lvs_sync_daemon (conntrackd)", plan.at))
}

struct Owner {
    plan: SyncPlan,
    /// IPVS (else conntrackd).
    ipvs: bool,
    /// conntrackd's directory.
    dir: PathBuf,
    /// `None` after a reload dropped `lvs_sync_daemon`, or when restarting failed.
    engine: Option<Engine>,
    /// The last known state of each instance (`true`: MASTER).
    masters: HashMap<String, bool>,
    /// The state the engine was last switched for.
    applied: Option<bool>,
}

impl Owner {
    fn master(&self) -> bool {
        self.plan
            .instance
            .as_ref()
            .and_then(|i| self.masters.get(i).copied())
            .unwrap_or(false)
    }

    fn apply(&mut self) {
        let master = self.master();
        match &mut self.engine {
            // Logged by `set`; the next transition or reload tries again.
            Some(Engine::Ipvs(d)) => {
                let _ = d.set(self.plan.roles(master));
            }
            Some(Engine::Conntrackd(c)) if self.applied != Some(master) => c.switch(master),
            _ => {}
        }
        self.applied = Some(master);
    }

    fn run(mut self, rx: Receiver<Input>) {
        for input in rx {
            match input {
                Input::Stop => break,
                Input::Vrrp { instance, master } => {
                    let follows = self.plan.instance.as_deref() == Some(instance.as_str());
                    self.masters.insert(instance, master);
                    if follows {
                        self.apply();
                    }
                }
                Input::Reload(plan) => self.reload(plan),
            }
        }
        if let Some(e) = &mut self.engine {
            e.stop();
        }
    }

    fn reload(&mut self, plan: Option<SyncPlan>) {
        let Some(plan) = plan else {
            if let Some(mut e) = self.engine.take() {
                info!("lvs_sync_daemon removed by the reload: stopping the sync");
                e.stop();
            }
            return;
        };
        let same = self.engine.is_some() && plan.cfg == self.plan.cfg;
        self.plan = plan;
        if !same {
            if let Some(mut e) = self.engine.take() {
                e.stop();
            }
            self.applied = None;
            match open(&self.plan, self.ipvs, &self.dir) {
                Ok(e) => {
                    info!("lvs_sync_daemon changed by the reload: sync restarted");
                    self.engine = Some(e)
                }
                Err(e) => warn!("{e:#}"),
            }
        }
        self.apply();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(text: &str) -> Option<SyncPlan> {
        let opts = vipd_config::LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        let l = vipd_config::load_str(text, Path::new("/k.conf"), &opts).unwrap();
        SyncPlan::from_config(&l.config)
    }

    const VI: &str = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {\n        192.0.2.100\n    }\n}\n";

    #[test]
    fn sync_id_defaults_to_the_vrid_and_roles_follow_the_instance() {
        let p = plan(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1 inst VI_1\n}}\n{VI}"
        ))
        .unwrap();
        assert_eq!(p.cfg.sync_id, 51);
        assert_eq!(p.at, "/k.conf:2");
        assert_eq!(p.roles(true), &[Role::Master]);
        assert_eq!(p.roles(false), &[Role::Backup]);
        let p = plan(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1 inst VI_1 id 3\n}}\n{VI}"
        ))
        .unwrap();
        assert_eq!(p.cfg.sync_id, 3);
        // No instance: id 0, both daemons whatever the state.
        let p = plan(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1\n}}\n{VI}"
        ))
        .unwrap();
        assert_eq!(p.roles(false), &[Role::Master, Role::Backup]);
        assert_eq!((p.cfg.sync_id, p.instance), (0, None));
        assert_eq!(plan(VI), None);
    }

    #[test]
    fn conntrackd_needs_an_instance_to_follow() {
        let p = plan(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1\n}}\n{VI}"
        ))
        .unwrap();
        let e = open(&p, false, Path::new("/nonexistent"))
            .err()
            .expect("refused")
            .to_string();
        assert_eq!(
            e,
            "/k.conf:2: lvs_sync_daemon: on the nftables backend (conntrackd) the sync follows a VRRP instance; name it (`inst INSTANCE`)"
        );
    }
}

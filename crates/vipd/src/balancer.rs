//! The load-balancer thread: the one owner of the kernel forwarding table.
//!
//! It joins three inputs — real-server health from the checkers (their own thread and
//! tokio runtime), the VRRP state of the instance owning each virtual server's address
//! (from the protocol thread's notices), and link-layer addresses for direct routing
//! (the neighbour table) — into [`vipd_lb::desired::Lb`], and whenever the resulting
//! table changes it hands it to the data-plane backend (nftables or IPVS) in one apply.
//! Nothing here ever blocks the protocol thread: it only ever receives.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};
use vipd_config::model::LvsFlushOnStop;
use vipd_config::model::{Config, VirtualServer, VsKey};
use vipd_exec::scripts::Script;
use vipd_lb::desired::{Lb, LbEvent};
use vipd_lb::ipvs;
use vipd_lb::netns::Netns;
use vipd_lb::{DataPlane, Sched, Table, Timeouts};
use vipd_linux::netlink::Rtnetlink;
use vipd_linux::plan::script_command;
use vipd_linux::status::{
    RealServerStatus, RsSettings, Snapshot, VirtualServerStatus, VsService, VsSettings,
};

use crate::lbstats::{StatsCache, DEFAULT_INTERVAL};

/// Which kernel backend programs the forwarding table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// IPVS when the kernel has it, nftables otherwise.
    #[default]
    Auto,
    Nftables,
    Ipvs,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "nftables" | "nft" => Ok(Backend::Nftables),
            "ipvs" => Ok(Backend::Ipvs),
            _ => Err(format!(
                "unknown load-balancer backend `{s}` (auto, nftables, ipvs)"
            )),
        }
    }
}

/// Inputs of the balancer thread.
#[derive(Debug)]
pub enum Input {
    /// From the checkers of configuration generation `.0` (older ones are ignored: their
    /// indices name another configuration's servers).
    Health(u64, vipd_check::HealthChange),
    /// A VRRP instance changed state (`master` = it holds its VIPs now).
    Vrrp {
        instance: String,
        master: bool,
    },
    /// A `bfd_instance` with `checker` events went Up (`true`) or left Up.
    Bfd {
        name: String,
        up: bool,
    },
    /// A reloaded configuration: answered with a summary, or why nothing changed.
    Reload(Box<Setup>, SyncSender<Result<String, String>>),
    Stop,
}

/// Handle of the running balancer.
pub struct Balancer {
    tx: Sender<Input>,
    thread: Option<JoinHandle<()>>,
    /// The backend's scheduler where `lb_algo` is silent (for reloads).
    default_sched: Sched,
    /// The backend's name (`ipvs` / `nftables`), for what only one of them refuses.
    backend: &'static str,
    /// The start-time settings a reload cannot change, as they were read at start.
    fixed: Fixed,
}

/// Settings read when the load balancer starts, kept until it stops (a reload that
/// changes them is told so).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fixed {
    net_namespace_ipvs: Option<String>,
    lvs_flush_on_stop: Option<vipd_config::model::LvsFlushOnStop>,
}

impl Fixed {
    fn of(config: &Config) -> Fixed {
        Fixed {
            net_namespace_ipvs: config.global.net_namespace_ipvs.clone(),
            lvs_flush_on_stop: config.global.lvs_flush_on_stop,
        }
    }
}

/// `lvs_timeouts` as the backends take it (0: unchanged).
fn timeouts(config: &Config) -> Timeouts {
    config
        .global
        .lvs_timeouts
        .as_ref()
        .map(|t| Timeouts {
            tcp: t.tcp.unwrap_or(0),
            tcpfin: t.tcpfin.unwrap_or(0),
            udp: t.udp.unwrap_or(0),
        })
        .unwrap_or_default()
}

/// `net_namespace_ipvs`: the namespace the kernel table lives in.
fn ipvs_netns(config: &Config) -> Result<Option<Netns>> {
    config
        .global
        .net_namespace_ipvs
        .as_deref()
        .map(|name| Netns::named(name).context("net_namespace_ipvs"))
        .transpose()
}

/// What the chosen backend refuses or ignores, at the keyword's line: nftables cannot
/// express `persistence_engine` (an error) and has no scheduler that reads `flag-3`
/// (a warning).
fn backend_keywords(config: &Config, backend: &str) -> Result<()> {
    if backend != "nftables" {
        return Ok(());
    }
    let mut errors = Vec::new();
    for vs in &config.virtual_servers {
        if let Some((pe, at)) = &vs.persistence_engine {
            errors.push(format!(
                "{}:{}:{}: `persistence_engine {pe}`: IPVS' persistence by SIP Call-ID cannot be expressed with nftables; run with `--lb-backend ipvs` (a kernel with IPVS)",
                at.file.display(),
                at.line,
                at.col
            ));
        }
        for (flag, at) in &vs.sched_flags {
            if flag == "flag-3" {
                warn!(
                    "{}:{}:{}: `flag-3` does nothing on the nftables backend: it is IPVS' third scheduler flag, which none of rr/wrr/sh/dh/mh reads",
                    at.file.display(),
                    at.line,
                    at.col
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", errors.join("\n"))
    }
}

/// Why each real server (virtual server index, real server index) is up or down, and
/// how many of its checkers fail.
type Reasons = rustc_hash::FxHashMap<(usize, usize), (String, u32)>;

/// How often direct-routing destinations' MACs are re-read from the neighbour table.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(1);

/// Everything the balancer derives from the configuration; rebuilt on reload.
pub struct Setup {
    lb: Lb,
    /// instance name → virtual servers whose address it owns.
    owned_by: HashMap<String, Vec<usize>>,
    /// virtual servers with `ha_suspend`.
    ha_suspend: Vec<bool>,
    scripts: Vec<ScriptSet>,
    /// The configuration's virtual servers, until their checkers are started.
    vss: Vec<VirtualServer>,
    globals: vipd_check::Globals,
    /// `rs_init_notifies`: the real servers up at start-up notify UP.
    rs_init_notifies: bool,
    /// `lvs_timeouts`.
    timeouts: Timeouts,
    /// `snmp_name` of each virtual server and of each of its real servers (an empty
    /// list when none of them has one).
    snmp_names: Vec<(Option<String>, Vec<Option<String>>)>,
    /// KEEPALIVED-MIB's view of each virtual server's and real server's configuration.
    mib: Vec<(Arc<VsSettings>, Vec<Arc<RsSettings>>)>,
    /// The `virtual_server_group`s (KEEPALIVED-MIB's virtualServerGroupTable).
    vs_groups: Arc<Vec<vipd_config::model::VirtualServerGroup>>,
    /// Traffic statistics per virtual server, per (virtual server, real server); a
    /// reload carries those of the servers it kept to their new indices.
    vs_stats: StatsCache<usize>,
    rs_stats: StatsCache<(usize, usize)>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Setup({} virtual servers)", self.lb.len())
    }
}

struct Owner {
    setup: Setup,
    plane: Box<dyn DataPlane>,
    checkers: Option<vipd_check::Checkers>,
    /// A reload's previous checkers, stopped after the new table is programmed.
    retired: Option<vipd_check::Checkers>,
    /// Configuration generation of `checkers` (bumped by each reload).
    generation: u64,
    /// Where the checkers' health changes go (this thread's own inbox).
    inbox: Sender<Input>,
    /// The last known state of each VRRP instance (`true`: MASTER).
    masters: HashMap<String, bool>,
    /// The last event of each `bfd_instance` (`true`: Up), for BFD_CHECKs of a reload.
    bfd: HashMap<String, bool>,
    applied: Option<Table>,
    /// An input arrived (or neighbours were read) since the last successful sync: the
    /// wanted table and the status may differ. Idle seconds skip rebuilding both (tens
    /// of ms a second at 40,000 real servers).
    changed: bool,
    reasons: Reasons,
    /// `vipd events --follow` subscribers.
    events: vipd_linux::control::EventHub,
    /// `smtp_alert` mails.
    mailer: vipd_linux::mail::Mailer,
    /// `notify_fifo` / `lvs_notify_fifo`: the `VS …` / `RS …` lines.
    fifos: Arc<vipd_linux::notifier::Fifos>,
    status: Arc<Mutex<Snapshot>>,
    rtnl: Option<Rtnetlink>,
    /// `net_namespace_ipvs`: where the kernel table forwards (neighbours, pokes).
    netns: Option<Netns>,
}

/// notify_up / notify_down per real server, quorum_up / quorum_down per virtual server.
/// Each checked like the VRRP notify scripts (enable_script_security) and run as its own
/// `username [groupname]`, else as `script_user`.
#[derive(Default, Clone)]
struct ScriptSet {
    quorum_up: Option<Script>,
    quorum_down: Option<Script>,
    /// Per real server; empty when none of them has one (the usual case: a reload at
    /// 2,000 × 20 made 80,000 `None`s).
    notify_up: Vec<Option<Script>>,
    notify_down: Vec<Option<Script>>,
    /// `omega`: run the down scripts when vipd stops.
    omega: bool,
    /// The virtual server's `smtp_alert` (quorum mails) and each real server's.
    smtp_alert: Option<bool>,
    /// Per real server; empty when none of them sets it.
    rs_smtp_alert: Vec<Option<bool>>,
}

/// How long a load-balancer script may run before its process group is killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The configuration's load-balancer pieces for a backend whose default scheduler is
/// `default_sched`: the desired-state model, which VRRP instance gates each virtual
/// server, the scripts. Errors name `file:line` where they can.
fn setup(config: &Config, default_sched: Sched, backend: &str) -> Result<Setup> {
    backend_keywords(config, backend)?;
    let mut lb = Lb::new(
        &config.virtual_servers,
        &config.virtual_server_groups,
        default_sched,
        |_, _| true,
    )
    .map_err(|errs| {
        anyhow::anyhow!(
            "{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;

    // Which VRRP instance owns each virtual server's address: it gates forwarding.
    let mut owned_by: HashMap<String, Vec<usize>> = HashMap::new();
    for (vi, vs) in config.virtual_servers.iter().enumerate() {
        let addrs: Vec<IpAddr> = lb
            .keys(vi)
            .iter()
            .filter_map(|k| match k {
                vipd_lb::ServiceKey::Addr { addr, .. } => Some(*addr),
                _ => None,
            })
            .collect();
        let owner = config.instances.iter().find(|inst| {
            inst.virtual_ipaddress
                .iter()
                .chain(inst.virtual_ipaddress_excluded.iter())
                .any(|a| addrs.contains(&a.addr))
        });
        match owner {
            Some(inst) => {
                owned_by.entry(inst.name.clone()).or_default().push(vi);
                lb.set_active(vi, false);
                if lb.uses_dr(vi) {
                    let dev = inst
                        .virtual_ipaddress
                        .iter()
                        .find(|a| addrs.contains(&a.addr))
                        .and_then(|a| a.dev.clone())
                        .unwrap_or_else(|| inst.interface.clone());
                    lb.set_device(vi, Some(dev));
                }
            }
            None => {
                if matches!(vs.key, VsKey::Fwmark { .. }) {
                    info!(
                        "{}: no VRRP instance owns it; forwarding whenever vipd runs",
                        lb.name(vi)
                    );
                } else {
                    info!(
                        "{}: no vrrp_instance has this address; forwarding whenever vipd runs",
                        lb.name(vi)
                    );
                }
                if lb.uses_dr(vi) {
                    anyhow::bail!(
                        "{}:{}: {}: direct routing needs the address to be a virtual_ipaddress of a vrrp_instance (its interface carries the traffic)",
                        vs.span.file.display(),
                        vs.span.line,
                        lb.name(vi)
                    );
                }
            }
        }
    }

    let mut scripts = Vec::new();
    for (vi, vs) in config.virtual_servers.iter().enumerate() {
        let name = lb.name(vi).to_string();
        let rs_scripts = |kw: &str,
                          pick: fn(
            &vipd_config::RealServer,
        ) -> &Option<vipd_config::model::ScriptCommand>| {
            vs.real_servers
                .iter()
                .map(|r| match pick(r) {
                    // No name built for the (usual) server without a script: 40,000 of
                    // them at 2,000 × 20, on every reload.
                    None => Ok(None),
                    script => script_command(
                        config,
                        &format!("{name}: real_server {}: {kw}", r.addr),
                        script,
                    ),
                })
                .collect::<Result<Vec<_>>>()
                .map(none_as_empty)
        };
        scripts.push(ScriptSet {
            quorum_up: script_command(config, &format!("{name}: quorum_up"), &vs.quorum_up)?,
            quorum_down: script_command(config, &format!("{name}: quorum_down"), &vs.quorum_down)?,
            notify_up: rs_scripts("notify_up", |r| &r.notify_up)?,
            notify_down: rs_scripts("notify_down", |r| &r.notify_down)?,
            omega: vs.omega,
            smtp_alert: vs.smtp_alert,
            rs_smtp_alert: none_as_empty(vs.real_servers.iter().map(|r| r.smtp_alert).collect()),
        });
    }
    let mib = mib_settings(config, &lb, &scripts);
    Ok(Setup {
        mib,
        vs_groups: Arc::new(config.virtual_server_groups.clone()),
        lb,
        owned_by,
        ha_suspend: config
            .virtual_servers
            .iter()
            .map(|v| v.ha_suspend)
            .collect(),
        scripts,
        // Filled by the caller: a copy at start, the reloaded file's own on reload.
        vss: Vec::new(),
        globals: vipd_check::Globals::from_config(config),
        rs_init_notifies: config.global.rs_init_notifies,
        timeouts: timeouts(config),
        snmp_names: config
            .virtual_servers
            .iter()
            .map(|v| {
                let rs = v.real_servers.iter().map(|r| r.snmp_name.clone());
                (v.snmp_name.clone(), none_as_empty(rs.collect()))
            })
            .collect(),
        vs_stats: StatsCache::new(
            config
                .global
                .snmp_vs_stats_update_interval
                .unwrap_or(DEFAULT_INTERVAL),
        ),
        rs_stats: StatsCache::new(
            config
                .global
                .snmp_rs_stats_update_interval
                .unwrap_or(DEFAULT_INTERVAL),
        ),
    })
}

/// Starts `setup`'s checkers (those of `ha_suspend` servers whose VIP is elsewhere
/// suspended), their health changes tagged with `generation` into `inbox`, and puts
/// their initial verdicts into `setup.lb`; returns them with each server's reason.
fn start_checkers(
    setup: &mut Setup,
    carried: HashMap<vipd_check::CheckerKey, vipd_check::Outcome>,
    bfd: HashMap<String, bool>,
    generation: u64,
    inbox: &Sender<Input>,
) -> Result<(vipd_check::Checkers, Reasons)> {
    let (health_tx, health_rx) = mpsc::channel::<vipd_check::HealthChange>();
    let suspended: Vec<usize> = (0..setup.lb.len())
        .filter(|&vi| setup.ha_suspend[vi] && !setup.lb.is_active(vi))
        .collect();
    // The checkers keep what they need of it; the balancer does not hold a copy.
    let vss = std::mem::take(&mut setup.vss);
    let mut checkers = vipd_check::Checkers::start(
        &vss,
        &setup.globals,
        vipd_check::StartOptions {
            seed: std::process::id() as u64 ^ generation,
            suspended,
            carried,
            bfd,
        },
        health_tx,
    )
    .context("starting the health checkers")?;
    {
        let tx = inbox.clone();
        std::thread::Builder::new()
            .name("vipd-lb-health".into())
            .spawn(move || {
                for h in health_rx {
                    if tx.send(Input::Health(generation, h)).is_err() {
                        break;
                    }
                }
            })?;
    }
    let initial = checkers.take_initial_health();
    let mut reasons = Reasons::with_capacity_and_hasher(initial.len(), Default::default());
    for h in initial {
        setup.lb.set_health(h.vs, h.rs, h.up, h.weight);
        reasons.insert((h.vs, h.rs), (h.reason, h.failed));
    }
    Ok((checkers, reasons))
}

/// A list of per-real-server options, or an empty one when every option is `None`
/// (read with `.get(ri)`, which is `None` either way).
fn none_as_empty<T>(list: Vec<Option<T>>) -> Vec<Option<T>> {
    if list.iter().all(Option::is_none) {
        Vec::new()
    } else {
        list
    }
}

/// The backend's scheduler where `lb_algo` is silent: IPVS' own default is wlc;
/// nftables cannot count connections, so it schedules round robin (documented
/// difference).
fn default_sched(ipvs: bool) -> Sched {
    if ipvs {
        Sched::Wlc
    } else {
        Sched::Rr
    }
}

impl Balancer {
    /// Starts checkers and the balancer thread for the configuration's virtual servers;
    /// `None` when it has none. Refuses (with every reason, `file:line:col` first) a
    /// configuration the chosen backend cannot express. `tune_ipvs`: set IPVS'
    /// expiry sysctls while running (see `vipd_lb::ipvs::sysctl`).
    pub fn start(
        config: &Config,
        backend: Backend,
        tune_ipvs: bool,
        status: Arc<Mutex<Snapshot>>,
        events: vipd_linux::control::EventHub,
        mailer: vipd_linux::mail::Mailer,
        fifos: Arc<vipd_linux::notifier::Fifos>,
    ) -> Result<Option<Balancer>> {
        if config.virtual_servers.is_empty() {
            return Ok(None);
        }
        let netns = ipvs_netns(config)?;
        let g = &config.global;
        let ipvs_options = || ipvs::Options {
            tune_sysctls: tune_ipvs,
            flush: g.lvs_flush,
            flush_on_stop: g.lvs_flush_on_stop.map(|f| match f {
                LvsFlushOnStop::Full => ipvs::FlushOnStop::All,
                LvsFlushOnStop::VirtualServers => ipvs::FlushOnStop::Services,
            }),
            timeouts: timeouts(config),
            netns: netns.clone(),
        };
        let use_ipvs = match backend {
            Backend::Ipvs => true,
            Backend::Nftables => false,
            Backend::Auto => ipvs::Ipvs::available_in(netns.as_ref()),
        };
        let backend_name = if use_ipvs { "ipvs" } else { "nftables" };
        // Everything the configuration asks of the backend is checked before the kernel
        // is touched (`lvs_flush` flushes at open).
        let sched = default_sched(use_ipvs);
        let mut setup = setup(config, sched, backend_name)?;
        setup.vss = config.virtual_servers.clone();
        let unfiltered = setup.lb.table_unfiltered();
        if use_ipvs {
            ipvs::check_table(&unfiltered)
        } else {
            vipd_lb::nft::check_table(&unfiltered)
        }
        .map_err(|e| anyhow::anyhow!("{e} (data-plane backend {backend_name})"))?;
        let mut plane: Box<dyn DataPlane> = if use_ipvs {
            Box::new(ipvs::Ipvs::open_with(ipvs_options())?)
        } else {
            // vipd's nftables tables are always replaced at start and deleted in one
            // batch at stop: `lvs_flush` and `lvs_flush_on_stop` change nothing there.
            Box::new(vipd_lb::nft::Nftables::open_in(netns.clone())?)
        };
        if let Some(ns) = &netns {
            info!(
                "load balancer: kernel table in network namespace {} (net_namespace_ipvs); health checks from vipd's own",
                ns.path().display()
            );
        }
        // (IPVS took them at open.)
        if !use_ipvs {
            plane.set_timeouts(&timeouts(config))?;
        }
        let (tx, rx) = mpsc::channel::<Input>();
        let (checkers, reasons) =
            start_checkers(&mut setup, HashMap::new(), HashMap::new(), 0, &tx)?;
        info!(
            "load balancer: {} virtual server(s) on {}",
            config.virtual_servers.len(),
            plane.name()
        );
        let owner_backend = plane.name();
        let owner = Owner {
            setup,
            plane,
            checkers: Some(checkers),
            retired: None,
            generation: 0,
            inbox: tx.clone(),
            masters: HashMap::new(),
            bfd: HashMap::new(),
            applied: None,
            changed: true,
            reasons,
            status,
            events,
            mailer,
            fifos,
            // Direct routing's neighbours are where the kernel table forwards.
            rtnl: vipd_lb::netns::within(netns.as_ref(), Rtnetlink::open)
                .ok()
                .and_then(|r| r.ok()),
            netns,
        };
        let thread = std::thread::Builder::new()
            .name("vipd-lb".into())
            .spawn(move || owner.run(rx))?;
        Ok(Some(Balancer {
            tx,
            thread: Some(thread),
            default_sched: sched,
            backend: owner_backend,
            fixed: Fixed::of(config),
        }))
    }

    /// Where VRRP notices go.
    pub fn sender(&self) -> Sender<Input> {
        self.tx.clone()
    }

    /// Applies a reloaded configuration's virtual servers in place: the forwarding
    /// table changes by the difference only, and every checker that is still there
    /// (same virtual server, real server, kind and position) keeps its verdict.
    /// On error nothing changed.
    ///
    /// Takes `config`'s virtual servers (for the checkers) instead of copying them:
    /// 40,000 real servers at 2,000 × 20.
    pub fn reload(&self, config: &mut Config) -> Result<String, String> {
        let mut setup =
            setup(config, self.default_sched, self.backend).map_err(|e| format!("{e:#}"))?;
        setup.vss = std::mem::take(&mut config.virtual_servers);
        let now = Fixed::of(config);
        if now.net_namespace_ipvs != self.fixed.net_namespace_ipvs {
            warn!(
                "net_namespace_ipvs changed; the load balancer stays in {:?} until vipd restarts (as keepalived)",
                self.fixed.net_namespace_ipvs
            );
        }
        if now.lvs_flush_on_stop != self.fixed.lvs_flush_on_stop {
            warn!(
                "lvs_flush_on_stop changed; it takes effect when vipd restarts (the running load balancer keeps {:?})",
                self.fixed.lvs_flush_on_stop
            );
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx
            .send(Input::Reload(Box::new(setup), reply))
            .map_err(|_| "the load balancer has stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the load balancer stopped during the reload".to_string())?
    }

    /// Stops the checkers and removes everything vipd installed.
    pub fn stop(mut self) {
        let _ = self.tx.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Owner {
    fn run(mut self, rx: Receiver<Input>) {
        self.refresh_macs();
        let _ = self.sync(); // logged; retried every second
        if self.setup.rs_init_notifies {
            // keepalived: notify_up, the FIFO line and the mail of each real server that
            // starts up (the ones that start down notify when they come up anyway).
            let lb = &self.setup.lb;
            let up: Vec<LbEvent> = (0..lb.len())
                .flat_map(|vs| (0..lb.real_server_count(vs)).map(move |rs| (vs, rs)))
                .filter(|&(vs, rs)| lb.is_up(vs, rs))
                .map(|(vs, rs)| LbEvent::RealServerUp { vs, rs })
                .collect();
            self.run_scripts(&up);
        }
        let mut next_refresh = Instant::now() + NEIGHBOUR_REFRESH;
        loop {
            let wait = next_refresh.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => {
                    self.changed = true;
                    if !self.handle(input) {
                        break;
                    }
                    // Take everything already queued before touching the kernel once.
                    while let Ok(more) = rx.try_recv() {
                        if !self.handle(more) {
                            return self.stop();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_refresh {
                self.refresh_macs();
                next_refresh = Instant::now() + NEIGHBOUR_REFRESH;
            }
            // New statistics are published even when the table is unchanged (then
            // `sync` does not publish: idle seconds rebuild nothing).
            if self.read_stats(Instant::now()) && !self.changed {
                self.publish();
            }
            let _ = self.sync();
        }
        self.stop();
    }

    fn stop(&mut self) {
        for c in [self.retired.take(), self.checkers.take()]
            .into_iter()
            .flatten()
        {
            c.stop();
        }
        self.omega();
        match self.plane.clear() {
            Ok(()) => info!(
                "load balancer: forwarding table removed ({})",
                self.plane.name()
            ),
            Err(e) => error!("load balancer: removing the forwarding table: {e:#}"),
        }
        if let Ok(mut s) = self.status.lock() {
            s.virtual_servers.clear();
            s.vs_groups = Default::default();
        }
    }

    /// Returns false on Stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Stop => return false,
            Input::Health(generation, _) if generation != self.generation => {}
            Input::Health(_, h) => {
                let (addr, port) = self.setup.lb.real_server(h.vs, h.rs);
                let events = self.setup.lb.set_health(h.vs, h.rs, h.up, h.weight);
                if events.is_empty() && h.weight.is_none() {
                    // no state change
                } else if !events.is_empty() {
                    let word = if h.up { "up" } else { "DOWN" };
                    info!(
                        "{}: real server {addr}:{port} {word} ({})",
                        self.setup.lb.name(h.vs),
                        h.reason
                    );
                }
                self.reasons.insert((h.vs, h.rs), (h.reason, h.failed));
                self.run_scripts(&events);
            }
            Input::Reload(setup, reply) => {
                // Programmed before the answer: when `vipd reload` returns, the kernel
                // already forwards by the new file.
                let answer = self.reload(*setup).map(|summary| match self.sync() {
                    Ok(()) => summary,
                    Err(e) => format!(
                        "{summary}; programming the data plane failed ({e}), retried every second"
                    ),
                });
                if let Some(old) = self.retired.take() {
                    old.stop();
                }
                let _ = reply.send(answer);
            }
            Input::Bfd { name, up } => {
                self.bfd.insert(name.clone(), up);
                if let Some(c) = &self.checkers {
                    c.bfd(&name, up);
                }
            }
            Input::Vrrp { instance, master } => {
                self.masters.insert(instance.clone(), master);
                let Some(vss) = self.setup.owned_by.get(&instance) else {
                    return true;
                };
                for &vi in vss {
                    if self.setup.lb.is_active(vi) != master {
                        info!(
                            "{}: {} (VRRP instance {instance} is {})",
                            self.setup.lb.name(vi),
                            if master {
                                "forwarding"
                            } else {
                                "not forwarding"
                            },
                            if master { "MASTER" } else { "not MASTER" }
                        );
                    }
                    self.setup.lb.set_active(vi, master);
                    if self.setup.ha_suspend[vi] {
                        if let Some(c) = &self.checkers {
                            c.suspend(vi, !master);
                        }
                    }
                }
            }
        }
        true
    }

    /// Switches to a reloaded configuration (see [`Balancer::reload`]); the next
    /// `sync` programs the difference.
    fn reload(&mut self, mut setup: Setup) -> Result<String, String> {
        self.plane
            .check(&setup.lb.table_unfiltered())
            .map_err(|e| format!("{e} (data-plane backend {})", self.plane.name()))?;

        for (instance, vss) in &setup.owned_by {
            let master = self.masters.get(instance).copied().unwrap_or(false);
            for &vi in vss {
                setup.lb.set_active(vi, master);
            }
        }
        let carried = match &self.checkers {
            Some(c) => c.carry_over(),
            None => HashMap::new(),
        };
        let generation = self.generation + 1;
        let (checkers, reasons) = start_checkers(
            &mut setup,
            carried,
            self.bfd.clone(),
            generation,
            &self.inbox,
        )
        .map_err(|e| format!("{e:#}"))?;
        if setup.timeouts != self.setup.timeouts {
            // keepalived sets them again on reload; a value no longer written is left
            // as it is (IPVS) / back to the kernel's (nftables: the policies go).
            if let Err(e) = self.plane.set_timeouts(&setup.timeouts) {
                warn!("lvs_timeouts: {e:#}");
            }
        }
        // From here on the old checkers' late reports are ignored (their generation).
        // The old checkers stop once the kernel has the new table (joining their
        // thread is not on the way to it).
        self.retired = self.checkers.replace(checkers);
        self.generation = generation;
        self.carry_stats(&mut setup);
        let old_servers = self.setup.lb.len();
        let (checkers_now, kept) = self.checkers.as_ref().map_or((0, 0), |c| c.counts());
        self.setup = setup;
        self.reasons = reasons;
        self.applied = None;
        self.refresh_macs();
        let summary = format!(
            "load balancer: {} virtual server(s) (were {old_servers}), {checkers_now} checker(s), {} kept their state",
            self.setup.lb.len(),
            kept
        );
        info!("{summary}");
        Ok(summary)
    }

    /// The traffic statistics of the virtual and real servers a reload kept (the same
    /// name; the same address and port in it), moved to their new indices.
    fn carry_stats(&mut self, new: &mut Setup) {
        let (old_lb, new_lb) = (&self.setup.lb, &new.lb);
        let mut vs_index: HashMap<&str, usize> = HashMap::with_capacity(new_lb.len());
        for vi in 0..new_lb.len() {
            vs_index.entry(new_lb.name(vi)).or_insert(vi);
        }
        // Old (virtual server, real server) → new; the real servers of a virtual server
        // usually stand where they stood (then no lookup per server).
        let map: Vec<Option<(usize, Vec<Option<usize>>)>> = (0..old_lb.len())
            .map(|vi| {
                let nvi = *vs_index.get(old_lb.name(vi))?;
                let servers = |lb: &Lb, v: usize| {
                    (0..lb.real_server_count(v))
                        .map(|ri| lb.real_server(v, ri))
                        .collect::<Vec<_>>()
                };
                let (before, now) = (servers(old_lb, vi), servers(new_lb, nvi));
                let rs = if before == now {
                    (0..before.len()).map(Some).collect()
                } else {
                    let mut at: HashMap<(IpAddr, u16), usize> = HashMap::new();
                    for (ri, s) in now.iter().enumerate() {
                        at.entry(*s).or_insert(ri);
                    }
                    before.iter().map(|s| at.get(s).copied()).collect()
                };
                Some((nvi, rs))
            })
            .collect();
        let vs_of = |vi: &usize| map.get(*vi)?.as_ref().map(|(nvi, _)| *nvi);
        let rs_of = |&(vi, ri): &(usize, usize)| {
            let (nvi, rs) = map.get(vi)?.as_ref()?;
            Some((*nvi, (*rs.get(ri)?)?))
        };
        let vs_stats =
            std::mem::replace(&mut self.setup.vs_stats, StatsCache::new(DEFAULT_INTERVAL));
        let rs_stats =
            std::mem::replace(&mut self.setup.rs_stats, StatsCache::new(DEFAULT_INTERVAL));
        new.vs_stats = vs_stats.carry(new.vs_stats.interval(), vs_of);
        new.rs_stats = rs_stats.carry(new.rs_stats.interval(), rs_of);
    }

    fn run_scripts(&self, events: &[LbEvent]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        for e in events {
            let line = match *e {
                LbEvent::RealServerUp { vs, rs } | LbEvent::RealServerDown { vs, rs } => {
                    let (addr, port) = self.setup.lb.real_server(vs, rs);
                    serde_json::json!({
                        "time": now, "virtual_server": self.setup.lb.name(vs),
                        "real_server": format!("{addr}:{port}"),
                        "to": if matches!(e, LbEvent::RealServerUp { .. }) { "up" } else { "down" },
                        "reason": self.reason(vs, rs),
                    })
                }
                LbEvent::QuorumUp { vs } | LbEvent::QuorumDown { vs } => serde_json::json!({
                    "time": now, "virtual_server": self.setup.lb.name(vs),
                    "quorum": if matches!(e, LbEvent::QuorumUp { .. }) { "up" } else { "down" },
                }),
            };
            self.events.publish(line.to_string());
            self.fifos.lvs_line(&self.setup.lb.fifo_line(e));
        }
        for e in events {
            match *e {
                LbEvent::RealServerUp { vs, rs } | LbEvent::RealServerDown { vs, rs } => {
                    let (addr, port) = self.setup.lb.real_server(vs, rs);
                    self.mailer.real_server(
                        self.setup.scripts[vs]
                            .rs_smtp_alert
                            .get(rs)
                            .copied()
                            .flatten(),
                        &format!("{}", SocketAddr::new(addr, port)),
                        self.setup.lb.name(vs),
                        matches!(e, LbEvent::RealServerUp { .. }),
                        self.reason(vs, rs),
                    );
                }
                LbEvent::QuorumUp { vs } | LbEvent::QuorumDown { vs } => self.mailer.quorum(
                    self.setup.scripts[vs].smtp_alert,
                    self.setup.lb.name(vs),
                    matches!(e, LbEvent::QuorumUp { .. }),
                ),
            }
            let script = match *e {
                LbEvent::RealServerUp { vs, rs } => {
                    self.setup.scripts[vs].notify_up.get(rs).cloned().flatten()
                }
                LbEvent::RealServerDown { vs, rs } => self.setup.scripts[vs]
                    .notify_down
                    .get(rs)
                    .cloned()
                    .flatten(),
                LbEvent::QuorumUp { vs } => {
                    info!("{}: quorum gained", self.setup.lb.name(vs));
                    self.setup.scripts[vs].quorum_up.clone()
                }
                LbEvent::QuorumDown { vs } => {
                    warn!("{}: quorum lost", self.setup.lb.name(vs));
                    self.setup.scripts[vs].quorum_down.clone()
                }
            };
            if let Some(script) = script {
                // Scripts run on their own thread: a hung one never holds the table.
                let _ = std::thread::Builder::new()
                    .name("vipd-lb-script".into())
                    .spawn(move || {
                        let outcome = script.run(&[], SCRIPT_TIMEOUT);
                        if !outcome.success() {
                            warn!(
                                "load-balancer script `{}` failed: {outcome:?}",
                                script.argv.join(" ")
                            );
                        }
                    });
            }
        }
    }

    /// `omega`: on the way out, the real servers still up go down and the quorum is lost,
    /// as far as the scripts are concerned (waited for, up to their timeout).
    fn omega(&self) {
        let mut threads = Vec::new();
        for vi in 0..self.setup.lb.len() {
            let set = &self.setup.scripts[vi];
            if !set.omega {
                continue;
            }
            let mut lines: Vec<Script> = (0..self.setup.lb.real_server_count(vi))
                .filter(|&ri| self.setup.lb.is_up(vi, ri))
                .filter_map(|ri| set.notify_down.get(ri).cloned().flatten())
                .collect();
            if self.setup.lb.quorum_up(vi) {
                lines.extend(set.quorum_down.clone());
            }
            // The FIFO lines as keepalived writes them when stopping with omega: each
            // live real server DOWN, then the virtual server DOWN (whatever its quorum).
            for ri in 0..self.setup.lb.real_server_count(vi) {
                if self.setup.lb.is_up(vi, ri) {
                    let down = LbEvent::RealServerDown { vs: vi, rs: ri };
                    self.fifos.lvs_line(&self.setup.lb.fifo_line(&down));
                }
            }
            let down = LbEvent::QuorumDown { vs: vi };
            self.fifos.lvs_line(&self.setup.lb.fifo_line(&down));
            for script in lines {
                threads.push(std::thread::spawn(move || script.run(&[], SCRIPT_TIMEOUT)));
            }
        }
        for t in threads {
            let _ = t.join();
        }
    }

    /// Reads direct-routing destinations' MACs from the neighbour table; a destination
    /// with none gets a datagram to the discard port so the kernel resolves it.
    fn refresh_macs(&mut self) {
        if self.setup.lb.dr_addresses().is_empty() {
            return;
        }
        let Some(rtnl) = self.rtnl.as_mut() else {
            return;
        };
        self.changed = true;
        let table = match rtnl.dump_neighbours() {
            Ok(t) => t,
            Err(e) => {
                warn!("reading the neighbour table: {e:#}");
                return;
            }
        };
        let macs: HashMap<IpAddr, [u8; 6]> = table.iter().map(|n| (n.addr, n.mac)).collect();
        // (A copy: the loop sets MACs in the same `Lb`.)
        let wanted = self.setup.lb.dr_addresses().to_vec();
        for addr in wanted {
            // A neighbour that disappears from the table keeps its last MAC: forwarding to
            // a stale MAC beats dropping, and health checks decide whether it is alive.
            // One without an entry is poked (this runs once per NEIGHBOUR_REFRESH).
            match macs.get(&addr) {
                Some(m) => {
                    self.setup.lb.set_mac(addr, Some(*m));
                }
                None => {
                    if let Err(e) = vipd_lb::netns::within(self.netns.as_ref(), || poke(addr)) {
                        warn!("resolving {addr}: {e:#}");
                    }
                }
            }
        }
    }

    /// Programs the kernel when the wanted table changed; the error is also logged.
    fn sync(&mut self) -> Result<(), String> {
        if !self.changed && self.applied.is_some() {
            self.plane.tidy();
            return Ok(());
        }
        let table = self.setup.lb.table();
        let mut result = Ok(());
        if self.applied.as_ref() != Some(&table) {
            let t0 = Instant::now();
            match self.plane.apply(&table) {
                Ok(()) => {
                    let took = t0.elapsed();
                    let dests: usize = table.services.iter().map(|s| s.dests.len()).sum();
                    info!(
                        "load balancer: {} service(s), {dests} destination(s) programmed in {:.2} ms",
                        table.services.len(),
                        took.as_secs_f64() * 1000.0
                    );
                    self.applied = Some(table);
                }
                Err(e) => {
                    error!("load balancer: programming {}: {e:#}", self.plane.name());
                    result = Err(format!("{e:#}"));
                }
            }
        }
        self.publish();
        if result.is_ok() {
            self.changed = false;
            // Housekeeping forwarding does not wait for (forgetting departed servers'
            // pinned flows): after the timing above and the status.
            let t0 = Instant::now();
            self.plane.tidy();
            let took = t0.elapsed();
            if took > Duration::from_millis(10) {
                info!(
                    "load balancer: forgot departed real servers' flows in {:.2} ms",
                    took.as_secs_f64() * 1000.0
                );
            }
        }
        result
    }

    /// Reads the kernel's counters when the virtual or the real servers' statistics are
    /// older than their interval, and sums them per virtual server (every destination
    /// of all its services) and per real server (its destination in each of them).
    /// True when it read them.
    fn read_stats(&mut self, now: Instant) -> bool {
        let (vs_due, rs_due) = (self.setup.vs_stats.due(now), self.setup.rs_stats.due(now));
        if !vs_due && !rs_due {
            return false;
        }
        let counters = match self.plane.counters() {
            Ok(c) => c,
            Err(e) => {
                warn!("load balancer: reading the traffic counters: {e:#}");
                return false;
            }
        };
        // One pass over the counters (40,000 destinations at 2,000 × 20: matching each
        // real server against every counter took seconds), then one lookup per server.
        let mut by_service: HashMap<vipd_lb::ServiceKey, vipd_lb::Counters> = HashMap::new();
        let mut by_dest: HashMap<(vipd_lb::ServiceKey, IpAddr, u16), vipd_lb::Counters> =
            HashMap::with_capacity(counters.len());
        for c in &counters {
            *by_service.entry(c.service).or_default() += c.counters;
            *by_dest.entry((c.service, c.addr, c.port)).or_default() += c.counters;
        }
        let lb = &self.setup.lb;
        let mut vs = rustc_hash::FxHashMap::default();
        let mut rs = rustc_hash::FxHashMap::default();
        for vi in 0..lb.len() {
            // Each service once (as the old `keys.contains` filter counted it).
            let all = lb.keys(vi);
            let keys: Vec<&vipd_lb::ServiceKey> = all
                .iter()
                .enumerate()
                .filter(|&(i, k)| !all[..i].contains(k))
                .map(|(_, k)| k)
                .collect();
            // The whole service's, as IPVS counts it (the sorry server's traffic too).
            let mut total = vipd_lb::Counters::default();
            for k in &keys {
                if let Some(c) = by_service.get(*k) {
                    total += *c;
                }
            }
            for ri in 0..lb.real_server_count(vi) {
                let (addr, port) = lb.real_server(vi, ri);
                let mut sum = vipd_lb::Counters::default();
                for k in &keys {
                    if let Some(c) = by_dest.get(&(**k, addr, port)) {
                        sum += *c;
                    }
                }
                rs.insert((vi, ri), sum);
            }
            vs.insert(vi, total);
        }
        if vs_due {
            self.setup.vs_stats.update(now, vs);
        }
        if rs_due {
            self.setup.rs_stats.update(now, rs);
        }
        true
    }

    /// Why real server `ri` of `vi` is up or down.
    fn reason(&self, vi: usize, ri: usize) -> &str {
        self.reasons.get(&(vi, ri)).map_or("", |r| r.0.as_str())
    }

    /// The `snmp_name` of virtual server `vi` or of its real server `ri`.
    fn snmp_name(&self, vi: usize, ri: Option<usize>) -> Option<String> {
        self.snmp_name_ref(vi, ri).map(str::to_string)
    }

    fn snmp_name_ref(&self, vi: usize, ri: Option<usize>) -> Option<&str> {
        let (vs, rs) = self.setup.snmp_names.get(vi)?;
        match ri {
            None => vs.as_deref(),
            Some(ri) => rs.get(ri)?.as_deref(),
        }
    }

    /// The virtual servers' part of the status, updated in place: an entry still in
    /// its place (the same name; real servers at the same address and port) keeps its
    /// strings, so a change of one server does not allocate two strings for each of
    /// 40,000 others (nor a reload that keeps them).
    fn publish(&self) {
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        let lb = &self.setup.lb;
        let backend = self.plane.name();
        let mut before = std::mem::take(&mut status.virtual_servers).into_iter();
        let mut list = Vec::with_capacity(lb.len());
        for vi in 0..lb.len() {
            let name = lb.name(vi);
            let service = VsService {
                snmp_name: self.snmp_name(vi, None),
                settings: self.setup.mib[vi].0.clone(),
                sorry: lb.sorry_server(vi).map(|(addr, port, f, in_use)| {
                    vipd_linux::status::SorryServer {
                        addr,
                        port,
                        forward: forward_number(f),
                        in_use,
                    }
                }),
                ..vs_service(name, lb.keys(vi))
            };
            let mut v = match before.next() {
                Some(v) if v.name == name => v,
                _ => VirtualServerStatus {
                    name: name.to_string(),
                    active: false,
                    quorum_up: false,
                    backend: String::new(),
                    real_servers: Vec::new(),
                    stats: Default::default(),
                    service: service.clone(),
                },
            };
            v.active = lb.is_active(vi);
            v.quorum_up = lb.quorum_up(vi);
            if v.backend != backend {
                v.backend = backend.to_string();
            }
            if v.service != service {
                v.service = service;
            }
            v.stats = self.setup.vs_stats.get(&vi);
            let count = lb.real_server_count(vi);
            v.real_servers.truncate(count);
            for ri in 0..count {
                let (addr, port) = lb.real_server(vi, ri);
                let reason = self.reason(vi, ri);
                let snmp_name = self.snmp_name_ref(vi, Some(ri));
                let (up, stats) = (lb.is_up(vi, ri), self.setup.rs_stats.get(&(vi, ri)));
                let weight = lb.rs_settings(vi, ri).weight;
                let failed_checks = self.reasons.get(&(vi, ri)).map_or(0, |r| r.1);
                // An Arc: a clone is a count, not a copy.
                let settings = self.setup.mib[vi].1[ri].clone();
                match v.real_servers.get_mut(ri) {
                    Some(r) if r.port == port && r.addr == addr => {
                        r.up = up;
                        r.stats = stats;
                        r.weight = weight;
                        r.failed_checks = failed_checks;
                        r.settings = settings;
                        if r.reason != reason {
                            r.reason.clear();
                            r.reason.push_str(reason);
                        }
                        if r.snmp_name.as_deref() != snmp_name {
                            r.snmp_name = snmp_name.map(str::to_string);
                        }
                    }
                    slot => {
                        let fresh = RealServerStatus {
                            addr,
                            port,
                            up,
                            reason: reason.to_string(),
                            snmp_name: snmp_name.map(str::to_string),
                            stats,
                            weight,
                            failed_checks,
                            settings,
                        };
                        match slot {
                            Some(r) => *r = fresh,
                            None => v.real_servers.push(fresh),
                        }
                    }
                }
            }
            list.push(v);
        }
        status.virtual_servers = list;
        status.vs_groups = self.setup.vs_groups.clone();
    }
}

/// KEEPALIVED-MIB's number of a forwarding method: 1 nat, 2 dr, 3 tun.
fn forward_number(f: vipd_lb::Forward) -> u8 {
    match f {
        vipd_lb::Forward::Nat => 1,
        vipd_lb::Forward::Dr => 2,
        vipd_lb::Forward::Tun => 3,
    }
}

/// KEEPALIVED-MIB's view of each virtual server's and real server's configuration:
/// what `lb` resolved (scheduler, methods, thresholds, quorum), the scripts as checked,
/// the rest as written (a real server's timing over its virtual server's).
fn mib_settings(
    config: &Config,
    lb: &Lb,
    scripts: &[ScriptSet],
) -> Vec<(Arc<VsSettings>, Vec<Arc<RsSettings>>)> {
    let words = |s: &Option<Script>| s.as_ref().map(|s| s.argv.clone());
    let g = &config.global;
    let checker_mail = g.smtp_alert_checker.or(g.smtp_alert);
    // Real servers whose settings equal the previous one's share its `Arc`: most do
    // (40,000 allocations fewer at 2,000 × 20, on every reload, and their memory).
    let mut last: Option<Arc<RsSettings>> = None;
    let mut shared = |s: RsSettings| match &last {
        Some(a) if **a == s => a.clone(),
        _ => last.insert(Arc::new(s)).clone(),
    };
    config
        .virtual_servers
        .iter()
        .enumerate()
        .map(|(vi, vs)| {
            let l = lb.vs_settings(vi);
            let sc = &scripts[vi];
            let v = VsSettings {
                sched: Sched::ALL
                    .iter()
                    .position(|s| *s == l.sched)
                    .map_or(0, |k| k as u8 + 1),
                forward: forward_number(l.forward),
                fallback: l.flags.fallback,
                port: l.flags.port,
                sched3: l.flags.sched3,
                ops: l.flags.one_packet,
                virtualhost: vs.virtualhost.clone(),
                persistence: l
                    .persistence
                    .map(|p| (p.timeout.as_secs() as u32, p.prefix_len)),
                ipv6: lb
                    .keys(vi)
                    .first()
                    .is_some_and(|k| k.family() == vipd_lb::Family::V6),
                timing: vs.timing.clone(),
                ha_suspend: vs.ha_suspend,
                alpha: vs.alpha,
                omega: vs.omega,
                inhibit: vs.inhibit_on_failure.unwrap_or(false),
                quorum: l.quorum,
                hysteresis: l.hysteresis,
                quorum_up: words(&sc.quorum_up),
                quorum_down: words(&sc.quorum_down),
                smtp_alert: vs.smtp_alert.or(checker_mail).unwrap_or(false),
            };
            let rs = vs
                .real_servers
                .iter()
                .enumerate()
                .map(|(ri, r)| {
                    let l = lb.rs_settings(vi, ri);
                    let (own, up) = (&r.timing, &vs.timing);
                    shared(RsSettings {
                        forward: forward_number(l.forward),
                        upper_threshold: l.upper_threshold,
                        lower_threshold: l.lower_threshold,
                        inhibit: l.inhibit,
                        notify_up: sc.notify_up.get(ri).and_then(words),
                        notify_down: sc.notify_down.get(ri).and_then(words),
                        virtualhost: r.virtualhost.clone(),
                        alpha: r.alpha.unwrap_or(vs.alpha),
                        timing: vipd_config::model::CheckTiming {
                            connect_timeout: own.connect_timeout.or(up.connect_timeout),
                            retry: own.retry.or(up.retry),
                            delay_before_retry: own.delay_before_retry.or(up.delay_before_retry),
                            warmup: own.warmup.or(up.warmup),
                            delay_loop: own.delay_loop.or(up.delay_loop),
                        },
                        smtp_alert: r.smtp_alert.or(checker_mail).unwrap_or(true),
                    })
                })
                .collect();
            (Arc::new(v), rs)
        })
        .collect()
}

/// The service of a virtual server as KEEPALIVED-MIB's virtualServerTable shows it.
fn vs_service(name: &str, keys: &[vipd_lb::ServiceKey]) -> VsService {
    use vipd_lb::{Proto, ServiceKey};
    let proto = |p: &Proto| match p {
        Proto::Tcp => 1,
        Proto::Udp => 2,
        Proto::Sctp => 3,
    };
    let mut out = match keys.first() {
        Some(ServiceKey::Addr {
            addr,
            port,
            proto: p,
        }) => VsService {
            kind: 2,
            addr: Some(*addr),
            port: *port,
            protocol: proto(p),
            ..Default::default()
        },
        Some(ServiceKey::Fwmark { mark, .. }) => VsService {
            kind: 1,
            fwmark: *mark,
            protocol: 4,
            ..Default::default()
        },
        None => VsService::default(),
    };
    if let Some(g) = name.strip_prefix("virtual_server group ") {
        out.kind = 3;
        out.group = Some(g.to_string());
        out.addr = None;
        out.port = 0;
    }
    out
}

/// One empty UDP datagram to the discard port makes the kernel resolve `addr`'s MAC.
fn poke(addr: IpAddr) {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap();
    if let Ok(s) = UdpSocket::bind(bind) {
        let _ = s.send_to(&[], SocketAddr::new(addr, 9));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_real_server_options_are_kept_unless_all_are_none() {
        assert!(none_as_empty(vec![None::<bool>, None]).is_empty());
        assert_eq!(none_as_empty(vec![None, Some(true)]), [None, Some(true)]);
        assert!(none_as_empty(Vec::<Option<bool>>::new()).is_empty());
    }
}

//! `vipd run` and `vipd status`.

use crate::balancer::{Balancer, Input as LbInput};
use crate::dumps::{self, Dumper};
use crate::memory::{limit_malloc_arenas, return_free_heap};
use crate::pidfile::PidFile;
use crate::plan::DaemonPlan;
use crate::syncd::ConnSync;
use anyhow::{Context, Result};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};
use vipd_config::{LoadOptions, Severity};
use vipd_linux::addresses::AddrNotice;
use vipd_linux::bfd::BfdEvent;
use vipd_linux::control::{query_status, ControlServer, EventHub, Handlers, ReloadHook};
use vipd_linux::mail::{MailSettings, Mailer};
use vipd_linux::notifier::{Event as NotifyEvent, Notifier, NotifyResult};
use vipd_linux::runtime::{Notice, Runtime};
use vipd_linux::sd_notify::{self, NotifyState};
use vipd_linux::tracker::TrackNotice;
use vipd_vrrp::engine::{State, TransitionReason};

/// `vipd run --help` and vipd-run(1).
pub const RUN_LONG_ABOUT: &str = "Run the daemon in the foreground.

Signals, as keepalived: SIGTERM or SIGINT stops (masters send priority 0 and release \
their addresses); SIGHUP re-reads the configuration (as `vipd reload`); SIGUSR1 writes \
the state to /tmp/keepalived.data, SIGUSR2 the statistics to /tmp/keepalived.stats, \
and keepalived's JSON signal (SIGRTMIN+2, `keepalived --signum=JSON`) the JSON state to \
/tmp/keepalived.json. `state_dump_file`, `stats_dump_file` and `json_dump_file` in \
global_defs choose other files ($TMPDIR replaces /tmp when set). `vipd --signum NAME` \
prints the number for STOP, RELOAD, DATA, STATS, STATS_CLEAR and JSON, as `keepalived --signum`.";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// keepalived.conf to run.
    #[arg(short = 'f', long = "file", default_value = crate::DEFAULT_CONFIG)]
    pub file: PathBuf,
    #[arg(long = "control-socket", default_value = crate::DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
    #[arg(long = "pid-file", default_value = crate::DEFAULT_PID_FILE)]
    pub pid_file: PathBuf,
    /// Selects `@ID` conditional lines (default: short host name).
    #[arg(long = "config-id")]
    pub config_id: Option<String>,
    /// Run even though the configuration uses features vipd parses but does not act on
    /// yet (`vipd check-config` lists them); they are then ignored, with a warning each.
    #[arg(long)]
    pub ignore_inactive: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9650).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Kernel data plane for `virtual_server`s: `auto` (IPVS when the kernel has it,
    /// nftables otherwise), `nftables` or `ipvs`.
    #[arg(long = "lb-backend", default_value = "auto", value_name = "BACKEND")]
    pub lb_backend: crate::balancer::Backend,
    /// Leave IPVS' `expire_nodest_conn` and `expire_quiescent_template` sysctls as they
    /// are (by default vipd sets both to 1 while it runs, so connections to a removed
    /// real server are rescheduled instead of dropped until they time out).
    #[arg(long = "lb-keep-ipvs-sysctls")]
    pub lb_keep_ipvs_sysctls: bool,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    #[arg(long = "control-socket", default_value = crate::DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[arg(long = "control-socket", default_value = crate::DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
    /// Keep streaming (the only mode: events are printed as they happen).
    #[arg(long)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long = "control-socket", default_value = crate::DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIPD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log pipe whose reader has gone must not take the daemon down: by default the
    // subscriber reports a failed write with eprintln!, which panics on a broken pipe.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    // Before any thread starts (issue 16, memory).
    limit_malloc_arenas();
    init_logging();
    // Before anything reads the host or starts a thread (threads inherit it).
    if let Some(ns) = configured_netns(&args) {
        if let Err(e) = enter_netns(&ns) {
            error!("net_namespace {ns}: {e}; not starting");
            return Ok(ExitCode::FAILURE);
        }
        info!("net_namespace {ns}: running in it");
    }
    let Ok((loaded, plan)) = load(&args.file, args.config_id.as_deref(), args.ignore_inactive)
    else {
        error!("{}: not starting", args.file.display());
        return Ok(ExitCode::FAILURE);
    };
    if let Err(e) = tune_process(&loaded.config.global, plan.umask) {
        error!("{}: {e}; not starting", args.file.display());
        return Ok(ExitCode::FAILURE);
    }
    let mailer = Mailer::new();
    warn_unsent_mail(&loaded.config, &plan.mail);
    mailer.configure(plan.mail);
    let shutdown_script = plan.shutdown;
    let _pid = PidFile::create(&args.pid_file)?;
    // keepalived runs it before any of its processes start, and waits for it.
    if let Some(hook) = &plan.startup {
        run_hook(hook);
    }
    let plan = plan.vrrp;
    // At start only (keepalived does not change it on reload); restored at stop.
    let igmp_disabled = loaded.config.global.disable_local_igmp
        && match vipd_linux::iface::disable_local_igmp() {
            Ok(changed) => {
                info!("disable_local_igmp: net.ipv4.igmp_link_local_mcast_reports = 0");
                changed
            }
            Err(e) => {
                warn!("disable_local_igmp: {e}");
                false
            }
        };
    let no_accept = Arc::new(NoAcceptTables::new(&loaded.config.global));
    if let Err(e) = no_accept.set(&plan.no_accept_addresses()) {
        error!("{}: {e}; not starting", args.file.display());
        return Ok(ExitCode::FAILURE);
    }
    // Each *_notify_fifo_script reads its FIFO; it starts before any line is written.
    let fifos = match vipd_linux::notifier::Fifos::open(&plan.fifos) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            error!("{e}; not starting");
            return Ok(ExitCode::FAILURE);
        }
    };
    // `enable_snmp_*`: transitions reach the SNMP thread from the start.
    let snmp_settings = match crate::snmp::Settings::from_config(&loaded.config) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            warn!("{e}; vipd runs without SNMP");
            None
        }
        None => None,
    };
    let (snmp_tx, snmp_rx) = crate::snmp::channel();
    let snmp_events = snmp_settings
        .as_ref()
        .is_some_and(|s| s.traps)
        .then(|| snmp_tx.clone());
    let events = EventHub::default();
    let (tx, rx) = mpsc::channel();
    // `enable_dbus`: transitions and reloads reach the DBus thread from the start.
    let dbus_settings = crate::dbus::Settings::from_config(&loaded.config.global);
    let (dbus_tx, dbus_rx) = crate::dbus::channel();
    let dbus_events = dbus_settings.is_some().then(|| dbus_tx.clone());
    let lb_link = LbLink::default();
    // A tracked interface deleted and re-created: the log thread asks for a reload.
    let (rebind_tx, mut rebind_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let logger = {
        let events = events.clone();
        let lb_link = lb_link.clone();
        let mailer = mailer.clone();
        let fifos = fifos.clone();
        std::thread::Builder::new()
            .name("vipd-log".into())
            .spawn(move || {
                log_notices(
                    rx,
                    &events,
                    fifos,
                    &lb_link,
                    &mailer,
                    rebind_tx,
                    Listeners {
                        dbus: dbus_events,
                        snmp: snmp_events,
                    },
                )
            })?
    };
    let runtime = Arc::new(Runtime::start(plan, tx).context("starting the VRRP runtime")?);
    let balancer = match Balancer::start(
        &loaded.config,
        args.lb_backend,
        !args.lb_keep_ipvs_sysctls,
        runtime.status.clone(),
        events.clone(),
        mailer.clone(),
        fifos.clone(),
    ) {
        Ok(b) => b,
        Err(e) => {
            error!("load balancer: {e:#}");
            error!("{}: not starting", args.file.display());
            runtime.shutdown();
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(b) = &balancer {
        lb_link.connect(b.sender());
    }
    let sync_dir = conntrackd_dir(&args.control_socket);
    let conn_sync = match ConnSync::start(&loaded.config, args.lb_backend, &sync_dir) {
        Ok(s) => s,
        Err(e) => {
            error!("{e:#}");
            error!("{}: not starting", args.file.display());
            if let Some(b) = balancer {
                b.stop();
            }
            runtime.shutdown();
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(s) = &conn_sync {
        lb_link.connect_sync(s.notifier());
    }
    let conn_sync = Arc::new(Mutex::new(conn_sync));
    let balancer = Arc::new(Mutex::new(balancer));
    let dump_settings = dumps::Settings::from_config(&loaded.config);
    let dumper = Arc::new(Dumper::start(
        dump_settings.clone(),
        runtime.status.clone(),
    )?);
    dumper.save_config(&dump_settings, &loaded.files);
    let reload = reload_hook(
        &args,
        runtime.clone(),
        dumper.clone(),
        &loaded.config,
        LbHandle {
            balancer: balancer.clone(),
            link: lb_link.clone(),
            events: events.clone(),
            mailer: mailer.clone(),
            fifos: fifos.clone(),
            no_accept: no_accept.clone(),
            conn_sync: conn_sync.clone(),
            sync_dir: sync_dir.clone(),
        },
    );
    // Every reload (SIGHUP, `vipd reload`, reload_time_file, DBus) tells the DBus thread.
    let reload: ReloadHook = match &dbus_settings {
        Some(_) => {
            let (inner, tx) = (reload, dbus_tx.clone());
            Arc::new(move || {
                let r = inner();
                if r.is_ok() {
                    tx.send(crate::dbus::Event::Reloaded);
                }
                r
            })
        }
        None => reload,
    };
    // Every reload, whoever asked for it, pages out the code it ran once settled.
    let reloaded = Arc::new(tokio::sync::Notify::new());
    let reload: ReloadHook = {
        let (inner, reloaded) = (reload, reloaded.clone());
        Arc::new(move || {
            let r = inner();
            reloaded.notify_one();
            r
        })
    };
    if let Some(f) = &loaded.config.global.reload_time_file {
        crate::reload_timer::start(
            PathBuf::from(f),
            loaded.config.global.reload_repeat,
            reload.clone(),
        )?;
    }
    // The parsed configuration (its token tree alone is ~6 KB an instance) is needed
    // only to start: everything running holds its own plan, and a reload reads the
    // files anew. Keeping it cost 3–4 MB at 510 instances (issue 16).
    drop(loaded);
    return_free_heap();
    let snmp = snmp_settings.and_then(|settings| {
        crate::snmp::start(settings, runtime.status.clone(), &snmp_tx, snmp_rx)
            .map_err(|e| warn!("SNMP: starting the AgentX subagent thread: {e}"))
            .ok()
    });
    let handlers = Handlers {
        status: runtime.status.clone(),
        events,
        reload: reload.clone(),
    };
    let _control = ControlServer::start(&args.control_socket, handlers)?;
    let dbus = dbus_settings.and_then(|settings| {
        let ctx = crate::dbus::Context {
            status: runtime.status.clone(),
            dumper: dumper.clone(),
            reload: reload.clone(),
            runtime: runtime.clone(),
        };
        crate::dbus::start(settings, ctx, &dbus_tx, dbus_rx)
            .map_err(|e| warn!("enable_dbus: starting the DBus thread: {e}"))
            .ok()
    });
    if let Some(addr) = args.metrics {
        let local = vipd_linux::metrics::serve(addr, runtime.status.clone())?;
        info!("metrics on http://{local}/metrics");
    }
    info!(config = %args.file.display(), socket = %args.control_socket.display(), "vipd started");
    let started = Instant::now();
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
    start_watchdog(runtime.clone(), started);

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signal = tokio.block_on(wait_for_signal(
        &*reload,
        &dumper,
        &mut rebind_rx,
        &reloaded,
    ))?;
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    info!("{signal}: leaving (masters send priority 0 and release their addresses)");
    runtime.shutdown();
    let balancer = balancer.lock().ok().and_then(|mut b| b.take());
    if let Some(b) = balancer {
        b.stop();
    }
    let conn_sync = conn_sync.lock().ok().and_then(|mut s| s.take());
    if let Some(s) = conn_sync {
        s.stop();
    }
    if let Err(e) = no_accept.set(&[]) {
        warn!("{e}");
    }
    drop(runtime);
    let _ = logger.join();
    // After the last transitions: keepalived's VrrpStopped ends the bus traffic.
    if let Some(d) = dbus {
        d.stop();
    }
    // After the last transitions' notifications: the session is closed.
    if let Some(s) = snmp {
        s.stop();
    }
    if igmp_disabled {
        if let Err(e) = vipd_linux::iface::restore_local_igmp() {
            warn!("disable_local_igmp: restoring: {e}");
        }
    }
    if let Some(hook) = &shutdown_script {
        run_hook(hook);
    }
    info!("vipd stopped");
    Ok(ExitCode::SUCCESS)
}

/// `net_namespace NAME` of the configuration, if it has one (a configuration with
/// errors has none here: `load` reports them).
fn configured_netns(args: &RunArgs) -> Option<String> {
    let opts = LoadOptions {
        config_id: args.config_id.clone(),
        check_interfaces: false,
        ..Default::default()
    };
    vipd_config::load_file(&args.file, &opts)
        .ok()?
        .config
        .global
        .dumps
        .net_namespace
}

/// `net_namespace NAME`: joins `/run/netns/NAME` (as made by `ip netns add`), in a
/// mount namespace of vipd's own with that network namespace's `/sys` (as `ip netns
/// exec` does), so interface facts read from sysfs are the namespace's. vipd must
/// still be one thread here.
fn enter_netns(name: &str) -> std::result::Result<(), String> {
    use std::os::fd::AsRawFd;
    if name.contains('/') || name == "." || name == ".." {
        return Err("a name from `ip netns list` is expected, not a path".into());
    }
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: setns with a namespace file descriptor we own.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (root, sys, sysfs) = (c("/"), c("/sys"), c("sysfs"));
    // SAFETY: unshare and mount(2) with valid NUL-terminated strings; they act on
    // vipd's own (new) mount namespace only.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNS): {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(format!(
                "making / a slave mount: {}",
                std::io::Error::last_os_error()
            ));
        }
        libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
        if libc::mount(
            sysfs.as_ptr(),
            sys.as_ptr(),
            sysfs.as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return Err(format!(
                "mounting /sys: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Runs `startup_script` / `shutdown_script` and logs how it ended.
fn run_hook(hook: &crate::plan::Hook) {
    let line = hook.script.argv.join(" ");
    info!("{}: running `{line}`", hook.keyword);
    match hook.run() {
        vipd_exec::scripts::Outcome::Exited(0) => info!("{}: `{line}` done", hook.keyword),
        vipd_exec::scripts::Outcome::TimedOut => warn!(
            "{}: `{line}` still running after {:?} ({}_timeout): killed",
            hook.keyword, hook.timeout, hook.keyword
        ),
        other => warn!("{}: `{line}` failed: {other:?}", hook.keyword),
    }
}

/// A diagnostic on stderr, as `check-config` prints it; a closed stderr is ignored
/// (on reload the daemon may have lost its terminal long ago).
fn print_diagnostic(d: &vipd_config::Diagnostic) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{d}");
}

/// Load and validate a config and build its plan (as `check-config` does), printing
/// every diagnostic; on errors, what they are (`file:line:col: message` each).
fn load(
    file: &Path,
    config_id: Option<&str>,
    ignore_inactive: bool,
) -> std::result::Result<(vipd_config::Loaded, DaemonPlan), String> {
    let opts = LoadOptions {
        config_id: config_id.map(str::to_string),
        check_interfaces: true,
        ..Default::default()
    };
    let refused = |diags: &[vipd_config::Diagnostic]| {
        for d in diags {
            print_diagnostic(d);
        }
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| {
                let s = &d.span;
                format!("{}:{}:{}: {}", s.file.display(), s.line, s.col, d.message)
            })
            .collect();
        error!("{}: {} error(s)", file.display(), errors.len());
        format!("{}: {}", file.display(), errors.join("; "))
    };
    let l = vipd_config::load_file(file, &opts).map_err(|d| refused(&d))?;
    for d in &l.diagnostics {
        print_diagnostic(d);
    }
    let inactive = l.inactive().count();
    if inactive > 0 && !ignore_inactive {
        let e = format!(
            "{}: {inactive} feature(s) above are parsed but not active yet; refusing to run without them \
             (pass --ignore-inactive to run anyway)",
            file.display()
        );
        error!("{e}");
        return Err(e);
    }
    let plan = crate::plan::build(file, &l.config).map_err(|d| refused(&d))?;
    Ok((l, plan))
}

/// `umask`, `vrrp_no_swap`/`checker_no_swap` and `vrrp_rlimit_rttime` /
/// `checker_rlimit_rttime` / `bfd_rlimit_rttime` (at start only, as keepalived reads
/// them); the thread priorities and CPU affinities are set by the threads themselves.
fn tune_process(
    g: &vipd_config::model::GlobalDefs,
    umask: Option<u32>,
) -> std::result::Result<(), String> {
    use vipd_exec::tuning;
    if let Some(mask) = umask {
        tuning::set_umask(mask);
        info!("umask {mask:04o}");
    }
    if g.vrrp_no_swap || g.checker_no_swap || g.bfd_no_swap {
        tuning::lock_memory()
            .map_err(|e| format!("vrrp_no_swap/checker_no_swap/bfd_no_swap: mlockall: {e}"))?;
        info!("memory locked (vrrp_no_swap/checker_no_swap/bfd_no_swap)");
    }
    let rttime = tuning::rttime_limit(&[
        tuning::RtThread {
            rlimit_rttime: g.vrrp_rlimit_rttime,
            realtime: g.vrrp_rt_priority.is_some() || g.max_auto_priority > 0,
        },
        tuning::RtThread {
            rlimit_rttime: g.checker_rlimit_rttime,
            realtime: g.checker_rt_priority.is_some(),
        },
        tuning::RtThread {
            rlimit_rttime: g.bfd_rlimit_rttime,
            realtime: g.bfd_rt_priority.is_some(),
        },
    ]);
    if let Some(us) = rttime {
        tuning::log_sigxcpu().map_err(|e| format!("*_rlimit_rttime: SIGXCPU handler: {e}"))?;
        tuning::set_rttime_limit(us)
            .map_err(|e| format!("*_rlimit_rttime: setrlimit(RLIMIT_RTTIME, {us}): {e}"))?;
        info!(
            "RLIMIT_RTTIME {us} µs (SIGXCPU logged at {} µs) for vipd's real-time threads (vrrp_rlimit_rttime/checker_rlimit_rttime/bfd_rlimit_rttime)",
            (us / 2).max(1)
        );
    }
    Ok(())
}

/// Warns when `smtp_alert` asks for mails that cannot go out.
fn warn_unsent_mail(config: &vipd_config::Config, settings: &Option<MailSettings>) {
    let g = &config.global;
    let asked = [g.smtp_alert, g.smtp_alert_vrrp, g.smtp_alert_checker]
        .into_iter()
        .chain(config.instances.iter().map(|i| i.smtp_alert))
        .chain(config.sync_groups.iter().map(|s| s.smtp_alert))
        .chain(config.virtual_servers.iter().map(|v| v.smtp_alert))
        .any(|a| a == Some(true));
    if settings.is_none() && asked {
        warn!("smtp_alert is on, but without both `smtp_server` and `notification_email` in global_defs no mail is sent");
    }
}

/// The `no_accept` drop tables (`vipd_lb::nft::no_accept`), owned here while vipd runs,
/// named and tuned by global_defs' `nftables` / `nftables_priority` /
/// `nftables_counters` as read at start.
struct NoAcceptTables(
    Mutex<Option<vipd_lb::nft::no_accept::NoAccept>>,
    vipd_lb::nft::no_accept::Settings,
);

impl NoAcceptTables {
    fn new(g: &vipd_config::model::GlobalDefs) -> NoAcceptTables {
        NoAcceptTables(Mutex::new(None), NoAcceptTables::settings(g))
    }

    fn settings(g: &vipd_config::model::GlobalDefs) -> vipd_lb::nft::no_accept::Settings {
        let mut settings = vipd_lb::nft::no_accept::Settings::default();
        if let Some(t) = &g.nftables_table {
            settings.table = t.clone();
        }
        if let Some(p) = g.nftables_priority {
            settings.priority = p;
        }
        settings.counters = g.nftables_counters;
        settings
    }

    /// Drops packets to `addrs` from now on (none: removes the tables, also those a
    /// killed vipd left). Without nftables, an empty list is not an error.
    fn set(&self, addrs: &[IpAddr]) -> std::result::Result<(), String> {
        let mut tables = self.0.lock().map_err(|_| "no_accept state poisoned")?;
        let t = match tables.as_mut() {
            Some(t) => t,
            None => match vipd_lb::nft::no_accept::NoAccept::open_with(self.1.clone()) {
                Ok(t) => tables.insert(t),
                Err(_) if addrs.is_empty() => return Ok(()),
                Err(e) => return Err(format!("no_accept needs nftables: {e:#}")),
            },
        };
        let before = t.installed().to_vec();
        t.apply(addrs).map_err(|e| format!("no_accept: {e:#}"))?;
        if t.installed() != before.as_slice() {
            let list: Vec<String> = t.installed().iter().map(|a| a.to_string()).collect();
            if list.is_empty() {
                info!("no_accept: dropping packets to no address");
            } else {
                info!("no_accept: dropping packets to {}", list.join(", "));
            }
        }
        if t.installed().is_empty() {
            // Nothing to drop: the netlink socket and its 1 MiB reply buffer (resident as
            // far as replies have touched it) are not kept for nothing (issue 16); the
            // next set() that has addresses opens one again.
            *tables = None;
        }
        Ok(())
    }

    fn installed(&self) -> Vec<IpAddr> {
        self.0
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| t.installed().to_vec()))
            .unwrap_or_default()
    }
}

impl Drop for NoAcceptTables {
    /// Whatever way vipd leaves (an error after start included), its drop rules go.
    fn drop(&mut self) {
        if !self.installed().is_empty() {
            if let Err(e) = self.set(&[]) {
                warn!("{e}");
            }
        }
    }
}

/// What a reload needs to change the load balancer.
struct LbHandle {
    /// `None` while the configuration has no virtual servers.
    balancer: Arc<Mutex<Option<Balancer>>>,
    link: LbLink,
    events: EventHub,
    mailer: Mailer,
    /// The notify FIFOs (`VS` / `RS` lines), as opened at start.
    fifos: Arc<vipd_linux::notifier::Fifos>,
    no_accept: Arc<NoAcceptTables>,
    /// The connection sync thread (`lvs_sync_daemon`), if the configuration has one.
    conn_sync: Arc<Mutex<Option<ConnSync>>>,
    /// conntrackd's directory (nftables backend).
    sync_dir: PathBuf,
}

/// Where conntrackd's configuration, control socket and log go: next to vipd's control
/// socket, so every vipd on the host has its own.
fn conntrackd_dir(control_socket: &Path) -> PathBuf {
    let mut name = control_socket.as_os_str().to_owned();
    name.push(".conntrackd");
    PathBuf::from(name)
}

/// SIGHUP and `vipd reload`: re-read and validate the whole config first (an invalid
/// one changes nothing), then apply changed virtual servers in place (the balancer
/// checks them against the backend first and changes nothing if it refuses), then hand
/// the new plan to the protocol thread, which keeps unchanged instances untouched.
fn reload_hook(
    args: &RunArgs,
    runtime: Arc<Runtime>,
    dumper: Arc<Dumper>,
    config: &vipd_config::Config,
    lb: LbHandle,
) -> ReloadHook {
    let running_lb = Mutex::new(lb_fingerprint(config));
    let netns = config.global.dumps.net_namespace.clone();
    let reload_file = Arc::new(Mutex::new(reload_file_path(config, &args.pid_file)));
    let pid_file = args.pid_file.clone();
    let file = args.file.clone();
    let config_id = args.config_id.clone();
    let ignore_inactive = args.ignore_inactive;
    let (backend, tune_ipvs) = (args.lb_backend, !args.lb_keep_ipvs_sysctls);
    let lock = Arc::new(Mutex::new(()));
    Arc::new(move || {
        let _one_at_a_time = lock
            .lock()
            .map_err(|_| "reload lock poisoned".to_string())?;
        let _ = sd_notify::notify(
            false,
            &[
                NotifyState::Reloading,
                NotifyState::MonotonicUsec(monotonic_usec()),
            ],
        );
        // config_save_dir: the state before, the files read, the state after.
        let reload_number = dumper.before_reload();
        let result = (|| {
            // reload_file (the running configuration's): exists, empty, while the files
            // are read.
            let marker = reload_file.lock().ok().and_then(|p| p.clone());
            if let Some(path) = &marker {
                if let Err(e) = std::fs::File::create(path) {
                    warn!("reload_file {}: {e}", path.display());
                }
            }
            let loaded = load(&file, config_id.as_deref(), ignore_inactive);
            if let Some(path) = &marker {
                let _ = std::fs::remove_file(path);
            }
            let (mut loaded, plan) =
                loaded.map_err(|e| format!("invalid configuration: {e}; nothing changed"))?;
            if loaded.config.global.dumps.net_namespace != netns {
                warn!(
                    "net_namespace changed to {:?}: vipd stays in {:?} until it restarts",
                    loaded.config.global.dumps.net_namespace, netns
                );
            }
            let nft = NoAcceptTables::settings(&loaded.config.global);
            if nft != lb.no_accept.1 {
                warn!(
                    "nftables / nftables_priority / nftables_counters changed to {nft:?}: the no_accept \
                     drop tables stay {:?} until vipd restarts",
                    lb.no_accept.1
                );
            }
            if let Ok(mut p) = reload_file.lock() {
                *p = reload_file_path(&loaded.config, &pid_file);
            }
            let dump_settings = dumps::Settings::from_config(&loaded.config);
            dumper.save_config(&dump_settings, &loaded.files);
            warn_unsent_mail(&loaded.config, &plan.mail);
            let (plan, mail) = (plan.vrrp, plan.mail);
            // The drop rules first: the step most likely to fail (nftables), so a
            // failure leaves everything as it was; undone if a later step fails.
            let dropped_before = lb.no_accept.installed();
            lb.no_accept
                .set(&plan.no_accept_addresses())
                .map_err(|e| format!("{e}; nothing changed"))?;
            let undo_no_accept = |e: String| {
                if let Err(again) = lb.no_accept.set(&dropped_before) {
                    error!("restoring the no_accept rules: {again}");
                }
                e
            };
            // The links (VMACs, ipvlans) next: removed again if a later step fails.
            let prepared = runtime
                .prepare(plan)
                .map_err(|e| undo_no_accept(format!("{e}; nothing changed")))?;
            let fingerprint = lb_fingerprint(&loaded.config);
            let mut running = running_lb
                .lock()
                .map_err(|_| "reload state poisoned".to_string())?;
            let lb_summary = if fingerprint == *running {
                None
            } else {
                match reload_balancer(&lb, &mut loaded.config, backend, &runtime, tune_ipvs) {
                    Ok(summary) => {
                        *running = fingerprint;
                        Some(summary)
                    }
                    Err(e) => {
                        prepared.abandon();
                        return Err(undo_no_accept(format!(
                            "{}: load balancer: {e}; nothing changed",
                            file.display()
                        )));
                    }
                }
            };
            runtime
                .reload(prepared)
                .map(|r| {
                    reload_conn_sync(&lb, &loaded.config, backend);
                    lb.mailer.configure(mail);
                    dumper.set_settings(dump_settings);
                    if loaded.config.global.fifo_write_vrrp_states_on_reload {
                        let snapshot = runtime.status.lock().map(|s| s.clone()).unwrap_or_default();
                        for line in reload_state_lines(&loaded.config, &snapshot, &r) {
                            lb.fifos.vrrp_line(&line);
                        }
                    }
                    (r, lb_summary)
                })
                .map_err(undo_no_accept)
        })();
        // The reloaded configuration is gone by now: its pages back to the kernel.
        return_free_heap();
        dumper.after_reload(reload_number);
        let _ = sd_notify::notify(false, &[NotifyState::Ready]);
        match result {
            Ok((report, lb_summary)) => {
                info!(
                    "reloaded {}: unchanged {:?}, updated {:?}, restarted {:?}, added {:?}, removed {:?}",
                    file.display(),
                    report.unchanged,
                    report.updated,
                    report.restarted,
                    report.added,
                    report.removed
                );
                let mut v = serde_json::to_value(&report).unwrap_or_default();
                if let (Some(obj), Some(lb)) = (v.as_object_mut(), lb_summary) {
                    obj.insert("load_balancer".into(), lb.into());
                }
                Ok(v)
            }
            Err(e) => {
                error!("reload failed: {e}");
                Err(e)
            }
        }
    })
}

/// `reload_file`: its path, the default `keepalived.reload` in the pid file's directory.
fn reload_file_path(config: &vipd_config::Config, pid_file: &Path) -> Option<PathBuf> {
    let written = config.global.reload_file.as_deref()?;
    Some(if written.is_empty() {
        pid_file
            .parent()
            .unwrap_or(Path::new("/run"))
            .join("keepalived.reload")
    } else {
        PathBuf::from(written)
    })
}

/// `fifo_write_vrrp_states_on_reload`: after a reload, the states that did not change
/// (keepalived writes no transition for them) go to the notify FIFOs again: each sync
/// group's (`GROUP "G" BACKUP 0`), then each kept instance's with its priority.
/// Instances the reload restarted or added write their transitions anyway.
fn reload_state_lines(
    config: &vipd_config::Config,
    snapshot: &vipd_linux::status::Snapshot,
    report: &vipd_linux::runtime::ReloadReport,
) -> Vec<String> {
    let state_of = |name: &str| {
        snapshot
            .instances
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.state.as_str())
    };
    let groups = config.sync_groups.iter().map(|g| {
        let states: Vec<&str> = g.group.iter().filter_map(|m| state_of(m)).collect();
        let state = if states.contains(&"FAULT") {
            "FAULT"
        } else if !states.is_empty() && states.iter().all(|s| *s == "MASTER") {
            "MASTER"
        } else {
            "BACKUP"
        };
        format!("GROUP \"{}\" {state} 0", g.name)
    });
    let kept = snapshot
        .instances
        .iter()
        .filter(|i| report.unchanged.contains(&i.name) || report.updated.contains(&i.name))
        .filter(|i| matches!(i.state.as_str(), "MASTER" | "BACKUP" | "FAULT"))
        .map(|i| {
            format!(
                "INSTANCE \"{}\" {} {}",
                i.name, i.state, i.effective_priority
            )
        });
    groups.chain(kept).collect()
}

/// Brings the load balancer to `config`'s virtual servers: reloads the running one in
/// place, starts one for a configuration that now has virtual servers, stops it
/// (removing its table) when they are all gone.
/// `config` loses its virtual servers when the running balancer takes them.
fn reload_balancer(
    lb: &LbHandle,
    config: &mut vipd_config::Config,
    backend: crate::balancer::Backend,
    runtime: &Runtime,
    tune_ipvs: bool,
) -> Result<String, String> {
    let mut slot = lb
        .balancer
        .lock()
        .map_err(|_| "balancer state poisoned".to_string())?;
    match (slot.as_ref(), config.virtual_servers.is_empty()) {
        (Some(b), false) => b.reload(config),
        (Some(_), true) => {
            if let Some(b) = slot.take() {
                b.stop();
            }
            Ok("load balancer: no virtual servers left; stopped".into())
        }
        (None, false) => {
            let b = Balancer::start(
                config,
                backend,
                tune_ipvs,
                runtime.status.clone(),
                lb.events.clone(),
                lb.mailer.clone(),
                lb.fifos.clone(),
            )
            .map_err(|e| format!("{e:#}"))?
            .ok_or("no virtual servers")?;
            lb.link.connect(b.sender());
            *slot = Some(b);
            Ok(format!(
                "load balancer: started with {} virtual server(s)",
                config.virtual_servers.len()
            ))
        }
        (None, true) => Ok("load balancer: none".into()),
    }
}

/// Brings the connection sync to the reloaded `lvs_sync_daemon`: restarted if its
/// settings changed, started or stopped if it came or went. Failures are logged (the
/// VRRP and load-balancer parts of the reload stand, as in keepalived).
fn reload_conn_sync(
    lb: &LbHandle,
    config: &vipd_config::Config,
    backend: crate::balancer::Backend,
) {
    let Ok(mut slot) = lb.conn_sync.lock() else {
        return;
    };
    match slot.as_ref() {
        Some(s) => s.reload(config),
        None => match ConnSync::start(config, backend, &lb.sync_dir) {
            Ok(Some(s)) => {
                lb.link.connect_sync(s.notifier());
                *slot = Some(s);
            }
            Ok(None) => {}
            Err(e) => error!("{e:#}"),
        },
    }
}

fn monotonic_usec() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000 + i128::from(ts.tv_nsec) / 1000
}

/// systemd watchdog: ping at half the interval, but only while the protocol thread
/// is going round its loop — a hung protocol thread must get us restarted.
fn start_watchdog(runtime: Arc<Runtime>, started: Instant) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec) / 2;
    let _ = std::thread::Builder::new()
        .name("vipd-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let age = runtime.protocol_thread_age(started);
            if age < Duration::from_secs(3) {
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
            } else {
                warn!("protocol thread silent for {age:?}: not feeding the systemd watchdog");
            }
        });
}

/// `vipd --signum NAME`: the signal the daemon acts on for keepalived's signal function
/// NAME (`keepalived --signum=NAME`), the ones [`wait_for_signal`] listens to. keepalived's
/// TDUMP (only in builds with thread dumps; 2.4.3's default build has none) is not one.
pub fn signum(name: &str) -> Option<i32> {
    Some(match name {
        "STOP" => libc::SIGTERM,
        "RELOAD" => libc::SIGHUP,
        "DATA" => libc::SIGUSR1,
        "STATS" => libc::SIGUSR2,
        "STATS_CLEAR" => dumps::stats_clear_signal(),
        "JSON" => dumps::json_signal(),
        _ => return None,
    })
}

/// SIGTERM/SIGINT end vipd; SIGHUP reloads; SIGUSR1, SIGUSR2 and keepalived's JSON
/// signal (SIGRTMIN+2) write the state, statistics and JSON files (on the dump thread);
/// keepalived's STATS_CLEAR (SIGRTMAX-1) writes the statistics too.
/// How long after start or a reload the start-up code is paged out.
const SETTLE_BEFORE_PAGE_OUT: Duration = Duration::from_secs(10);

async fn wait_for_signal(
    reload: &(dyn Fn() -> Result<serde_json::Value, String> + Send + Sync),
    dumper: &Dumper,
    rebind: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    reloaded: &tokio::sync::Notify,
) -> Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    // The numbers `vipd --signum NAME` prints are the ones listened to here.
    let func = |name: &str| {
        let n = signum(name).expect("a signal function vipd handles");
        signal(SignalKind::from_raw(n))
    };
    let mut term = func("STOP")?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = func("RELOAD")?;
    let mut usr1 = func("DATA")?;
    let mut usr2 = func("STATS")?;
    let mut json = func("JSON")?;
    let mut stats_clear = func("STATS_CLEAR")?;
    // Start-up and reloads run code the running daemon no longer needs; once the
    // threads have settled (instances started, kernel tables programmed, checkers
    // running), that code leaves the resident set (issue 16, memory).
    let settle = tokio::time::sleep(SETTLE_BEFORE_PAGE_OUT);
    tokio::pin!(settle);
    let mut settling = true;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = &mut settle, if settling => {
                settling = false;
                match crate::memory::page_out_own_code() {
                    Ok(bytes) => tracing::debug!("start-up code paged out ({} KiB)", bytes / 1024),
                    Err(e) => tracing::debug!("paging out start-up code: {e}"),
                }
            }
            _ = reloaded.notified() => {
                settle.as_mut().reset(tokio::time::Instant::now() + SETTLE_BEFORE_PAGE_OUT);
                settling = true;
            }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration");
                let _ = reload();
            }
            Some(iface) = rebind.recv() => {
                info!("interface `{iface}` was re-created or appeared: reloading to use it");
                let _ = reload();
            }
            _ = usr1.recv() => {
                info!("SIGUSR1: writing the state");
                dumper.signal(dumps::Kind::State);
            }
            _ = usr2.recv() => {
                info!("SIGUSR2: writing the statistics");
                dumper.signal(dumps::Kind::Stats);
            }
            _ = json.recv() => {
                info!("JSON signal (SIGRTMIN+2): writing the JSON state");
                dumper.signal(dumps::Kind::Json);
            }
            _ = stats_clear.recv() => {
                warn!("STATS_CLEAR signal (SIGRTMAX-1): writing the statistics; vipd does not reset its counters");
                dumper.signal(dumps::Kind::Stats);
            }
        }
    }
}

/// The load-balancer configuration without source positions: what a reload compares.
/// It includes which vrrp_instance holds each virtual server's address (and on which
/// interface), since the balancer follows that instance, and the global keywords the
/// balancer reads (`lvs_timeouts`, `lvs_flush_on_stop`, `net_namespace_ipvs`).
fn lb_fingerprint(config: &vipd_config::Config) -> u128 {
    let owners: Vec<(String, String)> = config
        .virtual_servers
        .iter()
        .filter_map(|vs| match &vs.key {
            vipd_config::VsKey::Addr { addr, .. } => Some(*addr),
            _ => None,
        })
        .flat_map(|addr| {
            config.instances.iter().filter_map(move |i| {
                i.virtual_ipaddress
                    .iter()
                    .chain(&i.virtual_ipaddress_excluded)
                    .find(|a| a.addr == addr)
                    .map(|a| {
                        (
                            i.name.clone(),
                            a.dev.clone().unwrap_or_else(|| i.interface.clone()),
                        )
                    })
            })
        })
        .collect();
    // A hash, streamed (never the JSON itself: about 6 KB of it per real server).
    let g = &config.global;
    vipd_config::fingerprint_without_spans(&(
        &config.virtual_servers,
        &config.virtual_server_groups,
        owners,
        // The balancer's own global settings (a change is logged or applied by it).
        (&g.lvs_timeouts, &g.lvs_flush_on_stop, &g.net_namespace_ipvs),
    ))
}

/// The balancer's input, once it runs, the last VRRP state of every instance, and the
/// connection sync thread's input.
type LbLinkState = (
    Option<mpsc::Sender<LbInput>>,
    std::collections::HashMap<String, bool>,
    // BFD sessions' last checker events (name → Up).
    std::collections::HashMap<String, bool>,
    Option<crate::syncd::SyncNotifier>,
);

/// VRRP states on their way to the load balancer, which starts after the protocol
/// thread: states seen before it connects are replayed to it.
#[derive(Clone, Default)]
struct LbLink(Arc<Mutex<LbLinkState>>);

impl LbLink {
    fn connect(&self, tx: mpsc::Sender<LbInput>) {
        if let Ok(mut g) = self.0.lock() {
            for (instance, master) in &g.1 {
                let _ = tx.send(LbInput::Vrrp {
                    instance: instance.clone(),
                    master: *master,
                });
            }
            for (name, up) in &g.2 {
                let _ = tx.send(LbInput::Bfd {
                    name: name.clone(),
                    up: *up,
                });
            }
            g.0 = Some(tx);
        }
    }

    fn bfd(&self, name: &str, up: bool) {
        if let Ok(mut g) = self.0.lock() {
            g.2.insert(name.to_string(), up);
            if let Some(tx) = &g.0 {
                let _ = tx.send(LbInput::Bfd {
                    name: name.to_string(),
                    up,
                });
            }
        }
    }

    /// The connection sync thread follows the VRRP states too (replayed to it now).
    fn connect_sync(&self, sync: crate::syncd::SyncNotifier) {
        if let Ok(mut g) = self.0.lock() {
            for (instance, master) in &g.1 {
                sync.vrrp(instance, *master);
            }
            g.3 = Some(sync);
        }
    }

    fn vrrp(&self, instance: &str, master: bool) {
        if let Ok(mut g) = self.0.lock() {
            g.1.insert(instance.to_string(), master);
            if let Some(s) = &g.3 {
                s.vrrp(instance, master);
            }
            if let Some(tx) = &g.0 {
                let _ = tx.send(LbInput::Vrrp {
                    instance: instance.to_string(),
                    master,
                });
            }
        }
    }
}

/// Runs on its own thread so a slow stderr never reaches the protocol thread.
/// Where transitions go besides the log: the DBus and SNMP threads, when enabled.
struct Listeners {
    dbus: Option<crate::dbus::Sender>,
    snmp: Option<crate::snmp::Sender>,
}

fn log_notices(
    rx: mpsc::Receiver<Notice>,
    events: &EventHub,
    fifos: Arc<vipd_linux::notifier::Fifos>,
    lb: &LbLink,
    mailer: &Mailer,
    rebind: tokio::sync::mpsc::UnboundedSender<String>,
    listeners: Listeners,
) {
    let Listeners { dbus, snmp } = listeners;
    let (results_tx, results_rx) = mpsc::channel::<NotifyResult>();
    let _ = std::thread::Builder::new().name("vipd-notify-log".into()).spawn(move || {
        for r in results_rx {
            if r.outcome.success() {
                info!(instance = %r.instance, "{}: notify {} `{}` done", r.instance, r.state, r.script);
            } else {
                warn!(instance = %r.instance, "{}: notify {} `{}` failed: {:?}", r.instance, r.state, r.script, r.outcome);
            }
        }
    });
    let mut notifier = Notifier::new(fifos, results_tx);
    for n in rx {
        if matches!(n, Notice::Stopped) {
            break;
        }
        match n {
            Notice::Transition {
                instance,
                from,
                to,
                reason,
                vips,
                at,
                priority,
                notify,
                deleted,
            } => {
                lb.vrrp(&instance, to == State::Master);
                if let Some(d) = &dbus {
                    d.send(crate::dbus::Event::Transition {
                        instance: instance.clone(),
                        state: crate::dbus::state_number(to),
                    });
                }
                if let Some(s) = &snmp {
                    s.send(crate::snmp::Event::new(&instance, to, &reason));
                }
                let word = match (to, reason) {
                    // keepalived: a deleted instance notifies FAULT unless notify_deleted.
                    (State::Initialize, _) if deleted => Some(if notify.notify_deleted {
                        "DELETED"
                    } else {
                        "FAULT"
                    }),
                    (State::Master, _) => Some("MASTER"),
                    (State::Backup, _) => Some("BACKUP"),
                    (State::Fault, _) => Some("FAULT"),
                    (State::Initialize, TransitionReason::Shutdown) => Some("STOP"),
                    (State::Initialize, _) => None,
                };
                if let (Some(state), true) = (word, notify.mail) {
                    let vips = if vips.is_empty() {
                        "none".to_string()
                    } else {
                        vips.join(", ")
                    };
                    mailer.vrrp(
                        "Instance",
                        &instance,
                        state,
                        &format!("Was: {from}\nWhy: {reason}\nPriority: {priority}\nVirtual addresses: {vips}"),
                    );
                }
                if let Some(state) = word {
                    notifier.notify(NotifyEvent {
                        kind: "INSTANCE",
                        instance: instance.clone(),
                        state,
                        priority,
                        plan: notify,
                    });
                }
                let unix = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                events.publish(
                    serde_json::json!({
                        "time": unix, "instance": instance, "from": from.as_str(), "to": to.as_str(),
                        "reason": reason.to_string(), "vips": vips,
                    })
                    .to_string(),
                );
                info!(instance = %instance, vips = %vips.join(","), "{instance}: {from} -> {to} ({reason})")
            }
            Notice::TakeoverLatency {
                instance,
                first_announce,
            } => {
                info!(instance = %instance, "{instance}: first GARP/NA sent {} µs after deciding to take over", first_announce.as_micros())
            }
            Notice::SendFailed { instance, error } => {
                warn!(instance = %instance, "{instance}: {error}")
            }
            Notice::StartupDelay { delay } => info!(
                "VRRP instances start in {:.3} s (vrrp_startup_delay / vrrp_delay_after_boot)",
                delay.as_secs_f64()
            ),
            Notice::Address(a) => match a {
                AddrNotice::Added(specs) => log_addresses("added", &specs),
                AddrNotice::Removed(specs) => log_addresses("removed", &specs),
                AddrNotice::StaleRemoved(s) => {
                    warn!(
                        "removed stale {}/{} left by an earlier vipd (ifindex {})",
                        s.addr, s.prefix_len, s.ifindex
                    )
                }
                AddrNotice::Foreign(s) => warn!(
                    "{}/{} was already configured by someone else; vipd will not remove it",
                    s.addr, s.prefix_len
                ),
                AddrNotice::Routing(what) => info!("{what}"),
                AddrNotice::Restored(what) => warn!("{what}"),
                AddrNotice::Deleted(s) => warn!(
                    "{}/{} (ifindex {}) was deleted by someone else: its instance leaves MASTER \
                     and takes over again after Skew_Time (as keepalived; `no_track` keeps it MASTER)",
                    s.addr, s.prefix_len, s.ifindex
                ),
                AddrNotice::Failed(e) => error!("address change failed: {e}"),
            },
            Notice::Stopped => {}
            Notice::MasterRxLowerPriority {
                instance,
                from,
                their_priority,
                priority,
                notify,
            } => {
                info!(instance = %instance, "{instance}: MASTER received an advert from {from} with lower priority {their_priority}, ours {priority}");
                notifier.notify(NotifyEvent {
                    kind: "INSTANCE",
                    instance,
                    state: vipd_linux::notifier::MASTER_RX_LOWER_PRI,
                    priority,
                    plan: notify,
                });
            }
            Notice::PriorityChanged {
                instance,
                master,
                priority,
            } => notifier.priority_changed(&instance, master, priority),
            Notice::GroupTransition { group, to, notify } => {
                info!("sync group {group}: {to}");
                if let Some(s) = &snmp {
                    s.send(crate::snmp::Event::group(&group, to));
                }
                let state = match to {
                    State::Master => "MASTER",
                    State::Backup => "BACKUP",
                    _ => "FAULT",
                };
                if notify.mail {
                    mailer.vrrp("Group", &group, state, "");
                }
                notifier.notify(NotifyEvent {
                    kind: "GROUP",
                    instance: group,
                    state,
                    priority: 0,
                    plan: notify,
                });
            }
            Notice::Bfd(e) => match e {
                BfdEvent::Changed {
                    name,
                    from,
                    to,
                    diagnostic,
                } => {
                    let unix = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64();
                    events.publish(
                        serde_json::json!({
                            "time": unix, "bfd": name, "from": from.as_str(), "to": to.as_str(),
                            "diagnostic": diagnostic,
                        })
                        .to_string(),
                    );
                    if to == vipd_bfd::State::Up || from == vipd_bfd::State::Up {
                        warn!(
                            "bfd_instance {name}: {} -> {} ({diagnostic})",
                            from.as_str(),
                            to.as_str()
                        )
                    } else {
                        info!(
                            "bfd_instance {name}: {} -> {} ({diagnostic})",
                            from.as_str(),
                            to.as_str()
                        )
                    }
                }
                // BFD_CHECK: keepalived's checker hears real transitions only, so a
                // session that has never been Up leaves the checkers as they start.
                BfdEvent::Tracked {
                    name,
                    up,
                    to_checker: true,
                    transition,
                    ..
                } if transition || up => lb.bfd(&name, up),
                BfdEvent::Tracked { .. } | BfdEvent::PeerAdminDown { .. } => {}
                BfdEvent::Error { name, error } => warn!("bfd_instance {name}: {error}"),
            },
            Notice::Track(t) => match t {
                TrackNotice::ObjectChanged {
                    object,
                    state,
                    detail,
                } => {
                    info!(
                        "track {} `{}`: {state:?} ({detail})",
                        object.kind.as_str(),
                        object.name
                    )
                }
                TrackNotice::Verdict {
                    instance,
                    priority_adjustment,
                    faults,
                } => {
                    let faults: Vec<String> = faults
                        .iter()
                        .map(|o| format!("{} `{}`", o.kind.as_str(), o.name))
                        .collect();
                    if faults.is_empty() {
                        info!(instance = %instance, "{instance}: tracking adjusts priority by {priority_adjustment:+}")
                    } else {
                        warn!(instance = %instance, "{instance}: FAULT because of {}", faults.join(", "))
                    }
                }
                TrackNotice::Recreated { interface, ifindex } => {
                    info!("track interface `{interface}`: re-created (new ifindex {ifindex})");
                    let _ = rebind.send(interface);
                }
                // dynamic_interfaces.
                TrackNotice::Appeared { interface, ifindex } => {
                    info!("interface `{interface}` appeared (ifindex {ifindex})");
                    let _ = rebind.send(interface);
                }
            },
        }
    }
    // notify_stop scripts get a moment to finish before the process exits.
    notifier.finish(Duration::from_secs(10));
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let v = query_status(&args.control_socket)?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{}: {e}", args.control_socket.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<10} {:>4} {:>2} {:<7} {:>4} {:<24} {:<30} {:>8} {:>8}  drops",
        "INSTANCE", "IFACE", "VRID", "V", "STATE", "PRIO", "MASTER", "VIPS", "SENT", "RECV"
    );
    for i in v["instances"].as_array().into_iter().flatten() {
        let drops: Vec<String> = i["drops"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| format!("{}={}", d[0].as_str().unwrap_or("?"), d[1]))
            .collect();
        println!(
            "{:<16} {:<10} {:>4} {:>2} {:<7} {:>4} {:<24} {:<30} {:>8} {:>8}  {}",
            i["name"].as_str().unwrap_or("?"),
            i["interface"].as_str().unwrap_or("?"),
            i["vrid"].to_string(),
            i["version"].to_string(),
            i["state"].as_str().unwrap_or("?"),
            i["priority"].to_string(),
            i["master"].as_str().unwrap_or("-"),
            i["vips"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            i["adverts_sent"].to_string(),
            i["adverts_received"].to_string(),
            if drops.is_empty() {
                "-".to_string()
            } else {
                drops.join(" ")
            },
        );
    }
    // Socket errors of the protocol thread, if any.
    let io: Vec<String> = v["io_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}={}",
                e["op"].as_str().unwrap_or("?"),
                e["reason"].as_str().unwrap_or("?"),
                e["count"]
            )
        })
        .collect();
    if !io.is_empty() {
        println!("socket errors: {}", io.join(" "));
    }
    // What each instance tracks and what that does to it now.
    if let Some(tracking) = v["tracking"].as_object() {
        for (instance, lines) in tracking {
            let items: Vec<String> = lines
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    format!(
                        "{} `{}` {} (weight {}{}) → {}",
                        t["kind"].as_str().unwrap_or("?"),
                        t["name"].as_str().unwrap_or("?"),
                        t["state"].as_str().unwrap_or("?"),
                        t["weight"],
                        if t["reverse"] == true {
                            ", reverse"
                        } else {
                            ""
                        },
                        t["effect"].as_str().unwrap_or("?"),
                    )
                })
                .collect();
            if !items.is_empty() {
                println!("{instance} tracks: {}", items.join("; "));
            }
        }
    }
    // BFD sessions: state, peer, negotiated timers, flaps.
    for b in v["bfd"].as_array().into_iter().flatten() {
        let ms = |us: &serde_json::Value| {
            us.as_u64()
                .map_or("-".to_string(), |u| format!("{}", u as f64 / 1000.0))
        };
        println!(
            "bfd {} → {}{}: {} (peer {}, {}), tx {} ms, detect {} ms, {} down(s){}",
            b["name"].as_str().unwrap_or("?"),
            b["neighbor"].as_str().unwrap_or("?"),
            if b["multihop"] == true {
                " multihop"
            } else {
                ""
            },
            b["state"].as_str().unwrap_or("?"),
            b["remote_state"].as_str().unwrap_or("?"),
            b["diagnostic"].as_str().unwrap_or("?"),
            ms(&b["tx_interval_us"]),
            ms(&b["detection_time_us"]),
            b["downs"],
            if b["leaving"] == true {
                ", leaving"
            } else {
                ""
            },
        );
    }
    // Virtual servers: whether they forward here, and each real server's health.
    for vs in v["virtual_servers"].as_array().into_iter().flatten() {
        println!(
            "\n{} ({}, {}, quorum {})",
            vs["name"].as_str().unwrap_or("?"),
            vs["backend"].as_str().unwrap_or("?"),
            if vs["active"] == true {
                "forwarding"
            } else {
                "not forwarding: VIP elsewhere"
            },
            if vs["quorum_up"] == true {
                "up"
            } else {
                "DOWN"
            },
        );
        for rs in vs["real_servers"].as_array().into_iter().flatten() {
            println!(
                "  {:<40} {:<5} {}",
                format!("{}:{}", rs["addr"].as_str().unwrap_or("?"), rs["port"]),
                if rs["up"] == true { "up" } else { "DOWN" },
                rs["reason"].as_str().unwrap_or(""),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vipd reload`: what SIGHUP does, with the answer on stdout.
pub fn reload(args: ControlArgs) -> Result<ExitCode> {
    let v = vipd_linux::control::request(&args.control_socket, "reload", Duration::from_secs(15))?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(if v.get("error").is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `vipd events --follow`: one JSON line per transition, as it happens.
pub fn events(args: EventsArgs) -> Result<ExitCode> {
    use std::io::Write;
    let _ = args.follow;
    let mut out = std::io::stdout().lock();
    vipd_linux::control::follow_events(&args.control_socket, |line| {
        writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Up to [`LOG_EACH_MAX`] addresses added or removed together get a line each; more (a
/// VIP set of thousands) get one line with the count and the first and last, and a
/// line each at debug level.
fn log_addresses(what: &str, specs: &[vipd_linux::netlink::AddressSpec]) {
    let one = |s: &vipd_linux::netlink::AddressSpec| {
        format!("{}/{} (ifindex {})", s.addr, s.prefix_len, s.ifindex)
    };
    if specs.len() <= LOG_EACH_MAX {
        for s in specs {
            info!("{what} {}", one(s));
        }
        return;
    }
    info!(
        "{what} {} addresses: {} … {}",
        specs.len(),
        one(&specs[0]),
        one(&specs[specs.len() - 1])
    );
    for s in specs {
        tracing::debug!("{what} {}", one(s));
    }
}

const LOG_EACH_MAX: usize = 16;

//! `vipd bench`: failover gaps and advert jitter, measured side by side with keepalived
//! on the same keepalived.conf, in throw-away network namespaces (needs root).
//!
//! * `vipd bench failover` — crash (the master's switch port goes down) and graceful
//!   handover (SIGTERM to the master) as the largest gap in a client's 1 ms probe
//!   stream to the VIP, at VRRPv3 10 ms and 50 ms adverts, several runs each;
//!   medians, ratios to the RFC limit and vipd/keepalived ratios.
//! * `vipd bench jitter` — advert interval jitter on the wire with both cores
//!   saturated by busy loops, and spurious transitions, vipd and keepalived at once.
//! * `vipd bench tracking` — time from a track condition changing (down file created,
//!   tracked link down, weight-0 check script failing) on the master to the peer
//!   answering on the VIP, against the bound set by the script interval plus the
//!   protocol's timers.
//! * `vipd bench checkers` — CPU and memory while health-checking many real servers,
//!   and the time from a real server failing to its removal from the kernel table.
//! * `vipd bench soak` — a pair and a three-router cluster through hundreds of
//!   seeded random faults (port down, kill -9, SIGTERM, loss, reorder, duplication,
//!   partition, SIGHUP storms, interface re-creation), checking after every heal
//!   that r1 alone holds the VIP in time, no VIP outlives its daemon, nothing leaks.
//! * `vipd bench scale` — memory and CPU of a master with hundreds of VRRPv3 instances.
//! * `vipd bench vips` — one instance with 10,000 VIPs: decision → all installed and
//!   announced, SIGTERM → all removed.
//! * `vipd bench reload` — a reload at scale (thousands of virtual servers, one real
//!   server changed): SIGHUP to the kernel table changed, and the CPU it cost.
//! * `vipd bench dataplane` — packets/s and connections/s through the nftables
//!   director (NAT, DR) against plain kernel forwarding on the same veth/bridge LAN.
//!
//! Every namespace, daemon and load process lives in a guard (`vipd-netns`), so an
//! error or Ctrl-C (checked between steps) tears everything down.

mod bfd;
mod checkers;
mod dataplane;
mod failover;
mod jitter;
mod pair;
mod probe_floor;
mod reload;
mod report;
mod scale;
mod soak;
mod stats;
mod tracking;
mod vips;

use clap::{Args, Subcommand, ValueEnum};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Crash failover and graceful handover gaps seen by a 1 ms prober.
    Failover(FailoverArgs),
    /// Advert interval jitter and spurious transitions under full CPU load.
    Jitter(JitterArgs),
    /// Track condition (down file, link down, failing script) → the peer answering on the VIP.
    Tracking(TrackingArgs),
    /// Health-checking cost (CPU, RSS) for many real servers and failed-server removal latency.
    Checkers(checkers::CheckersArgs),
    /// Hundreds of seeded random faults; invariants checked after every heal.
    Soak(soak::SoakArgs),
    /// Crash failover at advert_int 1 with BFD take-over vs without BFD vs keepalived's
    /// track_bfd; the CPU cost of 100 BFD sessions at 10 ms.
    Bfd(bfd::BfdArgs),
    /// Memory (RSS, PSS) and CPU of a master running many VRRPv3 instances (default 510
    /// at 100 ms), vipd next to keepalived 2.2.7 and 2.4.3 on the same config.
    Scale(scale::ScaleArgs),
    /// One instance with many VIPs (default 10,000): decision to take over → every VIP
    /// installed and announced, and SIGTERM → every VIP removed, vipd next to
    /// keepalived 2.2.7 and 2.4.3 on the same config.
    Vips(vips::VipsArgs),
    /// A reload at scale (default 2,000 virtual servers × 20 real servers, one real server
    /// changed): SIGHUP → kernel table changed, and its CPU, vipd next to keepalived.
    Reload(reload::ReloadArgs),
    /// Packets/s and connections/s through vipd's nftables director (NAT, DR) against
    /// plain kernel forwarding on the same topology.
    Dataplane(dataplane::DataplaneArgs),
    /// The least client for `checkers --floor` (started by it, in its namespace).
    #[command(hide = true)]
    ProbeFloor(probe_floor::ProbeFloorArgs),
}

#[derive(Args, Debug, Clone)]
pub struct FailoverArgs {
    /// Runs per implementation × advert interval × scenario.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// VRRPv3 advert intervals in milliseconds (multiples of 10).
    #[arg(long, value_delimiter = ',', default_values_t = vec![10u32, 50])]
    pub adverts: Vec<u32>,
    /// Implementations to measure.
    #[arg(long = "impl", value_delimiter = ',', default_values_t = vec![Impl::Vipd, Impl::Keepalived])]
    pub impls: Vec<Impl>,
    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_values_t = vec![Scenario::Crash, Scenario::Sigterm])]
    pub scenarios: Vec<Scenario>,
    /// Print JSON (every run plus the summary) instead of markdown tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct JitterArgs {
    /// How long to measure under load.
    #[arg(long, default_value_t = 300)]
    pub seconds: u64,
    /// VRRPv3 advert interval in milliseconds (a multiple of 10).
    #[arg(long, default_value_t = 10)]
    pub advert: u32,
    /// Busy-loop processes to run (default: one per CPU).
    #[arg(long)]
    pub load: Option<usize>,
    /// Implementations to measure (all at the same time, one LAN each).
    #[arg(long = "impl", value_delimiter = ',', default_values_t = vec![Impl::Vipd, Impl::Keepalived])]
    pub impls: Vec<Impl>,
    /// Print JSON instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TrackingArgs {
    /// Runs per implementation × advert interval × scenario.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// VRRPv3 advert intervals in milliseconds (multiples of 10).
    #[arg(long, value_delimiter = ',', default_values_t = vec![100u32])]
    pub adverts: Vec<u32>,
    /// The check scripts' `interval`, in whole seconds (keepalived's unit).
    #[arg(long, default_value_t = 1)]
    pub interval: u32,
    /// Implementations to measure.
    #[arg(long = "impl", value_delimiter = ',', default_values_t = vec![Impl::Vipd, Impl::Keepalived])]
    pub impls: Vec<Impl>,
    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_values_t = vec![TrackScenario::DownFile, TrackScenario::LinkDown, TrackScenario::ScriptFail])]
    pub scenarios: Vec<TrackScenario>,
    /// Print JSON (every run plus the summary) instead of markdown tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackScenario {
    /// A `vrrp_script` (weight -2) finds a down file created on the master.
    DownFile,
    /// The master's tracked extra interface (weight -50) goes down.
    LinkDown,
    /// A weight-0 `vrrp_script` starts failing on the master (→ FAULT).
    ScriptFail,
}

impl TrackScenario {
    pub fn name(self) -> &'static str {
        match self {
            TrackScenario::DownFile => "down-file",
            TrackScenario::LinkDown => "link-down",
            TrackScenario::ScriptFail => "script-fail",
        }
    }
}

impl std::fmt::Display for TrackScenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Impl {
    Vipd,
    Keepalived,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Vipd => "vipd",
            Impl::Keepalived => "keepalived",
        }
    }
}

impl std::fmt::Display for Impl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// The master's switch port goes down.
    Crash,
    /// SIGTERM to the master (it sends priority 0).
    Sigterm,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Crash => "crash",
            Scenario::Sigterm => "sigterm",
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        vipd_netns::is_root(),
        "vipd bench builds network namespaces and needs root"
    );
    install_interrupt_handler();
    match args.what {
        BenchCommand::Failover(a) => failover::run(a),
        BenchCommand::Jitter(a) => jitter::run(a),
        BenchCommand::Tracking(a) => tracking::run(a),
        BenchCommand::Checkers(a) => checkers::run(a),
        BenchCommand::ProbeFloor(a) => probe_floor::run(a),
        BenchCommand::Soak(a) => soak::run(a),
        BenchCommand::Bfd(a) => bfd::run(a),
        BenchCommand::Scale(a) => scale::run(a),
        BenchCommand::Vips(a) => vips::run(a),
        BenchCommand::Reload(a) => reload::run(a),
        BenchCommand::Dataplane(a) => dataplane::run(a),
    }
}

// ---- Ctrl-C: set a flag, let the guards clean up on the way out ----

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    let handler: extern "C" fn(libc::c_int) = on_signal;
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails (so the guards unwind) once Ctrl-C was pressed.
pub(crate) fn check_interrupt() -> anyhow::Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d` in small steps, failing early on Ctrl-C.
pub(crate) fn sleep(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

/// `vipd_netns::wait_for` that also stops (→ `false`) on Ctrl-C.
pub(crate) fn wait_for(timeout: Duration, poll: Duration, mut cond: impl FnMut() -> bool) -> bool {
    vipd_netns::wait_for(timeout, poll, || interrupted() || cond()) && !interrupted()
}

/// A copy of this binary for a daemon whose memory a bench measures. An installed
/// `vipd run` is the only process mapping its executable; a bench that started the
/// daemon from its own file would share pages with it, and the kernel leaves pages that
/// two processes map resident when the daemon pages its start-up code out
/// (`memory::page_out_own_code`): the bench's own code would count as the daemon's.
/// Written and synced, so its page-cache pages are clean, as an installed binary's are.
/// The copy goes to `work`, or to `$VIPD_BENCH_EXE_DIR`; on tmpfs (the bench/vm guest's
/// /tmp) file pages cannot be paged out at all, so there this falls back to the bench's
/// own binary and says so.
pub(crate) fn private_exe(work: &vipd_netns::WorkDir) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    let exe = std::env::current_exe()?;
    let dir = std::env::var_os("VIPD_BENCH_EXE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| work.path().to_path_buf());
    let tmpfs = nix::sys::statfs::statfs(&dir)
        .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if tmpfs {
        eprintln!(
            "note: {} is tmpfs; the daemon runs the bench's own binary, and its RSS includes \
             pages the bench maps (set VIPD_BENCH_EXE_DIR to a directory on disk)",
            dir.display()
        );
        return Ok(exe);
    }
    // One name: a directory given for it is not cleaned up, so runs overwrite the copy.
    let to = dir.join("vipd");
    std::fs::copy(&exe, &to)
        .with_context(|| format!("copying {} to {}", exe.display(), to.display()))?;
    std::fs::File::open(&to)?.sync_all()?;
    Ok(to)
}

/// The machine, for the report.
pub(crate) fn machine() -> serde_json::Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let keepalived = std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "not installed".into());
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "kernel": kernel,
        "keepalived": keepalived,
        "vipd": env!("CARGO_PKG_VERSION"),
    })
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

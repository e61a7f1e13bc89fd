//! `vipd bench checkers`: what health-checking many real servers costs, and how fast a
//! failed server leaves the kernel's forwarding table, for vipd and keepalived on the
//! same keepalived.conf.
//!
//! Two namespaces joined by a veth: `dir` (192.0.2.1, runs the daemon) and `srv`
//! (192.0.2.2, one HTTP server task per port 10000.., all in this process). The config
//! is one `virtual_server 192.0.2.100 80` (NAT, rr) with N real servers
//! `192.0.2.2:10000+i`, each `HTTP_GET { url { path / status_code 200 } }` every
//! `delay_loop`.
//!
//! * **Cost**: after a warm-up of two delay loops, CPU time (utime + stime of the
//!   daemon and all its children, from /proc) and resident memory over the window;
//!   the servers count the requests they answer, so the check rate each daemon really
//!   achieved is part of the result (a checker that falls behind would look cheap).
//! * **Removal**: one server's listener closes at t0 (connections are refused from then
//!   on); the figure is t0 → the destination gone from the kernel table, polled every
//!   2 ms over netlink (IPVS: GET_DEST dump; nftables: `nft -j list` of vipd's table),
//!   against the bound the timers allow: delay_loop + retry × delay_before_retry.
//!   For vipd the data-plane programming time of that change is read from its log.

use super::probe_floor::FloorKind;
use super::{check_interrupt, machine, sleep, wait_for, Impl};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_netns::{Netns, Proc, WorkDir};

#[derive(Args, Debug, Clone)]
pub struct CheckersArgs {
    /// Real servers to check.
    #[arg(long, default_value_t = 10_000)]
    pub servers: usize,
    /// `delay_loop`, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub delay_loop: f64,
    /// Length of the CPU/RSS window, seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Removal measurements per implementation.
    #[arg(long, default_value_t = 5)]
    pub removals: usize,
    /// Implementations to measure (one after the other).
    #[arg(long = "impl", value_delimiter = ',', default_values_t = vec![Impl::Vipd, Impl::Keepalived])]
    pub impls: Vec<Impl>,
    /// Also measure the least clients (`plain`, `lean`) on the same schedule: the
    /// kernel's share of a check, which no checker opening a connection per check
    /// can go below (see `probe_floor`).
    #[arg(long, value_delimiter = ',')]
    pub floor: Vec<FloorKind>,
    /// vipd's data-plane backend (`auto`, `nftables`, `ipvs`).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Print JSON instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

const VIP: &str = "192.0.2.100";
const DIRECTOR: &str = "192.0.2.1";
const SERVERS: &str = "192.0.2.2";
const FIRST_PORT: u16 = 10_000;
const RETRY: u32 = 1;
const DELAY_BEFORE_RETRY: f64 = 1.0;

fn config(servers: usize, delay_loop: f64) -> String {
    let mut c = format!(
        "global_defs {{\n    router_id bench\n}}\n\
         virtual_server {VIP} 80 {{\n    delay_loop {delay_loop}\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n"
    );
    for i in 0..servers {
        let port = FIRST_PORT as usize + i;
        c.push_str(&format!(
            "    real_server {SERVERS} {port} {{\n        weight 1\n        HTTP_GET {{\n            url {{\n                path /\n                status_code 200\n            }}\n            connect_timeout 3\n            retry {RETRY}\n            delay_before_retry {DELAY_BEFORE_RETRY}\n        }}\n    }}\n"
        ));
    }
    c.push_str("}\n");
    c
}

/// The server farm: one listener per port in `srv`, answering `200 ok`.
struct Farm {
    requests: Arc<AtomicU64>,
    kill: tokio::sync::mpsc::UnboundedSender<u16>,
    revive: tokio::sync::mpsc::UnboundedSender<u16>,
    _thread: std::thread::JoinHandle<()>,
}

impl Farm {
    fn start(ns: &Netns, servers: usize) -> Result<Farm> {
        raise_nofile(servers as u64 * 2 + 4096);
        let requests = Arc::new(AtomicU64::new(0));
        let (kill, mut kill_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
        let (revive, mut revive_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let req = requests.clone();
        let thread = ns.enter_thread(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut stops: HashMap<u16, tokio::sync::oneshot::Sender<()>> = HashMap::new();
                for i in 0..servers {
                    let port = FIRST_PORT + i as u16;
                    match listen(port, req.clone()) {
                        Ok(stop) => {
                            stops.insert(port, stop);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("port {port}: {e}")));
                            return;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(()));
                loop {
                    tokio::select! {
                        Some(p) = kill_rx.recv() => { if let Some(s) = stops.remove(&p) { let _ = s.send(()); } }
                        Some(p) = revive_rx.recv() => {
                            if let Ok(stop) = listen(p, req.clone()) { stops.insert(p, stop); }
                        }
                        else => break,
                    }
                }
            });
        })?;
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("server farm: {e}"),
            Err(_) => bail!("server farm did not start"),
        }
        Ok(Farm {
            requests,
            kill,
            revive,
            _thread: thread,
        })
    }
}

fn listen(
    port: u16,
    requests: Arc<AtomicU64>,
) -> std::io::Result<tokio::sync::oneshot::Sender<()>> {
    let std = std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port))?;
    std.set_nonblocking(true)?;
    let l = tokio::net::TcpListener::from_std(std)?;
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => break,
                r = l.accept() => {
                    let Ok((mut c, _)) = r else { continue };
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = [0u8; 1024];
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match c.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        requests.fetch_add(1, Ordering::Relaxed);
                        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n").await;
                    });
                }
            }
        }
    });
    Ok(tx)
}

fn raise_nofile(want: u64) {
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Every process in the tree rooted at `root`.
pub(super) fn tree(root: i32) -> Vec<i32> {
    let mut parent: HashMap<i32, i32> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Some(st) = stat_fields(pid) {
                if let Some(pp) = st.get(1).and_then(|s| s.parse().ok()) {
                    parent.insert(pid, pp);
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Fields of /proc/PID/stat after the command name (field 3 = index 0).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU seconds (user + system) of a process tree, live processes only.
pub(super) fn cpu_seconds(pids: &[i32]) -> f64 {
    let (user, sys) = cpu_user_sys(pids);
    user + sys
}

/// CPU seconds (user, system) used so far by `pids`.
pub(super) fn cpu_user_sys(pids: &[i32]) -> (f64, f64) {
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    pids.iter()
        .filter_map(|&p| stat_fields(p))
        .map(|f| {
            let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (ut / hz, st / hz)
        })
        .fold((0.0, 0.0), |(u, s), (a, b)| (u + a, s + b))
}

/// (VmRSS, VmHWM) in KiB summed over the tree.
pub(super) fn memory_kib(pids: &[i32]) -> (u64, u64) {
    let mut rss = 0;
    let mut hwm = 0;
    for p in pids {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        for l in s.lines() {
            let val = || {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if l.starts_with("VmRSS:") {
                rss += val();
            } else if l.starts_with("VmHWM:") {
                hwm += val();
            }
        }
    }
    (rss, hwm)
}

pub(super) struct Setup {
    pub(super) dir: Netns,
    _srv: Netns,
    farm: Farm,
    pub(super) work: WorkDir,
}

/// The director and server-farm namespaces, with `servers` listeners on ports 10000...
pub(super) fn setup(servers: usize) -> Result<Setup> {
    let dir = Netns::unique("bdir")?;
    let srv = Netns::unique("bsrv")?;
    let peer = format!("v{}", std::process::id());
    dir.ip(["link", "add", "eth0", "type", "veth", "peer", "name", &peer])?;
    dir.ip(["link", "set", &peer, "netns", srv.name()])?;
    srv.ip(["link", "set", &peer, "name", "eth0"])?;
    for (ns, addr) in [(&dir, DIRECTOR), (&srv, SERVERS)] {
        ns.ip(["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ns.ip(["link", "set", "eth0", "up"])?;
        ns.ip(["link", "set", "lo", "up"])?;
    }
    // The VIP is local on the director (no VRRP here: the virtual server is always on).
    dir.ip(["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
    srv.sysctl("net.core.somaxconn", "4096")?;
    srv.sysctl("net.ipv4.tcp_max_syn_backlog", "8192")?;
    dir.sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
    dir.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    let farm = Farm::start(&srv, servers)?;
    let work = WorkDir::new("bench-checkers")?;
    Ok(Setup {
        dir,
        _srv: srv,
        farm,
        work,
    })
}

fn start_daemon(s: &Setup, imp: Impl, conf: &str, backend: &str) -> Result<Proc> {
    start_impl(&s.dir, &s.work, imp, conf, backend)
}

/// Starts `imp` on `conf` in `dir`, its files (config, log, sockets, pid files) in `work`.
pub(super) fn start_impl(
    dir: &Netns,
    work: &WorkDir,
    imp: Impl,
    conf: &str,
    backend: &str,
) -> Result<Proc> {
    let path = work.join(format!("{imp}.conf"));
    std::fs::write(&path, conf)?;
    let daemon = match imp {
        Impl::Vipd => Daemon::Vipd(super::private_exe(work)?),
        Impl::Keepalived => Daemon::Keepalived("keepalived".into()),
    };
    let log = work.join(format!("{imp}.log"));
    spawn_daemon(dir, work, &daemon, &path, &log, backend)
}

/// A daemon binary to start in the director namespace.
pub(super) enum Daemon {
    Vipd(std::path::PathBuf),
    Keepalived(std::path::PathBuf),
}

/// Starts `daemon` on the config file `path` in `dir` (keepalived with its checker
/// process only), logging to `log`, its pid files in `work`.
pub(super) fn spawn_daemon(
    dir: &Netns,
    work: &WorkDir,
    daemon: &Daemon,
    path: &std::path::Path,
    log: &std::path::Path,
    backend: &str,
) -> Result<Proc> {
    let p = match daemon {
        Daemon::Vipd(exe) => {
            let args: Vec<String> = vec![
                exe.display().to_string(),
                "run".into(),
                "-f".into(),
                path.display().to_string(),
                "--control-socket".into(),
                work.join("vipd.sock").display().to_string(),
                "--pid-file".into(),
                work.join("vipd.pid").display().to_string(),
                "--lb-backend".into(),
                backend.into(),
            ];
            // VIPD_BENCH_DAEMON_WRAPPER="heaptrack -o /tmp/x" runs the daemon under a
            // profiler (words split on white space, put before the daemon's command).
            let mut cmd: Vec<String> = std::env::var("VIPD_BENCH_DAEMON_WRAPPER")
                .map(|w| w.split_whitespace().map(String::from).collect())
                .unwrap_or_default();
            cmd.extend(args);
            dir.spawn(&cmd, log)?
        }
        Daemon::Keepalived(bin) => {
            let w = work.path().canonicalize()?;
            let args: Vec<String> = vec![
                bin.display().to_string(),
                "--dont-fork".into(),
                "--log-console".into(),
                "--log-detail".into(),
                "--no-syslog".into(),
                "--check".into(),
                "--dont-respawn".into(),
                "-f".into(),
                path.display().to_string(),
                "-p".into(),
                w.join("ka.pid").display().to_string(),
                "-c".into(),
                w.join("ka-checkers.pid").display().to_string(),
                "-r".into(),
                w.join("ka-vrrp.pid").display().to_string(),
            ];
            dir.spawn(&args, log)?
        }
    };
    Ok(p)
}

/// Is `port` still a destination of the virtual server in the kernel?
fn present(s: &Setup, port: u16, ipvs: bool) -> Result<bool> {
    let needle_ipvs = format!("{SERVERS}:{port}");
    if ipvs {
        let out = s
            .dir
            .exec(&["ipvsadm", "-Ln", "-t", &format!("{VIP}:80")])?;
        Ok(out
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(needle_ipvs.as_str())))
    } else {
        // Destinations are the data of vipd's slot maps: `: 192.0.2.2 . PORT`.
        let out = s.dir.exec(&["nft", "list", "table", "ip", "vipd"])?;
        let needle = format!(": {SERVERS} . {port}");
        Ok(out
            .match_indices(&needle)
            .any(|(i, m)| !out[i + m.len()..].starts_with(|c: char| c.is_ascii_digit())))
    }
}

struct Result1 {
    imp: Who,
    cpu_s: f64,
    window_s: f64,
    checks_per_s: f64,
    rss_kib: u64,
    hwm_kib: u64,
    removals_ms: Vec<f64>,
    program_ms: Vec<f64>,
}

/// What is measured: a daemon, or one of the least clients.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Daemon(Impl),
    Floor(FloorKind),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Daemon(i) => write!(f, "{i}"),
            Who::Floor(k) => f.write_str(k.name()),
        }
    }
}

/// Starts a least client on the daemons' schedule, in the director's namespace.
fn start_floor(s: &Setup, kind: FloorKind, a: &CheckersArgs) -> Result<Proc> {
    let exe = super::private_exe(&s.work)?;
    let cmd: Vec<String> = vec![
        exe.display().to_string(),
        "bench".into(),
        "probe-floor".into(),
        "--target".into(),
        SERVERS.into(),
        "--first-port".into(),
        FIRST_PORT.to_string(),
        "--servers".into(),
        a.servers.to_string(),
        "--delay-loop".into(),
        a.delay_loop.to_string(),
        "--kind".into(),
        kind.to_string(),
    ];
    s.dir
        .spawn(&cmd, s.work.join(format!("{}.log", kind.name())))
}

fn measure(s: &Setup, who: Who, a: &CheckersArgs) -> Result<Result1> {
    let conf = config(a.servers, a.delay_loop);
    let mut daemon = match who {
        Who::Daemon(imp) => start_daemon(s, imp, &conf, &a.backend)?,
        Who::Floor(kind) => start_floor(s, kind, a)?,
    };
    let ipvs = who == Who::Daemon(Impl::Keepalived)
        || (std::path::Path::new("/proc/net/ip_vs").exists() && a.backend != "nftables");
    // Warm-up: the first checks are spread over one delay loop; wait for two and for
    // the table to hold every server.
    let warm = Duration::from_secs_f64(a.delay_loop * 2.0 + 2.0);
    sleep(warm)?;
    if !daemon.is_running() {
        bail!("{who} exited during warm-up:\n{}", daemon.log_tail(30));
    }
    let pids = tree(daemon.pid());
    let r0 = s.farm.requests.load(Ordering::Relaxed);
    let c0 = cpu_seconds(&pids);
    let t0 = Instant::now();
    sleep(Duration::from_secs(a.seconds))?;
    let pids = tree(daemon.pid());
    let c1 = cpu_seconds(&pids);
    let r1 = s.farm.requests.load(Ordering::Relaxed);
    let window = t0.elapsed().as_secs_f64();
    let (rss, hwm) = memory_kib(&pids);
    eprintln!(
        "{who}: {:.3} CPU-s over {window:.1} s, {:.0} checks/s, RSS {} KiB (pids {pids:?})",
        c1 - c0,
        (r1 - r0) as f64 / window,
        rss
    );

    let mut removals = Vec::new();
    let removals_wanted = if matches!(who, Who::Daemon(_)) {
        a.removals
    } else {
        0
    };
    for k in 0..removals_wanted {
        check_interrupt()?;
        let port = FIRST_PORT + 7 + k as u16 * 13;
        if !wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            present(s, port, ipvs).unwrap_or(false)
        }) {
            bail!(
                "{who}: {SERVERS}:{port} never appeared in the kernel table:\n{}",
                daemon.log_tail(20)
            );
        }
        // A random phase against the delay loop.
        sleep(Duration::from_secs_f64(
            a.delay_loop * (k as f64 + 0.37) / a.removals as f64,
        ))?;
        let t0 = Instant::now();
        s.farm.kill.send(port).ok();
        let bound = Duration::from_secs_f64(a.delay_loop + RETRY as f64 * DELAY_BEFORE_RETRY + 5.0);
        let gone = wait_for(bound, Duration::from_millis(2), || {
            !present(s, port, ipvs).unwrap_or(true)
        });
        let took = t0.elapsed();
        if !gone {
            bail!(
                "{who}: {SERVERS}:{port} still in the table after {took:?}:\n{}",
                daemon.log_tail(20)
            );
        }
        eprintln!(
            "{who}: removal of :{port} after {:.1} ms",
            took.as_secs_f64() * 1000.0
        );
        removals.push(took.as_secs_f64() * 1000.0);
        s.farm.revive.send(port).ok();
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM).ok();
    daemon.wait_timeout(Duration::from_secs(20));
    let program_ms = if who == Who::Daemon(Impl::Vipd) {
        programming_times(&daemon.log())
    } else {
        Vec::new()
    };
    Ok(Result1 {
        imp: who,
        cpu_s: c1 - c0,
        window_s: window,
        checks_per_s: (r1 - r0) as f64 / window,
        rss_kib: rss,
        hwm_kib: hwm,
        removals_ms: removals,
        program_ms,
    })
}

/// "programmed in X ms" figures from vipd's log (every apply of the run).
pub(super) fn programming_times(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            let i = l.find("programmed in ")?;
            l[i + 14..].split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Median / max of milliseconds (the shared order statistics), NaN when empty.
fn median(v: &[f64]) -> f64 {
    super::stats::median_ms(v.to_vec()).unwrap_or(f64::NAN)
}

fn max(v: &[f64]) -> f64 {
    super::stats::max_ms(v.iter().copied()).unwrap_or(f64::NAN)
}

pub fn run(a: CheckersArgs) -> Result<ExitCode> {
    let mut results = Vec::new();
    let s = setup(a.servers).context("building the bench topology")?;
    for &imp in &a.impls {
        if imp == Impl::Keepalived && !std::path::Path::new("/proc/net/ip_vs").exists() {
            eprintln!("keepalived: skipped — its checker needs IPVS and this kernel has none (run inside bench/vm/run.sh)");
            continue;
        }
        results.push(measure(&s, Who::Daemon(imp), &a)?);
    }
    for &kind in &a.floor {
        results.push(measure(&s, Who::Floor(kind), &a)?);
    }
    let bound_ms = (a.delay_loop + RETRY as f64 * DELAY_BEFORE_RETRY) * 1000.0;
    if a.json {
        let rows: Vec<_> = results
            .iter()
            .map(|r| {
                json!({
                    "impl": r.imp.to_string(), "cpu_seconds": r.cpu_s, "window_seconds": r.window_s,
                    "cpu_percent": 100.0 * r.cpu_s / r.window_s, "checks_per_second": r.checks_per_s,
                    "rss_kib": r.rss_kib, "hwm_kib": r.hwm_kib, "removal_ms": r.removals_ms,
                    "programming_ms": r.program_ms,
                })
            })
            .collect();
        let out = json!({
            "machine": machine(), "servers": a.servers, "delay_loop": a.delay_loop,
            "retry": RETRY, "delay_before_retry": DELAY_BEFORE_RETRY, "timer_bound_ms": bound_ms,
            "results": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} real servers, HTTP_GET every {} s (retry {RETRY}, delay_before_retry {DELAY_BEFORE_RETRY} s); CPU/RSS over {} s\n",
        a.servers, a.delay_loop, a.seconds
    );
    println!("| impl | CPU % of one core | checks/s achieved | RSS MiB (peak) | removal median / max (ms) | timer bound (ms) | vipd programming median / max (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.1} | {:.0} | {:.1} ({:.1}) | {:.0} / {:.0} | {:.0} | {} |",
            r.imp,
            100.0 * r.cpu_s / r.window_s,
            r.checks_per_s,
            r.rss_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0,
            median(&r.removals_ms),
            max(&r.removals_ms),
            bound_ms,
            if r.program_ms.is_empty() {
                "—".to_string()
            } else {
                format!("{:.2} / {:.2}", median(&r.program_ms), max(&r.program_ms))
            }
        );
    }
    // Every row against keepalived's, per check achieved (the rates differ a little).
    let per_check = |r: &Result1| r.cpu_s / (r.checks_per_s * r.window_s);
    if let Some(k) = results
        .iter()
        .find(|r| r.imp == Who::Daemon(Impl::Keepalived))
    {
        println!();
        for r in results.iter().filter(|r| r.imp != k.imp) {
            println!(
                "{} / keepalived CPU: {:.2}× (per check achieved: {:.2}×)",
                r.imp,
                (r.cpu_s / r.window_s) / (k.cpu_s / k.window_s),
                per_check(r) / per_check(k)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `vipd bench dataplane`: packets/s and connections/s through vipd's nftables director
//! (NAT and DR) against plain kernel forwarding on the same topology.
//!
//! One switched LAN (`vipd_netns::Lan`, a bridge): the client (192.0.2.50), r1 = the
//! director (192.0.2.11, `ip_forward` on, redirects off) and r2 = the real server
//! (192.0.2.12, and 198.51.100.2 on `lo`). Every variant crosses the director (the
//! client routes the target via r1, the real server routes the client via r1; DR's
//! replies excepted, see below), so the only difference between the variants is what r1
//! does to a packet:
//!
//! * **forward**: the client targets 198.51.100.2; r1 routes it (no nftables rule, no
//!   conntrack): the physical limit of this machine for this path.
//! * **forward-ct** (only with `--variant`): the same with conntrack on the director (a
//!   `ct state new counter` rule in `forward`): the share of NAT's cost that is conntrack.
//! * **nat**: vipd on r1 with `virtual_server 192.0.2.100 {9000 UDP, 80 TCP}`
//!   `lb_kind NAT` → 192.0.2.12 (conntrack + DNAT, replies un-NATed on r1).
//! * **dr**: the same with `lb_kind DR` (vipd's netdev ingress chain rewrites the MAC);
//!   r2 holds the VIP on `lo` with `arp_ignore 1`/`arp_announce 2`; its replies (source
//!   the VIP) go straight to the client, as DR is deployed — only the request direction
//!   crosses the director.
//!
//! vipd runs with one `vrrp_instance` (alone, so master) holding the VIP in both nat and
//! dr (DR requires the VIP to be an instance's address).
//!
//! Loads, each for `--seconds`, variants interleaved run by run (forward, nat, dr,
//! forward, …) so the machine's other load hits them alike:
//!
//! * **pps**: one client thread sends 18-byte UDP datagrams to port 9000 as fast as it
//!   can; an nftables rule on r2 (`prerouting` priority -300: `udp dport 9000 counter
//!   drop`, the same in every variant) counts what arrives.
//! * **cps**: `--conns` client threads connect to port 80 over and over (blocking
//!   connect, then close with SO_LINGER 0 so no TIME_WAIT piles up); an accept-and-close
//!   server on r2. The figure is the connections the server accepted per second.
//!
//! Both are also given per CPU-second of the threads that carried them (the sender; the
//! connecting threads plus the accept thread): the cost per packet / connection, which
//! on a shared machine is far steadier than the wall-clock rate. `--backend ipvs` runs
//! nat and dr on vipd's IPVS backend instead (where the kernel has IPVS: bench/vm).

use super::checkers::start_impl;
use super::{check_interrupt, machine, sleep, wait_for, Impl};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_netns::{Lan, LanOptions, Netns, Proc, WorkDir};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Plain kernel forwarding (the baseline).
    Forward,
    /// Plain forwarding with connection tracking on the director (one `ct state` rule,
    /// no NAT): what conntrack alone costs.
    ForwardCt,
    /// vipd's nftables director, `lb_kind NAT`.
    Nat,
    /// vipd's nftables director, `lb_kind DR`.
    Dr,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Forward => "forward",
            Variant::ForwardCt => "forward-ct",
            Variant::Nat => "nat",
            Variant::Dr => "dr",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DataplaneArgs {
    /// Runs per variant (interleaved).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Length of each load, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Concurrent connecting threads for connections/s.
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    /// Variants to measure.
    #[arg(long = "variant", value_delimiter = ',', default_values_t = vec![Variant::Forward, Variant::Nat, Variant::Dr])]
    pub variants: Vec<Variant>,
    /// Further virtual servers on the VIP (TCP ports 10000.., one real server each)
    /// that no load uses: what the director's per-packet and per-connection work
    /// costs when it has many services to tell apart.
    #[arg(long, default_value_t = 0)]
    pub services: usize,
    /// vipd's data-plane backend for nat/dr (`nftables`, `ipvs`, `auto`).
    #[arg(long, default_value = "nftables")]
    pub backend: String,
    /// Print JSON instead of markdown tables.
    #[arg(long)]
    pub json: bool,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const VIP: &str = "192.0.2.100";
const DIRECTOR: &str = "192.0.2.11";
const REAL: &str = "192.0.2.12";
const CLIENT: &str = "192.0.2.50";
/// The real server's routed address for the baseline.
const ROUTED: &str = "198.51.100.2";
const UDP_PORT: u16 = 9000;
const TCP_PORT: u16 = 80;

/// The first port of the `--services` padding services.
const PAD_PORT: usize = 10_000;

fn config(kind: &str, services: usize) -> String {
    // DR needs the VIP to be an instance's address (its interface carries the traffic);
    // NAT gets the same instance so the two differ only in `lb_kind`.
    let mut c = format!(
        "global_defs {{\n    router_id bench\n}}\n\
         vrrp_instance VI {{\n    interface eth0\n    state MASTER\n    virtual_router_id 51\n    \
         priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}/32\n    }}\n}}\n"
    );
    let pad = (0..services).map(|i| ((PAD_PORT + i) as u16, "TCP"));
    for (port, proto) in [(UDP_PORT, "UDP"), (TCP_PORT, "TCP")]
        .into_iter()
        .chain(pad)
    {
        c.push_str(&format!(
            "virtual_server {VIP} {port} {{\n    lb_algo rr\n    lb_kind {kind}\n    protocol {proto}\n    \
             real_server {REAL} {port} {{\n        weight 1\n    }}\n}}\n"
        ));
    }
    c
}

struct Lab {
    lan: Lan,
    work: WorkDir,
    stop_server: Arc<AtomicBool>,
    /// Connections the real server accepted.
    accepted: Arc<AtomicU64>,
    server_tid: Arc<AtomicU64>,
    _server: std::thread::JoinHandle<()>,
}

impl Lab {
    fn client(&self) -> &Netns {
        self.lan.client()
    }
    fn director(&self) -> &Netns {
        self.lan.router(1)
    }
    fn real(&self) -> &Netns {
        self.lan.router(2)
    }
    /// CPU time of the accept thread so far.
    fn server_cpu_ns(&self) -> u64 {
        let tid = self.server_tid.load(Ordering::Relaxed);
        cpu_ns_of(&format!("/proc/self/task/{tid}/schedstat"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_server.store(true, Ordering::Relaxed);
    }
}

fn setup() -> Result<Lab> {
    let lan = Lan::new(2, LanOptions::default())?;
    let work = WorkDir::new("bench-dataplane")?;
    let (cl, dir, rs) = (lan.client(), lan.router(1), lan.router(2));
    dir.sysctls(&[
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.eth0.send_redirects", "0"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.eth0.rp_filter", "0"),
    ])?;
    cl.sysctls(&[
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.eth0.accept_redirects", "0"),
        ("net.ipv4.ip_local_port_range", "1024 65000"),
    ])?;
    rs.sysctls(&[
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.eth0.accept_redirects", "0"),
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.eth0.rp_filter", "0"),
        ("net.core.somaxconn", "4096"),
        ("net.ipv4.tcp_max_syn_backlog", "8192"),
    ])?;
    // Both directions cross the director.
    for dst in [ROUTED, VIP] {
        cl.ip(["route", "add", &format!("{dst}/32"), "via", DIRECTOR])?;
    }
    dir.ip(["route", "add", &format!("{ROUTED}/32"), "via", REAL])?;
    rs.ip(["route", "add", &format!("{CLIENT}/32"), "via", DIRECTOR])?;
    // DR's replies (source: the VIP) go straight to the client, as direct routing is
    // deployed (the director holds the VIP, so it would drop them as martians anyway).
    rs.ip(["rule", "add", "from", VIP, "lookup", "100"])?;
    rs.ip([
        "route",
        "add",
        &format!("{CLIENT}/32"),
        "dev",
        "eth0",
        "table",
        "100",
    ])?;
    rs.ip(["addr", "add", &format!("{ROUTED}/32"), "dev", "lo"])?;
    // DR: the real server accepts the VIP locally (and does not answer ARP for it).
    rs.ip(["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
    // The arrival counter, the same in every variant.
    rs.exec(&[
        "nft",
        &format!(
            "add table ip bench; add chain ip bench pre {{ type filter hook prerouting priority -300; }}; \
             add rule ip bench pre udp dport {UDP_PORT} counter drop"
        ),
    ])?;
    // Neighbours resolved up front (DR needs the real server's MAC).
    dir.exec(&["ping", "-c1", "-W1", REAL])?;
    cl.exec(&["ping", "-c1", "-W1", DIRECTOR])?;
    // The accept-and-close server.
    let stop_server = Arc::new(AtomicBool::new(false));
    let stop = stop_server.clone();
    let accepted = Arc::new(AtomicU64::new(0));
    let acc = accepted.clone();
    let server_tid = Arc::new(AtomicU64::new(0));
    let tid = server_tid.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let server = rs.enter_thread(move || {
        let l = match TcpListener::bind(("0.0.0.0", TCP_PORT)) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        // SAFETY: gettid has no preconditions.
        tid.store(unsafe { libc::gettid() } as u64, Ordering::Relaxed);
        let _ = ready_tx.send(Ok(()));
        // Blocking accept: a sleeping poll loop lets the backlog overflow, and a dropped
        // SYN costs its sender a 1 s retransmission. The thread ends with the process.
        while !stop.load(Ordering::Relaxed) {
            if let Ok((c, _)) = l.accept() {
                acc.fetch_add(1, Ordering::Relaxed);
                linger0(&c);
                drop(c);
            }
        }
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("accept server did not start")??;
    Ok(Lab {
        lan,
        work,
        stop_server,
        accepted,
        server_tid,
        _server: server,
    })
}

/// Close with RST: no TIME_WAIT on either side between runs.
fn linger0(s: &impl AsRawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// CPU time of the calling thread (ns on CPU, from the scheduler). With tick accounting
/// and no IRQ time accounting (this kernel), softirq work done in the thread's context —
/// here the whole veth → bridge → director → real server path — is part of it.
fn thread_cpu_ns() -> u64 {
    cpu_ns_of("/proc/thread-self/schedstat")
}

fn cpu_ns_of(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn udp_counter(rs: &Netns) -> Result<u64> {
    let out = rs.exec(&["nft", "list", "chain", "ip", "bench", "pre"])?;
    let i = out
        .find("packets ")
        .context("no counter in the bench chain")?;
    Ok(out[i + 8..]
        .split_whitespace()
        .next()
        .unwrap_or("")
        .parse()?)
}

/// A rate per wall-clock second and per CPU-second of the threads that carried it.
#[derive(Clone, Copy)]
struct Rate {
    per_s: f64,
    per_cpu_s: f64,
    /// pps: what the sender sent per second.
    sent_per_s: f64,
}

/// UDP datagrams/s sent by one client thread and counted on the real server.
fn pps(lab: &Lab, target: &str, seconds: f64) -> Result<Rate> {
    let dst: SocketAddr = format!("{target}:{UDP_PORT}").parse()?;
    let c0 = udp_counter(lab.real())?;
    let h = lab
        .client()
        .enter_thread(move || -> std::io::Result<(u64, u64)> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            let cpu0 = thread_cpu_ns();
            s.connect(dst)?;
            let payload = [0u8; 18];
            let end = Instant::now() + Duration::from_secs_f64(seconds);
            let mut sent = 0u64;
            while Instant::now() < end {
                for _ in 0..64 {
                    if s.send(&payload).is_ok() {
                        sent += 1;
                    }
                }
            }
            Ok((sent, thread_cpu_ns() - cpu0))
        })?;
    let (sent, cpu_ns) = h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    sleep(Duration::from_millis(200))?;
    let c1 = udp_counter(lab.real())?;
    let arrived = (c1 - c0) as f64;
    Ok(Rate {
        per_s: arrived / seconds,
        per_cpu_s: arrived / (cpu_ns as f64 / 1e9),
        sent_per_s: sent as f64 / seconds,
    })
}

/// Connections/s accepted by the real server from `conns` client threads (a connect that
/// fails with ECONNRESET still completed its handshake: the server's RST raced the
/// client's poll), and the connects that failed otherwise.
fn cps(lab: &Lab, target: &str, seconds: f64, conns: usize) -> Result<(Rate, u64)> {
    let dst: SocketAddr = format!("{target}:{TCP_PORT}").parse()?;
    let a0 = lab.accepted.load(Ordering::Relaxed);
    let s0 = lab.server_cpu_ns();
    let h = lab.client().enter_thread(move || {
        let done = Arc::new(AtomicU64::new(0));
        let cpu = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let first_err = Arc::new(std::sync::Mutex::new(None::<String>));
        let end = Instant::now() + Duration::from_secs_f64(seconds);
        // Threads started here inherit the client's namespace.
        let threads: Vec<_> = (0..conns)
            .map(|_| {
                let (done, failed, first_err) = (done.clone(), failed.clone(), first_err.clone());
                let cpu = cpu.clone();
                std::thread::spawn(move || {
                    let cpu0 = thread_cpu_ns();
                    while Instant::now() < end {
                        match TcpStream::connect_timeout(&dst, Duration::from_secs(1)) {
                            Ok(c) => {
                                linger0(&c);
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                first_err.lock().unwrap().get_or_insert(e.to_string());
                            }
                        }
                    }
                    cpu.fetch_add(thread_cpu_ns() - cpu0, Ordering::Relaxed);
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        let e = first_err.lock().unwrap().take();
        (
            done.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            e,
            cpu.load(Ordering::Relaxed),
        )
    })?;
    let (done, failed, e, client_ns) = h.join().map_err(|_| anyhow::anyhow!("client panicked"))?;
    if let Some(e) = e {
        eprintln!("  {failed} connects to {target} failed, the first: {e}");
    }
    sleep(Duration::from_millis(200))?;
    let accepted = (lab.accepted.load(Ordering::Relaxed) - a0) as f64;
    let cpu_s = (client_ns + lab.server_cpu_ns() - s0) as f64 / 1e9;
    eprintln!("  {done} connects returned a connection, {accepted} accepted, {cpu_s:.2} CPU-s");
    Ok((
        Rate {
            per_s: accepted / seconds,
            per_cpu_s: accepted / cpu_s,
            sent_per_s: f64::NAN,
        },
        failed,
    ))
}

fn start_director(lab: &Lab, v: Variant, backend: &str, services: usize) -> Result<Option<Proc>> {
    match v {
        Variant::Forward => return Ok(None),
        Variant::ForwardCt => {
            lab.director().exec(&[
                "nft",
                "add table ip benchct; add chain ip benchct f { type filter hook forward priority 0; }; \
                 add rule ip benchct f ct state new counter",
            ])?;
            return Ok(None);
        }
        _ => {}
    }
    let kind = if v == Variant::Nat { "NAT" } else { "DR" };
    let d = start_impl(
        lab.director(),
        &lab.work,
        Impl::Vipd,
        &config(kind, services),
        backend,
    )?;
    // Ready when a connection to the VIP completes.
    let dst: SocketAddr = format!("{VIP}:{TCP_PORT}").parse()?;
    let probe = move || {
        TcpStream::connect_timeout(&dst, Duration::from_millis(200))
            .map(|c| linger0(&c))
            .is_ok()
    };
    let ok = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        lab.client()
            .enter_thread(probe)
            .ok()
            .and_then(|h| h.join().ok())
            .unwrap_or(false)
    });
    if !ok {
        bail!(
            "vipd ({kind}) never forwarded to the VIP:\n{}",
            d.log_tail(30)
        );
    }
    Ok(Some(d))
}

fn stop_director(d: Option<Proc>) {
    if let Some(mut d) = d {
        d.signal(nix::sys::signal::Signal::SIGTERM).ok();
        d.wait_timeout(Duration::from_secs(20));
    }
}

struct Run {
    variant: Variant,
    pps: Rate,
    cps: Rate,
    failed: u64,
}

fn median(v: Vec<f64>) -> f64 {
    super::stats::median_ms(v).unwrap_or(f64::NAN)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn run(a: DataplaneArgs) -> Result<ExitCode> {
    let lab = setup().context("building the bench topology")?;
    let load_before = loadavg();
    let mut runs: Vec<Run> = Vec::new();
    for r in 0..a.runs {
        for &v in &a.variants {
            check_interrupt()?;
            let d = start_director(&lab, v, &a.backend, a.services)?;
            let target = match v {
                Variant::Forward | Variant::ForwardCt => ROUTED,
                Variant::Nat | Variant::Dr => VIP,
            };
            let res = (|| -> Result<Run> {
                let pps = pps(&lab, target, a.seconds)?;
                let (cps, failed) = cps(&lab, target, a.seconds, a.conns)?;
                Ok(Run {
                    variant: v,
                    pps,
                    cps,
                    failed,
                })
            })();
            stop_director(d);
            if v == Variant::ForwardCt {
                lab.director().exec(&["nft", "delete table ip benchct"])?;
            }
            let run = res?;
            eprintln!(
                "run {r} {v}: {:.0} pps arrived ({:.0} sent, {:.0} per CPU-s), {:.0} conn/s ({:.0} per CPU-s, {} failed), load {}",
                run.pps.per_s,
                run.pps.sent_per_s,
                run.pps.per_cpu_s,
                run.cps.per_s,
                run.cps.per_cpu_s,
                run.failed,
                loadavg()
            );
            runs.push(run);
        }
    }
    let load_after = loadavg();
    // Per variant: medians of pps, pps per CPU-s, cps, cps per CPU-s.
    let summary: Vec<(Variant, [f64; 4])> = a
        .variants
        .iter()
        .map(|&v| {
            let of = |f: fn(&Run) -> f64| {
                median(runs.iter().filter(|r| r.variant == v).map(f).collect())
            };
            (
                v,
                [
                    of(|r| r.pps.per_s),
                    of(|r| r.pps.per_cpu_s),
                    of(|r| r.cps.per_s),
                    of(|r| r.cps.per_cpu_s),
                ],
            )
        })
        .collect();
    let base = summary
        .iter()
        .find(|s| s.0 == Variant::Forward)
        .map(|s| s.1);
    let ratio = |x: &[f64; 4], i: usize| base.map(|b| x[i] / b[i]);
    if a.json {
        let rows: Vec<_> = runs
            .iter()
            .map(|r| json!({"variant": r.variant.name(), "pps": r.pps.per_s, "sent_pps": r.pps.sent_per_s,
                "pps_per_cpu_s": r.pps.per_cpu_s, "cps": r.cps.per_s, "cps_per_cpu_s": r.cps.per_cpu_s,
                "failed_connects": r.failed}))
            .collect();
        let med: Vec<_> = summary
            .iter()
            .map(|(v, m)| {
                json!({"variant": v.name(), "pps": m[0], "pps_per_cpu_s": m[1], "cps": m[2],
                "cps_per_cpu_s": m[3], "pps_ratio": ratio(m, 0), "pps_per_cpu_ratio": ratio(m, 1),
                "cps_ratio": ratio(m, 2), "cps_per_cpu_ratio": ratio(m, 3)})
            })
            .collect();
        let out = json!({"machine": machine(), "seconds": a.seconds, "conns": a.conns,
            "backend": a.backend, "services": 2 + a.services, "loadavg_before": load_before, "loadavg_after": load_after,
            "runs": rows, "medians": med});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "medians of {} runs × {} s per load, variants interleaved; {} connecting threads; {} virtual servers; load average {} → {}\n",
        a.runs, a.seconds, a.conns, 2 + a.services, load_before, load_after
    );
    println!("| variant | UDP pps | × forward | UDP pkts per CPU-s | × forward | TCP conn/s | × forward | conns per CPU-s | × forward |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let fmt = |r: Option<f64>| r.map(|r| format!("{r:.2}")).unwrap_or_else(|| "—".into());
    for (v, m) in &summary {
        println!(
            "| {v} | {:.0} | {} | {:.0} | {} | {:.0} | {} | {:.0} | {} |",
            m[0],
            fmt(ratio(m, 0)),
            m[1],
            fmt(ratio(m, 1)),
            m[2],
            fmt(ratio(m, 2)),
            m[3],
            fmt(ratio(m, 3)),
        );
    }
    Ok(ExitCode::SUCCESS)
}

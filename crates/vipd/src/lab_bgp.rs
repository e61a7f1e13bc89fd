//! `vipd lab --bgp`: the routed lab (vipd_netns::routed, the one the BGP tests use).
//! Two vipd routers elect a master over their own link; each announces the VIP over
//! BGP through its own FRR to an upstream router, behind which a client on another
//! subnet pings the VIP. The master crashes (vipd and FRR killed), comes back and
//! preempts, then stops gracefully; a timeline shows the VRRP states, who holds the
//! VIP, where the upstream routes it, and the client's outage in each phase. `--ipv6`:
//! the same with the IPv6 examples. Everything is torn down at the end, also on Ctrl-C.

use anyhow::{bail, Context, Result};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_netns::routed::{
    self, uplink, uplink6, RoutedLab, RoutedOptions, BGP_CLIENT, BGP_CLIENT6, BGP_VIP, BGP_VIP6,
};
use vipd_netns::{Lan, LanOptions, ProbeOptions, ProbeReport, Prober, Proc, Signal, WorkDir};

use crate::lab::{ms, prober_offset, LabArgs};

/// The client's probe interval, and the gap that counts as an outage.
const PROBE: Duration = Duration::from_millis(1);
const OUTAGE: Duration = Duration::from_millis(5);

pub fn run(args: LabArgs, abort: Arc<AtomicBool>) -> Result<ExitCode> {
    if args.version != 3 {
        bail!("`vipd lab --bgp` runs VRRPv3 (the shipped BGP examples): drop --version");
    }
    if !routed::frr_installed() {
        bail!(
            "`vipd lab --bgp` needs FRR's zebra, bfdd, bgpd ({}) and vtysh: apt-get install frr",
            routed::ZEBRA
        );
    }
    let mut lab = BgpLab::new(args, abort.clone())?;
    let res = lab.script();
    lab.teardown();
    crate::lab::exit_code(res, &abort)
}

/// What the timeline narrates when it changes.
#[derive(PartialEq, Eq, Clone, Default)]
struct Seen {
    holders: Vec<usize>,
    route: Option<usize>,
}

/// Fields drop in order: the vipd routers, then FRR, then the namespaces.
struct BgpLab {
    daemons: [Option<Proc>; 2],
    net: Option<RoutedLab>,
    lan: Option<Lan>,
    dir: WorkDir,
    args: LabArgs,
    abort: Arc<AtomicBool>,
    t0: Instant,
    seen: Seen,
    vip: IpAddr,
}

impl BgpLab {
    fn new(args: LabArgs, abort: Arc<AtomicBool>) -> Result<BgpLab> {
        let t0 = Instant::now();
        let mut dir = WorkDir::new("lab-bgp")?;
        if args.keep {
            dir.keep();
        }
        let lan = Lan::new(2, LanOptions::default()).context("building the lab network")?;
        Ok(BgpLab {
            daemons: [None, None],
            net: None,
            lan: Some(lan),
            dir,
            abort,
            t0,
            seen: Seen::default(),
            vip: if args.ipv6 {
                IpAddr::V6(BGP_VIP6)
            } else {
                IpAddr::V4(BGP_VIP)
            },
            args,
        })
    }

    fn lan(&self) -> &Lan {
        self.lan.as_ref().expect("lan")
    }

    fn net(&self) -> &RoutedLab {
        self.net.as_ref().expect("routed lab")
    }

    fn say(&self, what: impl AsRef<str>) {
        println!(
            "{:>8.3}  {}",
            self.t0.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }

    fn check_abort(&self) -> Result<()> {
        if self.abort.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// packaging/examples/bgp-vipd.conf with this router's priority and the advert
    /// interval asked for.
    fn config(&self, priority: u8) -> String {
        let example = match self.args.ipv6 {
            false => routed::BGP_VIPD_CONF,
            true => routed::BGP_VIPD6_CONF,
        };
        example
            .replace("priority 200", &format!("priority {priority}"))
            .replace(
                "advert_int 0.1",
                &format!("advert_int {}", self.args.advert_ms as f64 / 1000.0),
            )
    }

    fn start_router(&mut self, i: usize, priority: u8) -> Result<()> {
        let conf = self.dir.join(format!("r{i}.conf"));
        std::fs::write(&conf, self.config(priority))?;
        let args = crate::lab::vipd_run_args(self.dir.path(), i, &conf)?;
        let p = self
            .lan()
            .router(i)
            .spawn(args, self.dir.join(format!("r{i}.log")))?;
        self.daemons[i - 1] = Some(p);
        self.say(format!("r{i}: vipd started, priority {priority}"));
        Ok(())
    }

    /// Watch who holds the VIP and where the upstream routes it until `done` says so
    /// (or `timeout`), narrating changes.
    fn watch(&mut self, timeout: Duration, done: impl Fn(&Seen) -> bool) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            self.check_abort()?;
            let now = Seen {
                holders: RoutedLab::holders(self.lan(), self.vip),
                route: self.net().upstream_router(self.vip),
            };
            if now.holders != self.seen.holders {
                let who = match now.holders.as_slice() {
                    [] => "no router".to_string(),
                    h => h
                        .iter()
                        .map(|i| format!("r{i}"))
                        .collect::<Vec<_>>()
                        .join(" and "),
                };
                self.say(format!("VIP {} is on lo of {who}", self.vip));
            }
            if now.route != self.seen.route {
                match now.route {
                    Some(i) => self.say(format!(
                        "upstream routes {} via r{i} ({}): BGP announcement",
                        self.vip,
                        self.uplink(i)
                    )),
                    None => self.say(format!(
                        "upstream has no route to {}: withdrawn (black hole)",
                        self.vip
                    )),
                }
            }
            self.seen = now;
            if done(&self.seen) {
                return Ok(());
            }
            if Instant::now() > end {
                let mut logs = String::new();
                for (i, p) in self.daemons.iter().enumerate() {
                    if let Some(p) = p {
                        logs.push_str(&format!("--- r{} vipd:\n{}\n", i + 1, p.log_tail(20)));
                    }
                }
                bail!(
                    "timed out waiting for the VIP's route to move (logs in {}, kept with --keep)\n{logs}{}",
                    self.dir.path().display(),
                    self.net().frr_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn pause(&mut self, d: Duration) -> Result<()> {
        match self.watch(d, |_| false) {
            Err(e) if e.to_string().starts_with("timed out") => Ok(()),
            r => r,
        }
    }

    /// Router `i`'s address on its link to the upstream.
    fn uplink(&self, i: usize) -> IpAddr {
        match self.args.ipv6 {
            false => uplink(i).0.into(),
            true => uplink6(i).0.into(),
        }
    }

    fn routed_to(i: usize) -> impl Fn(&Seen) -> bool {
        move |s| s.route == Some(i) && s.holders.contains(&i)
    }

    fn script(&mut self) -> Result<()> {
        let a = Duration::from_millis(self.args.advert_ms);
        let mdi = a * 3 + a * 156 / 256;
        let (family, len, client, files): (_, _, IpAddr, _) = match self.args.ipv6 {
            false => (
                "IPv4",
                32,
                BGP_CLIENT.into(),
                "bgp-vipd.conf and frr/frr-*.conf",
            ),
            true => (
                "IPv6",
                128,
                BGP_CLIENT6.into(),
                "bgp-vipd-ipv6.conf and frr/frr-*-ipv6.conf",
            ),
        };
        println!(
            "vipd lab --bgp: VRRPv3/{family} between r1 and r2 (adverts every {} ms, backup's \
             master-down interval {:.1} ms); the master's VIP {}/{len} is announced over \
             BGP (FRR, BFD 3 × 100 ms) to an upstream router",
            self.args.advert_ms,
            ms(mdi),
            self.vip
        );
        println!(
            "network: r1 {} and r2 {} on their own links to the upstream (AS 64500), their \
             VRRP link a switch; client {client} behind the upstream; namespaces {}-*",
            self.uplink(1),
            self.uplink(2),
            self.lan().prefix()
        );
        println!(
            "configs: packaging/examples/{files} (in {})\n",
            self.dir.path().display()
        );
        println!("{:>8}  event", "t (s)");
        self.say("lab network is up; starting FRR (zebra, bfdd, bgpd) on upstream, r1, r2");
        let opts = RoutedOptions {
            ipv6: self.args.ipv6,
            ..Default::default()
        };
        let net = RoutedLab::build(self.lan(), self.dir.path(), opts)?;
        self.net = Some(net);
        self.check_abort()?;
        self.say("BGP and BFD sessions up; the routers learnt the client's network");
        self.start_router(1, 200)?;
        self.start_router(2, 100)?;
        let patience = mdi * 3 + Duration::from_secs(10);
        self.watch(patience, Self::routed_to(1))?;
        self.pause(Duration::from_millis(500))?;

        let prober = Prober::start(&self.net().client, self.vip, ProbeOptions::every(PROBE))?;
        self.say(format!(
            "client starts pinging {} every {} ms, through the upstream",
            self.vip,
            PROBE.as_millis()
        ));
        self.pause(Duration::from_millis(500))?;

        let crash_at = prober_offset(&prober);
        self.say(">>> r1 crashes: vipd, zebra, bfdd and bgpd killed (kill -9), no goodbye");
        if let Some(p) = self.daemons[0].as_mut() {
            p.kill9();
        }
        self.daemons[0] = None;
        if let Some(net) = self.net.as_mut() {
            net.crash_frr(1);
        }
        self.watch(patience, Self::routed_to(2))?;
        self.pause(Duration::from_millis(500))?;

        self.say(">>> r1 reboots: its kernel forgets the VIP and routes; FRR, then vipd start");
        let r1 = self.lan().router(1);
        r1.ip(["addr", "del", &format!("{}/{len}", self.vip), "dev", "lo"])
            .ok();
        r1.ip(["route", "flush", "table", "100"]).ok();
        let (lan, net) = (self.lan.as_ref(), self.net.as_mut());
        if let (Some(lan), Some(net)) = (lan, net) {
            net.restart_frr(lan, 1)?;
        }
        self.check_abort()?;
        self.say("r1: BGP and BFD sessions up again");
        let back_at = prober_offset(&prober);
        self.start_router(1, 200)?;
        self.say(
            "r1 has the higher priority: it preempts; r2 yields with `@vipd release_drain 300` \
             (keeps answering while the routes move)",
        );
        self.watch(patience, |s| s.route == Some(1) && s.holders == [1])?;
        self.pause(Duration::from_millis(1000))?;

        let term_at = prober_offset(&prober);
        self.say(">>> SIGTERM to r1's vipd (graceful: priority 0, then release_drain 300 ms)");
        if let Some(p) = self.daemons[0].as_mut() {
            p.signal(Signal::SIGTERM)?;
        }
        self.watch(patience, |s| s.route == Some(2) && s.holders == [2])?;
        self.pause(Duration::from_millis(1000))?;
        let report = prober.stop();

        println!(
            "\nclient's view ({} probes sent, {} answered):",
            report.sent, report.received
        );
        let phases = [
            (
                "crash failover",
                crash_at,
                back_at,
                format!(
                    "bounded by detection (BFD 300 ms at the upstream, VRRP {:.0} ms at r2) + BGP update",
                    ms(mdi)
                ),
            ),
            (
                "preempt back",
                back_at,
                term_at,
                "release_drain: none expected".to_string(),
            ),
            (
                "graceful handover",
                term_at,
                Duration::MAX,
                "release_drain: none expected".to_string(),
            ),
        ];
        for (what, from, to, note) in phases {
            let (worst, lost) = phase_outage(&report, from, to);
            // A gap without a lost probe is the prober (or the host) stalling.
            match worst {
                Some(l) if lost > 0 => println!(
                    "  {what:<18} client outage {:>7.1} ms, {lost} probes lost   ({note})",
                    ms(l)
                ),
                Some(l) => println!(
                    "  {what:<18} client outage    none, {lost} probes lost   (a {:.1} ms gap \
                     between replies but no probe lost: the host stalled; {note})",
                    ms(l)
                ),
                None => println!(
                    "  {what:<18} client outage    none, {lost} probes lost   (no gap > {} ms; \
                     {note})",
                    OUTAGE.as_millis()
                ),
            }
        }
        println!(
            "\nlogs: vipd {}, FRR {} (kept: {})",
            self.dir.join("r1.log").display(),
            self.dir.join("frr-r1").display(),
            self.args.keep
        );
        Ok(())
    }

    fn teardown(&mut self) {
        for p in self.daemons.iter_mut().flatten() {
            let _ = p.signal(Signal::SIGTERM);
            let _ = p.wait_timeout(Duration::from_secs(3));
        }
        self.daemons = [None, None];
        self.net = None; // stops FRR
        self.lan = None; // deletes every namespace
        println!("lab torn down: namespaces deleted");
    }
}

/// The largest gap between replies (over [`OUTAGE`]) that began in [from, to) (offsets
/// from the prober's start), and the requests sent then that got no reply.
fn phase_outage(r: &ProbeReport, from: Duration, to: Duration) -> (Option<Duration>, usize) {
    let worst = r
        .outages(OUTAGE)
        .iter()
        .filter(|(s, _)| *s >= from && *s < to)
        .map(|(_, l)| *l)
        .max();
    // A lost request went out after the answered one before it.
    let mut answered: Vec<(u64, Duration)> = r
        .replies
        .iter()
        .map(|x| (x.seq, x.sent_at.saturating_duration_since(r.start)))
        .collect();
    answered.sort_unstable();
    let lost = r
        .lost()
        .iter()
        .map(|&seq| {
            let k = answered.partition_point(|(s, _)| *s < seq);
            k.checked_sub(1).map(|k| answered[k].1).unwrap_or_default()
        })
        .filter(|at| *at >= from && *at < to)
        .count();
    (worst, lost)
}

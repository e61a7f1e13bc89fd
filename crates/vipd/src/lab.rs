//! `vipd lab`: the first thing a newcomer runs. Builds a switch, two routers and a
//! client in network namespaces, runs two vipd routers, fails the master twice (a
//! cable pull, then a graceful SIGTERM) and prints a timeline with the client's outage
//! as measured by 1 ms probes. Everything is torn down at the end, also on Ctrl-C.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_netns::{
    has_address, Lan, LanOptions, ProbeOptions, Prober, Proc, Signal, WorkDir, VIP_V4, VIP_V6,
};

#[derive(Args, Debug)]
pub struct LabArgs {
    /// Advertisement interval in milliseconds (VRRPv3 allows 10 ms steps).
    #[arg(long, default_value_t = 100)]
    pub advert_ms: u64,
    /// Use IPv6 (VRRPv3, VIP 2001:db8::100) instead of IPv4.
    #[arg(long)]
    pub ipv6: bool,
    /// VRRP version for IPv4 (2 needs whole-second adverts).
    #[arg(long, default_value_t = 3)]
    pub version: u8,
    /// Keep the work directory (configs and daemon logs) for a look afterwards.
    #[arg(long)]
    pub keep: bool,
    /// The routed lab instead: VIP announced over BGP by FRR on each router to an
    /// upstream router, client on another subnet (needs FRR: apt-get install frr).
    #[arg(long)]
    pub bgp: bool,
}

pub fn run(args: LabArgs) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`vipd lab` builds network namespaces and needs root (try: sudo vipd lab)");
    }
    if args.version == 2 && (args.ipv6 || !args.advert_ms.is_multiple_of(1000)) {
        bail!("VRRPv2 is IPv4 only and advertises whole seconds: use --advert-ms 1000 (or more) with --version 2");
    }
    let abort = ctrl_c_flag();
    if args.bgp {
        return crate::lab_bgp::run(args, abort);
    }
    let mut lab = Lab::new(args, abort.clone())?;
    let res = lab.script();
    lab.teardown();
    exit_code(res, &abort)
}

/// A lab's outcome: an error after Ctrl-C is the interruption (exit 130), not a failure.
pub(crate) fn exit_code(res: Result<()>, abort: &AtomicBool) -> Result<ExitCode> {
    match res {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(_) if abort.load(Ordering::SeqCst) => Ok(ExitCode::from(130)),
        Err(e) => Err(e),
    }
}

/// `vipd run` for lab router `i` with config `conf`, its socket and pid file in `dir`.
pub(crate) fn vipd_run_args(
    dir: &std::path::Path,
    i: usize,
    conf: &std::path::Path,
) -> Result<Vec<String>> {
    let exe = std::env::current_exe()?;
    Ok(vec![
        exe.display().to_string(),
        "run".into(),
        "-f".into(),
        conf.display().to_string(),
        "--control-socket".into(),
        dir.join(format!("r{i}.sock")).display().to_string(),
        "--pid-file".into(),
        dir.join(format!("r{i}.pid")).display().to_string(),
    ])
}

/// A flag that Ctrl-C (SIGINT) sets: the labs check it while they wait and tear down.
pub(crate) fn ctrl_c_flag() -> Arc<AtomicBool> {
    let abort = Arc::new(AtomicBool::new(false));
    {
        let abort = abort.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let _ = tokio::signal::ctrl_c().await;
                });
                abort.store(true, Ordering::SeqCst);
                eprintln!("\n^C: tearing the lab down…");
            }
        });
    }
    abort
}

struct Lab {
    args: LabArgs,
    abort: Arc<AtomicBool>,
    t0: Instant,
    lan: Option<Lan>,
    dir: WorkDir,
    daemons: [Option<Proc>; 2],
    holders: Vec<usize>,
    vip: IpAddr,
}

impl Lab {
    fn new(args: LabArgs, abort: Arc<AtomicBool>) -> Result<Lab> {
        let t0 = Instant::now();
        let lan = Lan::new(2, LanOptions::default()).context("building the lab network")?;
        let mut dir = WorkDir::new("lab")?;
        if args.keep {
            dir.keep();
        }
        let vip = if args.ipv6 {
            IpAddr::V6(VIP_V6)
        } else {
            IpAddr::V4(VIP_V4)
        };
        Ok(Lab {
            args,
            abort,
            t0,
            lan: Some(lan),
            dir,
            daemons: [None, None],
            holders: Vec::new(),
            vip,
        })
    }

    fn lan(&self) -> &Lan {
        self.lan.as_ref().expect("lan")
    }

    fn say(&self, what: impl AsRef<str>) {
        println!(
            "{:>8.3}  {}",
            self.t0.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }

    fn advert(&self) -> Duration {
        Duration::from_millis(self.args.advert_ms)
    }

    /// Master_Down_Interval of the backup (priority 100) and its Skew_Time.
    fn limits(&self) -> (Duration, Duration) {
        let a = self.advert();
        let skew = if self.args.version == 2 && !self.args.ipv6 {
            Duration::from_micros(156 * 1_000_000 / 256)
        } else {
            a * 156 / 256
        };
        (a * 3 + skew, skew)
    }

    fn config(&self, priority: u8) -> String {
        let vip = if self.args.ipv6 {
            format!("{VIP_V6}/64")
        } else {
            format!("{VIP_V4}/24")
        };
        let version = if self.args.ipv6 { 3 } else { self.args.version };
        format!(
            "# written by `vipd lab`\nglobal_defs {{\n    router_id lab\n}}\n\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    \
             virtual_router_id 51\n    priority {priority}\n    advert_int {}\n    version {version}\n    \
             virtual_ipaddress {{\n        {vip}\n    }}\n}}\n",
            self.args.advert_ms as f64 / 1000.0
        )
    }

    fn start_router(&mut self, i: usize, priority: u8) -> Result<()> {
        let conf = self.dir.join(format!("r{i}.conf"));
        std::fs::write(&conf, self.config(priority))?;
        let args = vipd_run_args(self.dir.path(), i, &conf)?;
        let p = self
            .lan()
            .router(i)
            .spawn(args, self.dir.join(format!("r{i}.log")))?;
        self.daemons[i - 1] = Some(p);
        self.say(format!("r{i}: vipd started, priority {priority}"));
        Ok(())
    }

    /// Watch who holds the VIP until `done` says so (or `timeout`), narrating changes.
    fn watch(&mut self, timeout: Duration, done: impl Fn(&[usize]) -> bool) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            if self.abort.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            let now: Vec<usize> = (1..=2)
                .filter(|&i| has_address(self.lan().router(i), "eth0", self.vip))
                .collect();
            if now != self.holders {
                let who = if now.is_empty() {
                    "nobody".to_string()
                } else {
                    now.iter()
                        .map(|i| format!("r{i}"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                };
                self.say(format!("VIP {} is now on {who}", self.vip));
                self.holders = now;
            }
            if done(&self.holders) {
                return Ok(());
            }
            if Instant::now() > end {
                bail!(
                    "timed out waiting for the VIP to move (logs in {})",
                    self.dir.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn pause(&mut self, d: Duration) -> Result<()> {
        let holders = self.holders.clone();
        let r = self.watch(d, |_| false);
        match r {
            Err(e) if e.to_string().starts_with("timed out") => Ok(()),
            Err(e) => Err(e),
            Ok(()) => {
                let _ = holders;
                Ok(())
            }
        }
    }

    fn script(&mut self) -> Result<()> {
        let (mdi, skew) = self.limits();
        let v = if self.args.ipv6 {
            "VRRPv3/IPv6"
        } else if self.args.version == 2 {
            "VRRPv2/IPv4"
        } else {
            "VRRPv3/IPv4"
        };
        println!("vipd lab: {v}, adverts every {} ms; backup's master-down interval {:.1} ms, skew {:.1} ms",
            self.args.advert_ms, ms(mdi), ms(skew));
        println!("network: switch (bridge) + r1 192.0.2.11 + r2 192.0.2.12 + client 192.0.2.50, namespaces {}-*\n", self.lan().prefix());
        println!("{:>8}  event", "t (s)");
        self.say("lab network is up");
        self.start_router(1, 200)?;
        self.start_router(2, 100)?;
        let patience = mdi * 3 + Duration::from_secs(5);
        self.watch(patience, |h| h == [1])?;
        self.pause(Duration::from_millis(500))?;

        let prober = Prober::start(
            self.lan().client(),
            self.vip,
            ProbeOptions::every(Duration::from_millis(1)),
        )?;
        self.say(format!("client starts pinging {} every 1 ms", self.vip));
        self.pause(Duration::from_millis(500))?;

        let crash_at = prober_offset(&prober);
        self.say(">>> r1's switch port goes down (crash: no goodbye)");
        self.lan().set_port(1, false)?;
        self.watch(patience, |h| h.contains(&2))?;
        self.pause(Duration::from_millis(500))?;
        let back_at = prober_offset(&prober);
        self.say(">>> r1's switch port comes back (r1 has the higher priority: it preempts)");
        self.lan().set_port(1, true)?;
        self.watch(patience, |h| h == [1])?;
        // Long enough for the 1.1 s follow-up GARP that beats the client's ARP locktime.
        self.pause(Duration::from_millis(1500))?;

        let term_at = prober_offset(&prober);
        self.say(
            ">>> SIGTERM to r1's vipd (graceful: priority-0 advert, backup waits only Skew_Time)",
        );
        if let Some(p) = self.daemons[0].as_mut() {
            p.signal(Signal::SIGTERM)?;
        }
        self.watch(patience, |h| h == [2])?;
        self.pause(Duration::from_millis(500))?;
        let report = prober.stop();

        println!(
            "\nclient's view ({} probes sent, {} answered):",
            report.sent, report.received
        );
        let outages = report.outages(Duration::from_millis(3));
        let phases = [
            (
                "crash failover",
                crash_at,
                back_at,
                format!("RFC limit 3×advert+skew = {:.1} ms", ms(mdi)),
            ),
            (
                "preempt back",
                back_at,
                term_at,
                "vipd re-announces at once: none expected".to_string(),
            ),
            (
                "graceful handover",
                term_at,
                Duration::MAX,
                format!(
                    "RFC: Skew_Time = {:.1} ms; vipd holds the VIP until the backup has it",
                    ms(skew)
                ),
            ),
        ];
        for (what, from, to, note) in phases {
            let worst = outages
                .iter()
                .filter(|(s, _)| *s >= from && *s < to)
                .map(|(_, l)| *l)
                .max();
            match worst {
                Some(l) => println!("  {what:<18} client outage {:>7.1} ms   ({note})", ms(l)),
                None => println!(
                    "  {what:<18} client outage    none   (no probe unanswered > 3 ms; {note})"
                ),
            }
        }
        let r1_log = self.dir.join("r1.log");
        println!(
            "\ndaemon logs: {} (kept: {})",
            r1_log.display(),
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
        self.lan = None; // deletes every namespace
        println!("lab torn down: namespaces deleted");
    }
}

pub(crate) fn prober_offset(p: &Prober) -> Duration {
    p.started_at().elapsed()
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

//! A master/backup pair (r1 priority 200, r2 priority 100) of one implementation in
//! its own [`Lan`], started from the same keepalived.conf text; `vipd bench soak`
//! also uses it for a three-router cluster ([`Pair::with_routers`]).

use super::{sleep, wait_for, Impl};
use anyhow::{bail, Context, Result};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vipd_netns::{
    has_address, Capture, Keepalived, Lan, LanOptions, Proc, Version, WorkDir, VIP_V4,
};

pub const MASTER_PRIORITY: u8 = 200;
pub const BACKUP_PRIORITY: u8 = 100;
pub const VRID: u8 = 51;

/// The config both implementations read. GARP settings are left at their
/// defaults on purpose (both send the first round at once on taking over).
pub fn config(router: usize, priority: u8, advert_ms: u32) -> String {
    let advert = format!("{:.2}", f64::from(advert_ms) / 1000.0);
    format!(
        "global_defs {{\n    router_id bench_r{router}\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id {VRID}\n    \
         priority {priority}\n    advert_int {advert}\n    version 3\n    \
         virtual_ipaddress {{\n        {VIP_V4}/24\n    }}\n}}\n"
    )
}

pub struct Daemon {
    pub proc: Proc,
    socket: Option<PathBuf>,
}

impl Daemon {
    /// A daemon without a control socket (keepalived).
    pub fn from_proc(proc: Proc) -> Daemon {
        Daemon { proc, socket: None }
    }

    /// vipd's status of its (only) instance.
    pub fn instance(&self) -> Option<serde_json::Value> {
        let socket = self.socket.as_ref()?;
        let v = vipd_linux::control::query_status(socket).ok()?;
        Some(v["instances"][0].clone())
    }

    /// vipd's whole status (`None` for keepalived or when the socket does not answer).
    pub fn status(&self) -> Option<serde_json::Value> {
        vipd_linux::control::query_status(self.socket.as_ref()?).ok()
    }

    pub fn state(&self) -> Option<String> {
        self.instance()
            .and_then(|i| i["state"].as_str().map(str::to_string))
    }
}

pub struct Pair {
    pub imp: Impl,
    /// Which keepalived runs when `imp` is [`Impl::Keepalived`] (default 2.2.7).
    pub keepalived: Version,
    // Daemons before the LAN: dropped (SIGKILLed) first.
    pub daemons: Vec<Option<Daemon>>,
    pub lan: Lan,
    pub dir: WorkDir,
}

impl Pair {
    /// Builds a fresh LAN, starts r1 (master) and then r2 (backup), and waits until
    /// r1 has held the VIP and r2 has been a quiet backup for `stable`.
    pub fn start(imp: Impl, advert_ms: u32, stable: Duration, tag: &str) -> Result<Pair> {
        let mut pair = Pair::new(imp, tag)?;
        let texts = [
            config(1, MASTER_PRIORITY, advert_ms),
            config(2, BACKUP_PRIORITY, advert_ms),
        ];
        pair.start_daemons(texts, &[], Duration::from_secs(10), stable)?;
        Ok(pair)
    }

    /// A fresh LAN and work directory, no daemons yet.
    pub fn new(imp: Impl, tag: &str) -> Result<Pair> {
        Pair::with_routers(imp, 2, tag)
    }

    /// A fresh LAN of `n` routers and a work directory, no daemons yet.
    pub fn with_routers(imp: Impl, n: usize, tag: &str) -> Result<Pair> {
        let lan = Lan::new(n, LanOptions::default()).context("building the LAN")?;
        let mut dir = WorkDir::new(tag)?;
        if std::env::var_os("VIPD_BENCH_KEEP").is_some() {
            dir.keep();
        }
        Ok(Pair {
            imp,
            keepalived: Version::V2_2_7,
            daemons: (0..n).map(|_| None).collect(),
            lan,
            dir,
        })
    }

    /// Starts r1 (the master-to-be) and then r2 from the config `texts` (vipd
    /// with `vipd_args` added), each waited for up to `settle`, and checks that
    /// r1 alone holds the VIP for `stable`.
    pub fn start_daemons(
        &mut self,
        texts: [String; 2],
        vipd_args: &[&str],
        settle: Duration,
        stable: Duration,
    ) -> Result<()> {
        let [t1, t2] = texts;
        self.start_daemon(1, &t1, vipd_args)?;
        if !wait_for(settle, Duration::from_millis(10), || self.holds(1)) {
            super::check_interrupt()?;
            bail!("r1 did not take the VIP\n{}", self.logs());
        }
        self.start_daemon(2, &t2, vipd_args)?;
        if !wait_for(settle, Duration::from_millis(10), || self.is_backup(2)) {
            super::check_interrupt()?;
            bail!("r2 did not settle as backup\n{}", self.logs());
        }
        // Stable: r1 alone holds the VIP for `stable`.
        let end = Instant::now() + stable;
        while Instant::now() < end {
            super::check_interrupt()?;
            if self.holders() != [1] {
                bail!(
                    "setup not stable: VIP held by {:?}\n{}",
                    self.holders(),
                    self.logs()
                );
            }
            sleep(Duration::from_millis(50))?;
        }
        if self.imp == Impl::Vipd {
            let (s1, s2) = (self.state(1), self.state(2));
            if s1.as_deref() != Some("MASTER") || s2.as_deref() != Some("BACKUP") {
                bail!("setup: r1 {s1:?}, r2 {s2:?}\n{}", self.logs());
            }
        }
        Ok(())
    }

    /// Starts router `i`'s daemon from `text` (replacing a stopped one) and, for
    /// vipd, waits until its control socket answers.
    pub fn start_daemon(&mut self, i: usize, text: &str, vipd_args: &[&str]) -> Result<()> {
        let ns = self.lan.router(i);
        let d = match self.imp {
            Impl::Vipd => {
                let conf = self.dir.join(format!("r{i}.conf"));
                std::fs::write(&conf, text)?;
                let socket = self.dir.join(format!("r{i}.sock"));
                let mut args: Vec<std::ffi::OsString> = vec![
                    std::env::current_exe()?.into(),
                    "run".into(),
                    "-f".into(),
                    conf.into(),
                    "--control-socket".into(),
                    socket.clone().into(),
                    "--pid-file".into(),
                    self.dir.join(format!("r{i}.pid")).into(),
                ];
                args.extend(vipd_args.iter().map(Into::into));
                let proc = ns.spawn(&args, self.dir.join(format!("r{i}.log")))?;
                let d = Daemon {
                    proc,
                    socket: Some(socket),
                };
                if !wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
                    d.instance().is_some()
                }) {
                    super::check_interrupt()?;
                    bail!("vipd on r{i} did not start\n{}", d.proc.log_tail(20));
                }
                d
            }
            Impl::Keepalived => {
                let proc = Keepalived::new().version(self.keepalived).start(
                    ns,
                    text,
                    &self.dir.join(format!("ka{i}")),
                )?;
                Daemon { proc, socket: None }
            }
        };
        self.daemons[i - 1] = Some(d);
        Ok(())
    }

    pub fn daemon_mut(&mut self, i: usize) -> &mut Daemon {
        self.daemons[i - 1].as_mut().expect("daemon running")
    }

    pub fn state(&self, i: usize) -> Option<String> {
        self.daemons[i - 1].as_ref().and_then(Daemon::state)
    }

    /// vipd's status of router `i`'s instance.
    pub fn instance(&self, i: usize) -> Option<serde_json::Value> {
        self.daemons[i - 1].as_ref().and_then(Daemon::instance)
    }

    pub fn is_backup(&self, i: usize) -> bool {
        match self.imp {
            Impl::Vipd => self.state(i).as_deref() == Some("BACKUP"),
            Impl::Keepalived => self.daemons[i - 1]
                .as_ref()
                .is_some_and(|d| d.proc.log().contains("Entering BACKUP STATE")),
        }
    }

    pub fn holds(&self, i: usize) -> bool {
        has_address(self.lan.router(i), "eth0", IpAddr::V4(VIP_V4))
    }

    pub fn holders(&self) -> Vec<usize> {
        (1..=self.lan.n_routers())
            .filter(|&i| self.holds(i))
            .collect()
    }

    pub fn logs(&self) -> String {
        self.daemons
            .iter()
            .enumerate()
            .map(|(n, d)| match d {
                Some(d) => format!("--- r{}:\n{}\n", n + 1, d.proc.log_tail(15)),
                None => format!("--- r{}: not running\n", n + 1),
            })
            .collect()
    }

    /// Router `i`'s IPv4 address as an `IpAddr`.
    pub fn addr(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.lan.router_addr_v4(i))
    }
}

/// Starts a capture on `iface` in `ns` whose receive thread runs SCHED_FIFO, so
/// its timestamps stay honest while the CPUs are saturated. The thread that
/// starts it is a throw-away one: nothing else inherits the policy.
pub fn rt_capture(ns: &vipd_netns::Netns, iface: &str) -> Result<(Capture, bool)> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let param = libc::sched_param { sched_priority: 10 };
            // SAFETY: sets the policy of the calling thread only.
            let rt = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
            Capture::start(ns, iface).map(|c| (c, rt))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("capture starter panicked"))?
    })
}

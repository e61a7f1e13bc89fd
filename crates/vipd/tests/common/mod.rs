//! Harness for vipd's network-namespace integration tests: a switched LAN of routers,
//! each running either vipd or keepalived, and questions about who holds the VIP.

#![allow(dead_code)]

pub mod traffic;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vipd_netns::{
    has_address, Keepalived, Lan, LanOptions, Proc, Signal, Version, WorkDir, VIP_V4, VIP_V6,
};

pub const VIPD: &str = env!("CARGO_BIN_EXE_vipd");

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether every tool a test needs is installed. A missing one fails the test under CI
/// (`.ci/run` must install `packages`) and skips it, said on stderr, elsewhere.
pub fn tools_or_skip(tools: &[&str], packages: &str) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install {missing:?} (packages {packages})"
    );
    eprintln!("skipped: {missing:?} not installed");
    false
}

/// A second interface on `ns`: `ext0`, whose frames are seen on its veth peer `ext1`.
pub fn add_ext_veth(ns: &vipd_netns::Netns) {
    ns.ip([
        "link", "add", "ext0", "type", "veth", "peer", "name", "ext1",
    ])
    .unwrap();
    ns.ip(["link", "set", "ext0", "up"]).unwrap();
    ns.ip(["link", "set", "ext1", "up"]).unwrap();
}

/// What the instance under test looks like; renders a keepalived.conf both
/// implementations read.
#[derive(Clone, Debug)]
pub struct Spec {
    pub version: u8,
    pub v6: bool,
    pub advert_int: &'static str,
    /// Extra lines inside `vrrp_instance`.
    pub extra: String,
}

impl Spec {
    pub fn v2() -> Spec {
        Spec {
            version: 2,
            v6: false,
            advert_int: "1",
            extra: String::new(),
        }
    }
    pub fn v3() -> Spec {
        Spec {
            version: 3,
            v6: false,
            advert_int: "0.1",
            extra: String::new(),
        }
    }
    pub fn v3_ipv6() -> Spec {
        Spec {
            version: 3,
            v6: true,
            advert_int: "0.1",
            extra: String::new(),
        }
    }
    pub fn with(mut self, line: &str) -> Spec {
        self.extra.push_str("    ");
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }
    pub fn vip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(VIP_V6)
        } else {
            IpAddr::V4(VIP_V4)
        }
    }
    /// Master_Down_Interval upper bound (priority ≥ 1) plus slack for a loaded host.
    pub fn takeover_timeout(&self) -> Duration {
        let adv: f64 = self.advert_int.parse().unwrap();
        Duration::from_secs_f64(4.0 * adv + 2.0)
    }
    pub fn config(&self, priority: u8) -> String {
        let vip = if self.v6 {
            format!("{VIP_V6}/64")
        } else {
            format!("{VIP_V4}/24")
        };
        format!(
            "global_defs {{\n    router_id test\n    vrrp_garp_master_delay 0\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
             priority {priority}\n    advert_int {}\n    version {}\n{}    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n",
            self.advert_int, self.version, self.extra
        )
    }
}

pub enum Daemon {
    Vipd { proc: Proc, socket: PathBuf },
    Keepalived { proc: Proc },
}

pub struct Cluster {
    pub lan: Lan,
    pub dir: WorkDir,
    pub daemons: Vec<Option<Daemon>>,
    /// Environment variables vipd is started with (`NAME=VALUE`, through env(1)).
    pub vipd_env: Vec<String>,
}

impl Cluster {
    /// `None` (and a "skipped" line) when not root.
    pub fn new(routers: usize, tag: &str) -> Option<Cluster> {
        if vipd_netns::skip_unless_root() {
            return None;
        }
        let lan = Lan::new(routers, LanOptions::default()).expect("building the LAN");
        let dir = WorkDir::new(tag).expect("work dir");
        Some(Cluster {
            lan,
            dir,
            daemons: (0..routers).map(|_| None).collect(),
            vipd_env: Vec::new(),
        })
    }

    pub fn start_vipd(&mut self, i: usize, config: &str) {
        self.start_vipd_with(i, config, &[]);
    }

    /// The config file router `i` runs (rewrite it, then reload).
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("r{i}.conf"))
    }

    pub fn socket_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("r{i}.sock"))
    }

    pub fn pid(&mut self, i: usize) -> i32 {
        self.proc_mut(i).pid()
    }

    pub fn signal(&mut self, i: usize, sig: Signal) {
        self.proc_mut(i).signal(sig).unwrap();
    }

    pub fn start_vipd_with(&mut self, i: usize, config: &str, extra: &[&str]) {
        let conf = self.dir.join(format!("r{i}.conf"));
        std::fs::write(&conf, config).unwrap();
        let socket = self.dir.join(format!("r{i}.sock"));
        let pid = self.dir.join(format!("r{i}.pid"));
        let log = self.dir.join(format!("r{i}.log"));
        let args: Vec<String> = vec![
            VIPD.into(),
            "run".into(),
            "-f".into(),
            conf.display().to_string(),
            "--control-socket".into(),
            socket.display().to_string(),
            "--pid-file".into(),
            pid.display().to_string(),
        ];
        let env = match self.vipd_env.is_empty() {
            true => Vec::new(),
            false => std::iter::once("env".to_string())
                .chain(self.vipd_env.iter().cloned())
                .collect(),
        };
        let args: Vec<String> = env
            .into_iter()
            .chain(args)
            .chain(extra.iter().map(|a| a.to_string()))
            .collect();
        let proc = self
            .lan
            .router(i)
            .spawn(&args, &log)
            .expect("spawning vipd");
        self.daemons[i - 1] = Some(Daemon::Vipd {
            proc,
            socket: socket.clone(),
        });
        // Ready when the control socket answers.
        let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            self.status(i).is_some()
        });
        assert!(ok, "vipd r{i} did not start:\n{}", self.log(i));
    }

    /// Debian's keepalived 2.2.7 on router `i`.
    pub fn start_keepalived(&mut self, i: usize, config: &str) {
        self.start_keepalived_version(i, config, Version::V2_2_7);
    }

    pub fn start_keepalived_version(&mut self, i: usize, config: &str, version: Version) {
        let wd = self.dir.join(format!("ka{i}"));
        let proc = Keepalived::new()
            .version(version)
            .start(self.lan.router(i), config, &wd)
            .expect("starting keepalived");
        self.daemons[i - 1] = Some(Daemon::Keepalived { proc });
    }

    fn proc_mut(&mut self, i: usize) -> &mut Proc {
        match self.daemons[i - 1].as_mut().expect("no daemon") {
            Daemon::Vipd { proc, .. } | Daemon::Keepalived { proc } => proc,
        }
    }

    /// Graceful stop; returns the exit status.
    pub fn stop(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let p = self.proc_mut(i);
        p.signal(Signal::SIGTERM).unwrap();
        let st = p.wait_timeout(Duration::from_secs(10));
        self.daemons[i - 1] = None;
        st
    }

    /// kill -9: no priority 0, nothing cleaned up.
    pub fn crash(&mut self, i: usize) {
        self.proc_mut(i).kill9();
        self.daemons[i - 1] = None;
    }

    pub fn log(&self, i: usize) -> String {
        match &self.daemons[i - 1] {
            Some(Daemon::Vipd { proc, .. }) | Some(Daemon::Keepalived { proc }) => {
                proc.log_tail(40)
            }
            None => String::from("(not running)"),
        }
    }

    pub fn logs(&self) -> String {
        (1..=self.daemons.len())
            .map(|i| format!("--- r{i}:\n{}\n", self.log(i)))
            .collect()
    }

    /// vipd's status JSON of router `i`, if it runs vipd and answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let Some(Daemon::Vipd { socket, .. }) = &self.daemons[i - 1] else {
            return None;
        };
        let out = std::process::Command::new(VIPD)
            .args(["status", "--json", "--control-socket"])
            .arg(socket)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn instance(&self, i: usize) -> serde_json::Value {
        self.status(i).expect("status")["instances"][0].clone()
    }

    pub fn drops(&self, i: usize, reason: &str) -> u64 {
        let inst = self.instance(i);
        inst["drops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d[0] == reason)
            .map(|d| d[1].as_u64().unwrap())
            .unwrap_or(0)
    }

    /// Routers (1-based) that have `vip` on eth0 right now.
    pub fn holders(&self, vip: IpAddr) -> Vec<usize> {
        (1..=self.daemons.len())
            .filter(|&i| has_address(self.lan.router(i), "eth0", vip))
            .collect()
    }

    /// Wait until exactly `want` hold the VIP.
    pub fn wait_holders(&self, vip: IpAddr, want: &[usize], timeout: Duration) {
        let start = Instant::now();
        let ok = vipd_netns::wait_for(timeout, Duration::from_millis(10), || {
            self.holders(vip) == want
        });
        assert!(
            ok,
            "after {:?} VIP {vip} is held by {:?}, wanted {want:?}\n{}",
            start.elapsed(),
            self.holders(vip),
            self.logs()
        );
    }

    /// Rewrites router `i`'s config with `conf` and runs `vipd reload`: (success, what
    /// it printed).
    pub fn reload(&self, i: usize, conf: &str) -> (bool, String) {
        std::fs::write(self.config_path(i), conf).unwrap();
        let o = std::process::Command::new(VIPD)
            .args(["reload", "--control-socket"])
            .arg(self.socket_path(i))
            .output()
            .unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// Assert the holders stay `want` for `d`.
    pub fn assert_stable(&self, vip: IpAddr, want: &[usize], d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            let h = self.holders(vip);
            assert_eq!(h, want, "VIP {vip} holders changed\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Send `payload` as a VRRP packet from `src` (spoofed) to 224.0.0.18 with TTL 255,
/// from inside the current namespace's eth0.
pub fn inject(src: std::net::Ipv4Addr, payload: &[u8]) {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
    s.set_header_included_v4(true).unwrap();
    s.bind_device(Some(b"eth0")).unwrap();
    let dst = std::net::Ipv4Addr::new(224, 0, 0, 18);
    let mut p = vec![0x45, 0xc0];
    p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0, 0, 255, 112, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    s.send_to(&p, &SockAddr::from(std::net::SocketAddrV4::new(dst, 0)))
        .unwrap();
}

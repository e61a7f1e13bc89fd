//! The routed (BGP) lab around a [`Lan`]'s routers: an upstream router and a client on
//! another subnet, each vipd router with its own FRR (zebra + bfdd + bgpd) peering eBGP
//! with the upstream's FRR over its own point-to-point link. Used by `vipd lab --bgp`
//! and by vipd's BGP tests (crates/vipd/tests/bgp.rs), with the FRR and vipd configs
//! shipped under packaging/examples, compiled in as they are.
//!
//! ```text
//!   client 203.0.113.2 ── upstream (AS 64500) ──198.51.100.0/31── r1 (AS 64501) ┐ VRRP
//!                                             ──198.51.100.2/31── r2 (AS 64501) ┘ (the Lan)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{has_address, wait_for, Lan, Netns, Proc, Signal};

/// FRR's daemons and shell, as Debian's `frr` package installs them.
pub const ZEBRA: &str = "/usr/lib/frr/zebra";
/// See [`ZEBRA`].
pub const BGPD: &str = "/usr/lib/frr/bgpd";
/// See [`ZEBRA`].
pub const BFDD: &str = "/usr/lib/frr/bfdd";
/// See [`ZEBRA`].
pub const VTYSH: &str = "/usr/bin/vtysh";

/// packaging/examples/frr/frr-vipd.conf: r1's FRR config.
pub const FRR_VIPD_CONF: &str = include_str!("../../../packaging/examples/frr/frr-vipd.conf");
/// packaging/examples/frr/frr-upstream.conf: the upstream's FRR config.
pub const FRR_UPSTREAM_CONF: &str =
    include_str!("../../../packaging/examples/frr/frr-upstream.conf");
/// packaging/examples/bgp-vipd.conf: r1's keepalived.conf (priority 200).
pub const BGP_VIPD_CONF: &str = include_str!("../../../packaging/examples/bgp-vipd.conf");
/// packaging/examples/bgp-anycast-vipd.conf (priority 200).
pub const BGP_ANYCAST_VIPD_CONF: &str =
    include_str!("../../../packaging/examples/bgp-anycast-vipd.conf");

/// packaging/examples/frr/frr-vipd-ipv6.conf: r1's FRR config, IPv6.
pub const FRR_VIPD6_CONF: &str = include_str!("../../../packaging/examples/frr/frr-vipd-ipv6.conf");
/// packaging/examples/frr/frr-upstream-ipv6.conf: the upstream's FRR config, IPv6.
pub const FRR_UPSTREAM6_CONF: &str =
    include_str!("../../../packaging/examples/frr/frr-upstream-ipv6.conf");
/// packaging/examples/bgp-vipd-ipv6.conf: r1's keepalived.conf, IPv6 (priority 200).
pub const BGP_VIPD6_CONF: &str = include_str!("../../../packaging/examples/bgp-vipd-ipv6.conf");
/// The VIP of the IPv6 examples (a /128 on `lo` while MASTER).
pub const BGP_VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
/// The client behind the upstream, IPv6 (2001:db8:203::/64; the upstream is ::1).
pub const BGP_CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x203, 0, 0, 0, 0, 2);

/// The VIP of the examples (a /32 on `lo` while MASTER).
pub const BGP_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The prefix the examples announce through `virtual_routes ... table 100`.
pub const BGP_ROUTED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// The client behind the upstream (203.0.113.0/24; the upstream is .1).
pub const BGP_CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

/// Router `i`'s address on its link to the upstream (198.51.100.1, .3, .5 …), and the
/// upstream's end of it (198.51.100.0, .2, .4 …).
pub fn uplink(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let base = 2 * (i as u8 - 1);
    (
        Ipv4Addr::new(198, 51, 100, base + 1),
        Ipv4Addr::new(198, 51, 100, base),
    )
}

/// The IPv6 [`uplink`]: router `i` is 2001:db8:100:`i`::2/64, the upstream ::1.
pub fn uplink6(i: usize) -> (Ipv6Addr, Ipv6Addr) {
    let net = |host| Ipv6Addr::new(0x2001, 0xdb8, 0x100, i as u16, 0, 0, 0, host);
    (net(2), net(1))
}

/// Router `i`'s IPv6 FRR config (its router ID is its IPv4 [`uplink`] address).
pub fn router_frr_conf6(i: usize) -> String {
    FRR_VIPD6_CONF
        .replace("2001:db8:100:1::", &format!("2001:db8:100:{i:x}::"))
        .replace("198.51.100.1", &uplink(i).0.to_string())
}

/// The upstream's IPv6 FRR config for `n` vipd routers.
pub fn upstream_frr_conf6(n: usize) -> String {
    with_peers(FRR_UPSTREAM6_CONF, n, |i| uplink6(i).0.to_string())
}

/// `conf` with the peer-group lines of routers 3..=`n` after r2's.
fn with_peers(conf: &str, n: usize, addr: impl Fn(usize) -> String) -> String {
    let line = |i| format!(" neighbor {} peer-group VIPD\n", addr(i));
    let mut conf = conf.to_string();
    let at = conf.find(&line(2)).expect("r2 in the upstream's config") + line(2).len();
    for i in (3..=n).rev() {
        conf.insert_str(at, &line(i));
    }
    conf
}

/// Router `i`'s FRR config: the shipped example is r1's file; the others differ only in
/// their own addresses.
pub fn router_frr_conf(i: usize) -> String {
    let (me, up) = uplink(i);
    FRR_VIPD_CONF
        .replace("198.51.100.1", &me.to_string())
        .replace("198.51.100.0", &up.to_string())
}

/// The upstream's FRR config for `n` vipd routers: the shipped example names r1 and r2;
/// more routers join its peer group.
pub fn upstream_frr_conf(n: usize) -> String {
    with_peers(FRR_UPSTREAM_CONF, n, |i| uplink(i).0.to_string())
}

/// An FRR config without its `neighbor ... bfd` lines (BGP alone).
pub fn without_bfd(conf: &str) -> String {
    conf.lines()
        .filter(|l| !l.contains(" bfd profile "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Whether FRR's daemons and vtysh are installed.
pub fn frr_installed() -> bool {
    [ZEBRA, BFDD, BGPD, VTYSH]
        .iter()
        .all(|p| Path::new(p).exists())
}

/// One FRR instance (zebra + bfdd + bgpd) in a namespace, with its own config, pid
/// files, zserv, BFD control and vty sockets in `dir`: nothing touches the system's
/// FRR. The integrated config is applied by `vtysh -f`, as FRR's own start-up does with
/// `vtysh -b`. Dropping it stops the daemons cleanly (SIGTERM, then SIGKILL).
pub struct Frr {
    dir: PathBuf,
    procs: Vec<Proc>,
}

impl Frr {
    /// Starts zebra, bfdd and bgpd in `ns` and applies `config`.
    pub fn start(ns: &Netns, dir: PathBuf, config: &str) -> Result<Frr> {
        use std::os::unix::fs::PermissionsExt;
        // The daemons drop root for the `frr` user: their files live where it may write.
        // A fresh directory: a crashed instance's sockets and pid files would fool the
        // readiness checks below.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        let empty = dir.join("empty.conf");
        std::fs::write(&empty, "")?;
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o644))?;
        let mut frr = Frr {
            dir: dir.clone(),
            procs: Vec::new(),
        };
        let d = dir.display().to_string();
        for (bin, name, ready) in [
            (ZEBRA, "zebra", &["zebra.vty", "zserv.api"][..]),
            (BFDD, "bfdd", &["bfdd.vty"][..]),
            (BGPD, "bgpd", &["bgpd.vty"][..]),
        ] {
            let mut args = vec![
                bin.to_string(),
                "-f".into(),
                empty.display().to_string(),
                "-i".into(),
                format!("{d}/{name}.pid"),
                "-z".into(),
                format!("{d}/zserv.api"),
                "--vty_socket".into(),
                d.clone(),
                "--log".into(),
                "stdout".into(),
                "--log-level".into(),
                "info".into(),
            ];
            if name == "bfdd" {
                args.extend(["--bfdctl".into(), format!("{d}/bfdd.sock")]);
            }
            let p = ns
                .spawn(args, dir.join(format!("{name}.log")))
                .with_context(|| format!("starting {name}"))?;
            frr.procs.push(p);
            let ok = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
                ready.iter().all(|f| dir.join(f).exists())
            });
            if !ok {
                bail!("{name} did not start:\n{}", frr.logs());
            }
        }
        let conf = dir.join("frr.conf");
        std::fs::write(&conf, config)?;
        let o = std::process::Command::new(VTYSH)
            .arg("--vty_socket")
            .arg(&dir)
            .arg("-f")
            .arg(&conf)
            .output()
            .context("running vtysh")?;
        if !o.status.success() {
            bail!(
                "vtysh -f {}: {}{}",
                conf.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(frr)
    }

    /// The output of a vtysh command run by bgpd.
    pub fn vtysh(&self, cmd: &str) -> String {
        self.vtysh_on("bgpd", cmd)
    }

    /// The output of a vtysh command run by `daemon`.
    pub fn vtysh_on(&self, daemon: &str, cmd: &str) -> String {
        std::process::Command::new(VTYSH)
            .arg("--vty_socket")
            .arg(&self.dir)
            .args(["-d", daemon, "-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The BGP paths this router has for `dst`/32, best first: (next hop, MED).
    pub fn paths_med(&self, dst: Ipv4Addr) -> Vec<(Ipv4Addr, Option<u64>)> {
        self.paths_of(&format!("show ip bgp {dst}/32 json"))
    }

    /// The next hops (global addresses) of the BGP paths this router has for
    /// `dst`/128, best path first.
    pub fn paths6(&self, dst: Ipv6Addr) -> Vec<Ipv6Addr> {
        self.paths_of(&format!("show bgp ipv6 unicast {dst}/128 json"))
            .into_iter()
            .map(|(nh, _)| nh)
            .collect()
    }

    fn paths_of<A: std::str::FromStr>(&self, cmd: &str) -> Vec<(A, Option<u64>)> {
        let out = self.vtysh(cmd);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let mut paths: Vec<(bool, A, Option<u64>)> = v["paths"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        let nh = p["nexthops"][0]["ip"].as_str()?.parse().ok()?;
                        Some((p["bestpath"]["overall"] == true, nh, p["metric"].as_u64()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        paths.sort_by_key(|(best, _, _)| !best);
        paths.into_iter().map(|(_, nh, med)| (nh, med)).collect()
    }

    /// The next hops of the BGP paths this router has for `dst`/32, best path first.
    pub fn paths(&self, dst: Ipv4Addr) -> Vec<Ipv4Addr> {
        self.paths_med(dst).into_iter().map(|(nh, _)| nh).collect()
    }

    /// The BFD session's state to `peer` (as `show bfd peers` has it), e.g. "up".
    pub fn bfd_status(&self, peer: IpAddr) -> Option<String> {
        let out = self.vtysh_on("bfdd", "show bfd peers json");
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?
            .iter()
            .find(|p| p["peer"] == peer.to_string())
            .and_then(|p| p["status"].as_str().map(str::to_string))
    }

    /// The last lines of each daemon's log.
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| p.log_tail(15))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A router crash: its routing daemons die with it (SIGKILL).
    pub fn kill9(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.kill9();
            forget_crash_dir(p);
        }
    }
}

/// FRR keeps a per-process directory `/var/tmp/frr/<daemon>.<pid>` (crash logs) that it
/// removes on a clean exit only.
fn forget_crash_dir(p: &Proc) {
    for name in ["zebra", "bfdd", "bgpd"] {
        let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/{name}.{}", p.pid()));
    }
}

impl Drop for Frr {
    /// A clean stop (SIGTERM), so FRR removes its own files; `Proc`'s drop SIGKILLs
    /// what is left.
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            let _ = p.signal(Signal::SIGTERM);
            if p.wait_timeout(Duration::from_secs(3)).is_none() {
                p.kill9();
            }
            forget_crash_dir(p);
        }
    }
}

/// How [`RoutedLab::build`] builds the lab.
#[derive(Clone, Copy, Debug)]
pub struct RoutedOptions {
    /// BFD on the BGP sessions (the shipped FRR configs); off: the configs without it.
    pub bfd: bool,
    /// IPv6 links, sessions and client, and the IPv6 FRR configs.
    pub ipv6: bool,
    /// The upstream installs its best path only (`maximum-paths 1`). By default (FRR's
    /// and the shipped config's) it spreads flows over every equal path: while a dead
    /// master's path waits for the hold time beside the new master's, the flows the
    /// kernel hashes to the new one already get through and the rest do not.
    pub single_path: bool,
}

impl Default for RoutedOptions {
    fn default() -> Self {
        RoutedOptions {
            bfd: true,
            ipv6: false,
            single_path: false,
        }
    }
}

/// The routed part of the lab, around a [`Lan`] (whose routers run vipd and peer with
/// the upstream; the Lan's own switch is their VRRP link). Fields drop in order: FRR
/// stops cleanly before the namespaces go; drop it before the `Lan`.
pub struct RoutedLab {
    /// The upstream's FRR.
    pub up_frr: Frr,
    /// Router `i`'s FRR at `frr[i - 1]` (`None` after [`RoutedLab::crash_frr`]).
    pub frr: Vec<Option<Frr>>,
    /// The upstream router.
    pub upstream: Netns,
    /// The client, on 203.0.113.0/24 behind the upstream.
    pub client: Netns,
    dir: PathBuf,
    opts: RoutedOptions,
}

impl RoutedLab {
    /// Builds the upstream and the client (namespaces `<lan prefix>-up`, `-bcl`), links
    /// every router of `lan` to the upstream, starts FRR everywhere (configs and logs
    /// in `dir`) and waits until every BGP session (and, with BFD, its BFD session) is
    /// up and the routers have learnt the client's network.
    pub fn build(lan: &Lan, dir: &Path, opts: RoutedOptions) -> Result<RoutedLab> {
        if !frr_installed() {
            bail!("FRR is not installed (zebra, bfdd, bgpd, vtysh: apt-get install frr)");
        }
        let n = lan.n_routers();
        let upstream = Netns::new(format!("{}-up", lan.prefix()))?;
        let client = Netns::new(format!("{}-bcl", lan.prefix()))?;
        // No DAD (set before the interfaces exist): addresses usable at once.
        for ns in [&upstream, &client] {
            ns.sysctls(&[
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
            ])?;
        }
        upstream.sysctls(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ])?;
        let (up_net, client_addr, up_conf) = match opts.ipv6 {
            false => (
                "203.0.113.1/24",
                format!("{BGP_CLIENT}/24"),
                upstream_frr_conf(n),
            ),
            true => (
                "2001:db8:203::1/64",
                format!("{BGP_CLIENT6}/64"),
                upstream_frr_conf6(n),
            ),
        };
        let link = |i| match opts.ipv6 {
            false => (format!("{}/31", uplink(i).0), format!("{}/31", uplink(i).1)),
            true => (
                format!("{}/64", uplink6(i).0),
                format!("{}/64", uplink6(i).1),
            ),
        };
        let mut b = String::new();
        for i in 1..=n {
            b.push_str(&format!(
                "link add r{i} type veth peer name uplink netns {}\n\
                 addr add {} dev r{i}\nlink set r{i} up\n",
                lan.router(i).name(),
                link(i).1
            ));
        }
        b.push_str(&format!(
            "link add cl type veth peer name eth0 netns {}\n\
             addr add {up_net} dev cl\nlink set cl up\n",
            client.name()
        ));
        upstream.ip_batch(&b)?;
        for i in 1..=n {
            lan.router(i).ip_batch(&format!(
                "addr add {} dev uplink\nlink set uplink up\n",
                link(i).0
            ))?;
        }
        let gw = up_net.split('/').next().unwrap_or_default();
        let default = if opts.ipv6 { "::/0" } else { "default" };
        client.ip_batch(&format!(
            "addr add {client_addr} dev eth0\nlink set eth0 up\n\
             route add {default} via {gw}\n"
        ))?;
        let conf = |c: String| if opts.bfd { c } else { without_bfd(&c) };
        let mut up_conf = conf(up_conf);
        if opts.single_path {
            for family in ["ipv4", "ipv6"] {
                let af = format!(" address-family {family} unicast\n");
                up_conf = up_conf.replace(&af, &format!("{af}  maximum-paths 1\n"));
            }
        }
        let up_frr = Frr::start(&upstream, dir.join("frr-up"), &up_conf)?;
        let mut lab = RoutedLab {
            up_frr,
            frr: Vec::new(),
            upstream,
            client,
            dir: dir.to_path_buf(),
            opts,
        };
        for i in 1..=n {
            let f = Frr::start(
                lan.router(i),
                dir.join(format!("frr-r{i}")),
                &lab.router_conf(i),
            )?;
            lab.frr.push(Some(f));
        }
        for i in 1..=n {
            lab.wait_session(lan, i, Duration::from_secs(30))?;
        }
        Ok(lab)
    }

    /// Router `i`'s FRR config in this lab.
    fn router_conf(&self, i: usize) -> String {
        let c = match self.opts.ipv6 {
            false => router_frr_conf(i),
            true => router_frr_conf6(i),
        };
        if self.opts.bfd {
            c
        } else {
            without_bfd(&c)
        }
    }

    /// Router `i`'s address on its link to the upstream.
    pub fn router_uplink(&self, i: usize) -> IpAddr {
        match self.opts.ipv6 {
            false => uplink(i).0.into(),
            true => uplink6(i).0.into(),
        }
    }

    /// Waits until router `i`'s session (and BFD session, if on) is up and it has
    /// learnt the client's network (the return path).
    pub fn wait_session(&self, lan: &Lan, i: usize, timeout: Duration) -> Result<()> {
        let (family, net) = match self.opts.ipv6 {
            false => ("-4", "203.0.113.0/24"),
            true => ("-6", "2001:db8:203::/64"),
        };
        let ok = wait_for(timeout, Duration::from_millis(50), || {
            lan.router(i)
                .ip([family, "route", "show", net])
                .is_ok_and(|s| s.contains("via"))
        });
        if !ok {
            bail!(
                "r{i} never learnt {net} over BGP; its routes:\n{}\nits BGP:\n{}{}\n{}",
                lan.router(i)
                    .ip([family, "route", "show"])
                    .unwrap_or_default(),
                self.frr(i).vtysh("show bgp summary"),
                self.frr(i).vtysh("show bgp ipv6 unicast"),
                self.frr_logs()
            );
        }
        if self.opts.bfd {
            let ok = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
                self.up_frr.bfd_status(self.router_uplink(i)).as_deref() == Some("up")
            });
            if !ok {
                bail!(
                    "no BFD session to r{i}: {}\n{}",
                    self.up_frr.vtysh_on("bfdd", "show bfd peers"),
                    self.frr_logs()
                );
            }
        }
        Ok(())
    }

    /// Router `i`'s FRR.
    pub fn frr(&self, i: usize) -> &Frr {
        self.frr[i - 1]
            .as_ref()
            .expect("FRR of the router is running")
    }

    /// Router `i`'s routing daemons die (SIGKILL), as in a crash.
    pub fn crash_frr(&mut self, i: usize) {
        if let Some(mut f) = self.frr[i - 1].take() {
            f.kill9();
        }
    }

    /// Starts router `i`'s FRR again (after [`crash_frr`](Self::crash_frr)) and waits for
    /// its sessions.
    pub fn restart_frr(&mut self, lan: &Lan, i: usize) -> Result<()> {
        let conf = self.router_conf(i);
        let f = Frr::start(lan.router(i), self.dir.join(format!("frr-r{i}")), &conf)?;
        self.frr[i - 1] = Some(f);
        self.wait_session(lan, i, Duration::from_secs(30))
    }

    /// The last lines of every FRR daemon's log.
    pub fn frr_logs(&self) -> String {
        let mut s = format!("--- upstream FRR:\n{}\n", self.up_frr.logs());
        for (i, f) in self.frr.iter().enumerate() {
            if let Some(f) = f {
                s.push_str(&format!("--- r{} FRR:\n{}\n", i + 1, f.logs()));
            }
        }
        s
    }

    /// The upstream's kernel next hop for `dst`/32, if it has a route.
    pub fn upstream_next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let out = self
            .upstream
            .ip(["route", "show", &format!("{dst}/32")])
            .ok()?;
        let w: Vec<&str> = out.split_whitespace().collect();
        let at = w.iter().position(|x| *x == "via")?;
        w.get(at + 1)?.parse().ok()
    }

    /// The router (1-based) the upstream forwards `dst` (a host route) to, if any: by
    /// the link (an IPv6 route's next hop is the router's link-local address).
    pub fn upstream_router(&self, dst: IpAddr) -> Option<usize> {
        let (family, len) = if dst.is_ipv4() {
            ("-4", 32)
        } else {
            ("-6", 128)
        };
        let out = self
            .upstream
            .ip([family, "route", "show", &format!("{dst}/{len}")])
            .ok()?;
        let w: Vec<&str> = out.split_whitespace().collect();
        let at = w.iter().position(|x| *x == "dev")?;
        w.get(at + 1)?.strip_prefix('r')?.parse().ok()
    }

    /// Routers (1-based) whose `lo` holds `vip`.
    pub fn holders(lan: &Lan, vip: IpAddr) -> Vec<usize> {
        (1..=lan.n_routers())
            .filter(|&i| has_address(lan.router(i), "lo", vip))
            .collect()
    }
}

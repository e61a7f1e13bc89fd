//! `lvs_sync_daemon` on the nftables backend: conntrack state synced by `conntrackd`
//! (netfilter's own sync daemon, Debian package `conntrackd`), which vipd starts with a
//! configuration of its own and switches on VRRP transitions the way conntrackd's
//! `primary-backup.sh` does.
//!
//! - Started in the foreground as vipd's child with `-C DIR/conntrackd.conf`, where DIR
//!   is vipd's runtime directory for it (next to the control socket). Mode FTFW (reliable,
//!   with resends) over multicast on the `lvs_sync_daemon` interface: group and port from
//!   `group` / `port` (default 225.0.0.50, port 3780, conntrackd's own defaults), the
//!   interface's first IPv4 address as the sending address. Only TCP, UDP and SCTP
//!   flows are synced, not the director's own (its addresses are ignored).
//! - MASTER: `-c` (commit the other director's flows into the kernel), `-f` (flush the
//!   caches), `-R` (resync with the kernel), `-B` (bulk-send to the backup).
//! - Not MASTER: `-t` (shorten the kernel's conntrack timers, so flows of a former MASTER
//!   expire), `-n` (ask the MASTER for a resync).
//! - Stopped with `-k` when vipd stops (killed if it does not go).
//! - While it runs, an empty NAT chain (`vipd_ctsync` tables) keeps the kernel from
//!   deleting NAT'd conntrack entries when the balancer removes its table on leaving
//!   MASTER ([`vipd_lb::nft::nat_anchor`]).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracing::{info, warn};
use vipd_lb::ipvs::syncd::SyncConfig;
use vipd_lb::nft::nat_anchor::NatAnchor;

/// conntrackd's defaults for its multicast channel (doc/sync/ftfw/conntrackd.conf).
const DEFAULT_GROUP: &str = "225.0.0.50";
const DEFAULT_PORT: u16 = 3780;

/// The running conntrackd.
pub struct Conntrackd {
    conf: PathBuf,
    child: Child,
    /// Keeps NAT bindings alive when the balancer removes its table (see
    /// [`vipd_lb::nft::nat_anchor`]).
    anchor: Option<NatAnchor>,
}

/// conntrackd.conf for `cfg`, with its files under `dir`; `own` are this director's
/// addresses (its own flows are not synced).
pub fn config_text(cfg: &SyncConfig, source: IpAddr, own: &[IpAddr], dir: &Path) -> String {
    let group = cfg
        .group
        .map(|g| g.to_string())
        .unwrap_or_else(|| DEFAULT_GROUP.into());
    let (addr_kw, iface_kw) = if cfg.group.is_some_and(|g| g.is_ipv6()) {
        ("IPv6_address", "IPv6_interface")
    } else {
        ("IPv4_address", "IPv4_interface")
    };
    let mut ignore = String::new();
    for a in own {
        let kw = if a.is_ipv6() {
            "IPv6_address"
        } else {
            "IPv4_address"
        };
        ignore += &format!("            {kw} {a}\n");
    }
    let d = dir.display();
    format!(
        "# Written by vipd for lvs_sync_daemon; rewritten at every start.\n\
Sync {{\n\
    Mode FTFW {{\n\
        DisableExternalCache Off\n\
        CommitTimeout 1800\n\
        PurgeTimeout 5\n\
    }}\n\
    Multicast {{\n\
        {addr_kw} {group}\n\
        Group {port}\n\
        {iface_kw} {source}\n\
        Interface {ifname}\n\
        SndSocketBuffer 1249280\n\
        RcvSocketBuffer 1249280\n\
        Checksum on\n\
    }}\n\
}}\n\
General {{\n\
    Systemd off\n\
    HashSize 32768\n\
    HashLimit 131072\n\
    LogFile {d}/conntrackd.log\n\
    Syslog off\n\
    LockFile {d}/conntrackd.lock\n\
    UNIX {{\n\
        Path {d}/conntrackd.ctl\n\
    }}\n\
    NetlinkBufferSize 2097152\n\
    NetlinkBufferSizeMaxGrowth 8388608\n\
    Filter From Userspace {{\n\
        Protocol Accept {{\n\
            TCP\n\
            SCTP\n\
            UDP\n\
        }}\n\
        Address Ignore {{\n\
{ignore}        }}\n\
    }}\n\
}}\n",
        port = cfg.port.unwrap_or(DEFAULT_PORT),
        ifname = cfg.ifname,
    )
}

/// Runs `conntrackd -C conf OPT`; `Ok(false)` when it exits non-zero.
fn ctl(conf: &Path, opt: &str) -> io::Result<bool> {
    let out = Command::new("conntrackd")
        .arg("-C")
        .arg(conf)
        .arg(opt)
        .stdin(Stdio::null())
        .output()?;
    Ok(out.status.success())
}

impl Conntrackd {
    /// Writes the configuration under `dir` and starts conntrackd; returns once it
    /// answers on its control socket. A conntrackd a crashed vipd left running with
    /// this configuration is stopped first.
    pub fn start(cfg: &SyncConfig, dir: &Path) -> Result<Conntrackd> {
        let addrs = vipd_config::host_addresses();
        let on_iface = addrs.get(&cfg.ifname).cloned().unwrap_or_default();
        let want_v6 = cfg.group.is_some_and(|g| g.is_ipv6());
        let Some(source) = on_iface.iter().find(|a| a.is_ipv6() == want_v6).copied() else {
            bail!(
                "interface {} has no {} address for conntrackd's multicast channel",
                cfg.ifname,
                if want_v6 { "IPv6" } else { "IPv4" }
            );
        };
        let own: Vec<IpAddr> = addrs.values().flatten().copied().collect();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("conntrackd.conf");
        if conf.exists() && ctl(&conf, "-s").unwrap_or(false) {
            info!("stopping a conntrackd an earlier vipd left running");
            let _ = ctl(&conf, "-k");
            std::thread::sleep(Duration::from_millis(200));
        }
        // A lock file without a daemon (it was killed) stops conntrackd from starting.
        let _ = std::fs::remove_file(dir.join("conntrackd.lock"));
        std::fs::write(&conf, config_text(cfg, source, &own, dir))
            .with_context(|| format!("writing {}", conf.display()))?;
        let out = std::fs::File::create(dir.join("conntrackd.out"))?;
        let child = Command::new("conntrackd")
            .arg("-C")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "running conntrackd: {e} (install the conntrackd package, or use the IPVS backend)"
                )
            })?;
        let anchor = match NatAnchor::hold() {
            Ok(a) => Some(a),
            Err(e) => {
                let _ = child_kill(child);
                return Err(e);
            }
        };
        let mut me = Conntrackd {
            conf,
            child,
            anchor,
        };
        let t0 = Instant::now();
        loop {
            if let Some(st) = me.child.try_wait()? {
                let why = std::fs::read_to_string(dir.join("conntrackd.out")).unwrap_or_default();
                bail!("conntrackd exited at start ({st}): {}", why.trim());
            }
            if ctl(&me.conf, "-s").unwrap_or(false) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                me.stop();
                bail!("conntrackd did not answer on its control socket within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        info!(
            ifname = %cfg.ifname,
            config = %me.conf.display(),
            "conntrackd started (FTFW over multicast)"
        );
        Ok(me)
    }

    fn run(&self, opts: &[(&str, &str)]) {
        for (opt, what) in opts {
            match ctl(&self.conf, opt) {
                Ok(true) => {}
                Ok(false) => warn!("conntrackd {opt} ({what}) failed"),
                Err(e) => warn!("conntrackd {opt} ({what}): {e}"),
            }
        }
    }

    /// The followed instance became MASTER (`true`) or left it.
    pub fn switch(&self, master: bool) {
        if master {
            self.run(&[
                ("-c", "commit the external cache into the kernel"),
                ("-f", "flush the caches"),
                ("-R", "resync with the kernel"),
                ("-B", "bulk-send to the backup"),
            ]);
            info!("conntrackd: MASTER: external cache committed, bulk update sent");
        } else {
            self.run(&[
                ("-t", "shorten the kernel's conntrack timers"),
                ("-n", "request a resync from the master"),
            ]);
            info!("conntrackd: BACKUP: resync requested");
        }
    }

    /// Stops conntrackd (`-k`, then SIGKILL after 3 s) and removes the NAT anchor.
    pub fn stop(&mut self) {
        if let Some(a) = self.anchor.take() {
            if let Err(e) = a.release() {
                warn!("removing the vipd_ctsync NAT anchor: {e:#}");
            }
        }
        let _ = ctl(&self.conf, "-k");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                info!("conntrackd stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        warn!("conntrackd did not stop on -k; killed");
    }
}

fn child_kill(mut child: Child) -> io::Result<()> {
    child.kill()?;
    child.wait().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_uses_the_sync_settings_and_ignores_own_addresses() {
        let cfg = SyncConfig {
            ifname: "eth1".into(),
            sync_id: 0,
            maxlen: None,
            port: Some(8849),
            ttl: None,
            group: Some("239.1.2.3".parse().unwrap()),
        };
        let own: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let text = config_text(
            &cfg,
            "192.0.2.1".parse().unwrap(),
            &own,
            Path::new("/run/x"),
        );
        for want in [
            "Mode FTFW {",
            "IPv4_address 239.1.2.3\n",
            "Group 8849\n",
            "IPv4_interface 192.0.2.1\n",
            "Interface eth1\n",
            "LockFile /run/x/conntrackd.lock\n",
            "Path /run/x/conntrackd.ctl\n",
            "IPv4_address 127.0.0.1\n",
            "IPv6_address 2001:db8::1\n",
            "Systemd off\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
        let text = config_text(
            &SyncConfig {
                port: None,
                group: None,
                ..cfg
            },
            "192.0.2.1".parse().unwrap(),
            &[],
            Path::new("/run/x"),
        );
        assert!(text.contains("IPv4_address 225.0.0.50\n"), "{text}");
        assert!(text.contains("Group 3780\n"), "{text}");
    }
}

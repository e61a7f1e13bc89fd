//! The kernel's IPVS connection synchronisation daemon (`lvs_sync_daemon`): the master
//! daemon multicasts the director's connection entries on an interface, the backup
//! daemon receives them into its own connection table, so that a director taking over
//! the virtual addresses already knows the established connections and forwards them to
//! the same real servers.
//!
//! Started and stopped over the IPVS generic netlink family (`IPVS_CMD_NEW_DAEMON` /
//! `IPVS_CMD_DEL_DAEMON` with a nested `IPVS_CMD_ATTR_DAEMON`), with the attributes
//! keepalived sends: state, interface and sync id always; `maxlen`, `port`, `ttl` and the
//! multicast group only when configured (the kernel's defaults otherwise: 224.0.0.81,
//! port 8848, ttl 1, maxlen from the interface's MTU). A stop names the state (and sync
//! id) only.
//!
//! [`SyncDaemons`] holds the socket and which of the two daemons vipd started; the owner
//! calls [`SyncDaemons::set`] with the roles it wants (MASTER when the followed VRRP
//! instance is MASTER, BACKUP otherwise; both when no instance is named).
//!
//! Against a real kernel this is exercised end to end by vipd's
//! `connection_sync_on_ipvs` test (crates/vipd/tests/lb.rs, in the bench/vm guest): the
//! daemons as `ipvsadm -L --daemon` reports them, switched on a failover, stopped on
//! exit. (A scenario of its own in crates/lb/tests/ipvs_kernel.rs hung intermittently
//! in the guest when it ran after the other scenarios of that file's single VM boot;
//! not yet understood, so it is not there.)

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail, Context};
use tracing::{info, warn};

use super::consts::*;
use super::encode::{c_str, get_u16, get_u32, ipvs_msg, nested, DO, DUMP};
use super::NoIpvs;
use crate::netlink::{attrs, KernelErrno, Msg, MsgBuf, NlError, NlSocket};

/// Which of the kernel's two sync daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Sends this director's connections.
    Master,
    /// Receives the other director's.
    Backup,
}

impl Role {
    /// `IP_VS_STATE_MASTER` / `IP_VS_STATE_BACKUP`.
    pub fn state(self) -> u32 {
        match self {
            Role::Master => IP_VS_STATE_MASTER,
            Role::Backup => IP_VS_STATE_BACKUP,
        }
    }

    fn index(self) -> usize {
        match self {
            Role::Master => 0,
            Role::Backup => 1,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Backup => "backup",
        })
    }
}

/// What a sync daemon is started with. `None`: the kernel's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Interface the sync messages leave and arrive on (at most 15 bytes).
    pub ifname: String,
    /// Only messages with this id are accepted by the backup (0..=255).
    pub sync_id: u8,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    /// Multicast group, IPv4 or IPv6.
    pub group: Option<IpAddr>,
}

/// One running daemon as the kernel reports it (`IPVS_CMD_GET_DAEMON`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    pub role: Role,
    pub ifname: String,
    pub sync_id: u32,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}

/// `IPVS_CMD_NEW_DAEMON`: start the `role` daemon with `cfg`.
pub fn new_daemon(family: u16, role: Role, cfg: &SyncConfig, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_NEW_DAEMON, DO, seq, |b| {
        let n = b.nest_begin(IPVS_CMD_ATTR_DAEMON);
        b.attr_u32(IPVS_DAEMON_ATTR_STATE, role.state());
        b.attr_str(IPVS_DAEMON_ATTR_MCAST_IFN, &cfg.ifname);
        b.attr_u32(IPVS_DAEMON_ATTR_SYNC_ID, u32::from(cfg.sync_id));
        if let Some(v) = cfg.maxlen {
            b.attr_u16(IPVS_DAEMON_ATTR_SYNC_MAXLEN, v);
        }
        if let Some(v) = cfg.port {
            // Host order: the kernel converts it.
            b.attr_u16(IPVS_DAEMON_ATTR_MCAST_PORT, v);
        }
        if let Some(v) = cfg.ttl {
            b.attr_u8(IPVS_DAEMON_ATTR_MCAST_TTL, v);
        }
        match cfg.group {
            Some(IpAddr::V4(a)) => b.attr(IPVS_DAEMON_ATTR_MCAST_GROUP, &a.octets()),
            Some(IpAddr::V6(a)) => b.attr(IPVS_DAEMON_ATTR_MCAST_GROUP6, &a.octets()),
            None => {}
        }
        b.nest_end(n);
    })
}

/// `IPVS_CMD_DEL_DAEMON`: stop the `role` daemon.
pub fn del_daemon(family: u16, role: Role, sync_id: u8, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_DEL_DAEMON, DO, seq, |b| {
        let n = b.nest_begin(IPVS_CMD_ATTR_DAEMON);
        b.attr_u32(IPVS_DAEMON_ATTR_STATE, role.state());
        b.attr_u32(IPVS_DAEMON_ATTR_SYNC_ID, u32::from(sync_id));
        b.nest_end(n);
    })
}

/// `IPVS_CMD_GET_DAEMON` dump: the running daemons.
pub fn get_daemons(family: u16, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_GET_DAEMON, DUMP, seq, |_| {})
}

/// One message of an `IPVS_CMD_GET_DAEMON` dump.
pub fn decode_daemon(msg: &Msg) -> anyhow::Result<DaemonInfo> {
    let nest = nested(msg, IPVS_CMD_ATTR_DAEMON)?;
    let (mut state, mut ifname, mut sync_id) = (None, None, None);
    let mut out = DaemonInfo {
        role: Role::Master,
        ifname: String::new(),
        sync_id: 0,
        maxlen: None,
        port: None,
        ttl: None,
        group: None,
    };
    for (ty, v) in attrs(nest) {
        match ty {
            IPVS_DAEMON_ATTR_STATE => state = Some(get_u32(v, "daemon state")?),
            IPVS_DAEMON_ATTR_MCAST_IFN => ifname = Some(c_str(v)),
            IPVS_DAEMON_ATTR_SYNC_ID => sync_id = Some(get_u32(v, "sync id")?),
            IPVS_DAEMON_ATTR_SYNC_MAXLEN => out.maxlen = Some(get_u16(v, "sync maxlen")?),
            IPVS_DAEMON_ATTR_MCAST_PORT => out.port = Some(get_u16(v, "mcast port")?),
            IPVS_DAEMON_ATTR_MCAST_TTL => {
                out.ttl = Some(*v.first().ok_or_else(|| anyhow!("empty mcast ttl"))?)
            }
            IPVS_DAEMON_ATTR_MCAST_GROUP => {
                let a: [u8; 4] = v
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| anyhow!("short mcast group"))?;
                out.group = Some(Ipv4Addr::from(a).into());
            }
            IPVS_DAEMON_ATTR_MCAST_GROUP6 => {
                let a: [u8; 16] = v
                    .get(..16)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| anyhow!("short mcast group6"))?;
                out.group = Some(Ipv6Addr::from(a).into());
            }
            _ => {}
        }
    }
    out.role = match state.ok_or_else(|| anyhow!("daemon without a state"))? {
        IP_VS_STATE_MASTER => Role::Master,
        IP_VS_STATE_BACKUP => Role::Backup,
        s => bail!("unknown daemon state {s}"),
    };
    out.ifname = ifname.ok_or_else(|| anyhow!("daemon without an interface"))?;
    out.sync_id = sync_id.ok_or_else(|| anyhow!("daemon without a sync id"))?;
    Ok(out)
}

/// The sync daemons vipd runs: which are up, and the socket to switch them.
pub struct SyncDaemons {
    sock: NlSocket,
    family: u16,
    cfg: SyncConfig,
    /// Started by vipd and not stopped since: [master, backup].
    running: [bool; 2],
}

impl SyncDaemons {
    /// Finds IPVS and stops any daemon left running (a previous run that ended without
    /// stopping it, or ipvsadm's): vipd starts its own with its own settings.
    pub fn open(cfg: SyncConfig) -> anyhow::Result<SyncDaemons> {
        if cfg.ifname.is_empty() || cfg.ifname.len() >= IP_VS_IFNAME_MAXLEN {
            bail!(
                "sync daemon interface name `{}` must be 1 to 15 bytes",
                cfg.ifname
            );
        }
        let mut sock = NlSocket::open(libc::NETLINK_GENERIC as isize)
            .context("opening a generic netlink socket")?;
        let seq = sock.next_seq();
        let replies = sock
            .dump(super::encode::get_family_named(IPVS_GENL_NAME, seq).as_bytes())
            .context("listing generic netlink families")?;
        let family = super::encode::family_id(&replies, IPVS_GENL_NAME).ok_or(NoIpvs)?;
        let mut me = SyncDaemons {
            sock,
            family,
            cfg,
            running: [false; 2],
        };
        for d in me.kernel().context("reading the IPVS sync daemons")? {
            info!(
                role = %d.role,
                ifname = %d.ifname,
                sync_id = d.sync_id,
                "stopping an IPVS sync daemon that was already running"
            );
            me.running[d.role.index()] = true;
            me.stop(d.role)?;
        }
        Ok(me)
    }

    /// The settings the daemons are started with.
    pub fn config(&self) -> &SyncConfig {
        &self.cfg
    }

    /// The daemons vipd started and has not stopped.
    pub fn running(&self) -> Vec<Role> {
        [Role::Master, Role::Backup]
            .into_iter()
            .filter(|r| self.running[r.index()])
            .collect()
    }

    /// What the kernel runs now.
    pub fn kernel(&mut self) -> anyhow::Result<Vec<DaemonInfo>> {
        let seq = self.sock.next_seq();
        let replies = self.sock.dump(get_daemons(self.family, seq).as_bytes())?;
        replies.iter().map(decode_daemon).collect()
    }

    /// Runs exactly the daemons in `want`: the unwanted one is stopped before the
    /// wanted one starts (keepalived's order on a VRRP transition). Every step is tried;
    /// the first failure is returned.
    pub fn set(&mut self, want: &[Role]) -> anyhow::Result<()> {
        let mut first = None;
        for r in [Role::Master, Role::Backup] {
            if !want.contains(&r) && self.running[r.index()] {
                if let Err(e) = self.stop(r) {
                    first.get_or_insert(e);
                }
            }
        }
        for r in [Role::Master, Role::Backup] {
            if want.contains(&r) && !self.running[r.index()] {
                if let Err(e) = self.start(r) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn start(&mut self, role: Role) -> anyhow::Result<()> {
        let seq = self.sock.next_seq();
        let msg = new_daemon(self.family, role, &self.cfg, seq);
        match self.sock.transact(msg.as_bytes(), &[seq]) {
            Ok(()) => {
                info!(
                    role = %role,
                    ifname = %self.cfg.ifname,
                    sync_id = self.cfg.sync_id,
                    "IPVS sync daemon started"
                );
                self.running[role.index()] = true;
                Ok(())
            }
            Err(e) => {
                let hint = match e.downcast_ref::<NlError>().map(|n| n.err) {
                    Some(KernelErrno(libc::ENODEV)) => " (no such interface)",
                    Some(KernelErrno(libc::EEXIST)) => " (one is running already)",
                    Some(KernelErrno(libc::EINVAL)) => {
                        " (a virtual server has real servers of the other address family: the sync protocol cannot carry those)"
                    }
                    _ => "",
                };
                let err = anyhow!(
                    "starting the IPVS {role} sync daemon on {}: {e}{hint}",
                    self.cfg.ifname
                );
                warn!("{err:#}");
                Err(err)
            }
        }
    }

    fn stop(&mut self, role: Role) -> anyhow::Result<()> {
        let seq = self.sock.next_seq();
        let msg = del_daemon(self.family, role, self.cfg.sync_id, seq);
        let r = self.sock.transact(msg.as_bytes(), &[seq]);
        // ESRCH: it was not running (someone else stopped it); it is stopped either way.
        let gone = match &r {
            Ok(()) => true,
            Err(e) => e
                .downcast_ref::<NlError>()
                .is_some_and(|n| n.err == KernelErrno(libc::ESRCH)),
        };
        if gone {
            info!(role = %role, "IPVS sync daemon stopped");
            self.running[role.index()] = false;
            return Ok(());
        }
        let err = anyhow!(
            "stopping the IPVS {role} sync daemon: {}",
            r.err().map(|e| format!("{e:#}")).unwrap_or_default()
        );
        warn!("{err:#}");
        Err(err)
    }

    /// Stops every daemon vipd started (shutdown).
    pub fn stop_all(&mut self) -> anyhow::Result<()> {
        self.set(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::parse_msgs;

    const FAM: u16 = 0x0021;

    fn only(buf: &MsgBuf) -> Msg {
        let msgs = parse_msgs(buf.as_bytes());
        assert_eq!(msgs.len(), 1);
        msgs.into_iter().next().unwrap()
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn new_daemon_layout_with_every_option() {
        let cfg = SyncConfig {
            ifname: "eth1".into(),
            sync_id: 51,
            maxlen: Some(1400),
            port: Some(8849),
            ttl: Some(2),
            group: Some("239.1.2.3".parse().unwrap()),
        };
        #[rustfmt::skip]
        let want: &[u8] = &[
            // nlmsghdr
            84, 0, 0, 0,            // len = 16 + 4 + 64
            0x21, 0x00,             // type = the IPVS family
            0x05, 0x00,             // NLM_F_REQUEST | NLM_F_ACK
            9, 0, 0, 0,             // seq
            0, 0, 0, 0,             // pid
            // genlmsghdr
            9, 1, 0, 0,             // IPVS_CMD_NEW_DAEMON, version 1
            // IPVS_CMD_ATTR_DAEMON, nested: 4 + 60
            64, 0, 0x03, 0x80,
            8, 0, 1, 0,   1, 0, 0, 0,               // STATE = IP_VS_STATE_MASTER
            9, 0, 2, 0,   b'e', b't', b'h', b'1', 0, 0, 0, 0, // MCAST_IFN "eth1\0"
            8, 0, 3, 0,   51, 0, 0, 0,              // SYNC_ID = 51
            6, 0, 4, 0,   0x78, 0x05, 0, 0,         // SYNC_MAXLEN = 1400 (host order)
            6, 0, 7, 0,   0x91, 0x22, 0, 0,         // MCAST_PORT = 8849 (host order)
            5, 0, 8, 0,   2, 0, 0, 0,               // MCAST_TTL = 2
            8, 0, 5, 0,   239, 1, 2, 3,             // MCAST_GROUP = 239.1.2.3
        ];
        assert_eq!(new_daemon(FAM, Role::Master, &cfg, 9).as_bytes(), want);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn new_daemon_sends_only_what_is_configured_and_stop_names_the_state() {
        let cfg = SyncConfig {
            ifname: "eth0".into(),
            sync_id: 0,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
        };
        let m = only(&new_daemon(FAM, Role::Backup, &cfg, 1));
        let nest = nested(&m, IPVS_CMD_ATTR_DAEMON).unwrap();
        let got: Vec<(u16, Vec<u8>)> = attrs(nest).map(|(t, v)| (t, v.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (IPVS_DAEMON_ATTR_STATE, vec![2, 0, 0, 0]),
                (IPVS_DAEMON_ATTR_MCAST_IFN, b"eth0\0".to_vec()),
                (IPVS_DAEMON_ATTR_SYNC_ID, vec![0, 0, 0, 0]),
            ]
        );
        let m = only(&new_daemon(
            FAM,
            Role::Backup,
            &SyncConfig {
                group: Some("ff02::81".parse().unwrap()),
                ..cfg
            },
            1,
        ));
        let nest = nested(&m, IPVS_CMD_ATTR_DAEMON).unwrap();
        let g6 = attrs(nest)
            .find(|(t, _)| *t == IPVS_DAEMON_ATTR_MCAST_GROUP6)
            .unwrap();
        assert_eq!(g6.1, &"ff02::81".parse::<Ipv6Addr>().unwrap().octets()[..]);
        let m = only(&del_daemon(FAM, Role::Master, 7, 3));
        assert_eq!(m.payload[0], IPVS_CMD_DEL_DAEMON);
        let nest = nested(&m, IPVS_CMD_ATTR_DAEMON).unwrap();
        let got: Vec<(u16, Vec<u8>)> = attrs(nest).map(|(t, v)| (t, v.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (IPVS_DAEMON_ATTR_STATE, vec![1, 0, 0, 0]),
                (IPVS_DAEMON_ATTR_SYNC_ID, vec![7, 0, 0, 0]),
            ]
        );
    }

    #[test]
    fn a_dump_reply_decodes_to_what_was_sent() {
        // The kernel's reply carries the same nested attributes as the request.
        let cfg = SyncConfig {
            ifname: "eth1".into(),
            sync_id: 51,
            maxlen: Some(1400),
            port: Some(8849),
            ttl: Some(2),
            group: Some("239.1.2.3".parse().unwrap()),
        };
        let m = only(&new_daemon(FAM, Role::Backup, &cfg, 1));
        assert_eq!(
            decode_daemon(&m).unwrap(),
            DaemonInfo {
                role: Role::Backup,
                ifname: "eth1".into(),
                sync_id: 51,
                maxlen: Some(1400),
                port: Some(8849),
                ttl: Some(2),
                group: cfg.group,
            }
        );
        let m = only(&del_daemon(FAM, Role::Master, 7, 3));
        assert!(decode_daemon(&m)
            .unwrap_err()
            .to_string()
            .contains("interface"));
    }
}

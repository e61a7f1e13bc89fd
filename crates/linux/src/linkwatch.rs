//! Tracks the carrier of every interface an instance runs on, as keepalived does by
//! default (its `dont_track_primary` turns that off): an interface that is down or has
//! lost its carrier puts its instances in FAULT (a master releases its VIPs), and its
//! return sends them back through BACKUP. It runs on its own thread with its own
//! netlink socket subscribed to link events, so a flood of them never reaches the
//! protocol thread: only real changes of a watched interface do, as commands.

use crate::runtime::{Command, Commander};
use anyhow::{Context, Result};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::collections::HashMap;

const RTMGRP_LINK: u32 = 1;

/// ifindex → (interface name, indices of the live instances on it); the protocol
/// thread rewrites it on reload.
pub type Watched = std::sync::Arc<std::sync::Mutex<HashMap<u32, (String, Vec<usize>)>>>;

/// Whether an interface can carry VRRP right now: administratively up and with an
/// operational state of `up` (or `unknown`, which drivers without carrier reporting
/// show), read from sysfs. (`flags` in sysfs lacks IFF_RUNNING; operstate has it.)
pub fn is_running(ifname: &str) -> bool {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{ifname}/{f}")).unwrap_or_default()
    };
    let flags = u32::from_str_radix(read("flags").trim().trim_start_matches("0x"), 16).unwrap_or(0);
    let oper = read("operstate");
    flags & (libc::IFF_UP as u32) != 0 && matches!(oper.trim(), "up" | "unknown")
}

/// Follow link events for the interfaces in `watched`. (Instances on an interface that
/// is down when they start begin in FAULT: the protocol thread checks that itself.)
pub fn start(watched: Watched, commander: Commander) -> Result<()> {
    let mut sock = Socket::new(NETLINK_ROUTE).context("opening link-event socket")?;
    sock.bind(&SocketAddr::new(0, RTMGRP_LINK))
        .context("subscribing to link events")?;
    let snapshot = |w: &Watched| w.lock().map(|w| w.clone()).unwrap_or_default();
    let mut up: HashMap<u32, bool> = snapshot(&watched)
        .into_iter()
        .map(|(index, (name, _))| (index, is_running(&name)))
        .collect();
    std::thread::Builder::new()
        .name("vipd-link".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sock.recv(&mut &mut buf[..], 0) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        // Events were lost: re-read the truth from sysfs.
                        for (index, (name, instances)) in snapshot(&watched) {
                            update(&mut up, index, is_running(&name), &instances, &commander);
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                let mut off = 0;
                while off < n {
                    let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..n])
                    else {
                        break;
                    };
                    let len = m.header.length as usize;
                    let change = match m.payload {
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => Some((
                            l.header.index,
                            l.header.flags.contains(LinkFlags::Up)
                                && l.header.flags.contains(LinkFlags::Running),
                        )),
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                            Some((l.header.index, false))
                        }
                        _ => None,
                    };
                    if let Some((index, running)) = change {
                        let instances = watched
                            .lock()
                            .ok()
                            .and_then(|w| w.get(&index).map(|e| e.1.clone()));
                        if let Some(instances) = instances {
                            update(&mut up, index, running, &instances, &commander);
                        }
                    }
                    if len == 0 {
                        break;
                    }
                    off += (len + 3) & !3;
                }
            }
        })?;
    Ok(())
}

fn update(
    up: &mut HashMap<u32, bool>,
    index: u32,
    running: bool,
    instances: &[usize],
    commander: &Commander,
) {
    if up.insert(index, running) == Some(running) {
        return;
    }
    for &i in instances {
        commander.send(Command::Fault {
            instance: i,
            on: !running,
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_runs_and_missing_interfaces_do_not() {
        assert!(super::is_running("lo"), "lo is up with operstate unknown");
        assert!(!super::is_running("no-such-if0"));
    }
}

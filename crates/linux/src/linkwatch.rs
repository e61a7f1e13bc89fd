//! Tracks the carrier of every interface an instance runs on, as keepalived does by
//! default (its `dont_track_primary` turns that off): an interface that is down or has
//! lost its carrier puts its instances in FAULT (a master releases its VIPs), and its
//! return sends them back through BACKUP. It runs on its own thread with its own
//! netlink socket subscribed to link events, so a flood of them never reaches the
//! protocol thread: the tracker turns the changes that matter into verdicts.

use anyhow::{Context, Result};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

const RTMGRP_LINK: u32 = 1;

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

/// What the link watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// Link events were lost: re-read every interface that matters.
    Resync,
    /// A link event: interface index, usable or not.
    Link { ifindex: u32, running: bool },
}

fn open_socket() -> Result<Socket> {
    let mut sock = Socket::new(NETLINK_ROUTE).context("opening link-event socket")?;
    sock.bind(&SocketAddr::new(0, RTMGRP_LINK))
        .context("subscribing to link events")?;
    Ok(sock)
}

/// Follow link events and report every interface's usability (to the tracker, which
/// knows which interfaces matter). Receive errors are counted in `errors` (op
/// `link_events_receive`); on one other than a lost-events overflow the socket is
/// opened again and every interface re-read, so the watcher never dies silently.
pub fn start(
    report: impl Fn(LinkEvent) + Send + 'static,
    errors: std::sync::Arc<std::sync::Mutex<crate::status::IoErrors>>,
) -> Result<()> {
    let mut sock = open_socket()?;
    std::thread::Builder::new()
        .name("vipd-link".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sock.recv(&mut &mut buf[..], 0) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let first = errors
                            .lock()
                            .map(|mut c| c.count("link_events_receive", &e))
                            .unwrap_or(false);
                        if e.raw_os_error() != Some(libc::ENOBUFS) {
                            tracing::error!(
                                "link-event socket failed: {e}; opening it again and re-reading every interface"
                            );
                            std::thread::sleep(std::time::Duration::from_secs(1));
                            match open_socket() {
                                Ok(s) => sock = s,
                                Err(e) => tracing::error!("{e:#}; trying again"),
                            }
                        } else if first {
                            tracing::warn!("link events lost ({e}): re-reading every interface");
                        }
                        // Events were lost either way: have the truth re-read.
                        report(LinkEvent::Resync);
                        continue;
                    }
                };
                for m in crate::netlink::messages(&buf[..n]) {
                    let Ok(m) = m else {
                        // An event that cannot be decoded is a lost event.
                        report(LinkEvent::Resync);
                        break;
                    };
                    if let Some(e) = link_event(&m.payload) {
                        report(e);
                    }
                }
            }
        })?;
    Ok(())
}

/// What a link event reports, if it is one.
#[doc(hidden)]
pub fn link_event(payload: &NetlinkPayload<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
            let f = l.header.flags;
            Some(LinkEvent::Link {
                ifindex: l.header.index,
                running: f.contains(LinkFlags::Up) && f.contains(LinkFlags::Running),
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => Some(LinkEvent::Link {
            ifindex: l.header.index,
            running: false,
        }),
        _ => None,
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

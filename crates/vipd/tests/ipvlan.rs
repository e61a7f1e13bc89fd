//! `use_ipvlan` (keepalived 2.4.3): the VIPs live on an L2 ipvlan of the instance's
//! interface that has an address of its own, and adverts leave from that address.
//!
//! Where the scenario runs: directly when this kernel has ipvlan; otherwise (this
//! project's CI machines: `# CONFIG_IPVLAN is not set`) inside the bench/vm guest
//! (Debian's kernel under QEMU), as `<this test binary> --exact ipvlan_scenario` with
//! `VIPD_IN_VM=1`; neither: the wrapper says why it skipped.

mod common;

use common::{Cluster, Spec, VIPD};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use vipd_netns::vm;

/// The scenario itself: run by [`use_ipvlan_moves_the_vip_between_ipvlans`] where the
/// kernel has ipvlan; a no-op elsewhere.
#[test]
fn ipvlan_scenario() {
    if !vm::in_vm() && std::env::var_os("VIPD_TEST_IPVLAN").is_none() {
        return; // the wrapper runs it where ipvlan exists
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "ipvlan") else {
        return;
    };
    let vip = spec.vip();
    let own = |i: usize| -> IpAddr { format!("192.0.2.{}", 200 + i).parse().unwrap() };
    let config = |i: usize, prio: u8| {
        spec.clone()
            .with(&format!("use_ipvlan vipv {}/24 private", own(i)))
            .config(prio)
    };
    // The ipvlan's address is the router's address on this LAN, as where ipvlan is used
    // (containers): with a second address of the subnet on eth0, the kernel would route
    // replies out of eth0, whose ARP replies the ipvlan driver hands to the ipvlan.
    for i in [1, 2] {
        let addr = format!("{}/24", c.lan.router_addr_v4(i));
        c.lan
            .router(i)
            .ip(["addr", "del", addr.as_str(), "dev", "eth0"])
            .unwrap();
    }
    let capture = vipd_netns::Capture::start_with_echo_replies(c.lan.client(), "eth0").unwrap();
    c.start_vipd(1, &config(1, 200));
    c.start_vipd(2, &config(2, 100));
    let holds = |c: &Cluster, i: usize| vipd_netns::has_address(c.lan.router(i), "vipv", vip);
    assert!(
        vipd_netns::wait_for(spec.takeover_timeout(), Duration::from_millis(20), || {
            holds(&c, 1)
        }),
        "r1 never put the VIP on its ipvlan:\n{}",
        c.logs()
    );
    assert!(!holds(&c, 2));
    for i in [1, 2] {
        let link = c.lan.router(i).ip(["-d", "link", "show", "vipv"]).unwrap();
        assert!(
            link.contains("ipvlan") && link.contains("mode l2") && link.contains("private"),
            "r{i}: {link}"
        );
        assert!(vipd_netns::has_address(c.lan.router(i), "vipv", own(i)));
    }
    c.lan
        .client()
        .exec(&["ping", "-c", "1", "-W", "1", "192.0.2.100"])
        .unwrap();
    // The ipvlan shares r1's MAC: the client learns the VIP at r1's MAC.
    let neigh = c.lan.client().ip(["neigh", "show", "192.0.2.100"]).unwrap();
    assert!(neigh.contains(&c.lan.router_mac(1).to_string()), "{neigh}");
    // Failover to r2's ipvlan.
    c.lan.set_port(1, false).unwrap();
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || holds(&c, 2)
    ));
    // r2's gratuitous ARPs move the client to r2's MAC at once.
    let moved = vipd_netns::wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
        c.lan
            .client()
            .ip(["neigh", "show", "192.0.2.100"])
            .is_ok_and(|n| n.contains(&c.lan.router_mac(2).to_string()))
    });
    if !moved {
        let frames = capture.stop();
        let arps: Vec<String> = frames
            .iter()
            .filter(|f| matches!(f.kind, vipd_netns::FrameKind::Arp { .. }))
            .map(|f| format!("{:?} {} -> {} {:?}", f.at, f.src, f.dst, f.kind))
            .collect();
        panic!(
            "the client still has {} for the VIP; ARP seen:\n{}\n{}",
            c.lan.client().ip(["neigh", "show"]).unwrap_or_default(),
            arps.join("\n"),
            c.logs()
        );
    }
    if let Err(e) = c
        .lan
        .client()
        .exec(&["ping", "-c", "3", "-W", "2", "192.0.2.100"])
    {
        let r2 = c.lan.router(2);
        panic!(
            "{e}\nclient neigh: {}\nr2 addr: {}\nr2 route: {}\nr2 neigh: {}\nr2 link: {}\n{}",
            c.lan.client().ip(["neigh", "show"]).unwrap_or_default(),
            r2.ip(["addr"]).unwrap_or_default(),
            r2.ip(["route"]).unwrap_or_default(),
            r2.ip(["neigh"]).unwrap_or_default(),
            r2.ip(["-d", "-s", "link"]).unwrap_or_default(),
            c.logs()
        );
    }
    c.lan.set_port(1, true).unwrap();
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || holds(&c, 1) && !holds(&c, 2)
    ));
    let frames = capture.stop();
    let sources: std::collections::BTreeSet<IpAddr> = frames
        .iter()
        .filter(|f| f.is_vrrp())
        .map(|f| f.src)
        .collect();
    assert_eq!(
        sources,
        [own(1), own(2)].into_iter().collect(),
        "adverts leave from the ipvlans' addresses"
    );
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    let links = c.lan.router(1).ip(["-o", "link", "show"]).unwrap();
    assert!(
        !links.contains("vipv"),
        "the ipvlan vipd created is gone at stop:\n{links}"
    );
    println!("ipvlan scenario passed");
}

/// Whether this kernel can make an ipvlan (tried in a throw-away namespace).
fn host_has_ipvlan() -> bool {
    let Some(c) = Cluster::new(1, "ipvprobe") else {
        return false;
    };
    let r = c.lan.router(1);
    r.ip([
        "link", "add", "link", "eth0", "name", "ipvprobe", "type", "ipvlan", "mode", "l2",
    ])
    .is_ok()
}

#[test]
fn use_ipvlan_moves_the_vip_between_ipvlans() {
    if vm::in_vm() || std::env::var_os("VIPD_TEST_IPVLAN").is_some() {
        return; // the inner run itself
    }
    if vipd_netns::skip_unless_root() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let args = ["--exact", "--nocapture", "ipvlan_scenario"];
    let Some((status, out)) = vm::rerun_natively_or_in_guest(
        host_has_ipvlan(),
        "ipvlan",
        &exe,
        &args,
        &[("VIPD_TEST_IPVLAN", "1")],
        &[Path::new(VIPD)],
        Duration::from_secs(600),
    ) else {
        return;
    };
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("ipvlan scenario passed"), "{out}");
}

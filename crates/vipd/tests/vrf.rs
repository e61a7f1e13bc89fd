//! `vrf VRF_IF` (keepalived 2.4.3): a unicast instance without `interface` operates in
//! a VRF: its VRRP socket is bound to the VRF device, so its adverts are routed by the
//! VRF's table and the peers' adverts, arriving on the VRF's interfaces, reach it.
//!
//! Where the scenario runs: directly when this kernel has VRF; otherwise (this
//! project's CI machines have no vrf module) inside the bench/vm guest (Debian's
//! kernel under QEMU), as `<this test binary> --exact vrf_scenario` with
//! `VIPD_IN_VM=1`; neither: the wrapper says why it skipped.

mod common;

use common::{Cluster, VIPD};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use vipd_netns::vm;

fn config(lan: &vipd_netns::Lan, i: usize, priority: u8) -> String {
    let own = lan.router_addr_v4(i);
    let peer = lan.router_addr_v4(3 - i);
    format!(
        "global_defs {{\n    router_id r{i}\n    vrrp_garp_master_delay 0\n}}\n\
         vrrp_instance V {{\n    state BACKUP\n    vrf blue\n    virtual_router_id 51\n    \
         priority {priority}\n    advert_int 0.1\n    version 3\n    unicast_src_ip {own}\n    \
         unicast_peer {{\n        {peer}\n    }}\n    virtual_ipaddress {{\n        \
         192.0.2.100/24 dev eth0\n    }}\n}}\n"
    )
}

/// The scenario itself: run by [`vrf_instances_elect_through_the_vrf`] where the
/// kernel has VRF; a no-op elsewhere.
#[test]
fn vrf_scenario() {
    if !vm::in_vm() && std::env::var_os("VIPD_TEST_VRF").is_none() {
        return; // the wrapper runs it where VRF exists
    }
    let Some(mut c) = Cluster::new(2, "vrf") else {
        return;
    };
    let vip: IpAddr = "192.0.2.100".parse().unwrap();
    // eth0 in VRF `blue` (table 10): the LAN's route leaves the main table, so a
    // socket that is not in the VRF has no route to the peer.
    let make_vrf = |c: &Cluster, i: usize| {
        let r = c.lan.router(i);
        r.ip_batch(
            "link add blue type vrf table 10\nlink set blue up\nlink set eth0 master blue\n",
        )
        .unwrap();
        let addr = format!("{}/24", c.lan.router_addr_v4(i));
        if !r
            .ip(["-4", "addr", "show", "dev", "eth0"])
            .unwrap()
            .contains(&addr)
        {
            r.ip(["addr", "add", addr.as_str(), "dev", "eth0"]).unwrap();
        }
        let main = r.ip(["route", "show", "table", "main"]).unwrap();
        assert!(!main.contains("192.0.2.0/24"), "r{i} main table: {main}");
        let blue = r.ip(["route", "show", "vrf", "blue"]).unwrap();
        assert!(blue.contains("192.0.2.0/24"), "r{i} vrf blue: {blue}");
    };
    make_vrf(&c, 1);
    let (c1, c2) = (config(&c.lan, 1, 200), config(&c.lan, 2, 100));
    // r2's VRF does not exist yet: with dynamic_interfaces it waits in FAULT.
    let c2 = c2.replace(
        "    router_id r2\n",
        "    router_id r2\n    dynamic_interfaces\n",
    );
    c.start_vipd(2, &c2);
    assert_eq!(c.instance(2)["state"], "FAULT", "{}", c.log(2));
    c.start_vipd(1, &c1);
    let timeout = Duration::from_secs(3);
    c.wait_holders(vip, &[1], timeout);
    // The VRF appears on r2: vipd reloads and the instance joins the election.
    make_vrf(&c, 2);
    assert!(
        vipd_netns::wait_for(timeout, Duration::from_millis(50), || {
            c.instance(2)["state"] == "BACKUP"
        }),
        "{}",
        c.logs()
    );
    assert!(c.log(2).contains("`blue` appeared"), "{}", c.log(2));
    // r2 hears r1 through the VRF: it stays BACKUP (out of the VRF it could neither
    // send to r1 nor would r1 hear it: both would be MASTER).
    c.assert_stable(vip, &[1], Duration::from_millis(800));
    let st = c.instance(2);
    assert_eq!(st["state"], "BACKUP", "{st}\n{}", c.logs());
    assert!(st["adverts_received"].as_u64().unwrap() >= 5, "{st}");
    assert_eq!(c.instance(1)["state"], "MASTER");
    // A clean stop: r2 takes over at once (priority 0 from r1, through the VRF).
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    c.wait_holders(vip, &[2], Duration::from_secs(1));
    println!("vrf scenario passed");
}

/// Whether this kernel can make a VRF device (tried in a throw-away namespace).
fn host_has_vrf() -> bool {
    let Some(c) = Cluster::new(1, "vrfprobe") else {
        return false;
    };
    c.lan
        .router(1)
        .ip(["link", "add", "vrfprobe", "type", "vrf", "table", "99"])
        .is_ok()
}

#[test]
fn vrf_instances_elect_through_the_vrf() {
    if vm::in_vm() || std::env::var_os("VIPD_TEST_VRF").is_some() {
        return; // the inner run itself
    }
    if vipd_netns::skip_unless_root() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let args = ["--exact", "--nocapture", "vrf_scenario"];
    let Some((status, out)) = vm::rerun_natively_or_in_guest(
        host_has_vrf(),
        "vrf",
        &exe,
        &args,
        &[("VIPD_TEST_VRF", "1")],
        &[Path::new(VIPD)],
        Duration::from_secs(600),
    ) else {
        return;
    };
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("vrf scenario passed"), "{out}");
}

//! Interfaces beyond the instance's own, in real network namespaces:
//! `dynamic_interfaces` (interfaces that appear after start-up) and `use_vmac_addr`
//! (a VMAC for each other interface / address family of the VIPs, named as keepalived
//! 2.4.3 names them).

mod common;

use common::{Cluster, Spec};
use std::net::IpAddr;
use std::time::Duration;
use vipd_netns::{has_address, wait_for, Netns, Version};

/// A veth `name` (its peer `{name}p`) in `ns`, both ends up: an extra interface.
fn add_veth(ns: &Netns, name: &str) {
    ns.ip_batch(&format!(
        "link add {name} type veth peer name {name}p\nlink set {name} up\nlink set {name}p up\n"
    ))
    .unwrap();
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The instance's interface and the interface of one of its VIPs do not exist when
/// vipd starts: with `dynamic_interfaces` it runs, the instance in FAULT until both
/// have appeared (the eVIP's `dev` is tracked); each is used as soon as it appears (up).
#[test]
fn dynamic_interfaces_wait_for_the_interfaces_to_appear() {
    let spec =
        Spec::v3().with("virtual_ipaddress_excluded {\n        198.51.100.10/24 dev ex1\n    }");
    let Some(mut c) = Cluster::new(1, "dynif") else {
        return;
    };
    let vip = spec.vip();
    let config = spec.config(200).replace(
        "    router_id test\n",
        "    router_id test\n    dynamic_interfaces\n",
    );
    let r1 = c.lan.router(1);
    c.lan.delete_link(1).unwrap();
    assert!(r1.ip(["link", "show", "eth0"]).is_err());

    // keepalived's way without the keyword: the configuration is refused.
    let out = std::process::Command::new(common::VIPD)
        .args(["check-config", "-f"])
        .arg({
            let f = c.dir.join("plain.conf");
            std::fs::write(&f, spec.config(200)).unwrap();
            f
        })
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("not found"),
        "{text}"
    );

    c.start_vipd(1, &config);
    let st = c.instance(1);
    assert_eq!(st["state"], "FAULT", "{st}\n{}", c.log(1));
    assert!(c.log(1).contains("dynamic_interfaces"), "{}", c.log(1));

    // The instance's interface appears: the instance is used, but stays in FAULT while
    // the eVIP's interface is missing — as in keepalived, an address's own `dev` is
    // tracked like the instance's interface (unless the line says `no_track`).
    c.lan.recreate_link(1).unwrap();
    assert!(
        wait_for(
            spec.takeover_timeout() * 2,
            Duration::from_millis(20),
            || { c.log(1).contains("`eth0` appeared") || c.log(1).contains("`eth0`: re-created") }
        ),
        "{}",
        c.log(1)
    );
    assert!(
        wait_for(
            spec.takeover_timeout() * 2,
            Duration::from_millis(20),
            || { c.log(1).contains("FAULT because of interface `ex1`") }
        ),
        "{}",
        c.log(1)
    );
    assert_eq!(c.instance(1)["state"], "FAULT", "{}", c.log(1));
    assert!(c.holders(vip).is_empty());
    let r1 = c.lan.router(1);

    // The eVIP's interface appears: the instance leaves FAULT, takes its VIP and adds
    // the eVIP (priority 200, alone).
    add_veth(r1, "ex1");
    assert!(
        wait_for(
            spec.takeover_timeout() * 2,
            Duration::from_millis(20),
            || { has_address(r1, "ex1", ip("198.51.100.10")) }
        ),
        "{}",
        c.log(1)
    );
    assert!(
        c.log(1).contains("`ex1` appeared") || c.log(1).contains("`ex1`: re-created"),
        "{}",
        c.log(1)
    );
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    let r1 = c.lan.router(1);
    assert!(!has_address(r1, "ex1", ip("198.51.100.10")));
    assert!(!has_address(r1, "eth0", vip));
}

/// Every link of `ns` stacked on another, as `name@base mac` lines, sorted.
fn stacked_links(ns: &Netns) -> Vec<String> {
    let out = ns.ip(["-br", "link"]).unwrap();
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let mac = w.nth(1)?;
            let (n, base) = name.split_once('@')?;
            (n != "ex1p" && (base == "eth0" || base == "ex1")).then(|| format!("{n}@{base} {mac}"))
        })
        .collect();
    v.sort();
    v
}

/// Whether router 1 has each address on its link.
fn all_on(c: &Cluster, wanted: &[(&str, &str)]) -> bool {
    wanted
        .iter()
        .all(|(dev, a)| has_address(c.lan.router(1), dev, ip(a)))
}

/// The links keepalived 2.4.3 makes on router 1 for `config` (once it has put the
/// `wanted` addresses on them); it is stopped again and they are gone.
fn keepalived_links(
    c: &mut Cluster,
    config: &str,
    wanted: &[(&str, &str)],
    timeout: Duration,
) -> Vec<String> {
    c.start_keepalived_version(1, config, Version::V2_4_3);
    assert!(
        wait_for(timeout, Duration::from_millis(50), || all_on(c, wanted)),
        "keepalived 2.4.3: {:?}\n{}",
        c.lan.router(1).ip(["-br", "addr"]),
        c.log(1)
    );
    let links = stacked_links(c.lan.router(1));
    let log = c.log(1);
    c.stop(1);
    assert!(
        wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            stacked_links(c.lan.router(1)).is_empty()
        }),
        "{:?}\n{log}",
        stacked_links(c.lan.router(1))
    );
    links
}

const VMAC_ADDR_VIPS: [(&str, &str); 5] = [
    ("vrrp.51", "192.0.2.100"),
    ("vx.51", "198.51.100.10"),
    ("vx.51", "203.0.113.10"),
    ("vx6.51", "2001:db8::10"),
    ("vx1.51", "2001:db8:1::10"),
];

/// `use_vmac_addr`: the same links, with the same names, MACs and addresses, as
/// keepalived 2.4.3 makes for the same configuration; a reload keeps them; vipd removes
/// them at stop.
#[test]
fn use_vmac_addr_makes_keepalived_243s_links() {
    if Version::V2_4_3.require().is_none() {
        return;
    }
    let spec = Spec::v3()
        .with("use_vmac")
        .with("use_vmac_addr")
        .with("garp_extra_if 1")
        .with("virtual_ipaddress_excluded {\n        198.51.100.10/24 dev ex1\n        2001:db8::10/64\n        2001:db8:1::10/64 dev ex1\n        203.0.113.10/24 dev ex1\n    }");
    let Some(mut c) = Cluster::new(1, "vmacaddr") else {
        return;
    };
    let config = spec.config(200).replace(
        "    router_id test\n",
        "    router_id test\n    vmac_addr_prefix vx\n",
    );
    add_veth(c.lan.router(1), "ex1");
    let all_there = |c: &Cluster| all_on(c, &VMAC_ADDR_VIPS);
    let timeout = spec.takeover_timeout() * 2;
    let keepalived = keepalived_links(&mut c, &config, &VMAC_ADDR_VIPS, timeout);

    let capture = vipd_netns::Capture::start(c.lan.router(1), "ex1p").unwrap();
    c.start_vipd(1, &config);
    assert!(
        wait_for(timeout, Duration::from_millis(20), || all_there(&c)),
        "vipd: {:?}\n{}",
        c.lan.router(1).ip(["-br", "addr"]),
        c.log(1)
    );
    let vipd = stacked_links(c.lan.router(1));
    assert_eq!(vipd, keepalived);
    assert_eq!(
        vipd,
        [
            "vrrp.51@eth0 00:00:5e:00:01:33",
            "vx.51@ex1 00:00:5e:00:01:33",
            "vx1.51@ex1 00:00:5e:00:02:33",
            "vx6.51@eth0 00:00:5e:00:02:33",
        ]
    );
    let link = c
        .lan
        .router(1)
        .ip(["-d", "link", "show", "vx1.51"])
        .unwrap();
    assert!(link.contains("macvlan mode private"), "{link}");
    // The base interface's link-local address is the VMAC's too (as keepalived).
    let ll = c.lan.router_link_local(1).unwrap();
    assert!(has_address(c.lan.router(1), "vx6.51", IpAddr::V6(ll)));

    // `garp_extra_if 1` (without `all`): a gratuitous ARP a second on the VMACs of
    // use_vmac_addr, from their virtual MAC.
    let garps = || {
        capture
            .gratuitous_arps()
            .into_iter()
            .filter(|f| f.announced_addr() == Some(ip("198.51.100.10")))
            .map(|f| f.src_mac.to_string())
            .collect::<Vec<_>>()
    };
    std::thread::sleep(Duration::from_millis(1200));
    let before = garps().len();
    std::thread::sleep(Duration::from_millis(2200));
    let after = garps();
    assert!(
        (2..=3).contains(&(after.len() - before)),
        "{before} -> {after:?}\n{}",
        c.log(1)
    );
    assert!(after.iter().all(|m| m == "00:00:5e:00:01:33"), "{after:?}");

    // A reload finds the links again: no new names, nothing moves.
    let (ok, text) = c.reload(1, &config);
    assert!(ok, "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stacked_links(c.lan.router(1)), vipd);
    assert!(all_there(&c), "{}", c.log(1));

    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    assert_eq!(
        stacked_links(c.lan.router(1)),
        Vec::<String>::new(),
        "the VMACs vipd created are gone at stop"
    );
}

/// keepalived 2.4.3: a unicast instance may omit `interface` (given `unicast_src_ip`);
/// its socket is bound to no device and its VIP goes on the `dev` it names.
#[test]
fn unicast_instances_without_interface_elect_and_fail_over() {
    without_interface(false, "noif");
}

/// The same with keepalived 2.4.3 as the master.
#[test]
fn keepalived243_master_vipd_backup_without_interface() {
    if Version::V2_4_3.require().is_none() {
        return;
    }
    without_interface(true, "noifka");
}

fn without_interface(keepalived_master: bool, tag: &str) {
    let Some(mut c) = Cluster::new(2, tag) else {
        return;
    };
    let vip = ip("192.0.2.100");
    let config = |i: usize, priority: u8| {
        format!(
            "global_defs {{\n    router_id r{i}\n    vrrp_garp_master_delay 0\n}}\n\
             vrrp_instance U {{\n    state BACKUP\n    virtual_router_id 51\n    \
             priority {priority}\n    advert_int 0.1\n    version 3\n    unicast_src_ip {}\n    \
             unicast_peer {{\n        {}\n    }}\n    virtual_ipaddress {{\n        \
             192.0.2.100/24 dev eth0\n    }}\n}}\n",
            c.lan.router_addr_v4(i),
            c.lan.router_addr_v4(3 - i)
        )
    };
    let (c1, c2) = (config(1, 200), config(2, 100));
    c.start_vipd(2, &c2);
    if keepalived_master {
        c.start_keepalived_version(1, &c1, Version::V2_4_3);
    } else {
        c.start_vipd(1, &c1);
    }
    c.wait_holders(vip, &[1], Duration::from_secs(3));
    c.assert_stable(vip, &[1], Duration::from_millis(500));
    let st = c.instance(2);
    assert_eq!(st["state"], "BACKUP", "{st}\n{}", c.logs());
    assert!(st["adverts_received"].as_u64().unwrap() >= 3, "{st}");
    let stopped = c.stop(1).and_then(|s| s.code());
    assert!(keepalived_master || stopped == Some(0), "{stopped:?}");
    c.wait_holders(vip, &[2], Duration::from_secs(1));
}

/// An address's own `use_vmac` (keepalived 2.4.3): a VMAC for it, on the instance's
/// interface too when the instance has no VMAC, named as keepalived names them.
#[test]
fn address_use_vmac_makes_keepalived_243s_links() {
    if Version::V2_4_3.require().is_none() {
        return;
    }
    let spec = Spec::v3().with(
        "virtual_ipaddress_excluded {\n        198.51.100.10/24 dev ex1 use_vmac\n        203.0.113.10/24 dev ex1\n    }",
    );
    let Some(mut c) = Cluster::new(1, "vipvmac") else {
        return;
    };
    let config = spec.config(200).replace(
        "        192.0.2.100/24\n",
        "        192.0.2.100/24 use_vmac\n",
    );
    add_veth(c.lan.router(1), "ex1");
    let wanted = [
        ("vrrp.51", "192.0.2.100"),
        ("vrrp1.51", "198.51.100.10"),
        ("ex1", "203.0.113.10"),
    ];
    let timeout = spec.takeover_timeout() * 2;
    let keepalived = keepalived_links(&mut c, &config, &wanted, timeout);
    c.start_vipd(1, &config);
    assert!(
        wait_for(timeout, Duration::from_millis(20), || all_on(&c, &wanted)),
        "vipd: {:?}\n{}",
        c.lan.router(1).ip(["-br", "addr"]),
        c.log(1)
    );
    let vipd = stacked_links(c.lan.router(1));
    assert_eq!(vipd, keepalived);
    assert_eq!(
        vipd,
        [
            "vrrp.51@eth0 00:00:5e:00:01:33",
            "vrrp1.51@ex1 00:00:5e:00:01:33"
        ]
    );
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    assert!(stacked_links(c.lan.router(1)).is_empty());
}

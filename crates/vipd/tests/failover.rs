//! vipd against vipd in network namespaces: election, crash failover, preempt-back,
//! graceful handover, nopreempt, stale VIPs after kill -9.

mod common;

use common::{add_ext_veth, Cluster, Spec};
use std::time::{Duration, Instant};

/// r1 (priority 200) wins; its cable is pulled (r1 goes FAULT) and r2 takes over; the
/// cable comes back and r1, back in BACKUP, preempts; r2 releases.
fn failover_and_preempt_back(spec: Spec, tag: &str) {
    let Some(mut c) = Cluster::new(2, tag) else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(2, &spec.config(100));
    c.start_vipd(1, &spec.config(200));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    c.assert_stable(vip, &[1], spec.takeover_timeout() / 2);
    assert_eq!(c.instance(1)["state"], "MASTER");
    assert_eq!(c.instance(2)["state"], "BACKUP");
    assert_eq!(
        c.instance(2)["master"],
        c.instance(1)["master"],
        "r2 knows who the master is"
    );

    c.lan.set_port(1, false).unwrap();
    // r1 lost its carrier: FAULT, VIP released (keepalived's default interface
    // tracking); r2 hears no adverts and takes over.
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    assert_eq!(c.instance(1)["state"], "FAULT");
    assert_eq!(c.instance(2)["state"], "MASTER");

    c.lan.set_port(1, true).unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    assert_eq!(c.instance(2)["state"], "BACKUP");
    assert!(c.instance(2)["became_master"].as_u64().unwrap() >= 1);
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    assert_eq!(c.stop(2).and_then(|s| s.code()), Some(0));
    assert!(
        c.holders(vip).is_empty(),
        "SIGTERM removes every VIP vipd added"
    );
}

#[test]
fn v2_ipv4_failover_and_preempt_back() {
    failover_and_preempt_back(Spec::v2(), "fo-v2");
}

#[test]
fn v3_ipv4_failover_and_preempt_back() {
    failover_and_preempt_back(Spec::v3(), "fo-v3");
}

#[test]
fn v3_ipv6_failover_and_preempt_back() {
    failover_and_preempt_back(Spec::v3_ipv6(), "fo-v6");
}

#[test]
fn sigterm_hands_over_after_skew_time_only() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "term") else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(1, &spec.config(200));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    let t = Instant::now();
    // Watch the VIP while r1 leaves: make-before-break means it is never unheld.
    let watcher = {
        let r1 = c.lan.router(1).name().to_string();
        let r2 = c.lan.router(2).name().to_string();
        std::thread::spawn(move || {
            let held = |ns: &str| {
                let out = std::process::Command::new("ip")
                    .args(["-n", ns, "-o", "addr", "show", "dev", "eth0"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).contains("192.0.2.100/")
            };
            let end = Instant::now() + Duration::from_millis(600);
            let mut unheld = 0;
            while Instant::now() < end {
                if !held(&r1) && !held(&r2) {
                    unheld += 1;
                }
            }
            unheld
        })
    };
    assert_eq!(
        c.stop(1).and_then(|s| s.code()),
        Some(0),
        "vipd exits 0 on SIGTERM"
    );
    c.wait_holders(vip, &[2], Duration::from_secs(2));
    let took = t.elapsed();
    assert_eq!(
        watcher.join().unwrap(),
        0,
        "the VIP was on neither router at some point\n{}",
        c.logs()
    );
    // Skew_Time at priority 100 and 100 ms adverts is 60.9 ms; the master-down interval
    // would be 360 ms. Only a priority-0 advert explains a take-over well before that.
    assert!(
        took < Duration::from_millis(300),
        "handover took {took:?}\n{}",
        c.logs()
    );
    let st = c.instance(2);
    assert_eq!(st["priority_zero_received"], 1);
    assert!(
        st["last_transition"][1]
            .as_str()
            .unwrap()
            .contains("priority 0"),
        "{st}"
    );
}

#[test]
fn nopreempt_keeps_the_current_master() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "nopre") else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    c.start_vipd(1, &spec.clone().with("nopreempt").config(200));
    c.assert_stable(vip, &[2], Duration::from_secs(2));
    assert_eq!(c.instance(1)["state"], "BACKUP");
    c.crash(2);
    c.lan
        .router(2)
        .ip(["addr", "del", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout());
}

#[test]
fn restart_after_kill_9_removes_stale_vip() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "stale") else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(1, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    c.crash(1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.holders(vip), vec![1], "kill -9 leaves the VIP behind");
    c.start_vipd(2, &spec.config(200));
    c.wait_holders(vip, &[1, 2], spec.takeover_timeout());
    // The restarted r1 finds r2 (higher priority) as master and must drop its stale copy.
    c.start_vipd(1, &spec.config(100));
    c.wait_holders(vip, &[2], Duration::from_secs(2));
    c.assert_stable(vip, &[2], Duration::from_secs(1));
    assert!(c.log(1).contains("stale"), "{}", c.log(1));
}

#[test]
fn address_owner_takes_over_at_once_and_keeps_foreign_addresses() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "owner") else {
        return;
    };
    // An address the administrator configured is never removed by vipd.
    c.lan
        .router(1)
        .ip(["addr", "add", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    let t = Instant::now();
    c.start_vipd(1, &spec.config(255));
    assert_eq!(c.instance(1)["state"], "MASTER");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    assert_eq!(
        c.holders(spec.vip()),
        vec![1],
        "vipd removed an address it did not add"
    );
}

#[test]
fn excluded_and_static_addresses() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "evip") else {
        return;
    };
    let evip: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let static_ip: std::net::IpAddr = "203.0.113.9".parse().unwrap();
    let conf = format!(
        "static_ipaddress {{\n    {static_ip}/32 dev eth0\n}}\n{}",
        spec.clone()
            .with(&format!(
                "virtual_ipaddress_excluded {{\n        {evip}/32\n    }}"
            ))
            .config(150)
    );
    let capture = vipd_netns::Capture::start(c.lan.client(), "eth0").unwrap();
    c.start_vipd(1, &conf);
    assert!(
        vipd_netns::has_address(c.lan.router(1), "eth0", static_ip),
        "static address added at start"
    );
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    assert!(
        vipd_netns::has_address(c.lan.router(1), "eth0", evip),
        "eVIP added with the VIPs"
    );
    std::thread::sleep(Duration::from_millis(300));
    let frames = capture.stop();
    let adverts: Vec<_> = frames.iter().filter(|f| f.is_vrrp()).collect();
    assert!(!adverts.is_empty());
    for a in &adverts {
        assert_eq!(
            a.vrrp_addresses(),
            vec![spec.vip()],
            "eVIPs are not advertised"
        );
    }
    assert!(
        frames
            .iter()
            .any(|f| f.is_gratuitous_arp() && f.announced_addr() == Some(evip)),
        "eVIPs are announced"
    );
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    for a in [spec.vip(), evip, static_ip] {
        assert!(
            !vipd_netns::has_address(c.lan.router(1), "eth0", a),
            "{a} left behind"
        );
    }
}

/// A large VIP set (issue 16: netlink batching): 2,000 addresses on one instance —
/// every IPv4 /32 the documentation ranges hold beside the LAN's own, IPv6 /128s for
/// the rest, as eVIPs — all go into the kernel, each is announced (GARP / NA) on the
/// wire `garp_master_repeat` (5) times (and once more in the follow-up), no more, and
/// all go at stop.
#[test]
fn two_thousand_vips_installed_announced_and_removed() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "manyvips") else {
        return;
    };
    let mut vips: Vec<(std::net::IpAddr, u8)> = Vec::new();
    for (net, hosts) in [
        ([198, 51, 100], 1..=254),
        ([203, 0, 113], 1..=254),
        ([192, 0, 2], 101..=254),
    ] {
        for h in hosts {
            vips.push((
                std::net::Ipv4Addr::new(net[0], net[1], net[2], h).into(),
                32,
            ));
        }
    }
    for k in 0..2_000 - vips.len() {
        vips.push((format!("2001:db8::1:{k:x}").parse().unwrap(), 128));
    }
    let lines: String = vips
        .iter()
        .map(|(a, len)| format!("        {a}/{len}\n"))
        .collect();
    let conf = spec
        .clone()
        .with(&format!("virtual_ipaddress_excluded {{\n{lines}    }}"))
        .config(150);
    let wanted: std::collections::HashSet<std::net::IpAddr> =
        vips.iter().map(|v| v.0).chain([spec.vip()]).collect();
    let present = |c: &Cluster| {
        c.lan
            .router(1)
            .run(|| {
                let mut nl = vipd_linux::netlink::Rtnetlink::open().unwrap();
                let all = nl.dump_addresses().unwrap();
                all.iter().filter(|k| wanted.contains(&k.addr)).count()
            })
            .unwrap()
    };
    let capture = vipd_netns::Capture::start(c.lan.client(), "eth0").unwrap();
    c.start_vipd(1, &conf);
    let installed =
        vipd_netns::wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
            present(&c) == wanted.len()
        });
    assert!(
        installed,
        "{} of {} installed\n{}",
        present(&c),
        wanted.len(),
        c.logs()
    );
    // How many VIPs were announced at least `times` times (garp_master_repeat: 5 each,
    // the repeats held back until the addresses are in).
    let announced_times = |frames: &[vipd_netns::Frame], times: usize| {
        let mut n = std::collections::HashMap::new();
        for a in frames
            .iter()
            .filter(|f| f.is_gratuitous_arp() || f.is_unsolicited_na())
            .filter_map(|f| f.announced_addr())
            .filter(|a| wanted.contains(a))
        {
            *n.entry(a).or_insert(0) += 1;
        }
        n.values().filter(|&&k| k >= times).count()
    };
    let announced = |frames: &[vipd_netns::Frame]| announced_times(frames, 5);
    let all_announced =
        vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            announced(&capture.snapshot()) == wanted.len()
        });
    assert!(
        all_announced,
        "{} of {} announced\n{}",
        announced(&capture.stop()),
        wanted.len(),
        c.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    let frames = capture.stop();
    assert_eq!(
        announced_times(&frames, 7),
        0,
        "five announcements each and the follow-up 1.1 s later, no more \
         (vrrp_garp_master_delay 0: no second round): {:?}",
        (6..12)
            .map(|t| announced_times(&frames, t))
            .collect::<Vec<_>>()
    );
    assert_eq!(c.instance(1)["state"], "MASTER");
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0), "{}", c.logs());
    assert_eq!(present(&c), 0, "VIPs left behind");
}

/// keepalived's address options (`peer`, `home`, `-nodad`, `mngtmpaddr`,
/// `noprefixroute`, `autojoin`, `preferred_lft`, `no_track`) on VIPs, eVIPs and static
/// addresses reach the kernel, and everything goes at stop. A `no_track` VIP deleted
/// by someone else leaves the master MASTER and is not put back; another VIP deleted
/// takes it to BACKUP and back to MASTER after Skew_Time (keepalived's meaning).
#[test]
fn address_options_reach_the_kernel_and_deleted_vips_follow_no_track() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "addropt") else {
        return;
    };
    let statics = "static_ipaddress {\n    203.0.113.9/24 dev eth0 noprefixroute\n    2001:db8:1::9/64 dev eth0 mngtmpaddr preferred_lft 0\n}\n";
    let evips = "virtual_ipaddress_excluded {\n        2001:db8:2::7/64 home noprefixroute\n        2001:db8:3::8/64 -nodad preferred_lft 600\n        2001:db8::9\n        233.252.0.1 autojoin\n    }";
    let conf = format!("{statics}{}", spec.clone().with(evips).config(150)).replace(
        "192.0.2.100/24\n",
        "192.0.2.100/24 noprefixroute\n        192.0.2.101 peer 192.0.2.102 no_track\n",
    );
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let r1 = c.lan.router(1);
    let show = r1.ip(["-d", "-j", "addr", "show", "dev", "eth0"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    let info = v[0]["addr_info"].as_array().unwrap().clone();
    let find = |a: &str| {
        info.iter()
            .find(|i| i["local"] == a)
            .unwrap_or_else(|| panic!("{a} not in {show}"))
            .clone()
    };
    let flags = |a: &str, want: &[&str]| {
        let i = find(a);
        for f in want {
            assert_eq!(i[*f], true, "{a}: {f}: {i}");
        }
        i
    };
    flags("192.0.2.100", &["noprefixroute"]);
    let p = find("192.0.2.101");
    assert_eq!(p["address"], "192.0.2.102", "peer: {p}");
    flags("203.0.113.9", &["noprefixroute"]);
    let m = flags("2001:db8:1::9", &["mngtmpaddr", "nodad", "deprecated"]);
    assert_eq!(m["preferred_life_time"], 0, "{m}");
    flags("2001:db8:2::7", &["home", "noprefixroute", "nodad"]);
    let d = find("2001:db8:3::8");
    assert_eq!(d["nodad"], serde_json::Value::Null, "-nodad: DAD runs: {d}");
    let lft = d["preferred_life_time"].as_u64().unwrap();
    assert!(lft > 500 && lft <= 600, "{d}");
    // keepalived: an IPv6 /128 without preferred_lft is deprecated.
    flags("2001:db8::9", &["nodad", "deprecated"]);
    flags("233.252.0.1", &["autojoin"]);
    assert!(r1
        .ip(["maddr", "show", "dev", "eth0"])
        .unwrap()
        .contains("233.252.0.1"));
    let routes = r1.ip(["route", "show", "dev", "eth0"]).unwrap()
        + &r1.ip(["-6", "route", "show", "dev", "eth0"]).unwrap();
    for (prefix, there) in [
        ("192.0.2.0/24", true), // the LAN's own address
        ("203.0.113.0/24", false),
        ("2001:db8:2::/64", false),
        ("2001:db8:3::/64", true),
        ("2001:db8:1::/64", true),
    ] {
        assert_eq!(routes.contains(prefix), there, "{prefix}: {routes}");
    }
    assert_eq!(
        routes.matches("192.0.2.0/24").count(),
        1,
        "the VIP adds no prefix route: {routes}"
    );

    // no_track: deleting the VIP leaves the instance MASTER; it stays deleted.
    r1.ip([
        "addr",
        "del",
        "192.0.2.101",
        "peer",
        "192.0.2.102",
        "dev",
        "eth0",
    ])
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.instance(1)["state"], "MASTER");
    let ip1: std::net::IpAddr = "192.0.2.101".parse().unwrap();
    assert!(!vipd_netns::has_address(c.lan.router(1), "eth0", ip1));
    assert!(vipd_netns::has_address(c.lan.router(1), "eth0", spec.vip()));

    // Without no_track (keepalived's default): deleting a VIP takes the master to
    // BACKUP, and it takes over again after Skew_Time, which puts back every VIP (the
    // no_track one too: it comes back with the next take-over).
    c.lan
        .router(1)
        .ip(["addr", "del", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    assert!(
        vipd_netns::wait_for(Duration::from_secs(4), Duration::from_millis(50), || {
            vipd_netns::has_address(c.lan.router(1), "eth0", spec.vip())
                && vipd_netns::has_address(c.lan.router(1), "eth0", ip1)
        }),
        "{}",
        c.log(1)
    );
    let log = c.log(1);
    assert!(
        log.contains("MASTER -> BACKUP (VIP 192.0.2.100 deleted by someone else)"),
        "{log}"
    );
    assert!(log.contains("BACKUP -> MASTER"), "{log}");
    assert_eq!(c.instance(1)["state"], "MASTER");
    let p = c.lan.router(1).ip(["addr", "show", "dev", "eth0"]).unwrap();
    assert!(p.contains("192.0.2.101 peer 192.0.2.102/32"), "{p}");

    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    let left = c.lan.router(1).ip(["addr", "show", "dev", "eth0"]).unwrap();
    for a in [
        "192.0.2.100",
        "203.0.113.9",
        "2001:db8:1::9",
        "2001:db8:2::7",
        "2001:db8:3::8",
        "2001:db8::9",
        "233.252.0.1",
    ] {
        assert!(!left.contains(a), "{a} left behind: {left}");
    }
}

#[test]
fn virtual_routes_follow_the_master_and_static_routes_stay() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "routes") else {
        return;
    };
    let vip = spec.vip();
    let routing = "virtual_routes {\n        198.51.100.0/24 dev eth0\n    }\n    virtual_rules {\n        from 192.0.2.100/32 table 100 priority 1000\n    }";
    let statics = "static_routes {\n    203.0.113.0/24 dev eth0 table 200\n}\n";
    c.start_vipd(
        1,
        &format!("{statics}{}", spec.clone().with(routing).config(200)),
    );
    c.start_vipd(2, &spec.clone().with(routing).config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    let routes = |lan: &vipd_netns::Lan, i: usize| lan.router(i).ip(["route", "show"]).unwrap();
    let rules = |lan: &vipd_netns::Lan, i: usize| lan.router(i).ip(["rule", "show"]).unwrap();
    let has_vroute = |lan: &vipd_netns::Lan, i: usize| {
        routes(lan, i).contains("198.51.100.0/24 dev eth0 proto 118")
    };
    let has_vrule =
        |lan: &vipd_netns::Lan, i: usize| rules(lan, i).contains("from 192.0.2.100 lookup 100");
    assert!(
        vipd_netns::wait_for(
            Duration::from_secs(2),
            Duration::from_millis(20),
            || has_vroute(&c.lan, 1) && has_vrule(&c.lan, 1)
        ),
        "{}\n{}",
        routes(&c.lan, 1),
        rules(&c.lan, 1)
    );
    assert!(
        !has_vroute(&c.lan, 2) && !has_vrule(&c.lan, 2),
        "a backup has no virtual routes"
    );
    let static_route = |lan: &vipd_netns::Lan, i: usize| {
        lan.router(i)
            .ip(["route", "show", "table", "200"])
            .unwrap()
            .contains("203.0.113.0/24 dev eth0 proto 118")
    };
    assert!(static_route(&c.lan, 1));

    c.lan.set_port(1, false).unwrap(); // r1 FAULT: its virtual routes go, r2's come
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    assert!(vipd_netns::wait_for(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || has_vroute(&c.lan, 2) && !has_vroute(&c.lan, 1)
    ));
    assert!(!has_vrule(&c.lan, 1) && has_vrule(&c.lan, 2));
    assert!(
        static_route(&c.lan, 1),
        "static routes stay whatever the state"
    );
    c.lan.set_port(1, true).unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    assert!(
        !has_vroute(&c.lan, 1) && !has_vrule(&c.lan, 1) && !static_route(&c.lan, 1),
        "everything removed at stop:\n{}",
        routes(&c.lan, 1)
    );
}

/// `garp_extra_if all N`: while MASTER, one gratuitous ARP every N seconds for the VIP
/// on another interface (here `ext0`, seen from its veth peer).
#[test]
fn garp_extra_if_repeats_announcements_on_the_other_interfaces() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "extraif") else {
        return;
    };
    let r1 = c.lan.router(1);
    add_ext_veth(r1);
    let capture = vipd_netns::Capture::start(r1, "ext1").unwrap();
    let conf = spec
        .clone()
        .with("garp_extra_if all 1")
        .config(100)
        .replace(
            "        192.0.2.100/24\n",
            "        192.0.2.100/24\n        203.0.113.10/24 dev ext0\n",
        );
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    std::thread::sleep(Duration::from_millis(3500));
    let extra: Vec<_> = capture
        .gratuitous_arps()
        .into_iter()
        .filter_map(|f| f.announced_addr())
        .collect();
    let ext = "203.0.113.10".parse().unwrap();
    // The take-over's own round (garp_master_repeat), then one a second.
    let n = extra.iter().filter(|a| **a == ext).count();
    assert!(n >= 3, "{extra:?}\n{}", c.log(1));
    let before = n;
    std::thread::sleep(Duration::from_millis(2200));
    let after = capture
        .gratuitous_arps()
        .into_iter()
        .filter(|f| f.announced_addr() == Some(ext))
        .count();
    assert!((2..=3).contains(&(after - before)), "{before} -> {after}");
}

/// `garp_group`: the gratuitous ARPs on the group's interfaces (eth0 and ext0) leave
/// one at a time, the group's `garp_interval` apart, across both interfaces; the
/// global `vrrp_garp_interval` (much shorter) does not apply to them.
#[test]
fn garp_group_paces_announcements_across_its_interfaces() {
    let spec = Spec::v3().with("garp_master_repeat 2");
    let Some(mut c) = Cluster::new(1, "garpgrp") else {
        return;
    };
    let r1 = c.lan.router(1);
    add_ext_veth(r1);
    let on_eth0 = vipd_netns::Capture::start(r1, "eth0").unwrap();
    let on_ext = vipd_netns::Capture::start(r1, "ext1").unwrap();
    let group = "garp_group {\n    garp_interval 0.3\n    interfaces {\n        eth0\n        ext0\n    }\n}\n";
    let conf = spec
        .config(100)
        .replace(
            "        192.0.2.100/24\n",
            "        192.0.2.100/24\n        192.0.2.101/24\n        203.0.113.10/24 dev ext0\n",
        )
        .replace(
            "    vrrp_garp_master_delay 0\n",
            "    vrrp_garp_master_delay 0\n    vrrp_garp_interval 0.05\n",
        );
    c.start_vipd(1, &format!("{group}{conf}"));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let ours: Vec<std::net::IpAddr> = ["192.0.2.100", "192.0.2.101", "203.0.113.10"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let collect = || {
        let mut v: Vec<_> = on_eth0
            .gratuitous_arps()
            .into_iter()
            .filter(|f| f.outgoing)
            .chain(on_ext.gratuitous_arps())
            .filter(|f| f.announced_addr().is_some_and(|a| ours.contains(&a)))
            .collect();
        v.sort_by_key(|f| f.at);
        v
    };
    // 3 VIPs x garp_master_repeat 2 = 6 announcements, 5 gaps of 0.3 s; vipd's
    // follow-up round (1.1 s after the take-over) queues behind them.
    assert!(
        vipd_netns::wait_for(Duration::from_secs(4), Duration::from_millis(50), || {
            collect().len() >= 6
        }),
        "{:?}\n{}",
        collect(),
        c.log(1)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let garps = collect();
    let show = || {
        garps
            .iter()
            .map(|f| {
                let t = f.at.duration_since(garps[0].at);
                format!("{t:?} {:?}", f.announced_addr())
            })
            .collect::<Vec<_>>()
    };
    assert!(
        garps.iter().any(|f| f.announced_addr() == Some(ours[2])),
        "{:?}",
        show()
    );
    // The captures' receive times jitter on a loaded host, so: no two announcements
    // close together (unpaced, or paced by the global 0.05 s, they would be), and the
    // first six spread over their 5 x 0.3 s.
    for w in garps.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(
            gap >= Duration::from_millis(150),
            "gap {gap:?}: {:?}",
            show()
        );
    }
    let six = garps[5].at.duration_since(garps[0].at);
    assert!(
        six >= Duration::from_millis(1400) && six < Duration::from_millis(3000),
        "{six:?}: {:?}",
        show()
    );
}

/// Table and scope names come from iproute2's files in `iproute_etc_dir` (relative to
/// the config file, as keepalived reads it; `global_defs` after the routes): the kernel
/// gets the numbers.
#[test]
fn named_tables_and_scopes_reach_the_kernel() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "rtnames") else {
        return;
    };
    let etc = c.dir.join("iproute2");
    std::fs::create_dir_all(etc.join("rt_tables.d")).unwrap();
    std::fs::write(etc.join("rt_tables"), "# test\n123 web\n0x7c db\n").unwrap();
    std::fs::write(etc.join("rt_tables.d/extra.conf"), "125 extra\n").unwrap();
    std::fs::write(etc.join("rt_scopes"), "254 machine\n").unwrap();
    let routing = "virtual_routes {\n        198.51.100.0/24 dev eth0 table db\n    }\n    virtual_rules {\n        from 192.0.2.100/32 table extra priority 1000\n    }";
    let statics = "static_routes {\n    203.0.113.0/24 dev eth0 table web scope machine\n}\n";
    let dirs = "global_defs {\n    iproute_etc_dir iproute2\n    iproute_usr_dir /nonexistent\n}\n";
    c.start_vipd(
        1,
        &format!("{statics}{}{dirs}", spec.clone().with(routing).config(200)),
    );
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let table = |lan: &vipd_netns::Lan, t: &str| {
        lan.router(1)
            .ip(["route", "show", "table", t])
            .unwrap_or_default()
    };
    let rules = |lan: &vipd_netns::Lan| lan.router(1).ip(["rule", "show"]).unwrap();
    assert!(
        vipd_netns::wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
            table(&c.lan, "124").contains("198.51.100.0/24 dev eth0 proto 118")
                && rules(&c.lan).contains("from 192.0.2.100 lookup 125")
        }),
        "{}\n{}",
        table(&c.lan, "124"),
        rules(&c.lan)
    );
    assert!(
        table(&c.lan, "123").contains("203.0.113.0/24 dev eth0 proto 118 scope host"),
        "{}",
        table(&c.lan, "123")
    );
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    assert!(
        !table(&c.lan, "123").contains("203.0.113.0/24")
            && !table(&c.lan, "124").contains("198.51.100.0/24")
            && !rules(&c.lan).contains("lookup 125"),
        "everything removed at stop"
    );
}

#[test]
fn use_vmac_moves_the_virtual_mac_with_the_vip() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "vmac") else {
        return;
    };
    let vip = spec.vip();
    let vmac = "00:00:5e:00:01:33"; // VRID 51
    let capture = vipd_netns::Capture::start(c.lan.client(), "eth0").unwrap();
    c.start_vipd(1, &spec.clone().with("use_vmac").config(200));
    c.start_vipd(2, &spec.clone().with("use_vmac").config(100));
    let on_vmac =
        |lan: &vipd_netns::Lan, i: usize| vipd_netns::has_address(lan.router(i), "vrrp.51", vip);
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || on_vmac(&c.lan, 1)
    ));
    assert!(!on_vmac(&c.lan, 2));
    // The client resolves the VIP to the virtual MAC.
    c.lan
        .client()
        .exec(&["ping", "-c", "1", "-W", "1", "192.0.2.100"])
        .unwrap();
    let neigh = c.lan.client().ip(["neigh", "show", "192.0.2.100"]).unwrap();
    assert!(neigh.contains(vmac), "{neigh}");
    let frames = capture.stop();
    let adverts: Vec<_> = frames.iter().filter(|f| f.is_vrrp()).collect();
    assert!(
        !adverts.is_empty() && adverts.iter().all(|f| f.src_mac.to_string() == vmac),
        "adverts leave from the VMAC"
    );
    // Failover: the same MAC now lives on r2; the client's cache needs no change.
    c.lan.set_port(1, false).unwrap();
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || on_vmac(&c.lan, 2)
    ));
    c.lan
        .client()
        .exec(&["ping", "-c", "1", "-W", "1", "192.0.2.100"])
        .unwrap();
    c.lan.set_port(1, true).unwrap();
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || on_vmac(&c.lan, 1) && !on_vmac(&c.lan, 2)
    ));
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    let links = c.lan.router(1).ip(["-o", "link", "show"]).unwrap();
    assert!(
        !links.contains("vrrp.51"),
        "the VMAC vipd created is gone at stop:\n{links}"
    );
}

/// `use_vmac NAME MAC group N` (keepalived 2.4.3): the VMAC gets that name, that MAC (five
/// octets written: the VRID is the sixth) and that link group. A reload whose plan
/// fails after a new VMAC instance was read creates no link (planning is pure).
#[test]
fn use_vmac_name_mac_group_and_a_failed_reload_leaves_no_link() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "vmacopt") else {
        return;
    };
    let vip = spec.vip();
    let config = spec
        .clone()
        .with("use_vmac name vip51 02:00:5e:10:00: group 7")
        .config(200);
    c.start_vipd(1, &config);
    let r1 = c.lan.router(1);
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || vipd_netns::has_address(r1, "vip51", vip)
    ));
    let link = r1.ip(["-d", "link", "show", "vip51"]).unwrap();
    assert!(
        link.contains("link/ether 02:00:5e:10:00:33") && link.contains("group 7"),
        "{link}"
    );
    assert!(link.contains("macvlan mode private"), "{link}");
    c.lan
        .client()
        .exec(&["ping", "-c", "1", "-W", "1", "192.0.2.100"])
        .unwrap();
    let neigh = c.lan.client().ip(["neigh", "show", "192.0.2.100"]).unwrap();
    assert!(neigh.contains("02:00:5e:10:00:33"), "{neigh}");

    // A second VMAC instance, but a static route through an interface this host does
    // not have: the reload is refused at planning, before any link is made.
    let broken = format!(
        "{config}vrrp_instance VI_2 {{\n    interface eth0\n    virtual_router_id 52\n    \
         priority 100\n    use_vmac vip52\n    virtual_ipaddress {{\n        198.51.100.52/24\n    }}\n}}\n\
         static_routes {{\n    203.0.113.0/24 dev no-such-if0\n}}\n"
    );
    std::fs::write(c.config_path(1), broken).unwrap();
    let out = std::process::Command::new(common::VIPD)
        .args(["reload", "--control-socket"])
        .arg(c.socket_path(1))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("nothing changed") && text.contains("no-such-if0"),
        "{text}"
    );
    let links = r1.ip(["-o", "link", "show"]).unwrap();
    assert!(
        !links.contains("vip52"),
        "a refused reload made a link:\n{links}"
    );
    assert!(vipd_netns::has_address(r1, "vip51", vip));
    drop(links);
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    let links = c.lan.router(1).ip(["-o", "link", "show"]).unwrap();
    assert!(
        !links.contains("vip51"),
        "the VMAC is gone at stop:\n{links}"
    );
}

#[test]
fn use_vmac_ipv6() {
    let spec = Spec::v3_ipv6();
    let Some(mut c) = Cluster::new(2, "vmac6") else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(1, &spec.clone().with("use_vmac").config(200));
    c.start_vipd(2, &spec.clone().with("use_vmac").config(100));
    let on_vmac =
        |lan: &vipd_netns::Lan, i: usize| vipd_netns::has_address(lan.router(i), "vrrp.51", vip);
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || on_vmac(&c.lan, 1)
    ));
    // Both routers keep hearing each other: r2 stays backup.
    c.assert_stable(vip, &[], Duration::from_millis(500)); // never on the base interfaces
    assert!(on_vmac(&c.lan, 1) && !on_vmac(&c.lan, 2));
    assert_eq!(c.instance(2)["state"], "BACKUP");
    c.lan
        .client()
        .exec(&["ping", "-6", "-c", "1", "-W", "1", "2001:db8::100"])
        .unwrap();
    let neigh = c
        .lan
        .client()
        .ip(["-6", "neigh", "show", "2001:db8::100"])
        .unwrap();
    assert!(neigh.contains("00:00:5e:00:02:33"), "{neigh}");
    c.lan.set_port(1, false).unwrap();
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || on_vmac(&c.lan, 2)
    ));
    c.lan.set_port(1, true).unwrap();
    assert!(vipd_netns::wait_for(
        spec.takeover_timeout(),
        Duration::from_millis(20),
        || on_vmac(&c.lan, 1) && !on_vmac(&c.lan, 2)
    ));
    // The membership check (every second) finds ff02::12 on the VMACs: no socket was
    // reopened for a group it had not lost.
    std::thread::sleep(Duration::from_millis(1100));
    for i in [1, 2] {
        let errors = &c.status(i).unwrap()["io_errors"];
        let reopens = errors
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["op"] == "vrrp_socket_reopen");
        assert_eq!(reopens.count(), 0, "r{i}: {errors}");
    }
}

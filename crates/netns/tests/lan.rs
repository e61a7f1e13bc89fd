//! Lan topology, Prober and Capture against the kernel (needs root).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use vipd_netns::{
    has_address, skip_unless_root, wait_for, Capture, Frames, Lan, LanOptions, Netns, ProbeOptions,
    Prober, CLIENT_V4, CLIENT_V6,
};

fn lan(n: usize) -> Lan {
    let t = Instant::now();
    let lan = Lan::new(n, LanOptions::default()).expect("building Lan");
    eprintln!("Lan::new({n}) took {:?}", t.elapsed());
    lan
}

#[test]
fn lan_is_built_as_documented() {
    if skip_unless_root() {
        return;
    }
    let lan = lan(3);
    assert_eq!(lan.n_routers(), 3);
    // Unique, short names.
    let names: Vec<&str> = lan
        .routers()
        .iter()
        .chain([lan.client(), lan.switch()])
        .map(Netns::name)
        .collect();
    for n in &names {
        assert!(n.starts_with(lan.prefix()), "{n}");
        assert!(std::path::Path::new("/run/netns").join(n).exists(), "{n}");
    }
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len());

    for i in 1..=3 {
        let r = lan.router(i);
        assert!(has_address(r, "eth0", lan.router_addr_v4(i).into()));
        assert!(has_address(r, "eth0", lan.router_addr_v6(i).into()));
        let ll = lan.router_link_local(i).unwrap();
        assert_eq!(ll.segments()[0], 0xfe80);
        let out = r.ip(["-6", "addr", "show", "dev", "eth0"]).unwrap();
        assert!(!out.contains("tentative"), "{out}");
        let link = r.ip(["link", "show", "dev", "eth0"]).unwrap();
        assert!(link.contains(&lan.router_mac(i).to_string()), "{link}");
        assert!(link.contains("state UP"), "{link}");
        assert_eq!(
            r.exec(&["sysctl", "-n", "net.ipv6.conf.eth0.accept_dad"])
                .unwrap()
                .trim(),
            "0"
        );
        // Loopback is up.
        assert!(r.ip(["link", "show", "dev", "lo"]).unwrap().contains("UP"));
    }
    assert_eq!(lan.router_addr_v4(1).to_string(), "192.0.2.11");
    assert_eq!(lan.router_addr_v6(2).to_string(), "2001:db8::12");
    assert!(has_address(lan.client(), "eth0", CLIENT_V4.into()));
    assert!(has_address(lan.client(), "eth0", CLIENT_V6.into()));

    let br = lan
        .switch()
        .ip(["-d", "link", "show", "dev", "br0"])
        .unwrap();
    assert!(br.contains("mcast_snooping 0"), "{br}");
    assert!(br.contains("stp_state 0"), "{br}");
    let ports = lan.switch().ip(["link", "show", "master", "br0"]).unwrap();
    for p in ["p-r1", "p-r2", "p-r3", "p-cl"] {
        assert!(ports.contains(p), "{ports}");
    }

    // exec reports failures with stderr.
    let err = lan
        .client()
        .exec(&["ip", "link", "show", "dev", "nosuchdev"])
        .unwrap_err();
    assert!(format!("{err:#}").contains("nosuchdev"), "{err:#}");

    // Drop deletes every namespace.
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    drop(lan);
    for n in names {
        assert!(
            !std::path::Path::new("/run/netns").join(&n).exists(),
            "{n} left behind"
        );
    }
}

#[test]
fn netns_guard_kills_processes_and_enter_thread_works() {
    if skip_unless_root() {
        return;
    }
    let ns = Netns::unique("t").unwrap();
    let name = ns.name().to_string();
    // A thread inside the namespace sees only its interfaces (lo).
    let ifaces = ns
        .run(|| std::fs::read_to_string("/proc/net/dev").unwrap())
        .unwrap();
    assert!(ifaces.contains("lo:"));
    assert!(!ifaces.contains("eth0") || !ifaces.contains("docker"));
    let h = ns
        .enter_thread(|| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        })
        .unwrap();
    assert!(h.join().unwrap() > 0);

    let dir = vipd_netns::WorkDir::new("sleep").unwrap();
    let mut p = ns.spawn(["sleep", "60"], dir.join("sleep.log")).unwrap();
    assert!(p.is_running());
    assert!(wait_for(
        Duration::from_secs(2),
        Duration::from_millis(5),
        || ns.pids().contains(&p.pid())
    ));
    drop(ns);
    assert!(!std::path::Path::new("/run/netns").join(&name).exists());
    assert!(
        p.wait_timeout(Duration::from_secs(2)).is_some(),
        "process in ns was not killed"
    );
}

fn wait_replies(p: &Prober, n: u64) -> bool {
    wait_for(Duration::from_secs(3), Duration::from_millis(2), || {
        p.received() >= n
    })
}

#[test]
fn client_reaches_router_over_v4_and_v6() {
    if skip_unless_root() {
        return;
    }
    let lan = lan(2);
    for target in [
        IpAddr::from(lan.router_addr_v4(1)),
        lan.router_addr_v6(1).into(),
    ] {
        let p = Prober::start(lan.client(), target, ProbeOptions::default()).unwrap();
        assert!(wait_replies(&p, 50), "no replies from {target}: {p:?}");
        std::thread::sleep(Duration::from_millis(200));
        let r = p.stop();
        eprintln!(
            "{target}: sent {} received {} dup {} largest gap {:?} max rtt {:?}",
            r.sent,
            r.received,
            r.duplicates,
            r.largest_gap(),
            r.max_rtt()
        );
        assert!(r.sent >= 150, "{target}: only {} sent", r.sent);
        assert!(
            r.received as f64 >= r.sent as f64 * 0.9,
            "{target}: {} of {}",
            r.received,
            r.sent
        );
        assert_eq!(r.send_errors, 0);
        assert!(
            r.outages(Duration::from_millis(100)).is_empty(),
            "{:?}",
            r.outages(Duration::from_millis(100))
        );
    }
    // IPv6 link-local with an interface.
    let ll = lan.router_link_local(2).unwrap();
    let opts = ProbeOptions {
        interface: Some("eth0".into()),
        interval: Duration::from_millis(5),
        ..Default::default()
    };
    let p = Prober::start(lan.client(), ll.into(), opts).unwrap();
    assert!(wait_replies(&p, 5), "no replies from {ll}");
    assert!(p.stop().received >= 5);
}

#[test]
fn port_down_stops_connectivity_and_up_restores_it() {
    if skip_unless_root() {
        return;
    }
    let lan = lan(2);
    for target in [
        IpAddr::from(lan.router_addr_v4(1)),
        lan.router_addr_v6(1).into(),
    ] {
        let p = Prober::start(lan.client(), target, ProbeOptions::default()).unwrap();
        assert!(wait_replies(&p, 20), "no replies from {target}");
        lan.set_port(1, false).unwrap();
        let down_at = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        // Taken before the command: the port is up before `ip` has exited.
        let up_at = Instant::now();
        let received_before_up = p.received();
        lan.set_port(1, true).unwrap();
        assert!(wait_for(
            Duration::from_secs(3),
            Duration::from_millis(2),
            || p.received() > received_before_up
        ));
        std::thread::sleep(Duration::from_millis(300));
        let r = p.stop();
        // Nothing got through while the port was down (10 ms for in-flight replies).
        let during = r
            .replies
            .iter()
            .filter(|x| {
                x.received_at > down_at + Duration::from_millis(10) && x.received_at < up_at
            })
            .count();
        let bad: Vec<_> = r
            .replies
            .iter()
            .filter(|x| {
                x.received_at > down_at + Duration::from_millis(10) && x.received_at < up_at
            })
            .map(|x| {
                (
                    x.seq,
                    x.sent_at.checked_duration_since(down_at),
                    x.received_at - down_at,
                )
            })
            .collect();
        assert_eq!(
            during, 0,
            "{target}: {during} replies while port was down: {bad:?}"
        );
        let outages = r.outages(Duration::from_millis(100));
        assert_eq!(outages.len(), 1, "{target}: {outages:?}");
        assert!(
            r.largest_gap() >= Duration::from_millis(290),
            "{:?}",
            r.largest_gap()
        );
        // … and it came back.
        assert!(
            r.received_after(up_at) > 50,
            "{target}: only {} after port up",
            r.received_after(up_at)
        );
        eprintln!("{target}: outage {:?}", outages);
    }
    // Router 2 was never affected.
    let r = Prober::probe_for(
        lan.client(),
        lan.router_addr_v4(2).into(),
        Duration::from_millis(2),
        Duration::from_millis(100),
    )
    .unwrap();
    assert!(r.received >= 40, "{r:?}");
}

#[test]
fn capture_sees_gratuitous_arp_and_unsolicited_na() {
    if skip_unless_root() {
        return;
    }
    let lan = lan(1);
    let cap = Capture::start(lan.client(), "eth0").unwrap();
    let r1 = lan.router(1);
    // The kernel sends an unsolicited NA on link up with ndisc_notify, and a
    // gratuitous ARP on a MAC address "change" with arp_notify.
    r1.sysctls(&[
        ("net.ipv6.conf.eth0.ndisc_notify", "1"),
        ("net.ipv4.conf.eth0.arp_notify", "1"),
    ])
    .unwrap();
    r1.ip(["link", "set", "eth0", "down"]).unwrap();
    r1.ip(["link", "set", "eth0", "up"]).unwrap();
    r1.ip([
        "link",
        "set",
        "eth0",
        "address",
        &lan.router_mac(1).to_string(),
    ])
    .unwrap();
    let ok = wait_for(Duration::from_secs(3), Duration::from_millis(10), || {
        !cap.gratuitous_arps().is_empty() && !cap.unsolicited_nas().is_empty()
    });
    let frames = cap.stop();
    assert!(ok, "frames: {frames:#?}");
    let garp = frames.gratuitous_arps()[0];
    assert_eq!(garp.src_mac, lan.router_mac(1));
    assert_eq!(garp.src, IpAddr::from(lan.router_addr_v4(1)));
    let na = frames.unsolicited_nas()[0];
    assert_eq!(na.src_mac, lan.router_mac(1));
    assert_eq!(na.ttl, 255);
    assert!(frames.iter().all(|f| !f.outgoing));
    assert!(frames.windows(2).all(|w| w[0].at <= w[1].at));
}

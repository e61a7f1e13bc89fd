//! keepalived as a VRRP peer in a Lan (needs root and keepalived).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use vipd_netns::{
    has_address, simple_vrrp_config, skip_unless_root, wait_for, Capture, Frames, Keepalived, Lan,
    LanOptions, ProbeOptions, Prober, Signal, WorkDir, VIP_V4,
};

fn keepalived_available() -> bool {
    if skip_unless_root() {
        return false;
    }
    if !Keepalived::new().is_installed() {
        eprintln!("skipped: keepalived not installed");
        return false;
    }
    true
}

#[test]
fn keepalived_becomes_master_in_a_lan() {
    if !keepalived_available() {
        return;
    }
    let lan = Lan::new(2, LanOptions::default()).unwrap();
    let dir = WorkDir::new("ka").unwrap();
    let config = simple_vrrp_config("eth0", 51, 150, &["192.0.2.100/24"]);
    Keepalived::new().check_config(&config, dir.path()).unwrap();

    let cap = Capture::start(lan.client(), "eth0").unwrap();
    let prober = Prober::start(
        lan.client(),
        VIP_V4.into(),
        ProbeOptions::every(Duration::from_millis(5)),
    )
    .unwrap();
    let t0 = Instant::now();
    let mut ka = Keepalived::new()
        .start(lan.router(1), &config, dir.path())
        .unwrap();

    let r1 = lan.router(1);
    let is_master = wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        has_address(r1, "eth0", VIP_V4.into())
    });
    assert!(is_master, "VIP never appeared on r1\n{}", ka.log_tail(40));
    let became_master = t0.elapsed();
    assert!(ka.is_running(), "{}", ka.log_tail(40));
    // The VIP answers pings.
    assert!(
        wait_for(Duration::from_secs(3), Duration::from_millis(5), || prober
            .received()
            >= 20),
        "no echo replies from the VIP\n{}",
        ka.log_tail(40)
    );
    // At least two adverts (1 s apart) reach the client.
    assert!(
        wait_for(Duration::from_secs(4), Duration::from_millis(20), || cap
            .vrrp_adverts()
            .len()
            >= 2),
        "no adverts: {:#?}\n{}",
        cap.snapshot(),
        ka.log_tail(40)
    );
    let report = prober.stop();
    let frames = cap.stop();
    eprintln!(
        "keepalived MASTER after {became_master:?}; {} frames; prober {}/{}\n{}",
        frames.len(),
        report.received,
        report.sent,
        ka.log_tail(30)
    );
    assert!(report.received >= 20);

    let adverts = frames.vrrp_adverts();
    for a in &adverts {
        let h = a.vrrp().unwrap();
        assert_eq!(a.src_mac, lan.router_mac(1), "{a:?}");
        assert_eq!(a.src, IpAddr::from(lan.router_addr_v4(1)));
        assert_eq!(a.dst, "224.0.0.18".parse::<IpAddr>().unwrap());
        assert_eq!(a.ttl, 255, "VRRP adverts must have TTL 255");
        assert_eq!(h.vrid, 51);
        assert_eq!(h.priority, 150);
        assert_eq!(h.version, 2);
        assert_eq!(h.interval, Duration::from_secs(1));
        assert_eq!(a.vrrp_addresses(), vec![IpAddr::from(VIP_V4)]);
    }
    let gap = adverts[1].at - adverts[0].at;
    assert!(
        gap > Duration::from_millis(800) && gap < Duration::from_millis(1300),
        "advert interval {gap:?}"
    );
    // keepalived announces the VIP with gratuitous ARPs from r1's MAC.
    let garps = frames.gratuitous_arps();
    assert!(
        garps
            .iter()
            .any(|f| f.src == IpAddr::from(VIP_V4) && f.src_mac == lan.router_mac(1)),
        "no GARP for the VIP: {garps:#?}"
    );

    // A graceful stop removes the VIP.
    ka.signal(Signal::SIGTERM).unwrap();
    assert!(
        ka.wait_timeout(Duration::from_secs(10)).is_some(),
        "{}",
        ka.log_tail(20)
    );
    assert!(!has_address(r1, "eth0", VIP_V4.into()));
}

#[test]
fn keepalived_failover_is_measured_by_the_prober() {
    if !keepalived_available() {
        return;
    }
    let lan = Lan::new(2, LanOptions::default()).unwrap();
    let (d1, d2) = (WorkDir::new("ka1").unwrap(), WorkDir::new("ka2").unwrap());
    let mut ka1 = Keepalived::new()
        .start(
            lan.router(1),
            &simple_vrrp_config("eth0", 52, 150, &["192.0.2.100/24"]),
            d1.path(),
        )
        .unwrap();
    let ka2 = Keepalived::new()
        .start(
            lan.router(2),
            &simple_vrrp_config("eth0", 52, 100, &["192.0.2.100/24"]),
            d2.path(),
        )
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
            has_address(lan.router(1), "eth0", VIP_V4.into())
        }),
        "r1 never became master\n{}\n{}",
        ka1.log_tail(20),
        ka2.log_tail(20)
    );
    let prober = Prober::start(lan.client(), VIP_V4.into(), ProbeOptions::default()).unwrap();
    let cap = Capture::start(lan.client(), "eth0").unwrap();
    assert!(wait_for(
        Duration::from_secs(3),
        Duration::from_millis(5),
        || prober.received() >= 100
    ));
    assert!(
        !has_address(lan.router(2), "eth0", VIP_V4.into()),
        "r2 is master too"
    );

    // Crash the master by pulling its cable. (Killing keepalived with SIGKILL
    // is no crash for the data path: the VIP stays on r1's eth0 and r1 keeps
    // answering.)
    let crash = Instant::now();
    lan.set_port(1, false).unwrap();
    let took_over = wait_for(Duration::from_secs(10), Duration::from_millis(5), || {
        has_address(lan.router(2), "eth0", VIP_V4.into())
    });
    assert!(took_over, "r2 never took over\n{}", ka2.log_tail(20));
    assert!(wait_for(
        Duration::from_secs(3),
        Duration::from_millis(5),
        || {
            prober.received() > 0
                && cap
                    .vrrp_adverts()
                    .iter()
                    .any(|f| f.src_mac == lan.router_mac(2))
        }
    ));
    std::thread::sleep(Duration::from_millis(200));
    let report = prober.stop();
    let frames = cap.stop();
    let outages = report.outages(Duration::from_millis(100));
    eprintln!(
        "failover: largest gap {:?}, outages {outages:?}, sent {} received {}",
        report.largest_gap(),
        report.sent,
        report.received
    );
    // One outage, starting around the crash, lasting about master_down_interval
    // (3 s + 0.61 s skew) minus the time since r1's last advert.
    assert_eq!(outages.len(), 1, "{outages:?}");
    let gap = report.largest_gap();
    assert!(
        gap > Duration::from_millis(2500) && gap < Duration::from_millis(5000),
        "{gap:?}"
    );
    let last_before = report
        .last_reply_before(crash + Duration::from_millis(50))
        .unwrap();
    assert!(crash.saturating_duration_since(last_before.received_at) < Duration::from_millis(100));
    // No priority-0 advert from r1 after the crash, and r2's adverts follow.
    let adverts = frames.vrrp_adverts();
    assert!(adverts
        .iter()
        .filter(|f| f.at > crash && f.src_mac == lan.router_mac(1))
        .all(|f| f.vrrp().unwrap().priority != 0));
    let r2 = adverts
        .iter()
        .find(|f| f.src_mac == lan.router_mac(2))
        .unwrap();
    assert_eq!(r2.vrrp().unwrap().priority, 100);
    assert_eq!(r2.ttl, 255);
    assert!(frames
        .gratuitous_arps()
        .iter()
        .any(|f| f.src_mac == lan.router_mac(2)));

    // kill9 takes out keepalived's VRRP child too: nothing is left in r1.
    assert!(
        lan.router(1).pids().len() >= 2,
        "parent + VRRP child expected"
    );
    assert!(ka1.kill9().is_some());
    assert!(
        wait_for(Duration::from_secs(2), Duration::from_millis(5), || lan
            .router(1)
            .pids()
            .is_empty()),
        "left in r1: {:?}",
        lan.router(1).pids()
    );
    // r1 went to FAULT on losing carrier and dropped the VIP before dying.
    assert!(!has_address(lan.router(1), "eth0", VIP_V4.into()));
}

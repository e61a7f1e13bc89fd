//! BFD (`bfd_instance`, `track_bfd`) in network namespaces: vipd's sessions against
//! keepalived's BFD process — Debian's 2.2.7 and upstream 2.4.3 — come Up, go Down
//! within their detection time when the peer's cable is pulled (its switch port goes
//! down), and recover; and a `track_bfd` session going down lowers a master's priority
//! so that the VIP moves.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};
use vipd_netns::{Keepalived, Version};

/// 50 ms × 3: detection time 150 ms.
const MIN_RX_MS: u64 = 50;
const MULT: u64 = 3;

fn bfd_block(name: &str, neighbor: &str, source: &str, extra: &str) -> String {
    format!(
        "bfd_instance {name} {{\n    neighbor_ip {neighbor}\n    source_ip {source}\n    \
         min_rx {MIN_RX_MS}\n    min_tx {MIN_RX_MS}\n    multiplier {MULT}\n{extra}}}\n"
    )
}

fn global(id: &str) -> String {
    format!("global_defs {{\n    router_id {id}\n    vrrp_garp_master_delay 0\n}}\n")
}

/// Router `i`'s session `name` in vipd's status.
fn session(c: &Cluster, i: usize, name: &str) -> Option<serde_json::Value> {
    let st = c.status(i)?;
    st["bfd"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

fn wait_state(c: &Cluster, i: usize, name: &str, want: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    let ok = vipd_netns::wait_for(timeout, Duration::from_millis(5), || {
        session(c, i, name).is_some_and(|s| s["state"] == want)
    });
    assert!(
        ok,
        "r{i} bfd {name} not {want} after {:?}: {:?}\n{}",
        start.elapsed(),
        session(c, i, name),
        c.logs()
    );
    start.elapsed()
}

fn start_keepalived_bfd(c: &mut Cluster, i: usize, config: &str, version: Version) {
    let wd = c.dir.join(format!("ka{i}"));
    let proc = Keepalived::new()
        .version(version)
        .start(c.lan.router(i), config, &wd)
        .expect("starting keepalived");
    c.daemons[i - 1] = Some(common::Daemon::Keepalived { proc });
}

fn keepalived_available(version: Version) -> bool {
    match version {
        Version::V2_2_7 => {
            assert!(
                Keepalived::new().is_installed(),
                "keepalived is not installed: the interop tests need it (apt-get install keepalived)"
            );
            true
        }
        v => v.require().is_some(),
    }
}

/// vipd on r1 and keepalived on r2, one single-hop session between them.
fn interop(version: Version, tag: &str) {
    if !keepalived_available(version) {
        return;
    }
    let Some(mut c) = Cluster::new(2, tag) else {
        return;
    };
    let (a1, a2) = (c.lan.router_addr_v4(1), c.lan.router_addr_v4(2));
    let (a1, a2) = (a1.to_string(), a2.to_string());
    start_keepalived_bfd(
        &mut c,
        2,
        &format!("{}{}", global("ka"), bfd_block("to_vipd", &a1, &a2, "")),
        version,
    );
    c.start_vipd(
        1,
        &format!("{}{}", global("vipd"), bfd_block("to_ka", &a2, &a1, "")),
    );
    // keepalived sends at idle_tx (1 s) until Up.
    wait_state(&c, 1, "to_ka", "Up", Duration::from_secs(15));
    // Then the Poll Sequences settle the fast timers on both sides.
    let settled = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        session(&c, 1, "to_ka").is_some_and(|s| {
            s["remote_state"] == "Up" && s["detection_time_us"] == MULT * MIN_RX_MS * 1000
        })
    });
    let s = session(&c, 1, "to_ka").unwrap();
    assert!(settled, "negotiated detection time: {s}\n{}", c.logs());
    assert_eq!(s["tx_interval_us"], MIN_RX_MS * 1000, "{s}");
    assert!(s["drops"].as_array().unwrap().is_empty(), "drops: {s}");
    let text = std::process::Command::new(common::VIPD)
        .args(["status", "--control-socket"])
        .arg(c.socket_path(1))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "bfd to_ka → {a2}: Up (peer Up, no_diagnostic), tx 50 ms, detect 150 ms, 0 down(s)"
        )),
        "{text}"
    );
    // Stays Up (no false detection at 50 ms × 3).
    std::thread::sleep(Duration::from_secs(1));
    let s = session(&c, 1, "to_ka").unwrap();
    assert_eq!(s["state"], "Up", "{s}");
    assert_eq!(s["downs"], 0, "{s}");

    // Pull the peer's cable: Down within the detection time (150 ms), plus what
    // polling `vipd status` adds on a loaded host.
    c.lan.set_port(2, false).unwrap();
    let took = wait_state(&c, 1, "to_ka", "Down", Duration::from_secs(5));
    let s = session(&c, 1, "to_ka").unwrap();
    assert_eq!(
        s["diagnostic"],
        "control_detection_time_expired",
        "{s}\n{}",
        c.logs()
    );
    assert!(
        took < Duration::from_millis(MULT * MIN_RX_MS + 400),
        "took {took:?} to detect (detection time {} ms)",
        MULT * MIN_RX_MS
    );
    assert_eq!(s["downs"], 1, "{s}");

    // Back: Up again, and keepalived saw it too.
    c.lan.set_port(2, true).unwrap();
    wait_state(&c, 1, "to_ka", "Up", Duration::from_secs(15));
    let s = session(&c, 1, "to_ka").unwrap();
    assert_eq!(s["ups"], 2, "{s}");
    let log = c.log(2);
    assert!(
        log.to_lowercase().contains("up"),
        "keepalived's log shows no Up:\n{log}"
    );
}

#[test]
fn vipd_keepalived_227_session_up_down_recover() {
    interop(Version::V2_2_7, "bfd-ka227");
}

#[test]
fn vipd_keepalived_243_session_up_down_recover() {
    interop(Version::V2_4_3, "bfd-ka243");
}

/// r1 (vipd, priority 200) tracks a BFD session to r3 with weight -150; r2 (vipd,
/// priority 100) is the backup. r3's cable pulled: r1's session goes Down, its priority
/// drops to 50 and r2 takes the VIP; r3 back: r1 takes it back.
#[test]
fn track_bfd_moves_the_vip() {
    let Some(mut c) = Cluster::new(3, "bfd-track") else {
        return;
    };
    let vip = std::net::IpAddr::V4(vipd_netns::VIP_V4);
    let a: Vec<String> = (1..=3)
        .map(|i| c.lan.router_addr_v4(i).to_string())
        .collect();
    let spec = common::Spec::v3();
    let r1 = format!(
        "{}{}",
        bfd_block("to_r3", &a[2], &a[0], "    weight -150\n"),
        spec.clone()
            .with("track_bfd {\n        to_r3\n    }")
            .config(200)
    );
    let r3 = format!("{}{}", global("r3"), bfd_block("to_r1", &a[0], &a[2], ""));
    c.start_vipd(3, &r3);
    c.start_vipd(2, &spec.config(100));
    c.start_vipd(1, &r1);
    wait_state(&c, 1, "to_r3", "Up", Duration::from_secs(15));
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    // vipd ↔ vipd: the fast timers hold (no false detection).
    std::thread::sleep(Duration::from_secs(1));
    for (i, name) in [(1, "to_r3"), (3, "to_r1")] {
        let s = session(&c, i, name).unwrap();
        assert_eq!(
            (&s["state"], &s["downs"]),
            (&"Up".into(), &0.into()),
            "{s}\n{}",
            c.logs()
        );
        assert_eq!(s["detection_time_us"], MULT * MIN_RX_MS * 1000, "{s}");
    }
    let track = &c.status(1).unwrap()["tracking"]["VI_1"];
    assert!(
        track
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "bfd" && t["state"] == "good"),
        "{track}"
    );

    c.lan.set_port(3, false).unwrap();
    wait_state(&c, 1, "to_r3", "Down", Duration::from_secs(5));
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    assert_eq!(c.instance(1)["effective_priority"], 50, "{}", c.instance(1));

    c.lan.set_port(3, true).unwrap();
    wait_state(&c, 1, "to_r3", "Up", Duration::from_secs(15));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
}

/// `track_bfd` with weight 0: the session down puts the instance in FAULT.
#[test]
fn track_bfd_weight_0_faults() {
    let Some(mut c) = Cluster::new(2, "bfd-fault") else {
        return;
    };
    let a: Vec<String> = (1..=2)
        .map(|i| c.lan.router_addr_v4(i).to_string())
        .collect();
    let spec = common::Spec::v3();
    // r2's neighbour is an address nobody has: its session never comes up, so the
    // instance stays in FAULT from the start (a tracked BFD starts down).
    let r1 = format!(
        "{}{}",
        bfd_block("nobody", "192.0.2.99", &a[0], ""),
        spec.clone()
            .with("track_bfd {\n        nobody\n    }")
            .config(200)
    );
    c.start_vipd(1, &r1);
    let _ = &a;
    let ok = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        c.instance(1)["state"] == "FAULT"
    });
    assert!(ok, "{}\n{}", c.instance(1), c.logs());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.instance(1)["state"], "FAULT");
    assert!(c
        .holders(std::net::IpAddr::V4(vipd_netns::VIP_V4))
        .is_empty());
}

/// FRR's bfdd (Debian `frr`), run on its own in r2's namespace (no zebra needed): the
/// same Up / Down within the detection time / recover cycle as with keepalived.
#[test]
fn vipd_frr_bfdd_session_up_down_recover() {
    const BFDD: &str = "/usr/lib/frr/bfdd";
    if !std::path::Path::new(BFDD).exists() {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "FRR's bfdd is missing under CI (apt-get install frr)");
        eprintln!("skipped: FRR's bfdd not installed (apt-get install frr)");
        return;
    }
    let Some(mut c) = Cluster::new(2, "bfd-frr") else {
        return;
    };
    let (a1, a2) = (c.lan.router_addr_v4(1), c.lan.router_addr_v4(2));
    // bfdd drops root for the `frr` user: its files live in a directory it may write.
    let dir = c.dir.join("frr");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let conf = dir.join("bfdd.conf");
    std::fs::write(
        &conf,
        format!(
            "bfd\n peer {a1} local-address {a2}\n  receive-interval {MIN_RX_MS}\n  \
             transmit-interval {MIN_RX_MS}\n  detect-multiplier {MULT}\n !\n!\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let d = dir.display().to_string();
    let _bfdd = c
        .lan
        .router(2)
        .spawn(
            [
                BFDD.to_string(),
                "-f".into(),
                conf.display().to_string(),
                "-i".into(),
                format!("{d}/bfdd.pid"),
                "--vty_socket".into(),
                d.clone(),
                "-z".into(),
                format!("{d}/zserv.api"),
                "--bfdctl".into(),
                format!("{d}/bfdd.sock"),
                "--log".into(),
                "stdout".into(),
                "--log-level".into(),
                "info".into(),
            ],
            dir.join("bfdd.log"),
        )
        .expect("starting bfdd");
    c.start_vipd(
        1,
        &format!(
            "{}{}",
            global("vipd"),
            bfd_block("to_frr", &a2.to_string(), &a1.to_string(), "")
        ),
    );
    let frr_log = || std::fs::read_to_string(dir.join("bfdd.log")).unwrap_or_default();
    wait_state(&c, 1, "to_frr", "Up", Duration::from_secs(15));
    let settled = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        session(&c, 1, "to_frr").is_some_and(|s| {
            s["remote_state"] == "Up" && s["detection_time_us"] == MULT * MIN_RX_MS * 1000
        })
    });
    let s = session(&c, 1, "to_frr").unwrap();
    assert!(settled, "{s}\n{}", frr_log());
    std::thread::sleep(Duration::from_secs(1));
    let s = session(&c, 1, "to_frr").unwrap();
    assert_eq!(
        (&s["state"], &s["downs"]),
        (&"Up".into(), &0.into()),
        "{s}\n{}",
        frr_log()
    );
    assert!(s["drops"].as_array().unwrap().is_empty(), "drops: {s}");

    c.lan.set_port(2, false).unwrap();
    let took = wait_state(&c, 1, "to_frr", "Down", Duration::from_secs(5));
    let s = session(&c, 1, "to_frr").unwrap();
    assert_eq!(s["diagnostic"], "control_detection_time_expired", "{s}");
    assert!(
        took < Duration::from_millis(MULT * MIN_RX_MS + 400),
        "took {took:?} to detect"
    );
    c.lan.set_port(2, true).unwrap();
    wait_state(&c, 1, "to_frr", "Up", Duration::from_secs(15));
    assert_eq!(session(&c, 1, "to_frr").unwrap()["ups"], 2);
}

/// Reload: a changed interval is applied with a Poll Sequence (the session stays Up, same
/// discriminator, new detection time); a removed session takes the peer's session
/// AdminDown-then-Down without the peer's tracker seeing "down" (keepalived's rule).
#[test]
fn reload_changes_timers_without_flap_and_removal_signals_admin_down() {
    let Some(mut c) = Cluster::new(2, "bfd-reload") else {
        return;
    };
    let (a1, a2) = (
        c.lan.router_addr_v4(1).to_string(),
        c.lan.router_addr_v4(2).to_string(),
    );
    c.start_vipd(
        2,
        &format!("{}{}", global("r2"), bfd_block("to_r1", &a1, &a2, "")),
    );
    c.start_vipd(
        1,
        &format!("{}{}", global("r1"), bfd_block("to_r2", &a2, &a1, "")),
    );
    wait_state(&c, 1, "to_r2", "Up", Duration::from_secs(15));
    wait_state(&c, 2, "to_r1", "Up", Duration::from_secs(5));
    let before = session(&c, 1, "to_r2").unwrap();

    // min_rx/min_tx 50 → 100 ms on r1: Poll Sequence, no flap.
    let slower = format!(
        "{}{}",
        global("r1"),
        bfd_block("to_r2", &a2, &a1, "").replace(" 50\n", " 100\n")
    );
    let (ok, out) = c.reload(1, &slower);
    assert!(ok, "{out}");
    let settled = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        session(&c, 2, "to_r1").is_some_and(|s| s["detection_time_us"] == MULT * 100_000)
    });
    let s1 = session(&c, 1, "to_r2").unwrap();
    let s2 = session(&c, 2, "to_r1").unwrap();
    assert!(settled, "r2 sees r1's new interval: {s2}\n{s1}");
    assert_eq!(
        s1["local_discriminator"], before["local_discriminator"],
        "{s1}"
    );
    for s in [&s1, &s2] {
        assert_eq!((&s["state"], &s["downs"]), (&"Up".into(), &0.into()), "{s}");
    }

    // Removed on r1: r2 hears AdminDown and goes Down (neighbor signalled down).
    let (ok, out) = c.reload(1, &global("r1"));
    assert!(ok, "{out}");
    wait_state(&c, 2, "to_r1", "Down", Duration::from_secs(5));
    let s2 = session(&c, 2, "to_r1").unwrap();
    assert_eq!(s2["diagnostic"], "neighbor_signaled_session_down", "{s2}");
    // r1 closes it after a detection time.
    let gone = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        session(&c, 1, "to_r2").is_none()
    });
    assert!(gone, "{:?}", c.status(1).unwrap()["bfd"]);
}

/// BFD_CHECK: r1 (vipd) balances to real server r2, whose health is the BFD session
/// to r2 (keepalived 2.4.3 on r2 when built, else vipd): the server starts up (no event
/// yet, as keepalived), stays up while the session is Up, goes down when r2's cable is
/// pulled and comes back with the session.
#[test]
fn bfd_check_follows_the_session() {
    let Some(mut c) = Cluster::new(2, "bfd-check") else {
        return;
    };
    let (a1, a2) = (
        c.lan.router_addr_v4(1).to_string(),
        c.lan.router_addr_v4(2).to_string(),
    );
    let peer = format!("{}{}", global("r2"), bfd_block("to_r1", &a1, &a2, ""));
    if Version::V2_4_3.find().is_some() {
        start_keepalived_bfd(&mut c, 2, &peer, Version::V2_4_3);
    } else {
        c.start_vipd(2, &peer);
    }
    let vs = format!(
        "virtual_server 192.0.2.100 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    \
         protocol TCP\n    real_server {a2} 80 {{\n        BFD_CHECK {{\n            name to_r2\n        }}\n    }}\n}}\n"
    );
    c.start_vipd(
        1,
        &format!(
            "{}{}{vs}",
            global("r1"),
            bfd_block("to_r2", &a2, &a1, "    checker\n")
        ),
    );
    let rs_up = |c: &Cluster| -> Option<bool> {
        c.status(1)?["virtual_servers"][0]["real_servers"][0]["up"].as_bool()
    };
    let wait_rs = |c: &Cluster, up: bool| {
        let ok = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
            rs_up(c) == Some(up)
        });
        assert!(
            ok,
            "real server not {up}: {:?}\n{}",
            c.status(1).map(|s| s["virtual_servers"].clone()),
            c.logs()
        );
    };
    wait_rs(&c, true);
    wait_state(&c, 1, "to_r2", "Up", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rs_up(&c), Some(true));
    c.lan.set_port(2, false).unwrap();
    wait_state(&c, 1, "to_r2", "Down", Duration::from_secs(5));
    wait_rs(&c, false);
    let reason = c.status(1).unwrap()["virtual_servers"][0]["real_servers"][0]["reason"].clone();
    assert!(reason.as_str().unwrap().contains("BFD to_r2"), "{reason}");
    c.lan.set_port(2, true).unwrap();
    wait_state(&c, 1, "to_r2", "Up", Duration::from_secs(15));
    wait_rs(&c, true);
}

/// IPv6 (hop limit 64 sent and required, keepalived's IPv6 default) against
/// keepalived 2.2.7: Up, Down when the peer's cable is pulled, Up again.
#[test]
fn ipv6_session_with_keepalived_227() {
    if !keepalived_available(Version::V2_2_7) {
        return;
    }
    let Some(mut c) = Cluster::new(2, "bfd-v6") else {
        return;
    };
    let (a1, a2) = (
        c.lan.router_addr_v6(1).to_string(),
        c.lan.router_addr_v6(2).to_string(),
    );
    start_keepalived_bfd(
        &mut c,
        2,
        &format!("{}{}", global("ka"), bfd_block("to_vipd", &a1, &a2, "")),
        Version::V2_2_7,
    );
    c.start_vipd(
        1,
        &format!("{}{}", global("vipd"), bfd_block("to_ka", &a2, &a1, "")),
    );
    wait_state(&c, 1, "to_ka", "Up", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let s = session(&c, 1, "to_ka").unwrap();
    assert_eq!((&s["state"], &s["downs"]), (&"Up".into(), &0.into()), "{s}");
    assert!(s["drops"].as_array().unwrap().is_empty(), "drops: {s}");
    c.lan.set_port(2, false).unwrap();
    wait_state(&c, 1, "to_ka", "Down", Duration::from_secs(5));
    c.lan.set_port(2, true).unwrap();
    wait_state(&c, 1, "to_ka", "Up", Duration::from_secs(20));
}

/// The other way round, in a mixed cluster: keepalived 2.4.3 is the master and tracks
/// its BFD session to vipd (r3) with weight -150; vipd (r2) is the backup. r3's cable
/// pulled: keepalived's session goes down, its priority falls to 50 and vipd takes the
/// VIP; r3 back: keepalived takes it back.
#[test]
fn keepalived_tracks_a_vipd_bfd_session() {
    if Version::V2_4_3.require().is_none() {
        return;
    }
    let Some(mut c) = Cluster::new(3, "bfd-ka-track") else {
        return;
    };
    let vip = std::net::IpAddr::V4(vipd_netns::VIP_V4);
    let a: Vec<String> = (1..=3)
        .map(|i| c.lan.router_addr_v4(i).to_string())
        .collect();
    let spec = common::Spec::v3();
    let r1 = format!(
        "{}{}",
        bfd_block("to_r3", &a[2], &a[0], "    weight -150\n"),
        spec.clone()
            .with("track_bfd {\n        to_r3\n    }")
            .config(200)
    );
    c.start_vipd(
        3,
        &format!("{}{}", global("r3"), bfd_block("to_r1", &a[0], &a[2], "")),
    );
    c.start_vipd(2, &spec.config(100));
    start_keepalived_bfd(&mut c, 1, &r1, Version::V2_4_3);
    wait_state(&c, 3, "to_r1", "Up", Duration::from_secs(15));
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);

    c.lan.set_port(3, false).unwrap();
    wait_state(&c, 3, "to_r1", "Down", Duration::from_secs(5));
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    let st = c.instance(2);
    assert_eq!(st["state"], "MASTER", "{st}");

    c.lan.set_port(3, true).unwrap();
    wait_state(&c, 3, "to_r1", "Up", Duration::from_secs(15));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
}

/// `advert_int 1`: Master_Down_Interval of a priority-100 backup is 3.61 s.
fn spec_1s() -> common::Spec {
    common::Spec {
        advert_int: "1",
        ..common::Spec::v3()
    }
}

/// The backup r2 (vipd, `@vipd bfd_takeover`) sees the master r1's cable pulled and
/// is master within `limit`: well before 3 × advert + skew (3.61 s), and the
/// transition names the BFD session. Not a timing benchmark: the slack is generous.
fn assert_bfd_takeover(c: &Cluster, vip: std::net::IpAddr) {
    c.lan.set_port(1, false).unwrap();
    let pulled = Instant::now();
    let limit = Duration::from_millis(1500);
    let ok = vipd_netns::wait_for(limit, Duration::from_millis(5), || c.holders(vip) == [2]);
    let took = pulled.elapsed();
    assert!(
        ok,
        "r2 not master {took:?} after the cable pull\n{}",
        c.logs()
    );
    let st = c.instance(2);
    assert_eq!(st["state"], "MASTER", "{st}");
    assert_eq!(st["peer_takeovers"], 1, "{st}");
    let log = c.log(2);
    assert!(
        log.contains("BFD session to master"),
        "transition reason not logged:\n{log}"
    );
}

/// vipd ↔ vipd at `advert_int 1`: the backup takes over on the BFD Down (150 ms), not
/// after Master_Down_Interval (3.61 s); the cable back in, r1 preempts again.
#[test]
fn bfd_takeover_vipd_pair() {
    let Some(mut c) = Cluster::new(2, "bfd-takeover") else {
        return;
    };
    let vip = std::net::IpAddr::V4(vipd_netns::VIP_V4);
    let a: Vec<String> = (1..=2)
        .map(|i| c.lan.router_addr_v4(i).to_string())
        .collect();
    let spec = spec_1s();
    // r1 takes over on a Down too, but as MASTER it has nothing to take over.
    let r1 = format!(
        "{}{}",
        bfd_block("to_r2", &a[1], &a[0], ""),
        spec.clone().with("@vipd bfd_takeover to_r2").config(200)
    );
    let r2 = format!(
        "{}{}",
        bfd_block("to_r1", &a[0], &a[1], ""),
        spec.clone()
            .with("@vipd bfd_takeover to_r1 min_up 200 hold_down 5000")
            .config(100)
    );
    c.start_vipd(1, &r1);
    c.start_vipd(2, &r2);
    wait_state(&c, 2, "to_r1", "Up", Duration::from_secs(15));
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    // Past min_up, and r2 has accepted r1's adverts.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.instance(2)["state"], "BACKUP", "{}", c.instance(2));
    assert_eq!(c.instance(2)["peer_takeovers"], 0, "{}", c.instance(2));
    // The sessions' Down state reported at start-up is no Down.
    assert_eq!(c.instance(1)["peer_downs_ignored"], 0, "{}", c.instance(1));
    assert_eq!(c.instance(2)["peer_downs_ignored"], 0, "{}", c.instance(2));
    assert_bfd_takeover(&c, vip);
    // r1 lost its session too (its cable is out), as MASTER: a Down it ignores.
    let ignored = vipd_netns::wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
        c.instance(1)["peer_downs_ignored"] == 1
    });
    assert!(ignored, "{}", c.instance(1));
    assert_eq!(c.instance(1)["peer_takeovers"], 0, "{}", c.instance(1));

    c.lan.set_port(1, true).unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout());
}

/// Mixed cluster: the master is keepalived 2.4.3 (its `bfd_instance` answers the
/// session; it knows nothing of the take-over), the backup vipd with `bfd_takeover`.
#[test]
fn bfd_takeover_from_a_keepalived_243_master() {
    if Version::V2_4_3.require().is_none() {
        return;
    }
    let Some(mut c) = Cluster::new(2, "bfd-takeover-ka") else {
        return;
    };
    let vip = std::net::IpAddr::V4(vipd_netns::VIP_V4);
    let a: Vec<String> = (1..=2)
        .map(|i| c.lan.router_addr_v4(i).to_string())
        .collect();
    let spec = spec_1s();
    // The very file vipd runs, `@vipd` line included: keepalived skips it.
    let r1 = format!(
        "{}{}",
        bfd_block("to_r2", &a[1], &a[0], ""),
        spec.clone().with("@vipd bfd_takeover to_r2").config(200)
    );
    let r2 = format!(
        "{}{}",
        bfd_block("to_r1", &a[0], &a[1], ""),
        spec.clone()
            .with("@vipd bfd_takeover to_r1 min_up 200 hold_down 5000")
            .config(100)
    );
    start_keepalived_bfd(&mut c, 1, &r1, Version::V2_4_3);
    c.start_vipd(2, &r2);
    // keepalived sends at idle_tx (1 s) until Up.
    wait_state(&c, 2, "to_r1", "Up", Duration::from_secs(15));
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.instance(2)["state"], "BACKUP", "{}", c.instance(2));
    assert_bfd_takeover(&c, vip);

    c.lan.set_port(1, true).unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout());
}

//! keepalived 2.4's `auth_hmac` between vipd nodes and against keepalived 2.4.3: key
//! rollover without a transition, forged, unsigned, replayed and cut adverts refused
//! and counted, the keys never shown by logs, status, `--dump` or metrics; and
//! unicast pairs with keepalived 2.4.3 for `auth_hmac` and `auth_type AH`.

mod common;

use common::{Cluster, Spec, VIPD};
use std::io::{Read, Write};
use std::time::Duration;
use vipd_netns::Version;

const KEY1: &str = "key-one-for-the-vipd-pair-tests-1";
const KEY2: &str = "hex:f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff";

fn hmac(spec: Spec, keys: &[(u8, &str)], active: u8) -> Spec {
    let keys: String = keys
        .iter()
        .map(|(id, k)| format!("        key {id} {k}\n"))
        .collect();
    spec.with(&format!(
        "auth_hmac {{\n{keys}        active_key {active}\n    }}"
    ))
}

fn transitions(c: &Cluster, i: usize) -> u64 {
    c.instance(i)["transitions"].as_u64().unwrap()
}

/// The active key moves from 1 to 2 across a vipd pair, one node at a time, by
/// reload: every advert verifies (no drop), nobody changes state.
#[test]
fn key_rollover_across_a_vipd_pair_without_a_transition() {
    let Some(mut c) = Cluster::new(2, "hmac-roll") else {
        return;
    };
    let spec = Spec::v3();
    let both = [(1, KEY1), (2, KEY2)];
    let old = hmac(spec.clone(), &both, 1);
    let new = hmac(spec.clone(), &both, 2);
    c.start_vipd_with(1, &old.config(200), &["--metrics", "127.0.0.1:9651"]);
    c.start_vipd(2, &old.config(100));
    let vip = spec.vip();
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    std::thread::sleep(Duration::from_millis(500));
    let (t1, t2) = (transitions(&c, 1), transitions(&c, 2));
    let heard = c.instance(2)["adverts_received"].as_u64().unwrap();
    assert!(heard >= 2, "{}", c.instance(2));

    // The master signs with key 2 first (the backup knows it), then the backup.
    let (ok, out) = c.reload(1, &new.config(200));
    assert!(ok, "{out}");
    c.assert_stable(vip, &[1], Duration::from_secs(1));
    let (ok, out) = c.reload(2, &new.config(100));
    assert!(ok, "{out}");
    c.assert_stable(vip, &[1], Duration::from_secs(1));
    // Key 1 retired everywhere.
    let only2 = hmac(spec.clone(), &[(2, KEY2)], 2);
    assert!(c.reload(2, &only2.config(100)).0);
    assert!(c.reload(1, &only2.config(200)).0);
    c.assert_stable(vip, &[1], Duration::from_secs(1));

    assert_eq!((transitions(&c, 1), transitions(&c, 2)), (t1, t2));
    let b = c.instance(2);
    assert!(b["adverts_received"].as_u64().unwrap() > heard + 20, "{b}");
    assert!(b["drops"].as_array().unwrap().is_empty(), "{b}");
    assert!(c.instance(1)["drops"].as_array().unwrap().is_empty());

    // The keys appear nowhere an operator or a scraper looks.
    let status = c.status(1).unwrap().to_string();
    let metrics = c
        .lan
        .router(1)
        .run(|| {
            let mut s = std::net::TcpStream::connect("127.0.0.1:9651").unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap();
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    let dump = std::process::Command::new(VIPD)
        .args(["check-config", "--dump", "-f"])
        .arg(c.config_path(1))
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(dump.contains("key 2 <redacted>"), "{dump}");
    let logs = format!("{}{}", c.log(1), c.log(2));
    for (what, text) in [
        ("status", &status),
        ("metrics", &metrics),
        ("dump", &dump),
        ("logs", &logs),
    ] {
        for secret in ["key-one-for", "f0e1d2c3b4a59687", "F0E1D2"] {
            assert!(!text.contains(secret), "{what} shows a key:\n{text}");
        }
    }
}

/// A keepalived 2.4.3 node signing with another key: neither accepts the other, vipd
/// counts keepalived's adverts as `auth_mismatch`; with no `auth_hmac` at all on the
/// keepalived side, vipd (enforce) counts `auth_missing`.
#[test]
fn forged_and_unsigned_adverts_are_refused_and_counted() {
    if Version::V2_4_3.require().is_none() {
        return;
    }
    for (tag, theirs, reason) in [
        ("hmac-forged", Some(2u8), "auth_mismatch"),
        ("hmac-unsigned", None, "auth_missing"),
    ] {
        let Some(mut c) = Cluster::new(2, tag) else {
            return;
        };
        let spec = Spec::v2();
        let ka = match theirs {
            // Key id 1, but another secret under it: a forger who knows the id.
            Some(_) => hmac(
                spec.clone(),
                &[(1, "not-the-key-that-the-vipd-node-has")],
                1,
            ),
            None => spec.clone(),
        };
        c.start_keepalived_version(1, &ka.config(200), Version::V2_4_3);
        c.start_vipd(2, &hmac(spec.clone(), &[(1, KEY1)], 1).config(100));
        c.wait_holders(spec.vip(), &[1, 2], spec.takeover_timeout() * 2);
        vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
            c.drops(2, reason) >= 1
        });
        let st = c.instance(2);
        assert_eq!(st["state"], "MASTER", "{st}");
        assert_eq!(st["adverts_received"], 0, "{st}");
        assert!(c.drops(2, reason) >= 1, "{st}\n{}", c.logs());
    }
}

/// Unicast peers with `auth_hmac` (where the TTL check does not protect), vipd and
/// keepalived 2.4.3 in both roles: elected, failed over, preempted back.
#[test]
fn unicast_hmac_pairs_with_keepalived243_in_both_roles() {
    unicast_pairs(
        |s| hmac(s, &[(1, KEY1), (2, KEY2)], 2),
        Spec::v3(),
        ["hmac-uni-vk", "hmac-uni-kv"],
    );
}

/// The same with `auth_type AH` (the TTL is outside the ICV for unicast peers, and
/// vipd sends with its `unicast_ttl`).
#[test]
fn unicast_ah_pairs_with_keepalived243_in_both_roles() {
    unicast_pairs(
        |s| {
            s.with("unicast_ttl 64")
                .with("authentication {\n        auth_type AH\n        auth_pass uniAH\n    }")
        },
        Spec::v2(),
        ["ah-uni-vk", "ah-uni-kv"],
    );
}

fn unicast_pairs(auth: impl Fn(Spec) -> Spec, base: Spec, tags: [&str; 2]) {
    if Version::V2_4_3.require().is_none() {
        return;
    }
    for (tag, vipd_is_master) in [(tags[0], true), (tags[1], false)] {
        let Some(mut c) = Cluster::new(2, tag) else {
            return;
        };
        let addr = |i: usize| c.lan.router_addr_v4(i);
        let conf = |me: usize, other: usize, prio: u8| {
            auth(
                base.clone()
                    .with(&format!("unicast_src_ip {}", addr(me)))
                    .with(&format!("unicast_peer {{\n        {}\n    }}", addr(other))),
            )
            .config(prio)
        };
        let (c1, c2) = (conf(1, 2, 200), conf(2, 1, 100));
        let start1 = |c: &mut Cluster| {
            if vipd_is_master {
                c.start_vipd(1, &c1)
            } else {
                c.start_keepalived_version(1, &c1, Version::V2_4_3)
            }
        };
        if vipd_is_master {
            c.start_keepalived_version(2, &c2, Version::V2_4_3);
        } else {
            c.start_vipd(2, &c2);
        }
        start1(&mut c);
        let spec = base.clone();
        let vip = spec.vip();
        c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
        c.assert_stable(vip, &[1], Duration::from_secs(1));
        let v = if vipd_is_master { 1 } else { 2 };
        let st = c.instance(v);
        assert!(
            st["drops"].as_array().unwrap().is_empty(),
            "{st}\n{}",
            c.logs()
        );
        if !vipd_is_master {
            assert!(st["adverts_received"].as_u64().unwrap() >= 1, "{st}");
        }
        c.stop(1);
        c.wait_holders(vip, &[2], spec.takeover_timeout());
        start1(&mut c);
        c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
        c.assert_stable(vip, &[1], Duration::from_millis(500));
    }
}

/// keepalived 2.4.3's own signed adverts, captured and sent again by a third host
/// (same source address): vipd drops the copies as `replayed`; cut short, as
/// `truncated`; and stays BACKUP without a transition.
#[test]
fn replayed_and_truncated_keepalived_adverts_are_dropped_and_counted() {
    if Version::V2_4_3.require().is_none() {
        return;
    }
    let Some(mut c) = Cluster::new(3, "hmac-replay") else {
        return;
    };
    let spec = hmac(Spec::v2(), &[(1, KEY1)], 1);
    let cap = vipd_netns::Capture::start(c.lan.router(2), "eth0").unwrap();
    c.start_keepalived_version(1, &spec.config(200), Version::V2_4_3);
    c.start_vipd(2, &spec.config(100));
    let vip = spec.vip();
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        c.instance(2)["adverts_received"].as_u64().unwrap_or(0) >= 2
    });
    let transitions_before = transitions(&c, 2);
    let r1 = c.lan.router_addr_v4(1);
    let captured: Vec<Vec<u8>> = cap
        .vrrp_adverts()
        .into_iter()
        .filter(|f| !f.outgoing && f.src == std::net::IpAddr::V4(r1))
        .map(|f| f.payload)
        .collect();
    assert!(captured.len() >= 2, "{}", captured.len());
    let last = captured.last().unwrap().clone();
    assert_eq!(
        last.len(),
        20 + 28,
        "VRRPv2 with one address, and the trailer"
    );
    c.lan
        .router(3)
        .run(|| {
            for _ in 0..3 {
                common::inject(r1, &last);
            }
            common::inject(r1, &last[..last.len() - 5]);
        })
        .unwrap();
    vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(100), || {
        c.drops(2, "replayed") >= 3 && c.drops(2, "truncated") >= 1
    });
    let st = c.instance(2);
    assert!(c.drops(2, "replayed") >= 3, "{st}");
    assert_eq!(c.drops(2, "truncated"), 1, "{st}");
    assert_eq!(st["state"], "BACKUP", "{st}");
    assert_eq!(transitions(&c, 2), transitions_before);
    c.assert_stable(vip, &[1], Duration::from_secs(1));
}

//! Receive-path checks on a real wire: TTL, authentication, unicast peers with
//! multicast filtered by nftables.

mod common;

use common::{Cluster, Spec};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use vipd_vrrp::wire::{Advert, Auth, ChecksumVariant, Version};

#[test]
fn adverts_with_ttl_below_255_are_dropped_and_counted() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "ttl") else {
        return;
    };
    c.start_vipd(1, &spec.config(100));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    // A higher-priority advert that has crossed a router (TTL 64): must be ignored.
    let client = IpAddr::V4(vipd_netns::CLIENT_V4);
    let dst = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
    let adv = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 254,
        interval_cs: 10,
        addresses: vec![spec.vip()],
        auth: Auth::None,
    };
    let payload = adv.encode(client, dst, ChecksumVariant::PseudoHeader);
    c.lan
        .client()
        .run(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.set_multicast_ttl_v4(64).unwrap();
            s.set_multicast_if_v4(&vipd_netns::CLIENT_V4).unwrap();
            for _ in 0..5 {
                s.send_to(
                    &payload,
                    &SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 18), 0).into(),
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap();
    let ok = vipd_netns::wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
        c.drops(1, "bad_ttl") >= 5
    });
    assert!(ok, "bad_ttl drops: {}", c.drops(1, "bad_ttl"));
    assert_eq!(c.instance(1)["state"], "MASTER");
    assert_eq!(c.instance(1)["adverts_received"], 0);
}

#[test]
fn auth_pass_mismatch_never_forms_an_adjacency() {
    let base = Spec::v2();
    let Some(mut c) = Cluster::new(2, "auth") else {
        return;
    };
    let vip = base.vip();
    let auth = |p: &str| {
        format!("authentication {{\n        auth_type PASS\n        auth_pass {p}\n    }}")
    };
    c.start_vipd(1, &base.clone().with(&auth("secret1")).config(200));
    c.start_vipd(2, &base.clone().with(&auth("secret2")).config(100));
    // Neither accepts the other's adverts, so both end up master.
    c.wait_holders(vip, &[1, 2], base.takeover_timeout());
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        c.drops(1, "auth_mismatch") >= 1 && c.drops(2, "auth_mismatch") >= 1
    });
    assert!(ok, "{}\n{}", c.instance(1), c.instance(2));
    assert_eq!(c.instance(2)["adverts_received"], 0);
}

#[test]
fn unicast_peers_work_with_multicast_dropped() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "ucast") else {
        return;
    };
    let vip = spec.vip();
    for i in 1..=2 {
        let nft = "add table inet vipdtest\n\
                   add chain inet vipdtest in { type filter hook input priority 0; }\n\
                   add chain inet vipdtest out { type filter hook output priority 0; }\n\
                   add rule inet vipdtest in ip daddr 224.0.0.0/4 drop\n\
                   add rule inet vipdtest out ip daddr 224.0.0.0/4 drop\n";
        let f = c.dir.join(format!("nft{i}"));
        std::fs::write(&f, nft).unwrap();
        c.lan
            .router(i)
            .exec(&["nft", "-f", f.to_str().unwrap()])
            .unwrap();
    }
    let peers = |own: u8, peer: u8| {
        spec.clone()
            .with(&format!("unicast_src_ip 192.0.2.{own}"))
            .with(&format!("unicast_peer {{\n        192.0.2.{peer}\n    }}"))
    };
    c.start_vipd(1, &peers(11, 12).config(200));
    c.start_vipd(2, &peers(12, 11).config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    c.assert_stable(vip, &[1], Duration::from_secs(1));
    assert!(c.instance(2)["adverts_received"].as_u64().unwrap() > 5);
    c.lan.set_port(1, false).unwrap();
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    c.lan.set_port(1, true).unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout());
}

/// `old_unicast_checksum`: unicast VRRPv3 adverts checksummed with 224.0.0.18 in the
/// pseudo-header (keepalived before 1.3.6), sent and expected. Two routers that both
/// use it form an adjacency; a router without it drops their adverts as bad checksums
/// (and both hold the VIP), until a reload gives it the keyword too.
#[test]
fn old_unicast_checksum_uses_the_multicast_group_in_the_checksum() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "oldck") else {
        return;
    };
    let vip = spec.vip();
    let peers = |own: u8, peer: u8, old: bool| {
        let s = spec
            .clone()
            .with(&format!("unicast_src_ip 192.0.2.{own}"))
            .with(&format!("unicast_peer {{\n        192.0.2.{peer}\n    }}"));
        if old {
            s.with("old_unicast_checksum")
        } else {
            s
        }
    };
    c.start_vipd(1, &peers(11, 12, true).config(200));
    c.start_vipd(2, &peers(12, 11, false).config(100));
    c.wait_holders(vip, &[1, 2], spec.takeover_timeout());
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        c.drops(2, "bad_checksum") >= 3
    });
    assert!(ok, "{}", c.instance(2));
    assert_eq!(c.instance(2)["adverts_received"], 0);
    let (ok, out) = c.reload(2, &peers(12, 11, true).config(100));
    assert!(ok, "{out}");
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    c.assert_stable(vip, &[1], Duration::from_secs(1));
    assert!(c.instance(2)["adverts_received"].as_u64().unwrap() > 5);
    assert!(c.instance(1)["adverts_received"].as_u64().unwrap() >= 1);
}

/// `track_src_ip`: the instance is in FAULT while its configured `unicast_src_ip` is on
/// no interface (gives up the VIP), and comes back when the address does.
#[test]
fn track_src_ip_faults_while_the_source_address_is_gone() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "tsrcip") else {
        return;
    };
    let vip = spec.vip();
    let r1 = c.lan.router(1);
    r1.ip(["addr", "add", "192.0.2.21/24", "dev", "eth0"])
        .unwrap();
    let conf = spec
        .clone()
        .with("unicast_src_ip 192.0.2.21")
        .with("unicast_peer {\n        192.0.2.12\n    }")
        .with("track_src_ip")
        .config(200);
    c.start_vipd(1, &conf);
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    let state = |c: &Cluster| c.instance(1)["state"].as_str().unwrap_or("").to_string();
    c.lan
        .router(1)
        .ip(["addr", "del", "192.0.2.21/24", "dev", "eth0"])
        .unwrap();
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        state(&c) == "FAULT"
    });
    assert!(ok, "{}\n{}", c.instance(1), c.log(1));
    c.wait_holders(vip, &[], Duration::from_secs(2));
    c.lan
        .router(1)
        .ip(["addr", "add", "192.0.2.21/24", "dev", "eth0"])
        .unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout() + Duration::from_secs(1));
    assert_eq!(state(&c), "MASTER");
}

/// `unicast_ttl`: adverts to a unicast peer leave with that TTL (multicast ones would
/// keep 255); the peer here is the client, which reads them off a raw socket.
#[test]
fn unicast_ttl_sets_the_ttl_of_unicast_adverts() {
    let spec = Spec::v3()
        .with("unicast_src_ip 192.0.2.11")
        .with("unicast_peer {\n        192.0.2.50\n    }")
        .with("unicast_ttl 64");
    let Some(mut c) = Cluster::new(1, "uttl") else {
        return;
    };
    let sock = c
        .lan
        .client()
        .run(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .unwrap();
    c.start_vipd(1, &spec.config(100));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    // (source, TTL) of the first few adverts.
    let mut seen = Vec::new();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    while seen.len() < 3 {
        let n = sock.recv(&mut buf).expect("an advert within 5 s");
        // SAFETY: recv initialised the first n bytes.
        let b: Vec<u8> = buf[..n]
            .iter()
            .map(|x| unsafe { x.assume_init() })
            .collect();
        seen.push((Ipv4Addr::new(b[12], b[13], b[14], b[15]), b[8]));
    }
    assert!(
        seen.iter()
            .all(|&(src, ttl)| src == Ipv4Addr::new(192, 0, 2, 11) && ttl == 64),
        "{seen:?}"
    );
}

/// `mcast_dst_ip`: adverts go to that group (here 224.0.0.19, as the client sees them),
/// and two routers configured with it form one virtual router.
#[test]
fn mcast_dst_ip_moves_the_adverts_to_another_group() {
    let spec = Spec::v3().with("mcast_dst_ip 224.0.0.19");
    let Some(mut c) = Cluster::new(2, "mgroup") else {
        return;
    };
    let group = Ipv4Addr::new(224, 0, 0, 19);
    let sock = c
        .lan
        .client()
        .run(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.join_multicast_v4(&group, &vipd_netns::CLIENT_V4).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .unwrap();
    c.start_vipd(1, &spec.config(200));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    c.assert_stable(spec.vip(), &[1], Duration::from_secs(1));
    assert!(c.instance(2)["adverts_received"].as_u64().unwrap() > 5);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    let n = sock.recv(&mut buf).expect("an advert to 224.0.0.19");
    // SAFETY: recv initialised the first n bytes.
    let b: Vec<u8> = buf[..n]
        .iter()
        .map(|x| unsafe { x.assume_init() })
        .collect();
    assert_eq!(Ipv4Addr::new(b[16], b[17], b[18], b[19]), group);
    // The master's priority-0 advert goes to that group too: the backup takes over.
    c.stop(1);
    c.wait_holders(spec.vip(), &[2], spec.takeover_timeout());
}

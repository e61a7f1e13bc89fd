//! A VRRP socket that fails for good (issue 13): the instance fails over deliberately
//! and recovers, for real, in network namespaces.

mod common;

use common::{Cluster, Spec};
use std::time::Duration;

/// The `io_errors` count of (op, reason) in router `i`'s status.
fn io_errors(c: &Cluster, i: usize, op: &str, reason: Option<&str>) -> u64 {
    let status = c.status(i).expect("status");
    status["io_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["op"] == op && reason.is_none_or(|r| e["reason"] == r))
        .map(|e| e["count"].as_u64().unwrap())
        .sum()
}

fn socket_drops(c: &Cluster, i: usize, reason: &str) -> u64 {
    let status = c.status(i).expect("status");
    status["socket_drops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d[0] == reason)
        .map_or(0, |d| d[1].as_u64().unwrap())
}

/// An nftables `output` rule on the master drops VRRP: its adverts fail with EPERM.
/// It goes FAULT (releasing the VIP it can no longer defend) and the backup takes
/// over; once the rule is gone a probe gets out, the fault clears and it preempts back.
#[test]
fn a_master_whose_adverts_cannot_leave_goes_fault_and_comes_back() {
    send_fault(Spec::v3(), "sendfault");
}

#[test]
fn a_master_whose_ipv6_adverts_cannot_leave_goes_fault_and_comes_back() {
    send_fault(Spec::v3_ipv6(), "sendfault6");
}

fn send_fault(spec: Spec, tag: &str) {
    let Some(mut c) = Cluster::new(2, tag) else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(1, &spec.config(200));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    assert_eq!(c.instance(1)["send_faults"], 0);

    let r1 = c.lan.router(1);
    let nft = |cmd: &str| {
        r1.exec(&["nft", cmd]).unwrap();
    };
    nft("add table inet vipd_test");
    nft("add chain inet vipd_test out { type filter hook output priority 0 ; }");
    nft("add rule inet vipd_test out meta l4proto 112 drop");

    c.wait_holders(vip, &[2], spec.takeover_timeout());
    let i1 = c.instance(1);
    assert_eq!(i1["state"], "FAULT", "{i1}");
    assert_eq!(i1["io_fault"], "advert sends failing: EPERM", "{i1}");
    assert_eq!(i1["send_faults"], 1, "{i1}");
    assert!(io_errors(&c, 1, "advert_send", Some("EPERM")) >= 3);
    assert_eq!(c.instance(2)["state"], "MASTER");
    // Probes keep failing while the rule is there: it stays FAULT, never flaps.
    c.assert_stable(vip, &[2], Duration::from_secs(2));
    let i1 = c.instance(1);
    assert_eq!(i1["state"], "FAULT", "{i1}");
    assert_eq!(i1["send_faults"], 1, "{i1}");
    assert!(
        c.log(1).contains("could not be sent (EPERM): FAULT"),
        "{}",
        c.log(1)
    );
    let probes_before = socket_drops(&c, 2, "unknown_vrid");

    nft("delete table inet vipd_test");
    // The backoff is at most 4 s; then Master_Down_Interval and preemption.
    c.wait_holders(vip, &[1], Duration::from_secs(5) + spec.takeover_timeout());
    let i1 = c.instance(1);
    assert_eq!(i1["state"], "MASTER", "{i1}");
    assert!(i1["io_fault"].is_null(), "{i1}");
    assert_eq!(i1["send_faults"], 1, "{i1}");
    assert!(c.log(1).contains("sends work again"), "{}", c.log(1));
    assert_eq!(c.instance(2)["state"], "BACKUP");
    // The probe that got out reached r2, which dropped it as a VRID nobody has.
    assert!(socket_drops(&c, 2, "unknown_vrid") > probes_before);
    c.assert_stable(vip, &[1], Duration::from_millis(500));
    // Nothing here made a socket worth reopening.
    assert_eq!(io_errors(&c, 1, "vrrp_socket_reopen", None), 0);
    assert_eq!(io_errors(&c, 2, "vrrp_socket_reopen", None), 0);
}

/// The backup's interface deleted and re-created under the same index: the kernel
/// forgot the socket's VRRP multicast membership. Without a reopen the backup hears
/// nothing, takes over and stays master next to the real one (both hold the VIP); vipd
/// reopens the socket (its groups joined again) before the instance listens again.
#[test]
fn a_backup_whose_interface_is_recreated_with_the_same_index_hears_again() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "rejoin") else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(1, &spec.config(200));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    let r2 = c.lan.router(2);
    let ifindex: u32 = r2
        .exec(&["cat", "/sys/class/net/eth0/ifindex"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for round in 0..2 {
        c.lan.delete_link(2).unwrap();
        assert!(vipd_netns::wait_for(
            Duration::from_secs(3),
            Duration::from_millis(20),
            || c.instance(2)["state"] == "FAULT"
        ));
        if round == 1 {
            // Long enough for the membership check to find the interface gone.
            std::thread::sleep(Duration::from_millis(1500));
        }
        c.lan.recreate_link_with_index(2, ifindex).unwrap();
        assert!(vipd_netns::wait_for(
            Duration::from_secs(3),
            Duration::from_millis(20),
            || c.instance(2)["state"] == "BACKUP"
        ));
        // Many Master_Down_Intervals: r2 hears r1 and stays BACKUP.
        c.assert_stable(vip, &[1], Duration::from_secs(2));
        assert_eq!(c.instance(2)["state"], "BACKUP", "{}", c.logs());
        assert!(c.instance(2)["io_fault"].is_null());
        assert!(
            io_errors(&c, 2, "vrrp_socket_reopen", None) > round,
            "{}",
            c.status(2).unwrap()["io_errors"]
        );
    }
    assert_eq!(c.instance(1)["state"], "MASTER");
    assert_eq!(io_errors(&c, 1, "vrrp_socket_reopen", None), 0);
}

//! Mixed pairs with the real keepalived — Debian's 2.2.7 and upstream 2.4.3 — in both
//! roles, for VRRPv2/IPv4, VRRPv3/IPv4 and VRRPv3/IPv6 (and VRRPv2 with `auth_type AH`):
//! one master is elected, the master fails, the backup takes over, the master comes
//! back and takes its place again.

mod common;

use common::{Cluster, Spec};
use std::time::Duration;
use vipd_netns::{Keepalived, Version};

#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Vipd,
    Keepalived(Version),
}

const KA227: Impl = Impl::Keepalived(Version::V2_2_7);
const KA243: Impl = Impl::Keepalived(Version::V2_4_3);

fn start(c: &mut Cluster, i: usize, which: Impl, config: &str) {
    match which {
        Impl::Vipd => c.start_vipd(i, config),
        Impl::Keepalived(v) => c.start_keepalived_version(i, config, v),
    }
}

fn mixed_pair(spec: Spec, master: Impl, backup: Impl, tag: &str) {
    for which in [master, backup] {
        match which {
            Impl::Vipd => {}
            Impl::Keepalived(Version::V2_2_7) => {
                if !Keepalived::new().is_installed() {
                    panic!(
                        "keepalived is not installed: the interop tests need it (apt-get install keepalived)"
                    );
                }
            }
            Impl::Keepalived(v) => {
                if v.require().is_none() {
                    return;
                }
            }
        }
    }
    let Some(mut c) = Cluster::new(2, tag) else {
        return;
    };
    let vip = spec.vip();
    start(&mut c, 2, backup, &spec.config(100));
    start(&mut c, 1, master, &spec.config(200));
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    c.assert_stable(vip, &[1], spec.takeover_timeout() / 2);
    // The vipd side must have heard the keepalived side (and accepted its packets).
    let vipd_router = if master == Impl::Vipd { 1 } else { 2 };
    let st = c.instance(vipd_router);
    if vipd_router == 2 {
        assert_eq!(st["state"], "BACKUP", "{st}");
        assert!(st["adverts_received"].as_u64().unwrap() >= 1, "{st}");
    }
    let drops = st["drops"].as_array().unwrap();
    assert!(
        drops.is_empty(),
        "vipd dropped keepalived's adverts: {st}\n{}",
        c.logs()
    );

    // Fail the master: graceful stop (priority 0) for keepalived and vipd alike.
    c.stop(1);
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    // And back: the higher priority preempts.
    start(&mut c, 1, master, &spec.config(200));
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    c.assert_stable(vip, &[1], Duration::from_millis(500));
}

#[test]
fn keepalived_master_vipd_backup_v2_ipv4() {
    mixed_pair(Spec::v2(), KA227, Impl::Vipd, "ka-v2");
}
#[test]
fn vipd_master_keepalived_backup_v2_ipv4() {
    mixed_pair(Spec::v2(), Impl::Vipd, KA227, "vk-v2");
}
#[test]
fn keepalived_master_vipd_backup_v3_ipv4() {
    mixed_pair(Spec::v3(), KA227, Impl::Vipd, "ka-v3");
}
#[test]
fn vipd_master_keepalived_backup_v3_ipv4() {
    mixed_pair(Spec::v3(), Impl::Vipd, KA227, "vk-v3");
}
#[test]
fn keepalived_master_vipd_backup_v3_ipv6() {
    mixed_pair(Spec::v3_ipv6(), KA227, Impl::Vipd, "ka-v6");
}
#[test]
fn vipd_master_keepalived_backup_v3_ipv6() {
    mixed_pair(Spec::v3_ipv6(), Impl::Vipd, KA227, "vk-v6");
}
#[test]
fn keepalived243_master_vipd_backup_v2_ipv4() {
    mixed_pair(Spec::v2(), KA243, Impl::Vipd, "ka243-v2");
}
#[test]
fn vipd_master_keepalived243_backup_v2_ipv4() {
    mixed_pair(Spec::v2(), Impl::Vipd, KA243, "vk243-v2");
}
#[test]
fn keepalived243_master_vipd_backup_v3_ipv4() {
    mixed_pair(Spec::v3(), KA243, Impl::Vipd, "ka243-v3");
}
#[test]
fn vipd_master_keepalived243_backup_v3_ipv4() {
    mixed_pair(Spec::v3(), Impl::Vipd, KA243, "vk243-v3");
}
#[test]
fn keepalived243_master_vipd_backup_v3_ipv6() {
    mixed_pair(Spec::v3_ipv6(), KA243, Impl::Vipd, "ka243-v6");
}
#[test]
fn vipd_master_keepalived243_backup_v3_ipv6() {
    mixed_pair(Spec::v3_ipv6(), Impl::Vipd, KA243, "vk243-v6");
}

/// `auth_type AH` (IPsec AH, HMAC-MD5-96) with `pw`.
fn v2_ah(pw: &str) -> Spec {
    Spec::v2().with(&format!(
        "authentication {{\n        auth_type AH\n        auth_pass {pw}\n    }}"
    ))
}

#[test]
fn keepalived_master_vipd_backup_v2_ah() {
    mixed_pair(v2_ah("s3cr3tAH"), KA227, Impl::Vipd, "ka-ah");
}
#[test]
fn vipd_master_keepalived_backup_v2_ah() {
    mixed_pair(v2_ah("s3cr3tAH"), Impl::Vipd, KA227, "vk-ah");
}
#[test]
fn keepalived243_master_vipd_backup_v2_ah() {
    mixed_pair(v2_ah("s3cr3tAH"), KA243, Impl::Vipd, "ka243-ah");
}
#[test]
fn vipd_master_keepalived243_backup_v2_ah() {
    mixed_pair(v2_ah("s3cr3tAH"), Impl::Vipd, KA243, "vk243-ah");
}

/// Different AH passwords: neither side accepts the other's adverts, so both are
/// master, and vipd counts every keepalived advert as an authentication failure.
fn ah_wrong_password(ka: Version, tag: &str) {
    if ka.require().is_none() {
        return;
    }
    let Some(mut c) = Cluster::new(2, tag) else {
        return;
    };
    let vip = v2_ah("x").vip();
    let spec = v2_ah("vipd-key");
    start(
        &mut c,
        1,
        Impl::Keepalived(ka),
        &v2_ah("ka-key").config(200),
    );
    start(&mut c, 2, Impl::Vipd, &spec.config(100));
    c.wait_holders(vip, &[1, 2], spec.takeover_timeout() * 2);
    c.assert_stable(vip, &[1, 2], Duration::from_secs(3));
    // keepalived restarts its advert timer on every packet it reads as master, valid
    // or not (vrrp_scheduler.c, after vrrp_state_master_rx): once vipd is master with
    // the same interval, keepalived may fall silent (`ip -s link` shows its TX stop)
    // while keeping the VIP. So vipd counts keepalived's adverts from before, at least.
    vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        c.drops(2, "auth_mismatch") >= 1
    });
    let st = c.instance(2);
    assert_eq!(st["state"], "MASTER", "{st}");
    assert_eq!(st["adverts_received"], 0, "{st}");
    assert!(c.drops(2, "auth_mismatch") >= 1, "{st}\n{}", c.logs());
    // keepalived refuses vipd's adverts too (it stays master), logging why.
    assert!(
        c.log(1).contains("IPSEC-AH : invalid IPSEC HMAC-MD5"),
        "{}",
        c.log(1)
    );
}

#[test]
fn ah_wrong_password_keepalived227() {
    ah_wrong_password(Version::V2_2_7, "ah-wrong227");
}
#[test]
fn ah_wrong_password_keepalived243() {
    ah_wrong_password(Version::V2_4_3, "ah-wrong243");
}

const HMAC_KEY1: &str = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const HMAC_KEY2: &str = "second-key-for-rollover-tests-32";

/// keepalived 2.4's `auth_hmac` with keys 1 and 2, signing with `active`.
fn with_hmac(spec: Spec, active: u8) -> Spec {
    spec.with(&format!(
        "auth_hmac {{\n        key 1 {HMAC_KEY1}\n        key 2 {HMAC_KEY2}\n        active_key {active}\n    }}"
    ))
}

#[test]
fn keepalived243_master_vipd_backup_hmac_v2_ipv4() {
    mixed_pair(with_hmac(Spec::v2(), 1), KA243, Impl::Vipd, "ka243-hm2");
}
#[test]
fn vipd_master_keepalived243_backup_hmac_v2_ipv4() {
    mixed_pair(with_hmac(Spec::v2(), 1), Impl::Vipd, KA243, "vk243-hm2");
}
#[test]
fn keepalived243_master_vipd_backup_hmac_v3_ipv4() {
    mixed_pair(with_hmac(Spec::v3(), 2), KA243, Impl::Vipd, "ka243-hm3");
}
#[test]
fn vipd_master_keepalived243_backup_hmac_v3_ipv4() {
    mixed_pair(with_hmac(Spec::v3(), 2), Impl::Vipd, KA243, "vk243-hm3");
}
#[test]
fn keepalived243_master_vipd_backup_hmac_v3_ipv6() {
    mixed_pair(
        with_hmac(Spec::v3_ipv6(), 1),
        KA243,
        Impl::Vipd,
        "ka243-hm6",
    );
}
#[test]
fn vipd_master_keepalived243_backup_hmac_v3_ipv6() {
    mixed_pair(
        with_hmac(Spec::v3_ipv6(), 1),
        Impl::Vipd,
        KA243,
        "vk243-hm6",
    );
}

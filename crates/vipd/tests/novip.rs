//! Instances without `virtual_ipaddress`, as cloud ENI/EIP failover configs write them:
//! VRRP elects the master, notify scripts move the address. Run unchanged by vipd, and
//! side by side with keepalived 2.4.3 (`no_virtual_ipaddress`, VRRPv3 adverts that carry
//! no address), in real network namespaces.

mod common;

use common::{Cluster, Spec};
use std::time::Duration;
use vipd_netns::{Version, VIP_V4};

#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Vipd,
    Keepalived243,
}

/// The address is the notify scripts' business: `notify_master` adds it (as a cloud
/// script would attach the EIP), `notify_backup` / `notify_fault` / `notify_stop` drop it.
fn config(priority: u8, extra: &str) -> String {
    let add = format!("\"/usr/bin/ip addr add {VIP_V4}/24 dev eth0\"");
    let del = format!("\"/usr/bin/ip addr del {VIP_V4}/24 dev eth0\"");
    format!(
        "global_defs {{\n    router_id eni\n}}\n\
         vrrp_instance ENI {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
         priority {priority}\n    advert_int 0.1\n    version 3\n{extra}    notify_master {add}\n    \
         notify_backup {del}\n    notify_fault {del}\n    notify_stop {del}\n}}\n"
    )
}

fn start(c: &mut Cluster, i: usize, which: Impl, config: &str) {
    match which {
        Impl::Vipd => c.start_vipd(i, config),
        Impl::Keepalived243 => c.start_keepalived_version(i, config, Version::V2_4_3),
    }
}

fn eni_failover(master: Impl, backup: Impl, tag: &str) {
    if [master, backup].contains(&Impl::Keepalived243) && Version::V2_4_3.require().is_none() {
        return;
    }
    let Some(mut c) = Cluster::new(2, tag) else {
        return;
    };
    let vip = Spec::v3().vip();
    let timeout = Spec::v3().takeover_timeout();
    let conf = |p| config(p, "    no_virtual_ipaddress\n");
    start(&mut c, 2, backup, &conf(100));
    start(&mut c, 1, master, &conf(200));
    c.wait_holders(vip, &[1], timeout * 2);
    c.assert_stable(vip, &[1], Duration::from_millis(500));
    // The vipd side hears the other's address-less adverts and keeps none of them out.
    for (i, which) in [(1, master), (2, backup)] {
        if which == Impl::Vipd {
            let st = c.instance(i);
            let want = if i == 1 { "MASTER" } else { "BACKUP" };
            assert_eq!(st["state"], want, "{st}");
            assert_eq!(st["vips"], serde_json::json!([]), "{st}");
            if i == 2 {
                assert!(st["adverts_received"].as_u64().unwrap() >= 1, "{st}");
            }
            assert!(
                st["drops"].as_array().unwrap().is_empty(),
                "{st}\n{}",
                c.logs()
            );
        }
    }
    // The master goes away cleanly: its notify_stop drops the address, the backup's
    // notify_master takes it.
    c.stop(1);
    c.wait_holders(vip, &[2], timeout);
    // And back: the higher priority preempts; the old backup's notify_backup lets go.
    start(&mut c, 1, master, &conf(200));
    c.wait_holders(vip, &[1], timeout * 2);
}

#[test]
fn vipd_pair_without_vips_moves_the_address_by_notify() {
    eni_failover(Impl::Vipd, Impl::Vipd, "novip");
}

#[test]
fn keepalived243_master_vipd_backup_without_vips() {
    eni_failover(Impl::Keepalived243, Impl::Vipd, "novipka1");
}

#[test]
fn vipd_master_keepalived243_backup_without_vips() {
    eni_failover(Impl::Vipd, Impl::Keepalived243, "novipka2");
}

/// VRRPv2 without `no_virtual_ipaddress`: keepalived runs it with a warning; so does
/// vipd (the warning is in its log), and the instance works.
#[test]
fn v2_without_vips_runs_with_a_warning() {
    let Some(mut c) = Cluster::new(1, "novipv2") else {
        return;
    };
    let conf = config(100, "")
        .replace("version 3", "version 2")
        .replace("advert_int 0.1", "advert_int 1");
    c.start_vipd(1, &conf);
    c.wait_holders(Spec::v2().vip(), &[1], Spec::v2().takeover_timeout());
    assert!(
        c.log(1).contains("has no virtual_ipaddress"),
        "{}",
        c.log(1)
    );
}

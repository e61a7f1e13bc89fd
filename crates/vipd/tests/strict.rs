//! `vrrp_strict` and `no_accept`: the master holds the VIP but the host does not accept
//! packets addressed to it (nftables table `vipd_vrrp`), unless `accept` says so; a
//! reload changes that in place, and stopping removes the rules.

mod common;

use common::*;
use std::time::Duration;

fn pings(c: &Cluster, addr: &str) -> bool {
    c.lan
        .client()
        .exec(&["ping", "-c1", "-W1", "-n", addr])
        .is_ok()
}

fn drop_tables(c: &Cluster) -> String {
    c.lan
        .router(1)
        .exec(&["nft", "list", "tables"])
        .unwrap_or_default()
}

#[test]
fn vrrp_strict_drops_packets_to_the_vips_unless_accept() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "strict") else {
        return;
    };
    let plain = spec.config(100);
    let strict = plain.replace(
        "global_defs {\n",
        "global_defs {\n    vrrp_strict\n    vrrp_skip_check_adv_addr\n",
    );
    c.start_vipd(1, &strict);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    // The router itself answers on its own address, not on the VIP it holds.
    assert!(pings(&c, "192.0.2.11"));
    assert!(
        !pings(&c, "192.0.2.100"),
        "no_accept VIP answered\n{}",
        c.log(1)
    );
    assert!(drop_tables(&c).contains("vipd_vrrp"));
    assert!(c
        .log(1)
        .contains("no_accept: dropping packets to 192.0.2.100"));

    // `accept` in the instance: reachable, in place (no transition).
    let accepted = strict.replace("    priority 100\n", "    priority 100\n    accept\n");
    let (ok, out) = c.reload(1, &accepted);
    assert!(ok, "{out}");
    assert!(
        pings(&c, "192.0.2.100"),
        "accept VIP does not answer\n{}",
        c.log(1)
    );
    // Back to strict, then no strict at all.
    let (ok, out) = c.reload(1, &strict);
    assert!(ok, "{out}");
    assert!(!pings(&c, "192.0.2.100"));
    let (ok, out) = c.reload(1, &plain);
    assert!(ok, "{out}");
    assert!(pings(&c, "192.0.2.100"));
    assert!(!drop_tables(&c).contains("vipd_vrrp"));
    let st = c.status(1).unwrap();
    assert_eq!(st["instances"][0]["transitions"], 2, "{st}");

    // Stopping removes the rules it installed.
    let (ok, out) = c.reload(1, &strict);
    assert!(ok, "{out}");
    assert!(drop_tables(&c).contains("vipd_vrrp"));
    c.stop(1);
    assert!(!drop_tables(&c).contains("vipd_vrrp"));
    c.wait_holders(spec.vip(), &[], Duration::from_secs(2));
}

/// global_defs' `nftables TABLENAME` / `nftables_priority` / `nftables_counters` name
/// and tune the drop tables (keepalived's meaning for its own no_accept table); `vipd
/// run` starts with them (they are active), and stopping removes that table.
#[test]
fn nftables_names_and_tunes_the_drop_tables() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "nfttab") else {
        return;
    };
    let conf = spec.config(100).replace(
        "global_defs {\n",
        "global_defs {\n    vrrp_strict\n    vrrp_skip_check_adv_addr\n    nftables ka_strict\n    \
         nftables_priority -20\n    nftables_counters\n",
    );
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    assert!(!pings(&c, "192.0.2.100"), "{}", c.log(1));
    let tables = drop_tables(&c);
    assert!(
        tables.contains("ka_strict") && !tables.contains("vipd_vrrp"),
        "{tables}"
    );
    let t = c
        .lan
        .router(1)
        .exec(&["nft", "list", "table", "ip", "ka_strict"])
        .unwrap();
    assert!(t.contains("hook input priority -20;"), "{t}");
    assert!(t.contains("counter packets"), "{t}");
    c.stop(1);
    assert!(!drop_tables(&c).contains("ka_strict"));
}

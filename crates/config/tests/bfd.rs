//! `bfd_instance` typed with keepalived 2.4.3's defaults, ranges and checks
//! (keepalived/bfd/bfd_parser.c, keepalived.conf(5) "BFD CONFIGURATION"); each expectation
//! was compared with `keepalived -t` of 2.4.3.

use std::path::Path;

use vipd_config::{load_str, BfdInstance, Diagnostic, LoadOptions, Severity, INACTIVE};

fn load(text: &str) -> Result<vipd_config::Loaded, Vec<Diagnostic>> {
    let opts = LoadOptions {
        config_id: Some("node1".into()),
        check_interfaces: false,
        ..Default::default()
    };
    load_str(text, Path::new("b.conf"), &opts)
}

const VI: &str = "vrrp_instance VI {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  192.0.2.100\n }\n}\n";

fn bfds(blocks: &str) -> Vec<BfdInstance> {
    match load(&format!("{blocks}{VI}")) {
        Ok(l) => l.config.bfd_instances,
        Err(d) => panic!("{d:#?}"),
    }
}

fn one(body: &str) -> BfdInstance {
    bfds(&format!("bfd_instance b {{\n{body}\n}}\n")).remove(0)
}

/// (severity, message, line) of every diagnostic, inactive notices left out.
fn diags(blocks: &str) -> Vec<(Severity, String, u32)> {
    let list = match load(&format!("{blocks}{VI}")) {
        Ok(l) => l.diagnostics,
        Err(d) => d,
    };
    list.into_iter()
        .filter(|d| d.code != Some(INACTIVE))
        .map(|d| (d.severity, d.message, d.span.line))
        .collect()
}

#[test]
fn defaults_are_keepalived_243s() {
    let b = one(" neighbor_ip 192.0.2.2");
    assert_eq!(b.neighbor_ip, Some("192.0.2.2".parse().unwrap()));
    assert_eq!(b.source_ip, None);
    assert_eq!(
        (b.min_rx_us, b.min_tx_us, b.idle_tx_us),
        (10_000, 10_000, 1_000_000)
    );
    assert_eq!(b.multiplier, 5);
    assert!(!b.passive && !b.multihop && !b.reverse);
    assert_eq!((b.ttl, b.max_hops), (255, 0));
    assert_eq!(b.min_rx_ttl(), Some(255), "RFC 5881 GTSM by default");
    assert_eq!(b.port(), 3784);
    assert_eq!(b.weight, 0);
    assert!(b.to_vrrp && b.to_checker);
    // IPv6: keepalived sends hop limit 64 and requires it, not 255.
    let b = one(" neighbour_ip 2001:db8::2");
    assert_eq!(b.neighbor_ip, Some("2001:db8::2".parse().unwrap()));
    assert_eq!((b.ttl, b.min_rx_ttl()), (64, Some(64)));
}

#[test]
fn every_keyword() {
    let b = one(
        " neighbor_ip 192.0.2.2\n source_ip 192.0.2.1\n min_rx 3.312\n min_tx 20\n idle_tx 1500.5\n multiplier 3\n passive\n ttl 250\n max_hops 5\n multihop\n weight 10 reverse\n vrrp",
    );
    assert_eq!(b.source_ip, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(
        (b.min_rx_us, b.min_tx_us, b.idle_tx_us),
        (3_312, 20_000, 1_500_500)
    );
    assert_eq!(b.multiplier, 3);
    assert!(b.passive && b.multihop && b.reverse);
    assert_eq!((b.ttl, b.max_hops, b.min_rx_ttl()), (250, 5, Some(245)));
    assert_eq!(b.port(), 4784);
    assert_eq!(b.weight, 10);
    assert!(b.to_vrrp && !b.to_checker);
    let b = one(" neighbor_ip 192.0.2.2\n checker\n multihop off\n hoplimit 200");
    assert!(!b.to_vrrp && b.to_checker);
    assert!(!b.multihop);
    assert_eq!(b.ttl, 200);
    // -1 is 255: no check.
    let b = one(" neighbor_ip 192.0.2.2\n max_hops -1");
    assert_eq!((b.max_hops, b.min_rx_ttl()), (255, None));
    let b = one(" neighbor_ip 192.0.2.2\n multiplier 255\n min_rx 4294967");
    assert_eq!((b.multiplier, b.min_rx_us), (255, 4_294_967_000));
}

#[test]
fn max_hops_is_capped_at_the_ttl() {
    let text = "bfd_instance b {\n neighbor_ip 192.0.2.2\n ttl 250\n max_hops -1\n}\n";
    assert_eq!(
        diags(text),
        vec![(
            Severity::Warning,
            "bfd_instance `b`: max_hops 255 exceeds the ttl 250; using 250 (as keepalived)"
                .to_string(),
            4
        )]
    );
    let b = bfds(text).remove(0);
    assert_eq!((b.max_hops, b.min_rx_ttl()), (250, Some(0)));
    let b = one(" neighbor_ip 2001:db8::2\n max_hops 255");
    assert_eq!((b.ttl, b.max_hops, b.min_rx_ttl()), (64, 64, Some(0)));
}

#[test]
fn out_of_range_values_are_errors() {
    for (line, msg) in [
        (
            " min_rx 3.3125",
            "`min_rx` must be a number of milliseconds in 1..=4294967, found `3.3125`",
        ),
        (
            " min_tx 0.5",
            "`min_tx` must be a number of milliseconds in 1..=4294967, found `0.5`",
        ),
        (
            " idle_tx 999",
            "`idle_tx` must be a number of milliseconds in 1000..=4294967, found `999`",
        ),
        (
            " min_rx 4294967.001",
            "`min_rx` must be a number of milliseconds in 1..=4294967, found `4294967.001`",
        ),
        (
            " multiplier 0",
            "`multiplier` must be an integer in 1..=255, found `0`",
        ),
        (
            " max_hops 300",
            "`max_hops` must be an integer in -1..=255, found `300`",
        ),
        (" ttl 0", "`ttl` must be an integer in 1..=255, found `0`"),
        (
            " weight 254",
            "`weight` must be an integer in -253..=253, found `254`",
        ),
    ] {
        let text = format!("bfd_instance b {{\n neighbor_ip 192.0.2.2\n{line}\n}}\n");
        let got = diags(&text);
        assert_eq!(got, vec![(Severity::Error, msg.to_string(), 3)], "{line}");
    }
}

#[test]
fn block_checks() {
    assert_eq!(
        diags("bfd_instance b {\n source_ip 192.0.2.1\n}\n"),
        vec![(
            Severity::Error,
            "bfd_instance `b` has no `neighbor_ip`".to_string(),
            1
        )]
    );
    assert_eq!(
        diags("bfd_instance b {\n neighbor_ip 2001:db8::3\n source_ip 192.0.2.9\n}\n"),
        vec![(
            Severity::Error,
            "bfd_instance `b`: source_ip 192.0.2.9 and neighbor_ip 2001:db8::3 are not of the same family"
                .to_string(),
            3
        )]
    );
    // One session per neighbour and hop mode (unless both name different sources).
    let dup = "bfd_instance a {\n neighbor_ip 192.0.2.2\n}\nbfd_instance b {\n neighbor_ip 192.0.2.2\n}\n";
    assert_eq!(
        diags(dup),
        vec![(
            Severity::Error,
            "bfd_instance `b`: bfd_instance `a` already has neighbor 192.0.2.2".to_string(),
            5
        )]
    );
    let ok = "bfd_instance a {\n neighbor_ip 192.0.2.2\n source_ip 192.0.2.1\n}\n\
              bfd_instance b {\n neighbor_ip 192.0.2.2\n source_ip 192.0.2.3\n}\n\
              bfd_instance c {\n neighbor_ip 192.0.2.2\n multihop\n}\n";
    assert_eq!(bfds(ok).len(), 3);
    assert!(diags(ok).is_empty(), "{:?}", diags(ok));
    let twice = "bfd_instance a {\n neighbor_ip 192.0.2.2\n}\nbfd_instance a {\n neighbor_ip 192.0.2.3\n}\n";
    assert_eq!(
        diags(twice),
        vec![(
            Severity::Error,
            "bfd_instance `a` is defined twice (first at line 1)".to_string(),
            4
        )]
    );
    let long = format!(
        "bfd_instance {} {{\n neighbor_ip 192.0.2.2\n}}\n",
        "x".repeat(32)
    );
    assert_eq!(diags(&long).len(), 1);
    assert!(diags(&long)[0]
        .1
        .contains("too long (at most 31 characters"));
}

#[test]
fn large_intervals_warn_as_keepalived() {
    let got = diags("bfd_instance b {\n neighbor_ip 192.0.2.2\n min_tx 10000.001\n}\n");
    assert_eq!(
        got,
        vec![(
            Severity::Warning,
            "bfd_instance `b`: min_tx 10000.001 ms is larger than the sensible maximum of 10000 ms (keepalived warns too)"
                .to_string(),
            3
        )]
    );
}

/// With the BFD runtime, `bfd_instance`, `track_bfd`, `BFD_CHECK` and the BFD thread's
/// tuning are active.
#[test]
fn all_active() {
    let vi = VI.replace(
        " interface eth0\n",
        " interface eth0\n track_bfd {\n  b\n }\n",
    );
    let l = load(&format!(
        "global_defs {{\n bfd_priority -5\n bfd_rt_priority 50\n bfd_no_swap\n bfd_rlimit_rttime 30000\n bfd_process_name x\n}}\n\
         bfd_instance b {{\n neighbor_ip 192.0.2.2\n}}\n{vi}\
         virtual_server 192.0.2.100 80 {{\n protocol TCP\n real_server 192.0.2.3 80 {{\n  BFD_CHECK {{\n   name b\n   alpha\n  }}\n }}\n}}\n"
    ))
    .unwrap();
    let inactive: Vec<_> = l
        .diagnostics
        .iter()
        .filter(|d| d.code == Some(INACTIVE))
        .collect();
    assert!(inactive.is_empty(), "{inactive:#?}");
    assert_eq!(l.config.global.bfd_priority, Some(-5));
    assert_eq!(l.config.global.bfd_rt_priority, Some(50));
    assert!(l.config.global.bfd_no_swap);
    assert_eq!(l.config.global.bfd_rlimit_rttime, Some(30000));
    assert_eq!(l.config.instances[0].track.bfds[0].name, "b");
}

#[test]
fn track_bfd_of_a_checker_only_instance_is_ignored_with_a_warning() {
    let vi = VI.replace(
        " interface eth0\n",
        " interface eth0\n track_bfd {\n  b\n }\n",
    );
    let l = load(&format!(
        "bfd_instance b {{\n neighbor_ip 192.0.2.2\n checker\n}}\n{vi}"
    ))
    .unwrap();
    let w: Vec<_> = l
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("to the checkers only"))
        .collect();
    assert_eq!(w.len(), 1, "{:#?}", l.diagnostics);
    assert_eq!(w[0].severity, Severity::Warning);
    assert_eq!(w[0].span.line, 8, "the name inside track_bfd");
}

/// `@vipd bfd_takeover NAME [min_up MS] [hold_down MS]`: vipd's BFD-driven take-over,
/// on an `@vipd` line that keepalived skips (checked with 2.4.3's `-t`: no diagnostic,
/// while a bare `bfd_takeover` line is "Unknown keyword").
#[test]
fn bfd_takeover_on_an_at_vipd_line() {
    let vi = |line: &str| {
        format!(
            "bfd_instance m {{\n neighbor_ip 192.0.2.1\n}}\nbfd_instance c {{\n neighbor_ip 192.0.2.3\n checker\n}}\n\
             vrrp_instance VI {{\n interface eth0\n virtual_router_id 1\n{line}\n virtual_ipaddress {{\n  192.0.2.100\n }}\n}}\n"
        )
    };
    let takeover = |line: &str| match load(&vi(line)) {
        Ok(l) => {
            assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
            l.config.instances[0].bfd_takeover.as_ref().cloned()
        }
        Err(d) => panic!("{d:#?}"),
    };
    let t = takeover("@vipd bfd_takeover m").unwrap();
    assert_eq!(
        (t.bfd.as_str(), t.min_up_ms, t.hold_down_ms),
        ("m", 1000, 10_000)
    );
    let t = takeover("@vipd bfd_takeover m hold_down 5000 min_up 250").unwrap();
    assert_eq!((t.min_up_ms, t.hold_down_ms), (250, 5000));
    // `@vipd` is selected whatever the config id; `@^vipd` never is.
    assert_eq!(takeover("@^vipd bfd_takeover m"), None);
    let errors = |line: &str| -> Vec<String> {
        match load(&vi(line)) {
            Ok(l) => l.diagnostics.into_iter().map(|d| d.message).collect(),
            Err(d) => d.into_iter().map(|d| d.message).collect(),
        }
    };
    assert_eq!(
        errors("@vipd bfd_takeover nope"),
        vec!["bfd_takeover: no bfd_instance named `nope`"]
    );
    assert_eq!(
        errors("@vipd bfd_takeover c"),
        vec!["bfd_takeover: bfd_instance `c` sends its events to the checkers only (`checker`)"]
    );
    assert_eq!(
        errors("@vipd bfd_takeover m min_up"),
        vec!["bfd_takeover: `min_up` needs a value in ms"]
    );
    assert_eq!(
        errors("@vipd bfd_takeover m hold_down -1"),
        vec!["bfd_takeover: `hold_down` wants milliseconds 0..=3600000, not `-1`"]
    );
    assert_eq!(
        errors("@vipd bfd_takeover m fast"),
        vec!["bfd_takeover: unknown option `fast` (expected `min_up MS` or `hold_down MS`)"]
    );
}

//! vipd extensions for BGP mode, on `@vipd` lines that keepalived skips: `release_drain
//! MS` (bounded, refused for a VIP on the VRRP interface) and `standby_metric BASE`;
//! and `local` routes.

use std::path::Path;

use vipd_config::{load_str, Diagnostic, LoadOptions};

fn load(text: &str) -> Result<vipd_config::Loaded, Vec<Diagnostic>> {
    let opts = LoadOptions {
        config_id: Some("node1".into()),
        check_interfaces: false,
        ..Default::default()
    };
    load_str(text, Path::new("d.conf"), &opts)
}

fn vi(line: &str, vip: &str) -> String {
    format!(
        "vrrp_instance VI {{\n interface eth0\n virtual_router_id 1\n{line}\n virtual_ipaddress {{\n  {vip}\n }}\n}}\n"
    )
}

fn messages(text: &str) -> Vec<String> {
    match load(text) {
        Ok(l) => l.diagnostics.into_iter().map(|d| d.message).collect(),
        Err(d) => d.into_iter().map(|d| d.message).collect(),
    }
}

#[test]
fn release_drain_on_an_at_vipd_line() {
    let l = load(&vi("@vipd release_drain 300", "192.0.2.100/32 dev lo")).unwrap();
    assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    assert_eq!(l.config.instances[0].release_drain_ms, Some(300));
    // Not selected: keepalived's behaviour (the hold of one advert interval).
    let l = load(&vi("@^vipd release_drain 300", "192.0.2.100/32 dev lo")).unwrap();
    assert_eq!(l.config.instances[0].release_drain_ms, None);
}

#[test]
fn release_drain_is_checked() {
    let on_lo = "192.0.2.100/32 dev lo";
    for bad in ["0", "10001", "soon"] {
        let m = messages(&vi(&format!("@vipd release_drain {bad}"), on_lo));
        assert!(
            m.iter().any(|m| m.contains("release_drain")),
            "{bad}: {m:?}"
        );
    }
    assert!(messages(&vi("@vipd release_drain 10000", on_lo)).is_empty());
    // On the VRRP interface (written or by default) the drain's local route would
    // answer ARP for the VIP after the new master took it.
    for vip in ["192.0.2.100/24", "192.0.2.100/24 dev eth0"] {
        assert_eq!(
            messages(&vi("@vipd release_drain 300", vip)),
            vec![
                "release_drain: VIP 192.0.2.100 is on the VRRP interface eth0, where the old \
                 master would keep answering ARP / NDP for it after the new one took it"
            ],
            "{vip}"
        );
    }
    // Another interface (a dummy one, say) is fine.
    assert!(messages(&vi("@vipd release_drain 300", "192.0.2.100/32 dev vips")).is_empty());
}

/// `@vipd standby_metric BASE` (BGP anycast): parsed on an `@vipd` line, and only with
/// `virtual_routes` to install while BACKUP.
#[test]
fn standby_metric_needs_virtual_routes() {
    let routes = "virtual_routes {\n  192.0.2.100/32 dev lo table 100 metric 100\n }";
    let l = load(&vi(
        &format!("@vipd standby_metric 1000\n {routes}"),
        "192.0.2.100/32 dev lo",
    ))
    .unwrap();
    assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    assert_eq!(l.config.instances[0].standby_metric, Some(1000));
    assert_eq!(
        messages(&vi("@vipd standby_metric 1000", "192.0.2.100/32 dev lo")),
        vec!["standby_metric: the instance has no `virtual_routes` to install while BACKUP"]
    );
    let m = messages(&vi(
        &format!("@vipd standby_metric -1\n {routes}"),
        "192.0.2.100/32 dev lo",
    ));
    assert!(m.iter().any(|m| m.contains("standby_metric")), "{m:?}");
}

/// `local` routes (keepalived accepts them too): the anycast VIP answered without
/// being an address.
#[test]
fn local_static_route() {
    let l = load(&format!(
        "static_routes {{\n local 192.0.2.100/32 dev lo table local\n}}\n{}",
        vi("", "192.0.2.100/32 dev lo")
    ))
    .unwrap();
    assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    let r = &l.config.static_routes[0];
    assert_eq!(
        (r.kind, r.table, r.dev.as_deref()),
        (vipd_config::RouteType::Local, 255, Some("lo"))
    );
}

//! `@vipd release_drain MS` (vipd extension, BGP mode): parsed on an `@vipd` line that
//! keepalived skips, bounded, and refused for a VIP on the VRRP interface.

use std::path::Path;

use vipd_config::{load_str, Diagnostic, LoadOptions};

fn load(text: &str) -> Result<vipd_config::Loaded, Vec<Diagnostic>> {
    let opts = LoadOptions {
        config_id: Some("node1".into()),
        check_interfaces: false,
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

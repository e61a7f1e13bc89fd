//! Cross-field and cross-instance checks on the typed model.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::diagnostic::Diags;
use crate::model::{Config, InitialState, VrrpInstance};
use crate::typed::InstanceMeta;
use crate::value::family;
use crate::LoadOptions;

/// `use_ipvlan`: keepalived 2.4.3 puts an IPv4 instance without an ipvlan address, or
/// with one of the other family, in FAULT for good; vipd refuses the file instead.
fn check_ipvlan(inst: &VrrpInstance, meta: &InstanceMeta, is_v6: bool, diags: &mut Diags) {
    let (Some(v), Some(tok)) = (&*inst.use_ipvlan, meta.keyword_tok("use_ipvlan")) else {
        return;
    };
    if let Some(vmac) = meta.keyword_tok("use_vmac") {
        diags.error_help(
            &tok,
            "`use_ipvlan` and `use_vmac` in one instance",
            format!(
                "the VIPs live on one of them: keep one (`use_vmac` at line {})",
                vmac.span.line
            ),
        );
    }
    match v.addr {
        None if !is_v6 => diags.error_help(
            &tok,
            "`use_ipvlan` of an IPv4 instance needs the ipvlan's address",
            "add it, e.g. `use_ipvlan 192.0.2.11/24`: adverts leave from it (keepalived puts the instance in FAULT without one)",
        ),
        Some((a, _)) if a.is_ipv6() != is_v6 => diags.error(
            &tok,
            format!(
                "`use_ipvlan` address {a} is {}, the instance is {}",
                family(&a),
                if is_v6 { "IPv6" } else { "IPv4" }
            ),
        ),
        _ => {}
    }
}

pub(crate) fn validate(
    config: &Config,
    metas: &[InstanceMeta],
    opts: &LoadOptions,
    diags: &mut Diags,
) {
    let mut names: HashMap<&str, &InstanceMeta> = HashMap::new();
    // (interface, is_ipv6, vrid) -> first multicast instance using it.
    let mut vrids: HashMap<(&str, bool, u8), &VrrpInstance> = HashMap::new();
    // Whether each interface name exists, looked up once per load (thousands of
    // instances usually share a few interfaces).
    let mut interfaces: HashMap<&str, bool> = HashMap::new();

    // The plan would drop such a `brd` without a word; keepalived skips the address.
    for v in &config.static_ipaddress {
        if let Some(brd) = v.brd.filter(|b| b.is_ipv6() || v.addr.is_ipv6()) {
            diags.push(crate::diagnostic::Diagnostic::new(
                crate::diagnostic::Severity::Error,
                format!("static_ipaddress {}: `brd {brd}`: {BRD_FAMILY}", v.addr),
                v.span.clone(),
                v.addr.to_string().len() as u32,
            ));
        }
    }
    for inst in &config.instances {
        address_vmacs(inst, diags);
    }
    for (inst, meta) in config.instances.iter().zip(metas) {
        if !inst.name.is_empty() {
            if let Some(first) = names.get(inst.name.as_str()) {
                let s = &first.name.span;
                diags.error_help(
                    &meta.name,
                    format!("duplicate vrrp_instance name `{}`", inst.name),
                    format!("first defined at {}:{}:{}", s.file.display(), s.line, s.col),
                );
            } else {
                names.insert(&inst.name, meta);
            }
        }

        let is_v6 = check_families(inst, meta, diags);
        check_planned_values(inst, meta, is_v6, diags);
        check_version(config, inst, meta, is_v6, diags);
        check_no_vips(config, inst, meta, diags);
        if inst.auth.is_some() && inst.auth_hmac.is_some() {
            if let Some(tok) = meta.keyword_tok("auth_hmac") {
                // keepalived: "auth_hmac cannot be combined with authentication,
                // dropping legacy auth" (a configuration error).
                diags.error_help(
                    &tok,
                    "`auth_hmac` cannot be combined with `authentication`",
                    "delete the `authentication` block: the extension replaces it",
                );
            }
        }
        if let (Some(t), Some(tok)) = (&*inst.bfd_takeover, meta.keyword_tok("bfd_takeover")) {
            match config.bfd_instances.iter().find(|b| b.name == t.bfd) {
                None => diags.error(
                    &tok,
                    format!("bfd_takeover: no bfd_instance named `{}`", t.bfd),
                ),
                Some(b) if !b.to_vrrp => diags.error(
                    &tok,
                    format!(
                        "bfd_takeover: bfd_instance `{}` sends its events to the checkers only (`checker`)",
                        t.bfd
                    ),
                ),
                Some(_) => {}
            }
        }
        // The drain's local route makes the host answer ARP / NDP for the VIP on every
        // interface: on the VRRP segment that would fight the new master's GARP.
        if let (Some(_), Some(tok)) = (inst.release_drain_ms, meta.keyword_tok("release_drain")) {
            if let Some(a) = inst
                .virtual_ipaddress
                .iter()
                .find(|a| a.dev.as_deref().is_none_or(|d| d == inst.interface))
            {
                diags.error_help(
                    &tok,
                    format!(
                        "release_drain: VIP {} is on the VRRP interface {}, where the old \
                         master would keep answering ARP / NDP for it after the new one took it",
                        a.addr, inst.interface
                    ),
                    "release_drain is for VIPs announced by a routing daemon (BGP mode): put them on `dev lo`",
                );
            }
        }
        if let (Some(_), Some(tok)) = (inst.standby_metric, meta.keyword_tok("standby_metric")) {
            if inst.virtual_routes.is_empty() {
                diags.error_help(
                    &tok,
                    "standby_metric: the instance has no `virtual_routes` to install while BACKUP",
                    "list the routes to announce (e.g. `192.0.2.100/32 dev lo table 100 metric 100`) in `virtual_routes`",
                );
            }
        }
        // keepalived resets both with a warning; so does vipd.
        let timer_expired = ["timer_expired_backup", "thread_timer_expired"]
            .into_iter()
            .find_map(|k| meta.keyword_tok(k).map(|t| (k, t)));
        if let Some((key, tok)) = timer_expired {
            if !inst.nopreempt {
                diags.warning(&tok, format!("`{key}` is ignored without `nopreempt`"));
            }
        }
        check_ipvlan(inst, meta, is_v6, diags);
        if let Some(tok) = meta.keyword_tok("owner_ignore_adverts") {
            if inst.priority != 255 && inst.owner_ignore_adverts == Some(true) {
                diags.warning(
                    &tok,
                    "`owner_ignore_adverts` is ignored: only an address owner (priority 255) ignores adverts",
                );
            }
        }

        if inst.state == InitialState::Master {
            for key in ["nopreempt", "preempt_delay"] {
                if let Some(tok) = meta.keyword_tok(key) {
                    diags.warning(
                        &tok,
                        format!(
                            // (`no_preempt` is the same keyword: named as `nopreempt`.)
                            "`{key}` has no effect with state MASTER (keepalived clears it); use state BACKUP",
                        ),
                    );
                }
            }
        }

        let multicast = inst.unicast_peers.is_empty();
        if multicast && !inst.interface.is_empty() && inst.virtual_router_id != 0 {
            {
                let key = (inst.interface.as_str(), is_v6, inst.virtual_router_id);
                match vrids.get(&key) {
                    Some(first) => {
                        if let Some(tok) = meta.value_tok("virtual_router_id") {
                            diags.error_help(
                                &tok,
                                format!(
                                    "virtual_router_id {} is already used for {} on `{}` by vrrp_instance `{}`",
                                    inst.virtual_router_id,
                                    if is_v6 { "IPv6" } else { "IPv4" },
                                    inst.interface,
                                    first.name
                                ),
                                "multicast instances on one interface and address family need distinct virtual_router_ids",
                            );
                        }
                    }
                    None => {
                        vrids.insert(key, inst);
                    }
                }
            }
        }

        if opts.check_interfaces {
            check_interfaces(
                inst,
                meta,
                config.global.dynamic_interfaces,
                &mut interfaces,
                diags,
            );
        }
    }
}

/// Checks that VIPs, peers and source addresses share the instance's family (see
/// [`VrrpInstance::is_ipv6`]); returns whether the instance is IPv6.
fn check_families(inst: &VrrpInstance, meta: &InstanceMeta, diags: &mut Diags) -> bool {
    let is_v6 = inst.is_ipv6();
    let fam = if is_v6 { "IPv6" } else { "IPv4" };
    let what = if inst.virtual_ipaddress.is_empty() {
        "the instance is"
    } else {
        "the virtual addresses are"
    };
    for (i, (vip, tok)) in inst
        .virtual_ipaddress
        .iter()
        .zip(meta.vip_locs())
        .enumerate()
    {
        if vip.addr.is_ipv6() != is_v6 {
            let help = "use a separate vrrp_instance for each address family";
            if i == 0 {
                // Only `native_ipv6` can disagree with the first address.
                diags.error_help(
                    &tok,
                    format!(
                        "`{}` is IPv4 but `native_ipv6` makes the instance IPv6",
                        vip.addr
                    ),
                    help,
                );
            } else {
                diags.error_help(
                    &tok,
                    format!(
                        "virtual_ipaddress mixes address families: `{}` is {} but the first address is {fam}",
                        vip.addr,
                        family(&vip.addr)
                    ),
                    help,
                );
            }
        }
    }
    for (peer, tok) in inst.unicast_peers.iter().zip(meta.peer_locs()) {
        if peer.addr.is_ipv6() != is_v6 {
            diags.error(
                &tok,
                format!(
                    "unicast_peer `{}` is {} but {what} {fam}",
                    peer.addr,
                    family(&peer.addr)
                ),
            );
        }
    }
    for (key, addr) in [
        ("mcast_src_ip", inst.mcast_src_ip),
        ("unicast_src_ip", inst.unicast_src_ip),
    ] {
        if let (Some(addr), Some(tok)) = (addr, meta.value_tok(key)) {
            if addr.is_ipv6() != is_v6 {
                diags.error(
                    &tok,
                    format!("`{key}` {addr} is {} but {what} {fam}", family(&addr)),
                );
            }
        }
    }
    is_v6
}

const BRD_FAMILY: &str = "a broadcast address belongs to an IPv4 address and is IPv4 itself";

/// Values the instance's plan would refuse (so `vipd run` and a reload would), reported
/// at their place.
fn check_planned_values(inst: &VrrpInstance, meta: &InstanceMeta, is_v6: bool, diags: &mut Diags) {
    let fam = if is_v6 { "IPv6" } else { "IPv4" };
    if inst.unicast_ttl == Some(0) {
        if let Some(tok) = meta.value_tok("unicast_ttl") {
            diags.error_help(
                &tok,
                "`unicast_ttl 0`: a packet with TTL 0 cannot be sent",
                "use 1..=255 (255, the default, is what a receiver checking the TTL expects)",
            );
        }
    }
    // keepalived: "mcast_dst_ip 192.0.2.9 not multicast. Skipping...".
    if let (Some(g), Some(tok)) = (inst.mcast_dst_ip, meta.value_tok("mcast_dst_ip")) {
        if !g.is_multicast() || g.is_ipv6() != is_v6 {
            diags.error(
                &tok,
                format!("`mcast_dst_ip` {g} is not an {fam} multicast address, as the instance is {fam}"),
            );
        }
    }
    // keepalived: "VRRP is trying to assign invalid broadcast ... skipping VIP".
    for (vip, tok) in inst.virtual_ipaddress.iter().zip(meta.vip_locs()) {
        if let Some(brd) = vip.brd {
            if brd.is_ipv6() || vip.addr.is_ipv6() {
                diags.error(&tok, format!("{}: `brd {brd}`: {BRD_FAMILY}", vip.addr));
            }
        }
    }
}

/// An instance without `virtual_ipaddress`: keepalived runs it (a cloud ENI/EIP moved
/// by notify scripts) with a warning, or silently with `no_virtual_ipaddress`; VRRPv3
/// and strict mode require an address unless `no_virtual_ipaddress` says otherwise.
fn check_no_vips(config: &Config, inst: &VrrpInstance, meta: &InstanceMeta, diags: &mut Diags) {
    if meta.vip_entries > 0 || inst.no_virtual_ipaddress {
        return;
    }
    let label = if inst.name.is_empty() {
        "`vrrp_instance`".to_string()
    } else {
        format!("vrrp_instance `{}`", inst.name)
    };
    let strict = inst.strict_mode.unwrap_or(config.global.vrrp_strict);
    let help = "add `virtual_ipaddress { ... }`, or `no_virtual_ipaddress` if the address is moved some other way (e.g. a cloud ENI/EIP moved by a notify script)";
    if inst.effective_version(&config.global) == 3 || strict {
        let why = if strict {
            "strict mode"
        } else {
            "VRRP version 3"
        };
        diags.error_help(
            &meta.name,
            format!("{label} has no virtual_ipaddress; {why} requires at least one"),
            help,
        );
    } else {
        diags.push(
            crate::Diagnostic::warning_at(
                format!(
                    "{label} has no virtual_ipaddress: it elects a master but moves no address"
                ),
                &meta.name,
            )
            .with_help(help),
        );
    }
}

fn check_version(
    config: &Config,
    inst: &VrrpInstance,
    meta: &InstanceMeta,
    is_v6: bool,
    diags: &mut Diags,
) {
    if is_v6 && inst.version == Some(2) {
        if let Some(tok) = meta.value_tok("version") {
            diags.error_help(
                &tok,
                "VRRP version 2 does not support IPv6",
                "use `version 3` (the default for IPv6 instances)",
            );
        }
        return;
    }
    // IPv6 instances always run version 3, whatever global vrrp_version says.
    let version = match inst.version {
        Some(v) => v,
        None if is_v6 => 3,
        None => config.global.vrrp_version.unwrap_or(2),
    };
    let adv = inst.advert_int;
    let at = (meta.value_tok("advert_int")).unwrap_or_else(|| (&meta.name).into());
    let source = match (inst.version, config.global.vrrp_version) {
        (Some(_), _) => "version 2",
        (None, Some(_)) => "global `vrrp_version 2`",
        (None, None) => "VRRP version 2 (the default)",
    };
    if version == 2 {
        let whole = adv.subsec_nanos() == 0;
        if !whole || adv < Duration::from_secs(1) || adv > Duration::from_secs(255) {
            diags.error_help(
                &at,
                format!(
                    "with {source}, `advert_int` must be a whole number of seconds in 1..=255, found {}",
                    fmt_secs(adv)
                ),
                "use `version 3` for sub-second advertisement intervals",
            );
        }
    } else {
        // Whole centiseconds (written without is_multiple_of to keep the 1.80 MSRV).
        let centis = adv.as_micros() / 10_000 * 10_000 == adv.as_micros();
        if !centis || adv < Duration::from_millis(10) || adv > Duration::from_millis(40_950) {
            diags.error_help(
                &at,
                format!(
                    "with VRRP version 3, `advert_int` must be 0.01..=40.95 seconds in steps of 0.01, found {}",
                    fmt_secs(adv)
                ),
                "VRRPv3 carries the interval in centiseconds",
            );
        }
        if inst.auth.is_some() {
            if let Some(tok) = meta.keyword_tok("authentication") {
                // keepalived: "VRRP version 3 does not support authentication. Ignoring."
                diags.push(
                    crate::Diagnostic::warning_at(
                        "`authentication` is ignored with VRRP version 3 (RFC 5798 removed it)",
                        &tok,
                    )
                    .with_help("delete the block, or use `version 2` if the peers authenticate"),
                );
            }
        }
    }
}

/// An address's own `use_vmac` where keepalived 2.4.3 reports a configuration error:
/// with the instance's `use_vmac` it already lives on that VMAC ("use_vmac specified for
/// VIP/eVIP ... and vrrp instance"), and on another interface or of the other family
/// `use_vmac_addr` already gives it one ("use_vmac_addr specified and use_vmac
/// specified for VIP/eVIP").
fn address_vmacs(inst: &VrrpInstance, diags: &mut Diags) {
    let is_v6 = inst.is_ipv6();
    let vips = inst
        .virtual_ipaddress
        .iter()
        .chain(&inst.virtual_ipaddress_excluded);
    for v in vips.filter(|v| v.use_vmac) {
        let on_own = v.dev.as_deref().is_none_or(|d| d == inst.interface);
        let same_family = v.addr.is_ipv6() == is_v6;
        let why = if on_own && same_family && inst.use_vmac.is_some() {
            "the instance's `use_vmac` already puts it on the instance's VMAC"
        } else if !(on_own && same_family) && inst.use_vmac_addr {
            "the instance's `use_vmac_addr` already gives it a VMAC"
        } else {
            continue;
        };
        diags.push(crate::diagnostic::Diagnostic::new(
            crate::diagnostic::Severity::Error,
            format!("{}: `use_vmac`: {why}", v.addr),
            v.span.clone(),
            v.addr.to_string().len() as u32,
        ));
    }
}

/// A missing interface: `vipd run` refuses it (so does keepalived), unless
/// `dynamic_interfaces` says it may appear later.
fn check_interfaces<'c>(
    inst: &'c VrrpInstance,
    meta: &InstanceMeta,
    dynamic: bool,
    known: &mut HashMap<&'c str, bool>,
    diags: &mut Diags,
) {
    // Each name is looked up once per load (5,000 instances on 20 interfaces).
    let mut exists = |name: &'c str| *known.entry(name).or_insert_with(|| interface_exists(name));
    let wait = if dynamic {
        ": waiting for it (dynamic_interfaces)"
    } else {
        ""
    };
    if !inst.interface.is_empty() && !exists(&inst.interface) {
        if let Some(tok) = meta.value_tok("interface") {
            let until = if dynamic {
                ": the instance is in FAULT until it appears (dynamic_interfaces)"
            } else {
                ""
            };
            diags.warning(
                &tok,
                format!(
                    "interface `{}` does not exist on this host{until}",
                    inst.interface
                ),
            );
        }
    }
    if let Some(vrf) = inst.vrf.as_deref().filter(|v| !exists(v)) {
        if let Some(tok) = meta.value_tok("vrf") {
            let until = if dynamic {
                ": the instance is in FAULT until it appears (dynamic_interfaces)"
            } else {
                ""
            };
            diags.warning(
                &tok,
                format!("VRF device `{vrf}` does not exist on this host{until}"),
            );
        }
    }
    for (vip, tok) in inst.virtual_ipaddress.iter().zip(meta.vip_locs()) {
        if let Some(dev) = &vip.dev {
            if !exists(dev) {
                diags.warning(
                    &tok,
                    format!(
                        "interface `{dev}` (dev of {}) does not exist on this host{wait}",
                        vip.addr
                    ),
                );
            }
        }
    }
}

fn interface_exists(name: &str) -> bool {
    !name.contains('/') && Path::new("/sys/class/net").join(name).exists()
}

fn fmt_secs(d: Duration) -> String {
    let micros = d.subsec_micros();
    if micros == 0 {
        format!("{}s", d.as_secs())
    } else {
        let frac = format!("{micros:06}");
        format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_format() {
        assert_eq!(fmt_secs(Duration::from_secs(3)), "3s");
        assert_eq!(fmt_secs(Duration::from_millis(10)), "0.01s");
        assert_eq!(fmt_secs(Duration::from_micros(1_500_001)), "1.500001s");
    }

    use crate::{load_str, Diagnostic, LoadOptions, Severity};

    fn load(text: &str, check_interfaces: bool) -> Result<crate::Loaded, Vec<Diagnostic>> {
        let opts = LoadOptions {
            config_id: Some("node1".into()),
            check_interfaces,
            ..Default::default()
        };
        load_str(text, std::path::Path::new("v.conf"), &opts)
    }

    /// (severity, message, line, col) of every diagnostic.
    fn diags(text: &str) -> Vec<(Severity, String, u32, u32)> {
        let list = match load(text, false) {
            Ok(l) => l.diagnostics,
            Err(d) => d,
        };
        list.into_iter()
            .map(|d| (d.severity, d.message, d.span.line, d.span.col))
            .collect()
    }

    fn inst(name: &str, body: &str) -> String {
        format!("vrrp_instance {name} {{\n interface eth0\n{body}\n}}\n")
    }

    const E: Severity = Severity::Error;
    const W: Severity = Severity::Warning;

    fn d(s: Severity, m: &str, l: u32, c: u32) -> (Severity, String, u32, u32) {
        (s, m.to_string(), l, c)
    }

    #[test]
    fn mixed_families_are_errors() {
        let text = inst(
            "V",
            " virtual_router_id 1\n virtual_ipaddress {\n  192.0.2.1\n  2001:db8::1\n }\n unicast_peer {\n  2001:db8::2\n }\n unicast_src_ip 2001:db8::3\n mcast_src_ip 192.0.2.9",
        );
        assert_eq!(
            diags(&text),
            vec![
                d(E, "virtual_ipaddress mixes address families: `2001:db8::1` is IPv6 but the first address is IPv4", 6, 3),
                d(E, "unicast_peer `2001:db8::2` is IPv6 but the virtual addresses are IPv4", 9, 3),
                d(E, "`unicast_src_ip` 2001:db8::3 is IPv6 but the virtual addresses are IPv4", 11, 17),
            ]
        );
    }

    #[test]
    fn duplicate_names_and_vrids() {
        let vip = " virtual_ipaddress {\n  192.0.2.1\n }";
        let vip6 = " virtual_ipaddress {\n  2001:db8::1\n }";
        let text = [
            inst("A", &format!(" virtual_router_id 7\n{vip}")),
            inst("A", &format!(" virtual_router_id 8\n{vip}")),
            inst("C", &format!(" virtual_router_id 7\n{vip}")),
            // Other family, unicast, or other interface: no clash.
            inst("D", &format!(" virtual_router_id 7\n{vip6}")),
            inst("E", &format!(" virtual_router_id 7\n{vip}\n unicast_peer {{\n  192.0.2.5\n }}")),
            "vrrp_instance F {\n interface eth1\n virtual_router_id 7\n virtual_ipaddress {\n  192.0.2.1\n }\n}\n".to_string(),
        ]
        .concat();
        let got = diags(&text);
        assert_eq!(
            got,
            vec![
                d(E, "duplicate vrrp_instance name `A`", 8, 15),
                d(
                    E,
                    "virtual_router_id 7 is already used for IPv4 on `eth0` by vrrp_instance `A`",
                    17,
                    20
                ),
            ]
        );
        let errs = load(&text, false).unwrap_err();
        assert_eq!(
            errs[0].help.as_deref(),
            Some("first defined at v.conf:1:15")
        );
    }

    #[test]
    fn versions_and_advert_intervals() {
        let v4 = " virtual_router_id 1\n virtual_ipaddress {\n  192.0.2.1\n }";
        let v6 = " virtual_router_id 1\n virtual_ipaddress {\n  2001:db8::1\n }";
        // IPv6 defaults to v3, so centiseconds are fine; IPv4 defaults to v2.
        assert!(diags(&inst("A", &format!("{v6}\n advert_int 0.01"))).is_empty());
        assert_eq!(
            diags(&inst("A", &format!("{v4}\n advert_int 0.5"))),
            vec![d(E, "with VRRP version 2 (the default), `advert_int` must be a whole number of seconds in 1..=255, found 0.5s", 7, 13)]
        );
        assert_eq!(
            diags(&format!("global_defs {{\n vrrp_version 2\n}}\n{}", inst("A", &format!("{v4}\n advert_int 1.5")))),
            vec![d(E, "with global `vrrp_version 2`, `advert_int` must be a whole number of seconds in 1..=255, found 1.5s", 10, 13)]
        );
        assert!(diags(&format!(
            "global_defs {{\n vrrp_version 3\n}}\n{}",
            inst("A", &format!("{v4}\n advert_int 0.05"))
        ))
        .is_empty());
        assert_eq!(
            diags(&inst("A", &format!("{v4}\n version 3\n advert_int 0.015"))),
            vec![d(E, "with VRRP version 3, `advert_int` must be 0.01..=40.95 seconds in steps of 0.01, found 0.015s", 8, 13)]
        );
        assert_eq!(
            diags(&inst("A", &format!("{v4}\n version 3\n advert_int 41"))),
            vec![d(E, "with VRRP version 3, `advert_int` must be 0.01..=40.95 seconds in steps of 0.01, found 41s", 8, 13)]
        );
        assert_eq!(
            diags(&inst("A", &format!("{v6}\n version 2"))),
            vec![d(E, "VRRP version 2 does not support IPv6", 7, 10)]
        );
        assert!(diags(&inst("A", &format!("{v4}\n version 2\n advert_int 255"))).is_empty());
    }

    #[test]
    fn authentication_is_ignored_with_version_3() {
        // keepalived: "VRRP version 3 does not support authentication. Ignoring."
        let text = inst(
            "A",
            " virtual_router_id 1\n version 3\n virtual_ipaddress {\n  192.0.2.1\n }\n authentication {\n  auth_type PASS\n  auth_pass x\n }",
        );
        assert_eq!(
            diags(&text),
            vec![d(
                W,
                "`authentication` is ignored with VRRP version 3 (RFC 5798 removed it)",
                8,
                2
            )]
        );
    }

    #[test]
    fn instances_without_addresses_as_keepalived_2_4_3() {
        let peers =
            " virtual_router_id 1\n unicast_src_ip 2001:db8::1\n unicast_peer {\n  2001:db8::2\n }";
        // IPv6 from the peers, so VRRPv3: an address is required ...
        assert_eq!(
            diags(&inst("A", peers)),
            vec![d(
                E,
                "vrrp_instance `A` has no virtual_ipaddress; VRRP version 3 requires at least one",
                1,
                15
            )]
        );
        // ... unless `no_virtual_ipaddress` says it is meant.
        assert!(diags(&inst("A", &format!("{peers}\n no_virtual_ipaddress"))).is_empty());
        // VRRPv2 runs without them, with a warning; strict mode requires one.
        let v2 = " virtual_router_id 1";
        assert_eq!(
            diags(&inst("A", v2)),
            vec![d(
                W,
                "vrrp_instance `A` has no virtual_ipaddress: it elects a master but moves no address",
                1,
                15
            )]
        );
        assert_eq!(
            diags(&inst("A", &format!("{v2}\n strict_mode"))),
            vec![d(
                E,
                "vrrp_instance `A` has no virtual_ipaddress; strict mode requires at least one",
                1,
                15
            )]
        );
        // `native_ipv6` makes the family IPv6: an IPv4 peer no longer fits.
        assert_eq!(
            diags(&inst("A", " virtual_router_id 1\n native_ipv6\n no_virtual_ipaddress\n unicast_peer {\n  192.0.2.2\n }")),
            vec![d(
                E,
                "unicast_peer `192.0.2.2` is IPv4 but the instance is IPv6",
                7,
                3
            )]
        );
    }

    #[test]
    fn preemption_settings_warn_with_state_master() {
        let text = inst(
            "A",
            " state MASTER\n virtual_router_id 1\n virtual_ipaddress {\n  192.0.2.1\n }\n nopreempt\n preempt_delay 3",
        );
        let l = load(&text, false).expect("warnings only");
        let got: Vec<_> = l
            .diagnostics
            .iter()
            .map(|x| (x.severity, x.message.clone(), x.span.line, x.span.col))
            .collect();
        assert_eq!(
            got,
            vec![
                d(
                    W,
                    "`nopreempt` has no effect with state MASTER (keepalived clears it); use state BACKUP",
                    8,
                    2
                ),
                d(
                    W,
                    "`preempt_delay` has no effect with state MASTER (keepalived clears it); use state BACKUP",
                    9,
                    2
                ),
            ]
        );
        // keepalived clears nopreempt with state MASTER; vipd means the same.
        assert!(!l.config.instances[0].nopreempt);
    }

    #[test]
    fn missing_interfaces_warn_only_when_asked() {
        let text = "vrrp_instance A {\n interface vipd-nope0\n virtual_router_id 1\n virtual_ipaddress {\n  192.0.2.1 dev vipd-nope1\n  192.0.2.2 dev lo\n }\n}\n";
        let l = load(text, true).unwrap();
        let got: Vec<_> = l
            .diagnostics
            .iter()
            .map(|x| (x.severity, x.message.clone(), x.span.line, x.span.col))
            .collect();
        assert_eq!(
            got,
            vec![
                d(
                    W,
                    "interface `vipd-nope0` does not exist on this host",
                    2,
                    12
                ),
                d(
                    W,
                    "interface `vipd-nope1` (dev of 192.0.2.1) does not exist on this host",
                    5,
                    3
                ),
            ]
        );
        assert!(load(text, false).unwrap().diagnostics.is_empty());
        // dynamic_interfaces: the same warnings say what happens meanwhile.
        let dynamic = format!("global_defs {{\n dynamic_interfaces\n}}\n{text}");
        let l = load(&dynamic, true).unwrap();
        let got: Vec<_> = l.diagnostics.iter().map(|x| x.message.as_str()).collect();
        assert_eq!(
            got,
            [
                "interface `vipd-nope0` does not exist on this host: the instance is in FAULT until it appears (dynamic_interfaces)",
                "interface `vipd-nope1` (dev of 192.0.2.1) does not exist on this host: waiting for it (dynamic_interfaces)",
            ]
        );
    }

    #[test]
    fn address_use_vmac_and_its_conflicts() {
        let text = |inst_line: &str, vip_opts: &str| {
            inst(
                "V",
                &format!(
                    " virtual_router_id 1\n{inst_line}\n virtual_ipaddress {{\n  192.0.2.1/24 {vip_opts}\n }}\n virtual_ipaddress_excluded {{\n  198.51.100.1/24 dev eth1 use_vmac\n }}"
                ),
            )
        };
        let l = load(&text("", "use_vmac"), false).unwrap();
        let i = &l.config.instances[0];
        assert!(i.virtual_ipaddress[0].use_vmac && i.virtual_ipaddress_excluded[0].use_vmac);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert!(
            !load(&text("", ""), false).unwrap().config.instances[0].virtual_ipaddress[0].use_vmac
        );
        // keepalived 2.4.3: "use_vmac specified for VIP/eVIP ... and vrrp instance",
        // "use_vmac_addr specified and use_vmac specified for VIP/eVIP ...".
        assert_eq!(
            diags(&text(" use_vmac", "use_vmac")),
            vec![d(E, "192.0.2.1: `use_vmac`: the instance's `use_vmac` already puts it on the instance's VMAC", 6, 3)]
        );
        assert_eq!(
            diags(&text(" use_vmac_addr", "")),
            vec![d(
                E,
                "198.51.100.1: `use_vmac`: the instance's `use_vmac_addr` already gives it a VMAC",
                9,
                3
            )]
        );
    }

    /// Each interface is looked up once per load, but every use of a missing one is
    /// still reported at its own line.
    #[test]
    fn every_use_of_a_missing_interface_warns() {
        let inst = |name: &str, vrid: u8, vip: &str| {
            format!("vrrp_instance {name} {{\n interface vipd-nope0\n virtual_router_id {vrid}\n virtual_ipaddress {{\n  {vip} dev vipd-nope0\n }}\n}}\n")
        };
        let text = format!("{}{}", inst("A", 1, "192.0.2.1"), inst("B", 2, "192.0.2.2"));
        let l = load(&text, true).unwrap();
        let got: Vec<_> = l
            .diagnostics
            .iter()
            .map(|x| (x.message.clone(), x.span.line))
            .collect();
        let missing = "interface `vipd-nope0` does not exist on this host".to_string();
        let dev =
            |a: &str| format!("interface `vipd-nope0` (dev of {a}) does not exist on this host");
        assert_eq!(
            got,
            vec![
                (missing.clone(), 2),
                (dev("192.0.2.1"), 5),
                (missing, 9),
                (dev("192.0.2.2"), 12),
            ]
        );
    }

    #[test]
    fn loopback_exists() {
        assert!(interface_exists("lo"));
        assert!(!interface_exists("vipd-nope0"));
        assert!(!interface_exists("../lo"));
    }
}

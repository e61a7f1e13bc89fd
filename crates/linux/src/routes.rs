//! `virtual_routes` / `virtual_rules` (installed while MASTER) and `static_routes` /
//! `static_rules` (installed at start): the config's typed [`model::Route`] and
//! [`model::Rule`] turned into what rtnetlink needs.
//!
//! The lines were parsed and checked when the config was loaded (`vipd check-config`
//! refuses everything the runtime does not implement); what is left here is the part
//! that needs the host: `dev` names become interface indexes.

use anyhow::Result;
use std::net::IpAddr;
use vipd_config::model;

/// Vipd marks its routes with this protocol number (shown as `proto 118`), like its
/// addresses, so they can be told from an administrator's.
pub const VIPD_ROUTE_PROTO: u8 = 118;

/// A route's type, or a rule's action other than a table lookup.
pub use vipd_config::model::RouteType as RouteKind;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    pub dst: IpAddr,
    pub dst_len: u8,
    pub kind: RouteKind,
    pub gateway: Option<IpAddr>,
    /// Interface index ([`crate::plan::UNBOUND`] for a VMAC not created yet).
    pub dev: Option<u32>,
    /// The `dev` name as written.
    pub dev_name: Option<String>,
    /// Preferred source address (`src`).
    pub pref_src: Option<IpAddr>,
    pub table: u32,
    pub metric: Option<u32>,
    /// RT_SCOPE_*; `None`: link for routes without a gateway, universe otherwise.
    pub scope: Option<u8>,
    pub onlink: bool,
}

impl RouteSpec {
    /// The RT_SCOPE_* the kernel gets: the configured one, else as `ip route` picks it
    /// (host for `local`, link for a direct unicast route, global otherwise).
    pub fn effective_scope(&self) -> u8 {
        let default = if self.kind == RouteKind::Local {
            254
        } else if self.kind == RouteKind::Unicast && self.gateway.is_none() {
            253
        } else {
            0
        };
        self.scope.unwrap_or(default)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    pub v6: bool,
    pub from: Option<(IpAddr, u8)>,
    pub to: Option<(IpAddr, u8)>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub fwmark: Option<(u32, Option<u32>)>,
    pub table: Option<u32>,
    pub priority: Option<u32>,
    /// `None`: look up `table`; else blackhole/unreachable/prohibit.
    pub action: Option<RouteKind>,
    /// `not`: FIB_RULE_INVERT.
    pub invert: bool,
}

/// One route; `ifindex` resolves `dev` names.
pub fn route_spec(r: &model::Route, ifindex: &dyn Fn(&str) -> Result<u32>) -> Result<RouteSpec> {
    Ok(RouteSpec {
        dst: r.dst,
        dst_len: r.dst_len,
        kind: r.kind,
        gateway: r.via,
        dev: r.dev.as_deref().map(ifindex).transpose()?,
        dev_name: r.dev.clone(),
        pref_src: r.src,
        table: r.table,
        metric: r.metric,
        scope: r.scope,
        onlink: r.onlink,
    })
}

/// One rule (interfaces are passed by name: the kernel matches them when they appear).
pub fn rule_spec(r: &model::Rule) -> RuleSpec {
    RuleSpec {
        v6: r.v6,
        from: r.from,
        to: r.to,
        iif: r.iif.clone(),
        oif: r.oif.clone(),
        fwmark: r.fwmark,
        table: r.table,
        priority: r.priority,
        action: r.action,
        invert: r.not,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use anyhow::bail;
    use std::path::Path;
    use vipd_config::{load_str, LoadOptions};

    /// The routes and rules of a `static_routes { }` / `static_rules { }` config, as
    /// the config crate types them (its own tests cover the parsing).
    pub(crate) fn model(routes: &[&str], rules: &[&str]) -> (Vec<model::Route>, Vec<model::Rule>) {
        let text = format!(
            "static_routes {{\n{}\n}}\nstatic_rules {{\n{}\n}}\n",
            routes.join("\n"),
            rules.join("\n")
        );
        let opts = LoadOptions {
            config_id: Some("t".into()),
            check_interfaces: false,
            ..Default::default()
        };
        let c = load_str(&text, Path::new("t.conf"), &opts)
            .unwrap_or_else(|e| panic!("{e:#?}"))
            .config;
        (c.static_routes, c.static_rules)
    }

    fn idx(name: &str) -> Result<u32> {
        match name {
            "eth1" => Ok(3),
            "eth2" => Ok(4),
            _ => bail!("no interface `{name}`"),
        }
    }

    #[test]
    fn routes_become_specs_with_interface_indexes() {
        let (routes, _) = model(
            &[
                "src 192.0.2.1 to 198.51.100.0/24 via 192.0.2.254 dev eth1",
                "203.0.113.0/24 dev eth2 no_track table 100 metric 5 scope host onlink",
                "blackhole 203.0.113.128/25",
            ],
            &[],
        );
        let specs: Vec<RouteSpec> = routes
            .iter()
            .map(|r| route_spec(r, &idx).unwrap())
            .collect();
        assert_eq!(
            specs[0],
            RouteSpec {
                dst: "198.51.100.0".parse().unwrap(),
                dst_len: 24,
                kind: RouteKind::Unicast,
                gateway: Some("192.0.2.254".parse().unwrap()),
                dev: Some(3),
                dev_name: Some("eth1".into()),
                pref_src: Some("192.0.2.1".parse().unwrap()),
                table: 254,
                metric: None,
                scope: None,
                onlink: false,
            }
        );
        assert_eq!(
            (
                specs[1].dev,
                specs[1].table,
                specs[1].metric,
                specs[1].scope,
                specs[1].onlink
            ),
            (Some(4), 100, Some(5), Some(254), true)
        );
        assert_eq!((specs[2].kind, specs[2].dev), (RouteKind::Blackhole, None));
    }

    #[test]
    fn an_unknown_dev_is_refused_at_plan_time() {
        let (routes, _) = model(&["198.51.100.0/24 dev nope"], &[]);
        let e = route_spec(&routes[0], &idx).unwrap_err().to_string();
        assert!(e.contains("no interface `nope`"), "{e}");
    }

    #[test]
    fn rules_become_specs() {
        let (_, rules) = model(
            &[],
            &[
                "from 2001:db8::/32 fwmark 0x10/0xff priority 100 table main",
                "not to 192.0.2.0/24 iif eth1 pref 7 prohibit",
            ],
        );
        let a = rule_spec(&rules[0]);
        assert!(a.v6 && !a.invert);
        assert_eq!(
            (a.fwmark, a.priority, a.table, a.action),
            (Some((16, Some(255))), Some(100), Some(254), None)
        );
        let b = rule_spec(&rules[1]);
        assert!(!b.v6 && b.invert);
        assert_eq!(b.to, Some(("192.0.2.0".parse().unwrap(), 24)));
        assert_eq!(
            (b.iif.as_deref(), b.priority, b.table, b.action),
            (Some("eth1"), Some(7), None, Some(RouteKind::Prohibit))
        );
    }
}

//! `virtual_routes` / `virtual_rules` (installed while MASTER) and `static_routes` /
//! `static_rules` (installed at start): keepalived's route and rule lines, parsed into
//! what rtnetlink needs. Every word is understood or refused by name — never ignored.
//!
//! Routes: `[src IP] [to] DEST[/LEN] [via|gw IP] [dev IF] [scope S] [table N]
//! [metric|priority|preference N] [proto N] [onlink] [no_track]`, and `blackhole`,
//! `unreachable`, `prohibit` (`throw`) `DEST`. Rules: `[from PREFIX] [to PREFIX]
//! [iif IF] [oif IF] [fwmark N[/MASK]] [table N] [priority|preference|pref N]
//! [no_track]`, and the actions `blackhole`, `unreachable`, `prohibit`.

use anyhow::{anyhow, bail, Context, Result};
use std::net::IpAddr;

/// Vipd marks its routes with this protocol number (shown as `proto 118`), like its
/// addresses, so they can be told from an administrator's.
pub const VIPD_ROUTE_PROTO: u8 = 118;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    pub dst: IpAddr,
    pub dst_len: u8,
    pub kind: RouteKind,
    pub gateway: Option<IpAddr>,
    /// Interface index.
    pub dev: Option<u32>,
    /// Preferred source address (`src`).
    pub pref_src: Option<IpAddr>,
    pub table: u32,
    pub metric: Option<u32>,
    /// RT_SCOPE_*; `None`: link for routes without a gateway, universe otherwise.
    pub scope: Option<u8>,
    pub onlink: bool,
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
}

fn prefix(s: &str) -> Result<(IpAddr, u8)> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let a: IpAddr = if a == "default" {
        "0.0.0.0".parse().unwrap()
    } else {
        a.parse()
            .with_context(|| format!("`{s}` is not an address or prefix"))?
    };
    let max = if a.is_ipv4() { 32 } else { 128 };
    let len = match (s, len) {
        ("default", _) => 0,
        (_, Some(l)) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| anyhow!("bad prefix length in `{s}`"))?,
        (_, None) => max,
    };
    Ok((a, len))
}

fn number(word: &str, what: &str) -> Result<u32> {
    word.parse()
        .map_err(|_| anyhow!("`{what}` needs a number, found `{word}`"))
}

fn table(word: &str) -> Result<u32> {
    Ok(match word {
        "main" => 254,
        "local" => 255,
        "default" => 253,
        n => number(n, "table")?,
    })
}

fn scope(word: &str) -> Result<u8> {
    Ok(match word {
        "global" | "universe" => 0,
        "site" => 200,
        "link" => 253,
        "host" => 254,
        "nowhere" => 255,
        n => n.parse().map_err(|_| anyhow!("unknown scope `{n}`"))?,
    })
}

/// Parse one route line; `ifindex` resolves `dev` names.
pub fn parse_route(words: &[String], ifindex: &dyn Fn(&str) -> Result<u32>) -> Result<RouteSpec> {
    let mut r = RouteSpec {
        dst: "0.0.0.0".parse().unwrap(),
        dst_len: 0,
        kind: RouteKind::Unicast,
        gateway: None,
        dev: None,
        pref_src: None,
        table: 254,
        metric: None,
        scope: None,
        onlink: false,
    };
    let mut dst = None;
    let mut it = words.iter().map(String::as_str);
    let next = |kw: &str, it: &mut dyn Iterator<Item = &str>| -> Result<String> {
        it.next()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("`{kw}` needs a value"))
    };
    while let Some(w) = it.next() {
        match w {
            "src" => r.pref_src = Some(prefix(&next(w, &mut it)?)?.0),
            "to" => dst = Some(prefix(&next(w, &mut it)?)?),
            "via" | "gw" => r.gateway = Some(prefix(&next(w, &mut it)?)?.0),
            "dev" => r.dev = Some(ifindex(&next(w, &mut it)?)?),
            "table" => r.table = table(&next(w, &mut it)?)?,
            "metric" | "priority" | "preference" => r.metric = Some(number(&next(w, &mut it)?, w)?),
            "scope" => r.scope = Some(scope(&next(w, &mut it)?)?),
            "onlink" => r.onlink = true,
            "no_track" => {}
            "blackhole" => r.kind = RouteKind::Blackhole,
            "unreachable" => r.kind = RouteKind::Unreachable,
            "prohibit" => r.kind = RouteKind::Prohibit,
            "throw" => r.kind = RouteKind::Throw,
            "or" | "nexthop" | "encap" | "realms" | "mtu" | "advmss" | "initcwnd" | "from" => {
                bail!("route option `{w}` is not supported yet")
            }
            other if dst.is_none() => dst = Some(prefix(other)?),
            other => bail!("unknown word `{other}` in a route"),
        }
    }
    let (d, l) = dst.ok_or_else(|| anyhow!("a route needs a destination"))?;
    (r.dst, r.dst_len) = (d, l);
    if let Some(g) = r.gateway {
        if g.is_ipv4() != d.is_ipv4() {
            bail!("route to {d}/{l}: gateway {g} is of the other address family");
        }
    }
    Ok(r)
}

/// Parse one rule line.
pub fn parse_rule(words: &[String]) -> Result<RuleSpec> {
    let mut r = RuleSpec {
        v6: false,
        from: None,
        to: None,
        iif: None,
        oif: None,
        fwmark: None,
        table: None,
        priority: None,
        action: None,
    };
    let mut it = words.iter().map(String::as_str);
    let next = |kw: &str, it: &mut dyn Iterator<Item = &str>| -> Result<String> {
        it.next()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("`{kw}` needs a value"))
    };
    while let Some(w) = it.next() {
        match w {
            "from" => r.from = Some(prefix(&next(w, &mut it)?)?),
            "to" => r.to = Some(prefix(&next(w, &mut it)?)?),
            "iif" => r.iif = Some(next(w, &mut it)?),
            "oif" => r.oif = Some(next(w, &mut it)?),
            "fwmark" => {
                let v = next(w, &mut it)?;
                let parse = |s: &str| {
                    let s = s.trim_start_matches("0x");
                    u32::from_str_radix(s, if v.contains("0x") { 16 } else { 10 })
                        .map_err(|_| anyhow!("bad fwmark `{v}`"))
                };
                r.fwmark = Some(match v.split_once('/') {
                    Some((m, mask)) => (parse(m)?, Some(parse(mask)?)),
                    None => (parse(&v)?, None),
                });
            }
            "table" | "lookup" => r.table = Some(table(&next(w, &mut it)?)?),
            "priority" | "preference" | "pref" => r.priority = Some(number(&next(w, &mut it)?, w)?),
            "blackhole" => r.action = Some(RouteKind::Blackhole),
            "unreachable" => r.action = Some(RouteKind::Unreachable),
            "prohibit" => r.action = Some(RouteKind::Prohibit),
            "no_track" => {}
            other => bail!("rule option `{other}` is not supported yet"),
        }
    }
    if r.table.is_none() && r.action.is_none() {
        bail!("a rule needs `table N` or an action (blackhole, unreachable, prohibit)");
    }
    r.v6 = [r.from, r.to].iter().flatten().any(|(a, _)| a.is_ipv6());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn idx(name: &str) -> Result<u32> {
        match name {
            "eth1" => Ok(3),
            "eth2" => Ok(4),
            _ => bail!("no interface `{name}`"),
        }
    }

    #[test]
    fn keepalived_route_examples() {
        let r = parse_route(
            &w("src 192.168.100.1 to 192.168.109.0/24 via 192.168.200.254 dev eth1"),
            &idx,
        )
        .unwrap();
        assert_eq!((r.dst, r.dst_len), ("192.168.109.0".parse().unwrap(), 24));
        assert_eq!(r.pref_src, Some("192.168.100.1".parse().unwrap()));
        assert_eq!(r.gateway, Some("192.168.200.254".parse().unwrap()));
        assert_eq!(r.dev, Some(3));
        let r = parse_route(&w("192.168.111.0/24 dev eth2 no_track"), &idx).unwrap();
        assert_eq!((r.dev, r.gateway, r.table), (Some(4), None, 254));
        let r = parse_route(&w("blackhole 192.168.114.0/24"), &idx).unwrap();
        assert_eq!(r.kind, RouteKind::Blackhole);
        let r = parse_route(&w("0.0.0.0/0 gw 192.168.0.1 table 100"), &idx).unwrap();
        assert_eq!((r.dst_len, r.table), (0, 100));
        let r = parse_route(&w("2001:db8:1::/48 via 2001:db8::1 metric 10"), &idx).unwrap();
        assert_eq!((r.dst_len, r.metric), (48, Some(10)));
    }

    #[test]
    fn route_errors_name_the_word() {
        let e = |s: &str| parse_route(&w(s), &idx).unwrap_err().to_string();
        assert!(
            e("192.168.113.0/24 via 192.168.200.254 or 192.168.100.254 dev eth1")
                .contains("`or` is not supported yet")
        );
        assert!(e("10.0.0.0/8 dev nope").contains("no interface `nope`"));
        assert!(e("10.0.0.0/33").contains("bad prefix length"));
        assert!(e("2001:db8::/32 via 192.0.2.1").contains("other address family"));
        assert!(e("via 192.0.2.1").contains("needs a destination"));
        assert!(e("10.0.0.0/8 table").contains("`table` needs a value"));
    }

    #[test]
    fn keepalived_rule_examples() {
        let r = parse_rule(&w("from 192.168.2.0/24 table 1")).unwrap();
        assert_eq!(r.from, Some(("192.168.2.0".parse().unwrap(), 24)));
        assert_eq!(r.table, Some(1));
        let r = parse_rule(&w("to 192.168.2.0/24 table 1 no_track")).unwrap();
        assert!(r.to.is_some() && !r.v6);
        let r = parse_rule(&w(
            "from 2001:db8::/32 fwmark 0x10/0xff priority 100 table main",
        ))
        .unwrap();
        assert!(r.v6);
        assert_eq!(
            (r.fwmark, r.priority, r.table),
            (Some((16, Some(255))), Some(100), Some(254))
        );
        assert!(parse_rule(&w("from 192.0.2.0/24"))
            .unwrap_err()
            .to_string()
            .contains("needs `table N`"));
        assert!(parse_rule(&w("from 192.0.2.0/24 table 1 tos 4"))
            .unwrap_err()
            .to_string()
            .contains("`tos` is not supported yet"));
    }
}

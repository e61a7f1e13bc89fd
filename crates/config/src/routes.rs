//! `static_routes` / `virtual_routes` and `static_rules` / `virtual_rules` lines, parsed
//! into [`Route`] and [`Rule`].
//!
//! Every word is understood or refused at its position: bad addresses, prefix lengths,
//! tables, numbers and scopes, and the options keepalived takes but vipd's runtime does
//! not implement (multipath `nexthop`, `or`, `encap`, route metrics such as `mtu`, rule
//! selectors such as `tos` or `uidrange`, ...). So a line that loads is
//! one `vipd run` installs.
//!
//! Tables and scopes are numbers (decimal, `0x` hexadecimal or `0` octal, as iproute2
//! and keepalived read them) or names from iproute2's `rt_tables` / `rt_scopes` files
//! (see [`crate::iproute`]); an unknown name is an error naming the files searched.

use std::net::IpAddr;

use crate::diagnostic::Diags;
use crate::iproute::{parse_c_uint, IprouteNames, Kind};
use crate::keywords::suggest;
use crate::lexer::Token;
use crate::model::{Route, RouteType, Rule};
use crate::schema;
use crate::value::{family, parse_prefix, parse_uint};

/// Route words vipd understands (with the number of values each takes).
const ROUTE_WORDS: &[(&str, usize)] = &[
    ("src", 1),
    ("to", 1),
    ("via", 1),
    ("gw", 1),
    ("dev", 1),
    ("table", 1),
    ("metric", 1),
    ("priority", 1),
    ("preference", 1),
    ("scope", 1),
    ("track_group", 1),
    ("onlink", 0),
    ("no_track", 0),
    ("inet", 0),
    ("inet6", 0),
    ("unicast", 0),
    ("blackhole", 0),
    ("unreachable", 0),
    ("prohibit", 0),
    ("throw", 0),
    ("local", 0),
];

/// Rule words vipd understands.
const RULE_WORDS: &[(&str, usize)] = &[
    ("from", 1),
    ("to", 1),
    ("iif", 1),
    ("oif", 1),
    ("fwmark", 1),
    ("table", 1),
    ("lookup", 1),
    ("priority", 1),
    ("preference", 1),
    ("pref", 1),
    ("track_group", 1),
    ("not", 0),
    ("inet", 0),
    ("inet6", 0),
    ("no_track", 0),
    ("blackhole", 0),
    ("unreachable", 0),
    ("prohibit", 0),
];

/// Why an option keepalived knows is refused, for the help line.
fn unsupported_help(word: &str, what: &str) -> String {
    match word {
        "nexthop" | "or" | "weight" => "vipd installs single-path routes only".into(),
        "protocol" | "proto" => {
            "vipd marks the routes and rules it installs with protocol 118 (`proto 118`)".into()
        }
        "from" => "source-specific (`from`) routes are not implemented".into(),
        _ => format!("remove it, or manage this {what} outside vipd"),
    }
}

fn need_value<'a>(w: &[&'a Token], i: usize, d: &mut Diags) -> Option<&'a Token> {
    let v = w.get(i + 1).copied();
    if v.is_none() {
        d.error(w[i], format!("`{}` needs a value", w[i].text));
    }
    v
}

fn unknown_word(t: &Token, what: &str, known: &[(&str, usize)], d: &mut Diags) {
    let msg = format!("unknown {what} option `{}`", t.text);
    match suggest(&t.text, known.iter().map(|(o, _)| *o)) {
        Some(s) => d.error_help(t, msg, format!("did you mean `{s}`?")),
        None => d.error(t, msg),
    }
}

/// `ADDR[/LEN]` (`default`: 0.0.0.0/0) as the value of `what`.
fn prefix(t: &Token, what: &str, d: &mut Diags) -> Option<(IpAddr, u8)> {
    if t.text == "default" {
        return Some((IpAddr::from([0, 0, 0, 0]), 0));
    }
    match parse_prefix(&t.text) {
        Ok(p) => Some(p),
        Err(e) => {
            d.error(t, format!("invalid {what} `{}`: {e}", t.text));
            None
        }
    }
}

/// A plain address (no `/LEN`) as the value of `kw`.
fn address(t: &Token, kw: &str, d: &mut Diags) -> Option<IpAddr> {
    match t.text.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            d.error(
                t,
                format!("`{kw}` expects an IP address, found `{}`", t.text),
            );
            None
        }
    }
}

/// A 32-bit number: decimal for a route's metric (keepalived reads it so), C's
/// `strtoul` base 0 (decimal, `0x` hex, `0` octal) for a rule's preference (`c_style`).
fn number(t: &Token, kw: &str, c_style: bool, d: &mut Diags) -> Option<u32> {
    let n = if c_style {
        parse_c_uint(&t.text)
    } else {
        parse_uint(&t.text)
    };
    match n.and_then(|v| u32::try_from(v).ok()) {
        Some(v) => Some(v),
        None => {
            d.error(
                t,
                format!(
                    "`{kw}` must be an integer in 0..={}, found `{}`",
                    u32::MAX,
                    t.text
                ),
            );
            None
        }
    }
}

/// A table number or name; `min` is the lowest number allowed.
fn table(t: &Token, kw: &str, min: u32, names: &IprouteNames, d: &mut Diags) -> Option<u32> {
    let s = t.text.as_str();
    let n = match parse_c_uint(s) {
        Some(n) => u32::try_from(n).ok(),
        None if s.bytes().all(|b| b.is_ascii_digit()) => None,
        None => match names.lookup(Kind::Tables, s) {
            Some(n) => Some(n),
            None => {
                d.error_help(
                    t,
                    format!("unknown table `{s}`"),
                    format!(
                        "a table is a number or a name from {} (`iproute_etc_dir` / `iproute_usr_dir` in global_defs choose the directories)",
                        names.searched(Kind::Tables)
                    ),
                );
                return None;
            }
        },
    };
    match n {
        Some(n) if n >= min => Some(n),
        Some(_) => {
            d.error(t, format!("table {s} is not valid for a rule"));
            None
        }
        None => {
            d.error(
                t,
                format!(
                    "`{kw}` must be a table number in {min}..={}, found `{s}`",
                    u32::MAX,
                ),
            );
            None
        }
    }
}

/// A route's or address's scope: a number or a name (as keepalived, not `universe`:
/// iproute2 calls 0 `global`).
pub(crate) fn scope(t: &Token, names: &IprouteNames, d: &mut Diags) -> Option<u8> {
    let s = t.text.as_str();
    let n = match parse_c_uint(s) {
        Some(n) => u8::try_from(n).ok(),
        None => names
            .lookup(Kind::Scopes, s)
            .and_then(|n| u8::try_from(n).ok()),
    };
    if n.is_none() {
        d.error_help(
            t,
            format!("invalid scope `{s}`"),
            format!(
                "a scope is a number in 0..=255 or a name from {} (global, site, link, host and nowhere unless they rename those numbers)",
                names.searched(Kind::Scopes)
            ),
        );
    }
    n
}

fn family_mismatch(t: &Token, a: IpAddr, what: &str, dst: IpAddr, d: &mut Diags) -> bool {
    if a.is_ipv4() == dst.is_ipv4() {
        return false;
    }
    d.error(
        t,
        format!(
            "{what} {a} is {}, but the destination is {}",
            family(&a),
            family(&dst)
        ),
    );
    true
}

/// Sets the destination of a route; a second one is an error.
fn set_dst<'a>(
    dst: &mut Option<((IpAddr, u8), &'a Token)>,
    t: &'a Token,
    d: &mut Diags,
) -> Option<()> {
    if let Some((_, first)) = dst {
        d.error_help(
            t,
            format!("route has a second destination `{}`", t.text),
            format!(
                "the destination is `{}`; one route per line, and a gateway is written `via ADDRESS`",
                first.text
            ),
        );
        return None;
    }
    *dst = Some((prefix(t, "route destination", d)?, t));
    Some(())
}

/// One route line; `None` after reporting its first error.
pub(crate) fn route(w: &[&Token], names: &IprouteNames, d: &mut Diags) -> Option<Route> {
    let mut r = Route {
        dst: IpAddr::from([0, 0, 0, 0]),
        dst_len: 0,
        kind: RouteType::Unicast,
        via: None,
        dev: None,
        src: None,
        table: 254,
        metric: None,
        scope: None,
        onlink: false,
        no_track: false,
        track_group: None,
        span: w[0].span.clone(),
    };
    // The destination and its word (`default` takes the family of the rest).
    let mut dst: Option<((IpAddr, u8), &Token)> = None;
    let (mut via_tok, mut src_tok, mut family_tok) = (None, None, None);
    let mut i = 0;
    while i < w.len() {
        let t = w[i];
        let word = t.text.as_str();
        match ROUTE_WORDS.iter().find(|(o, _)| *o == word) {
            Some((_, 1)) => {
                let v = need_value(w, i, d)?;
                match word {
                    "src" => {
                        r.src = Some(address(v, word, d)?);
                        src_tok = Some(v);
                    }
                    "to" => set_dst(&mut dst, v, d)?,
                    "via" | "gw" => {
                        r.via = Some(address(v, word, d)?);
                        via_tok = Some(v);
                    }
                    "dev" => r.dev = Some(v.text.to_string()),
                    "table" => r.table = table(v, word, 0, names, d)?,
                    "metric" | "priority" | "preference" => {
                        r.metric = Some(number(v, word, false, d)?)
                    }
                    "scope" => r.scope = Some(scope(v, names, d)?),
                    "track_group" => r.track_group = Some(v.text.to_string()),
                    _ => unreachable!("every one-value route word is handled"),
                }
                i += 2;
                continue;
            }
            Some(_) => match word {
                "onlink" => r.onlink = true,
                "no_track" => r.no_track = true,
                "inet" | "inet6" => family_tok = Some(t),
                "unicast" => r.kind = RouteType::Unicast,
                "blackhole" => r.kind = RouteType::Blackhole,
                "unreachable" => r.kind = RouteType::Unreachable,
                "prohibit" => r.kind = RouteType::Prohibit,
                "throw" => r.kind = RouteType::Throw,
                "local" => r.kind = RouteType::Local,
                _ => unreachable!("every flag route word is handled"),
            },
            None if word == "from"
                || word == "proto"
                || schema::ROUTE_OPTIONS.iter().any(|(o, _)| *o == word) =>
            {
                d.error_help(
                    t,
                    format!("route option `{word}` is not supported by vipd"),
                    unsupported_help(word, "route"),
                );
                return None;
            }
            None if dst.is_none() || word == "default" || parse_prefix(word).is_ok() => {
                set_dst(&mut dst, t, d)?
            }
            None => {
                unknown_word(t, "route", ROUTE_WORDS, d);
                return None;
            }
        }
        i += 1;
    }
    let Some(((mut a, len), dst_tok)) = dst else {
        d.error(w[0], "route has no destination");
        return None;
    };
    if dst_tok.text == "default" {
        // IPv6 when `inet6`, the gateway or the source says so.
        let v6 = match (family_tok, r.via.or(r.src)) {
            (Some(f), _) => f.text == "inet6",
            (None, Some(other)) => other.is_ipv6(),
            (None, None) => false,
        };
        if v6 {
            a = IpAddr::from([0u16; 8]);
        }
    }
    (r.dst, r.dst_len) = (a, len);
    if let Some(f) = family_tok {
        if (f.text == "inet6") != a.is_ipv6() {
            d.error(f, format!("`{}` given for an {} route", f.text, family(&a)));
            return None;
        }
    }
    for (tok, addr, what) in [(via_tok, r.via, "gateway"), (src_tok, r.src, "source")] {
        if let (Some(tok), Some(addr)) = (tok, addr) {
            if family_mismatch(tok, addr, what, a, d) {
                return None;
            }
        }
    }
    Some(r)
}

/// `fwmark MARK[/MASK]`: each part decimal, `0x` hexadecimal or `0` octal (keepalived
/// reads them with `strtoul` base 0).
fn fwmark(t: &Token, d: &mut Diags) -> Option<(u32, Option<u32>)> {
    let part = |s: &str| parse_c_uint(s).and_then(|v| u32::try_from(v).ok());
    let parsed = match t.text.split_once('/') {
        Some((m, mask)) => part(m).zip(part(mask)).map(|(m, k)| (m, Some(k))),
        None => part(&t.text).map(|m| (m, None)),
    };
    if parsed.is_none() {
        d.error_help(
            t,
            format!("invalid fwmark `{}`", t.text),
            "write MARK or MARK/MASK, each a 32-bit number in decimal or 0x hexadecimal",
        );
    }
    parsed
}

/// One rule line; `None` after reporting its first error.
pub(crate) fn rule(w: &[&Token], names: &IprouteNames, d: &mut Diags) -> Option<Rule> {
    let mut r = Rule {
        from: None,
        to: None,
        iif: None,
        oif: None,
        fwmark: None,
        table: None,
        priority: None,
        action: None,
        not: false,
        v6: false,
        no_track: false,
        track_group: None,
        span: w[0].span.clone(),
    };
    // The first word that fixed the family, and whether it is IPv6.
    let mut family: Option<(String, bool)> = None;
    let mut set_family = |t: &Token, v6: bool, what: &str, d: &mut Diags| -> bool {
        match family {
            Some((ref first, f)) if f != v6 => {
                d.error_help(
                    t,
                    format!(
                        "{what} is {}, but `{}` made this an {} rule",
                        if v6 { "IPv6" } else { "IPv4" },
                        first,
                        if f { "IPv6" } else { "IPv4" },
                    ),
                    "a rule is either IPv4 or IPv6",
                );
                false
            }
            Some(_) => true,
            None => {
                family = Some((t.text.to_string(), v6));
                true
            }
        }
    };
    let mut i = 0;
    while i < w.len() {
        let t = w[i];
        let word = t.text.as_str();
        match RULE_WORDS.iter().find(|(o, _)| *o == word) {
            Some((_, 1)) => {
                let v = need_value(w, i, d)?;
                match word {
                    "from" | "to" => {
                        let p = if matches!(v.text.as_str(), "all" | "any" | "default") {
                            None
                        } else {
                            let p = prefix(v, &format!("rule `{word}` prefix"), d)?;
                            if !set_family(v, p.0.is_ipv6(), &format!("`{}`", v.text), d) {
                                return None;
                            }
                            Some(p)
                        };
                        if word == "from" {
                            r.from = p;
                        } else {
                            r.to = p;
                        }
                    }
                    "iif" => r.iif = Some(v.text.to_string()),
                    "oif" => r.oif = Some(v.text.to_string()),
                    "fwmark" => r.fwmark = Some(fwmark(v, d)?),
                    "track_group" => r.track_group = Some(v.text.to_string()),
                    "table" | "lookup" => r.table = Some(table(v, word, 1, names, d)?),
                    "priority" | "preference" | "pref" => {
                        if word == "pref" {
                            // iproute2's spelling; keepalived 2.2.7 and 2.4.3 refuse it.
                            d.push(
                                crate::Diagnostic::warning_at(
                                    "keepalived does not accept `pref` in a rule",
                                    t,
                                )
                                .with_help("write `preference` (or `priority`), which both read"),
                            );
                        }
                        r.priority = Some(number(v, word, true, d)?)
                    }
                    _ => unreachable!("every one-value rule word is handled"),
                }
                i += 2;
                continue;
            }
            Some(_) => match word {
                "not" => r.not = true,
                "inet" | "inet6" => {
                    if !set_family(t, word == "inet6", &format!("`{word}`"), d) {
                        return None;
                    }
                }
                "no_track" => r.no_track = true,
                "blackhole" => r.action = Some(RouteType::Blackhole),
                "unreachable" => r.action = Some(RouteType::Unreachable),
                "prohibit" => r.action = Some(RouteType::Prohibit),
                _ => unreachable!("every flag rule word is handled"),
            },
            None if schema::RULE_OPTIONS.iter().any(|(o, _)| *o == word) => {
                d.error_help(
                    t,
                    format!("rule option `{word}` is not supported by vipd"),
                    unsupported_help(word, "rule"),
                );
                return None;
            }
            None => {
                unknown_word(t, "rule", RULE_WORDS, d);
                return None;
            }
        }
        i += 1;
    }
    if r.table.is_none() && r.action.is_none() {
        d.error_help(
            w[0],
            "rule has no action",
            "add `table N` (or `lookup N`), or one of blackhole, unreachable, prohibit",
        );
        return None;
    }
    r.v6 = family.is_some_and(|(_, v6)| v6);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load_str, Config, LoadOptions};
    use std::path::Path;

    fn load(text: &str) -> Result<Config, Vec<(String, u32, u32)>> {
        let opts = LoadOptions {
            config_id: Some("t".into()),
            check_interfaces: false,
            ..Default::default()
        };
        load_str(text, Path::new("t.conf"), &opts)
            .map(|l| l.config)
            .map_err(|ds| {
                ds.into_iter()
                    .filter(|d| d.is_error())
                    .map(|d| (d.message, d.span.line, d.span.col))
                    .collect()
            })
    }

    fn routes(lines: &str) -> Vec<Route> {
        match load(&format!("static_routes {{\n{lines}\n}}\n")) {
            Ok(c) => c.static_routes,
            Err(e) => panic!("{lines}: {e:#?}"),
        }
    }

    fn one_route(line: &str) -> Route {
        let mut r = routes(line);
        assert_eq!(r.len(), 1);
        r.pop().unwrap()
    }

    fn one_rule(line: &str) -> Rule {
        let c =
            load(&format!("static_rules {{\n{line}\n}}\n")).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(c.static_rules.len(), 1);
        c.static_rules.into_iter().next().unwrap()
    }

    /// The one error of a route (or rule) line written at line 2, column 5: message and
    /// column.
    fn route_error(line: &str) -> (String, u32) {
        block_error("static_routes", line)
    }

    fn rule_error(line: &str) -> (String, u32) {
        block_error("static_rules", line)
    }

    fn block_error(block: &str, line: &str) -> (String, u32) {
        let e = load(&format!("{block} {{\n    {line}\n}}\n")).expect_err(line);
        assert_eq!(e.len(), 1, "{line}: {e:#?}");
        let (msg, l, col) = e.into_iter().next().unwrap();
        assert_eq!(l, 2, "{line}: {msg}");
        (msg, col)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keepalived_route_examples() {
        let r = one_route("src 192.0.2.1 to 198.51.100.0/24 via 192.0.2.254 dev eth1");
        assert_eq!((r.dst, r.dst_len), (ip("198.51.100.0"), 24));
        assert_eq!(r.src, Some(ip("192.0.2.1")));
        assert_eq!(r.via, Some(ip("192.0.2.254")));
        assert_eq!(r.dev.as_deref(), Some("eth1"));
        assert_eq!(
            (r.kind, r.table, r.no_track),
            (RouteType::Unicast, 254, false)
        );
        let r = one_route("198.51.100.0/24 dev eth2 no_track");
        assert_eq!(
            (r.dev.as_deref(), r.via, r.no_track),
            (Some("eth2"), None, true)
        );
        let r = one_route("blackhole 203.0.113.0/24");
        assert_eq!((r.kind, r.dst_len), (RouteType::Blackhole, 24));
        let r = one_route("0.0.0.0/0 gw 192.0.2.1 table 100");
        assert_eq!((r.dst_len, r.table), (0, 100));
        let r = one_route("default via 192.0.2.1 table local");
        assert_eq!((r.dst, r.dst_len, r.table), (ip("0.0.0.0"), 0, 255));
        let r = one_route("2001:db8:1::/48 via 2001:db8::1 metric 10 scope global onlink");
        assert_eq!(
            (r.dst_len, r.metric, r.scope, r.onlink),
            (48, Some(10), Some(0), true)
        );
        let r = one_route("198.51.100.7 dev eth0 preference 4294967295 scope 200 table default");
        assert_eq!(
            (r.dst_len, r.metric, r.scope, r.table),
            (32, Some(u32::MAX), Some(200), 253)
        );
        // `default` is 0.0.0.0/0, or ::/0 when the gateway, source or `inet6` is IPv6.
        let r = one_route("default via 2001:db8::1 dev eth0");
        assert_eq!((r.dst, r.dst_len), (ip("::"), 0));
        assert_eq!(one_route("default dev eth0 inet6").dst, ip("::"));
        assert_eq!(
            one_route("unreachable default src 2001:db8::2").dst,
            ip("::")
        );
        assert_eq!(one_route("default dev eth0 inet").dst, ip("0.0.0.0"));
        assert_eq!(one_route("2001:db8::/32 dev eth0 inet6").dst_len, 32);
        for (w, k) in [
            ("unreachable", RouteType::Unreachable),
            ("prohibit", RouteType::Prohibit),
            ("throw", RouteType::Throw),
            ("local", RouteType::Local),
            ("unicast", RouteType::Unicast),
        ] {
            assert_eq!(one_route(&format!("{w} 203.0.113.0/24")).kind, k);
        }
    }

    #[test]
    fn bad_route_words_are_reported_at_the_word() {
        let cases: &[(&str, &str, u32)] = &[
            (
                "to 198.51.100./24 dev eth0",
                "invalid route destination `198.51.100./24`: `198.51.100.` is not an IP address",
                8,
            ),
            (
                "198.51.100.0/33 dev eth0",
                "invalid route destination `198.51.100.0/33`: invalid prefix length `/33` (must be 0..=32)",
                5,
            ),
            ("198.51.100.0/24 via 192.0.2", "`via` expects an IP address, found `192.0.2`", 25),
            ("198.51.100.0/24 dev eth0 src 192.0.2.1/24", "`src` expects an IP address, found `192.0.2.1/24`", 34),
            ("198.51.100.0/24 dev eth0 table bird", "unknown table `bird`", 36),
            (
                "198.51.100.0/24 dev eth0 table 4294967296",
                "`table` must be a table number in 0..=4294967295, found `4294967296`",
                36,
            ),
            ("198.51.100.0/24 dev eth0 metric -1", "`metric` must be an integer in 0..=4294967295, found `-1`", 37),
            ("198.51.100.0/24 dev eth0 scope 300", "invalid scope `300`", 36),
            ("198.51.100.0/24 dev eth0 scope", "`scope` needs a value", 30),
            (
                "198.51.100.0/24 via 192.0.2.254 or 192.0.2.253 dev eth1",
                "route option `or` is not supported by vipd",
                37,
            ),
            ("198.51.100.0/24 nexthop via 192.0.2.1", "route option `nexthop` is not supported by vipd", 21),
            ("198.51.100.0/24 dev eth0 mtu 1400", "route option `mtu` is not supported by vipd", 30),
            ("198.51.100.0/24 dev eth0 encap mpls 200", "route option `encap` is not supported by vipd", 30),
            ("198.51.100.0/24 dev eth0 protocol bird", "route option `protocol` is not supported by vipd", 30),
            ("198.51.100.0/24 dev eth0 track_group", "`track_group` needs a value", 30),
            ("198.51.100.0/24 dev eth0 nat", "route option `nat` is not supported by vipd", 30),
            ("2001:db8::/32 from 2001:db8::1", "route option `from` is not supported by vipd", 19),
            ("198.51.100.0/24 dev eth0 onlnk", "unknown route option `onlnk`", 30),
            ("198.51.100.0/24 192.0.2.9", "route has a second destination `192.0.2.9`", 21),
            ("via 192.0.2.1 dev eth0", "route has no destination", 5),
            ("to 198.51.100.0/24 default", "route has a second destination `default`", 24),
            (
                "198.51.100.0/24 to 203.0.113.0/24",
                "route has a second destination `203.0.113.0/24`",
                24,
            ),
            ("198.51.100.0/24 dev eth0 inet6", "`inet6` given for an IPv4 route", 30),
            ("2001:db8::/32 dev eth0 inet", "`inet` given for an IPv6 route", 28),
            ("default via 192.0.2.1 inet6", "gateway 192.0.2.1 is IPv4, but the destination is IPv6", 17),
            (
                "2001:db8::/32 via 192.0.2.1",
                "gateway 192.0.2.1 is IPv4, but the destination is IPv6",
                23,
            ),
            (
                "198.51.100.0/24 dev eth0 src 2001:db8::1",
                "source 2001:db8::1 is IPv6, but the destination is IPv4",
                34,
            ),
        ];
        for (line, msg, col) in cases {
            assert_eq!(route_error(line), (msg.to_string(), *col), "{line}");
        }
    }

    #[test]
    fn keepalived_rule_examples() {
        let r = one_rule("from 192.0.2.0/24 table 1");
        assert_eq!(
            (r.from, r.table, r.v6),
            (Some((ip("192.0.2.0"), 24)), Some(1), false)
        );
        let r = one_rule("to 192.0.2.0/24 table 1 no_track");
        assert!(r.to.is_some() && r.no_track && !r.v6);
        let r = one_rule("from 2001:db8::/32 fwmark 0x10/0xff priority 100 table main");
        assert!(r.v6);
        assert_eq!(
            (r.fwmark, r.priority, r.table),
            (Some((16, Some(255))), Some(100), Some(254))
        );
        let r = one_rule("fwmark 16/255 lookup 7 pref 9 iif eth0 oif eth1");
        assert_eq!(
            (r.fwmark, r.table, r.priority),
            (Some((16, Some(255))), Some(7), Some(9))
        );
        assert_eq!(
            (r.iif.as_deref(), r.oif.as_deref()),
            (Some("eth0"), Some("eth1"))
        );
        let r = one_rule("not from all to 198.51.100.0/24 preference 5 prohibit");
        assert!(r.not && r.from.is_none());
        assert_eq!((r.action, r.table), (Some(RouteType::Prohibit), None));
        let r = one_rule("inet6 from default to any fwmark 1 table 10");
        assert!(r.from.is_none() && r.to.is_none());
        assert!(r.v6);
        let r = one_rule("inet from 192.0.2.1 unreachable");
        assert_eq!(
            (r.v6, r.action, r.from.unwrap().1),
            (false, Some(RouteType::Unreachable), 32)
        );
        assert_eq!(
            one_rule("iif eth0 blackhole").action,
            Some(RouteType::Blackhole)
        );
    }

    #[test]
    fn pref_loads_with_a_warning() {
        let opts = LoadOptions {
            config_id: Some("t".into()),
            check_interfaces: false,
            ..Default::default()
        };
        let l = load_str(
            "static_rules {\n    fwmark 1 table 10 pref 9\n}\n",
            Path::new("t.conf"),
            &opts,
        )
        .unwrap();
        assert_eq!(l.config.static_rules[0].priority, Some(9));
        let w: Vec<_> = l
            .diagnostics
            .iter()
            .map(|d| (d.message.as_str(), d.span.line, d.span.col))
            .collect();
        assert_eq!(w, [("keepalived does not accept `pref` in a rule", 2, 23)]);
    }

    #[test]
    fn bad_rule_words_are_reported_at_the_word() {
        let cases: &[(&str, &str, u32)] = &[
            (
                "to 192.168.100./24 table 1",
                "invalid rule `to` prefix `192.168.100./24`: `192.168.100.` is not an IP address",
                8,
            ),
            (
                "from 192.0.2.0/33 table 1",
                "invalid rule `from` prefix `192.0.2.0/33`: invalid prefix length `/33` (must be 0..=32)",
                10,
            ),
            ("from 192.0.2.0/24 table 0", "table 0 is not valid for a rule", 29),
            ("from 192.0.2.0/24 table small", "unknown table `small`", 29),
            ("from 192.0.2.0/24", "rule has no action", 5),
            ("from 192.0.2.0/24 table 1 priority x", "`priority` must be an integer in 0..=4294967295, found `x`", 40),
            ("fwmark 0x1g table 1", "invalid fwmark `0x1g`", 12),
            ("fwmark 1/ table 1", "invalid fwmark `1/`", 12),
            (
                "from 192.0.2.0/24 to 2001:db8::/32 table 1",
                "`2001:db8::/32` is IPv6, but `192.0.2.0/24` made this an IPv4 rule",
                26,
            ),
            (
                "inet6 from 192.0.2.0/24 table 1",
                "`192.0.2.0/24` is IPv4, but `inet6` made this an IPv6 rule",
                16,
            ),
            ("from 192.0.2.0/24 table 1 tos 4", "rule option `tos` is not supported by vipd", 31),
            ("from 192.0.2.0/24 goto 40", "rule option `goto` is not supported by vipd", 23),
            ("uidrange 1-2 table 1", "rule option `uidrange` is not supported by vipd", 5),
            ("from 192.0.2.0/24 tabel 1", "unknown rule option `tabel`", 23),
            ("from", "`from` needs a value", 5),
        ];
        for (line, msg, col) in cases {
            assert_eq!(rule_error(line), (msg.to_string(), *col), "{line}");
        }
    }

    #[test]
    fn numbers_are_read_as_iproute2_reads_them() {
        assert_eq!(one_route("198.51.100.0/24 dev eth0 table 0x64").table, 100);
        assert_eq!(one_route("198.51.100.0/24 dev eth0 table 010").table, 8);
        assert_eq!(
            one_route("198.51.100.0/24 dev eth0 scope 0xfd").scope,
            Some(253)
        );
        assert_eq!(one_rule("from 192.0.2.1 table 0x7").table, Some(7));
        // keepalived reads a rule's preference and fwmark so too, a route's metric not.
        let r = one_rule("fwmark 010/0x1F table 1 preference 010");
        assert_eq!((r.fwmark, r.priority), (Some((8, Some(31))), Some(8)));
        assert_eq!(
            one_rule("iif eth0 table 1 priority 0x10").priority,
            Some(16)
        );
        assert_eq!(
            one_route("198.51.100.0/24 dev eth0 metric 010").metric,
            Some(10)
        );
        assert_eq!(
            route_error("198.51.100.0/24 dev eth0 metric 0x10"),
            (
                "`metric` must be an integer in 0..=4294967295, found `0x10`".to_string(),
                37
            )
        );
    }

    /// A config whose `global_defs` (after the routes: keepalived reads it first) points
    /// `iproute_etc_dir` / `iproute_usr_dir` at `dir`'s `etc` and `usr`.
    fn with_dirs(dir: &Path, body: &str) -> String {
        format!(
            "{body}global_defs {{\n    iproute_etc_dir {}\n    iproute_usr_dir {}\n}}\n",
            dir.join("etc").display(),
            dir.join("usr").display()
        )
    }

    #[test]
    fn names_come_from_the_configured_iproute2_dirs() {
        let t = crate::iproute::tests::Tmp::new();
        t.write("etc/rt_tables", "100 web\n0x65 db # hex\n254 main\n");
        t.write("usr/rt_tables.d/extra.conf", "7 seven\n");
        t.write("usr/rt_scopes", "77 notread\n");
        t.write("etc/rt_scopes", "100 myscope\n");
        let c = load(&with_dirs(
            t.path(),
            "static_routes {\n    198.51.100.0/24 dev eth0 table web scope myscope\n    \
             203.0.113.0/24 dev eth0 table db\n    192.0.2.0/24 dev eth0 table main scope link\n}\n\
             static_rules {\n    from 192.0.2.1 table seven\n}\n\
             vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.1\n }\n \
             virtual_routes {\n  198.51.100.0/24 dev eth0 table db\n }\n virtual_rules {\n  to 192.0.2.9 lookup web\n }\n}\n",
        ))
        .unwrap_or_else(|e| panic!("{e:#?}"));
        let r: Vec<_> = c.static_routes.iter().map(|r| (r.table, r.scope)).collect();
        assert_eq!(r, [(100, Some(100)), (101, None), (254, Some(253))]);
        assert_eq!(c.static_rules[0].table, Some(7));
        assert_eq!(c.instances[0].virtual_routes[0].table, 101);
        assert_eq!(c.instances[0].virtual_rules[0].table, Some(100));

        let e = load(&with_dirs(
            t.path(),
            "static_routes {\n    198.51.100.0/24 dev eth0 scope notread\n}\n",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            [("invalid scope `notread`".to_string(), 2, 36)],
            "etc replaces usr"
        );
    }

    #[test]
    fn address_scopes_use_the_names_too() {
        let t = crate::iproute::tests::Tmp::new();
        t.write("etc/rt_scopes", "100 edge\n0x20 hexed\n");
        let c = load(&with_dirs(
            t.path(),
            "static_ipaddress {\n    192.0.2.5/24 dev eth0 scope edge\n}\n\
             vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.1 scope hexed\n  192.0.2.2 scope host\n  192.0.2.3 scope 0x10\n }\n \
             virtual_ipaddress_excluded {\n  192.0.2.4 scope edge\n }\n}\n",
        ))
        .unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(c.static_ipaddress[0].scope, Some(100));
        let i = &c.instances[0];
        let vips: Vec<_> = i.virtual_ipaddress.iter().map(|v| v.scope).collect();
        assert_eq!(vips, [Some(32), Some(254), Some(16)]);
        assert_eq!(i.virtual_ipaddress_excluded[0].scope, Some(100));
        let e = load(&with_dirs(
            t.path(),
            "static_ipaddress {\n    192.0.2.5/24 dev eth0 scope edgy\n}\n\
             vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.1 scope universe\n }\n \
             virtual_ipaddress_excluded {\n  192.0.2.4 scope 256\n }\n}\n",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            [
                ("invalid scope `edgy`".to_string(), 2, 33),
                ("invalid scope `universe`".to_string(), 8, 19),
                ("invalid scope `256`".to_string(), 11, 19),
            ]
        );
    }

    #[test]
    fn an_unknown_name_names_the_files_searched() {
        let t = crate::iproute::tests::Tmp::new();
        t.write("usr/rt_tables", "100 web\n");
        let text = with_dirs(
            t.path(),
            "static_rules {\n    from 192.0.2.1 table web\n    from 192.0.2.2 table bird\n}\n",
        );
        let opts = LoadOptions {
            config_id: Some("t".into()),
            check_interfaces: false,
            ..Default::default()
        };
        let e = load_str(&text, Path::new("t.conf"), &opts).unwrap_err();
        let e: Vec<_> = e.iter().filter(|d| d.is_error()).collect();
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(
            (e[0].message.as_str(), e[0].span.line, e[0].span.col),
            ("unknown table `bird`", 3, 26)
        );
        let (etc, usr) = (t.path().join("etc"), t.path().join("usr"));
        assert_eq!(
            e[0].help.as_deref(),
            Some(
                format!(
                    "a table is a number or a name from {}/rt_tables, {}/rt_tables.d/*.conf, {}/rt_tables.d/*.conf (`iproute_etc_dir` / `iproute_usr_dir` in global_defs choose the directories)",
                    usr.display(),
                    usr.display(),
                    etc.display()
                )
                .as_str()
            )
        );
        // A name for table 0 is no table for a rule, as the number is not.
        t.write("etc/rt_tables", "0 unspec\n");
        let e = load(&with_dirs(
            t.path(),
            "static_rules {\n    from 192.0.2.1 table unspec\n}\n",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            [("table unspec is not valid for a rule".to_string(), 2, 26)]
        );
    }

    #[test]
    fn virtual_routes_and_rules_are_typed_too() {
        let c = load(
            "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.1\n }\n virtual_routes {\n  198.51.100.0/24 dev eth0\n  blackhole 203.0.113.0/24\n }\n virtual_rules {\n  from 192.0.2.1 table 100 priority 1000\n }\n}\n",
        )
        .unwrap();
        let i = &c.instances[0];
        assert_eq!(i.virtual_routes.len(), 2);
        assert_eq!(i.virtual_routes[1].kind, RouteType::Blackhole);
        assert_eq!(i.virtual_rules[0].priority, Some(1000));
        let e = load(
            "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.1\n }\n virtual_rules {\n  from 192.0.2.1 table 100 realms 4\n }\n}\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            vec![(
                "rule option `realms` is not supported by vipd".to_string(),
                8,
                28
            )]
        );
    }
}

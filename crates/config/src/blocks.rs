//! Schema-driven checking of every keyword vipd does not map by hand, and the typed
//! mapping of the blocks whose runtime is not built yet (`vrrp_script`,
//! `virtual_server`, ...).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::diagnostic::Diags;
use crate::iproute::IprouteNames;
use crate::keywords::suggest;
use crate::lexer::Token;
use crate::model::*;
use crate::schema::{self, Body, Entry, Kw, A};
use crate::tree::Node;
use crate::value::{parse_bool, parse_millis, parse_prefix, parse_seconds};

/// Signed decimal integer (keepalived also takes no `+`).
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn extra(d: &mut Diags, tok: &Token, kw: &str) {
    d.error(
        tok,
        format!("unexpected extra argument `{}` for `{kw}`", tok.text),
    );
}

fn int_in(d: &mut Diags, a: &Token, what: &str, lo: i64, hi: i64) -> Option<i64> {
    match parse_int(&a.text) {
        Some(v) if (lo..=hi).contains(&v) => Some(v),
        _ => {
            d.error(
                a,
                format!(
                    "`{what}` must be an integer in {lo}..={hi}, found `{}`",
                    a.text
                ),
            );
            None
        }
    }
}

/// Checks the words after a keyword against its schema; true if they are fine.
pub(crate) fn check_args(n: &Node, spec: A, d: &mut Diags) -> bool {
    let name = n.name();
    let args = &n.args[..];
    let need_one = |d: &mut Diags| -> Option<&Token> {
        match args {
            [] => {
                d.error(&n.keyword, format!("`{name}` needs a value"));
                None
            }
            [a] => Some(a),
            [_, x, ..] => {
                extra(d, x, name);
                None
            }
        }
    };
    match spec {
        A::Flag => match args.first() {
            Some(a) => {
                d.error(
                    a,
                    format!("`{name}` takes no arguments, found `{}`", a.text),
                );
                false
            }
            None => true,
        },
        A::Bool => match args {
            [] => true,
            [a] => {
                let ok = parse_bool(&a.text).is_some();
                if !ok {
                    d.error_help(
                        a,
                        format!("`{name}` expects a boolean, found `{}`", a.text),
                        "use one of on|off|true|false|yes|no, or nothing for on",
                    );
                }
                ok
            }
            [_, x, ..] => {
                extra(d, x, name);
                false
            }
        },
        A::Int(lo, hi) => need_one(d).is_some_and(|a| int_in(d, a, name, lo, hi).is_some()),
        A::Port => need_one(d).is_some_and(|a| int_in(d, a, name, 0, 65535).is_some()),
        A::OptInt(lo, hi) => match args {
            [] => true,
            [a] => int_in(d, a, name, lo, hi).is_some(),
            [_, x, ..] => {
                extra(d, x, name);
                false
            }
        },
        A::Secs(max) => need_one(d).is_some_and(|a| match parse_seconds(&a.text) {
            Some(v) if v <= Duration::from_secs(max) => true,
            _ => {
                d.error_help(
                    a,
                    format!(
                        "`{name}` must be a number of seconds in 0..={max}, found `{}`",
                        a.text
                    ),
                    "fractions are allowed, e.g. `0.5`",
                );
                false
            }
        }),
        A::Str => need_one(d).is_some(),
        A::Words => {
            if args.is_empty() {
                d.error(&n.keyword, format!("`{name}` needs a value"));
                false
            } else {
                true
            }
        }
        A::Script => match args {
            [] => {
                d.error(&n.keyword, format!("`{name}` needs a value"));
                false
            }
            // The command, then keepalived's optional `username [groupname]`.
            [_] | [_, _] | [_, _, _] => true,
            [_, _, _, extra, ..] => {
                d.error_help(
                    extra,
                    format!(
                        "`{name}` takes a command and at most a user and a group; `{}` is one word too many",
                        extra.text
                    ),
                    "quote the command if these are its arguments (`\"/path/script arg\"`): unquoted, keepalived reads the second word as the user to run it as",
                );
                false
            }
        },
        A::Any => true,
        A::Ip => need_one(d).is_some_and(|a| {
            let ok = a.text.parse::<IpAddr>().is_ok();
            if !ok {
                d.error(
                    a,
                    format!("`{name}` expects an IP address, found `{}`", a.text),
                );
            }
            ok
        }),
        A::OneOf(choices) => match args.first() {
            None => {
                d.error_help(
                    &n.keyword,
                    format!("`{name}` needs a value"),
                    format!("one of {}", choices.join("|")),
                );
                false
            }
            Some(a) if choices.contains(&a.text.as_str()) => true,
            Some(a) => {
                let msg = format!("invalid `{name}` value `{}`", a.text);
                let help = match choices.iter().find(|c| c.eq_ignore_ascii_case(&a.text)) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => match suggest(&a.text, choices.iter().copied()) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("expected one of {}", choices.join("|")),
                    },
                };
                d.error_help(a, msg, help);
                false
            }
        },
        A::Options(choices) => {
            let bad: Vec<_> = args
                .iter()
                .filter(|a| !choices.contains(&a.text.as_str()))
                .collect();
            for a in &bad {
                d.error_help(
                    a,
                    format!("unknown `{name}` option `{}`", a.text),
                    format!("expected {}", choices.join("|")),
                );
            }
            bad.is_empty()
        }
        A::Millis(lo, hi) => need_one(d).is_some_and(|a| match parse_millis(&a.text) {
            Some(v) if (lo * 1000..=hi * 1000).contains(&v) => true,
            _ => {
                d.error_help(
                    a,
                    format!(
                        "`{name}` must be a number of milliseconds in {lo}..={hi}, found `{}`",
                        a.text
                    ),
                    "up to 3 decimals (microseconds) are allowed, e.g. `3.312`",
                );
                false
            }
        }),
        A::Ints(lo, hi) => {
            if args.is_empty() {
                d.error(&n.keyword, format!("`{name}` needs a value"));
                false
            } else {
                // Every bad one reported, not only the first.
                args.iter()
                    .filter(|a| int_in(d, a, name, lo, hi).is_none())
                    .count()
                    == 0
            }
        }
        A::AllSecs(max) => {
            let mut secs = 0;
            let mut ok = true;
            for a in args.iter().filter(|a| a.text != "all") {
                secs += 1;
                ok &= int_in(d, a, name, 0, max).is_some();
                if secs == 2 {
                    extra(d, a, name);
                    ok = false;
                }
            }
            if secs == 0 {
                d.error_help(
                    &n.keyword,
                    format!("`{name}` needs an interval in seconds"),
                    format!("e.g. `{name} 60` or `{name} all 60`"),
                );
            }
            ok && secs == 1
        }
        A::Weight(lo, hi) => match args {
            [] => {
                d.error(&n.keyword, format!("`{name}` needs a value"));
                false
            }
            [w, rest @ ..] => {
                let ok = int_in(d, w, name, lo, hi).is_some();
                match rest {
                    [] => ok,
                    [r] if r.text == "reverse" || r.text == "noreverse" => ok,
                    [r, ..] => {
                        d.error_help(
                            r,
                            format!("unexpected `{}` after the weight", r.text),
                            "only `reverse` or `noreverse` may follow the weight",
                        );
                        false
                    }
                }
            }
        },
    }
}

/// Checks one keyword node: its arguments and its block or list.
pub(crate) fn check_kw(n: &Node, kw: &Kw, d: &mut Diags) {
    check_args(n, kw.args, d);
    match (kw.body, &n.children) {
        (Body::None, Some(_)) => {
            if let Some(brace) = &n.open_brace {
                d.error(brace, format!("`{}` does not take a block", n.name()));
            }
        }
        (Body::None, None) | (Body::OptList(_), None) => {}
        (Body::Block(_) | Body::List(_), None) => d.error_help(
            &n.keyword,
            format!("`{}` needs a `{{ ... }}` block", n.name()),
            format!("write `{} {{` and close the block with `}}`", n.name()),
        ),
        (Body::Block(kws), Some(children)) => check_children(children, kws, n.name(), d),
        (Body::List(e) | Body::OptList(e), Some(children)) => {
            for c in children {
                check_entry(c, e, d);
            }
        }
    }
}

/// Checks every child of the schema block named `block`.
pub(crate) fn check_children(nodes: &[Node], kws: &'static [Kw], block: &str, d: &mut Diags) {
    for c in nodes {
        match schema::find(kws, c.name()) {
            Some(kw) => {
                if c.name() == "nb_get_retry" {
                    d.push(
                        crate::Diagnostic::warning_at("`nb_get_retry` is deprecated", &c.keyword)
                            .with_help("use `retry` (same meaning)"),
                    );
                }
                check_kw(c, kw, d)
            }
            None => unknown(c, kws, block, d),
        }
    }
}

/// Reports `n`, a keyword not of `kws`, the keywords of the block named `block`. (The
/// block's name is made into text only here: a large file has 40,000 blocks.)
pub(crate) fn unknown(n: &Node, kws: &'static [Kw], block: &str, d: &mut Diags) {
    let name = n.name();
    let msg = format!("unknown keyword `{name}` in `{block}`");
    match suggest(name, schema::names(kws)) {
        Some(s) => d.error_help(&n.keyword, msg, format!("did you mean `{s}`?")),
        None => {
            if schema::CHECKERS.contains(&name) || name == "real_server" {
                d.error_help(
                    &n.keyword,
                    msg,
                    if name == "real_server" {
                        "it belongs inside a `virtual_server` block"
                    } else {
                        "checkers belong inside a `real_server` block"
                    },
                )
            } else {
                d.error(&n.keyword, msg)
            }
        }
    }
}

/// All words of a list entry: the keyword slot and its arguments.
fn words(n: &Node) -> Vec<&Token> {
    std::iter::once(&n.keyword).chain(&n.args).collect()
}

fn no_block(n: &Node, d: &mut Diags) {
    if let (Some(brace), Some(_)) = (&n.open_brace, &n.children) {
        d.error(brace, "this entry does not take a block");
    }
}

pub(crate) fn check_entry(n: &Node, e: Entry, d: &mut Diags) {
    no_block(n, d);
    let w = words(n);
    match e {
        Entry::Names => {}
        // Typed (and reported) by `list_addresses`, which knows the iproute2 names.
        Entry::Address => {}
        // Typed (and their errors reported) by `list_routes` / `list_rules`, which know
        // the iproute2 names.
        Entry::Route | Entry::Rule => {}
        Entry::Tracked(lo, hi) => {
            tracked_entry(&w, lo, hi, d);
        }
        Entry::VsgEntry => {
            vsg_entry(&w, d);
        }
        Entry::Delays => {
            for t in w.iter().skip(1).take(2) {
                if parse_seconds(&t.text).is_none() {
                    d.error(t, format!("invalid delay `{}` (seconds expected)", t.text));
                }
            }
            if w.len() < 2 {
                d.error(w[0], "expected `IFNAME DOWN_DELAY [UP_DELAY]`");
            } else if w.len() > 3 {
                extra(d, w[3], "interface_up_down_delays");
            }
        }
    }
}

/// The options of an address line beyond `brd`, `dev`, `scope`, `label` and
/// `track_group`, shared by `virtual_ipaddress`, `virtual_ipaddress_excluded` and
/// `static_ipaddress` (keepalived 2.4.3's `alloc_ipaddress`): `peer ADDR`, `home`,
/// `-nodad`, `mngtmpaddr`, `noprefixroute`, `autojoin`, `no_track`,
/// `preferred_lft N|forever`. `None` when `w[i]` is none of them, else how many words
/// it took (the option and its value). What the kernel would refuse, or keepalived
/// ignores with a message, is an error at its word; what has no meaning for an IPv4
/// address (and keepalived ignores silently) is a warning there.
pub(crate) fn address_flag_option(
    w: &[&Token],
    i: usize,
    a: &mut VirtualAddress,
    d: &mut Diags,
) -> Option<usize> {
    let t = w[i];
    let opt = t.text.as_str();
    let v4 = a.addr.is_ipv4();
    let addr = a.addr;
    let v6_only = |d: &mut Diags, what: &str| {
        d.warning(
            t,
            format!(
                "`{opt}` applies to IPv6 addresses only: {what} for {addr} (as keepalived does)"
            ),
        )
    };
    match opt {
        "home" | "mngtmpaddr" if v4 => v6_only(d, "not set"),
        "-nodad" if v4 => v6_only(d, "ignored"),
        "home" => a.flags |= VirtualAddress::HOME,
        "mngtmpaddr" if a.prefix_len != 64 => d.error(
            t,
            format!(
                "`mngtmpaddr` needs a /64 address (the kernel refuses it on {}/{})",
                a.addr, a.prefix_len
            ),
        ),
        "mngtmpaddr" => a.flags |= VirtualAddress::MNGTMPADDR,
        "-nodad" => a.dad = true,
        "nodad" => d.error_help(
            t,
            "unknown address option `nodad`",
            "keepalived does not know it either (it ignores it with a message): IPv6 \
             addresses are added without duplicate address detection anyway, and `-nodad` \
             turns it on",
        ),
        "noprefixroute" => a.flags |= VirtualAddress::NOPREFIXROUTE,
        "autojoin" if !a.addr.is_multicast() => d.error(
            t,
            format!(
                "`autojoin` joins a multicast group: {} is not a multicast address (the \
                 kernel refuses it)",
                a.addr
            ),
        ),
        "autojoin" => a.flags |= VirtualAddress::AUTOJOIN,
        "no_track" => a.no_track = true,
        "peer" | "preferred_lft" => {
            let Some(v) = w.get(i + 1) else {
                d.error(t, format!("`{opt}` needs a value"));
                return Some(1);
            };
            if opt == "preferred_lft" {
                let n = match v.text.as_str() {
                    "forever" => Some(VirtualAddress::FOREVER),
                    n => n.parse::<u32>().ok(),
                };
                match n {
                    None => d.error(
                        v,
                        format!("invalid preferred_lft `{}` (seconds, or `forever`)", v.text),
                    ),
                    Some(_) if v4 => v6_only(d, "ignored"),
                    n => a.preferred_lft = n,
                }
            } else {
                peer_option(t, v, a, d);
            }
            return Some(2);
        }
        _ => return None,
    }
    Some(1)
}

/// `peer ADDR`: an address without mask of the address's family; the address becomes a
/// /32 (/128), as keepalived makes it.
fn peer_option(t: &Token, v: &Token, a: &mut VirtualAddress, d: &mut Diags) {
    let full = if a.addr.is_ipv4() { 32 } else { 128 };
    let Ok(peer) = v.text.parse::<IpAddr>() else {
        d.error(
            v,
            format!(
                "invalid peer address `{}` (an address without mask, as in keepalived)",
                v.text
            ),
        );
        return;
    };
    if peer.is_ipv4() != a.addr.is_ipv4() {
        d.error(
            v,
            format!("peer {peer} is not of {}'s address family", a.addr),
        );
    } else if a.peer.is_some() {
        d.error(t, format!("a second `peer` for {}", a.addr));
    } else if a.prefix_len != full {
        d.error_help(
            t,
            format!(
                "{}/{} has a prefix and a `peer`: keepalived ignores the prefix",
                a.addr, a.prefix_len
            ),
            format!("write `{} peer {peer}`", a.addr),
        );
    } else if a.brd.is_some() {
        d.error(
            t,
            format!(
                "{} has both `brd` and `peer`: keepalived ignores the brd",
                a.addr
            ),
        );
    } else {
        a.peer = Some(peer);
    }
}

/// `brd` on an address that has a `peer`: refused, as keepalived ignores that brd.
pub(crate) fn brd_with_peer(t: &Token, a: &VirtualAddress, d: &mut Diags) -> bool {
    if a.peer.is_some() {
        d.error(
            t,
            format!(
                "{} has both `peer` and `brd`: keepalived ignores the brd",
                a.addr
            ),
        );
    }
    a.peer.is_some()
}

/// `ADDR[/MASK] [options] [ADDR ...]` of a `static_ipaddress` (`static_addr`) or
/// `virtual_ipaddress_excluded` line; returns the addresses.
pub(crate) fn address_entry(
    w: &[&Token],
    static_addr: bool,
    names: &IprouteNames,
    d: &mut Diags,
) -> Vec<VirtualAddress> {
    let what = "address";
    let mut out: Vec<VirtualAddress> = Vec::new();
    let mut i = 0;
    while i < w.len() {
        let t = w[i];
        let opt = t.text.as_str();
        if let Some(last) = out.last_mut() {
            if let Some(n) = address_flag_option(w, i, last, d) {
                i += n;
                continue;
            }
            // keepalived: track_group for static addresses, use_vmac for the others
            // ("Unknown configuration entry" otherwise).
            let known = match opt {
                "track_group" => static_addr,
                "use_vmac" => !static_addr,
                _ => true,
            };
            let found = schema::ADDRESS_OPTIONS.iter().find(|(o, _)| *o == opt);
            if let (Some((_, takes)), true) = (found, known) {
                let value = w.get(i + 1);
                if *takes && value.is_none() {
                    d.error(t, format!("`{opt}` needs a value"));
                    return out;
                }
                if let (true, Some(v)) = (*takes, value) {
                    match opt {
                        "dev" => last.dev = Some(v.text.to_string()),
                        "label" => last.label = Some(v.text.to_string()),
                        "scope" => last.scope = crate::routes::scope(v, names, d),
                        "brd" if !brd_with_peer(v, last, d) => last.brd = v.text.parse().ok(),
                        "track_group" => last.track_group = Some(v.text.to_string()),
                        _ => {}
                    }
                }
                if opt == "use_vmac" {
                    last.use_vmac = true;
                }
                i += if *takes { 2 } else { 1 };
                continue;
            }
        }
        match parse_prefix(opt) {
            Ok((addr, prefix_len)) => {
                out.push(VirtualAddress::new(addr, prefix_len, t.span.clone()))
            }
            Err(e) => {
                let names = schema::ADDRESS_OPTIONS.iter().map(|(o, _)| *o);
                match (out.is_empty(), suggest(opt, names)) {
                    (false, Some(s)) => d.error_help(
                        t,
                        format!("unknown {what} option `{opt}`"),
                        format!("did you mean `{s}`?"),
                    ),
                    (false, None) if !opt.contains(['.', ':']) => {
                        d.error(t, format!("unknown {what} option `{opt}`"))
                    }
                    _ => d.error(t, format!("invalid {what} entry: {e}")),
                }
                return out;
            }
        }
        i += 1;
    }
    out
}

fn tracked_entry(w: &[&Token], lo: i64, hi: i64, d: &mut Diags) -> Option<Tracked> {
    let name = w[0];
    let mut t = Tracked {
        name: name.text.to_string(),
        weight: None,
        reverse: false,
        noreverse: false,
        span: name.span.clone(),
    };
    match &w[1..] {
        [] => {}
        [kw, rest @ ..] if kw.text == "weight" => {
            let Some(v) = rest.first() else {
                d.error(kw, "`weight` needs a value");
                return None;
            };
            t.weight = Some(int_in(d, v, "weight", lo, hi)?);
            match &rest[1..] {
                [] => {}
                [r] if r.text == "reverse" => t.reverse = true,
                [r] if r.text == "noreverse" => t.noreverse = true,
                [r, ..] => {
                    d.error_help(
                        r,
                        format!("unexpected `{}` after the weight", r.text),
                        "only `reverse` or `noreverse` may follow the weight",
                    );
                    return None;
                }
            }
        }
        [x, ..] => {
            let help = if suggest(&x.text, ["weight"]).is_some() {
                "did you mean `weight`?".to_string()
            } else {
                "expected `NAME [weight N [reverse|noreverse]]`".to_string()
            };
            d.error_help(
                x,
                format!("unexpected `{}` after `{}`", x.text, name.text),
                help,
            );
            return None;
        }
    }
    Some(t)
}

fn port(d: &mut Diags, t: &Token) -> Option<u16> {
    int_in(d, t, "port", 0, 65535).map(|v| v as u16)
}

fn vsg_entry(w: &[&Token], d: &mut Diags) -> Option<VsgEntry> {
    if w[0].text == "fwmark" {
        let Some(m) = w.get(1) else {
            d.error(w[0], "`fwmark` needs a value");
            return None;
        };
        let mark = int_in(d, m, "fwmark", 1, u32::MAX as i64)? as u32;
        let family = match w.get(2) {
            Some(f) if f.text == "inet" || f.text == "inet6" => Some(f.text.to_string()),
            Some(f) => {
                d.error_help(
                    f,
                    format!("invalid address family `{}`", f.text),
                    "use `inet` or `inet6`",
                );
                return None;
            }
            None => None,
        };
        if let Some(x) = w.get(3) {
            extra(d, x, "fwmark");
        }
        return Some(VsgEntry::Fwmark { mark, family });
    }
    let text = &w[0].text;
    // `ADDR-LAST`: for IPv6 the range separator is the last `-`.
    let (addr_s, last_s) = match text.rsplit_once('-') {
        Some((a, l)) if a.parse::<IpAddr>().is_ok() => (a, Some(l)),
        _ => (text.as_str(), None),
    };
    let Ok(first) = addr_s.parse::<IpAddr>() else {
        d.error(w[0], format!("invalid virtual_server_group entry `{text}`"));
        return None;
    };
    let last = match last_s {
        None => None,
        Some(l) => {
            let parsed = if first.is_ipv4() {
                l.parse::<u8>().ok().map(u16::from)
            } else {
                u16::from_str_radix(l, 16).ok()
            };
            let start = match first {
                IpAddr::V4(a) => u16::from(a.octets()[3]),
                IpAddr::V6(a) => a.segments()[7],
            };
            match parsed {
                Some(v) if v >= start => Some(v),
                _ => {
                    d.error(
                        w[0],
                        format!("invalid address range end `{l}` (must not be below the start)"),
                    );
                    return None;
                }
            }
        }
    };
    let port = match w.get(1) {
        Some(p) => Some(port(d, p)?),
        None => None,
    };
    if let Some(x) = w.get(2) {
        extra(d, x, "virtual_server_group entry");
    }
    Some(VsgEntry::Range { first, last, port })
}

// ---------------------------------------------------------------------------------
// Typed mapping (after checking; malformed values were reported and are skipped here).

/// Last node named `key` among `nodes` (keepalived: the last setting wins).
fn last<'n>(nodes: &'n [Node], key: &str) -> Option<&'n Node> {
    nodes.iter().rev().find(|n| n.name() == key)
}

fn has(nodes: &[Node], key: &str) -> bool {
    nodes.iter().any(|n| n.name() == key)
}

fn words_of(n: &Node) -> String {
    n.args
        .iter()
        .map(|a| a.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn text(nodes: &[Node], key: &str) -> Option<String> {
    last(nodes, key).map(words_of)
}

fn text_any(nodes: &[Node], keys: &[&str]) -> Option<String> {
    nodes
        .iter()
        .rev()
        .find(|n| keys.contains(&n.name()))
        .map(words_of)
}

fn first_arg<'n>(nodes: &'n [Node], keys: &[&str]) -> Option<&'n str> {
    nodes
        .iter()
        .rev()
        .find(|n| keys.contains(&n.name()))
        .and_then(|n| n.args.first())
        .map(|a| a.text.as_str())
}

/// `[all] SECS` (checked by the schema).
fn garp_extra_if(n: &Node) -> Option<crate::model::GarpExtraIf> {
    let interval = n
        .args
        .iter()
        .filter(|a| a.text != "all")
        .find_map(|a| parse_int(&a.text))?;
    Some(crate::model::GarpExtraIf {
        interval: interval as u32,
        all: n.args.iter().any(|a| a.text == "all"),
    })
}

fn int(nodes: &[Node], keys: &[&str]) -> Option<i64> {
    first_arg(nodes, keys).and_then(parse_int)
}

fn uint16(nodes: &[Node], key: &str) -> Option<u16> {
    int(nodes, &[key]).and_then(|v| u16::try_from(v).ok())
}

fn uint32(nodes: &[Node], keys: &[&str]) -> Option<u32> {
    int(nodes, keys).and_then(|v| u32::try_from(v).ok())
}

fn secs(nodes: &[Node], keys: &[&str]) -> Option<Duration> {
    first_arg(nodes, keys).and_then(parse_seconds)
}

fn ip(nodes: &[Node], key: &str) -> Option<IpAddr> {
    first_arg(nodes, &[key]).and_then(|a| a.parse().ok())
}

fn boolean(nodes: &[Node], key: &str) -> Option<bool> {
    last(nodes, key).map(|n| match n.args.first() {
        None => true,
        Some(a) => parse_bool(&a.text).unwrap_or(true),
    })
}

/// `weight N [reverse]` → (weight, reverse).
fn weight(nodes: &[Node], default: i64) -> (i64, bool) {
    match last(nodes, "weight") {
        Some(n) => (
            n.args
                .first()
                .and_then(|a| parse_int(&a.text))
                .unwrap_or(default),
            n.args.get(1).is_some_and(|a| a.text == "reverse"),
        ),
        None => (default, false),
    }
}

/// keepalived's `BFD_INAME_MAX` less the NUL.
const BFD_NAME_MAX: usize = 31;
/// keepalived's `*_MAX_SENSIBLE`: larger intervals get an informational warning.
const BFD_INTERVAL_SENSIBLE_US: u32 = 10_000_000;

/// A BFD interval in microseconds if valid (out-of-range values were reported).
fn bfd_millis(nodes: &[Node], key: &str, lo_ms: u64) -> Option<u32> {
    first_arg(nodes, &[key])
        .and_then(parse_millis)
        .filter(|v| (lo_ms * 1000..=schema::BFD_INTERVAL_MAX_MS * 1000).contains(v))
        .and_then(|v| u32::try_from(v).ok())
}

/// `bfd_instance NAME { ... }` with keepalived 2.4.3's defaults and checks (its
/// `bfd_parser.c` end handler): a neighbour is required, the source must be of its
/// family, one instance per neighbour/source/multihop, `max_hops` capped at the TTL.
fn bfd_instance(n: &Node, kids: &[Node], config: &mut Config, d: &mut Diags) {
    let name = block_name(n);
    if name.len() > BFD_NAME_MAX {
        d.error(
            n.args.first().unwrap_or(&n.keyword),
            format!("bfd_instance name `{name}` is too long (at most {BFD_NAME_MAX} characters, as keepalived)"),
        );
    }
    if let Some(other) = config.bfd_instances.iter().find(|b| b.name == name) {
        d.error(
            n.args.first().unwrap_or(&n.keyword),
            format!(
                "bfd_instance `{name}` is defined twice (first at line {})",
                other.span.line
            ),
        );
    }
    let neighbor_ip = nodes_ip(kids, &["neighbor_ip", "neighbour_ip"]);
    let source_ip = ip(kids, "source_ip");
    let v6 = neighbor_ip.is_some_and(|a| a.is_ipv6());
    let ttl = int(kids, &["ttl", "hoplimit"])
        .and_then(|v| u8::try_from(v).ok())
        .unwrap_or(if v6 {
            BfdInstance::DEFAULT_HOPLIMIT_V6
        } else {
            BfdInstance::DEFAULT_TTL_V4
        });
    // -1 is keepalived's way to write 255 (its field is unsigned).
    let mut max_hops = int(kids, &["max_hops"]).map_or(0, |v| if v < 0 { 255 } else { v as u8 });
    if max_hops > ttl {
        let tok = last(kids, "max_hops").map_or(&n.keyword, |m| &m.keyword);
        d.warning(
            tok,
            format!(
                "bfd_instance `{name}`: max_hops {max_hops} exceeds the {} {ttl}; using {ttl} (as keepalived)",
                if v6 { "hoplimit" } else { "ttl" }
            ),
        );
        max_hops = ttl;
    }
    let (weight, reverse) = weight(kids, 0);
    let to_vrrp = has(kids, "vrrp");
    let to_checker = has(kids, "checker");
    let b = BfdInstance {
        name: name.clone(),
        span: name_span(n),
        neighbor_ip,
        source_ip,
        min_rx_us: bfd_millis(kids, "min_rx", 1).unwrap_or(10_000),
        min_tx_us: bfd_millis(kids, "min_tx", 1).unwrap_or(10_000),
        idle_tx_us: bfd_millis(kids, "idle_tx", 1000).unwrap_or(1_000_000),
        multiplier: int(kids, &["multiplier"])
            .and_then(|v| u8::try_from(v).ok())
            .unwrap_or(5),
        passive: has(kids, "passive"),
        ttl,
        max_hops,
        multihop: boolean(kids, "multihop").unwrap_or(false),
        weight,
        reverse,
        to_vrrp: to_vrrp || !to_checker,
        to_checker: to_checker || !to_vrrp,
    };
    for (key, v) in [
        ("min_rx", b.min_rx_us),
        ("min_tx", b.min_tx_us),
        ("idle_tx", b.idle_tx_us),
    ] {
        if v > BFD_INTERVAL_SENSIBLE_US {
            if let Some(k) = last(kids, key) {
                d.warning(
                    &k.keyword,
                    format!(
                        "bfd_instance `{name}`: {key} {} ms is larger than the sensible maximum of 10000 ms (keepalived warns too)",
                        f64::from(v) / 1000.0
                    ),
                );
            }
        }
    }
    match (neighbor_ip, source_ip) {
        (None, _) => d.error(
            &n.keyword,
            format!("bfd_instance `{name}` has no `neighbor_ip`"),
        ),
        (Some(nb), Some(src)) if nb.is_ipv4() != src.is_ipv4() => {
            let tok = last(kids, "source_ip").map_or(&n.keyword, |s| &s.keyword);
            d.error(
                tok,
                format!("bfd_instance `{name}`: source_ip {src} and neighbor_ip {nb} are not of the same family"),
            );
        }
        (Some(nb), src) => {
            // keepalived's find_bfd_by_addr: one session per neighbour and hop mode,
            // unless both name different sources.
            let dup = config.bfd_instances.iter().find(|o| {
                o.neighbor_ip == Some(nb)
                    && o.multihop == b.multihop
                    && (o.source_ip.is_none() || src.is_none() || o.source_ip == src)
            });
            if let Some(o) = dup {
                let tok = last(kids, "neighbor_ip")
                    .or_else(|| last(kids, "neighbour_ip"))
                    .map_or(&n.keyword, |s| &s.keyword);
                d.error(
                    tok,
                    format!(
                        "bfd_instance `{name}`: bfd_instance `{}` already has neighbor {nb}{}",
                        o.name,
                        if b.multihop { " (multihop)" } else { "" }
                    ),
                );
            }
        }
    }
    config.bfd_instances.push(b);
}

fn nodes_ip(nodes: &[Node], keys: &[&str]) -> Option<IpAddr> {
    first_arg(nodes, keys).and_then(|a| a.parse().ok())
}

fn block_name(n: &Node) -> String {
    n.args
        .first()
        .map(|a| a.text.to_string())
        .unwrap_or_default()
}

fn name_span(n: &Node) -> Span {
    n.args.first().unwrap_or(&n.keyword).span.clone()
}

pub(crate) fn tracked_list(n: &Node, lo: i64, hi: i64) -> Vec<Tracked> {
    let mut quiet = Diags::default();
    n.children
        .iter()
        .flatten()
        .filter_map(|c| tracked_entry(&words(c), lo, hi, &mut quiet))
        .collect()
}

pub(crate) fn fill_tracking(n: &Node, t: &mut Tracking) {
    let (list, lo, hi) = match n.name() {
        "track_interface" => (&mut t.interfaces, -253, 253),
        "track_script" => (&mut t.scripts, -253, 253),
        "track_file" => (&mut t.files, -254, 254),
        "track_process" => (&mut t.processes, -254, 254),
        "track_bfd" => (&mut t.bfds, -253, 253),
        _ => return,
    };
    list.extend(tracked_list(n, lo, hi));
    // Exactly sized: 5,000 instances each tracking one script are a large config.
    list.shrink_to_fit();
}

/// A script keyword's command and optional `username [groupname]`.
fn script_of(n: &Node) -> ScriptCommand {
    let mut args = n.args.iter().map(|a| a.text.as_str());
    let command = args.next().unwrap_or_default().to_string();
    let user: Vec<&str> = args.collect();
    ScriptCommand {
        command,
        user: (!user.is_empty()).then(|| user.join(" ")),
    }
}

fn script(nodes: &[Node], key: &str) -> Option<ScriptCommand> {
    last(nodes, key).map(script_of)
}

pub(crate) fn fill_notify(n: &Node, notify: &mut Notify) {
    let v = Some(script_of(n));
    match n.name() {
        "notify_master" => notify.master = v,
        "notify_backup" => notify.backup = v,
        "notify_fault" => notify.fault = v,
        "notify_stop" => notify.stop = v,
        "notify_deleted" => notify.deleted = v,
        "notify" => notify.notify = v,
        "notify_master_rx_lower_pri" => notify.master_rx_lower_pri = v,
        "notify_priority_changes" => {
            notify.priority_changes = boolean(std::slice::from_ref(n), "notify_priority_changes")
        }
        _ => {}
    }
}

pub(crate) fn list_words(n: &Node) -> Vec<Vec<String>> {
    n.children
        .iter()
        .flatten()
        .map(|c| words(c).iter().map(|t| t.text.to_string()).collect())
        .collect()
}

/// The routes of a `static_routes` / `virtual_routes` block; lines with errors are
/// reported and left out.
pub(crate) fn list_routes(n: &Node, names: &IprouteNames, d: &mut Diags) -> Vec<Route> {
    n.children
        .iter()
        .flatten()
        .filter_map(|c| crate::routes::route(&words(c), names, d))
        .collect()
}

/// The rules of a `static_rules` / `virtual_rules` block, likewise.
pub(crate) fn list_rules(n: &Node, names: &IprouteNames, d: &mut Diags) -> Vec<Rule> {
    n.children
        .iter()
        .flatten()
        .filter_map(|c| crate::routes::rule(&words(c), names, d))
        .collect()
}

/// The addresses of a `static_ipaddress` / `virtual_ipaddress_excluded` block; errors
/// are reported.
pub(crate) fn list_addresses(
    n: &Node,
    static_addr: bool,
    names: &IprouteNames,
    d: &mut Diags,
) -> Vec<VirtualAddress> {
    n.children
        .iter()
        .flatten()
        .flat_map(|c| address_entry(&words(c), static_addr, names, d))
        .collect()
}

/// `bfd_takeover NAME [min_up MS] [hold_down MS]` (vipd extension); errors reported.
fn bfd_takeover(n: &Node, d: &mut Diags) -> Option<BfdTakeover> {
    let name = n.args.first()?;
    let mut t = BfdTakeover {
        bfd: name.text.to_string(),
        min_up_ms: 1000,
        hold_down_ms: 10_000,
    };
    let mut rest = n.args[1..].iter();
    while let Some(key) = rest.next() {
        let slot = match key.text.as_str() {
            "min_up" => &mut t.min_up_ms,
            "hold_down" => &mut t.hold_down_ms,
            _ => {
                d.error(
                    key,
                    format!(
                        "bfd_takeover: unknown option `{}` (expected `min_up MS` or `hold_down MS`)",
                        key.text
                    ),
                );
                return None;
            }
        };
        match rest.next().map(|v| (v, v.text.parse::<u32>())) {
            Some((_, Ok(v))) if v <= 3_600_000 => *slot = v,
            Some((v, _)) => {
                d.error(
                    v,
                    format!(
                        "bfd_takeover: `{}` wants milliseconds 0..=3600000, not `{}`",
                        key.text, v.text
                    ),
                );
                return None;
            }
            None => {
                d.error(
                    key,
                    format!("bfd_takeover: `{}` needs a value in ms", key.text),
                );
                return None;
            }
        }
    }
    Some(t)
}

/// Fills the parts of a `vrrp_instance` whose keywords are parsed but not active.
pub(crate) fn fill_instance(
    n: &Node,
    inst: &mut VrrpInstance,
    names: &IprouteNames,
    d: &mut Diags,
) {
    let one = std::slice::from_ref(n);
    match n.name() {
        "track_interface" | "track_script" | "track_file" | "track_process" | "track_bfd" => {
            fill_tracking(n, &mut inst.track)
        }
        name if name.starts_with("notify") => fill_notify(n, &mut inst.notify),
        "vmac_xmit_base" => inst.vmac_xmit_base = true,
        "use_vmac_addr" => inst.use_vmac_addr = true,
        "vrf" => inst.vrf = Some(words_of(n)),
        "virtual_ipaddress_excluded" => inst
            .virtual_ipaddress_excluded
            .extend(list_addresses(n, false, names, d)),
        "virtual_routes" => inst.virtual_routes.extend(list_routes(n, names, d)),
        "virtual_rules" => inst.virtual_rules.extend(list_rules(n, names, d)),
        "smtp_alert" => inst.smtp_alert = boolean(one, "smtp_alert"),
        "strict_mode" => inst.strict_mode = boolean(one, "strict_mode"),
        "dont_track_primary" => inst.dont_track_primary = true,
        "promote_secondaries" => inst.promote_secondaries = true,
        "unicast_fault_no_peer" => inst.unicast_fault_no_peer = true,
        "track_src_ip" => inst.track_src_ip = true,
        // `never`: no old checksums, vipd's only other behaviour (it never switches to
        // them by itself); another word is warned about (lints.rs).
        "old_unicast_checksum" => inst.old_unicast_checksum = n.args.is_empty(),
        "garp_extra_if" => inst.garp_extra_if = garp_extra_if(n),
        "mcast_dst_ip" => inst.mcast_dst_ip = ip(one, "mcast_dst_ip"),
        "no_accept" => inst.accept = Some(false),
        "no_virtual_ipaddress" => inst.no_virtual_ipaddress = true,
        "native_ipv6" => inst.native_ipv6 = true,
        "owner_ignore_adverts" => inst.owner_ignore_adverts = boolean(one, "owner_ignore_adverts"),
        "bfd_takeover" => inst.bfd_takeover = bfd_takeover(n, d).into(),
        "release_drain" => inst.release_drain_ms = uint32(one, &["release_drain"]),
        "standby_metric" => inst.standby_metric = uint32(one, &["standby_metric"]),
        "timer_expired_backup" | "thread_timer_expired" => {
            inst.timer_expired_backup = Some(
                int(one, &["timer_expired_backup", "thread_timer_expired"]).unwrap_or(254) as u8,
            )
        }
        _ => {}
    }
}

pub(crate) fn fill_global(n: &Node, g: &mut GlobalDefs) {
    let one = std::slice::from_ref(n);
    match n.name() {
        "vrrp_strict" => g.vrrp_strict = true,
        "nftables" => g.nftables_table = n.args.first().map(|a| a.text.to_string()),
        "nftables_priority" => {
            g.nftables_priority = int(one, &["nftables_priority"]).map(|v| v as i32)
        }
        "nftables_counters" => g.nftables_counters = true,
        "script_user" => g.script_user = Some(words_of(n)),
        "enable_script_security" => g.enable_script_security = true,
        // keepalived keeps the first of each and ignores repeats.
        "notify_fifo" | "vrrp_notify_fifo" | "lvs_notify_fifo" => {
            let slot = match n.name() {
                "notify_fifo" => &mut g.notify_fifo,
                "vrrp_notify_fifo" => &mut g.vrrp_notify_fifo,
                _ => &mut g.lvs_notify_fifo,
            };
            if slot.is_none() {
                *slot = n.args.first().map(|a| a.text.to_string());
            }
        }
        "notification_email" => {
            g.notification_email
                .extend(n.args.iter().map(|a| a.text.to_string()));
            g.notification_email
                .extend(list_words(n).into_iter().flatten());
        }
        "notification_email_from" => g.notification_email_from = Some(words_of(n)),
        "smtp_server" => g.smtp_server = Some(words_of(n)),
        "smtp_helo_name" => g.smtp_helo_name = Some(words_of(n)),
        "smtp_connect_timeout" => {
            g.smtp_connect_timeout = int(one, &["smtp_connect_timeout"]).map(|v| v as u32)
        }
        "smtp_alert" => g.smtp_alert = boolean(one, "smtp_alert"),
        "smtp_alert_vrrp" => g.smtp_alert_vrrp = boolean(one, "smtp_alert_vrrp"),
        "smtp_alert_checker" => g.smtp_alert_checker = boolean(one, "smtp_alert_checker"),
        "no_email_faults" => g.no_email_faults = true,
        "vrrp_priority" => g.vrrp_priority = int(one, &["vrrp_priority"]).map(|v| v as i32),
        "checker_priority" => {
            g.checker_priority = int(one, &["checker_priority"]).map(|v| v as i32)
        }
        "checker_rt_priority" => {
            g.checker_rt_priority = int(one, &["checker_rt_priority"]).map(|v| v as u8)
        }
        "vrrp_cpu_affinity" | "checker_cpu_affinity" | "bfd_cpu_affinity" => {
            let cpus = n.args.iter().filter_map(|a| parse_int(&a.text));
            let slot = match n.name() {
                "vrrp_cpu_affinity" => &mut g.vrrp_cpu_affinity,
                "checker_cpu_affinity" => &mut g.checker_cpu_affinity,
                _ => &mut g.bfd_cpu_affinity,
            };
            *slot = cpus.map(|c| c as u16).collect();
        }
        "vrrp_rlimit_rttime" => {
            g.vrrp_rlimit_rttime = int(one, &["vrrp_rlimit_rttime"]).map(|v| v as u32)
        }
        "checker_rlimit_rttime" => {
            g.checker_rlimit_rttime = int(one, &["checker_rlimit_rttime"]).map(|v| v as u32)
        }
        "bfd_rlimit_rttime" => {
            g.bfd_rlimit_rttime = int(one, &["bfd_rlimit_rttime"]).map(|v| v as u32)
        }
        // keepalived: -1 and 0 switch it off, a bare keyword is sched_get_priority_max.
        "max_auto_priority" => {
            g.max_auto_priority = match n.args.first() {
                None => 99,
                Some(a) => parse_int(&a.text).map_or(0, |v| v.clamp(0, 99) as u8),
            }
        }
        "min_auto_priority_delay" => {
            g.min_auto_priority_delay = int(one, &["min_auto_priority_delay"]).map(|v| v as u32)
        }
        // keepalived keeps the first script of each and reports the others.
        "startup_script" => {
            g.startup_script.get_or_insert_with(|| script_of(n));
        }
        "shutdown_script" => {
            g.shutdown_script.get_or_insert_with(|| script_of(n));
        }
        "startup_script_timeout" => {
            g.startup_script_timeout = int(one, &["startup_script_timeout"]).map(|v| v as u32)
        }
        "shutdown_script_timeout" => {
            g.shutdown_script_timeout = int(one, &["shutdown_script_timeout"]).map(|v| v as u32)
        }
        "fifo_write_vrrp_states_on_reload" => g.fifo_write_vrrp_states_on_reload = true,
        "disable_local_igmp" => g.disable_local_igmp = true,
        "enable_dbus" => g.enable_dbus = true,
        "dbus_service_name" => g.dbus_service_name = Some(words_of(n)),
        "dbus_no_interface_name" => g.dbus_no_interface_name = Some(words_of(n)),
        "enable_snmp_vrrp" | "enable_snmp_keepalived" => g.enable_snmp_vrrp = true,
        "enable_snmp_rfc" => {
            g.enable_snmp_rfcv2 = true;
            g.enable_snmp_rfcv3 = true;
        }
        "enable_snmp_checker" => g.enable_snmp_checker = true,
        "enable_snmp_rfcv2" => g.enable_snmp_rfcv2 = true,
        "enable_snmp_rfcv3" => g.enable_snmp_rfcv3 = true,
        "enable_traps" => g.enable_traps = true,
        "snmp_socket" => g.snmp_socket = Some(words_of(n)),
        "dynamic_interfaces" => {
            g.dynamic_interfaces = true;
            g.allow_if_changes |= n.args.iter().any(|a| a.text == "allow_if_changes");
        }
        "vmac_addr_prefix" => {
            g.vmac_addr_prefix.get_or_insert_with(|| words_of(n));
        }
        "rs_init_notifies" => g.rs_init_notifies = true,
        "reload_time_file" => g.reload_time_file = Some(words_of(n)),
        "reload_repeat" => g.reload_repeat = true,
        "vrrp_garp_extra_if" => g.garp_extra_if = garp_extra_if(n),
        "reload_file" => g.reload_file = Some(words_of(n)),
        // keepalived keeps the first one.
        "vmac_prefix" => {
            g.vmac_prefix.get_or_insert_with(|| words_of(n));
        }
        "vrrp_notify_priority_changes" => {
            g.vrrp_notify_priority_changes =
                boolean(one, "vrrp_notify_priority_changes").unwrap_or(true)
        }
        "vrrp_no_swap" => g.vrrp_no_swap = true,
        "checker_no_swap" => g.checker_no_swap = true,
        "bfd_priority" => g.bfd_priority = int(one, &["bfd_priority"]).map(|v| v as i32),
        "bfd_rt_priority" => g.bfd_rt_priority = int(one, &["bfd_rt_priority"]).map(|v| v as u8),
        "bfd_no_swap" => g.bfd_no_swap = true,
        "umask" => g.umask = Some(words_of(n)),
        "vrrp_mcast_group4" => g.vrrp_mcast_group4 = ip(one, "vrrp_mcast_group4"),
        "vrrp_mcast_group6" => g.vrrp_mcast_group6 = ip(one, "vrrp_mcast_group6"),
        "vrrp_owner_ignore_adverts" => {
            g.owner_ignore_adverts = boolean(one, "vrrp_owner_ignore_adverts").unwrap_or(true)
        }
        "v3_checksum_as_v2" => {
            g.v3_checksum_as_v2 = boolean(one, "v3_checksum_as_v2").unwrap_or(true)
        }
        "default_interface" => g.default_interface = Some(words_of(n)),
        "notify_fifo_script" | "vrrp_notify_fifo_script" | "lvs_notify_fifo_script" => {
            let slot = match n.name() {
                "notify_fifo_script" => &mut g.notify_fifo_script,
                "vrrp_notify_fifo_script" => &mut g.vrrp_notify_fifo_script,
                _ => &mut g.lvs_notify_fifo_script,
            };
            slot.get_or_insert_with(|| script_of(n));
        }
        "vrrp_startup_delay" => g.vrrp_startup_delay = secs(one, &["vrrp_startup_delay"]),
        "snmp_vs_stats_update_interval" => {
            g.snmp_vs_stats_update_interval = secs(one, &["snmp_vs_stats_update_interval"])
        }
        "snmp_rs_stats_update_interval" => {
            g.snmp_rs_stats_update_interval = secs(one, &["snmp_rs_stats_update_interval"])
        }
        "vrrp_delay_after_boot" => g.vrrp_delay_after_boot = secs(one, &["vrrp_delay_after_boot"]),
        "checker_log_all_failures" => {
            g.checker_log_all_failures = boolean(one, "checker_log_all_failures").unwrap_or(true)
        }
        "vrrp_down_timer_adverts" => {
            g.vrrp_down_timer_adverts = int(one, &["vrrp_down_timer_adverts"]).map(|v| v as u8)
        }
        "use_symlink_paths" => {
            g.use_symlink_paths = boolean(one, "use_symlink_paths").unwrap_or(true)
        }
        "state_dump_file" | "state_file_location" => g.dumps.state_file = Some(words_of(n)),
        "stats_dump_file" | "stats_file_location" => g.dumps.stats_file = Some(words_of(n)),
        "json_dump_file" | "json_file_location" => g.dumps.json_file = Some(words_of(n)),
        "json_version" => g.dumps.json_version = int(one, &["json_version"]).map(|v| v as u8),
        "data_use_instance" => {
            g.dumps.data_use_instance = boolean(one, "data_use_instance").unwrap_or(true)
        }
        "instance" => g.dumps.instance = Some(words_of(n)),
        // keepalived keeps the first one.
        "net_namespace" => {
            g.dumps.net_namespace.get_or_insert_with(|| words_of(n));
        }
        "config_save_dir" => g.config_save_dir = Some(words_of(n)),
        "lvs_flush" => g.lvs_flush = true,
        // keepalived keeps the first one; no name: the default namespace.
        "net_namespace_ipvs" => {
            g.net_namespace_ipvs.get_or_insert_with(|| words_of(n));
        }
        _ => {}
    }
}

/// Maps a top-level schema block (already checked) into `config`.
pub(crate) fn fill_top(n: &Node, config: &mut Config, names: &IprouteNames, d: &mut Diags) {
    let kids: &[Node] = n.children.as_deref().unwrap_or(&[]);
    match n.name() {
        "vrrp_script" => {
            let (weight, reverse) = weight(kids, 0);
            config.scripts.push(VrrpScript {
                name: block_name(n),
                span: name_span(n),
                script: text(kids, "script").unwrap_or_default(),
                interval: secs(kids, &["interval"]).unwrap_or(Duration::from_secs(1)),
                timeout: secs(kids, &["timeout"]),
                weight,
                reverse,
                rise: uint32(kids, &["rise"]),
                fall: uint32(kids, &["fall"]),
                user: text(kids, "user"),
                init_fail: has(kids, "init_fail"),
            });
            if !has(kids, "script") {
                d.error_help(
                    &n.keyword,
                    format!("vrrp_script `{}` has no `script`", block_name(n)),
                    "add e.g. `script \"/usr/local/bin/check.sh\"`",
                );
            }
        }
        "track_file" | "vrrp_track_file" => {
            let (weight, reverse) = weight(kids, 1);
            config.track_files.push(TrackFile {
                name: block_name(n),
                span: name_span(n),
                file: text(kids, "file").unwrap_or_default(),
                weight,
                reverse,
                init_file: text(kids, "init_file"),
            });
            if !has(kids, "file") {
                d.error(
                    &n.keyword,
                    format!("{} `{}` has no `file`", n.name(), block_name(n)),
                );
            }
        }
        "track_process" | "vrrp_track_process" => {
            let (weight, reverse) = weight(kids, 1);
            let delay = secs(kids, &["delay"]);
            config.track_processes.push(TrackProcess {
                name: block_name(n),
                span: name_span(n),
                process: last(kids, "process")
                    .map(|p| p.args.iter().map(|a| a.text.to_string()).collect())
                    .unwrap_or_default(),
                param_match: text(kids, "param_match"),
                weight,
                reverse,
                quorum: uint32(kids, &["quorum"]).unwrap_or(1),
                quorum_max: uint32(kids, &["quorum_max"]),
                fork_delay: secs(kids, &["fork_delay"]).or(delay),
                terminate_delay: secs(kids, &["terminate_delay"]).or(delay),
                full_command: has(kids, "full_command"),
            });
            if !has(kids, "process") {
                d.error(
                    &n.keyword,
                    format!("{} `{}` has no `process`", n.name(), block_name(n)),
                );
            }
        }
        "bfd_instance" => bfd_instance(n, kids, config, d),
        "vrrp_sync_group" => {
            let mut g = SyncGroup {
                name: block_name(n),
                span: name_span(n),
                group: Vec::new(),
                track: Tracking::default(),
                notify: Notify::default(),
                smtp_alert: boolean(kids, "smtp_alert"),
                global_tracking: has(kids, "global_tracking"),
                sync_group_tracking_weight: has(kids, "sync_group_tracking_weight"),
            };
            for c in kids {
                match c.name() {
                    "group" => g.group.extend(list_words(c).into_iter().flatten()),
                    name if name.starts_with("track_") => fill_tracking(c, &mut g.track),
                    name if name.starts_with("notify") => fill_notify(c, &mut g.notify),
                    _ => {}
                }
            }
            config.sync_groups.push(g);
        }
        "garp_group" => garp_group(n, kids, config, d),
        "track_group" => config.track_groups.push(TrackGroup {
            name: block_name(n),
            span: name_span(n),
            instances: kids
                .iter()
                .filter(|c| c.name() == "group")
                .flat_map(|c| list_words(c).into_iter().flatten())
                .collect(),
        }),
        "linkbeat_interfaces" => config.linkbeat_interfaces.extend(
            list_words(n)
                .into_iter()
                .filter_map(|w| w.into_iter().next()),
        ),
        "static_ipaddress" => config
            .static_ipaddress
            .extend(list_addresses(n, true, names, d)),
        "static_routes" => config.static_routes.extend(list_routes(n, names, d)),
        "static_rules" => config.static_rules.extend(list_rules(n, names, d)),
        "virtual_server_group" => {
            let mut quiet = Diags::default();
            config.virtual_server_groups.push(VirtualServerGroup {
                name: block_name(n),
                span: name_span(n),
                entries: kids
                    .iter()
                    .filter_map(|c| vsg_entry(&words(c), &mut quiet))
                    .collect(),
            });
        }
        "virtual_server" => {
            if let Some(vs) = virtual_server(n, kids, d) {
                config.virtual_servers.push(vs);
            }
        }
        "SSL" => {
            let file = |key: &str| {
                let arg = last(kids, key)?.args.first()?;
                Some(SslFile {
                    path: arg.text.to_string(),
                    span: arg.span.clone(),
                })
            };
            config.ssl = Some(SslContext {
                password: text(kids, "password"),
                ca: file("ca"),
                certificate: file("certificate"),
                key: file("key"),
                span: n.keyword.span.clone(),
            });
        }
        // keepalived's daemon options, also allowed at top level.
        "instance" | "net_namespace" | "net_namespace_ipvs" => fill_global(n, &mut config.global),
        _ => {}
    }
}

/// `garp_group`: keepalived refuses a group with no interval and an interface that is
/// already in a group (it keeps the first group's settings for it).
fn garp_group(n: &Node, kids: &[Node], config: &mut Config, d: &mut Diags) {
    let mut g = GarpGroup {
        garp_interval: secs(kids, &["garp_interval"]),
        gna_interval: secs(kids, &["gna_interval"]),
        interfaces: Vec::new(),
        span: n.keyword.span.clone(),
    };
    if g.garp_interval.is_none() && g.gna_interval.is_none() {
        d.error_help(
            &n.keyword,
            "garp_group sets no delay: it paces nothing (keepalived refuses it)",
            "add `garp_interval SECONDS` and/or `gna_interval SECONDS`",
        );
    }
    let names = kids.iter().flat_map(|c| match c.name() {
        "interface" => c.args.iter().take(1).collect::<Vec<_>>(),
        "interfaces" => c.children.iter().flatten().flat_map(words).collect(),
        _ => Vec::new(),
    });
    for tok in names {
        let taken = config
            .garp_groups
            .iter()
            .chain(std::iter::once(&g))
            .any(|o| o.interfaces.iter().any(|i| *i == tok.text));
        if taken {
            d.error(
                tok,
                format!(
                    "interface `{}` is already in a garp_group (keepalived ignores it here)",
                    tok.text
                ),
            );
        } else {
            g.interfaces.push(tok.text.to_string());
        }
    }
    config.garp_groups.push(g);
}

fn timing(nodes: &[Node]) -> CheckTiming {
    CheckTiming {
        connect_timeout: secs(nodes, &["connect_timeout"]),
        retry: uint32(nodes, &["retry", "nb_get_retry"]),
        delay_before_retry: secs(nodes, &["delay_before_retry"]),
        warmup: secs(nodes, &["warmup"]),
        delay_loop: secs(nodes, &["delay_loop"]),
    }
}

/// `ADDR [PORT]` of `virtual_server`, `real_server` and `sorry_server`.
fn addr_port(n: &Node, what: &str, d: &mut Diags) -> Option<(IpAddr, Option<u16>)> {
    let a = n.args.first()?;
    let Ok(addr) = a.text.parse::<IpAddr>() else {
        d.error(
            a,
            format!("`{what}` expects an IP address, found `{}`", a.text),
        );
        return None;
    };
    let port = match n.args.get(1) {
        Some(p) => Some(port(d, p)?),
        None => None,
    };
    if let Some(x) = n.args.get(2) {
        extra(d, x, what);
    }
    Some((addr, port))
}

fn virtual_server(n: &Node, kids: &[Node], d: &mut Diags) -> Option<VirtualServer> {
    let key = match &n.args[..] {
        [] => return None, // reported by the schema check
        [g, name, rest @ ..] if g.text == "group" => {
            if let Some(x) = rest.first() {
                extra(d, x, "virtual_server group");
            }
            VsKey::Group(name.text.to_string())
        }
        [f, mark, rest @ ..] if f.text == "fwmark" => {
            let mark = int_in(d, mark, "fwmark", 1, u32::MAX as i64)? as u32;
            let family = match rest {
                [] => None,
                [fam] if fam.text == "inet" || fam.text == "inet6" => Some(fam.text.to_string()),
                [x, ..] => {
                    d.error_help(
                        x,
                        format!("invalid address family `{}`", x.text),
                        "use `inet` or `inet6`",
                    );
                    return None;
                }
            };
            VsKey::Fwmark { mark, family }
        }
        [g] if g.text == "group" || g.text == "fwmark" => {
            d.error(g, format!("`virtual_server {}` needs a value", g.text));
            return None;
        }
        _ => {
            let (addr, port) = addr_port(n, "virtual_server", d)?;
            VsKey::Addr { addr, port }
        }
    };
    let sorry = last(kids, "sorry_server").and_then(|s| addr_port(s, "sorry_server", d));
    let mut vs = VirtualServer {
        key,
        span: n.keyword.span.clone(),
        lb_algo: text_any(kids, &["lvs_sched", "lb_algo"]),
        lb_kind: first_arg(kids, &["lvs_method", "lb_kind"]).map(str::to_owned),
        protocol: first_arg(kids, &["protocol"]).map(|p| p.to_ascii_uppercase()),
        persistence_timeout: last(kids, "persistence_timeout").map(|p| {
            p.args
                .first()
                .and_then(|a| parse_int(&a.text))
                .map_or(360, |v| v as u32)
        }),
        persistence_granularity: text(kids, "persistence_granularity"),
        persistence_engine: last(kids, "persistence_engine").and_then(|k| {
            let name = k.args.first()?.text.to_string();
            Some((name, k.keyword.span.clone()))
        }),
        quorum: uint32(kids, &["quorum"]),
        hysteresis: uint32(kids, &["hysteresis"]),
        quorum_up: script(kids, "quorum_up"),
        quorum_down: script(kids, "quorum_down"),
        sorry_server: sorry,
        sorry_server_inhibit: boolean(kids, "sorry_server_inhibit"),
        sorry_server_lb_kind: first_arg(kids, &["sorry_server_lvs_method", "sorry_server_lb_kind"])
            .map(str::to_owned),
        sched_flags: kids
            .iter()
            .filter(|k| {
                matches!(
                    k.name(),
                    "flag-1"
                        | "flag-2"
                        | "flag-3"
                        | "sh-port"
                        | "sh-fallback"
                        | "mh-port"
                        | "mh-fallback"
                )
            })
            .map(|k| (k.name().to_owned(), k.keyword.span.clone()))
            .collect(),
        ops: has(kids, "ops"),
        ip_family: text(kids, "ip_family"),
        ha_suspend: has(kids, "ha_suspend"),
        alpha: has(kids, "alpha"),
        omega: has(kids, "omega"),
        inhibit_on_failure: boolean(kids, "inhibit_on_failure"),
        virtualhost: text(kids, "virtualhost"),
        smtp_alert: boolean(kids, "smtp_alert"),
        snmp_name: text(kids, "snmp_name"),
        timing: timing(kids),
        // Sized up front: grown one by one, the list's earlier copies are left as
        // holes in the heap (a large config has thousands of real servers).
        real_servers: Vec::with_capacity(kids.iter().filter(|c| c.name() == "real_server").count()),
    };
    for rs in kids.iter().filter(|c| c.name() == "real_server") {
        let Some((addr, port)) = addr_port(rs, "real_server", d) else {
            continue;
        };
        let rk: &[Node] = rs.children.as_deref().unwrap_or(&[]);
        let checkers = rk
            .iter()
            .filter(|c| schema::CHECKERS.contains(&c.name()))
            .map(checker)
            .collect();
        vs.real_servers.push(RealServer {
            addr,
            port,
            span: rs.keyword.span.clone(),
            weight: int(rk, &["weight"]).unwrap_or(1),
            lb_kind: first_arg(rk, &["lvs_method", "lb_kind"]).map(str::to_owned),
            inhibit_on_failure: boolean(rk, "inhibit_on_failure"),
            notify_up: script(rk, "notify_up"),
            notify_down: script(rk, "notify_down"),
            uthreshold: uint32(rk, &["uthreshold"]),
            lthreshold: uint32(rk, &["lthreshold"]),
            virtualhost: text(rk, "virtualhost"),
            alpha: boolean(rk, "alpha"),
            smtp_alert: boolean(rk, "smtp_alert"),
            snmp_name: text(rk, "snmp_name"),
            timing: timing(rk),
            checkers,
        });
    }
    vs.real_servers.shrink_to_fit();
    Some(vs)
}

fn checker(c: &Node) -> Checker {
    let kids: &[Node] = c.children.as_deref().unwrap_or(&[]);
    let mut options = BTreeMap::new();
    const COMMON: &[&str] = &[
        "connect_ip",
        "connect_port",
        "bindto",
        "bind_port",
        "connect_timeout",
        "retry",
        "nb_get_retry",
        "delay_before_retry",
        "warmup",
        "delay_loop",
        "url",
    ];
    for k in kids {
        if !COMMON.contains(&k.name()) && k.children.is_none() {
            options.insert(k.name().to_string(), words_of(k));
        }
    }
    let urls = kids
        .iter()
        .filter(|k| k.name() == "url")
        .map(|u| {
            let uk: &[Node] = u.children.as_deref().unwrap_or(&[]);
            Url {
                path: text(uk, "path"),
                digest: text(uk, "digest"),
                status_code: text(uk, "status_code"),
                virtualhost: text(uk, "virtualhost"),
                regex: text(uk, "regex"),
                regex_no_match: has(uk, "regex_no_match"),
                regex_options: text(uk, "regex_options"),
                regex_min_offset: int(uk, &["regex_min_offset"]).map(|v| v as u64),
                regex_max_offset: int(uk, &["regex_max_offset"]).map(|v| v as u64),
                tls_compliant: boolean(uk, "tls_compliant"),
            }
        })
        .collect();
    Checker {
        kind: if c.name() == "ICMP_CHECK" {
            "PING_CHECK".into()
        } else {
            c.name().to_string()
        },
        span: c.keyword.span.clone(),
        connect_ip: ip(kids, "connect_ip"),
        connect_port: uint16(kids, "connect_port"),
        bindto: ip(kids, "bindto"),
        bind_port: uint16(kids, "bind_port"),
        timing: timing(kids),
        urls,
        options,
        hosts: kids
            .iter()
            .filter(|k| k.name() == "host")
            .map(|h| {
                let hk: &[Node] = h.children.as_deref().unwrap_or(&[]);
                const HONOURED: &[&str] = &[
                    "connect_ip",
                    "connect_port",
                    "bindto",
                    "bind_port",
                    "connect_timeout",
                ];
                CheckHost {
                    span: h.keyword.span.clone(),
                    connect_ip: ip(hk, "connect_ip"),
                    connect_port: uint16(hk, "connect_port"),
                    bindto: ip(hk, "bindto"),
                    bind_port: uint16(hk, "bind_port"),
                    connect_timeout: secs(hk, &["connect_timeout"]),
                    other: hk
                        .iter()
                        .filter(|k| !HONOURED.contains(&k.name()))
                        .map(|k| (k.name().to_string(), k.keyword.span.clone()))
                        .collect(),
                }
            })
            .collect(),
    }
}

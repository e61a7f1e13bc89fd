//! Maps the generic tree onto [`crate::model`], reporting every malformed or unsupported
//! keyword with its position.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::blocks;
use crate::diagnostic::{Diags, Loc};
use crate::iproute::IprouteNames;
use crate::keywords::suggest;
use crate::lexer::Token;
use crate::model::Span;
use crate::model::LVS_MAX_TIMEOUT;
use crate::model::{
    Auth, AuthHmac, Config, GarpSettings, GlobalDefs, HmacMode, InitialState, IpvlanMode,
    LvsFlushOnStop, LvsSyncDaemon, LvsTimeouts, Secret, UnicastPeer, UseIpvlan, UseVmac,
    VirtualAddress, VmacAddress, VrrpInstance,
};
use crate::schema::{self, Kw, GLOBAL_INACTIVE, INSTANCE_INACTIVE, TOP};
use crate::tree::Node;
use crate::value::{parse_bool, parse_prefix, parse_seconds, parse_uint};

const TOP_SUPPORTED: &[&str] = &["global_defs", "vrrp_instance"];

const GARP_KEYWORDS: &[&str] = &[
    "garp_master_delay",
    "garp_master_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "garp_master_refresh",
    "garp_master_refresh_repeat",
    "garp_interval",
    "gna_interval",
];

const GLOBAL_SUPPORTED: &[&str] = &[
    "router_id",
    "vrrp_version",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_min_garp",
    "vrrp_rt_priority",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_check_unicast_src",
    "vrrp_skip_check_adv_addr",
];

const INSTANCE_SUPPORTED: &[&str] = &[
    "state",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "virtual_ipaddress",
    "nopreempt",
    "no_preempt",
    "preempt",
    "preempt_delay",
    "accept",
    "authentication",
    "auth_hmac",
    "mcast_src_ip",
    "unicast_src_ip",
    "unicast_peer",
    "unicast_ttl",
    "check_unicast_src",
    "v3_checksum_as_v2",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "garp_master_refresh",
    "garp_master_refresh_repeat",
    "garp_interval",
    "gna_interval",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "down_timer_adverts",
    "skip_check_adv_addr",
];

const AUTH_SUPPORTED: &[&str] = &["auth_type", "auth_pass"];
const AUTH_HMAC_SUPPORTED: &[&str] = &["key", "active_key", "anti_replay", "time_window", "mode"];
const VIP_OPTIONS: &[&str] = &["brd", "dev", "scope", "label"];
const PEER_OPTIONS: &[&str] = &["min_ttl", "max_ttl"];

/// Where each part of an instance was written, for the cross-field checks in `validate`
/// and `lints`. Owned: the tree is dropped while it is mapped.
#[derive(Debug, Clone)]
pub(crate) struct InstanceMeta {
    pub name: Token,
    /// For each of [`LATER`] written (bit `i` of `written` for `LATER[i]`), in that
    /// order, where the last line's keyword or value is (exactly sized: a large config
    /// has thousands of instances).
    later: Box<[Kept]>,
    written: u64,
    /// Address token of each `virtual_ipaddress` entry, parallel to the model's list,
    /// while the instance is mapped; then kept as places in `vips`.
    vip_tokens: Vec<Token>,
    vips: Box<[Kept]>,
    /// The same for the unicast peers.
    peer_tokens: Vec<Token>,
    peers: Box<[Kept]>,
    /// `virtual_ipaddress` entries written (also the ones that failed to parse).
    pub vip_entries: usize,
}

/// A place kept past the mapping: beside the instance's name (in its file, through the
/// same includes) as 16 bytes, else whole.
#[derive(Debug, Clone)]
enum Kept {
    Near { line: u32, col: u32, len: u32 },
    Far(Box<Loc>),
}

/// Which token of a line the later checks point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Keyword,
    /// The first argument, else the keyword.
    Value,
}

/// The instance keywords the checks after the mapping point at (canonical spelling):
/// only these lines' tokens are kept past the tree.
const LATER: &[(&str, Part)] = {
    use Part::*;
    &[
        ("accept", Keyword),
        ("auth_hmac", Keyword),
        ("authentication", Keyword),
        ("bfd_takeover", Keyword),
        ("down_timer_adverts", Keyword),
        ("garp_master_repeat", Keyword),
        ("nopreempt", Keyword),
        ("owner_ignore_adverts", Keyword),
        ("preempt_delay", Keyword),
        ("release_drain", Keyword),
        ("standby_metric", Keyword),
        ("state", Keyword),
        ("thread_timer_expired", Keyword),
        ("timer_expired_backup", Keyword),
        ("unicast_peer", Keyword),
        ("use_ipvlan", Keyword),
        ("use_vmac", Keyword),
        ("advert_int", Value),
        ("interface", Value),
        ("mcast_dst_ip", Value),
        ("mcast_src_ip", Value),
        ("notify", Value),
        ("notify_backup", Value),
        ("notify_fault", Value),
        ("notify_master", Value),
        ("notify_master_rx_lower_pri", Value),
        ("notify_stop", Value),
        ("priority", Value),
        ("unicast_src_ip", Value),
        ("unicast_ttl", Value),
        ("version", Value),
        ("virtual_router_id", Value),
        ("vrf", Value),
    ]
};

// One bit each in `InstanceMeta::written`.
const _: () = assert!(LATER.len() <= 64);

impl InstanceMeta {
    fn keep(&self, t: &Token) -> Kept {
        let near = Arc::ptr_eq(&t.span.file, &self.name.span.file)
            && Arc::ptr_eq(&t.include_chain, &self.name.include_chain);
        match near {
            true => Kept::Near {
                line: t.span.line,
                col: t.span.col,
                len: t.len,
            },
            false => Kept::Far(Box::new(t.into())),
        }
    }

    fn loc(&self, k: &Kept) -> Loc {
        match k {
            Kept::Near { line, col, len } => Loc {
                span: Span {
                    file: self.name.span.file.clone(),
                    line: *line,
                    col: *col,
                },
                len: *len,
                include_chain: self.name.include_chain.clone(),
            },
            Kept::Far(l) => (**l).clone(),
        }
    }

    /// Where each of the instance's virtual addresses was written, in the model's order.
    pub fn vip_locs(&self) -> impl Iterator<Item = Loc> + '_ {
        self.vips.iter().map(|k| self.loc(k))
    }

    /// Where each of the instance's unicast peers was written, in the model's order.
    pub fn peer_locs(&self) -> impl Iterator<Item = Loc> + '_ {
        self.peers.iter().map(|k| self.loc(k))
    }

    fn later(&self, key: &str, part: Part) -> Option<Loc> {
        let i = LATER.iter().position(|e| *e == (key, part));
        debug_assert!(i.is_some(), "add ({key:?}, {part:?}) to LATER");
        let i = i?;
        if self.written & (1 << i) == 0 {
            return None;
        }
        // Its place among the ones kept: the number written before it.
        let k = self
            .later
            .get((self.written & ((1 << i) - 1)).count_ones() as usize)?;
        Some(self.loc(k))
    }

    /// Where the value of `key` was written if it was, else its keyword.
    pub fn value_tok(&self, key: &str) -> Option<Loc> {
        self.later(key, Part::Value)
    }

    pub fn keyword_tok(&self, key: &str) -> Option<Loc> {
        self.later(key, Part::Keyword)
    }
}

/// The mapping of a whole file, fed one top-level block at a time (as the tree builder
/// closes them, so that the file's whole tree is never held: see `lib.rs`).
pub(crate) struct Mapping {
    /// iproute2's names for the routes and rules, from the dirs `global_defs` sets.
    pub names: IprouteNames,
    /// The instance name `lvs_sync_daemon` gave, checked once every instance is read.
    syncd_instance: Option<Token>,
    /// Suggestions for unknown keywords already worked out in this load, by word and
    /// keyword lists (a `~SEQ` can repeat one unknown line thousands of times).
    suggestions: HashMap<SuggestKey, Suggestion>,
    config: Config,
    metas: Vec<InstanceMeta>,
}

impl Mapping {
    pub(crate) fn new(names: IprouteNames) -> Self {
        Mapping {
            names,
            syncd_instance: None,
            suggestions: HashMap::new(),
            config: Config::default(),
            metas: Vec::new(),
        }
    }

    /// Maps one top-level block.
    pub(crate) fn node(&mut self, n: &Node, diags: &mut Diags) {
        let config = &mut self.config;
        let mut m = Mapper {
            diags,
            names: &self.names,
            syncd_instance: &mut self.syncd_instance,
            suggestions: &mut self.suggestions,
        };
        match n.name() {
            "global_defs" => {
                m.no_args(n);
                if let Some(children) = m.block(n) {
                    m.global_defs(children, &mut config.global);
                }
            }
            "vrrp_instance" => {
                if let Some((inst, meta, sync_if)) = m.instance(n) {
                    if let Some(c) = sync_if {
                        m.sync_daemon_interface(c, &inst, &mut config.global);
                    }
                    config.instances.push(inst);
                    self.metas.push(meta);
                }
            }
            name => match schema::find(TOP, name) {
                Some(kw) => {
                    blocks::check_kw(n, kw, m.diags);
                    if !schema::is_active(name) {
                        m.diags.inactive(&n.keyword, &format!("`{name}`"));
                    } else if name == "virtual_server" {
                        inactive_inside(n, m.diags);
                    }
                    blocks::fill_top(n, config, m.names, m.diags);
                }
                None => {
                    m.unknown(n, "at top level", TOP_SUPPORTED, TOP);
                }
            },
        }
    }

    /// The model and where each instance's parts were written, once every block is in.
    pub(crate) fn finish(mut self, diags: &mut Diags) -> (Config, Vec<InstanceMeta>) {
        let mut config = self.config;
        // Exactly sized: a large config has thousands of instances.
        config.instances.shrink_to_fit();
        self.metas.shrink_to_fit();
        check_track_groups(&config, diags);
        if let Some(tok) = self.syncd_instance.take() {
            if !config.instances.iter().any(|i| i.name == tok.text) {
                // keepalived clears its sync daemon setting then, and runs without it.
                diags.warning(
                    &tok,
                    format!(
                        "`lvs_sync_daemon`: there is no vrrp_instance `{}`; the sync daemon is not run (as keepalived)",
                        tok.text
                    ),
                );
                config.global.lvs_sync_daemon = None;
            }
        }
        (config, self.metas)
    }
}

/// `track_group` references, as keepalived 2.4.3 checks them: an unknown group, a
/// static route without `dev` and `track_group` outside the static blocks are errors;
/// an instance the group names that does not exist is a warning (keepalived ignores it).
fn check_track_groups(config: &Config, d: &mut Diags) {
    use crate::diagnostic::{Diagnostic, Severity};
    let mut say = |severity, span: &crate::model::Span, msg: String| {
        d.push(Diagnostic::new(severity, msg, span.clone(), 1));
    };
    let statics = (config.static_ipaddress.iter())
        .map(|a| (&a.track_group, &a.span, "static address"))
        .chain((config.static_routes.iter()).map(|r| (&r.track_group, &r.span, "static route")))
        .chain((config.static_rules.iter()).map(|r| (&r.track_group, &r.span, "static rule")));
    for (group, span, what) in statics {
        let Some(group) = group else { continue };
        if !config.track_groups.iter().any(|g| &g.name == group) {
            say(
                Severity::Error,
                span,
                format!("{what}: track_group `{group}` not found"),
            );
        }
    }
    // keepalived: the line's interface is what its track group's instances track.
    let routes = (config.static_routes.iter())
        .filter(|r| r.track_group.is_some() && r.dev.is_none())
        .map(|r| {
            (
                &r.span,
                "static route: `track_group` needs the route's `dev`",
            )
        });
    let rules = (config.static_rules.iter())
        .filter(|r| r.track_group.is_some() && r.iif.is_none())
        .map(|r| (&r.span, "static rule: `track_group` needs the rule's `iif`"));
    for (span, what) in routes.chain(rules) {
        say(
            Severity::Error,
            span,
            format!("{what} (the interface its instances track), as in keepalived"),
        );
    }
    for i in &config.instances {
        let routes = i.virtual_routes.iter().map(|r| (&r.track_group, &r.span));
        let rules = i.virtual_rules.iter().map(|r| (&r.track_group, &r.span));
        for (_, span) in routes.chain(rules).filter(|(g, _)| g.is_some()) {
            say(
                Severity::Error,
                span,
                "`track_group` applies only to static_routes and static_rules".into(),
            );
        }
    }
    for g in &config.track_groups {
        for name in &g.instances {
            if !config.instances.iter().any(|i| &i.name == name) {
                say(
                    Severity::Warning,
                    &g.span,
                    format!("track_group `{}`: there is no vrrp_instance `{name}`; ignored (as keepalived)", g.name),
                );
            }
        }
        if g.instances.is_empty() {
            say(
                Severity::Warning,
                &g.span,
                format!(
                    "track_group `{}` names no vrrp_instance (`group {{ VI_1 ... }}`)",
                    g.name
                ),
            );
        }
    }
}

/// Reports [`schema::LB_INACTIVE`] keywords anywhere inside a block.
fn inactive_inside(n: &Node, diags: &mut Diags) {
    for c in n.children.iter().flatten() {
        let hit = schema::LB_INACTIVE
            .iter()
            .any(|(parent, kw)| *kw == c.name() && (*parent == "*" || *parent == n.name()));
        if hit {
            diags.inactive(&c.keyword, &format!("keyword `{}`", c.name()));
        } else {
            inactive_inside(c, diags);
        }
    }
}

/// The mapping of one top-level block, with the state of the whole file's ([`Mapping`]).
struct Mapper<'d> {
    diags: &'d mut Diags,
    names: &'d IprouteNames,
    syncd_instance: &'d mut Option<Token>,
    suggestions: &'d mut HashMap<SuggestKey, Suggestion>,
}

/// An unknown word and the (static) keyword lists it was compared with.
type SuggestKey = (String, usize, usize);
/// The closest keyword of the block's own lists, else the closest of another block's
/// (with that block's name).
type Suggestion = (Option<&'static str>, Option<(&'static str, &'static str)>);

impl Mapper<'_> {
    /// Reports a keyword not mapped by hand. Returns true when it is a keyword of this
    /// block that is parsed (and checked) but not active yet; the caller maps it.
    fn unknown(
        &mut self,
        n: &Node,
        place: &str,
        supported: &'static [&'static str],
        inactive: &'static [Kw],
    ) -> bool {
        let kw = &n.keyword;
        let name = n.name();
        if let Some(k) = schema::find(inactive, name) {
            blocks::check_kw(n, k, self.diags);
            if !schema::is_active(name) {
                self.diags.inactive(kw, &format!("keyword `{name}`"));
            }
            return true;
        }
        self.report_unknown(n, place, supported, inactive);
        false
    }

    fn report_unknown(
        &mut self,
        n: &Node,
        place: &str,
        supported: &'static [&'static str],
        unsupported: &'static [Kw],
    ) {
        let kw = &n.keyword;
        let name = n.name();
        // Right keyword, wrong block?
        let homes: [(&str, &[&str], &'static [Kw]); 5] = [
            ("vrrp_instance", INSTANCE_SUPPORTED, INSTANCE_INACTIVE),
            ("global_defs", GLOBAL_SUPPORTED, GLOBAL_INACTIVE),
            ("authentication", AUTH_SUPPORTED, &[]),
            ("auth_hmac", AUTH_HMAC_SUPPORTED, &[]),
            ("top level", TOP_SUPPORTED, TOP),
        ];
        if let Some((home, _, _)) = homes
            .into_iter()
            .find(|(_, s, u)| s.contains(&name) || schema::find(u, name).is_some())
        {
            let help = if home == "top level" {
                "it belongs at top level; is a `}` missing above?".to_string()
            } else {
                format!("it belongs inside {} `{home}` block", article(home))
            };
            return self.diags.error_help(
                kw,
                format!("keyword `{name}` is not valid {place}"),
                help,
            );
        }
        let msg = format!("unknown keyword `{name}`");
        let key = (
            name.to_string(),
            supported.as_ptr() as usize,
            unsupported.as_ptr() as usize,
        );
        let (here, elsewhere) = *self.suggestions.entry(key).or_insert_with(|| {
            let candidates = supported.iter().copied().chain(schema::names(unsupported));
            match suggest(name, candidates) {
                Some(s) => (Some(s), None),
                // A typo of a keyword from another block.
                None => (
                    None,
                    homes.iter().find_map(|(home, s, u)| {
                        suggest(name, s.iter().copied().chain(schema::names(u))).map(|k| (*home, k))
                    }),
                ),
            }
        });
        if let Some(s) = here {
            return self
                .diags
                .error_help(kw, msg, format!("did you mean `{s}`?"));
        }
        match elsewhere {
            Some(("top level", k)) => self.diags.error_help(
                kw,
                msg,
                format!("did you mean `{k}`? (it belongs at top level)"),
            ),
            Some((home, k)) => self.diags.error_help(
                kw,
                msg,
                format!(
                    "did you mean `{k}`? (it belongs inside {} `{home}` block)",
                    article(home)
                ),
            ),
            None => self.diags.error(kw, msg),
        }
    }

    fn block<'n>(&mut self, n: &'n Node) -> Option<&'n [Node]> {
        if n.children.is_none() {
            self.diags.error_help(
                &n.keyword,
                format!("`{}` needs a `{{ ... }}` block", n.name()),
                format!("write `{} {{` and close the block with `}}`", n.name()),
            );
        }
        n.children.as_deref()
    }

    /// Reports a block on a keyword that does not take one; true if there is none.
    fn no_block(&mut self, n: &Node) -> bool {
        match &n.open_brace {
            Some(brace) if n.children.is_some() => {
                self.diags
                    .error(brace, format!("`{}` does not take a block", n.name()));
                false
            }
            _ => true,
        }
    }

    fn no_args(&mut self, n: &Node) -> bool {
        match n.args.first() {
            Some(a) => {
                self.diags.error(
                    a,
                    format!("`{}` takes no arguments, found `{}`", n.name(), a.text),
                );
                false
            }
            None => true,
        }
    }

    /// `use_vmac [[name] NAME] [MAC] [netlink_notify_msg] [group GROUP]`: a word with
    /// a `:` is the MAC (interface names cannot have one), `name` takes the next word
    /// even if it is a keyword, any other word is the name.
    fn use_vmac(&mut self, n: &Node) -> UseVmac {
        let mut v = UseVmac::default();
        let mut args = n.args.iter();
        while let Some(a) = args.next() {
            match a.text.as_str() {
                t if t.contains(':') => {
                    if v.mac.is_some() {
                        self.diags.error(a, "`use_vmac`: a second MAC address");
                        continue;
                    }
                    match vmac_address(t) {
                        Ok(mac) => v.mac = Some(mac),
                        Err(why) => self.diags.error_help(
                            a,
                            format!("`use_vmac`: `{t}` {why}"),
                            "write six octets (02:00:00:00:01:05), or five and the VRID is the sixth",
                        ),
                    }
                }
                "netlink_notify_msg" => v.netlink_notify_msg = true,
                _ => self.link_word("use_vmac", a, &mut args, &mut v.name, &mut v.group),
            }
        }
        v
    }

    /// `use_ipvlan [[name] NAME] [ADDRESS[/LEN]] [bridge|private|vepa] [group GROUP]`.
    fn use_ipvlan(&mut self, n: &Node) -> UseIpvlan {
        let mut v = UseIpvlan::default();
        let mut mode_set = false;
        let mut args = n.args.iter();
        while let Some(a) = args.next() {
            let mode = match a.text.as_str() {
                "bridge" => Some(IpvlanMode::Bridge),
                "private" => Some(IpvlanMode::Private),
                "vepa" => Some(IpvlanMode::Vepa),
                _ => None,
            };
            if let Some(mode) = mode {
                if mode_set {
                    self.diags.error(a, "`use_ipvlan`: a second mode");
                }
                (v.mode, mode_set) = (mode, true);
            } else if let Ok(prefix) = parse_prefix(&a.text) {
                if v.addr.is_some() {
                    self.diags.error(a, "`use_ipvlan`: a second address");
                }
                v.addr = Some(prefix);
            } else {
                self.link_word("use_ipvlan", a, &mut args, &mut v.name, &mut v.group);
            }
        }
        v
    }

    /// What `use_vmac` and `use_ipvlan` share: `group GROUP` (a number or a name from
    /// iproute2's `group` file), `name NAME` (the next word, even a keyword), or a bare
    /// interface name.
    fn link_word<'a>(
        &mut self,
        kw: &str,
        a: &'a Token,
        args: &mut std::slice::Iter<'a, Token>,
        name: &mut Option<String>,
        group: &mut Option<u32>,
    ) {
        if a.text == "group" {
            let Some(g) = args.next() else {
                self.diags
                    .error(a, format!("`{kw} group` needs a link group"));
                return;
            };
            let kind = crate::iproute::Kind::Groups;
            match crate::iproute::parse_c_uint(&g.text)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= i32::MAX as u32)
                .or_else(|| self.names.lookup(kind, &g.text))
            {
                Some(n) => *group = Some(n),
                None => self.diags.error_help(
                    g,
                    format!("`{kw}`: unknown link group `{}`", g.text),
                    format!(
                        "a number (0 is `default`), or a name from {}",
                        self.names.searched(kind)
                    ),
                ),
            }
            return;
        }
        let word = if a.text == "name" {
            match args.next() {
                Some(next) => next,
                None => {
                    self.diags
                        .error(a, format!("`{kw} name` needs an interface name"));
                    return;
                }
            }
        } else {
            a
        };
        if name.is_some() {
            self.diags
                .error(word, format!("`{kw}`: a second interface name"));
        } else if word.text.len() > 15 || word.text.contains('/') {
            self.diags.error(
                word,
                format!(
                    "`{kw}`: `{}` is not a valid interface name (at most 15 characters, no `/`)",
                    word.text
                ),
            );
        } else {
            *name = Some(word.text.to_string());
        }
    }

    /// The single argument of `n`.
    fn arg<'n>(&mut self, n: &'n Node) -> Option<&'n Token> {
        self.no_block(n);
        match &n.args[..] {
            [a] => Some(a),
            [] => {
                self.diags
                    .error(&n.keyword, format!("`{}` needs a value", n.name()));
                None
            }
            [_, extra, ..] => {
                self.diags.error(
                    extra,
                    format!(
                        "unexpected extra argument `{}` for `{}`",
                        extra.text,
                        n.name()
                    ),
                );
                None
            }
        }
    }

    fn int(&mut self, n: &Node, lo: u64, hi: u64) -> Option<u64> {
        let a = self.arg(n)?;
        self.int_tok(a, n.name(), lo, hi)
    }

    fn int_tok(&mut self, a: &Token, what: &str, lo: u64, hi: u64) -> Option<u64> {
        match parse_uint(&a.text) {
            Some(v) if (lo..=hi).contains(&v) => Some(v),
            _ => {
                self.diags.error(
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

    /// Decimal seconds (microsecond resolution) no greater than `max_secs`.
    fn seconds(&mut self, n: &Node, max_secs: u64) -> Option<Duration> {
        let a = self.arg(n)?;
        match parse_seconds(&a.text) {
            Some(d) if d <= Duration::from_secs(max_secs) => Some(d),
            _ => {
                self.diags.error_help(
                    a,
                    format!(
                        "`{}` must be a number of seconds in 0..={max_secs}, found `{}`",
                        n.name(),
                        a.text
                    ),
                    "fractions are allowed, e.g. `0.5`",
                );
                None
            }
        }
    }

    fn whole_seconds(&mut self, n: &Node) -> Option<Duration> {
        self.int(n, 0, u64::from(u32::MAX)).map(Duration::from_secs)
    }

    /// `[<BOOL>]`: no argument means true.
    fn boolean(&mut self, n: &Node) -> Option<bool> {
        self.no_block(n);
        match &n.args[..] {
            [] => Some(true),
            [a] => parse_bool(&a.text).or_else(|| {
                self.diags.error_help(
                    a,
                    format!("`{}` expects a boolean, found `{}`", n.name(), a.text),
                    "use one of on|off|true|false|yes|no, or nothing for on",
                );
                None
            }),
            [_, extra, ..] => {
                self.diags.error(
                    extra,
                    format!(
                        "unexpected extra argument `{}` for `{}`",
                        extra.text,
                        n.name()
                    ),
                );
                None
            }
        }
    }

    fn ip_tok(&mut self, a: &Token, what: &str) -> Option<IpAddr> {
        match a.text.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.diags.error(
                    a,
                    format!("`{what}` expects an IP address, found `{}`", a.text),
                );
                None
            }
        }
    }

    fn ip(&mut self, n: &Node) -> Option<IpAddr> {
        let a = self.arg(n)?;
        self.ip_tok(a, n.name())
    }

    /// Shared by global (`vrrp_` prefixed) and per-instance GARP keywords.
    fn garp(&mut self, key: &str, n: &Node, g: &mut GarpSettings) {
        let repeat = |m: &mut Self| m.int(n, 0, u64::from(u32::MAX)).map(|v| v as u32);
        match key {
            "garp_master_delay" => set(&mut g.master_delay, self.whole_seconds(n)),
            "garp_master_repeat" => {
                let mut v = repeat(self);
                // keepalived: "garp_master_repeat must be greater than 0, setting to 1".
                if v == Some(0) {
                    self.diags.warning(
                        n.args.first().unwrap_or(&n.keyword),
                        format!("`{}` 0 is raised to 1 (as keepalived does): a new master always announces its addresses", n.name()),
                    );
                    v = Some(1);
                }
                set(&mut g.master_repeat, v)
            }
            "garp_lower_prio_delay" => set(&mut g.lower_prio_delay, self.whole_seconds(n)),
            "garp_lower_prio_repeat" => set(&mut g.lower_prio_repeat, repeat(self)),
            "garp_master_refresh" => set(&mut g.master_refresh, self.whole_seconds(n)),
            "garp_master_refresh_repeat" => set(&mut g.master_refresh_repeat, repeat(self)),
            "garp_interval" => set(&mut g.garp_interval, self.seconds(n, 255)),
            "gna_interval" => set(&mut g.gna_interval, self.seconds(n, 255)),
            _ => unreachable!("caller checks GARP_KEYWORDS"),
        }
    }

    fn global_defs(&mut self, nodes: &[Node], g: &mut GlobalDefs) {
        for n in nodes {
            let name = n.name();
            match name {
                "router_id" => {
                    if let Some(a) = self.arg(n) {
                        g.router_id = Some(a.text.to_string());
                    }
                }
                "vrrp_version" => set(&mut g.vrrp_version, self.int(n, 2, 3).map(|v| v as u8)),
                "vrrp_min_garp" => set_plain(&mut g.vrrp_min_garp, self.boolean(n)),
                "vrrp_rt_priority" => {
                    set(&mut g.vrrp_rt_priority, self.int(n, 1, 99).map(|v| v as u8))
                }
                "vrrp_lower_prio_no_advert" => {
                    set_plain(&mut g.lower_prio_no_advert, self.boolean(n))
                }
                "vrrp_higher_prio_send_advert" => {
                    set_plain(&mut g.higher_prio_send_advert, self.boolean(n))
                }
                "vrrp_check_unicast_src" => set_plain(&mut g.check_unicast_src, self.boolean(n)),
                "vrrp_skip_check_adv_addr" => {
                    set_plain(&mut g.skip_check_adv_addr, self.boolean(n))
                }
                _ => match name.strip_prefix("vrrp_") {
                    Some(key) if GARP_KEYWORDS.contains(&key) => self.garp(key, n, &mut g.garp),
                    _ => {
                        if self.unknown(n, "in `global_defs`", GLOBAL_SUPPORTED, GLOBAL_INACTIVE) {
                            match name {
                                "lvs_sync_daemon" => self.lvs_sync_daemon(n, g),
                                "lvs_timeouts" => self.lvs_timeouts(n, g),
                                "lvs_flush_on_stop" => self.lvs_flush_on_stop(n, g),
                                _ => {}
                            }
                            blocks::fill_global(n, g);
                        }
                    }
                },
            }
        }
    }

    /// `lvs_timeouts [tcp SECS] [tcpfin SECS] [udp SECS]`, checked as keepalived 2.4.3
    /// does (at least one; each 0..=31 days; a later repeat of a word wins) but with
    /// errors where keepalived ignores the bad part.
    fn lvs_timeouts(&mut self, n: &Node, g: &mut GlobalDefs) {
        let mut t = LvsTimeouts {
            tcp: None,
            tcpfin: None,
            udp: None,
            span: n.span().clone(),
        };
        if n.args.is_empty() {
            self.diags.error_help(
                &n.keyword,
                "`lvs_timeouts` needs at least one timeout",
                "e.g. `lvs_timeouts tcp 900 tcpfin 120 udp 300`",
            );
            return;
        }
        let mut ok = true;
        let mut i = 0;
        while i < n.args.len() {
            let a = &n.args[i];
            let slot = match a.text.as_str() {
                "tcp" => &mut t.tcp,
                "tcpfin" => &mut t.tcpfin,
                "udp" => &mut t.udp,
                other => {
                    self.diags.error_help(
                        a,
                        format!("unknown option `{other}` for `lvs_timeouts`"),
                        "options: tcp SECS, tcpfin SECS, udp SECS",
                    );
                    ok = false;
                    i += 1;
                    continue;
                }
            };
            let Some(v) = n.args.get(i + 1) else {
                self.diags
                    .error(a, format!("`lvs_timeouts {}` needs a value", a.text));
                ok = false;
                break;
            };
            let what = format!("lvs_timeouts {}", a.text);
            match self.int_tok(v, &what, 0, u64::from(LVS_MAX_TIMEOUT)) {
                Some(secs) => *slot = Some(secs as u32),
                None => ok = false,
            }
            i += 2;
        }
        if ok {
            g.lvs_timeouts = Some(t);
        }
    }

    /// `lvs_flush_on_stop [VS]` (keepalived takes only `VS`, in capitals).
    fn lvs_flush_on_stop(&mut self, n: &Node, g: &mut GlobalDefs) {
        match &n.args[..] {
            [] => g.lvs_flush_on_stop = Some(LvsFlushOnStop::Full),
            [a] if a.text == "VS" => g.lvs_flush_on_stop = Some(LvsFlushOnStop::VirtualServers),
            [a] => self.diags.error_help(
                a,
                format!("unknown `lvs_flush_on_stop` type `{}`", a.text),
                "write `lvs_flush_on_stop` (flush the whole IPVS table) or `lvs_flush_on_stop VS`",
            ),
            [_, extra, ..] => self.diags.error(
                extra,
                format!(
                    "unexpected extra argument `{}` for `lvs_flush_on_stop`",
                    extra.text
                ),
            ),
        }
    }

    /// `lvs_sync_daemon IFACE [[inst] INSTANCE] [id N] [maxlen N] [port N] [ttl N]
    /// [group IP]`, read as keepalived 2.4.3 reads it (including its old positional
    /// `IFACE INSTANCE [SYNC_ID]`). The first one counts; later ones are reported.
    fn lvs_sync_daemon(&mut self, n: &Node, g: &mut GlobalDefs) {
        if let Some(first) = &g.lvs_sync_daemon {
            self.diags.warning(
                &n.keyword,
                format!(
                    "`lvs_sync_daemon` was already given at line {}; this one is ignored (as keepalived does)",
                    first.span.line
                ),
            );
            return;
        }
        let Some(iface) = n.args.first() else {
            self.diags
                .error(&n.keyword, "`lvs_sync_daemon` needs an interface");
            return;
        };
        // IP_VS_IFNAME_MAXLEN is 16 with the NUL.
        if iface.text.len() >= 16 || iface.text.is_empty() {
            self.diags.error(
                iface,
                format!(
                    "`lvs_sync_daemon` interface name `{}` must be 1 to 15 bytes",
                    iface.text
                ),
            );
            return;
        }
        let mut d = LvsSyncDaemon {
            interface: iface.text.to_string(),
            instance: None,
            sync_id: None,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
            span: n.span().clone(),
        };
        let args = &n.args[1..];
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let opt = a.text.as_str();
            let value = args.get(i + 1);
            if matches!(opt, "inst" | "id" | "maxlen" | "port" | "ttl" | "group") {
                let Some(v) = value else {
                    self.diags
                        .error(a, format!("`lvs_sync_daemon {opt}` needs a value"));
                    break;
                };
                let what = format!("lvs_sync_daemon {opt}");
                match opt {
                    "inst" => {
                        if d.instance.is_some() {
                            self.diags.warning(
                                a,
                                "`lvs_sync_daemon` names its VRRP instance twice; the first counts",
                            );
                        } else {
                            d.instance = Some(v.text.to_string());
                            *self.syncd_instance = Some(v.clone());
                        }
                    }
                    "id" => d.sync_id = self.int_tok(v, &what, 0, 255).map(|x| x as u8),
                    // 65535 - IPv4 header - UDP header, as keepalived.
                    "maxlen" => d.maxlen = self.int_tok(v, &what, 1, 65507).map(|x| x as u16),
                    "port" => d.port = self.int_tok(v, &what, 1, 65535).map(|x| x as u16),
                    "ttl" => d.ttl = self.int_tok(v, &what, 1, 255).map(|x| x as u8),
                    _ => match v.text.parse::<IpAddr>() {
                        Ok(ip) if ip.is_multicast() => d.group = Some(ip),
                        Ok(_) => self.diags.error(
                            v,
                            format!(
                                "`lvs_sync_daemon group` {} is not a multicast address",
                                v.text
                            ),
                        ),
                        Err(_) => self.diags.error(
                            v,
                            format!(
                                "`lvs_sync_daemon group` expects an IP address, found `{}`",
                                v.text
                            ),
                        ),
                    },
                }
                i += 2;
                continue;
            }
            // keepalived's older form: `lvs_sync_daemon IFACE INSTANCE [SYNC_ID]`.
            if i == 0 {
                d.instance = Some(a.text.to_string());
                *self.syncd_instance = Some(a.clone());
            } else if i == 1 && d.sync_id.is_none() && parse_uint(&a.text).is_some() {
                self.diags.warning(
                    a,
                    "write `id` before the sync id of `lvs_sync_daemon` (keepalived's current syntax)",
                );
                d.sync_id = self
                    .int_tok(a, "lvs_sync_daemon id", 0, 255)
                    .map(|x| x as u8);
            } else {
                self.diags.error_help(
                    a,
                    format!("unknown option `{}` for `lvs_sync_daemon`", a.text),
                    "options: inst INSTANCE, id N, maxlen N, port N, ttl N, group IP",
                );
            }
            i += 1;
        }
        g.lvs_sync_daemon = Some(d);
    }

    /// An instance's deprecated `lvs_sync_daemon_interface IFACE`: the global
    /// `lvs_sync_daemon IFACE inst THIS`, unless one was given already.
    fn sync_daemon_interface(&mut self, c: &Node, inst: &VrrpInstance, g: &mut GlobalDefs) {
        let Some(iface) = c.args.first() else {
            return; // the schema check reported it
        };
        if let Some(first) = &g.lvs_sync_daemon {
            self.diags.warning(
                &c.keyword,
                format!(
                    "the sync daemon was already set up at line {} (`{}`); this `lvs_sync_daemon_interface` is ignored (as keepalived does)",
                    first.span.line, first.interface
                ),
            );
            return;
        }
        if iface.text.len() >= 16 {
            self.diags.error(
                iface,
                format!(
                    "`lvs_sync_daemon_interface` name `{}` must be at most 15 bytes",
                    iface.text
                ),
            );
            return;
        }
        self.diags.warning(
            &c.keyword,
            "`lvs_sync_daemon_interface` in a vrrp_instance is deprecated; it means `lvs_sync_daemon IFACE inst INSTANCE` in global_defs",
        );
        g.lvs_sync_daemon = Some(LvsSyncDaemon {
            interface: iface.text.to_string(),
            instance: Some(inst.name.clone()),
            sync_id: None,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
            span: c.span().clone(),
        });
    }

    /// The instance, where its parts were written and its `lvs_sync_daemon_interface`.
    fn instance<'n>(
        &mut self,
        n: &'n Node,
    ) -> Option<(VrrpInstance, InstanceMeta, Option<&'n Node>)> {
        let name_tok = match &n.args[..] {
            [name] => name.clone(),
            [] => {
                self.diags.error_help(
                    &n.keyword,
                    "`vrrp_instance` needs a name",
                    "write `vrrp_instance NAME {`",
                );
                n.keyword.clone()
            }
            [name, extra, ..] => {
                self.diags.error(
                    extra,
                    format!(
                        "unexpected extra argument `{}` for `vrrp_instance`",
                        extra.text
                    ),
                );
                name.clone()
            }
        };
        let children = self.block(n)?;
        let mut inst = VrrpInstance {
            name: if n.args.is_empty() {
                String::new()
            } else {
                name_tok.text.to_string()
            },
            span: n.span().clone(),
            state: InitialState::Backup,
            interface: String::new(),
            virtual_router_id: 0,
            priority: 100,
            advert_int: Duration::from_secs(1),
            version: None,
            virtual_ipaddress: Vec::new(),
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            accept: None,
            auth: None,
            auth_hmac: Default::default(),
            mcast_src_ip: None,
            unicast_src_ip: None,
            unicast_peers: Vec::new(),
            unicast_ttl: None,
            check_unicast_src: false,
            v3_checksum_as_v2: false,
            garp: Default::default(),
            lower_prio_no_advert: None,
            higher_prio_send_advert: None,
            skip_check_adv_addr: None,
            down_timer_adverts: None,
            track: Default::default(),
            notify: Default::default(),
            use_vmac: Default::default(),
            use_ipvlan: Default::default(),
            vmac_xmit_base: false,
            use_vmac_addr: false,
            vrf: None,
            virtual_ipaddress_excluded: Vec::new(),
            virtual_routes: Vec::new(),
            virtual_rules: Vec::new(),
            smtp_alert: None,
            strict_mode: None,
            dont_track_primary: false,
            promote_secondaries: false,
            unicast_fault_no_peer: false,
            old_unicast_checksum: false,
            track_src_ip: false,
            garp_extra_if: None,
            mcast_dst_ip: None,
            no_virtual_ipaddress: false,
            native_ipv6: false,
            owner_ignore_adverts: None,
            timer_expired_backup: None,
            bfd_takeover: Default::default(),
            release_drain_ms: None,
            standby_metric: None,
        };
        // Last node seen for each keyword (canonical spelling, e.g. `nopreempt`).
        let mut fields: HashMap<&'static str, &'n Node> = HashMap::new();
        let mut meta = InstanceMeta {
            name: name_tok,
            later: Box::default(),
            written: 0,
            vip_tokens: Vec::new(),
            vips: Box::default(),
            peer_tokens: Vec::new(),
            peers: Box::default(),
            vip_entries: 0,
        };
        for c in children {
            let key = match INSTANCE_SUPPORTED.iter().find(|k| **k == c.name()) {
                Some(&"no_preempt") => "nopreempt",
                Some(k) => k,
                None => {
                    if self.unknown(
                        c,
                        "in `vrrp_instance`",
                        INSTANCE_SUPPORTED,
                        INSTANCE_INACTIVE,
                    ) {
                        blocks::fill_instance(c, &mut inst, self.names, self.diags);
                        match c.name() {
                            "use_vmac" => inst.use_vmac = Some(self.use_vmac(c)).into(),
                            "use_ipvlan" => inst.use_ipvlan = Some(self.use_ipvlan(c)).into(),
                            _ => {}
                        }
                        if let Some(k) = schema::find(INSTANCE_INACTIVE, c.name()) {
                            fields.insert(k.name, c);
                        }
                    }
                    continue;
                }
            };
            fields.insert(key, c);
            match key {
                "state" => {
                    if let Some(a) = self.arg(c) {
                        match a.text.as_str() {
                            "MASTER" => inst.state = InitialState::Master,
                            "BACKUP" => inst.state = InitialState::Backup,
                            other => self.diags.error_help(
                                a,
                                format!("invalid state `{other}`"),
                                "use `MASTER` or `BACKUP` (upper case)",
                            ),
                        }
                    }
                }
                "interface" => {
                    if let Some(a) = self.arg(c) {
                        inst.interface = a.text.to_string();
                    }
                }
                "virtual_router_id" => set_plain(
                    &mut inst.virtual_router_id,
                    self.int(c, 1, 255).map(|v| v as u8),
                ),
                "priority" => set_plain(&mut inst.priority, self.int(c, 1, 255).map(|v| v as u8)),
                "advert_int" => {
                    if let Some(d) = self.seconds(c, 255) {
                        if d.is_zero() {
                            let a = &c.args[0];
                            self.diags.error(a, "`advert_int` must be greater than 0");
                        } else {
                            inst.advert_int = d;
                        }
                    }
                }
                "version" => set(&mut inst.version, self.int(c, 2, 3).map(|v| v as u8)),
                "virtual_ipaddress" => {
                    self.no_args(c);
                    if let Some(entries) = self.block(c) {
                        meta.vip_entries += entries.len();
                        for e in entries {
                            self.vip_entry(e, &mut inst, &mut meta);
                        }
                    } else {
                        meta.vip_entries += 1; // already reported; don't also say "no VIPs"
                    }
                }
                "nopreempt" => {
                    if self.no_args(c) && self.no_block(c) {
                        inst.nopreempt = true;
                    }
                }
                "preempt" => {
                    self.no_args(c);
                    self.no_block(c);
                }
                "preempt_delay" => set_plain(&mut inst.preempt_delay, self.seconds(c, 1000)),
                "accept" => {
                    if self.no_args(c) && self.no_block(c) {
                        inst.accept = Some(true);
                    }
                }
                "authentication" => {
                    self.no_args(c);
                    if let Some(children) = self.block(c) {
                        inst.auth = self.authentication(c, children);
                    }
                }
                "auth_hmac" => {
                    self.no_args(c);
                    if let Some(children) = self.block(c) {
                        inst.auth_hmac = self.auth_hmac(c, children).into();
                    }
                }
                "mcast_src_ip" => set(&mut inst.mcast_src_ip, self.ip(c)),
                "unicast_src_ip" => set(&mut inst.unicast_src_ip, self.ip(c)),
                "unicast_peer" => {
                    self.no_args(c);
                    if let Some(entries) = self.block(c) {
                        for e in entries {
                            self.peer_entry(e, &mut inst, &mut meta);
                        }
                    }
                }
                "unicast_ttl" => set(&mut inst.unicast_ttl, self.int(c, 0, 255).map(|v| v as u8)),
                "check_unicast_src" => set_plain(&mut inst.check_unicast_src, self.boolean(c)),
                "v3_checksum_as_v2" => set_plain(&mut inst.v3_checksum_as_v2, self.boolean(c)),
                "lower_prio_no_advert" => set(&mut inst.lower_prio_no_advert, self.boolean(c)),
                "higher_prio_send_advert" => {
                    set(&mut inst.higher_prio_send_advert, self.boolean(c))
                }
                "skip_check_adv_addr" => set(&mut inst.skip_check_adv_addr, self.boolean(c)),
                "down_timer_adverts" => set(
                    &mut inst.down_timer_adverts,
                    self.int(c, 1, 100).map(|v| v as u8),
                ),
                k if GARP_KEYWORDS.contains(&k) => self.garp(k, c, &mut inst.garp),
                _ => unreachable!("every supported keyword is handled"),
            }
        }

        // keepalived: `state MASTER` without a priority means the address owner (255),
        // and clears `nopreempt` (it cannot work from MASTER).
        if inst.state == InitialState::Master {
            if !fields.contains_key("priority") {
                inst.priority = 255;
            }
            inst.nopreempt = false;
        }

        let label = if inst.name.is_empty() {
            "`vrrp_instance`".to_string()
        } else {
            format!("vrrp_instance `{}`", inst.name)
        };
        let at = meta.name.clone();
        // keepalived: a unicast instance may omit `interface` (its VIPs then name their
        // `dev`, else they go on `default_interface`), given a `unicast_src_ip`.
        let unicast = !inst.unicast_peers.is_empty();
        if !fields.contains_key("interface") && unicast {
            self.interfaceless(&inst, &meta.name, &fields, &label);
        }
        if let Some(vrf) = fields.get("vrf") {
            let why = if fields.contains_key("interface") {
                Some("`vrf` is for instances without `interface`")
            } else if !unicast {
                Some("`vrf` needs unicast peers (it is for unicast instances without `interface`)")
            } else {
                None
            };
            if let Some(why) = why {
                self.diags
                    .error(vrf.args.first().unwrap_or(&vrf.keyword), why);
            }
        }
        for (key, example) in [
            ("interface", "interface eth0"),
            ("virtual_router_id", "virtual_router_id 51"),
        ] {
            let optional = key == "interface" && unicast;
            if !optional && !fields.contains_key(key) {
                self.diags.error_help(
                    &at,
                    format!("{label} has no `{key}`"),
                    format!("add e.g. `{example}`"),
                );
            }
        }
        self.drop_duplicates(&mut inst, &mut meta);
        // Exactly sized lists: a large config has thousands of instances, most with a
        // VIP or two (grown one by one, a list holds room for four).
        inst.virtual_ipaddress.shrink_to_fit();
        inst.virtual_ipaddress_excluded.shrink_to_fit();
        inst.unicast_peers.shrink_to_fit();
        inst.virtual_routes.shrink_to_fit();
        inst.virtual_rules.shrink_to_fit();
        let mut later = Vec::new();
        for (i, &(key, part)) in LATER.iter().enumerate() {
            let Some(n) = fields.get(key) else { continue };
            later.push(meta.keep(match part {
                Part::Keyword => &n.keyword,
                Part::Value => n.args.first().unwrap_or(&n.keyword),
            }));
            meta.written |= 1 << i;
        }
        meta.later = later.into_boxed_slice();
        let vip_tokens = std::mem::take(&mut meta.vip_tokens);
        meta.vips = vip_tokens.iter().map(|t| meta.keep(t)).collect();
        let peer_tokens = std::mem::take(&mut meta.peer_tokens);
        meta.peers = peer_tokens.iter().map(|t| meta.keep(t)).collect();
        // No VIPs: checked in validate.rs, where the version and strict mode are known.
        let sync_if = fields.get("lvs_sync_daemon_interface").copied();
        Some((inst, meta, sync_if))
    }

    /// What keepalived 2.4.3 requires of a unicast instance without `interface`.
    fn interfaceless(
        &mut self,
        inst: &VrrpInstance,
        name: &Token,
        fields: &HashMap<&'static str, &Node>,
        label: &str,
    ) {
        for kw in ["use_vmac", "use_ipvlan"] {
            if let Some(n) = fields.get(kw) {
                self.diags.error(
                    &n.keyword,
                    format!("`{kw}` needs the instance's `interface`"),
                );
            }
        }
        match inst.unicast_src_ip {
            None => self.diags.error_help(
                name,
                format!("{label} has neither `interface` nor `unicast_src_ip`"),
                "a unicast instance without `interface` sends from its `unicast_src_ip`",
            ),
            Some(std::net::IpAddr::V6(a)) if a.is_unicast_link_local() => {
                let src = fields.get("unicast_src_ip");
                if let Some(tok) = src.map(|n| n.args.first().unwrap_or(&n.keyword)) {
                    self.diags.error(
                        tok,
                        "without `interface`, `unicast_src_ip` cannot be a link-local address",
                    );
                }
            }
            Some(_) => {}
        }
    }

    /// keepalived 2.4.3 ignores a repeated virtual address ("VIP duplicates a VIP ... -
    /// ignoring") and a repeated unicast peer ("duplicate unicast_peer"); so does vipd,
    /// with a warning at the repeat.
    fn drop_duplicates(&mut self, inst: &mut VrrpInstance, meta: &mut InstanceMeta) {
        let name = inst.name.clone();
        self.drop_repeats(
            &mut inst.virtual_ipaddress,
            &mut meta.vip_tokens,
            |v| (v.addr, v.dev.clone()),
            |v| {
                format!(
                    "virtual address {} is listed twice in vrrp_instance `{name}`",
                    v.addr
                )
            },
        );
        // keepalived: "Excluded VIP duplicates a VIP ... - ignoring".
        let vips: std::collections::HashSet<IpAddr> =
            inst.virtual_ipaddress.iter().map(|v| v.addr).collect();
        let mut seen_excluded = std::collections::HashSet::new();
        inst.virtual_ipaddress_excluded.retain(|v| {
            let dup = vips.contains(&v.addr) || !seen_excluded.insert(v.addr);
            if dup {
                self.diags.push(crate::Diagnostic::new(
                    crate::Severity::Warning,
                    format!("excluded address {} repeats an address of vrrp_instance `{name}`: this line is ignored (as keepalived does)", v.addr),
                    v.span.clone(),
                    v.addr.to_string().len() as u32,
                ));
            }
            !dup
        });
        self.drop_repeats(
            &mut inst.unicast_peers,
            &mut meta.peer_tokens,
            |p| p.addr,
            |p| {
                format!(
                    "unicast_peer {} is listed twice in vrrp_instance `{name}`",
                    p.addr
                )
            },
        );
    }

    /// Drops the entries of `items` whose `key` an earlier entry has, warning at the
    /// repeat's token (`tokens` runs alongside `items`); left as is if they do not.
    fn drop_repeats<T, K: std::hash::Hash + Eq>(
        &mut self,
        items: &mut Vec<T>,
        tokens: &mut Vec<Token>,
        key: impl Fn(&T) -> K,
        what: impl Fn(&T) -> String,
    ) {
        if items.len() != tokens.len() {
            return;
        }
        let mut seen = std::collections::HashSet::new();
        let keep: Vec<bool> = items
            .iter()
            .zip(tokens.iter())
            .map(|(item, tok)| {
                let fresh = seen.insert(key(item));
                if !fresh {
                    self.diags.warning(
                        tok,
                        format!("{}: this line is ignored (as keepalived does)", what(item)),
                    );
                }
                fresh
            })
            .collect();
        let mut k = keep.iter();
        items.retain(|_| *k.next().unwrap_or(&true));
        let mut k = keep.iter();
        tokens.retain(|_| *k.next().unwrap_or(&true));
    }

    /// One line of `virtual_ipaddress`; it may hold several addresses, as in
    /// `virtual_ipaddress { 192.0.2.1/24 192.0.2.2 }`.
    fn vip_entry(&mut self, n: &Node, inst: &mut VrrpInstance, meta: &mut InstanceMeta) {
        self.no_block(n);
        let words: Vec<&Token> = std::iter::once(&n.keyword).chain(&n.args).collect();
        let mut i = 0;
        let mut current: Option<usize> = None; // index into inst.virtual_ipaddress
        while i < words.len() {
            let w = words[i];
            let opt = w.text.as_str();
            if let Some(idx) = current {
                if VIP_OPTIONS.contains(&opt) {
                    let Some(v) = words.get(i + 1) else {
                        self.diags.error(w, format!("`{opt}` needs a value"));
                        return;
                    };
                    self.vip_option(opt, v, &mut inst.virtual_ipaddress[idx]);
                    i += 2;
                    continue;
                }
                if opt == "track_group" {
                    // keepalived 2.4.3: "Unknown configuration entry 'track_group' for ip address".
                    self.diags.error(
                        w,
                        "`track_group` applies only to static_ipaddress, static_routes and static_rules",
                    );
                    i += 2;
                    continue;
                }
                let vip = &mut inst.virtual_ipaddress[idx];
                if let Some(n) = crate::blocks::address_flag_option(&words, i, vip, self.diags) {
                    i += n;
                    continue;
                }
                if opt == "use_vmac" {
                    vip.use_vmac = true;
                    i += 1;
                    continue;
                }
            }
            match parse_prefix(opt) {
                Ok((addr, prefix_len)) => {
                    inst.virtual_ipaddress.push(VirtualAddress::new(
                        addr,
                        prefix_len,
                        w.span.clone(),
                    ));
                    meta.vip_tokens.push(w.clone());
                    current = Some(inst.virtual_ipaddress.len() - 1);
                }
                Err(e) if current.is_some() && !looks_like_address(opt) => {
                    let msg = format!("unknown virtual_ipaddress option `{opt}`");
                    let all = schema::ADDRESS_OPTIONS
                        .iter()
                        .map(|(o, _)| *o)
                        .filter(|o| *o != "track_group");
                    match suggest(opt, all) {
                        Some(s) => self
                            .diags
                            .error_help(w, msg, format!("did you mean `{s}`?")),
                        None => self.diags.error_help(
                            w,
                            msg,
                            format!(
                                "expected an address or one of: {} ({e})",
                                VIP_OPTIONS.join(", ")
                            ),
                        ),
                    }
                    // The rest of the line cannot be interpreted reliably.
                    return;
                }
                Err(e) => {
                    self.diags
                        .error(w, format!("invalid virtual_ipaddress entry: {e}"));
                    return;
                }
            }
            i += 1;
        }
    }

    fn vip_option(&mut self, opt: &str, v: &Token, vip: &mut VirtualAddress) {
        match opt {
            "brd" => {
                if crate::blocks::brd_with_peer(v, vip, self.diags) {
                } else if v.text == "+" || v.text == "-" {
                    self.diags.inactive(v, &format!("`brd {}`", v.text));
                } else {
                    vip.brd = self.ip_tok(v, "brd");
                }
            }
            "dev" => vip.dev = Some(v.text.to_string()),
            "label" => vip.label = Some(v.text.to_string()),
            "scope" => vip.scope = crate::routes::scope(v, self.names, self.diags),
            _ => unreachable!("VIP_OPTIONS"),
        }
    }

    fn peer_entry(&mut self, n: &Node, inst: &mut VrrpInstance, meta: &mut InstanceMeta) {
        self.no_block(n);
        let words: Vec<&Token> = std::iter::once(&n.keyword).chain(&n.args).collect();
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            let opt = w.text.as_str();
            if PEER_OPTIONS.contains(&opt) && !inst.unicast_peers.is_empty() {
                let Some(v) = words.get(i + 1) else {
                    self.diags.error(w, format!("`{opt}` needs a value"));
                    return;
                };
                let ttl = self.int_tok(v, opt, 0, 255).map(|t| t as u8);
                let peer = inst.unicast_peers.last_mut().expect("checked non-empty");
                if opt == "min_ttl" {
                    set(&mut peer.min_ttl, ttl);
                } else {
                    set(&mut peer.max_ttl, ttl);
                }
                i += 2;
                continue;
            }
            match opt.parse::<IpAddr>() {
                Ok(addr) => {
                    inst.unicast_peers.push(UnicastPeer {
                        addr,
                        min_ttl: None,
                        max_ttl: None,
                    });
                    meta.peer_tokens.push(w.clone());
                }
                Err(_) => {
                    let help = match suggest(opt, PEER_OPTIONS.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "expected `ADDRESS [min_ttl N] [max_ttl N]`".into(),
                    };
                    self.diags
                        .error_help(w, format!("invalid unicast_peer entry `{opt}`"), help);
                    return;
                }
            }
            i += 1;
        }
    }

    fn authentication(&mut self, block: &Node, children: &[Node]) -> Option<Auth> {
        let mut ah: Option<bool> = None;
        let mut pass: Option<String> = None;
        for c in children {
            match c.name() {
                "auth_type" => {
                    if let Some(a) = self.arg(c) {
                        match a.text.as_str() {
                            "PASS" => ah = Some(false),
                            "AH" => ah = Some(true),
                            other => self.diags.error_help(
                                a,
                                format!("invalid auth_type `{other}`"),
                                "use `PASS` or `AH`",
                            ),
                        }
                    }
                }
                "auth_pass" => {
                    if let Some(a) = self.arg(c) {
                        if a.text.chars().count() > 8 {
                            self.diags.warning(
                                a,
                                "`auth_pass` is longer than 8 characters; only the first 8 are used",
                            );
                        }
                        pass = Some(a.text.to_string());
                    }
                }
                _ => {
                    self.unknown(c, "in `authentication`", AUTH_SUPPORTED, &[]);
                }
            }
        }
        let kw = &block.keyword;
        match (ah, pass) {
            (Some(false), Some(p)) => Some(Auth::Pass(p)),
            (Some(true), Some(p)) => Some(Auth::Ah(p)),
            (None, _) if !children.iter().any(|c| c.name() == "auth_type") => {
                self.diags.error(kw, "`authentication` has no `auth_type`");
                None
            }
            (Some(_), None) if !children.iter().any(|c| c.name() == "auth_pass") => {
                self.diags.error(kw, "`authentication` has no `auth_pass`");
                None
            }
            _ => None, // a malformed value was already reported
        }
    }
}

impl Mapper<'_> {
    /// keepalived 2.4's `auth_hmac { }`. Diagnostics never quote a key's value.
    fn auth_hmac(&mut self, block: &Node, children: &[Node]) -> Option<AuthHmac> {
        let mut h = AuthHmac {
            keys: Vec::new(),
            active_key: None,
            anti_replay_time: true,
            time_window: None,
            mode: HmacMode::Enforce,
            span: block.keyword.span.clone(),
        };
        for c in children {
            match c.name() {
                "key" => {
                    self.no_block(c);
                    let [id, value] = &c.args[..] else {
                        self.diags
                            .error(&c.keyword, "`key` needs an id and a value");
                        continue;
                    };
                    let Some(id) = self.int_tok(id, "key id", 1, 255) else {
                        continue;
                    };
                    let Some(bytes) = self.hmac_key_value(value) else {
                        continue;
                    };
                    let (lo, hi) = (32, 64);
                    if !(lo..=hi).contains(&bytes.len()) {
                        self.diags.error(
                            value,
                            format!(
                                "`auth_hmac` key {id} is {} bytes long; keys are {lo} to {hi} bytes",
                                bytes.len()
                            ),
                        );
                    } else if h.keys.iter().any(|(k, _)| u64::from(*k) == id) {
                        self.diags
                            .error(&c.keyword, format!("duplicate `auth_hmac` key id {id}"));
                    } else {
                        h.keys.push((id as u8, Secret(bytes)));
                    }
                }
                "active_key" => {
                    if let Some(v) = self.int(c, 1, 255) {
                        h.active_key = Some(v as u8);
                    }
                }
                "time_window" => {
                    if let Some(v) = self.int(c, 1, 300) {
                        h.time_window = Some(v as u32);
                    }
                }
                "anti_replay" => {
                    if let Some(a) = self.arg(c) {
                        match a.text.as_str() {
                            "time" => h.anti_replay_time = true,
                            "monotonic" => h.anti_replay_time = false,
                            other => self.diags.error_help(
                                a,
                                format!("invalid anti_replay `{other}`"),
                                "use `time` or `monotonic`",
                            ),
                        }
                    }
                }
                "mode" => {
                    if let Some(a) = self.arg(c) {
                        match a.text.as_str() {
                            "enforce" => h.mode = HmacMode::Enforce,
                            "permissive" => h.mode = HmacMode::Permissive,
                            "receive-only" => h.mode = HmacMode::ReceiveOnly,
                            other => self.diags.error_help(
                                a,
                                format!("invalid auth_hmac mode `{other}`"),
                                "use `enforce`, `permissive` or `receive-only`",
                            ),
                        }
                    }
                }
                _ => {
                    self.unknown(c, "in `auth_hmac`", AUTH_HMAC_SUPPORTED, &[]);
                }
            }
        }
        match h.active_key {
            None => {
                self.diags.error_help(
                    &block.keyword,
                    "`auth_hmac` has no `active_key`",
                    "name the key to sign with: `active_key N` (keepalived would run unauthenticated)",
                );
                None
            }
            Some(k) if !h.keys.iter().any(|(id, _)| *id == k) => {
                self.diags.error_help(
                    &block.keyword,
                    format!("`auth_hmac` active_key {k} is not defined"),
                    "add `key N VALUE` with that id (keepalived would run unauthenticated)",
                );
                None
            }
            Some(_) => Some(h),
        }
    }

    /// A key value: `hex:` bytes, `file:PATH` holding what the inline value would,
    /// or the text itself.
    fn hmac_key_value(&mut self, t: &Token) -> Option<Vec<u8>> {
        if let Some(path) = t.text.strip_prefix("file:") {
            let text = match std::fs::read(path) {
                Ok(b) if b.len() > 4 + 64 * 2 + 8 => {
                    self.diags
                        .error(t, format!("`auth_hmac` key file {path} is too large"));
                    return None;
                }
                Ok(b) => b,
                Err(e) => {
                    self.diags.error(
                        t,
                        format!("`auth_hmac` key file {path} cannot be read: {e}"),
                    );
                    return None;
                }
            };
            use std::os::unix::fs::PermissionsExt;
            if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                self.diags.warning(
                    t,
                    format!("`auth_hmac` key file {path} is readable by group or others"),
                );
            }
            let mut text = text;
            while text.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                text.pop();
            }
            return match text.strip_prefix(b"hex:") {
                Some(hex) => self.hex_key(t, hex),
                None => Some(text),
            };
        }
        match t.text.strip_prefix("hex:") {
            Some(hex) => self.hex_key(t, hex.as_bytes()),
            None => Some(t.text.as_bytes().to_vec()),
        }
    }

    fn hex_key(&mut self, t: &Token, hex: &[u8]) -> Option<Vec<u8>> {
        let digits: Vec<u8> = hex
            .iter()
            .copied()
            .filter(|c| *c != b' ' && *c != b'\t')
            .collect();
        let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks(2) {
            match (pair.len() == 2).then(|| (nibble(pair[0]), nibble(pair[1]))) {
                Some((Some(a), Some(b))) => out.push(a << 4 | b),
                _ => {
                    // Never quote the value: it is a secret.
                    self.diags.error(
                        t,
                        "`auth_hmac` key: `hex:` needs pairs of hexadecimal digits",
                    );
                    return None;
                }
            }
        }
        Some(out)
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Whether a word was meant as an address (so a parse failure is a bad address, not an
/// unknown option).
fn looks_like_address(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit()) || s.contains(':')
}

fn set<T>(slot: &mut Option<T>, v: Option<T>) {
    if v.is_some() {
        *slot = v;
    }
}

fn set_plain<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

/// A `use_vmac` MAC: six hex octets, or five (a trailing `:` allowed) with the VRID as
/// the sixth. Neither multicast nor the RFC 5798 virtual router prefix (the plain
/// `use_vmac` uses that one already).
fn vmac_address(t: &str) -> Result<VmacAddress, &'static str> {
    let t = t
        .strip_suffix(':')
        .filter(|s| s.split(':').count() == 5)
        .unwrap_or(t);
    let octets: Vec<u8> = t
        .split(':')
        .map(|o| {
            (!o.is_empty() && o.len() <= 2)
                .then(|| u8::from_str_radix(o, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()
        .ok_or("is not a MAC address")?;
    if octets[0] & 1 == 1 {
        return Err("is a multicast address");
    }
    if octets.len() >= 5 && octets[..4] == [0, 0, 0x5e, 0] && matches!(octets[4], 1 | 2) {
        return Err("is in the RFC 5798 virtual router range (plain `use_vmac` uses it)");
    }
    match octets.len() {
        6 => Ok(VmacAddress::Full(octets.try_into().unwrap_or_default())),
        5 => Ok(VmacAddress::UseVrid(octets.try_into().unwrap_or_default())),
        _ => Err("is not a MAC address (six octets, or five)"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;
    use std::time::Duration;

    use crate::model::*;
    use crate::{load_str, Diagnostic, LoadOptions, Severity};

    /// Every instance keyword the checks after the mapping ask for by name is one whose
    /// token the mapping keeps (`LATER`); a name passed through a variable is caught by
    /// the debug assertion in `InstanceMeta::later` when a test reaches it.
    #[test]
    fn the_later_checks_ask_only_for_kept_tokens() {
        let sources = [
            include_str!("validate.rs"),
            include_str!("lints.rs"),
            include_str!("typed.rs"),
        ];
        let mut asked = 0;
        for (call, part) in [
            ("keyword_tok(\"", super::Part::Keyword),
            ("value_tok(\"", super::Part::Value),
        ] {
            for src in sources {
                for piece in src.split(call).skip(1) {
                    let key = &piece[..piece.find('"').unwrap()];
                    assert!(
                        super::LATER.contains(&(key, part)),
                        "`{call}{key}\")` reads a token the mapping does not keep: add it to LATER"
                    );
                    asked += 1;
                }
            }
        }
        assert!(asked >= 20, "{asked}");
    }

    fn opts() -> LoadOptions {
        LoadOptions {
            config_id: Some("node1".into()),
            check_interfaces: false,
            ..Default::default()
        }
    }

    fn load(text: &str) -> Result<crate::Loaded, Vec<Diagnostic>> {
        load_str(text, Path::new("/etc/keepalived/keepalived.conf"), &opts())
    }

    fn config(text: &str) -> Config {
        match load(text) {
            Ok(l) => l.config,
            Err(d) => panic!("unexpected errors: {d:#?}"),
        }
    }

    /// (message, line, col) of every error.
    fn errors(text: &str) -> Vec<(String, u32, u32)> {
        load(text)
            .expect_err("expected errors")
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| (d.message, d.span.line, d.span.col))
            .collect()
    }

    #[test]
    fn garp_group_is_active_with_its_interfaces_and_intervals() {
        let text = "garp_group {\n garp_interval 0.25\n interfaces {\n  eth0\n  eth1 eth2\n }\n}\ngarp_group {\n gna_interval 300\n interface eth3\n}\n";
        let l = load(text).unwrap();
        assert_eq!(l.inactive().count(), 0, "{:?}", l.diagnostics);
        let g = &l.config.garp_groups;
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].garp_interval, Some(Duration::from_millis(250)));
        assert_eq!(g[0].gna_interval, None);
        assert_eq!(g[0].interfaces, ["eth0", "eth1", "eth2"]);
        // keepalived takes intervals above 255 s in a garp_group.
        assert_eq!(g[1].gna_interval, Some(Duration::from_secs(300)));
        assert_eq!(g[1].interfaces, ["eth3"]);
        assert_eq!((g[1].span.line, g[1].span.col), (8, 1));
    }

    #[test]
    fn garp_group_without_delay_or_with_a_taken_interface_is_refused() {
        // keepalived 2.4.3 -t: "garp group 0 does not have any delay set - removing",
        // "garp_group already specified for eth0 - ignoring".
        assert_eq!(
            errors("garp_group {\n interface eth0\n}\n"),
            [(
                "garp_group sets no delay: it paces nothing (keepalived refuses it)".to_string(),
                1,
                1
            )]
        );
        assert_eq!(
            errors("garp_group {\n garp_interval 1\n interface eth0\n}\ngarp_group {\n gna_interval 1\n interfaces {\n  eth1 eth0\n }\n}\n"),
            [(
                "interface `eth0` is already in a garp_group (keepalived ignores it here)"
                    .to_string(),
                8,
                8
            )]
        );
    }

    #[test]
    fn track_group_and_its_references_from_static_lines() {
        let inst = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n priority 100\n virtual_ipaddress {\n  192.0.2.1\n }\n}\n";
        let text = format!(
            "track_group TG {{\n group {{\n  VI_1\n }}\n}}\n\
             static_ipaddress {{\n 192.0.2.9/24 dev eth1 track_group TG\n 192.0.2.10/24 dev eth1 no_track\n}}\n\
             static_routes {{\n 198.51.100.0/24 dev eth1 track_group TG\n}}\n\
             static_rules {{\n from 192.0.2.0/24 iif eth1 table 7 track_group TG\n}}\n{inst}"
        );
        let l = load(&text).unwrap();
        assert_eq!(l.inactive().count(), 0, "{:?}", l.diagnostics);
        let c = &l.config;
        assert_eq!(c.track_groups.len(), 1);
        assert_eq!(c.track_groups[0].name, "TG");
        assert_eq!(c.track_groups[0].instances, ["VI_1"]);
        assert_eq!(c.static_ipaddress[0].track_group.as_deref(), Some("TG"));
        assert!(!c.static_ipaddress[0].no_track);
        assert!(c.static_ipaddress[1].no_track);
        assert_eq!(c.static_routes[0].track_group.as_deref(), Some("TG"));
        assert_eq!(c.static_rules[0].track_group.as_deref(), Some("TG"));

        // keepalived 2.4.3 -t: "track_group NOPE not found", "Static route cannot have
        // track_group if interface not specified".
        let bad = format!(
            "track_group TG {{\n group {{\n  VI_1\n  VI_9\n }}\n}}\n\
             static_ipaddress {{\n 192.0.2.9/24 dev eth1 track_group NOPE\n}}\n\
             static_routes {{\n 198.51.100.0/24 via 192.0.2.254 track_group TG\n}}\n{inst}"
        );
        let all = load(&bad).unwrap_err();
        let got: Vec<_> = all
            .iter()
            .map(|d| (d.severity, d.message.as_str(), d.span.line))
            .collect();
        assert!(
            got.contains(&(
                Severity::Error,
                "static address: track_group `NOPE` not found",
                8
            )),
            "{got:#?}"
        );
        assert!(
            got.iter().any(|g| g.0 == Severity::Error
                && g.1.contains("needs the route's `dev`")
                && g.2 == 11),
            "{got:#?}"
        );
        assert!(
            got.iter().any(|g| g.0 == Severity::Warning
                && g.1.contains("no vrrp_instance `VI_9`")
                && g.2 == 1),
            "{got:#?}"
        );
        assert_eq!(
            errors(&format!(
                "track_group TG {{\n group {{\n  VI_1\n }}\n}}\n\
                 static_rules {{\n from 192.0.2.0/24 table 7 track_group TG\n}}\n{inst}"
            )),
            [(
                "static rule: `track_group` needs the rule's `iif` (the interface its instances track), as in keepalived".to_string(),
                7,
                2
            )]
        );
        assert_eq!(
            errors(&inst.replace("192.0.2.1\n", "192.0.2.1 track_group TG\n")),
            [(
                "`track_group` applies only to static_ipaddress, static_routes and static_rules"
                    .to_string(),
                6,
                13
            )]
        );
        // Only static routes and rules take it.
        let virt = inst.replace(
            " virtual_ipaddress",
            " virtual_routes {\n  198.51.100.0/24 dev eth0 track_group TG\n }\n virtual_ipaddress",
        );
        assert_eq!(
            errors(&format!(
                "track_group TG {{\n group {{\n  VI_1\n }}\n}}\n{virt}"
            )),
            [(
                "`track_group` applies only to static_routes and static_rules".to_string(),
                11,
                3
            )]
        );
    }

    fn one_error(text: &str) -> Diagnostic {
        let all = load(text).expect_err("expected an error");
        let errs: Vec<_> = all.into_iter().filter(|d| d.is_error()).collect();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        errs.into_iter().next().unwrap()
    }

    fn instance_with(body: &str) -> String {
        format!(
            "vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {{\n        192.0.2.1/24\n    }}\n    # body follows\n{body}\n}}\n"
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dynamic_interfaces_and_use_vmac_addr_are_read_and_active() {
        let text = format!(
            "global_defs {{\n    dynamic_interfaces allow_if_changes\n    vmac_addr_prefix vx\n    vmac_addr_prefix vy\n}}\n{}",
            instance_with("    use_vmac\n    use_vmac_addr")
        );
        assert_eq!(inactive(&text), Vec::<(String, u32, u32)>::new());
        let c = config(&text);
        assert!(c.global.dynamic_interfaces && c.global.allow_if_changes);
        // keepalived keeps the first.
        assert_eq!(c.global.vmac_addr_prefix.as_deref(), Some("vx"));
        assert!(c.instances[0].use_vmac_addr);
        let c = config(&format!(
            "global_defs {{\n    dynamic_interfaces\n}}\n{}",
            instance_with("")
        ));
        assert!(c.global.dynamic_interfaces && !c.global.allow_if_changes);
        assert!(!c.instances[0].use_vmac_addr);
        assert!(!config(&instance_with("")).global.dynamic_interfaces);
        // keepalived 2.4.3: "Unknown dynamic_interfaces option 'foo'", a config error.
        assert_eq!(
            errors("global_defs {\n    dynamic_interfaces foo\n}\n"),
            [(
                "unknown `dynamic_interfaces` option `foo`".to_string(),
                2,
                24
            )]
        );
        assert_eq!(
            errors(&instance_with("    use_vmac_addr x")),
            [(
                "`use_vmac_addr` takes no arguments, found `x`".to_string(),
                8,
                19
            )]
        );
    }

    #[test]
    fn unicast_instances_without_interface_and_vrf() {
        let inst = |body: &str| {
            format!(
                "vrrp_instance U {{\n    virtual_router_id 5\n{body}\n    virtual_ipaddress {{\n        192.0.2.10/24 dev lo\n    }}\n}}\n"
            )
        };
        let peers = "    unicast_peer {\n        192.0.2.2\n    }";
        let c = config(&inst(&format!(
            "{peers}\n    unicast_src_ip 192.0.2.1\n    vrf blue"
        )));
        assert_eq!(c.instances[0].interface, "");
        assert_eq!(c.instances[0].vrf.as_deref(), Some("blue"));
        let msgs = |text: &str| -> Vec<String> { errors(text).into_iter().map(|e| e.0).collect() };
        // keepalived 2.4.3: "Unicast instances must have unicast_src_ip or interface".
        assert_eq!(
            msgs(&inst(peers)),
            ["vrrp_instance `U` has neither `interface` nor `unicast_src_ip`"]
        );
        assert_eq!(
            msgs(&inst(&format!("{peers}\n    unicast_src_ip fe80::1")))[0],
            "without `interface`, `unicast_src_ip` cannot be a link-local address"
        );
        assert_eq!(
            msgs(&inst(&format!(
                "{peers}\n    unicast_src_ip 192.0.2.1\n    use_vmac"
            ))),
            ["`use_vmac` needs the instance's `interface`"]
        );
        // keepalived: "Cannot specify VRF interface and interface", "vrf can only be
        // specified with unicast".
        assert_eq!(
            msgs(&inst(&format!("    interface lo\n{peers}\n    vrf blue"))),
            ["`vrf` is for instances without `interface`"]
        );
        assert_eq!(
            msgs(&inst("    vrf blue")),
            [
                "vrrp_instance `U` has no `interface`",
                "`vrf` needs unicast peers (it is for unicast instances without `interface`)",
            ]
        );
    }

    #[test]
    fn use_vmac_options() {
        let vmac = |args: &str| {
            load(&instance_with(&format!("    use_vmac {args}")))
                .unwrap_or_else(|d| panic!("{d:#?}"))
                .config
                .instances[0]
                .use_vmac
                .as_ref()
                .cloned()
                .unwrap()
        };
        assert_eq!(
            vmac("vip51 02:00:5e:10:00:07 netlink_notify_msg group 7"),
            UseVmac {
                name: Some("vip51".into()),
                mac: Some(VmacAddress::Full([2, 0, 0x5e, 0x10, 0, 7])),
                netlink_notify_msg: true,
                group: Some(7),
            }
        );
        // `name` takes the next word even when it is a keyword; five octets: VRID last.
        let v = vmac("02:00:5e:10:00: name group");
        assert_eq!(v.name.as_deref(), Some("group"));
        assert_eq!(v.mac, Some(VmacAddress::UseVrid([2, 0, 0x5e, 0x10, 0])));
        assert_eq!(vmac("group default").group, Some(0));
        let errs = |args: &str| {
            errors(&instance_with(&format!("    use_vmac {args}")))
                .into_iter()
                .map(|(m, l, c)| format!("{l}:{c}: {m}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(errs("a b"), ["8:16: `use_vmac`: a second interface name"]);
        assert_eq!(
            errs("01:00:5e:00:00:01"),
            ["8:14: `use_vmac`: `01:00:5e:00:00:01` is a multicast address"]
        );
        assert_eq!(
            errs("00:00:5e:00:01:07"),
            ["8:14: `use_vmac`: `00:00:5e:00:01:07` is in the RFC 5798 virtual router range (plain `use_vmac` uses it)"]
        );
        assert_eq!(
            errs("02:00:5e:zz:00:07"),
            ["8:14: `use_vmac`: `02:00:5e:zz:00:07` is not a MAC address"]
        );
        assert_eq!(
            errs("group no-such-group-x"),
            ["8:20: `use_vmac`: unknown link group `no-such-group-x`"]
        );
        assert_eq!(
            errs("name a-very-long-interface-name"),
            ["8:19: `use_vmac`: `a-very-long-interface-name` is not a valid interface name (at most 15 characters, no `/`)"]
        );
    }

    #[test]
    fn use_ipvlan_options_and_checks() {
        let ipvlan = |args: &str| {
            load(&instance_with(&format!("    use_ipvlan {args}")))
                .unwrap_or_else(|d| panic!("{d:#?}"))
                .config
                .instances[0]
                .use_ipvlan
                .as_ref()
                .cloned()
                .unwrap()
        };
        assert_eq!(
            ipvlan("ipv51 192.0.2.21/24 vepa group 3"),
            UseIpvlan {
                name: Some("ipv51".into()),
                addr: Some((ip("192.0.2.21"), 24)),
                mode: IpvlanMode::Vepa,
                group: Some(3),
            }
        );
        let v = ipvlan("192.0.2.21 name bridge");
        assert_eq!(
            (v.name.as_deref(), v.mode),
            (Some("bridge"), IpvlanMode::Bridge)
        );
        assert_eq!(v.addr, Some((ip("192.0.2.21"), 32)));
        let errs = |args: &str| {
            errors(&instance_with(&format!("    use_ipvlan {args}")))
                .into_iter()
                .map(|(m, l, c)| format!("{l}:{c}: {m}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            errs("ipv51"),
            ["8:5: `use_ipvlan` of an IPv4 instance needs the ipvlan's address"]
        );
        assert_eq!(
            errs("2001:db8::21/64"),
            ["8:5: `use_ipvlan` address 2001:db8::21 is IPv6, the instance is IPv4"]
        );
        assert_eq!(
            errs("192.0.2.21/24 private vepa"),
            ["8:38: `use_ipvlan`: a second mode"]
        );
        assert_eq!(
            errs("192.0.2.21/24\n    use_vmac"),
            ["8:5: `use_ipvlan` and `use_vmac` in one instance"]
        );
    }

    #[test]
    fn full_instance_maps_every_supported_keyword() {
        let c = config(
            r#"
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 2
    version 2
    virtual_ipaddress {
        192.168.200.16/24 brd 192.168.200.255 dev eth1 scope link label eth1:1
        192.168.200.17
    }
    preempt
    accept
    authentication {
        auth_type PASS
        auth_pass "s3cr et"
    }
    mcast_src_ip 192.168.200.1
    unicast_src_ip 192.168.200.1
    unicast_peer {
        192.168.200.2 min_ttl 10 max_ttl 64
        192.168.200.3
    }
    unicast_ttl 32
    check_unicast_src
    v3_checksum_as_v2 off
    garp_master_delay 10
    garp_master_repeat 3
    garp_lower_prio_delay 7
    garp_lower_prio_repeat 2
    garp_master_refresh 60
    garp_master_refresh_repeat 4
    garp_interval 0.001
    gna_interval 0.000001
    lower_prio_no_advert yes
    higher_prio_send_advert false
    down_timer_adverts 5
}
"#,
        );
        let i = &c.instances[0];
        assert_eq!(i.name, "VI_1");
        assert_eq!((i.span.line, i.span.col), (2, 1));
        assert_eq!(i.state, InitialState::Master);
        assert_eq!(i.interface, "eth0");
        assert_eq!(i.virtual_router_id, 51);
        assert_eq!(i.priority, 150);
        assert_eq!(i.advert_int, Duration::from_secs(2));
        assert_eq!(i.version, Some(2));
        assert_eq!(
            i.virtual_ipaddress[0],
            VirtualAddress {
                addr: ip("192.168.200.16"),
                prefix_len: 24,
                brd: Some(ip("192.168.200.255")),
                dev: Some("eth1".into()),
                scope: Some(253),
                label: Some("eth1:1".into()),
                track_group: None,
                no_track: false,
                peer: None,
                flags: 0,
                dad: false,
                preferred_lft: None,
                use_vmac: false,
                span: Span {
                    file: Path::new("/etc/keepalived/keepalived.conf").into(),
                    line: 10,
                    col: 9
                },
            }
        );
        assert_eq!(i.virtual_ipaddress[1].prefix_len, 32);
        assert!(!i.nopreempt);
        assert_eq!(i.accept, Some(true));
        assert_eq!(i.auth, Some(Auth::Pass("s3cr et".into())));
        assert_eq!(i.mcast_src_ip, Some(ip("192.168.200.1")));
        assert_eq!(i.unicast_src_ip, Some(ip("192.168.200.1")));
        assert_eq!(
            i.unicast_peers,
            vec![
                UnicastPeer {
                    addr: ip("192.168.200.2"),
                    min_ttl: Some(10),
                    max_ttl: Some(64)
                },
                UnicastPeer {
                    addr: ip("192.168.200.3"),
                    min_ttl: None,
                    max_ttl: None
                },
            ]
        );
        assert_eq!(i.unicast_ttl, Some(32));
        assert!(i.check_unicast_src);
        assert!(!i.v3_checksum_as_v2);
        let g = &i.garp;
        assert_eq!(g.master_delay, Some(Duration::from_secs(10)));
        assert_eq!(g.master_repeat, Some(3));
        assert_eq!(g.lower_prio_delay, Some(Duration::from_secs(7)));
        assert_eq!(g.lower_prio_repeat, Some(2));
        assert_eq!(g.master_refresh, Some(Duration::from_secs(60)));
        assert_eq!(g.master_refresh_repeat, Some(4));
        assert_eq!(g.garp_interval, Some(Duration::from_millis(1)));
        assert_eq!(g.gna_interval, Some(Duration::from_micros(1)));
        assert_eq!(i.lower_prio_no_advert, Some(true));
        assert_eq!(i.higher_prio_send_advert, Some(false));
        assert_eq!(i.down_timer_adverts, Some(5));
    }

    #[test]
    fn defaults_follow_keepalived() {
        let c = config(&instance_with(""));
        let i = &c.instances[0];
        assert_eq!(i.state, InitialState::Backup);
        assert_eq!(i.priority, 100);
        assert_eq!(i.advert_int, Duration::from_secs(1));
        assert_eq!(i.version, None);
        assert!(!i.nopreempt);
        assert_eq!(i.preempt_delay, Duration::ZERO);
        assert_eq!(i.accept, None);
        assert_eq!(i.auth, None);
        assert_eq!(*i.garp, GarpSettings::default());
        assert_eq!(i.down_timer_adverts, None);
        assert_eq!(c.global, GlobalDefs::default());
    }

    #[test]
    fn global_defs_map_every_supported_keyword() {
        let c = config(
            r#"
global_defs {
    router_id LVS_DEVEL
    vrrp_version 3
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 2
    vrrp_garp_lower_prio_delay 3
    vrrp_garp_lower_prio_repeat 4
    vrrp_garp_master_refresh 5
    vrrp_garp_master_refresh_repeat 6
    vrrp_garp_interval 0.5
    vrrp_gna_interval 0.25
    vrrp_min_garp true
    vrrp_rt_priority 50
    vrrp_lower_prio_no_advert
    vrrp_higher_prio_send_advert on
    vrrp_check_unicast_src
}
"#,
        );
        let g = &c.global;
        assert_eq!(g.router_id.as_deref(), Some("LVS_DEVEL"));
        assert_eq!(g.vrrp_version, Some(3));
        assert_eq!(g.garp.master_delay, Some(Duration::from_secs(1)));
        assert_eq!(g.garp.master_repeat, Some(2));
        assert_eq!(g.garp.lower_prio_delay, Some(Duration::from_secs(3)));
        assert_eq!(g.garp.lower_prio_repeat, Some(4));
        assert_eq!(g.garp.master_refresh, Some(Duration::from_secs(5)));
        assert_eq!(g.garp.master_refresh_repeat, Some(6));
        assert_eq!(g.garp.garp_interval, Some(Duration::from_millis(500)));
        assert_eq!(g.garp.gna_interval, Some(Duration::from_millis(250)));
        assert!(g.vrrp_min_garp);
        assert_eq!(g.vrrp_rt_priority, Some(50));
        assert!(g.lower_prio_no_advert);
        assert!(g.higher_prio_send_advert);
        assert!(g.check_unicast_src);
        assert!(c.instances.is_empty());
    }

    #[test]
    fn dump_file_keywords_map_and_are_active() {
        let text = "instance ka1\nglobal_defs {\n  state_dump_file /run/ka/\n  stats_file_location /run/ka/s.txt\n  json_dump_file j.json\n  json_version 2\n  data_use_instance\n  config_save_dir /var/tmp/ka-save\n  net_namespace blue\n}\n";
        let l = load(text).expect("warnings only");
        let g = &l.config.global;
        assert_eq!(g.dumps.state_file.as_deref(), Some("/run/ka/"));
        assert_eq!(g.dumps.stats_file.as_deref(), Some("/run/ka/s.txt"));
        assert_eq!(g.dumps.json_file.as_deref(), Some("j.json"));
        assert_eq!(g.dumps.json_version, Some(2));
        assert!(g.dumps.data_use_instance);
        assert_eq!(g.dumps.instance.as_deref(), Some("ka1"));
        assert_eq!(g.dumps.net_namespace.as_deref(), Some("blue"));
        assert_eq!(g.config_save_dir.as_deref(), Some("/var/tmp/ka-save"));
        // `instance` names the dump files, `vipd run` enters `net_namespace`.
        assert_eq!(l.inactive().count(), 0);
        let c = config("global_defs {\n  data_use_instance false\n  state_file_location /a/b.data\n  state_dump_file /c/\n}\n");
        assert!(!c.global.dumps.data_use_instance);
        assert_eq!(
            c.global.dumps.state_file.as_deref(),
            Some("/c/"),
            "last one wins"
        );
        assert_eq!(c.global.dumps.json_version, None);
        assert_eq!(errors("global_defs {\n  json_version 3\n}\n").len(), 1);
    }

    #[test]
    fn old_unicast_checksum_maps_never_and_warns_on_other_words() {
        let l = load(&instance_with("    old_unicast_checksum")).expect("warnings only");
        assert_eq!(l.inactive().count(), 0);
        assert!(l.config.instances[0].old_unicast_checksum);
        let l = load(&instance_with("    old_unicast_checksum never")).expect("warnings only");
        assert!(!l.config.instances[0].old_unicast_checksum);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let l = load(&instance_with("    old_unicast_checksum always")).expect("warnings only");
        assert!(!l.config.instances[0].old_unicast_checksum);
        assert!(
            l.diagnostics.iter().any(|d| d
                .message
                .contains("unknown `old_unicast_checksum` mode `always`")),
            "{:?}",
            l.diagnostics
        );
    }

    #[test]
    fn nftables_keywords_map_or_warn_why_vipd_needs_none() {
        let text =
            "global_defs {\n  nftables ka_tab\n  nftables_priority -20\n  nftables_counters\n  \
                    nftables_ifindex\n  nftables_ipvs ka_ipvs\n  nftables_ipvs_priority 5\n  \
                    nftables_ipvs_start_fwmark 2000\n}\n";
        let l = load(text).expect("warnings only");
        assert_eq!(l.inactive().count(), 0, "{:?}", l.diagnostics);
        let g = &l.config.global;
        assert_eq!(g.nftables_table.as_deref(), Some("ka_tab"));
        assert_eq!(g.nftables_priority, Some(-20));
        assert!(g.nftables_counters);
        for kw in [
            "nftables_ifindex",
            "nftables_ipvs",
            "nftables_ipvs_priority",
            "nftables_ipvs_start_fwmark",
        ] {
            assert!(
                l.diagnostics.iter().any(|d| d
                    .message
                    .starts_with(&format!("`{kw}` needs nothing in vipd"))),
                "{kw}: {:?}",
                l.diagnostics
            );
        }
        let bare = load("global_defs {\n  nftables\n}\n").expect("warnings only");
        assert_eq!(
            bare.config.global.nftables_table, None,
            "vipd's default name"
        );
        assert_eq!(bare.inactive().count(), 0);
    }

    #[test]
    fn thread_tuning_keywords_map_and_are_active() {
        let text = "global_defs {\n  vrrp_cpu_affinity 0 1\n  checker_cpu_affinity 1\n  vrrp_rlimit_rttime 20000\n  checker_rlimit_rttime 30000\n  max_auto_priority\n  min_auto_priority_delay 5000\n}\n";
        let l = load(text).expect("warnings only");
        let g = &l.config.global;
        assert_eq!(g.vrrp_cpu_affinity, [0, 1]);
        assert_eq!(g.checker_cpu_affinity, [1]);
        assert_eq!(g.vrrp_rlimit_rttime, Some(20000));
        assert_eq!(g.checker_rlimit_rttime, Some(30000));
        assert_eq!(
            g.max_auto_priority, 99,
            "a bare keyword is the highest priority"
        );
        assert_eq!(g.min_auto_priority_delay, Some(5000));
        assert_eq!(l.inactive().count(), 0);
        for (v, want) in [("-1", 0), ("0", 0), ("7", 7)] {
            let c = config(&format!("global_defs {{\n  max_auto_priority {v}\n}}\n"));
            assert_eq!(c.global.max_auto_priority, want, "{v}");
        }
        // keepalived's ranges; every bad CPU number is reported.
        assert_eq!(
            errors("global_defs {\n  max_auto_priority 100\n}\n").len(),
            1
        );
        assert_eq!(
            errors("global_defs {\n  min_auto_priority_delay 0\n}\n").len(),
            1
        );
        assert_eq!(
            errors("global_defs {\n  vrrp_cpu_affinity x 0 -1\n}\n").len(),
            2
        );
        assert_eq!(
            errors("global_defs {\n  checker_cpu_affinity\n}\n").len(),
            1
        );
    }

    #[test]
    fn startup_and_shutdown_scripts_map_and_are_active() {
        let text = "global_defs {\n  startup_script \"/bin/up a\" nobody\n  startup_script /bin/other\n  startup_script_timeout 3\n  shutdown_script /bin/down\n  shutdown_script_timeout 1000\n}\n";
        let l = load(text).expect("warnings only");
        let g = &l.config.global;
        let up = g.startup_script.as_ref().unwrap();
        assert_eq!(
            (up.command.as_str(), up.user.as_deref()),
            ("/bin/up a", Some("nobody")),
            "the first one, as keepalived"
        );
        assert_eq!(g.startup_script_timeout, Some(3));
        assert_eq!(g.shutdown_script.as_ref().unwrap().command, "/bin/down");
        assert_eq!(g.shutdown_script_timeout, Some(1000));
        assert_eq!(l.inactive().count(), 0);
        assert_eq!(
            errors("global_defs {\n  startup_script_timeout 0\n}\n").len(),
            1
        );
        assert_eq!(
            errors("global_defs {\n  shutdown_script_timeout 1001\n}\n").len(),
            1
        );
    }

    #[test]
    fn instance_debug_is_covered_by_design_with_a_warning() {
        let l = load(&instance_with("    debug 2")).expect("warnings only");
        assert_eq!(l.inactive().count(), 0);
        assert!(
            l.diagnostics
                .iter()
                .any(|d| d.message.starts_with("`debug` needs nothing in vipd")),
            "{:?}",
            l.diagnostics
        );
        assert_eq!(errors(&instance_with("    debug 5")).len(), 1);
    }

    #[test]
    fn pid_dir_and_ipsets_daemon_options_are_covered_with_a_warning() {
        let l = load("use_pid_dir\nnamespace_with_ipsets\ninstance ka2\n").expect("warnings only");
        assert_eq!(l.inactive().count(), 0);
        for kw in ["use_pid_dir", "namespace_with_ipsets"] {
            assert!(
                l.diagnostics.iter().any(|d| d
                    .message
                    .starts_with(&format!("`{kw}` needs nothing in vipd"))),
                "{kw}: {:?}",
                l.diagnostics
            );
        }
        assert_eq!(l.config.global.dumps.instance.as_deref(), Some("ka2"));
    }

    #[test]
    fn garp_extra_if_maps_and_checks_its_words() {
        let l = load(&instance_with("    garp_extra_if all 60").replace(
            "vrrp_instance",
            "global_defs {\n  vrrp_garp_extra_if 30\n  vrrp_garp_extra_if_vmac 5\n}\nvrrp_instance",
        ))
        .expect("warnings only");
        assert_eq!(l.inactive().count(), 0);
        let x = l.config.instances[0].garp_extra_if.unwrap();
        assert_eq!((x.interval, x.all), (60, true));
        let g = l.config.global.garp_extra_if.unwrap();
        assert_eq!((g.interval, g.all), (30, false));
        // Not a keyword of keepalived: accepted with a warning, as it ignores it.
        assert!(l.diagnostics.iter().any(|d| d
            .message
            .starts_with("`vrrp_garp_extra_if_vmac` needs nothing")));
        for bad in ["all", "86401", "1 2", "x"] {
            assert_eq!(
                errors(&instance_with(&format!("    garp_extra_if {bad}"))).len(),
                1,
                "{bad}"
            );
        }
    }

    #[test]
    fn nopreempt_spellings_and_preempt_delay() {
        for kw in ["nopreempt", "no_preempt"] {
            let c = config(&instance_with(&format!("    {kw}\n    preempt_delay 4.12")));
            assert!(c.instances[0].nopreempt, "{kw}");
            assert_eq!(c.instances[0].preempt_delay, Duration::from_millis(4120));
        }
    }

    #[test]
    fn unknown_keyword_suggests_a_fix() {
        let d = one_error(&instance_with("    priorty 100"));
        assert_eq!(d.message, "unknown keyword `priorty`");
        assert_eq!(d.help.as_deref(), Some("did you mean `priority`?"));
        assert_eq!((d.span.line, d.span.col, d.len), (8, 5, 7));
        let d = one_error("global_defs {\n  router_di x\n}\n");
        assert_eq!(d.help.as_deref(), Some("did you mean `router_id`?"));
        let d = one_error("vrrp_instanse VI {\n}\n");
        assert_eq!(d.message, "unknown keyword `vrrp_instanse`");
        assert_eq!(d.help.as_deref(), Some("did you mean `vrrp_instance`?"));
        let d = one_error(&instance_with("    frobnicate"));
        assert_eq!(d.message, "unknown keyword `frobnicate`");
        assert_eq!(d.help, None);
    }

    /// Suggestions are worked out once per word and block in a load; every occurrence
    /// still gets its own error with the same help, and another block's lists give
    /// their own answer for the same word.
    #[test]
    fn repeated_unknown_keywords_get_the_same_help_each_time() {
        let text = "global_defs {\n  priorty 1\n  priorty 2\n  router_di x\n}\n\
                    vrrp_instance VI {\n  priorty 1\n  router_di x\n  priorty 2\n  router_di y\n  frob\n  frob\n}\n";
        let got: Vec<(String, Option<String>, u32)> = load(text)
            .expect_err("unknown keywords")
            .into_iter()
            .filter(|d| d.message.starts_with("unknown keyword"))
            .map(|d| (d.message, d.help, d.span.line))
            .collect();
        let e = |w: &str, help: Option<&str>, line| {
            (
                format!("unknown keyword `{w}`"),
                help.map(str::to_string),
                line,
            )
        };
        let in_instance = "did you mean `priority`? (it belongs inside a `vrrp_instance` block)";
        let in_globals = "did you mean `router_id`? (it belongs inside a `global_defs` block)";
        assert_eq!(
            got,
            [
                e("priorty", Some(in_instance), 2),
                e("priorty", Some(in_instance), 3),
                e("router_di", Some("did you mean `router_id`?"), 4),
                e("priorty", Some("did you mean `priority`?"), 7),
                e("router_di", Some(in_globals), 8),
                e("priorty", Some("did you mean `priority`?"), 9),
                e("router_di", Some(in_globals), 10),
                e("frob", None, 11),
                e("frob", None, 12),
            ]
        );
    }

    /// (message, line, col) of every "parsed but not active yet" warning.
    fn inactive(text: &str) -> Vec<(String, u32, u32)> {
        let l = load(text).expect("warnings only");
        assert!(l
            .diagnostics
            .iter()
            .all(|d| d.severity == Severity::Warning));
        l.inactive()
            .map(|d| (d.message.clone(), d.span.line, d.span.col))
            .collect()
    }

    #[test]
    fn script_keywords_take_a_user_and_group_as_keepalived_does() {
        let l = load(&instance_with("    notify_master /bin/x root")).unwrap();
        assert_eq!(
            l.config.instances[0].notify.master,
            Some(ScriptCommand {
                command: "/bin/x".into(),
                user: Some("root".into())
            })
        );
        let l = load(&instance_with("    notify_backup /bin/x nobody nogroup")).unwrap();
        assert_eq!(
            l.config.instances[0]
                .notify
                .backup
                .as_ref()
                .unwrap()
                .user
                .as_deref(),
            Some("nobody nogroup")
        );
        // Quoted: one command with its arguments.
        let l = load(&instance_with("    notify_master \"/bin/x root\"")).unwrap();
        assert_eq!(
            l.config.instances[0].notify.master,
            Some(ScriptCommand::new("/bin/x root"))
        );
        // A fourth word is an error, pointing at it.
        let d = one_error(&instance_with("    notify_master /bin/x a b c"));
        assert_eq!(
            d.message,
            "`notify_master` takes a command and at most a user and a group; `c` is one word too many"
        );
    }

    #[test]
    fn inactive_inside_virtual_server_depends_on_the_block() {
        let text = "virtual_server 192.0.2.100 80 {\n  alpha\n  real_server 192.0.2.11 80 {\n    alpha\n    virtualhost www\n    HTTP_GET {\n      url {\n        path /\n        regex ok\n        regex_no_match\n        regex_options caseless\n      }\n    }\n    SMTP_CHECK {\n      host {\n        connect_ip 192.0.2.11\n      }\n    }\n  }\n}\n";
        // `regex_options` and SMTP_CHECK's `host` blocks are active.
        assert_eq!(inactive(text), Vec::<(String, u32, u32)>::new());
        let l = load(text).unwrap();
        let rs = &l.config.virtual_servers[0].real_servers[0];
        assert_eq!(
            (rs.alpha, rs.virtualhost.as_deref()),
            (Some(true), Some("www"))
        );
        assert!(rs.checkers[0].urls[0].regex_no_match);
        assert_eq!(
            rs.checkers[0].urls[0].regex_options.as_deref(),
            Some("caseless")
        );
        let host = &rs.checkers[1].hosts[0];
        assert_eq!(host.connect_ip, Some("192.0.2.11".parse().unwrap()));
        assert_eq!(host.span.line, 15);
    }

    #[test]
    fn repeated_vips_and_peers_are_dropped_with_a_warning() {
        let l = load("vrrp_instance V {\n interface eth0\n virtual_router_id 1\n priority 100\n unicast_peer {\n  192.0.2.2\n  192.0.2.2\n  192.0.2.3\n }\n virtual_ipaddress {\n  192.0.2.1/24\n  192.0.2.1/24 dev eth1\n  192.0.2.1/24\n }\n}\n").unwrap();
        let i = &l.config.instances[0];
        let peers: Vec<String> = i.unicast_peers.iter().map(|p| p.addr.to_string()).collect();
        assert_eq!(peers, ["192.0.2.2", "192.0.2.3"]);
        let vips: Vec<Option<&str>> = i
            .virtual_ipaddress
            .iter()
            .map(|v| v.dev.as_deref())
            .collect();
        assert_eq!(vips, [None, Some("eth1")]);
        let lines: Vec<u32> = l.diagnostics.iter().map(|d| d.span.line).collect();
        assert_eq!(lines, [7, 13], "{:?}", l.diagnostics);
    }

    #[test]
    fn garp_master_repeat_0_becomes_1_and_excluded_repeats_are_dropped() {
        let l = load("global_defs {\n vrrp_garp_master_repeat 0\n}\nvrrp_instance V {\n interface eth0\n virtual_router_id 1\n priority 100\n garp_master_repeat 0\n virtual_ipaddress {\n  192.0.2.1/24\n }\n virtual_ipaddress_excluded {\n  192.0.2.1/24\n  192.0.2.9/24\n  192.0.2.9/24\n }\n}\n").unwrap();
        assert_eq!(l.config.global.garp.master_repeat, Some(1));
        let i = &l.config.instances[0];
        assert_eq!(i.garp.master_repeat, Some(1));
        let excluded: Vec<String> = i
            .virtual_ipaddress_excluded
            .iter()
            .map(|v| v.addr.to_string())
            .collect();
        assert_eq!(excluded, ["192.0.2.9"]);
        assert_eq!(l.diagnostics.len(), 4, "{:?}", l.diagnostics);
    }

    #[test]
    fn keywords_once_inactive_are_active_now() {
        let text = format!(
            "global_defs {{\n  vrrp_strict\n  snmp_vs_stats_update_interval 5\n  notification_email {{\n    a@b.c\n  }}\n}}\nvrrp_script chk {{\n  script \"/bin/true\"\n}}\nvirtual_server 10.0.0.1 80 {{\n  smtp_alert\n}}\n{}",
            instance_with("    track_script {\n        chk\n    }\n    notify_master /bin/x\n    use_vmac\n    use_vmac_addr\n    strict_mode on\n    accept")
        );
        let got = inactive(&text);
        // vrrp_strict, notification_email, vrrp_script, track_script, notify_master,
        // use_vmac, use_vmac_addr, strict_mode, virtual_server and its smtp_alert, and
        // snmp_vs_stats_update_interval (the last one inactive) are active: no warning.
        assert_eq!(got, Vec::<(String, u32, u32)>::new());
        assert_eq!(
            load(&text)
                .unwrap()
                .config
                .global
                .snmp_vs_stats_update_interval,
            Some(std::time::Duration::from_secs(5))
        );
        let l = load(&text).unwrap();
        let i = &l.config.instances[0];
        assert_eq!(i.track.scripts[0].name, "chk");
        assert_eq!(i.notify.master, Some(ScriptCommand::new("/bin/x")));
        assert_eq!(*i.use_vmac, Some(UseVmac::default()));
        assert_eq!(i.strict_mode, Some(true));
        assert!(l.config.global.vrrp_strict);
        assert_eq!(l.config.global.notification_email, ["a@b.c"]);
        assert_eq!(l.config.scripts[0].script, "/bin/true");
        assert!(l.inactive().all(|d| d.code == Some(crate::INACTIVE)));
    }

    #[test]
    fn inactive_keywords_still_get_their_arguments_checked() {
        let e = errors(&instance_with(
            "    track_script {\n        chk weight 300\n        chk2 wieght 3\n    }\n    notify_master\n    smtp_alert maybe\n    debug 9\n    dont_track_primary yes",
        ));
        let got: Vec<_> = e.iter().map(|(m, l, c)| (m.as_str(), *l, *c)).collect();
        assert_eq!(
            got,
            vec![
                (
                    "`weight` must be an integer in -253..=253, found `300`",
                    9,
                    20
                ),
                ("unexpected `wieght` after `chk2`", 10, 14),
                ("`notify_master` needs a value", 12, 5),
                ("`smtp_alert` expects a boolean, found `maybe`", 13, 16),
                ("`debug` must be an integer in 0..=4, found `9`", 14, 11),
                (
                    "`dont_track_primary` takes no arguments, found `yes`",
                    15,
                    24
                ),
            ]
        );
    }

    #[test]
    fn keyword_in_the_wrong_block_says_where_it_belongs() {
        let d = one_error("priority 100\n");
        assert_eq!(d.message, "keyword `priority` is not valid at top level");
        assert_eq!(
            d.help.as_deref(),
            Some("it belongs inside a `vrrp_instance` block")
        );
        let d = one_error(&instance_with("    router_id x"));
        assert_eq!(
            d.help.as_deref(),
            Some("it belongs inside a `global_defs` block")
        );
        let d = one_error(&instance_with("    auth_pass x"));
        assert_eq!(
            d.help.as_deref(),
            Some("it belongs inside an `authentication` block")
        );
    }

    #[test]
    fn argument_count_and_block_shape_errors() {
        let e = errors(&instance_with(
            "    priority\n    state MASTER BACKUP\n    accept yes\n    preempt_delay 1 {\n    }\n    authentication\n",
        ));
        assert_eq!(
            e,
            vec![
                ("`priority` needs a value".to_string(), 8, 5),
                (
                    "unexpected extra argument `BACKUP` for `state`".to_string(),
                    9,
                    18
                ),
                (
                    "`accept` takes no arguments, found `yes`".to_string(),
                    10,
                    12
                ),
                ("`preempt_delay` does not take a block".to_string(), 11, 21),
                (
                    "`authentication` needs a `{ ... }` block".to_string(),
                    13,
                    5
                ),
            ]
        );
        let d = one_error("vrrp_instance {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n");
        assert_eq!(d.message, "`vrrp_instance` needs a name");
        let d = one_error("vrrp_instance VI_1\n");
        assert_eq!(d.message, "`vrrp_instance` needs a `{ ... }` block");
    }

    #[test]
    fn value_range_errors_point_at_the_value() {
        let e = errors(&instance_with(
            "    priority 0\n    priority 256\n    state master\n    advert_int 0\n    advert_int fast\n    version 4\n    preempt_delay 1001\n    unicast_ttl -1\n    down_timer_adverts 101\n    lower_prio_no_advert maybe\n    mcast_src_ip eth0",
        ));
        let got: Vec<_> = e.iter().map(|(m, l, c)| (m.as_str(), *l, *c)).collect();
        assert_eq!(
            got,
            vec![
                ("`priority` must be an integer in 1..=255, found `0`", 8, 14),
                (
                    "`priority` must be an integer in 1..=255, found `256`",
                    9,
                    14
                ),
                ("invalid state `master`", 10, 11),
                ("`advert_int` must be greater than 0", 11, 16),
                (
                    "`advert_int` must be a number of seconds in 0..=255, found `fast`",
                    12,
                    16
                ),
                ("`version` must be an integer in 2..=3, found `4`", 13, 13),
                (
                    "`preempt_delay` must be a number of seconds in 0..=1000, found `1001`",
                    14,
                    19
                ),
                (
                    "`unicast_ttl` must be an integer in 0..=255, found `-1`",
                    15,
                    17
                ),
                (
                    "`down_timer_adverts` must be an integer in 1..=100, found `101`",
                    16,
                    24
                ),
                (
                    "`lower_prio_no_advert` expects a boolean, found `maybe`",
                    17,
                    26
                ),
                ("`mcast_src_ip` expects an IP address, found `eth0`", 18, 18),
            ]
        );
    }

    #[test]
    fn global_value_errors() {
        let e = errors("global_defs {\n vrrp_version 1\n vrrp_rt_priority 100\n vrrp_garp_interval x\n vrrp_min_garp 2\n}\n");
        let got: Vec<_> = e.iter().map(|(m, l, c)| (m.as_str(), *l, *c)).collect();
        assert_eq!(
            got,
            vec![
                (
                    "`vrrp_version` must be an integer in 2..=3, found `1`",
                    2,
                    15
                ),
                (
                    "`vrrp_rt_priority` must be an integer in 1..=99, found `100`",
                    3,
                    19
                ),
                (
                    "`vrrp_garp_interval` must be a number of seconds in 0..=255, found `x`",
                    4,
                    21
                ),
                ("`vrrp_min_garp` expects a boolean, found `2`", 5, 16),
            ]
        );
    }

    #[test]
    fn virtual_ipaddress_one_line_list_and_options() {
        let c = config(
            "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress { 192.0.2.1/24 192.0.2.2 dev eth1 192.0.2.3 }\n}\n",
        );
        let v = &c.instances[0].virtual_ipaddress;
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].prefix_len, 24);
        assert_eq!(v[1].dev.as_deref(), Some("eth1"));
        assert_eq!(v[2].dev, None);
        assert_eq!((v[2].span.line, v[2].span.col), (4, 54));
        let c = config(
            "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  2001:db8::1/64 scope 253\n  fe80::1\n }\n}\n",
        );
        let v = &c.instances[0].virtual_ipaddress;
        assert_eq!(v[0].scope, Some(253));
        assert_eq!(v[1].prefix_len, 128);
    }

    #[test]
    fn virtual_ipaddress_errors() {
        let e = errors(&instance_with(
            "    virtual_ipaddress {\n        192.0.2.9/33\n        192.0.2.10 dev\n        192.0.2.11 lable x\n        192.0.2.12 scope galaxy\n        192.0.2.13 no_track\n        192.0.2.14 peer 192.0.2.99 home\n        host.example\n        192.0.2.15 brd +\n    }",
        ));
        let got: Vec<_> = e.iter().map(|(m, l, c)| (m.as_str(), *l, *c)).collect();
        assert_eq!(
            got,
            vec![
                (
                    "invalid virtual_ipaddress entry: invalid prefix length `/33` (must be 0..=32)",
                    9,
                    9
                ),
                ("`dev` needs a value", 10, 20),
                ("unknown virtual_ipaddress option `lable`", 11, 20),
                ("invalid scope `galaxy`", 12, 26),
                (
                    "invalid virtual_ipaddress entry: `host.example` is not an IP address",
                    15,
                    9
                ),
            ]
        );
        let d = one_error(&instance_with(
            "    virtual_ipaddress {\n        192.0.2.11 lable x\n    }",
        ));
        assert_eq!(d.help.as_deref(), Some("did you mean `label`?"));
        let got = inactive(&instance_with(
            "    virtual_ipaddress {\n        192.0.2.13 no_track\n        192.0.2.14 peer 192.0.2.99\n        192.0.2.15 brd +\n    }",
        ));
        let got: Vec<_> = got.iter().map(|(m, l, c)| (m.as_str(), *l, *c)).collect();
        assert_eq!(got, vec![("`brd +` is parsed but not active yet", 11, 24)]);
    }

    /// keepalived 2.4.3's `alloc_ipaddress` options, the same on the three kinds of
    /// address lines (the kernel flags, the peer, the lifetime, no_track).
    #[test]
    fn address_options_are_read_on_every_kind_of_address_line() {
        let v6 = "2001:db8::1/64 dev eth1 home -nodad mngtmpaddr noprefixroute no_track preferred_lft 30\n  2001:db8::2 preferred_lft forever\n  2001:db8::3";
        let v4 = "192.0.2.1 peer 192.0.2.2 noprefixroute\n  233.252.0.1 autojoin";
        let inst = |vrid, vips, excluded| {
            format!("vrrp_instance V{vrid} {{\n interface eth0\n virtual_router_id {vrid}\n virtual_ipaddress {{\n  {vips}\n }}\n virtual_ipaddress_excluded {{\n  {excluded}\n }}\n}}\n")
        };
        let c = config(&format!(
            "{}{}static_ipaddress {{\n  {v6}\n  {v4}\n}}\n",
            inst(9, v6, v4),
            inst(10, v4, v6)
        ));
        let (i6, i4) = (&c.instances[0], &c.instances[1]);
        let all: Vec<&VirtualAddress> = [
            &i6.virtual_ipaddress,
            &i6.virtual_ipaddress_excluded,
            &i4.virtual_ipaddress,
            &i4.virtual_ipaddress_excluded,
            &c.static_ipaddress,
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(all.len(), 15);
        let find = |a: &str| {
            let a = ip(a);
            all.iter().filter(move |v| v.addr == a)
        };
        for a in find("2001:db8::1") {
            let f = VirtualAddress::HOME | VirtualAddress::MNGTMPADDR;
            assert_eq!(a.flags, f | VirtualAddress::NOPREFIXROUTE);
            assert!(a.dad && a.no_track);
            assert_eq!(
                (a.preferred_lft, a.effective_preferred_lft()),
                (Some(30), Some(30))
            );
        }
        for a in find("192.0.2.1") {
            assert_eq!((a.peer, a.prefix_len), (Some(ip("192.0.2.2")), 32));
            assert_eq!(a.flags, VirtualAddress::NOPREFIXROUTE);
            assert!(!a.dad && !a.no_track);
            assert_eq!(a.effective_preferred_lft(), None, "IPv4: none");
        }
        for a in find("233.252.0.1") {
            assert_eq!(a.flags, VirtualAddress::AUTOJOIN);
        }
        for a in find("2001:db8::2") {
            assert_eq!(a.preferred_lft, Some(VirtualAddress::FOREVER));
            // forever: no lifetime sent
            assert_eq!(a.effective_preferred_lft(), None);
        }
        for a in find("2001:db8::3") {
            // keepalived: a /128 without preferred_lft is deprecated (0).
            assert_eq!(a.effective_preferred_lft(), Some(0));
        }
        assert_eq!(find("2001:db8::3").count(), 3);
    }

    #[test]
    fn address_option_errors_and_ipv4_warnings_are_at_their_word() {
        let body = "  192.0.2.1/24 peer 192.0.2.2\n  192.0.2.3 peer 2001:db8::1\n  192.0.2.4 peer 192.0.2.5/24\n  2001:db8::4/48 mngtmpaddr\n  192.0.2.6 autojoin\n  2001:db8::5 nodad\n  192.0.2.7 brd 192.0.2.255 peer 192.0.2.8\n  192.0.2.9 peer 192.0.2.8 brd 192.0.2.255\n  2001:db8::6 preferred_lft soon\n  192.0.2.10 peer 192.0.2.8 peer 192.0.2.11\n  192.0.2.12 preferred_lft\n";
        let want = |l: u32| {
            vec![
                ("192.0.2.1/24 has a prefix and a `peer`: keepalived ignores the prefix".to_string(), l, 16),
                ("peer 2001:db8::1 is not of 192.0.2.3's address family".to_string(), l + 1, 18),
                ("invalid peer address `192.0.2.5/24` (an address without mask, as in keepalived)".to_string(), l + 2, 18),
                ("`mngtmpaddr` needs a /64 address (the kernel refuses it on 2001:db8::4/48)".to_string(), l + 3, 18),
                ("`autojoin` joins a multicast group: 192.0.2.6 is not a multicast address (the kernel refuses it)".to_string(), l + 4, 13),
                ("unknown address option `nodad`".to_string(), l + 5, 15),
                ("192.0.2.7 has both `brd` and `peer`: keepalived ignores the brd".to_string(), l + 6, 29),
                ("192.0.2.9 has both `peer` and `brd`: keepalived ignores the brd".to_string(), l + 7, 32),
                ("invalid preferred_lft `soon` (seconds, or `forever`)".to_string(), l + 8, 29),
                ("a second `peer` for 192.0.2.10".to_string(), l + 9, 29),
                ("`preferred_lft` needs a value".to_string(), l + 10, 14),
            ]
        };
        let vip = format!(
            "vrrp_instance V {{\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {{\n 192.0.2.99\n }}\n virtual_ipaddress_excluded {{\n{body} }}\n}}\n"
        );
        assert_eq!(errors(&vip), want(8));
        let vip = String::from(
            "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.1/24 peer 192.0.2.2\n  192.0.2.6 autojoin\n  192.0.2.12 nodad\n }\n}\n"
        );
        let e = errors(&vip);
        assert_eq!((e[0].1, e[0].2), (5, 16), "{e:?}");
        assert_eq!((e[1].1, e[1].2), (6, 13), "{e:?}");
        assert_eq!(e[2], ("unknown address option `nodad`".to_string(), 7, 14));
        let stat = format!("static_ipaddress {{\n{body}}}\n");
        assert_eq!(errors(&stat), want(2));
        // Meaningless for IPv4, ignored by keepalived: a warning at the word.
        let l = load("static_ipaddress {\n  192.0.2.1 home -nodad mngtmpaddr preferred_lft 0\n}\n")
            .unwrap();
        let got: Vec<_> = l
            .diagnostics
            .iter()
            .map(|d| (d.message.as_str(), d.span.col))
            .collect();
        assert_eq!(
            got,
            vec![
                ("`home` applies to IPv6 addresses only: not set for 192.0.2.1 (as keepalived does)", 13),
                ("`-nodad` applies to IPv6 addresses only: ignored for 192.0.2.1 (as keepalived does)", 18),
                ("`mngtmpaddr` applies to IPv6 addresses only: not set for 192.0.2.1 (as keepalived does)", 25),
                ("`preferred_lft` applies to IPv6 addresses only: ignored for 192.0.2.1 (as keepalived does)", 36),
            ]
        );
        let a = &l.config.static_ipaddress[0];
        assert_eq!((a.flags, a.dad), (0, false));
        // track_group only on static lines, use_vmac not there (keepalived: unknown).
        let e = errors("static_ipaddress {\n  192.0.2.1 use_vmac\n}\n");
        assert_eq!(
            e,
            vec![("unknown address option `use_vmac`".to_string(), 2, 13)]
        );
        let e = errors("vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.1\n }\n virtual_ipaddress_excluded {\n  192.0.2.2 track_group G\n }\n}\n");
        assert_eq!(
            e,
            vec![("unknown address option `track_group`".to_string(), 8, 13)]
        );
    }

    #[test]
    fn unicast_peer_errors() {
        let e = errors(&instance_with(
            "    unicast_peer {\n        192.0.2.7 min_ttl 300\n        192.0.2.8 maxttl 3\n        peer.example\n    }",
        ));
        let got: Vec<_> = e.iter().map(|(m, l, c)| (m.as_str(), *l, *c)).collect();
        assert_eq!(
            got,
            vec![
                (
                    "`min_ttl` must be an integer in 0..=255, found `300`",
                    9,
                    27
                ),
                ("invalid unicast_peer entry `maxttl`", 10, 19),
                ("invalid unicast_peer entry `peer.example`", 11, 9),
            ]
        );
    }

    #[test]
    fn authentication_rules() {
        let l = load(&instance_with(
            "    authentication {\n        auth_type AH\n        auth_pass x\n    }",
        ))
        .unwrap();
        assert_eq!(l.inactive().count(), 0, "`auth_type AH` is active");
        assert_eq!(l.config.instances[0].auth, Some(Auth::Ah("x".into())));
        let e = errors(&instance_with(
            "    authentication {\n        auth_pass x\n    }\n    authentication {\n        auth_type PASS\n        auth_tpye PASS\n    }\n    authentication {\n        auth_type MD5\n        auth_pass x\n    }",
        ));
        let got: Vec<_> = e.iter().map(|(m, l, c)| (m.as_str(), *l, *c)).collect();
        assert_eq!(
            got,
            vec![
                ("`authentication` has no `auth_type`", 8, 5),
                ("`authentication` has no `auth_pass`", 11, 5),
                ("unknown keyword `auth_tpye`", 13, 9),
                ("invalid auth_type `MD5`", 16, 19),
            ]
        );
        let l = load(&instance_with(
            "    authentication {\n        auth_type PASS\n        auth_pass 123456789\n    }",
        ))
        .unwrap();
        assert_eq!(
            l.config.instances[0].auth,
            Some(Auth::Pass("123456789".into()))
        );
        assert_eq!(l.diagnostics.len(), 1);
        assert_eq!(l.diagnostics[0].severity, Severity::Warning);
        assert_eq!(
            (l.diagnostics[0].span.line, l.diagnostics[0].span.col),
            (10, 19)
        );
    }

    #[test]
    fn auth_hmac_block() {
        let dir = std::env::temp_dir().join(format!("vipd-hmac-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("k3");
        std::fs::write(
            &file,
            "hex:ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let body = format!(
            "    auth_hmac {{\n        key 1 hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n        key 2 an-ascii-key-of-thirty-two-bytes\n        key 3 file:{}\n        active_key 2\n        anti_replay monotonic\n        time_window 9\n        mode receive-only\n    }}",
            file.display()
        );
        let keep = LoadOptions {
            keep_tree: true,
            ..opts()
        };
        let l = load_str(
            &instance_with(&body),
            Path::new("/etc/keepalived/keepalived.conf"),
            &keep,
        )
        .unwrap_or_else(|d| panic!("{d:#?}"));
        assert_eq!(l.inactive().count(), 0);
        assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
        let h = l.config.instances[0].auth_hmac.as_ref().cloned().unwrap();
        assert_eq!(h.keys[0].1 .0, (0u8..32).collect::<Vec<_>>());
        assert_eq!(h.keys[1].1 .0, b"an-ascii-key-of-thirty-two-bytes".to_vec());
        assert_eq!(h.keys[2].1 .0, vec![0xab; 32]);
        assert_eq!(h.active_key, Some(2));
        assert!(!h.anti_replay_time);
        assert_eq!(h.time_window, Some(9));
        assert_eq!(h.mode, HmacMode::ReceiveOnly);
        // Secrets stay out of Debug and of the JSON model.
        let dbg = format!("{:?}", l.config);
        let json = serde_json::to_string(&l.config).unwrap();
        for text in [&dbg, &json] {
            assert!(!text.contains("an-ascii-key"), "{text}");
            assert!(
                !text.contains("171, 171") && !text.contains("0, 1, 2, 3"),
                "{text}"
            );
        }
        // `--dump` keeps the file reference but never an inline key.
        let dump = l.dump().expect("kept");
        assert!(dump.contains("key 2 <redacted>"), "{dump}");
        assert!(
            dump.contains(&format!("key 3 file:{}", file.display())),
            "{dump}"
        );
        assert!(
            !dump.contains("an-ascii-key") && !dump.contains("hex:0001"),
            "{dump}"
        );
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let l = load(&instance_with(&body)).unwrap();
        assert_eq!(l.diagnostics.len(), 1, "group-readable key file warns");
        std::fs::remove_dir_all(&dir).unwrap();

        let e = errors(&instance_with(
            "    auth_hmac {\n        key 1 short-secret\n        key 2 hex:zz\n        key 0 x\n        active_key 4\n        mode strict\n    }",
        ));
        let got: Vec<_> = e.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "`auth_hmac` active_key 4 is not defined",
                "`auth_hmac` key 1 is 12 bytes long; keys are 32 to 64 bytes",
                "`auth_hmac` key: `hex:` needs pairs of hexadecimal digits",
                "`key id` must be an integer in 1..=255, found `0`",
                "invalid auth_hmac mode `strict`",
            ]
        );
        assert!(
            got.iter().all(|m| !m.contains("short-secret")),
            "values are never quoted"
        );
        let rendered: String = load(&instance_with(
            "    auth_hmac {\n        key 1 short-secret\n        active_key 1\n    }",
        ))
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
        assert!(rendered.contains("key 1 <redacted>"), "{rendered}");
        assert!(!rendered.contains("short-secret"), "{rendered}");
        let e = errors(&instance_with(
            "    authentication {\n        auth_type PASS\n        auth_pass x\n    }\n    auth_hmac {\n        key 1 an-ascii-key-of-thirty-two-bytes\n        active_key 1\n    }",
        ));
        assert_eq!(
            e[0].0,
            "`auth_hmac` cannot be combined with `authentication`"
        );
    }

    #[test]
    fn no_accept_is_parsed() {
        let l = load(&instance_with("    no_accept")).unwrap();
        assert_eq!(l.inactive().count(), 0);
        assert_eq!(l.config.instances[0].accept, Some(false));
    }

    #[test]
    fn missing_required_fields() {
        let e = errors("vrrp_instance VI_9 {\n    priority 10\n}\n");
        let got: Vec<_> = e.iter().map(|(m, l, c)| (m.as_str(), *l, *c)).collect();
        assert_eq!(
            got,
            vec![
                ("vrrp_instance `VI_9` has no `interface`", 1, 15),
                ("vrrp_instance `VI_9` has no `virtual_router_id`", 1, 15),
            ]
        );
        let e = errors("vrrp_instance X {\n interface eth0\n virtual_router_id 0\n virtual_ipaddress {\n }\n}\n");
        assert_eq!(
            e,
            vec![(
                "`virtual_router_id` must be an integer in 1..=255, found `0`".to_string(),
                3,
                20
            ),]
        );
    }
}

#[cfg(test)]
mod lvs_sync_daemon_tests {
    use std::path::Path;

    use crate::model::LvsSyncDaemon;
    use crate::{load_str, LoadOptions, Severity};

    const VI: &str = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {\n        192.0.2.100\n    }\n}\n";

    /// Each diagnostic as (is an error, message, line, col).
    type Diag = (bool, String, u32, u32);

    /// The configuration's sync daemon and every diagnostic.
    fn read(text: &str) -> (Option<LvsSyncDaemon>, Vec<Diag>) {
        let opts = LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        let diags = |ds: &[crate::Diagnostic]| {
            ds.iter()
                .map(|d| {
                    (
                        d.severity == Severity::Error,
                        d.message.clone(),
                        d.span.line,
                        d.span.col,
                    )
                })
                .collect::<Vec<_>>()
        };
        match load_str(text, Path::new("/k.conf"), &opts) {
            Ok(l) => (l.config.global.lvs_sync_daemon, diags(&l.diagnostics)),
            Err(ds) => (None, diags(&ds)),
        }
    }

    #[test]
    fn every_option_and_the_old_positional_form() {
        let (d, diags) = read(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1 inst VI_1 id 7 maxlen 1400 port 8849 ttl 2 group 239.1.2.3\n}}\n{VI}"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        let d = d.unwrap();
        assert_eq!(
            (
                d.interface.as_str(),
                d.instance.as_deref(),
                d.sync_id,
                d.maxlen,
                d.port,
                d.ttl,
                d.group
            ),
            (
                "eth1",
                Some("VI_1"),
                Some(7),
                Some(1400),
                Some(8849),
                Some(2),
                Some("239.1.2.3".parse().unwrap())
            )
        );
        assert_eq!(d.span.line, 2);
        // `IFACE INSTANCE SYNC_ID`, keepalived's old syntax: read, with a nudge for the id.
        let (d, diags) = read(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1 VI_1 9\n}}\n{VI}"
        ));
        let d = d.unwrap();
        assert_eq!((d.instance.as_deref(), d.sync_id), (Some("VI_1"), Some(9)));
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            !diags[0].0 && diags[0].1.contains("write `id`"),
            "{diags:?}"
        );
        // No instance: both daemons run; the sync id defaults at run time.
        let (d, diags) = read(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1\n}}\n{VI}"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        let d = d.unwrap();
        assert_eq!((d.instance, d.sync_id, d.group), (None, None, None));
    }

    #[test]
    fn bad_values_are_errors_at_their_word() {
        let (_, diags) = read(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1 id 256 maxlen 65508 ttl 0 group 192.0.2.1 bogus\n}}\n{VI}"
        ));
        let errs: Vec<_> = diags
            .iter()
            .filter(|d| d.0)
            .map(|d| (d.1.as_str(), d.2, d.3))
            .collect();
        assert_eq!(
            errs,
            vec![
                (
                    "`lvs_sync_daemon id` must be an integer in 0..=255, found `256`",
                    2,
                    29
                ),
                (
                    "`lvs_sync_daemon maxlen` must be an integer in 1..=65507, found `65508`",
                    2,
                    40
                ),
                (
                    "`lvs_sync_daemon ttl` must be an integer in 1..=255, found `0`",
                    2,
                    50
                ),
                (
                    "`lvs_sync_daemon group` 192.0.2.1 is not a multicast address",
                    2,
                    58
                ),
                ("unknown option `bogus` for `lvs_sync_daemon`", 2, 68),
            ]
        );
        let (_, diags) = read(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1 port\n}}\n{VI}"
        ));
        assert_eq!(
            diags,
            vec![(true, "`lvs_sync_daemon port` needs a value".into(), 2, 26)]
        );
        let (_, diags) = read(&format!(
            "global_defs {{\n    lvs_sync_daemon a_very_long_ifname\n}}\n{VI}"
        ));
        assert_eq!(
            diags,
            vec![(
                true,
                "`lvs_sync_daemon` interface name `a_very_long_ifname` must be 1 to 15 bytes"
                    .into(),
                2,
                21
            )]
        );
    }

    #[test]
    fn unknown_instance_drops_it_with_a_warning_as_keepalived() {
        let (d, diags) = read(&format!(
            "global_defs {{\n    lvs_sync_daemon eth1 inst VI_9\n}}\n{VI}"
        ));
        assert_eq!(d, None);
        assert_eq!(
            diags,
            vec![(
                false,
                "`lvs_sync_daemon`: there is no vrrp_instance `VI_9`; the sync daemon is not run (as keepalived)".into(),
                2,
                31
            )]
        );
    }

    #[test]
    fn instance_keyword_is_the_global_one_for_that_instance() {
        let conf = VI.replace(
            "    interface eth0\n",
            "    interface eth0\n    lvs_sync_daemon_interface eth1\n",
        );
        let (d, diags) = read(&conf);
        let d = d.unwrap();
        assert_eq!(
            (d.interface.as_str(), d.instance.as_deref(), d.sync_id),
            ("eth1", Some("VI_1"), None)
        );
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            !diags[0].0 && diags[0].1.contains("deprecated"),
            "{diags:?}"
        );
        assert_eq!((diags[0].2, diags[0].3), (3, 5));
        // The global one came first: the instance's is ignored, said so.
        let (d, diags) = read(&format!(
            "global_defs {{\n    lvs_sync_daemon eth2 inst VI_1\n}}\n{conf}"
        ));
        assert_eq!(d.unwrap().interface, "eth2");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].1.contains("already set up at line 2"), "{diags:?}");
    }
}

#[cfg(test)]
mod lvs_global_tests {
    //! `lvs_timeouts`, `lvs_flush`, `lvs_flush_on_stop`, `net_namespace_ipvs`, checked
    //! against what keepalived 2.4.3 (`keepalived -t`) accepts.
    use std::path::Path;

    use crate::model::{GlobalDefs, LvsFlushOnStop};
    use crate::{load_str, LoadOptions, Severity};

    /// The global settings, or the errors as (message, line, col).
    fn read(text: &str) -> Result<GlobalDefs, Vec<(String, u32, u32)>> {
        let opts = LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        match load_str(text, Path::new("/k.conf"), &opts) {
            Ok(l) => {
                let errors: Vec<_> = l
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .map(|d| (d.message.clone(), d.span.line, d.span.col))
                    .collect();
                if errors.is_empty() {
                    Ok(l.config.global)
                } else {
                    Err(errors)
                }
            }
            Err(ds) => Err(ds
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| (d.message.clone(), d.span.line, d.span.col))
                .collect()),
        }
    }

    fn global(body: &str) -> String {
        format!("global_defs {{\n    {body}\n}}\n")
    }

    #[test]
    fn lvs_timeouts_values_and_keepalived_s_rules() {
        let g = read(&global("lvs_timeouts udp 5 tcpfin 2678400 tcp 0 tcp 900")).unwrap();
        let t = g.lvs_timeouts.unwrap();
        // A repeated word: the last one counts (as keepalived); 0 = unchanged.
        assert_eq!(
            (t.tcp, t.tcpfin, t.udp),
            (Some(900), Some(2_678_400), Some(5))
        );
        assert_eq!(t.span.line, 2);
        assert_eq!(read("").unwrap().lvs_timeouts, None);
        // keepalived reports each of these (and ignores the bad part); vipd refuses the
        // keyword at the offending word.
        for (body, col, what) in [
            ("lvs_timeouts", 5, "needs at least one timeout"),
            ("lvs_timeouts tcp", 18, "`lvs_timeouts tcp` needs a value"),
            (
                "lvs_timeouts tcp 5 udp",
                24,
                "`lvs_timeouts udp` needs a value",
            ),
            ("lvs_timeouts tcp 2678401", 22, "0..=2678400"),
            ("lvs_timeouts tcp -1", 22, "0..=2678400"),
            ("lvs_timeouts tcp 1.5", 22, "0..=2678400"),
            ("lvs_timeouts foo 3", 18, "unknown option `foo`"),
        ] {
            let e = read(&global(body)).unwrap_err();
            assert!(
                e.iter()
                    .any(|(m, l, c)| m.contains(what) && *l == 2 && *c == col),
                "{body}: {e:?}"
            );
        }
    }

    #[test]
    fn lvs_flush_and_flush_on_stop() {
        let g = read(&global("lvs_flush\n    lvs_flush_on_stop")).unwrap();
        assert!(g.lvs_flush);
        assert_eq!(g.lvs_flush_on_stop, Some(LvsFlushOnStop::Full));
        let g = read(&global("lvs_flush_on_stop VS")).unwrap();
        assert!(!g.lvs_flush);
        assert_eq!(g.lvs_flush_on_stop, Some(LvsFlushOnStop::VirtualServers));
        // keepalived: "Unknown lvs_flush_on_stop type vs" (the word is case-sensitive).
        let e = read(&global("lvs_flush_on_stop vs")).unwrap_err();
        assert!(
            e.iter().any(
                |(m, l, c)| m.contains("unknown `lvs_flush_on_stop` type `vs`")
                    && *l == 2
                    && *c == 23
            ),
            "{e:?}"
        );
    }

    #[test]
    fn net_namespace_ipvs_at_top_level_or_in_global_defs() {
        let g = read("net_namespace_ipvs lb\n").unwrap();
        assert_eq!(g.net_namespace_ipvs.as_deref(), Some("lb"));
        let g = read(&global("net_namespace_ipvs")).unwrap();
        assert_eq!(g.net_namespace_ipvs.as_deref(), Some(""));
        // keepalived keeps the first one.
        let g = read("net_namespace_ipvs a\nnet_namespace_ipvs b\n").unwrap();
        assert_eq!(g.net_namespace_ipvs.as_deref(), Some("a"));
    }

    #[test]
    fn net_namespace_ipvs_must_exist_when_the_load_balancer_runs() {
        let opts = LoadOptions {
            config_id: None,
            check_interfaces: true,
            ..Default::default()
        };
        let vs = "virtual_server 192.0.2.1 80 {\n    real_server 192.0.2.2 80 {\n    }\n}\n";
        let errors = |text: &str| -> Vec<(String, u32, u32)> {
            let ds = match load_str(text, Path::new("/k.conf"), &opts) {
                Ok(l) => l.diagnostics,
                Err(ds) => ds,
            };
            ds.iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| (d.message.clone(), d.span.line, d.span.col))
                .collect()
        };
        let e = errors(&format!("net_namespace_ipvs vipd-no-such-netns\n{vs}"));
        assert!(
            e.iter().any(
                |(m, l, c)| m.contains("`vipd-no-such-netns` does not exist")
                    && *l == 1
                    && *c == 20
            ),
            "{e:?}"
        );
        let e = errors(&format!(
            "global_defs {{\n    net_namespace_ipvs a/b\n}}\n{vs}"
        ));
        assert!(
            e.iter()
                .any(|(m, l, _)| m.contains("not a path") && *l == 2),
            "{e:?}"
        );
        // Nothing runs there without virtual servers or a sync daemon; no name: init's.
        assert!(errors("net_namespace_ipvs vipd-no-such-netns\n").is_empty());
        assert!(errors(&format!("net_namespace_ipvs\n{vs}")).is_empty());
    }
}

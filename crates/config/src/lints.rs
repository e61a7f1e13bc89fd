//! Checks across blocks (names that must exist, duplicates) and lints for the classic
//! field mistakes keepalived accepts silently.

use rustc_hash::FxHashMap;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Diags, Loc, Severity};
use crate::keywords::SuggestBudget;
use crate::lexer::Token;
use crate::model::*;
use crate::tree::Node;
use crate::typed::InstanceMeta;
use crate::value::family;
use crate::LoadOptions;

fn at(severity: Severity, msg: impl Into<String>, span: &Span, len: usize) -> Diagnostic {
    Diagnostic::new(severity, msg, span.clone(), len as u32)
}

fn warn(d: &mut Diags, span: &Span, len: usize, msg: impl Into<String>, help: Option<String>) {
    let mut x = at(Severity::Warning, msg, span, len);
    x.help = help;
    d.push(x);
}

fn error(d: &mut Diags, span: &Span, len: usize, msg: impl Into<String>, help: Option<String>) {
    let mut x = at(Severity::Error, msg, span, len);
    x.help = help;
    d.push(x);
}

/// Addresses of this host's interfaces (`getifaddrs`), by interface name.
pub fn host_addresses() -> HashMap<String, Vec<IpAddr>> {
    let mut out: HashMap<String, Vec<IpAddr>> = HashMap::new();
    // SAFETY: getifaddrs fills a list we walk read-only and free with freeifaddrs.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut p = list;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let addr = match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            };
            out.entry(name).or_default().push(addr);
        }
        libc::freeifaddrs(list);
    }
    out
}

fn interface_exists(name: &str) -> bool {
    !name.contains('/') && Path::new("/sys/class/net").join(name).exists()
}

/// Where `program` would be run from: itself if it has a `/`, else the first match in PATH.
fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return Some(program.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The program of a script line: its first word (quotes were removed by the lexer, so a
/// quoted command line is split at spaces here as keepalived does).
fn program_of(script: &str) -> Option<&str> {
    script.split_whitespace().next()
}

fn check_script(d: &mut Diags, script: &str, span: &Span, len: usize, what: &str) {
    let Some(prog) = program_of(script) else {
        return;
    };
    match find_program(prog) {
        None => warn(
            d,
            span,
            len,
            format!("{what}: `{prog}` is not found in PATH"),
            Some("use an absolute path".into()),
        ),
        Some(p) if !p.exists() => warn(
            d,
            span,
            len,
            format!("{what}: `{}` does not exist", p.display()),
            None,
        ),
        Some(p) if !is_executable(&p) => warn(
            d,
            span,
            len,
            format!("{what}: `{}` is not executable", p.display()),
            Some(format!("chmod +x {}", p.display())),
        ),
        Some(_) => {}
    }
}

/// `net_namespace_ipvs NAME`: the namespace must exist when the load balancer (or the
/// IPVS sync daemon) starts, since `vipd run` opens `/run/netns/NAME` then; the first
/// one written counts (as keepalived). Without a name it is the init process's.
fn net_namespace_ipvs(config: &Config, first: Option<&Token>, d: &mut Diags) {
    if config.virtual_servers.is_empty() && config.global.lvs_sync_daemon.is_none() {
        return;
    }
    let Some(a) = first else {
        return;
    };
    let name = a.text.as_str();
    let len = name.chars().count();
    if name.contains('/') || name == "." || name == ".." {
        error(
            d,
            &a.span,
            len,
            format!(
                "`net_namespace_ipvs {name}`: a name from `ip netns list` is expected, not a path"
            ),
            None,
        );
    } else if !std::path::Path::new("/run/netns").join(name).exists() {
        error(
            d,
            &a.span,
            len,
            format!("network namespace `{name}` does not exist (/run/netns/{name}): the load balancer is programmed there"),
            Some(format!("create it before vipd starts, e.g. `ip netns add {name}`")),
        );
    }
}

pub(crate) fn lint(
    config: &Config,
    metas: &[InstanceMeta],
    facts: &TreeFacts,
    opts: &LoadOptions,
    d: &mut Diags,
) {
    let host = opts.check_interfaces.then(host_addresses);
    // "Did you mean" among the file's own names: bounded work per load.
    let mut budget = SuggestBudget::new(SuggestBudget::PER_LOAD);
    if opts.check_interfaces {
        net_namespace_ipvs(config, facts.netns_ipvs.as_ref(), d);
    }
    let mut used_scripts: HashSet<&str> = HashSet::new();
    let script_names = Defined::new(config.scripts.iter().map(|s| s.name.as_str()));
    let files = Defined::new(config.track_files.iter().map(|f| f.name.as_str()));
    let procs = Defined::new(config.track_processes.iter().map(|p| p.name.as_str()));
    let bfds = Defined::new(config.bfd_instances.iter().map(|b| b.name.as_str()));
    let instance_names = Defined::new(config.instances.iter().map(|i| i.name.as_str()));
    // A `checker`-only bfd_instance sends VRRP no events: keepalived ignores the line.
    let checker_only: HashSet<&str> = config
        .bfd_instances
        .iter()
        .filter(|b| !b.to_vrrp)
        .map(|b| b.name.as_str())
        .collect();
    let tracks = config
        .instances
        .iter()
        .map(|i| &i.track)
        .chain(config.sync_groups.iter().map(|g| &g.track));
    for t in tracks.flat_map(|t| &t.bfds) {
        if checker_only.contains(t.name.as_str()) {
            warn(
                d,
                &t.span,
                t.name.chars().count(),
                format!(
                    "track_bfd `{}`: that bfd_instance sends its events to the checkers only (`checker`); ignored, as keepalived does",
                    t.name
                ),
                Some("add `vrrp` to the bfd_instance".into()),
            );
        }
    }

    // Sync groups: members exist and belong to one group only.
    let mut group_of: HashMap<&str, &SyncGroup> = HashMap::new();
    for g in &config.sync_groups {
        for m in &g.group {
            if !instance_names.contains(m.as_str()) {
                let help = budget
                    .suggest(m, instance_names.in_order())
                    .map(|s| format!("did you mean `{s}`?"));
                error(
                    d,
                    &g.span,
                    g.name.chars().count(),
                    format!(
                        "vrrp_sync_group `{}` names vrrp_instance `{m}`, which is not defined",
                        g.name
                    ),
                    help,
                );
            } else if let Some(other) = group_of.insert(m, g) {
                error(
                    d,
                    &g.span,
                    g.name.chars().count(),
                    format!(
                        "vrrp_instance `{m}` is in two sync groups (`{}` and `{}`)",
                        other.name, g.name
                    ),
                    None,
                );
            }
        }
        if g.group.len() == 1 {
            warn(
                d,
                &g.span,
                g.name.chars().count(),
                format!("vrrp_sync_group `{}` has only one member", g.name),
                Some("a sync group synchronises two or more instances".into()),
            );
        }
        check_tracking(
            d,
            &mut budget,
            &g.track,
            &script_names,
            &files,
            &procs,
            &bfds,
            &mut used_scripts,
        );
    }

    let strict_tok = facts.global("vrrp_strict");
    let mut strict_no_accept: Vec<&str> = Vec::new();
    for (inst, meta) in config.instances.iter().zip(metas) {
        check_tracking(
            d,
            &mut budget,
            &inst.track,
            &script_names,
            &files,
            &procs,
            &bfds,
            &mut used_scripts,
        );
        let name_len = meta.name.len as usize;

        // Weights that cannot work.
        let group = group_of.get(inst.name.as_str());
        for (kind, t) in inst.track.all() {
            let w = effective_weight(kind, t, config);
            if w == 0 {
                continue;
            }
            let len = t.name.chars().count();
            if inst.priority == 255 {
                warn(
                    d,
                    &t.span,
                    len,
                    format!(
                        "{kind} `{}` has weight {w}, but vrrp_instance `{}` is the address owner (priority 255), whose priority never changes",
                        t.name, inst.name
                    ),
                    Some("use `weight 0` (a failure then means FAULT and the VIPs move), or a priority below 255".into()),
                );
            } else if let Some(g) = group.filter(|g| !g.sync_group_tracking_weight) {
                warn(
                    d,
                    &t.span,
                    len,
                    format!(
                        "{kind} `{}` has weight {w}, which keepalived ignores because vrrp_instance `{}` is in sync group `{}`",
                        t.name, inst.name, g.name
                    ),
                    Some("add `sync_group_tracking_weight` to the group, or use `weight 0`".into()),
                );
            } else if w < 0 && inst.nopreempt {
                warn(
                    d,
                    &t.span,
                    len,
                    format!(
                        "{kind} `{}` lowers the priority by {}, but with `nopreempt` a backup never takes over from a live master with lower priority, so the VIPs stay here",
                        t.name, -w
                    ),
                    Some("use `weight 0` so that a failure puts the instance in FAULT".into()),
                );
            }
        }

        // vrrp_strict / strict_mode.
        let strict = inst.strict_mode.unwrap_or(config.global.vrrp_strict);
        if strict {
            // keepalived: "Unicast peers are not supported in strict mode"; vipd's
            // plan refuses the instance, so this is an error here already.
            if let Some(tok) = meta.keyword_tok("unicast_peer") {
                d.push(
                    Diagnostic::error_at("`vrrp_strict` does not allow unicast peers", &tok)
                        .with_help("remove `unicast_peer`, or `vrrp_strict` / `strict_mode`"),
                );
            }
            // keepalived: "down_timer_adverts is incompatible with strict mode - resetting".
            let dta_tok = match inst.down_timer_adverts {
                Some(n) if n != 3 => meta.keyword_tok("down_timer_adverts"),
                None if config
                    .global
                    .vrrp_down_timer_adverts
                    .is_some_and(|n| n != 3) =>
                {
                    facts.global("vrrp_down_timer_adverts").map(Loc::from)
                }
                _ => None,
            };
            if let Some(tok) = dta_tok {
                d.push(
                    Diagnostic::warning_at(
                        format!(
                            "`vrrp_strict` resets `down_timer_adverts` of `{}` to 3 (as keepalived does)",
                            inst.name
                        ),
                        &tok,
                    )
                    .with_help("vrrp_strict (or strict_mode) enforces RFC conformance; remove one of the two"),
                );
            }
            let mut s = |key: &str, msg: String| {
                if let Some(tok) = meta.keyword_tok(key) {
                    d.push(
                        Diagnostic::warning_at(msg, &tok)
                            .with_help("vrrp_strict (or strict_mode) enforces RFC conformance; remove one of the two"),
                    );
                }
            };
            if inst.auth.is_some() {
                s(
                    "authentication",
                    "`vrrp_strict` ignores authentication (keepalived drops it)".into(),
                );
            }
            if !inst.preempt_delay.is_zero() {
                s(
                    "preempt_delay",
                    "`vrrp_strict` does not allow `preempt_delay`".into(),
                );
            }
            if inst.state == InitialState::Master && inst.priority != 255 {
                s(
                    "state",
                    "`vrrp_strict` allows `state MASTER` only with priority 255".into(),
                );
            }
            let repeat = inst.garp.master_repeat.or(config.global.garp.master_repeat);
            if repeat.is_some_and(|r| r > 1) {
                match meta.keyword_tok("garp_master_repeat") {
                    Some(tok) => d.push(Diagnostic::warning_at(
                        "`vrrp_strict` does not allow gratuitous ARP repeats",
                        &tok,
                    )),
                    None => {
                        if let Some(tok) = facts.global("vrrp_garp_master_repeat") {
                            d.push(Diagnostic::warning_at(
                                format!(
                                    "`vrrp_strict` does not allow gratuitous ARP repeats (vrrp_instance `{}`)",
                                    inst.name
                                ),
                                &tok,
                            ));
                        }
                    }
                }
            }
            let v2 = inst.effective_version(&config.global) != 3;
            if inst.accept.is_none() && inst.priority != 255 {
                strict_no_accept.push(&inst.name);
            } else if inst.accept == Some(true) && inst.priority != 255 && v2 {
                // keepalived: "accept mode for VRRP version 2 does not comply with
                // RFC3768 - resetting".
                if let Some(tok) = meta.keyword_tok("accept") {
                    d.push(
                        Diagnostic::warning_at(
                            format!("`accept` is ignored: VRRPv2 has no accept mode, so `vrrp_strict` drops packets to the VIPs of `{}` anyway (as keepalived does)", inst.name),
                            &tok,
                        )
                        .with_help("use `version 3` for accept mode under vrrp_strict, or drop `vrrp_strict`"),
                    );
                }
            }
        }

        if let Some(host) = &host {
            check_host(d, inst, meta, host, name_len);
        }
        if opts.check_interfaces {
            for t in &inst.track.interfaces {
                if !interface_exists(&t.name) {
                    warn(
                        d,
                        &t.span,
                        t.name.chars().count(),
                        format!("track_interface `{}` does not exist on this host", t.name),
                        None,
                    );
                }
            }
            for (what, script) in [
                ("notify_master", &inst.notify.master),
                ("notify_backup", &inst.notify.backup),
                ("notify_fault", &inst.notify.fault),
                ("notify_stop", &inst.notify.stop),
                ("notify", &inst.notify.notify),
                (
                    "notify_master_rx_lower_pri",
                    &inst.notify.master_rx_lower_pri,
                ),
            ] {
                if let (Some(script), Some(tok)) = (script, meta.value_tok(what)) {
                    check_script(d, &script.command, &tok.span, tok.len as usize, what);
                }
            }
        }
    }
    if let (Some(tok), false) = (strict_tok, strict_no_accept.is_empty()) {
        d.push(
            Diagnostic::warning_at(
                format!(
                    "`vrrp_strict` turns on `no_accept`: packets to the VIPs of {} are dropped (as keepalived does, with nftables), so services on this node cannot be reached at them",
                    strict_no_accept
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                tok,
            )
            .with_help("write `accept` (with VRRP version 3) in those instances if the VIPs must be reachable, or drop `vrrp_strict`"),
        );
    }

    for s in &config.scripts {
        let len = s.name.chars().count();
        if !used_scripts.contains(s.name.as_str()) {
            warn(
                d,
                &s.span,
                len,
                format!("vrrp_script `{}` is not used by any track_script", s.name),
                None,
            );
        }
        if opts.check_interfaces {
            check_script(
                d,
                &s.script,
                &s.span,
                len,
                &format!("vrrp_script `{}`", s.name),
            );
        }
        if let (Some(t), true) = (s.timeout, s.interval.as_secs() > 0) {
            if t > s.interval {
                warn(
                    d,
                    &s.span,
                    len,
                    format!(
                        "vrrp_script `{}`: timeout is longer than interval, so runs can overlap",
                        s.name
                    ),
                    None,
                );
            }
        }
    }

    virtual_servers(config, d, &mut budget);
    keepalived_warnings(config, facts, d);
}

/// What the checks after the mapping need of the tree, which is gone by then (the
/// mapping consumes it, so that a large file's tree and model are not both held).
#[derive(Debug, Default)]
pub(crate) struct TreeFacts {
    /// The last line in `global_defs` of each of [`GLOBALS_LATER`] written.
    globals: Vec<(&'static str, Token)>,
    /// The first `net_namespace_ipvs` (top level or `global_defs`): keepalived's.
    netns_ipvs: Option<Token>,
}

/// The `global_defs` keywords [`lint`] points at.
const GLOBALS_LATER: &[&str] = &[
    "vrrp_strict",
    "vrrp_down_timer_adverts",
    "vrrp_garp_master_repeat",
    "vrrp_iptables",
    "vrrp_ipsets",
    "notify_fifo_script",
    "vrrp_notify_fifo_script",
    "lvs_notify_fifo_script",
];

impl TreeFacts {
    /// The keyword of the last `key` line in `global_defs`.
    fn global(&self, key: &str) -> Option<&Token> {
        debug_assert!(GLOBALS_LATER.contains(&key), "add `{key}` to GLOBALS_LATER");
        let found = self.globals.iter().find(|(k, _)| *k == key);
        found.map(|(_, t)| t)
    }
}

/// The lints that read only the tree, fed each top-level block before it is mapped and
/// dropped; [`TreeLints::finish`] gives what [`lint`] needs of the tree later.
#[derive(Default)]
pub(crate) struct TreeLints {
    /// The `global_defs` blocks (a few lines each), for the checks of their last values.
    globals: Vec<Node>,
    /// The first `net_namespace_ipvs` line's argument, once one is seen.
    netns_ipvs: Option<Option<Token>>,
}

fn tok_warn(d: &mut Diags, tok: &Token, msg: String, help: Option<&str>) {
    let mut x = Diagnostic::warning_at(msg, tok);
    x.help = help.map(str::to_string);
    d.push(x);
}

impl TreeLints {
    /// One top-level block, in file order.
    pub(crate) fn node(&mut self, n: &Node, d: &mut Diags) {
        placement_and_design(n, d);
        if self.netns_ipvs.is_none() {
            let mut lines = match n.name() {
                "global_defs" => n.children.as_deref().unwrap_or_default(),
                _ => std::slice::from_ref(n),
            }
            .iter();
            if let Some(first) = lines.find(|c| c.name() == "net_namespace_ipvs") {
                self.netns_ipvs = Some(first.args.first().cloned());
            }
        }
        if n.name() != "vrrp_instance" {
            return;
        }
        let kids = n.children.iter().flatten();
        for c in kids.clone().filter(|c| c.name() == "old_unicast_checksum") {
            if let Some(a) = c.args.first().filter(|a| a.text != "never") {
                tok_warn(
                    d,
                    a,
                    format!("unknown `old_unicast_checksum` mode `{}`: ignored, as keepalived does (new checksums)", a.text),
                    Some("write `old_unicast_checksum` alone, or `old_unicast_checksum never`"),
                );
            }
        }
        // keepalived 2.4.3: "promote_secondaries is automatically set for vmacs - ignoring".
        let link = kids
            .clone()
            .any(|c| c.name() == "use_vmac" || c.name() == "use_ipvlan");
        if let Some(p) = kids.clone().find(|c| c.name() == "promote_secondaries") {
            if link {
                tok_warn(
                    d,
                    &p.keyword,
                    "`promote_secondaries` is ignored with `use_vmac` / `use_ipvlan` (as keepalived does): the VIPs live on that link, not on the interface".into(),
                    Some("remove it"),
                );
            }
        }
    }

    /// Takes a block [`TreeLints::node`] has seen, once it is mapped: the `global_defs`
    /// ones are kept for [`TreeLints::finish`].
    pub(crate) fn keep(&mut self, n: Node) {
        if n.name() == "global_defs" {
            self.globals.push(n);
        }
    }

    /// The checks of `global_defs` as a whole (the last line of a keyword counts).
    pub(crate) fn finish(self, d: &mut Diags) -> TreeFacts {
        let tree = &self.globals[..];
        global_values(tree, d);
        zero_announcement_intervals(tree, d);
        let globals = || tree.iter().flat_map(|n| n.children.iter().flatten());
        let empty_email = globals().find(|c| {
            c.name() == "notification_email"
                && c.args.is_empty()
                && c.children.as_ref().is_some_and(|k| k.is_empty())
        });
        if let Some(n) = empty_email {
            tok_warn(
                d,
                &n.keyword,
                "empty `notification_email` block: no one gets e-mail".into(),
                None,
            );
        }
        let mut facts = TreeFacts::default();
        for c in globals() {
            if let Some(key) = GLOBALS_LATER.iter().find(|k| **k == c.name()) {
                facts.globals.retain(|(k, _)| k != key);
                facts.globals.push((key, c.keyword.clone()));
            }
        }
        facts.netns_ipvs = self.netns_ipvs.flatten();
        facts
    }
}

/// Conditions keepalived 2.4.3's `-t` reports that the checks above do not cover, in
/// vipd's words (and, where vipd acts differently, saying so).
fn keepalived_warnings(config: &Config, facts: &TreeFacts, d: &mut Diags) {
    for key in ["vrrp_iptables", "vrrp_ipsets"] {
        if let Some(tok) = facts.global(key) {
            tok_warn(
                d,
                tok,
                format!("`{key}` is ignored: vipd's drop rules use nftables (keepalived 2.4 does the same)"),
                Some("remove it; vipd keeps its rules in the `ip`/`ip6` `vipd_vrrp` tables"),
            );
        }
    }
    let g = &config.global;
    for (key, fifo, fifo_key) in [
        ("notify_fifo_script", &g.notify_fifo, "notify_fifo"),
        (
            "vrrp_notify_fifo_script",
            &g.vrrp_notify_fifo,
            "vrrp_notify_fifo",
        ),
        (
            "lvs_notify_fifo_script",
            &g.lvs_notify_fifo,
            "lvs_notify_fifo",
        ),
    ] {
        if let (Some(tok), None) = (facts.global(key), fifo) {
            tok_warn(
                d,
                tok,
                format!("`{key}` is ignored without `{fifo_key}`"),
                Some("the script reads the FIFO, whose name it gets as its last argument"),
            );
        }
    }
    // keepalived: "SECURITY VIOLATION - scripts are being executed but script_security
    // not enabled."
    if !config.global.enable_script_security {
        let first_script = config
            .scripts
            .first()
            .map(|s| (&s.span, s.name.chars().count()));
        let first_notify = config
            .instances
            .iter()
            .find(|i| {
                let n = &i.notify;
                n.master.is_some()
                    || n.backup.is_some()
                    || n.fault.is_some()
                    || n.stop.is_some()
                    || n.notify.is_some()
            })
            .map(|i| (&i.span, i.name.chars().count()));
        if let Some((span, len)) = first_script.or(first_notify) {
            warn(
                d,
                span,
                len,
                match &config.global.script_user {
                    Some(u) => format!("scripts run as `{u}` unchecked: `enable_script_security` is off"),
                    None => "scripts run as root unchecked: `enable_script_security` is off".into(),
                },
                Some("add `enable_script_security` (and `script_user`) to global_defs; vipd then refuses scripts a non-root user could change".into()),
            );
        }
    }
    for inst in &config.instances {
        for t in inst
            .track
            .interfaces
            .iter()
            .filter(|t| t.name == inst.interface)
        {
            warn(
                d,
                &t.span,
                t.name.chars().count(),
                format!(
                    "track_interface `{}` is vrrp_instance `{}`'s own interface, which it tracks already: this line is ignored (as keepalived does)",
                    t.name, inst.name
                ),
                Some("remove it; use `dont_track_primary` to stop tracking the own interface".into()),
            );
        }
    }
    for vs in &config.virtual_servers {
        let label = vs_label(&vs.key);
        let len = "virtual_server".len();
        if vs.real_servers.is_empty() {
            warn(
                d,
                &vs.span,
                len,
                format!("virtual_server {label} has no real servers: it is ignored (as keepalived does)"),
                None,
            );
            continue;
        }
        if vs.protocol.is_none() && !matches!(vs.key, VsKey::Fwmark { .. }) {
            warn(
                d,
                &vs.span,
                len,
                format!("virtual_server {label} has no `protocol`: vipd balances TCP, but keepalived defaults to UDP here"),
                Some("write `protocol TCP` (or UDP) so vipd and keepalived agree".into()),
            );
        }
        if vs.lb_kind.is_none() {
            warn(
                d,
                &vs.span,
                len,
                format!(
                    "virtual_server {label} has no `lb_kind`: NAT is assumed (as keepalived does)"
                ),
                None,
            );
        }
        // keepalived: "no scheduler set, setting default 'wlc'".
        if vs.lb_algo.is_none() {
            warn(
                d,
                &vs.span,
                len,
                format!("virtual_server {label} has no `lb_algo`: wlc with the IPVS backend (as keepalived), rr with nftables"),
                Some("write `lb_algo` so every backend and keepalived agree".into()),
            );
        }
        // keepalived, for a group: "fwmark virtual server ..., real server ... has port
        // specified - port will be ignored" and "... and real server ... ports don't match".
        if let VsKey::Group(g) = &vs.key {
            let entries = config
                .virtual_server_groups
                .iter()
                .filter(|x| &x.name == g)
                .flat_map(|x| &x.entries);
            let mut fwmark = false;
            let mut ports = Vec::new();
            for e in entries {
                match e {
                    VsgEntry::Fwmark { .. } => fwmark = true,
                    VsgEntry::Range { port: Some(p), .. } => ports.push(*p),
                    VsgEntry::Range { .. } => {}
                }
            }
            for rs in &vs.real_servers {
                let kind = rs.lb_kind.as_deref().or(vs.lb_kind.as_deref());
                let Some(p) = rs.port else { continue };
                if !matches!(kind, Some("DR") | Some("TUN")) {
                    continue;
                }
                let other: Vec<String> = ports
                    .iter()
                    .filter(|v| **v != p)
                    .map(u16::to_string)
                    .collect();
                if fwmark || !other.is_empty() {
                    let mut why = Vec::new();
                    if !other.is_empty() {
                        why.push(format!(
                            "group `{g}` has port {} (only NAT rewrites ports)",
                            other.join(", ")
                        ));
                    }
                    if fwmark {
                        why.push(format!("group `{g}`'s fwmark entries match any port"));
                    }
                    warn(
                        d,
                        &rs.span,
                        "real_server".len(),
                        format!(
                            "real_server {} port {p} does not apply with `lb_kind {}`: {}",
                            rs.addr,
                            kind.unwrap_or_default(),
                            why.join("; ")
                        ),
                        Some("drop the real server's port, or use `lb_kind NAT`".into()),
                    );
                }
            }
        }
        // keepalived: "virtual server ... and real server ... ports don't match - resetting".
        if let VsKey::Addr {
            port: Some(vport), ..
        } = &vs.key
        {
            for rs in &vs.real_servers {
                let kind = rs.lb_kind.as_deref().or(vs.lb_kind.as_deref());
                match rs.port {
                    Some(p) if p != *vport && matches!(kind, Some("DR") | Some("TUN")) => warn(
                        d,
                        &rs.span,
                        "real_server".len(),
                        format!(
                            "real_server {} port {p} differs from virtual_server {label}'s: `lb_kind {}` forwards packets with port {vport} unchanged (only NAT rewrites ports); keepalived resets the real server's port to {vport}",
                            rs.addr,
                            kind.unwrap_or_default()
                        ),
                        Some(format!("write port {vport}, or use `lb_kind NAT` to reach port {p}")),
                    ),
                    _ => {}
                }
            }
        }
    }
}

/// Keywords vipd accepts where keepalived 2.4.3 reads them differently, and the keywords
/// whose purpose vipd's design serves already ([`schema::COVERED_BY_DESIGN`]).
fn placement_and_design(n: &Node, d: &mut Diags) {
    let design = |d: &mut Diags, n: &Node, extra: Option<&str>| {
        let Some((_, why)) = crate::schema::COVERED_BY_DESIGN
            .iter()
            .find(|(k, _)| *k == n.name())
        else {
            return;
        };
        let mut x = Diagnostic::warning_at(
            format!("`{}` needs nothing in vipd: {why}", n.name()),
            &n.keyword,
        );
        x.help = Some(match extra {
            Some(e) => format!("{e}; otherwise it can stay (it is accepted)"),
            None => "it can stay (it is accepted); see docs/keepalived-differences.md".into(),
        });
        d.push(x);
    };
    match n.name() {
        "global_defs" => {
            for c in n.children.iter().flatten() {
                // keepalived 2.4.3 reads its daemon options only at top level: in
                // global_defs it reports "Unknown keyword" and ignores them.
                if crate::schema::DAEMON_OPT_NAMES.contains(&c.name()) {
                    let mut x = Diagnostic::warning_at(
                        format!(
                            "keepalived reads `{}` only at top level, outside global_defs: here it ignores it as an unknown keyword (vipd accepts it in both places)",
                            c.name()
                        ),
                        &c.keyword,
                    );
                    x.help =
                        Some("move it above `global_defs` so vipd and keepalived agree".into());
                    d.push(x);
                }
                design(d, c, None);
            }
        }
        "vrrp_instance" => {
            for c in n.children.iter().flatten() {
                match c.name() {
                    // keepalived 2.4.3 knows these only in a garp_group block and
                    // ignores them here ("Unknown keyword").
                    "garp_interval" | "gna_interval" => {
                        let mut x = Diagnostic::warning_at(
                            format!(
                                "keepalived does not know `{}` in a vrrp_instance (it ignores the line as an unknown keyword); vipd paces this instance's announcements with it",
                                c.name()
                            ),
                            &c.keyword,
                        );
                        x.help = Some(format!(
                            "for the same pacing under both, use `vrrp_{}` in global_defs (or a garp_group block)",
                            c.name()
                        ));
                        d.push(x);
                    }
                    "linkbeat_use_polling" => design(
                        d,
                        c,
                        Some("keepalived calls it deprecated in a vrrp_instance (use a `linkbeat_interfaces` block)"),
                    ),
                    _ => design(d, c, None),
                }
            }
        }
        _ => design(d, n, None),
    }
}

/// keepalived: "number '0' outside range [0.000001, 4294.967295]" and
/// "vrrp_garp_interval '0' is invalid" -- it ignores the line.
fn zero_announcement_intervals(tree: &[Node], d: &mut Diags) {
    for key in ["vrrp_garp_interval", "vrrp_gna_interval"] {
        let zero = tree
            .iter()
            .filter(|n| n.name() == "global_defs")
            .flat_map(|n| n.children.iter().flatten())
            .filter(|c| c.name() == key)
            .find(|c| {
                c.args
                    .first()
                    .and_then(|a| a.text.parse::<f64>().ok())
                    .is_some_and(|v| v == 0.0)
            });
        if let Some(c) = zero {
            let mut x = Diagnostic::warning_at(
                format!("keepalived refuses `{key} 0` (its range starts at 0.000001) and ignores the line; no pause between announcements is the default anyway"),
                &c.keyword,
            );
            x.help = Some("remove the line: vipd and keepalived then agree".into());
            d.push(x);
        }
    }
}

/// Global values the daemon's plan would refuse (so `vipd run` and a reload would):
/// reported here, at their place, as keepalived 2.4.3's `-t` does.
fn global_values(tree: &[Node], d: &mut Diags) {
    let node = |key: &str| {
        tree.iter()
            .filter(|n| n.name() == "global_defs")
            .flat_map(|n| n.children.iter().flatten())
            .rfind(|c| c.name() == key)
    };
    let text = |n: &Node| {
        n.args
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    // keepalived: "invalid umask value 0999" / "Unknown umask bit IFOO".
    if let Some(n) = node("umask") {
        if let Err(e) = crate::value::parse_umask(&text(n)) {
            d.push(Diagnostic::error_at(
                e,
                n.args.first().unwrap_or(&n.keyword),
            ));
        }
    }
    // keepalived: "Invalid smtp server 127.0.0.1 99999" (also without recipients).
    if let Some(n) = node("smtp_server") {
        if let Err(e) = crate::value::parse_smtp_server(&text(n)) {
            d.push(Diagnostic::error_at(e, n.args.last().unwrap_or(&n.keyword)));
        }
    }
    // keepalived hands it to net-snmp, which fails at run time: said here.
    if let Some(n) = node("snmp_socket") {
        if let Err(e) = crate::value::parse_agentx_address(&text(n)) {
            d.push(Diagnostic::warning_at(
                e,
                n.args.first().unwrap_or(&n.keyword),
            ));
        }
    }
    // keepalived: "vrrp_mcast_group4 [ff02::12] is not IPv4. Skipping".
    for (key, v6) in [("vrrp_mcast_group4", false), ("vrrp_mcast_group6", true)] {
        let Some(n) = node(key) else { continue };
        let Some(tok) = n.args.first() else { continue };
        let Ok(addr) = tok.text.parse::<IpAddr>() else {
            continue;
        };
        if !addr.is_multicast() || addr.is_ipv6() != v6 {
            d.push(Diagnostic::error_at(
                format!(
                    "`{key}` {addr} is not an {} multicast address",
                    if v6 { "IPv6" } else { "IPv4" }
                ),
                tok,
            ));
        }
    }
}

/// The weight a tracked object applies: the one on the track line, else the object's.
fn effective_weight(kind: &str, t: &Tracked, config: &Config) -> i64 {
    if let Some(w) = t.weight {
        return w;
    }
    match kind {
        "track_script" => config
            .scripts
            .iter()
            .find(|s| s.name == t.name)
            .map_or(0, |s| s.weight),
        "track_file" => config
            .track_files
            .iter()
            .find(|f| f.name == t.name)
            .map_or(0, |f| f.weight),
        "track_process" => config
            .track_processes
            .iter()
            .find(|p| p.name == t.name)
            .map_or(0, |p| p.weight),
        "track_bfd" => config
            .bfd_instances
            .iter()
            .find(|b| b.name == t.name)
            .map_or(0, |b| b.weight),
        _ => 0,
    }
}

/// Names the configuration defines: looked up by name, and offered as "did you mean"
/// candidates in the order they are written. A hash set's iteration order changes from
/// run to run, and with it which of equally close names was suggested and, once the
/// suggestion budget ran out part-way, whether any was: the same file must get the
/// same report every time.
struct Defined<'c> {
    set: HashSet<&'c str>,
    in_order: Vec<&'c str>,
}

impl<'c> Defined<'c> {
    fn new(names: impl Iterator<Item = &'c str>) -> Self {
        let mut set = HashSet::new();
        let in_order = names.filter(|n| set.insert(*n)).collect();
        Defined { set, in_order }
    }

    fn contains(&self, name: &str) -> bool {
        self.set.contains(name)
    }

    fn in_order(&self) -> impl Iterator<Item = &'c str> + '_ {
        self.in_order.iter().copied()
    }
}

fn check_tracking<'c>(
    d: &mut Diags,
    budget: &mut SuggestBudget,
    track: &'c Tracking,
    scripts: &Defined,
    files: &Defined,
    procs: &Defined,
    bfds: &Defined,
    used: &mut HashSet<&'c str>,
) {
    let mut check = |list: &'c [Tracked], kind: &str, block: &str, defined: &Defined| {
        for t in list {
            if defined.contains(&t.name) {
                used.insert(&t.name);
                continue;
            }
            let help = match budget.suggest(&t.name, defined.in_order()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("define it with `{block} {} {{ ... }}`", t.name),
            };
            error(
                d,
                &t.span,
                t.name.chars().count(),
                format!("{kind} `{}` is not defined", t.name),
                Some(help),
            );
        }
    };
    check(&track.scripts, "track_script", "vrrp_script", scripts);
    check(&track.files, "track_file", "track_file", files);
    check(&track.processes, "track_process", "track_process", procs);
    check(&track.bfds, "track_bfd", "bfd_instance", bfds);
}

fn check_host(
    d: &mut Diags,
    inst: &VrrpInstance,
    meta: &InstanceMeta,
    host: &HashMap<String, Vec<IpAddr>>,
    name_len: usize,
) {
    let Some(own) = host.get(&inst.interface) else {
        return;
    };
    let owned: Vec<&VirtualAddress> = inst
        .virtual_ipaddress
        .iter()
        .filter(|v| {
            v.dev.as_deref().is_none_or(|dev| dev == inst.interface) && own.contains(&v.addr)
        })
        .collect();
    if inst.priority == 255 {
        if owned.is_empty() {
            let span = meta.value_tok("priority").map(|t| t.span);
            warn(
                d,
                span.as_ref().unwrap_or(&inst.span),
                3,
                format!(
                    "priority 255 makes vrrp_instance `{}` the address owner, but none of its virtual addresses is an address of `{}` on this host",
                    inst.name, inst.interface
                ),
                Some("use a priority of 254 or less unless this router really owns the addresses".into()),
            );
        }
        return;
    }
    let _ = name_len;
    for (v, tok) in inst.virtual_ipaddress.iter().zip(meta.vip_locs()) {
        if owned.iter().any(|o| o.addr == v.addr) {
            d.push(
                Diagnostic::warning_at(
                    format!(
                        "virtual address {} is already an address of `{}` on this host",
                        v.addr, inst.interface
                    ),
                    &tok,
                )
                .with_help("a VIP must not be an interface's own address (unless the instance is the owner, with priority 255); it would stay here when another router becomes master"),
            );
        }
    }
}

fn vs_label(k: &VsKey) -> String {
    match k {
        VsKey::Addr { addr, port } => match port {
            Some(p) if addr.is_ipv6() => format!("[{addr}]:{p}"),
            Some(p) => format!("{addr}:{p}"),
            None => addr.to_string(),
        },
        VsKey::Fwmark { mark, .. } => format!("fwmark {mark}"),
        VsKey::Group(g) => format!("group {g}"),
    }
}

fn virtual_servers(config: &Config, d: &mut Diags, budget: &mut SuggestBudget) {
    let groups = Defined::new(config.virtual_server_groups.iter().map(|g| g.name.as_str()));
    // Fx hashing and no copies of the keys: 2,000 virtual servers and 40,000 real
    // servers are a reload's file, parsed whole on every reload.
    let mut seen: FxHashMap<(&VsKey, &str), &VirtualServer> =
        FxHashMap::with_capacity_and_hasher(config.virtual_servers.len(), Default::default());
    for vs in &config.virtual_servers {
        let label = vs_label(&vs.key);
        let len = "virtual_server".len();
        let proto = vs.protocol.as_deref().unwrap_or("TCP");
        if let Some(first) = seen.insert((&vs.key, proto), vs) {
            error(
                d,
                &vs.span,
                len,
                format!("duplicate virtual_server {label} ({proto})"),
                Some(format!(
                    "first defined at {}:{}:{}",
                    first.span.file.display(),
                    first.span.line,
                    first.span.col
                )),
            );
        }
        if let VsKey::Group(g) = &vs.key {
            if !groups.contains(g.as_str()) {
                let help = budget
                    .suggest(g, groups.in_order())
                    .map(|s| format!("did you mean `{s}`?"));
                error(
                    d,
                    &vs.span,
                    len,
                    format!("virtual_server_group `{g}` is not defined"),
                    help,
                );
            }
        }
        let vs_family = match &vs.key {
            VsKey::Addr { addr, .. } => Some(addr.is_ipv6()),
            _ => vs.ip_family.as_deref().map(|f| f == "inet6"),
        };
        let mut rs_seen: FxHashMap<(IpAddr, Option<u16>), &RealServer> =
            FxHashMap::with_capacity_and_hasher(vs.real_servers.len(), Default::default());
        let mut total: i64 = 0;
        for rs in &vs.real_servers {
            let rlen = "real_server".len();
            if let Some(first) = rs_seen.insert((rs.addr, rs.port), rs) {
                error(
                    d,
                    &rs.span,
                    rlen,
                    format!(
                        "duplicate real_server {} {} in virtual_server {label}",
                        rs.addr,
                        rs.port.map(|p| p.to_string()).unwrap_or_default()
                    ),
                    Some(format!("first defined at line {}", first.span.line)),
                );
            }
            if !(0..=65535).contains(&rs.weight) {
                error(
                    d,
                    &rs.span,
                    rlen,
                    format!(
                        "real_server {} weight {} is out of range 0..=65535",
                        rs.addr, rs.weight
                    ),
                    None,
                );
            }
            total += rs.weight.max(0);
            if let (VsKey::Fwmark { mark, .. }, Some(p)) = (&vs.key, rs.port) {
                warn(
                    d,
                    &rs.span,
                    rlen,
                    format!("real_server {} port {p} is ignored in fwmark {mark} virtual servers (keepalived clears it)", rs.addr),
                    Some("drop the port".into()),
                );
            }
            let kind = rs.lb_kind.as_deref().or(vs.lb_kind.as_deref());
            // keepalived skips such a real server ("Address family of virtual server and
            // real server ... don't match"); vipd's balancer refuses it, so this is an error.
            if vs_family.is_some_and(|v6| v6 != rs.addr.is_ipv6()) && kind != Some("TUN") {
                error(
                    d,
                    &rs.span,
                    rlen,
                    format!(
                        "real_server {} is {} but virtual_server {label} is {}",
                        rs.addr,
                        family(&rs.addr),
                        if vs_family == Some(true) {
                            "IPv6"
                        } else {
                            "IPv4"
                        }
                    ),
                    Some("mixed address families only work with `lvs_method TUN`".into()),
                );
            }
        }
        // keepalived: "quorum N for ... exceeds total weight of real servers M, reducing
        // quorum to M" -- also for the default quorum 1 when every weight is 0.
        let q = vs.quorum.unwrap_or(1);
        if i64::from(q) > total && !vs.real_servers.is_empty() {
            let what = match vs.quorum {
                Some(q) => format!("quorum {q}"),
                None => "the default quorum 1".into(),
            };
            warn(
                d,
                &vs.span,
                len,
                format!(
                    "virtual_server {label}: {what} exceeds the sum of real server weights ({total}), so vipd never sees it reached (keepalived lowers the quorum to {total} instead)"
                ),
                Some(if vs.sorry_server.is_some() {
                    "lower `quorum` or raise the weights: vipd sends the traffic to the sorry_server".into()
                } else {
                    "lower `quorum` or raise the weights".into()
                }),
            );
        }
    }
}

/// [`Diagnostic::code`] of the findings of [`cross_node`].
pub const CROSS_NODE: &str = "cross-node";

/// One tracked object of an instance as it acts on the priority, resolved as the
/// runtime does (`crates/linux/src/plan.rs`): the line's weight else the object's,
/// `reverse` = the line's XOR the object's; in a sync group without
/// `sync_group_tracking_weight` the members' own weights count as 0 (FAULT) and the
/// group's tracking applies to every member.
struct Effect<'c> {
    kind: &'static str,
    tracked: &'c Tracked,
    weight: i64,
    reverse: bool,
    /// What it adds to the priority while the object is healthy (interface up, script
    /// succeeding, process running, tracked file holding 0).
    healthy: i64,
    /// What it adds while the object has failed (down, failing, not running, file
    /// holding 1).
    failed: i64,
}

impl Effect<'_> {
    fn decrease(&self) -> i64 {
        (self.healthy - self.failed).max(0)
    }
    fn increase(&self) -> i64 {
        (self.failed - self.healthy).max(0)
    }
    /// Whether the line can put the priority above the configured one.
    fn lifts(&self) -> bool {
        self.healthy > 0 || self.increase() > 0
    }
    fn describe(&self) -> String {
        format!(
            "`{} {}` (weight {}{})",
            self.kind,
            self.tracked.name,
            self.weight,
            if self.reverse { ", reverse" } else { "" }
        )
    }
}

fn effects<'c>(config: &'c Config, inst: &'c VrrpInstance) -> Vec<Effect<'c>> {
    let group = config
        .sync_groups
        .iter()
        .find(|g| g.group.contains(&inst.name));
    let own_weights = group.is_none_or(|g| g.sync_group_tracking_weight);
    let mut out = Vec::new();
    let mut add = |track: &'c Tracking| {
        for (kind, t) in track.all() {
            let obj_reverse = match kind {
                "track_script" => config
                    .scripts
                    .iter()
                    .find(|s| s.name == t.name)
                    .map(|s| s.reverse),
                "track_file" => config
                    .track_files
                    .iter()
                    .find(|f| f.name == t.name)
                    .map(|f| f.reverse),
                "track_process" => config
                    .track_processes
                    .iter()
                    .find(|p| p.name == t.name)
                    .map(|p| p.reverse),
                "track_interface" => Some(false),
                "track_bfd" => config
                    .bfd_instances
                    .iter()
                    .find(|b| b.name == t.name)
                    .map(|b| b.reverse),
                _ => None,
            };
            let Some(obj_reverse) = obj_reverse else {
                continue;
            };
            let weight = effective_weight(kind, t, config);
            if weight == 0 {
                // A failure means FAULT: the VIPs always move.
                continue;
            }
            let reverse = if kind == "track_bfd" {
                // keepalived: the line's `reverse` / `noreverse`, else the bfd_instance's.
                t.reverse || (obj_reverse && !t.noreverse)
            } else {
                t.reverse != obj_reverse
            };
            let (healthy, failed) = if kind == "track_file" {
                // value × weight, the value negated by `reverse`; modelled as 0 or 1.
                (0, if reverse { -weight } else { weight })
            } else {
                // weight > 0 counts while the object is good, weight < 0 while it is
                // bad; `reverse` reverses the direction of the adjustment (keepalived).
                let good = if weight > 0 { weight } else { 0 };
                let bad = if weight < 0 { weight } else { 0 };
                if reverse {
                    (-good, -bad)
                } else {
                    (good, bad)
                }
            };
            out.push(Effect {
                kind,
                tracked: t,
                weight,
                reverse,
                healthy,
                failed,
            });
        }
    };
    if own_weights {
        add(&inst.track);
    }
    if let Some(g) = group {
        add(&g.track);
    }
    out
}

/// One node's instance of a VRRP group, with its priority range.
struct Member<'c> {
    label: &'c str,
    inst: &'c VrrpInstance,
    effects: Vec<Effect<'c>>,
    owner: bool,
    /// Priority with every tracked object healthy.
    nominal: i64,
    /// Lowest priority its tracking can give it.
    floor: i64,
    /// Highest priority its tracking can give it.
    ceiling: i64,
}

impl<'c> Member<'c> {
    fn new(label: &'c str, config: &'c Config, inst: &'c VrrpInstance) -> Self {
        let p = i64::from(inst.priority);
        let owner = inst.priority == 255;
        let effects = if owner {
            Vec::new()
        } else {
            effects(config, inst)
        };
        let nominal = p + effects.iter().map(|e| e.healthy).sum::<i64>();
        let floor = nominal - effects.iter().map(Effect::decrease).sum::<i64>();
        let ceiling = nominal + effects.iter().map(Effect::increase).sum::<i64>();
        let clamp = |v: i64| if owner { 255 } else { v.clamp(1, 254) };
        Member {
            label,
            inst,
            effects,
            owner,
            nominal: clamp(nominal),
            floor: clamp(floor),
            ceiling: clamp(ceiling),
        }
    }
}

#[derive(PartialEq, Eq)]
enum GroupKey<'c> {
    Vips(u8, bool, Vec<IpAddr>),
    Name(&'c str),
}

/// Groups the nodes' instances into VRRP groups: same VRID, address family and set of
/// VIPs; instances left without a partner on another node (or without VIPs) are then
/// matched by name. At most one instance per node in a group.
fn vrrp_groups<'c>(configs: &[(&'c str, &'c Config)]) -> Vec<Vec<(usize, &'c VrrpInstance)>> {
    fn insert<'c>(
        groups: &mut Vec<(GroupKey<'c>, Vec<(usize, &'c VrrpInstance)>)>,
        key: GroupKey<'c>,
        node: usize,
        inst: &'c VrrpInstance,
    ) {
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => {
                if !members.iter().any(|(n, _)| *n == node) {
                    members.push((node, inst));
                }
            }
            None => groups.push((key, vec![(node, inst)])),
        }
    }
    let mut by_vips = Vec::new();
    let mut rest = Vec::new();
    for (node, (_, config)) in configs.iter().enumerate() {
        for inst in &config.instances {
            match inst.virtual_ipaddress.first() {
                Some(first) => {
                    let mut addrs: Vec<IpAddr> =
                        inst.virtual_ipaddress.iter().map(|v| v.addr).collect();
                    addrs.sort();
                    addrs.dedup();
                    let key = GroupKey::Vips(inst.virtual_router_id, first.addr.is_ipv6(), addrs);
                    insert(&mut by_vips, key, node, inst);
                }
                None => rest.push((node, inst)),
            }
        }
    }
    let mut out = Vec::new();
    for (_, members) in by_vips {
        if members.len() > 1 {
            out.push(members);
        } else {
            rest.extend(members);
        }
    }
    let mut by_name = Vec::new();
    rest.sort_by_key(|(node, _)| *node);
    for (node, inst) in rest {
        insert(&mut by_name, GroupKey::Name(&inst.name), node, inst);
    }
    out.extend(by_name.into_iter().map(|(_, m)| m).filter(|m| m.len() > 1));
    out
}

fn weight_help(sign_of: i64, magnitude: i64) -> String {
    if magnitude > 253 {
        "no weight can do it (the range is -253..=253); use `weight 0`, so that a failure puts the instance in FAULT and the VIPs move".into()
    } else {
        let sign = if sign_of < 0 { "-" } else { "" };
        format!(
            "use a weight of at least {sign}{magnitude} (or `weight 0`: a failure then means FAULT and the VIPs move)"
        )
    }
}

/// Tracking weights that can never move the VIPs, given the priorities of every node of
/// a cluster. `configs` holds one `(label, config)` per node (one file per node, or one
/// file loaded once per config id); the label names the node in the messages.
///
/// For each VRRP group present on two or more nodes (see [`vrrp_groups`]), with every
/// tracked object's effect resolved as the runtime applies it:
///
/// * *nominal* priority: the configured one plus the weights in force while every
///   tracked object is healthy (interface up, script succeeding, process running,
///   tracked file holding 0);
/// * worst-case drop: the sum over tracked objects of the largest decrease each can
///   cause on failure (a tracked file is taken to hold 0 or 1);
/// * the intended master is the node with the highest nominal priority. If its nominal
///   priority minus its worst-case drop is still above the best other node's nominal
///   priority, or equal to it (the tie is broken by the primary addresses, which a
///   config does not tell), each of its priority-lowering lines gets a warning;
/// * otherwise, a backup whose weights lifting it above its configured priority can
///   never take it above the master's lowest priority gets a warning at those lines.
///
/// Weight 0 (a failure means FAULT: the VIPs always move) is never warned about; owners
/// (priority 255) are never adjusted (the single-file lint warns about their weights);
/// groups with `nopreempt` are left to the single-file lint, since there a backup never
/// takes over from a live master whatever the priorities.
pub fn cross_node(configs: &[(&str, &Config)]) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut push = |d: Diagnostic| {
        if !out.contains(&d) {
            out.push(d);
        }
    };
    for group in vrrp_groups(configs) {
        if group.iter().any(|(_, i)| i.nopreempt) {
            continue;
        }
        let members: Vec<Member> = group
            .iter()
            .map(|&(node, inst)| Member::new(configs[node].0, configs[node].1, inst))
            .collect();
        let top = members.iter().map(|m| m.nominal).max().unwrap_or(0);
        let mut master_warned = false;
        // With equal nominal priorities every one of them may be the master.
        for (mi, m) in members.iter().enumerate() {
            if m.nominal != top || m.owner {
                continue;
            }
            let Some(best) = members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != mi)
                .map(|(_, o)| o)
                .max_by_key(|o| o.nominal)
            else {
                continue;
            };
            let lowering: Vec<&Effect> = m.effects.iter().filter(|e| e.decrease() > 0).collect();
            if lowering.is_empty() || m.floor < best.nominal {
                continue;
            }
            master_warned = true;
            let needed = m.nominal - best.nominal + 1;
            let all = if lowering.len() > 1 {
                format!(
                    " (with all {} of its lowering tracked objects failing)",
                    lowering.len()
                )
            } else {
                String::new()
            };
            let (rel, outcome) = if m.floor > best.nominal {
                ("still above", "the VIP never moves when it fails")
            } else {
                (
                    "only equal to",
                    "on equal priorities the higher primary address wins, so the VIP may never move when it fails",
                )
            };
            for e in lowering {
                let magnitude = if best.nominal <= 1 { 254 } else { needed };
                push(
                    at(
                        Severity::Warning,
                        format!(
                            "{} can lower {} on {} to at most {}{all}, {rel} {}'s {}: {outcome}",
                            e.describe(),
                            m.inst.name,
                            m.label,
                            m.floor,
                            best.label,
                            best.nominal
                        ),
                        &e.tracked.span,
                        e.tracked.name.chars().count(),
                    )
                    .with_help(weight_help(e.weight, magnitude))
                    .with_code(CROSS_NODE),
                );
            }
        }
        if master_warned {
            continue;
        }
        let Some(master) = members.iter().find(|m| m.nominal == top) else {
            continue;
        };
        for b in members.iter().filter(|b| b.nominal != top) {
            let lifts: Vec<&Effect> = b.effects.iter().filter(|e| e.lifts()).collect();
            if lifts.is_empty() || b.ceiling > master.floor {
                continue;
            }
            let extra = master.floor - b.ceiling + 1;
            let whose = if master.owner {
                format!("{}'s 255 (address owner, never adjusted)", master.label)
            } else if master.floor < master.nominal {
                format!("{}'s lowest, {}", master.label, master.floor)
            } else {
                format!("{}'s {}", master.label, master.floor)
            };
            let all = if lifts.len() > 1 {
                format!(" (with all {} of its lifting tracked objects)", lifts.len())
            } else {
                String::new()
            };
            for e in lifts {
                let magnitude = if master.floor >= 254 {
                    254
                } else {
                    e.weight.abs() + extra
                };
                let help = if magnitude > 253 {
                    format!(
                        "no weight can lift {} above {}; lower {}'s priority instead",
                        b.label, master.label, master.label
                    )
                } else {
                    format!(
                        "use a weight of at least {}{magnitude}, or lower {}'s priority",
                        if e.weight < 0 { "-" } else { "" },
                        master.label
                    )
                };
                push(
                    at(
                        Severity::Warning,
                        format!(
                            "{} can raise {} on {} to at most {}{all}, never above {whose}: {} never takes the VIP over from a live {} this way",
                            e.describe(),
                            b.inst.name,
                            b.label,
                            b.ceiling,
                            b.label,
                            master.label
                        ),
                        &e.tracked.span,
                        e.tracked.name.chars().count(),
                    )
                    .with_help(help)
                    .with_code(CROSS_NODE),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load_str, LoadOptions};

    fn load(text: &str, file: &str, id: &str) -> Config {
        let opts = LoadOptions {
            config_id: Some(id.into()),
            check_interfaces: false,
            ..Default::default()
        };
        match load_str(text, Path::new(file), &opts) {
            Ok(l) => l.config,
            Err(d) => panic!("{file}: {d:#?}"),
        }
    }

    fn node(priority: u32, track: &str) -> String {
        format!(
            "vrrp_script chk_down {{\n    script \"/bin/true\"\n}}\n\
             vrrp_script chk_up {{\n    script \"/bin/true\"\n    weight 2\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    virtual_ipaddress {{\n        192.0.2.10/24\n    }}\n{track}}}\n"
        )
    }

    fn lint(a: &str, b: &str) -> Vec<Diagnostic> {
        let c1 = load(a, "node1.conf", "x");
        let c2 = load(b, "node2.conf", "x");
        cross_node(&[("node1", &c1), ("node2", &c2)])
    }

    const DOWN2: &str = "    track_script {\n        chk_down weight -2\n    }\n";

    #[test]
    fn weight_too_small_to_move_the_vip() {
        let d = lint(&node(100, DOWN2), &node(97, DOWN2));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(
            d[0].message,
            "`track_script chk_down` (weight -2) can lower VI_1 on node1 to at most 98, still above node2's 97: the VIP never moves when it fails"
        );
        assert_eq!(*d[0].span.file, *Path::new("node1.conf"));
        assert_eq!((d[0].span.line, d[0].span.col), (17, 9));
        assert_eq!(d[0].len, "chk_down".len() as u32);
        assert!(d[0]
            .help
            .as_deref()
            .unwrap()
            .starts_with("use a weight of at least -4"));
        assert_eq!(d[0].code, Some(CROSS_NODE));
        assert_eq!(d[0].severity, Severity::Warning);
    }

    #[test]
    fn enough_weight_or_fault_is_quiet() {
        assert!(lint(&node(100, DOWN2), &node(99, DOWN2)).is_empty());
        let fault = "    track_script {\n        chk_down\n    }\n";
        assert!(lint(&node(200, fault), &node(50, fault)).is_empty());
        let down60 = "    track_script {\n        chk_down weight -60\n    }\n";
        assert!(lint(&node(150, down60), &node(100, down60)).is_empty());
    }

    #[test]
    fn equal_after_the_drop_may_not_move() {
        let d = lint(&node(100, DOWN2), &node(98, ""));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(
            d[0].message.contains("only equal to node2's 98"),
            "{}",
            d[0].message
        );
        assert!(d[0].message.contains("may never move"), "{}", d[0].message);
        assert!(d[0].help.as_deref().unwrap().contains("-3"));
    }

    #[test]
    fn positive_weights_count_while_healthy() {
        let up = "    track_script {\n        chk_up\n    }\n";
        // 101+2 vs 100+2: a failure on node1 gives 101 < 102, fine.
        assert!(lint(&node(101, up), &node(100, up)).is_empty());
        // 150+2 vs 100+2: the failure leaves 150.
        let d = lint(&node(150, up), &node(100, up));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(
            d[0].message,
            "`track_script chk_up` (weight 2) can lower VI_1 on node1 to at most 150, still above node2's 102: the VIP never moves when it fails"
        );
        assert!(d[0]
            .help
            .as_deref()
            .unwrap()
            .starts_with("use a weight of at least 51"));
        // Only the master tracks, +5 lifts it over the backup: 100+5 vs 103; on failure 100 < 103.
        let up5 = "    track_script {\n        chk_up weight 5\n    }\n";
        assert!(lint(&node(100, up5), &node(103, "")).is_empty());
    }

    #[test]
    fn several_objects_add_up() {
        let two =
            "    track_script {\n        chk_down weight -30\n        chk_up weight -30\n    }\n";
        assert!(lint(&node(150, two), &node(100, "")).is_empty());
        let two =
            "    track_script {\n        chk_down weight -20\n        chk_up weight -20\n    }\n";
        let d = lint(&node(150, two), &node(100, ""));
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(d.iter().all(|d| d.message.contains(
            "to at most 110 (with all 2 of its lowering tracked objects failing), still above node2's 100"
        )));
    }

    #[test]
    fn reverse_failure_raises_so_never_lowers() {
        // reverse: the object failing *raises* the priority; nothing to lower node1.
        let rev = "    track_script {\n        chk_down weight -2 reverse\n    }\n";
        // node1 nominal 100-2 = 98 (healthy object counts as bad), node2 97.
        assert!(lint(&node(100, rev), &node(97, "")).is_empty());
    }

    #[test]
    fn backup_that_can_never_be_lifted_above_the_master() {
        let up = "    track_script {\n        chk_up weight 5\n    }\n";
        let d = lint(&node(100, ""), &node(90, up));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(*d[0].span.file, *Path::new("node2.conf"));
        assert_eq!(
            d[0].message,
            "`track_script chk_up` (weight 5) can raise VI_1 on node2 to at most 95, never above node1's 100: node2 never takes the VIP over from a live node1 this way"
        );
        assert!(d[0]
            .help
            .as_deref()
            .unwrap()
            .starts_with("use a weight of at least 11"));
        // Lifted above: fine.
        let up15 = "    track_script {\n        chk_up weight 15\n    }\n";
        assert!(lint(&node(100, ""), &node(90, up15)).is_empty());
    }

    #[test]
    fn owner_is_never_adjusted() {
        let up = "    track_script {\n        chk_up weight 5\n    }\n";
        // The owner's own weight is the single-file lint's business; the backup's lift
        // can never reach 255.
        let d = lint(&node(255, DOWN2), &node(100, up));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(
            d[0].message.contains("node1's 255 (address owner"),
            "{}",
            d[0].message
        );
        assert_eq!(*d[0].span.file, *Path::new("node2.conf"));
    }

    #[test]
    fn nopreempt_and_sync_groups_without_weights_are_skipped() {
        let np = format!("{DOWN2}    nopreempt\n");
        assert!(lint(&node(150, &np), &node(100, &np)).is_empty());
        let sg = "vrrp_sync_group G {\n    group {\n        VI_1\n        VI_2\n    }\n}\n";
        let second = "vrrp_instance VI_2 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 52\n    priority 100\n    virtual_ipaddress {\n        192.0.2.11/24\n    }\n}\n";
        let a = format!("{}{second}{sg}", node(150, DOWN2));
        let b = format!("{}{second}{sg}", node(100, DOWN2));
        assert!(lint(&a, &b).is_empty());
        // With sync_group_tracking_weight the weights apply again.
        let sgw = sg.replace("}\n}\n", "}\n    sync_group_tracking_weight\n}\n");
        let a = format!("{}{second}{sgw}", node(150, DOWN2));
        let b = format!("{}{second}{sgw}", node(100, DOWN2));
        assert_eq!(lint(&a, &b).len(), 1);
    }

    #[test]
    fn groups_match_by_vrid_family_and_vips_not_by_interface_or_name() {
        // Different interface and instance name on node2: still the same group.
        let b = node(97, DOWN2)
            .replace("interface eth0", "interface ens3")
            .replace("VI_1", "web");
        assert_eq!(lint(&node(100, DOWN2), &b).len(), 1);
        // Different VRID and name: another group, nothing to compare.
        let other = node(97, DOWN2)
            .replace("virtual_router_id 51", "virtual_router_id 52")
            .replace("VI_1", "web");
        assert!(lint(&node(100, DOWN2), &other).is_empty());
        // Different VIPs but the same name: matched by name.
        let renamed = node(97, DOWN2).replace("192.0.2.10/24", "192.0.2.99/24");
        assert_eq!(lint(&node(100, DOWN2), &renamed).len(), 1);
    }

    #[test]
    fn one_file_evaluated_per_config_id() {
        let text =
            node(0, DOWN2).replace("    priority 0\n", "@lb1 priority 100\n@lb2 priority 97\n");
        let c1 = load(&text, "k.conf", "lb1");
        let c2 = load(&text, "k.conf", "lb2");
        let d = cross_node(&[("@lb1", &c1), ("@lb2", &c2)]);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0]
            .message
            .contains("VI_1 on @lb1 to at most 98, still above @lb2's 97"));
        assert_eq!(*d[0].span.file, *Path::new("k.conf"));
    }

    #[test]
    fn track_file_counts_one_unit_and_interfaces_have_no_default_weight() {
        let tf = "track_file f {\n    file /tmp/x\n    weight -2\n}\n";
        let t = "    track_file {\n        f\n    }\n";
        let d = lint(
            &format!("{tf}{}", node(100, t)),
            &format!("{tf}{}", node(97, t)),
        );
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].message.starts_with("`track_file f` (weight -2)"));
        let ti = "    track_interface {\n        eth1\n    }\n";
        assert!(lint(&node(150, ti), &node(100, ti)).is_empty());
        let ti = "    track_interface {\n        eth1 weight -10\n    }\n";
        assert_eq!(lint(&node(150, ti), &node(100, ti)).len(), 1);
    }
}

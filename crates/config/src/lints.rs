//! Checks across blocks (names that must exist, duplicates) and lints for the classic
//! field mistakes keepalived accepts silently.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Diags, Severity};
use crate::keywords::suggest;
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

/// Addresses of this host's interfaces (`getifaddrs`).
fn host_addresses() -> HashMap<String, Vec<IpAddr>> {
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

pub(crate) fn lint(
    config: &Config,
    metas: &[InstanceMeta],
    tree: &[Node],
    opts: &LoadOptions,
    d: &mut Diags,
) {
    let host = opts.check_interfaces.then(host_addresses);
    let scripts: HashMap<&str, &VrrpScript> = config
        .scripts
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut used_scripts: HashSet<&str> = HashSet::new();
    let files: HashSet<&str> = config.track_files.iter().map(|f| f.name.as_str()).collect();
    let procs: HashSet<&str> = config
        .track_processes
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let bfds: HashSet<&str> = config
        .bfd_instances
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    let instance_names: HashSet<&str> = config.instances.iter().map(|i| i.name.as_str()).collect();

    // Sync groups: members exist and belong to one group only.
    let mut group_of: HashMap<&str, &SyncGroup> = HashMap::new();
    for g in &config.sync_groups {
        for m in &g.group {
            if !instance_names.contains(m.as_str()) {
                let help = suggest(m, instance_names.iter().copied())
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
            &g.track,
            &scripts,
            &files,
            &procs,
            &bfds,
            &mut used_scripts,
        );
    }

    let strict_tok = find_global(tree, "vrrp_strict");
    let mut strict_no_accept: Vec<&str> = Vec::new();
    for (inst, meta) in config.instances.iter().zip(metas) {
        check_tracking(
            d,
            &inst.track,
            &scripts,
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
            let mut s = |key: &str, msg: String| {
                if let Some(tok) = meta.keyword_tok(key) {
                    d.push(
                        Diagnostic::warning_at(msg, tok)
                            .with_help("vrrp_strict (or strict_mode) enforces RFC conformance; remove one of the two"),
                    );
                }
            };
            if !inst.unicast_peers.is_empty() {
                s(
                    "unicast_peer",
                    "`vrrp_strict` does not allow unicast peers".into(),
                );
            }
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
                        tok,
                    )),
                    None => {
                        if let Some(tok) = find_global(tree, "vrrp_garp_master_repeat") {
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
            if inst.accept.is_none() && inst.priority != 255 {
                strict_no_accept.push(&inst.name);
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
            ] {
                if let (Some(script), Some(tok)) = (script, meta.value_tok(what)) {
                    check_script(d, script, &tok.span, tok.len as usize, what);
                }
            }
        }
    }
    if let (Some(tok), false) = (&strict_tok, strict_no_accept.is_empty()) {
        d.push(
            Diagnostic::warning_at(
                format!(
                    "`vrrp_strict` turns on `no_accept`: keepalived adds firewall rules that drop traffic to the VIPs of {}, so services on this node cannot be reached at them",
                    strict_no_accept
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                tok,
            )
            .with_help("write `accept` in those instances if the VIPs must be reachable, or drop `vrrp_strict`"),
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

    virtual_servers(config, d);
}

fn find_global(tree: &[Node], key: &str) -> Option<crate::lexer::Token> {
    tree.iter()
        .filter(|n| n.name() == "global_defs")
        .flat_map(|n| n.children.iter().flatten())
        .rfind(|c| c.name() == key)
        .map(|c| c.keyword.clone())
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

fn check_tracking<'c>(
    d: &mut Diags,
    track: &'c Tracking,
    scripts: &HashMap<&str, &VrrpScript>,
    files: &HashSet<&str>,
    procs: &HashSet<&str>,
    bfds: &HashSet<&str>,
    used: &mut HashSet<&'c str>,
) {
    let mut check = |list: &'c [Tracked],
                     kind: &str,
                     block: &str,
                     known: &dyn Fn(&str) -> bool,
                     names: Vec<&str>| {
        for t in list {
            if known(&t.name) {
                used.insert(&t.name);
                continue;
            }
            let help = match suggest(&t.name, names.iter().copied()) {
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
    check(
        &track.scripts,
        "track_script",
        "vrrp_script",
        &|n| scripts.contains_key(n),
        scripts.keys().copied().collect(),
    );
    check(
        &track.files,
        "track_file",
        "track_file",
        &|n| files.contains(n),
        files.iter().copied().collect(),
    );
    check(
        &track.processes,
        "track_process",
        "track_process",
        &|n| procs.contains(n),
        procs.iter().copied().collect(),
    );
    check(
        &track.bfds,
        "track_bfd",
        "bfd_instance",
        &|n| bfds.contains(n),
        bfds.iter().copied().collect(),
    );
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
            let span = meta.value_tok("priority").map_or(&inst.span, |t| &t.span);
            warn(
                d,
                span,
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
    for (v, tok) in inst.virtual_ipaddress.iter().zip(&meta.vip_tokens) {
        if owned.iter().any(|o| o.addr == v.addr) {
            d.push(
                Diagnostic::warning_at(
                    format!(
                        "virtual address {} is already an address of `{}` on this host",
                        v.addr, inst.interface
                    ),
                    tok,
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

fn virtual_servers(config: &Config, d: &mut Diags) {
    let groups: HashSet<&str> = config
        .virtual_server_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    let mut seen: HashMap<(VsKey, String), &VirtualServer> = HashMap::new();
    for vs in &config.virtual_servers {
        let label = vs_label(&vs.key);
        let len = "virtual_server".len();
        let proto = vs.protocol.clone().unwrap_or_else(|| "TCP".into());
        if let Some(first) = seen.insert((vs.key.clone(), proto.clone()), vs) {
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
                let help =
                    suggest(g, groups.iter().copied()).map(|s| format!("did you mean `{s}`?"));
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
        let mut rs_seen: HashMap<(IpAddr, Option<u16>), &RealServer> = HashMap::new();
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
            if vs_family.is_some_and(|v6| v6 != rs.addr.is_ipv6()) && kind != Some("TUN") {
                warn(
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
        if let Some(q) = vs.quorum {
            if i64::from(q) > total && !vs.real_servers.is_empty() {
                warn(
                    d,
                    &vs.span,
                    len,
                    format!(
                        "virtual_server {label}: quorum {q} exceeds the sum of real server weights ({total}), so it can never be reached"
                    ),
                    None,
                );
            }
        }
    }
}

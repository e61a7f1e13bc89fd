//! From the parsed config to checker specs: inherited timing and keepalived's
//! defaults resolved, every option turned into a probe setting, and an error naming
//! the keyword and line for anything vipd cannot honour (never silently ignored).
//!
//! Timing: a checker takes each of `delay_loop`, `connect_timeout`, `retry`,
//! `delay_before_retry` and `warmup` from its own block, else its real_server, else
//! its virtual_server, else keepalived's default:
//!
//! | keyword | default |
//! |---|---|
//! | `delay_loop` | 60 s |
//! | `connect_timeout` | 5 s |
//! | `retry` | 1; DNS_CHECK 3; MISC_CHECK 0 |
//! | `delay_before_retry` | HTTP_GET/SSL_GET 3 s; DNS_CHECK `delay_loop`; others 1 s |
//! | `warmup` | `delay_loop` (first probes spread over it; 0 = at once) |
//! | `misc_timeout` | `delay_loop` |
//!
//! FILE_CHECK has no timing: its file is read every [`FILE_POLL`].

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vipd_config::model::{
    CheckTiming, Checker, Config, RealServer, Span, SslContext, TrackFile, VirtualServer,
};

use crate::probe::dns::{self, Dns};
use crate::probe::file::FileCheck;
use crate::probe::http::{self, Http, HttpVersion, RegexLimits, StatusCodes, UrlCheck};
use crate::probe::misc::Misc;
use crate::probe::smtp::{self, Smtp};
use crate::probe::udp::{self, Udp};
use crate::probe::BfdCheck;
use crate::probe::{Probe, ProbeKind};
use crate::sched::{CheckSpec, Timing};

pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a FILE_CHECK's file is read.
pub const FILE_POLL: Duration = Duration::from_secs(1);
/// UDP_CHECK `max_reply_length` default (keepalived's).
pub const DEFAULT_MAX_REPLY_LENGTH: usize = 255;

/// keepalived's default `retry` for a checker kind.
pub fn default_retry(kind: &str) -> u32 {
    match kind {
        "DNS_CHECK" => 3,
        "MISC_CHECK" => 0,
        _ => 1,
    }
}

/// keepalived's default `delay_before_retry` for a checker kind.
pub fn default_delay_before_retry(kind: &str, delay_loop: Duration) -> Duration {
    match kind {
        "HTTP_GET" | "SSL_GET" => Duration::from_secs(3),
        "DNS_CHECK" => delay_loop,
        _ => Duration::from_secs(1),
    }
}

/// The global settings checkers use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Globals {
    /// `track_file` blocks (FILE_CHECK names one).
    pub track_files: Vec<TrackFile>,
    /// `script_user`: MISC_CHECK's default user.
    pub script_user: Option<String>,
    /// `enable_script_security`: MISC_CHECK programs must be root-owned and not
    /// writable by others.
    pub enable_script_security: bool,
    /// `use_symlink_paths`: the security check takes the path as written.
    pub use_symlink_paths: bool,
    /// The top-level `SSL { }` block (SSL_GET's client certificate).
    pub ssl: Option<SslContext>,
    /// `checker_priority` / `checker_rt_priority`: the checker thread's nice value /
    /// SCHED_RR priority.
    pub nice: Option<i32>,
    pub rt_priority: Option<u8>,
    /// `checker_cpu_affinity`: the checker thread's CPUs (empty: any).
    pub cpu_affinity: Vec<u16>,
    /// `checker_log_all_failures`: the checkers' default `log_all_failures`.
    pub log_all_failures: bool,
    /// The `bfd_instance`s whose events go to the checkers (BFD_CHECK names one).
    pub bfd_instances: Vec<String>,
}

impl Globals {
    pub fn from_config(cfg: &Config) -> Globals {
        Globals {
            track_files: cfg.track_files.clone(),
            script_user: cfg.global.script_user.clone(),
            enable_script_security: cfg.global.enable_script_security,
            use_symlink_paths: cfg.global.use_symlink_paths,
            log_all_failures: cfg.global.checker_log_all_failures,
            ssl: cfg.ssl.clone(),
            nice: cfg.global.checker_priority,
            rt_priority: cfg.global.checker_rt_priority,
            bfd_instances: cfg
                .bfd_instances
                .iter()
                .filter(|b| b.to_checker)
                .map(|b| b.name.clone())
                .collect(),
            cpu_affinity: cfg.global.checker_cpu_affinity.clone(),
        }
    }
}

/// Everything the runner needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub checks: Vec<PlannedCheck>,
    /// Every real server, with or without checkers.
    pub servers: Vec<ServerRef>,
    /// `init_file` of the track_files FILE_CHECKs use.
    pub init_files: Vec<InitFile>,
}

#[derive(Debug, Clone)]
pub struct PlannedCheck {
    pub sched: CheckSpec,
    pub probe: Probe,
    /// `HTTP_GET`, `TCP_CHECK`, ...
    pub kind: String,
    /// `log_all_failures`: log every failure, not only state changes.
    pub log_all_failures: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    pub vs: usize,
    pub rs: usize,
    pub weight: i64,
    pub has_checkers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFile {
    pub path: PathBuf,
    pub value: i64,
    pub overwrite: bool,
}

/// A keyword vipd cannot honour, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub keyword: String,
    pub span: Span,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.span.file.display(),
            self.span.line,
            self.keyword,
            self.message
        )
    }
}

/// All the problems found, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Builds the checker plan for `vss` (the config's `virtual_servers`; ids are
/// indices into it).
pub fn build(vss: &[VirtualServer], g: &Globals) -> Result<Plan, SpecErrors> {
    let mut errs = Vec::new();
    let mut plan = Plan {
        checks: Vec::new(),
        servers: Vec::new(),
        init_files: Vec::new(),
    };
    let mut init_seen = BTreeSet::new();
    // One TLS client for every SSL_GET, its files read only when one exists.
    let uses_tls = vss
        .iter()
        .flat_map(|vs| &vs.real_servers)
        .flat_map(|rs| &rs.checkers)
        .any(|c| c.kind == "SSL_GET");
    let tls = match (&g.ssl, uses_tls) {
        (Some(ssl), true) => ssl::client_config(ssl).map_err(|e| errs.push(e)).ok(),
        _ => None,
    }
    .unwrap_or_else(http::insecure_client_config);
    for (vi, vs) in vss.iter().enumerate() {
        for (ri, rs) in vs.real_servers.iter().enumerate() {
            plan.servers.push(ServerRef {
                vs: vi,
                rs: ri,
                weight: rs.weight,
                has_checkers: !rs.checkers.is_empty(),
            });
            let checkers: Vec<Cow<Checker>> = rs
                .checkers
                .iter()
                .flat_map(|c| per_host(c, &mut errs))
                .collect();
            for c in checkers {
                let mut b = Builder {
                    vs,
                    rs,
                    c: &c,
                    g,
                    tls: &tls,
                    errs: &mut errs,
                };
                if let Some((pc, init)) = b.build(vi, ri) {
                    if let Some(i) = init {
                        if init_seen.insert(i.path.clone()) {
                            plan.init_files.push(i);
                        }
                    }
                    plan.checks.push(pc);
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(plan)
    } else {
        Err(SpecErrors(errs))
    }
}

struct Builder<'a> {
    vs: &'a VirtualServer,
    rs: &'a RealServer,
    c: &'a Checker,
    g: &'a Globals,
    /// SSL_GET's TLS client.
    tls: &'a Arc<rustls::ClientConfig>,
    errs: &'a mut Vec<SpecError>,
}

/// keepalived's booleans; no value = true.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

const COMMON: &[&str] = &["bind_if", "fwmark", "alpha", "log_all_failures"];

fn allowed(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "HTTP_GET" => &["http_protocol", "fast_recovery", "virtualhost"],
        "SSL_GET" => &[
            "http_protocol",
            "fast_recovery",
            "virtualhost",
            "enable_sni",
            "tls_compliant",
        ],
        "TCP_CHECK" | "PING_CHECK" => &[],
        "SMTP_CHECK" => &["helo_name"],
        "DNS_CHECK" => &["type", "name"],
        "UDP_CHECK" => &[
            "payload",
            "require_reply",
            "min_reply_length",
            "max_reply_length",
        ],
        "MISC_CHECK" => &[
            "misc_path",
            "misc_timeout",
            "misc_dynamic",
            "user",
            "alpha",
            "log_all_failures",
        ],
        "FILE_CHECK" => &["track_file", "dynamic", "weight"],
        "BFD_CHECK" => &["name", "alpha"],
        _ => return None,
    })
}

impl Builder<'_> {
    fn err(&mut self, keyword: &str, span: &Span, message: impl Into<String>) {
        self.errs.push(SpecError {
            keyword: keyword.to_string(),
            span: span.clone(),
            message: message.into(),
        });
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.c.options.get(key).map(String::as_str)
    }

    fn opt_bool(&mut self, key: &str) -> Option<bool> {
        let v = self.opt(key)?.to_string();
        match parse_bool(&v) {
            Some(b) => Some(b),
            None => {
                let (kind, span) = (self.c.kind.clone(), self.c.span.clone());
                self.err(key, &span, format!("{kind}: `{v}` is not a boolean"));
                None
            }
        }
    }

    fn opt_int<T: std::str::FromStr>(&mut self, key: &str) -> Option<T> {
        let v = self.opt(key)?.to_string();
        match v.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                let (kind, span) = (self.c.kind.clone(), self.c.span.clone());
                self.err(key, &span, format!("{kind}: `{v}` is not a valid number"));
                None
            }
        }
    }

    /// A timing value from the nearest level that sets it, with that level's span.
    fn pick<T: Clone>(&self, f: impl Fn(&CheckTiming) -> Option<T>) -> Option<(T, Span)> {
        f(&self.c.timing)
            .map(|v| (v, self.c.span.clone()))
            .or_else(|| f(&self.rs.timing).map(|v| (v, self.rs.span.clone())))
            .or_else(|| f(&self.vs.timing).map(|v| (v, self.vs.span.clone())))
    }

    fn build(&mut self, vi: usize, ri: usize) -> Option<(PlannedCheck, Option<InitFile>)> {
        let c = self.c;
        let kind = c.kind.as_str();
        let span = c.span.clone();
        let Some(extra) = allowed(kind) else {
            self.err(kind, &span, format!("unknown checker `{kind}`"));
            return None;
        };
        let before = self.errs.len();
        let generic = !matches!(kind, "MISC_CHECK" | "FILE_CHECK" | "BFD_CHECK");
        for key in c.options.keys() {
            if !(extra.contains(&key.as_str()) || generic && COMMON.contains(&key.as_str())) {
                self.err(key, &span, format!("not supported for {kind} by vipd"));
            }
        }
        if !generic {
            let fields = [
                ("connect_ip", c.connect_ip.is_some()),
                ("connect_port", c.connect_port.is_some()),
                ("bindto", c.bindto.is_some()),
                ("bind_port", c.bind_port.is_some()),
            ];
            for (kw, set) in fields {
                if set {
                    self.err(kw, &span, format!("{kind} makes no connection"));
                }
            }
        }
        if kind == "PING_CHECK" {
            for (kw, set) in [
                ("connect_port", c.connect_port.is_some()),
                ("bind_port", c.bind_port.is_some()),
            ] {
                if set {
                    self.err(kw, &span, "PING_CHECK has no ports");
                }
            }
        }
        if kind == "MISC_CHECK" && c.timing.connect_timeout.is_some() {
            self.err(
                "connect_timeout",
                &span,
                "MISC_CHECK's time limit is `misc_timeout`",
            );
        }

        // Timing.
        let (delay_loop, dl_span) = self
            .pick(|t| t.delay_loop)
            .unwrap_or((DEFAULT_DELAY_LOOP, span.clone()));
        if delay_loop.is_zero() {
            self.err("delay_loop", &dl_span, "must be more than 0");
        }
        let (timeout, ct_span) = self
            .pick(|t| t.connect_timeout)
            .unwrap_or((DEFAULT_CONNECT_TIMEOUT, span.clone()));
        if timeout.is_zero() && kind != "MISC_CHECK" {
            self.err("connect_timeout", &ct_span, "must be more than 0");
        }
        let retry = self
            .pick(|t| t.retry)
            .map_or_else(|| default_retry(kind), |v| v.0);
        let delay_before_retry = self
            .pick(|t| t.delay_before_retry)
            .map_or_else(|| default_delay_before_retry(kind, delay_loop), |v| v.0);
        let warmup = self.pick(|t| t.warmup).map_or(delay_loop, |v| v.0);
        let mut timing = Timing {
            delay_loop,
            retry,
            delay_before_retry,
            warmup,
            rise: 1,
        };

        let alpha = self
            .opt_bool("alpha")
            .or(self.rs.alpha)
            .unwrap_or(self.vs.alpha);
        let log_all_failures = self
            .opt_bool("log_all_failures")
            .unwrap_or(self.g.log_all_failures);
        let fwmark = self.opt_int::<u32>("fwmark");
        let bind_if = self.opt("bind_if").map(str::to_string);

        // Target.
        let ip = c.connect_ip.unwrap_or(self.rs.addr);
        let needs_port = !matches!(
            kind,
            "PING_CHECK" | "MISC_CHECK" | "FILE_CHECK" | "BFD_CHECK"
        );
        let port = c.connect_port.or(self.rs.port);
        if needs_port && port.is_none() {
            self.err(
                "connect_port",
                &span,
                format!("{kind} needs a port: set `connect_port` or give the real_server one"),
            );
        }
        if let Some(b) = c.bindto {
            if b.is_ipv4() != ip.is_ipv4() {
                self.err(
                    "bindto",
                    &span,
                    format!("{b} is not of the family of the target {ip}"),
                );
            }
        }
        let target = SocketAddr::new(ip, port.unwrap_or(0));
        let label = match kind {
            "PING_CHECK" => format!("{kind} {ip}"),
            _ => format!("{kind} {target}"),
        };
        let mut dynamic = false;
        let mut init_file = None;
        let mut probe_timeout = timeout;

        let (pkind, label) = match kind {
            "HTTP_GET" | "SSL_GET" => {
                let tls = kind == "SSL_GET";
                let version = match self.opt("http_protocol") {
                    None | Some("1.0") => HttpVersion::V10,
                    Some("1.0C") => HttpVersion::V10Close,
                    Some("1.1") => HttpVersion::V11,
                    Some(v) => {
                        let v = v.to_string();
                        self.err(
                            "http_protocol",
                            &span,
                            format!("`{v}`: use 1.0, 1.0C or 1.1"),
                        );
                        HttpVersion::V10
                    }
                };
                let fast = self.opt_bool("fast_recovery").unwrap_or(false);
                let sni = self.opt_bool("enable_sni").unwrap_or(false);
                let tls_compliant = self.opt_bool("tls_compliant").unwrap_or(false);
                let vhost = self
                    .opt("virtualhost")
                    .map(str::to_string)
                    .or_else(|| self.rs.virtualhost.clone())
                    .or_else(|| self.vs.virtualhost.clone());
                if c.urls.is_empty() {
                    self.err(
                        "url",
                        &span,
                        format!("{kind} needs at least one `url` block"),
                    );
                }
                let mut urls = Vec::with_capacity(c.urls.len());
                for u in &c.urls {
                    let path = u.path.clone().unwrap_or_else(|| "/".into());
                    if http::wire::request_target(&path).is_err() {
                        self.err("path", &span, format!("`{path}` is not an absolute path"));
                    }
                    let status = match &u.status_code {
                        None => StatusCodes::default(),
                        Some(s) => StatusCodes::parse(s).unwrap_or_else(|e| {
                            self.err("status_code", &span, e);
                            StatusCodes::default()
                        }),
                    };
                    let digest = u.digest.as_ref().map(|d| d.to_ascii_lowercase());
                    if let Some(d) = &digest {
                        if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                            self.err("digest", &span, format!("`{d}` is not an MD5 hex digest"));
                        }
                    }
                    let mut builder = u.regex.as_ref().map(|r| regex::bytes::RegexBuilder::new(r));
                    let mut regex_limits = RegexLimits {
                        min_offset: u.regex_min_offset.unwrap_or(0) as usize,
                        max_offset: u.regex_max_offset.map(|v| v as usize),
                        first_line: false,
                    };
                    for opt in u.regex_options.iter().flat_map(|o| o.split_whitespace()) {
                        match regex_option(opt) {
                            Ok(RegexOption::Builder(set)) => {
                                if let Some(b) = builder.as_mut() {
                                    set(b);
                                }
                            }
                            Ok(RegexOption::FirstLine) => regex_limits.first_line = true,
                            Ok(RegexOption::NoEffect) => {}
                            Err(why) => self.err("regex_options", &span, format!("`{opt}`: {why}")),
                        }
                    }
                    if u.regex.is_none()
                        && (u.regex_options.is_some()
                            || u.regex_min_offset.is_some()
                            || u.regex_max_offset.is_some())
                    {
                        self.err(
                            "regex_options",
                            &span,
                            "regex options and offsets need a `regex` in the same `url`",
                        );
                    }
                    let regex = builder.and_then(|b| {
                        b.build()
                            .map_err(|e| {
                                let first = e.to_string();
                                let msg = first.lines().last().unwrap_or("invalid").to_string();
                                let r = u.regex.as_deref().unwrap_or_default();
                                self.err("regex", &span, format!("`{r}`: {msg}"))
                            })
                            .ok()
                    });
                    let host = u
                        .virtualhost
                        .clone()
                        .or_else(|| vhost.clone())
                        .unwrap_or_else(|| http::default_host(ip, target.port(), tls));
                    urls.push(UrlCheck {
                        path,
                        host,
                        status,
                        digest,
                        regex,
                        regex_no_match: u.regex_no_match,
                        regex_limits,
                        tls_compliant: u.tls_compliant.unwrap_or(tls_compliant),
                    });
                }
                if !fast {
                    // keepalived brings a recovering server up one URL per delay_loop.
                    timing.rise = urls.len().max(1) as u32;
                }
                let mut h = Http::new(urls, version);
                if tls {
                    h = h.with_tls(self.tls.clone(), sni);
                }
                (ProbeKind::Http(h), label)
            }
            "TCP_CHECK" => (ProbeKind::Tcp, label),
            "PING_CHECK" => (ProbeKind::Ping, label),
            "SMTP_CHECK" => {
                let helo_name = self
                    .opt("helo_name")
                    .map_or_else(smtp::default_helo_name, str::to_string);
                (ProbeKind::Smtp(Smtp { helo_name }), label)
            }
            "DNS_CHECK" => {
                let tname = self.opt("type").unwrap_or("SOA").to_string();
                let qtype = dns::qtype(&tname).unwrap_or_else(|| {
                    self.err(
                        "type",
                        &span,
                        format!("`{tname}`: use A, NS, CNAME, SOA, MX, TXT or AAAA"),
                    );
                    6
                });
                let name = self.opt("name").unwrap_or(".").to_string();
                if let Err(e) = dns::encode_name(&name) {
                    self.err("name", &span, e);
                }
                (ProbeKind::Dns(Dns { name, qtype }), label)
            }
            "UDP_CHECK" => {
                let payload = self.opt("payload").map(str::to_string).and_then(|p| {
                    udp::parse_hex(&p, false)
                        .map(|b| b.0.into_iter().map(|x| x.0).collect::<Vec<u8>>())
                        .map_err(|e| self.err("payload", &span, e))
                        .ok()
                });
                let require_reply = self.opt("require_reply").map(str::to_string).and_then(|p| {
                    udp::parse_hex(&p, true)
                        .map_err(|e| self.err("require_reply", &span, e))
                        .ok()
                });
                let min = self.opt_int::<usize>("min_reply_length");
                let max = self.opt_int::<usize>("max_reply_length");
                if require_reply.is_none() {
                    for (kw, v) in [("min_reply_length", min), ("max_reply_length", max)] {
                        if v.is_some() {
                            self.err(kw, &span, "has no effect without `require_reply`");
                        }
                    }
                }
                let (min, max) = (min.unwrap_or(0), max.unwrap_or(DEFAULT_MAX_REPLY_LENGTH));
                if min > max {
                    self.err(
                        "min_reply_length",
                        &span,
                        format!("{min} is more than max_reply_length {max}"),
                    );
                }
                (
                    ProbeKind::Udp(Udp {
                        payload,
                        require_reply,
                        min_reply_length: min,
                        max_reply_length: max,
                    }),
                    label,
                )
            }
            "MISC_CHECK" => {
                let line = self.opt("misc_path").unwrap_or("").to_string();
                let argv = vipd_exec::scripts::split_words(&line);
                // The path checked is the path run (no second lookup of the name).
                let mut program = None;
                if argv.is_empty() {
                    self.err("misc_path", &span, "MISC_CHECK needs a `misc_path` program");
                } else if self.g.enable_script_security {
                    match vipd_exec::scripts::check_security(&argv[0], self.g.use_symlink_paths) {
                        Ok(p) => program = Some(p),
                        Err(e) => self.err(
                            "misc_path",
                            &span,
                            format!("refused by enable_script_security: {e}"),
                        ),
                    }
                }
                let misc_timeout = self.opt_int::<u64>("misc_timeout").unwrap_or(0);
                probe_timeout = if misc_timeout == 0 {
                    delay_loop
                } else {
                    Duration::from_secs(misc_timeout)
                };
                dynamic = self.opt_bool("misc_dynamic").unwrap_or(false);
                let user = self
                    .opt("user")
                    .map(|u| ("user", u.to_string()))
                    .or_else(|| self.g.script_user.clone().map(|u| ("script_user", u)));
                let run_as = user.and_then(|(kw, u)| {
                    vipd_exec::scripts::run_as(&u)
                        .map(|r| (r.uid, r.gid))
                        .map_err(|e| self.err(kw, &span, format!("`{u}`: {e:#}")))
                        .ok()
                });
                let prog = argv.first().cloned().unwrap_or_default();
                (
                    ProbeKind::Misc(Misc {
                        argv,
                        program,
                        timeout: probe_timeout,
                        dynamic,
                        run_as,
                        rs_weight: self.rs.weight,
                    }),
                    format!("{kind} {prog}"),
                )
            }
            "FILE_CHECK" => {
                timing = Timing {
                    delay_loop: FILE_POLL,
                    retry: 0,
                    delay_before_retry: FILE_POLL,
                    warmup: FILE_POLL,
                    rise: 1,
                };
                probe_timeout = FILE_POLL;
                dynamic = self.opt_bool("dynamic").unwrap_or(false);
                let name = self.opt("track_file").unwrap_or("").to_string();
                let tf = self.g.track_files.iter().find(|t| t.name == name);
                let Some(tf) = tf else {
                    if name.is_empty() {
                        self.err("track_file", &span, "FILE_CHECK needs `track_file NAME`");
                    } else {
                        self.err(
                            "track_file",
                            &span,
                            format!("no track_file block named `{name}`"),
                        );
                    }
                    return None;
                };
                let weight = match self.opt("weight").map(str::to_string) {
                    None => Some(if tf.reverse { -tf.weight } else { tf.weight }),
                    Some(w) => {
                        let words: Vec<&str> = w.split_whitespace().collect();
                        match words.as_slice() {
                            [n] | [n, "noreverse"] => n.parse::<i64>().ok(),
                            [n, "reverse"] => n.parse::<i64>().ok().map(|v| -v),
                            _ => None,
                        }
                        .or_else(|| {
                            self.err("weight", &span, format!("`{w}`: use `weight N [reverse]`"));
                            None
                        })
                    }
                };
                init_file = tf.init_file.as_deref().map(|spec| {
                    let mut w = spec.split_whitespace().peekable();
                    let value = w.peek().and_then(|v| v.parse().ok());
                    if value.is_some() {
                        w.next();
                    }
                    InitFile {
                        path: PathBuf::from(&tf.file),
                        value: value.unwrap_or(0),
                        overwrite: w.any(|x| x == "overwrite"),
                    }
                });
                (
                    ProbeKind::File(FileCheck {
                        name: name.clone(),
                        path: PathBuf::from(&tf.file),
                        weight: weight.unwrap_or(1),
                        dynamic,
                        rs_weight: self.rs.weight,
                    }),
                    format!("{kind} {name}"),
                )
            }
            "BFD_CHECK" => {
                // Driven by the session's events (`Checkers::bfd`); the runner also
                // re-reads the last one every second, as FILE_CHECK its file.
                timing = Timing {
                    delay_loop: FILE_POLL,
                    retry: 0,
                    delay_before_retry: FILE_POLL,
                    warmup: FILE_POLL,
                    rise: 1,
                };
                probe_timeout = FILE_POLL;
                let name = self.opt("name").unwrap_or("").to_string();
                if name.is_empty() {
                    self.err("name", &span, "BFD_CHECK needs `name BFD_INSTANCE`");
                    return None;
                }
                if !self.g.bfd_instances.contains(&name) {
                    self.err(
                        "name",
                        &span,
                        format!("no bfd_instance named `{name}` sends its events to the checkers"),
                    );
                    return None;
                }
                (
                    ProbeKind::Bfd(BfdCheck {
                        name: name.clone(),
                        alpha,
                    }),
                    format!("{kind} {name}"),
                )
            }
            _ => unreachable!("allowed() lists the kinds"),
        };
        if self.errs.len() > before {
            return None;
        }
        let probe = Probe {
            kind: pkind,
            target,
            bind_addr: c.bindto,
            bind_port: c.bind_port,
            bind_if,
            fwmark,
            timeout: probe_timeout,
        };
        Some((
            PlannedCheck {
                sched: CheckSpec {
                    vs: vi,
                    rs: ri,
                    rs_weight: self.rs.weight,
                    label,
                    timing,
                    alpha,
                    dynamic,
                    initial: None,
                },
                probe,
                kind: kind.to_string(),
                log_all_failures,
            },
            init_file,
        ))
    }
}

/// A checker as it runs: itself, or for an SMTP_CHECK with `host { }` blocks one
/// checker per host (each must pass, as in keepalived), its target and timeout from the
/// block, the rest from the SMTP_CHECK.
fn per_host<'c>(c: &'c Checker, errs: &mut Vec<SpecError>) -> Vec<Cow<'c, Checker>> {
    if c.hosts.is_empty() {
        return vec![Cow::Borrowed(c)];
    }
    c.hosts
        .iter()
        .map(|h| {
            for (keyword, span) in &h.other {
                errs.push(SpecError {
                    keyword: keyword.clone(),
                    span: span.clone(),
                    message: "only connect_ip, connect_port, bindto, bind_port and \
                              connect_timeout apply inside `host`; write it in the SMTP_CHECK"
                        .into(),
                });
            }
            let mut one = c.clone();
            one.hosts.clear();
            one.span = h.span.clone();
            one.connect_ip = h.connect_ip;
            one.connect_port = h.connect_port.or(c.connect_port);
            one.bindto = h.bindto.or(c.bindto);
            one.bind_port = h.bind_port.or(c.bind_port);
            if h.connect_timeout.is_some() {
                one.timing.connect_timeout = h.connect_timeout;
            }
            Cow::Owned(one)
        })
        .collect()
}

/// What one of keepalived's `regex_options` (PCRE2 option names) does here.
enum RegexOption {
    /// A flag of the Rust regex engine.
    Builder(fn(&mut regex::bytes::RegexBuilder)),
    /// `firstline`: see [`RegexLimits::first_line`].
    FirstLine,
    /// Changes nothing a health check can see: an optimisation switch, or a
    /// restriction the Rust engine always has (no back-references, no `\C`, ...).
    NoEffect,
}

fn regex_option(name: &str) -> Result<RegexOption, String> {
    use regex::bytes::RegexBuilder as B;
    use RegexOption::*;
    Ok(match name {
        "caseless" => Builder(|b: &mut B| {
            b.case_insensitive(true);
        }),
        "multiline" => Builder(|b: &mut B| {
            b.multi_line(true);
        }),
        "dotall" => Builder(|b: &mut B| {
            b.dot_matches_new_line(true);
        }),
        "extended" => Builder(|b: &mut B| {
            b.ignore_whitespace(true);
        }),
        "ungreedy" => Builder(|b: &mut B| {
            b.swap_greed(true);
        }),
        "utf" | "ucp" => Builder(|b: &mut B| {
            b.unicode(true);
        }),
        "never_utf" | "never_ucp" => Builder(|b: &mut B| {
            b.unicode(false);
        }),
        "firstline" => FirstLine,
        // `$` matches only at the very end here anyway; the rest are optimisation
        // switches, or forbid what the Rust engine has not got.
        "dollar_endonly" | "no_auto_capture" | "dupnames" | "no_start_optimize"
        | "no_auto_possess" | "no_dotstar_anchor" | "auto_callout" | "use_offset_limit"
        | "match_unset_backref" | "never_backslash_c" | "alt_verbnames" => NoEffect,
        "alt_bsux" | "alt_circumflex" | "allow_empty_class" => {
            return Err("a PCRE2 syntax variant the Rust regex engine vipd uses does not have".into())
        }
        _ => {
            return Err("unknown option (keepalived's are the PCRE2 option names in lower case, e.g. caseless, multiline, dotall, extended, ungreedy, firstline)".into())
        }
    })
}

mod ssl;

#[cfg(test)]
mod tests;

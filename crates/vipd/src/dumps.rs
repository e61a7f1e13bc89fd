//! keepalived's signal dumps and `config_save_dir`.
//!
//! SIGUSR1 writes the state (`keepalived.data`, and `keepalived_check.data` when there
//! are virtual servers), SIGUSR2 the statistics (`keepalived.stats`), and keepalived's
//! JSON signal (SIGRTMIN+2, `keepalived --signum=JSON`) `keepalived.json`, in the
//! files `state_dump_file` / `stats_dump_file` / `json_dump_file` choose.
//! `config_save_dir` keeps, at start and on each reload, a copy of the configuration
//! files read and state dumps taken before and after the reload.
//!
//! All writing happens on one thread of its own (a slow or full disk never reaches the
//! protocol thread or the signal loop); each file is written to a temporary file in its
//! directory and renamed over the old one, so a reader sees the old or the new file,
//! never a half-written one. A file that cannot be written is logged, nothing more.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tracing::{error, info};
use vipd_config::SourceFile;
use vipd_linux::status::{InstanceStatus, Snapshot};

/// keepalived's JSON signal: `SIGRTMIN + 2` (what `keepalived --signum=JSON` prints).
pub fn json_signal() -> i32 {
    libc::SIGRTMIN() + 2
}

/// keepalived's "write and clear the statistics" signal: `SIGRTMAX - 1`
/// (`keepalived --signum=STATS_CLEAR`).
pub fn stats_clear_signal() -> i32 {
    libc::SIGRTMAX() - 1
}

/// Which signal file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SIGUSR1: `keepalived.data` (and `keepalived_check.data`).
    State,
    /// SIGUSR2: `keepalived.stats`.
    Stats,
    /// SIGRTMIN+2: `keepalived.json`.
    Json,
}

impl Kind {
    fn default_name(self) -> &'static str {
        match self {
            Kind::State => "keepalived.data",
            Kind::Stats => "keepalived.stats",
            Kind::Json => "keepalived.json",
        }
    }
}

/// keepalived's directory for dump files without an absolute location: `$TMPDIR` if
/// it is an absolute path, else `/tmp`.
pub fn tmp_dir() -> PathBuf {
    match std::env::var_os("TMPDIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        _ => PathBuf::from("/tmp"),
    }
}

/// What `data_use_instance` adds to a file name: `NETNS_INSTANCE`, `NETNS` or
/// `INSTANCE` (put before the extension after a `.`), or nothing.
pub fn instance_tag(
    data_use_instance: bool,
    instance: Option<&str>,
    net_namespace: Option<&str>,
) -> Option<String> {
    if !data_use_instance {
        return None;
    }
    match (net_namespace, instance) {
        (Some(ns), Some(i)) => Some(format!("{ns}_{i}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_string()),
        (None, None) => None,
    }
}

/// keepalived's dump file name rule. `configured` is the keyword's path: ending in
/// `/`, a directory for the default name; otherwise the file's name (only its last
/// component counts when it is relative: relative paths go to `tmp`). `suffix` goes
/// before the extension (`_check` for the checker's state), then `.TAG`.
pub fn dump_path(
    configured: Option<&str>,
    default_name: &str,
    suffix: &str,
    tag: Option<&str>,
    tmp: &Path,
) -> PathBuf {
    let configured = configured.filter(|c| !c.is_empty());
    let dir: PathBuf = match configured {
        Some(c) if c.starts_with('/') => match c.rfind('/') {
            Some(0) => PathBuf::from("/"),
            Some(i) => PathBuf::from(&c[..i]),
            None => unreachable!("starts with /"),
        },
        _ => tmp.to_path_buf(),
    };
    let name = match configured {
        Some(c) if !c.ends_with('/') => c.rsplit('/').next().unwrap_or(c),
        _ => default_name,
    };
    let (stem, ext) = match name.rfind('.') {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    let tag = tag.map(|t| format!(".{t}")).unwrap_or_default();
    dir.join(format!("{stem}{suffix}{tag}{ext}"))
}

/// The dump settings of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub state_file: Option<String>,
    pub stats_file: Option<String>,
    pub json_file: Option<String>,
    pub json_version: u8,
    /// `data_use_instance`'s addition to the `.data` and `.stats` names.
    pub tag: Option<String>,
    pub save_dir: Option<PathBuf>,
    pub tmp: PathBuf,
}

impl Settings {
    pub fn from_config(config: &vipd_config::Config) -> Settings {
        let d = &config.global.dumps;
        Settings {
            state_file: d.state_file.clone(),
            stats_file: d.stats_file.clone(),
            json_file: d.json_file.clone(),
            json_version: d.json_version.unwrap_or(1),
            tag: instance_tag(
                d.data_use_instance,
                d.instance.as_deref(),
                d.net_namespace.as_deref(),
            ),
            save_dir: config.global.config_save_dir.as_ref().map(PathBuf::from),
            tmp: tmp_dir(),
        }
    }

    /// The file a signal writes; `suffix` is `_check` for the checker's state.
    pub fn path(&self, kind: Kind, suffix: &str) -> PathBuf {
        let (configured, tag) = match kind {
            Kind::State => (&self.state_file, self.tag.as_deref()),
            Kind::Stats => (&self.stats_file, self.tag.as_deref()),
            // keepalived's man page: data_use_instance names the .data and .stats files.
            Kind::Json => (&self.json_file, None),
        };
        dump_path(
            configured.as_deref(),
            kind.default_name(),
            suffix,
            tag,
            &self.tmp,
        )
    }
}

enum Job {
    /// Answers once every job sent before it is done ([`Dumper::wait`]).
    Done(mpsc::Sender<()>),
    /// A signal file; the snapshot was taken when the signal came.
    Signal {
        kind: Kind,
        snap: Box<Snapshot>,
        settings: Settings,
    },
    /// `config_save_dir`: the files read, as `keepalived.conf.PID.N`.
    SaveConfig {
        dir: PathBuf,
        name: String,
        files: Vec<SourceFile>,
    },
    /// `config_save_dir`: state dumps as `keepalived_vrrp.PID.N.pre|post` (and
    /// `keepalived_check...`); `snap` `None` = take it once `not_before` has passed.
    SaveState {
        dir: PathBuf,
        reload: u32,
        stage: &'static str,
        snap: Option<Box<Snapshot>>,
        not_before: Instant,
    },
}

/// The dump writer: owns the thread that writes every file.
pub struct Dumper {
    tx: Mutex<mpsc::Sender<Job>>,
    settings: Mutex<Settings>,
    status: Arc<Mutex<Snapshot>>,
    /// `keepalived.conf.PID.N`: 0 at start, then one per configuration read.
    conf_num: AtomicU32,
    /// `keepalived_vrrp.PID.N.pre`: one per reload, from 1.
    reload_num: AtomicU32,
}

impl Dumper {
    pub fn start(settings: Settings, status: Arc<Mutex<Snapshot>>) -> std::io::Result<Dumper> {
        let (tx, rx) = mpsc::channel();
        let thread_status = status.clone();
        std::thread::Builder::new()
            .name("vipd-dumps".into())
            .spawn(move || {
                for job in rx {
                    run_job(job, &thread_status);
                }
            })?;
        Ok(Dumper {
            tx: Mutex::new(tx),
            settings: Mutex::new(settings),
            status,
            conf_num: AtomicU32::new(0),
            reload_num: AtomicU32::new(0),
        })
    }

    fn send(&self, job: Job) {
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(job);
        }
    }

    fn settings(&self) -> Settings {
        self.settings
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn snapshot(&self) -> Box<Snapshot> {
        Box::new(
            self.status
                .lock()
                .map(|s| s.clone())
                .unwrap_or_else(|p| p.into_inner().clone()),
        )
    }

    /// The configuration changed: later dumps follow its settings.
    pub fn set_settings(&self, settings: Settings) {
        if let Ok(mut s) = self.settings.lock() {
            *s = settings;
        }
    }

    /// A dump signal came: the state as it is now goes to its file.
    pub fn signal(&self, kind: Kind) {
        self.send(Job::Signal {
            kind,
            snap: self.snapshot(),
            settings: self.settings(),
        });
    }

    /// Waits (at most `limit`) until the dumps asked for so far are written: keepalived's
    /// DBus `PrintData` / `PrintStats` answer once the file is there.
    pub fn wait(&self, limit: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Done(tx));
        rx.recv_timeout(limit).is_ok()
    }

    /// `config_save_dir` of `settings`: keeps a copy of the configuration files read.
    pub fn save_config(&self, settings: &Settings, files: &[SourceFile]) {
        let Some(dir) = settings.save_dir.clone() else {
            return;
        };
        let n = self.conf_num.fetch_add(1, Ordering::Relaxed);
        self.send(Job::SaveConfig {
            dir,
            name: format!("keepalived.conf.{}.{n}", std::process::id()),
            files: files.to_vec(),
        });
    }

    /// A reload starts: the state before it goes to `config_save_dir` (of the running
    /// configuration). Returns the reload's number for [`Dumper::after_reload`].
    pub fn before_reload(&self) -> u32 {
        let n = self.reload_num.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(dir) = self.settings().save_dir {
            self.send(Job::SaveState {
                dir,
                reload: n,
                stage: "pre",
                snap: Some(self.snapshot()),
                not_before: Instant::now(),
            });
        }
        n
    }

    /// A reload ended: the state after it goes to `config_save_dir`, once the protocol
    /// thread has published it (it does so within 100 ms).
    pub fn after_reload(&self, reload: u32) {
        if let Some(dir) = self.settings().save_dir {
            self.send(Job::SaveState {
                dir,
                reload,
                stage: "post",
                snap: None,
                not_before: Instant::now() + Duration::from_millis(250),
            });
        }
    }
}

fn run_job(job: Job, status: &Mutex<Snapshot>) {
    match job {
        Job::Done(reply) => {
            let _ = reply.send(());
        }
        Job::Signal {
            kind,
            snap,
            settings,
        } => write_signal_files(kind, &snap, &settings),
        Job::SaveConfig { dir, name, files } => {
            if let Err(e) = ensure_save_dir(&dir) {
                error!("{e}");
                return;
            }
            let path = dir.join(&name);
            report(&path, write_atomic(&path, config_copy(&files).as_bytes()));
        }
        Job::SaveState {
            dir,
            reload,
            stage,
            snap,
            not_before,
        } => {
            if let Err(e) = ensure_save_dir(&dir) {
                error!("{e}");
                return;
            }
            let snap = snap.map(|s| *s).unwrap_or_else(|| {
                std::thread::sleep(not_before.saturating_duration_since(Instant::now()));
                status
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_else(|p| p.into_inner().clone())
            });
            let pid = std::process::id();
            let path = dir.join(format!("keepalived_vrrp.{pid}.{reload}.{stage}"));
            report(&path, write_atomic(&path, render_state(&snap).as_bytes()));
            if !snap.virtual_servers.is_empty() {
                let path = dir.join(format!("keepalived_check.{pid}.{reload}.{stage}"));
                report(&path, write_atomic(&path, render_check(&snap).as_bytes()));
            }
        }
    }
}

fn report(path: &Path, result: std::io::Result<()>) {
    match result {
        Ok(()) => info!("wrote {}", path.display()),
        Err(e) => error!("cannot write {}: {e}", path.display()),
    }
}

fn write_signal_files(kind: Kind, snap: &Snapshot, settings: &Settings) {
    match kind {
        Kind::State => {
            let path = settings.path(Kind::State, "");
            report(&path, write_atomic(&path, render_state(snap).as_bytes()));
            if !snap.virtual_servers.is_empty() {
                let path = settings.path(Kind::State, "_check");
                report(&path, write_atomic(&path, render_check(snap).as_bytes()));
            }
        }
        Kind::Stats => {
            let path = settings.path(Kind::Stats, "");
            report(&path, write_atomic(&path, render_stats(snap).as_bytes()));
        }
        Kind::Json => {
            // As keepalived: no VRRP instance, no JSON file.
            if snap.instances.is_empty() {
                info!("JSON signal: no vrrp_instance, nothing written");
                return;
            }
            let path = settings.path(Kind::Json, "");
            let mut text = render_json(snap, settings.json_version).to_string();
            text.push('\n');
            report(&path, write_atomic(&path, text.as_bytes()));
        }
    }
}

/// `config_save_dir` creates its directory (mode 0700) when it is missing; its parent
/// must exist, as with keepalived.
pub fn ensure_save_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "config_save_dir {} exists and is not a directory",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("unable to create config_save_dir {}: {e}", dir.display())),
        Err(e) => Err(format!("config_save_dir {}: {e}", dir.display())),
    }
}

/// Writes `bytes` to a new file in `path`'s directory (mode 0600) and renames it over
/// `path`: readers see the old file or the new one, and a symbolic link at `path` is
/// replaced, never followed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `keepalived.conf.PID.N`: every file read, each after a `# PATH` line, as
/// keepalived's copy has it (vipd keeps each file's text exactly as read).
pub fn config_copy(files: &[SourceFile]) -> String {
    let mut out = String::new();
    for f in files {
        let _ = writeln!(out, "# {}", f.path.display());
        out.push_str(&f.text);
        if !f.text.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch.
fn utc(secs: f64) -> String {
    let (y, m, d, rem) = vipd_linux::mail::civil_from_unix(secs.max(0.0) as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An interface name for an index, as the kernel has it now.
pub(crate) fn ifname(index: u32, fallback: &str) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return fallback.to_string();
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into buf.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn scope_name(scope: u8) -> String {
    match scope {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        n => n.to_string(),
    }
}

/// A VIP as keepalived writes it: `ADDR[/LEN] [brd B] dev IF scope S [label L] [set]`
/// (the length only when it is not a host's).
fn vip_text(i: &InstanceStatus, n: usize) -> String {
    let Some(a) = i.detail.addresses.get(n) else {
        return i.vips.get(n).cloned().unwrap_or_default();
    };
    let full = if a.addr.is_ipv4() { 32 } else { 128 };
    let mut s = a.addr.to_string();
    if a.prefix_len != full {
        let _ = write!(s, "/{}", a.prefix_len);
    }
    if let Some(b) = a.brd {
        let _ = write!(s, " brd {b}");
    }
    let _ = write!(
        s,
        " dev {} scope {}",
        ifname(a.ifindex, &i.interface),
        scope_name(a.scope)
    );
    if let Some(l) = &a.label {
        let _ = write!(s, " label {l}");
    }
    if i.state == "MASTER" {
        s.push_str(" set");
    }
    s
}

/// keepalived's numbers for the states in its JSON.
fn state_number(state: &str) -> u8 {
    match state {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

pub(crate) fn drop_count(i: &InstanceStatus, reasons: &[&str]) -> u64 {
    i.drops
        .iter()
        .filter(|(r, _)| reasons.contains(&r.as_str()))
        .map(|(_, n)| n)
        .sum()
}

/// keepalived's packet error counters from vipd's drop reasons.
const ERROR_COUNTERS: [(&str, &str, &[&str]); 7] = [
    ("packet_len_err", "Length", &["truncated"]),
    ("ip_ttl_err", "TTL", &["bad_ttl", "peer_ttl"]),
    ("invalid_type_rcvd", "Invalid Type", &["bad_type"]),
    (
        "advert_interval_err",
        "Advertisement Interval",
        &["interval_mismatch", "zero_interval"],
    ),
    (
        "addr_list_err",
        "Address List",
        &["address_mismatch", "bad_address_count"],
    ),
    (
        "authtype_mismatch",
        "Type Mismatch",
        &["auth_type_mismatch"],
    ),
    ("auth_failure", "Failure", &["auth_mismatch", "replayed"]),
];

pub(crate) fn error_counter(i: &InstanceStatus, key: &str) -> u64 {
    ERROR_COUNTERS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or(0, |(_, _, reasons)| drop_count(i, reasons))
}

/// keepalived.json: version 1 is an array of `{"data": {...}, "stats": {...}}`, one per
/// instance; version 2 puts that array under `"vrrp"`.
pub fn render_json(snap: &Snapshot, version: u8) -> Value {
    let list: Vec<Value> = snap.instances.iter().map(json_instance).collect();
    if version == 2 {
        json!({ "vrrp": list })
    } else {
        Value::Array(list)
    }
}

fn json_instance(i: &InstanceStatus) -> Value {
    let d = &i.detail;
    let mut data = Map::new();
    let mut put = |k: &str, v: Value| {
        data.insert(k.to_string(), v);
    };
    put("iname", i.name.clone().into());
    put(
        "skip_check_adv_addr",
        u8::from(d.skip_check_adv_addr).into(),
    );
    put("ifp_ifname", i.interface.clone().into());
    put(
        "last_transition",
        d.last_transition_unix.unwrap_or(0.0).into(),
    );
    put(
        "lower_prio_no_advert",
        u8::from(d.lower_prio_no_advert).into(),
    );
    put(
        "higher_prio_send_advert",
        u8::from(d.higher_prio_send_advert).into(),
    );
    put("vrid", i.vrid.into());
    put("base_priority", i.priority.into());
    put("effective_priority", i.effective_priority.into());
    put(
        "vipset",
        (i.state == "MASTER" && !d.addresses.is_empty()).into(),
    );
    put("adver_int", (i.advert_interval_ms / 1000.0).into());
    put("nopreempt", d.nopreempt.into());
    put("preempt_delay", (d.preempt_delay as u64).into());
    put("state", state_number(&i.state).into());
    put("wantstate", state_number(&i.state).into());
    put("version", i.version.into());
    if !i.vips.is_empty() {
        let vips: Vec<Value> = (0..i.vips.len()).map(|n| vip_text(i, n).into()).collect();
        put("vips", Value::Array(vips));
    }
    let mut stats = Map::new();
    stats.insert("advert_rcvd".into(), i.adverts_received.into());
    stats.insert("advert_sent".into(), i.adverts_sent.into());
    stats.insert("become_master".into(), i.became_master.into());
    for (key, _, _) in ERROR_COUNTERS {
        stats.insert(key.into(), error_counter(i, key).into());
    }
    stats.insert("pri_zero_rcvd".into(), i.priority_zero_received.into());
    stats.insert("pri_zero_sent".into(), i.priority_zero_sent.into());
    json!({ "data": data, "stats": stats })
}

/// keepalived.stats: keepalived's layout for the counters vipd keeps, then vipd's own.
pub fn render_stats(snap: &Snapshot) -> String {
    let mut s = String::new();
    for i in &snap.instances {
        let _ = writeln!(s, "VRRP Instance: {}", i.name);
        let _ = writeln!(s, "  Advertisements:");
        let _ = writeln!(s, "    Received: {}", i.adverts_received);
        let _ = writeln!(s, "    Sent: {}", i.adverts_sent);
        let _ = writeln!(s, "  Became master: {}", i.became_master);
        let _ = writeln!(s, "  Packet Errors:");
        for (key, label, _) in &ERROR_COUNTERS[..5] {
            let _ = writeln!(s, "    {label}: {}", error_counter(i, key));
        }
        let _ = writeln!(s, "  Authentication Errors:");
        for (key, label, _) in &ERROR_COUNTERS[5..] {
            let _ = writeln!(s, "    {label}: {}", error_counter(i, key));
        }
        let _ = writeln!(s, "  Priority Zero:");
        let _ = writeln!(s, "    Received: {}", i.priority_zero_received);
        let _ = writeln!(s, "    Sent: {}", i.priority_zero_sent);
        let _ = writeln!(s, "  Transitions: {}", i.transitions);
        let _ = writeln!(s, "  Gratuitous ARP/NA sent: {}", i.announcements_sent);
        let _ = writeln!(s, "  Dropped:");
        for (reason, n) in &i.drops {
            let _ = writeln!(s, "    {reason}: {n}");
        }
    }
    if !snap.socket_drops.is_empty() {
        let _ = writeln!(s, "Dropped before reaching an instance:");
        for (reason, n) in &snap.socket_drops {
            let _ = writeln!(s, "  {reason}: {n}");
        }
    }
    s
}

/// keepalived.data: vipd's own text (keepalived's layout is not stable either).
pub fn render_state(snap: &Snapshot) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "------< vipd VRRP state, {} (pid {}) >------",
        utc(now_unix()),
        std::process::id()
    );
    for i in &snap.instances {
        let d = &i.detail;
        let _ = writeln!(s, " VRRP Instance = {}", i.name);
        let _ = writeln!(s, "   State = {}", i.state);
        let _ = writeln!(s, "   Interface = {}", i.interface);
        let _ = writeln!(s, "   Virtual Router ID = {}", i.vrid);
        let _ = writeln!(s, "   VRRP Version = {}", i.version);
        let _ = writeln!(s, "   Priority = {}", i.priority);
        let _ = writeln!(s, "   Effective priority = {}", i.effective_priority);
        let _ = writeln!(s, "   Advert interval = {} ms", i.advert_interval_ms);
        let _ = writeln!(
            s,
            "   Preempt = {}",
            if d.nopreempt { "disabled" } else { "enabled" }
        );
        let _ = writeln!(s, "   Preempt delay = {} s", d.preempt_delay);
        let _ = writeln!(s, "   Master = {}", i.master.as_deref().unwrap_or("-"));
        match (&i.last_transition, d.last_transition_unix) {
            (Some((_, why)), Some(at)) => {
                let _ = writeln!(s, "   Last transition = {at:.6} ({}, {why})", utc(at));
            }
            _ => {
                let _ = writeln!(s, "   Last transition = none");
            }
        }
        let _ = writeln!(s, "   Virtual IP ({}):", i.vips.len());
        for n in 0..i.vips.len() {
            let _ = writeln!(s, "     {}", vip_text(i, n));
        }
        if let Some(track) = snap.tracking.get(&i.name) {
            if !track.is_empty() {
                let _ = writeln!(s, "   Tracking:");
            }
            for t in track {
                let _ = writeln!(
                    s,
                    "     {} `{}` {} weight {}{} -> {}",
                    t.kind,
                    t.name,
                    t.state,
                    t.weight,
                    if t.reverse { " reverse" } else { "" },
                    t.effect
                );
            }
        }
    }
    s
}

/// keepalived_check.data: the virtual servers and their real servers.
pub fn render_check(snap: &Snapshot) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "------< vipd virtual servers, {} (pid {}) >------",
        utc(now_unix()),
        std::process::id()
    );
    for vs in &snap.virtual_servers {
        let _ = writeln!(s, " {}", vs.name);
        let _ = writeln!(s, "   Backend = {}", vs.backend);
        let _ = writeln!(
            s,
            "   Forwarding = {}",
            if vs.active {
                "yes"
            } else {
                "no (VIP elsewhere)"
            }
        );
        let _ = writeln!(
            s,
            "   Quorum = {}",
            if vs.quorum_up { "up" } else { "down" }
        );
        for rs in &vs.real_servers {
            let _ = writeln!(
                s,
                "   Real server {}:{} {}{}",
                rs.addr,
                rs.port,
                if rs.up { "up" } else { "DOWN" },
                if rs.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", rs.reason)
                }
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TMP: &str = "/tmp";

    fn p(configured: Option<&str>, default: &str, suffix: &str, tag: Option<&str>) -> String {
        dump_path(configured, default, suffix, tag, Path::new(TMP))
            .display()
            .to_string()
    }

    #[test]
    fn defaults_go_to_the_tmp_dir() {
        assert_eq!(p(None, "keepalived.data", "", None), "/tmp/keepalived.data");
        assert_eq!(
            p(None, "keepalived.data", "_check", None),
            "/tmp/keepalived_check.data"
        );
        assert_eq!(p(None, "keepalived.json", "", None), "/tmp/keepalived.json");
        assert_eq!(
            p(Some(""), "keepalived.stats", "", None),
            "/tmp/keepalived.stats"
        );
    }

    #[test]
    fn a_trailing_slash_names_a_directory_for_the_default_names() {
        assert_eq!(
            p(Some("/run/ka/"), "keepalived.data", "", None),
            "/run/ka/keepalived.data"
        );
        assert_eq!(
            p(Some("/run/ka/"), "keepalived.data", "_check", None),
            "/run/ka/keepalived_check.data"
        );
        assert_eq!(
            p(Some("/"), "keepalived.json", "", None),
            "/keepalived.json"
        );
    }

    #[test]
    fn a_full_path_names_the_file_and_suffixes_go_before_its_extension() {
        assert_eq!(
            p(Some("/var/run/state.txt"), "keepalived.data", "", None),
            "/var/run/state.txt"
        );
        assert_eq!(
            p(
                Some("/var/run/state.txt"),
                "keepalived.data",
                "_check",
                None
            ),
            "/var/run/state_check.txt"
        );
        assert_eq!(
            p(Some("/var/run/state"), "keepalived.data", "_check", None),
            "/var/run/state_check"
        );
        assert_eq!(p(Some("/x"), "keepalived.data", "", None), "/x");
        // The last dot counts, as in keepalived.
        assert_eq!(
            p(Some("/d/a.b.c"), "keepalived.data", "_check", Some("i")),
            "/d/a.b_check.i.c"
        );
    }

    #[test]
    fn relative_paths_keep_only_their_file_name_in_the_tmp_dir() {
        assert_eq!(
            p(Some("my.data"), "keepalived.data", "", None),
            "/tmp/my.data"
        );
        assert_eq!(
            p(Some("sub/my.data"), "keepalived.data", "", None),
            "/tmp/my.data"
        );
        assert_eq!(
            p(Some("sub/"), "keepalived.data", "", None),
            "/tmp/keepalived.data"
        );
    }

    #[test]
    fn data_use_instance_adds_netns_and_instance_before_the_extension() {
        assert_eq!(instance_tag(false, Some("i"), Some("n")), None);
        assert_eq!(instance_tag(true, None, None), None);
        assert_eq!(instance_tag(true, Some("i"), None).as_deref(), Some("i"));
        assert_eq!(instance_tag(true, None, Some("n")).as_deref(), Some("n"));
        assert_eq!(
            instance_tag(true, Some("i"), Some("n")).as_deref(),
            Some("n_i")
        );
        assert_eq!(
            p(None, "keepalived.data", "", Some("n_i")),
            "/tmp/keepalived.n_i.data"
        );
        assert_eq!(
            p(Some("/run/"), "keepalived.data", "_check", Some("blue")),
            "/run/keepalived_check.blue.data"
        );
    }

    fn settings(tag: Option<&str>) -> Settings {
        Settings {
            state_file: Some("/s/".into()),
            stats_file: None,
            json_file: Some("/j/out.json".into()),
            json_version: 1,
            tag: tag.map(str::to_string),
            save_dir: None,
            tmp: PathBuf::from("/t"),
        }
    }

    #[test]
    fn the_tag_names_data_and_stats_files_but_not_json() {
        let s = settings(Some("inst"));
        assert_eq!(
            s.path(Kind::State, ""),
            Path::new("/s/keepalived.inst.data")
        );
        assert_eq!(
            s.path(Kind::Stats, ""),
            Path::new("/t/keepalived.inst.stats")
        );
        assert_eq!(s.path(Kind::Json, ""), Path::new("/j/out.json"));
    }

    fn instance(state: &str) -> InstanceStatus {
        InstanceStatus {
            name: "VI_1".into(),
            interface: "eth9".into(),
            vrid: 51,
            version: 2,
            state: state.into(),
            priority: 150,
            effective_priority: 140,
            advert_interval_ms: 1000.0,
            master: None,
            vips: vec!["192.0.2.10/24".into(), "2001:db8::1/128".into()],
            last_transition: Some((1.5, "priority".into())),
            adverts_sent: 7,
            adverts_received: 3,
            priority_zero_sent: 1,
            priority_zero_received: 2,
            became_master: 4,
            transitions: 5,
            announcements_sent: 6,
            drops: vec![
                ("bad_ttl".into(), 2),
                ("peer_ttl".into(), 1),
                ("truncated".into(), 9),
            ],
            io_fault: None,
            send_faults: 0,
            peer_takeovers: 0,
            peer_downs_ignored: 0,
            detail: vipd_linux::status::InstanceDetail {
                addresses: vec![
                    vipd_linux::netlink::AddressSpec {
                        ifindex: 0,
                        addr: "192.0.2.10".parse().unwrap(),
                        prefix_len: 24,
                        brd: None,
                        scope: 0,
                        label: None,
                        opts: Default::default(),
                    },
                    vipd_linux::netlink::AddressSpec {
                        ifindex: 0,
                        addr: "2001:db8::1".parse().unwrap(),
                        prefix_len: 128,
                        brd: None,
                        scope: 0,
                        label: Some("eth9:v".into()),
                        opts: Default::default(),
                    },
                ],
                last_transition_unix: Some(1_796_565_412.5),
                nopreempt: true,
                preempt_delay: 0.0,
                ..Default::default()
            },
        }
    }

    fn snap(state: &str) -> Snapshot {
        Snapshot {
            instances: vec![instance(state)],
            ..Default::default()
        }
    }

    #[test]
    fn json_version_1_is_keepalived_s_array_of_data_and_stats() {
        let v = render_json(&snap("MASTER"), 1);
        let i = &v.as_array().expect("array")[0];
        let d = &i["data"];
        assert_eq!(d["iname"], "VI_1");
        assert_eq!(d["ifp_ifname"], "eth9");
        assert_eq!(d["state"], 2);
        assert_eq!(d["wantstate"], 2);
        assert_eq!(d["vrid"], 51);
        assert_eq!(d["base_priority"], 150);
        assert_eq!(d["effective_priority"], 140);
        assert_eq!(d["adver_int"], 1.0);
        assert_eq!(d["nopreempt"], true);
        assert_eq!(d["vipset"], true);
        assert_eq!(d["last_transition"], 1_796_565_412.5);
        // if_indextoname(0) fails: the instance's interface stands in.
        assert_eq!(
            d["vips"],
            json!([
                "192.0.2.10/24 dev eth9 scope global set",
                "2001:db8::1 dev eth9 scope global label eth9:v set"
            ])
        );
        let s = &i["stats"];
        assert_eq!(s["advert_rcvd"], 3);
        assert_eq!(s["advert_sent"], 7);
        assert_eq!(s["become_master"], 4);
        assert_eq!(s["ip_ttl_err"], 3);
        assert_eq!(s["packet_len_err"], 9);
        assert_eq!(s["addr_list_err"], 0);
        assert_eq!(s["pri_zero_rcvd"], 2);
        assert_eq!(s["pri_zero_sent"], 1);
    }

    #[test]
    fn json_version_2_names_the_array_vrrp() {
        let v = render_json(&snap("BACKUP"), 2);
        let d = &v["vrrp"][0]["data"];
        assert_eq!(d["state"], 1);
        assert_eq!(d["vipset"], false);
        assert_eq!(d["vips"][0], "192.0.2.10/24 dev eth9 scope global");
        assert_eq!(state_number("FAULT"), 3);
        assert_eq!(state_number("INIT"), 0);
    }

    #[test]
    fn stats_follow_keepalived_s_layout_then_vipd_s_counters() {
        let text = render_stats(&snap("MASTER"));
        assert!(
            text.starts_with(
                "VRRP Instance: VI_1\n  Advertisements:\n    Received: 3\n    Sent: 7\n  Became master: 4\n  Packet Errors:\n    Length: 9\n    TTL: 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  Priority Zero:\n    Received: 2\n    Sent: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("  Dropped:\n    bad_ttl: 2\n    peer_ttl: 1\n"),
            "{text}"
        );
    }

    #[test]
    fn state_text_names_each_instance_and_its_addresses() {
        let text = render_state(&snap("MASTER"));
        for want in [
            " VRRP Instance = VI_1\n",
            "   State = MASTER\n",
            "   Priority = 150\n",
            "   Virtual IP (2):\n     192.0.2.10/24 dev eth9 scope global set\n",
            "(2026-12-06 13:56:52 UTC, priority)",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_565_412.9), "2026-12-06 13:56:52 UTC");
    }

    #[test]
    fn config_copy_heads_each_file_with_its_path() {
        let files = [
            SourceFile {
                path: "/etc/k.conf".into(),
                text: "include a.conf\n".into(),
            },
            SourceFile {
                path: "/etc/a.conf".into(),
                text: "vrrp_instance A {\n}".into(),
            },
        ];
        assert_eq!(
            config_copy(&files),
            "# /etc/k.conf\ninclude a.conf\n\n# /etc/a.conf\nvrrp_instance A {\n}\n\n"
        );
    }

    #[test]
    fn atomic_writes_replace_files_and_symlinks_and_report_errors() {
        let dir = std::env::temp_dir().join(format!("vipd-dumps-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let target = dir.join("victim");
        std::fs::write(&target, "keep").unwrap();
        let path = dir.join("keepalived.data");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["keepalived.data", "victim"],
            "no temporary file left"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_atomic(&dir.join("missing/x"), b"x").is_err());
        // config_save_dir: created when missing, its parent must exist.
        let save = dir.join("save");
        ensure_save_dir(&save).unwrap();
        assert!(save.is_dir());
        ensure_save_dir(&save).unwrap();
        assert!(ensure_save_dir(&dir.join("no/such")).is_err());
        assert!(ensure_save_dir(&target).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

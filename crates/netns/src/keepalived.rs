//! Starting keepalived as a peer/reference implementation.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::{Netns, Proc};

/// Environment variable naming the keepalived 2.4.3 binary (`.ci/run` exports it).
pub const KEEPALIVED_243_ENV: &str = "VIPD_KEEPALIVED_243";

/// Where `../shared/peers/build-keepalived.sh` installs keepalived 2.4.3 by default.
pub const KEEPALIVED_243_DEFAULT: &str = "/opt/keepalived-2.4.3/sbin/keepalived";

/// The keepalived releases the tests use as peer/oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Debian's package, 2.2.7: `keepalived` on `PATH`.
    V2_2_7,
    /// Upstream 2.4.3, built by `../shared/peers/build-keepalived.sh` (`.ci/run` runs it):
    /// `$VIPD_KEEPALIVED_243`, else `/opt/keepalived-2.4.3/sbin/keepalived`.
    V2_4_3,
}

impl Version {
    /// Both, oldest first.
    pub const ALL: [Version; 2] = [Version::V2_2_7, Version::V2_4_3];

    /// `"2.2.7"` or `"2.4.3"`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V2_2_7 => "2.2.7",
            Version::V2_4_3 => "2.4.3",
        }
    }

    /// The binary to run for this version (whether or not it exists).
    pub fn binary(self) -> PathBuf {
        match self {
            Version::V2_2_7 => "keepalived".into(),
            Version::V2_4_3 => std::env::var_os(KEEPALIVED_243_ENV)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| KEEPALIVED_243_DEFAULT.into()),
        }
    }

    /// [`Version::binary`] if it runs (and, for 2.4.3, reports `v2.4.3`), else `None`.
    pub fn find(self) -> Option<PathBuf> {
        let bin = self.binary();
        let out = Command::new(&bin)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match self {
            Version::V2_2_7 => Some(bin),
            Version::V2_4_3 => text.contains("v2.4.3").then_some(bin),
        }
    }

    /// For tests: the binary, or — when it is missing — `None` after printing a
    /// `skipped: ...` line, except under CI (`CI` set and not `false`/`0`) or when
    /// [`KEEPALIVED_243_ENV`] names a binary explicitly: then it panics, because CI
    /// builds it and a missing peer must not pass silently.
    pub fn require(self) -> Option<PathBuf> {
        if let Some(bin) = self.find() {
            return Some(bin);
        }
        let (missing, how) = match self {
            Version::V2_2_7 => ("installed", "apt-get install keepalived"),
            Version::V2_4_3 => ("built", "bash ../shared/peers/build-keepalived.sh"),
        };
        let set = |var: &str| {
            std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
        };
        if set("CI") || (self == Version::V2_4_3 && set(KEEPALIVED_243_ENV)) {
            panic!(
                "no runnable keepalived {} at {} ({how}; {KEEPALIVED_243_ENV} names the 2.4.3 \
                 binary, default {KEEPALIVED_243_DEFAULT}): under CI, or with \
                 {KEEPALIVED_243_ENV} set, a missing peer is a failure, not a skip",
                self.name(),
                self.binary().display()
            );
        }
        eprintln!("skipped: keepalived {} not {missing} ({how})", self.name());
        None
    }
}

/// The path of the keepalived 2.4.3 binary if present (see [`Version::V2_4_3`]).
pub fn keepalived_243() -> Option<PathBuf> {
    Version::V2_4_3.find()
}

/// Launcher for keepalived (tested with 2.2.7 and 2.4.3, see [`Version`]) inside a
/// namespace.
///
/// Runs `keepalived --dont-fork --log-console --log-detail --no-syslog
/// --vrrp --dont-respawn -f DIR/keepalived.conf -p DIR/keepalived.pid
/// -r DIR/vrrp.pid -c DIR/checkers.pid -b DIR/bfd.pid`, so any number of
/// instances can run side by side, each with its own files, logging to
/// `DIR/keepalived.log`.
///
/// keepalived forks a VRRP child even with `--dont-fork`; that child stays in
/// the parent's process group, so [`Proc::kill9`] kills both (a real crash:
/// no priority-0 advert), while `proc.signal(Signal::SIGTERM)` is a graceful
/// shutdown (the master sends a priority-0 advert). Beware: SIGKILL to the
/// parent *alone* is not a crash either — the orphaned VRRP child notices,
/// sends a priority-0 advert, removes its VIPs and lingers.
///
/// Timing (keepalived 2.2.7): every instance starts in BACKUP — even with
/// `state MASTER`, unless its priority is 255 — and becomes master after
/// `3 × advert_int + (256 − priority)/256 × advert_int` without hearing an
/// advert (≈ 3.4 s for priority 150 and `advert_int 1`).
#[derive(Debug, Clone)]
pub struct Keepalived {
    binary: PathBuf,
    respawn: bool,
    extra: Vec<OsString>,
}

impl Default for Keepalived {
    fn default() -> Self {
        Keepalived {
            binary: "keepalived".into(),
            respawn: false,
            extra: vec![],
        }
    }
}

impl Keepalived {
    /// The default launcher (`keepalived` from `PATH`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Run the binary of `version` (see [`Version::binary`]).
    pub fn version(self, version: Version) -> Self {
        self.binary(version.binary())
    }

    /// Use another keepalived binary.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// Let the parent respawn a dead VRRP child (keepalived's default).
    /// Off by default here, so killing the child is a crash.
    pub fn respawn(mut self, yes: bool) -> Self {
        self.respawn = yes;
        self
    }

    /// Append an extra command-line argument.
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.extra.push(a.into());
        self
    }

    /// `true` if the binary can be run.
    pub fn is_installed(&self) -> bool {
        Command::new(&self.binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    /// Checks `config` with `keepalived --config-test`.
    pub fn check_config(&self, config: &str, work_dir: &Path) -> Result<()> {
        let conf = write_conf(config, work_dir)?;
        let out = Command::new(&self.binary)
            .arg("-f")
            .arg(&conf)
            .arg("--config-test")
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "keepalived --config-test failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Writes `work_dir/keepalived.conf` and starts keepalived in `ns`
    /// (log: `work_dir/keepalived.log`).
    pub fn start(&self, ns: &Netns, config: &str, work_dir: &Path) -> Result<Proc> {
        let conf = write_conf(config, work_dir)?;
        // Absolute paths: keepalived resolves pid files after chdir("/").
        let work_dir = &work_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", work_dir.display()))?;
        let conf = work_dir.join(conf.file_name().expect("file name"));
        let mut args: Vec<OsString> = vec![
            self.binary.clone().into(),
            "--dont-fork".into(),
            "--log-console".into(),
            "--log-detail".into(),
            "--no-syslog".into(),
            "--vrrp".into(),
        ];
        if !self.respawn {
            args.push("--dont-respawn".into());
        }
        for (flag, file) in [
            ("-f", conf),
            ("-p", work_dir.join("keepalived.pid")),
            ("-r", work_dir.join("vrrp.pid")),
            ("-c", work_dir.join("checkers.pid")),
            ("-b", work_dir.join("bfd.pid")),
        ] {
            args.push(flag.into());
            args.push(file.into());
        }
        args.extend(self.extra.iter().cloned());
        ns.spawn(args, work_dir.join("keepalived.log"))
    }
}

fn write_conf(config: &str, work_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let conf = work_dir.join("keepalived.conf");
    std::fs::write(&conf, config).with_context(|| format!("writing {}", conf.display()))?;
    Ok(conf)
}

/// Shorthand for `Keepalived::new().start(ns, config, work_dir)`.
pub fn start_keepalived(ns: &Netns, config: &str, work_dir: &Path) -> Result<Proc> {
    Keepalived::new().start(ns, config, work_dir)
}

/// A minimal keepalived config: one `vrrp_instance VI_<vrid>` on `iface`
/// with the given priority, 1 s adverts and `vips` (e.g. `"192.0.2.100/24"`),
/// starting in state BACKUP, with script security on and no scripts.
pub fn simple_vrrp_config(iface: &str, vrid: u8, priority: u8, vips: &[&str]) -> String {
    let mut addrs = String::new();
    for v in vips {
        addrs.push_str(&format!("        {v}\n"));
    }
    format!(
        "global_defs {{\n    router_id vpd_{vrid}_{priority}\n    enable_script_security\n}}\n\
         vrrp_instance VI_{vrid} {{\n    state BACKUP\n    interface {iface}\n    \
         virtual_router_id {vrid}\n    priority {priority}\n    advert_int 1\n    \
         virtual_ipaddress {{\n{addrs}    }}\n}}\n"
    )
}

/// `keepalived -t` on `file` as the config oracle: keepalived `binary` in a session of its
/// own (`setsid -w`: with checkers it SIGTERMs its process group when done), logging to
/// the console. Returns its exit code (`None`: killed by its own signal) and the lines
/// it printed, without blank lines and the shell's "Terminated". A clean file prints
/// nothing.
pub fn config_test(binary: &Path, file: &Path, instance: &str) -> (Option<i32>, Vec<String>) {
    let out = Command::new("setsid")
        .arg("-w")
        .arg(binary)
        .args(["-t", "-i", instance, "--no-syslog", "-l", "-D", "-f"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let findings = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Terminated"))
        .map(str::to_string)
        .collect();
    (out.status.code(), findings)
}

/// An interface of this host to put in configs that keepalived checks (it refuses
/// unknown ones): `eth0` if there is one, else the first other non-loopback name.
pub fn host_interface() -> Option<String> {
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .min_by_key(|n| (n != "eth0", n.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_config_mentions_everything() {
        let c = simple_vrrp_config("eth0", 51, 150, &["192.0.2.100/24"]);
        assert!(c.contains("interface eth0"));
        assert!(c.contains("virtual_router_id 51"));
        assert!(c.contains("priority 150"));
        assert!(c.contains("192.0.2.100/24"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn versions_name_their_binaries() {
        assert_eq!(Version::V2_2_7.binary(), PathBuf::from("keepalived"));
        assert_eq!(Version::ALL.map(Version::name), ["2.2.7", "2.4.3"]);
        let bin = Keepalived::new().version(Version::V2_4_3).binary;
        assert_eq!(bin, Version::V2_4_3.binary());
    }
}

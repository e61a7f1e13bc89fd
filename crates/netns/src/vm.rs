//! Running a test binary inside the `bench/vm` guest: Debian's kernel (with IPVS) under
//! QEMU, sharing the host's root file system read-only, for tests that need kernel
//! features this host lacks. `bench/vm/build.sh` builds the guest; `bench/vm/run.sh`
//! boots it and runs one command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Set in the guest's environment, so a test run there never tries to boot a VM itself.
pub const IN_VM: &str = "VIPD_IN_VM";

/// Whether this process runs inside the guest.
pub fn in_vm() -> bool {
    std::env::var_os(IN_VM).is_some()
}

/// Whether this kernel has IPVS.
pub fn host_has_ipvs() -> bool {
    Path::new("/proc/net/ip_vs").exists()
}

/// `bench/vm/run.sh` of this checkout.
pub fn run_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/vm/run.sh")
}

/// Why the guest cannot be used here, `None` if it can. Checks what `run.sh` would
/// otherwise build or install itself (which a test must not do).
pub fn unavailable() -> Option<String> {
    let run = run_sh();
    if !run.is_file() {
        return Some(format!("{} is missing", run.display()));
    }
    let dir = std::env::var("VIPD_VM_DIR").unwrap_or_else(|_| "/var/tmp/vipd-vm".into());
    let env = Path::new(&dir).join("current.env");
    let Ok(text) = std::fs::read_to_string(&env) else {
        return Some(format!(
            "no VM image ({} is missing; run bench/vm/build.sh)",
            env.display()
        ));
    };
    for var in ["KERNEL", "INITRD"] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(var)?.strip_prefix('='));
        match value {
            Some(p) if Path::new(p).is_file() => {}
            _ => {
                return Some(format!(
                    "{}: {var} is missing or names no file",
                    env.display()
                ))
            }
        }
    }
    if find_program("qemu-system-x86_64").is_none() {
        return Some("qemu-system-x86_64 is not installed".into());
    }
    None
}

/// `name` on PATH or in the usual sbin directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What a guest run printed.
#[derive(Debug, Clone)]
pub struct VmRun {
    /// run.sh's exit status (the command's; 124 timeout, 125 the VM failed).
    pub status: Option<i32>,
    /// The guest command's standard output.
    pub stdout: String,
    /// Its standard error, with run.sh's own messages.
    pub stderr: String,
    /// Boot to power-off.
    pub wall: Duration,
}

impl VmRun {
    /// Everything, for a failed assertion.
    pub fn report(&self) -> String {
        format!(
            "run.sh exit status {:?} after {:.1} s\n----- guest stdout -----\n{}\n----- guest stderr / run.sh -----\n{}",
            self.status,
            self.wall.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// Whether the guest cannot see `path` (it gets fresh tmpfs on these directories): such
/// a binary's directory must be shared into it.
pub fn hidden_in_guest(path: &Path) -> bool {
    ["/tmp", "/var/tmp", "/run", "/dev/shm"]
        .iter()
        .any(|d| path.starts_with(d))
}

/// Boots the guest and runs `exe args...` in it with `IN_VM=1` and `env`, as root.
/// Every path of `needs` (and `exe`) that the guest would not see is shared into it.
pub fn run(
    exe: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    needs: &[&Path],
    timeout: Duration,
) -> Result<VmRun, String> {
    let mut cmd = Command::new("bash");
    cmd.arg(run_sh())
        .args(["--timeout", &timeout.as_secs().max(1).to_string()])
        .args(["--env", &format!("{IN_VM}=1")]);
    for (k, v) in env {
        cmd.args(["--env", &format!("{k}={v}")]);
    }
    if let Ok(v) = std::env::var("RUST_BACKTRACE") {
        cmd.args(["--env", &format!("RUST_BACKTRACE={v}")]);
    }
    for p in std::iter::once(&exe).chain(needs) {
        if hidden_in_guest(p) {
            let dir = if p.is_dir() {
                p
            } else {
                p.parent().ok_or("a path without a directory")?
            };
            cmd.arg("--share").arg(dir);
        }
    }
    cmd.arg("--").arg(exe).args(args);
    let t = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", run_sh().display()))?;
    Ok(VmRun {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        wall: t.elapsed(),
    })
}

/// Runs this test binary again (`exe args...` with `env`): here when `natively` (this
/// kernel has the feature), otherwise inside the guest; `None` (with a "skipped" line
/// naming `feature`) when neither can. Returns the exit status and everything printed.
pub fn rerun_natively_or_in_guest(
    natively: bool,
    feature: &str,
    exe: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    needs: &[&Path],
    timeout: Duration,
) -> Option<(Option<i32>, String)> {
    if natively {
        let o = Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("re-running the test binary");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        return Some((o.status.code(), text));
    }
    if let Some(why) = unavailable() {
        eprintln!("skipped: this kernel has no {feature} and the VM cannot run: {why}");
        return None;
    }
    let run = run(exe, args, env, needs, timeout).expect("running the VM");
    eprintln!("VM run: {:.1} s", run.wall.as_secs_f64());
    Some((run.status, run.report()))
}

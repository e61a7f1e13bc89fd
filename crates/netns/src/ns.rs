//! The [`Netns`] guard.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::process::Proc;
use crate::util::{run, run_command};

/// Where `ip netns` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// A fresh, process-unique name prefix: `"<prefix>-<pid>-<n>"`.
///
/// Append a short role (`-r1`, `-sw`, …) to get namespace names that can't
/// collide with other processes or other topologies of this process.
pub fn unique_prefix(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A named network namespace that is deleted when dropped.
///
/// Dropping kills (SIGKILL) every process still living in the namespace
/// (as reported by `ip netns pids`) and then runs `ip netns delete`.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add NAME`) and sets its
    /// loopback up. Fails if it already exists.
    pub fn new(name: impl Into<String>) -> Result<Netns> {
        let name = name.into();
        if name.is_empty() || name.contains('/') || name.len() > 64 {
            bail!("invalid netns name {name:?}");
        }
        run("ip", ["netns", "add", &name]).with_context(|| format!("creating netns {name}"))?;
        let ns = Netns { name };
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a namespace with a unique name `vpd-<pid>-<n>-<role>`.
    pub fn unique(role: &str) -> Result<Netns> {
        Netns::new(format!("{}-{role}", unique_prefix("vpd")))
    }

    /// The namespace's name (as used by `ip netns` / `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace handle, `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `args[0] args[1..]` inside the namespace (`ip netns exec NAME …`)
    /// and returns its stdout. Fails, with stderr in the message, when the
    /// command can't be run or exits non-zero.
    ///
    /// `ns.exec(&["ip", "-6", "route"])?`
    pub fn exec<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String> {
        if args.is_empty() {
            bail!("Netns::exec: empty command");
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        run_command(cmd, None)
    }

    /// Runs `ip -n NAME args…` (cheaper than [`exec`](Self::exec) for `ip`
    /// itself) and returns its stdout.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        run_command(cmd, None)
    }

    /// Runs several `ip` commands in one process: `ip -n NAME -batch -`, one
    /// command per line (without the leading `ip`).
    pub fn ip_batch(&self, commands: &str) -> Result<()> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name, "-batch", "-"]);
        run_command(cmd, Some(commands)).map(drop)
    }

    /// Sets a `net.*` sysctl of this namespace, e.g.
    /// `ns.sysctl("net.ipv6.conf.all.accept_dad", "0")`. Written directly to
    /// `/proc/sys` from a thread inside the namespace (no fork).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.sysctls(&[(key, value)])
    }

    /// Sets several sysctls at once, in order (see [`sysctl`](Self::sysctl)).
    pub fn sysctls(&self, settings: &[(&str, &str)]) -> Result<()> {
        self.run(|| -> Result<()> {
            for (key, value) in settings {
                write_sysctl(key, value)?;
            }
            Ok(())
        })?
        .with_context(|| format!("in netns {}", self.name))
    }

    /// Starts a long-lived process inside the namespace
    /// (`ip netns exec NAME args…`); its stdout and stderr go to `log`
    /// (truncated first). The process gets its own process group, so
    /// [`Proc::kill9`] also takes out its children.
    pub fn spawn<I, S>(&self, args: I, log: impl AsRef<Path>) -> Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        Proc::spawn(cmd, log.as_ref())
    }

    /// Runs `f` on a new thread that has entered this namespace with
    /// `setns(CLONE_NEWNET)`: sockets it creates, interface indices it looks up
    /// and `/proc/sys/net` files it opens belong to the namespace. (Sockets
    /// stay in their namespace when handed to other threads.)
    ///
    /// Returns once the thread has entered the namespace; fails if it can't.
    pub fn enter_thread<F, T>(&self, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self.open()?;
        let (tx, rx) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name(format!("ns:{}", self.name))
            .spawn(move || {
                let entered = setns(&file, CloneFlags::CLONE_NEWNET);
                drop(file);
                let ok = entered.is_ok();
                let _ = tx.send(entered);
                if !ok {
                    // The caller gets the error; never run `f` outside the ns.
                    panic_free_exit();
                }
                f()
            })
            .context("spawning netns thread")?;
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(anyhow!("setns into {}: {e}", self.name))
            }
            Err(_) => Err(anyhow!("netns thread for {} died", self.name)),
        }
    }

    /// Runs `f` to completion on a thread inside this namespace and returns
    /// its result (a panic in `f` is propagated). Unlike
    /// [`enter_thread`](Self::enter_thread), `f` may borrow.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file = self.open()?;
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map(|()| {
                    drop(file);
                    f()
                })
            });
            match h.join() {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(anyhow!("setns into {}: {e}", self.name)),
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// PIDs of the processes living in this namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.name)
    }

    fn open(&self) -> Result<File> {
        File::open(self.path()).with_context(|| format!("opening {}", self.path().display()))
    }
}

/// Helper for [`Netns::enter_thread`]: the thread's closure returns `T`, so
/// when setns failed we have no `T`; unwind quietly instead.
fn panic_free_exit() -> ! {
    std::panic::resume_unwind(Box::new("setns failed"))
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| format!("sysctl {key}={value}"))
}

fn pids_in(name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    run("ip", ["netns", "pids", name])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|p| *p != me)
                .collect()
        })
        .unwrap_or_default()
}

fn kill_and_delete(name: &str) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for _ in 0..3 {
        let pids = pids_in(name);
        if pids.is_empty() {
            break;
        }
        for p in pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for attempt in 0..5 {
        match run("ip", ["netns", "delete", name]) {
            Ok(_) => return,
            Err(e) => {
                if !Path::new(NETNS_DIR).join(name).exists() {
                    return;
                }
                if attempt == 4 {
                    eprintln!("vipd-netns: could not delete netns {name}: {e:#}");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_and_delete(&self.name);
    }
}

/// Deletes namespaces left behind by *dead* processes of this crate: names
/// `<prefix>-<pid>-…` whose `<pid>` no longer exists (e.g. a test binary
/// killed with SIGKILL, so no Drop ran). Returns how many were deleted.
/// Namespaces of live processes are never touched.
pub fn cleanup_stale(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return 0;
    };
    let mut n = 0;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let mut parts = rest.split('-');
        let (Some(pid), Some(counter)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(pid), true) = (
            pid.parse::<u32>(),
            !counter.is_empty() && counter.bytes().all(|b| b.is_ascii_digit()),
        ) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_and_delete(&name);
        n += 1;
    }
    n
}

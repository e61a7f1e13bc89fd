//! `net_namespace_ipvs`: the load balancer's kernel table in another network namespace.
//!
//! A socket belongs to the network namespace its creator was in when it was made, for
//! its whole life. So the backends create their sockets (and touch the namespace's
//! `/proc/sys/net`) on a short-lived helper thread that first joins the namespace
//! ([`Netns::run`]); vipd's own threads, and with them the health checks, never leave
//! vipd's namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

/// An open handle on a network namespace (the file keeps it alive and named the same).
#[derive(Debug, Clone)]
pub struct Netns {
    file: Arc<File>,
    /// Where it was opened, for messages.
    path: PathBuf,
}

impl Netns {
    /// `net_namespace_ipvs NAME`: `/run/netns/NAME` (as `ip netns add` makes it); an
    /// empty name is the init process's namespace (keepalived's "default namespace").
    pub fn named(name: &str) -> anyhow::Result<Netns> {
        let path = if name.is_empty() {
            PathBuf::from("/proc/1/ns/net")
        } else if name.contains('/') || name == "." || name == ".." {
            bail!(
                "net_namespace_ipvs `{name}`: a name from `ip netns list` is expected, not a path"
            );
        } else {
            PathBuf::from(format!("/run/netns/{name}"))
        };
        let file = File::open(&path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        Ok(Netns {
            file: Arc::new(file),
            path,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs `f` on a thread that has joined this namespace and returns its result; the
    /// calling thread stays where it is.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns(2) with a namespace file descriptor we hold open; it
                // moves only this helper thread, which ends right after `f`.
                if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(anyhow!(
                        "joining network namespace {}: {}",
                        self.path.display(),
                        std::io::Error::last_os_error()
                    ));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| {
                anyhow!(
                    "the thread in network namespace {} panicked",
                    self.path.display()
                )
            })?
        })
    }
}

/// Runs `f` in `ns`, or right here when there is none.
pub fn within<T: Send>(ns: Option<&Netns>, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    match ns {
        Some(ns) => ns.run(f),
        None => Ok(f()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace inode of the calling thread.
    fn current() -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    #[test]
    fn names_are_checked_and_run_moves_only_the_helper() {
        assert!(Netns::named("a/b").is_err());
        assert!(Netns::named("..").is_err());
        let e = Netns::named("vipd-no-such-netns").unwrap_err();
        assert!(
            format!("{e:#}").contains("/run/netns/vipd-no-such-netns"),
            "{e:#}"
        );
        // Root only: entering a namespace needs CAP_SYS_ADMIN.
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let mine = current();
        let unshared = std::thread::spawn(|| {
            // SAFETY: plain syscall; CLONE_NEWNET moves only this thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let ino = current();
            let f = File::open("/proc/thread-self/ns/net").unwrap();
            (ino, f)
        })
        .join()
        .unwrap();
        let ns = Netns {
            file: Arc::new(unshared.1),
            path: "test".into(),
        };
        assert_eq!(ns.run(current).unwrap(), unshared.0);
        assert_ne!(unshared.0, mine);
        assert_eq!(current(), mine);
        assert_eq!(within(None, current).unwrap(), mine);
    }
}

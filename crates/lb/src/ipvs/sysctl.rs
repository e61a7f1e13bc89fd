//! The IPVS sysctls vipd turns on while it programs IPVS, and puts back afterwards.
//!
//! With the kernel's defaults, IPVS keeps a connection entry pointing at a real server
//! after that server is removed (or set to weight 0), and *drops* every packet that
//! matches it until the entry times out: minutes (FIN_WAIT and TIME_WAIT 2 min,
//! ESTABLISHED 15 min). A client that reuses a source port, or the many clients behind one
//! NAT, then sees connections to the VIP time out although a healthy server is there.
//! With `expire_nodest_conn` the entry is expired on its next packet and a new
//! connection (a SYN) is scheduled to a live server at once; `expire_quiescent_template`
//! does the same for persistence templates pointing at a weight-0 server
//! (`inhibit_on_failure`). keepalived leaves both at 0; vipd sets them (documented
//! difference; `--lb-keep-ipvs-sysctls` opts out).

use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

/// Where the sysctls of the caller's network namespace are.
pub const PROC_DIR: &str = "/proc/sys/net/ipv4/vs";

/// What vipd sets, and to what.
pub const TUNED: [(&str, &str); 2] = [
    ("expire_nodest_conn", "1"),
    ("expire_quiescent_template", "1"),
];

/// Sysctls vipd changed: restored (when nobody changed them since) by [`Tuned::restore`]
/// or on drop.
#[derive(Debug, Default)]
pub struct Tuned {
    /// Path, value before, value vipd wrote.
    changed: Vec<(PathBuf, String, String)>,
}

impl Tuned {
    /// Sets every [`TUNED`] sysctl under `dir` that is not already at its value. A
    /// sysctl that cannot be read or written is an error naming it (nothing is left
    /// half-changed: what was written before the failure is put back).
    pub fn apply(dir: &Path) -> anyhow::Result<Tuned> {
        let mut tuned = Tuned::default();
        for (name, value) in TUNED {
            let path = dir.join(name);
            let before = match read(&path) {
                Ok(v) => v,
                Err(e) => {
                    tuned.restore();
                    return Err(e);
                }
            };
            if before == value {
                continue;
            }
            if let Err(e) = std::fs::write(&path, value) {
                tuned.restore();
                return Err(e).with_context(|| format!("setting {} to {value}", path.display()));
            }
            info!(
                "set {} to {value} (was {before}): connections to a removed real server are rescheduled, not dropped until they time out",
                path.display()
            );
            tuned.changed.push((path, before, value.to_string()));
        }
        Ok(tuned)
    }

    /// What was changed: (path, value before, value now).
    pub fn changed(&self) -> &[(PathBuf, String, String)] {
        &self.changed
    }

    /// Puts back the values found by [`Tuned::apply`], except where something else has
    /// changed the sysctl since (that change is left alone).
    pub fn restore(&mut self) {
        for (path, before, ours) in self.changed.drain(..).rev() {
            match read(&path) {
                Ok(now) if now == ours => {
                    if let Err(e) = std::fs::write(&path, &before) {
                        warn!("restoring {} to {before}: {e}", path.display());
                    }
                }
                Ok(now) => info!(
                    "leaving {} at {now}: changed by someone else since vipd set it to {ours}",
                    path.display()
                ),
                Err(e) => warn!("restoring {}: {e:#}", path.display()),
            }
        }
    }
}

impl Drop for Tuned {
    fn drop(&mut self) {
        self.restore();
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory standing in for /proc/sys/net/ipv4/vs, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(values: &[(&str, &str)]) -> Dir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "vipd-ipvs-sysctl-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        for (k, v) in values {
            std::fs::write(d.join(k), format!("{v}\n")).unwrap();
        }
        Dir(d)
    }

    fn value(d: &Dir, k: &str) -> String {
        read(&d.path().join(k)).unwrap()
    }

    #[test]
    fn sets_both_and_restores_them() {
        let d = dir(&[
            ("expire_nodest_conn", "0"),
            ("expire_quiescent_template", "0"),
        ]);
        let mut t = Tuned::apply(d.path()).unwrap();
        assert_eq!(value(&d, "expire_nodest_conn"), "1");
        assert_eq!(value(&d, "expire_quiescent_template"), "1");
        assert_eq!(t.changed().len(), 2);
        t.restore();
        assert_eq!(value(&d, "expire_nodest_conn"), "0");
        assert_eq!(value(&d, "expire_quiescent_template"), "0");
        assert!(t.changed().is_empty());
    }

    #[test]
    fn leaves_alone_what_is_already_set_and_what_others_changed() {
        let d = dir(&[
            ("expire_nodest_conn", "1"),
            ("expire_quiescent_template", "0"),
        ]);
        let t = Tuned::apply(d.path()).unwrap();
        assert_eq!(t.changed().len(), 1, "{:?}", t.changed());
        // Someone sets it to 0 while vipd runs: vipd's restore must not undo that...
        std::fs::write(d.path().join("expire_quiescent_template"), "0").unwrap();
        drop(t);
        assert_eq!(value(&d, "expire_quiescent_template"), "0");
        // ...and the one that was already 1 stays 1.
        assert_eq!(value(&d, "expire_nodest_conn"), "1");
    }

    #[test]
    fn a_missing_sysctl_is_an_error_naming_it_and_undoes_the_rest() {
        let d = dir(&[("expire_nodest_conn", "0")]);
        let err = Tuned::apply(d.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("expire_quiescent_template"),
            "{err:#}"
        );
        assert_eq!(value(&d, "expire_nodest_conn"), "0");
    }
}

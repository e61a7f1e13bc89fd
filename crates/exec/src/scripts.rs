//! Running external programs — `vrrp_script` checks and `notify*` scripts — so that
//! none of them can hurt the daemon: each runs in its own process group (a timeout
//! kills the whole group, grandchildren included), with stdin closed, output
//! discarded, and its waiting done on a thread of its own.
//!
//! Like keepalived, a script line is split into words (double or single quotes group
//! words, a backslash escapes the next character) and executed directly, not through a
//! shell: write `script "/bin/sh -c '...'"` for shell syntax.
//!
//! With `enable_script_security` the program is resolved once, at configuration time,
//! and checked ([`check_security`]); the path that was checked is what gets executed
//! ([`Script::program`]), with the word as written as its `argv[0]`, so neither a
//! `PATH` lookup nor a symbolic link followed again at run time can swap in a program
//! that was never checked.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status (0 = success).
    Exited(i32),
    /// Killed by a signal it did not ask for.
    Signalled(i32),
    /// Ran past its timeout; its process group was killed.
    TimedOut,
    /// Could not be started at all.
    SpawnFailed(String),
}

impl Outcome {
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }
}

/// Whom a script runs as (`script_user` / `user` in a vrrp_script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// `USER [GROUP]` → uid/gid (the user's primary group when no group is named).
pub fn run_as(spec: &str) -> anyhow::Result<RunAs> {
    let mut words = spec.split_whitespace();
    let name = words.next().ok_or_else(|| anyhow::anyhow!("empty user"))?;
    let user = nix::unistd::User::from_name(name)?
        .ok_or_else(|| anyhow::anyhow!("no user `{name}` on this host"))?;
    let gid = match words.next() {
        Some(g) => {
            nix::unistd::Group::from_name(g)?
                .ok_or_else(|| anyhow::anyhow!("no group `{g}` on this host"))?
                .gid
        }
        None => user.gid,
    };
    Ok(RunAs {
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
    })
}

/// A script to run: its words and whom it runs as (`None`: as vipd itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub argv: Vec<String>,
    pub run_as: Option<RunAs>,
    /// The file to execute, as [`check_security`] checked it (`argv[0]` stays the
    /// word as written); `None`: `argv[0]` looked up as usual.
    pub program: Option<PathBuf>,
}

impl Script {
    /// `line` split into words, run as vipd itself.
    pub fn new(line: &str) -> Script {
        Script {
            argv: split_words(line),
            run_as: None,
            program: None,
        }
    }

    /// Runs it (see [`run_program`]).
    pub fn run(&self, extra: &[String], timeout: Duration) -> Outcome {
        run_program(
            self.program.as_deref(),
            &self.argv,
            extra,
            timeout,
            self.run_as,
        )
    }
}

/// A command for `argv`: `program` executed when given (with `argv[0]` as its
/// `argv[0]`), else `argv[0]` looked up as usual.
pub fn command(program: Option<&Path>, argv: &[String]) -> Option<Command> {
    let (first, args) = argv.split_first()?;
    let mut cmd = match program {
        Some(p) => {
            let mut c = Command::new(p);
            c.arg0(first);
            c
        }
        None => Command::new(first),
    };
    cmd.args(args);
    Some(cmd)
}

/// A long-running helper (`notify_fifo_script`): its own process group, stdin closed;
/// the group gets SIGTERM when this is dropped (keepalived stops it at exit too).
pub struct Helper {
    child: std::process::Child,
}

impl Helper {
    pub fn start(script: &Script, extra: &[String]) -> std::io::Result<Helper> {
        let mut cmd = command(script.program.as_deref(), &script.argv)
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(u) = script.run_as {
            cmd.uid(u.uid).gid(u.gid);
        }
        Ok(Helper {
            child: cmd.spawn()?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the helper's own process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above; it ignored SIGTERM.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Make `path` a FIFO if nothing is there yet (keepalived creates its FIFOs too).
pub fn ensure_fifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(md) if md.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} exists and is not a FIFO",
            path.display()
        ))),
        Err(_) => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(std::io::Error::other)?;
            // SAFETY: mkfifo on a NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
    }
}

/// Split a script line into words.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Run `argv` (plus `extra` arguments) and wait at most `timeout`.
pub fn run(argv: &[String], extra: &[String], timeout: Duration, run_as: Option<RunAs>) -> Outcome {
    run_program(None, argv, extra, timeout, run_as)
}

/// [`run`], executing `program` (a path [`check_security`] checked) when given.
pub fn run_program(
    program: Option<&Path>,
    argv: &[String],
    extra: &[String],
    timeout: Duration,
    run_as: Option<RunAs>,
) -> Outcome {
    let Some(mut cmd) = command(program, argv) else {
        return Outcome::SpawnFailed("empty command".into());
    };
    let prog = program
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| argv[0].clone());
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own process group, so a timeout can kill everything it started.
    cmd.process_group(0);
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::SpawnFailed(format!("{prog}: {e}")),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                return match (status.code(), status.signal()) {
                    (Some(c), _) => Outcome::Exited(c),
                    (None, Some(s)) => Outcome::Signalled(s),
                    _ => Outcome::Exited(-1),
                };
            }
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: kill(2) on the child's process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return Outcome::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Outcome::SpawnFailed(format!("{prog}: {e}")),
        }
    }
}

/// keepalived's `enable_script_security`: a script is refused if a non-root user
/// could change what runs — the file itself or any directory on its path being owned
/// by someone other than root or writable by group (not root's) or others. The path
/// checked is the file symbolic links lead to, unless `keep_symlinks`
/// (`use_symlink_paths`): then the path as written (its directories, and the file it
/// names).
pub fn check_security(program: &str, keep_symlinks: bool) -> Result<PathBuf, String> {
    let path = resolve(program, keep_symlinks)
        .ok_or_else(|| format!("`{program}` not found (give a full path)"))?;
    let mut p: Option<&Path> = Some(&path);
    while let Some(cur) = p {
        let md = std::fs::metadata(cur).map_err(|e| format!("{}: {e}", cur.display()))?;
        let mode = md.mode();
        let what = if cur == path {
            "the script"
        } else {
            "a directory on its path"
        };
        if md.uid() != 0 {
            return Err(format!(
                "{what} {} is owned by uid {}: a non-root user could change it (chown root {})",
                cur.display(),
                md.uid(),
                cur.display()
            ));
        }
        if mode & 0o020 != 0 && md.gid() != 0 {
            return Err(format!(
                "{what} {} is writable by group {} (chmod g-w {})",
                cur.display(),
                md.gid(),
                cur.display()
            ));
        }
        // A sticky world-writable directory (/tmp) still lets others add files, but not
        // replace root's; keepalived refuses it all the same, and so do we.
        if mode & 0o002 != 0 {
            return Err(format!(
                "{what} {} is writable by everyone (chmod o-w {})",
                cur.display(),
                cur.display()
            ));
        }
        p = cur.parent();
    }
    Ok(path)
}

/// A program name as execvp would find it.
fn resolve(program: &str, keep_symlinks: bool) -> Option<PathBuf> {
    let real = |p: PathBuf| {
        if keep_symlinks {
            p
        } else {
            p.canonicalize().unwrap_or(p)
        }
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.exists().then(|| real(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        split_words(s)
    }

    #[test]
    fn splitting_like_keepalived() {
        assert_eq!(w("[ ! -f /etc/down ]"), ["[", "!", "-f", "/etc/down", "]"]);
        assert_eq!(
            w(r#"/bin/sh -c 'pidof nginx || exit 1'"#),
            ["/bin/sh", "-c", "pidof nginx || exit 1"]
        );
        assert_eq!(w(r#"a "b c" d\ e"#), ["a", "b c", "d e"]);
        assert_eq!(w("  "), Vec::<String>::new());
        assert_eq!(w(r#""""#), [""]);
    }

    #[test]
    fn outcomes() {
        let t = Duration::from_secs(5);
        assert_eq!(run(&w("true"), &[], t, None), Outcome::Exited(0));
        assert_eq!(run(&w("false"), &[], t, None), Outcome::Exited(1));
        assert!(matches!(
            run(&w("/nonexistent/x"), &[], t, None),
            Outcome::SpawnFailed(_)
        ));
        // Extra arguments are appended (notify's "INSTANCE name STATE prio").
        assert_eq!(
            run(
                &w("/bin/sh -c 'test \"$0 $1\" = \"a b\"'"),
                &["a".into(), "b".into()],
                t,
                None
            ),
            Outcome::Exited(0)
        );
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let marker = std::env::temp_dir().join(format!("vipd-scripts-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        // The backgrounded subshell would survive a kill of the outer shell alone.
        let script = format!(
            "/bin/sh -c \"(sleep 0.3; touch {}) & wait\"",
            marker.display()
        );
        let start = Instant::now();
        let out = run(&w(&script), &[], Duration::from_millis(100), None);
        assert_eq!(out, Outcome::TimedOut);
        assert!(start.elapsed() < Duration::from_millis(300));
        std::thread::sleep(Duration::from_millis(500));
        assert!(!marker.exists(), "a grandchild outlived the timeout");
    }

    #[test]
    fn security_check() {
        assert!(
            check_security("/bin/true", false).is_ok()
                || check_security("/usr/bin/true", false).is_ok()
        );
        let dir = std::env::temp_dir().join(format!("vipd-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("check.sh");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        // Under /tmp (world-writable): refused, and the message says which part and why.
        let err = check_security(f.to_str().unwrap(), false).unwrap_err();
        assert!(err.contains("writable by everyone"), "{err}");
        assert!(check_security("no-such-program-xyz", false)
            .unwrap_err()
            .contains("not found"));
        // A link in a world-writable directory to a safe program: keepalived's default
        // checks the target (accepted); `use_symlink_paths` checks the link's path.
        let link = dir.join("true-link");
        std::os::unix::fs::symlink("/bin/true", &link).unwrap();
        let link = link.to_str().unwrap();
        assert!(check_security(link, false).is_ok());
        let err = check_security(link, true).unwrap_err();
        assert!(err.contains("writable by everyone"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// No check-then-run race on the name: the link that was checked (to `true`, in a
    /// directory others may write, which keepalived's default accepts) is repointed to
    /// `false` after the check; the script still runs the file that was checked.
    #[test]
    fn the_path_that_was_checked_is_the_path_that_runs() {
        let dir = std::env::temp_dir().join(format!("vipd-sec-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("probe");
        std::os::unix::fs::symlink("/bin/true", &link).unwrap();
        let name = link.to_str().unwrap().to_string();
        let checked = check_security(&name, false).unwrap();
        assert_ne!(checked, link, "the target is checked, not the link");
        let script = Script {
            argv: vec![name.clone()],
            run_as: None,
            program: Some(checked),
        };
        let t = Duration::from_secs(5);
        assert_eq!(script.run(&[], t), Outcome::Exited(0));
        // Swapped after the check.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("/bin/false", &link).unwrap();
        assert_eq!(
            script.run(&[], t),
            Outcome::Exited(0),
            "ran the swapped link"
        );
        // Running the name (no checked path) would have followed the new link.
        assert_eq!(Script::new(&name).run(&[], t), Outcome::Exited(1));
        // `use_symlink_paths`: the link's own path is what is checked and run.
        let kept = check_security("/bin/true", true).unwrap();
        assert_eq!(kept, std::path::Path::new("/bin/true"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The checked path is executed with the word as written as its argv[0], so
    /// programs that look at their name (busybox applets) behave as configured.
    #[test]
    fn argv0_stays_the_word_as_written() {
        let sh = check_security("/bin/sh", false).unwrap();
        let script = Script {
            argv: split_words(
                r#"my-probe -c "tr '\\000' '\\n' < /proc/$$/cmdline | head -n 1 | grep -qx my-probe""#,
            ),
            run_as: None,
            program: Some(sh),
        };
        assert_eq!(script.run(&[], Duration::from_secs(5)), Outcome::Exited(0));
    }
}

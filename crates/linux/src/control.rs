//! The control socket: a Unix stream socket answering one-line requests: `status` (one line of JSON), `reload` (one line of
//! JSON: what changed, or why nothing did) and `events` (a JSON line per transition,
//! for as long as the client stays).
//!
//! Access: the socket is created with mode 0600 from the start — bound inside a private
//! 0700 directory, given its mode there and renamed into place, so no umask (the
//! daemon's `umask` keyword included) ever exposes it — and every connection's peer
//! credentials (`SO_PEERCRED`, `SO_PEERGROUPS`) are checked: root, the socket file's
//! owner, or a member of its group. An operator who grants a group access
//! (`chgrp vipdadm SOCKET; chmod 0660 SOCKET`) needs no restart; a mode loosened by
//! mistake does not open the socket to anyone else.

use crate::status::Snapshot;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fan-out of event lines to `events` subscribers; slow or gone subscribers are dropped.
#[derive(Clone, Default)]
pub struct EventHub {
    subscribers: Arc<Mutex<Vec<SyncSender<String>>>>,
}

impl EventHub {
    pub fn publish(&self, line: String) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|s| s.try_send(line.clone()).is_ok());
        }
    }

    fn subscribe(&self) -> Receiver<String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }
}

/// Reloads the configuration; answers with one JSON value (what changed) or why not.
pub type ReloadHook = Arc<dyn Fn() -> Result<serde_json::Value, String> + Send + Sync>;

/// What the control socket serves.
#[derive(Clone)]
pub struct Handlers {
    pub status: Arc<Mutex<Snapshot>>,
    pub events: EventHub,
    pub reload: ReloadHook,
}

pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Bind `path`. A socket left by a crashed daemon is replaced; one that still
    /// answers means another vipd runs there, which is an error.
    pub fn start(path: &Path, handlers: Handlers) -> Result<ControlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "another vipd is running: control socket {} answers (use --control-socket to run a second daemon)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale control socket {}", path.display()))?;
        }
        let listener = bind_private(path, 0o600)?;
        let sock_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("vipd-control".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let allowed = authorize(&conn, &sock_path);
                    let handlers = handlers.clone();
                    let _ = std::thread::Builder::new()
                        .name("vipd-control-conn".into())
                        .spawn(move || match allowed {
                            Ok(()) => serve(conn, &handlers),
                            Err(why) => refuse(conn, &why),
                        });
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind a Unix socket at `path` that has `mode` from the moment it can be reached
/// there: bound in a fresh 0700 directory beside `path` (nobody else can reach it
/// whatever the umask), given its mode, then renamed over `path`.
pub fn bind_private(path: &Path, mode: u32) -> Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).ok();
    let name = path
        .file_name()
        .context("control socket path has no file name")?;
    let private = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("creating {}", private.display()))?;
    // The umask may have cleared bits of 0700; never more than that.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
    let inner = private.join("sock");
    let result = (|| {
        let listener = UnixListener::bind(&inner)
            .with_context(|| format!("binding control socket {}", path.display()))?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&inner, path)
            .with_context(|| format!("moving control socket into place at {}", path.display()))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// The peer's uid, gid and supplementary groups, as the kernel recorded them at
/// `connect` (`SO_PEERCRED`, `SO_PEERGROUPS`).
pub fn peer_credentials(conn: &UnixStream) -> std::io::Result<(u32, u32, Vec<u32>)> {
    let fd = conn.as_raw_fd();
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut groups = vec![0u32; 256];
    let mut len = (groups.len() * 4) as libc::socklen_t;
    // SAFETY: as above, into a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // Older kernels (< 4.13) or more groups than the buffer: the primary group only.
    let groups = if rc == 0 {
        groups.truncate(len as usize / 4);
        groups
    } else {
        Vec::new()
    };
    Ok((cred.uid, cred.gid, groups))
}

/// Root, the owner of the socket file, or a member of its group may talk to us.
fn authorize(conn: &UnixStream, path: &Path) -> Result<(), String> {
    let (uid, gid, groups) = peer_credentials(conn).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    if uid == 0 {
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if uid == meta.uid() || gid == meta.gid() || groups.contains(&meta.gid()) {
        return Ok(());
    }
    Err(format!(
        "uid {uid} (gid {gid}) is neither root, the owner (uid {}) nor in the group (gid {}) of {}",
        meta.uid(),
        meta.gid(),
        path.display()
    ))
}

/// Answer a refused client's request with why, so its `vipd status` says so (the
/// request is read first: closing with it unread could reset the answer away).
fn refuse(conn: UnixStream, why: &str) {
    tracing::warn!("control socket: refused a connection: {why}");
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    if let Ok(read_half) = conn.try_clone() {
        let _ = BufReader::new(read_half).read_line(&mut line);
    }
    let reply = serde_json::json!({ "error": format!("permission denied: {why}") });
    let _ = (&conn).write_all(format!("{reply}\n").as_bytes());
}

fn serve(conn: UnixStream, handlers: &Handlers) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = conn;
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        let reply = match line.trim() {
            "status" => {
                let snap = handlers
                    .status
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_default();
                serde_json::to_string(&snap)
                    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
            }
            "reload" => match (handlers.reload)() {
                Ok(v) => v.to_string(),
                Err(e) => serde_json::json!({ "error": e }).to_string(),
            },
            "events" => {
                for ev in handlers.events.subscribe() {
                    if writer
                        .write_all(ev.as_bytes())
                        .and_then(|_| writer.write_all(b"\n"))
                        .is_err()
                    {
                        return;
                    }
                }
                return;
            }
            other => {
                serde_json::json!({ "error": format!("unknown request `{other}`") }).to_string()
            }
        };
        if writer
            .write_all(reply.as_bytes())
            .and_then(|_| writer.write_all(b"\n"))
            .is_err()
        {
            return;
        }
        line.clear();
    }
}

fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is vipd running? are you root?)",
            path.display()
        )
    })
}

/// Send one request and read its one-line JSON answer.
pub fn request(path: &Path, what: &str, timeout: Duration) -> Result<serde_json::Value> {
    let mut conn = connect(path)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.write_all(format!("{what}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    Ok(serde_json::from_str(&line)?)
}

/// Ask a running daemon for its status.
pub fn query_status(path: &Path) -> Result<serde_json::Value> {
    request(path, "status", Duration::from_secs(5))
}

/// Stream event lines to `each` (until it returns false or the daemon goes away).
pub fn follow_events(path: &Path, mut each: impl FnMut(&str) -> bool) -> Result<()> {
    let mut conn = connect(path)?;
    conn.write_all(b"events\n")?;
    for line in BufReader::new(conn).lines() {
        if !each(&line?) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vipd-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn handlers() -> Handlers {
        Handlers {
            status: Arc::new(Mutex::new(Snapshot::default())),
            events: EventHub::default(),
            reload: Arc::new(|| Ok(serde_json::json!({ "reloaded": true }))),
        }
    }

    #[test]
    fn socket_is_0600_from_the_start_even_under_umask_0() {
        let dir = scratch_dir("mode");
        let path = dir.join("vipd.sock");
        // The daemon's `umask 0`: the old bind-then-chmod left the socket 0777 in between.
        let old = vipd_exec::tuning::set_umask(0);
        let listener = bind_private(&path, 0o600);
        vipd_exec::tuning::set_umask(old);
        let _listener = listener.unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        // The private directory it was bound in is gone; only the socket is left.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vipd.sock")]);
        // And it is the listening socket.
        UnixStream::connect(&path).expect("connect");
        drop(_listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Connect from a thread that switched to `uid`/`gid` (raw syscalls change only the
    /// calling thread's credentials) and return the daemon's first answer line.
    fn ask_as(path: &Path, uid: u32, gid: u32) -> String {
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            // SAFETY: raw credential syscalls on this thread only (glibc's wrappers
            // would change every thread of the test process).
            unsafe {
                assert_eq!(
                    libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<u32>()),
                    0
                );
                assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
                assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
            }
            let mut conn = UnixStream::connect(&path).expect("connect");
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            conn.write_all(b"status\n").unwrap();
            let mut line = String::new();
            BufReader::new(conn).read_line(&mut line).unwrap();
            line
        })
        .join()
        .unwrap()
    }

    #[test]
    fn peer_credentials_decide_who_may_talk_to_the_daemon() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = scratch_dir("peercred");
        // Searchable for the unprivileged test peer.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("vipd.sock");
        let _server = ControlServer::start(&path, handlers()).unwrap();
        let nobody = 65534;
        let (other_uid, other_gid) = (65533, 65533);
        // Root: served.
        assert!(ask_as(&path, 0, 0).contains("\"instances\""));
        // A mode loosened by mistake lets the kernel connect anyone; the credential
        // check still refuses a stranger.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let refused = ask_as(&path, nobody, nobody);
        assert!(refused.contains("permission denied"), "{refused}");
        assert!(refused.contains("uid 65534"), "{refused}");
        // The socket's group: an operator's `chgrp` grants access.
        std::os::unix::fs::chown(&path, None, Some(nobody)).unwrap();
        assert!(ask_as(&path, nobody, nobody).contains("\"instances\""));
        assert!(ask_as(&path, other_uid, other_gid).contains("permission denied"));
        // The socket's owner.
        std::os::unix::fs::chown(&path, Some(other_uid), None).unwrap();
        assert!(ask_as(&path, other_uid, other_gid).contains("\"instances\""));
        drop(_server);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The control socket: a Unix stream socket (mode 0600, so only root can connect)
//! answering one-line requests: `status` (one line of JSON), `reload` (one line of
//! JSON: what changed, or why nothing did) and `events` (a JSON line per transition,
//! for as long as the client stays).

use crate::status::Snapshot;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
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
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        std::thread::Builder::new()
            .name("vipd-control".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let handlers = handlers.clone();
                    let _ = std::thread::Builder::new()
                        .name("vipd-control-conn".into())
                        .spawn(move || serve(conn, &handlers));
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

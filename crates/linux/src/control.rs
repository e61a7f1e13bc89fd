//! The control socket: a Unix stream socket (mode 0600) answering one-line requests
//! with one line of JSON. `status` is the only request for now.

use crate::status::Snapshot;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Bind `path`. A socket left by a crashed daemon is replaced; one that still
    /// answers means another vipd runs there, which is an error.
    pub fn start(path: &Path, status: Arc<Mutex<Snapshot>>) -> Result<ControlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!("another vipd is running: control socket {} answers (use --control-socket to run a second daemon)", path.display());
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
                    let status = status.clone();
                    let _ = std::thread::Builder::new()
                        .name("vipd-control-conn".into())
                        .spawn(move || serve(conn, &status));
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

fn serve(conn: UnixStream, status: &Mutex<Snapshot>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut writer = conn;
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        let reply = match line.trim() {
            "status" => {
                let snap = status.lock().map(|s| s.clone()).unwrap_or_default();
                serde_json::to_string(&snap).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
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

/// Ask a running daemon for its status.
pub fn query_status(path: &Path) -> Result<serde_json::Value> {
    let mut conn = UnixStream::connect(path)
        .with_context(|| format!("connecting to {} (is vipd running?)", path.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(b"status\n")?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    Ok(serde_json::from_str(&line)?)
}

//! Shared helpers: a network namespace per test, probe construction, tiny servers.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vipd_check::probe::{Probe, ProbeKind};
use vipd_netns::Netns;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `f` on a current-thread runtime on a thread inside a fresh network namespace
/// (loopback up). Returns `None`, after printing why, when not root.
pub fn in_netns<F, Fut>(what: &str, f: F) -> Option<Netns>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    if !is_root() {
        eprintln!("skipping {what}: needs root for a network namespace");
        return None;
    }
    let ns = Netns::unique("chk").expect("netns");
    ns.ip(["link", "set", "lo", "up"]).expect("lo up");
    let h = ns
        .enter_thread(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(f());
        })
        .expect("enter netns");
    if let Err(p) = h.join() {
        std::panic::resume_unwind(p);
    }
    Some(ns)
}

pub fn probe(kind: ProbeKind, target: &str, timeout_ms: u64) -> Probe {
    Probe {
        kind,
        target: target.parse().unwrap(),
        bind_addr: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
        timeout: Duration::from_millis(timeout_ms),
    }
}

/// What the HTTP test server saw: the request head and the peer.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub peer: SocketAddr,
}

pub type Handler = Arc<dyn Fn(&str) -> (u16, Vec<u8>) + Send + Sync>;

/// Serves one response per connection: `handler(path)` → status and body.
pub async fn serve_http(
    listener: TcpListener,
    handler: Handler,
    seen: mpsc::UnboundedSender<Seen>,
) {
    loop {
        let Ok((mut s, peer)) = listener.accept().await else {
            return;
        };
        let (handler, seen) = (handler.clone(), seen.clone());
        tokio::spawn(async move {
            let head = match read_head(&mut s).await {
                Some(h) => h,
                None => return,
            };
            let _ = seen.send(Seen {
                head: head.clone(),
                peer,
            });
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (code, body) = handler(&path);
            let _ = s.write_all(&response(code, &body)).await;
            let _ = s.shutdown().await;
        });
    }
}

pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

pub fn response(code: u16, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.0 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The standard routes: /ok → 200 "hello world", /503 → 503, /moved → 301.
pub fn routes() -> Handler {
    Arc::new(|path: &str| match path {
        "/ok" => (200, b"hello world".to_vec()),
        "/503" => (503, b"down".to_vec()),
        "/moved" => (301, Vec::new()),
        "/big" => (200, vec![b'x'; 5 << 20]),
        _ => (404, Vec::new()),
    })
}

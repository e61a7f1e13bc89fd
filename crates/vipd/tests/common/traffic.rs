//! Traffic through a virtual server: HTTP real servers in their namespaces, GETs from
//! the client, LVS-NAT routing.

use super::Cluster;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vipd_netns::{Netns, VIP_V4};

/// An HTTP/1.0 server on port 80 of a namespace answering `200 <name>`; dropping or
/// `stop`ping it closes the listener (connections are then refused).
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(ns: &Netns, name: &str) -> HttpServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), name.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = ns
            .enter_thread(move || {
                let l = TcpListener::bind("0.0.0.0:80").expect("bind :80");
                l.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                while !s.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => {
                            let name = name.clone();
                            std::thread::spawn(move || serve(c, &name));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
            .unwrap();
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server up");
        HttpServer {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn serve(mut c: TcpStream, name: &str) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!("{name}\n");
    let _ = c.write_all(
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// One GET from the current thread; the answering server's name.
pub fn get(addr: SocketAddr) -> Result<String, String> {
    get_from(addr, 0)
}

/// One GET from local port `port` (0: any).
pub fn get_from(addr: SocketAddr, port: u16) -> Result<String, String> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    if port != 0 {
        sock.set_reuse_address(true).map_err(|e| e.to_string())?;
        let local = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port);
        sock.bind(&local.into())
            .map_err(|e| format!("bind {local}: {e}"))?;
    }
    sock.connect_timeout(&addr.into(), Duration::from_secs(1))
        .map_err(|e| e.to_string())?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    out.split("\r\n\r\n")
        .nth(1)
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("bad answer {out:?}"))
}

/// `n` GETs from the client: answers by server name, failures under "ERR: ...".
pub fn fetch(client: &Netns, n: usize) -> BTreeMap<String, usize> {
    let addr = SocketAddr::new(VIP_V4.into(), 80);
    client
        .enter_thread(move || {
            let mut m = BTreeMap::new();
            for _ in 0..n {
                let k = get(addr).unwrap_or_else(|e| format!("ERR: {e}"));
                *m.entry(k).or_insert(0) += 1;
            }
            m
        })
        .unwrap()
        .join()
        .unwrap()
}

pub fn errors(m: &BTreeMap<String, usize>) -> usize {
    m.iter()
        .filter(|(k, _)| k.starts_with("ERR"))
        .map(|(_, v)| v)
        .sum()
}

/// Wait until `n` GETs in a row succeed.
pub fn wait_serving(c: &Cluster, n: usize, timeout: Duration) {
    let ok = vipd_netns::wait_for(timeout, Duration::from_millis(100), || {
        errors(&fetch(c.lan.client(), n)) == 0
    });
    assert!(
        ok,
        "the VIP never served {n} requests in a row\n{}",
        c.logs()
    );
}

/// LVS-NAT: replies must go back through the director (here: via whoever holds the
/// VIP), and the directors forward.
pub fn nat_routes(c: &Cluster, directors: &[usize], real_servers: &[usize]) {
    for &i in real_servers {
        let ns = c.lan.router(i);
        ns.ip(["route", "add", "192.0.2.50/32", "via", "192.0.2.100"])
            .unwrap();
        ns.sysctl("net.ipv4.conf.all.accept_redirects", "0")
            .unwrap();
    }
    for &i in directors {
        let ns = c.lan.router(i);
        ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
        ns.sysctl("net.ipv4.conf.all.send_redirects", "0").unwrap();
        ns.sysctl("net.ipv4.conf.eth0.send_redirects", "0").unwrap();
    }
}

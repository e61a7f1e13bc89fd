//! Prometheus metrics (opt-in, `vipd run --metrics ADDR`): rendered from the status
//! snapshot on every scrape with `prometheus-client`, served by a tiny HTTP/1.1
//! responder (one GET, one answer; nothing else is needed to be scraped, so no web
//! framework). Each connection gets a thread of its own with a deadline for the whole
//! exchange, and at most [`Limits::max_connections`] are served at once (the next get
//! `503` at once), so a slow or stuck client never stalls the other scrapers.

use crate::status::Snapshot;
use anyhow::{Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the metrics listener protects itself.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are answered `503` and closed.
    pub max_connections: usize,
    /// Deadline for one whole exchange: reading the request and writing the answer.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

type Labels = Vec<(String, String)>;

const STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];

/// The exposition text for one snapshot.
pub fn render(snap: &Snapshot) -> String {
    let mut reg = Registry::default();
    let gauge = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Gauge>::default();
        reg.register(name, help, f.clone());
        f
    };
    let counter = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Counter>::default();
        reg.register(name, help, f.clone());
        f
    };
    let state = gauge(
        &mut reg,
        "vipd_instance_state",
        "1 for the state the instance is in, 0 for the others",
    );
    let priority = gauge(
        &mut reg,
        "vipd_instance_priority",
        "Configured VRRP priority",
    );
    let effective = gauge(
        &mut reg,
        "vipd_instance_effective_priority",
        "Priority currently advertised",
    );
    let interval = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    reg.register(
        "vipd_instance_advert_interval_seconds",
        "Advertisement interval",
        interval.clone(),
    );
    let sent = counter(&mut reg, "vipd_adverts_sent", "VRRP adverts sent");
    let received = counter(&mut reg, "vipd_adverts_received", "VRRP adverts accepted");
    let transitions = counter(&mut reg, "vipd_transitions", "State transitions");
    let became = counter(&mut reg, "vipd_became_master", "Transitions to MASTER");
    let zero_sent = counter(
        &mut reg,
        "vipd_priority_zero_sent",
        "Priority-0 adverts sent (leaving)",
    );
    let zero_recv = counter(
        &mut reg,
        "vipd_priority_zero_received",
        "Priority-0 adverts received",
    );
    let announced = counter(
        &mut reg,
        "vipd_announcements_sent",
        "Gratuitous ARP / unsolicited NA frames sent",
    );
    let drops = counter(
        &mut reg,
        "vipd_adverts_dropped",
        "Received VRRP packets dropped, by reason",
    );
    let send_faults = counter(
        &mut reg,
        "vipd_send_faults",
        "Times an instance went FAULT because its adverts could not be sent",
    );
    let peer_takeovers = counter(
        &mut reg,
        "vipd_peer_takeovers",
        "@vipd bfd_takeover: take-overs on the BFD session to the master going Down",
    );
    let peer_downs_ignored = counter(
        &mut reg,
        "vipd_peer_downs_ignored",
        "@vipd bfd_takeover: BFD session Downs that did not lead to a take-over",
    );
    let io_fault = gauge(
        &mut reg,
        "vipd_instance_io_fault",
        "1 while the instance is FAULT because its adverts cannot be sent or its VRRP socket cannot be reopened",
    );
    let socket_drops = counter(
        &mut reg,
        "vipd_socket_dropped",
        "VRRP packets dropped before reaching an instance, by reason",
    );
    for i in &snap.instances {
        let l = |extra: &[(&str, &str)]| -> Labels {
            let mut v = vec![
                ("instance".to_string(), i.name.clone()),
                ("interface".to_string(), i.interface.clone()),
                ("vrid".to_string(), i.vrid.to_string()),
            ];
            v.extend(
                extra
                    .iter()
                    .map(|(k, val)| (k.to_string(), val.to_string())),
            );
            v
        };
        for s in STATES {
            state
                .get_or_create(&l(&[("state", s)]))
                .set(i64::from(i.state == s));
        }
        priority.get_or_create(&l(&[])).set(i64::from(i.priority));
        effective
            .get_or_create(&l(&[]))
            .set(i64::from(i.effective_priority));
        interval
            .get_or_create(&l(&[]))
            .set(i.advert_interval_ms / 1000.0);
        sent.get_or_create(&l(&[])).inc_by(i.adverts_sent);
        received.get_or_create(&l(&[])).inc_by(i.adverts_received);
        transitions.get_or_create(&l(&[])).inc_by(i.transitions);
        became.get_or_create(&l(&[])).inc_by(i.became_master);
        zero_sent
            .get_or_create(&l(&[]))
            .inc_by(i.priority_zero_sent);
        zero_recv
            .get_or_create(&l(&[]))
            .inc_by(i.priority_zero_received);
        announced
            .get_or_create(&l(&[]))
            .inc_by(i.announcements_sent);
        for (reason, n) in &i.drops {
            drops.get_or_create(&l(&[("reason", reason)])).inc_by(*n);
        }
        send_faults.get_or_create(&l(&[])).inc_by(i.send_faults);
        peer_takeovers
            .get_or_create(&l(&[]))
            .inc_by(i.peer_takeovers);
        peer_downs_ignored
            .get_or_create(&l(&[]))
            .inc_by(i.peer_downs_ignored);
        io_fault
            .get_or_create(&l(&[]))
            .set(i64::from(i.io_fault.is_some()));
    }
    let vs_active = gauge(
        &mut reg,
        "vipd_virtual_server_active",
        "1 while the virtual server is programmed here (its VIP's instance is MASTER)",
    );
    let vs_quorum = gauge(
        &mut reg,
        "vipd_virtual_server_quorum_up",
        "1 while the live real servers' weights reach the virtual server's quorum",
    );
    let rs_up = gauge(
        &mut reg,
        "vipd_real_server_up",
        "1 while the real server passes its health checks",
    );
    let rs_packets = counter(
        &mut reg,
        "vipd_real_server_packets",
        "Client-to-server packets the kernel forwarded to the real server (read every snmp_rs_stats_update_interval)",
    );
    let rs_bytes = counter(
        &mut reg,
        "vipd_real_server_bytes",
        "Client-to-server bytes the kernel forwarded to the real server (read every snmp_rs_stats_update_interval)",
    );
    let rs_conns = counter(
        &mut reg,
        "vipd_real_server_connections",
        "Connections scheduled to the real server (IPVS only; 0 on nftables)",
    );
    for vs in &snap.virtual_servers {
        let l = vec![("virtual_server".to_string(), vs.name.clone())];
        vs_active.get_or_create(&l).set(i64::from(vs.active));
        vs_quorum.get_or_create(&l).set(i64::from(vs.quorum_up));
        for rs in &vs.real_servers {
            let mut l = l.clone();
            l.push((
                "real_server".to_string(),
                format!("{}:{}", rs.addr, rs.port),
            ));
            rs_up.get_or_create(&l).set(i64::from(rs.up));
            rs_packets.get_or_create(&l).inc_by(rs.stats.in_packets);
            rs_bytes.get_or_create(&l).inc_by(rs.stats.in_bytes);
            rs_conns.get_or_create(&l).inc_by(rs.stats.conns);
        }
    }
    for (reason, n) in &snap.socket_drops {
        socket_drops
            .get_or_create(&vec![("reason".to_string(), reason.clone())])
            .inc_by(*n);
    }
    let io_errors = counter(
        &mut reg,
        "vipd_io_errors",
        "Socket errors of the protocol thread, by operation (receive, advert_send, announce_send, vrrp_socket_reopen) and errno",
    );
    for e in &snap.io_errors {
        io_errors
            .get_or_create(&vec![
                ("op".to_string(), e.op.clone()),
                ("reason".to_string(), e.reason.clone()),
            ])
            .inc_by(e.count);
    }
    bfd_metrics(&mut reg, snap);
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String cannot fail");
    out
}

const BFD_STATES: [&str; 4] = ["AdminDown", "Down", "Init", "Up"];

/// One series per `bfd_instance` session (label `bfd`).
fn bfd_metrics(reg: &mut Registry, snap: &Snapshot) {
    let gauge = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Gauge>::default();
        reg.register(name, help, f.clone());
        f
    };
    let counter = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Counter>::default();
        reg.register(name, help, f.clone());
        f
    };
    let seconds = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        reg.register(name, help, f.clone());
        f
    };
    let state = gauge(
        reg,
        "vipd_bfd_session_state",
        "1 for the state the BFD session is in, 0 for the others",
    );
    let diag = gauge(
        reg,
        "vipd_bfd_session_diagnostic",
        "1 for the session's current local diagnostic",
    );
    let tx = seconds(
        reg,
        "vipd_bfd_session_tx_interval_seconds",
        "Negotiated transmit interval (before jitter)",
    );
    let rx = seconds(
        reg,
        "vipd_bfd_session_rx_interval_seconds",
        "Negotiated receive interval",
    );
    let detect = seconds(
        reg,
        "vipd_bfd_session_detection_time_seconds",
        "Detection time (absent before the peer is heard)",
    );
    let sent = counter(reg, "vipd_bfd_packets_sent", "BFD control packets sent");
    let received = counter(
        reg,
        "vipd_bfd_packets_received",
        "BFD control packets accepted",
    );
    let ups = counter(reg, "vipd_bfd_session_ups", "Transitions into Up");
    let downs = counter(
        reg,
        "vipd_bfd_session_downs",
        "Transitions out of Up (flaps)",
    );
    let drops = counter(
        reg,
        "vipd_bfd_packets_dropped",
        "Received BFD packets dropped, by reason",
    );
    let send_errors = counter(reg, "vipd_bfd_send_errors", "Failed BFD sends");
    let unmatched = Counter::<u64>::default();
    reg.register(
        "vipd_bfd_unmatched_packets",
        "Received BFD packets that matched no session",
        unmatched.clone(),
    );
    for b in &snap.bfd {
        let l = |extra: &[(&str, &str)]| -> Labels {
            let mut v = vec![
                ("bfd".to_string(), b.name.clone()),
                ("neighbor".to_string(), b.neighbor.clone()),
            ];
            v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
            v
        };
        for s in BFD_STATES {
            state
                .get_or_create(&l(&[("state", s)]))
                .set(i64::from(b.state == s));
        }
        diag.get_or_create(&l(&[("diagnostic", &b.diagnostic)]))
            .set(1);
        tx.get_or_create(&l(&[])).set(b.tx_interval_us as f64 / 1e6);
        rx.get_or_create(&l(&[])).set(b.rx_interval_us as f64 / 1e6);
        if let Some(d) = b.detection_time_us {
            detect.get_or_create(&l(&[])).set(d as f64 / 1e6);
        }
        sent.get_or_create(&l(&[])).inc_by(b.packets_sent);
        received.get_or_create(&l(&[])).inc_by(b.packets_received);
        ups.get_or_create(&l(&[])).inc_by(b.ups);
        downs.get_or_create(&l(&[])).inc_by(b.downs);
        send_errors.get_or_create(&l(&[])).inc_by(b.send_errors);
        for (reason, n) in &b.drops {
            drops.get_or_create(&l(&[("reason", reason)])).inc_by(*n);
        }
    }
    unmatched.inc_by(snap.bfd_unmatched);
}

/// Serve `GET /metrics` on `addr` from background threads, with the default [`Limits`].
pub fn serve(addr: SocketAddr, status: Arc<Mutex<Snapshot>>) -> Result<SocketAddr> {
    serve_with(addr, status, Limits::default())
}

/// [`serve`] with explicit limits.
pub fn serve_with(
    addr: SocketAddr,
    status: Arc<Mutex<Snapshot>>,
    limits: Limits,
) -> Result<SocketAddr> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("binding metrics listener {addr}"))?;
    let local = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("vipd-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if active.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
                    active.fetch_sub(1, Ordering::AcqRel);
                    let _ = busy(conn, limits.timeout);
                    continue;
                }
                let (status, active2) = (status.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("vipd-metrics-conn".into())
                    .spawn(move || {
                        let _ = answer(conn, &status, limits.timeout);
                        active2.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(local)
}

/// Over the connection cap: say so and close. The request is not waited for; what
/// arrives within a moment is read and discarded so that closing does not reset the
/// connection before the client has read the answer.
fn busy(mut conn: TcpStream, timeout: Duration) -> std::io::Result<()> {
    conn.set_write_timeout(Some(timeout))?;
    let body = "too many metrics connections\n";
    write!(
        conn,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let deadline = Instant::now() + Duration::from_millis(100).min(timeout);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        conn.set_read_timeout(Some(left))?;
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

fn answer(mut conn: TcpStream, status: &Mutex<Snapshot>, timeout: Duration) -> std::io::Result<()> {
    // One deadline for the whole request, not per read: a client trickling a byte at
    // a time cannot hold the connection longer.
    let deadline = Instant::now() + timeout;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        conn.set_read_timeout(Some(left))?;
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&req);
    let first = line.lines().next().unwrap_or("");
    let (code, ctype, body) = if first.starts_with("GET /metrics ") || first.starts_with("GET / ") {
        let snap = status.lock().map(|s| s.clone()).unwrap_or_default();
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(&snap),
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            "only GET /metrics here\n".to_string(),
        )
    };
    let left = deadline.saturating_duration_since(Instant::now());
    conn.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    write!(
        conn,
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::InstanceStatus;

    fn snap() -> Snapshot {
        Snapshot {
            instances: vec![InstanceStatus {
                name: "VI_1".into(),
                interface: "eth0".into(),
                vrid: 51,
                version: 3,
                state: "MASTER".into(),
                priority: 150,
                effective_priority: 150,
                advert_interval_ms: 10.0,
                master: Some("192.0.2.11".into()),
                vips: vec!["192.0.2.100/24".into()],
                last_transition: None,
                adverts_sent: 42,
                adverts_received: 7,
                priority_zero_sent: 0,
                priority_zero_received: 1,
                became_master: 2,
                transitions: 3,
                announcements_sent: 10,
                drops: vec![("bad_ttl".into(), 5)],
                io_fault: Some("advert sends failing: EPERM".into()),
                send_faults: 1,
                peer_takeovers: 2,
                peer_downs_ignored: 3,
                detail: Default::default(),
            }],
            socket_drops: vec![("unknown_vrid".into(), 9)],
            io_errors: vec![crate::status::IoErrorCount {
                op: "announce_send".into(),
                reason: "ENETDOWN".into(),
                count: 4,
            }],
            tracking: Default::default(),
            bfd: vec![crate::status::BfdSessionStatus {
                name: "to_core".into(),
                neighbor: "192.0.2.1".into(),
                state: "Up".into(),
                diagnostic: "no_diagnostic".into(),
                tx_interval_us: 50_000,
                rx_interval_us: 50_000,
                detection_time_us: Some(150_000),
                downs: 2,
                drops: vec![("bad_ttl".into(), 3)],
                ..Default::default()
            }],
            bfd_unmatched: 4,
            sync_groups: Vec::new(),
            static_addresses: Vec::new(),
            static_routes: Vec::new(),
            static_rules: Vec::new(),
            track_scripts: Vec::new(),
            track_files: Vec::new(),
            track_processes: Vec::new(),
            track_bfds: Vec::new(),
            vs_groups: Default::default(),
            virtual_servers: vec![crate::status::VirtualServerStatus {
                name: "virtual_server 192.0.2.100 80".into(),
                active: true,
                quorum_up: false,
                backend: "nftables".into(),
                service: Default::default(),
                real_servers: vec![crate::status::RealServerStatus {
                    addr: std::net::IpAddr::from([192, 0, 2, 11]),
                    port: 80,
                    up: false,
                    reason: "connect: connection refused".into(),
                    snmp_name: None,
                    stats: crate::status::TrafficStats {
                        in_packets: 12,
                        in_bytes: 3400,
                        ..Default::default()
                    },
                    weight: 1,
                    failed_checks: 1,
                    settings: Default::default(),
                }],
                stats: Default::default(),
            }],
        }
    }

    #[test]
    fn renders_prometheus_text() {
        let text = render(&snap());
        for line in [
            "vipd_instance_state{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\",state=\"MASTER\"} 1",
            "vipd_instance_state{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\",state=\"BACKUP\"} 0",
            "vipd_adverts_sent_total{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\"} 42",
            "vipd_adverts_dropped_total{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\",reason=\"bad_ttl\"} 5",
            "vipd_socket_dropped_total{reason=\"unknown_vrid\"} 9",
            "vipd_io_errors_total{op=\"announce_send\",reason=\"ENETDOWN\"} 4",
            "vipd_send_faults_total{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\"} 1",
            "vipd_instance_io_fault{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\"} 1",
            "vipd_peer_takeovers_total{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\"} 2",
            "vipd_peer_downs_ignored_total{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\"} 3",
            "vipd_instance_advert_interval_seconds{instance=\"VI_1\",interface=\"eth0\",vrid=\"51\"} 0.01",
            "# TYPE vipd_transitions counter",
            "vipd_virtual_server_active{virtual_server=\"virtual_server 192.0.2.100 80\"} 1",
            "vipd_virtual_server_quorum_up{virtual_server=\"virtual_server 192.0.2.100 80\"} 0",
            "vipd_real_server_up{virtual_server=\"virtual_server 192.0.2.100 80\",real_server=\"192.0.2.11:80\"} 0",
            "vipd_real_server_packets_total{virtual_server=\"virtual_server 192.0.2.100 80\",real_server=\"192.0.2.11:80\"} 12",
            "vipd_real_server_bytes_total{virtual_server=\"virtual_server 192.0.2.100 80\",real_server=\"192.0.2.11:80\"} 3400",
            "vipd_real_server_connections_total{virtual_server=\"virtual_server 192.0.2.100 80\",real_server=\"192.0.2.11:80\"} 0",
            "vipd_bfd_session_state{bfd=\"to_core\",neighbor=\"192.0.2.1\",state=\"Up\"} 1",
            "vipd_bfd_session_state{bfd=\"to_core\",neighbor=\"192.0.2.1\",state=\"Down\"} 0",
            "vipd_bfd_session_detection_time_seconds{bfd=\"to_core\",neighbor=\"192.0.2.1\"} 0.15",
            "vipd_bfd_session_downs_total{bfd=\"to_core\",neighbor=\"192.0.2.1\"} 2",
            "vipd_bfd_packets_dropped_total{bfd=\"to_core\",neighbor=\"192.0.2.1\",reason=\"bad_ttl\"} 3",
            "vipd_bfd_unmatched_packets_total 4",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn serves_over_http() {
        let status = Arc::new(Mutex::new(snap()));
        let addr = serve("127.0.0.1:0".parse().unwrap(), status).unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("vipd_became_master_total"));
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    }

    fn scrape(addr: SocketAddr) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        resp
    }

    #[test]
    fn a_slow_client_does_not_stall_other_scrapers() {
        let status = Arc::new(Mutex::new(snap()));
        let limits = Limits {
            max_connections: 4,
            timeout: Duration::from_secs(3),
        };
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), status, limits).unwrap();
        // Two clients that connect and say nothing, one that trickles.
        let _idle1 = TcpStream::connect(addr).unwrap();
        let _idle2 = TcpStream::connect(addr).unwrap();
        let mut trickle = TcpStream::connect(addr).unwrap();
        trickle.write_all(b"GET /met").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // A scraper is answered at once, not after the others' timeouts.
        let t = Instant::now();
        let resp = scrape(addr);
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "scrape took {:?} behind slow clients",
            t.elapsed()
        );
        // The silent client is cut off at the deadline (not kept forever).
        let t = Instant::now();
        let mut rest = Vec::new();
        let mut idle = _idle1;
        idle.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = idle.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "idle client held {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn connections_beyond_the_cap_get_503_and_the_slots_come_back() {
        let status = Arc::new(Mutex::new(snap()));
        let limits = Limits {
            max_connections: 2,
            timeout: Duration::from_millis(500),
        };
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), status, limits).unwrap();
        let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let resp = scrape(addr);
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
        // Once the idle connections time out, their slots are free again.
        std::thread::sleep(Duration::from_millis(800));
        let resp = scrape(addr);
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        drop(idle);
    }
}

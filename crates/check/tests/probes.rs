//! Each probe against real servers inside a network namespace of its own.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use vipd_check::probe::dns::Dns;
use vipd_check::probe::file::FileCheck;
use vipd_check::probe::http::{insecure_client_config, Http, HttpVersion, StatusCodes, UrlCheck};
use vipd_check::probe::misc::Misc;
use vipd_check::probe::smtp::Smtp;
use vipd_check::probe::udp::{parse_hex, Udp};
use vipd_check::probe::ProbeKind;

fn url(path: &str, host: &str) -> UrlCheck {
    UrlCheck {
        path: path.into(),
        host: host.into(),
        status: StatusCodes::default(),
        digest: None,
        regex: None,
        regex_no_match: false,
        regex_limits: Default::default(),
        tls_compliant: false,
    }
}

fn http(urls: Vec<UrlCheck>) -> Http {
    Http::new(urls, HttpVersion::V10)
}

#[test]
fn http_get() {
    in_netns("http_get", || async {
        let listener = TcpListener::bind("127.0.0.1:8080").await.unwrap();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        tokio::spawn(serve_http(listener, routes(), seen_tx));
        let t = "127.0.0.1:8080";
        let host = "127.0.0.1:8080";

        // 200 with the default status range; what the server saw.
        let out = probe(ProbeKind::Http(http(vec![url("/ok", host)])), t, 1000)
            .run()
            .await;
        assert!(out.ok, "{out:?}");
        let s = seen.recv().await.unwrap();
        assert!(s.head.starts_with("GET /ok HTTP/1.0\r\n"), "{}", s.head);
        let head = s.head.to_ascii_lowercase();
        assert!(head.contains("\r\nhost: 127.0.0.1:8080\r\n"), "{head}");
        assert!(
            head.contains("\r\nuser-agent: keepaliveclient\r\n"),
            "{head}"
        );

        // Wrong status.
        let out = probe(ProbeKind::Http(http(vec![url("/503", host)])), t, 1000)
            .run()
            .await;
        assert!(!out.ok);
        assert_eq!(out.reason, "HTTP status 503 not in 200-299");
        seen.recv().await.unwrap();

        // status_code lists and ranges.
        let mut u = url("/moved", host);
        u.status = StatusCodes::parse("200-299 301").unwrap();
        assert!(
            probe(ProbeKind::Http(http(vec![u])), t, 1000)
                .run()
                .await
                .ok
        );
        let mut u = url("/ok", host);
        u.status = StatusCodes::parse("201 300-399").unwrap();
        let out = probe(ProbeKind::Http(http(vec![u])), t, 1000).run().await;
        assert_eq!(out.reason, "HTTP status 200 not in 201 300-399");

        // Digest: MD5 of "hello world".
        let mut u = url("/ok", host);
        u.digest = Some("5eb63bbbe01eeed093cb22bb8f5acdc3".into());
        assert!(
            probe(ProbeKind::Http(http(vec![u])), t, 1000)
                .run()
                .await
                .ok
        );
        let mut u = url("/ok", host);
        u.digest = Some("00000000000000000000000000000000".into());
        let out = probe(ProbeKind::Http(http(vec![u])), t, 1000).run().await;
        assert!(!out.ok);
        assert!(
            out.reason.starts_with("digest mismatch: got 5eb63bbb"),
            "{}",
            out.reason
        );

        // Regex on the body.
        let mut u = url("/ok", host);
        u.regex = Some(regex::bytes::Regex::new("wor.d").unwrap());
        assert!(
            probe(ProbeKind::Http(http(vec![u])), t, 1000)
                .run()
                .await
                .ok
        );
        let mut u = url("/ok", host);
        u.regex = Some(regex::bytes::Regex::new("^world").unwrap());
        let out = probe(ProbeKind::Http(http(vec![u])), t, 1000).run().await;
        assert_eq!(out.reason, "regex `^world` did not match");
        // regex_no_match turns it round.
        let mut u = url("/ok", host);
        u.regex = Some(regex::bytes::Regex::new("^world").unwrap());
        u.regex_no_match = true;
        assert!(
            probe(ProbeKind::Http(http(vec![u])), t, 1000)
                .run()
                .await
                .ok
        );
        let mut u = url("/ok", host);
        u.regex = Some(regex::bytes::Regex::new("wor.d").unwrap());
        u.regex_no_match = true;
        let out = probe(ProbeKind::Http(http(vec![u])), t, 1000).run().await;
        assert_eq!(out.reason, "regex `wor.d` matched (regex_no_match)");
        // regex_min_offset past the match's start: no match.
        let mut u = url("/ok", host);
        u.regex = Some(regex::bytes::Regex::new("wor.d").unwrap());
        u.regex_limits.min_offset = 7;
        let out = probe(ProbeKind::Http(http(vec![u])), t, 1000).run().await;
        assert_eq!(out.reason, "regex `wor.d` did not match");

        // A body over the limit fails when it has to be read, not otherwise.
        let mut u = url("/big", host);
        u.regex = Some(regex::bytes::Regex::new("x").unwrap());
        let out = probe(ProbeKind::Http(http(vec![u])), t, 3000).run().await;
        assert!(out.reason.contains("larger than 4 MiB"), "{out:?}");
        assert!(
            probe(ProbeKind::Http(http(vec![url("/big", host)])), t, 3000)
                .run()
                .await
                .ok
        );

        // virtualhost → Host header; HTTP/1.1 with Connection: close; several URLs.
        while seen.try_recv().is_ok() {}
        let h = Http::new(
            vec![url("/ok", "www.example"), url("/503", "www.example")],
            HttpVersion::V11,
        );
        let out = probe(ProbeKind::Http(h), t, 1000).run().await;
        assert_eq!(out.reason, "GET /503: HTTP status 503 not in 200-299");
        let s = seen.recv().await.unwrap();
        assert!(s.head.starts_with("GET /ok HTTP/1.1\r\n"), "{}", s.head);
        let head = s.head.to_ascii_lowercase();
        assert!(head.contains("\r\nhost: www.example\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        let s = seen.recv().await.unwrap();
        assert!(s.head.starts_with("GET /503 HTTP/1.1\r\n"));
        let h = Http::new(vec![url("/ok", host)], HttpVersion::V10Close);
        assert!(probe(ProbeKind::Http(h), t, 1000).run().await.ok);
        let s = seen.recv().await.unwrap();
        assert!(s.head.starts_with("GET /ok HTTP/1.0\r\n"));
        assert!(s
            .head
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"));

        // bindto / bind_port: the server sees that source.
        let mut p = probe(ProbeKind::Http(http(vec![url("/ok", host)])), t, 1000);
        p.bind_addr = Some("127.0.0.2".parse().unwrap());
        p.bind_port = Some(40001);
        assert!(p.run().await.ok);
        assert_eq!(
            seen.recv().await.unwrap().peer,
            "127.0.0.2:40001".parse().unwrap()
        );

        // Nothing listening.
        let out = probe(
            ProbeKind::Http(http(vec![url("/ok", host)])),
            "127.0.0.1:8081",
            1000,
        )
        .run()
        .await;
        assert_eq!(out.reason, "connect: connection refused");

        // A server that accepts and never answers: failure after connect_timeout.
        let hung = TcpListener::bind("127.0.0.1:8082").await.unwrap();
        tokio::spawn(async move {
            let mut keep = Vec::new();
            while let Ok((s, _)) = hung.accept().await {
                keep.push(s);
            }
        });
        let start = Instant::now();
        let out = probe(
            ProbeKind::Http(http(vec![url("/ok", host)])),
            "127.0.0.1:8082",
            300,
        )
        .run()
        .await;
        let took = start.elapsed();
        assert_eq!(out.reason, "response: timed out");
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(1000),
            "{took:?}"
        );
    });
}

/// What a raw test server saw after writing its response to one connection (when it
/// kept the connection open): the end of the stream (a FIN) or an error (a reset).
#[derive(Debug, PartialEq)]
enum After {
    Eof,
    Reset,
}

/// A server on `port` that reads the request head and writes `pieces` (5 ms apart);
/// then closes, or (`close` false) waits for the client and reports how it went.
async fn raw_server(
    port: u16,
    pieces: Vec<Vec<u8>>,
    close: bool,
) -> mpsc::UnboundedReceiver<After> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (pieces, tx) = (pieces.clone(), tx.clone());
            tokio::spawn(async move {
                if read_head(&mut s).await.is_none() {
                    return;
                }
                for (i, p) in pieces.iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if s.write_all(p).await.is_err() {
                        return;
                    }
                }
                if !close {
                    let mut b = [0u8; 64];
                    let _ = tx.send(match s.read(&mut b).await {
                        Ok(0) => After::Eof,
                        _ => After::Reset,
                    });
                }
            });
        }
    });
    rx
}

/// TCP sockets of this thread's network namespace in TIME_WAIT on `port` (either end).
fn time_waits(port: u16) -> usize {
    let port = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/thread-self/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.contains(&port))
        .filter(|l| l.split_whitespace().nth(3) == Some("06"))
        .count()
}

/// The HTTP/1.x codec against servers that frame their responses in every way, and
/// ones that misbehave.
#[test]
fn http_wire() {
    in_netns("http_wire", || async {
        const HELLO_MD5: &str = "5eb63bbbe01eeed093cb22bb8f5acdc3";
        let get = |port: u16, digest: bool, timeout_ms: u64| {
            let mut u = url("/x", "h");
            if digest {
                u.digest = Some(HELLO_MD5.into());
            }
            probe(
                ProbeKind::Http(http(vec![u])),
                &format!("127.0.0.1:{port}"),
                timeout_ms,
            )
        };
        let b = |s: &str| s.as_bytes().to_vec();

        // A server that closes after its response: the probe aborts the connection
        // (RST), so the server keeps no TIME_WAIT socket per check.
        raw_server(
            8100,
            vec![b(
                "HTTP/1.0 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            )],
            true,
        )
        .await;
        for _ in 0..3 {
            let out = get(8100, false, 1000).run().await;
            assert!(out.ok, "{out:?}");
            let out = get(8100, true, 1000).run().await;
            assert!(out.ok, "{out:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(time_waits(8100), 0);

        // A server that keeps the connection open after its response: the probe does
        // not wait for it (no digest: only the head is read), and closes with a FIN.
        let mut after = raw_server(
            8101,
            vec![b("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
            false,
        )
        .await;
        let t0 = Instant::now();
        let out = get(8101, false, 2000).run().await;
        assert!(
            out.ok && t0.elapsed() < Duration::from_millis(500),
            "{out:?}"
        );
        assert_eq!(after.recv().await, Some(After::Eof));

        // Chunked (HTTP/1.1), in pieces that split sizes, data and line ends.
        raw_server(
            8102,
            vec![
                b("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                b("5\r\nhel"),
                b("lo\r"),
                b("\n6;x=y\r\n world\r\n0"),
                b("\r\n\r\n"),
            ],
            false,
        )
        .await;
        let out = get(8102, true, 1000).run().await;
        assert!(out.ok, "{out:?}");

        // Bogus chunk sizes.
        raw_server(
            8103,
            vec![b(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            )],
            false,
        )
        .await;
        let out = get(8103, true, 1000).run().await;
        assert_eq!(out.reason, "body: bad chunk size");
        // ... that do not matter when the body is not needed.
        assert!(get(8103, false, 1000).run().await.ok);

        // Delimited by the end of the connection (no Content-Length), in pieces.
        raw_server(
            8104,
            vec![b("HTTP/1.0 200 OK\r\n\r\nhello"), b(" world")],
            true,
        )
        .await;
        let out = get(8104, true, 1000).run().await;
        assert!(out.ok, "{out:?}");

        // Interim responses are skipped.
        raw_server(
            8105,
            vec![
                b("HTTP/1.1 100 Continue\r\n\r\n"),
                b("HTTP/1.1 204 No Content\r\n\r\n"),
            ],
            true,
        )
        .await;
        let out = get(8105, false, 1000).run().await;
        assert!(out.ok, "{out:?}");

        // Not HTTP: fails as soon as the first bytes say so, not at the timeout.
        raw_server(8106, vec![b("SSH-2.0-OpenSSH_9.6\r\n")], false).await;
        let t0 = Instant::now();
        let out = get(8106, false, 2000).run().await;
        assert_eq!(
            out.reason,
            "response: malformed status line `SSH-2.0-OpenSSH_9.6`"
        );
        assert!(t0.elapsed() < Duration::from_millis(500));

        // A truncated status line, then the connection closes.
        raw_server(8107, vec![b("HTTP/1.1 2")], true).await;
        let out = get(8107, false, 1000).run().await;
        assert_eq!(
            out.reason,
            "response: connection closed in the response head after 10 bytes"
        );

        // No response at all.
        raw_server(8108, vec![], true).await;
        let out = get(8108, false, 1000).run().await;
        assert_eq!(out.reason, "response: connection closed without a response");

        // A head that never ends.
        let mut huge = b("HTTP/1.1 200 OK\r\nX-Big: ");
        huge.extend(std::iter::repeat_n(b'a', 70_000));
        raw_server(8109, vec![huge], false).await;
        let out = get(8109, false, 2000).run().await;
        assert_eq!(out.reason, "response: head larger than 64 KiB");

        // Bad framing headers fail even without a body to read (as with hyper).
        raw_server(
            8110,
            vec![b("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n")],
            true,
        )
        .await;
        let out = get(8110, false, 1000).run().await;
        assert_eq!(out.reason, "response: invalid Content-Length");

        // A body shorter than its Content-Length: closed, or never completed.
        raw_server(
            8111,
            vec![b("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")],
            true,
        )
        .await;
        let out = get(8111, true, 1000).run().await;
        assert_eq!(out.reason, "body: connection closed after 5 of 100 bytes");
        raw_server(
            8112,
            vec![b("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")],
            false,
        )
        .await;
        let t0 = Instant::now();
        let out = get(8112, true, 300).run().await;
        assert_eq!(out.reason, "body: timed out");
        assert!(t0.elapsed() >= Duration::from_millis(290));
        // A Content-Length over the limit is refused without reading.
        raw_server(
            8113,
            vec![b("HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n")],
            false,
        )
        .await;
        let out = get(8113, true, 1000).run().await;
        assert_eq!(out.reason, "body: larger than 4 MiB");

        // The handshake not done within connect() (its first SYN dropped, so it takes
        // a retransmission): the request waits for the connection. Needs nft.
        let dropped = std::process::Command::new("nft")
            .arg("add table ip t; add chain ip t o { type filter hook output priority 0; }; add rule ip t o tcp dport 8114 tcp flags syn quota until 100 bytes drop; add rule ip t o tcp dport 8115 tcp flags syn quota until 100 bytes drop; add rule ip t o tcp dport 8116 tcp flags syn quota until 100 bytes drop")
            .status()
            .is_ok_and(|s| s.success());
        if dropped {
            raw_server(
                8114,
                vec![b(
                    "HTTP/1.0 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
                )],
                true,
            )
            .await;
            let t0 = Instant::now();
            let out = get(8114, true, 3000).run().await;
            assert!(out.ok, "{out:?}");
            assert!(
                t0.elapsed() >= Duration::from_millis(900),
                "{:?}",
                t0.elapsed()
            );
            let t0 = Instant::now();
            let out = get(8115, false, 3000).run().await;
            assert_eq!(out.reason, "connect: connection refused");
            assert!(
                t0.elapsed() >= Duration::from_millis(900),
                "{:?}",
                t0.elapsed()
            );
            // TCP_CHECK the same way.
            let l = TcpListener::bind("127.0.0.1:8116").await.unwrap();
            let t0 = Instant::now();
            let out = probe(ProbeKind::Tcp, "127.0.0.1:8116", 3000).run().await;
            assert!(out.ok, "{out:?}");
            assert!(
                t0.elapsed() >= Duration::from_millis(900),
                "{:?}",
                t0.elapsed()
            );
            // The server got the connection, and then its end (the FIN carried the
            // handshake's last ACK).
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 8];
            use tokio::io::AsyncReadExt;
            assert_eq!(s.read(&mut b).await.unwrap(), 0);
        } else {
            eprintln!("http_wire: nft unavailable, slow-handshake case skipped");
        }
    });
}

/// Serves TLS on `listener` with the standard routes; `note` turns each answered
/// connection (its session and request head) into what the returned channel reports.
fn serve_tls<T: Send + 'static>(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    note: fn(&rustls::ServerConnection, String) -> T,
) -> (mpsc::UnboundedReceiver<T>, mpsc::UnboundedReceiver<bool>) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    // Per connection: did the client end its session with close_notify?
    let (closed_tx, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (acceptor, seen_tx, closed_tx) =
                (acceptor.clone(), seen_tx.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let Some(head) = read_head(&mut tls).await else {
                    return;
                };
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let _ = seen_tx.send(note(tls.get_ref().1, head));
                let (code, body) = routes()(&path);
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = tls.write_all(&response(code, &body)).await;
                let _ = tls.shutdown().await;
                // rustls reads a clean end (0) only after close_notify; a bare TCP
                // close is an unexpected EOF.
                let mut rest = [0u8; 64];
                let clean = loop {
                    match tls.read(&mut rest).await {
                        Ok(0) => break true,
                        Ok(_) => continue,
                        Err(_) => break false,
                    }
                };
                let _ = closed_tx.send(clean);
            });
        }
    });
    (seen, closed)
}

#[test]
fn ssl_get() {
    in_netns("ssl_get", || async {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:8443").await.unwrap();
        // (SNI, request head) per connection.
        let (mut seen, mut closed) = serve_tls(listener, acceptor, |conn, head| {
            (conn.server_name().map(str::to_string), head)
        });
        let ssl = |u: UrlCheck, sni: bool| {
            let h = http(vec![u]).with_tls(insecure_client_config(), sni);
            probe(ProbeKind::Http(h), "127.0.0.1:8443", 2000)
        };
        // The self-signed certificate is accepted; no SNI for an address.
        let mut u = url("/ok", "127.0.0.1:8443");
        u.digest = Some("5eb63bbbe01eeed093cb22bb8f5acdc3".into());
        let out = ssl(u, false).run().await;
        assert!(out.ok, "{out:?}");
        let (sni, head) = seen.recv().await.unwrap();
        assert_eq!(sni, None);
        assert!(head.starts_with("GET /ok HTTP/1.0\r\n"));
        // keepalived's default: the session is closed quietly (no close_notify) ...
        assert_eq!(closed.recv().await, Some(false));
        // ... and with `tls_compliant`, ended with close_notify.
        let mut u = url("/ok", "127.0.0.1:8443");
        u.tls_compliant = true;
        assert!(ssl(u, false).run().await.ok);
        seen.recv().await.unwrap();
        assert_eq!(closed.recv().await, Some(true));
        let out = ssl(url("/503", "127.0.0.1:8443"), false).run().await;
        assert_eq!(out.reason, "HTTP status 503 not in 200-299");
        seen.recv().await.unwrap();
        // enable_sni sends the virtual host.
        assert!(ssl(url("/ok", "www.example"), true).run().await.ok);
        let (sni, head) = seen.recv().await.unwrap();
        assert_eq!(sni.as_deref(), Some("www.example"));
        assert!(head.to_ascii_lowercase().contains("host: www.example\r\n"));
        // TLS to a plain-text server fails in the handshake.
        let plain = TcpListener::bind("127.0.0.1:8080").await.unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        tokio::spawn(serve_http(plain, routes(), tx));
        let h = http(vec![url("/ok", "x")]).with_tls(insecure_client_config(), false);
        let out = probe(ProbeKind::Http(h), "127.0.0.1:8080", 2000)
            .run()
            .await;
        assert!(out.reason.starts_with("TLS handshake"), "{out:?}");
    });
}

/// The `SSL { certificate key }` block, from the configuration text to the handshake:
/// a real server that demands a client certificate signed by its CA accepts vipd's
/// SSL_GET with the block, and refuses it without.
#[test]
fn ssl_get_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("vipd-check-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["checker.example".into()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    let (cert_file, key_file, both_file) = (
        dir.join("client.pem"),
        dir.join("client.key"),
        dir.join("both.pem"),
    );
    std::fs::write(&cert_file, client.pem()).unwrap();
    std::fs::write(&key_file, client_key.serialize_pem()).unwrap();
    std::fs::write(&both_file, client.pem() + &client_key.serialize_pem()).unwrap();
    let ca_der = ca.der().clone();

    // The SSL_GET probe vipd builds from `ssl_block` and one real server.
    let planned = |ssl_block: &str| {
        let text = format!(
            "{ssl_block}\nvirtual_server 127.0.0.1 8444 {{\n lb_kind NAT\n real_server 127.0.0.1 8444 {{\n  SSL_GET {{\n   url {{ path /ok }}\n   connect_timeout 2\n  }}\n }}\n}}\n"
        );
        let opts = vipd_config::LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        let cfg = vipd_config::load_str(
            &text,
            std::path::Path::new("/etc/keepalived/keepalived.conf"),
            &opts,
        )
        .unwrap_or_else(|d| panic!("{d:#?}"))
        .config;
        let plan = vipd_check::spec::build(
            &cfg.virtual_servers,
            &vipd_check::spec::Globals::from_config(&cfg),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        plan.checks.into_iter().next().unwrap().probe
    };
    let with_cert = planned(&format!(
        "SSL {{\n certificate {}\n key {}\n}}",
        cert_file.display(),
        key_file.display()
    ));
    let with_both = planned(&format!("SSL {{\n certificate {}\n}}", both_file.display()));
    let without = planned("");

    in_netns("ssl_get_client_certificate", move || async move {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(server.key_pair.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:8444").await.unwrap();
        // How many client certificates each answered connection presented.
        let (mut seen, _closed) = serve_tls(listener, acceptor, |conn, _| {
            conn.peer_certificates().map_or(0, |c| c.len())
        });
        let out = with_cert.run().await;
        assert!(out.ok, "{out:?}");
        assert_eq!(seen.recv().await, Some(1));
        let out = with_both.run().await;
        assert!(out.ok, "{out:?}");
        assert_eq!(seen.recv().await, Some(1));
        let out = without.run().await;
        assert!(
            !out.ok,
            "a server demanding a certificate answered without one"
        );
        assert!(seen.try_recv().is_err());
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_check() {
    in_netns("tcp_check", || async {
        let l = TcpListener::bind("127.0.0.1:9000").await.unwrap();
        assert!(probe(ProbeKind::Tcp, "127.0.0.1:9000", 500).run().await.ok);
        // The server got a whole connection, then its end (a FIN, not a reset).
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 8];
        use tokio::io::AsyncReadExt;
        assert_eq!(s.read(&mut b).await.unwrap(), 0);
        assert!(probe(ProbeKind::Tcp, "[::1]:9000", 500)
            .run()
            .await
            .reason
            .contains("refused"));
        let out = probe(ProbeKind::Tcp, "127.0.0.1:9001", 500).run().await;
        assert_eq!(out.reason, "connect: connection refused");
        drop(l);
        let out = probe(ProbeKind::Tcp, "127.0.0.1:9000", 500).run().await;
        assert!(!out.ok);
        // No route at all.
        let out = probe(ProbeKind::Tcp, "192.0.2.1:80", 500).run().await;
        assert_eq!(out.reason, "connect: network is unreachable");
        let l6 = TcpListener::bind("[::1]:9002").await.unwrap();
        assert!(probe(ProbeKind::Tcp, "[::1]:9002", 500).run().await.ok);
        drop(l6);
    });
}

fn udp(payload: Option<&str>, reply: Option<&str>, min: usize, max: usize) -> ProbeKind {
    ProbeKind::Udp(Udp {
        payload: payload.map(|p| parse_hex(p, false).unwrap().0.iter().map(|b| b.0).collect()),
        require_reply: reply.map(|r| parse_hex(r, true).unwrap()),
        min_reply_length: min,
        max_reply_length: max,
    })
}

#[test]
fn udp_check() {
    in_netns("udp_check", || async {
        // Replies "\x01\x02pong" to "ping" (hex 70696e67), and records what it got.
        let echo = UdpSocket::bind("127.0.0.1:7000").await.unwrap();
        let (got_tx, mut got) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            let mut b = [0u8; 1500];
            while let Ok((n, peer)) = echo.recv_from(&mut b).await {
                let _ = got_tx.send(b[..n].to_vec());
                let _ = echo.send_to(b"\x01\x02pong", peer).await;
            }
        });
        // A socket that reads and never answers.
        let silent = UdpSocket::bind("127.0.0.1:7001").await.unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 1500];
            while silent.recv_from(&mut b).await.is_ok() {}
        });
        let t = "127.0.0.1:7000";
        let out = probe(udp(Some("70696e67"), Some("0102"), 0, 255), t, 500)
            .run()
            .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(got.recv().await.unwrap(), b"ping");
        // X nibbles match anything; a mismatch fails.
        assert!(
            probe(udp(None, Some("0X 02 70"), 0, 255), t, 500)
                .run()
                .await
                .ok
        );
        assert_eq!(got.recv().await.unwrap().len(), 16, "random payload");
        let out = probe(udp(None, Some("0103"), 0, 255), t, 500).run().await;
        assert_eq!(out.reason, "reply does not match require_reply");
        // Length limits.
        let out = probe(udp(None, Some(""), 7, 255), t, 500).run().await;
        assert_eq!(out.reason, "reply of 6 bytes not within 7-255");
        let out = probe(udp(None, Some(""), 0, 5), t, 500).run().await;
        assert!(!out.ok);
        // Without require_reply any reply is fine.
        assert!(probe(udp(None, None, 0, 255), t, 500).run().await.ok);
        // Closed port: ICMP port unreachable, with or without require_reply.
        let out = probe(udp(None, None, 0, 255), "127.0.0.1:7002", 500)
            .run()
            .await;
        assert_eq!(out.reason, "ICMP port unreachable");
        let out = probe(udp(None, Some(""), 0, 255), "127.0.0.1:7002", 500)
            .run()
            .await;
        assert_eq!(out.reason, "ICMP port unreachable");
        // Silence: fine unless a reply is required.
        let start = Instant::now();
        let out = probe(udp(None, None, 0, 255), "127.0.0.1:7001", 300)
            .run()
            .await;
        assert!(out.ok, "{out:?}");
        assert!(start.elapsed() >= Duration::from_millis(290));
        let out = probe(udp(None, Some(""), 0, 255), "127.0.0.1:7001", 300)
            .run()
            .await;
        assert_eq!(out.reason, "no reply within 300ms");
    });
}

/// A DNS responder: answers each query with `answers` A records and `rcode`; with
/// `wrong_id_first`, sends a reply with another id first.
async fn dns_server(sock: UdpSocket, rcode: u8, answers: u16, wrong_id_first: bool) {
    let mut b = [0u8; 512];
    while let Ok((n, peer)) = sock.recv_from(&mut b).await {
        let q = &b[..n];
        let mut r = q.to_vec();
        r[2] |= 0x80;
        r[3] = (r[3] & 0xf0) | rcode;
        r[6..8].copy_from_slice(&answers.to_be_bytes());
        for _ in 0..answers {
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
        }
        if wrong_id_first {
            let mut w = r.clone();
            w[0] ^= 0xff;
            let _ = sock.send_to(&w, peer).await;
        }
        let _ = sock.send_to(&r, peer).await;
    }
}

#[test]
fn dns_check() {
    in_netns("dns_check", || async {
        let dns = |name: &str, qtype| {
            ProbeKind::Dns(Dns {
                name: name.into(),
                qtype,
            })
        };
        let s = UdpSocket::bind("127.0.0.1:53").await.unwrap();
        tokio::spawn(dns_server(s, 0, 1, false));
        let out = probe(dns("www.example.org", 1), "127.0.0.1:53", 500)
            .run()
            .await;
        assert!(out.ok, "{out:?}");
        assert!(probe(dns(".", 6), "127.0.0.1:53", 500).run().await.ok);
        let s = UdpSocket::bind("127.0.0.1:54").await.unwrap();
        tokio::spawn(dns_server(s, 3, 0, false));
        let out = probe(dns("nx.example.org", 1), "127.0.0.1:54", 500)
            .run()
            .await;
        assert_eq!(out.reason, "RCODE NXDOMAIN");
        let s = UdpSocket::bind("127.0.0.1:55").await.unwrap();
        tokio::spawn(dns_server(s, 0, 0, false));
        let out = probe(dns("empty.example.org", 28), "127.0.0.1:55", 500)
            .run()
            .await;
        assert_eq!(out.reason, "no answer");
        // A stray reply with another id is skipped.
        let s = UdpSocket::bind("127.0.0.1:56").await.unwrap();
        tokio::spawn(dns_server(s, 0, 2, true));
        assert!(
            probe(dns("a.example", 1), "127.0.0.1:56", 500)
                .run()
                .await
                .ok
        );
        // Nobody there.
        let out = probe(dns("a.example", 1), "127.0.0.1:57", 500).run().await;
        assert!(out.reason.contains("refused"), "{out:?}");
    });
}

/// An SMTP responder with a given banner and HELO reply; sends what it got.
async fn smtp_server(
    l: TcpListener,
    banner: &'static str,
    helo: &'static str,
    got: mpsc::UnboundedSender<String>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    while let Ok((s, _)) = l.accept().await {
        let got = got.clone();
        tokio::spawn(async move {
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(banner.as_bytes()).await.unwrap();
            let mut line = String::new();
            while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                let _ = got.send(line.clone());
                if line.starts_with("HELO") {
                    w.write_all(helo.as_bytes()).await.unwrap();
                } else if line.starts_with("QUIT") {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    return;
                }
                line.clear();
            }
        });
    }
}

#[test]
fn smtp_check() {
    in_netns("smtp_check", || async {
        let (tx, mut got) = mpsc::unbounded_channel();
        let smtp = || {
            ProbeKind::Smtp(Smtp {
                helo_name: "chk.example".into(),
            })
        };
        let l = TcpListener::bind("127.0.0.1:25").await.unwrap();
        tokio::spawn(smtp_server(
            l,
            "220-mx.example ESMTP\r\n220 ready\r\n",
            "250 hello\r\n",
            tx.clone(),
        ));
        let out = probe(smtp(), "127.0.0.1:25", 1000).run().await;
        assert!(out.ok, "{out:?}");
        assert_eq!(got.recv().await.unwrap(), "HELO chk.example\r\n");
        assert_eq!(got.recv().await.unwrap(), "QUIT\r\n");
        let l = TcpListener::bind("127.0.0.1:26").await.unwrap();
        tokio::spawn(smtp_server(l, "554 go away\r\n", "250 x\r\n", tx.clone()));
        let out = probe(smtp(), "127.0.0.1:26", 1000).run().await;
        assert_eq!(out.reason, "banner: expected 220, got `554 go away`");
        let l = TcpListener::bind("127.0.0.1:27").await.unwrap();
        tokio::spawn(smtp_server(l, "220 ok\r\n", "501 bad helo\r\n", tx.clone()));
        let out = probe(smtp(), "127.0.0.1:27", 1000).run().await;
        assert_eq!(out.reason, "HELO: expected 250, got `501 bad helo`");
        // A server that never sends a banner.
        let silent = TcpListener::bind("127.0.0.1:28").await.unwrap();
        tokio::spawn(async move {
            let mut keep = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                keep.push(s);
            }
        });
        let out = probe(smtp(), "127.0.0.1:28", 300).run().await;
        assert_eq!(out.reason, "banner: timed out");
    });
}

#[test]
fn ping_check() {
    let ns = in_netns("ping_check", || async {
        assert!(probe(ProbeKind::Ping, "127.0.0.1:0", 1000).run().await.ok);
        assert!(probe(ProbeKind::Ping, "[::1]:0", 1000).run().await.ok);
    });
    let Some(ns) = ns else { return };
    // An address on a link where nobody answers (a veth pair with a bare peer).
    ns.ip(["link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        .unwrap();
    ns.ip(["link", "set", "v0", "up"]).unwrap();
    ns.ip(["link", "set", "v1", "up"]).unwrap();
    ns.ip(["addr", "add", "192.0.2.1/24", "dev", "v0"]).unwrap();
    let h = ns
        .enter_thread(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // Our own address answers.
                assert!(probe(ProbeKind::Ping, "192.0.2.1:0", 1000).run().await.ok);
                let start = Instant::now();
                let out = probe(ProbeKind::Ping, "192.0.2.2:0", 300).run().await;
                assert_eq!(out.reason, "no echo reply within 300ms");
                assert!(start.elapsed() >= Duration::from_millis(290));
            })
        })
        .unwrap();
    if let Err(p) = h.join() {
        std::panic::resume_unwind(p);
    }
    // The same through unprivileged ping sockets (above: raw sockets, as a new
    // namespace's ping_group_range allows no group).
    ns.sysctl("net.ipv4.ping_group_range", "0 2147483647")
        .unwrap();
    let h = ns
        .enter_thread(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let s = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::DGRAM,
                    Some(socket2::Protocol::ICMPV4),
                );
                assert!(s.is_ok(), "ping sockets allowed now");
                assert!(probe(ProbeKind::Ping, "127.0.0.1:0", 1000).run().await.ok);
                assert!(probe(ProbeKind::Ping, "[::1]:0", 1000).run().await.ok);
                let out = probe(ProbeKind::Ping, "192.0.2.2:0", 300).run().await;
                assert_eq!(out.reason, "no echo reply within 300ms");
            })
        })
        .unwrap();
    if let Err(p) = h.join() {
        std::panic::resume_unwind(p);
    }
}

fn misc(cmd: &[&str], timeout_ms: u64, dynamic: bool) -> Misc {
    Misc {
        argv: cmd.iter().map(|s| s.to_string()).collect(),
        program: None,
        timeout: Duration::from_millis(timeout_ms),
        dynamic,
        run_as: None,
        rs_weight: 1,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn misc_check() {
    rt().block_on(async {
        assert!(misc(&["true"], 2000, false).run().await.ok);
        let out = misc(&["false"], 2000, false).run().await;
        assert_eq!(out.reason, "exit status 1");
        let out = misc(&["/bin/sh", "-c", "exit 7"], 2000, false).run().await;
        assert_eq!(out.reason, "exit status 7");
        // misc_dynamic: exit 12 → weight 10 (delta 9 from the configured 1).
        let out = misc(&["/bin/sh", "-c", "exit 12"], 2000, true).run().await;
        assert!(out.ok);
        assert_eq!(out.weight, Some(9));
        assert!(
            !misc(&["/bin/sh", "-c", "exit 1"], 2000, true)
                .run()
                .await
                .ok
        );
        let out = misc(&["/nonexistent/check"], 2000, false).run().await;
        assert!(out.reason.starts_with("/nonexistent/check: "), "{out:?}");
        let out = misc(&["/bin/sh", "-c", "kill -9 $$"], 2000, false)
            .run()
            .await;
        assert_eq!(out.reason, "killed by signal 9");
    });
}

#[test]
fn misc_timeout_kills_the_process_group() {
    let marker = std::env::temp_dir().join(format!("vipd-check-misc-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // The backgrounded subshell would outlive a kill of the shell alone.
    let script = format!("(sleep 0.6; touch {}) & wait", marker.display());
    let start = Instant::now();
    let out = rt().block_on(misc(&["/bin/sh", "-c", &script], 200, false).run());
    assert_eq!(out.reason, "timed out after 200ms");
    assert!(start.elapsed() < Duration::from_millis(600));
    std::thread::sleep(Duration::from_millis(900));
    assert!(!marker.exists(), "a grandchild outlived the timeout");
}

#[test]
fn misc_runs_as_user() {
    if !is_root() {
        eprintln!("skipping misc_runs_as_user: needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let mut m = misc(
        &[
            "/bin/sh",
            "-c",
            &format!("test \"$(id -u)\" = {}", nobody.uid),
        ],
        2000,
        false,
    );
    assert!(!rt().block_on(m.run()).ok, "runs as root by default");
    m.run_as = Some((nobody.uid.as_raw(), nobody.gid.as_raw()));
    let out = rt().block_on(m.run());
    assert!(out.ok, "{out:?}");
}

#[test]
fn file_check() {
    let path = std::env::temp_dir().join(format!("vipd-check-file-{}", std::process::id()));
    let p = |weight, dynamic| {
        probe(
            ProbeKind::File(FileCheck {
                name: "tf".into(),
                path: path.clone(),
                weight,
                dynamic,
                rs_weight: 5,
            }),
            "127.0.0.1:0",
            1000,
        )
    };
    let rt = rt();
    // Missing file = 0.
    assert!(rt.block_on(p(0, false).run()).ok);
    std::fs::write(&path, "3\n").unwrap();
    let out = rt.block_on(p(0, false).run());
    assert_eq!(out.reason, "track_file tf: value 3");
    assert!(!out.ok);
    assert_eq!(rt.block_on(p(2, true).run()).weight, Some(6));
    std::fs::write(&path, "-3 trailing words\n").unwrap();
    assert!(!rt.block_on(p(2, true).run()).ok, "5 - 6 < 0");
    assert!(rt.block_on(p(1, true).run()).ok);
    std::fs::write(&path, "garbage").unwrap();
    assert!(rt.block_on(p(0, false).run()).ok);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn fwmark_and_bind_if() {
    if !is_root() {
        eprintln!("skipping fwmark_and_bind_if: needs root");
        return;
    }
    let ns = vipd_netns::Netns::unique("chk").unwrap();
    ns.ip(["link", "set", "lo", "up"]).unwrap();
    ns.ip(["link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        .unwrap();
    ns.ip(["link", "set", "v0", "up"]).unwrap();
    ns.ip(["link", "set", "v1", "up"]).unwrap();
    ns.ip(["addr", "add", "192.0.2.1/24", "dev", "v0"]).unwrap();
    // Packets marked 7 may not be routed anywhere but the local table.
    ns.ip(["rule", "add", "fwmark", "7", "prohibit"]).unwrap();
    let h = ns
        .enter_thread(|| {
            rt().block_on(async {
                // Unmarked: routed to v0, nobody answers ARP.
                let out = probe(ProbeKind::Tcp, "192.0.2.2:80", 300).run().await;
                assert_eq!(out.reason, "connect: timed out");
                let mut p = probe(ProbeKind::Tcp, "192.0.2.2:80", 300);
                p.fwmark = Some(7);
                assert_eq!(p.run().await.reason, "connect: permission denied");
                // A server on our own address: reachable, but not through v1.
                let _l = TcpListener::bind("192.0.2.1:80").await.unwrap();
                assert!(probe(ProbeKind::Tcp, "192.0.2.1:80", 300).run().await.ok);
                let mut p = probe(ProbeKind::Tcp, "192.0.2.1:80", 300);
                p.bind_if = Some("v1".into());
                let out = p.run().await;
                assert!(!out.ok, "{out:?}");
                let mut p = probe(ProbeKind::Tcp, "192.0.2.2:80", 300);
                p.bind_if = Some("no-such-if".into());
                assert!(p.run().await.reason.starts_with("socket: "));
            })
        })
        .unwrap();
    if let Err(p) = h.join() {
        std::panic::resume_unwind(p);
    }
}

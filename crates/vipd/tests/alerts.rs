//! `smtp_alert`: mails through a real SMTP conversation with a test mail server on the
//! LAN (the client namespace, 192.0.2.50), for a VRRP instance's transitions and for a
//! real server that goes down.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// What the test mail server received in one session.
#[derive(Debug)]
struct Received {
    /// The commands before DATA (`HELO ...`, `MAIL FROM:<...>`, `RCPT TO:<...>`).
    commands: Vec<String>,
    /// The message (headers and body) as sent, dot-stuffing undone.
    message: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.message
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }
}

/// A minimal SMTP server: every command is accepted; each message goes to the channel.
/// Stops accepting when `stop` is set.
fn mail_server(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
) -> (mpsc::Receiver<Received>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    if let Some(r) = session(s) {
                        let _ = tx.send(r);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (rx, handle)
}

fn session(s: TcpStream) -> Option<Received> {
    let mut w = s.try_clone().ok()?;
    let mut r = BufReader::new(s);
    w.write_all(b"220 mail.test ESMTP\r\n").ok()?;
    let mut commands = Vec::new();
    let mut message = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "DATA" => {
                w.write_all(b"354 go ahead\r\n").ok()?;
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).ok()? == 0 {
                        return None;
                    }
                    let l = l.trim_end_matches(['\r', '\n']);
                    if l == "." {
                        break;
                    }
                    message.push_str(l.strip_prefix('.').unwrap_or(l));
                    message.push('\n');
                }
                w.write_all(b"250 2.0.0 queued\r\n").ok()?;
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n");
                return Some(Received { commands, message });
            }
            "HELO" => {
                commands.push(line);
                w.write_all(b"250-mail.test\r\n250 HELP\r\n").ok()?;
            }
            _ => {
                commands.push(line);
                w.write_all(b"250 ok\r\n").ok()?;
            }
        }
    }
}

#[test]
fn smtp_alert_mails_transitions_and_a_failed_real_server() {
    let spec = Spec::v3().with("smtp_alert");
    let Some(mut c) = Cluster::new(1, "mail") else {
        return;
    };
    let client = c.lan.client();
    let listener = client
        .run(|| TcpListener::bind("192.0.2.50:2525"))
        .unwrap()
        .unwrap();
    // The real server: a TCP listener the test closes.
    let real = client
        .run(|| TcpListener::bind("192.0.2.50:8080"))
        .unwrap()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (mails, server) = mail_server(listener, stop.clone());

    let conf = spec.config(100).replace(
        "global_defs {\n",
        "global_defs {\n    notification_email {\n        ops@example.com\n        oncall@example.com\n    }\n    \
         notification_email_from lb1@example.com\n    smtp_server 192.0.2.50 2525\n    \
         smtp_connect_timeout 5\n    smtp_helo_name lb1.example.com\n",
    ) + "virtual_server 192.0.2.100 80 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    \
         protocol TCP\n    real_server 192.0.2.50 8080 {\n        TCP_CHECK {\n            \
         connect_timeout 1\n            retry 0\n        }\n    }\n}\n";
    c.start_vipd_with(1, &conf, &["--lb-backend", "nftables"]);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    drop(real);

    // BACKUP at start, then MASTER; the real server's DOWN (real servers mail unless
    // told not to, as in keepalived).
    let want = [
        "[test] VRRP Instance VI_1 - Entering BACKUP state",
        "[test] VRRP Instance VI_1 - Entering MASTER state",
        "[test] Realserver 192.0.2.50:8080 of virtual_server 192.0.2.100 80 - DOWN",
    ];
    let mut got: Vec<Received> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < want.len() && Instant::now() < deadline {
        if let Ok(r) = mails.recv_timeout(Duration::from_millis(200)) {
            got.push(r);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    let subjects: Vec<&str> = got.iter().filter_map(|r| r.header("Subject")).collect();
    for w in want {
        assert!(
            subjects.contains(&w),
            "no `{w}` in {subjects:#?}\n{}",
            c.log(1)
        );
    }
    let master = got
        .iter()
        .find(|r| r.header("Subject") == Some(want[1]))
        .unwrap();
    assert_eq!(
        master.commands,
        [
            "HELO lb1.example.com",
            "MAIL FROM:<lb1@example.com>",
            "RCPT TO:<ops@example.com>",
            "RCPT TO:<oncall@example.com>",
        ]
    );
    assert_eq!(master.header("From"), Some("lb1@example.com"));
    assert_eq!(
        master.header("To"),
        Some("ops@example.com, oncall@example.com")
    );
    assert!(master.header("Date").is_some_and(|d| d.ends_with(" +0000")));
    assert!(
        master.message.contains("Virtual addresses: 192.0.2.100/24"),
        "{}",
        master.message
    );
    let down = got
        .iter()
        .find(|r| r.header("Subject") == Some(want[2]))
        .unwrap();
    assert!(
        down.message
            .contains("is out of the pool.\nLast check: TCP_CHECK 192.0.2.50:8080"),
        "{}",
        down.message
    );
    assert!(c
        .log(1)
        .contains("mailed `[test] VRRP Instance VI_1 - Entering MASTER state`"));
}

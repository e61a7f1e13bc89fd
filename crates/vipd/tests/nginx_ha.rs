//! The seed scenario end to end: two nginx boxes share a VIP. A `vrrp_script` checks a
//! maintenance "down" file (weight -2, priorities 100/99), another checks nginx itself;
//! notify scripts start nginx on MASTER and stop it on BACKUP/FAULT. A client keeps
//! fetching http://VIP/ and must keep getting answers while the master goes into
//! maintenance and back, loses its link and gets it back, and loses its nginx.

mod common;

use common::{Cluster, Spec};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vipd_netns::Netns;

/// When the client asked and who answered (`None`: nobody).
type AnswerLog = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// Which router answered the client, over time.
struct Fetcher {
    log: AnswerLog,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fetcher {
    fn start(client: &Netns, vip: SocketAddr) -> Fetcher {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        let thread = client
            .enter_thread(move || {
                while !s.load(Ordering::Relaxed) {
                    let got = get(vip);
                    l.lock().unwrap().push((Instant::now(), got));
                    std::thread::sleep(Duration::from_millis(25));
                }
            })
            .unwrap();
        Fetcher {
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Wait until `host` answers; returns how long nobody answered before that (the
    /// outage), measured from `since`.
    fn wait_for(&self, host: &str, since: Instant, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let log = self.log.lock().unwrap();
                let after: Vec<_> = log.iter().filter(|(t, _)| *t >= since).collect();
                if let Some(pos) = after.iter().position(|(_, h)| h.as_deref() == Some(host)) {
                    // Outage: the longest run without any answer, between `since` and now.
                    let mut worst = Duration::ZERO;
                    let mut last_ok = since;
                    for (t, h) in &after[..=pos] {
                        if h.is_some() {
                            worst = worst.max(t.duration_since(last_ok));
                            last_ok = *t;
                        }
                    }
                    return worst;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{host} never answered; last answers: {:?}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn tail(&self) -> Vec<Option<String>> {
        let log = self.log.lock().unwrap();
        log.iter().rev().take(10).map(|(_, h)| h.clone()).collect()
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.0 GET; the body is the answering host's name.
fn get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.trim().to_string())
}

fn nginx_conf(dir: &std::path::Path, host: &str) -> String {
    let d = dir.display();
    format!(
        "daemon on;\npid {d}/nginx-{host}.pid;\nerror_log {d}/nginx-{host}.err;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp-{host};\n  proxy_temp_path {d}/tmp-{host};\n\
           fastcgi_temp_path {d}/tmp-{host};\n  uwsgi_temp_path {d}/tmp-{host};\n  scgi_temp_path {d}/tmp-{host};\n\
           server {{ listen 80; default_type text/plain; location / {{ return 200 \"{host}\\n\"; }} }}\n}}\n"
    )
}

fn vipd_conf(spec: &Spec, dir: &std::path::Path, host: &str, priority: u8) -> String {
    let d = dir.display();
    let conf = format!("{d}/nginx-{host}.conf");
    let flag = format!("{d}/master-{host}");
    let pid = format!("{d}/nginx-{host}.pid");
    let scripts = format!(
        "vrrp_script chk_down {{\n    script \"[ ! -f {d}/down-{host} ]\"\n    interval 1\n    weight -2\n}}\n\
         vrrp_script chk_nginx {{\n    script \"/bin/sh -c '[ ! -f {flag} ] || kill -0 $(cat {pid})'\"\n    interval 1\n    weight -2\n}}\n"
    );
    let start = format!("/bin/sh -c 'touch {flag}; nginx -c {conf}'");
    let stop = format!("/bin/sh -c 'rm -f {flag}; nginx -c {conf} -s stop || true'");
    let inst = spec
        .clone()
        .with("track_script {\n        chk_down\n        chk_nginx\n    }")
        .with(&format!("notify_master \"{start}\""))
        .with(&format!("notify_backup \"{stop}\""))
        .with(&format!("notify_fault \"{stop}\""))
        .config(priority);
    format!("{scripts}{inst}")
}

#[test]
fn two_nginx_boxes_share_a_vip() {
    if std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
    {
        panic!("nginx is not installed: this test needs it (apt-get install nginx)");
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "nginx") else {
        return;
    };
    let dir = c.dir.path().to_path_buf();
    for host in ["r1", "r2"] {
        std::fs::write(
            dir.join(format!("nginx-{host}.conf")),
            nginx_conf(&dir, host),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join(format!("tmp-{host}"))).unwrap();
    }
    c.start_vipd(1, &vipd_conf(&spec, &dir, "r1", 100));
    c.start_vipd(2, &vipd_conf(&spec, &dir, "r2", 99));
    let vip = SocketAddr::new(spec.vip(), 80);
    let fetch = Fetcher::start(c.lan.client(), vip);
    let t = Instant::now();
    fetch.wait_for("r1", t, Duration::from_secs(10));
    let bound = Duration::from_secs(1) + spec.takeover_timeout(); // script interval + protocol
    let mut outages = Vec::new();

    // 1. Maintenance on r1: the VIP and the service move to r2.
    let t = Instant::now();
    std::fs::write(dir.join("down-r1"), "").unwrap();
    outages.push(("down file created", fetch.wait_for("r2", t, bound * 2)));
    // 2. Maintenance over: back to r1 (preempt).
    let t = Instant::now();
    std::fs::remove_file(dir.join("down-r1")).unwrap();
    outages.push(("down file removed", fetch.wait_for("r1", t, bound * 2)));
    // 3. r1's link fails: r1 goes FAULT (stops nginx), r2 takes over.
    let t = Instant::now();
    c.lan.set_port(1, false).unwrap();
    outages.push(("master link down", fetch.wait_for("r2", t, bound * 2)));
    let t = Instant::now();
    c.lan.set_port(1, true).unwrap();
    outages.push(("master link back", fetch.wait_for("r1", t, bound * 2)));
    // 4. r1's nginx dies: its check fails, the VIP moves to r2.
    let t = Instant::now();
    let pid: i32 = std::fs::read_to_string(dir.join("nginx-r1.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: killing the nginx master this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    outages.push(("master nginx killed", fetch.wait_for("r2", t, bound * 2)));

    eprintln!("outages seen by the client: {outages:?}");
    for (what, o) in &outages {
        assert!(
            *o <= bound,
            "{what}: client outage {o:?} > bound {bound:?}\n{}",
            c.logs()
        );
    }
    for host in ["r1", "r2"] {
        let _ = std::process::Command::new("nginx")
            .args([
                "-c",
                dir.join(format!("nginx-{host}.conf")).to_str().unwrap(),
                "-s",
                "stop",
            ])
            .output();
    }
}

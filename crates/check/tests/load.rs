//! Load: 10,000 real servers checked every second. Ignored by default (it runs for
//! ~10 s); run with `cargo test -p vipd-check --test load -- --ignored --nocapture`.
//! Prints the CPU time the checker thread(s) use per second of wall time.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use tokio::net::TcpListener;
use vipd_check::{Checkers, Globals, StartOptions};
use vipd_config::{load_str, LoadOptions};

/// utime + stime of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> Duration {
    let tick = 100.0; // USER_HZ
    let mut total = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(comm) = std::fs::read_to_string(t.path().join("comm")) else {
            continue;
        };
        if !comm.starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        total += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    }
    Duration::from_secs_f64(total as f64 / tick)
}

fn run(kind: &str, n: usize) {
    let checker = match kind {
        "HTTP_GET" => "HTTP_GET { url { path /ok } }",
        _ => "TCP_CHECK { }",
    };
    let kind = kind.to_string();
    in_netns("load", move || async move {
        let mut text =
            String::from("virtual_server 192.0.2.100 80 {\n delay_loop 1\n connect_timeout 2\n");
        for i in 0..n {
            text.push_str(&format!(
                " real_server 127.1.{}.{} 8080 {{ {checker} }}\n",
                i / 250,
                i % 250 + 1
            ));
        }
        text.push_str("}\n");
        let opts = LoadOptions {
            config_id: Some("n1".into()),
            check_interfaces: false,
            ..Default::default()
        };
        let cfg = load_str(&text, Path::new("/tmp/load.conf"), &opts)
            .unwrap()
            .config;
        let l = TcpListener::bind("0.0.0.0:8080").await.unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(serve_http(l, routes(), tx));
        let (htx, hrx) = mpsc::channel();
        let checkers = Checkers::start(
            &cfg.virtual_servers,
            &Globals::from_config(&cfg),
            StartOptions::default(),
            htx,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (c0, t0) = (thread_cpu("vipd-check"), Instant::now());
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (c1, t1) = (thread_cpu("vipd-check"), Instant::now());
        let probes: u32 = checkers
            .status()
            .iter()
            .map(|s| s.last.is_some() as u32)
            .sum();
        let changes: Vec<_> = hrx.try_iter().collect();
        checkers.stop();
        let cpu = (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64();
        println!(
            "{kind}: {n} servers, delay_loop 1 s: checker thread CPU {:.1}% of a core ({:.1} µs per probe)",
            cpu * 100.0,
            cpu * 1e6 / n as f64
        );
        assert_eq!(probes as usize, n, "every server probed");
        assert!(
            changes.is_empty(),
            "{} health changes: {:?}",
            changes.len(),
            changes.first()
        );
    });
}

#[test]
#[ignore]
fn ten_thousand_tcp_checks() {
    run("TCP_CHECK", 10_000);
}

#[test]
#[ignore]
fn ten_thousand_http_checks() {
    run("HTTP_GET", 10_000);
}

//! End-to-end: `Checkers` from a config against real servers.

mod common;

use std::path::Path;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use common::*;
use tokio::net::TcpListener;
use vipd_check::{Checkers, Globals, HealthChange, StartOptions};
use vipd_config::{load_str, Config, LoadOptions};

fn config(text: &str) -> Config {
    let opts = LoadOptions {
        config_id: Some("n1".into()),
        check_interfaces: false,
        ..Default::default()
    };
    match load_str(text, Path::new("/etc/keepalived/keepalived.conf"), &opts) {
        Ok(l) => l.config,
        Err(d) => panic!("config does not load: {d:#?}"),
    }
}

fn start(cfg: &Config) -> (Checkers, Receiver<HealthChange>) {
    let (tx, rx) = mpsc::channel();
    let c = Checkers::start(
        &cfg.virtual_servers,
        &Globals::from_config(cfg),
        StartOptions::default(),
        tx,
    )
    .unwrap();
    (c, rx)
}

/// The next health change within `limit`, polling (the servers run on this thread).
async fn next(rx: &Receiver<HealthChange>, limit: Duration) -> Option<HealthChange> {
    let end = Instant::now() + limit;
    loop {
        match rx.try_recv() {
            Ok(h) => return Some(h),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() >= end => return None,
            Err(TryRecvError::Empty) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// The HTTP test server on 127.0.0.1:`port`; abort the handle to take it away.
async fn web_server(port: u16) -> tokio::task::JoinHandle<()> {
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(serve_http(l, routes(), tx))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const E2E: &str = r#"
virtual_server 127.0.0.1 80 {
    delay_loop 0.2
    retry 2
    delay_before_retry 0.1
    connect_timeout 0.3
    warmup 0
    real_server 127.0.0.1 8080 {
        HTTP_GET {
            url { path /ok }
        }
    }
    real_server 127.0.0.1 8081 {
        TCP_CHECK { }
    }
    real_server 127.0.0.1 8082 {
        weight 3
    }
}
virtual_server 127.0.0.2 80 {
    alpha
    delay_loop 0.2
    warmup 0
    real_server 127.0.0.1 9000 {
        TCP_CHECK { connect_timeout 0.3 }
    }
}
"#;

#[test]
fn servers_going_away_and_coming_back() {
    in_netns("end-to-end", || async {
        let (dl, retry, dbr, ct) = (ms(200), 2u32, ms(100), ms(300));
        let margin = ms(600);

        let web = web_server(8080).await;
        let tcp = TcpListener::bind("127.0.0.1:8081").await.unwrap();
        let alpha = TcpListener::bind("127.0.0.1:9000").await.unwrap();
        let cfg = config(E2E);
        let (mut checkers, rx) = start(&cfg);

        let health = checkers.take_initial_health();
        let initial: Vec<(usize, usize, bool)> =
            health.iter().map(|h| (h.vs, h.rs, h.up)).collect();
        assert_eq!(
            initial,
            [(0, 0, true), (0, 1, true), (0, 2, true), (1, 0, false)]
        );
        assert!(health[3].reason.contains("alpha"));
        assert_eq!(health[2].reason, "no checkers");
        assert!(checkers.take_initial_health().is_empty(), "taken once");

        // The alpha server comes up after its first probe.
        let h = next(&rx, ms(1000)).await.expect("alpha server up");
        assert_eq!((h.vs, h.rs, h.up), (1, 0, true));

        // Nothing changes while everything is healthy.
        assert_eq!(next(&rx, ms(500)).await, None);

        // The web server goes away (connection refused): down after the retries.
        web.abort();
        let _ = web.await;
        let t0 = Instant::now();
        let h = next(&rx, dl + dbr * retry + ct + margin)
            .await
            .expect("down in time");
        let took = t0.elapsed();
        assert_eq!((h.vs, h.rs, h.up), (0, 0, false), "{h:?}");
        assert!(h.reason.contains("connection refused"), "{}", h.reason);
        assert!(
            took >= dbr * retry,
            "down after {took:?}, before the retries"
        );
        let st = checkers.status();
        assert_eq!(st.len(), 3);
        assert_eq!(st[0].kind, "HTTP_GET");
        assert_eq!(st[0].label, "HTTP_GET 127.0.0.1:8080");
        assert!(!st[0].up);
        assert!(st[0].consecutive_failures >= 3);
        let last = st[0].last.as_ref().unwrap();
        assert!(!last.ok && last.reason.contains("refused"));
        // When it came and how long it took (a refusal: at once).
        let age = std::time::SystemTime::now()
            .duration_since(last.at)
            .unwrap();
        assert!(age < dl + margin, "{age:?}");
        assert!(last.took < ct, "{:?}", last.took);
        let ok = st[1].last.as_ref().unwrap();
        assert!(ok.ok && ok.reason == "ok", "{ok:?}");
        assert!(st[1].up && st[1].consecutive_failures == 0);

        // Back: up on the first success.
        let web = web_server(8080).await;
        let t0 = Instant::now();
        let h = next(&rx, dl + margin).await.expect("up again");
        assert_eq!((h.vs, h.rs, h.up), (0, 0, true), "{h:?}");
        assert!(t0.elapsed() <= dl + margin);

        // A server that accepts and never answers: each probe takes connect_timeout.
        web.abort();
        let _ = web.await;
        let hung = TcpListener::bind("127.0.0.1:8080").await.unwrap();
        let t0 = Instant::now();
        let h = next(&rx, dl + (ct + dbr) * retry + ct + margin)
            .await
            .expect("hung server down in time");
        let took = t0.elapsed();
        assert_eq!((h.vs, h.rs, h.up), (0, 0, false), "{h:?}");
        assert!(h.reason.contains("timed out"), "{}", h.reason);
        assert!(took >= ct * (retry + 1) + dbr * retry - ms(50), "{took:?}");
        drop(hung);

        // ha_suspend: nothing is probed, so nothing changes while suspended.
        checkers.suspend(0, true);
        tokio::time::sleep(ms(50)).await;
        drop(tcp);
        assert_eq!(next(&rx, ms(800)).await, None);
        let st = checkers.status();
        assert!(st[1].suspended && st[1].up);
        assert!(!st[2].suspended);
        checkers.suspend(0, false);
        let h = next(&rx, dbr * retry + margin)
            .await
            .expect("down after resume");
        assert_eq!((h.vs, h.rs, h.up), (0, 1, false), "{h:?}");

        let t0 = Instant::now();
        checkers.stop();
        assert!(t0.elapsed() < ms(1000));
        drop(alpha);
    });
}

#[test]
fn misc_dynamic_weight_and_stop_kills_scripts() {
    let dir = std::env::temp_dir().join(format!("vipd-check-runner-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let text = format!(
        r#"
virtual_server 192.0.2.100 80 {{
    delay_loop 0.2
    warmup 0
    real_server 192.0.2.1 80 {{
        weight 4
        MISC_CHECK {{ misc_path "/bin/sh -c 'exit 12'"
                      misc_dynamic }}
    }}
    real_server 192.0.2.2 80 {{
        MISC_CHECK {{ misc_path "/bin/sh -c 'echo $$ > {}; exec sleep 30'"
                      misc_timeout 60 }}
    }}
}}
"#,
        pidfile.display()
    );
    let cfg = config(&text);
    let (mut checkers, rx) = start(&cfg);
    let health = checkers.take_initial_health();
    assert_eq!(health[0].weight, Some(4));
    assert_eq!(health[1].weight, None);
    let h = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("weight change");
    assert_eq!((h.vs, h.rs, h.up, h.weight), (0, 0, true, Some(10)));
    assert!(h.reason.contains("exit status 12"), "{}", h.reason);
    // The long script is running: stop kills it and returns promptly.
    let end = Instant::now() + Duration::from_secs(3);
    let pid: i32 = loop {
        if let Some(p) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < end, "script did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(checkers.status()[1].in_flight);
    let t0 = Instant::now();
    checkers.stop();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the MISC script outlived stop"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replace a tracked file's content in one step (the checker polls it: a plain
/// truncate-and-write can be read half done, as an empty file, i.e. value 0).
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn file_check_follows_the_file() {
    let dir = std::env::temp_dir().join(format!("vipd-check-file-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = dir.join("flag");
    let level = dir.join("level");
    std::fs::write(&level, "2\n").unwrap();
    let text = format!(
        r#"
track_file flag {{ file {flag}
    init_file 1 }}
track_file level {{ file {level} }}
virtual_server 192.0.2.100 80 {{
    real_server 192.0.2.1 80 {{
        FILE_CHECK {{ track_file flag
                      weight 0 }}
    }}
    real_server 192.0.2.2 80 {{
        weight 10
        FILE_CHECK {{ track_file level
                      weight 5
                      dynamic }}
    }}
}}
"#,
        flag = flag.display(),
        level = level.display()
    );
    let cfg = config(&text);
    let (mut checkers, rx) = start(&cfg);
    // init_file created the flag file with 1: down from the start.
    assert_eq!(std::fs::read_to_string(&flag).unwrap(), "1\n");
    let health = checkers.take_initial_health();
    let init: Vec<(bool, Option<u32>)> = health.iter().map(|h| (h.up, h.weight)).collect();
    assert_eq!(init, [(false, None), (true, Some(20))]);
    assert!(health[0].reason.contains("value 1"));
    replace(&flag, "0\n");
    let h = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("flag cleared");
    assert_eq!((h.rs, h.up), (0, true));
    replace(&level, "-1\n");
    let h = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("level changed");
    assert_eq!((h.rs, h.up, h.weight), (1, true, Some(5)));
    replace(&level, "-3\n");
    let h = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("level too low");
    assert_eq!((h.rs, h.up), (1, false));
    checkers.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bfd_check_follows_the_session_events() {
    let cfg = config(
        "bfd_instance b {\n neighbor_ip 192.0.2.9\n checker\n}\n\
         virtual_server 192.0.2.100 80 {\n real_server 192.0.2.1 80 {\n  BFD_CHECK { name b }\n }\n\
         real_server 192.0.2.2 80 {\n  BFD_CHECK { name b\n alpha }\n }\n}\n",
    );
    let (tx, rx) = mpsc::channel();
    let mut checkers = Checkers::start(
        &cfg.virtual_servers,
        &Globals::from_config(&cfg),
        StartOptions::default(),
        tx,
    )
    .unwrap();
    // Before any event: up, except with alpha (as keepalived).
    let initial: Vec<(usize, bool)> = checkers
        .take_initial_health()
        .iter()
        .map(|h| (h.rs, h.up))
        .collect();
    assert_eq!(initial, vec![(0, true), (1, false)]);
    checkers.bfd("b", true);
    let h = rx.recv_timeout(Duration::from_secs(3)).expect("Up event");
    assert_eq!((h.rs, h.up), (1, true));
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "rs 0 was up already"
    );
    checkers.bfd("b", false);
    let mut down: Vec<usize> = (0..2)
        .map(|_| {
            let h = rx.recv_timeout(Duration::from_secs(3)).expect("down event");
            assert!(!h.up, "{h:?}");
            h.rs
        })
        .collect();
    down.sort();
    assert_eq!(down, vec![0, 1]);
    // Another session's event changes nothing; the periodic re-read keeps the state.
    checkers.bfd("other", true);
    assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err());
    checkers.stop();
    // A reload's checkers start from the last event.
    let (tx, _rx) = mpsc::channel();
    let mut again = Checkers::start(
        &cfg.virtual_servers,
        &Globals::from_config(&cfg),
        StartOptions {
            bfd: [("b".to_string(), false)].into(),
            ..Default::default()
        },
        tx,
    )
    .unwrap();
    assert!(again.take_initial_health().iter().all(|h| !h.up));
    again.stop();
}

#[test]
fn start_refuses_what_it_cannot_honour() {
    let cfg = config(
        "virtual_server 192.0.2.100 80 {\n real_server 192.0.2.1 80 {\n  BFD_CHECK { name b }\n }\n}\n",
    );
    let (tx, _rx) = mpsc::channel();
    let err = Checkers::start(
        &cfg.virtual_servers,
        &Globals::from_config(&cfg),
        StartOptions::default(),
        tx,
    )
    .err()
    .expect("refused");
    assert_eq!(
        err.to_string(),
        "/etc/keepalived/keepalived.conf:3: `name`: no bfd_instance named `b` sends its events to the checkers"
    );
}

#[test]
fn suspended_at_start() {
    let cfg = config(
        "virtual_server 192.0.2.100 80 {\n delay_loop 0.1\n warmup 0\n real_server 192.0.2.1 80 {\n  MISC_CHECK { misc_path /bin/false }\n }\n}\n",
    );
    let (tx, rx) = mpsc::channel();
    let checkers = Checkers::start(
        &cfg.virtual_servers,
        &Globals::from_config(&cfg),
        StartOptions {
            seed: 1,
            suspended: vec![0],
            ..StartOptions::default()
        },
        tx,
    )
    .unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    assert!(checkers.status()[0].suspended);
    assert!(checkers.status()[0].last.is_none());
    checkers.suspend(0, false);
    let h = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("probed after resume");
    assert!(!h.up);
    assert_eq!(h.reason, "MISC_CHECK /bin/false: exit status 1");
    checkers.stop();
}

#[test]
fn a_reload_carries_each_checkers_verdict_by_identity() {
    let before = config(
        "virtual_server 192.0.2.100 80 {\n delay_loop 0.1\n warmup 0\n\
         real_server 192.0.2.1 80 {\n  MISC_CHECK { misc_path /bin/false\n retry 0 }\n }\n\
         real_server 192.0.2.2 80 {\n  MISC_CHECK { misc_path /bin/true }\n  alpha\n }\n}\n",
    );
    let (tx, rx) = mpsc::channel();
    let old = Checkers::start(
        &before.virtual_servers,
        &Globals::from_config(&before),
        StartOptions::default(),
        tx,
    )
    .unwrap();
    // .1 starts up and fails, .2 starts down (alpha) and succeeds.
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 {
        let h = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("both settle");
        seen.insert(h.rs, h.up);
    }
    assert_eq!(seen, [(0, false), (1, true)].into_iter().collect());
    let carried = old.carry_over();
    old.stop();
    assert_eq!(carried.len(), 2, "{carried:?}");

    // The new file lists the servers in another order and adds one; the delay loop is
    // long so nothing is probed before the initial states are read.
    let after = config(
        "virtual_server 192.0.2.100 80 {\n delay_loop 60\n\
         real_server 192.0.2.3 80 {\n  MISC_CHECK { misc_path /bin/true }\n  alpha\n }\n\
         real_server 192.0.2.2 80 {\n  MISC_CHECK { misc_path /bin/true }\n  alpha\n }\n\
         real_server 192.0.2.1 80 {\n  MISC_CHECK { misc_path /bin/false\n retry 0 }\n }\n}\n",
    );
    let (tx, _rx) = mpsc::channel();
    let mut new = Checkers::start(
        &after.virtual_servers,
        &Globals::from_config(&after),
        StartOptions {
            carried,
            ..StartOptions::default()
        },
        tx,
    )
    .unwrap();
    let initial: Vec<(usize, bool, String)> = new
        .take_initial_health()
        .into_iter()
        .map(|h| (h.rs, h.up, h.reason))
        .collect();
    assert_eq!(
        initial,
        vec![
            (
                0,
                false,
                "MISC_CHECK /bin/true: alpha, no success yet".to_string()
            ),
            (1, true, "initially up".to_string()),
            (
                2,
                false,
                "MISC_CHECK /bin/false: kept across reload; last: exit status 1".to_string()
            ),
        ]
    );
    new.stop();
}

/// A `misc_dynamic` weight survives a reload, also one that changes the configured
/// weight: it is what the script said (exit 12: weight 10), not a delta from the old
/// configured weight.
#[test]
fn reload_keeps_a_dynamic_weight() {
    let file = |weight: u32, delay: &str| {
        config(&format!(
            "virtual_server 192.0.2.100 80 {{\n delay_loop {delay}\n warmup 0\n\
             real_server 192.0.2.1 80 {{\n  weight {weight}\n\
             MISC_CHECK {{ misc_path \"/bin/sh -c 'exit 12'\"\n misc_dynamic }}\n }}\n}}\n"
        ))
    };
    let before = file(4, "0.1");
    let (old, rx) = start(&before);
    let h = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("weight change");
    assert_eq!(h.weight, Some(10));
    let carried = old.carry_over();
    old.stop();
    // The long delay loop: nothing is probed before the initial state is read.
    for weight in [4, 7] {
        let after = file(weight, "60");
        let (tx, _rx) = mpsc::channel();
        let mut new = Checkers::start(
            &after.virtual_servers,
            &Globals::from_config(&after),
            StartOptions {
                carried: carried.clone(),
                ..StartOptions::default()
            },
            tx,
        )
        .unwrap();
        let h = &new.take_initial_health()[0];
        assert_eq!((h.up, h.weight), (true, Some(10)), "configured {weight}");
        new.stop();
    }
}

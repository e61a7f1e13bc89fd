//! The load balancer end to end, in network namespaces: two directors (r1, r2) run vipd
//! with a VRRP instance holding the VIP and a `virtual_server` on it; real servers
//! (r3, r4, and r5 as sorry server) run a small HTTP server that answers with its own
//! name; the client fetches http://VIP/ and counts who answered.

mod common;

use common::traffic::{errors, fetch, get_from, nat_routes, wait_serving, HttpServer};
use common::{Cluster, Spec, VIPD};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_netns::{Netns, VIP_V4};

/// One GET from each of `ports` on the client: the answers in order.
fn fetch_from(client: &Netns, ports: Vec<u16>) -> Vec<(u16, String)> {
    let addr = SocketAddr::new(VIP_V4.into(), 80);
    client
        .enter_thread(move || {
            ports
                .into_iter()
                .map(|p| (p, get_from(addr, p).unwrap_or_else(|e| format!("ERR: {e}"))))
                .collect()
        })
        .unwrap()
        .join()
        .unwrap()
}

/// The client ports of `answers` that `server` answered.
fn answered_by(answers: &[(u16, String)], server: &str) -> Vec<u16> {
    answers
        .iter()
        .filter(|(_, who)| who == server)
        .map(|(p, _)| *p)
        .collect()
}

/// A real server's `up` in director `i`'s status.
fn rs_up(c: &Cluster, i: usize, addr: &str) -> Option<bool> {
    let st = c.status(i)?;
    st["virtual_servers"][0]["real_servers"]
        .as_array()?
        .iter()
        .find(|r| r["addr"] == addr)
        .and_then(|r| r["up"].as_bool())
}

fn wait_rs(c: &Cluster, i: usize, addr: &str, up: bool, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    let ok = vipd_netns::wait_for(timeout, Duration::from_millis(20), || {
        rs_up(c, i, addr) == Some(up)
    });
    assert!(
        ok,
        "real server {addr} not {} on r{i} after {timeout:?}\n{}",
        if up { "up" } else { "down" },
        c.logs()
    );
    t0.elapsed()
}

fn realserver(ns: &Netns, vip: &str) {
    let out = ns.exec(&[
        VIPD,
        "realserver",
        "--vip",
        vip,
        "--state-file",
        &format!("/tmp/{}-rs.json", ns.name()),
    ]);
    assert!(out.is_ok(), "vipd realserver failed: {out:?}");
}

/// The data plane under test: nftables, or `VIPD_TEST_LB_BACKEND=ipvs` (a kernel with
/// IPVS, e.g. inside bench/vm).
fn backend() -> String {
    std::env::var("VIPD_TEST_LB_BACKEND").unwrap_or_else(|_| "nftables".into())
}

/// What vipd installed on a director, as text: nftables' ruleset or IPVS' table.
fn nft_ruleset(ns: &Netns) -> String {
    if backend() == "ipvs" {
        return ns.exec(&["ipvsadm", "-Ln"]).unwrap_or_default();
    }
    ns.exec(&["nft", "list", "ruleset"]).unwrap_or_default()
}

/// What to print when a fetch goes wrong: each director's VRRP history (a takeover in
/// the middle of a fetch moves the VIP), the master's data plane and the daemons' logs.
fn directors(c: &Cluster) -> String {
    let mut out = String::new();
    for i in 1..=2 {
        let st = c.status(i);
        let inst = st.as_ref().map(|s| &s["instances"][0]);
        out += &format!(
            "r{i}: state {} became_master {} transitions {}\n",
            inst.map_or("-".into(), |v| v["state"].to_string()),
            inst.map_or("-".into(), |v| v["became_master"].to_string()),
            inst.map_or("-".into(), |v| v["transitions"].to_string()),
        );
    }
    let table = if backend() == "ipvs" {
        c.lan
            .router(1)
            .exec(&["ipvsadm", "-Ln", "--stats"])
            .unwrap_or_default()
    } else {
        nft_ruleset(c.lan.router(1))
    };
    format!("{out}--- r1 data plane:\n{table}\n{}", c.logs())
}

/// The directors' VRRP instance: keepalived's default 1 s adverts. These tests are about
/// the load balancer; faster adverts would only add the risk of a spurious takeover when
/// the emulated IPVS guest stalls for a few hundred milliseconds.
fn lb_spec() -> Spec {
    Spec {
        advert_int: "1",
        ..Spec::v3()
    }
}

/// The tests of this file run one at a time: the IPVS run boots an emulated VM that
/// takes both cores, which would skew the others' timing bounds.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The seed's LVS block, unchanged but for the real servers' addresses.
const SEED_VS: &str = "
virtual_server 192.0.2.100 80 {
    delay_loop 6
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 192.0.2.13 80 {
        weight 1
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 3
            retry 3
            delay_before_retry 3
        }
    }
    real_server 192.0.2.14 80 {
        weight 1
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 3
            retry 3
            delay_before_retry 3
        }
    }
}
";

#[test]
fn seed_dr_config_balances_removes_restores_and_fails_over() {
    let _serial = serial();
    let Some(mut c) = Cluster::new(4, "lb-dr") else {
        return;
    };
    let mut servers: Vec<Option<HttpServer>> = vec![
        Some(HttpServer::start(c.lan.router(3), "r3")),
        Some(HttpServer::start(c.lan.router(4), "r4")),
    ];
    realserver(c.lan.router(3), "192.0.2.100");
    realserver(c.lan.router(4), "192.0.2.100");
    let spec = lb_spec();
    c.start_vipd_with(
        1,
        &format!("{}{SEED_VS}", spec.config(150)),
        &["--lb-backend", &backend()],
    );
    c.start_vipd_with(
        2,
        &format!("{}{SEED_VS}", spec.config(100)),
        &["--lb-backend", &backend()],
    );
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    wait_serving(&c, 10, Duration::from_secs(15));

    // Only the MASTER forwards: the backup has no rule for the VIP.
    assert!(
        nft_ruleset(c.lan.router(1)).contains("192.0.2.100"),
        "{}",
        nft_ruleset(c.lan.router(1))
    );
    assert!(
        !nft_ruleset(c.lan.router(2)).contains("192.0.2.100"),
        "{}",
        nft_ruleset(c.lan.router(2))
    );

    // rr over two servers of weight 1: both get a fair share of 200 connections (DR on
    // nftables hashes flows, so the split is statistical, not strictly alternating).
    let m = fetch(c.lan.client(), 200);
    assert_eq!(errors(&m), 0, "{m:?}\n{}", directors(&c));
    for s in ["r3", "r4"] {
        let n = m.get(s).copied().unwrap_or(0);
        assert!(
            (60..=140).contains(&n),
            "{s} got {n} of 200: {m:?}\n{}",
            directors(&c)
        );
    }

    // Connections from fixed client ports, to reuse after r3 is gone: a client (or a NAT
    // in front of many) reusing the source port of a connection the director sent to r3
    // must reach r4, not a black hole (IPVS drops such packets unless
    // expire_nodest_conn is set, until its old entry times out: minutes).
    let pinned = fetch_from(c.lan.client(), (41000..41020).collect());
    let to_r3 = answered_by(&pinned, "r3");
    assert!(
        pinned.iter().all(|(_, who)| who == "r3" || who == "r4") && !to_r3.is_empty(),
        "{pinned:?}\n{}",
        directors(&c)
    );

    // r3's HTTP service stops: it must leave within delay_loop + retry × delay_before_retry
    // + connect_timeout = 6 + 3×3 + 3 = 18 s (plus scheduling slack).

    servers[0].take().unwrap().stop();
    let took = wait_rs(&c, 1, "192.0.2.13", false, Duration::from_secs(25));
    assert!(
        took <= Duration::from_millis(19_500),
        "removal took {took:?}"
    );
    eprintln!("r3 removed {took:?} after its HTTP service stopped");
    let table = std::process::Command::new(VIPD)
        .args(["status", "--control-socket"])
        .arg(c.socket_path(1))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!(
            "virtual_server 192.0.2.100 80 ({}, forwarding, quorum up)",
            backend()
        )) && table
            .lines()
            .any(|l| l.contains("192.0.2.13:80") && l.contains("DOWN"))
            && table
                .lines()
                .any(|l| l.contains("192.0.2.14:80") && l.contains(" up ")),
        "{table}"
    );
    let m = fetch(c.lan.client(), 100);
    assert_eq!(
        m.get("r4"),
        Some(&100),
        "after removal every request must reach r4: {m:?}\n{}",
        directors(&c)
    );

    let reused = fetch_from(c.lan.client(), to_r3);
    assert!(
        reused.iter().all(|(_, who)| who == "r4"),
        "reused client ports of connections to the removed r3: {reused:?}\n{}",
        directors(&c)
    );

    // It comes back at its first successful check (≤ one delay_loop).
    servers[0] = Some(HttpServer::start(c.lan.router(3), "r3"));
    wait_rs(&c, 1, "192.0.2.13", true, Duration::from_secs(8));
    let m = fetch(c.lan.client(), 100);
    assert_eq!(errors(&m), 0, "{m:?}\n{}", directors(&c));
    assert!(
        m.get("r3").copied().unwrap_or(0) > 20,
        "r3 is back but gets no traffic: {m:?}\n{}",
        directors(&c)
    );

    // The director leaves: the backup takes the VIP and the virtual server with it, and
    // the old director removes everything it installed.
    let nodest = |ns: &Netns| {
        ns.exec(&["cat", "/proc/sys/net/ipv4/vs/expire_nodest_conn"])
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    if backend() == "ipvs" {
        assert_eq!(
            nodest(c.lan.router(1)),
            "1",
            "vipd sets expire_nodest_conn while it runs"
        );
    }
    c.stop(1);
    if backend() == "ipvs" {
        assert_eq!(
            nodest(c.lan.router(1)),
            "0",
            "and puts the kernel's default back when it stops"
        );
    }
    c.wait_holders(spec.vip(), &[2], spec.takeover_timeout());
    wait_serving(&c, 10, Duration::from_secs(10));
    let m = fetch(c.lan.client(), 100);
    assert_eq!(errors(&m), 0, "{m:?}\n{}", directors(&c));
    assert!(
        m.contains_key("r3") && m.contains_key("r4"),
        "{m:?}\n{}",
        directors(&c)
    );
    let left = nft_ruleset(c.lan.router(1));
    assert!(
        !left.contains("vipd") && !left.contains("192.0.2.100"),
        "r1 left its table behind: {left}"
    );
    assert!(nft_ruleset(c.lan.router(2)).contains("192.0.2.100"));
}

/// Five routers for LVS-NAT: `directors` among r1/r2, HTTP servers on r3 ("r3"), r4
/// ("r4") and r5 (`r5_name`). `None` when not root.
fn nat_cluster(
    tag: &str,
    r5_name: &str,
    directors: &[usize],
) -> Option<(Cluster, [HttpServer; 3])> {
    let c = Cluster::new(5, tag)?;
    let servers = [
        HttpServer::start(c.lan.router(3), "r3"),
        HttpServer::start(c.lan.router(4), "r4"),
        HttpServer::start(c.lan.router(5), r5_name),
    ];
    nat_routes(&c, directors, &[3, 4, 5]);
    Some((c, servers))
}

/// `n` GETs are answered by r3 and r4 exactly `want` times, none failing.
fn assert_split(c: &Cluster, n: usize, want: (usize, usize)) {
    let m = fetch(c.lan.client(), n);
    assert_eq!(
        (m.get("r3"), m.get("r4")),
        (Some(&want.0), Some(&want.1)),
        "{m:?}\n{}",
        directors(c)
    );
}

/// A NAT virtual server on the VIP with TCP_CHECKs (1 s loop) on the given real servers
/// (`(last octet, alpha)`).
fn nat_vs(servers: &[(u8, bool)]) -> String {
    let mut out = String::from(
        "virtual_server 192.0.2.100 80 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n",
    );
    for (n, alpha) in servers {
        out += &format!(
            "    real_server 192.0.2.{n} 80 {{\n{}        TCP_CHECK {{\n            connect_timeout 1\n            retry 0\n        }}\n    }}\n",
            if *alpha { "        alpha\n" } else { "" }
        );
    }
    out + "}\n"
}

/// What director `i`'s status says of real server `addr`: (up, reason).
fn rs_state(c: &Cluster, i: usize, addr: &str) -> Option<(bool, String)> {
    let st = c.status(i)?;
    let rs = st["virtual_servers"][0]["real_servers"]
        .as_array()?
        .iter()
        .find(|r| r["addr"] == addr)?
        .clone();
    Some((rs["up"].as_bool()?, rs["reason"].as_str()?.to_string()))
}

/// Adding and removing real servers, and the whole virtual server, by reload.
#[test]
fn reload_changes_real_servers_in_place() {
    let _serial = serial();
    let Some((mut c, [_s3, s4, _s5])) = nat_cluster("lb-reload", "r5", &[1]) else {
        return;
    };
    let spec = lb_spec();
    let vrrp = spec.config(150);
    c.start_vipd_with(
        1,
        &format!("{vrrp}{}", nat_vs(&[(13, false), (14, false)])),
        &["--lb-backend", &backend()],
    );
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    wait_serving(&c, 10, Duration::from_secs(10));

    // r4 fails: down before the reload...
    s4.stop();
    wait_rs(&c, 1, "192.0.2.14", false, Duration::from_secs(10));
    // ...and still down right after it (its checker's verdict is kept), while r5 is added
    // with alpha: down until its first check passes.
    let (ok, out) = c.reload(
        1,
        &format!("{vrrp}{}", nat_vs(&[(13, false), (14, false), (15, true)])),
    );
    assert!(ok, "{out}");
    let (up, why) = rs_state(&c, 1, "192.0.2.14").expect("r4 in the status");
    assert!(!up && why.contains("kept across reload"), "{up} {why}");
    wait_rs(&c, 1, "192.0.2.15", true, Duration::from_secs(5));
    assert_eq!(rs_state(&c, 1, "192.0.2.14").map(|s| s.0), Some(false));
    let m = fetch(c.lan.client(), 40);
    assert_eq!(
        (m.get("r3"), m.get("r5"), errors(&m)),
        (Some(&20), Some(&20), 0),
        "{m:?}\n{}",
        directors(&c)
    );

    // r3 and r4 leave the file: only r5 is left in the kernel, also for a client reusing
    // the source port of a connection that went to r3.
    let pinned = fetch_from(c.lan.client(), (41100..41110).collect());
    let to_r3 = answered_by(&pinned, "r3");
    assert_eq!(to_r3.len(), 5, "{pinned:?}\n{}", directors(&c));
    let (ok, out) = c.reload(1, &format!("{vrrp}{}", nat_vs(&[(15, false)])));
    assert!(ok, "{out}");
    // The answer comes once the kernel has the new table (CI once caught it 2 ms early).
    let table = nft_ruleset(c.lan.router(1));
    assert!(
        table.contains("192.0.2.15") && !table.contains("192.0.2.13"),
        "{table}"
    );
    let m = fetch(c.lan.client(), 20);
    assert_eq!(m.get("r5"), Some(&20), "{m:?}\n{}", directors(&c));
    let reused = fetch_from(c.lan.client(), to_r3);
    assert!(
        reused.iter().all(|(_, who)| who == "r5"),
        "{reused:?}\n{}",
        directors(&c)
    );

    // No virtual server left: the balancer stops and removes its table; one coming back
    // starts it again.
    let (ok, out) = c.reload(1, &vrrp);
    assert!(ok, "{out}");
    let table = nft_ruleset(c.lan.router(1));
    assert!(!table.contains("192.0.2.100"), "{table}");
    assert_eq!(
        c.status(1).map(|s| s["virtual_servers"].clone()),
        Some(serde_json::json!([]))
    );
    let (ok, out) = c.reload(1, &format!("{vrrp}{}", nat_vs(&[(13, false)])));
    assert!(ok, "{out}");
    wait_serving(&c, 10, Duration::from_secs(10));
    let m = fetch(c.lan.client(), 10);
    assert_eq!(m.get("r3"), Some(&10), "{m:?}\n{}", directors(&c));
}

/// NAT with weights 3:1, a sorry server when everything is down, and quick timers.
/// The traffic counters of `vipd status --json` (read every second here) follow GETs
/// through a NAT virtual server with two real servers: client → server packets and bytes
/// on both backends, connections, replies and the connections open now on IPVS only
/// (nftables counts none of them).
#[test]
fn traffic_statistics_in_the_status() {
    let _serial = serial();
    let Some((mut c, [_s3, _s4, _s5])) = nat_cluster("lb-stats", "r5", &[1]) else {
        return;
    };
    let spec = lb_spec();
    let vrrp = spec.config(150).replacen(
        "global_defs {\n",
        "global_defs {\n    snmp_vs_stats_update_interval 1\n    snmp_rs_stats_update_interval 1\n",
        1,
    );
    c.start_vipd_with(
        1,
        &format!("{vrrp}{}", nat_vs(&[(13, false), (14, false)])),
        &["--lb-backend", &backend()],
    );
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    wait_serving(&c, 4, Duration::from_secs(10));
    let m = fetch(c.lan.client(), 10);
    assert_eq!(errors(&m), 0, "{m:?}\n{}", directors(&c));
    // [virtual server, r3, r4] × (conns, in packets, in bytes, out packets), once two reads
    // 2.5 s apart agree and show traffic (the counters were read after the last GET: the
    // balancer reads them at most once a second, so two reads 1.5 s apart could both
    // still show a read from before the GETs, as one CI run in the slow guest did).
    let read = |c: &Cluster| -> Option<Vec<[u64; 4]>> {
        let st = c.status(1)?;
        let vs = &st["virtual_servers"][0];
        let four = |s: &serde_json::Value| -> Option<[u64; 4]> {
            let n = |k: &str| s[k].as_u64();
            Some([
                n("conns")?,
                n("in_packets")?,
                n("in_bytes")?,
                n("out_packets")?,
            ])
        };
        let mut out = vec![four(&vs["stats"])?];
        for r in vs["real_servers"].as_array()? {
            out.push(four(&r["stats"])?);
        }
        Some(out)
    };
    let mut got = None;
    let ok = vipd_netns::wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let a = read(&c);
        std::thread::sleep(Duration::from_millis(2500));
        got = read(&c);
        a.is_some() && a == got && got.as_ref().is_some_and(|g| g[0][1] > 0)
    });
    let got = got.unwrap_or_default();
    assert!(ok && got.len() == 3, "{got:?}\n{}", directors(&c));
    let (vs, r3, r4) = (got[0], got[1], got[2]);
    let ipvs = backend() == "ipvs";
    // 14 GETs at least (wait_serving's and these), split between the two servers.
    assert!(vs[1] >= 14 * 3, "{got:?}");
    assert!(vs[2] >= 40 * vs[1], "{got:?}");
    for k in 0..4 {
        assert_eq!(
            vs[k],
            r3[k] + r4[k],
            "the virtual server sums its servers: {got:?}"
        );
    }
    assert!(r3[1] > 0 && r4[1] > 0, "both servers got traffic: {got:?}");
    if ipvs {
        assert!(vs[0] >= 14, "IPVS counts connections: {got:?}");
        assert!(vs[3] > 0, "and replies: {got:?}");
    } else {
        assert_eq!((vs[0], vs[3]), (0, 0), "nftables counts neither: {got:?}");
    }
    // The real servers' connections now (active, inactive, persistent): IPVS keeps the
    // closed GETs' in TIME_WAIT (inactive) for minutes; nftables keeps none.
    let st = c.status(1).unwrap_or_default();
    let now: Vec<[u64; 3]> = st["virtual_servers"][0]["real_servers"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let n = |k: &str| r["stats"][k].as_u64().unwrap_or(u64::MAX);
                    [
                        n("active_conns"),
                        n("inactive_conns"),
                        n("persistent_conns"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(now.len(), 2, "{st}");
    if ipvs {
        assert!(
            now.iter().map(|c| c[0] + c[1]).sum::<u64>() > 0,
            "IPVS counts the connections: {now:?}"
        );
        assert!(now.iter().all(|c| c[2] == 0), "no persistence: {now:?}");
    } else {
        assert!(now.iter().flatten().all(|n| *n == 0), "{now:?}");
    }
}

#[test]
fn nat_weights_and_sorry_server() {
    let _serial = serial();
    let Some((mut c, [_s3, s4, _s5])) = nat_cluster("lb-nat", "sorry", &[1, 2]) else {
        return;
    };
    // Every notify script appends its arguments to one log.
    let events = c.dir.join("lb-events.log");
    let script = c.dir.join("lb-event.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", events.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sh = script.display();
    let vs = format!(
        "
virtual_server 192.0.2.100 80 {{
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    omega
    quorum_up \"{sh} quorum-up\"
    quorum_down \"{sh} quorum-down\"
    sorry_server 192.0.2.15 80
    real_server 192.0.2.13 80 {{
        weight 3
        notify_down \"{sh} down 13\"
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
    real_server 192.0.2.14 80 {{
        weight 1
        notify_up \"{sh} up 14\"
        notify_down \"{sh} down 14\"
        HTTP_GET {{
            url {{
                path /
                status_code 200-299
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
}}
"
    );
    let spec = lb_spec();
    c.start_vipd_with(
        1,
        &format!("{}{vs}", spec.config(150)),
        &["--lb-backend", &backend()],
    );
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    wait_serving(&c, 10, Duration::from_secs(10));
    let m = fetch(c.lan.client(), 400);
    assert_eq!(errors(&m), 0, "{m:?}\n{}", directors(&c));
    let (r3, r4) = (
        m.get("r3").copied().unwrap_or(0),
        m.get("r4").copied().unwrap_or(0),
    );
    assert!(!m.contains_key("sorry"), "{m:?}\n{}", directors(&c));
    // wrr hands out connections in exact 3:1 turns.
    assert!(
        (290..=310).contains(&r3) && (90..=110).contains(&r4),
        "{m:?}\n{}",
        directors(&c)
    );

    // A reload that changes the virtual server applies in place: the new weights take
    // over at once, with no request failing.
    let conf = format!("{}{vs}", spec.config(150));
    let (ok, out) = c.reload(1, &conf.replace("weight 3", "weight 2"));
    assert!(ok && out.contains("load_balancer"), "{out}");
    assert_split(&c, 30, (20, 10));
    // One the backend cannot express is refused as a whole and changes nothing.
    if backend() == "nftables" {
        let (ok, out) = c.reload(1, &conf.replace("lb_algo wrr", "lb_algo wlc"));
        assert!(!ok && out.contains("nothing changed"), "{out}");
        assert_split(&c, 30, (20, 10));
    }
    // Back to weight 3, and a VRRP-only change besides.
    let (ok, out) = c.reload(1, &conf.replace("priority 150", "priority 140"));
    assert!(ok, "{out}");
    assert_split(&c, 40, (30, 10));

    // `vipd events --follow` reports real servers and quorum from here on.
    let mut follower = std::process::Command::new(VIPD)
        .args(["events", "--follow", "--control-socket"])
        .arg(c.socket_path(1))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = follower.stdout.take().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200));

    // Everything down: the sorry server takes all traffic.
    drop(_s3);
    s4.stop();
    wait_rs(&c, 1, "192.0.2.13", false, Duration::from_secs(6));
    wait_rs(&c, 1, "192.0.2.14", false, Duration::from_secs(6));
    let m = fetch(c.lan.client(), 50);
    assert_eq!(m.get("sorry"), Some(&50), "{m:?}\n{}", directors(&c));

    // r4 comes back: quorum regained, the sorry server leaves.
    let _s4 = HttpServer::start(c.lan.router(4), "r4");
    wait_rs(&c, 1, "192.0.2.14", true, Duration::from_secs(4));
    let m = fetch(c.lan.client(), 20);
    assert_eq!(m.get("r4"), Some(&20), "{m:?}\n{}", directors(&c));
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| seen.lock().unwrap().iter().any(f);
    let ok = vipd_netns::wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
        has(&|e| e["real_server"] == "192.0.2.13:80" && e["to"] == "down")
            && has(&|e| e["real_server"] == "192.0.2.14:80" && e["to"] == "up")
            && has(&|e| e["quorum"] == "down")
            && has(&|e| e["quorum"] == "up")
    });
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(ok, "events seen: {:?}", seen.lock().unwrap());

    // omega: stopping runs the down scripts of what is still up.
    c.stop(1);
    let log = std::fs::read_to_string(&events).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    for want in ["down 13", "down 14", "quorum-down", "up 14", "quorum-up"] {
        assert!(
            lines.contains(&want),
            "no `{want}` in the script log:\n{log}"
        );
    }
    // The last two: omega's down 14 and quorum-down (their order is not fixed).
    let mut tail = lines[lines.len() - 2..].to_vec();
    tail.sort();
    assert_eq!(tail, vec!["down 14", "quorum-down"], "{log}");
}

/// The two scenarios above again on the IPVS backend: directly when this kernel has
/// IPVS, otherwise inside the bench/vm guest (Debian's kernel under QEMU; slow but real).
#[test]
fn same_scenarios_on_ipvs() {
    run_on_ipvs(&[
        "nat_weights_and_sorry_server",
        "reload_changes_real_servers_in_place",
        "seed_dr_config_balances_removes_restores_and_fails_over",
    ]);
}

/// The traffic statistics from IPVS' own counters (IPVS_DEST_ATTR_STATS64), on their own:
/// one small guest run.
#[test]
fn traffic_statistics_on_ipvs() {
    run_on_ipvs(&["traffic_statistics_in_the_status"]);
}

/// Runs `tests` of this file again with `VIPD_TEST_LB_BACKEND=ipvs`: here when this
/// kernel has IPVS, otherwise inside the bench/vm guest; asserts every one ran and passed.
fn run_on_ipvs(tests: &[&str]) {
    use vipd_netns::vm;
    if std::env::var_os("VIPD_TEST_LB_BACKEND").is_some() || vm::in_vm() {
        return; // the inner run itself
    }
    if vipd_netns::skip_unless_root() {
        return;
    }
    let _serial = serial();
    let exe = std::env::current_exe().unwrap();
    let mut args = vec!["--exact", "--test-threads", "1", "--nocapture"];
    args.extend(tests);
    let Some((status, out)) = vm::rerun_natively_or_in_guest(
        vm::host_has_ipvs(),
        "IPVS",
        &exe,
        &args,
        &[("VIPD_TEST_LB_BACKEND", "ipvs")],
        &[Path::new(VIPD)],
        Duration::from_secs(900),
    ) else {
        return;
    };
    assert_eq!(status, Some(0), "{out}");
    for t in tests {
        assert!(
            out.contains(&format!("test {t} ... ")),
            "{t} did not run:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("test result: ok. {} passed", tests.len())),
        "{out}"
    );
}

/// `rs_init_notifies`: a real server up at start-up notifies UP at once (keepalived's
/// option; without it start-up is silent, see above); an `alpha` one starts down and
/// notifies UP when its first check passes.
#[test]
fn rs_init_notifies_announces_the_real_servers_up_at_start() {
    let _serial = serial();
    let Some((mut c, _servers)) = nat_cluster("lb-rsinit", "r5", &[1]) else {
        return;
    };
    let (fifo, log) = (c.dir.join("lvs.fifo"), c.dir.join("lvs.log"));
    let spec = lb_spec();
    let vrrp = spec.config(150).replacen(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    rs_init_notifies\n    lvs_notify_fifo {}\n    lvs_notify_fifo_script \"/bin/sh -c 'exec cat \\\"$1\\\" >> {}' reader\"\n",
            fifo.display(),
            log.display()
        ),
        1,
    );
    c.start_vipd_with(
        1,
        &format!("{vrrp}{}", nat_vs(&[(13, false), (14, true)])),
        &["--lb-backend", &backend()],
    );
    wait_lines(
        &c,
        &log,
        &[
            "RS [192.0.2.13]:tcp:80 [192.0.2.100]:tcp:80 UP".to_string(),
            "RS [192.0.2.14]:tcp:80 [192.0.2.100]:tcp:80 UP".to_string(),
        ],
    );
}

/// Waits until `log` has as many lines as `want`, then compares them.
fn wait_lines(c: &Cluster, log: &Path, want: &[String]) {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        read().lines().count() >= want.len()
    });
    assert!(ok, "{:?}\n{}", read(), c.logs());
    assert_eq!(read().lines().collect::<Vec<_>>(), want, "{}", c.logs());
}

/// keepalived's health-checker FIFO lines: `lvs_notify_fifo` (read by its
/// `lvs_notify_fifo_script`) gets exactly the `RS …` / `VS …` lines as real servers go
/// down and up and the virtual server loses and regains its quorum; `notify_fifo` gets
/// those and the VRRP lines; omega adds the lines of the way out when vipd stops.
#[test]
fn lvs_notify_fifo_gets_real_server_and_quorum_lines() {
    let _serial = serial();
    let Some((mut c, [s3, s4, _s5])) = nat_cluster("lb-fifo", "r5", &[1]) else {
        return;
    };
    let (lvs_fifo, lvs_log) = (c.dir.join("lvs.fifo"), c.dir.join("lvs.log"));
    let (all_fifo, all_log) = (c.dir.join("all.fifo"), c.dir.join("all.log"));
    let reader = |log: &Path| {
        format!(
            "\"/bin/sh -c 'exec cat \\\"$1\\\" >> {}' reader\"",
            log.display()
        )
    };
    let spec = lb_spec();
    let vrrp = spec.config(150).replacen(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    lvs_notify_fifo {}\n    lvs_notify_fifo_script {}\n    notify_fifo {}\n    notify_fifo_script {}\n",
            lvs_fifo.display(),
            reader(&lvs_log),
            all_fifo.display(),
            reader(&all_log),
        ),
        1,
    );
    let vs = nat_vs(&[(13, false), (14, false)])
        .replace("    protocol TCP\n", "    protocol TCP\n    omega\n");
    c.start_vipd_with(1, &format!("{vrrp}{vs}"), &["--lb-backend", &backend()]);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    wait_serving(&c, 10, Duration::from_secs(10));

    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    const RS13: &str = "RS [192.0.2.13]:tcp:80 [192.0.2.100]:tcp:80";
    const RS14: &str = "RS [192.0.2.14]:tcp:80 [192.0.2.100]:tcp:80";
    const VS: &str = "VS [192.0.2.100]:tcp:80";
    // Nothing at start-up: every real server starts up, the quorum holds.
    assert_eq!(read(&lvs_log), "");

    s4.stop();
    let mut want = vec![format!("{RS14} DOWN")];
    wait_lines(&c, &lvs_log, &want);
    // The last one down takes the quorum (default 1) with it.
    s3.stop();
    want.extend([format!("{RS13} DOWN"), format!("{VS} DOWN")]);
    wait_lines(&c, &lvs_log, &want);
    let s3 = HttpServer::start(c.lan.router(3), "r3");
    want.extend([format!("{RS13} UP"), format!("{VS} UP")]);
    wait_lines(&c, &lvs_log, &want);
    let _s4 = HttpServer::start(c.lan.router(4), "r4");
    want.push(format!("{RS14} UP"));
    wait_lines(&c, &lvs_log, &want);

    // omega: on the way out each live real server goes down, then the virtual server.
    c.stop(1);
    want.extend([
        format!("{RS13} DOWN"),
        format!("{RS14} DOWN"),
        format!("{VS} DOWN"),
    ]);
    wait_lines(&c, &lvs_log, &want);
    drop(s3);

    // notify_fifo had the same load-balancer lines, among the VRRP ones.
    let all = read(&all_log);
    let lb: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("RS ") || l.starts_with("VS "))
        .collect();
    assert_eq!(
        lb,
        want.iter().map(String::as_str).collect::<Vec<_>>(),
        "{all}"
    );
    assert!(all.contains("INSTANCE \"VI_1\" MASTER 150"), "{all}");
    assert!(!read(&lvs_log).contains("INSTANCE"));
}

/// A TCP echo server on port 7 of a namespace, for long-lived connections; it lives as
/// long as the namespace's thread (the test's end).
fn echo_server(ns: &Netns) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let _ = ns
        .enter_thread(move || {
            let l = TcpListener::bind("0.0.0.0:7").expect("bind :7");
            ready_tx.send(()).unwrap();
            for c in l.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut buf = [0u8; 512];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        })
        .unwrap();
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("echo server up");
}

/// `ipvsadm ARGS` on router `i`.
fn ipvsadm(c: &Cluster, i: usize, args: &[&str]) -> String {
    let mut a = vec!["ipvsadm"];
    a.extend(args);
    c.lan.router(i).exec(&a).unwrap_or_default()
}

/// One line there and back on `s`.
fn echo(s: &mut TcpStream, line: &str) -> Result<String, String> {
    s.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; line.len()];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `lvs_sync_daemon`: an established connection through the MASTER director (LVS-NAT)
/// keeps working after the other director takes over, because the MASTER's connection
/// entry reached the BACKUP: on nftables through conntrackd, committed with its NAT into
/// the new MASTER's kernel on takeover (run natively here, with `nf_conntrack_tcp_loose`
/// off so the new MASTER cannot pick the flow up on its own); on IPVS through the
/// kernel's sync daemon (`connection_sync_on_ipvs`). Without the entry the new MASTER
/// would answer the connection's next segment with a reset.
#[test]
fn nat_connection_survives_director_failover() {
    let _serial = serial();
    let Some(mut c) = Cluster::new(3, "lb-sync") else {
        return;
    };
    nat_routes(&c, &[1, 2], &[3]);
    echo_server(c.lan.router(3));
    let vs = "
virtual_server 192.0.2.100 7 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.0.2.13 7 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
";
    let spec = lb_spec();
    let conf = |prio| {
        spec.config(prio).replace(
            "    router_id test\n",
            "    router_id test\n    lvs_sync_daemon eth0 inst VI_1 id 7 maxlen 1400 port 8849 ttl 2 group 239.1.2.3\n",
        ) + vs
    };
    let args = ["--lb-backend", &backend()];
    let ipvs = backend() == "ipvs";
    if !ipvs {
        // Without a synced conntrack entry, r2 must not be able to carry the connection
        // on by itself (picking up a mid-stream TCP flow as new).
        for i in [1, 2] {
            c.lan
                .router(i)
                .sysctl("net.netfilter.nf_conntrack_tcp_loose", "0")
                .unwrap();
        }
    }
    c.start_vipd_with(1, &conf(150), &args);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    c.start_vipd_with(2, &conf(100), &args);
    let daemons = |c: &Cluster, i| ipvsadm(c, i, &["-L", "--daemon"]);
    if ipvs {
        // r2 is BACKUP: its backup sync daemon runs, r1's master one.
        let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            daemons(&c, 1).contains("master sync daemon (mcast=eth0, syncid=7, maxlen=1400, group=239.1.2.3, port=8849, ttl=2)")
                && daemons(&c, 2).contains("backup sync daemon (mcast=eth0, syncid=7, maxlen=1400, group=239.1.2.3, port=8849, ttl=2)")
        });
        assert!(
            ok,
            "r1: {}\nr2: {}\n{}",
            daemons(&c, 1),
            daemons(&c, 2),
            c.logs()
        );
        assert!(!daemons(&c, 1).contains("backup"), "{}", daemons(&c, 1));
        assert!(!daemons(&c, 2).contains("master"), "{}", daemons(&c, 2));
    }
    wait_rs(&c, 1, "192.0.2.13", true, Duration::from_secs(10));

    // A long-lived connection through r1.
    let addr = SocketAddr::new(VIP_V4.into(), 7);
    let mut conn = c
        .lan
        .client()
        .enter_thread(move || TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .unwrap()
        .join()
        .unwrap()
        .expect("connecting through r1");
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = conn.local_addr().unwrap();
    for i in 0..5 {
        let line = format!("before {i}\n");
        assert_eq!(echo(&mut conn, &line), Ok(line), "{}", directors(&c));
    }
    // Its entry reaches r2: IPVS' connection table (the backup daemon writes it there),
    // or conntrackd's external cache (committed to the kernel on takeover).
    let synced = |c: &Cluster, i: usize| {
        if ipvs {
            ipvsadm(c, i, &["-Lnc"])
        } else {
            let conf = format!("{}.conntrackd/conntrackd.conf", c.socket_path(i).display());
            // External cache (from the other director), then internal (this kernel's).
            ["-e", "-i"]
                .map(|o| {
                    c.lan
                        .router(i)
                        .exec(&["conntrackd", "-C", &conf, o])
                        .unwrap_or_else(|e| format!("{e}"))
                })
                .join("--- internal:\n")
        }
    };
    let entry = if ipvs {
        format!("{}:{}", local.ip(), local.port())
    } else {
        format!("sport={} dport=7", local.port())
    };
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        synced(&c, 2).contains(&entry)
    });
    assert!(ok, "r2 never got {entry}:\n{}\n{}", synced(&c, 2), c.logs());

    // The connection idles (its last ACKs settle, and the neighbours' ARP entries for
    // the VIP are older than Linux' 1 s `locktime`, so they take r2's gratuitous ARP).
    std::thread::sleep(Duration::from_millis(1500));
    // r1 goes; r2 takes over and switches its sync to MASTER.
    c.stop(1);
    c.wait_holders(spec.vip(), &[2], spec.takeover_timeout());
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        if ipvs {
            daemons(&c, 2).contains("master sync daemon (mcast=eth0, syncid=7, maxlen=1400, group=239.1.2.3, port=8849, ttl=2)")
                && !daemons(&c, 2).contains("backup")
        } else {
            c.log(2)
                .contains("conntrackd: MASTER: external cache committed")
        }
    });
    assert!(ok, "r2: {}\n{}", daemons(&c, 2), c.logs());
    if !ipvs {
        // conntrackd committed the connection into r2's conntrack table, NAT included
        // (`-i` lists the kernel's table as of the `-R` resync after the commit).
        let nat = format!(
            "src=192.0.2.50 dst=192.0.2.100 sport={} dport=7 src=192.0.2.13 dst=192.0.2.50 sport=7 dport={}",
            local.port(),
            local.port()
        );
        let table = synced(&c, 2);
        assert!(table.contains(&nat), "{table}\n{}", c.logs());
    }
    // The same connection goes on through r2.
    for i in 0..5 {
        let line = format!("after {i}\n");
        assert_eq!(
            echo(&mut conn, &line),
            Ok(line),
            "r2 synced:\n{}\n{}\n{}",
            synced(&c, 2),
            nft_ruleset(c.lan.router(2)),
            c.logs()
        );
    }
    // Stopping vipd stops its sync daemon.
    c.stop(2);
    if ipvs {
        assert!(
            !daemons(&c, 2).contains("sync daemon"),
            "{}",
            daemons(&c, 2)
        );
    } else {
        let conf = format!("{}.conntrackd/conntrackd.conf", c.socket_path(2).display());
        let st = c.lan.router(2).exec(&["conntrackd", "-C", &conf, "-s"]);
        assert!(
            st.is_err(),
            "conntrackd still answers after vipd stopped: {st:?}"
        );
        let tables = nft_ruleset(c.lan.router(2));
        assert!(!tables.contains("vipd_ctsync"), "{tables}");
    }
}

#[test]
fn connection_sync_on_ipvs() {
    run_on_ipvs(&["nat_connection_survives_director_failover"]);
}

/// A reload that changes `lvs_sync_daemon` restarts conntrackd with the new settings;
/// one that removes it stops conntrackd and its NAT anchor (nftables backend).
#[test]
fn reload_restarts_and_stops_conntrackd() {
    let _serial = serial();
    let Some(mut c) = Cluster::new(1, "lb-sync-reload") else {
        return;
    };
    let spec = lb_spec();
    let base = spec.config(150);
    let with = |line: &str| {
        base.replace(
            "    router_id test\n",
            &format!("    router_id test\n    {line}\n"),
        )
    };
    c.start_vipd_with(
        1,
        &with("lvs_sync_daemon eth0 inst VI_1"),
        &["--lb-backend", "nftables"],
    );
    let conf = format!("{}.conntrackd/conntrackd.conf", c.socket_path(1).display());
    let text = || std::fs::read_to_string(&conf).unwrap_or_default();
    let answers = |c: &Cluster| {
        c.lan
            .router(1)
            .exec(&["conntrackd", "-C", &conf, "-s"])
            .is_ok()
    };
    assert!(text().contains("Group 3780\n"), "{}", text());
    assert!(answers(&c), "{}", c.logs());
    assert!(nft_ruleset(c.lan.router(1)).contains("table ip vipd_ctsync"));

    let (ok, out) = c.reload(1, &with("lvs_sync_daemon eth0 inst VI_1 port 8849"));
    assert!(ok, "{out}");
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        text().contains("Group 8849\n") && answers(&c)
    });
    assert!(ok, "{}\n{}", text(), c.logs());

    let (ok, out) = c.reload(1, &base);
    assert!(ok, "{out}");
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        !answers(&c) && !nft_ruleset(c.lan.router(1)).contains("vipd_ctsync")
    });
    assert!(ok, "{}", c.logs());
    c.stop(1);
}

/// `net_namespace_ipvs`: the kernel table (nftables' `vipd` tables, or IPVS' services
/// and its sysctls) is in the named namespace, while the health checks run in vipd's:
/// the real server answers on router 1 only, yet it is up and forwarded to in the other
/// namespace. Stopping vipd empties that namespace's table.
#[test]
fn net_namespace_ipvs_puts_the_table_in_another_namespace() {
    let _serial = serial();
    let Some(mut c) = Cluster::new(1, "lb-netns") else {
        return;
    };
    echo_server(c.lan.router(1));
    let lbns = Netns::unique("lbns").unwrap();
    lbns.exec(&["ip", "link", "set", "lo", "up"]).unwrap();
    let ipvs = backend() == "ipvs";
    let table = |ns: &Netns| {
        if ipvs {
            ns.exec(&["ipvsadm", "-Ln"]).unwrap_or_default()
        } else {
            ns.exec(&["nft", "list", "ruleset"]).unwrap_or_default()
        }
    };
    let conf = format!(
        "net_namespace_ipvs {}\n\
         virtual_server 192.0.2.100 7 {{\n    delay_loop 1\n    lb_algo rr\n    real_server 192.0.2.11 7 {{\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n}}\n",
        lbns.name()
    );
    c.start_vipd_with(1, &conf, &["--lb-backend", &backend()]);
    wait_rs(&c, 1, "192.0.2.11", true, Duration::from_secs(10));
    let there = table(&lbns);
    let here = table(c.lan.router(1));
    if ipvs {
        assert!(
            there.contains("TCP  192.0.2.100:7 rr") && there.contains("-> 192.0.2.11:7"),
            "{there}"
        );
        assert!(!here.contains("192.0.2.100"), "{here}");
        // The expiry sysctls vipd tunes are the other namespace's too.
        let sysctl = |ns: &Netns| {
            ns.exec(&["cat", "/proc/sys/net/ipv4/vs/expire_nodest_conn"])
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(sysctl(&lbns), "1");
        assert_eq!(sysctl(c.lan.router(1)), "0");
    } else {
        assert!(
            there.contains("table ip vipd") && there.contains("192.0.2.100"),
            "{there}"
        );
        let slots = lbns
            .exec(&["nft", "list", "map", "ip", "vipd", "svc1_slots"])
            .unwrap();
        assert!(slots.contains("192.0.2.11"), "{slots}");
        assert!(!here.contains("vipd"), "{here}");
    }
    c.stop(1);
    let there = table(&lbns);
    assert!(!there.contains("192.0.2.100"), "{there}");
    if ipvs {
        assert_eq!(
            lbns.exec(&["cat", "/proc/sys/net/ipv4/vs/expire_nodest_conn"])
                .unwrap()
                .trim(),
            "0"
        );
    }
}

/// keepalived's global LVS keywords on IPVS (the guest when this kernel has none):
/// `lvs_flush` removes a service someone else made, `lvs_timeouts` reach the kernel,
/// `flag-3` and `persistence_engine sip` reach the service, `lvs_flush_on_stop VS`
/// deletes only vipd's services at stop and `lvs_flush_on_stop` flushes everything.
#[test]
fn ipvs_global_lvs_keywords() {
    if backend() != "ipvs" {
        return; // see lvs_keywords_on_ipvs
    }
    let _serial = serial();
    let Some(mut c) = Cluster::new(1, "lb-lvsglobal") else {
        return;
    };
    let r1 = c.lan.router(1);
    for foreign in ["203.0.113.50:80", "203.0.113.51:80"] {
        r1.exec(&["ipvsadm", "-A", "-t", foreign, "-s", "rr"])
            .unwrap();
    }
    let vss = "
virtual_server 192.0.2.100 5060 {
    protocol UDP
    lb_algo sh
    flag-3
    persistence_timeout 60
    persistence_engine sip
    real_server 192.0.2.12 5060 {
    }
}
virtual_server 192.0.2.100 5062 {
    protocol UDP
    lb_algo sh
    persistence_timeout 60
    real_server 192.0.2.12 5062 {
    }
}
virtual_server 192.0.2.100 80 {
    lb_algo rr
    real_server 192.0.2.12 80 {
    }
}
";
    let conf = format!(
        "global_defs {{\n    lvs_flush\n    lvs_flush_on_stop VS\n    lvs_timeouts tcp 901 tcpfin 121 udp 301\n}}\n{vss}"
    );
    c.start_vipd_with(1, &conf, &["--lb-backend", "ipvs"]);
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        ipvsadm(&c, 1, &["-Ln"]).contains("192.0.2.100:80")
    });
    let list = ipvsadm(&c, 1, &["-Ln"]);
    eprintln!("ipvsadm -Ln:\n{list}");
    assert!(ok, "{list}\n{}", c.logs());
    assert!(!list.contains("203.0.113."), "lvs_flush left them:\n{list}");
    let sip = list
        .lines()
        .find(|l| l.starts_with("UDP  192.0.2.100:5060"))
        .unwrap_or_default();
    assert!(
        sip.contains(" sh ") && sip.contains("persistent 60") && sip.contains("pe sip"),
        "{list}"
    );
    // ipvsadm writes the sh scheduler's flags in parentheses, naming only sh-fallback
    // and sh-port: `()` is a flag it has no name for (SCHED3), which the same service
    // without flag-3 does not show.
    assert!(sip.contains(" sh () "), "{list}");
    let plain = list
        .lines()
        .find(|l| l.starts_with("UDP  192.0.2.100:5062"))
        .unwrap_or_default();
    assert!(
        plain.contains(" sh persistent 60") && !plain.contains('(') && !plain.contains("pe "),
        "{list}"
    );
    let timeouts = ipvsadm(&c, 1, &["-Ln", "--timeout"]);
    assert!(
        timeouts.contains("Timeout (tcp tcpfin udp): 901 121 301"),
        "{timeouts}"
    );
    // At stop with `VS`: vipd's services go, one made meanwhile by someone else stays.
    ipvsadm(&c, 1, &["-A", "-t", "203.0.113.52:80", "-s", "rr"]);
    c.stop(1);
    let list = ipvsadm(&c, 1, &["-Ln"]);
    assert!(!list.contains("192.0.2.100"), "{list}");
    assert!(list.contains("203.0.113.52:80"), "{list}");

    // Without lvs_flush the other service stays at start; `lvs_flush_on_stop` alone
    // flushes it with vipd's at stop.
    let conf = format!("global_defs {{\n    lvs_flush_on_stop\n}}\n{vss}");
    c.start_vipd_with(1, &conf, &["--lb-backend", "ipvs"]);
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        ipvsadm(&c, 1, &["-Ln"]).contains("192.0.2.100:80")
    });
    let list = ipvsadm(&c, 1, &["-Ln"]);
    assert!(ok && list.contains("203.0.113.52:80"), "{list}");
    c.stop(1);
    let list = ipvsadm(&c, 1, &["-Ln"]);
    assert!(!list.contains("TCP") && !list.contains("UDP"), "{list}");
}

#[test]
fn lvs_keywords_on_ipvs() {
    run_on_ipvs(&[
        "ipvs_global_lvs_keywords",
        "net_namespace_ipvs_puts_the_table_in_another_namespace",
    ]);
}

/// On nftables `flag-3` starts with a warning at its line (no nftables scheduler reads
/// it) and `persistence_engine sip` is refused at its line, pointing at the IPVS
/// backend; `vipd check-config`, which does not know the backend, accepts both.
#[test]
fn nftables_answers_flag_3_and_persistence_engine_at_their_lines() {
    if backend() == "ipvs" {
        return;
    }
    let _serial = serial();
    let Some(mut c) = Cluster::new(1, "lb-pe") else {
        return;
    };
    let vs = |extra: &str| {
        format!(
            "virtual_server 192.0.2.100 5060 {{\n    protocol UDP\n    lb_algo sh\n    persistence_timeout 60\n{extra}    real_server 192.0.2.12 5060 {{\n    }}\n}}\n"
        )
    };
    let flag3 = vs("    flag-3\n");
    c.start_vipd_with(1, &flag3, &["--lb-backend", "nftables"]);
    let conf = c.config_path(1).display().to_string();
    let log = c.log(1);
    assert!(
        log.contains(&format!(
            "{conf}:5:5: `flag-3` does nothing on the nftables backend"
        )),
        "{log}"
    );
    c.stop(1);

    let pe = vs("    persistence_engine sip\n");
    let file = c.dir.join("pe.conf");
    std::fs::write(&file, &pe).unwrap();
    let check = std::process::Command::new(VIPD)
        .args(["check-config", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let log = c.dir.join("pe.log");
    let mut p = c
        .lan
        .router(1)
        .spawn(
            [
                VIPD,
                "run",
                "-f",
                file.to_str().unwrap(),
                "--control-socket",
                c.dir.join("pe.sock").to_str().unwrap(),
                "--pid-file",
                c.dir.join("pe.pid").to_str().unwrap(),
                "--lb-backend",
                "nftables",
            ],
            &log,
        )
        .unwrap();
    let status = p.wait_timeout(Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.is_some_and(|s| !s.success()), "{text}");
    assert!(
        text.contains(&format!("{}:5:5: `persistence_engine sip`", file.display()))
            && text.contains("--lb-backend ipvs"),
        "{text}"
    );
    let tables = c.lan.router(1).exec(&["nft", "list", "tables"]).unwrap();
    assert!(!tables.contains("vipd"), "{tables}");
}

/// `lvs_timeouts` on nftables: the NAT services' `ct timeout` policy follows the file
/// at start and through reloads (a changed value replaces the policy, a removed keyword
/// removes it). IPVS' side is in `ipvs_global_lvs_keywords`.
#[test]
fn lvs_timeouts_follow_reloads_on_nftables() {
    if backend() == "ipvs" {
        return;
    }
    let _serial = serial();
    let Some(mut c) = Cluster::new(1, "lb-timeouts") else {
        return;
    };
    let vs = "virtual_server 192.0.2.100 80 {\n    lb_algo rr\n    real_server 192.0.2.12 80 {\n    }\n}\n";
    let with = |t: &str| format!("global_defs {{\n    lvs_timeouts {t}\n}}\n{vs}");
    let table = |c: &Cluster| {
        c.lan
            .router(1)
            .exec(&["nft", "list", "table", "ip", "vipd"])
            .unwrap_or_default()
    };
    c.start_vipd_with(1, &with("tcp 77"), &["--lb-backend", "nftables"]);
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        table(&c).contains("ct timeout set \"timeout_tcp_77_0\"")
    });
    assert!(ok, "{}\n{}", table(&c), c.logs());
    assert!(
        table(&c).contains("policy = { established : 77 }"),
        "{}",
        table(&c)
    );

    let (ok, out) = c.reload(1, &with("tcp 88 tcpfin 9"));
    assert!(ok, "{out}");
    let t = table(&c);
    assert!(
        t.contains("ct timeout set \"timeout_tcp_88_9\"") && !t.contains("timeout_tcp_77_0"),
        "{t}"
    );
    let (ok, out) = c.reload(1, vs);
    assert!(ok, "{out}");
    let t = table(&c);
    assert!(
        t.contains("192.0.2.100") && !t.contains("ct timeout"),
        "{t}"
    );
}

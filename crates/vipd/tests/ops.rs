//! Operations against a running cluster in network namespaces: status and metrics
//! contents, reload (SIGHUP and `vipd reload`) without outage, `vipd events`, and a
//! control socket that only root may use.

mod common;

use common::{Cluster, Spec, VIPD};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use vipd_netns::Signal;

fn fast() -> Spec {
    Spec {
        advert_int: "0.01",
        ..Spec::v3()
    }
}

#[test]
fn status_and_metrics_describe_the_cluster() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "metrics") else {
        return;
    };
    c.start_vipd_with(1, &spec.config(200), &["--metrics", "127.0.0.1:9650"]);
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    std::thread::sleep(Duration::from_millis(300));
    let st = c.instance(1);
    assert_eq!(st["state"], "MASTER");
    assert_eq!(st["priority"], 200);
    assert_eq!(st["effective_priority"], 200);
    assert_eq!(st["vrid"], 51);
    assert_eq!(st["version"], 3);
    assert_eq!(st["vips"][0], "192.0.2.100/24");
    assert_eq!(st["master"], "192.0.2.11");
    assert!(st["announcements_sent"].as_u64().unwrap() >= 5, "{st}");
    assert!(
        st["last_transition"][1]
            .as_str()
            .unwrap()
            .contains("master-down"),
        "{st}"
    );
    let b = c.instance(2);
    assert_eq!(b["state"], "BACKUP");
    assert_eq!(b["master"], "192.0.2.11");
    assert!(b["adverts_received"].as_u64().unwrap() >= 2);

    let text = c
        .lan
        .router(1)
        .run(|| {
            let mut s = std::net::TcpStream::connect("127.0.0.1:9650").unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let labels = "instance=\"VI_1\",interface=\"eth0\",vrid=\"51\"";
    for want in [
        format!("vipd_instance_state{{{labels},state=\"MASTER\"}} 1"),
        format!("vipd_instance_priority{{{labels}}} 200"),
        format!("vipd_became_master_total{{{labels}}} 1"),
    ] {
        assert!(text.contains(&want), "missing `{want}`:\n{text}");
    }
    let sent: u64 = text
        .lines()
        .find(|l| l.starts_with("vipd_adverts_sent_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(sent >= 3, "{text}");
}

#[test]
fn reload_applies_changes_and_refuses_broken_configs() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "reload") else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(1, &spec.config(200));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    let reload = |c: &Cluster, i: usize| {
        let out = Command::new(VIPD)
            .args(["reload", "--control-socket"])
            .arg(c.socket_path(i))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // A broken file changes nothing and says so.
    std::fs::write(
        c.config_path(2),
        spec.config(100).replace("priority 100", "priorty 250"),
    )
    .unwrap();
    let (ok, out) = reload(&c, 2);
    assert!(!ok && out.contains("nothing changed"), "{out}");
    assert_eq!(c.instance(2)["priority"], 100);
    // Priority is changed in place: r2 (now 250) preempts r1.
    std::fs::write(c.config_path(2), spec.config(250)).unwrap();
    let (ok, out) = reload(&c, 2);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["updated"][0], "VI_1", "{v}");
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    assert_eq!(c.instance(2)["priority"], 250);
    // A new VRID restarts the instance; removing it releases the VIP.
    std::fs::write(
        c.config_path(2),
        spec.config(250)
            .replace("virtual_router_id 51", "virtual_router_id 52"),
    )
    .unwrap();
    let (ok, out) = reload(&c, 2);
    assert!(ok && out.contains("restarted"), "{out}");
    std::fs::write(
        c.config_path(2),
        spec.config(250)
            .replace("VI_1", "VI_9")
            .replace("virtual_router_id 51", "virtual_router_id 53"),
    )
    .unwrap();
    let (ok, out) = reload(&c, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok, "{out}");
    assert_eq!(
        (v["removed"][0].clone(), v["added"][0].clone()),
        ("VI_1".into(), "VI_9".into()),
        "{v}"
    );
    assert_eq!(
        c.status(2).unwrap()["instances"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn events_stream_transitions() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "events") else {
        return;
    };
    c.start_vipd(2, &spec.config(100));
    let mut follower = Command::new(VIPD)
        .args(["events", "--follow", "--control-socket"])
        .arg(c.socket_path(2))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
            if s.matches("\"to\":").count() >= 2 {
                break;
            }
        }
        s
    });
    c.wait_holders(spec.vip(), &[2], spec.takeover_timeout());
    c.start_vipd(1, &spec.config(200));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let out = reader.join().unwrap();
    let _ = follower.kill();
    let _ = follower.wait();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["to"], "MASTER", "{out}");
    assert_eq!(lines[1]["to"], "BACKUP", "{out}");
    assert_eq!(lines[1]["instance"], "VI_1");
    assert!(
        lines[1]["reason"].as_str().unwrap().contains("192.0.2.11"),
        "{out}"
    );
}

#[test]
fn control_socket_refuses_non_root_clients() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "ctlperm") else {
        return;
    };
    c.start_vipd(1, &spec.config(100));
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            VIPD,
            "status",
            "--control-socket",
        ])
        .arg(c.socket_path(1))
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a non-root client got an answer");
    assert!(err.contains("ermission denied"), "{err}");
    assert!(c.status(1).is_some(), "root still can");
    // Born 0600 (never wider, whatever the umask).
    let mode = std::fs::metadata(c.socket_path(1)).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // A mode loosened by mistake: the kernel lets the stranger connect, the daemon's
    // SO_PEERCRED check still refuses.
    std::fs::set_permissions(
        c.socket_path(1),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", VIPD])
        .args(["status", "--json", "--control-socket"])
        .arg(c.socket_path(1))
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a stranger got an answer");
    assert!(err.contains("permission denied: uid 65534"), "{err}");
    assert!(c.log(1).contains("refused a connection"), "{}", c.log(1));
}

/// GARP/NA send errors are counted by errno and shown in `vipd status --json` and the
/// metrics: the master's interface is deleted while its paced announcements are queued.
#[test]
fn announcement_send_errors_are_counted_in_status_and_metrics() {
    let spec = Spec::v3()
        .with("garp_master_repeat 5")
        .with("garp_interval 0.5");
    let Some(mut c) = Cluster::new(1, "ioerr") else {
        return;
    };
    c.start_vipd_with(1, &spec.config(100), &["--metrics", "127.0.0.1:9651"]);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    c.lan.router(1).ip(["link", "del", "eth0"]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let errors = loop {
        let st = c.status(1).expect("status");
        let e = st["io_errors"].as_array().cloned().unwrap_or_default();
        if e.iter().any(|e| e["op"] == "announce_send") {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no announce_send error in {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let e = errors.iter().find(|e| e["op"] == "announce_send").unwrap();
    let reason = e["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with('E'), "errno name: {e}");
    assert!(e["count"].as_u64().unwrap() >= 1, "{e}");
    let text = c
        .lan
        .router(1)
        .run(|| {
            let mut s = std::net::TcpStream::connect("127.0.0.1:9651").unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap();
    let want = format!("vipd_io_errors_total{{op=\"announce_send\",reason=\"{reason}\"}}");
    assert!(text.contains(&want), "missing `{want}`:\n{text}");
    assert!(
        c.log(1).contains("gratuitous ARP / NA on ifindex"),
        "{}",
        c.log(1)
    );
}

/// A daemon whose log reader has gone (stderr a pipe nobody reads, e.g. `vipd run |
/// tee` killed) keeps running: it still takes over, reloads and shuts down cleanly,
/// removing its VIP and its no_accept tables.
#[test]
fn a_closed_log_pipe_does_not_stop_the_daemon() {
    let spec = Spec::v3().with("no_accept");
    let Some(c) = Cluster::new(1, "logpipe") else {
        return;
    };
    let conf = c.config_path(1);
    std::fs::write(&conf, spec.config(100)).unwrap();
    let pid_file = c.dir.join("r1.pid");
    let mut child = Command::new("ip")
        .args(["netns", "exec", c.lan.router(1).name(), VIPD, "run", "-f"])
        .arg(&conf)
        .arg("--control-socket")
        .arg(c.socket_path(1))
        .arg("--pid-file")
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let signal = |s: Signal| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s).unwrap();
    // A reload logs (and prints the file's diagnostics, if any).
    signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new(VIPD)
        .args(["status", "--json", "--control-socket"])
        .arg(c.socket_path(1))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "vipd died after SIGHUP with no log reader"
    );
    let tables = || {
        c.lan
            .router(1)
            .exec(&["nft", "list", "tables"])
            .unwrap_or_default()
    };
    assert!(tables().contains("vipd_vrrp"));
    signal(Signal::SIGTERM);
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert_eq!(c.holders(spec.vip()), Vec::<usize>::new());
    assert!(!tables().contains("vipd_vrrp"));
}

/// The `/proc/PID/task/TID` directory of vipd's thread named `thread`.
fn thread_dir(pid: i32, thread: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == thread))
        .map(|t| t.path())
}

/// Field `n` (1-based, as proc(5) numbers them) of a named thread's `stat`.
fn thread_stat(pid: i32, thread: &str, n: usize) -> Option<i64> {
    let stat = std::fs::read_to_string(thread_dir(pid, thread)?.join("stat")).ok()?;
    // Fields after the parenthesised command name start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3)?.parse().ok()
}

/// A line of a named thread's `status` (`Cpus_allowed_list:` ...), trimmed.
fn thread_status(pid: i32, thread: &str, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(thread_dir(pid, thread)?.join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
}

/// `vrrp_cpu_affinity` / `checker_cpu_affinity` pin the protocol / checker thread,
/// `vrrp_rlimit_rttime` / `bfd_rlimit_rttime` set the process's RLIMIT_RTTIME (the
/// larger that applies to a real-time thread; soft limit half of it, as keepalived),
/// and `max_auto_priority` raises the protocol thread's SCHED_RR priority by one when its timers run later than `min_auto_priority_delay` (here: vipd stopped
/// for 400 ms).
#[test]
fn thread_cpu_affinity_rttime_and_auto_priority() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "autoprio") else {
        return;
    };
    // SAFETY: sysconf has no preconditions.
    let last_cpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } - 1;
    let conf = spec.config(100).replace(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    vrrp_cpu_affinity 0\n    checker_cpu_affinity {last_cpu}\n    \
             vrrp_rt_priority 10\n    vrrp_rlimit_rttime 200000\n    \
             bfd_rt_priority 5\n    bfd_rlimit_rttime 300000\n    \
             max_auto_priority 20\n    min_auto_priority_delay 100000\n"
        ),
    ) + "virtual_server 192.0.2.100 80 {\n    delay_loop 1\n    lb_kind NAT\n    \
         real_server 192.0.2.50 9 {\n        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n}\n";
    c.start_vipd_with(1, &conf, &["--lb-backend", "nftables"]);
    let pid = c.pid(1);
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        thread_dir(pid, "vipd-check").is_some()
    });
    assert!(ok, "no vipd-check thread\n{}", c.log(1));
    let cpus = |t| thread_status(pid, t, "Cpus_allowed_list:");
    assert_eq!(cpus("vipd-vrrp").as_deref(), Some("0"));
    assert_eq!(cpus("vipd-check"), Some(last_cpu.to_string()));
    // Only the configured threads are pinned.
    assert_ne!(
        cpus("vipd-log").as_deref(),
        Some("0"),
        "{:?}",
        cpus("vipd-log")
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let rt = limits
        .lines()
        .find(|l| l.starts_with("Max realtime timeout"))
        .unwrap();
    assert_eq!(
        rt.split_whitespace().collect::<Vec<_>>()[3..5],
        ["150000", "300000"],
        "{rt}"
    );
    // policy (field 41) SCHED_RR = 2, rt_priority (field 40).
    assert_eq!(thread_stat(pid, "vipd-vrrp", 41), Some(2));
    assert_eq!(thread_stat(pid, "vipd-vrrp", 40), Some(10));
    assert_eq!(thread_stat(pid, "vipd-check", 41), Some(0));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    c.signal(1, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(400));
    c.signal(1, Signal::SIGCONT);
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        thread_stat(pid, "vipd-vrrp", 40) == Some(11)
    });
    assert!(
        ok,
        "rt_priority {:?}\n{}",
        thread_stat(pid, "vipd-vrrp", 40),
        c.log(1)
    );
    assert!(
        c.log(1)
            .contains("SCHED_RR priority 11 (max_auto_priority)"),
        "{}",
        c.log(1)
    );
    // The checker thread is not raised (keepalived raises its checker process too).
    assert_eq!(thread_stat(pid, "vipd-check", 41), Some(0));
}

/// `startup_script` runs (and is waited for) before anything starts: it sees no VIP and
/// finishes before vipd reports itself started; `shutdown_script` runs after
/// everything stopped: the VIP is gone when it looks. A startup script that outlives
/// `startup_script_timeout` is killed and vipd starts anyway.
#[test]
fn startup_and_shutdown_scripts_run_around_the_daemon() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "hooks") else {
        return;
    };
    let dir = c.dir.path().to_path_buf();
    let script = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let start = script(
        "start.sh",
        &format!("ip -o addr show dev eth0 > {}/startup.addrs", dir.display()),
    );
    let stop = script(
        "stop.sh",
        &format!(
            "ip -o addr show dev eth0 > {}/shutdown.addrs",
            dir.display()
        ),
    );
    let conf = spec.config(100).replace(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    startup_script {}\n    shutdown_script \"{}\"\n    shutdown_script_timeout 5\n",
            start.display(),
            stop.display()
        ),
    );
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let log = c.log(1);
    let done = log
        .find("startup_script: `")
        .expect("startup_script logged");
    assert!(log[done..].contains("` done"), "{log}");
    assert!(done < log.find("vipd started").unwrap(), "{log}");
    let vip = spec.vip().to_string();
    let before = std::fs::read_to_string(dir.join("startup.addrs")).unwrap();
    assert!(before.contains("192.0.2.11"), "{before}");
    assert!(!before.contains(&vip), "{before}");
    assert!(!dir.join("shutdown.addrs").exists());
    assert!(c.stop(1).unwrap().success());
    let after = std::fs::read_to_string(dir.join("shutdown.addrs")).unwrap();
    assert!(after.contains("192.0.2.11"), "{after}");
    assert!(!after.contains(&vip), "{after}");

    // A startup script that hangs is killed after its timeout.
    let hang = script("hang.sh", "sleep 60");
    let conf = spec.config(100).replace(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    startup_script {}\n    startup_script_timeout 1\n",
            hang.display()
        ),
    );
    let t0 = std::time::Instant::now();
    c.start_vipd(1, &conf);
    c.wait_holders(
        spec.vip(),
        &[1],
        spec.takeover_timeout() + Duration::from_secs(1),
    );
    assert!(t0.elapsed() >= Duration::from_secs(1));
    assert!(
        c.log(1)
            .contains("still running after 1s (startup_script_timeout): killed"),
        "{}",
        c.log(1)
    );
}

/// A file as router 1 sees it (its network namespace's `/proc/sys/net`), trimmed.
fn router_file(c: &Cluster, path: &str) -> String {
    c.lan
        .router(1)
        .exec(&["cat", path])
        .unwrap()
        .trim()
        .to_string()
}

/// `promote_secondaries` sets the interface's sysctl while vipd runs (so removing the
/// subnet's primary address promotes the VIP instead of taking it away) and resets it
/// when vipd stops, as keepalived does.
#[test]
fn promote_secondaries_sets_the_interface_sysctl_while_running() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "promote") else {
        return;
    };
    let sysctl = |c: &Cluster| router_file(c, "/proc/sys/net/ipv4/conf/eth0/promote_secondaries");
    assert_eq!(sysctl(&c), "0");
    c.start_vipd(1, &spec.clone().with("promote_secondaries").config(100));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    assert_eq!(sysctl(&c), "1", "{}", c.log(1));
    // The effect: the primary 192.0.2.11/24 goes, the VIP (a secondary) stays.
    c.lan
        .router(1)
        .exec(&["ip", "addr", "del", "192.0.2.11/24", "dev", "eth0"])
        .unwrap();
    assert_eq!(c.holders(spec.vip()), [1]);
    assert!(c.stop(1).unwrap().success());
    assert_eq!(sysctl(&c), "0", "reset at stop");
}

/// `disable_local_igmp`: `net.ipv4.igmp_link_local_mcast_reports` is 0 while vipd
/// runs and back to 1 after it stops, as keepalived does.
#[test]
fn disable_local_igmp_switches_the_sysctl_while_running() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "igmp") else {
        return;
    };
    let sysctl = |c: &Cluster| router_file(c, "/proc/sys/net/ipv4/igmp_link_local_mcast_reports");
    assert_eq!(sysctl(&c), "1");
    let conf = spec
        .config(100)
        .replace("global_defs {\n", "global_defs {\n    disable_local_igmp\n");
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    assert_eq!(sysctl(&c), "0", "{}", c.log(1));
    assert!(c.stop(1).unwrap().success());
    assert_eq!(sysctl(&c), "1", "restored at stop");
}

/// `reload_file`: the running configuration's reload file is removed once a reload has
/// read the files (the default one sits next to the pid file), so an update process can
/// wait for it; a reload that changes `reload_file` uses the new one next time.
#[test]
fn reload_file_is_removed_when_a_reload_has_read_the_files() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "reloadfile") else {
        return;
    };
    let dir = c.dir.path().to_path_buf();
    let with = |line: &str| {
        spec.config(100)
            .replace("global_defs {\n", &format!("global_defs {{\n    {line}\n"))
    };
    c.start_vipd(1, &with("reload_file"));
    let default = dir.join("keepalived.reload");
    let explicit = dir.join("update.lock");
    std::fs::write(&default, "updating").unwrap();
    let (ok, out) = c.reload(1, &with(&format!("reload_file {}", explicit.display())));
    assert!(ok, "{out}");
    assert!(
        !default.exists(),
        "default reload_file not removed\n{}",
        c.log(1)
    );
    std::fs::write(&explicit, "updating").unwrap();
    let (ok, out) = c.reload(1, &with(&format!("reload_file {}", explicit.display())));
    assert!(ok, "{out}");
    assert!(!explicit.exists(), "{}", c.log(1));
    // An invalid configuration is read too: the file goes all the same.
    std::fs::write(&explicit, "updating").unwrap();
    let (ok, _) = c.reload(1, "garbage_keyword\n");
    assert!(!ok);
    assert!(!explicit.exists());
}

/// `net_namespace NAME`: vipd started in another namespace (the client's) moves into
/// `NAME` (router 1's) before anything else, so its VIP, sockets and interface facts
/// are router 1's.
#[test]
fn net_namespace_runs_vipd_inside_the_named_namespace() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "netns") else {
        return;
    };
    let conf_path = c.dir.join("r1.conf");
    let conf = format!(
        "net_namespace {}\n{}",
        c.lan.router(1).name(),
        spec.config(100)
    );
    std::fs::write(&conf_path, conf).unwrap();
    let socket = c.socket_path(1);
    let args: Vec<String> = [
        common::VIPD,
        "run",
        "-f",
        &conf_path.display().to_string(),
        "--control-socket",
        &socket.display().to_string(),
        "--pid-file",
        &c.dir.join("r1.pid").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proc = c.lan.client().spawn(&args, c.dir.join("r1.log")).unwrap();
    c.daemons[0] = Some(common::Daemon::Vipd { proc, socket });
    c.wait_holders(
        spec.vip(),
        &[1],
        spec.takeover_timeout() + Duration::from_secs(2),
    );
    let on_client = c.lan.client().exec(&["ip", "-o", "addr", "show"]).unwrap();
    assert!(!on_client.contains("192.0.2.100"), "{on_client}");
    assert!(c.log(1).contains("running in it"), "{}", c.log(1));
    assert!(c.stop(1).unwrap().success());
}

/// `reload_time_file`: vipd reloads at the time the file names (here 2 s ahead, UTC)
/// and then removes the file.
#[test]
fn reload_time_file_reloads_at_the_time_it_names() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "reloadat") else {
        return;
    };
    let at_file = c.dir.join("reload.at");
    let conf = |prio: u8| {
        spec.config(prio).replace(
            "global_defs {\n",
            &format!(
                "global_defs {{\n    reload_time_file {}\n",
                at_file.display()
            ),
        )
    };
    c.start_vipd(1, &conf(100));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    std::fs::write(c.config_path(1), conf(120)).unwrap();
    let when = std::time::SystemTime::now() + Duration::from_secs(2);
    let secs = when
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 86_400;
    let line = format!(
        "{:02}:{:02}:{:02}Z\n",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    std::fs::write(&at_file, &line).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.instance(1)["priority"], 100, "not before the time");
    let ok = vipd_netns::wait_for(Duration::from_secs(6), Duration::from_millis(50), || {
        c.instance(1)["priority"] == 120
    });
    assert!(ok, "{line}{}", c.log(1));
    assert!(!at_file.exists(), "removed after the reload");
}

/// keepalived's process tuning on vipd's threads: `vrrp_priority` / `checker_priority`
/// are the protocol / checker threads' nice values, `vrrp_no_swap` locks the memory,
/// `umask` is the process's.
#[test]
fn process_tuning_keywords_apply_to_the_right_threads() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "tuning") else {
        return;
    };
    let conf = spec.config(100).replace(
        "global_defs {\n",
        "global_defs {\n    vrrp_priority -5\n    checker_priority 5\n    vrrp_no_swap\n    umask IRWXG|IRWXO\n",
    ) + "virtual_server 192.0.2.100 80 {\n    delay_loop 1\n    lb_kind NAT\n    \
         real_server 192.0.2.50 9 {\n        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n}\n";
    c.start_vipd_with(1, &conf, &["--lb-backend", "nftables"]);
    let pid = c.pid(1);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("Umask:"), "0077");
    let locked: u64 = field("VmLck:").trim_end_matches(" kB").parse().unwrap();
    assert!(locked > 0, "VmLck {locked} kB");
    // nice of each named thread (/proc/PID/task/TID/stat, field 19).
    let nice_of = |thread: &str| thread_stat(pid, thread, 19);
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        nice_of("vipd-check").is_some()
    });
    assert!(ok, "no vipd-check thread\n{}", c.log(1));
    assert_eq!(nice_of("vipd-vrrp"), Some(-5));
    assert_eq!(nice_of("vipd-check"), Some(5));
}

/// An instance restarted by a reload (its addresses changed, or its interface was
/// re-created) reuses the finished slot of the one it replaces: 300 restarting reloads
/// leave vipd's memory where it was (it grew by ~4 kB a restart, found by `vipd bench
/// soak`).
#[test]
fn restarting_reloads_do_not_grow_memory() {
    let spec = fast();
    let Some(mut c) = Cluster::new(1, "reslot") else {
        return;
    };
    let other = spec.config(200).replace("192.0.2.100/24", "192.0.2.101/24");
    c.start_vipd(1, &spec.config(200));
    let rss = |c: &mut Cluster| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", c.pid(1))).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let reload = |c: &mut Cluster, n: usize| {
        for k in 0..n {
            let conf = if k % 2 == 0 {
                &other
            } else {
                &spec.config(200)
            };
            let (ok, out) = c.reload(1, conf);
            assert!(ok, "{out}");
            let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
            assert_eq!(report["restarted"], serde_json::json!(["VI_1"]), "{out}");
        }
    };
    reload(&mut c, 40);
    let before = rss(&mut c);
    reload(&mut c, 300);
    let after = rss(&mut c);
    assert!(
        after < before + 256,
        "VmRSS {before} → {after} kB over 300 restarting reloads"
    );
}

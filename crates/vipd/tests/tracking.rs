//! vrrp_script / track_script weights, track_interface, notify scripts — for real, in
//! network namespaces.

mod common;

use common::{add_ext_veth, Cluster, Spec};
use std::path::Path;
use std::time::Duration;

/// keepalived.conf of the classic "down file" check: weight -2 with priorities 100/99.
fn down_file_config(spec: &Spec, priority: u8, down: &Path, notify_log: &Path) -> String {
    let script = format!(
        "vrrp_script chk_down {{\n    script \"/bin/sh -c '[ ! -f {} ]'\"\n    interval 0.2\n    weight -2\n}}\n",
        down.display()
    );
    let notify = |state: &str| {
        format!(
            "notify_{} \"/bin/sh -c 'echo {} $0 >> {}' r{}\"",
            state.to_lowercase(),
            state,
            notify_log.display(),
            if priority == 100 { 1 } else { 2 }
        )
    };
    let instance = spec
        .clone()
        .with("track_script {\n        chk_down\n    }")
        .with(&notify("MASTER"))
        .with(&notify("BACKUP"))
        .with(&format!(
            "notify \"/bin/sh -c 'echo $0 $* >> {}.generic'\"",
            notify_log.display()
        ))
        .config(priority);
    format!("{script}{instance}")
}

#[test]
fn down_file_moves_the_vip_and_back_and_notifies() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "downfile") else {
        return;
    };
    let vip = spec.vip();
    let down = c.dir.join("down");
    let log = c.dir.join("notify.log");
    c.start_vipd(1, &down_file_config(&spec, 100, &down, &log));
    c.start_vipd(
        2,
        &down_file_config(&spec, 99, &down.with_extension("r2"), &log),
    );
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    assert_eq!(c.instance(1)["effective_priority"], 100);

    // Maintenance on r1: its priority drops to 98 < 99, the VIP moves to r2.
    std::fs::write(&down, "").unwrap();
    c.wait_holders(vip, &[2], Duration::from_secs(3));
    assert_eq!(c.instance(1)["effective_priority"], 98);
    assert_eq!(c.instance(1)["priority"], 100);
    // Status says why: the script is failing and costs 2.
    let st = c.status(1).unwrap();
    let lines = st["tracking"]["VI_1"].as_array().unwrap().clone();
    let chk = lines
        .iter()
        .find(|t| t["name"] == "chk_down")
        .expect("chk_down tracked");
    assert_eq!(
        (
            chk["kind"].as_str(),
            chk["state"].as_str(),
            chk["effect"].as_str()
        ),
        (Some("script"), Some("bad"), Some("-2"))
    );
    let eth0 = lines
        .iter()
        .find(|t| t["name"] == "eth0")
        .expect("own interface tracked");
    assert_eq!(
        (eth0["state"].as_str(), eth0["effect"].as_str()),
        (Some("good"), Some("+0"))
    );
    let table = std::process::Command::new(common::VIPD)
        .args(["status", "--control-socket"])
        .arg(c.socket_path(1))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("VI_1 tracks: interface `eth0` good (weight 0) → +0; script `chk_down` bad (weight -2) → -2"), "{table}");
    assert_eq!(c.instance(1)["state"], "BACKUP");

    // Maintenance over: r1 is back at 100 and preempts.
    std::fs::remove_file(&down).unwrap();
    c.wait_holders(vip, &[1], Duration::from_secs(3));
    assert_eq!(c.instance(1)["effective_priority"], 100);

    // Notify scripts ran, in order, with keepalived's arguments for `notify`.
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 4
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "{text}");
    let r1: Vec<&str> = text.lines().filter(|l| l.ends_with(" r1")).collect();
    // BACKUP at start-up, as keepalived also notifies.
    assert_eq!(
        r1,
        ["BACKUP r1", "MASTER r1", "BACKUP r1", "MASTER r1"],
        "{text}"
    );
    let generic = std::fs::read_to_string(format!("{}.generic", log.display())).unwrap_or_default();
    assert!(generic.contains("INSTANCE VI_1 MASTER 100"), "{generic}");
    assert!(generic.contains("INSTANCE VI_1 BACKUP 98"), "{generic}");
}

#[test]
fn track_interface_with_weight_zero_means_fault() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "trackif") else {
        return;
    };
    let vip = spec.vip();
    // A second, "uplink" interface on r1.
    c.lan
        .router(1)
        .ip(["link", "add", "up0", "type", "veth", "peer", "up1"])
        .unwrap();
    c.lan.router(1).ip(["link", "set", "up0", "up"]).unwrap();
    c.lan.router(1).ip(["link", "set", "up1", "up"]).unwrap();
    c.start_vipd(
        1,
        &spec
            .clone()
            .with("track_interface {\n        up0\n    }")
            .config(200),
    );
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    c.lan.router(1).ip(["link", "set", "up0", "down"]).unwrap();
    c.wait_holders(vip, &[2], spec.takeover_timeout());
    assert_eq!(c.instance(1)["state"], "FAULT");
    assert!(
        c.log(1).contains("FAULT because of interface `up0`"),
        "{}",
        c.log(1)
    );
    c.lan.router(1).ip(["link", "set", "up0", "up"]).unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout());
}

/// The instance's interface deleted and re-created (a new ifindex, as `vipd bench
/// soak`'s link-recreate fault does): vipd follows the new interface (it reloads to
/// rebind) instead of staying in FAULT on the old index.
#[test]
fn an_interface_deleted_and_recreated_is_followed() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "recreate") else {
        return;
    };
    let vip = spec.vip();
    c.start_vipd(1, &spec.config(200));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    let fds = |c: &mut Cluster| {
        std::fs::read_dir(format!("/proc/{}/fd", c.pid(1)))
            .unwrap()
            .count()
    };
    let before = fds(&mut c);
    for _ in 0..3 {
        c.lan.delete_link(1).unwrap();
        c.wait_holders(vip, &[2], spec.takeover_timeout());
        c.lan.recreate_link(1).unwrap();
        c.wait_holders(vip, &[1], spec.takeover_timeout());
        assert_eq!(c.instance(1)["state"], "MASTER");
    }
    assert!(c.log(1).contains("re-created (new ifindex"), "{}", c.log(1));
    c.assert_stable(vip, &[1], Duration::from_millis(500));
    assert_eq!(c.instance(2)["state"], "BACKUP");
    // The socket on the old interface is closed (each re-creation used to leak one).
    assert!(fds(&mut c) <= before, "fds {before} → {}", fds(&mut c));
}

#[test]
fn a_hanging_check_script_is_a_failure_and_harms_nothing() {
    let spec = Spec {
        advert_int: "0.01",
        ..Spec::v3()
    };
    let Some(mut c) = Cluster::new(2, "hang") else {
        return;
    };
    let vip = spec.vip();
    let script = "vrrp_script chk_hang {\n    script \"sleep 30\"\n    interval 0.3\n    timeout 0.2\n    weight -2\n}\n";
    let track = "track_script {\n        chk_hang\n    }";
    c.start_vipd(
        1,
        &format!("{script}{}", spec.clone().with(track).config(200)),
    );
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    // Every run hangs until killed at 0.2 s: a failure each time (200 - 2 = 198, still
    // the highest), while the 10 ms adverts go on undisturbed: no take-over by r2.
    c.assert_stable(vip, &[1], Duration::from_secs(2));
    let st = c.instance(1);
    assert_eq!(st["effective_priority"], 198, "{st}");
    assert_eq!(c.instance(2)["became_master"], 0, "{}", c.instance(2));
    assert!(c.log(1).contains("TimedOut"), "{}", c.log(1));
}

#[test]
fn track_file_value_times_weight_moves_the_vip() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "trackfile") else {
        return;
    };
    let vip = spec.vip();
    let file = c.dir.join("prio");
    let block = format!(
        "vrrp_track_file tf {{\n    file \"{}\"\n    init_file 0\n}}\n",
        file.display()
    );
    c.start_vipd(
        1,
        &format!(
            "{block}{}",
            spec.clone()
                .with("track_file {\n        tf weight -60\n    }")
                .config(200)
        ),
    );
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        "0",
        "init_file created it"
    );
    std::fs::write(&file, "2\n").unwrap(); // 200 - 2 × 60 = 80 < 100
    c.wait_holders(vip, &[2], spec.takeover_timeout() * 2);
    assert_eq!(c.instance(1)["effective_priority"], 80);
    let line = c.status(1).unwrap()["tracking"]["VI_1"][1].clone();
    assert_eq!(
        (line["state"].as_str(), line["effect"].as_str()),
        (Some("2"), Some("-120")),
        "{line}"
    );
    std::fs::write(&file, "0\n").unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
}

#[test]
fn track_process_quorum_moves_the_vip() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "trackproc") else {
        return;
    };
    let vip = spec.vip();
    // A process nobody else runs: `sleep <unique number>`.
    let arg = format!(
        "{}.{}",
        90000 + std::process::id() % 1000,
        std::process::id()
    );
    let block =
        format!("vrrp_track_process app {{\n    process sleep {arg}\n    weight -150\n}}\n");
    c.start_vipd(
        1,
        &format!(
            "{block}{}",
            spec.clone()
                .with("track_process {\n        app\n    }")
                .config(200)
        ),
    );
    c.start_vipd(2, &spec.config(100));
    // Not running: 200 - 150 = 50, r2 is master.
    c.wait_holders(vip, &[2], spec.takeover_timeout() * 2);
    assert_eq!(c.instance(1)["effective_priority"], 50);
    let mut app = std::process::Command::new("sleep")
        .arg(&arg)
        .spawn()
        .unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout() * 2);
    assert_eq!(c.instance(1)["effective_priority"], 200);
    app.kill().unwrap();
    let _ = app.wait();
    c.wait_holders(vip, &[2], spec.takeover_timeout() * 2);
}

/// A FIFO at `fifo` and the lines written to it, as they come. The second value is a
/// writer held open so the reader's open returns and EOF never comes early.
fn fifo_lines(fifo: &Path) -> (std::sync::mpsc::Receiver<String>, std::fs::File) {
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path in our work dir.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let reading = fifo.to_path_buf();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .open(&reading)
            .unwrap();
        for l in std::io::BufReader::new(f).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    let keep = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    (rx, keep)
}

#[test]
fn notify_fifo_gets_keepalived_lines() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "fifo") else {
        return;
    };
    let fifo = c.dir.join("state.fifo");
    let (rx, _keep) = fifo_lines(&fifo);
    let conf = spec.config(150).replace(
        "global_defs {\n",
        &format!("global_defs {{\n    notify_fifo {}\n", fifo.display()),
    );
    c.start_vipd(1, &conf);
    let lines: Vec<String> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "INSTANCE \"VI_1\" BACKUP 150",
            "INSTANCE \"VI_1\" MASTER 150"
        ]
    );
}

/// `vrrp_notify_priority_changes`: each move of the effective priority writes
/// `INSTANCE "VI_1" MASTER_PRIORITY <prio>` on the notify FIFO (keepalived's line); an
/// instance's `notify_priority_changes false` turns it off for that instance.
#[test]
fn notify_priority_changes_writes_priority_lines() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "prioline") else {
        return;
    };
    let fifo = c.dir.join("state.fifo");
    let (rx, _keep) = fifo_lines(&fifo);
    let file = c.dir.join("prio");
    let quiet = c.dir.join("quiet");
    let tracked = |name: &str, f: &std::path::Path| {
        format!(
            "vrrp_track_file {name} {{\n    file \"{}\"\n    init_file 0\n}}\n",
            f.display()
        )
    };
    // VI_2: the same instance on VRID 52, priority changes switched off.
    let base = spec
        .clone()
        .with("track_file {\n        tf weight -10\n    }")
        .config(150)
        .replace(
            "global_defs {\n",
            &format!(
                "global_defs {{\n    vrrp_notify_fifo {}\n    vrrp_notify_priority_changes\n",
                fifo.display()
            ),
        );
    let vi2 = base
        .split("vrrp_instance VI_1")
        .nth(1)
        .unwrap()
        .replace("virtual_router_id 51", "virtual_router_id 52")
        .replace("192.0.2.100/24", "192.0.2.101/24")
        .replace(
            "track_file {\n        tf weight -10\n    }",
            "track_file {\n        tq weight -10\n    }\n    notify_priority_changes false",
        );
    let conf = format!(
        "{}{}{base}vrrp_instance VI_2{vi2}",
        tracked("tf", &file),
        tracked("tq", &quiet)
    );
    c.start_vipd(1, &conf);
    let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut first: Vec<String> = (0..4).map(|_| next()).collect();
    first.sort();
    assert_eq!(
        first,
        [
            "INSTANCE \"VI_1\" BACKUP 150",
            "INSTANCE \"VI_1\" MASTER 150",
            "INSTANCE \"VI_2\" BACKUP 150",
            "INSTANCE \"VI_2\" MASTER 150",
        ],
        "{}",
        c.log(1)
    );
    std::fs::write(&quiet, "3\n").unwrap(); // VI_2: 120, but no line for it
    std::fs::write(&file, "2\n").unwrap(); // VI_1: 150 - 2 × 10 = 130
    assert_eq!(
        next(),
        "INSTANCE \"VI_1\" MASTER_PRIORITY 130",
        "{}",
        c.log(1)
    );
    std::fs::write(&file, "0\n").unwrap();
    assert_eq!(next(), "INSTANCE \"VI_1\" MASTER_PRIORITY 150");
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        c.status(1).is_some_and(|st| {
            st["instances"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["name"] == "VI_2" && i["effective_priority"] == 120)
        })
    });
    assert!(ok, "{}", c.log(1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.try_recv().ok(), None, "no line for VI_2");
}

/// `unicast_fault_no_peer` without any `unicast_peer`: the instance stays in FAULT
/// (keepalived: "Cannot use unicast without any peers - going to fault state") instead
/// of falling back to multicast, even when a tracked script is fine.
#[test]
fn unicast_fault_no_peer_keeps_the_instance_in_fault() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "nopeer") else {
        return;
    };
    let script = "vrrp_script ok {\n    script \"/bin/true\"\n    interval 0.2\n}\n";
    c.start_vipd(
        1,
        &format!(
            "{script}{}",
            spec.clone()
                .with("unicast_fault_no_peer\n    track_script {\n        ok\n    }")
                .config(100)
        ),
    );
    std::thread::sleep(spec.takeover_timeout());
    let st = c.instance(1);
    assert_eq!(st["state"], "FAULT", "{st}");
    assert_eq!(c.holders(spec.vip()), Vec::<usize>::new());
    assert!(
        c.log(1)
            .contains("unicast_fault_no_peer: no unicast_peer to send to"),
        "{}",
        c.log(1)
    );
}

/// `fifo_write_vrrp_states_on_reload`: a reload that changes no state writes the
/// sync group's and the instance's state to the notify FIFO again, as keepalived does.
#[test]
fn fifo_write_vrrp_states_on_reload_repeats_the_states() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "fiforeload") else {
        return;
    };
    let fifo = c.dir.join("state.fifo");
    let (rx, _keep) = fifo_lines(&fifo);
    let conf = format!(
        "vrrp_sync_group G1 {{\n    group {{\n        VI_1\n    }}\n}}\n{}",
        spec.config(100).replace(
            "global_defs {\n",
            &format!(
                "global_defs {{\n    notify_fifo {}\n    fifo_write_vrrp_states_on_reload\n",
                fifo.display()
            ),
        )
    );
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let drain = || {
        let mut got = Vec::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(700)) {
            got.push(l);
        }
        got
    };
    let started = drain();
    assert!(
        started.contains(&"INSTANCE \"VI_1\" MASTER 100".to_string()),
        "{started:?}"
    );
    c.signal(1, vipd_netns::Signal::SIGHUP);
    assert_eq!(
        drain(),
        ["GROUP \"G1\" MASTER 0", "INSTANCE \"VI_1\" MASTER 100"],
        "{}",
        c.log(1)
    );
}

/// An instance a reload removes notifies FAULT (keepalived's default), or DELETED
/// with `notify_deleted`, whose script runs too.
#[test]
fn notify_deleted_says_deleted_instead_of_fault() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "deleted") else {
        return;
    };
    let fifo = c.dir.join("state.fifo");
    let (rx, _keep) = fifo_lines(&fifo);
    let log = c.dir.join("deleted.log");
    let base = spec.config(100).replace(
        "global_defs {\n",
        &format!("global_defs {{\n    notify_fifo {}\n", fifo.display()),
    );
    let vi1 = base.split("vrrp_instance VI_1").nth(1).unwrap().to_string();
    let copy = |name: &str, vrid: u8, extra: &str| {
        format!(
            "vrrp_instance {name}{}",
            vi1.replace(
                "virtual_router_id 51",
                &format!("virtual_router_id {vrid}\n    {extra}")
            )
            .replace("192.0.2.100/24", &format!("192.0.2.{vrid}/24"))
        )
    };
    let full = format!(
        "{base}{}{}",
        copy(
            "VI_2",
            52,
            &format!(
                "notify_deleted \"/bin/sh -c 'echo $0 >> {}' gone\"",
                log.display()
            )
        ),
        copy("VI_3", 53, "")
    );
    c.start_vipd(1, &full);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let drain = || {
        let mut got = Vec::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(700)) {
            got.push(l);
        }
        got.sort();
        got
    };
    assert_eq!(drain().len(), 6, "BACKUP and MASTER of each");
    std::fs::write(c.config_path(1), &base).unwrap();
    c.signal(1, vipd_netns::Signal::SIGHUP);
    assert_eq!(
        drain(),
        [
            "INSTANCE \"VI_2\" DELETED 100",
            "INSTANCE \"VI_3\" FAULT 100"
        ],
        "{}",
        c.log(1)
    );
    let ran = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t == "gone\n")
    });
    assert!(ran, "notify_deleted script\n{}", c.log(1));
}

#[test]
fn sync_group_members_move_together() {
    // Two instances (IPv4 VRID 51, IPv4 VRID 52) in one sync group on each router: a
    // failing check on r1's VI_2 alone must move both VIPs to r2.
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "sync") else {
        return;
    };
    let down = c.dir.join("down");
    // The same instance again as VI_2, with VRID 52 and VIP .101.
    let second = |cfg: String| {
        let vi2 = cfg
            .split("vrrp_instance VI_1")
            .nth(1)
            .unwrap()
            .replace("virtual_router_id 51", "virtual_router_id 52")
            .replace("192.0.2.100/24", "192.0.2.101/24");
        format!("{cfg}vrrp_instance VI_2{vi2}")
    };
    let group = |notify_log: &std::path::Path| {
        format!(
            "vrrp_sync_group G1 {{\n    group {{\n        VI_1\n        VI_2\n    }}\n    notify \"/bin/sh -c 'echo $0 $* >> {}'\"\n}}\n",
            notify_log.display()
        )
    };
    let script = format!(
        "vrrp_script chk {{\n    script \"[ ! -f {} ]\"\n    interval 0.2\n}}\n",
        down.display()
    );
    let log = c.dir.join("group.log");
    let r1 = second(spec.config(200)).replace(
        "vrrp_instance VI_2 {\n",
        "vrrp_instance VI_2 {\n    track_script {\n        chk\n    }\n",
    );
    c.start_vipd(1, &format!("{script}{}{r1}", group(&log)));
    c.start_vipd(
        2,
        &format!(
            "{}{}",
            group(&c.dir.join("group2.log")),
            second(spec.config(100))
        ),
    );
    let vip2: std::net::IpAddr = "192.0.2.101".parse().unwrap();
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    c.wait_holders(vip2, &[1], spec.takeover_timeout());
    std::fs::write(&down, "").unwrap();
    // VI_2's check fails with weight 0 → FAULT → the whole group goes FAULT on r1.
    c.wait_holders(spec.vip(), &[2], spec.takeover_timeout() * 2);
    c.wait_holders(vip2, &[2], spec.takeover_timeout() * 2);
    let st = c.status(1).unwrap();
    for i in 0..2 {
        assert_eq!(st["instances"][i]["state"], "FAULT", "{st}");
    }
    std::fs::remove_file(&down).unwrap();
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout() * 2);
    c.wait_holders(vip2, &[1], spec.takeover_timeout() * 2);
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("GROUP G1 FAULT 0")
    });
    assert!(ok, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("GROUP G1 MASTER 0"));
}

#[test]
fn track_process_delay_holds_changes_back() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "procdelay") else {
        return;
    };
    let arg = format!(
        "{}.{}",
        80000 + std::process::id() % 1000,
        std::process::id()
    );
    let block = format!(
        "vrrp_track_process app {{\n    process sleep {arg}\n    weight -50\n    delay 1.5\n}}\n"
    );
    c.start_vipd(
        1,
        &format!(
            "{block}{}",
            spec.clone()
                .with("track_process {\n        app\n    }")
                .config(200)
        ),
    );
    assert!(vipd_netns::wait_for(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || c.instance(1)["effective_priority"] == 150
    ));
    let started = std::time::Instant::now();
    let mut app = std::process::Command::new("sleep")
        .arg(&arg)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        c.instance(1)["effective_priority"],
        150,
        "the quorum must hold for 1.5 s first"
    );
    assert!(vipd_netns::wait_for(
        Duration::from_secs(3),
        Duration::from_millis(20),
        || c.instance(1)["effective_priority"] == 200
    ));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    app.kill().unwrap();
    let _ = app.wait();
}

/// keepalived's `notify_* SCRIPT [username [groupname]]`: each script runs as its own
/// user and group; one without runs as vipd (root here).
#[test]
fn notify_scripts_run_as_their_own_user() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "notifyuser") else {
        return;
    };
    // Writable by `nobody`.
    let out = c.dir.join("ids");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let ids = |state: &str| {
        format!(
            "\"/bin/sh -c 'echo $(id -u) $(id -g) > {}/{state}'\"",
            out.display()
        )
    };
    let conf = spec
        .clone()
        .with(&format!("notify_backup {}", ids("backup")))
        .with(&format!("notify_master {} nobody nogroup", ids("master")))
        .config(100);
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let read = |state: &str| std::fs::read_to_string(out.join(state)).unwrap_or_default();
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        !read("master").is_empty() && !read("backup").is_empty()
    });
    assert!(ok, "scripts did not run:\n{}", c.log(1));
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    assert_eq!(
        read("master").trim(),
        format!("{} {}", nobody.uid, nogroup.gid)
    );
    assert_eq!(read("backup").trim(), "0 0");
}

/// `notify_fifo` with `vrrp_notify_fifo_script`: vipd creates the FIFO, starts the
/// script with the FIFO's name as its last argument, writes keepalived's lines to it,
/// and stops the script when it exits.
#[test]
fn notify_fifo_script_reads_the_state_lines() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "fifoscript") else {
        return;
    };
    let fifo = c.dir.join("notify.fifo");
    let log = c.dir.join("fifo.log");
    let conf = spec.config(100).replacen(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    vrrp_notify_fifo {}\n    vrrp_notify_fifo_script \"/bin/sh -c 'exec cat \\\"$1\\\" >> {}' reader\"\n",
            fifo.display(),
            log.display()
        ),
        1,
    );
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let got = |want: &str| {
        vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.contains(want))
        })
    };
    assert!(
        got("INSTANCE \"VI_1\" MASTER 100"),
        "{:?}\n{}",
        std::fs::read_to_string(&log),
        c.log(1)
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    c.stop(1);
    // The reader is gone with vipd: nothing holds the FIFO open any more.
    let readers = std::process::Command::new("pgrep")
        .args(["-f", &log.display().to_string()])
        .output()
        .unwrap();
    assert!(
        readers.stdout.is_empty(),
        "reader still running: {:?}",
        readers
    );
}

/// `notify_master_rx_lower_pri`, keepalived's split-brain recovery hook: r2 stops
/// hearing r1 (its VRRP input dropped), becomes MASTER too and advertises; r1, still
/// MASTER and still hearing r2, runs the script (without arguments) for r2's
/// lower-priority adverts and writes `MASTER_RX_LOWER_PRI` to `notify_fifo`. Once the
/// split heals, r2 hears r1's answer and yields.
#[test]
fn master_rx_lower_pri_runs_after_a_split_brain() {
    rx_lower_pri_split_brain(false, "rxlower");
}

/// The same with keepalived 2.4.3 as r1 (and vipd as r2): keepalived's script and FIFO
/// line are the ones vipd's test expects.
#[test]
fn keepalived_243_runs_master_rx_lower_pri_the_same_way() {
    if vipd_netns::Version::V2_4_3.require().is_none() {
        return;
    }
    rx_lower_pri_split_brain(true, "rxlower-ka");
}

/// r1 (priority 200, vipd or keepalived 2.4.3) with the script and `notify_fifo`; r2
/// (vipd, priority 100) loses r1's adverts for a while.
fn rx_lower_pri_split_brain(keepalived_r1: bool, tag: &str) {
    let spec = Spec::v3();
    let vip = spec.vip();
    let Some(mut c) = Cluster::new(2, tag) else {
        return;
    };
    let log = c.dir.join("rxlower.log");
    let (fifo, fifo_log) = (c.dir.join("notify.fifo"), c.dir.join("fifo.log"));
    // Script files, not `/bin/sh -c`: keepalived refuses a symbolic link (/bin/sh ->
    // dash) as a script path ("Wrong file type").
    let script = |name: &str, body: String| {
        let path = c.dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path
    };
    let lower = script(
        "lower.sh",
        format!("echo \"lower:$*:\" >> {}", log.display()),
    );
    let reader = script(
        "reader.sh",
        format!("exec cat \"$1\" >> {}", fifo_log.display()),
    );
    let r1 = spec
        .clone()
        .with(&format!("notify_master_rx_lower_pri {}", lower.display()))
        .config(200)
        .replacen(
            "global_defs {\n",
            &format!(
                "global_defs {{\n    notify_fifo {}\n    notify_fifo_script {}\n",
                fifo.display(),
                reader.display()
            ),
            1,
        );
    if keepalived_r1 {
        c.start_keepalived_version(1, &r1, vipd_netns::Version::V2_4_3);
    } else {
        c.start_vipd(1, &r1);
    }
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    c.start_vipd(2, &spec.config(100));
    let backup = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        c.status(2)
            .is_some_and(|s| s["instances"][0]["state"] == "BACKUP")
    });
    assert!(backup, "{}", c.logs());
    c.assert_stable(vip, &[1], Duration::from_secs(1));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    assert_eq!(read(&log), "", "no lower-priority advert yet");

    // The split: r2 drops every VRRP packet it receives.
    let r2 = c.lan.router(2);
    for cmd in [
        "add table ip split",
        "add chain ip split in { type filter hook input priority 0 ; }",
        "add rule ip split in ip protocol vrrp drop",
    ] {
        let args: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
        r2.exec(&args).unwrap();
    }
    c.wait_holders(vip, &[1, 2], spec.takeover_timeout());
    let got = |p: &Path, want: &str| {
        vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
            read(p).contains(want)
        })
    };
    assert!(got(&log, "lower::"), "{:?}\n{}", read(&log), c.logs());
    assert!(
        got(&fifo_log, "INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 200"),
        "{:?}\n{}",
        read(&fifo_log),
        c.logs()
    );
    if !keepalived_r1 {
        assert_eq!(c.instance(1)["state"], "MASTER");
    }
    // keepalived runs it for every such advert: r2 keeps advertising every 0.1 s.
    let ok = vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        read(&log).lines().count() >= 5
    });
    assert!(ok, "{:?}", read(&log));

    // Healed: r2 hears r1 again and gives the VIP back.
    r2.exec(&["nft", "delete", "table", "ip", "split"]).unwrap();
    c.wait_holders(vip, &[1], spec.takeover_timeout());
    assert_eq!(c.instance(2)["state"], "BACKUP");
}

/// `track_group`: a static address naming the group is put back when deleted (as
/// keepalived); when it cannot be (its interface is gone) the group's instance goes to
/// FAULT and the peer takes the VIP; the interface back, the address is restored and
/// the instance recovers.
#[test]
fn track_group_faults_the_instance_while_a_static_address_cannot_be_restored() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "trkgrp") else {
        return;
    };
    add_ext_veth(c.lan.router(1));
    let stat: std::net::IpAddr = "203.0.113.5".parse().unwrap();
    let statics = "track_group TG {\n    group {\n        VI_1\n    }\n}\n\
                   static_ipaddress {\n    203.0.113.5/24 dev ext0 track_group TG\n}\n\
                   static_routes {\n    198.51.100.0/24 dev ext0 track_group TG\n}\n";
    c.start_vipd(1, &format!("{statics}{}", spec.config(200)));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let has = |c: &Cluster| vipd_netns::has_address(c.lan.router(1), "ext0", stat);
    let route = |c: &Cluster| {
        let out = c.lan.router(1).ip(["route", "show", "198.51.100.0/24"]);
        out.unwrap_or_default().contains("dev ext0")
    };
    assert!(has(&c) && route(&c), "{}", c.log(1));

    // Deleted by someone else: put back.
    c.lan
        .router(1)
        .ip(["addr", "del", "203.0.113.5/24", "dev", "ext0"])
        .unwrap();
    assert!(
        vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
            has(&c) && route(&c)
        }),
        "{}",
        c.log(1)
    );
    assert!(c
        .log(1)
        .contains("restored deleted static address 203.0.113.5/24"));
    c.lan
        .router(1)
        .ip(["route", "del", "198.51.100.0/24"])
        .unwrap();
    assert!(
        vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || route(
            &c
        )),
        "{}",
        c.log(1)
    );
    assert!(c
        .log(1)
        .contains("restored deleted static route 198.51.100.0/24"));
    assert_eq!(c.instance(1)["state"], "MASTER");

    // Its interface gone: it cannot be restored, so VI_1 goes to FAULT.
    c.lan.router(1).ip(["link", "del", "ext0"]).unwrap();
    c.wait_holders(spec.vip(), &[2], spec.takeover_timeout());
    assert_eq!(c.instance(1)["state"], "FAULT", "{}", c.log(1));

    // The interface back (a new ifindex): vipd follows it, restores the address, and
    // VI_1 (priority 200) takes the VIP back.
    add_ext_veth(c.lan.router(1));
    c.wait_holders(spec.vip(), &[1], Duration::from_secs(10));
    assert!(
        vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || has(
            &c
        )),
        "{}",
        c.log(1)
    );
    assert_eq!(c.instance(1)["state"], "MASTER");
    assert_eq!(c.stop(1).and_then(|s| s.code()), Some(0));
    assert!(!has(&c) && !route(&c), "static lines removed at stop");
}

/// keepalived tracks the interface of a VIP written with another `dev`: the instance
/// goes to FAULT while it is down; with `no_track` on that VIP it stays MASTER.
#[test]
fn a_vips_other_interface_is_tracked_unless_no_track() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "viptrk") else {
        return;
    };
    add_ext_veth(c.lan.router(1));
    let one = spec.config(200).replace(
        "192.0.2.100/24\n",
        "192.0.2.100/24\n        203.0.113.20/32 dev ext0 no_track\n",
    );
    let two = spec
        .config(200)
        .split("vrrp_instance")
        .nth(1)
        .unwrap()
        .replace(" VI_1 ", " VI_2 ")
        .replace("virtual_router_id 51", "virtual_router_id 52")
        .replace(
            "192.0.2.100/24\n",
            "192.0.2.99/24\n        203.0.113.21/32 dev ext0\n",
        );
    c.start_vipd(1, &format!("{one}vrrp_instance{two}"));
    let state = |c: &Cluster, name: &str| {
        let st = c.status(1).expect("status");
        let inst = st["instances"].as_array().unwrap();
        let i = inst.iter().find(|i| i["name"] == name).unwrap();
        i["state"].as_str().unwrap().to_string()
    };
    let both = |c: &Cluster, a: &str, b: &str| state(c, "VI_1") == a && state(c, "VI_2") == b;
    assert!(
        vipd_netns::wait_for(spec.takeover_timeout(), Duration::from_millis(50), || {
            both(&c, "MASTER", "MASTER")
        }),
        "{}",
        c.log(1)
    );
    c.lan.router(1).ip(["link", "set", "ext0", "down"]).unwrap();
    assert!(
        vipd_netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
            both(&c, "MASTER", "FAULT")
        }),
        "VI_2 faults, VI_1 (no_track) stays: {}",
        c.log(1)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&c, "VI_1"), "MASTER");
    c.lan.router(1).ip(["link", "set", "ext0", "up"]).unwrap();
    assert!(
        vipd_netns::wait_for(spec.takeover_timeout(), Duration::from_millis(50), || {
            both(&c, "MASTER", "MASTER")
        }),
        "{}",
        c.log(1)
    );
}

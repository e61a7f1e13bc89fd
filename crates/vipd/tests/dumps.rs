//! keepalived's signal dumps (SIGUSR1 state, SIGUSR2 statistics, SIGRTMIN+2 JSON) in
//! the files `state_dump_file` / `stats_dump_file` / `json_dump_file` choose, their
//! JSON compared with keepalived 2.4.3's, and `config_save_dir` around a reload.

mod common;

use common::{Cluster, Daemon, Spec};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vipd_netns::{Keepalived, Version};

fn send(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
}

fn json_signal() -> i32 {
    libc::SIGRTMIN() + 2
}

/// The file's text once it exists (and is complete: vipd renames it into place).
fn wait_file(path: &Path, c: &Cluster) -> String {
    let ok = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        path.exists()
    });
    assert!(ok, "{} was not written\n{}", path.display(), c.logs());
    std::fs::read_to_string(path).unwrap()
}

fn json_file(path: &Path, c: &Cluster) -> Value {
    let text = wait_file(path, c);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// Spec's config with `lines` in `global_defs`.
fn with_globals(spec: &Spec, priority: u8, lines: &str) -> String {
    spec.config(priority)
        .replacen("global_defs {\n", &format!("global_defs {{\n{lines}"), 1)
}

#[test]
fn signals_write_state_stats_and_json_where_the_keywords_say() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "dumps") else {
        return;
    };
    let d = c.dir.path().to_path_buf();
    for sub in ["state1", "json1", "state2", "json2"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    // r1: directories for state and JSON (default names), a full path for the stats.
    let r1 = with_globals(
        &spec,
        200,
        &format!(
            "    state_dump_file {0}/state1/\n    stats_dump_file {0}/r1.stats\n    json_dump_file {0}/json1/\n",
            d.display()
        ),
    );
    // r2: the man page's spellings, JSON version 2, data_use_instance with `instance`
    // (inactive in vipd, hence --ignore-inactive), and a stats file it cannot write.
    let r2 = format!(
        "instance ka2\n{}",
        with_globals(
            &spec,
            100,
            &format!(
                "    state_file_location {0}/state2/\n    stats_file_location {0}/missing/r2.stats\n    json_file_location {0}/json2/out.json\n    json_version 2\n    data_use_instance\n",
                d.display()
            ),
        )
    );
    c.start_vipd(1, &r1);
    c.start_vipd_with(2, &r2, &["--ignore-inactive"]);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    std::thread::sleep(Duration::from_millis(500));
    let (p1, p2) = (c.pid(1), c.pid(2));
    for pid in [p1, p2] {
        send(pid, libc::SIGUSR1);
        send(pid, libc::SIGUSR2);
        send(pid, json_signal());
    }

    // r1, JSON version 1: keepalived's array of {"data", "stats"}.
    let v = json_file(&d.join("json1/keepalived.json"), &c);
    let list = v.as_array().expect("version 1 is an array");
    assert_eq!(list.len(), 1, "{v}");
    let data = &list[0]["data"];
    assert_eq!(data["iname"], "VI_1", "{v}");
    assert_eq!(data["state"], 2, "MASTER is 2: {v}");
    assert_eq!(data["base_priority"], 200, "{v}");
    assert_eq!(data["effective_priority"], 200, "{v}");
    assert_eq!(data["vrid"], 51, "{v}");
    assert_eq!(data["version"], 3, "{v}");
    assert_eq!(data["ifp_ifname"], "eth0", "{v}");
    assert_eq!(data["vipset"], true, "{v}");
    assert_eq!(
        data["vips"],
        serde_json::json!(["192.0.2.100/24 dev eth0 scope global set"]),
        "{v}"
    );
    assert!(
        list[0]["stats"]["advert_sent"].as_u64().unwrap() >= 3,
        "{v}"
    );
    assert_eq!(list[0]["stats"]["become_master"], 1, "{v}");

    let state = wait_file(&d.join("state1/keepalived.data"), &c);
    for want in [
        "VRRP Instance = VI_1",
        "State = MASTER",
        "Priority = 200",
        "192.0.2.100/24 dev eth0 scope global set",
    ] {
        assert!(state.contains(want), "{want:?} missing:\n{state}");
    }
    let stats = wait_file(&d.join("r1.stats"), &c);
    assert!(
        stats.starts_with("VRRP Instance: VI_1\n  Advertisements:\n"),
        "{stats}"
    );
    assert!(stats.contains("  Became master: 1\n"), "{stats}");

    // r2, JSON version 2 under the full path; state named with the instance.
    let v = json_file(&d.join("json2/out.json"), &c);
    let data = &v["vrrp"][0]["data"];
    assert_eq!(data["iname"], "VI_1", "{v}");
    assert_eq!(data["state"], 1, "BACKUP is 1: {v}");
    assert_eq!(data["base_priority"], 100, "{v}");
    assert_eq!(
        data["vips"][0], "192.0.2.100/24 dev eth0 scope global",
        "{v}"
    );
    assert!(
        v["vrrp"][0]["stats"]["advert_rcvd"].as_u64().unwrap() >= 3,
        "{v}"
    );
    let state = wait_file(&d.join("state2/keepalived.ka2.data"), &c);
    assert!(state.contains("State = BACKUP"), "{state}");
    // The unwritable stats file (named with the instance too) is logged; vipd goes on.
    let logged = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        c.log(2).contains(&format!(
            "cannot write {}/missing/r2.ka2.stats: No such file",
            d.display()
        ))
    });
    assert!(logged, "{}", c.log(2));
    assert!(c.status(2).is_some(), "vipd r2 still answers");

    // A second dump replaces the first; no temporary files are left behind.
    std::fs::write(d.join("state1/keepalived.data"), "old").unwrap();
    send(p1, libc::SIGUSR1);
    let ok = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        std::fs::read_to_string(d.join("state1/keepalived.data")).is_ok_and(|t| t != "old")
    });
    assert!(ok, "{}", c.log(1));
    for sub in ["state1", "json1", "state2", "json2"] {
        let names: Vec<String> = std::fs::read_dir(d.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{sub}: {names:?}");
    }
    for i in [1, 2] {
        assert!(c.stop(i).is_some_and(|s| s.success()), "r{i} exit");
    }
}

/// A JSON value's kind, numbers being one kind (keepalived writes `1` where vipd
/// writes `1.0`).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn json_has_keepalived_2_4_3_s_keys_and_values() {
    let Some(bin) = Version::V2_4_3.require() else {
        return;
    };
    let spec = Spec::v2();
    let Some(mut c) = Cluster::new(2, "dumps-ka") else {
        return;
    };
    let d = c.dir.path().to_path_buf();
    // keepalived 2.4.3 writes keepalived.json to $TMPDIR (its json_dump_file is unused).
    let ka_tmp = d.join("ka-tmp");
    std::fs::create_dir(&ka_tmp).unwrap();
    let wrapper = d.join("keepalived-tmpdir.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nTMPDIR={} exec {} \"$@\"\n",
            ka_tmp.display(),
            bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    c.start_vipd(
        1,
        &with_globals(
            &spec,
            200,
            &format!("    json_dump_file {}/vipd.json\n", d.display()),
        ),
    );
    let ka = Keepalived::new()
        .binary(&wrapper)
        .start(c.lan.router(2), &spec.config(100), &d.join("ka2"))
        .expect("starting keepalived 2.4.3");
    let ka_pid = ka.pid();
    c.daemons[1] = Some(Daemon::Keepalived { proc: ka });
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    // keepalived is BACKUP once it has heard the master.
    std::thread::sleep(Duration::from_secs(2));
    send(c.pid(1), json_signal());
    send(ka_pid, json_signal());
    let ours = json_file(&d.join("vipd.json"), &c);
    let theirs = json_file(&ka_tmp.join("keepalived.json"), &c);
    let (ours, theirs) = (&ours[0], &theirs[0]);
    for part in ["data", "stats"] {
        let (o, t) = (
            ours[part].as_object().unwrap(),
            theirs[part].as_object().unwrap(),
        );
        for (key, value) in o {
            let Some(tv) = t.get(key) else {
                panic!("vipd writes {part}.{key}, keepalived 2.4.3 does not:\n{theirs}");
            };
            assert_eq!(kind(value), kind(tv), "{part}.{key}: {value} vs {tv}");
        }
    }
    for key in ["iname", "ifp_ifname", "vrid", "version", "adver_int"] {
        assert_eq!(
            ours["data"][key]
                .as_f64()
                .map(Value::from)
                .unwrap_or(ours["data"][key].clone()),
            theirs["data"][key]
                .as_f64()
                .map(Value::from)
                .unwrap_or(theirs["data"][key].clone()),
            "data.{key}"
        );
    }
    assert_eq!(
        (
            ours["data"]["state"].clone(),
            theirs["data"]["state"].clone()
        ),
        (2.into(), 1.into())
    );
    assert_eq!(ours["data"]["base_priority"], 200);
    assert_eq!(theirs["data"]["base_priority"], 100);
    // The same address line, "set" only where the address is.
    assert_eq!(
        ours["data"]["vips"][0],
        "192.0.2.100/24 dev eth0 scope global set"
    );
    assert_eq!(
        theirs["data"]["vips"][0],
        "192.0.2.100/24 dev eth0 scope global"
    );
    assert!(theirs["stats"]["advert_rcvd"].as_u64().unwrap() >= 1);
    assert!(ours["stats"]["advert_sent"].as_u64().unwrap() >= 1);
}

fn save_dir_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn config_save_dir_keeps_the_files_read_and_the_state_around_reloads() {
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "dumps-save") else {
        return;
    };
    let d = c.dir.path().to_path_buf();
    let save: PathBuf = d.join("saved");
    // The instance lives in an included file; the main file only has global_defs.
    let full = spec.config(200);
    let split = full.find("vrrp_instance").unwrap();
    let (globals, instance) = full.split_at(split);
    let inc = d.join("instance.conf");
    std::fs::write(&inc, instance).unwrap();
    let main = format!(
        "{}include {}\n",
        globals.replacen(
            "global_defs {\n",
            &format!("global_defs {{\n    config_save_dir {}\n", save.display()),
            1
        ),
        inc.display()
    );
    c.start_vipd(1, &main);
    let pid = c.pid(1);
    let copy0 = save.join(format!("keepalived.conf.{pid}.0"));
    let text = wait_file(&copy0, &c);
    assert_eq!(
        text,
        format!(
            "# {}\n{main}\n# {}\n{instance}\n",
            c.config_path(1).display(),
            inc.display()
        )
    );
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());

    // A reload with a new priority in the included file.
    let changed = instance.replace("priority 200", "priority 150");
    std::fs::write(&inc, &changed).unwrap();
    let (ok, out) = c.reload(1, &main);
    assert!(ok, "{out}");
    let copy1 = wait_file(&save.join(format!("keepalived.conf.{pid}.1")), &c);
    assert!(
        copy1.ends_with(&format!("# {}\n{changed}\n", inc.display())),
        "{copy1}"
    );
    let pre = wait_file(&save.join(format!("keepalived_vrrp.{pid}.1.pre")), &c);
    let post = wait_file(&save.join(format!("keepalived_vrrp.{pid}.1.post")), &c);
    assert!(pre.contains("   Priority = 200\n"), "{pre}");
    assert!(post.contains("   Priority = 150\n"), "{post}");
    assert_eq!(
        save_dir_files(&save),
        [
            format!("keepalived.conf.{pid}.0"),
            format!("keepalived.conf.{pid}.1"),
            format!("keepalived_vrrp.{pid}.1.post"),
            format!("keepalived_vrrp.{pid}.1.pre"),
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&save).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(c.stop(1).is_some_and(|s| s.success()));
}

//! `vipd check-config` / `vipd -t`: exit codes and diagnostics (no root needed).

use std::path::PathBuf;
use std::process::Command;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vipd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = "vrrp_instance VI_1 {\n    state BACKUP\n    interface lo\n    virtual_router_id 51\n    priority 100\n    advert_int 1\n    virtual_ipaddress {\n        192.0.2.100/24\n    }\n}\n";

fn vipd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_config_exits_zero_both_spellings() {
    let f = write("good.conf", GOOD);
    let (code, _, err) = vipd(&["check-config", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("configuration is valid"), "{err}");
    let (code, _, err) = vipd(&["-t", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn typo_is_an_error_with_position_and_suggestion() {
    let f = write(
        "typo.conf",
        &GOOD.replace("    priority 100", "    priorty 100"),
    );
    let (code, _, err) = vipd(&["check-config", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let want = format!("{}:5:5: error: unknown keyword `priorty`", f.display());
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
    assert!(err.contains("did you mean `priority`?"), "{err}");
    assert!(err.contains("^^^^^^^"), "caret under the token:\n{err}");
}

#[test]
fn json_output_has_diagnostics_and_summary() {
    let f = write("json.conf", GOOD);
    let (code, out, _) = vipd(&["check-config", "--json", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["summary"]["instances"][0]["name"], "VI_1");
    assert_eq!(v["summary"]["instances"][0]["vips"][0], "192.0.2.100/24");
    let bad = write(
        "bad.conf",
        &GOOD.replace("virtual_router_id 51", "virtual_router_id 300"),
    );
    let (code, out, _) = vipd(&["check-config", "--json", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["diagnostics"][0]["line"], 4);
}

/// The last keywords parsed but not acted on (SNMP, DBus) are active now: a config
/// naming them checks clean, and `--ignore-inactive` (kept for scripts that pass it)
/// changes nothing.
#[test]
fn formerly_inactive_keywords_check_clean_and_ignore_inactive_is_harmless() {
    let f = write(
        "snmp.conf",
        &format!("global_defs {{\n    enable_snmp_vrrp\n    enable_dbus\n}}\n{GOOD}"),
    );
    let (code, _, err) = vipd(&["check-config", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("configuration is valid"), "{err}");
    assert!(!err.contains("not active yet"), "{err}");
    let (code, _, err) = vipd(&[
        "check-config",
        "--ignore-inactive",
        "-f",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = vipd(&["check-config", "--json", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["refused_inactive"], 0);
    assert_eq!(v["summary"]["inactive"], 0);
}

#[test]
fn run_refuses_an_invalid_config_without_touching_anything() {
    let f = write("run-bad.conf", &GOOD.replace("priority 100", "priority 0"));
    let (code, _, err) = vipd(&[
        "run",
        "-f",
        f.to_str().unwrap(),
        "--control-socket",
        "/nonexistent/x.sock",
        "--pid-file",
        "/nonexistent/x.pid",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not starting"), "{err}");
}

/// A node of a two-node cluster: `chk_down` lowers the priority by 2 when it fails.
fn cluster_node(priority_lines: &str) -> String {
    format!(
        "vrrp_script chk_down {{\n    script \"/bin/true\"\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n{priority_lines}    virtual_ipaddress {{\n        192.0.2.10/24\n    }}\n    track_script {{\n        chk_down weight -2\n    }}\n}}\n"
    )
}

#[test]
fn cross_node_lint_over_one_file_per_node() {
    let n1 = write("xn-node1.conf", &cluster_node("    priority 100\n"));
    // Another interface name on node2: the group is matched by VRID, family and VIPs.
    let n2 = write(
        "xn-node2.conf",
        &cluster_node("    priority 97\n").replace("eth0", "ens3"),
    );
    let (code, _, err) = vipd(&[
        "check-config",
        "-f",
        n1.to_str().unwrap(),
        "-f",
        n2.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let want = format!(
        "{}:13:9: warning: `track_script chk_down` (weight -2) can lower VI_1 on xn-node1 to at most 98, still above xn-node2's 97: the VIP never moves when it fails",
        n1.display()
    );
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
    assert!(err.contains("use a weight of at least -4"), "{err}");
    assert!(err.contains("^^^^^^^^"), "{err}");
    assert!(
        err.contains("cross-node check of 2 nodes (xn-node1, xn-node2): 1 warning(s)"),
        "{err}"
    );

    // A weight that moves the VIP: no finding.
    let n2 = write("xn-node2b.conf", &cluster_node("    priority 99\n"));
    let (code, _, err) = vipd(&[
        "check-config",
        "-f",
        n1.to_str().unwrap(),
        "-f",
        n2.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("can lower"), "{err}");
    assert!(err.contains(": 0 warning(s)"), "{err}");

    // JSON: every node's summary plus the finding, with its code.
    let (code, out, _) = vipd(&[
        "check-config",
        "--json",
        "-f",
        n1.to_str().unwrap(),
        "-f",
        write("xn-node2.conf", &cluster_node("    priority 97\n"))
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["cross_node"], 1);
    assert_eq!(v["nodes"][1]["summary"]["instances"][0]["priority"], 97);
    // (The nodes' own warnings, e.g. scripts without enable_script_security, come too.)
    let xn: Vec<&serde_json::Value> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "cross-node")
        .collect();
    assert_eq!(xn.len(), 1, "{v}");
    assert_eq!(xn[0]["line"], 13);
}

#[test]
fn cross_node_lint_over_config_ids_of_one_file() {
    let f = write(
        "xn-ids.conf",
        &cluster_node("@lb1    priority 100\n@lb2    priority 97\n"),
    );
    let (code, _, err) = vipd(&[
        "check-config",
        "-f",
        f.to_str().unwrap(),
        "--config-id",
        "lb1",
        "--config-id",
        "lb2",
    ]);
    assert_eq!(code, 0, "{err}");
    let want = format!(
        "{}:14:9: warning: `track_script chk_down` (weight -2) can lower VI_1 on @lb1 to at most 98, still above @lb2's 97",
        f.display()
    );
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
    assert_eq!(err.matches("can lower").count(), 1, "{err}");
    assert!(
        err.contains("(config id lb1): configuration is valid"),
        "{err}"
    );
    assert!(
        err.contains("(config id lb2): configuration is valid"),
        "{err}"
    );

    // One id only: the plain single-node check, no cross-node lint.
    let (code, _, err) = vipd(&[
        "check-config",
        "-f",
        f.to_str().unwrap(),
        "--config-id",
        "lb1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("cross-node") && !err.contains("can lower"),
        "{err}"
    );
    let (code, _, err) = vipd(&["-t", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn cross_node_check_fails_when_a_node_is_invalid() {
    let n1 = write("xn-ok.conf", &cluster_node("    priority 100\n"));
    let n2 = write("xn-bad.conf", &cluster_node("    priorty 97\n"));
    let (code, _, err) = vipd(&[
        "check-config",
        "-f",
        n1.to_str().unwrap(),
        "-f",
        n2.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown keyword `priorty`"), "{err}");
    assert!(err.contains("cross-node check skipped"), "{err}");
}

/// What `vipd run` would refuse when it builds the health checkers is an error of
/// `check-config` too, at its line: here an unreadable `SSL` file and a bad digest.
#[test]
fn checker_problems_are_errors_with_their_line() {
    let missing = std::env::temp_dir().join(format!("vipd-cli-none-{}.pem", std::process::id()));
    let text = format!(
        "SSL {{\n  certificate {}\n}}\nvirtual_server 192.0.2.100 443 {{\n  lb_kind NAT\n  real_server 192.0.2.1 443 {{\n    SSL_GET {{\n      url {{\n        path /\n        digest nothex\n      }}\n    }}\n  }}\n}}\n",
        missing.display()
    );
    let f = write("checkers.conf", &text);
    let (code, _, err) = vipd(&["check-config", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let want = format!(
        "{}:2:15: error: `certificate`: {}:",
        f.display(),
        missing.display()
    );
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
    assert!(
        err.contains("`digest`: `nothex` is not an MD5 hex digest"),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}

/// A missing interface fails the check as `vipd run` would fail (keepalived 2.4.3 `-t`:
/// "Non-existent interface specified in configuration"); `dynamic_interfaces` makes it
/// a warning saying what happens until the interface appears.
#[test]
fn missing_interface_fails_unless_dynamic_interfaces() {
    let missing = GOOD.replace("interface lo", "interface vipd-nope0");
    let f = write("missing-if.conf", &missing);
    let (code, _, err) = vipd(&["check-config", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("interface `vipd-nope0` does not exist on this host")
            && err.contains("interface `vipd-nope0` not found"),
        "{err}"
    );
    let f = write(
        "dynamic-if.conf",
        &format!("global_defs {{\n    dynamic_interfaces allow_if_changes\n}}\n{missing}"),
    );
    let (code, _, err) = vipd(&["check-config", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the instance is in FAULT until it appears (dynamic_interfaces)")
            && err.contains("configuration is valid (1 warning(s))"),
        "{err}"
    );
}

/// `vipd --signum NAME` prints what keepalived 2.4.3's `--signum=NAME` prints for every
/// signal function both handle (JSON is SIGRTMIN+2, computed at run time), in both
/// spellings; a name neither handles is an error with keepalived's message and exit 1.
#[test]
fn signum_matches_keepalived() {
    let Some(ka) = vipd_netns::Version::V2_4_3.require() else {
        return;
    };
    let keepalived = |name: &str| {
        let out = Command::new(&ka)
            .arg(format!("--signum={name}"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for name in ["STOP", "RELOAD", "DATA", "STATS", "STATS_CLEAR", "JSON"] {
        let (ka_code, ka_out, ka_err) = keepalived(name);
        assert_eq!(ka_code, 0, "keepalived --signum={name}: {ka_err}");
        let n: i32 = ka_out.trim().parse().unwrap();
        assert!(n > 0, "{ka_out}");
        let (code, out, err) = vipd(&[&format!("--signum={name}")]);
        assert_eq!((code, out.as_str()), (0, ka_out.as_str()), "{name}: {err}");
        let (code, out, err) = vipd(&["--signum", name]);
        assert_eq!((code, out.as_str()), (0, ka_out.as_str()), "{name}: {err}");
    }
    // glibc's SIGRTMIN is 34: keepalived's JSON signal is 36, STATS_CLEAR SIGRTMAX-1 = 63.
    assert_eq!(vipd(&["--signum=JSON"]).1, "36\n");
    assert_eq!(vipd(&["--signum=STATS_CLEAR"]).1, "63\n");
    // Unknown (TDUMP is only in keepalived builds with thread dumps) or lower-case.
    for name in ["FOO", "TDUMP", "stop"] {
        let (ka_code, ka_out, ka_err) = keepalived(name);
        let (code, out, err) = vipd(&["--signum", name]);
        assert_eq!(ka_code, 1, "keepalived --signum={name}: {ka_out}");
        assert_eq!((code, out.as_str()), (1, ""), "{name}");
        assert_eq!(err, ka_err, "{name}");
    }
}

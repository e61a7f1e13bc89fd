//! The README's first command: `vipd lab` must run end to end and clean up.

use std::process::Command;

#[test]
fn lab_runs_end_to_end_and_cleans_up() {
    if vipd_netns::skip_unless_root() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("lab")
        .output()
        .expect("running vipd lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vipd lab failed\n{stdout}\n{stderr}");
    for needle in [
        "VIP 192.0.2.100 is now on r1",
        "VIP 192.0.2.100 is now on r2",
        "crash failover",
        "lab torn down",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
    // Its namespaces carry the lab process's pid; none may be left.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&ns.stdout);
    let prefix = stdout
        .lines()
        .find_map(|l| l.split("namespaces ").nth(1))
        .map(|p| p.trim_end_matches("-*").to_string())
        .expect("lab names its namespaces");
    assert!(!list.contains(&prefix), "left behind: {list}");
}

/// `vipd lab --bgp`: the routed lab (FRR) runs end to end, measures the client's
/// outage in each phase, and leaves no namespace behind.
#[test]
fn bgp_lab_runs_end_to_end_and_cleans_up() {
    bgp_lab(&[], "192.0.2.100");
}

/// The same over IPv6 (`vipd lab --bgp --ipv6`).
#[test]
fn bgp_lab_ipv6_runs_end_to_end_and_cleans_up() {
    bgp_lab(&["--ipv6"], "2001:db8:1::100");
}

fn bgp_lab(extra: &[&str], vip: &str) {
    if vipd_netns::skip_unless_root() {
        return;
    }
    if !vipd_netns::routed::frr_installed() {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "FRR is missing under CI (apt-get install frr)");
        eprintln!("skipped: FRR not installed (apt-get install frr)");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["lab", "--bgp"])
        .args(extra)
        .output()
        .expect("running vipd lab --bgp");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "vipd lab --bgp {extra:?} failed\n{stdout}\n{stderr}"
    );
    for needle in [
        format!("upstream routes {vip} via r1"),
        format!("upstream routes {vip} via r2"),
        "lab torn down".to_string(),
    ] {
        assert!(stdout.contains(&needle), "missing `{needle}` in:\n{stdout}");
    }
    // Every phase has its measured line; the crash costs the client probes (detection
    // takes hundreds of ms), with a figure in ms.
    let phase = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{stdout}"))
            .to_string()
    };
    for name in ["crash failover", "preempt back", "graceful handover"] {
        assert!(phase(name).contains("probes lost"), "{}", phase(name));
    }
    let crash = phase("crash failover");
    let outage_ms: f64 = crash
        .split("client outage")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no measured outage in `{crash}`"));
    assert!(outage_ms > 0.0 && outage_ms < 5000.0, "{crash}");
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&ns.stdout);
    let prefix = stdout
        .lines()
        .find_map(|l| l.split("namespaces ").nth(1))
        .map(|p| p.trim_end_matches("-*").to_string())
        .expect("lab names its namespaces");
    assert!(!list.contains(&prefix), "left behind: {list}");
}

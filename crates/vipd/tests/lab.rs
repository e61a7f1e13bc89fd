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

//! A short `vipd bench soak`: two faults of every kind on a pair and a three-router
//! cluster of vipd (about 25 s), no violation allowed. The full run (hundreds of
//! faults, keepalived side by side) is the benchmark in BENCHMARKS.md.

use std::process::Command;

#[test]
fn soak_smoke_two_faults_of_each_kind_without_a_violation() {
    if vipd_netns::skip_unless_root() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args([
            "bench",
            "soak",
            "--faults",
            "20",
            "--routers",
            "2,3",
            "--impl",
            "vipd",
            "--seed",
            "13",
            "--json",
            // Generous on a loaded 2-core CI machine; the benchmark uses 500 ms.
            "--slack-ms",
            "1500",
        ])
        .output()
        .expect("running vipd bench soak");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    assert_eq!(report["seed"], 13);
    let lanes = report["lanes"].as_array().expect("lanes");
    assert_eq!(lanes.len(), 2, "{report:#}");
    for lane in lanes {
        let what = format!("{} routers: {lane:#}\nstderr:\n{stderr}", lane["routers"]);
        assert!(lane["error"].is_null(), "{what}");
        assert_eq!(lane["faults"], 20, "{what}");
        assert_eq!(lane["violations"], serde_json::json!({}), "{what}");
        let kinds = lane["kinds"].as_object().expect("kinds");
        assert_eq!(kinds.len(), 10, "{what}");
        for (kind, k) in kinds {
            assert_eq!(k["faults"], 2, "{kind}: {what}");
            assert!(k["converge_max_ms"].as_f64().is_some(), "{kind}: {what}");
        }
        // kill -9 of the master leaves its VIP, marked as vipd's (proto 118).
        let left = lane["stale_vips_after_kill9"].as_u64().unwrap();
        assert!(left >= 2, "kill9-stale kills the master twice: {what}");
        assert_eq!(lane["stale_vips_marked_proto_118"], left, "{what}");
        assert_eq!(lane["witness"]["leaked"], false, "{what}");
    }
    assert!(out.status.success(), "{stderr}");
}

//! Generates the issue-3 benchmark config (5,000 `vrrp_instance`s, 2,000 `real_server`s)
//! and times parsing + validation. Instances are spread over VLAN interfaces
//! `IFACE.0` .. `IFACE.19` (255 VRIDs each), so VRIDs are unique per interface.
//!
//! `cargo run --release -p vipd-config --example bench_config [-- OUT.conf [IFACE]]`

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vipd-bench.conf"));
    let iface = args.next().unwrap_or_else(|| "eth0".into());
    let mut c = String::new();
    c.push_str("global_defs {\n    router_id bench\n}\n");
    c.push_str("vrrp_script chk {\n    script \"/bin/true\"\n    interval 2\n    weight -10\n}\n");
    for i in 0..5000u32 {
        let (a, b) = (i / 250, i % 250 + 1);
        let _ = write!(
            c,
            "vrrp_instance VI_{i} {{\n    state BACKUP\n    interface {iface}.{}\n    virtual_router_id {}\n    priority {}\n    advert_int 1\n    virtual_ipaddress {{\n        10.{}.{a}.{b}/16\n    }}\n    track_script {{\n        chk\n    }}\n}}\n",
            i / 255,
            i % 255 + 1,
            i % 200 + 50,
            100 + i / 255,
        );
    }
    for v in 0..100u32 {
        let _ = write!(
            c,
            "virtual_server 172.16.{}.{} 80 {{\n    delay_loop 6\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n",
            v / 250,
            v % 250 + 1
        );
        for r in 0..20u32 {
            let _ = write!(
                c,
                "    real_server 172.17.{v}.{} 8080 {{\n        weight 1\n        TCP_CHECK {{\n            connect_timeout 3\n        }}\n    }}\n",
                r + 1
            );
        }
        c.push_str("}\n");
    }
    std::fs::write(&out, &c).expect("write config");
    let opts = vipd_config::LoadOptions {
        config_id: Some("bench".into()),
        check_interfaces: true,
        ..Default::default()
    };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let r = vipd_config::load_file(&out, &opts);
        let secs = t.elapsed().as_secs_f64();
        best = best.min(secs);
        match r {
            Ok(l) => assert_eq!(l.config.instances.len(), 5000),
            Err(e) => panic!("{}", e.iter().find(|d| d.is_error()).unwrap()),
        }
    }
    println!(
        "{}: {} bytes, {} lines; load+validate best of 5: {:.3} s",
        out.display(),
        c.len(),
        c.lines().count(),
        best
    );
}

//! Issue 12's yardstick end to end: `vipd check-config` builds the plan `vipd run` would
//! start from the configuration that uses every keyword of keepalived 2.4.3's man page
//! (crates/config/tests/every-keyword/), in a network namespace that has its interfaces,
//! and it refuses no keyword as inactive.

use std::fs;
use std::path::Path;
use std::process::Command;
use vipd_netns::{skip_unless_root, Netns};

/// `vipd ARGS` inside `ns`, in `dir`: (exit code, stderr).
fn vipd_in(ns: &Netns, dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_vipd")])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_keyword_plans_and_none_is_inactive() {
    if skip_unless_root() {
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tests/every-keyword");
    let run = Netns::unique("ek-run").unwrap();
    // `net_namespace_ipvs` must name a namespace that exists.
    let ipvs = Netns::unique("ek-ipvs").unwrap();
    let dir = std::env::temp_dir().join(format!("vipd-every-kw-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();

    // The SSL block's files: a key and certificate vipd can load.
    let (key, cert) = (dir.join("client.key"), dir.join("client.crt"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=vipd-every-kw",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    for e in fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let mut text = fs::read_to_string(&p).unwrap();
        if p.file_name().unwrap() == "main.conf" {
            text = text.replace("ipvs_ns", ipvs.name()).replace(
                "    key /etc/ssl/certs/ca-certificates.crt",
                &format!("    key {}", key.display()),
            );
            text = text.replace(
                "    certificate /etc/ssl/certs/ca-certificates.crt",
                &format!("    certificate {}", cert.display()),
            );
        }
        fs::write(dir.join(p.file_name().unwrap()), text).unwrap();
    }

    // eth0 with addresses of both families; eth1 / eth2 (a VIP's `dev`, a tracked
    // interface) exist too. The VRF device is left missing: `dynamic_interfaces` makes
    // its instance wait in FAULT, which check-config reports.
    run.ip_batch(
        "link set lo up\n\
         link add eth0 type veth peer name eth1\n\
         link add eth2 type veth peer name eth3\n\
         link set eth0 up\nlink set eth1 up\nlink set eth2 up\nlink set eth3 up\n\
         addr add 192.0.2.1/24 dev eth0\n\
         addr add 2001:db8::1/64 dev eth0 nodad\n",
    )
    .unwrap();

    for f in ["main.conf", "netns.conf"] {
        let (code, err) = vipd_in(&run, &dir, &["check-config", "--ignore-inactive", "-f", f]);
        assert_eq!(code, 0, "{f}:\n{err}");
        assert!(err.contains("configuration is valid"), "{f}:\n{err}");
    }
    // Without --ignore-inactive: the same (no keyword is inactive any more).
    let (code, err) = vipd_in(&run, &dir, &["check-config", "-f", "main.conf"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("is parsed but not active yet"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

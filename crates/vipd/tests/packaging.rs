//! Packaging: generated man pages and completions, the example configs, the systemd
//! unit and the .deb built by `packaging/build-deb.sh` (no root needed; the .deb and
//! unit checks run when `dpkg-deb` / `systemd-analyze` are installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn packaging() -> PathBuf {
    workspace().join("packaging")
}

/// A fresh directory under target/tmp for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("packaging-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn man_pages_are_generated_from_the_cli() {
    let dir = scratch("man");
    run(Command::new(VIPD).args(["gen", "man"]).arg(&dir));
    let main = std::fs::read_to_string(dir.join("vipd.1")).unwrap();
    assert!(main.contains(".TH vipd 1"), "{main}");
    assert!(main.contains("check\\-config"), "{main}");
    assert!(main.contains("/etc/keepalived/keepalived.conf"), "{main}");
    assert!(main.contains(".SH FILES"), "{main}");
    for sub in ["run", "check-config", "status"] {
        let page = std::fs::read_to_string(dir.join(format!("vipd-{sub}.1")))
            .unwrap_or_else(|e| panic!("vipd-{sub}.1: {e}"));
        assert!(
            page.contains(&format!(".TH vipd-{sub} 1")),
            "vipd-{sub}.1:\n{page}"
        );
        assert!(page.len() > 300, "vipd-{sub}.1 is too short:\n{page}");
    }
    let run_page = std::fs::read_to_string(dir.join("vipd-run.1")).unwrap();
    assert!(run_page.contains("control\\-socket"), "{run_page}");
    // The hidden `gen` command stays out of the manual.
    assert!(!dir.join("vipd-gen.1").exists());
    assert!(!main.contains("vipd\\-gen"), "{main}");
}

#[test]
fn shell_completions_are_generated_from_the_cli() {
    let dir = scratch("completions");
    for (shell, file) in [
        ("bash", "vipd.bash"),
        ("zsh", "_vipd"),
        ("fish", "vipd.fish"),
    ] {
        run(Command::new(VIPD)
            .args(["gen", "completions", shell])
            .arg(&dir));
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{shell}: {file}: {e}"));
        assert!(text.contains("check-config"), "{shell}:\n{text}");
        assert!(text.contains("control-socket"), "{shell}:\n{text}");
    }
    let bash = std::fs::read_to_string(dir.join("vipd.bash")).unwrap();
    assert!(bash.contains("complete -F"), "{bash}");
}

#[test]
fn every_example_config_is_valid() {
    let mut n = 0;
    // examples/frr/ holds FRR's side of the BGP mode, not vipd configs.
    let mut examples: Vec<PathBuf> = std::fs::read_dir(packaging().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    examples.sort();
    for path in examples {
        let out = Command::new(VIPD)
            .args(["check-config", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} is not valid:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        n += 1;
    }
    assert!(n >= 5, "expected at least 5 example configs, found {n}");
}

#[test]
fn unit_file_matches_the_binary_defaults() {
    let unit = std::fs::read_to_string(packaging().join("vipd.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/sbin/vipd run -f /etc/keepalived/keepalived.conf",
        "RuntimeDirectory=vipd",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_NICE",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_PACKET AF_UNIX",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "vipd.service lacks `{line}`"
        );
    }
    // The unit relies on the binary's defaults for the socket and pid file, which
    // must live in the RuntimeDirectory (/run/vipd, the only writable path).
    let help = run(Command::new(VIPD).args(["run", "--help"])).stdout;
    let help = String::from_utf8_lossy(&help);
    assert!(
        help.contains("[default: /etc/keepalived/keepalived.conf]"),
        "{help}"
    );
    assert!(help.contains("[default: /run/vipd/vipd.sock]"), "{help}");
    assert!(help.contains("[default: /run/vipd/vipd.pid]"), "{help}");
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze not installed");
        return;
    }
    // verify checks that ExecStart/ExecReload binaries exist: point them at ours.
    let dir = scratch("unit");
    let unit = std::fs::read_to_string(packaging().join("vipd.service")).unwrap();
    let unit = unit.replace("/usr/sbin/vipd", VIPD);
    let path = dir.join("vipd.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Without a booted systemd, verify may complain about the host (missing targets);
    // it must not complain about our unit's own settings.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("vipd.service:") || l.contains("/vipd.service:"))
        .filter(|l| !l.contains("target not found") && !l.contains(".target"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn deb_package_contains_binary_unit_docs_man_and_completions() {
    if !have("dpkg-deb") {
        eprintln!("skipped: dpkg-deb not installed");
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // CARGO_TARGET_TMPDIR is <target>/tmp: reuse the workspace's target dir, and the
    // test-profile binary instead of a release build.
    let target_dir = tmp.parent().unwrap();
    let out_dir = scratch("deb");
    let out = run(Command::new("sh")
        .arg(packaging().join("build-deb.sh"))
        .env("CARGO_TARGET_DIR", target_dir)
        .env("VIPD_BIN", VIPD)
        .env("VIPD_DEB_DIR", &out_dir)
        .env("VIPD_DEB_COMPRESS", "gzip"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "build-deb.sh complained:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = PathBuf::from(stdout.lines().last().expect("build-deb.sh printed nothing"));
    assert!(deb.starts_with(&out_dir), "{}", deb.display());
    assert!(deb.is_file(), "{} missing", deb.display());

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout;
    let listing = String::from_utf8_lossy(&listing);
    let entries: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for want in [
        "./usr/sbin/vipd",
        "./lib/systemd/system/vipd.service",
        "./usr/share/dbus-1/system.d/org.keepalived.Vrrp1.conf",
        "./usr/share/man/man1/vipd.1.gz",
        "./usr/share/man/man1/vipd-run.1.gz",
        "./usr/share/man/man1/vipd-check-config.1.gz",
        "./usr/share/man/man1/vipd-status.1.gz",
        "./usr/share/bash-completion/completions/vipd",
        "./usr/share/zsh/vendor-completions/_vipd",
        "./usr/share/fish/vendor_completions.d/vipd.fish",
        "./usr/share/doc/vipd/copyright",
        "./usr/share/doc/vipd/user-guide.md",
        "./usr/share/doc/vipd/keepalived-differences.md",
        "./usr/share/doc/vipd/examples/vrrp2-ipv4-master.conf",
        "./usr/share/doc/vipd/examples/vrrp2-ipv4-backup.conf",
        "./usr/share/doc/vipd/examples/vrrp3-ipv6.conf",
        "./usr/share/doc/vipd/examples/unicast-peers.conf",
        "./usr/share/doc/vipd/examples/fast-failover-v3.conf",
        "./usr/share/doc/vipd/examples/bgp-vipd.conf",
        "./usr/share/doc/vipd/examples/bgp-anycast-vipd.conf",
        "./usr/share/doc/vipd/examples/frr/frr-vipd.conf",
        "./usr/share/doc/vipd/examples/frr/frr-upstream.conf",
        "./usr/share/doc/vipd/examples/grafana/vipd-dashboard.json",
    ] {
        assert!(
            entries.contains(&want),
            "{want} not in the .deb:\n{listing}"
        );
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x root/root") && l.ends_with("./usr/sbin/vipd")),
        "vipd must be root-owned and executable:\n{listing}"
    );

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb)).stdout;
    let info = String::from_utf8_lossy(&info);
    let version = String::from_utf8_lossy(&run(Command::new(VIPD).arg("--version")).stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    for want in [
        " Package: vipd".to_string(),
        format!(" Version: {version}"),
        " Depends: libc6".to_string(),
        " Section: net".to_string(),
        "\"systemctl enable --now vipd\"".to_string(),
    ] {
        assert!(info.contains(&want), "`{want}` not in control:\n{info}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "no {script}:\n{info}");
    }
}

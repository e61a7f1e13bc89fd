//! `vipd realserver`: the real binary in throw-away network namespaces (root only; each
//! test prints "skipped" and passes otherwise). Documentation addresses only, and only
//! inside the namespaces the tests create.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vipd_netns::{has_address, Capture, FrameKind, Netns, WorkDir};

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs `vipd ARGS` inside `ns` (optionally through a prefix such as `setpriv …`).
fn vipd_with(ns: &Netns, prefix: &[&str], args: &[&str]) -> Out {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(prefix)
        .arg(VIPD)
        .args(args)
        .output()
        .expect("running vipd");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn vipd(ns: &Netns, args: &[&str]) -> Out {
    vipd_with(ns, &[], args)
}

/// `vipd realserver ARGS --state-file STATE`, which must succeed.
fn realserver(ns: &Netns, state: &Path, args: &[&str]) -> Out {
    let mut all = vec!["realserver", "--state-file", state.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = vipd(ns, &all);
    assert_eq!(
        out.code, 0,
        "vipd {all:?} failed:\n{}{}",
        out.stdout, out.stderr
    );
    out
}

/// Reads `net.ipv4.conf.IFACE.PARAM` inside `ns`.
fn conf(ns: &Netns, iface: &str, param: &str) -> String {
    let path = format!("/proc/sys/net/ipv4/conf/{iface}/{param}");
    ns.run(move || std::fs::read_to_string(&path))
        .unwrap()
        .unwrap_or_else(|e| panic!("reading {iface}/{param}: {e}"))
        .trim()
        .to_string()
}

const IFACES: [&str; 6] = ["all", "default", "lo", "e0", "e1", "d0"];

/// Every arp_ignore / arp_announce value of the test interfaces.
fn arp_sysctls(ns: &Netns) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for i in IFACES {
        for p in ["arp_ignore", "arp_announce"] {
            m.insert(format!("{i}.{p}"), conf(ns, i, p));
        }
    }
    m
}

fn addrs(ns: &Netns) -> String {
    ns.ip(["-o", "addr", "show"]).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A namespace with two up veth ends `e0`/`e1` (non-loopback, up), a down pair `d0`/`d1`,
/// every ARP sysctl at a known value, and `e0.arp_ignore=2`, `all.arp_announce=1` set to
/// non-default values so a restore can be told from a reset. `None` when not root.
fn setup() -> Option<(Netns, WorkDir)> {
    if vipd_netns::skip_unless_root() {
        return None;
    }
    let ns = Netns::unique("rs").expect("netns");
    // IPv4 `all`/`default` are copied from the host's into a new namespace: pin them.
    let mut zero = Vec::new();
    for i in ["all", "default"] {
        for p in ["arp_ignore", "arp_announce"] {
            zero.push((format!("net.ipv4.conf.{i}.{p}"), "0"));
        }
    }
    let zero: Vec<(&str, &str)> = zero.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ns.sysctls(&zero).unwrap();
    ns.ip_batch(
        "link add e0 type veth peer name e1\n\
         link set e0 up\n\
         link set e1 up\n\
         link add d0 type veth peer name d1\n",
    )
    .unwrap();
    ns.sysctls(&[
        ("net.ipv4.conf.e0.arp_ignore", "2"),
        ("net.ipv4.conf.all.arp_announce", "1"),
    ])
    .unwrap();
    let dir = WorkDir::new("realserver").expect("work dir");
    Some((ns, dir))
}

#[test]
fn apply_is_idempotent_and_undo_restores_exactly() {
    let Some((ns, dir)) = setup() else { return };
    let state = dir.join("state/realserver.json");
    ns.ip(["addr", "add", "192.0.2.101/32", "dev", "lo"])
        .unwrap();
    let before = arp_sysctls(&ns);
    let addrs_before = addrs(&ns);

    let out = realserver(
        &ns,
        &state,
        &["--vip", "192.0.2.100", "--vip", "192.0.2.101"],
    );
    let lines = out.lines();
    for want in [
        "set net.ipv4.conf.all.arp_ignore = 1 (was 0)",
        "set net.ipv4.conf.all.arp_announce = 2 (was 1)",
        "set net.ipv4.conf.e0.arp_ignore = 1 (was 2)",
        "set net.ipv4.conf.e0.arp_announce = 2 (was 0)",
        "set net.ipv4.conf.e1.arp_ignore = 1 (was 0)",
        "set net.ipv4.conf.e1.arp_announce = 2 (was 0)",
        "added 192.0.2.100/32 to lo",
        "192.0.2.101 was already on lo (not added by vipd, so --undo leaves it)",
    ] {
        assert!(
            lines.contains(&want),
            "missing `{want}` in:\n{}",
            out.stdout
        );
    }
    assert_eq!(lines.len(), 8, "one line per change:\n{}", out.stdout);
    // Read back inside the namespace.
    for i in ["all", "e0", "e1"] {
        assert_eq!(conf(&ns, i, "arp_ignore"), "1", "{i}");
        assert_eq!(conf(&ns, i, "arp_announce"), "2", "{i}");
    }
    // Down (d0, d1) and loopback interfaces and `default` are not touched.
    for i in ["d0", "d1", "lo", "default"] {
        assert_eq!(conf(&ns, i, "arp_ignore"), "0", "{i}");
        assert_eq!(conf(&ns, i, "arp_announce"), "0", "{i}");
    }
    let lo = ns.ip(["-o", "-4", "addr", "show", "dev", "lo"]).unwrap();
    assert!(lo.contains("inet 192.0.2.100/32 "), "{lo}");
    let recorded = std::fs::read_to_string(&state).unwrap();

    // Second run: nothing changes, the record stays as it is.
    let out = realserver(
        &ns,
        &state,
        &["--vip", "192.0.2.100", "--vip", "192.0.2.101"],
    );
    assert!(
        out.stdout.contains("nothing to change"),
        "second run:\n{}",
        out.stdout
    );
    assert!(
        !out.lines()
            .iter()
            .any(|l| l.starts_with("set ") || l.starts_with("added ")),
        "second run changed something:\n{}",
        out.stdout
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap(), recorded);

    // Undo: previous values (not defaults) back, only the added address gone.
    let out = realserver(&ns, &state, &["--undo"]);
    assert!(
        out.lines().contains(&"removed 192.0.2.100/32 from lo"),
        "{}",
        out.stdout
    );
    assert!(
        out.lines()
            .contains(&"restored net.ipv4.conf.e0.arp_ignore = 2 (was 1)"),
        "{}",
        out.stdout
    );
    assert_eq!(arp_sysctls(&ns), before);
    assert_eq!(conf(&ns, "e0", "arp_ignore"), "2");
    assert_eq!(conf(&ns, "all", "arp_announce"), "1");
    assert!(!has_address(&ns, "lo", ip("192.0.2.100")));
    assert!(
        has_address(&ns, "lo", ip("192.0.2.101")),
        "the address that was there before stays"
    );
    assert_eq!(addrs(&ns), addrs_before);
    assert!(!state.exists(), "state file removed after undo");

    // Undo again: fine, nothing to do.
    let out = realserver(&ns, &state, &["--undo"]);
    assert!(out.stdout.contains("nothing to undo"), "{}", out.stdout);
    assert_eq!(arp_sysctls(&ns), before);
}

#[test]
fn dry_run_changes_nothing() {
    let Some((ns, dir)) = setup() else { return };
    let state = dir.join("realserver.json");
    let before = (arp_sysctls(&ns), addrs(&ns));
    let out = realserver(&ns, &state, &["--vip", "192.0.2.100", "--dry-run"]);
    let lines = out.lines();
    assert!(
        lines.contains(&"would set net.ipv4.conf.all.arp_ignore = 1 (now 0)"),
        "{}",
        out.stdout
    );
    assert!(
        lines.contains(&"would add 192.0.2.100/32 to lo"),
        "{}",
        out.stdout
    );
    assert_eq!((arp_sysctls(&ns), addrs(&ns)), before);
    assert!(!state.exists());

    // A dry-run undo after a real apply changes nothing either.
    realserver(&ns, &state, &["--vip", "192.0.2.100"]);
    let applied = (arp_sysctls(&ns), addrs(&ns));
    assert_ne!(applied, before);
    let recorded = std::fs::read_to_string(&state).unwrap();
    let out = realserver(&ns, &state, &["--undo", "--dry-run"]);
    assert!(
        out.lines().contains(&"would remove 192.0.2.100/32 from lo"),
        "{}",
        out.stdout
    );
    assert_eq!((arp_sysctls(&ns), addrs(&ns)), applied);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), recorded);
    realserver(&ns, &state, &["--undo"]);
    assert_eq!((arp_sysctls(&ns), addrs(&ns)), before);
}

#[test]
fn ipv6_vip_goes_on_lo_with_nodad_and_needs_no_sysctl() {
    let Some((ns, dir)) = setup() else { return };
    let state = dir.join("realserver.json");
    let before = arp_sysctls(&ns);
    let out = realserver(&ns, &state, &["--vip", "2001:db8::100"]);
    assert_eq!(out.lines(), ["added 2001:db8::100/128 to lo"]);
    let lo = ns.ip(["-o", "-6", "addr", "show", "dev", "lo"]).unwrap();
    let line = lo
        .lines()
        .find(|l| l.contains("2001:db8::100/128"))
        .unwrap_or_else(|| panic!("VIP not on lo:\n{lo}"));
    assert!(line.contains("nodad"), "{line}");
    assert!(!line.contains("tentative"), "{line}");
    assert_eq!(arp_sysctls(&ns), before, "IPv6 needs no ARP sysctl");
    let out = realserver(&ns, &state, &["--vip", "2001:db8::100"]);
    assert!(out.stdout.contains("nothing to change"), "{}", out.stdout);
    realserver(&ns, &state, &["--undo"]);
    assert!(!has_address(&ns, "lo", ip("2001:db8::100")));
}

#[test]
fn bad_dev_is_a_clear_error_and_changes_nothing() {
    let Some((ns, dir)) = setup() else { return };
    let state = dir.join("realserver.json");
    let s = state.to_str().unwrap();
    let before = (arp_sysctls(&ns), addrs(&ns));
    let out = vipd(
        &ns,
        &[
            "realserver",
            "--vip",
            "192.0.2.100",
            "--dev",
            "nosuch0",
            "--state-file",
            s,
        ],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "vipd: error: checking --dev nosuch0: no such interface"
    );
    // An interface that does ARP would answer for the VIP: refused, with the reason.
    let out = vipd(
        &ns,
        &[
            "realserver",
            "--vip",
            "192.0.2.100",
            "--dev",
            "e0",
            "--state-file",
            s,
        ],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("vipd: error: checking --dev e0: e0 does ARP"),
        "{}",
        out.stderr
    );
    // Not an address / not a host prefix: refused by the argument parser.
    let out = vipd(
        &ns,
        &["realserver", "--vip", "192.0.2.100/24", "--state-file", s],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("/32, not /24"), "{}", out.stderr);
    assert_eq!((arp_sysctls(&ns), addrs(&ns)), before);
    assert!(!state.exists());
}

#[test]
fn noarp_dev_other_than_lo_gets_the_vip_and_the_sysctls() {
    let Some((ns, dir)) = setup() else { return };
    let state = dir.join("realserver.json");
    // d0 is down: the sysctls would skip it, but as --dev it gets them too.
    ns.ip(["link", "set", "d0", "arp", "off"]).unwrap();
    let before = arp_sysctls(&ns);
    let out = vipd(
        &ns,
        &[
            "realserver",
            "--vip",
            "192.0.2.100",
            "--dev",
            "d0",
            "--state-file",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("d0 is down"), "{}", out.stderr);
    assert!(
        out.lines().contains(&"added 192.0.2.100/32 to d0"),
        "{}",
        out.stdout
    );
    assert_eq!(conf(&ns, "d0", "arp_ignore"), "1");
    assert_eq!(conf(&ns, "d0", "arp_announce"), "2");
    assert_eq!(conf(&ns, "d1", "arp_ignore"), "0", "down, not --dev");
    assert!(has_address(&ns, "d0", ip("192.0.2.100")));
    realserver(&ns, &state, &["--undo"]);
    assert!(!has_address(&ns, "d0", ip("192.0.2.100")));
    assert_eq!(arp_sysctls(&ns), before);
}

#[test]
fn failing_step_is_named() {
    let Some((ns, dir)) = setup() else { return };
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs setpriv (util-linux)");
        return;
    }
    let state = dir.join("realserver.json");
    let s = state.to_str().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let before = (arp_sysctls(&ns), addrs(&ns));
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let out = vipd_with(
        &ns,
        &nobody,
        &["realserver", "--vip", "192.0.2.100", "--state-file", s],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "vipd: error: setting net.ipv4.conf.all.arp_ignore: permission denied"
    );
    let out = vipd_with(
        &ns,
        &nobody,
        &["realserver", "--vip", "2001:db8::100", "--state-file", s],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "vipd: error: adding 2001:db8::100/128 to lo: operation not permitted"
    );
    // A state file that can't be written stops everything before the first change.
    let out = vipd_with(
        &ns,
        &nobody,
        &[
            "realserver",
            "--vip",
            "192.0.2.100",
            "--state-file",
            "/proc/nope/x.json",
        ],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("vipd: error: writing state file /proc/nope/x.json: "),
        "{}",
        out.stderr
    );
    assert_eq!((arp_sysctls(&ns), addrs(&ns)), before);
    assert!(!state.exists());
}

/// The point of it all: a neighbour ARPing for the VIP gets no answer from the real
/// server, while the server still accepts VIP traffic sent to its MAC (as a DR director
/// does) and still answers ARP for its own address.
#[test]
fn neighbour_gets_no_arp_reply_for_the_vip() {
    let Some((rs, dir)) = setup() else { return };
    let state = dir.join("realserver.json");
    let cl = Netns::unique("rs-cl").expect("netns");
    cl.ip([
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        rs.name(),
    ])
    .unwrap();
    cl.ip_batch("addr add 192.0.2.1/24 dev eth0\nlink set eth0 up\n")
        .unwrap();
    rs.ip_batch("addr add 192.0.2.2/24 dev eth0\nlink set eth0 up\n")
        .unwrap();
    let rs_mac = rs
        .exec(&["cat", "/sys/class/net/eth0/address"])
        .unwrap()
        .trim()
        .to_string();
    let arp_replies_for = |vip: &str| -> (usize, usize) {
        let vip = ip(vip);
        let _ = cl.ip(["neigh", "flush", "dev", "eth0"]);
        let cap = Capture::start(&cl, "eth0").unwrap();
        let target = vip.to_string();
        let _ = cl.exec(&["ping", "-c", "1", "-W", "1", target.as_str()]);
        std::thread::sleep(Duration::from_millis(100));
        let frames = cap.stop();
        let requests = frames
            .iter()
            .filter(|f| {
                matches!(f.kind, FrameKind::Arp { op: 1, .. }) && f.outgoing && f.dst == vip
            })
            .count();
        let replies = frames
            .iter()
            .filter(|f| matches!(f.kind, FrameKind::Arp { op: 2, .. }) && f.src == vip)
            .count();
        (requests, replies)
    };

    // Control, so the probe is known to see replies: an unprepared server with a VIP on
    // lo answers ARP for it.
    rs.ip(["addr", "add", "192.0.2.101/32", "dev", "lo"])
        .unwrap();
    let (req, rep) = arp_replies_for("192.0.2.101");
    assert!(
        req >= 1 && rep >= 1,
        "control: {req} requests, {rep} replies"
    );

    let out = realserver(&rs, &state, &["--vip", "192.0.2.100"]);
    assert!(
        out.stdout.contains("set net.ipv4.conf.eth0.arp_ignore = 1"),
        "{}",
        out.stdout
    );

    for vip in ["192.0.2.100", "192.0.2.101"] {
        let (req, rep) = arp_replies_for(vip);
        assert!(req >= 1, "no ARP request for {vip} seen");
        assert_eq!(rep, 0, "the real server answered ARP for {vip}");
        let neigh = cl.ip(["neigh", "show", vip, "dev", "eth0"]).unwrap();
        assert!(
            neigh.contains("FAILED") || neigh.contains("INCOMPLETE"),
            "{vip}: {neigh}"
        );
    }
    // Its own address is still resolved.
    let (req, rep) = arp_replies_for("192.0.2.2");
    assert!(
        req >= 1 && rep >= 1,
        "own address: {req} requests, {rep} replies"
    );

    // A director sends VIP traffic to the real server's MAC: accepted and answered.
    cl.ip([
        "neigh",
        "replace",
        "192.0.2.100",
        "lladdr",
        rs_mac.as_str(),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])
    .unwrap();
    cl.exec(&["ping", "-c", "1", "-W", "2", "192.0.2.100"])
        .expect("the VIP answers when the frame is addressed to the real server");

    realserver(&rs, &state, &["--undo"]);
    assert!(!has_address(&rs, "lo", ip("192.0.2.100")));
    assert!(has_address(&rs, "lo", ip("192.0.2.101")));
}

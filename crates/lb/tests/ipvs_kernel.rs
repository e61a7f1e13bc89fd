//! The IPVS backend against a real kernel: apply, change and clear a table; adopt
//! services that were in the kernel before vipd; apply every scheduler name vipd accepts.
//!
//! Where the scenarios run:
//! - this kernel has IPVS: each test runs its scenario here, on a thread in a fresh
//!   network namespace (the namespace and its IPVS table go away with the thread);
//! - no IPVS here (this project's CI machines: `# CONFIG_IP_VS is not set`), but the
//!   test VM from `bench/vm/build.sh` is built: the first test to get there boots ONE VM
//!   (`bench/vm/run.sh`, Debian's 6.1 kernel with IPVS) that runs every scenario of this
//!   file, each as `<this test binary> --exact NAME` with `VIPD_IN_VM=1` (so the guest
//!   side runs it natively, never recursing); every test then checks its own part of
//!   that one run and prints the guest's output when it failed;
//! - neither, or not root: the test says why it skipped and passes.
//!
//! The VM always runs every scenario of this file, also when a test name filter selects
//! only some of them (one boot costs more than all four scenarios).
//!
//! The kernel's table is read back two ways after every step: `ipvsadm -Ln` (with and
//! without `--thresholds`), an independent reader, when ipvsadm is installed; and the
//! crate's own public dump decoders. Both are rendered to ipvsadm's text, must agree
//! with each other, and must equal hand-written expectations. Set
//! `VIPD_TEST_NO_IPVSADM=1` to exercise the decoder-only path.
//!
//! Only documentation addresses are used (192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24, 2001:db8::/32), and only inside throw-away namespaces / the VM.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vipd_lb::ipvs::{encode, lower, DestAttrs, Ipvs, KernelService, SvcAttrs};
use vipd_lb::model::{Persistence, SchedFlags};
use vipd_lb::netlink::NlSocket;
use vipd_lb::{DataPlane, Dest, Family, Forward, Proto, Sched, Service, ServiceKey, Table};

/// Set in the guest: run the scenario here, never start another VM.
const IN_VM: &str = "VIPD_IN_VM";
/// Printed by a scenario that ran to the end; the host looks for it in the guest output.
const PASSED: &str = "@@ipvs-kernel-scenario-passed";
/// Limit for the whole VM run: boot + every scenario under TCG took 9-10 s on an idle
/// 2-core host, 26 s with both cores busy.
const VM_TIMEOUT_SECS: u32 = 300;

// ---------------------------------------------------------------------------------------
// The tests. `kernel_tests!` keeps the list the VM runs equal to the test names.

macro_rules! kernel_tests {
    ($($name:ident => $scenario:path;)*) => {
        /// Every test of this file, in the order the VM runs them.
        const ALL_TESTS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                kernel_test(stringify!($name), $scenario);
            }
        )*
    };
}

kernel_tests! {
    apply_change_and_clear_leave_other_services_alone => scenario_apply_change_clear;
    open_then_apply_adopts_services_already_in_the_kernel => scenario_adopt;
    every_scheduler_name_applies_or_names_the_missing_module => scenario_schedulers;
    large_table_goes_in_batches_and_refused_requests_do_not_stop_the_rest => scenario_large;
}

// ---------------------------------------------------------------------------------------
// Where to run

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ipvs_here() -> bool {
    Path::new("/proc/net/ip_vs").exists() || Ipvs::available()
}

fn kernel_test(name: &str, scenario: fn()) {
    let in_vm = std::env::var_os(IN_VM).is_some();
    if !is_root() {
        assert!(!in_vm, "{IN_VM} is set but this is not root");
        eprintln!("skipped: {name} needs root (network namespaces, IPVS)");
        return;
    }
    if ipvs_here() {
        let t = Instant::now();
        in_new_netns(scenario);
        // The host side of a VM run checks for this line: proof that the scenario ran
        // to its end here (and did not, say, skip).
        println!("{PASSED} {name} ({:.1} s)", t.elapsed().as_secs_f64());
        return;
    }
    assert!(
        !in_vm,
        "{IN_VM} is set, but this kernel has no IPVS (no /proc/net/ip_vs, no IPVS genl family)"
    );
    match vm_unavailable() {
        Some(why) => eprintln!(
            "skipped: {name}: no IPVS here (load ip_vs?) and no VM: {why} (run bench/vm/build.sh)"
        ),
        None => check_vm_result(name),
    }
}

/// Runs `f` on a thread that has moved to a fresh network namespace with `lo` up.
/// IPVS refuses NAT and DR destinations (EINVAL) in a namespace whose local routing
/// table was never created; bringing `lo` up creates it.
fn in_new_netns(f: fn()) {
    let r = std::thread::spawn(move || {
        // SAFETY: plain syscall; CLONE_NEWNET moves only the calling thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        lo_up();
        f()
    })
    .join();
    if let Err(panic) = r {
        std::panic::resume_unwind(panic);
    }
}

fn lo_up() {
    // SAFETY: a datagram socket for interface ioctls; `ifr` is a zeroed ifreq with a
    // NUL-terminated name, valid for SIOCGIFFLAGS/SIOCSIFFLAGS; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let get = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        let err = std::io::Error::last_os_error();
        assert_eq!(get, 0, "SIOCGIFFLAGS lo: {err}");
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        let set = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(set, 0, "SIOCSIFFLAGS lo up: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// The VM: one boot for every test of this file

use vipd_netns::vm::{find_program, unavailable as vm_unavailable, VmRun};

/// Boots the VM once (the first caller; the others wait) and runs every test of this
/// file in it, one process each, between markers the host splits the output by.
fn vm_run() -> &'static Result<VmRun, String> {
    static RUN: OnceLock<Result<VmRun, String>> = OnceLock::new();
    RUN.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let script = r#"
exe=$1; shift
st=0
for t in "$@"; do
  echo "@@vm-test-begin $t"
  "$exe" --exact "$t" --nocapture --test-threads 1 2>&1
  rc=$?
  echo "@@vm-test-end $t $rc"
  [ "$rc" -eq 0 ] || st=1
done
exit $st
"#;
        let args: Vec<&str> = ["-c", script, "vipd-ipvs-kernel"]
            .into_iter()
            .chain(exe.to_str())
            .chain(ALL_TESTS.iter().copied())
            .collect();
        let env: Vec<(&str, String)> = ["VIPD_TEST_NO_IPVSADM"]
            .into_iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = vipd_netns::vm::run(
            Path::new("/bin/bash"),
            &args,
            &env,
            &[exe.as_path()],
            Duration::from_secs(VM_TIMEOUT_SECS.into()),
        )?;
        eprintln!(
            "VM run of {} tests: exit status {:?}, {:.1} s",
            ALL_TESTS.len(),
            run.status,
            run.wall.as_secs_f64()
        );
        Ok(run)
    })
}

/// This test's part of the VM run: its output and exit status.
fn section<'a>(stdout: &'a str, name: &str) -> Option<(&'a str, Option<i32>)> {
    let begin = format!("@@vm-test-begin {name}\n");
    let start = stdout.find(&begin)? + begin.len();
    let rest = &stdout[start..];
    let end_marker = format!("@@vm-test-end {name} ");
    match rest.find(&end_marker) {
        Some(i) => {
            let status = rest[i + end_marker.len()..]
                .lines()
                .next()
                .and_then(|s| s.trim().parse().ok());
            Some((&rest[..i], status))
        }
        None => Some((rest, None)),
    }
}

fn check_vm_result(name: &str) {
    let run = match vm_run() {
        Ok(r) => r,
        Err(e) => panic!("could not run the VM: {e}"),
    };
    let Some((out, status)) = section(&run.stdout, name) else {
        panic!("{name} did not start in the VM\n{}", run.report());
    };
    eprintln!(
        "ran in the VM (bench/vm/run.sh; whole VM run {:.1} s):\n{out}",
        run.wall.as_secs_f64()
    );
    assert_eq!(
        status,
        Some(0),
        "{name} failed in the VM (exit status {status:?})\n{}",
        run.report()
    );
    // Exit status 0 also comes from a test filter that matched nothing, or a scenario
    // that returned early: demand the scenario's own last line (libtest's
    // "test NAME ... " may precede it on the same line).
    assert!(
        out.lines()
            .any(|l| l.contains(&format!("{PASSED} {name} "))),
        "{name} exited 0 in the VM without finishing its scenario\n{}",
        run.report()
    );
}

// ---------------------------------------------------------------------------------------
// Reading the kernel's table: ipvsadm and the crate's decoders, as ipvsadm's text

/// Service line (`TCP 192.0.2.100:80 wrr`, whitespace collapsed) → its destinations
/// (`192.0.2.11:80 Masq 3 0 0`: address, method, weight, upper and lower threshold),
/// sorted.
type Snapshot = BTreeMap<String, Vec<String>>;

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn snapshot(entries: &[(&str, &[&str])]) -> Snapshot {
    let mut out = Snapshot::new();
    for (svc, dests) in entries {
        let mut d: Vec<String> = dests.iter().map(|x| words(x)).collect();
        d.sort();
        assert!(out.insert(words(svc), d).is_none(), "{svc} twice");
    }
    out
}

fn union(a: &Snapshot, b: &Snapshot) -> Snapshot {
    let mut out = a.clone();
    for (k, v) in b {
        assert!(out.insert(k.clone(), v.clone()).is_none(), "{k} twice");
    }
    out
}

fn ipvsadm() -> Option<&'static Path> {
    static IPVSADM: OnceLock<Option<PathBuf>> = OnceLock::new();
    IPVSADM
        .get_or_init(|| {
            if std::env::var_os("VIPD_TEST_NO_IPVSADM").is_some() {
                return None;
            }
            let p = find_program("ipvsadm");
            if p.is_none() {
                eprintln!(
                    "note: ipvsadm is not installed; reading IPVS with the crate's decoders only"
                );
            }
            p
        })
        .as_deref()
}

fn run_ipvsadm(args: &[&str]) -> String {
    let exe = ipvsadm().expect("ipvsadm");
    let out = Command::new(exe)
        .args(args)
        .output()
        .expect("running ipvsadm");
    assert!(
        out.status.success(),
        "ipvsadm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ipvsadm output is UTF-8")
}

/// `ipvsadm -Ln` (or `-Ln --thresholds`) as (service line, destination columns).
fn parse_ipvsadm(text: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let mut out: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first() {
            Some(&"->") => {
                if w.get(1) == Some(&"RemoteAddress:Port") {
                    continue; // column header
                }
                let (_, dests) = out.last_mut().expect("destination before any service");
                dests.push(w[1..].iter().map(|s| s.to_string()).collect());
            }
            Some(&("TCP" | "UDP" | "SCTP" | "FWM")) => out.push((words(line), Vec::new())),
            _ => {} // "IP Virtual Server version ...", "Prot LocalAddress:Port ..."
        }
    }
    out
}

fn ipvsadm_snapshot() -> Snapshot {
    let list = parse_ipvsadm(&run_ipvsadm(&["-Ln"]));
    let thresholds = parse_ipvsadm(&run_ipvsadm(&["-Ln", "--thresholds"]));
    assert_eq!(
        list.len(),
        thresholds.len(),
        "ipvsadm: {list:?} / {thresholds:?}"
    );
    let mut out = Snapshot::new();
    for ((svc, dests), (svc2, thr)) in list.into_iter().zip(thresholds) {
        assert_eq!(svc, svc2);
        assert_eq!(dests.len(), thr.len(), "{svc}");
        let mut d: Vec<String> = dests
            .iter()
            .zip(&thr)
            .map(|(l, t)| {
                // -Ln: addr Forward Weight ActiveConn InActConn;
                // --thresholds: addr Uthreshold Lthreshold ActiveConn InActConn
                assert_eq!(l[0], t[0], "{svc}");
                format!("{} {} {} {} {}", l[0], l[1], l[2], t[1], t[2])
            })
            .collect();
        d.sort();
        assert!(
            out.insert(svc.clone(), d).is_none(),
            "{svc} twice in ipvsadm -Ln"
        );
    }
    out
}

fn sockaddr(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// ipvsadm's names for the scheduler flag bits 0x08, 0x10, 0x20.
fn sched_flag_names(sched: &str) -> [&'static str; 3] {
    match sched {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    }
}

/// A service as `ipvsadm -Ln` prints it.
fn render_service(s: &SvcAttrs) -> String {
    let mut out = match s.key {
        ServiceKey::Addr { addr, port, proto } => {
            let p = match proto {
                Proto::Tcp => "TCP",
                Proto::Udp => "UDP",
                Proto::Sctp => "SCTP",
            };
            format!("{p} {}", sockaddr(&addr, port))
        }
        ServiceKey::Fwmark { mark, family } => match family {
            Family::V4 => format!("FWM {mark}"),
            Family::V6 => format!("FWM {mark} IPv6"),
        },
    };
    out += &format!(" {}", s.sched);
    let names = sched_flag_names(&s.sched);
    let set: Vec<&str> = [0x08, 0x10, 0x20]
        .iter()
        .zip(names)
        .filter(|(bit, _)| s.flags & **bit != 0)
        .map(|(_, n)| n)
        .collect();
    if !set.is_empty() {
        out += &format!(" ({})", set.join(","));
    }
    if s.flags & 0x01 != 0 {
        out += &format!(" persistent {}", s.timeout);
        match s.key.family() {
            Family::V4 if s.netmask != u32::MAX => {
                out += &format!(" mask {}", std::net::Ipv4Addr::from(s.netmask))
            }
            Family::V6 if s.netmask != 128 => out += &format!(" mask {}", s.netmask),
            _ => {}
        }
        if let Some(pe) = &s.pe_name {
            out += &format!(" pe {pe}");
        }
    }
    if s.flags & 0x04 != 0 {
        out += " ops";
    }
    out
}

fn render_dest(d: &DestAttrs) -> String {
    let fwd = match d.fwd {
        0 => "Masq",
        1 => "Local",
        2 => "Tunnel",
        3 => "Route",
        _ => "Unknown",
    };
    format!(
        "{} {fwd} {} {} {}",
        sockaddr(&d.addr, d.port),
        d.weight,
        d.u_thresh,
        d.l_thresh
    )
}

fn ipvs_family(sock: &mut NlSocket) -> u16 {
    let seq = sock.next_seq();
    let replies = sock
        .dump(encode::get_family(seq).as_bytes())
        .expect("listing genl families");
    encode::family_id(&replies, "IPVS").expect("IPVS genl family")
}

/// Every service in this namespace's IPVS table, through the crate's decoders.
fn dump_kernel() -> Vec<KernelService> {
    let mut sock = NlSocket::open(libc::NETLINK_GENERIC as isize).expect("genl socket");
    let family = ipvs_family(&mut sock);
    let seq = sock.next_seq();
    let replies = sock
        .dump(encode::get_services(family, seq).as_bytes())
        .expect("IPVS service dump");
    let mut out = Vec::new();
    for m in &replies {
        let svc = encode::decode_service(m)
            .expect("decoding a service")
            .expect("a service vipd can name");
        let seq = sock.next_seq();
        let replies = sock
            .dump(encode::get_dests(family, &svc.key, seq).as_bytes())
            .expect("IPVS destination dump");
        let mut dests: Vec<DestAttrs> = replies
            .iter()
            .map(|m| encode::decode_dest(m, svc.key.family()).expect("decoding a destination"))
            .collect();
        dests.sort_by_key(|d| (d.addr, d.port));
        out.push(KernelService { svc, dests });
    }
    out.sort_by_key(|k| k.svc.key);
    out
}

fn decoder_snapshot(services: &[KernelService]) -> Snapshot {
    let mut out = Snapshot::new();
    for k in services {
        let mut d: Vec<String> = k.dests.iter().map(render_dest).collect();
        d.sort();
        assert!(out.insert(render_service(&k.svc), d).is_none());
    }
    out
}

/// The kernel's table must be `expect` (as ipvsadm would print it), seen by ipvsadm
/// when installed and by the decoders; and every service of `vipd` (a table vipd
/// applied) must equal, attribute for attribute, what `lower` made of it (this also
/// covers what ipvsadm does not print: the netmask of a non-persistent service).
fn assert_kernel(step: &str, expect: &Snapshot, vipd: &Table) {
    check_kernel(step, expect, vipd, true)
}

/// [`assert_kernel`] without ipvsadm, for intermediate steps (each ipvsadm run costs
/// ~0.1 s in the VM).
fn assert_kernel_decoded(step: &str, expect: &Snapshot, vipd: &Table) {
    check_kernel(step, expect, vipd, false)
}

fn check_kernel(step: &str, expect: &Snapshot, vipd: &Table, use_ipvsadm: bool) {
    let use_ipvsadm = use_ipvsadm && ipvsadm().is_some();
    let dumped = dump_kernel();
    let decoded = decoder_snapshot(&dumped);
    println!(
        "{step}: {} services, {} destinations (read by {})",
        dumped.len(),
        dumped.iter().map(|k| k.dests.len()).sum::<usize>(),
        if use_ipvsadm {
            "ipvsadm -Ln and the decoders"
        } else {
            "the decoders"
        }
    );
    if use_ipvsadm {
        let seen = ipvsadm_snapshot();
        assert!(
            seen == decoded,
            "{step}: ipvsadm -Ln (left) and the crate's decoders (right) disagree:\n{}",
            snapshot_diff(&seen, &decoded)
        );
    }
    assert!(
        decoded == *expect,
        "{step}: kernel (left) vs expected (right):\n{}",
        snapshot_diff(&decoded, expect)
    );
    let keys: BTreeSet<ServiceKey> = vipd.services.iter().map(|s| s.key).collect();
    let mine: Vec<KernelService> = dumped
        .into_iter()
        .filter(|k| keys.contains(&k.svc.key))
        .collect();
    let want = sorted(lower(vipd));
    assert!(
        mine == want,
        "{step}: kernel (left) vs lower(table) (right):\n{}",
        services_diff(&mine, &want)
    );
}

/// What vipd believes it programmed is `t` (destination order aside: a service adopted
/// from a dump lists them in the kernel's order).
fn assert_programmed(ipvs: &Ipvs, t: &Table) {
    let have = sorted(ipvs.programmed().to_vec());
    let want = sorted(lower(t));
    assert!(
        have == want,
        "programmed() (left) vs lower(table) (right):\n{}",
        services_diff(&have, &want)
    );
}

/// Where two snapshots differ, briefly (tables here have up to 1200 destinations).
fn snapshot_diff(left: &Snapshot, right: &Snapshot) -> String {
    let mut out = String::new();
    let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    for k in keys {
        match (left.get(k), right.get(k)) {
            (Some(l), Some(r)) if l == r => {}
            (Some(l), Some(r)) => {
                out += &format!("  {k}: destinations differ\n");
                out += &list_diff(l, r);
            }
            (Some(l), None) => out += &format!("  only left:  {k} ({} destinations)\n", l.len()),
            (None, Some(r)) => out += &format!("  only right: {k} ({} destinations)\n", r.len()),
            (None, None) => unreachable!(),
        }
    }
    out
}

fn list_diff<T: Ord + std::fmt::Debug>(left: &[T], right: &[T]) -> String {
    let l: BTreeSet<&T> = left.iter().collect();
    let r: BTreeSet<&T> = right.iter().collect();
    let mut out = String::new();
    for (what, only) in [("left", l.difference(&r)), ("right", r.difference(&l))] {
        let only: Vec<&&T> = only.collect();
        for x in only.iter().take(10) {
            out += &format!("    only {what}: {x:?}\n");
        }
        if only.len() > 10 {
            out += &format!("    ... and {} more only {what}\n", only.len() - 10);
        }
    }
    out
}

/// Where two lists of kernel services differ, briefly.
fn services_diff(left: &[KernelService], right: &[KernelService]) -> String {
    let by_key = |v: &[KernelService]| -> BTreeMap<ServiceKey, KernelService> {
        v.iter().map(|k| (k.svc.key, k.clone())).collect()
    };
    let (l, r) = (by_key(left), by_key(right));
    let keys: BTreeSet<&ServiceKey> = l.keys().chain(r.keys()).collect();
    let mut out = String::new();
    for k in keys {
        match (l.get(k), r.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                if a.svc != b.svc {
                    out += &format!("  {k}: {:?}\n     vs {:?}\n", a.svc, b.svc);
                }
                if a.dests != b.dests {
                    out += &format!("  {k}: destinations differ\n");
                    let fmt = |d: &DestAttrs| format!("{d:?}");
                    let ad: Vec<String> = a.dests.iter().map(fmt).collect();
                    let bd: Vec<String> = b.dests.iter().map(fmt).collect();
                    out += &list_diff(&ad, &bd);
                }
            }
            (Some(a), None) => out += &format!("  only left:  {:?}\n", a.svc),
            (None, Some(b)) => out += &format!("  only right: {:?}\n", b.svc),
            (None, None) => unreachable!(),
        }
    }
    out
}

fn sorted(mut v: Vec<KernelService>) -> Vec<KernelService> {
    for k in &mut v {
        k.dests.sort_by_key(|d| (d.addr, d.port));
    }
    v.sort_by_key(|k| k.svc.key);
    v
}

// ---------------------------------------------------------------------------------------
// Creating services behind vipd's back: ipvsadm, or the crate's encoders without it

fn ipvsadm_svc_args(key: &ServiceKey) -> Vec<String> {
    match key {
        ServiceKey::Addr { addr, port, proto } => vec![
            match proto {
                Proto::Tcp => "-t",
                Proto::Udp => "-u",
                Proto::Sctp => "--sctp-service",
            }
            .into(),
            sockaddr(addr, *port),
        ],
        ServiceKey::Fwmark { mark, family } => {
            let mut a = vec!["-f".into(), mark.to_string()];
            if *family == Family::V6 {
                a.push("-6".into());
            }
            a
        }
    }
}

/// Creates `services` in the kernel without vipd's data plane (as an admin or a previous
/// vipd run would have).
fn create_behind_vipds_back(services: &[KernelService]) {
    if ipvsadm().is_some() {
        for k in services {
            let s = &k.svc;
            let mut a: Vec<String> = vec!["-A".into()];
            a.extend(ipvsadm_svc_args(&s.key));
            a.extend(["-s".into(), s.sched.clone()]);
            if s.flags & 0x01 != 0 {
                a.extend(["-p".into(), s.timeout.to_string()]);
                a.extend([
                    "-M".into(),
                    match s.key.family() {
                        Family::V4 => std::net::Ipv4Addr::from(s.netmask).to_string(),
                        Family::V6 => s.netmask.to_string(),
                    },
                ]);
            }
            if let Some(pe) = &s.pe_name {
                a.extend(["--pe".into(), pe.clone()]);
            }
            if s.flags & 0x04 != 0 {
                a.push("-o".into());
            }
            let names = sched_flag_names(&s.sched);
            let flags: Vec<&str> = [0x08, 0x10, 0x20]
                .iter()
                .zip(names)
                .filter(|(bit, _)| s.flags & **bit != 0)
                .map(|(_, n)| n)
                .collect();
            if !flags.is_empty() {
                a.extend(["-b".into(), flags.join(",")]);
            }
            run_ipvsadm(&a.iter().map(String::as_str).collect::<Vec<_>>());
            for d in &k.dests {
                let mut a: Vec<String> = vec!["-a".into()];
                a.extend(ipvsadm_svc_args(&s.key));
                a.extend(["-r".into(), sockaddr(&d.addr, d.port)]);
                a.push(
                    match d.fwd {
                        0 => "-m",
                        2 => "-i",
                        3 => "-g",
                        f => panic!("forwarding method {f}"),
                    }
                    .into(),
                );
                a.extend(["-w".into(), d.weight.to_string()]);
                a.extend(["-x".into(), d.u_thresh.to_string()]);
                a.extend(["-y".into(), d.l_thresh.to_string()]);
                run_ipvsadm(&a.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        return;
    }
    let mut sock = NlSocket::open(libc::NETLINK_GENERIC as isize).expect("genl socket");
    let family = ipvs_family(&mut sock);
    for k in services {
        let seq = sock.next_seq();
        sock.transact(encode::new_service(family, &k.svc, seq).as_bytes(), &[seq])
            .unwrap_or_else(|e| panic!("creating {}: {e:#}", k.svc.key));
        for d in &k.dests {
            let seq = sock.next_seq();
            sock.transact(
                encode::new_dest(family, &k.svc.key, d, seq).as_bytes(),
                &[seq],
            )
            .unwrap_or_else(|e| panic!("adding {} to {}: {e:#}", d.addr, k.svc.key));
        }
    }
}

/// Deletes service `key` without vipd's data plane.
fn delete_behind_vipds_back(key: &ServiceKey) {
    if ipvsadm().is_some() {
        let mut a: Vec<String> = vec!["-D".into()];
        a.extend(ipvsadm_svc_args(key));
        run_ipvsadm(&a.iter().map(String::as_str).collect::<Vec<_>>());
        return;
    }
    let mut sock = NlSocket::open(libc::NETLINK_GENERIC as isize).expect("genl socket");
    let family = ipvs_family(&mut sock);
    let seq = sock.next_seq();
    sock.transact(encode::del_service(family, key, seq).as_bytes(), &[seq])
        .unwrap_or_else(|e| panic!("deleting {key}: {e:#}"));
}

// ---------------------------------------------------------------------------------------
// Building tables

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        addr: ip(addr),
        port,
        proto: Proto::Tcp,
    }
}

fn udp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        addr: ip(addr),
        port,
        proto: Proto::Udp,
    }
}

fn dest(addr: &str, port: u16, weight: u32, forward: Forward) -> Dest {
    Dest {
        addr: ip(addr),
        port,
        weight,
        forward,
        upper_threshold: 0,
        lower_threshold: 0,
        mac: None,
    }
}

fn service(key: ServiceKey, sched: Sched, dests: Vec<Dest>) -> Service {
    Service {
        key,
        sched,
        flags: SchedFlags::default(),
        forward: Forward::Nat,
        persistence: None,
        pe_name: None,
        device: None,
        dests,
    }
}

fn persistent(mut s: Service, secs: u64, prefix_len: u8) -> Service {
    s.persistence = Some(Persistence {
        timeout: Duration::from_secs(secs),
        prefix_len,
    });
    s
}

fn table(services: Vec<Service>) -> Table {
    Table { services }
}

fn apply(ipvs: &mut Ipvs, t: &Table, step: &str) {
    if let Err(e) = ipvs.apply(t) {
        panic!("{step}: apply failed: {e:#}");
    }
}

// ---------------------------------------------------------------------------------------
// Scenario (a): apply, change, clear

fn scenario_apply_change_clear() {
    // Not vipd's: one elsewhere, one with vipd's address and port but UDP (the protocol is
    // part of the key). Created first; every step must leave them exactly so.
    let others = lower(&table(vec![
        service(
            tcp("198.51.100.1", 80),
            Sched::Lc,
            vec![dest("198.51.100.11", 80, 1, Forward::Nat)],
        ),
        service(udp("192.0.2.100", 80), Sched::Rr, vec![]),
    ]));
    create_behind_vipds_back(&others);
    let foreign = snapshot(&[
        ("TCP 198.51.100.1:80 lc", &["198.51.100.11:80 Masq 1 0 0"]),
        ("UDP 192.0.2.100:80 rr", &[]),
    ]);
    assert_kernel("before vipd", &foreign, &Table::default());

    let mut ipvs = Ipvs::open(false).expect("Ipvs::open");
    assert!(ipvs.programmed().is_empty());

    // 1. A weighted round-robin service with two NAT destinations.
    let web = tcp("192.0.2.100", 80);
    let mut t1 = table(vec![service(
        web,
        Sched::Wrr,
        vec![
            dest("192.0.2.11", 80, 3, Forward::Nat),
            Dest {
                upper_threshold: 100,
                lower_threshold: 10,
                ..dest("192.0.2.12", 8080, 1, Forward::Nat)
            },
        ],
    )]);
    apply(&mut ipvs, &t1, "1 first table");
    let s1 = snapshot(&[(
        "TCP 192.0.2.100:80 wrr",
        &["192.0.2.11:80 Masq 3 0 0", "192.0.2.12:8080 Masq 1 100 10"],
    )]);
    assert_kernel("1 first table", &union(&foreign, &s1), &t1);
    assert_programmed(&ipvs, &t1);
    apply(&mut ipvs, &t1, "1 again (nothing to do)");
    assert_kernel_decoded("1 again", &union(&foreign, &s1), &t1);

    // 2. A weight changes, one destination is replaced, the scheduler switches (with
    //    scheduler flags), and an IPv6 real server is reached by tunnelling.
    let t2 = {
        let s = &mut t1.services[0];
        s.dests[0].weight = 5;
        s.dests[1] = dest("192.0.2.13", 80, 2, Forward::Nat);
        s.dests.push(dest("2001:db8::13", 80, 1, Forward::Tun));
        s.sched = Sched::Sh;
        s.flags.port = true;
        t1.clone()
    };
    apply(&mut ipvs, &t2, "2 changes");
    let s2 = snapshot(&[(
        "TCP 192.0.2.100:80 sh (sh-port)",
        &[
            "192.0.2.11:80 Masq 5 0 0",
            "192.0.2.13:80 Masq 2 0 0",
            "[2001:db8::13]:80 Tunnel 1 0 0",
        ],
    )]);
    assert_kernel("2 changes", &union(&foreign, &s2), &t2);

    // 3. Back to wrr without flags, the IPv6 real server goes again (a DEL_DEST across
    //    families); an IPv6 service with DR destinations and 300 s persistence per /64,
    //    a fwmark service, a one-packet UDP service.
    let mut t3 = t2.clone();
    {
        let s = &mut t3.services[0];
        s.dests.pop();
        s.sched = Sched::Wrr;
        s.flags = SchedFlags::default();
    }
    let v6 = tcp("2001:db8::100", 443);
    t3.services.push(persistent(
        service(
            v6,
            Sched::Lc,
            vec![
                dest("2001:db8::11", 443, 1, Forward::Dr),
                dest("2001:db8::12", 443, 2, Forward::Dr),
            ],
        ),
        300,
        64,
    ));
    let mark = ServiceKey::Fwmark {
        mark: 7,
        family: Family::V4,
    };
    t3.services.push(persistent(
        service(
            mark,
            Sched::Wlc,
            vec![
                dest("192.0.2.21", 0, 1, Forward::Dr),
                dest("192.0.2.22", 0, 2, Forward::Dr),
            ],
        ),
        60,
        24,
    ));
    let mut dns = service(
        udp("192.0.2.100", 53),
        Sched::Rr,
        vec![dest("192.0.2.31", 5353, 1, Forward::Nat)],
    );
    dns.flags.one_packet = true;
    // keepalived's "persistent port 0" (all ports), and an SCTP service.
    // (rr ignores the scheduler flag; ipvsadm shows it by number.)
    let mut all_ports = persistent(
        service(
            tcp("192.0.2.101", 0),
            Sched::Rr,
            vec![dest("192.0.2.41", 0, 1, Forward::Dr)],
        ),
        600,
        32,
    );
    all_ports.flags.fallback = true;
    t3.services.push(all_ports);
    t3.services.push(service(
        ServiceKey::Addr {
            addr: ip("192.0.2.100"),
            port: 9,
            proto: Proto::Sctp,
        },
        Sched::Lblcr,
        vec![dest("192.0.2.51", 9, 1, Forward::Nat)],
    ));
    t3.services.push(dns);
    apply(&mut ipvs, &t3, "3 more services");
    let web3: (&str, &[&str]) = (
        "TCP 192.0.2.100:80 wrr",
        &["192.0.2.11:80 Masq 5 0 0", "192.0.2.13:80 Masq 2 0 0"],
    );
    let s3 = snapshot(&[
        web3,
        (
            "TCP [2001:db8::100]:443 lc persistent 300 mask 64",
            &[
                "[2001:db8::11]:443 Route 1 0 0",
                "[2001:db8::12]:443 Route 2 0 0",
            ],
        ),
        (
            "FWM 7 wlc persistent 60 mask 255.255.255.0",
            &["192.0.2.21:0 Route 1 0 0", "192.0.2.22:0 Route 2 0 0"],
        ),
        (
            "TCP 192.0.2.101:0 rr (flag-1) persistent 600",
            &["192.0.2.41:0 Route 1 0 0"],
        ),
        ("SCTP 192.0.2.100:9 lblcr", &["192.0.2.51:9 Masq 1 0 0"]),
        ("UDP 192.0.2.100:53 rr ops", &["192.0.2.31:5353 Masq 1 0 0"]),
    ]);
    assert_kernel("3 more services", &union(&foreign, &s3), &t3);

    // 4. Persistence off again (SET_SERVICE must clear flag, timeout and netmask), a
    //    service goes (DEL_SERVICE), a DR destination is drained to weight 0.
    let mut t4 = t3.clone();
    t4.services[1].persistence = None;
    t4.services[2].dests[1].weight = 0;
    t4.services.pop();
    apply(&mut ipvs, &t4, "4 persistence off, a service gone");
    let s4 = snapshot(&[
        web3,
        (
            "TCP [2001:db8::100]:443 lc",
            &[
                "[2001:db8::11]:443 Route 1 0 0",
                "[2001:db8::12]:443 Route 2 0 0",
            ],
        ),
        (
            "FWM 7 wlc persistent 60 mask 255.255.255.0",
            &["192.0.2.21:0 Route 1 0 0", "192.0.2.22:0 Route 0 0 0"],
        ),
        (
            "TCP 192.0.2.101:0 rr (flag-1) persistent 600",
            &["192.0.2.41:0 Route 1 0 0"],
        ),
        ("SCTP 192.0.2.100:9 lblcr", &["192.0.2.51:9 Masq 1 0 0"]),
    ]);
    assert_kernel("4 persistence off", &union(&foreign, &s4), &t4);
    assert_programmed(&ipvs, &t4);

    // 4b. Someone deletes vipd's web service behind its back. The next apply, which only
    //     changes a weight there, fails (the kernel has no such service); vipd re-reads
    //     the kernel, and the apply after that puts the service back.
    delete_behind_vipds_back(&web);
    let mut t4b = t4.clone();
    t4b.services[0].dests[0].weight = 6;
    let err = ipvs
        .apply(&t4b)
        .expect_err("changing a service that was deleted behind vipd's back");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("change destination 192.0.2.11:80 of tcp 192.0.2.100:80")
            && msg.contains("(the service is missing)"),
        "{msg}"
    );
    let mut known = t4b.clone();
    known.services.remove(0);
    assert_programmed(&ipvs, &known);
    apply(&mut ipvs, &t4b, "4b after re-reading");
    let mut s4b = s4.clone();
    s4b.insert(
        "TCP 192.0.2.100:80 wrr".into(),
        vec![
            "192.0.2.11:80 Masq 6 0 0".into(),
            "192.0.2.13:80 Masq 2 0 0".into(),
        ],
    );
    assert_kernel("4b service put back", &union(&foreign, &s4b), &t4b);

    // 5. clear: every service of vipd's goes, the others stay; clearing twice is fine.
    ipvs.clear().unwrap_or_else(|e| panic!("clear: {e:#}"));
    assert_kernel("5 cleared", &foreign, &Table::default());
    assert!(ipvs.programmed().is_empty());
    ipvs.clear()
        .unwrap_or_else(|e| panic!("clear again: {e:#}"));
    assert_kernel_decoded("5 cleared twice", &foreign, &Table::default());
}

// ---------------------------------------------------------------------------------------
// Scenario (b): adoption

fn scenario_adopt() {
    let svc = |key, sched: &str, flags, timeout, netmask, pe: Option<&str>, dests| KernelService {
        svc: SvcAttrs {
            key,
            sched: sched.into(),
            flags,
            timeout,
            netmask,
            pe_name: pe.map(Into::into),
        },
        dests,
    };
    let da = |addr: &str, port, fwd, weight| DestAttrs {
        addr: ip(addr),
        port,
        fwd,
        weight,
        u_thresh: 0,
        l_thresh: 0,
    };
    let (masq, tun) = (0, 2);
    let web = tcp("203.0.113.10", 443);
    let sip = udp("203.0.113.10", 5060);
    let mark6 = ServiceKey::Fwmark {
        mark: 9,
        family: Family::V6,
    };
    let same = tcp("203.0.113.11", 443);
    // What an earlier vipd run (or an admin) left: ...
    let before = vec![
        // ... vipd's web service with another scheduler, a wrong weight and a server
        // the configuration no longer has;
        svc(
            web,
            "rr",
            0,
            0,
            u32::MAX,
            None,
            vec![
                da("203.0.113.21", 443, masq, 1),
                da("203.0.113.22", 443, masq, 7),
            ],
        ),
        // ... a persistent SIP service with the sip persistence engine, which vipd wants
        // plain;
        svc(
            sip,
            "rr",
            0x01,
            60,
            u32::MAX,
            Some("sip"),
            vec![da("203.0.113.31", 5060, masq, 1)],
        ),
        // ... an IPv6 fwmark service with one server tunnelled, which vipd routes directly;
        svc(
            mark6,
            "wlc",
            0x01,
            120,
            64,
            None,
            vec![da("2001:db8::31", 0, tun, 1)],
        ),
        // ... a service exactly as vipd wants it;
        svc(
            same,
            "wrr",
            0,
            0,
            u32::MAX,
            None,
            vec![da("203.0.113.41", 443, masq, 1)],
        ),
        // ... and one vipd's configuration does not name.
        svc(
            tcp("203.0.113.10", 8443),
            "lc",
            0,
            0,
            u32::MAX,
            None,
            vec![da("203.0.113.21", 8443, masq, 1)],
        ),
    ];
    create_behind_vipds_back(&before);
    let foreign = snapshot(&[(
        "TCP 203.0.113.10:8443 lc",
        &["203.0.113.21:8443 Masq 1 0 0"],
    )]);
    let s0 = snapshot(&[
        (
            "TCP 203.0.113.10:443 rr",
            &["203.0.113.21:443 Masq 1 0 0", "203.0.113.22:443 Masq 7 0 0"],
        ),
        (
            "UDP 203.0.113.10:5060 rr persistent 60 pe sip",
            &["203.0.113.31:5060 Masq 1 0 0"],
        ),
        (
            "FWM 9 IPv6 wlc persistent 120 mask 64",
            &["[2001:db8::31]:0 Tunnel 1 0 0"],
        ),
        ("TCP 203.0.113.11:443 wrr", &["203.0.113.41:443 Masq 1 0 0"]),
    ]);
    assert_kernel("before vipd", &union(&foreign, &s0), &Table::default());

    let t = table(vec![
        service(
            web,
            Sched::Wrr,
            vec![
                dest("203.0.113.21", 443, 4, Forward::Nat),
                dest("203.0.113.23", 443, 1, Forward::Nat),
            ],
        ),
        service(
            sip,
            Sched::Rr,
            vec![dest("203.0.113.31", 5060, 1, Forward::Nat)],
        ),
        persistent(
            service(
                mark6,
                Sched::Wlc,
                vec![
                    dest("2001:db8::31", 0, 1, Forward::Dr),
                    dest("2001:db8::32", 0, 3, Forward::Dr),
                ],
            ),
            120,
            64,
        ),
        service(
            same,
            Sched::Wrr,
            vec![dest("203.0.113.41", 443, 1, Forward::Nat)],
        ),
        // and one that is not in the kernel yet
        service(
            tcp("203.0.113.12", 80),
            Sched::Rr,
            vec![dest("203.0.113.51", 80, 1, Forward::Nat)],
        ),
    ]);
    let want = snapshot(&[
        (
            "TCP 203.0.113.10:443 wrr",
            &["203.0.113.21:443 Masq 4 0 0", "203.0.113.23:443 Masq 1 0 0"],
        ),
        (
            "UDP 203.0.113.10:5060 rr",
            &["203.0.113.31:5060 Masq 1 0 0"],
        ),
        (
            "FWM 9 IPv6 wlc persistent 120 mask 64",
            &[
                "[2001:db8::31]:0 Route 1 0 0",
                "[2001:db8::32]:0 Route 3 0 0",
            ],
        ),
        ("TCP 203.0.113.11:443 wrr", &["203.0.113.41:443 Masq 1 0 0"]),
        ("TCP 203.0.113.12:80 rr", &["203.0.113.51:80 Masq 1 0 0"]),
    ]);

    // vipd's sysctls: set while an Ipvs lives (in this namespace), put back after.
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/vs/{name}"))
            .unwrap()
            .trim()
            .to_string()
    };
    let names = vipd_lb::ipvs::sysctl::TUNED.map(|(n, _)| n);
    let before = names.map(sysctl);
    assert_eq!(
        before,
        ["0", "0"],
        "a new namespace has the kernel's defaults"
    );
    let ipvs = Ipvs::open(true).expect("Ipvs::open");
    assert_eq!(names.map(sysctl), ["1", "1"]);
    drop(ipvs);
    assert_eq!(names.map(sysctl), before);

    let mut ipvs = Ipvs::open(false).expect("Ipvs::open");
    // Adoption happens at apply (from a fresh dump), not at open.
    assert!(ipvs.programmed().is_empty());
    // Without adoption this would fail: NEW_SERVICE answers EEXIST for the four services
    // that are already there.
    apply(&mut ipvs, &t, "first apply");
    assert_kernel("first apply", &union(&foreign, &want), &t);
    assert_programmed(&ipvs, &t);

    // A restart: a new instance adopts everything it wants again; nothing changes.
    drop(ipvs);
    let mut ipvs = Ipvs::open(false).expect("Ipvs::open after a restart");
    apply(&mut ipvs, &t, "apply after a restart");
    assert_kernel("apply after a restart", &union(&foreign, &want), &t);
    assert_programmed(&ipvs, &t);

    // Adopted services are vipd's now: clear removes them, and only them.
    ipvs.clear().unwrap_or_else(|e| panic!("clear: {e:#}"));
    assert_kernel("cleared", &foreign, &Table::default());
}

// ---------------------------------------------------------------------------------------
// Scenario (c): every scheduler name

/// Whether the running kernel has the module `ip_vs_<sched>` (loadable or built in),
/// from its module tree; `None` when the tree is not found. In bench/vm's guest the
/// tree is at /run/vipd-vm/kroot.
fn kernel_has_scheduler(sched: &str) -> Option<bool> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let release = release.trim();
    let dirs = [
        format!("/run/vipd-vm/kroot/lib/modules/{release}"),
        format!("/lib/modules/{release}"),
    ];
    let dir = dirs
        .iter()
        .find(|d| Path::new(d).join("modules.dep").is_file())?;
    let needle = format!("/ip_vs_{sched}.ko");
    let mut found = false;
    for f in ["modules.dep", "modules.builtin"] {
        if let Ok(text) = std::fs::read_to_string(Path::new(dir).join(f)) {
            found |= text
                .lines()
                .any(|l| l.split(':').next().unwrap_or("").contains(&needle));
        }
    }
    Some(found)
}

fn scenario_schedulers() {
    let mut ipvs = Ipvs::open(false).expect("Ipvs::open");
    // One service switched through every scheduler (SET_SERVICE), and one new service
    // per scheduler (NEW_SERVICE), kept while the next ones are added.
    let switched = tcp("192.0.2.100", 80);
    let mut t = table(vec![service(
        switched,
        Sched::Rr,
        vec![dest("192.0.2.11", 80, 1, Forward::Nat)],
    )]);
    apply(&mut ipvs, &t, "start");
    let mut ok: Vec<&str> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for (i, sched) in Sched::ALL.into_iter().enumerate() {
        let name = sched.name();
        let present = kernel_has_scheduler(name);
        let good = t.clone();

        t.services[0].sched = sched;
        let set = ipvs.apply(&t);
        let mut added = t.clone();
        added.services.push(service(
            tcp("192.0.2.100", 10_000 + i as u16),
            sched,
            vec![dest("192.0.2.11", 80, 1, Forward::Nat)],
        ));
        let new = match &set {
            Ok(()) => ipvs.apply(&added),
            Err(_) => {
                // vipd re-read the kernel after the failure; the next apply converges.
                apply(&mut ipvs, &good, "after a failed switch");
                let mut add = good.clone();
                add.services.push(added.services.last().unwrap().clone());
                ipvs.apply(&add)
            }
        };
        match (&set, &new) {
            (Ok(()), Ok(())) => {
                assert_ne!(
                    present,
                    Some(false),
                    "{name} applied, but the kernel has no ip_vs_{name}"
                );
                ok.push(name);
                t = added;
            }
            (Err(e1), Err(e2)) => {
                for (what, e) in [("switching to", e1), ("adding a service with", e2)] {
                    let msg = format!("{e:#}");
                    assert!(
                        msg.contains(&format!("(scheduler {name})"))
                            && msg.contains(&format!("ip_vs_{name}")),
                        "{what} {name}: the error does not name the scheduler: {msg}"
                    );
                }
                assert_ne!(
                    present,
                    Some(true),
                    "{name} failed although the kernel has ip_vs_{name}: {e1:#}"
                );
                println!("scheduler {name}: not in this kernel: {e1:#}");
                missing.push(name.to_string());
                apply(&mut ipvs, &good, "back to the last good table");
                t = good;
            }
            _ => panic!("{name}: switching {set:?} but adding {new:?}"),
        }
        assert_kernel_decoded(
            &format!("scheduler {name}"),
            &decoder_snapshot(&sorted(lower(&t))),
            &t,
        );
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "kernel {}: schedulers applied: {}; missing: {}",
        release.trim(),
        ok.join(" "),
        if missing.is_empty() {
            "none".to_string()
        } else {
            missing.join(" ")
        }
    );
    // Every scheduler vipd knows but `twos` is in mainline since 4.18 (mh) or earlier.
    for s in Sched::ALL.iter().filter(|s| **s != Sched::Twos) {
        assert!(
            ok.contains(&s.name()),
            "{} is missing: {missing:?}",
            s.name()
        );
    }
    // The final table, read by ipvsadm too: one service per working scheduler.
    let mut expect: Vec<(String, Vec<String>)> = vec![(
        format!("TCP 192.0.2.100:80 {}", t.services[0].sched.name()),
        vec!["192.0.2.11:80 Masq 1 0 0".into()],
    )];
    for s in &t.services[1..] {
        let ServiceKey::Addr { port, .. } = s.key else {
            unreachable!()
        };
        expect.push((
            format!("TCP 192.0.2.100:{port} {}", s.sched.name()),
            vec!["192.0.2.11:80 Masq 1 0 0".into()],
        ));
    }
    assert_eq!(expect.len(), 1 + ok.len());
    let expect: Snapshot = expect.into_iter().collect();
    assert_kernel("every scheduler", &expect, &t);
    ipvs.clear().unwrap_or_else(|e| panic!("clear: {e:#}"));
    assert_kernel("cleared", &Snapshot::new(), &Table::default());
}

// ---------------------------------------------------------------------------------------
// Scenario (d): a table larger than one sendmsg batch, and a request the kernel refuses

fn scenario_large() {
    // 3 x 400 destinations: a full apply is 1200 requests of ~140 bytes, several of
    // vipd's 32 KiB sendmsg batches, and the destination dumps span several messages.
    let addrs4: Vec<String> = (1..=200).map(|a| format!("192.0.2.{a}")).collect();
    let addrs6: Vec<String> = (1..=200).map(|a| format!("2001:db8::1:{a:x}")).collect();
    let a = tcp("203.0.113.10", 80);
    let b = tcp("2001:db8::10", 443);
    let c = tcp("203.0.113.10", 443);
    let many = |addrs: &[String], ports: [u16; 2], weight: u32| -> Vec<Dest> {
        addrs
            .iter()
            .flat_map(|x| ports.map(|p| dest(x, p, weight, Forward::Nat)))
            .collect()
    };
    let build = |weight: u32| {
        table(vec![
            service(a, Sched::Wrr, many(&addrs4, [8000, 8001], weight)),
            service(b, Sched::Wlc, many(&addrs6, [8000, 8001], weight)),
            service(c, Sched::Rr, many(&addrs4, [9000, 9001], weight)),
        ])
    };
    let lines = |addrs: &[String], ports: [u16; 2], weight: u32| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for p in ports {
            for x in addrs {
                let sa = if x.contains(':') {
                    format!("[{x}]:{p}")
                } else {
                    format!("{x}:{p}")
                };
                v.push(format!("{sa} Masq {weight} 0 0"));
            }
        }
        v.sort();
        v
    };
    let svc_a = |w| {
        (
            "TCP 203.0.113.10:80 wrr".to_string(),
            lines(&addrs4, [8000, 8001], w),
        )
    };
    let svc_b = |w| {
        (
            "TCP [2001:db8::10]:443 wlc".to_string(),
            lines(&addrs6, [8000, 8001], w),
        )
    };
    let svc_c = |w| {
        (
            "TCP 203.0.113.10:443 rr".to_string(),
            lines(&addrs4, [9000, 9001], w),
        )
    };

    let mut ipvs = Ipvs::open(false).expect("Ipvs::open");
    let t1 = build(1);
    let t = Instant::now();
    apply(&mut ipvs, &t1, "1200 destinations");
    println!("1200 destinations applied in {:?}", t.elapsed());
    let expect1: Snapshot = [svc_a(1), svc_b(1), svc_c(1)].into_iter().collect();
    assert_kernel("1200 destinations", &expect1, &t1);

    // The middle service is deleted behind vipd's back, then every weight changes: the
    // kernel refuses the 400 requests for the missing service (the middle of the
    // request stream, over more than one batch); the requests after them, in the same
    // batch and in later ones, must still be applied.
    delete_behind_vipds_back(&b);
    let t2 = build(2);
    let t = Instant::now();
    let err = ipvs
        .apply(&t2)
        .expect_err("changing a service that was deleted behind vipd's back");
    let msg = format!("{err:#}");
    println!("failed after {:?}: {msg}", t.elapsed());
    assert!(
        msg.contains("change destination [2001:db8::1:1]:8000 of tcp [2001:db8::10]:443")
            && msg.contains("(the service is missing)"),
        "the error names another request: {msg}"
    );
    let mut known = t2.clone();
    known.services.remove(1);
    let expect2: Snapshot = [svc_a(2), svc_c(2)].into_iter().collect();
    assert_kernel("every other weight changed", &expect2, &known);
    // vipd re-read the kernel after the failure: it knows the truth.
    assert_programmed(&ipvs, &known);
    apply(&mut ipvs, &t2, "the missing service put back");
    let expect3: Snapshot = [svc_a(2), svc_b(2), svc_c(2)].into_iter().collect();
    assert_kernel_decoded("the missing service put back", &expect3, &t2);

    ipvs.clear().unwrap_or_else(|e| panic!("clear: {e:#}"));
    assert_kernel("cleared", &Snapshot::new(), &Table::default());
}

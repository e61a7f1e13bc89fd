//! keepalived's DBus interface (`enable_dbus`, issue 15) on a private `dbus-daemon` whose
//! policy includes the one vipd ships (packaging/org.keepalived.Vrrp1.conf), checked
//! with `busctl` and `gdbus monitor` as an operator's scripts would.

mod common;

use common::{Cluster, Spec};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use vipd_netns::{Proc, WorkDir};

const SERVICE: &str = "org.keepalived.Vrrp1";
const VRRP: &str = "/org/keepalived/Vrrp1/Vrrp";
const VI_1: &str = "/org/keepalived/Vrrp1/Instance/eth0/51/IPv4";
const VI_2: &str = "/org/keepalived/Vrrp1/Instance/eth0/52/IPv6";

/// The tools, or a skip outside CI (CI installs them: .ci/run).
fn tools() -> bool {
    common::tools_or_skip(
        &["dbus-daemon", "busctl", "gdbus", "setpriv"],
        "dbus, systemd, libglib2.0-bin, util-linux",
    )
}

/// A private system-like bus: Debian's default system policy, plus vipd's policy file.
struct Bus {
    _daemon: Proc,
    address: String,
}

impl Bus {
    fn start(dir: &WorkDir) -> Bus {
        use std::os::unix::fs::PermissionsExt;
        // Non-root clients (the policy test) must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("bus");
        let policy =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/org.keepalived.Vrrp1.conf");
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
  </policy>
  <include ignore_missing="no">{}</include>
</busconfig>
"#,
                socket.display(),
                policy.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg("--config-file")
            .arg(&conf)
            .args(["--nofork", "--nopidfile"]);
        let daemon = Proc::spawn(cmd, &dir.join("dbus-daemon.log")).unwrap();
        let up = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
            socket.exists()
        });
        assert!(up, "dbus-daemon did not start: {}", daemon.log_tail(20));
        Bus {
            _daemon: daemon,
            address: format!("unix:path={}", socket.display()),
        }
    }

    fn env(&self) -> String {
        format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.address)
    }

    /// `busctl --address=... ARGS` (as `uid` if given).
    fn busctl(&self, uid: Option<u32>, args: &[&str]) -> Output {
        let mut cmd = match uid {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={u}"))
                    .arg(format!("--regid={u}"))
                    .args(["--clear-groups", "busctl"]);
                c
            }
            None => Command::new("busctl"),
        };
        cmd.arg(format!("--address={}", self.address))
            .arg("--no-pager")
            .args(args)
            .output()
            .unwrap()
    }

    /// busctl's answer; panics with its error if it failed.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.busctl(None, args);
        assert!(
            o.status.success(),
            "busctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn property(&self, path: &str, name: &str) -> Option<String> {
        let o = self.busctl(
            None,
            &[
                "get-property",
                SERVICE,
                path,
                "org.keepalived.Vrrp1.Instance",
                name,
            ],
        );
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// The PID owning `name`, if it is owned.
    fn owner_pid(&self, name: &str) -> Option<u32> {
        let o = self.busctl(
            None,
            &[
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetConnectionUnixProcessID",
                "s",
                name,
            ],
        );
        // `u 1234`
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// PIDs of every connection on the bus but the bus itself.
    fn client_pids(&self) -> Vec<u32> {
        self.ok(&["list", "--unique", "--no-legend"])
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect()
    }

    /// `gdbus monitor` of `service`'s signals, written to `log`.
    fn monitor(&self, log: &Path) -> Proc {
        let mut cmd = Command::new("gdbus");
        cmd.args(["monitor", "--address", &self.address, "--dest", SERVICE]);
        let p = Proc::spawn(cmd, log).unwrap();
        let ok = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
            std::fs::read_to_string(log).is_ok_and(|t| t.contains("is owned by"))
        });
        assert!(ok, "gdbus monitor: {}", p.log_tail(10));
        p
    }
}

fn wait_text(path: &Path, want: &str, c: &Cluster) -> String {
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        std::fs::read_to_string(path).is_ok_and(|t| t.contains(want))
    });
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        ok,
        "`{want}` not in {}:\n{text}\n{}",
        path.display(),
        c.logs()
    );
    text
}

/// `Spec::v3()`'s config for router 1 with `enable_dbus` and a state dump file, and
/// optionally a second (IPv6) instance.
fn dbus_config(spec: &Spec, priority: u8, data: &Path, second: bool) -> String {
    let mut conf = spec.config(priority).replacen(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    enable_dbus\n    state_dump_file {}\n",
            data.display()
        ),
        1,
    );
    if second {
        conf.push_str(
            "vrrp_instance VI_2 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 52\n    \
             priority 100\n    advert_int 0.1\n    version 3\n    virtual_ipaddress {\n        2001:db8::52/64\n    }\n}\n",
        );
    }
    conf
}

#[test]
fn keepalived_interface_objects_signals_methods_and_policy() {
    if !tools() {
        return;
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "dbus") else {
        return;
    };
    let bus = Bus::start(&c.dir);
    c.vipd_env = vec![bus.env()];
    let data: PathBuf = c.dir.join("r1.data");
    // r1 serves DBus; r2 (no enable_dbus) must not even connect.
    c.start_vipd(1, &dbus_config(&spec, 200, &data, false));
    c.start_vipd(2, &spec.config(100));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());

    // The name is owned by r1's vipd; r2's vipd has no connection.
    let (r1, r2) = (c.pid(1) as u32, c.pid(2) as u32);
    let owned = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        bus.owner_pid(SERVICE) == Some(r1)
    });
    assert!(owned, "{SERVICE} not owned by vipd r1\n{}", c.logs());
    let clients = bus.client_pids();
    assert!(clients.contains(&r1), "{clients:?}");
    assert!(
        !clients.contains(&r2),
        "vipd without enable_dbus connected: {clients:?}"
    );

    // keepalived's objects and properties; State as `vipd status --json` says.
    let tree = bus.ok(&["tree", SERVICE, "--list"]);
    for p in [VRRP, VI_1] {
        assert!(tree.lines().any(|l| l == p), "{p} not in:\n{tree}");
    }
    // keepalived's members and types (its org.keepalived.Vrrp1.*.xml).
    let xml = bus.ok(&["introspect", SERVICE, VRRP, "--xml-interface"])
        + &bus.ok(&["introspect", SERVICE, VI_1, "--xml-interface"]);
    for want in [
        r#"<interface name="org.keepalived.Vrrp1.Vrrp">"#,
        r#"<method name="PrintData">"#,
        r#"<method name="PrintStats">"#,
        r#"<method name="PrintStatsClear">"#,
        r#"<method name="ReloadConfig">"#,
        r#"<signal name="VrrpStarted">"#,
        r#"<signal name="VrrpReloaded">"#,
        r#"<signal name="VrrpStopped">"#,
        r#"<interface name="org.keepalived.Vrrp1.Instance">"#,
        r#"<method name="SendGarp">"#,
        r#"<signal name="VrrpStatusChange">"#,
        r#"<arg name="status" type="u"/>"#,
        r#"<property name="Name" type="(s)" access="read"/>"#,
        r#"<property name="State" type="(us)" access="read"/>"#,
    ] {
        assert!(xml.contains(want), "{want} not in:\n{xml}");
    }
    assert_eq!(bus.property(VI_1, "Name").as_deref(), Some("(s) \"VI_1\""));
    assert_eq!(c.instance(1)["state"], "MASTER");
    assert_eq!(
        bus.property(VI_1, "State").as_deref(),
        Some("(us) 2 \"MASTER\"")
    );

    // SendGarp: one more round of gratuitous ARP from the master.
    let sent = |c: &Cluster| c.instance(1)["announcements_sent"].as_u64().unwrap();
    let before = sent(&c);
    bus.ok(&[
        "call",
        SERVICE,
        VI_1,
        "org.keepalived.Vrrp1.Instance",
        "SendGarp",
    ]);
    let more = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        sent(&c) > before
    });
    assert!(more, "SendGarp sent nothing ({before})\n{}", c.logs());

    // PrintData: the SIGUSR1 dump, written when the call returns.
    assert!(!data.exists());
    bus.ok(&[
        "call",
        SERVICE,
        VRRP,
        "org.keepalived.Vrrp1.Vrrp",
        "PrintData",
    ]);
    let text = std::fs::read_to_string(&data).expect("PrintData wrote no state file");
    assert!(text.contains("VI_1"), "{text}");

    // CreateInstance / DestroyInstance: refused with the reason.
    for args in [
        &["CreateInstance", "ssuu", "VI_9", "eth0", "9", "4"][..],
        &["DestroyInstance", "s", "VI_1"][..],
    ] {
        let mut call = vec!["call", SERVICE, VRRP, "org.keepalived.Vrrp1.Vrrp"];
        call.extend_from_slice(args);
        let o = bus.busctl(None, &call);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(
            err.contains("only from its configuration")
                && err.contains("--enable-dbus-create-instance"),
            "{args:?}: {err}"
        );
    }

    // The shipped policy: others may read properties, not call methods.
    let nobody = Some(65534);
    let o = bus.busctl(
        nobody,
        &[
            "call",
            SERVICE,
            VRRP,
            "org.keepalived.Vrrp1.Vrrp",
            "PrintData",
        ],
    );
    assert!(!o.status.success(), "PrintData allowed to nobody");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Access denied"), "{err}");
    let o = bus.busctl(
        nobody,
        &[
            "get-property",
            SERVICE,
            VI_1,
            "org.keepalived.Vrrp1.Instance",
            "State",
        ],
    );
    assert!(
        o.status.success(),
        "nobody cannot read State: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // ReloadConfig with a lower priority and a second instance: r2 takes over, r1's
    // VrrpStatusChange says BACKUP, State follows, VI_2's object appears.
    let mon_log = c.dir.join("monitor.log");
    let _monitor = bus.monitor(&mon_log);
    std::fs::write(c.config_path(1), dbus_config(&spec, 50, &data, true)).unwrap();
    bus.ok(&[
        "call",
        SERVICE,
        VRRP,
        "org.keepalived.Vrrp1.Vrrp",
        "ReloadConfig",
    ]);
    c.wait_holders(spec.vip(), &[2], spec.takeover_timeout());
    wait_text(
        &mon_log,
        "/org/keepalived/Vrrp1/Vrrp: org.keepalived.Vrrp1.Vrrp.VrrpReloaded ()",
        &c,
    );
    wait_text(
        &mon_log,
        &format!("{VI_1}: org.keepalived.Vrrp1.Instance.VrrpStatusChange (uint32 1,)"),
        &c,
    );
    assert_eq!(c.instance(1)["state"], "BACKUP");
    assert_eq!(
        bus.property(VI_1, "State").as_deref(),
        Some("(us) 1 \"BACKUP\"")
    );
    let appeared = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        bus.property(VI_2, "Name").as_deref() == Some("(s) \"VI_2\"")
    });
    assert!(appeared, "no VI_2 object after the reload\n{}", c.logs());

    // A reload without VI_2 (SIGHUP's path: `vipd reload`) removes its object.
    let (ok, out) = c.reload(1, &dbus_config(&spec, 50, &data, false));
    assert!(ok, "{out}");
    let gone = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        bus.property(VI_2, "Name").is_none()
    });
    assert!(gone, "VI_2's object outlived its instance\n{}", c.logs());
    assert!(bus.property(VI_1, "Name").is_some());

    // Stopping: VrrpStopped, and the name is released.
    c.stop(1);
    wait_text(
        &mon_log,
        "/org/keepalived/Vrrp1/Vrrp: org.keepalived.Vrrp1.Vrrp.VrrpStopped ()",
        &c,
    );
    assert_eq!(bus.owner_pid(SERVICE), None);
}

#[test]
fn no_bus_or_name_taken_is_logged_and_vipd_runs_on() {
    if !tools() {
        return;
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "dbus-fail") else {
        return;
    };
    let bus = Bus::start(&c.dir);
    // r1: a bus address where no bus listens.
    c.vipd_env = vec![format!(
        "DBUS_SYSTEM_BUS_ADDRESS=unix:path={}",
        c.dir.join("nobus").display()
    )];
    let data = c.dir.join("unused.data");
    c.start_vipd(1, &dbus_config(&spec, 200, &data, false));
    // r2: the real bus; it owns the name.
    c.vipd_env = vec![bus.env()];
    c.start_vipd(2, &dbus_config(&spec, 100, &data, false));
    let owned = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        bus.owner_pid(SERVICE).is_some()
    });
    assert!(owned, "{}", c.logs());
    let owner = bus.owner_pid(SERVICE);
    assert_eq!(owner, Some(c.pid(2) as u32));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let log1 = std::fs::read_to_string(c.dir.join("r1.log")).unwrap();
    assert!(
        log1.contains("enable_dbus:") && log1.contains("runs without its DBus interface"),
        "{log1}"
    );

    // r1 again, now on the real bus: the name is r2's, so r1 logs that and runs on.
    c.stop(1);
    c.start_vipd(1, &dbus_config(&spec, 200, &data, false));
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let log1 = std::fs::read_to_string(c.dir.join("r1.log")).unwrap();
    let refused = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        std::fs::read_to_string(c.dir.join("r1.log"))
            .is_ok_and(|l| l.contains("cannot own `org.keepalived.Vrrp1`"))
    });
    assert!(refused, "{log1}");
    // Still r2's, and r1 still answers its control socket.
    assert_eq!(bus.owner_pid(SERVICE), owner);
    assert_eq!(c.instance(1)["state"], "MASTER");
}

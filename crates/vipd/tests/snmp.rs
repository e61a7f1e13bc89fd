//! SNMP (issue 15): vipd as an AgentX subagent of a real net-snmp `snmpd` (`master
//! agentx`) in router 1's namespace, read with `snmpwalk` / `snmpget` and its traps
//! received by `snmptrapd`, as an operator's NMS would; the values are checked against
//! `vipd status --json`.

mod common;

use common::traffic::{errors, fetch, nat_routes, wait_serving, HttpServer};
use common::{Cluster, Spec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vipd_netns::{Proc, WorkDir};

const KEEPALIVED: &str = ".1.3.6.1.4.1.9586.100.5";
const VRRP_MIB: &str = ".1.3.6.1.2.1.68";
const VRRPV3_MIB: &str = ".1.3.6.1.2.1.207";
const AGENT: &str = "127.0.0.1:16161";
const TRAP_PORT: u16 = 16162;

/// The net-snmp tools, or a skip outside CI (CI installs them: .ci/run).
fn tools() -> bool {
    common::tools_or_skip(
        &["snmpd", "snmptrapd", "snmpwalk", "snmpget"],
        "snmpd, snmptrapd, snmp",
    )
}

/// net-snmp's tools without the MIB files Debian does not ship (no warnings).
const NO_MIBS: [&str; 2] = ["MIBS=", "MIBDIRS=/nonexistent"];

/// `snmpd` as AgentX master on a socket in `dir`, answering v2c `public` on
/// 127.0.0.1:16161 in `ns` and sending v2c traps to snmptrapd there.
fn start_snmpd(ns: &str, dir: &WorkDir, run: usize) -> Proc {
    let unix = format!("unix:{}", agentx_socket(dir).display());
    start_snmpd_at(ns, dir, run, &unix)
}

/// The same with the AgentX master on `agentx` (net-snmp's form).
fn start_snmpd_at(ns: &str, dir: &WorkDir, run: usize, agentx: &str) -> Proc {
    let conf = dir.join("snmpd.conf");
    std::fs::write(
        &conf,
        format!(
            "master agentx\nagentXSocket {agentx}\nagentaddress udp:{AGENT}\n\
             rocommunity public 127.0.0.1\ntrap2sink 127.0.0.1:{TRAP_PORT} public\n"
        ),
    )
    .unwrap();
    let _ = std::fs::remove_file(agentx_socket(dir));
    let persistent = format!("SNMP_PERSISTENT_DIR={}", dir.join("snmp-state").display());
    let pid = dir.join("snmpd.pid");
    let args: Vec<String> = ["env", persistent.as_str(), NO_MIBS[0], NO_MIBS[1], "snmpd"]
        .iter()
        .map(|s| s.to_string())
        .chain(
            [
                "-f",
                "-Lo",
                "-C",
                "-c",
                &conf.display().to_string(),
                "-p",
                &pid.display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .collect();
    let p = spawn_in(ns, &args, &dir.join(format!("snmpd-{run}.log")));
    let up = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        (!agentx.starts_with("unix:") || agentx_socket(dir).exists())
            && snmp(ns, "snmpget", &[".1.3.6.1.2.1.1.3.0"]).is_some()
    });
    assert!(up, "snmpd did not start: {}", p.log_tail(20));
    p
}

fn spawn_in(ns: &str, args: &[String], log: &Path) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    Proc::spawn(cmd, log).unwrap()
}

fn agentx_socket(dir: &WorkDir) -> PathBuf {
    dir.join("agentx")
}

fn start_snmptrapd(ns: &str, dir: &WorkDir) -> (Proc, PathBuf) {
    let conf = dir.join("snmptrapd.conf");
    std::fs::write(&conf, "disableAuthorization yes\n").unwrap();
    let log = dir.join("traps.log");
    let args: Vec<String> = ["env", NO_MIBS[0], NO_MIBS[1], "snmptrapd", "-f", "-C", "-c"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            conf.display().to_string(),
            "-On".into(),
            "-Lf".into(),
            log.display().to_string(),
            format!("udp:127.0.0.1:{TRAP_PORT}"),
        ])
        .collect();
    let p = spawn_in(ns, &args, &dir.join("snmptrapd.out"));
    let up = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("NET-SNMP version"))
    });
    assert!(up, "snmptrapd did not start: {}", p.log_tail(20));
    (p, log)
}

/// `snmpwalk` / `snmpget -v2c -c public -On` in `ns`: its lines, or `None` if it failed.
fn snmp(ns: &str, tool: &str, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg("env")
        .args(NO_MIBS)
        .arg(tool)
        .args(["-v2c", "-c", "public", "-On", "-t", "2", "-r", "1", AGENT])
        .args(args);
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// A walk as OID (without the base) → value text (`INTEGER: 2` → `2`, strings unquoted).
fn walk(ns: &str, base: &str) -> BTreeMap<String, String> {
    let text = snmp(ns, "snmpwalk", &[base]).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (oid, val) = l.split_once(" = ")?;
            let oid = oid.strip_prefix(base)?.trim_start_matches('.');
            let val = val.split_once(": ").map_or(val, |(_, v)| v);
            Some((oid.to_string(), val.trim_matches('"').to_string()))
        })
        .collect()
}

/// One object's value text (`Counter64: 12` → `12`, `Timeticks: (345) 0:00:03.45` →
/// `345`), or `None`.
fn get(ns: &str, oid: &str) -> Option<String> {
    let text = snmp(ns, "snmpget", &[oid])?;
    let (_, val) = text.lines().next()?.split_once(" = ")?;
    if val.starts_with("No Such") {
        return None;
    }
    let val = val.split_once(": ").map_or(val, |(_, v)| v);
    let val = match val.strip_prefix('(') {
        Some(t) => t.split(')').next()?,
        None => val,
    };
    Some(val.trim_matches('"').to_string())
}

fn get_u64(ns: &str, oid: &str) -> u64 {
    let v = get(ns, oid);
    v.as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{oid}: {v:?}"))
}

fn keepalived_state(s: &str) -> &'static str {
    match s {
        "BACKUP" => "1",
        "MASTER" => "2",
        "FAULT" => "3",
        _ => "0",
    }
}

fn rfc_state(s: &str) -> &'static str {
    match s {
        "BACKUP" => "2",
        "MASTER" => "3",
        _ => "1",
    }
}

fn ifindex(ns: &str, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", dev])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    out.split(':').next().unwrap().trim().to_string()
}

/// VI_2's excluded VIP (`virtual_ipaddress_excluded`, with a label): in
/// vrrpAddressTable, not advertised, and in neither RFC table.
const EVIP: &str = "203.0.113.52";
/// A `static_ipaddress`: vrrpAddressTable's instance 0, always set.
const STATIC_ADDR: &str = "203.0.113.99";

fn snmp_config(spec: &Spec, priority: u8, dir: &Path) -> String {
    // VI_1's virtual route (vrrpRouteTable), installed while MASTER.
    let spec = spec
        .clone()
        .with("virtual_routes {\n        blackhole 203.0.113.128/25 table 100\n    }");
    let mut conf = spec.config(priority).replacen(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    enable_snmp_vrrp\n    enable_snmp_rfc\n    enable_traps\n    \
             snmp_socket unix:{}\n    notification_email {{\n        ops@example.com\n    }}\n    \
             notification_email_from vipd@example.com\n    smtp_server 127.0.0.1 2525\n    \
             smtp_connect_timeout 7\n    smtp_alert false\n",
            dir.join("agentx").display()
        ),
        1,
    );
    conf.push_str(&format!(
        "static_ipaddress {{\n    {STATIC_ADDR}/32 dev eth0\n}}\n"
    ));
    // VI_2's tracked script and file (vrrpScriptTable, vrrpFileTable).
    let tf = dir.join("tf");
    std::fs::write(&tf, "0\n").unwrap();
    conf.push_str(&format!(
        "vrrp_script chk_up {{\n    script \"/bin/true\"\n    interval 1\n    weight 5\n    \
         rise 2\n    fall 3\n}}\nvrrp_track_file tf {{\n    file {}\n    weight 2\n}}\n",
        tf.display()
    ));
    conf.push_str(&format!(
        "vrrp_instance VI_2 {{\n    state MASTER\n    interface eth0\n    virtual_router_id 52\n    \
         priority 120\n    advert_int 1\n    version 2\n    virtual_ipaddress {{\n        \
         198.51.100.52/24\n        198.51.100.53/24 brd 198.51.100.255\n    }}\n    \
         virtual_ipaddress_excluded {{\n        {EVIP}/24 label eth0:ex\n    }}\n    \
         virtual_routes {{\n        192.0.2.128/25 via 192.0.2.1 table 101\n    }}\n    \
         virtual_rules {{\n        from 198.51.100.52 table 101\n    }}\n    \
         track_script {{\n        chk_up\n    }}\n    track_file {{\n        tf\n    }}\n}}\n"
    ));
    conf
}

/// An IPv4 address as net-snmp shows an InetAddress (`Hex-STRING: C6 33 64 34 `).
fn hex(addr: &str) -> String {
    let a: std::net::IpAddr = addr.parse().unwrap();
    let octets = match a {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    octets.iter().map(|b| format!("{b:02X} ")).collect()
}

/// Does `ip -n NS ARGS` list `line`?
fn in_kernel(ns: &str, args: &[&str], line: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(line)
}

/// Is `addr` on `dev` in `ns` now?
fn installed(ns: &str, dev: &str, addr: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "addr", "show", "dev", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/"))
}

/// Every instance of router 1's `vipd status --json` is in the walks with its name,
/// state and priorities; the RFC tables list the v2 (RFC 2787) and v3 (RFC 6527) ones.
fn check_tables(c: &Cluster, ns: &str, ix: &str) -> Result<(), String> {
    let status = c.status(1).ok_or("no status")?;
    let ka = walk(ns, KEEPALIVED);
    let v2 = walk(ns, VRRP_MIB);
    let v3 = walk(ns, VRRPV3_MIB);
    let insts = status["instances"].as_array().ok_or("no instances")?;
    let mut problems = Vec::new();
    let mut want = |got: Option<&String>, value: &str, what: String| {
        if got.map(String::as_str) != Some(value) {
            problems.push(format!("{what}: {got:?}, want {value}"));
        }
    };
    want(ka.get("1.2.0"), "test", "routerId".into());
    // The global scalars of snmp_config's global_defs.
    for (oid, value) in [
        ("1.3.1.0", "1"),
        ("1.3.2.0", "7F 00 00 01 "),
        ("1.3.3.0", "7"),
        ("1.3.4.0", "vipd@example.com"),
        ("1.3.5.1.2.1", "ops@example.com"),
        ("1.3.6.0", "2525"),
        ("1.3.8.0", "2"),
        ("1.4.0", "1"),
        ("1.9.0", "2"),
    ] {
        want(ka.get(oid), value, format!("global {oid}"));
    }
    want(
        ka.get("2.6.1.3.0.1"),
        &hex(STATIC_ADDR),
        "static address".into(),
    );
    want(ka.get("2.6.1.10.0.1"), "1", "static address set".into());
    want(
        ka.get("2.6.1.11.0.1"),
        "2",
        "static address advertised".into(),
    );
    want(
        Some(&installed(ns, "eth0", STATIC_ADDR).to_string()),
        "true",
        "static address on eth0".into(),
    );
    for (n, i) in insts.iter().enumerate() {
        let idx = n + 1;
        let name = i["name"].as_str().unwrap();
        let state = i["state"].as_str().unwrap();
        // vrrpAddressTable: the VIPs then the eVIPs as the status lists them, set
        // (and on eth0) while MASTER, unset (and not on eth0) otherwise.
        let vips = i["vips"].as_array().unwrap();
        let master = state == "MASTER";
        for (k, v) in vips.iter().enumerate() {
            let (addr, len) = v.as_str().unwrap().split_once('/').unwrap();
            let row = format!("{idx}.{}", k + 1);
            let col = |c: u32| ka.get(&format!("2.6.1.{c}.{row}"));
            want(col(2), "1", format!("{name} {addr} vrrpAddressType"));
            want(
                col(3),
                &hex(addr),
                format!("{name} {addr} vrrpAddressValue"),
            );
            want(col(5), len, format!("{name} {addr} vrrpAddressMask"));
            want(col(7), ix, format!("{name} {addr} vrrpAddressIfIndex"));
            want(col(8), "eth0", format!("{name} {addr} vrrpAddressIfName"));
            want(
                col(10),
                if master { "1" } else { "2" },
                format!("{name} {addr} vrrpAddressStatus ({state})"),
            );
            want(
                col(11),
                if addr == EVIP { "2" } else { "1" },
                format!("{name} {addr} vrrpAddressAdvertising"),
            );
            want(
                Some(&installed(ns, "eth0", addr).to_string()),
                &master.to_string(),
                format!("{name} {addr} on eth0 ({state})"),
            );
        }
        want(
            Some(
                &ka.contains_key(&format!("2.6.1.3.{idx}.{}", vips.len() + 1))
                    .to_string(),
            ),
            "false",
            format!("{name}: an address beyond {vips:?}"),
        );
        // vrrpRouteTable / vrrpRuleTable: snmp_config's virtual_routes and
        // virtual_rules, set (and in the kernel) while MASTER.
        let set = if master { "1" } else { "2" };
        let route = |c: u32| ka.get(&format!("2.7.1.{c}.{idx}.1"));
        let (dst, table, kind, kernel) = if name == "VI_1" {
            ("203.0.113.128", "100", "3", "blackhole 203.0.113.128/25")
        } else {
            ("192.0.2.128", "101", "1", "192.0.2.128/25 via 192.0.2.1")
        };
        want(route(3), &hex(dst), format!("{name} vrrpRouteDestination"));
        want(route(4), "25", format!("{name} vrrpRouteDestinationMask"));
        want(route(10), kind, format!("{name} vrrpRouteType"));
        want(route(13), table, format!("{name} vrrpRouteRoutingTable"));
        want(route(14), set, format!("{name} vrrpRouteStatus ({state})"));
        want(
            Some(&in_kernel(ns, &["route", "show", "table", table], kernel).to_string()),
            &master.to_string(),
            format!("{name} route in table {table} ({state})"),
        );
        if name == "VI_1" {
            // The BFD definition: the block's weight, up (1) as the status says.
            let tracking = status["tracking"]["VI_1"].as_array().cloned();
            let up = tracking
                .iter()
                .flatten()
                .any(|l| l["kind"] == "bfd" && l["state"] == "good");
            want(ka.get("2.18.1.2.1"), "b1", "vrrpBfdName".into());
            want(
                ka.get("2.18.1.3.1"),
                if up { "1" } else { "0" },
                "vrrpBfdResult".into(),
            );
            want(ka.get("2.18.1.4.1"), "-2", "vrrpBfdWeight".into());
            // The instance's line: its own weight.
            want(ka.get("2.17.1.2.1.1"), "b1", "vrrpTrackedBfdName".into());
            want(ka.get("2.17.1.3.1.1"), "-1", "vrrpTrackedBfdWeight".into());
        }
        if name == "VI_2" {
            // The script and file definitions, with the states the status has.
            let tracking = status["tracking"]["VI_2"].as_array().cloned();
            let line = |kind: &str| {
                tracking
                    .iter()
                    .flatten()
                    .find(|l| l["kind"] == kind)
                    .map(|l| l["state"].as_str().unwrap_or_default().to_string())
                    .unwrap_or_default()
            };
            let script = match line("script").as_str() {
                "good" => "3",
                "bad" => "2",
                _ => "1",
            };
            for (oid, value) in [
                ("2.9.1.2.1", "chk_up"),
                ("2.9.1.3.1", "/bin/true"),
                ("2.9.1.4.1", "1"),
                ("2.9.1.5.1", "5"),
                ("2.9.1.6.1", script),
                ("2.9.1.7.1", "2"),
                ("2.9.1.8.1", "3"),
                ("2.9.1.9.1", "2"),
                ("2.9.1.11.1", "1000000"),
                ("2.13.1.2.1", "tf"),
                ("2.13.1.4.1", &line("file")),
                ("2.13.1.5.1", "2"),
            ] {
                want(ka.get(oid), value, format!("definition {oid}"));
            }
            want(route(5), &hex("192.0.2.1"), "VI_2 vrrpRouteGateway".into());
            let rule = |c: u32| ka.get(&format!("2.8.1.{c}.{idx}.1"));
            want(rule(2), "from", "VI_2 vrrpRuleDirection".into());
            want(
                rule(13),
                &hex("198.51.100.52"),
                "VI_2 vrrpRuleSourceAddress".into(),
            );
            want(rule(14), "32", "VI_2 vrrpRuleSourceAddressMask".into());
            want(rule(24), "101", "VI_2 vrrpRuleTableNo".into());
            want(rule(23), "1", "VI_2 vrrpRuleAction".into());
            want(rule(7), set, format!("VI_2 vrrpRuleStatus ({state})"));
            want(
                Some(&in_kernel(ns, &["rule"], "from 198.51.100.52 lookup 101").to_string()),
                &master.to_string(),
                "VI_2 rule in the kernel".into(),
            );
        }
        if name == "VI_2" {
            let col = |c: u32, k: usize| ka.get(&format!("2.6.1.{c}.{idx}.{k}"));
            want(col(4, 1), "00 00 00 00 ", "VI_2 no broadcast".into());
            want(col(4, 2), &hex("198.51.100.255"), "VI_2 brd".into());
            want(col(9, 3), "eth0:ex", "VI_2 eVIP label".into());
        }
        want(
            ka.get(&format!("2.3.1.2.{idx}")),
            name,
            format!("{name} name"),
        );
        want(
            ka.get(&format!("2.3.1.4.{idx}")),
            keepalived_state(state),
            format!("{name} vrrpInstanceState"),
        );
        want(
            ka.get(&format!("2.3.1.7.{idx}")),
            &i["priority"].to_string(),
            format!("{name} base priority"),
        );
        want(
            ka.get(&format!("2.3.1.8.{idx}")),
            &i["effective_priority"].to_string(),
            format!("{name} effective priority"),
        );
        want(
            ka.get(&format!("2.3.1.10.{idx}")),
            "eth0",
            format!("{name} interface"),
        );
        let tracks_interface = (status["tracking"][name].as_array().into_iter().flatten())
            .any(|l| l["kind"] == "interface");
        want(
            ka.get(&format!("2.3.1.11.{idx}")),
            if tracks_interface { "1" } else { "2" },
            format!("{name} vrrpInstanceTrackPrimaryIf"),
        );
        // vrrp_garp_master_delay 0, smtp_alert false, VI_1's notify_master only,
        // multicast to RFC 5798's group, no v3_checksum_as_v2.
        let vi1 = name == "VI_1";
        if vi1 {
            want(
                ka.get(&format!("2.3.1.22.{idx}")),
                "/bin/true VI_1",
                "VI_1 vrrpInstanceScriptMaster".into(),
            );
        }
        for (col, value) in [
            ("19", "0"),
            ("20", "2"),
            ("21", if vi1 { "1" } else { "2" }),
            ("34", "1"),
            ("35", "E0 00 00 12 "),
            ("36", "2"),
        ] {
            want(
                ka.get(&format!("2.3.1.{col}.{idx}")),
                value,
                format!("{name} vrrpInstanceEntry.{col}"),
            );
        }
        let vrid = i["vrid"].as_u64().unwrap();
        if i["version"] == 2 {
            want(
                v2.get(&format!("1.3.1.3.{ix}.{vrid}")),
                rfc_state(state),
                format!("{name} vrrpOperState"),
            );
            want(
                v2.get(&format!("1.3.1.5.{ix}.{vrid}")),
                &i["priority"].to_string(),
                format!("{name} vrrpOperPriority"),
            );
            let advertised = vips
                .iter()
                .filter(|v| !v.as_str().unwrap().starts_with(EVIP));
            want(
                v2.get(&format!("1.3.1.6.{ix}.{vrid}")),
                &advertised.count().to_string(),
                format!("{name} vrrpOperIpAddrCount"),
            );
            want(
                Some(
                    &v2.contains_key(&format!("1.4.1.2.{ix}.{vrid}.{EVIP}"))
                        .to_string(),
                ),
                "false",
                format!("{name}: the eVIP in vrrpAssoIpAddrTable"),
            );
            want(
                v2.get(&format!("1.4.1.2.{ix}.{vrid}.198.51.100.53")),
                "1",
                format!("{name} vrrpAssoIpAddrRowStatus"),
            );
        } else {
            want(
                v3.get(&format!("1.1.1.1.6.{ix}.{vrid}.1")),
                rfc_state(state),
                format!("{name} vrrpv3OperationsStatus"),
            );
            want(
                v3.get(&format!("1.1.1.1.7.{ix}.{vrid}.1")),
                &i["priority"].to_string(),
                format!("{name} vrrpv3OperationsPriority"),
            );
            want(
                v3.get(&format!("1.1.1.1.9.{ix}.{vrid}.1")),
                "10",
                format!("{name} vrrpv3OperationsAdvInterval"),
            );
        }
    }
    // Nothing else: the v2 instance is not in RFC 6527's table, nor the v3 one in RFC 2787's.
    let v3_rows = v3.keys().filter(|k| k.starts_with("1.1.1.1.6.")).count();
    let v2_rows = v2.keys().filter(|k| k.starts_with("1.3.1.3.")).count();
    if (v2_rows, v3_rows) != (1, 1) {
        problems.push(format!("rows: RFC 2787 {v2_rows}, RFC 6527 {v3_rows}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\nKEEPALIVED-MIB {ka:?}\nVRRP-MIB {v2:?}\nVRRPv3-MIB {v3:?}",
            problems.join("\n")
        ))
    }
}

fn wait_tables(c: &Cluster, ns: &str, ix: &str, what: &str) {
    let mut last = String::new();
    let ok = vipd_netns::wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        match check_tables(c, ns, ix) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(ok, "{what}: {last}\n{}", c.logs());
}

fn wait_text(path: &Path, want: &[&str], c: &Cluster) -> String {
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        std::fs::read_to_string(path).is_ok_and(|t| want.iter().all(|w| t.contains(w)))
    });
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        ok,
        "{want:?} not in {}:\n{text}\n{}",
        path.display(),
        c.logs()
    );
    text
}

/// The statistics and up times, router 1 BACKUP of VI_1 (v3, router 2 its master,
/// adverts every 100 ms) and MASTER of VI_2 (v2): counters as `vipd status` has them
/// and moving between two reads; a corrupt advert raises the checksum errors.
fn check_statistics(c: &Cluster, ns: &str, ix: &str) {
    let status = |name: &str| {
        let st = c.status(1).expect("status");
        st["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap()
    };
    let vi1 = format!("{ix}.51.1");
    let rcvd_oid = format!("{VRRPV3_MIB}.1.2.5.1.3.{vi1}");
    let before = status("VI_1")["adverts_received"].as_u64().unwrap();
    let first = get_u64(ns, &rcvd_oid);
    let after = status("VI_1")["adverts_received"].as_u64().unwrap();
    // The subagent's view may be up to 100 ms (one advert) older than the status.
    assert!(
        before.saturating_sub(3) <= first && first <= after,
        "{before} <= {first} <= {after}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let second = get_u64(ns, &rcvd_oid);
    assert!(
        second >= first + 5,
        "adverts received {first} then {second}"
    );
    // VI_2 (RFC 2787) became master once.
    let vi2 = status("VI_2");
    assert_eq!(vi2["became_master"], 1);
    assert_eq!(
        get_u64(ns, &format!("{VRRP_MIB}.2.4.1.1.{ix}.52")),
        1,
        "vrrpStatsBecomeMaster"
    );
    assert_eq!(
        get_u64(ns, &format!("{VRRP_MIB}.2.4.1.7.{ix}.52")),
        vi2["priority_zero_sent"].as_u64().unwrap()
    );
    // VI_1 never was master here: notMaster(0).
    assert_eq!(get_u64(ns, &format!("{VRRPV3_MIB}.1.2.5.1.2.{vi1}")), 0);
    // Up times: VI_2 left initialize after snmpd started (sysUpTime then), VI_1 has
    // been up for less than vipd has run.
    let sys_up = get_u64(ns, ".1.3.6.1.2.1.1.3.0");
    let vi2_up = get_u64(ns, &format!("{VRRP_MIB}.1.3.1.13.{ix}.52"));
    assert!(
        vi2_up > 0 && vi2_up <= sys_up,
        "vrrpOperVirtualRouterUpTime {vi2_up}, sysUpTime {sys_up}"
    );
    let vi1_up = get_u64(ns, &format!("{VRRPV3_MIB}.1.1.1.1.12.{vi1}"));
    assert!(
        vi1_up > 0 && vi1_up < sys_up,
        "vrrpv3OperationsUpTime {vi1_up}, sysUpTime {sys_up}"
    );

    // Three VRRPv3 adverts for VRID 51 with a wrong checksum, from router 2's port.
    let checksum_errors = format!("{VRRPV3_MIB}.1.2.1.0");
    let errors_before = get_u64(ns, &checksum_errors);
    let mut bad = vec![0x31, 51, 200, 1, 0, 10, 0xde, 0xad];
    bad.extend_from_slice(&[192, 0, 2, 10]);
    c.lan
        .router(2)
        .run(|| {
            for _ in 0..3 {
                common::inject("192.0.2.12".parse().unwrap(), &bad);
            }
        })
        .unwrap();
    let ok = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        get(ns, &checksum_errors).and_then(|v| v.parse::<u64>().ok()) >= Some(errors_before + 3)
    });
    assert!(ok, "checksum errors: {:?}", get(ns, &checksum_errors));
    let drops = status("VI_1")["drops"].clone();
    assert!(
        drops
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d[0] == "bad_checksum" && d[1].as_u64() >= Some(3)),
        "{drops}"
    );
    // vrrpv3StatisticsProtoErrReason: checksumError(3).
    assert_eq!(get_u64(ns, &format!("{VRRPV3_MIB}.1.2.5.1.6.{vi1}")), 3);
}

#[test]
fn agentx_subagent_tables_traps_and_master_restarts() {
    if !tools() {
        return;
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "snmp") else {
        return;
    };
    let ns = c.lan.router(1).name().to_string();
    let ns = ns.as_str();
    let (_trapd, traps) = start_snmptrapd(ns, &c.dir);
    let snmpd = start_snmpd(ns, &c.dir, 1);
    // Router 2 (priority 200) is VI_1's master; router 1 backs it up and is VI_2's only
    // router (MASTER).
    // A BFD session between them, tracked by router 1's VI_1 (vrrpBfdTable).
    let bfd = |me: u8, peer: u8| {
        format!(
            "bfd_instance b1 {{\n    neighbor_ip 192.0.2.{peer}\n    source_ip 192.0.2.{me}\n    \
             weight -2\n}}\n"
        )
    };
    c.start_vipd(2, &(spec.config(200) + &bfd(12, 11)));
    c.wait_holders(spec.vip(), &[2], spec.takeover_timeout());
    let tracked = spec
        .clone()
        .with("track_bfd {\n        b1 weight -1\n    }")
        .with("notify_master \"/bin/true VI_1\"");
    c.start_vipd(
        1,
        &(snmp_config(&tracked, 100, c.dir.path()) + &bfd(11, 12)),
    );
    let ix = ifindex(ns, "eth0");
    wait_tables(&c, ns, &ix, "r1 BACKUP of VI_1, MASTER of VI_2");
    let bfd_result = |c: &Cluster, want: &str| {
        let oid = format!("{KEEPALIVED}.2.18.1.3.1");
        let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            get(ns, &oid).as_deref() == Some(want)
        });
        assert!(
            ok,
            "vrrpBfdResult {:?}, want {want}\n{}",
            get(ns, &oid),
            c.logs()
        );
    };
    bfd_result(&c, "1");
    assert_eq!(c.instance(1)["state"], "BACKUP");
    let log = c.log(1);
    for subtree in [
        "1.3.6.1.4.1.9586.100.5.2",
        "1.3.6.1.2.1.68",
        "1.3.6.1.2.1.207",
    ] {
        assert!(log.contains(&format!("registered {subtree} ")), "{log}");
    }
    // VI_2 became MASTER: keepalived's state change and RFC 2787's new master.
    wait_text(
        &traps,
        &[
            ".1.3.6.1.4.1.9586.100.5.2.10.0.2",
            ".1.3.6.1.2.1.68.0.1",
            &format!(".1.3.6.1.2.1.68.1.3.1.7.{ix}.52 = IpAddress: 192.0.2.11"),
            "\"VI_2\"",
        ],
        &c,
    );
    check_statistics(&c, ns, &ix);
    // RFC 6527's master address: router 2 (192.0.2.12) while it is master.
    let got = snmp(
        ns,
        "snmpget",
        &["-Ox", &format!("{VRRPV3_MIB}.1.1.1.1.3.{ix}.51.1")],
    )
    .unwrap_or_default();
    assert!(got.contains("C0 00 02 0C"), "{got}");

    // Failover: router 2 leaves, router 1 takes VI_1 over.
    c.stop(2);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    wait_tables(&c, ns, &ix, "r1 MASTER of both");
    bfd_result(&c, "0");
    let text = wait_text(&traps, &[".1.3.6.1.2.1.207.0.1", "\"VI_1\""], &c);
    assert!(
        text.contains(&format!(
            ".1.3.6.1.2.1.207.1.1.1.1.3.{ix}.51.1 = Hex-STRING: C0 00 02 0B"
        )) || text.contains(&format!(".1.3.6.1.2.1.207.1.1.1.1.3.{ix}.51.1 = STRING")),
        "{text}"
    );

    // snmpd goes away: vipd goes on; when it is back, vipd registers again.
    drop(snmpd);
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.status(1).is_some(), "vipd died with snmpd:\n{}", c.log(1));
    assert_eq!(c.instance(1)["state"], "MASTER");
    let _snmpd = start_snmpd(ns, &c.dir, 2);
    wait_tables(&c, ns, &ix, "after snmpd restarted");
    let log = c.log(1);
    assert!(log.contains("AgentX session with"), "{log}");

    // Stopping: each instance's last state change says shutdown(5), as keepalived's.
    std::fs::write(&traps, "").unwrap();
    c.stop(1);
    let shutdowns = || {
        std::fs::read_to_string(&traps)
            .unwrap_or_default()
            .matches(".1.3.6.1.4.1.9586.100.5.2.3.1.4 = INTEGER: 5")
            .count()
    };
    let ok = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        shutdowns() >= 2
    });
    assert!(
        ok && shutdowns() == 2,
        "{}",
        std::fs::read_to_string(&traps).unwrap_or_default()
    );
}

/// `snmp_socket tcp:…`, only the RFC 6527 MIB enabled, and a master restarted: vipd
/// registers again.
#[test]
fn agentx_over_tcp_only_the_mibs_enabled_and_a_restarted_master() {
    if !tools() {
        return;
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "snmp-tcp") else {
        return;
    };
    let ns = c.lan.router(1).name().to_string();
    let ns = ns.as_str();
    let agentx = "tcp:127.0.0.1:17050";
    let snmpd = start_snmpd_at(ns, &c.dir, 1, agentx);
    let conf = spec.config(100).replacen(
        "global_defs {\n",
        &format!("global_defs {{\n    enable_snmp_rfcv3\n    snmp_socket {agentx}\n"),
        1,
    );
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let ix = ifindex(ns, "eth0");
    let status_oid = format!("{VRRPV3_MIB}.1.1.1.1.6.{ix}.51.1");
    let master = |ns: &str| {
        snmp(ns, "snmpget", &[&status_oid]).is_some_and(|t| t.trim().ends_with("INTEGER: 3"))
    };
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        master(ns)
    });
    assert!(
        ok,
        "{:?}\n{}\n{}",
        snmp(ns, "snmpget", &[&status_oid]),
        c.logs(),
        snmpd.log_tail(20)
    );
    // Only what is enabled is registered: KEEPALIVED-MIB and RFC 2787 are not there.
    let log = c.log(1);
    assert!(log.contains("registered 1.3.6.1.2.1.207 "), "{log}");
    assert!(!log.contains("registered 1.3.6.1.4.1.9586"), "{log}");
    assert!(!log.contains("registered 1.3.6.1.2.1.68 "), "{log}");
    assert!(walk(ns, KEEPALIVED).values().all(|v| v.contains("No Such")));

    drop(snmpd);
    let _snmpd = start_snmpd_at(ns, &c.dir, 2, agentx);
    // The connection ended: vipd opens a session with the new master.
    let ok = vipd_netns::wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        master(ns)
    });
    assert!(ok, "not served again after snmpd restarted\n{}", c.logs());
    assert!(c.log(1).contains("AgentX session with"), "{}", c.log(1));
}

/// `enable_snmp_checker`: KEEPALIVED-MIB's virtual server group, virtual server and real
/// server tables as the configuration and `vipd status --json` have them (nftables data
/// plane), and `realServerStateChange` and `virtualServerQuorumStateChange` when a
/// MISC_CHECK starts failing (losing the quorum) and passes again.
#[test]
fn checker_tables_and_real_server_traps() {
    if !tools() {
        return;
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "snmp-lb") else {
        return;
    };
    let ns = c.lan.router(1).name().to_string();
    let ns = ns.as_str();
    let (_trapd, traps) = start_snmptrapd(ns, &c.dir);
    let _snmpd = start_snmpd(ns, &c.dir, 1);
    let flag = c.dir.join("rs13-up");
    std::fs::write(&flag, "").unwrap();
    let mut conf = spec.config(100).replacen(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    enable_snmp_checker\n    enable_traps\n    snmp_socket unix:{}\n    \
             lvs_timeouts tcp 900 udp 60\n",
            agentx_socket(&c.dir).display()
        ),
        1,
    );
    // 192.0.2.13 weighs 5 of the 6 the quorum of 2 counts: its failure loses the quorum.
    conf.push_str(&format!(
        "virtual_server 192.0.2.100 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind DR\n    \
         protocol TCP\n    snmp_name web\n    persistence_timeout 120\n    \
         persistence_granularity 255.255.255.0\n    quorum 2\n    quorum_up \"/bin/echo met\"\n    \
         quorum_down \"/bin/echo lost\"\n    virtualhost www.example.com\n    omega\n    \
         inhibit_on_failure\n    smtp_alert\n    warmup 0\n    sorry_server 192.0.2.15 8080\n    \
         real_server 192.0.2.13 80 {{\n        weight 5\n        notify_up \"/bin/echo up\"\n        \
         notify_down \"/bin/echo down\"\n        MISC_CHECK {{\n            \
         misc_path \"/usr/bin/test -f {}\"\n        }}\n    }}\n    real_server 192.0.2.14 80 {{\n        \
         snmp_name \"web two\"\n        retry 3\n        delay_before_retry 2\n        \
         virtualhost two.example.com\n        MISC_CHECK {{\n            misc_path /bin/true\n        }}\n    }}\n}}\n\
         virtual_server_group extra {{\n    192.0.2.110-115 8080\n    192.0.2.120 8080\n}}\n\
         virtual_server group extra {{\n    delay_loop 1\n    lb_algo rr\n    protocol TCP\n    \
         real_server 192.0.2.14 8080 {{\n        MISC_CHECK {{\n            misc_path /bin/true\n        }}\n    }}\n}}\n",
        flag.display()
    ));
    c.start_vipd_with(1, &conf, &["--lb-backend", "nftables"]);
    let base = format!("{KEEPALIVED}.3");
    // The tables against the status: virtual server 1, real servers 1 and 2.
    let check = |c: &Cluster| -> Result<(), String> {
        let st = c.status(1).ok_or("no status")?;
        let vs = &st["virtual_servers"][0];
        let rss = vs["real_servers"].as_array().ok_or("no real servers")?;
        let t = walk(ns, &base);
        let up = rss.iter().filter(|r| r["up"] == true).count().to_string();
        let mut want = vec![
            ("3.1.2.1".to_string(), "2".to_string()),
            ("3.1.6.1".into(), "C0 00 02 64 ".into()),
            ("3.1.7.1".into(), "80".into()),
            ("3.1.8.1".into(), "1".into()),
            ("3.1.20.1".into(), rss.len().to_string()),
            ("3.1.21.1".into(), up),
            // snmp_name: virtualServerName, realServerName (none for 192.0.2.13).
            ("3.1.71.1".into(), "web".into()),
            ("4.1.55.1.2".into(), "web two".into()),
            // lvsSyncDaemonEnabled (no lvs_sync_daemon), lvsTimeoutTcp / Udp.
            ("6.1.0".into(), "2".into()),
            ("7.1.0".into(), "900".into()),
            ("7.3.0".into(), "60".into()),
            // The virtual server's configuration: LoadBalancingAlgo rr, Kind dr,
            // VirtualHost, Persist, PersistTimeout, PersistGranularity, DelayLoop (s,
            // µs), HaSuspend false, Alpha disabled, Omega enabled, Quorum, Hysteresis,
            // QuorumUp / QuorumDown and their paths, OPS false, SHPort false,
            // ActionWhenDown inhibit, Warmup (s, µs), SmtpAlert enabled.
            ("3.1.9.1".into(), "1".into()),
            ("3.1.10.1".into(), "2".into()),
            ("3.1.12.1".into(), "www.example.com".into()),
            ("3.1.13.1".into(), "1".into()),
            ("3.1.14.1".into(), "120".into()),
            ("3.1.15.1".into(), "FF FF FF 00 ".into()),
            ("3.1.16.1".into(), "1".into()),
            ("3.1.64.1".into(), "1000000".into()),
            ("3.1.17.1".into(), "2".into()),
            ("3.1.18.1".into(), "2".into()),
            ("3.1.19.1".into(), "1".into()),
            ("3.1.22.1".into(), "2".into()),
            ("3.1.26.1".into(), "0".into()),
            ("3.1.24.1".into(), "/bin/echo met".into()),
            ("3.1.25.1".into(), "/bin/echo lost".into()),
            ("3.1.72.1".into(), "/bin/echo".into()),
            ("3.1.73.1".into(), "/bin/echo".into()),
            ("3.1.37.1".into(), "2".into()),
            ("3.1.54.1".into(), "2".into()),
            ("3.1.56.1".into(), "2".into()),
            ("3.1.59.1".into(), "0".into()),
            ("3.1.66.1".into(), "0".into()),
            ("3.1.61.1".into(), "1".into()),
            // The real servers': Weight, Upper / LowerConnectionLimit (none),
            // ActionWhenDown (inherited inhibit), NotifyUp / NotifyDown and their paths,
            // ForwardingMethod dr, VirtualHost, Alpha disabled, Retry and
            // DelayBeforeRetry (s, µs) where written, DelayLoop (inherited), SmtpAlert.
            ("4.1.7.1.1".into(), "5".into()),
            ("4.1.7.1.2".into(), "1".into()),
            ("4.1.8.1.1".into(), "0".into()),
            ("4.1.9.1.1".into(), "0".into()),
            ("4.1.10.1.1".into(), "2".into()),
            ("4.1.11.1.1".into(), "/bin/echo up".into()),
            ("4.1.12.1.1".into(), "/bin/echo down".into()),
            ("4.1.56.1.1".into(), "/bin/echo".into()),
            ("4.1.57.1.1".into(), "/bin/echo".into()),
            ("4.1.40.1.2".into(), "2".into()),
            ("4.1.41.1.2".into(), "two.example.com".into()),
            ("4.1.42.1.2".into(), "2".into()),
            ("4.1.43.1.2".into(), "3".into()),
            ("4.1.44.1.2".into(), "2".into()),
            ("4.1.48.1.2".into(), "2000000".into()),
            ("4.1.46.1.1".into(), "1".into()),
            ("4.1.47.1.1".into(), "1".into()),
            // virtualServerQuorumStatus: met(1) / notMet(2) as the status has it; the
            // sorry server (row 3, type sorry, dr as its virtual server) alive while it
            // is not met.
            (
                "3.1.23.1".into(),
                if vs["quorum_up"] == true { "1" } else { "2" }.into(),
            ),
            ("4.1.2.1.3".into(), "2".into()),
            ("4.1.4.1.3".into(), "C0 00 02 0F ".into()),
            ("4.1.5.1.3".into(), "8080".into()),
            ("4.1.40.1.3".into(), "2".into()),
            (
                "4.1.6.1.3".into(),
                if vs["quorum_up"] == true { "2" } else { "1" }.into(),
            ),
            // The group: virtualServerGroupName, its members (a range, an address), and
            // the virtual server of it (type group, NameOfGroup).
            ("1.1.2.1".into(), "extra".into()),
            ("2.1.2.1.1".into(), "3".into()),
            ("2.1.6.1.1".into(), "C0 00 02 6E ".into()),
            ("2.1.7.1.1".into(), "C0 00 02 73 ".into()),
            ("2.1.8.1.1".into(), "8080".into()),
            ("2.1.2.1.2".into(), "2".into()),
            ("2.1.5.1.2".into(), "C0 00 02 78 ".into()),
            ("2.1.8.1.2".into(), "8080".into()),
            ("3.1.2.2".into(), "3".into()),
            ("3.1.3.2".into(), "extra".into()),
        ];
        for (col, what) in [
            ("3.1.57.1", "virtualServerRetry (not written)"),
            ("4.1.43.1.1", "realServerRetry (not written)"),
            (
                "3.1.51.1",
                "virtualServerPersistGranularity6 of an IPv4 service",
            ),
            ("2.1.5.1.1", "virtualServerGroupMemberAddress of a range"),
            ("4.1.15.1.1", "realServerStatsActiveConns on nftables"),
        ] {
            if t.contains_key(col) {
                return Err(format!("{what}: {t:?}"));
            }
        }
        if t.contains_key("7.2.0") {
            return Err(format!("lvsTimeoutTcpFin without tcpfin: {t:?}"));
        }
        if t.contains_key("4.1.55.1.1") {
            return Err(format!("a realServerName without snmp_name: {t:?}"));
        }
        for (k, r) in rss.iter().enumerate() {
            let alive = if r["up"] == true { "1" } else { "2" };
            want.push((format!("4.1.6.1.{}", k + 1), alive.into()));
            // realServerFailedChecks: its one MISC_CHECK, failing while it is down.
            let failed = if r["up"] == true { "0" } else { "1" };
            want.push((format!("4.1.13.1.{}", k + 1), failed.into()));
            want.push((format!("4.1.5.1.{}", k + 1), r["port"].to_string()));
        }
        let wrong: Vec<_> = want
            .iter()
            .filter(|(k, v)| t.get(k) != Some(v))
            .map(|(k, v)| format!("{k}: {:?}, want {v}", t.get(k)))
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("{wrong:?}\n{t:?}\n{st}"))
        }
    };
    let rs13 = |c: &Cluster, up: bool| {
        c.status(1).is_some_and(|st| {
            st["virtual_servers"][0]["real_servers"][0]["up"] == up
                && st["virtual_servers"][0]["real_servers"][1]["up"] == true
        })
    };
    let wait = |c: &Cluster, up: bool, what: &str| {
        let ok = vipd_netns::wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
            rs13(c, up)
        });
        assert!(
            ok,
            "{what}: {}\n{}",
            c.status(1).unwrap_or_default(),
            c.logs()
        );
        let mut last = String::new();
        let ok = vipd_netns::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
            check(c).map_err(|e| last = e).is_ok()
        });
        assert!(ok, "{what}: {last}");
    };
    wait(&c, true, "both real servers up");
    // 192.0.2.13's check fails: the trap says dead(2) and one server up of two.
    std::fs::remove_file(&flag).unwrap();
    wait(&c, false, "192.0.2.13 down");
    let rs = format!("{KEEPALIVED}.3.4.1");
    let vs = format!("{KEEPALIVED}.3.3.1");
    let trap = |status: u8, up: u8| {
        vec![
            format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: {KEEPALIVED}.3.5.0.1"),
            format!("{rs}.4 = Hex-STRING: C0 00 02 0D"),
            format!("{rs}.6 = INTEGER: {status}"),
            format!("{vs}.21 = Gauge32: {up}"),
            format!("{vs}.20 = Gauge32: 2"),
        ]
    };
    let want = trap(2, 1);
    wait_text(
        &traps,
        &want.iter().map(String::as_str).collect::<Vec<_>>(),
        &c,
    );
    // 1 of the quorum of 2 left: virtualServerQuorumStateChange, notMet(2), with the
    // virtual server's address.
    let quorum = |status: u8| {
        vec![
            format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: {KEEPALIVED}.3.5.0.2"),
            format!("{vs}.23 = INTEGER: {status}"),
            format!("{vs}.22 = Gauge32: 2"),
            format!("{vs}.6 = Hex-STRING: C0 00 02 64"),
        ]
    };
    let want = quorum(2);
    wait_text(
        &traps,
        &want.iter().map(String::as_str).collect::<Vec<_>>(),
        &c,
    );
    std::fs::write(&flag, "").unwrap();
    wait(&c, true, "192.0.2.13 up again");
    let want = trap(1, 2);
    wait_text(
        &traps,
        &want.iter().map(String::as_str).collect::<Vec<_>>(),
        &c,
    );
    let want = quorum(1);
    wait_text(
        &traps,
        &want.iter().map(String::as_str).collect::<Vec<_>>(),
        &c,
    );
}

/// Traffic through a LVS-NAT virtual server (GETs from the client to the VIP, answered
/// by r2): the served virtualServerStats* / realServerStats* grow with it and equal the
/// counters of `vipd status --json`, read every second
/// (`snmp_vs_stats_update_interval` / `snmp_rs_stats_update_interval 1`). nftables
/// counts no connections: 0 on both sides.
#[test]
fn server_traffic_statistics_follow_the_traffic() {
    if !tools() {
        return;
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(2, "snmp-stats") else {
        return;
    };
    let ns = c.lan.router(1).name().to_string();
    let ns = ns.as_str();
    let _snmpd = start_snmpd(ns, &c.dir, 1);
    let _web = HttpServer::start(c.lan.router(2), "r2");
    nat_routes(&c, &[1], &[2]);
    let mut conf = spec.config(100).replacen(
        "global_defs {\n",
        &format!(
            "global_defs {{\n    enable_snmp_checker\n    snmp_socket unix:{}\n    \
             snmp_vs_stats_update_interval 1\n    snmp_rs_stats_update_interval 1\n",
            agentx_socket(&c.dir).display()
        ),
        1,
    );
    conf.push_str(
        "virtual_server 192.0.2.100 80 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    \
         protocol TCP\n    real_server 192.0.2.12 80 {\n        TCP_CHECK {\n            \
         connect_timeout 1\n        }\n    }\n}\n",
    );
    c.start_vipd_with(1, &conf, &["--lb-backend", "nftables"]);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    wait_serving(&c, 3, Duration::from_secs(15));

    // (conns, in packets, in bytes) of the virtual server and of its real server, from
    // the status and from the MIB.
    type Stats = [[u64; 3]; 2];
    let from_status = |c: &Cluster| -> Option<Stats> {
        let st = c.status(1)?;
        let vs = &st["virtual_servers"][0];
        let three = |s: &serde_json::Value| -> Option<[u64; 3]> {
            Some([
                s["conns"].as_u64()?,
                s["in_packets"].as_u64()?,
                s["in_bytes"].as_u64()?,
            ])
        };
        Some([
            three(&vs["stats"])?,
            three(&vs["real_servers"][0]["stats"])?,
        ])
    };
    let from_mib = || -> Stats {
        let v = |col: u32| get_u64(ns, &format!("{KEEPALIVED}.3.3.1.{col}.1"));
        let r = |col: u32| get_u64(ns, &format!("{KEEPALIVED}.3.4.1.{col}.1.1"));
        // virtualServerStatsConns / InPkts / InBytes, realServerStatsConns / InPkts /
        // InBytes; the 64-bit packet counters agree with the 32-bit ones.
        assert_eq!(v(39), v(28), "virtualServerStatsInPkts64");
        assert_eq!(r(28), r(18), "realServerStatsInPkts64");
        [[v(27), v(28), v(30)], [r(14), r(18), r(20)]]
    };
    // Once the counters have been read after the last traffic (and stay): the status and
    // the MIB agree.
    // Two status reads 2.5 s apart agree with the MIB and the real server's in-packets
    // are past `floor` (the traffic before was read: vipd reads the counters at most
    // once a second, so two reads 1.5 s apart could both predate it).
    let settled = |c: &Cluster, floor: u64| -> Stats {
        let mut last = String::new();
        let mut got = None;
        let ok = vipd_netns::wait_for(Duration::from_secs(20), Duration::from_millis(500), || {
            let (Some(a), Some(b)) = (from_status(c), {
                std::thread::sleep(Duration::from_millis(2500));
                from_status(c)
            }) else {
                return false;
            };
            let mib = from_mib();
            last = format!("status {a:?} then {b:?}, MIB {mib:?}");
            if a == b && mib == a && a[1][1] > floor {
                got = Some(a);
            }
            got.is_some()
        });
        assert!(ok, "{last}\n{}", c.logs());
        got.unwrap()
    };
    let before = settled(&c, 0);
    let m = fetch(c.lan.client(), 5);
    assert_eq!(errors(&m), 0, "{m:?}\n{}", c.logs());
    let after = settled(&c, before[1][1]);
    for (what, b, a) in [
        ("virtual", before[0], after[0]),
        ("real", before[1], after[1]),
    ] {
        // Each GET: at least SYN, the request and FIN from the client; every packet at
        // least 40 bytes (IPv4 + TCP headers).
        let packets = a[1] - b[1];
        assert!(
            packets >= 15,
            "{what} server: {packets} packets: {b:?} → {a:?}"
        );
        assert!(
            a[2] - b[2] >= 40 * packets,
            "{what} server: bytes {b:?} → {a:?}"
        );
        assert_eq!(a[0], 0, "nftables counts no connections");
    }
    assert_eq!(after[0][1..], after[1][1..], "one real server: all of it");
}

/// A `vrrp_sync_group`: vrrpSyncGroupTable, its members and each member's
/// vrrpInstanceSyncGroup, and vrrpSyncGroupStateChange when the group becomes MASTER;
/// VI_1's tracked interface in vrrpTrackedInterfaceTable as `vipd status` has it.
#[test]
fn sync_group_and_tracked_interface_tables_and_trap() {
    if !tools() {
        return;
    }
    let spec = Spec::v3();
    let Some(mut c) = Cluster::new(1, "snmp-sg") else {
        return;
    };
    let ns = c.lan.router(1).name().to_string();
    let ns = ns.as_str();
    let (_trapd, traps) = start_snmptrapd(ns, &c.dir);
    let _snmpd = start_snmpd(ns, &c.dir, 1);
    let tracked = spec
        .clone()
        .with("track_interface {\n        eth0 weight -10\n    }");
    let mut conf = snmp_config(&tracked, 100, c.dir.path()).replace("version 2\n", "version 3\n");
    conf.push_str(
        "vrrp_sync_group G1 {\n    group {\n        VI_2\n        VI_1\n    }\n    \
         track_interface {\n        eth0 weight -3\n    }\n    notify_master \"/bin/true G1\"\n}\n",
    );
    c.start_vipd(1, &conf);
    c.wait_holders(spec.vip(), &[1], spec.takeover_timeout());
    let base = format!("{KEEPALIVED}.2");
    let want = [
        ("1.1.2.1", "G1"),
        ("1.1.3.1", "2"),
        // NotifyExec, ScriptMaster, TrackingWeight.
        ("1.1.5.1", "1"),
        ("1.1.6.1", "/bin/true G1"),
        ("1.1.10.1", "2"),
        ("2.1.2.1.1", "VI_2"),
        ("2.1.2.1.2", "VI_1"),
        ("3.1.18.1", "G1"),
        ("3.1.18.2", "G1"),
        // The group's own track_interface: vrrpSyncTrackedInterfaceTable.
        ("14.1.1.1.1", "eth0"),
        ("14.1.2.1.1", "-3"),
        ("14.1.3.1.1", "2"),
    ];
    let mut last = BTreeMap::new();
    let ok = vipd_netns::wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        last = walk(ns, &base);
        want.iter()
            .all(|(k, v)| last.get(*k).map(String::as_str) == Some(*v))
    });
    assert!(ok, "{last:?}\n{}", c.logs());
    assert_eq!(c.instance(1)["state"], "MASTER");
    // The tracked interface, as the status lists it (in a sync group its weight is 0
    // unless sync_group_tracking_weight).
    let st = c.status(1).unwrap();
    let line = &st["tracking"]["VI_1"][0];
    assert_eq!(line["name"], "eth0", "{st}");
    assert_eq!(last.get("4.1.1.1.1").map(String::as_str), Some("eth0"));
    assert_eq!(
        last.get("4.1.2.1.1").map(String::as_str),
        Some(line["weight"].to_string().as_str())
    );
    assert_eq!(last.get("4.1.3.1.1").map(String::as_str), Some("2"));
    // VI_2 (instance 2) has the rows its status lists (a member shares the group's
    // fault: vipd lists VI_1's interface there too), none beyond.
    let vi2: Vec<_> = (st["tracking"]["VI_2"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l["kind"] == "interface")
        .collect();
    for (k, l) in vi2.iter().enumerate() {
        let name = last.get(&format!("4.1.1.2.{}", k + 1));
        assert_eq!(name.map(String::as_str), l["name"].as_str(), "{last:?}");
    }
    assert!(!last.contains_key(&format!("4.1.1.2.{}", vi2.len() + 1)));
    wait_text(
        &traps,
        &[
            &format!("{KEEPALIVED}.2.10.0.1"),
            &format!("{KEEPALIVED}.2.1.1.2 = STRING: \"G1\""),
            &format!("{KEEPALIVED}.2.1.1.3 = INTEGER: 2"),
        ],
        &c,
    );
}

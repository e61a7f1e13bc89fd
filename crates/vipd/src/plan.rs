//! config → one validated plan. `vipd check-config`, `vipd run` and a reload build the
//! desired state of every owner (VRRP runtime and tracker, health checkers and load
//! balancer, mailer, process settings) with [`build`], by pure code: the host is read
//! (interfaces, users, files the configuration names) but nothing is created or
//! changed. So every refusal `run` or a reload would meet, `check-config` reports
//! first, at its `file:line:col`, and a reload whose plan fails changes nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use vipd_config::{Config, Diagnostic, Severity};
use vipd_linux::mail::MailSettings;

/// What the owners are started or reloaded with.
#[derive(Debug)]
pub struct DaemonPlan {
    /// The VRRP runtime's and the tracker's part.
    pub vrrp: vipd_linux::plan::Plan,
    /// Where alert mails go (`None`: nowhere).
    pub mail: Option<MailSettings>,
    /// `umask`, parsed.
    pub umask: Option<u32>,
    /// `startup_script` / `shutdown_script` with their timeouts.
    pub startup: Option<Hook>,
    pub shutdown: Option<Hook>,
}

/// `startup_script` or `shutdown_script`: run once and waited for, at most `timeout`.
#[derive(Debug, Clone)]
pub struct Hook {
    pub keyword: &'static str,
    pub script: vipd_exec::scripts::Script,
    pub timeout: std::time::Duration,
}

impl Hook {
    /// keepalived's default timeout when `*_script_timeout` is not written.
    pub const DEFAULT_TIMEOUT_SECS: u32 = 10;

    fn build(
        config: &Config,
        keyword: &'static str,
        script: &Option<vipd_config::model::ScriptCommand>,
        timeout: Option<u32>,
    ) -> Result<Option<Hook>, String> {
        let script = vipd_linux::plan::script_command(config, keyword, script)
            .map_err(|e| format!("{e:#}"))?;
        Ok(script.map(|script| Hook {
            keyword,
            script,
            timeout: std::time::Duration::from_secs(u64::from(
                timeout.unwrap_or(Self::DEFAULT_TIMEOUT_SECS),
            )),
        }))
    }

    /// Runs it and says how it ended; a failure is logged, never fatal (as keepalived).
    pub fn run(&self) -> vipd_exec::scripts::Outcome {
        self.script.run(&[], self.timeout)
    }
}

/// Every owner's plan for `config` (loaded from `file`), or every reason it cannot run.
/// The load balancer's table and the checkers are validated here as the balancer
/// builds them; it builds them again when it starts, with its backend's default
/// scheduler.
pub fn build(file: &Path, config: &Config) -> Result<DaemonPlan, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let whole_file = |message: String| Diagnostic::file_error(message, file.to_path_buf());
    let vrrp = vipd_linux::plan::build(config)
        .map_err(|e| {
            let message = format!("{:#}", e.error);
            errors.push(match e.span {
                Some(span) => Diagnostic::new(Severity::Error, message, span, 1),
                None => whole_file(message),
            })
        })
        .ok();
    let mail = MailSettings::from_config(&config.global)
        .map_err(|e| errors.push(whole_file(e)))
        .ok()
        .flatten();
    let umask = match &config.global.umask {
        Some(text) => vipd_config::parse_umask(text)
            .map_err(|e| errors.push(whole_file(e)))
            .ok(),
        None => None,
    };
    let g = &config.global;
    let mut hook = |kw, script, timeout| {
        Hook::build(config, kw, script, timeout)
            .map_err(|e| errors.push(whole_file(e)))
            .ok()
            .flatten()
    };
    let startup = hook(
        "startup_script",
        &g.startup_script,
        g.startup_script_timeout,
    );
    let shutdown = hook(
        "shutdown_script",
        &g.shutdown_script,
        g.shutdown_script_timeout,
    );
    errors.extend(checker_errors(config));
    if let Err(errs) = vipd_lb::desired::Lb::new(
        &config.virtual_servers,
        &config.virtual_server_groups,
        vipd_lb::Sched::Wlc,
        |_, _| true,
    ) {
        errors.extend(
            errs.into_iter()
                .map(|e| Diagnostic::new(Severity::Error, e.message, e.span, 1)),
        );
    }
    attach_snippets(&mut errors);
    match vrrp {
        Some(vrrp) if errors.is_empty() => Ok(DaemonPlan {
            vrrp,
            mail,
            umask,
            startup,
            shutdown,
        }),
        _ => Err(errors),
    }
}

/// What the checkers would refuse (a checker option they cannot honour, an unreadable
/// `SSL` file, ...), at their lines.
fn checker_errors(config: &Config) -> Vec<Diagnostic> {
    let globals = vipd_check::Globals::from_config(config);
    let Err(errors) = vipd_check::spec::build(&config.virtual_servers, &globals) else {
        return Vec::new();
    };
    errors
        .0
        .into_iter()
        .map(|e| {
            Diagnostic::new(
                Severity::Error,
                format!("`{}`: {}", e.keyword, e.message),
                e.span,
                1,
            )
        })
        .collect()
}

/// Fills in the source line of findings made after loading, for the caret display.
/// Each file is read once and walked once for the lines asked for: no table of every
/// line (the loaded model, still alive, holds a large file's text already).
pub fn attach_snippets(diags: &mut [Diagnostic]) {
    let wanted = |d: &Diagnostic| d.span.line > 0 && d.snippet.is_none();
    let mut files: Vec<Arc<Path>> = Vec::new();
    for d in diags.iter().filter(|d| wanted(d)) {
        if !files.contains(&d.span.file) {
            files.push(d.span.file.clone());
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&*file).unwrap_or_default();
        let mut lines: Vec<u32> = (diags.iter())
            .filter(|d| wanted(d) && d.span.file == file)
            .map(|d| d.span.line)
            .collect();
        lines.sort_unstable();
        lines.dedup();
        let mut found: HashMap<u32, &str> = HashMap::with_capacity(lines.len());
        let mut next = lines.iter().peekable();
        for (no, line) in (1..).zip(text.lines()) {
            let Some(&&want) = next.peek() else { break };
            if no == want {
                found.insert(no, line);
                next.next();
            }
        }
        for d in diags.iter_mut().filter(|d| d.span.file == file) {
            if wanted(d) {
                d.snippet = found.get(&d.span.line).map(|l| l.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! "Whatever `check-config` accepts, the plan builder accepts": configurations built
    //! from keyword fragments on `lo` (it exists everywhere and has 127.0.0.1) that load
    //! without an error or an inactive keyword must plan, so every refusal `vipd run`
    //! or a reload could meet has a load-time diagnostic at its `file:line:col`.
    //! Not generated: host facts (missing users, interfaces, scripts) and the checkers'
    //! own option checks (vipd-check's spec, e.g. HTTP_GET without `url`), which
    //! `check-config` reports through this same plan, at their lines.

    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;
    use vipd_config::{load_str, LoadOptions};

    fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::sample::select(options).prop_map(str::to_string)
    }

    /// One of `good`, or (one time in ten) one of `bad`: values the loader must refuse.
    fn pick2(
        good: &'static [&'static str],
        bad: &'static [&'static str],
    ) -> impl Strategy<Value = String> {
        prop_oneof![9 => pick(good), 1 => pick(bad)]
    }

    fn global() -> impl Strategy<Value = String> {
        (
            pick(&["", "", "", "    vrrp_strict\n"]),
            pick(&["", "    vrrp_version 2\n", "    vrrp_version 3\n"]),
            pick2(
                &["", "    umask 022\n", "    umask IWGRP|IWOTH\n"],
                &["    umask 0999\n", "    umask IFOO\n"],
            ),
            pick2(
                &[
                    "",
                    "    smtp_server 127.0.0.1\n",
                    "    smtp_server 127.0.0.1 2525\n",
                ],
                &[
                    "    smtp_server 127.0.0.1 0\n",
                    "    smtp_server 127.0.0.1 25 x\n",
                ],
            ),
            pick(&[
                "",
                "    notification_email {\n        ops@example.com\n    }\n",
            ]),
            pick2(
                &[
                    "",
                    "    vrrp_mcast_group4 224.0.0.18\n",
                    "    vrrp_mcast_group6 ff02::12\n",
                ],
                &[
                    "    vrrp_mcast_group4 192.0.2.9\n",
                    "    vrrp_mcast_group4 ff02::12\n",
                    "    vrrp_mcast_group6 224.0.0.18\n",
                ],
            ),
            pick(&[
                "",
                "    enable_script_security\n",
                "    enable_script_security\n    script_user nobody\n",
                "    script_user root\n",
            ]),
        )
            .prop_map(|(a, b, c, d, e, f, g)| format!("global_defs {{\n{a}{b}{c}{d}{e}{f}{g}}}\n"))
    }

    fn instance(n: usize) -> impl Strategy<Value = String> {
        (
        (
            1u8..4,
            pick(&["", "", "", "    strict_mode on\n", "    strict_mode off\n"]),
            pick(&[
                "",
                "    unicast_peer {\n        127.0.0.2\n    }\n",
                "    unicast_src_ip 127.0.0.1\n    unicast_peer {\n        127.0.0.2 min_ttl 1 max_ttl 255\n        127.0.0.3\n    }\n",
            ]),
            pick2(&["", "    unicast_ttl 1\n", "    unicast_ttl 255\n"], &["    unicast_ttl 0\n"]),
            pick2(&["", "    mcast_dst_ip 224.0.0.18\n"], &["    mcast_dst_ip 192.0.2.9\n", "    mcast_dst_ip ff02::12\n"]),
            pick2(&["192.0.2.1", "192.0.2.1/24 dev lo label lo:v brd 192.0.2.255", "192.0.2.1/24 scope host"], &["192.0.2.1/24 brd 2001:db8::ff"]),
            pick(&[
                "",
                "    virtual_routes {\n        198.51.100.0/24 via 127.0.0.1 dev lo\n    }\n",
                "    virtual_rules {\n        from 192.0.2.1/32 table 200 preference 200\n    }\n",
                "    virtual_ipaddress_excluded {\n        203.0.113.1/24\n    }\n",
            ]),
            pick(&[
                "",
                "    authentication {\n        auth_type PASS\n        auth_pass secret\n    }\n",
                "    nopreempt\n    state BACKUP\n",
                "    preempt_delay 5\n",
                "    advert_int 2\n",
            ]),
            pick(&[
                "",
                "    notify_master \"/bin/true master\"\n",
                "    track_script {\n        chk\n    }\n",
                "    track_script {\n        chk weight -10\n    }\n    notify /bin/true\n",
            ]),
        ),
            pick(&[
                "",
                "",
                "    use_vmac\n",
                "    use_vmac vrrp.5 02:00:5e:00:01\n    vmac_xmit_base\n",
                "    dont_track_primary\n",
                "    track_interface {\n        lo weight -5\n    }\n",
                "    track_file {\n        f1\n    }\n",
                "    track_process {\n        p1\n    }\n",
                "    native_ipv6\n    unicast_src_ip ::1\n",
            ]),
        )
            .prop_map(move |((vrid, strict, peers, ttl, mcast, vip, extra, misc, scripts), more)| {
                format!(
                    "vrrp_instance V{n} {{\n    interface lo\n    virtual_router_id {}\n    priority 100\n{strict}{peers}{ttl}{mcast}{extra}{misc}{scripts}{more}    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n",
                    u32::from(vrid) + 10 * n as u32
                )
            })
    }

    fn extras() -> impl Strategy<Value = String> {
        (
            prop_oneof![9 => pick(&[
                "vrrp_script chk {\n    script /bin/true\n    interval 1\n}\n",
                "vrrp_script chk {\n    script \"/bin/true x\"\n    user nobody\n    weight 2\n}\n",
                "vrrp_script chk {\n    script /bin/true\n    user root root\n}\n",
            ]), 1 => Just(String::new())],
            pick2(
                &[
                    "",
                    "static_ipaddress {\n    203.0.113.5/32 dev lo\n}\n",
                    "static_ipaddress {\n    203.0.113.5/24 brd 203.0.113.255 dev lo\n}\n",
                    "static_routes {\n    203.0.113.0/24 via 127.0.0.1 dev lo\n}\n",
                ],
                &["static_ipaddress {\n    203.0.113.5/24 brd 2001:db8::ff dev lo\n}\n"],
            ),
            Just(
                "vrrp_track_file f1 {\n    file /nonexistent/vipd-f1\n    weight 5\n}\nvrrp_track_process p1 {\n    process sshd\n    weight 2\n}\n"
                    .to_string(),
            ),
            pick2(
                &[
                "",
                "virtual_server 192.0.2.1 80 {\n    lb_kind DR\n    protocol TCP\n    real_server 198.51.100.1 80 {\n        TCP_CHECK {\n            connect_timeout 3\n        }\n    }\n}\n",
                "virtual_server 192.0.2.1 443 {\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    persistence_timeout 50\n    sorry_server 198.51.100.9 443\n    real_server 198.51.100.2 8443 {\n        weight 2\n        MISC_CHECK {\n            misc_path /bin/true\n        }\n    }\n}\n",
                "virtual_server fwmark 5 {\n    lb_kind TUN\n    real_server 198.51.100.3 80 {\n        HTTP_GET {\n            url {\n                path /\n                status_code 200\n            }\n        }\n    }\n}\n",
            ],
                &[
                    "virtual_server 2001:db8::5 80 {\n    lb_kind NAT\n    protocol TCP\n    real_server 198.51.100.1 8080 {\n        TCP_CHECK {\n        }\n    }\n}\n",
                    "virtual_server 192.0.2.1 80 {\n    lb_kind DR\n    protocol TCP\n    real_server 198.51.100.1 80 {\n        weight 70000\n        TCP_CHECK {\n        }\n    }\n}\n",
                ],
            ),
        )
            .prop_map(|(a, b, t, c)| format!("{a}{b}{t}{c}"))
    }

    fn config() -> impl Strategy<Value = String> {
        (
            global(),
            extras(),
            instance(0),
            proptest::option::of(instance(1)),
        )
            .prop_map(|(g, x, i0, i1)| format!("{g}{x}{i0}{}", i1.unwrap_or_default()))
    }

    /// Loads `text` as check-config does; `Some` when it is accepted with every keyword
    /// active (the property's precondition).
    fn accepted(text: &str) -> Option<(PathBuf, Config)> {
        let file = PathBuf::from("/nonexistent/vipd-plan-prop.conf");
        let opts = LoadOptions {
            config_id: None,
            check_interfaces: true,
            ..Default::default()
        };
        let loaded = load_str(text, &file, &opts).ok()?;
        if loaded.diagnostics.iter().any(|d| d.is_inactive()) {
            return None;
        }
        Some((file, loaded.config))
    }

    fn plans(text: &str) -> Result<(), String> {
        let Some((file, config)) = accepted(text) else {
            return Ok(());
        };
        build(&file, &config).map(|_| ()).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
        #[test]
        fn what_check_config_accepts_plans(text in config()) {
            if let Err(e) = plans(&text) {
                prop_assert!(false, "loads cleanly but does not plan:\n{e}\n--- config:\n{text}");
            }
        }
    }

    /// `vrrp_down_timer_adverts` is the instances' default; their own value wins, and
    /// strict mode resets it to 3 as keepalived does.
    #[test]
    fn vrrp_down_timer_adverts_is_the_instances_default() {
        let inst = |name: &str, vrid: u8, extra: &str| {
            format!("vrrp_instance {name} {{\n    interface lo\n    virtual_router_id {vrid}\n    priority 100\n{extra}    virtual_ipaddress {{\n        192.0.2.{vrid}\n    }}\n}}\n")
        };
        let text = format!(
            "global_defs {{\n    vrrp_down_timer_adverts 5\n}}\n{}{}{}",
            inst("A", 1, ""),
            inst("B", 2, "    down_timer_adverts 2\n"),
            inst("C", 3, "    strict_mode on\n")
        );
        let (file, config) = accepted(&text).expect("loads without inactive keywords");
        let plan = build(&file, &config).unwrap_or_else(|e| panic!("{e:#?}"));
        let dta: Vec<u32> = plan
            .vrrp
            .instances
            .iter()
            .map(|i| u32::from(i.engine.down_timer_adverts))
            .collect();
        assert_eq!(dta, [5, 2, 3]);
        let (file, config) = accepted(&inst("A", 1, "")).unwrap();
        let plan = build(&file, &config).unwrap();
        assert_eq!(plan.vrrp.instances[0].engine.down_timer_adverts, 3);
    }

    /// Snippets come from the file each finding names, by line, read once per file;
    /// a line past the end (or an unreadable file) leaves no snippet.
    #[test]
    fn attach_snippets_reads_each_named_line() {
        let dir = std::env::temp_dir().join(format!("vipd-snippets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.conf"), dir.join("b.conf"));
        std::fs::write(&a, "first\r\n  second line\n\nfourth").unwrap();
        std::fs::write(&b, "only\n").unwrap();
        let at = |file: &Path, line: u32| {
            Diagnostic::new(
                Severity::Warning,
                "m",
                vipd_config::model::Span {
                    file: Arc::from(file),
                    line,
                    col: 1,
                },
                1,
            )
        };
        let mut diags = vec![
            at(&a, 2),
            at(&b, 1),
            at(&a, 1),
            at(&a, 3),
            at(&a, 4),
            at(&a, 5),
            at(&dir.join("gone.conf"), 1),
            at(&a, 0),
        ];
        let mut kept = at(&b, 1);
        kept.snippet = Some("already there".into());
        diags.push(kept);
        attach_snippets(&mut diags);
        let snippets: Vec<Option<&str>> = diags.iter().map(|d| d.snippet.as_deref()).collect();
        assert_eq!(
            snippets,
            [
                Some("  second line"),
                Some("only"),
                Some("first"),
                Some(""),
                Some("fourth"),
                None,
                None,
                None,
                Some("already there"),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The real-world shapes of the config corpus (Kubernetes API, OpenStack, haproxy
    /// pair, LVS, cloud EIP, home lab) plan as `vipd run` would, on an interface of this
    /// host with an IPv6 link-local address standing in for their `eth0`.
    #[test]
    fn real_world_shapes_plan() {
        let inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
        let Some(iface) = inet6
            .lines()
            .filter(|l| l.starts_with("fe80"))
            .filter_map(|l| l.split_whitespace().last())
            .find(|n| *n != "lo")
            .map(str::to_string)
        else {
            eprintln!("skipped: no interface with an IPv6 link-local address");
            return;
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tests/corpus/valid");
        let mut shapes: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("shape-") && name.ends_with(".conf")
            })
            .collect();
        shapes.sort();
        assert!(shapes.len() >= 6, "{shapes:?}");
        let opts = LoadOptions {
            config_id: Some("corpus".into()),
            check_interfaces: true,
            ..Default::default()
        };
        for f in shapes {
            let text = std::fs::read_to_string(&f).unwrap().replace("eth0", &iface);
            let loaded =
                load_str(&text, &f, &opts).unwrap_or_else(|e| panic!("{}: {e:#?}", f.display()));
            assert!(
                !loaded.diagnostics.iter().any(|d| d.is_inactive()),
                "{}: {:#?}",
                f.display(),
                loaded.diagnostics
            );
            let plan =
                build(&f, &loaded.config).unwrap_or_else(|e| panic!("{}: {e:#?}", f.display()));
            assert_eq!(plan.vrrp.instances.len(), loaded.config.instances.len());
        }
    }

    /// The generator reaches both sides of the property: clean configurations that plan,
    /// and each refusal that used to surface only at planning.
    #[test]
    fn fragments_cover_both_sides() {
        let base = "vrrp_instance V {\n    interface lo\n    virtual_router_id 1\n    priority 100\n    virtual_ipaddress {\n        192.0.2.1\n    }\n}\n";
        assert_eq!(plans(base), Ok(()));
        assert!(accepted(base).is_some());
        for (needle, with) in [
            // The first case the property found (shrunk): planning refused it, loading did not.
            ("    priority 100\n", "    priority 100\n    unicast_ttl 0\n"),
            ("    priority 100\n", "    priority 100\n    unicast_ttl 0\n    unicast_peer {\n        127.0.0.2\n    }\n"),
            ("    priority 100\n", "    priority 100\n    mcast_dst_ip 192.0.2.9\n"),
            ("    priority 100\n", "    priority 100\n    mcast_dst_ip ff02::12\n"),
            ("    priority 100\n", "    priority 100\n    strict_mode on\n    unicast_peer {\n        127.0.0.2\n    }\n"),
            ("192.0.2.1\n", "192.0.2.1/24 brd 2001:db8::ff\n"),
        ] {
            let text = base.replace(needle, with);
            assert!(accepted(&text).is_none(), "loads:\n{text}");
        }
        for g in [
            "umask 0999",
            "umask IFOO",
            "smtp_server 127.0.0.1 0",
            "smtp_server 127.0.0.1 25 x",
            "vrrp_mcast_group4 ff02::12",
            "vrrp_mcast_group6 224.0.0.18",
        ] {
            let text = format!("global_defs {{\n    {g}\n}}\n{base}");
            assert!(accepted(&text).is_none(), "loads:\n{text}");
        }
        // The second case the property found (shrunk): a real server of the other family.
        let text = format!("virtual_server 2001:db8::5 80 {{\n    lb_kind NAT\n    protocol TCP\n    real_server 198.51.100.1 8080 {{\n        TCP_CHECK {{\n        }}\n    }}\n}}\n{base}");
        assert!(accepted(&text).is_none(), "loads:\n{text}");
        assert!(accepted(&text.replace("NAT", "TUN")).is_some());
        let text =
            format!("static_ipaddress {{\n    203.0.113.5/24 brd 2001:db8::ff dev lo\n}}\n{base}");
        assert!(accepted(&text).is_none(), "loads:\n{text}");
    }
}

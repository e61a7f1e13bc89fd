use std::path::Path;

use vipd_config::{load_str, LoadOptions};

use super::*;

const S: Duration = Duration::from_secs(1);

fn config(text: &str) -> Config {
    let opts = LoadOptions {
        config_id: Some("n1".into()),
        check_interfaces: false,
        ..Default::default()
    };
    match load_str(text, Path::new("/etc/keepalived/keepalived.conf"), &opts) {
        Ok(l) => l.config,
        Err(d) => panic!("config does not load: {d:#?}"),
    }
}

fn plan(text: &str) -> Plan {
    let cfg = config(text);
    build(&cfg.virtual_servers, &Globals::from_config(&cfg)).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<SpecError> {
    let cfg = config(text);
    match build(&cfg.virtual_servers, &Globals::from_config(&cfg)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0,
    }
}

fn one_error(text: &str) -> SpecError {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

/// A virtual server with one real server holding `checker`.
fn vs(vs_extra: &str, rs_extra: &str, checker: &str) -> String {
    format!(
        "virtual_server 192.0.2.100 80 {{\n{vs_extra}\n real_server 192.0.2.1 8080 {{\n{rs_extra}\n{checker}\n }}\n}}\n"
    )
}

#[test]
fn defaults_per_kind() {
    let p = plan(&vs(
        "",
        "",
        "HTTP_GET { url { path / } }\nTCP_CHECK { }\nDNS_CHECK { }\nMISC_CHECK { misc_path /bin/true }\nPING_CHECK { }\nSSL_GET { url { path /x } }",
    ));
    let t: Vec<(&str, &Timing, Duration)> = p
        .checks
        .iter()
        .map(|c| (c.kind.as_str(), &c.sched.timing, c.probe.timeout))
        .collect();
    let m = 60 * S;
    let timing = |retry, dbr| Timing {
        delay_loop: m,
        retry,
        delay_before_retry: dbr,
        warmup: m,
        rise: 1,
    };
    assert_eq!(t[0], ("HTTP_GET", &timing(1, 3 * S), 5 * S));
    assert_eq!(t[1], ("TCP_CHECK", &timing(1, S), 5 * S));
    assert_eq!(t[2], ("DNS_CHECK", &timing(3, m), 5 * S));
    // MISC: retry 0 and the script may run for delay_loop.
    assert_eq!(t[3], ("MISC_CHECK", &timing(0, S), m));
    assert_eq!(t[4], ("PING_CHECK", &timing(1, S), 5 * S));
    assert_eq!(t[5], ("SSL_GET", &timing(1, 3 * S), 5 * S));
    assert!(p.checks.iter().all(|c| !c.sched.alpha && !c.sched.dynamic));
    assert_eq!(p.checks[0].sched.label, "HTTP_GET 192.0.2.1:8080");
    assert_eq!(p.checks[4].sched.label, "PING_CHECK 192.0.2.1");
    assert_eq!(p.checks[3].sched.label, "MISC_CHECK /bin/true");
    let ProbeKind::Dns(d) = &p.checks[2].probe.kind else {
        panic!()
    };
    assert_eq!((d.name.as_str(), d.qtype), (".", 6));
    let ProbeKind::Http(h) = &p.checks[0].probe.kind else {
        panic!()
    };
    assert_eq!(h.version(), HttpVersion::V10);
    assert!(h.tls().is_none());
    assert_eq!(h.urls()[0].status, StatusCodes(vec![(200, 299)]));
    assert_eq!(h.urls()[0].host, "192.0.2.1:8080");
    let ProbeKind::Http(h) = &p.checks[5].probe.kind else {
        panic!()
    };
    assert!(h.tls().is_some() && !h.sni());
}

#[test]
fn timing_inherits_checker_then_real_server_then_virtual_server() {
    let p = plan(&vs(
        "delay_loop 10\nretry 4\nwarmup 2\nconnect_timeout 9",
        "connect_timeout 2\nretry 3",
        "TCP_CHECK { delay_before_retry 0.5\nretry 7 }\nTCP_CHECK { }",
    ));
    assert_eq!(
        p.checks[0].sched.timing,
        Timing {
            delay_loop: 10 * S,
            retry: 7,
            delay_before_retry: Duration::from_millis(500),
            warmup: 2 * S,
            rise: 1
        }
    );
    assert_eq!(p.checks[0].probe.timeout, 2 * S);
    assert_eq!(p.checks[1].sched.timing.retry, 3);
    assert_eq!(p.checks[1].sched.timing.delay_before_retry, S);
    // Defaults that depend on delay_loop follow the inherited one.
    let p = plan(&vs(
        "delay_loop 7",
        "",
        "DNS_CHECK { }\nMISC_CHECK { misc_path /bin/true }",
    ));
    assert_eq!(p.checks[0].sched.timing.delay_before_retry, 7 * S);
    assert_eq!(p.checks[0].sched.timing.warmup, 7 * S);
    assert_eq!(p.checks[1].probe.timeout, 7 * S);
    // warmup 0 is honoured; nb_get_retry is retry.
    let p = plan(&vs("warmup 0", "nb_get_retry 5", "TCP_CHECK { }"));
    assert_eq!(p.checks[0].sched.timing.warmup, Duration::ZERO);
    assert_eq!(p.checks[0].sched.timing.retry, 5);
}

#[test]
fn alpha_from_the_virtual_server_or_the_checker() {
    let p = plan(&vs("alpha", "", "TCP_CHECK { }\nTCP_CHECK { alpha no }"));
    assert!(p.checks[0].sched.alpha);
    assert!(!p.checks[1].sched.alpha);
    let p = plan(&vs("", "", "TCP_CHECK { alpha }\nTCP_CHECK { }"));
    assert!(p.checks[0].sched.alpha);
    assert!(!p.checks[1].sched.alpha);
}

#[test]
fn targets_sources_and_socket_options() {
    let p = plan(&vs(
        "",
        "",
        "TCP_CHECK { connect_ip 192.0.2.9\nconnect_port 81\nbindto 192.0.2.200\nbind_port 4000\nfwmark 7\nbind_if eth0 }\nTCP_CHECK { connect_port 82 }",
    ));
    let a = &p.checks[0].probe;
    assert_eq!(a.target, "192.0.2.9:81".parse().unwrap());
    assert_eq!(a.bind_addr, Some("192.0.2.200".parse().unwrap()));
    assert_eq!(a.bind_port, Some(4000));
    assert_eq!(a.fwmark, Some(7));
    assert_eq!(a.bind_if.as_deref(), Some("eth0"));
    assert_eq!(p.checks[1].probe.target, "192.0.2.1:82".parse().unwrap());
    assert_eq!(p.checks[0].sched.label, "TCP_CHECK 192.0.2.9:81");
}

#[test]
fn http_urls_hosts_and_versions() {
    let p = plan(&vs(
        "virtualhost vs.example",
        "",
        r#"HTTP_GET {
            http_protocol 1.1
            url { path /a
                  status_code 200-299 301
                  digest 9B3A0C85A887A256D6939DA88AABD8CD
                  regex "^ok" }
            url { path /b
                  virtualhost url.example }
        }
        HTTP_GET { virtualhost chk.example
            fast_recovery
            url { path /c } }
        SSL_GET { enable_sni
            http_protocol 1.0C
            url { path /d } }"#,
    ));
    let ProbeKind::Http(h) = &p.checks[0].probe.kind else {
        panic!()
    };
    assert_eq!(h.version(), HttpVersion::V11);
    assert_eq!(h.urls().len(), 2);
    assert_eq!(h.urls()[0].status.to_string(), "200-299 301");
    assert_eq!(
        h.urls()[0].digest.as_deref(),
        Some("9b3a0c85a887a256d6939da88aabd8cd")
    );
    assert_eq!(h.urls()[0].regex.as_ref().unwrap().as_str(), "^ok");
    assert_eq!(h.urls()[0].host, "vs.example");
    assert_eq!(h.urls()[1].host, "url.example");
    // Without fast_recovery a recovering server needs each URL once.
    assert_eq!(p.checks[0].sched.timing.rise, 2);
    let ProbeKind::Http(h) = &p.checks[1].probe.kind else {
        panic!()
    };
    assert_eq!(h.urls()[0].host, "chk.example");
    assert_eq!(p.checks[1].sched.timing.rise, 1);
    let ProbeKind::Http(h) = &p.checks[2].probe.kind else {
        panic!()
    };
    assert!(h.sni() && h.tls().is_some());
    assert_eq!(h.version(), HttpVersion::V10Close);
    // The request bytes are built once, with the Host and the version's close.
    let ProbeKind::Http(h) = &p.checks[0].probe.kind else {
        panic!()
    };
    assert_eq!(
        h.request(1).unwrap(),
        b"GET /b HTTP/1.1\r\nHost: url.example\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn udp_smtp_dns_misc_options() {
    let p = plan(&vs(
        "",
        "",
        r#"UDP_CHECK { payload "0102 a"
            require_reply "0x ff"
            min_reply_length 2
            max_reply_length 10 }
        UDP_CHECK { }
        SMTP_CHECK { helo_name mx.example }
        DNS_CHECK { type AAAA
            name www.example.org }
        MISC_CHECK { misc_path "/bin/sh -c 'exit 3'"
            misc_timeout 4
            misc_dynamic }"#,
    ));
    let ProbeKind::Udp(u) = &p.checks[0].probe.kind else {
        panic!()
    };
    assert_eq!(u.payload.as_deref(), Some(&[1, 2, 0xa][..]));
    assert_eq!(
        u.require_reply.as_ref().unwrap().0,
        [(0x00, 0xf0), (0xff, 0xff)]
    );
    assert_eq!((u.min_reply_length, u.max_reply_length), (2, 10));
    let ProbeKind::Udp(u) = &p.checks[1].probe.kind else {
        panic!()
    };
    assert_eq!(u.payload, None);
    assert_eq!(u.require_reply, None);
    let ProbeKind::Smtp(s) = &p.checks[2].probe.kind else {
        panic!()
    };
    assert_eq!(s.helo_name, "mx.example");
    let ProbeKind::Dns(d) = &p.checks[3].probe.kind else {
        panic!()
    };
    assert_eq!((d.name.as_str(), d.qtype), ("www.example.org", 28));
    let ProbeKind::Misc(m) = &p.checks[4].probe.kind else {
        panic!()
    };
    assert_eq!(m.argv, ["/bin/sh", "-c", "exit 3"]);
    assert_eq!(m.timeout, 4 * S);
    assert_eq!(p.checks[4].probe.timeout, 4 * S);
    assert!(m.dynamic && p.checks[4].sched.dynamic);
    assert_eq!(m.run_as, None);
}

#[test]
fn misc_user_and_script_user() {
    let p = plan(&format!(
        "global_defs {{ script_user nobody }}\n{}",
        vs(
            "",
            "",
            "MISC_CHECK { misc_path /bin/true }\nMISC_CHECK { misc_path /bin/true\nuser root }"
        )
    ));
    let runs: Vec<Option<(u32, u32)>> = p
        .checks
        .iter()
        .map(|c| match &c.probe.kind {
            ProbeKind::Misc(m) => m.run_as,
            _ => panic!(),
        })
        .collect();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        runs,
        [
            Some((nobody.uid.as_raw(), nobody.gid.as_raw())),
            Some((0, 0))
        ]
    );
    let e = one_error(&vs(
        "",
        "",
        "MISC_CHECK { misc_path /bin/true\nuser no-such-user-xyz }",
    ));
    assert_eq!(e.keyword, "user");
    assert!(e.message.contains("no-such-user-xyz"), "{e}");
}

#[test]
fn file_check_uses_the_track_file() {
    let p = plan(&format!(
        r#"track_file tf1 {{ file /run/vipd-test-tf1
            weight 3 reverse
            init_file 5 overwrite }}
        track_file tf2 {{ file /run/vipd-test-tf2 }}
        {}"#,
        vs(
            "",
            "weight 4",
            "FILE_CHECK { track_file tf1 }\nFILE_CHECK { track_file tf2\nweight 2\ndynamic }\nFILE_CHECK { track_file tf1\nweight 6 reverse }"
        )
    ));
    let files: Vec<&FileCheck> = p
        .checks
        .iter()
        .map(|c| match &c.probe.kind {
            ProbeKind::File(f) => f,
            _ => panic!(),
        })
        .collect();
    assert_eq!(files[0].weight, -3);
    assert!(!files[0].dynamic);
    assert_eq!(files[0].path, PathBuf::from("/run/vipd-test-tf1"));
    assert_eq!(files[0].rs_weight, 4);
    assert_eq!(files[1].weight, 2);
    assert!(files[1].dynamic && p.checks[1].sched.dynamic);
    assert_eq!(files[2].weight, -6);
    assert_eq!(p.checks[0].sched.timing.delay_loop, FILE_POLL);
    assert_eq!(p.checks[0].sched.timing.retry, 0);
    assert_eq!(p.checks[0].sched.label, "FILE_CHECK tf1");
    // init_file once per file.
    assert_eq!(
        p.init_files,
        [InitFile {
            path: "/run/vipd-test-tf1".into(),
            value: 5,
            overwrite: true
        }]
    );
}

#[test]
fn every_real_server_is_listed() {
    let p = plan(
        "virtual_server 192.0.2.100 80 {\n real_server 192.0.2.1 80 { weight 3 }\n real_server 192.0.2.2 80 { TCP_CHECK { } }\n}\nvirtual_server 192.0.2.101 80 {\n real_server 192.0.2.3 80 { }\n}\n",
    );
    assert_eq!(
        p.servers,
        [
            ServerRef {
                vs: 0,
                rs: 0,
                weight: 3,
                has_checkers: false
            },
            ServerRef {
                vs: 0,
                rs: 1,
                weight: 1,
                has_checkers: true
            },
            ServerRef {
                vs: 1,
                rs: 0,
                weight: 1,
                has_checkers: false
            },
        ]
    );
    assert_eq!((p.checks[0].sched.vs, p.checks[0].sched.rs), (0, 1));
}

#[test]
fn errors_name_the_keyword_and_line() {
    let e = one_error(&vs("", "", "BFD_CHECK { name x }"));
    assert_eq!(e.keyword, "name");
    assert_eq!(e.span.line, 5);
    assert_eq!(
        e.to_string(),
        "/etc/keepalived/keepalived.conf:5: `name`: no bfd_instance named `x` sends its events to the checkers"
    );
    // A `vrrp`-only bfd_instance sends the checkers nothing.
    let text = format!(
        "bfd_instance x {{\n neighbor_ip 192.0.2.1\n vrrp\n}}\n{}",
        vs("", "", "BFD_CHECK { name x }")
    );
    assert_eq!(one_error(&text).keyword, "name");
    let ok = format!(
        "bfd_instance x {{\n neighbor_ip 192.0.2.1\n}}\n{}",
        vs("", "", "BFD_CHECK {\n name x\n alpha\n }")
    );
    let p = plan(&ok);
    assert!(
        matches!(&p.checks[0].probe.kind, ProbeKind::Bfd(b) if b.name == "x" && b.alpha),
        "{:?}",
        p.checks[0].probe.kind
    );

    // A checker that needs a port on a real server without one.
    let e =
        one_error("virtual_server fwmark 1 {\n real_server 192.0.2.1 {\n  TCP_CHECK { }\n }\n}\n");
    assert_eq!((e.keyword.as_str(), e.span.line), ("connect_port", 3));

    let cases: &[(&str, &str)] = &[
        (
            "HTTP_GET { url { path / \n status_code 600-500 } }",
            "status_code",
        ),
        ("HTTP_GET { url { path / \n digest 1234 } }", "digest"),
        ("HTTP_GET { url { path / \n regex \"(?<=a)b\" } }", "regex"),
        ("HTTP_GET { url { path nope } }", "path"),
        ("HTTP_GET { }", "url"),
        ("UDP_CHECK { min_reply_length 3 }", "min_reply_length"),
        ("UDP_CHECK { payload zz }", "payload"),
        (
            "UDP_CHECK { require_reply 1\n min_reply_length 9\n max_reply_length 3 }",
            "min_reply_length",
        ),
        (
            "MISC_CHECK { misc_path /bin/true\n connect_ip 192.0.2.5 }",
            "connect_ip",
        ),
        (
            "MISC_CHECK { misc_path /bin/true\n connect_timeout 3 }",
            "connect_timeout",
        ),
        ("MISC_CHECK { misc_timeout 3 }", "misc_path"),
        ("FILE_CHECK { track_file nope }", "track_file"),
        ("DNS_CHECK { name a..b }", "name"),
        ("TCP_CHECK { delay_loop 0 }", "delay_loop"),
        ("TCP_CHECK { connect_timeout 0 }", "connect_timeout"),
        ("TCP_CHECK { bindto 2001:db8::1 }", "bindto"),
        ("PING_CHECK { connect_port 80 }", "connect_port"),
    ];
    for (checker, kw) in cases {
        let e = errors(&vs("", "", checker));
        assert!(
            e.iter().any(|e| e.keyword == *kw && e.span.line == 5),
            "{checker}: {e:#?}"
        );
    }
    // Timing errors point at the level that set the value.
    let e = one_error(&vs("delay_loop 0", "", "TCP_CHECK { }"));
    assert_eq!((e.keyword.as_str(), e.span.line), ("delay_loop", 1));
}

#[test]
fn all_errors_are_reported_at_once() {
    let e = errors(&vs(
        "",
        "",
        "HTTP_GET { url { path / \n digest xyz } }\nDNS_CHECK { name a..b }",
    ));
    assert_eq!(e.len(), 2, "{e:#?}");
    let all = SpecErrors(e).to_string();
    assert_eq!(all.lines().count(), 2);
}

#[test]
fn script_security_applies_to_misc_path() {
    let dir = std::env::temp_dir().join(format!("vipd-check-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let text = format!(
        "global_defs {{ enable_script_security }}\n{}",
        vs(
            "",
            "",
            &format!("MISC_CHECK {{ misc_path {} }}", script.display())
        )
    );
    let e = one_error(&text);
    assert_eq!(e.keyword, "misc_path");
    assert!(e.message.contains("enable_script_security"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `SSL { }` files are read when an SSL_GET exists, and every problem names its keyword
/// and line.
#[test]
fn ssl_block_files() {
    let dir = std::env::temp_dir().join(format!("vipd-spec-ssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("c.pem"), dir.join("c.key"));
    let ck = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let other_key = dir.join("other.key");
    std::fs::write(
        &other_key,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let encrypted = dir.join("enc.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.join("missing.pem");
    let ssl_get = "SSL_GET { url { path / } }";
    let text = |ssl: &str, checker: &str| format!("SSL {{\n{ssl}\n}}\n{}", vs("", "", checker));
    let line2 = |e: &SpecError| (e.keyword.clone(), e.span.line, e.message.clone());

    // Good files: the plan builds.
    let ok = format!("certificate {}\nkey {}", cert.display(), key.display());
    assert_eq!(plan(&text(&ok, ssl_get)).checks.len(), 1);
    // Only `ca`: loaded, and checked.
    plan(&text(&format!("ca {}", cert.display()), ssl_get));
    let e = one_error(&text(&format!("ca {}", key.display()), ssl_get));
    assert_eq!(e.keyword, "ca");
    assert!(e.message.contains("no PEM certificate"), "{e}");

    // Missing certificate file: keyword, line and the OS error.
    let bad = format!("certificate {}\nkey {}", missing.display(), key.display());
    let (kw, line, msg) = line2(&one_error(&text(&bad, ssl_get)));
    assert_eq!((kw.as_str(), line), ("certificate", 2));
    assert!(msg.contains("No such file"), "{msg}");
    // ...but no SSL_GET, no reading.
    assert_eq!(plan(&text(&bad, "TCP_CHECK { }")).checks.len(), 1);

    // An encrypted key is refused with what to do.
    let enc = format!(
        "certificate {}\nkey {}\npassword secret",
        cert.display(),
        encrypted.display()
    );
    let (kw, line, msg) = line2(&one_error(&text(&enc, ssl_get)));
    assert_eq!((kw.as_str(), line), ("key", 3));
    assert!(
        msg.contains("encrypted") && msg.contains("openssl pkey"),
        "{msg}"
    );

    // A key of another certificate.
    let mismatch = format!(
        "certificate {}\nkey {}",
        cert.display(),
        other_key.display()
    );
    let e = one_error(&text(&mismatch, ssl_get));
    assert_eq!(e.keyword, "key");
    assert!(e.message.contains("does not fit"), "{e}");

    // `certificate` alone: its file must hold the key too.
    let e = one_error(&text(&format!("certificate {}", cert.display()), ssl_get));
    assert_eq!(e.keyword, "certificate");
    assert!(
        e.message
            .contains("no private key in it (and no `key` given)"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// keepalived's `regex_options` (PCRE2 names), `regex_min_offset` and
/// `regex_max_offset`.
#[test]
fn regex_options_and_offsets() {
    let url = |extra: &str| {
        let p = plan(&vs(
            "",
            "",
            &format!("HTTP_GET {{ url {{ path /\nregex \"^ok.end\"\n{extra} }} }}"),
        ));
        match &p.checks[0].probe.kind {
            ProbeKind::Http(h) => h.urls()[0].clone(),
            k => panic!("{k:?}"),
        }
    };
    let u = url("");
    let re = u.regex.as_ref().unwrap();
    assert!(re.is_match(b"ok end") && !re.is_match(b"OK end") && !re.is_match(b"ok\nend"));
    assert_eq!(u.regex_limits, RegexLimits::default());

    let u = url(
        "regex_options caseless dotall no_start_optimize\nregex_min_offset 2\nregex_max_offset 40",
    );
    let re = u.regex.as_ref().unwrap();
    assert!(re.is_match(b"OK end") && re.is_match(b"ok\nend"));
    assert_eq!(
        u.regex_limits,
        RegexLimits {
            min_offset: 2,
            max_offset: Some(40),
            first_line: false
        }
    );
    assert!(url("regex_options firstline").regex_limits.first_line);
    // multiline: `^` after any newline.
    assert!(url("regex_options multiline")
        .regex
        .unwrap()
        .is_match(b"x\nok end"));

    let e = one_error(&vs(
        "",
        "",
        "HTTP_GET { url { path /\nregex x\nregex_options caseless alt_bsux } }",
    ));
    assert_eq!(e.keyword, "regex_options");
    assert!(
        e.message.starts_with("`alt_bsux`: a PCRE2 syntax variant"),
        "{e}"
    );
    let e = one_error(&vs(
        "",
        "",
        "HTTP_GET { url { path /\nregex x\nregex_options shouting } }",
    ));
    assert!(e.message.starts_with("`shouting`: unknown option"), "{e}");
    let e = one_error(&vs(
        "",
        "",
        "HTTP_GET { url { path /\nregex_min_offset 3 } }",
    ));
    assert_eq!(e.keyword, "regex_options");
    assert!(e.message.contains("need a `regex`"), "{e}");
}

/// SMTP_CHECK `host { }` blocks: one checker per host, each with its own target, the
/// rest from the SMTP_CHECK; keywords that do not apply in a host are errors.
#[test]
fn smtp_check_hosts() {
    let p = plan(&vs(
        "",
        "",
        "SMTP_CHECK {\n connect_timeout 10\n helo_name foo.example\n connect_port 2525\n\
         host {\n connect_ip 198.51.100.7\n }\n\
         host {\n connect_port 25\n bindto 192.0.2.2\n connect_timeout 4\n }\n}",
    ));
    let got: Vec<(String, Option<std::net::IpAddr>, Duration)> = p
        .checks
        .iter()
        .map(|c| {
            (
                c.probe.target.to_string(),
                c.probe.bind_addr,
                c.probe.timeout,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("198.51.100.7:2525".to_string(), None, 10 * S),
            // No connect_ip: the real server's address.
            (
                "192.0.2.1:25".to_string(),
                Some("192.0.2.2".parse().unwrap()),
                4 * S
            ),
        ]
    );
    assert!(p.checks.iter().all(|c| c.kind == "SMTP_CHECK"));
    assert_eq!(p.checks[1].sched.label, "SMTP_CHECK 192.0.2.1:25");
    let e = one_error(&vs(
        "",
        "",
        "SMTP_CHECK {\n host {\n connect_ip 198.51.100.7\n retry 3\n }\n}",
    ));
    assert_eq!((e.keyword.as_str(), e.span.line), ("retry", 8));
    assert!(e.message.contains("inside `host`"), "{e}");
}

#[test]
fn checker_log_all_failures_is_the_default_of_log_all_failures() {
    let checkers =
        "TCP_CHECK { }\nTCP_CHECK { log_all_failures off }\nTCP_CHECK { log_all_failures }";
    let logs = |global: &str| -> Vec<bool> {
        plan(&format!(
            "global_defs {{\n{global}\n}}\n{}",
            vs("", "", checkers)
        ))
        .checks
        .iter()
        .map(|c| c.log_all_failures)
        .collect()
    };
    assert_eq!(logs(""), [false, false, true]);
    assert_eq!(logs("checker_log_all_failures"), [true, false, true]);
    assert_eq!(logs("checker_log_all_failures off"), [false, false, true]);
}

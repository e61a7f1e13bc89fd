//! End-to-end tests on real files in temporary directories.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vipd_config::{load_file, Auth, Diagnostic, InitialState, LoadOptions, Severity};

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "vipd-config-test-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn opts(id: &str) -> LoadOptions {
    LoadOptions {
        config_id: Some(id.into()),
        check_interfaces: false,
        ..Default::default()
    }
}

fn errors(r: Result<vipd_config::Loaded, Vec<Diagnostic>>) -> Vec<Diagnostic> {
    r.expect_err("expected errors")
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

fn pos(d: &Diagnostic) -> (PathBuf, u32, u32) {
    (d.span.file.to_path_buf(), d.span.line, d.span.col)
}

const MASTER_EXAMPLE: &str = r#"! Configuration File for keepalived

global_defs {
   router_id LVS_DEVEL
   vrrp_garp_interval 0
   vrrp_gna_interval 0
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        192.168.200.16
        192.168.200.17
        192.168.200.18
    }
}

vrrp_instance VI_6 {
    state BACKUP
    interface eth0
    virtual_router_id 52
    priority 90
    advert_int 0.5
    version 3
    virtual_ipaddress {
        2001:db8::10/64 dev eth0
    }
}
"#;

#[test]
fn keepalived_sample_config_loads() {
    let dir = TempDir::new();
    let path = dir.write("keepalived.conf", MASTER_EXAMPLE);
    let loaded = load_file(&path, &opts("any")).expect("valid config");
    // keepalived 2.4.3 `-t`: "vrrp_garp_interval '0' is invalid" (and the same for gna);
    // vipd says so too, and nothing else.
    let lines: Vec<(u32, &str)> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.span.line, d.message.split(' ').nth(2).unwrap_or("")))
        .collect();
    assert_eq!(
        lines,
        [(5, "`vrrp_garp_interval"), (6, "`vrrp_gna_interval")],
        "{:?}",
        loaded.diagnostics
    );
    let c = loaded.config;
    assert_eq!(c.global.router_id.as_deref(), Some("LVS_DEVEL"));
    assert_eq!(c.global.garp.garp_interval, Some(Duration::ZERO));
    assert_eq!(c.instances.len(), 2);
    let v1 = &c.instances[0];
    assert_eq!(v1.state, InitialState::Master);
    assert_eq!(v1.auth, Some(Auth::Pass("1111".into())));
    let addrs: Vec<IpAddr> = v1.virtual_ipaddress.iter().map(|v| v.addr).collect();
    assert_eq!(
        addrs,
        ["192.168.200.16", "192.168.200.17", "192.168.200.18"]
            .map(|a| a.parse::<IpAddr>().unwrap())
            .to_vec()
    );
    assert_eq!(*v1.span.file, *path);
    assert_eq!(v1.span.line, 9);
    let v6 = &c.instances[1];
    assert_eq!(v6.advert_int, Duration::from_millis(500));
    assert_eq!(v6.virtual_ipaddress[0].prefix_len, 64);
}

#[test]
fn missing_file_is_a_file_level_error() {
    let dir = TempDir::new();
    let path = dir.0.join("absent.conf");
    let e = errors(load_file(&path, &opts("x")));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].span.line, 0);
    assert!(e[0].message.starts_with("cannot read configuration file"));
    assert!(e[0]
        .to_string()
        .starts_with(&format!("{}: error: ", path.display())));
}

#[test]
fn includes_resolve_globs_relative_to_the_including_file_in_sorted_order() {
    let dir = TempDir::new();
    let main = dir.write(
        "keepalived.conf",
        "global_defs {\n  router_id main\n}\ninclude conf.d/*.conf\n",
    );
    // Written out of order to show that matches are sorted.
    dir.write(
        "conf.d/20-b.conf",
        "vrrp_instance B {\n  interface eth0\n  virtual_router_id 2\n  include ../vips/b.inc\n}\n",
    );
    dir.write(
        "conf.d/10-a.conf",
        "vrrp_instance A {\n  interface eth0\n  virtual_router_id 1\n  virtual_ipaddress {\n    10.0.0.1/24\n  }\n}\n",
    );
    dir.write("conf.d/ignored.txt", "this is not included\n");
    dir.write("vips/b.inc", "virtual_ipaddress {\n  10.0.0.2/24\n}\n");
    let c = load_file(&main, &opts("x")).expect("valid").config;
    let names: Vec<&str> = c.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    let vip = &c.instances[1].virtual_ipaddress[0];
    assert_eq!(*vip.span.file, *dir.0.join("conf.d/../vips/b.inc"));
    assert_eq!(vip.span.line, 2);
}

#[test]
fn loaded_lists_every_file_read_once_in_reading_order_with_its_text() {
    let dir = TempDir::new();
    let main_text = "global_defs {\n  router_id main\n}\ninclude conf.d/*.conf\n";
    let main = dir.write("keepalived.conf", main_text);
    let a =
        "vrrp_instance A {\n  interface eth0\n  virtual_router_id 1\n  include ../vips.inc\n}\n";
    let b =
        "vrrp_instance B {\n  interface eth0\r\n  virtual_router_id 2\n  include ../vips.inc\n}";
    let vips = "virtual_ipaddress {\n  10.0.0.1/24\n}\n";
    dir.write("conf.d/20-b.conf", b);
    dir.write("conf.d/10-a.conf", a);
    dir.write("vips.inc", vips);
    let loaded = load_file(&main, &opts("x")).expect("valid");
    let files: Vec<(PathBuf, &str)> = loaded
        .files
        .iter()
        .map(|f| (f.path.clone(), f.text.as_str()))
        .collect();
    // vips.inc is included twice but listed once; texts are byte for byte as read.
    assert_eq!(
        files,
        [
            (main.clone(), main_text),
            (dir.0.join("conf.d/10-a.conf"), a),
            (dir.0.join("conf.d/../vips.inc"), vips),
            (dir.0.join("conf.d/20-b.conf"), b),
        ]
    );
}

#[test]
fn include_brace_patterns_and_quoted_names() {
    let dir = TempDir::new();
    let main = dir.write(
        "k.conf",
        "include {one,two}.inc\ninclude \"with space.inc\"\n",
    );
    dir.write("one.inc", "global_defs {\n");
    dir.write("two.inc", "  router_id r2\n");
    dir.write("with space.inc", "}\n");
    let c = load_file(&main, &opts("x")).expect("valid").config;
    assert_eq!(c.global.router_id.as_deref(), Some("r2"));
}

#[test]
fn include_without_match_is_a_warning() {
    let dir = TempDir::new();
    let main = dir.write("k.conf", "# optional snippets\n  include conf.d/*.conf\n");
    let l = load_file(&main, &opts("x")).expect("only a warning");
    assert_eq!(l.diagnostics.len(), 1);
    let w = &l.diagnostics[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(pos(w), (main.clone(), 2, 3));
    assert_eq!(
        w.message,
        "include pattern `conf.d/*.conf` matched no files"
    );
}

/// `include_check` in global_defs makes the includes after it strict; an included file
/// that changes it changes it for itself only (keepalived restores it when the file
/// ends). A brace alternative without a file is an error with `brace_match`.
#[test]
fn include_check_applies_to_later_includes_and_is_restored_after_a_file() {
    let dir = TempDir::new();
    let main = dir.write(
        "k.conf",
        "global_defs {\n  include_check\n}\ninclude lax.inc\ninclude none*.conf\ninclude {lax,gone}.inc\n",
    );
    dir.write(
        "lax.inc",
        "global_defs {\n  include_check -wildcard_match\n}\ninclude other*.conf\n",
    );
    let d = match load_file(&main, &opts("x")) {
        Ok(l) => panic!("loaded: {:?}", l.diagnostics),
        Err(d) => d,
    };
    let got: Vec<(Severity, String)> = d
        .iter()
        .map(|d| (d.severity, format!("{}:{}", pos(d).1, d.message)))
        .collect();
    assert_eq!(
        got,
        [
            (
                Severity::Error,
                "5:include pattern `none*.conf` matched no files (include_check wildcard_match)"
                    .to_string()
            ),
            (
                Severity::Error,
                "6:include alternative `gone.inc` of `{lax,gone}.inc` matched no file (include_check brace_match)"
                    .to_string()
            ),
            // lax.inc is read twice (lines 4 and 6), lax both times.
            (
                Severity::Warning,
                "4:include pattern `other*.conf` matched no files".to_string()
            ),
            (
                Severity::Warning,
                "4:include pattern `other*.conf` matched no files".to_string()
            ),
        ],
        "{got:?}"
    );
}

#[test]
fn include_cycle_is_an_error_with_position() {
    let dir = TempDir::new();
    let main = dir.write("a.conf", "include b.conf\n");
    let b = dir.write("b.conf", "global_defs {\n}\n  include a.conf\n");
    let e = errors(load_file(&main, &opts("x")));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(pos(&e[0]), (b, 3, 3));
    assert!(
        e[0].message.starts_with("include cycle:"),
        "{}",
        e[0].message
    );
    assert!(e[0].help.as_deref().unwrap().contains("a.conf"));
    assert_eq!(e[0].include_chain.len(), 1);
    assert_eq!(e[0].include_chain[0].line, 1);

    // A file including itself.
    let selfref = dir.write("self.conf", "include self.conf\n");
    let e = errors(load_file(&selfref, &opts("x")));
    assert_eq!(pos(&e[0]), (selfref, 1, 1));
}

#[test]
fn errors_in_included_files_carry_the_chain_and_render() {
    let dir = TempDir::new();
    let main = dir.write("keepalived.conf", "! top\ninclude inst/*.conf\n");
    let inner = dir.write(
        "inst/vi1.conf",
        "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 5\n    priorty 100\n    virtual_ipaddress {\n        192.0.2.1\n    }\n}\n",
    );
    let e = errors(load_file(&main, &opts("x")));
    assert_eq!(e.len(), 1);
    let d = &e[0];
    assert_eq!(pos(d), (inner.clone(), 4, 5));
    assert_eq!(d.include_chain.len(), 1);
    assert_eq!(
        (
            d.include_chain[0].file.to_path_buf(),
            d.include_chain[0].line,
            d.include_chain[0].col
        ),
        (main.clone(), 2, 1)
    );
    let expected = format!(
        "{}:4:5: error: unknown keyword `priorty`\n  |\n4 |     priorty 100\n  |     ^^^^^^^\n  = help: did you mean `priority`?\n  = note: included from {}:2:1",
        inner.display(),
        main.display()
    );
    assert_eq!(d.to_string(), expected);
    let j = d.to_json();
    assert_eq!(j["line"], 4);
    assert_eq!(j["include_chain"][0]["line"], 2);
    assert_eq!(j["severity"], "error");
}

#[test]
fn nested_include_chain_is_innermost_first() {
    let dir = TempDir::new();
    let main = dir.write("k.conf", "\n\ninclude a/one.conf\n");
    let one = dir.write("a/one.conf", "include b/two.conf\n");
    let two = dir.write("a/b/two.conf", "bogus_keyword\n");
    let e = errors(load_file(&main, &opts("x")));
    assert_eq!(pos(&e[0]), (two, 1, 1));
    let chain: Vec<_> = e[0]
        .include_chain
        .iter()
        .map(|s| (s.file.to_path_buf(), s.line))
        .collect();
    assert_eq!(chain, vec![(one, 1), (main, 3)]);
}

#[test]
fn conditionals_select_lines_by_config_id() {
    let dir = TempDir::new();
    let path = dir.write(
        "k.conf",
        r#"global_defs {
    @main   router_id main_router
    @backup router_id backup_router
}
@main $PRIORITY=240
@backup $PRIORITY=200
vrrp_instance VRRP {
    interface eth0
    virtual_router_id 3
    priority $PRIORITY
    virtual_ipaddress {
        1.2.3.10
    }
    @main    unicast_src_ip 1.2.3.4
    @backup  unicast_src_ip 1.2.3.5
    unicast_peer {
        @^main    1.2.3.4
        @^backup  1.2.3.5
        @^backup2 1.2.3.6
    }
}
"#,
    );
    let main = load_file(&path, &opts("main")).unwrap().config;
    assert_eq!(main.global.router_id.as_deref(), Some("main_router"));
    let i = &main.instances[0];
    assert_eq!(i.priority, 240);
    assert_eq!(i.unicast_src_ip, Some("1.2.3.4".parse().unwrap()));
    let peers: Vec<String> = i.unicast_peers.iter().map(|p| p.addr.to_string()).collect();
    assert_eq!(peers, ["1.2.3.5", "1.2.3.6"]);

    let backup = load_file(&path, &opts("backup")).unwrap().config;
    assert_eq!(backup.global.router_id.as_deref(), Some("backup_router"));
    assert_eq!(backup.instances[0].priority, 200);

    // Neither id: no router_id, and `priority $PRIORITY` stays unexpanded -> error.
    let e = errors(load_file(&path, &opts("other")));
    assert_eq!(
        e[0].message,
        "`priority` must be an integer in 1..=255, found `$PRIORITY`"
    );
    assert_eq!(pos(&e[0]), (path, 10, 14));
}

#[test]
fn parameters_expand_in_files_including_pwd() {
    let dir = TempDir::new();
    let main = dir.write(
        "k.conf",
        "$IF=eth7\n$BASE=10.1\n$VIP=${BASE}.0.1/24 dev $IF\ninclude ${_PWD}/parts/*.conf\n",
    );
    dir.write(
        "parts/i.conf",
        "vrrp_instance V {\n  interface $IF\n  virtual_router_id 4\n  virtual_ipaddress {\n    $VIP\n    ${BASE}.0.2\n  }\n}\n",
    );
    let c = load_file(&main, &opts("x")).expect("valid").config;
    let i = &c.instances[0];
    assert_eq!(i.interface, "eth7");
    assert_eq!(i.virtual_ipaddress[0].addr.to_string(), "10.1.0.1");
    assert_eq!(i.virtual_ipaddress[0].prefix_len, 24);
    assert_eq!(i.virtual_ipaddress[0].dev.as_deref(), Some("eth7"));
    assert_eq!(i.virtual_ipaddress[1].addr.to_string(), "10.1.0.2");
}

#[test]
fn comments_braces_and_quotes_in_many_layouts() {
    let dir = TempDir::new();
    let path = dir.write(
        "k.conf",
        "# hash comment\n! bang comment\nglobal_defs # trailing\n{\n  router_id \"my router # not a comment\" ! comment\n}\nvrrp_instance VI_1{ # glued brace\n  interface eth0\n  virtual_router_id 1\n  virtual_ipaddress { 192.0.2.1/24 192.0.2.2 }\n  authentication\n  {\n    auth_type PASS\n    auth_pass 'a b'\n  }\n  unicast_peer { 192.0.2.9 }\n  priority 50 }\n",
    );
    let c = load_file(&path, &opts("x")).expect("valid").config;
    assert_eq!(
        c.global.router_id.as_deref(),
        Some("my router # not a comment")
    );
    let i = &c.instances[0];
    assert_eq!(i.virtual_ipaddress.len(), 2);
    assert_eq!(i.auth, Some(Auth::Pass("a b".into())));
    assert_eq!(i.unicast_peers.len(), 1);
    assert_eq!(i.priority, 50);
}

#[test]
fn many_errors_are_reported_in_one_pass() {
    let dir = TempDir::new();
    let path = dir.write(
        "k.conf",
        "global_defs {\n  vrrp_strict\n}\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 300\n  priority 0\n  virtual_ipaddress {\n    192.0.2.1\n  }\n  track_interface {\n    eth1\n  }\n}\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 2\n  virtual_ipaddress {\n    192.0.2.2\n  }\n  auth_typ PASS\n}\n}\n",
    );
    let e = errors(load_file(&path, &opts("x")));
    let got: Vec<(&str, u32, u32)> = e
        .iter()
        .map(|d| (d.message.as_str(), d.span.line, d.span.col))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "`virtual_router_id` must be an integer in 1..=255, found `300`",
                6,
                21
            ),
            ("`priority` must be an integer in 1..=255, found `0`", 7, 12),
            ("duplicate vrrp_instance name `A`", 15, 15),
            ("unknown keyword `auth_typ`", 21, 3),
            ("unmatched `}`", 23, 1),
        ]
    );
    assert_eq!(
        e[3].help.as_deref(),
        Some("did you mean `auth_type`? (it belongs inside an `authentication` block)")
    );
}

#[test]
fn unterminated_quote_and_unclosed_block_positions() {
    let dir = TempDir::new();
    let path = dir.write("k.conf", "global_defs {\n  router_id \"oops\n");
    let e = errors(load_file(&path, &opts("x")));
    let got: Vec<(&str, u32, u32, u32)> = e
        .iter()
        .map(|d| (d.message.as_str(), d.span.line, d.span.col, d.len))
        .collect();
    assert_eq!(
        got,
        vec![
            ("unclosed `{`", 1, 13, 1),
            ("unterminated quoted string (missing closing \")", 2, 13, 5),
        ]
    );
    let rendered = e[0].to_string();
    assert!(
        rendered.contains("1 | global_defs {\n  |             ^\n  = help: add the matching `}`"),
        "{rendered}"
    );
}

#[test]
fn default_options_use_the_host_name_as_config_id() {
    let id = vipd_config::default_config_id();
    assert!(!id.contains('.'));
    let dir = TempDir::new();
    let path = dir.write(
        "k.conf",
        &format!("global_defs {{\n  @{id} router_id mine\n  @^{id} router_id other\n}}\n"),
    );
    let l = load_file(
        &path,
        &LoadOptions {
            check_interfaces: false,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let expected = if id.is_empty() { "other" } else { "mine" };
    assert_eq!(l.config.global.router_id.as_deref(), Some(expected));
    assert!(LoadOptions::default().check_interfaces);
}

#[test]
fn tree_api_exposes_nodes() {
    let (nodes, diags) =
        vipd_config::parse_tree("a 1 2 {\n b\n}\n", Path::new("t.conf"), &opts("x"));
    assert!(diags.is_empty());
    assert_eq!(nodes[0].name(), "a");
    assert_eq!(nodes[0].args.len(), 2);
    assert_eq!(nodes[0].children.as_ref().unwrap()[0].name(), "b");
}

/// The streamed reload fingerprint: blind to where things were written (a comment line
/// above shifts every span), not to what they are; spans serialize again afterwards.
#[test]
fn fingerprint_ignores_spans_not_values() {
    let conf = |head: &str, port: u16| {
        format!(
            "{head}virtual_server 192.0.2.100 80 {{\n    lb_kind NAT\n    real_server 192.0.2.2 {port} {{\n        weight 1\n    }}\n}}\n"
        )
    };
    let load = |text: &str| {
        vipd_config::load_str(text, std::path::Path::new("/f.conf"), &Default::default())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .config
    };
    let fp = |c: &vipd_config::Config| vipd_config::fingerprint_without_spans(&c.virtual_servers);
    let a = load(&conf("", 8080));
    let shifted = load(&conf("# a comment\n\n", 8080));
    let other = load(&conf("", 8081));
    assert_ne!(
        serde_json::to_value(&a.virtual_servers).unwrap(),
        serde_json::to_value(&shifted.virtual_servers).unwrap(),
        "the spans differ"
    );
    assert_eq!(fp(&a), fp(&shifted));
    assert_ne!(fp(&a), fp(&other));
    // The same as comparing without_spans's trees.
    assert_eq!(
        vipd_config::without_spans(&a.virtual_servers),
        vipd_config::without_spans(&shifted.virtual_servers)
    );
    // Spans are serialized again once the fingerprint is taken.
    let json = serde_json::to_string(&a.virtual_servers).unwrap();
    assert!(json.contains("\"line\":3"), "{json}");
}

/// A fuzzing find (config_load, 2026-12-06): parameter expansion turned a 3 kB file into
/// tens of thousands of nested blocks and dropping the tree overflowed the stack. Now
/// nesting past the limit is one error at the block that crosses it, and the file loads
/// to diagnostics like any other broken file — on the test thread's 2 MB stack.
#[test]
fn blocks_nested_by_the_tens_of_thousands_are_an_error_not_a_crash() {
    let dir = TempDir::new();
    let text = "$OPEN=vrrp_instance VI_${N} {\n$CLOSE=}\n\
                ~SEQ(N, 1, 70000) $OPEN\n~SEQ(N, 1, 70000) $CLOSE\n";
    let path = dir.write("keepalived.conf", text);
    let errs = errors(load_file(&path, &opts("deep")));
    let deep: Vec<_> = errs
        .iter()
        .filter(|d| d.message == "blocks nested more than 64 deep")
        .collect();
    assert_eq!(deep.len(), 1, "{errs:#?}");
    assert_eq!(pos(deep[0]), (path.clone(), 3, 19));
}

/// A fuzzing find (config_load, 2026-12-07): a sync group naming thousands of missing
/// instances among thousands of defined ones with long names made "did you mean"
/// compare every missing name with every defined one — minutes for a 2.5 kB file.
/// Suggestions among the file's own names are now bounded per load: every error is
/// still reported, the later ones without a suggestion.
#[test]
fn thousands_of_missing_names_among_thousands_get_errors_and_bounded_suggestions() {
    let dir = TempDir::new();
    let long = "B".repeat(100);
    let text = format!(
        "$VI=vrrp_instance VI_{long}${{N}} {{ \\\n    interface lo \\\n    virtual_router_id 1 \\\n}}\n\
         ~SEQ(N, 1, 3000) $VI\n\
         vrrp_sync_group SG {{\n    group {{\n~SEQ(N, 1, 3000) VI_{long}x${{N}}\n    }}\n}}\n"
    );
    let path = dir.write("keepalived.conf", &text);
    let errs = errors(load_file(&path, &opts("suggest")));
    let missing: Vec<_> = errs
        .iter()
        .filter(|d| d.message.ends_with("which is not defined"))
        .collect();
    assert_eq!(missing.len(), 3000, "{:#?}", &errs[..3]);
    let suggested = missing.iter().filter(|d| d.help.is_some()).count();
    assert!(
        (1..3000).contains(&suggested),
        "{suggested} of 3000 errors suggest a name"
    );
}

/// Among equally close names, "did you mean" offers the first one written, every run.
/// The candidates came from hash sets, whose order changes from process to process: with
/// twenty names one edit away, the same file got a different suggestion almost every
/// run (and, with the bounded suggestions above, some runs none at all).
#[test]
fn equally_close_names_suggest_the_first_written_every_time() {
    let dir = TempDir::new();
    let letters: Vec<char> = ('a'..='t').collect();
    let mut text = String::new();
    for (i, c) in letters.iter().enumerate() {
        text += &format!(
            "vrrp_script chk_{c} {{\n    script \"/bin/true\"\n}}\n\
             vrrp_instance VI_{c} {{\n    interface lo\n    virtual_router_id {}\n    \
             track_script {{\n        chk_{c}\n    }}\n}}\n\
             virtual_server_group G_{c} {{\n    192.0.2.{} 80\n}}\n",
            i + 1,
            i + 1
        );
    }
    text += "vrrp_instance VI_last {\n    interface lo\n    virtual_router_id 99\n    \
             track_script {\n        chk_z\n    }\n}\n\
             vrrp_sync_group SG {\n    group {\n        VI_z\n        VI_last\n    }\n}\n\
             virtual_server group G_z {\n    real_server 192.0.2.100 80 {\n    }\n}\n";
    let path = dir.write("keepalived.conf", &text);
    let errs = errors(load_file(&path, &opts("suggest")));
    let help_of = |message: &str| {
        errs.iter()
            .find(|d| d.message == message)
            .unwrap_or_else(|| panic!("no error `{message}` in {errs:#?}"))
            .help
            .clone()
    };
    assert_eq!(
        help_of("vrrp_sync_group `SG` names vrrp_instance `VI_z`, which is not defined").as_deref(),
        Some("did you mean `VI_a`?")
    );
    assert_eq!(
        help_of("track_script `chk_z` is not defined").as_deref(),
        Some("did you mean `chk_a`?")
    );
    assert_eq!(
        help_of("virtual_server_group `G_z` is not defined").as_deref(),
        Some("did you mean `G_a`?")
    );
}

/// The checks after the mapping point into an instance's lines after its tree is gone:
/// at the right file and include chain also when the line came from a file included
/// inside the instance's block.
#[test]
fn later_checks_point_into_files_included_inside_an_instance() {
    let dir = TempDir::new();
    let main = dir.write(
        "keepalived.conf",
        "vrrp_instance VI_1 {\n    state MASTER\n    include inner.conf\n    interface eth0\n    virtual_router_id 5\n    virtual_ipaddress {\n        192.0.2.1\n    }\n}\n",
    );
    let inner = dir.write("inner.conf", "  nopreempt\n");
    let loaded = load_file(&main, &opts("x")).unwrap_or_else(|e| panic!("{e:#?}"));
    let found: Vec<_> = (loaded.diagnostics.iter())
        .filter(|d| d.message.contains("no effect with state MASTER"))
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", loaded.diagnostics);
    let d = found[0];
    assert_eq!(pos(d), (inner.clone(), 1, 3));
    assert_eq!(d.len, "nopreempt".len() as u32);
    let chain: Vec<_> = (d.include_chain.iter())
        .map(|s| (s.file.to_path_buf(), s.line, s.col))
        .collect();
    assert_eq!(chain, [(main.clone(), 3, 5)]);
    // The same line in the instance's own file: the same finding there.
    fs::write(
        &main,
        fs::read_to_string(&main)
            .unwrap()
            .replace("include inner.conf", "nopreempt"),
    )
    .unwrap();
    let loaded = load_file(&main, &opts("x")).unwrap_or_else(|e| panic!("{e:#?}"));
    let d = (loaded.diagnostics.iter())
        .find(|d| d.message.contains("no effect with state MASTER"))
        .expect("the finding");
    assert_eq!((pos(d), d.include_chain.len()), ((main.clone(), 3, 5), 0));
}

//! The config corpus: valid files load (and keepalived 2.2.7 and 2.4.3 accept them too), broken
//! files produce exactly their golden diagnostics, `--dump` output re-parses to the
//! same model, and the parser never panics.
//!
//! Regenerate golden files with `VIPD_BLESS=1 cargo test -p vipd-config --test corpus`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use vipd_config::{load_file, load_str, Diagnostic, LoadOptions};
use vipd_netns::Version;

fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind)
}

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: Some("corpus".into()),
        check_interfaces: false,
        // Every test here compares the dump.
        keep_tree: true,
    }
}

/// The model without positions, for comparing a config with its dump.
fn model_json(c: &vipd_config::Config) -> serde_json::Value {
    vipd_config::without_spans(c)
}

fn render(diags: &[Diagnostic]) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/");
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string().replace(root, ""));
        out.push_str("\n\n");
    }
    out
}

#[test]
fn valid_corpus_loads_and_dump_round_trips() {
    for f in corpus("valid") {
        let l =
            load_file(&f, &opts()).unwrap_or_else(|e| panic!("{}:\n{}", f.display(), render(&e)));
        assert!(!l.config.instances.is_empty(), "{}", f.display());
        let dump = l.dump().expect("loaded with keep_tree");
        // Next to the file: relative paths in it (`iproute_etc_dir`) mean the same.
        let again = load_str(&dump, &f.with_file_name("dump.conf"), &opts()).unwrap_or_else(|e| {
            panic!(
                "dump of {} does not load:\n{}\n{dump}",
                f.display(),
                render(&e)
            )
        });
        assert_eq!(
            model_json(&l.config),
            model_json(&again.config),
            "{}",
            f.display()
        );
        assert_eq!(again.dump(), Some(dump), "dump is a fixed point");
    }
}

#[test]
fn valid_corpus_covers_every_block_and_checker() {
    let mut text = String::new();
    for f in corpus("valid") {
        text.push_str(&fs::read_to_string(f).unwrap());
    }
    for kw in [
        "global_defs",
        "linkbeat_interfaces",
        "static_ipaddress",
        "static_routes",
        "static_rules",
        "vrrp_script",
        "vrrp_track_file",
        "vrrp_track_process",
        "bfd_instance",
        "vrrp_sync_group",
        "vrrp_instance",
        "track_interface",
        "track_script",
        "track_file",
        "track_process",
        "notify_master",
        "virtual_routes",
        "virtual_rules",
        "virtual_ipaddress_excluded",
        "unicast_peer",
        "garp_master_delay",
        "smtp_alert",
        "virtual_server_group",
        "virtual_server",
        "real_server",
        "sorry_server",
        "HTTP_GET",
        "SSL_GET",
        "TCP_CHECK",
        "UDP_CHECK",
        "DNS_CHECK",
        "SMTP_CHECK",
        "MISC_CHECK",
        "PING_CHECK",
        "FILE_CHECK",
        "nb_get_retry",
        "lb_algo",
        "lvs_sched",
        "~SEQ",
        "~LST",
        "$VI= \\",
        "@corpus",
        "iproute_etc_dir",
        "iproute_usr_dir",
    ] {
        assert!(text.contains(kw), "valid corpus lacks `{kw}`");
    }
}

/// The real-world shapes (`shape-*.conf`: Kubernetes API, OpenStack, haproxy pairs, LVS,
/// cloud EIP, home lab) run unchanged: no inactive keyword, and the only warnings are
/// the ones saying a keyword needs nothing in vipd.
#[test]
fn real_world_shapes_run_unchanged() {
    let shapes: Vec<PathBuf> = corpus("valid")
        .into_iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("shape-")
        })
        .collect();
    assert!(shapes.len() >= 6, "{shapes:?}");
    for f in shapes {
        let l =
            load_file(&f, &opts()).unwrap_or_else(|e| panic!("{}:\n{}", f.display(), render(&e)));
        let other: Vec<&Diagnostic> = l
            .diagnostics
            .iter()
            .filter(|d| d.is_inactive() || !d.message.contains("needs nothing in vipd"))
            .collect();
        assert!(other.is_empty(), "{}:\n{other:#?}", f.display());
    }
}

/// Files vipd loads with warnings, each a condition keepalived 2.4.3's `-t` reports too:
/// exactly their golden diagnostics.
#[test]
fn warning_corpus_matches_golden_diagnostics() {
    let bless = std::env::var_os("VIPD_BLESS").is_some();
    for f in corpus("warnings") {
        let l =
            load_file(&f, &opts()).unwrap_or_else(|e| panic!("{}:\n{}", f.display(), render(&e)));
        assert!(!l.diagnostics.is_empty(), "{}", f.display());
        let got = render(&l.diagnostics);
        let golden = f.with_extension("expected");
        if bless {
            fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {}; run with VIPD_BLESS=1", golden.display()));
        assert_eq!(got, want, "{}", f.display());
    }
}

#[test]
fn invalid_corpus_matches_golden_diagnostics() {
    let bless = std::env::var_os("VIPD_BLESS").is_some();
    for f in corpus("invalid") {
        let diags = match load_file(&f, &opts()) {
            Ok(l) => panic!("{} loaded: {:?}", f.display(), l.diagnostics),
            Err(d) => d,
        };
        let got = render(&diags);
        let golden = f.with_extension("expected");
        if bless {
            fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {}; run with VIPD_BLESS=1", golden.display()));
        assert_eq!(got, want, "{}", f.display());
    }
}

/// keepalived (Debian's 2.2.7 and upstream 2.4.3) is the oracle for "accepted":
/// `keepalived -t` prints nothing for a clean config. (It exits 0, or is killed by its own
/// SIGTERM to the process group when checkers are configured, so the exit code alone is not
/// the criterion.)
#[test]
fn keepalived_accepts_the_valid_corpus() {
    if Command::new("keepalived").arg("-v").output().is_err() {
        eprintln!("skipped: keepalived not installed");
        return;
    }
    keepalived_accepts(Version::V2_2_7, &Version::V2_2_7.binary());
}

/// The same with keepalived 2.4.3, which also warns about rules without a preference, a
/// `track_interface` naming the instance's own interface and tracked interfaces that do
/// not exist (2.2.7 accepts all three silently).
#[test]
fn keepalived_243_accepts_the_valid_corpus() {
    let Some(bin) = Version::V2_4_3.require() else {
        return;
    };
    keepalived_accepts(Version::V2_4_3, &bin);
}

fn keepalived_accepts(version: Version, keepalived: &Path) {
    // The corpus uses eth0; run keepalived against an interface this host has.
    let Some(iface) = vipd_netns::host_interface() else {
        eprintln!("skipped: no non-loopback interface");
        return;
    };
    let tmp = std::env::temp_dir().join(format!(
        "vipd-corpus-{}-{}",
        std::process::id(),
        version.name()
    ));
    // With the iproute2 name files the corpus points at, relative to the files.
    copy_tree(&corpus_dir("valid"), &tmp);
    // `old-*.conf` use spellings keepalived accepts with a deprecation warning;
    // `iproute-names.conf` uses `iproute_etc_dir` / `iproute_usr_dir`, which 2.2.7 does
    // not know (it reads /etc/iproute2 only).
    for f in corpus("valid").into_iter().filter(|f| {
        let name = f.file_name().unwrap().to_string_lossy();
        // `no_virtual_ipaddress` is new in 2.2.8; without it 2.2.7 warns "No VIP specified".
        let only_243 = name == "iproute-names.conf" || name == "shape-cloud-eip.conf";
        !name.starts_with("old-") && (version == Version::V2_4_3 || !only_243)
    }) {
        let text = fs::read_to_string(&f).unwrap().replace("eth0", &iface);
        let p = tmp.join(f.file_name().unwrap());
        fs::write(&p, text).unwrap();
        let (code, findings) = vipd_netns::config_test(keepalived, &p, "corpus");
        assert!(
            findings.is_empty() && matches!(code, Some(0) | Some(143) | None),
            "keepalived {} ({}) -t rejects {} ({:?}):\n{}",
            version.name(),
            keepalived.display(),
            f.display(),
            code,
            findings.join("\n")
        );
    }
    let _ = fs::remove_dir_all(&tmp);
}

/// Copies `from` into `to`, with its subdirectories.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("vrrp_instance".to_string()),
        Just("virtual_server".to_string()),
        Just("real_server".to_string()),
        Just("global_defs".to_string()),
        Just("virtual_ipaddress".to_string()),
        Just("track_script".to_string()),
        Just("include".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"".to_string()),
        Just("$X=".to_string()),
        Just("${X}".to_string()),
        Just("$M(a)=".to_string()),
        Just("$M(1)".to_string()),
        Just("~SEQ(N,1,3)".to_string()),
        Just("~LST({A,B},{1,2})".to_string()),
        Just("@corpus".to_string()),
        Just("@^x".to_string()),
        Just("\\".to_string()),
        Just("#".to_string()),
        "[a-z_]{1,12}",
        "[0-9.:/a-f-]{1,16}",
        any::<String>(),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 0..6).prop_map(|w| w.join(" "))
}

proptest! {
    // A fixed seed keeps CI deterministic; soak with PROPTEST_CASES=N (and change the
    // seed here) to explore further.
    #![proptest_config(ProptestConfig {
        cases: 300,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7669_7064),
        ..ProptestConfig::default()
    })]

    #[test]
    fn parser_never_panics(lines in prop::collection::vec(line(), 0..30)) {
        let text = lines.join("\n");
        let _ = load_str(&text, Path::new("/nonexistent/p.conf"), &opts());
    }

    #[test]
    fn dump_re_parses_to_the_same_model(
        vrid in 1u8..=255,
        prio in 1u8..=254,
        vips in prop::collection::vec((1u8..=254, 8u8..=32), 1..4),
        name in "[A-Za-z_][A-Za-z0-9_ #!{}\"'$]{0,10}",
        script in "[ -~]{1,20}",
        weight in -253i64..=253,
    ) {
        let vip_lines: String = vips.iter().map(|(h, m)| format!("        192.0.2.{h}/{m}\n")).collect();
        let text = format!(
            "vrrp_script s {{\n    script {}\n    weight {weight}\n}}\nvrrp_instance {} {{\n    interface eth0\n    virtual_router_id {vrid}\n    priority {prio}\n    virtual_ipaddress {{\n{vip_lines}    }}\n    track_script {{\n        s\n    }}\n    notify_master {}\n}}\n",
            vipd_config::dump::dump_word(&script),
            vipd_config::dump::dump_word(&name),
            vipd_config::dump::dump_word(&script),
        );
        if let Ok(l) = load_str(&text, Path::new("p.conf"), &opts()) {
            let dump = l.dump().expect("loaded with keep_tree");
            let again = load_str(&dump, Path::new("d.conf"), &opts());
            prop_assert!(again.is_ok(), "{dump}");
            prop_assert_eq!(model_json(&l.config), model_json(&again.unwrap().config));
        }
    }
}

//! Issue 12's yardstick: a configuration using every keyword of keepalived 2.4.3's
//! keepalived.conf(5) (tests/every-keyword/) loads, and no keyword is "parsed but not
//! active yet" any more. keepalived 2.4.3 is the
//! oracle that the file means what keepalived means: `keepalived -t` accepts it but for the
//! findings listed in `KEEPALIVED_FINDINGS`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use vipd_config::{load_file, LoadOptions};
use vipd_netns::Version;

/// What keepalived 2.4.3 (built without SNMP and DBus, with nftables) says about main.conf:
/// each a substring of one line it prints; every line must match one of them.
const KEEPALIVED_FINDINGS: &[&str] = &[
    // Not in this build.
    "Unknown keyword 'snmp_",
    "Unknown keyword 'enable_snmp_",
    "Unknown keyword 'enable_traps'",
    "Unknown keyword 'enable_dbus'",
    "Unknown keyword 'dbus_",
    // nftables build: vrrp_iptables is mapped to nftables, vrrp_ipsets unknown.
    "iptables not supported, using nftables instead",
    "Unknown keyword 'vrrp_ipsets'",
    // Documented in the 2.4.3 man page under these names, unknown to its parser (which
    // reads state_dump_file / stats_dump_file / json_dump_file; FILE_CHECK has no
    // `dynamic`). vipd accepts both spellings.
    "Unknown keyword 'state_file_location'",
    "Unknown keyword 'stats_file_location'",
    "Unknown keyword 'json_file_location'",
    "Unknown keyword 'dynamic'",
    "global_tracking is deprecated",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/every-keyword")
}

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: Some("every-keyword".into()),
        check_interfaces: false,
        ..Default::default()
    }
}

/// The keyword list taken from the man page.
fn man_keywords() -> Vec<String> {
    fs::read_to_string(dir().join("keywords-2.4.3.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect()
}

/// Every word of every .conf file of the directory (comments included: a keyword only
/// named in a comment would not count, so comments are dropped first).
fn words_used() -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for e in fs::read_dir(dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "conf") {
            continue;
        }
        for line in fs::read_to_string(&p).unwrap().lines() {
            let code = line.split(['#', '!']).next().unwrap_or("");
            words.extend(code.split_whitespace().map(str::to_string));
        }
    }
    words
}

#[test]
fn the_files_use_every_keyword_of_the_man_page() {
    let keywords = man_keywords();
    assert!(keywords.len() > 300, "{} keywords", keywords.len());
    let used = words_used();
    let missing: Vec<&String> = keywords.iter().filter(|k| !used.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "not used in tests/every-keyword: {missing:?}"
    );
}

/// The keyword a "parsed but not active yet" warning is about: the first `name` in
/// backquotes.
fn subject(message: &str) -> &str {
    message.split('`').nth(1).unwrap_or(message)
}

#[test]
fn every_keyword_is_active() {
    let mut inactive = BTreeSet::new();
    for f in ["main.conf", "netns.conf"] {
        let loaded = load_file(&dir().join(f), &opts()).unwrap_or_else(|e| {
            panic!(
                "{f} does not load:\n{}",
                e.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        inactive.extend(loaded.inactive().map(|d| subject(&d.message).to_string()));
    }
    // SNMP's server statistics intervals were the last inactive ones.
    assert!(inactive.is_empty(), "inactive: {inactive:?}");
}

#[test]
fn keepalived_243_accepts_it() {
    let Some(bin) = Version::V2_4_3.require() else {
        return;
    };
    // Run it on a copy naming an interface this host has instead of eth0.
    let iface = vipd_netns::host_interface().expect("a non-loopback interface");
    let tmp = std::env::temp_dir().join(format!("vipd-every-kw-{}", std::process::id()));
    fs::create_dir_all(&tmp).unwrap();
    for e in fs::read_dir(dir()).unwrap() {
        let p = e.unwrap().path();
        let text = fs::read_to_string(&p).unwrap().replace("eth0", &iface);
        fs::write(tmp.join(p.file_name().unwrap()), text).unwrap();
    }
    for f in ["main.conf", "netns.conf"] {
        let (code, findings) = vipd_netns::config_test(&bin, &tmp.join(f), "every-kw");
        let unexpected: Vec<&String> = findings
            .iter()
            .filter(|l| !KEEPALIVED_FINDINGS.iter().any(|f| l.contains(f)))
            .collect();
        // Exit 5 is keepalived's "configuration had errors": the unknown keywords above.
        assert!(
            unexpected.is_empty() && matches!(code, Some(0 | 5 | 143) | None),
            "keepalived 2.4.3 -t on {f} ({code:?}):\n{unexpected:#?}"
        );
        if f == "main.conf" {
            // The allowances are all used: a finding that disappears (a keyword keepalived
            // learnt, or a line dropped from the file) is noticed.
            for want in KEEPALIVED_FINDINGS {
                assert!(
                    findings.iter().any(|l| l.contains(want)),
                    "keepalived no longer says {want:?}:\n{findings:#?}"
                );
            }
        }
    }
    let _ = fs::remove_dir_all(&tmp);
}

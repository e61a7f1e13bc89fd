//! The Grafana dashboard (packaging/examples/grafana/vipd-dashboard.json) queries only
//! what vipd exports: every `vipd_*` name in its PromQL (panels and template variables)
//! is a sample in a real vipd's `/metrics`, and every label the queries select on, group
//! by or show in a legend is on that metric.
//!
//! Labels are checked as Prometheus stores them under the default `honor_labels: false`:
//! `instance` and `job` are the scrape target's, and vipd's own `instance` label (the
//! vrrp_instance name) arrives as `exported_instance`.

mod common;

use common::{Cluster, Spec};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Labels Prometheus sets from the scrape target.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/examples/grafana/vipd-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str,
    Punct(char),
    Number,
}

/// PromQL tokens: identifiers (metric, label, function and keyword names), string
/// literals (skipped: they hold `$variables` and regexes), numbers and durations, and
/// single punctuation characters.
fn tokens(expr: &str) -> Vec<Tok> {
    let c: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '"' || ch == '\'' || ch == '`' {
            i += 1;
            while i < c.len() && c[i] != ch {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Tok::Str);
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch.is_ascii_digit() || ch == '.' {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
            out.push(Tok::Number);
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// What one PromQL expression asks of vipd's metrics.
#[derive(Debug, Default, PartialEq)]
struct Query {
    /// Each `vipd_*` metric with the labels its selector matches on.
    metrics: Vec<(String, BTreeSet<String>)>,
    /// Labels in `by`/`without`/`on`/`ignoring`/`group_*` lists and `label_values`'
    /// label: they must be on every metric of the expression.
    grouping: BTreeSet<String>,
}

fn query(expr: &str) -> Query {
    let t = tokens(expr);
    let ident = |k: usize| match t.get(k) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let mut q = Query::default();
    let mut k = 0;
    while k < t.len() {
        match ident(k) {
            Some(name) if name.starts_with("vipd_") => {
                let mut matchers = BTreeSet::new();
                k += 1;
                if t.get(k) == Some(&Tok::Punct('{')) {
                    while k < t.len() && t[k] != Tok::Punct('}') {
                        if let (Some(label), Some(Tok::Punct('=' | '!'))) = (ident(k), t.get(k + 1))
                        {
                            matchers.insert(label.to_string());
                        }
                        k += 1;
                    }
                }
                q.metrics.push((name.to_string(), matchers));
            }
            Some("by" | "without" | "on" | "ignoring" | "group_left" | "group_right")
                if t.get(k + 1) == Some(&Tok::Punct('(')) =>
            {
                k += 2;
                while k < t.len() && t[k] != Tok::Punct(')') {
                    if let Some(label) = ident(k) {
                        q.grouping.insert(label.to_string());
                    }
                    k += 1;
                }
            }
            Some("label_values") => {
                // label_values(METRIC{...}, LABEL): the label after the top-level comma.
                let mut depth = 0;
                k += 1;
                while k < t.len() {
                    match &t[k] {
                        Tok::Punct('(' | '{') => depth += 1,
                        Tok::Punct(')' | '}') => depth -= 1,
                        Tok::Punct(',') if depth == 1 => {
                            if let Some(label) = ident(k + 1) {
                                q.grouping.insert(label.to_string());
                            }
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    k += 1;
                }
                // Read the metric inside again as a selector.
                let inner =
                    query(&expr[expr.find("label_values(").unwrap() + "label_values(".len()..]);
                q.metrics.extend(inner.metrics);
                return q;
            }
            _ => k += 1,
        }
    }
    q
}

/// `{{label}}` references in a legend format.
fn legend_labels(format: &str) -> BTreeSet<String> {
    format
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split("}}").next())
        .map(|s| s.trim().to_string())
        .collect()
}

/// Every PromQL expression of the dashboard with the labels its legend shows: the panels'
/// targets and the query variables.
fn expressions(dash: &Value) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has a PromQL expr");
            let legend = legend_labels(t["legendFormat"].as_str().unwrap_or(""));
            out.push((expr.to_string(), legend));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap();
            out.push((q.to_string(), BTreeSet::new()));
        }
    }
    out
}

/// Sample name → the label names seen on its samples, from Prometheus/OpenMetrics text.
/// Histogram and summary series are their `_bucket` / `_sum` / `_count` samples, so a
/// query of those names is found as the sample it reads.
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let set = &line[name_end + 1..line.rfind('}').unwrap()];
            for t in tokens(set).windows(2) {
                if let [Tok::Ident(l), Tok::Punct('=')] = t {
                    labels.insert(l.clone());
                }
            }
        }
    }
    out
}

/// Whether `label` (as Prometheus stores it) is on a vipd sample with `labels`.
fn has_label(labels: &BTreeSet<String>, label: &str) -> bool {
    if TARGET_LABELS.contains(&label) {
        return true;
    }
    match label.strip_prefix("exported_") {
        Some(own) if TARGET_LABELS.contains(&own) => labels.contains(own),
        _ => labels.contains(label),
    }
}

/// Everything wrong with the dashboard's queries against one scrape.
fn problems(dash: &Value, scrape: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (expr, legend) in expressions(dash) {
        let q = query(&expr);
        if q.metrics.is_empty() {
            bad.push(format!("no vipd metric in `{expr}`"));
        }
        for (name, matchers) in &q.metrics {
            let Some(labels) = scrape.get(name) else {
                bad.push(format!("`{name}` is not in vipd's exposition (`{expr}`)"));
                continue;
            };
            for l in matchers.iter().chain(&q.grouping).chain(&legend) {
                if !has_label(labels, l) {
                    bad.push(format!(
                        "`{name}` has no label `{l}` (has {labels:?}; `{expr}`)"
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn tokenizer_reads_metrics_matchers_and_groupings() {
    let q = query(
        r#"sum by (instance, reason) (rate(vipd_adverts_dropped_total{exported_instance=~"$x", reason!="a{b}"}[$__rate_interval])) * on(vrid) group_left(state) vipd_instance_state"#,
    );
    assert_eq!(
        q.metrics,
        vec![
            (
                "vipd_adverts_dropped_total".to_string(),
                ["exported_instance", "reason"].map(String::from).into()
            ),
            ("vipd_instance_state".to_string(), BTreeSet::new()),
        ]
    );
    assert_eq!(
        q.grouping,
        ["instance", "reason", "vrid", "state"]
            .map(String::from)
            .into()
    );
    let q = query(r#"label_values(vipd_instance_state{instance=~"$host"}, exported_instance)"#);
    assert_eq!(q.metrics.len(), 1);
    assert_eq!(q.grouping, ["exported_instance".to_string()].into());
    assert_eq!(
        legend_labels("{{instance}} {{ reason }}"),
        ["instance", "reason"].map(String::from).into()
    );
    let scrape = exposition(
        "# TYPE vipd_x counter\nvipd_x_total{instance=\"VI_1\",reason=\"a,b=c\"} 1\nvipd_h_bucket{le=\"1\"} 0\n# EOF\n",
    );
    assert_eq!(
        scrape["vipd_x_total"],
        ["instance", "reason"].map(String::from).into()
    );
    assert!(scrape.contains_key("vipd_h_bucket"));
    assert!(has_label(&scrape["vipd_x_total"], "exported_instance"));
    assert!(has_label(&scrape["vipd_x_total"], "job"));
    assert!(!has_label(&scrape["vipd_x_total"], "vrid"));
}

/// The dashboard is Grafana's JSON model with a Prometheus data source variable that
/// every panel and target uses, and panels for what operators watch.
#[test]
fn dashboard_is_a_grafana_model_on_a_datasource_variable() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().unwrap() >= 36,
        "Grafana 9/10+ schema"
    );
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["type"] == "datasource").unwrap();
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    for want in ["host", "vrrp_instance", "virtual_server"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id {}",
            p["id"]
        );
        if p["type"] == "row" {
            continue;
        }
        titles.push(p["title"].as_str().unwrap().to_string());
        assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], ds_ref.as_str(), "{}", p["title"]);
            let expr = t["expr"].as_str().unwrap();
            // A variable used in a query is one the dashboard defines.
            for part in expr.split('$').skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || names.contains(&name.as_str()),
                    "`${name}` in `{expr}`"
                );
            }
        }
    }
    for want in [
        "State per instance",
        "State transitions",
        "Adverts dropped by reason",
        "Advert timing",
        "Real server health",
        "Socket errors",
        "Send / socket faults",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(want)),
            "no `{want}` panel: {titles:?}"
        );
    }
}

fn scrape(c: &Cluster, addr: &'static str) -> String {
    c.lan
        .router(1)
        .run(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap()
}

/// A real vipd with a VRRP instance and a virtual server, made to count what the sparse
/// series need (drops by reason, packets for a VRID it has no instance for, advert send
/// errors): then every query of the dashboard finds its metric and labels.
#[test]
fn every_metric_and_label_the_dashboard_queries_is_exported() {
    let Some(mut c) = Cluster::new(2, "dashboard") else {
        return;
    };
    const METRICS: &str = "127.0.0.1:9652";
    let spec = Spec::v2();
    let vs = "virtual_server 192.0.2.100 7 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    \
              real_server 192.0.2.12 7 {\n        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n}\n";
    c.start_vipd_with(
        1,
        &format!("{}{vs}", spec.config(200)),
        &["--metrics", METRICS, "--lb-backend", "nftables"],
    );
    // Router 2: VI_1 with another advert_int (VRRPv2 drops it: interval_mismatch on
    // router 1) and an instance with a VRID router 1 has none for (unknown_vrid).
    let other = Spec {
        advert_int: "2",
        ..Spec::v2()
    }
    .config(100);
    let vi2 = "vrrp_instance VI_2 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 52\n    \
               priority 100\n    advert_int 1\n    version 2\n    virtual_ipaddress {\n        192.0.2.101/24\n    }\n}\n";
    c.start_vipd(2, &format!("{other}{vi2}"));
    // Neither hears the other: both become MASTER.
    c.wait_holders(spec.vip(), &[1, 2], spec.takeover_timeout() * 2);
    // Router 1's adverts cannot leave: advert_send EPERM in io_errors, then FAULT.
    let r1 = c.lan.router(1);
    r1.exec(&["nft", "add", "table", "inet", "vipd_test"])
        .unwrap();
    r1.exec(&[
        "nft",
        "add chain inet vipd_test out { type filter hook output priority 0 ; }",
    ])
    .unwrap();
    r1.exec(&["nft", "add rule inet vipd_test out meta l4proto 112 drop"])
        .unwrap();

    let dash = dashboard();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (text, bad) = loop {
        let text = scrape(&c, METRICS);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        let bad = problems(&dash, &exposition(text.split("\r\n\r\n").nth(1).unwrap()));
        if bad.is_empty() || Instant::now() > deadline {
            break (text, bad);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(bad.is_empty(), "{}\n\nscrape:\n{text}", bad.join("\n"));
    // The scenario did what the sparse series need (so the check above saw them).
    for want in [
        "reason=\"interval_mismatch\"",
        "vipd_socket_dropped_total{reason=\"unknown_vrid\"}",
        "vipd_io_errors_total{op=\"advert_send\",reason=\"EPERM\"}",
        "real_server=\"192.0.2.12:7\"",
    ] {
        assert!(text.contains(want), "missing `{want}`:\n{text}");
    }
    // And the check can fail: a metric or label vipd does not export is reported.
    let mut wrong = dash.clone();
    wrong["panels"][1]["targets"][0]["expr"] =
        Value::from("sum by (vrrp_name) (vipd_instance_state) + vipd_advert_jitter_seconds");
    let scraped = exposition(text.split("\r\n\r\n").nth(1).unwrap());
    let bad = problems(&wrong, &scraped).join("\n");
    assert!(bad.contains("no label `vrrp_name`"), "{bad}");
    assert!(
        bad.contains("`vipd_advert_jitter_seconds` is not in"),
        "{bad}"
    );
}

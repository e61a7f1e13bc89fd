//! `vipd check-config`.

use clap::Args;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vipd_config::{Diagnostic, LoadOptions, Loaded, Severity};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The keepalived.conf to check. Repeat it to check a cluster, one file per node:
    /// each is checked, then the nodes' priorities and tracking weights are compared
    /// (cross-node lint).
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = crate::DEFAULT_CONFIG)]
    pub file: Vec<PathBuf>,
    /// Machine-readable diagnostics and a summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Selects `@ID` conditional lines (default: short host name). Repeat it to load
    /// the file once per id, each id being one node of a cluster, and compare the nodes
    /// (cross-node lint).
    #[arg(long = "config-id", value_name = "ID")]
    pub config_id: Vec<String>,
    /// Print the fully expanded, normalised configuration (includes, conditionals,
    /// parameters and sequences resolved) on stdout.
    #[arg(long)]
    pub dump: bool,
    /// Accept features that are parsed but not active yet, as `vipd run
    /// --ignore-inactive` does; without it they fail the check, since `vipd run` would
    /// refuse to start with them.
    #[arg(long)]
    pub ignore_inactive: bool,
}

fn summary(loaded: &Loaded) -> serde_json::Value {
    let c = &loaded.config;
    serde_json::json!({
        "instances": c.instances.iter().map(|i| serde_json::json!({
            "name": i.name,
            "state": i.state,
            "interface": i.interface,
            "virtual_router_id": i.virtual_router_id,
            "priority": i.priority,
            "vips": i.virtual_ipaddress.iter().map(|v| format!("{}/{}", v.addr, v.prefix_len)).collect::<Vec<_>>(),
            "track_scripts": i.track.scripts.iter().map(|t| &t.name).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "sync_groups": c.sync_groups.iter().map(|g| serde_json::json!({
            "name": g.name, "group": g.group,
        })).collect::<Vec<_>>(),
        "scripts": c.scripts.iter().map(|s| &s.name).collect::<Vec<_>>(),
        "virtual_servers": c.virtual_servers.iter().map(|v| serde_json::json!({
            "key": v.key,
            "protocol": v.protocol,
            "lb_algo": v.lb_algo,
            "lb_kind": v.lb_kind,
            "real_servers": v.real_servers.iter().map(|r| serde_json::json!({
                "addr": r.addr, "port": r.port, "weight": r.weight,
                "checkers": r.checkers.iter().map(|k| &k.kind).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "inactive": loaded.inactive().count(),
    })
}

fn counts(diags: &[Diagnostic]) -> (usize, usize) {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (errors, diags.len() - errors)
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let files = if args.file.is_empty() {
        vec![PathBuf::from(crate::DEFAULT_CONFIG)]
    } else {
        args.file.clone()
    };
    if files.len() == 1 && args.config_id.len() <= 1 {
        return run_one(&files[0], args.config_id.first().cloned(), &args);
    }
    run_cluster(&files, &args)
}

/// One file, one node: the plain check.
fn run_one(file: &Path, config_id: Option<String>, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        config_id: config_id.clone(),
        check_interfaces: true,
        // The JSON dump comes from a second load (below, once the file is valid).
        keep_tree: args.dump && !args.json,
    };
    let mut refused_inactive = 0;
    let (diags, summary, ok) = match vipd_config::load_file(file, &opts) {
        Ok(mut loaded) => {
            // `vipd run` refuses inactive features unless told: so does the check.
            if !args.ignore_inactive {
                refused_inactive = loaded.inactive().count();
            }
            // Only the JSON output shows the summary.
            let summary = if args.json {
                summary(&loaded)
            } else {
                serde_json::Value::Null
            };
            if let Some(dump) = loaded.dump() {
                print!("{dump}");
            }
            // The tree is only for the dump (done): freed before the plan is built, so
            // the plan's memory does not come on top of it (a large file's tree is ten
            // megabytes and more).
            drop(loaded.tree.take());
            let mut diags = std::mem::take(&mut loaded.diagnostics);
            // What `vipd run` would refuse after loading: the same plan it builds.
            let plan = crate::plan::build(file, &loaded.config);
            let ok = plan.is_ok() && refused_inactive == 0;
            diags.extend(plan.err().unwrap_or_default());
            // The process ends right after the report: freeing the tree and the model
            // (hundreds of thousands of allocations for a large file) is wasted work.
            std::mem::forget(loaded);
            (diags, summary, ok)
        }
        Err(diags) => (diags, serde_json::Value::Null, false),
    };
    if args.json {
        let mut out = serde_json::json!({
            "valid": ok,
            "refused_inactive": refused_inactive,
            "diagnostics": diags.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            "summary": summary,
        });
        if args.dump && ok {
            let opts = LoadOptions {
                config_id,
                check_interfaces: false,
                keep_tree: true,
            };
            if let Some(dump) = vipd_config::load_file(file, &opts)
                .ok()
                .and_then(|l| l.dump())
            {
                out["dump"] = serde_json::Value::String(dump);
            }
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        // One buffered stream (stderr is unbuffered: a write per piece of each message).
        let mut err = std::io::BufWriter::with_capacity(1 << 16, std::io::stderr().lock());
        for d in &diags {
            writeln!(err, "{d}")?;
        }
        err.flush()?;
        drop(err);
        let (errors, warnings) = counts(&diags);
        if refused_inactive > 0 {
            eprintln!(
                "{}: `vipd run` refuses to start with the {refused_inactive} feature(s) above that are \
                 parsed but not active yet (pass --ignore-inactive to both to run without them)",
                file.display()
            );
        }
        if ok {
            eprintln!(
                "{}: configuration is valid ({warnings} warning(s))",
                file.display()
            );
        } else {
            eprintln!(
                "{}: {errors} error(s), {warnings} warning(s)",
                file.display()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One node of a cluster check: a file loaded with one config id.
struct NodeResult {
    label: String,
    file: PathBuf,
    config_id: Option<String>,
    result: Result<Loaded, Vec<Diagnostic>>,
}

/// How a node is named in messages: the file's stem (`node1` for `node1.conf`), or
/// the path when stems collide; `@ID` for config ids; `STEM@ID` for both.
fn labels(files: &[PathBuf], ids: &[Option<String>]) -> Vec<String> {
    let stem = |f: &PathBuf| {
        f.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| f.display().to_string())
    };
    let stems: Vec<String> = files.iter().map(stem).collect();
    let unique = (1..stems.len()).all(|i| !stems[..i].contains(&stems[i]));
    let mut out = Vec::new();
    for (f, s) in files.iter().zip(&stems) {
        let file = if unique {
            s.clone()
        } else {
            f.display().to_string()
        };
        for id in ids {
            out.push(match (id, files.len() > 1) {
                (Some(id), true) if ids.len() > 1 => format!("{file}@{id}"),
                (Some(id), false) => format!("@{id}"),
                _ => file.clone(),
            });
        }
    }
    out
}

/// Several files (one per node) and/or several config ids (one per node): check each
/// node, then compare them with the cross-node lint. Interfaces and scripts are not
/// looked up on this host, since the files describe other hosts too.
fn run_cluster(files: &[PathBuf], args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let ids: Vec<Option<String>> = if args.config_id.is_empty() {
        vec![None]
    } else {
        args.config_id.iter().cloned().map(Some).collect()
    };
    let mut names = labels(files, &ids).into_iter();
    let mut nodes = Vec::new();
    for file in files {
        for id in &ids {
            let opts = LoadOptions {
                config_id: id.clone(),
                check_interfaces: false,
                keep_tree: args.dump,
            };
            nodes.push(NodeResult {
                label: names.next().unwrap_or_default(),
                file: file.clone(),
                config_id: id.clone(),
                result: vipd_config::load_file(file, &opts),
            });
        }
    }

    // Each node's own findings, once (a file loaded per id repeats its shared lines).
    let mut diags: Vec<Diagnostic> = Vec::new();
    for n in &nodes {
        let list = match &n.result {
            Ok(l) => &l.diagnostics,
            Err(d) => d,
        };
        for d in list {
            if !diags.contains(d) {
                diags.push(d.clone());
            }
        }
    }
    let loaded: Vec<(&str, &vipd_config::Config)> = nodes
        .iter()
        .filter_map(|n| {
            n.result
                .as_ref()
                .ok()
                .map(|l| (n.label.as_str(), &l.config))
        })
        .collect();
    let mut cross = vipd_config::cross_node(&loaded);
    crate::plan::attach_snippets(&mut cross);
    let compared = loaded.len();
    diags.extend(cross.iter().cloned());
    let ok = nodes.iter().all(|n| n.result.is_ok());

    if args.json {
        let out = serde_json::json!({
            "valid": ok,
            "diagnostics": diags.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            "nodes": nodes.iter().map(|n| {
                let mut v = serde_json::json!({
                    "label": n.label,
                    "file": n.file,
                    "config_id": n.config_id,
                    "valid": n.result.is_ok(),
                    "summary": n.result.as_ref().map(summary).unwrap_or(serde_json::Value::Null),
                });
                if let Some(dump) = n.result.as_ref().ok().and_then(|l| l.dump()) {
                    v["dump"] = serde_json::Value::String(dump);
                }
                v
            }).collect::<Vec<_>>(),
            "cross_node": cross.len(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if args.dump {
            for n in &nodes {
                if let Some(dump) = n.result.as_ref().ok().and_then(|l| l.dump()) {
                    println!("# node {}", n.label);
                    print!("{dump}");
                }
            }
        }
        for d in &diags {
            eprintln!("{d}");
        }
        for n in &nodes {
            let what = match &n.config_id {
                Some(id) => format!("{} (config id {id})", n.file.display()),
                None => n.file.display().to_string(),
            };
            match &n.result {
                Ok(l) => {
                    let (_, warnings) = counts(&l.diagnostics);
                    eprintln!("{what}: configuration is valid ({warnings} warning(s))");
                }
                Err(d) => {
                    let (errors, warnings) = counts(d);
                    eprintln!("{what}: {errors} error(s), {warnings} warning(s)");
                }
            }
        }
        if compared >= 2 {
            eprintln!(
                "cross-node check of {compared} nodes ({}): {} warning(s)",
                loaded
                    .iter()
                    .map(|(l, _)| *l)
                    .collect::<Vec<_>>()
                    .join(", "),
                cross.len()
            );
        } else {
            eprintln!("cross-node check skipped: fewer than two nodes loaded");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

//! `vipd check-config`.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use vipd_config::{LoadOptions, Severity};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The keepalived.conf to check.
    #[arg(short = 'f', long = "file", default_value = crate::DEFAULT_CONFIG)]
    pub file: PathBuf,
    /// Machine-readable diagnostics and a summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Selects `@ID` conditional lines (default: short host name).
    #[arg(long = "config-id")]
    pub config_id: Option<String>,
    /// Print the fully expanded, normalised configuration (includes, conditionals,
    /// parameters and sequences resolved) on stdout.
    #[arg(long)]
    pub dump: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        config_id: args.config_id.clone(),
        check_interfaces: true,
    };
    let (diags, summary, ok) = match vipd_config::load_file(&args.file, &opts) {
        Ok(loaded) => {
            let c = &loaded.config;
            let summary = serde_json::json!({
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
            });
            if args.dump && !args.json {
                print!("{}", loaded.dump());
            }
            (loaded.diagnostics, summary, true)
        }
        Err(diags) => (diags, serde_json::Value::Null, false),
    };
    if args.json {
        let mut out = serde_json::json!({
            "valid": ok,
            "diagnostics": diags.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            "summary": summary,
        });
        if args.dump && ok {
            let opts = LoadOptions {
                config_id: args.config_id.clone(),
                check_interfaces: false,
            };
            if let Ok(l) = vipd_config::load_file(&args.file, &opts) {
                out["dump"] = serde_json::Value::String(l.dump());
            }
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for d in &diags {
            eprintln!("{d}");
        }
        let errors = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let warnings = diags.len() - errors;
        if ok {
            eprintln!(
                "{}: configuration is valid ({warnings} warning(s))",
                args.file.display()
            );
        } else {
            eprintln!(
                "{}: {errors} error(s), {warnings} warning(s)",
                args.file.display()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

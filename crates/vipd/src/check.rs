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
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        config_id: args.config_id.clone(),
        check_interfaces: true,
    };
    let (diags, summary, ok) = match vipd_config::load_file(&args.file, &opts) {
        Ok(loaded) => {
            let summary = serde_json::json!({
                "instances": loaded.config.instances.iter().map(|i| serde_json::json!({
                    "name": i.name,
                    "interface": i.interface,
                    "virtual_router_id": i.virtual_router_id,
                    "priority": i.priority,
                    "vips": i.virtual_ipaddress.iter().map(|v| format!("{}/{}", v.addr, v.prefix_len)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            });
            (loaded.diagnostics, summary, true)
        }
        Err(diags) => (diags, serde_json::Value::Null, false),
    };
    if args.json {
        let out = serde_json::json!({
            "valid": ok,
            "diagnostics": diags.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            "summary": summary,
        });
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

//! `vipd run` and `vipd status`.

use crate::pidfile::PidFile;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use tracing::{error, info, warn};
use vipd_config::{LoadOptions, Severity};
use vipd_linux::addresses::AddrNotice;
use vipd_linux::control::{query_status, ControlServer};
use vipd_linux::runtime::{Notice, Runtime};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// keepalived.conf to run.
    #[arg(short = 'f', long = "file", default_value = crate::DEFAULT_CONFIG)]
    pub file: PathBuf,
    #[arg(long = "control-socket", default_value = crate::DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
    #[arg(long = "pid-file", default_value = crate::DEFAULT_PID_FILE)]
    pub pid_file: PathBuf,
    /// Selects `@ID` conditional lines (default: short host name).
    #[arg(long = "config-id")]
    pub config_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long = "control-socket", default_value = crate::DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIPD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    init_logging();
    let opts = LoadOptions {
        config_id: args.config_id.clone(),
        check_interfaces: true,
    };
    let loaded = match vipd_config::load_file(&args.file, &opts) {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            let n = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            error!("{}: {n} error(s); not starting", args.file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let plan = vipd_linux::plan::build(&loaded.config)?;
    let _pid = PidFile::create(&args.pid_file)?;
    let (tx, rx) = mpsc::channel();
    let logger = std::thread::Builder::new()
        .name("vipd-log".into())
        .spawn(move || log_notices(rx))?;
    let runtime = Runtime::start(plan, tx).context("starting the VRRP runtime")?;
    let _control = ControlServer::start(&args.control_socket, runtime.status.clone())?;
    info!(config = %args.file.display(), socket = %args.control_socket.display(), "vipd started");

    let signal = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(wait_for_signal())?;
    info!("{signal}: leaving (masters send priority 0 and release their addresses)");
    runtime.shutdown();
    let _ = logger.join();
    info!("vipd stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => warn!("SIGHUP: configuration reload is not supported yet; ignoring"),
        }
    }
}

/// Runs on its own thread so a slow stderr never reaches the protocol thread.
fn log_notices(rx: mpsc::Receiver<Notice>) {
    for n in rx {
        match n {
            Notice::Transition {
                instance,
                from,
                to,
                reason,
                vips,
                ..
            } => {
                info!(instance = %instance, vips = %vips.join(","), "{instance}: {from} -> {to} ({reason})")
            }
            Notice::TakeoverLatency {
                instance,
                first_announce,
            } => {
                info!(instance = %instance, "{instance}: first GARP/NA sent {} µs after deciding to take over", first_announce.as_micros())
            }
            Notice::SendFailed { instance, error } => {
                warn!(instance = %instance, "{instance}: {error}")
            }
            Notice::Address(a) => match a {
                AddrNotice::Added(s) => {
                    info!("added {}/{} (ifindex {})", s.addr, s.prefix_len, s.ifindex)
                }
                AddrNotice::Removed(s) => info!(
                    "removed {}/{} (ifindex {})",
                    s.addr, s.prefix_len, s.ifindex
                ),
                AddrNotice::StaleRemoved(s) => {
                    warn!(
                        "removed stale {}/{} left by an earlier vipd (ifindex {})",
                        s.addr, s.prefix_len, s.ifindex
                    )
                }
                AddrNotice::Foreign(s) => warn!(
                    "{}/{} was already configured by someone else; vipd will not remove it",
                    s.addr, s.prefix_len
                ),
                AddrNotice::Failed(e) => error!("address change failed: {e}"),
            },
        }
    }
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let v = query_status(&args.control_socket)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<10} {:>4} {:>2} {:<7} {:>4} {:<24} {:<30} {:>8} {:>8}  drops",
        "INSTANCE", "IFACE", "VRID", "V", "STATE", "PRIO", "MASTER", "VIPS", "SENT", "RECV"
    );
    for i in v["instances"].as_array().into_iter().flatten() {
        let drops: Vec<String> = i["drops"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| format!("{}={}", d[0].as_str().unwrap_or("?"), d[1]))
            .collect();
        println!(
            "{:<16} {:<10} {:>4} {:>2} {:<7} {:>4} {:<24} {:<30} {:>8} {:>8}  {}",
            i["name"].as_str().unwrap_or("?"),
            i["interface"].as_str().unwrap_or("?"),
            i["vrid"].to_string(),
            i["version"].to_string(),
            i["state"].as_str().unwrap_or("?"),
            i["priority"].to_string(),
            i["master"].as_str().unwrap_or("-"),
            i["vips"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            i["adverts_sent"].to_string(),
            i["adverts_received"].to_string(),
            if drops.is_empty() {
                "-".to_string()
            } else {
                drops.join(" ")
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}

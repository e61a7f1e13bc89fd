//! The `vipd` command: daemon, config checker, status client and the netns lab.

mod agentx;
mod balancer;
mod bench;
mod check;
mod conntrackd;
mod daemon;
mod dbus;
mod dumps;
mod gen;
mod lab;
mod lab_bgp;
mod lbstats;
mod memory;
mod pidfile;
mod plan;
mod realserver;
mod reload_timer;
mod snmp;
mod syncd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub const DEFAULT_CONFIG: &str = "/etc/keepalived/keepalived.conf";
pub const DEFAULT_SOCKET: &str = "/run/vipd/vipd.sock";
pub const DEFAULT_PID_FILE: &str = "/run/vipd/vipd.pid";

#[derive(Parser, Debug)]
#[command(
    name = "vipd",
    version,
    about = "A keepalived-compatible VRRP high-availability daemon"
)]
pub struct Cli {
    /// keepalived spelling of `vipd check-config`: `vipd -t -f FILE`.
    #[arg(short = 't', long = "config-test")]
    config_test: bool,
    /// Config file for `-t` (keepalived's `-f` / `--use-file`).
    #[arg(short = 'f', long = "use-file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Print the signal number vipd acts on for STOP, RELOAD, DATA, STATS,
    /// STATS_CLEAR or JSON, as `keepalived --signum=NAME`: `kill -s $(vipd --signum=JSON) PID`.
    #[arg(long = "signum", value_name = "SIGFUNC")]
    signum: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground.
    #[command(long_about = daemon::RUN_LONG_ABOUT)]
    Run(daemon::RunArgs),
    /// Check a configuration file as `vipd run` builds it; exit 0 if run would start with
    /// it (warnings allowed), 1 otherwise.
    CheckConfig(check::CheckArgs),
    /// Show the state of a running daemon.
    Status(daemon::StatusArgs),
    /// Re-read the running daemon's configuration (like SIGHUP) and show what changed.
    Reload(daemon::ControlArgs),
    /// Stream the running daemon's state transitions as JSON lines.
    Events(daemon::EventsArgs),
    /// Build a throw-away VRRP lab in network namespaces and show a failover (needs root).
    Lab(lab::LabArgs),
    /// Measure failover gaps and advert jitter side by side with keepalived (needs root).
    Bench(bench::BenchArgs),
    /// Prepare this host as an LVS-DR real server: VIPs on lo, no ARP for them (or --undo).
    #[command(long_about = realserver::LONG_ABOUT)]
    Realserver(realserver::RealserverArgs),
    /// Write the man page or shell completions (for packaging).
    #[command(hide = true)]
    Gen(gen::GenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(name) = &cli.signum {
        // keepalived's wording and exit codes (its names are case-sensitive too).
        return match daemon::signum(name) {
            Some(n) => {
                println!("{n}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("Unknown sigfunc {name}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match cli.command {
        Some(Command::Run(args)) => daemon::run(args),
        Some(Command::CheckConfig(args)) => check::run(args),
        Some(Command::Status(args)) => daemon::status(args),
        Some(Command::Reload(args)) => daemon::reload(args),
        Some(Command::Events(args)) => daemon::events(args),
        Some(Command::Lab(args)) => lab::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Realserver(args)) => realserver::run(args),
        Some(Command::Gen(args)) => gen::run(args),
        None if cli.config_test => check::run(check::CheckArgs {
            file: vec![cli.file.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))],
            json: false,
            config_id: Vec::new(),
            dump: false,
            ignore_inactive: false,
        }),
        None => {
            eprintln!("vipd: no command given; try `vipd --help`");
            Ok(ExitCode::from(2))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vipd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

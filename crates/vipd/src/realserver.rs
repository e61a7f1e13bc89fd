//! `vipd realserver`: prepare (or un-prepare) this host as an LVS direct-routing real
//! server. The logic is in [`vipd_linux::realserver`]; this is the command line.

use anyhow::Result;
use clap::Args;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use vipd_linux::realserver::{self, Line, Request, System, DEFAULT_STATE_FILE};

/// `--help` text (set on the subcommand in main.rs: its doc comment would override it here).
pub const LONG_ABOUT: &str = "\
Prepare this host to be an LVS direct-routing (DR) real server for the given
VIPs, or take that back with --undo. Run it on the real servers, not on the
directors.

For each --vip it
  1. sets, for IPv4 VIPs, net.ipv4.conf.*.arp_ignore=1 (answer ARP only for
     addresses of the interface the request came in on, so never for a VIP on
     lo) and arp_announce=2 (never use a VIP as the source address of this
     host's own ARP requests);
  2. adds the VIP to --dev (default lo) as a host address (/32 or /128), so
     this host accepts the packets the director forwards to it.
The sysctls are set before the addresses are added (and --undo removes the
addresses first), so at no moment does the host answer ARP for a VIP.

Interfaces that get the sysctls: `all`, every non-loopback interface that is
up, and --dev when it is not lo. The kernel uses the larger of `all` and the
interface's own value, so `all` alone already covers every interface, also
ones created later; the per-interface values keep the protection if something
resets `all` (a network script, a sysctl.d file), and show it where one
looks. Loopback is left alone: no ARP runs on it. Interfaces that are down
are covered by `all`; run the command again after bringing one up to set it
there too.

IPv6 VIPs need no sysctl: the kernel answers neighbour solicitations only for
addresses of the interface that received them, so a VIP on lo is never
advertised (unless proxy_ndp is set up for it). They are added with nodad, so
they are usable at once. With only IPv6 VIPs no sysctl is changed.

--dev must be lo or an interface without ARP (NOARP, e.g. a dummy): a VIP on
an interface that does ARP would be answered in spite of arp_ignore.

Running it again is safe: what is in place is left alone. Every change is
recorded in --state-file (previous sysctl values, addresses added); --undo
restores exactly those values and removes only those addresses, never a VIP
that was on --dev before. A later run with more VIPs adds to the record.
Each change is printed as one line; --dry-run prints what would change and
changes nothing.

Needs root (CAP_NET_ADMIN), except --dry-run. Nothing here survives a reboot
(hence the state file in /run): run it at boot, e.g. from a oneshot unit.";

const AFTER_LONG_HELP: &str = "\
Examples:
  vipd realserver --vip 192.0.2.100 --dry-run
  vipd realserver --vip 192.0.2.100 --vip 2001:db8::100
  vipd realserver --undo";

#[derive(Args, Debug)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct RealserverArgs {
    /// A virtual IP this server receives from the director (IPv4 or IPv6; repeat for more).
    #[arg(
        long = "vip",
        value_name = "ADDR",
        value_parser = parse_vip,
        required_unless_present = "undo",
        conflicts_with = "undo"
    )]
    vips: Vec<IpAddr>,
    /// The interface that carries the VIPs: lo, or one that does not do ARP (a dummy).
    #[arg(
        long,
        value_name = "IFACE",
        default_value = "lo",
        conflicts_with = "undo"
    )]
    dev: String,
    /// Take back what earlier runs changed, as recorded in the state file.
    #[arg(long)]
    undo: bool,
    /// Print what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The record of what was changed, read by --undo.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
}

/// An address, optionally with its host prefix (`192.0.2.100/32`); nothing wider.
fn parse_vip(s: &str) -> Result<IpAddr, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
    let host = if addr.is_ipv4() { "32" } else { "128" };
    match len {
        None => Ok(addr),
        Some(l) if l == host => Ok(addr),
        Some(l) => Err(format!(
            "a VIP on a real server is a host address: /{host}, not /{l}"
        )),
    }
}

pub fn run(args: RealserverArgs) -> Result<ExitCode> {
    let mut host = System::new();
    let mut print = |line: Line| match line {
        Line::Change(s) | Line::Note(s) => println!("{s}"),
        Line::Warning(s) => eprintln!("vipd: warning: {s}"),
    };
    if args.undo {
        realserver::undo(&mut host, &args.state_file, args.dry_run, &mut print)?;
    } else {
        let req = Request {
            vips: args.vips,
            dev: args.dev,
        };
        realserver::apply(&mut host, &req, &args.state_file, args.dry_run, &mut print)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_vip;

    #[test]
    fn vip_syntax() {
        assert_eq!(parse_vip("192.0.2.1").unwrap().to_string(), "192.0.2.1");
        assert_eq!(parse_vip("192.0.2.1/32").unwrap().to_string(), "192.0.2.1");
        assert_eq!(
            parse_vip("2001:db8::1/128").unwrap().to_string(),
            "2001:db8::1"
        );
        assert!(parse_vip("192.0.2.1/24")
            .unwrap_err()
            .contains("/32, not /24"));
        assert!(parse_vip("2001:db8::1/64").is_err());
        assert!(parse_vip("eth0")
            .unwrap_err()
            .contains("not an IPv4 or IPv6"));
    }
}

//! `vipd realserver`: prepare this host to be an LVS direct-routing (DR) real server.
//!
//! * Each VIP goes on `--dev` (normally `lo`) as a host address (/32, /128), so the
//!   server accepts the packets the director forwards to it unchanged.
//! * For IPv4 VIPs, `arp_ignore=1` and `arp_announce=2` are set on `all`, on every
//!   non-loopback interface that is up and on `--dev` when it is not loopback, so the
//!   server never answers (or announces) ARP for a VIP. The kernel uses the larger of
//!   `all` and the interface's own value, so `all` alone already covers every interface;
//!   the per-interface values keep the protection if `all` is reset later.
//! * IPv6 needs no sysctl: the kernel answers neighbour solicitations only for addresses
//!   of the receiving interface.
//!
//! Everything changed is recorded in a state file (previous sysctl values, addresses
//! added) so [`undo`] restores exactly the previous values and removes only what
//! [`apply`] added. Running [`apply`] twice changes nothing the second time.
//!
//! The host is behind the [`Host`] trait ([`System`] is the real one: `/proc/sys` and
//! rtnetlink), so the bookkeeping is unit-tested without root.

use crate::netlink::{AddOutcome, AddressSpec, Rtnetlink};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where the record of changes goes unless told otherwise.
pub const DEFAULT_STATE_FILE: &str = "/run/vipd/realserver.json";

/// The sysctls and the values a DR real server needs (per interface, and on `all`).
pub const ARP_SETTINGS: [(&str, &str); 2] = [("arp_ignore", "1"), ("arp_announce", "2")];

const STATE_VERSION: u32 = 1;

/// `net.ipv4.conf.<iface>.<param>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sysctl {
    /// `all`, `default` or an interface name.
    pub iface: String,
    /// `arp_ignore`, `arp_announce`.
    pub param: String,
}

impl Sysctl {
    pub fn new(iface: &str, param: &str) -> Sysctl {
        Sysctl {
            iface: iface.to_string(),
            param: param.to_string(),
        }
    }

    /// The file under `/proc/sys`.
    pub fn path(&self, proc_sys: &Path) -> PathBuf {
        proc_sys
            .join("net/ipv4/conf")
            .join(&self.iface)
            .join(&self.param)
    }
}

impl fmt::Display for Sysctl {
    /// As `sysctl(8)` spells it: a dot in an interface name (`eth0.100`) becomes `/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "net.ipv4.conf.{}.{}",
            self.iface.replace('.', "/"),
            self.param
        )
    }
}

/// A sysctl this tool changed: what it was before, what we set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlRecord {
    #[serde(flatten)]
    pub key: Sysctl,
    pub previous: String,
    pub set: String,
}

/// An address this tool added (and so may remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRecord {
    pub dev: String,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// The state file: everything [`undo`] has to take back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub sysctls: Vec<SysctlRecord>,
    #[serde(default)]
    pub addresses: Vec<AddressRecord>,
}

impl Default for State {
    fn default() -> State {
        State {
            version: STATE_VERSION,
            sysctls: Vec::new(),
            addresses: Vec::new(),
        }
    }
}

impl State {
    fn is_empty(&self) -> bool {
        self.sysctls.is_empty() && self.addresses.is_empty()
    }

    fn has_address(&self, dev: &str, addr: IpAddr) -> bool {
        self.addresses
            .iter()
            .any(|a| a.dev == dev && a.addr == addr)
    }

    /// Reads the state file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<State>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => bail!("reading state file {}: {}", path.display(), io_text(&e)),
        };
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("reading state file {}: not a vipd state", path.display()))?;
        if state.version != STATE_VERSION {
            bail!(
                "reading state file {}: version {} (this vipd knows version {STATE_VERSION})",
                path.display(),
                state.version
            );
        }
        Ok(Some(state))
    }

    /// Writes the state file atomically (temp file + rename); an empty state removes it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let step = || format!("writing state file {}", path.display());
        if self.is_empty() {
            return match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(anyhow!("{}: {}", step(), io_text(&e))),
            };
        }
        let mut text = serde_json::to_string_pretty(self).expect("state serializes");
        text.push('\n');
        let tmp = tmp_path(path);
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                anyhow!("{}: {}", step(), io_text(&e))
            })
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Makes sure the state file can be written *before* anything is changed, so no change
/// goes unrecorded: creates the directory and writes (then removes) the temp file.
fn check_state_writable(path: &Path) -> Result<()> {
    let step = || format!("writing state file {}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: {}", step(), io_text(&e)))?;
    }
    let tmp = tmp_path(path);
    std::fs::write(&tmp, b"").map_err(|e| anyhow!("{}: {}", step(), io_text(&e)))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

/// An error's text the way `ip`/`sysctl` print it: "permission denied", without the
/// "(os error 13)" suffix.
pub fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => &text[..i],
        _ => &text[..],
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A netlink error as `netlink.rs` words it ("adding 192.0.2.1/32: Operation not
/// permitted (os error 1)") without the part the caller says better itself (`step`) and
/// in the style of [`io_text`]: "operation not permitted".
fn tidy(e: &anyhow::Error, step: &str) -> String {
    let text = format!("{e:#}");
    let rest = text
        .strip_prefix(step)
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(&text);
    let rest = match rest.rfind(" (os error ") {
        Some(i) if rest.ends_with(')') => &rest[..i],
        _ => rest,
    };
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A network interface as far as this tool cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub up: bool,
    pub loopback: bool,
    /// IFF_NOARP: the interface never answers ARP (dummy, tunnels).
    pub noarp: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddress {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// What [`apply`] and [`undo`] need from the host.
pub trait Host {
    fn links(&mut self) -> Result<Vec<Link>>;
    fn addresses(&mut self) -> Result<Vec<HostAddress>>;
    fn read_sysctl(&mut self, key: &Sysctl) -> io::Result<String>;
    fn write_sysctl(&mut self, key: &Sysctl, value: &str) -> io::Result<()>;
    fn add_address(&mut self, a: &HostAddress) -> Result<AddOutcome>;
    fn delete_address(&mut self, a: &HostAddress) -> Result<()>;
}

/// The real host: `/proc/sys` files and rtnetlink, in the caller's network namespace.
pub struct System {
    nl: Option<Rtnetlink>,
    proc_sys: PathBuf,
}

impl Default for System {
    fn default() -> Self {
        System::new()
    }
}

impl System {
    pub fn new() -> System {
        System {
            nl: None,
            proc_sys: PathBuf::from("/proc/sys"),
        }
    }

    fn nl(&mut self) -> Result<&mut Rtnetlink> {
        if self.nl.is_none() {
            self.nl = Some(Rtnetlink::open()?);
        }
        Ok(self.nl.as_mut().expect("just opened"))
    }
}

fn spec(a: &HostAddress) -> AddressSpec {
    AddressSpec {
        ifindex: a.ifindex,
        addr: a.addr,
        prefix_len: a.prefix_len,
        brd: None,
        scope: 0,
        label: None,
        opts: Default::default(),
    }
}

impl Host for System {
    fn links(&mut self) -> Result<Vec<Link>> {
        use nix::net::if_::InterfaceFlags;
        let mut links: Vec<Link> = Vec::new();
        // getifaddrs lists every link (an AF_PACKET entry each), with or without addresses.
        for ifa in nix::ifaddrs::getifaddrs().context("listing interfaces")? {
            if links.iter().any(|l| l.name == ifa.interface_name) {
                continue;
            }
            let Ok(index) = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()) else {
                continue; // gone meanwhile
            };
            links.push(Link {
                index,
                up: ifa.flags.contains(InterfaceFlags::IFF_UP),
                loopback: ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                noarp: ifa.flags.contains(InterfaceFlags::IFF_NOARP),
                name: ifa.interface_name,
            });
        }
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    fn addresses(&mut self) -> Result<Vec<HostAddress>> {
        Ok(self
            .nl()?
            .dump_addresses()?
            .into_iter()
            .map(|k| HostAddress {
                ifindex: k.ifindex,
                addr: k.addr,
                prefix_len: k.prefix_len,
            })
            .collect())
    }

    fn read_sysctl(&mut self, key: &Sysctl) -> io::Result<String> {
        Ok(std::fs::read_to_string(key.path(&self.proc_sys))?
            .trim()
            .to_string())
    }

    fn write_sysctl(&mut self, key: &Sysctl, value: &str) -> io::Result<()> {
        std::fs::write(key.path(&self.proc_sys), value)
    }

    fn add_address(&mut self, a: &HostAddress) -> Result<AddOutcome> {
        // IPv6 addresses get IFA_F_NODAD from `address_message`.
        self.nl()?.add_address(&spec(a))
    }

    fn delete_address(&mut self, a: &HostAddress) -> Result<()> {
        self.nl()?.delete_address(&spec(a))
    }
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A change made (or, with `dry_run`, one that would be made).
    Change(String),
    /// Something worth knowing that is not a change.
    Note(String),
    /// Probably a problem with the setup, but not one that stops us.
    Warning(String),
}

/// What to set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub vips: Vec<IpAddr>,
    /// The interface that carries the VIPs.
    pub dev: String,
}

fn host_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

enum Action {
    SetSysctl {
        key: Sysctl,
        from: String,
        to: String,
    },
    AddAddress(HostAddress),
}

/// Prepare the host (see the module docs). Calls `emit` once per change, note and
/// warning as they happen, so a failure half-way still shows what was done. Returns how
/// many changes were made (or would be, with `dry_run`).
pub fn apply(
    host: &mut dyn Host,
    req: &Request,
    state_path: &Path,
    dry_run: bool,
    emit: &mut dyn FnMut(Line),
) -> Result<usize> {
    if req.vips.is_empty() {
        bail!("no VIP given (--vip ADDR)");
    }
    let mut vips: Vec<IpAddr> = Vec::new();
    for v in &req.vips {
        if v.is_unspecified() || v.is_multicast() || v.is_loopback() {
            bail!("checking --vip {v}: not a unicast address a real server can carry");
        }
        if !vips.contains(v) {
            vips.push(*v);
        }
    }
    let links = host.links()?;
    let dev = links
        .iter()
        .find(|l| l.name == req.dev)
        .ok_or_else(|| anyhow!("checking --dev {}: no such interface", req.dev))?
        .clone();
    if !dev.loopback && !dev.noarp {
        bail!(
            "checking --dev {0}: {0} does ARP, so the server would answer ARP for a VIP on it \
             (arp_ignore=1 only hides addresses of *other* interfaces); use lo (the default) \
             or an interface without ARP, such as a dummy",
            dev.name
        );
    }
    if !dev.up {
        emit(Line::Warning(format!(
            "{} is down; the VIPs on it may not be usable until it is up",
            dev.name
        )));
    }
    let mut state = State::load(state_path)?.unwrap_or_default();
    let present = host.addresses().context("listing addresses")?;
    let name_of = |index: u32| {
        links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("interface {index}"))
    };
    for v in &vips {
        for a in present
            .iter()
            .filter(|a| a.addr == *v && a.ifindex != dev.index)
        {
            let arp = links
                .iter()
                .find(|l| l.index == a.ifindex)
                .is_some_and(|l| !l.loopback && !l.noarp);
            if arp {
                let what = if v.is_ipv4() {
                    "ARP"
                } else {
                    "neighbour solicitations"
                };
                emit(Line::Warning(format!(
                    "{v} is also on {}, which answers {what} for it; remove it there",
                    name_of(a.ifindex)
                )));
            }
        }
    }

    // Plan. Sysctls come first: they are in force before any VIP appears, so there is
    // no moment at which the server would answer ARP for one.
    let mut plan = Vec::new();
    if vips.iter().any(IpAddr::is_ipv4) {
        let mut ifaces = vec!["all".to_string()];
        ifaces.extend(
            links
                .iter()
                .filter(|l| l.up && !l.loopback)
                .map(|l| l.name.clone()),
        );
        if !dev.loopback && !ifaces.contains(&dev.name) {
            ifaces.push(dev.name.clone());
        }
        for iface in &ifaces {
            for (param, want) in ARP_SETTINGS {
                let key = Sysctl::new(iface, param);
                let current = match host.read_sysctl(&key) {
                    Ok(v) => v,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && iface != "all" => {
                        emit(Line::Note(format!(
                            "{iface} has no IPv4 settings ({key} does not exist); skipped"
                        )));
                        break;
                    }
                    Err(e) => bail!("reading {key}: {}", io_text(&e)),
                };
                if current != want {
                    plan.push(Action::SetSysctl {
                        key,
                        from: current,
                        to: want.to_string(),
                    });
                }
            }
        }
    }
    for v in &vips {
        if present
            .iter()
            .any(|a| a.ifindex == dev.index && a.addr == *v)
        {
            if !state.has_address(&dev.name, *v) {
                emit(Line::Note(format!(
                    "{v} was already on {} (not added by vipd, so --undo leaves it)",
                    dev.name
                )));
            }
            continue;
        }
        plan.push(Action::AddAddress(HostAddress {
            ifindex: dev.index,
            addr: *v,
            prefix_len: host_prefix(*v),
        }));
    }

    if plan.is_empty() {
        emit(Line::Note("nothing to change: already set up".into()));
        return Ok(0);
    }
    if dry_run {
        for a in &plan {
            emit(Line::Change(match a {
                Action::SetSysctl { key, from, to } => {
                    format!("would set {key} = {to} (now {from})")
                }
                Action::AddAddress(a) => {
                    format!("would add {}/{} to {}", a.addr, a.prefix_len, dev.name)
                }
            }));
        }
        return Ok(plan.len());
    }

    check_state_writable(state_path)?;
    let mut changes = 0;
    for action in plan {
        let line = match action {
            Action::SetSysctl { key, from, to } => {
                host.write_sysctl(&key, &to)
                    .map_err(|e| anyhow!("setting {key}: {}", io_text(&e)))?;
                // A value changed back behind our back keeps its first recorded previous.
                match state.sysctls.iter_mut().find(|r| r.key == key) {
                    Some(r) => r.set = to.clone(),
                    None => state.sysctls.push(SysctlRecord {
                        key: key.clone(),
                        previous: from.clone(),
                        set: to.clone(),
                    }),
                }
                format!("set {key} = {to} (was {from})")
            }
            Action::AddAddress(a) => {
                let step = format!("adding {}/{}", a.addr, a.prefix_len);
                let outcome = host
                    .add_address(&a)
                    .map_err(|e| anyhow!("{step} to {}: {}", dev.name, tidy(&e, &step)))?;
                if outcome == AddOutcome::AlreadyPresent {
                    emit(Line::Note(format!(
                        "{}/{} appeared on {} meanwhile (not added by vipd, so --undo leaves it)",
                        a.addr, a.prefix_len, dev.name
                    )));
                    continue;
                }
                if !state.has_address(&dev.name, a.addr) {
                    state.addresses.push(AddressRecord {
                        dev: dev.name.clone(),
                        addr: a.addr,
                        prefix_len: a.prefix_len,
                    });
                }
                format!("added {}/{} to {}", a.addr, a.prefix_len, dev.name)
            }
        };
        changes += 1;
        state
            .save(state_path)
            .with_context(|| format!("{line}, but could not record it"))?;
        emit(Line::Change(line));
    }
    Ok(changes)
}

/// Take back what [`apply`] recorded: remove the addresses it added (first, while the
/// ARP settings still hide them), then restore every sysctl to its previous value.
/// Without a state file there is nothing to do. The state file shrinks as items are
/// taken back, so a failed undo can simply be run again.
pub fn undo(
    host: &mut dyn Host,
    state_path: &Path,
    dry_run: bool,
    emit: &mut dyn FnMut(Line),
) -> Result<usize> {
    let Some(mut state) = State::load(state_path)? else {
        emit(Line::Note(format!(
            "nothing to undo: no state file {}",
            state_path.display()
        )));
        return Ok(0);
    };
    let (remove, restore) = if dry_run {
        ("would remove", "would restore")
    } else {
        ("removed", "restored")
    };
    let links = host.links()?;
    let present = host.addresses().context("listing addresses")?;
    let mut changes = 0;

    let records = std::mem::take(&mut state.addresses);
    let mut left = records.clone();
    for r in &records {
        let a = links.iter().find(|l| l.name == r.dev).and_then(|l| {
            present
                .iter()
                .find(|a| a.ifindex == l.index && a.addr == r.addr && a.prefix_len == r.prefix_len)
                .copied()
        });
        match a {
            None => emit(Line::Note(format!(
                "{}/{} is no longer on {}; nothing to remove",
                r.addr, r.prefix_len, r.dev
            ))),
            Some(a) => {
                if !dry_run {
                    let step = format!("removing {}/{}", a.addr, a.prefix_len);
                    host.delete_address(&a)
                        .map_err(|e| anyhow!("{step} from {}: {}", r.dev, tidy(&e, &step)))?;
                }
                emit(Line::Change(format!(
                    "{remove} {}/{} from {}",
                    a.addr, a.prefix_len, r.dev
                )));
                changes += 1;
            }
        }
        if !dry_run {
            left.retain(|x| x != r);
            state.addresses = left.clone();
            state.save(state_path)?;
        }
    }
    state.addresses = left;

    // Last changed first, so `all` (set first) is restored last.
    let records: Vec<SysctlRecord> = state.sysctls.iter().rev().cloned().collect();
    for r in &records {
        match host.read_sysctl(&r.key) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => emit(Line::Note(format!(
                "{} no longer exists (interface gone); nothing to restore",
                r.key
            ))),
            Err(e) => bail!("reading {}: {}", r.key, io_text(&e)),
            Ok(current) if current == r.previous => emit(Line::Note(format!(
                "{} is already {}; nothing to restore",
                r.key, r.previous
            ))),
            Ok(current) => {
                if !dry_run {
                    host.write_sysctl(&r.key, &r.previous)
                        .map_err(|e| anyhow!("restoring {}: {}", r.key, io_text(&e)))?;
                }
                let since = if current == r.set {
                    String::new()
                } else {
                    format!(", changed since vipd set {}", r.set)
                };
                emit(Line::Change(format!(
                    "{restore} {} = {} (was {current}{since})",
                    r.key, r.previous
                )));
                changes += 1;
            }
        }
        if !dry_run {
            state.sysctls.retain(|x| x.key != r.key);
            state.save(state_path)?;
        }
    }
    if !dry_run {
        // Empty by now: `save` removed the file (or it was empty to begin with).
        state.save(state_path)?;
    }
    if changes == 0 {
        emit(Line::Note("nothing to change".into()));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// lo, eth0 (up), eth1 (down), dummy0 (NOARP, up), eth0.100 (up).
    struct Fake {
        links: Vec<Link>,
        addrs: Vec<HostAddress>,
        sysctls: BTreeMap<String, String>,
        deny_write: Option<String>,
        writes: usize,
    }

    fn link(name: &str, index: u32, up: bool, loopback: bool, noarp: bool) -> Link {
        Link {
            name: name.into(),
            index,
            up,
            loopback,
            noarp,
        }
    }

    impl Fake {
        fn new() -> Fake {
            let links = vec![
                link("lo", 1, true, true, true),
                link("eth0", 2, true, false, false),
                link("eth1", 3, false, false, false),
                link("dummy0", 4, true, false, true),
                link("eth0.100", 5, true, false, false),
            ];
            let mut sysctls = BTreeMap::new();
            for i in ["all", "default", "lo", "eth0", "eth1", "dummy0", "eth0.100"] {
                for p in ["arp_ignore", "arp_announce"] {
                    sysctls.insert(format!("{i}/{p}"), "0".to_string());
                }
            }
            Fake {
                links,
                addrs: vec![HostAddress {
                    ifindex: 1,
                    addr: "127.0.0.1".parse().unwrap(),
                    prefix_len: 8,
                }],
                sysctls,
                deny_write: None,
                writes: 0,
            }
        }
        fn get(&self, key: &str) -> &str {
            &self.sysctls[key]
        }
        fn has(&self, ifindex: u32, addr: &str) -> bool {
            let addr: IpAddr = addr.parse().unwrap();
            self.addrs
                .iter()
                .any(|a| a.ifindex == ifindex && a.addr == addr)
        }
    }

    impl Host for Fake {
        fn links(&mut self) -> Result<Vec<Link>> {
            Ok(self.links.clone())
        }
        fn addresses(&mut self) -> Result<Vec<HostAddress>> {
            Ok(self.addrs.clone())
        }
        fn read_sysctl(&mut self, key: &Sysctl) -> io::Result<String> {
            self.sysctls
                .get(&format!("{}/{}", key.iface, key.param))
                .cloned()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
        }
        fn write_sysctl(&mut self, key: &Sysctl, value: &str) -> io::Result<()> {
            if self.deny_write.as_deref() == Some(key.to_string().as_str()) {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            let k = format!("{}/{}", key.iface, key.param);
            match self.sysctls.get_mut(&k) {
                Some(v) => *v = value.to_string(),
                None => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
            self.writes += 1;
            Ok(())
        }
        fn add_address(&mut self, a: &HostAddress) -> Result<AddOutcome> {
            if self.has(a.ifindex, &a.addr.to_string()) {
                return Ok(AddOutcome::AlreadyPresent);
            }
            self.addrs.push(*a);
            Ok(AddOutcome::Added)
        }
        fn delete_address(&mut self, a: &HostAddress) -> Result<()> {
            self.addrs
                .retain(|x| !(x.ifindex == a.ifindex && x.addr == a.addr));
            Ok(())
        }
    }

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "vipd-rs-unit-{}-{}-{tag}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Tmp(dir)
        }
        /// A state file in a directory that does not exist yet.
        fn state(&self) -> PathBuf {
            self.0.join("sub/realserver.json")
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn req(vips: &[&str], dev: &str) -> Request {
        Request {
            vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
            dev: dev.into(),
        }
    }

    fn run_apply(
        host: &mut Fake,
        r: &Request,
        state: &Path,
        dry: bool,
    ) -> (Result<usize>, Vec<Line>) {
        let mut lines = Vec::new();
        let res = apply(host, r, state, dry, &mut |l| lines.push(l));
        (res, lines)
    }

    fn run_undo(host: &mut Fake, state: &Path, dry: bool) -> (Result<usize>, Vec<Line>) {
        let mut lines = Vec::new();
        let res = undo(host, state, dry, &mut |l| lines.push(l));
        (res, lines)
    }

    fn changes(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Change(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn apply_sets_all_and_up_non_loopback_interfaces_then_adds_vip() {
        let t = Tmp::new("apply");
        let mut h = Fake::new();
        let (res, lines) = run_apply(&mut h, &req(&["192.0.2.100"], "lo"), &t.state(), false);
        assert_eq!(res.unwrap(), 9, "{lines:?}");
        let c = changes(&lines);
        assert_eq!(c[0], "set net.ipv4.conf.all.arp_ignore = 1 (was 0)");
        assert_eq!(c[1], "set net.ipv4.conf.all.arp_announce = 2 (was 0)");
        assert_eq!(c[2], "set net.ipv4.conf.eth0.arp_ignore = 1 (was 0)");
        // sysctl(8) spelling of a VLAN interface.
        assert!(c.contains(&"set net.ipv4.conf.eth0/100.arp_ignore = 1 (was 0)".to_string()));
        assert_eq!(c.last().unwrap(), "added 192.0.2.100/32 to lo");
        for i in ["all", "eth0", "dummy0", "eth0.100"] {
            assert_eq!(h.get(&format!("{i}/arp_ignore")), "1", "{i}");
            assert_eq!(h.get(&format!("{i}/arp_announce")), "2", "{i}");
        }
        // Down, loopback and `default` are left alone.
        for i in ["eth1", "lo", "default"] {
            assert_eq!(h.get(&format!("{i}/arp_ignore")), "0", "{i}");
        }
        assert!(h.has(1, "192.0.2.100"));
        let st = State::load(&t.state()).unwrap().unwrap();
        assert_eq!(st.sysctls.len(), 8);
        assert_eq!(
            st.addresses,
            vec![AddressRecord {
                dev: "lo".into(),
                addr: "192.0.2.100".parse().unwrap(),
                prefix_len: 32
            }]
        );
    }

    #[test]
    fn second_apply_changes_nothing() {
        let t = Tmp::new("twice");
        let mut h = Fake::new();
        let r = req(&["192.0.2.100", "2001:db8::100"], "lo");
        run_apply(&mut h, &r, &t.state(), false).0.unwrap();
        let before = std::fs::read_to_string(t.state()).unwrap();
        let writes = h.writes;
        let (res, lines) = run_apply(&mut h, &r, &t.state(), false);
        assert_eq!(res.unwrap(), 0);
        assert_eq!(h.writes, writes);
        assert!(changes(&lines).is_empty(), "{lines:?}");
        assert_eq!(
            lines,
            vec![Line::Note("nothing to change: already set up".into())]
        );
        assert_eq!(std::fs::read_to_string(t.state()).unwrap(), before);
    }

    #[test]
    fn undo_restores_previous_values_and_removes_only_added_addresses() {
        let t = Tmp::new("undo");
        let mut h = Fake::new();
        h.sysctls.insert("all/arp_announce".into(), "1".into());
        h.sysctls.insert("eth0/arp_ignore".into(), "1".into()); // already right
        h.addrs.push(HostAddress {
            ifindex: 1,
            addr: "192.0.2.101".parse().unwrap(),
            prefix_len: 32,
        });
        let before = h.sysctls.clone();
        let (res, lines) = run_apply(
            &mut h,
            &req(&["192.0.2.100", "192.0.2.101"], "lo"),
            &t.state(),
            false,
        );
        res.unwrap();
        assert!(lines.contains(&Line::Note(
            "192.0.2.101 was already on lo (not added by vipd, so --undo leaves it)".into()
        )));
        assert!(!changes(&lines)
            .iter()
            .any(|c| c.contains("eth0.arp_ignore")));
        // Someone resets a value between apply and a second apply: the record keeps the
        // value from before vipd.
        h.sysctls.insert("all/arp_ignore".into(), "0".into());
        run_apply(&mut h, &req(&["192.0.2.100"], "lo"), &t.state(), false)
            .0
            .unwrap();
        h.sysctls.insert("eth1/arp_ignore".into(), "3".into()); // down: never ours
        h.sysctls.insert("eth0/arp_announce".into(), "1".into()); // ours, changed since
        let (res, lines) = run_undo(&mut h, &t.state(), false);
        assert_eq!(res.unwrap(), 8, "{lines:?}");
        h.sysctls.insert("eth1/arp_ignore".into(), "0".into());
        let c = changes(&lines);
        assert_eq!(c[0], "removed 192.0.2.100/32 from lo");
        assert_eq!(
            c.last().unwrap(),
            "restored net.ipv4.conf.all.arp_ignore = 0 (was 1)"
        );
        assert!(c.contains(&"restored net.ipv4.conf.all.arp_announce = 1 (was 2)".to_string()));
        assert!(c.contains(
            &"restored net.ipv4.conf.eth0.arp_announce = 0 (was 1, changed since vipd set 2)"
                .to_string()
        ));
        assert_eq!(h.sysctls, before);
        assert!(!h.has(1, "192.0.2.100"));
        assert!(h.has(1, "192.0.2.101"), "pre-existing address kept");
        assert!(!t.state().exists(), "state file removed");
        // Undo again: nothing to do.
        let (res, lines) = run_undo(&mut h, &t.state(), false);
        assert_eq!(res.unwrap(), 0);
        assert!(matches!(&lines[0], Line::Note(n) if n.starts_with("nothing to undo")));
    }

    #[test]
    fn dry_run_changes_nothing() {
        let t = Tmp::new("dry");
        let mut h = Fake::new();
        let (res, lines) = run_apply(&mut h, &req(&["192.0.2.100"], "lo"), &t.state(), true);
        assert_eq!(res.unwrap(), 9);
        assert_eq!(h.writes, 0);
        assert!(!h.has(1, "192.0.2.100"));
        assert!(!t.state().exists() && !t.0.exists());
        let c = changes(&lines);
        assert_eq!(c[0], "would set net.ipv4.conf.all.arp_ignore = 1 (now 0)");
        assert_eq!(c.last().unwrap(), "would add 192.0.2.100/32 to lo");
        // And an undo dry run after a real apply.
        run_apply(&mut h, &req(&["192.0.2.100"], "lo"), &t.state(), false)
            .0
            .unwrap();
        let snapshot = (h.sysctls.clone(), h.addrs.clone());
        let state = std::fs::read_to_string(t.state()).unwrap();
        let (res, lines) = run_undo(&mut h, &t.state(), true);
        assert_eq!(res.unwrap(), 9);
        assert_eq!(changes(&lines)[0], "would remove 192.0.2.100/32 from lo");
        assert_eq!((h.sysctls.clone(), h.addrs.clone()), snapshot);
        assert_eq!(std::fs::read_to_string(t.state()).unwrap(), state);
    }

    #[test]
    fn ipv6_only_changes_no_sysctl() {
        let t = Tmp::new("v6");
        let mut h = Fake::new();
        let (res, lines) = run_apply(&mut h, &req(&["2001:db8::100"], "lo"), &t.state(), false);
        assert_eq!(res.unwrap(), 1);
        assert_eq!(changes(&lines), vec!["added 2001:db8::100/128 to lo"]);
        assert_eq!(h.writes, 0);
    }

    #[test]
    fn dev_is_checked_before_anything_changes() {
        let t = Tmp::new("dev");
        let mut h = Fake::new();
        let err = run_apply(&mut h, &req(&["192.0.2.100"], "nosuch0"), &t.state(), false)
            .0
            .unwrap_err();
        assert_eq!(err.to_string(), "checking --dev nosuch0: no such interface");
        let err = run_apply(&mut h, &req(&["192.0.2.100"], "eth0"), &t.state(), false)
            .0
            .unwrap_err();
        assert!(err.to_string().contains("eth0 does ARP"), "{err}");
        assert_eq!(h.writes, 0);
        assert!(!t.state().exists());
        // A NOARP device is fine, and gets the sysctls too (already does: it is up).
        let (res, lines) = run_apply(&mut h, &req(&["192.0.2.100"], "dummy0"), &t.state(), false);
        res.unwrap();
        assert!(h.has(4, "192.0.2.100"));
        assert!(changes(&lines).contains(&"set net.ipv4.conf.dummy0.arp_ignore = 1 (was 0)".into()));
    }

    #[test]
    fn down_non_loopback_dev_is_set_too() {
        let t = Tmp::new("down");
        let mut h = Fake::new();
        h.links[3].up = false; // dummy0
        let (res, lines) = run_apply(&mut h, &req(&["192.0.2.100"], "dummy0"), &t.state(), false);
        res.unwrap();
        assert!(lines.contains(&Line::Warning(
            "dummy0 is down; the VIPs on it may not be usable until it is up".into()
        )));
        assert_eq!(h.get("dummy0/arp_ignore"), "1");
        assert_eq!(h.get("eth1/arp_ignore"), "0");
    }

    #[test]
    fn failure_half_way_names_the_step_and_keeps_what_was_done_undoable() {
        let t = Tmp::new("fail");
        let mut h = Fake::new();
        h.deny_write = Some("net.ipv4.conf.eth0.arp_ignore".into());
        let (res, lines) = run_apply(&mut h, &req(&["192.0.2.100"], "lo"), &t.state(), false);
        let err = res.unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "setting net.ipv4.conf.eth0.arp_ignore: permission denied"
        );
        assert_eq!(changes(&lines).len(), 2, "the two `all` settings were made");
        assert!(!h.has(1, "192.0.2.100"), "no VIP without the ARP settings");
        let st = State::load(&t.state()).unwrap().unwrap();
        assert_eq!(st.sysctls.len(), 2);
        run_undo(&mut h, &t.state(), false).0.unwrap();
        assert_eq!(h.get("all/arp_ignore"), "0");
        assert_eq!(h.get("all/arp_announce"), "0");
    }

    #[test]
    fn vip_on_an_arp_interface_is_warned_about() {
        let t = Tmp::new("warn");
        let mut h = Fake::new();
        h.addrs.push(HostAddress {
            ifindex: 2,
            addr: "192.0.2.100".parse().unwrap(),
            prefix_len: 24,
        });
        let (res, lines) = run_apply(&mut h, &req(&["192.0.2.100"], "lo"), &t.state(), true);
        res.unwrap();
        assert!(lines.contains(&Line::Warning(
            "192.0.2.100 is also on eth0, which answers ARP for it; remove it there".into()
        )));
    }

    #[test]
    fn bad_vips_and_state_files_are_refused() {
        let t = Tmp::new("bad");
        let mut h = Fake::new();
        for v in ["0.0.0.0", "224.0.0.18", "127.0.0.2", "::1"] {
            let err = run_apply(&mut h, &req(&[v], "lo"), &t.state(), true)
                .0
                .unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("checking --vip {v}:")),
                "{err}"
            );
        }
        std::fs::create_dir_all(t.state().parent().unwrap()).unwrap();
        std::fs::write(t.state(), "{\"version\": 7}").unwrap();
        let err = run_undo(&mut h, &t.state(), false).0.unwrap_err();
        assert!(err.to_string().contains("version 7"), "{err}");
        std::fs::write(t.state(), "garbage").unwrap();
        let err = run_apply(&mut h, &req(&["192.0.2.1"], "lo"), &t.state(), false)
            .0
            .unwrap_err();
        assert!(err.to_string().contains("not a vipd state"), "{err}");
        assert_eq!(h.writes, 0);
    }

    #[test]
    fn netlink_errors_are_tidied() {
        let e = anyhow!("adding 192.0.2.1/32: Operation not permitted (os error 1)");
        assert_eq!(tidy(&e, "adding 192.0.2.1/32"), "operation not permitted");
        // Another wording is kept whole.
        let e = anyhow!("opening rtnetlink socket");
        assert_eq!(tidy(&e, "adding 192.0.2.1/32"), "opening rtnetlink socket");
    }

    #[test]
    fn io_errors_read_like_ip_and_sysctl() {
        assert_eq!(
            io_text(&io::Error::from_raw_os_error(libc::EACCES)),
            "permission denied"
        );
        assert_eq!(
            io_text(&io::Error::from_raw_os_error(libc::EROFS)),
            "read-only file system"
        );
    }
}

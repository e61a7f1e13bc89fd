//! keepalived's DBus interface (`enable_dbus`): the service `org.keepalived.Vrrp1` (or
//! `dbus_service_name`) on the system bus (`DBUS_SYSTEM_BUS_ADDRESS` if set), with
//!
//! - `/org/keepalived/Vrrp1/Vrrp`, interface `org.keepalived.Vrrp1.Vrrp`: methods
//!   `PrintData`, `PrintStats`, `PrintStatsClear` (the SIGUSR1 / SIGUSR2 dumps),
//!   `ReloadConfig` (what SIGHUP does), `CreateInstance` / `DestroyInstance` (refused:
//!   see [`VrrpObject`]); signals `VrrpStarted`, `VrrpReloaded`, `VrrpStopped`;
//! - one `/org/keepalived/Vrrp1/Instance/IFACE/VRID/IPv4|IPv6` per VRRP instance,
//!   interface `org.keepalived.Vrrp1.Instance`: properties `Name` `(s)` and `State`
//!   `(us)` (keepalived's numbers: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT), method
//!   `SendGarp`, signal `VrrpStatusChange(u)` on every transition.
//!
//! As in keepalived, `net_namespace` and `instance` add path elements after
//! `/org/keepalived/Vrrp1`, and an instance without an interface has
//! `dbus_no_interface_name` (default `none`) in its path. Who may call what is the bus's
//! policy (packaging/org.keepalived.Vrrp1.conf: root only, as keepalived 2.4.0+ ships).
//!
//! It runs on a thread of its own with its own small tokio runtime. Nothing here can stop
//! vipd: no bus, a refused connection or a name owned by someone else is logged and the
//! daemon goes on without DBus.

use crate::dumps::{Dumper, Kind};
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::{info, warn};
use vipd_linux::control::ReloadHook;
use vipd_linux::runtime::{Command, Runtime};
use vipd_linux::status::Snapshot;
use vipd_vrrp::engine::State;
use zbus::fdo;
use zbus::object_server::SignalEmitter;

/// keepalived's default service name.
pub const DEFAULT_SERVICE: &str = "org.keepalived.Vrrp1";
const ROOT: &str = "/org/keepalived/Vrrp1";
/// How long connecting and owning the name may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// keepalived's number for a state (`VRRP_STATE_*`), as `State` and `VrrpStatusChange`
/// carry it.
pub fn state_number(state: State) -> u32 {
    match state {
        State::Initialize => 0,
        State::Backup => 1,
        State::Master => 2,
        State::Fault => 3,
    }
}

/// The same for the names `vipd status` shows.
fn state_number_of(name: &str) -> u32 {
    match name {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

/// What the DBus thread is told.
#[derive(Debug)]
pub enum Event {
    Transition { instance: String, state: u32 },
    Reloaded,
}

/// The settings read from global_defs (at start; keepalived does not change them on reload).
#[derive(Debug, Clone)]
pub struct Settings {
    pub service: String,
    pub no_interface_name: String,
    /// The path elements `net_namespace` and `instance` add (each made a valid path element).
    pub prefix: String,
}

impl Settings {
    /// `None` without `enable_dbus`.
    pub fn from_config(g: &vipd_config::model::GlobalDefs) -> Option<Settings> {
        if !g.enable_dbus {
            return None;
        }
        let mut prefix = String::from(ROOT);
        for part in [&g.dumps.net_namespace, &g.dumps.instance]
            .into_iter()
            .flatten()
        {
            prefix.push('/');
            prefix.push_str(&path_element(part));
        }
        Some(Settings {
            service: g
                .dbus_service_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVICE.to_string()),
            no_interface_name: g
                .dbus_no_interface_name
                .clone()
                .unwrap_or_else(|| "none".to_string()),
            prefix,
        })
    }

    fn vrrp_path(&self) -> String {
        format!("{}/Vrrp", self.prefix)
    }

    fn instance_path(&self, interface: &str, vrid: u8, ipv6: bool) -> String {
        let iface = if interface.is_empty() {
            &self.no_interface_name
        } else {
            interface
        };
        format!(
            "{}/Instance/{}/{vrid}/{}",
            self.prefix,
            path_element(iface),
            if ipv6 { "IPv6" } else { "IPv4" }
        )
    }
}

/// As keepalived: every character but A-Z, a-z, 0-9 becomes `_` (DBus allows no other
/// in a path element).
fn path_element(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// What the methods act on.
#[derive(Clone)]
pub struct Context {
    pub status: Arc<Mutex<Snapshot>>,
    pub dumper: Arc<Dumper>,
    pub reload: ReloadHook,
    pub runtime: Arc<Runtime>,
}

/// The DBus thread, from [`start`].
pub struct Dbus {
    tx: UnboundedSender<Option<Event>>,
    thread: Option<JoinHandle<()>>,
}

/// Where transitions and reloads are sent; make it before the thread starts so nothing
/// that happens meanwhile is lost.
pub fn channel() -> (Sender, UnboundedReceiver<Option<Event>>) {
    let (tx, rx) = unbounded_channel();
    (Sender(tx), rx)
}

/// Sends events to the DBus thread (a no-op once it has ended).
#[derive(Clone)]
pub struct Sender(UnboundedSender<Option<Event>>);

impl Sender {
    pub fn send(&self, ev: Event) {
        let _ = self.0.send(Some(ev));
    }
}

/// Starts the DBus thread: it connects, owns the name and serves until [`Dbus::stop`].
pub fn start(
    settings: Settings,
    ctx: Context,
    sender: &Sender,
    rx: UnboundedReceiver<Option<Event>>,
) -> std::io::Result<Dbus> {
    let thread = std::thread::Builder::new()
        .name("vipd-dbus".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    warn!("enable_dbus: {e}; no DBus interface");
                    return;
                }
            };
            rt.block_on(serve(settings, ctx, rx));
        })?;
    Ok(Dbus {
        tx: sender.0.clone(),
        thread: Some(thread),
    })
}

impl Dbus {
    /// Sends `VrrpStopped` and leaves the bus (waits at most a second).
    pub fn stop(mut self) {
        let _ = self.tx.send(None);
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

async fn serve(settings: Settings, ctx: Context, mut rx: UnboundedReceiver<Option<Event>>) {
    // A bus that never answers (a policy refusing vipd the replies) must not leave the
    // thread waiting unheard.
    let conn = match tokio::time::timeout(CONNECT_LIMIT, connect(&settings, &ctx))
        .await
        .unwrap_or_else(|_| {
            Err(zbus::Error::Failure(format!(
                "no answer from the system bus within {CONNECT_LIMIT:?}"
            )))
        }) {
        Ok(c) => c,
        Err(e) => {
            warn!(
                "enable_dbus: {e}; vipd runs without its DBus interface ({})",
                settings.service
            );
            return;
        }
    };
    let mut objects = Objects::new(settings.clone(), ctx.clone(), conn.clone());
    objects.sync().await;
    let request = conn.request_name_with_flags(
        settings.service.as_str(),
        zbus::fdo::RequestNameFlags::DoNotQueue.into(),
    );
    let answer = tokio::time::timeout(CONNECT_LIMIT, request)
        .await
        .unwrap_or_else(|_| {
            Err(zbus::Error::Failure(format!(
                "no answer within {CONNECT_LIMIT:?}"
            )))
        });
    match answer {
        Ok(_) => info!("DBus: {} on the system bus", settings.service),
        Err(e) => {
            warn!(
                "enable_dbus: cannot own `{}` on the system bus: {e}; vipd runs without its DBus interface",
                settings.service
            );
            return;
        }
    }
    // What happened before the connection is in the states signalled next, once each.
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Some(Event::Transition { instance, state }) => objects.record(&instance, state),
            Some(Event::Reloaded) => objects.sync().await,
            None => {
                objects.vrrp_signal("VrrpStopped").await;
                return;
            }
        }
    }
    objects.sync().await;
    objects.vrrp_signal("VrrpStarted").await;
    objects.announce_all().await;
    // Objects also follow a reload whose snapshot came late (published within 100 ms).
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Some(Event::Transition { instance, state })) => {
                    objects.transition(&instance, state).await;
                }
                Some(Some(Event::Reloaded)) => {
                    objects.sync().await;
                    objects.vrrp_signal("VrrpReloaded").await;
                }
                Some(None) | None => break,
            },
            _ = tick.tick() => objects.sync().await,
        }
    }
    objects.vrrp_signal("VrrpStopped").await;
    let _ = conn.release_name(settings.service.as_str()).await;
}

async fn connect(settings: &Settings, ctx: &Context) -> zbus::Result<zbus::Connection> {
    zbus::connection::Builder::system()?
        .serve_at(
            settings.vrrp_path(),
            VrrpObject {
                ctx: ctx.clone(),
                service: settings.service.clone(),
            },
        )?
        .build()
        .await
}

/// The instance objects on the bus, by path.
struct Objects {
    settings: Settings,
    ctx: Context,
    conn: zbus::Connection,
    /// Path → instance name.
    paths: BTreeMap<String, String>,
    /// The state last signalled, by instance name (what `State` answers first: the
    /// status snapshot may be up to 100 ms older).
    states: Arc<Mutex<HashMap<String, u32>>>,
}

impl Objects {
    fn new(settings: Settings, ctx: Context, conn: zbus::Connection) -> Objects {
        Objects {
            settings,
            ctx,
            conn,
            paths: BTreeMap::new(),
            states: Arc::default(),
        }
    }

    /// The objects the status snapshot's instances should have: (path, name).
    fn wanted(&self) -> BTreeMap<String, String> {
        let snap = match self.ctx.status.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        snap.instances
            .iter()
            .map(|i| {
                (
                    self.settings
                        .instance_path(&i.interface, i.vrid, i.detail.ipv6),
                    i.name.clone(),
                )
            })
            .collect()
    }

    /// Adds the objects of new instances, removes those of instances gone.
    async fn sync(&mut self) {
        let wanted = self.wanted();
        let server = self.conn.object_server();
        let gone: Vec<String> = self
            .paths
            .iter()
            .filter(|(p, n)| wanted.get(*p) != Some(*n))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(name) = self.paths.remove(&p) {
                let _ = server.remove::<InstanceObject, _>(p.as_str()).await;
                info!("DBus: removed the object of {name} ({p})");
            }
        }
        // States of instances gone (a deleted instance's last transition included).
        let names: std::collections::HashSet<&String> = wanted.values().collect();
        if let Ok(mut s) = self.states.lock() {
            s.retain(|name, _| names.contains(name));
        }
        for (p, name) in wanted {
            if self.paths.contains_key(&p) {
                continue;
            }
            let obj = InstanceObject {
                name: name.clone(),
                status: self.ctx.status.clone(),
                states: self.states.clone(),
                runtime: self.ctx.runtime.clone(),
                path: p.clone(),
            };
            match server.at(p.as_str(), obj).await {
                Ok(_) => {
                    info!("DBus: object for {name} at {p}");
                    self.paths.insert(p, name);
                }
                Err(e) => warn!("DBus: object for {name} at {p}: {e}"),
            }
        }
    }

    fn path_of(&self, instance: &str) -> Option<String> {
        self.paths
            .iter()
            .find(|(_, n)| n.as_str() == instance)
            .map(|(p, _)| p.clone())
    }

    fn record(&self, instance: &str, state: u32) {
        if let Ok(mut s) = self.states.lock() {
            s.insert(instance.to_string(), state);
        }
    }

    async fn transition(&mut self, instance: &str, state: u32) {
        self.record(instance, state);
        if self.path_of(instance).is_none() {
            self.sync().await;
        }
        match self.path_of(instance) {
            Some(p) => self.status_signal(&p, state).await,
            // A deleted instance's last transition may come after its object went.
            None => tracing::debug!("DBus: no object for {instance}: no VrrpStatusChange"),
        }
    }

    async fn status_signal(&self, path: &str, state: u32) {
        let sent = match SignalEmitter::new(&self.conn, path) {
            Ok(e) => InstanceObject::vrrp_status_change(&e, state).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            warn!("DBus: VrrpStatusChange on {path}: {e}");
        }
    }

    /// keepalived, once on the bus: every instance's state.
    async fn announce_all(&self) {
        for (p, name) in &self.paths {
            let state = instance_state(&self.states, &self.ctx.status, name);
            self.status_signal(p, state).await;
        }
    }

    async fn vrrp_signal(&self, name: &str) {
        let path = self.settings.vrrp_path();
        let sent = match SignalEmitter::new(&self.conn, path.as_str()) {
            Ok(e) => match name {
                "VrrpStarted" => VrrpObject::vrrp_started(&e).await,
                "VrrpReloaded" => VrrpObject::vrrp_reloaded(&e).await,
                _ => VrrpObject::vrrp_stopped(&e).await,
            },
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            warn!("DBus: {name} on {path}: {e}");
        }
    }
}

/// The instance's state: as last signalled, else as the status snapshot has it.
fn instance_state(
    states: &Mutex<HashMap<String, u32>>,
    status: &Mutex<Snapshot>,
    name: &str,
) -> u32 {
    if let Some(n) = states.lock().ok().and_then(|s| s.get(name).copied()) {
        return n;
    }
    let snap = match status.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    snap.instances
        .iter()
        .find(|i| i.name == name)
        .map_or(0, |i| state_number_of(&i.state))
}

impl VrrpObject {
    /// The answer to keepalived's optional instance methods.
    fn refused(&self, method: &str, verb: &str, instead: &str) -> fdo::Error {
        fdo::Error::NotSupported(format!(
            "{method}: vipd ({}) {verb} VRRP instances only from its configuration (keepalived \
             offers this method only when built with --enable-dbus-create-instance); {instead} \
             and call ReloadConfig",
            self.service
        ))
    }
}

/// A signal dump, waited for (keepalived answers once the file is written).
fn dump(dumper: &Dumper, kind: Kind) {
    dumper.signal(kind);
    if !dumper.wait(Duration::from_secs(2)) {
        warn!("DBus: the {kind:?} dump is not written after 2 s; answering anyway");
    }
}

/// `org.keepalived.Vrrp1.Vrrp`. `CreateInstance` / `DestroyInstance` exist in keepalived
/// only when it is built with `--enable-dbus-create-instance` (off by default, and in
/// Debian's package), and even there they only add or remove a DBus object, not a VRRP
/// instance: vipd's objects are its configuration's instances, so both answer
/// `org.freedesktop.DBus.Error.NotSupported` saying so.
struct VrrpObject {
    ctx: Context,
    service: String,
}

#[zbus::interface(name = "org.keepalived.Vrrp1.Vrrp")]
impl VrrpObject {
    /// SIGUSR1's state dump; answers once it is written.
    fn print_data(&self) {
        info!("DBus PrintData: writing the state");
        dump(&self.ctx.dumper, Kind::State);
    }

    /// SIGUSR2's statistics dump.
    fn print_stats(&self) {
        info!("DBus PrintStats: writing the statistics");
        dump(&self.ctx.dumper, Kind::Stats);
    }

    /// The statistics dump; vipd does not reset its counters.
    fn print_stats_clear(&self) {
        warn!("DBus PrintStatsClear: writing the statistics; vipd does not reset its counters");
        dump(&self.ctx.dumper, Kind::Stats);
    }

    /// What SIGHUP does; answers at once (as keepalived), the reload follows.
    fn reload_config(&self) {
        info!("DBus ReloadConfig: reloading the configuration");
        let reload = self.ctx.reload.clone();
        let _ = std::thread::Builder::new()
            .name("vipd-dbus-reload".into())
            .spawn(move || {
                let _ = reload();
            });
    }

    fn create_instance(
        &self,
        iname: String,
        interface: String,
        vrid: u32,
        family: u32,
    ) -> fdo::Result<()> {
        warn!("DBus CreateInstance({iname}, {interface}, {vrid}, {family}) refused");
        Err(self.refused("CreateInstance", "makes", "add a vrrp_instance"))
    }

    fn destroy_instance(&self, iname: String) -> fdo::Result<()> {
        warn!("DBus DestroyInstance({iname}) refused");
        Err(self.refused("DestroyInstance", "removes", "remove the vrrp_instance"))
    }

    #[zbus(signal)]
    async fn vrrp_started(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn vrrp_reloaded(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn vrrp_stopped(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;
}

/// `org.keepalived.Vrrp1.Instance` of one VRRP instance.
struct InstanceObject {
    name: String,
    path: String,
    status: Arc<Mutex<Snapshot>>,
    states: Arc<Mutex<HashMap<String, u32>>>,
    runtime: Arc<Runtime>,
}

#[zbus::interface(name = "org.keepalived.Vrrp1.Instance")]
impl InstanceObject {
    /// One round of gratuitous ARP / unsolicited NA, if MASTER (keepalived sends them
    /// only while its VIPs are set).
    fn send_garp(&self) -> fdo::Result<()> {
        let (tx, rx) = mpsc::channel();
        self.runtime.command(Command::SendGarp {
            instance: self.name.clone(),
            reply: tx,
        });
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Ok(true)) => {
                info!("DBus SendGarp: {}: announcements sent", self.name);
                Ok(())
            }
            Ok(Ok(false)) => {
                info!("DBus SendGarp: {}: not MASTER, nothing sent", self.name);
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(fdo::Error::InvalidArgs(format!(
                "Instance '{}' not found",
                self.path
            ))),
        }
    }

    #[zbus(property)]
    fn name(&self) -> (String,) {
        (self.name.clone(),)
    }

    /// keepalived's number and name of the state.
    #[zbus(property)]
    fn state(&self) -> (u32, String) {
        let n = instance_state(&self.states, &self.status, &self.name);
        let name = match n {
            1 => "BACKUP",
            2 => "MASTER",
            3 => "FAULT",
            _ => "INIT",
        };
        (n, name.to_string())
    }

    #[zbus(signal)]
    async fn vrrp_status_change(emitter: &SignalEmitter<'_>, status: u32) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_keepalived() {
        let mut g = vipd_config::model::GlobalDefs {
            enable_dbus: true,
            ..Default::default()
        };
        let s = Settings::from_config(&g).unwrap();
        assert_eq!(s.service, "org.keepalived.Vrrp1");
        assert_eq!(s.vrrp_path(), "/org/keepalived/Vrrp1/Vrrp");
        assert_eq!(
            s.instance_path("eth0.10", 51, false),
            "/org/keepalived/Vrrp1/Instance/eth0_10/51/IPv4"
        );
        assert_eq!(
            s.instance_path("", 7, true),
            "/org/keepalived/Vrrp1/Instance/none/7/IPv6"
        );
        g.dbus_no_interface_name = Some("no-if".into());
        g.dbus_service_name = Some("org.keepalived.Vrrp1.b".into());
        g.dumps.net_namespace = Some("blue-1".into());
        g.dumps.instance = Some("i2".into());
        let s = Settings::from_config(&g).unwrap();
        assert_eq!(s.service, "org.keepalived.Vrrp1.b");
        assert_eq!(s.vrrp_path(), "/org/keepalived/Vrrp1/blue_1/i2/Vrrp");
        assert_eq!(
            s.instance_path("", 7, true),
            "/org/keepalived/Vrrp1/blue_1/i2/Instance/no_if/7/IPv6"
        );
        g.enable_dbus = false;
        assert!(Settings::from_config(&g).is_none());
    }

    #[test]
    fn state_numbers_as_keepalived() {
        assert_eq!(state_number(State::Initialize), 0);
        assert_eq!(state_number(State::Backup), 1);
        assert_eq!(state_number(State::Master), 2);
        assert_eq!(state_number(State::Fault), 3);
        for (s, n) in [("INIT", 0), ("BACKUP", 1), ("MASTER", 2), ("FAULT", 3)] {
            assert_eq!(state_number_of(s), n);
        }
    }
}

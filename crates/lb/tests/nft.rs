//! The nftables backend against the real kernel, with real TCP traffic, in throw-away
//! network namespaces. Needs root (skips otherwise) and, for a few read-back checks, the
//! `nft` binary (only to *read* state).
//!
//! NAT lab:
//!
//! ```text
//!  client ns                director ns                          server ns s1..sN
//!  eth0 198.51.100.2/24 --- c0 198.51.100.1/24
//!  2001:db8:1::2/64         2001:db8:1::1/64
//!  default via director     lo: VIP 203.0.113.10, 2001:db8:3::10
//!                           br0 192.0.2.1/24 ----- sN --- eth0 192.0.2.(10+N)/24
//!                               2001:db8:2::1/64          2001:db8:2::(10+N)/64
//!                                                         default via director
//! ```
//!
//! DR lab: `vipd_netns::Lan` (one switch): r1 = director (VIP on eth0), r2/r3 = real
//! servers (VIP on lo, arp_ignore=1, arp_announce=2), the client on the same LAN.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vipd_lb::model::{Persistence, SchedFlags};
use vipd_lb::nft::{DestCounter, Nftables};
use vipd_lb::{DataPlane, Dest, Forward, Proto, Sched, Service, ServiceKey, Table};
use vipd_netns::{Lan, LanOptions, Netns};

const VIP4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x10);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SERVER_PORT: u16 = 8080;

fn skip() -> bool {
    vipd_netns::skip_unless_root()
}

fn has_nft() -> bool {
    std::process::Command::new("nft")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------
// The director: an Nftables owned by a thread inside the director's namespace.

enum Cmd {
    Apply(Table, mpsc::Sender<Result<Duration, String>>),
    Clear(mpsc::Sender<Result<(), String>>),
    Counters(mpsc::Sender<Result<Vec<DestCounter>, String>>),
}

struct Director {
    tx: Option<mpsc::Sender<Cmd>>,
    handle: Option<JoinHandle<()>>,
}

impl Director {
    fn start(ns: &Netns) -> Director {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let handle = ns
            .enter_thread(move || {
                let mut nft = match Nftables::open() {
                    Ok(n) => {
                        let _ = ready_tx.send(Ok(()));
                        n
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                for cmd in rx {
                    match cmd {
                        Cmd::Apply(t, r) => {
                            let start = Instant::now();
                            let res = nft.apply(&t).map(|()| start.elapsed());
                            let _ = r.send(res.map_err(|e| format!("{e:#}")));
                        }
                        Cmd::Clear(r) => {
                            let _ = r.send(nft.clear().map_err(|e| format!("{e:#}")));
                        }
                        Cmd::Counters(r) => {
                            let _ = r.send(nft.counters().map_err(|e| format!("{e:#}")));
                        }
                    }
                }
            })
            .expect("director thread");
        ready_rx
            .recv()
            .expect("director thread answers")
            .expect("Nftables::open");
        Director {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    fn try_apply(&self, t: &Table) -> Result<Duration, String> {
        let (r, rx) = mpsc::channel();
        self.tx
            .as_ref()
            .unwrap()
            .send(Cmd::Apply(t.clone(), r))
            .unwrap();
        rx.recv().unwrap()
    }

    fn apply(&self, t: &Table) -> Duration {
        self.try_apply(t).expect("apply")
    }

    fn clear(&self) {
        let (r, rx) = mpsc::channel();
        self.tx.as_ref().unwrap().send(Cmd::Clear(r)).unwrap();
        rx.recv().unwrap().expect("clear")
    }

    fn counters(&self) -> Vec<DestCounter> {
        let (r, rx) = mpsc::channel();
        self.tx.as_ref().unwrap().send(Cmd::Counters(r)).unwrap();
        rx.recv().unwrap().expect("counters")
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real servers: TCP servers that greet with their name and echo lines prefixed by it.

struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Netns, addr: SocketAddr, name: &str) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let name = name.to_string();
        let st = stop.clone();
        let handle = ns
            .enter_thread(move || {
                let l = match TcpListener::bind(addr) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("bind {addr}: {e}")));
                        return;
                    }
                };
                l.set_nonblocking(true).unwrap();
                let _ = ready_tx.send(Ok(()));
                while !st.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => {
                            let name = name.clone();
                            std::thread::spawn(move || handle_conn(c, &name));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
            .expect("server thread");
        ready_rx.recv().unwrap().expect("server listens");
        Server {
            stop,
            handle: Some(handle),
        }
    }
}

fn handle_conn(c: TcpStream, name: &str) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_nodelay(true);
    let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
    let mut w = match c.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    // One write per line (no Nagle stall between the text and its newline).
    if w.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut r = BufReader::new(c);
    let mut line = String::new();
    while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        if w.write_all(format!("{name} {}\n", line.trim_end()).as_bytes())
            .is_err()
        {
            return;
        }
        line.clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients.

/// A TCP connection from `src` (any if None) to `dst`, connect bounded by `timeout`.
fn connect_from(
    src: Option<IpAddr>,
    dst: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: zeroed sockaddr_storage is valid; we fill the family-specific prefix.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match a {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_in fits in sockaddr_storage.
                unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: 0,
                };
                // SAFETY: sockaddr_in6 fits in sockaddr_storage.
                unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }
    let af = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls on a descriptor we own; it is wrapped in a TcpStream
    // (which closes it) right away.
    unsafe {
        let fd = libc::socket(af, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        stream.set_write_timeout(Some(timeout))?; // bounds connect() too (SO_SNDTIMEO)
        if let Some(src) = src {
            let (ss, len) = sockaddr(SocketAddr::new(src, 0));
            if libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let (ss, len) = sockaddr(dst);
        if libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        stream.set_write_timeout(None)?;
        Ok(stream)
    }
}

/// Connects and reads the greeting line (the server's name).
fn fetch_one(src: Option<IpAddr>, dst: SocketAddr) -> Result<String, String> {
    let c = connect_from(src, dst, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut line = String::new();
    BufReader::new(c)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim().to_string())
}

/// `n` sequential connections from namespace `ns`; returns server name → count.
fn fetch_many(
    ns: &Netns,
    src: Option<IpAddr>,
    dst: SocketAddr,
    n: usize,
) -> BTreeMap<String, usize> {
    ns.run(|| {
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let name = fetch_one(src, dst).unwrap_or_else(|e| panic!("connect {dst}: {e}"));
            *m.entry(name).or_insert(0) += 1;
        }
        m
    })
    .unwrap()
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

// ---------------------------------------------------------------------------------------
// Tables.

fn nat_dest(addr: IpAddr, port: u16, weight: u32) -> Dest {
    Dest {
        addr,
        port,
        weight,
        forward: Forward::Nat,
        upper_threshold: 0,
        lower_threshold: 0,
        mac: None,
    }
}

fn service(addr: IpAddr, port: u16, sched: Sched, dests: Vec<Dest>) -> Service {
    Service {
        key: ServiceKey::Addr {
            addr,
            port,
            proto: Proto::Tcp,
        },
        sched,
        flags: SchedFlags::default(),
        forward: dests.first().map(|d| d.forward).unwrap_or(Forward::Nat),
        persistence: None,
        device: None,
        dests,
    }
}

fn table(services: Vec<Service>) -> Table {
    Table { services }
}

// ---------------------------------------------------------------------------------------
// The NAT lab.

struct NatLab {
    servers: Vec<Netns>,
    director: Netns,
    client: Netns,
}

impl NatLab {
    fn new(n: usize) -> NatLab {
        let client = Netns::unique("cl").unwrap();
        let director = Netns::unique("dir").unwrap();
        let servers: Vec<Netns> = (1..=n)
            .map(|i| Netns::unique(&format!("s{i}")).unwrap())
            .collect();
        let nodad = [
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ];
        for ns in servers.iter().chain([&client, &director]) {
            ns.sysctls(&nodad).unwrap();
        }
        director
            .sysctls(&[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
            ])
            .unwrap();
        let mut b = format!(
            "link add c0 type veth peer name eth0 netns {cl}\n\
             link set c0 up\n\
             addr add 198.51.100.1/24 dev c0\n\
             addr add 2001:db8:1::1/64 dev c0 nodad\n\
             addr add {VIP4}/32 dev lo\n\
             addr add {VIP6}/128 dev lo\n\
             link add br0 type bridge\n\
             link set br0 up\n\
             addr add 192.0.2.1/24 dev br0\n\
             addr add 2001:db8:2::1/64 dev br0 nodad\n",
            cl = client.name()
        );
        for (i, s) in servers.iter().enumerate() {
            b += &format!(
                "link add s{n} type veth peer name eth0 netns {ns}\n\
                 link set s{n} master br0\n\
                 link set s{n} up\n",
                n = i + 1,
                ns = s.name()
            );
        }
        director.ip_batch(&b).unwrap();
        client
            .ip_batch(&format!(
                "link set eth0 up\n\
                 addr add {CLIENT4}/24 dev eth0\n\
                 addr add 198.51.100.3/24 dev eth0\n\
                 addr add 198.51.100.4/24 dev eth0\n\
                 addr add 198.51.100.5/24 dev eth0\n\
                 addr add 198.51.100.130/24 dev eth0\n\
                 addr add 2001:db8:1::2/64 dev eth0 nodad\n\
                 route add default via 198.51.100.1\n\
                 route add default via 2001:db8:1::1\n"
            ))
            .unwrap();
        for (i, s) in servers.iter().enumerate() {
            s.ip_batch(&format!(
                "link set eth0 up\n\
                 addr add 192.0.2.{a}/24 dev eth0\n\
                 addr add 2001:db8:2::{a}/64 dev eth0 nodad\n\
                 route add default via 192.0.2.1\n\
                 route add default via 2001:db8:2::1\n",
                a = 11 + i
            ))
            .unwrap();
        }
        NatLab {
            servers,
            director,
            client,
        }
    }

    fn server_v4(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11 + i as u8))
    }

    fn server_v6(&self, i: usize) -> IpAddr {
        format!("2001:db8:2::{}", 11 + i).parse().unwrap()
    }

    /// Starts server `i` (0-based) on both address families, port SERVER_PORT.
    fn serve(&self, i: usize) -> Server {
        Server::start(
            &self.servers[i],
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), SERVER_PORT),
            &format!("s{}", i + 1),
        )
    }

    fn serve_all(&self) -> Vec<Server> {
        (0..self.servers.len()).map(|i| self.serve(i)).collect()
    }

    fn rr_table(&self, sched: Sched, weights: &[u32]) -> Table {
        table(vec![service(
            IpAddr::V4(VIP4),
            80,
            sched,
            weights
                .iter()
                .enumerate()
                .map(|(i, w)| nat_dest(self.server_v4(i), SERVER_PORT, *w))
                .collect(),
        )])
    }
}

fn vip80() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP4), 80)
}

/// A UDP responder that answers every datagram with its name.
struct UdpServer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl UdpServer {
    fn start(ns: &Netns, addr: SocketAddr, name: &str) -> UdpServer {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let name = name.to_string();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = ns
            .enter_thread(move || {
                let s = UdpSocket::bind(addr).expect("udp bind");
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let _ = ready_tx.send(());
                let mut buf = [0u8; 512];
                while !st.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(name.as_bytes(), from);
                    }
                }
            })
            .unwrap();
        ready_rx.recv().unwrap();
        UdpServer {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn nft_tables(ns: &Netns) -> String {
    ns.exec(&["nft", "-j", "list", "tables"])
        .expect("nft -j list tables")
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn nat_round_robin_splits_exactly_and_counts() {
    if skip() {
        return;
    }
    let lab = NatLab::new(3);
    let _srv = lab.serve_all();
    let d = Director::start(&lab.director);
    d.apply(&lab.rr_table(Sched::Rr, &[1, 1, 1]));
    let got = fetch_many(&lab.client, None, vip80(), 30);
    assert_eq!(got, counts(&[("s1", 10), ("s2", 10), ("s3", 10)]));

    let c = d.counters();
    assert_eq!(c.len(), 3, "{c:?}");
    for dc in &c {
        // per connection at least SYN, ACK, FIN, ACK from the client
        assert!(dc.packets >= 40 && dc.bytes >= 40 * 40, "{dc:?}");
        assert_eq!(dc.port, SERVER_PORT);
    }

    // The director's own connections to the VIP are balanced too (output hook), and
    // are counted.
    let got = fetch_many(&lab.director, None, vip80(), 3);
    assert_eq!(got, counts(&[("s1", 1), ("s2", 1), ("s3", 1)]));
    let c2 = d.counters();
    for (a, b) in c.iter().zip(&c2) {
        assert!(b.packets > a.packets, "{a:?} -> {b:?}");
    }

    // A table the backend can't express is refused and the old one stays in place.
    let bad = lab.rr_table(Sched::Wlc, &[1, 1, 1]);
    let err = d.try_apply(&bad).unwrap_err();
    assert!(
        err.contains("virtual_server 203.0.113.10 80") && err.contains("wlc"),
        "{err}"
    );
    let got = fetch_many(&lab.client, None, vip80(), 3);
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn nat_weighted_round_robin_follows_weights() {
    if skip() {
        return;
    }
    let lab = NatLab::new(2);
    let _srv = lab.serve_all();
    let d = Director::start(&lab.director);
    d.apply(&lab.rr_table(Sched::Wrr, &[3, 1]));
    let got = fetch_many(&lab.client, None, vip80(), 40);
    assert_eq!(got, counts(&[("s1", 30), ("s2", 10)]));
}

#[test]
fn nat_removed_and_drained_servers_get_no_new_connections() {
    if skip() {
        return;
    }
    let lab = NatLab::new(3);
    let _srv = lab.serve_all();
    let d = Director::start(&lab.director);
    d.apply(&lab.rr_table(Sched::Rr, &[1, 1, 1]));

    // An established connection, to whichever server.
    let (mut kept, first) = lab
        .client
        .run(|| {
            let c = connect_from(None, vip80(), Duration::from_secs(3)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            (c, line.trim().to_string())
        })
        .unwrap();
    let gone: usize = first[1..].parse::<usize>().unwrap() - 1;

    // Remove that server: new connections split over the other two.
    let mut t = lab.rr_table(Sched::Rr, &[1, 1, 1]);
    t.services[0].dests.remove(gone);
    d.apply(&t);
    let got = fetch_many(&lab.client, None, vip80(), 20);
    let others: Vec<String> = (0..3)
        .filter(|i| *i != gone)
        .map(|i| format!("s{}", i + 1))
        .collect();
    assert_eq!(got, counts(&[(&others[0], 10), (&others[1], 10)]));

    // The established connection still reaches its server (conntrack).
    kept.write_all(b"ping\n").unwrap();
    let mut line = String::new();
    BufReader::new(&mut kept).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("{first} ping"));

    // Drain one of the remaining two (weight 0): it gets nothing new.
    t.services[0].dests[0].weight = 0;
    d.apply(&t);
    let got = fetch_many(&lab.client, None, vip80(), 6);
    assert_eq!(got, counts(&[(&others[1], 6)]));
    // ... but it is still listed with its counters.
    assert_eq!(d.counters().len(), 2);
}

#[test]
fn nat_empty_service_refuses_fast() {
    if skip() {
        return;
    }
    let lab = NatLab::new(1);
    let _srv = lab.serve_all();
    // Sockets on the director itself that traffic to the VIP would reach without vipd.
    let _local = Server::start(&lab.director, vip80(), "director");
    let udp_vip = SocketAddr::new(IpAddr::V4(VIP4), 53);
    let _local_udp = UdpServer::start(&lab.director, udp_vip, "director");
    let d = Director::start(&lab.director);

    let mut udp = service(IpAddr::V4(VIP4), 53, Sched::Rr, vec![]);
    udp.key = ServiceKey::Addr {
        addr: IpAddr::V4(VIP4),
        port: 53,
        proto: Proto::Udp,
    };
    // No destination at all, and only drained ones.
    for dests in [vec![], vec![nat_dest(lab.server_v4(0), SERVER_PORT, 0)]] {
        d.apply(&table(vec![
            service(IpAddr::V4(VIP4), 80, Sched::Rr, dests),
            udp.clone(),
        ]));
        let (tcp, took, udp_res) = lab
            .client
            .run(|| {
                let start = Instant::now();
                let tcp = fetch_one(None, vip80());
                let took = start.elapsed();
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.connect(udp_vip).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                s.send(b"q").unwrap();
                let mut buf = [0u8; 64];
                let udp_res = s
                    .recv(&mut buf)
                    .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
                (tcp, took, udp_res)
            })
            .unwrap();
        let e = tcp.unwrap_err();
        assert!(e.contains("refused"), "{e}");
        assert!(took < Duration::from_millis(500), "{took:?}");
        let e = udp_res.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }

    // With a live server, traffic goes there and not to the director's socket.
    d.apply(&lab.rr_table(Sched::Rr, &[1]));
    assert_eq!(
        fetch_many(&lab.client, None, vip80(), 2),
        counts(&[("s1", 2)])
    );
}

fn client(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)))
}

/// The single server each client address reached, asserting it was always the same.
fn sticky(lab: &NatLab, clients: &[u8], n: usize) -> Vec<String> {
    clients
        .iter()
        .map(|c| {
            let got = fetch_many(&lab.client, client(*c), vip80(), n);
            assert_eq!(got.len(), 1, "client .{c} went to {got:?}");
            got.into_keys().next().unwrap()
        })
        .collect()
}

#[test]
fn nat_persistence_keeps_a_client_on_its_server() {
    if skip() {
        return;
    }
    let lab = NatLab::new(3);
    let _srv = lab.serve_all();
    let d = Director::start(&lab.director);
    let mut t = lab.rr_table(Sched::Rr, &[1, 1, 1]);
    t.services[0].persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        prefix_len: 32,
    });
    d.apply(&t);
    // Each client's first connection takes the next rr slot, the rest follow it.
    let first = sticky(&lab, &[2, 3, 4], 5);
    let mut distinct = first.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{first:?}");
    assert_eq!(sticky(&lab, &[2, 3, 4], 3), first, "persistence held");

    // Remove the server of client .2: .2 moves (and sticks again), .3 and .4 stay.
    let gone: usize = first[0][1..].parse::<usize>().unwrap() - 1;
    t.services[0].dests.remove(gone);
    d.apply(&t);
    let after = sticky(&lab, &[2, 3, 4], 4);
    assert_ne!(after[0], first[0]);
    assert_eq!(after[1..], first[1..]);

    // An unrelated change (a second service) keeps every client where it is.
    let mut t2 = t.clone();
    t2.services.push(service(
        IpAddr::V4(VIP4),
        81,
        Sched::Rr,
        vec![nat_dest(lab.server_v4(0), SERVER_PORT, 1)],
    ));
    d.apply(&t2);
    assert_eq!(sticky(&lab, &[2, 3, 4], 2), after);

    // Granularity /25: .2 and .3 share an entry, .130 is another client.
    t.services[0].persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        prefix_len: 25,
    });
    t.services[0].dests = (0..3)
        .map(|i| nat_dest(lab.server_v4(i), SERVER_PORT, 1))
        .collect();
    d.apply(&t);
    let g = sticky(&lab, &[2, 3, 130, 4], 3);
    assert_eq!(g[0], g[1]);
    assert_eq!(g[0], g[3]);
    assert_ne!(g[0], g[2]);
}

#[test]
fn nat_source_hashing_is_consistent() {
    if skip() {
        return;
    }
    let lab = NatLab::new(3);
    let _srv = lab.serve_all();
    let d = Director::start(&lab.director);
    let t = lab.rr_table(Sched::Sh, &[1, 1, 1]);
    d.apply(&t);
    let clients = [2, 3, 4, 5, 130];
    let first = sticky(&lab, &clients, 4);

    // Re-applying, or changing another service, moves nobody.
    d.apply(&t);
    let mut t2 = t.clone();
    t2.services.push(service(
        IpAddr::V4(VIP4),
        443,
        Sched::Sh,
        vec![nat_dest(lab.server_v4(1), SERVER_PORT, 1)],
    ));
    d.apply(&t2);
    assert_eq!(sticky(&lab, &clients, 2), first);

    // Removing a server moves only its clients.
    let victim = first[0].clone();
    let gone: usize = victim[1..].parse::<usize>().unwrap() - 1;
    let mut t3 = t.clone();
    t3.services[0].dests.remove(gone);
    d.apply(&t3);
    let after = sticky(&lab, &clients, 2);
    for (b, a) in first.iter().zip(&after) {
        if *b == victim {
            assert_ne!(a, b);
        } else {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn nat_ipv6_round_robin() {
    if skip() {
        return;
    }
    let lab = NatLab::new(2);
    let _srv = lab.serve_all();
    let d = Director::start(&lab.director);
    d.apply(&table(vec![service(
        IpAddr::V6(VIP6),
        80,
        Sched::Rr,
        (0..2)
            .map(|i| nat_dest(lab.server_v6(i), SERVER_PORT, 1))
            .collect(),
    )]));
    let got = fetch_many(&lab.client, None, SocketAddr::new(IpAddr::V6(VIP6), 80), 6);
    assert_eq!(got, counts(&[("s1", 3), ("s2", 3)]));
    let c = d.counters();
    assert_eq!(c.len(), 2);
    assert!(c.iter().all(|x| x.packets >= 12), "{c:?}");
}

#[test]
fn dr_on_a_bridged_lan() {
    if skip() {
        return;
    }
    let lan = Lan::new(3, LanOptions::default()).unwrap();
    let vip = vipd_netns::VIP_V4;
    let director = lan.router(1);
    director
        .ip(["addr", "add", &format!("{vip}/32"), "dev", "eth0"])
        .unwrap();
    let mut servers = Vec::new();
    for i in [2, 3] {
        let r = lan.router(i);
        r.sysctls(&[
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.eth0.arp_ignore", "1"),
            ("net.ipv4.conf.eth0.arp_announce", "2"),
        ])
        .unwrap();
        r.ip(["addr", "add", &format!("{vip}/32"), "dev", "lo"])
            .unwrap();
        servers.push(Server::start(
            r,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80),
            &format!("r{i}"),
        ));
    }
    let dest = |i: usize, weight: u32| Dest {
        addr: IpAddr::V4(lan.router_addr_v4(i)),
        port: 80,
        weight,
        forward: Forward::Dr,
        upper_threshold: 0,
        lower_threshold: 0,
        mac: Some(lan.router_mac(i).0),
    };
    let mut svc = service(
        IpAddr::V4(vip),
        80,
        Sched::Wrr,
        vec![dest(2, 3), dest(3, 1)],
    );
    svc.device = Some("eth0".into());
    let d = Director::start(director);
    d.apply(&table(vec![svc.clone()]));

    let vip80 = SocketAddr::new(IpAddr::V4(vip), 80);
    let n = 200;
    let got = lan
        .client()
        .run(|| {
            let mut m = BTreeMap::new();
            for _ in 0..n {
                let c = connect_from(None, vip80, Duration::from_secs(3)).expect("connect");

                c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                let mut name = String::new();
                r.read_line(&mut name).unwrap();
                // The connection works both ways, not just the handshake.
                w.set_nodelay(true).unwrap();
                w.write_all(b"hello\n").unwrap();
                let mut echo = String::new();
                r.read_line(&mut echo).unwrap();
                assert_eq!(echo.trim(), format!("{} hello", name.trim()));
                *m.entry(name.trim().to_string()).or_insert(0usize) += 1;
            }
            m
        })
        .unwrap();
    let r2 = got.get("r2").copied().unwrap_or(0);
    let r3 = got.get("r3").copied().unwrap_or(0);
    assert_eq!(r2 + r3, n, "{got:?}");
    // 3:1 over 200 flows: expect 150, binomial sd ~6.
    assert!((125..=175).contains(&r2), "{got:?}");

    let c = d.counters();
    assert_eq!(c.len(), 2, "{c:?}");
    // at least SYN, ACK, data, FIN per connection
    assert!(
        c[0].packets >= 4 * r2 as u64 && c[1].packets >= 4 * r3 as u64,
        "{c:?} {got:?}"
    );

    let fetch = |n: usize| {
        lan.client()
            .run(|| {
                (0..n)
                    .map(|_| fetch_one(None, vip80).unwrap())
                    .collect::<Vec<_>>()
            })
            .unwrap()
    };
    // Drained to r3 only.
    svc.dests[0].weight = 0;
    d.apply(&table(vec![svc.clone()]));
    let got = fetch(10);
    assert!(got.iter().all(|n| n == "r3"), "{got:?}");

    // Persistence: one client, many flows, one server (flow hashing alone would split
    // 20 flows 1:1).
    svc.dests[0].weight = 1;
    svc.persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        prefix_len: 32,
    });
    d.apply(&table(vec![svc.clone()]));
    let got = fetch(20);
    assert!(got.iter().all(|n| *n == got[0]), "{got:?}");
    // Its server leaves: the client is rescheduled (its entry is forgotten) and sticks.
    let gone = if got[0] == "r2" { 0 } else { 1 };
    let first = got[0].clone();
    svc.dests.remove(gone);
    d.apply(&table(vec![svc]));
    let got = fetch(5);
    assert!(got.iter().all(|n| *n != first), "{got:?}");
}

#[test]
fn clear_and_open_remove_the_tables() {
    if skip() {
        return;
    }
    if !has_nft() {
        eprintln!("skipped: needs the nft binary to read tables back");
        return;
    }
    let ns = Netns::unique("clr").unwrap();
    ns.ip(["link", "add", "d0", "type", "veth", "peer", "name", "d1"])
        .unwrap();
    ns.ip(["link", "set", "d0", "up"]).unwrap();
    let v4 = IpAddr::V4(VIP4);
    let mut dr = service(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
        80,
        Sched::Rr,
        vec![Dest {
            forward: Forward::Dr,
            mac: Some([2, 0, 0, 0, 0, 1]),
            ..nat_dest(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)), 80, 1)
        }],
    );
    dr.device = Some("d0".into());
    dr.persistence = Some(Persistence {
        timeout: Duration::from_secs(60),
        prefix_len: 24,
    });
    let mut persistent = service(
        v4,
        80,
        Sched::Wrr,
        vec![
            nat_dest("192.0.2.11".parse().unwrap(), 80, 2),
            nat_dest("192.0.2.12".parse().unwrap(), 0, 1),
        ],
    );
    persistent.persistence = Some(Persistence {
        timeout: Duration::from_secs(600),
        prefix_len: 24,
    });
    let mut fwmark = service(
        v4,
        0,
        Sched::Mh,
        vec![nat_dest("192.0.2.13".parse().unwrap(), 0, 1)],
    );
    fwmark.key = ServiceKey::Fwmark {
        mark: 7,
        family: vipd_lb::Family::V4,
    };
    fwmark.flags.port = true;
    let mut v6 = service(
        IpAddr::V6(VIP6),
        0,
        Sched::Sh,
        vec![nat_dest("2001:db8::11".parse().unwrap(), 80, 1)],
    );
    v6.persistence = persistent.persistence;
    let empty = service(v4, 443, Sched::Dh, vec![]);
    let mut dr6 = service(
        IpAddr::V6("2001:db8::100".parse().unwrap()),
        443,
        Sched::Wrr,
        vec![Dest {
            forward: Forward::Dr,
            mac: Some([2, 0, 0, 0, 0, 2]),
            ..nat_dest("2001:db8::12".parse().unwrap(), 443, 1)
        }],
    );
    dr6.device = Some("d0".into());
    let t = table(vec![persistent, fwmark, v6, empty, dr, dr6]);
    let d = Director::start(&ns);
    d.apply(&t);
    // nft (which older versions abort on rule shapes they cannot print) reads it all.
    if let Err(e) = ns.exec(&["nft", "list", "ruleset"]) {
        // Say which chain nft chokes on.
        for fam in ["ip", "ip6", "netdev"] {
            for c in [
                "pre", "out", "post", "in_d0", "svc1", "svc2", "svc3", "svc4", "svc5", "svc6",
            ] {
                if let Err(e) = ns.exec(&["nft", "list", "chain", fam, "vipd", c]) {
                    eprintln!("{fam} {c}: {e}");
                }
            }
        }
        panic!("{e}");
    }
    let listed = nft_tables(&ns);
    for fam in ["\"ip\"", "\"ip6\"", "\"netdev\""] {
        assert!(
            listed.contains(&format!("\"family\": {fam}, \"name\": \"vipd\"")),
            "{fam} vipd missing: {listed}"
        );
    }
    d.clear();
    assert!(!nft_tables(&ns).contains("vipd"), "{}", nft_tables(&ns));
    d.clear(); // no-op when absent

    // A "crash": tables left behind are removed by the next open().
    d.apply(&t);
    drop(d);
    assert!(nft_tables(&ns).contains("vipd"));
    let d = Director::start(&ns);
    assert!(!nft_tables(&ns).contains("vipd"), "{}", nft_tables(&ns));
    drop(d);
}

/// `cargo test -p vipd-lb --test nft apply_timings -- --nocapture` prints the numbers.
#[test]
fn apply_timings() {
    if skip() {
        return;
    }
    let ns = Netns::unique("tim").unwrap();
    let d = Director::start(&ns);
    let mut report = Vec::new();
    // The same sequence through the pure planner alone, to split planning from netlink.
    let mut ids = vipd_lb::nft::plan::Ids::default();
    let mut time = |what: &str, t: &Table| {
        let start = Instant::now();
        let _ = vipd_lb::nft::plan::build(t, &mut ids);
        let plan = start.elapsed();
        let took = d.apply(t);
        report.push(format!(
            "{what:<56} {:>9.2} ms  (planning {:>8.2} ms)",
            took.as_secs_f64() * 1e3,
            plan.as_secs_f64() * 1e3
        ));
        took
    };

    // Three services.
    let three = |w: u32| {
        table(
            (0..3u16)
                .map(|i| {
                    service(
                        IpAddr::V4(VIP4),
                        80 + i,
                        if i == 1 { Sched::Sh } else { Sched::Wrr },
                        (0..4u8)
                            .map(|j| {
                                nat_dest(
                                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + j)),
                                    8080,
                                    if j == 0 { w } else { 1 },
                                )
                            })
                            .collect(),
                    )
                })
                .collect(),
        )
    };
    time("3 services x 4 dests: create", &three(1));
    time("3 services x 4 dests: same table again", &three(1));
    let small = time("3 services x 4 dests: one weight changed", &three(2));
    time("3 services x 4 dests: changed back", &three(1));

    // One service, 10,000 destinations (documentation addresses x ports).
    let big = |sched: Sched, w0: u32, n: usize| {
        let nets = [[192u8, 0, 2], [198, 51, 100], [203, 0, 113]];
        table(vec![service(
            IpAddr::V4(VIP4),
            8000,
            sched,
            (0..n)
                .map(|k| {
                    let net = nets[k % 3];
                    let host = 1 + ((k / 3) % 250) as u8;
                    let port = 10000 + (k / 750) as u16;
                    nat_dest(
                        IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], host)),
                        port,
                        if k == 0 { w0 } else { 1 },
                    )
                })
                .collect(),
        )])
    };
    time(
        "1 service x 10,000 dests rr: create (10,000 slots)",
        &big(Sched::Rr, 1, 10_000),
    );
    time(
        "1 service x 10,000 dests rr: same table again",
        &big(Sched::Rr, 1, 10_000),
    );
    time(
        "1 service x 10,000 dests rr: one weight changed",
        &big(Sched::Rr, 2, 10_000),
    );
    time(
        "1 service x 10,000 dests rr: one dest removed",
        &big(Sched::Rr, 2, 9_999),
    );
    time(
        "1 service x 10,000 dests sh: replace rr (80,021 slots)",
        &big(Sched::Sh, 1, 10_000),
    );
    time(
        "1 service x 10,000 dests sh: one weight changed",
        &big(Sched::Sh, 2, 10_000),
    );
    time(
        "1 service x 10,000 dests sh: one dest removed",
        &big(Sched::Sh, 2, 9_999),
    );
    time("back to 3 services", &three(1));
    eprintln!(
        "nftables apply timings ({} build; total includes planning, encoding and the kernel):",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for l in &report {
        eprintln!("  {l}");
    }
    // Generous bound (debug build, shared CI machines): the point is the printout.
    assert!(small < Duration::from_millis(250), "{small:?}");
}

//! Real-server health checkers for vipd, keepalived-compatible (`keepalived.conf(5)`):
//! HTTP_GET, SSL_GET, TCP_CHECK, UDP_CHECK, DNS_CHECK, SMTP_CHECK, PING_CHECK,
//! MISC_CHECK, FILE_CHECK and BFD_CHECK.
//!
//! * [`sched`]: the sans-IO scheduler (delay_loop, retry, delay_before_retry, warmup
//!   spread, alpha, dynamic weights, ha_suspend), tested with virtual time;
//! * [`spec`]: config → checker specs (inherited timing, defaults, errors naming the
//!   keyword and line for anything that cannot be honoured);
//! * [`probe`]: the asynchronous probes;
//! * [`runner`]: [`Checkers`], the scheduler and probes on a thread of their own.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! # let cfg = vipd_config::Config::default();
//! let (tx, rx) = std::sync::mpsc::channel();
//! let mut checkers = vipd_check::Checkers::start(
//!     &cfg.virtual_servers,
//!     &vipd_check::Globals::from_config(&cfg),
//!     vipd_check::StartOptions::default(),
//!     tx,
//! )?;
//! for h in checkers.take_initial_health() { /* program the data plane */ }
//! while let Ok(change) = rx.recv() { /* vs, rs, up, weight, reason */ }
//! checkers.stop();
//! # Ok(()) }
//! ```

//! # Differences from keepalived
//!
//! * HTTP_GET / SSL_GET: a probe checks every `url` (one connection each) and
//!   `connect_timeout` bounds each URL's whole exchange (connect, request, response).
//!   Without `fast_recovery` a down checker needs one fully successful probe per URL,
//!   `delay_loop` apart, to come up (keepalived checks one URL per step; the time to
//!   recover is the same). `regex` is Rust `regex` syntax, not PCRE2 (look-around and
//!   back-references are refused at start). Without `digest` or `regex` only the
//!   response head is read (the connection is closed after it, so a server that keeps
//!   it open is not waited for); bodies are read up to 4 MiB (Content-Length, chunked
//!   or up to the close). A response head over 64 KiB fails. Default Host: the
//!   address, with `:port` unless it is 80 (443 for SSL_GET); User-Agent
//!   `KeepAliveClient`.
//! * On the wire (HTTP_GET, TCP_CHECK): the handshake's last ACK is sent with the
//!   request (TCP_CHECK: with the FIN), one packet fewer; an HTTP_GET connection whose
//!   server has closed its side already is closed with RST instead of FIN, so servers
//!   keep no TIME_WAIT socket per check (HAProxy's checks do the same). A server that
//!   has not closed gets a FIN as with keepalived.
//! * SSL_GET never verifies the server certificate ([`probe::http::AcceptAnyCert`]).
//! * FILE_CHECK reads its file every second instead of watching it with inotify.
//! * PING_CHECK falls back to a raw socket when ping sockets are not allowed; it
//!   does not change `net.ipv4.ping_group_range`.
//! * MISC_CHECK: `misc_timeout` defaults to `delay_loop`; a `connect_timeout` in its
//!   block is refused. With `misc_dynamic`, exit 0 restores the configured weight.
//! * BFD_CHECK follows the events the daemon passes to [`Checkers::bfd`] (keepalived's:
//!   Up on entering Up, down on leaving it); the last one is re-applied every second.
//! * Unknown or unsupported checker options are refused with the keyword and line;
//!   [`Checkers`] raises the soft open-files limit towards the hard one when the
//!   checkers need more descriptors than it allows.

pub mod probe;
pub mod runner;
pub mod sched;
pub mod spec;

pub use runner::{CheckerKey, CheckerStatus, Checkers, LastProbe, StartOptions};
pub use sched::{Action, CheckId, HealthChange, Outcome, Scheduler};
pub use spec::{Globals, SpecError, SpecErrors};

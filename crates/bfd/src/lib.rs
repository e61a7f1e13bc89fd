//! vipd's BFD protocol core, free of I/O, in the shape of `vipd-vrrp`.
//!
//! * [`wire`] encodes and decodes the BFD Control packet (RFC 5880 §4.1), including a
//!   parsed authentication section, and never panics whatever the bytes
//!   ([`wire::decode`] is the pure entry point for fuzzing).
//! * [`engine`] is one BFD session in asynchronous mode (RFC 5880 §6): the runtime feeds
//!   received packets, configuration changes and the passage of time, each with the
//!   current time in microseconds, and drains [`engine::Action`]s (packets to send,
//!   state changes). [`engine::Session::poll_timeout`] says when it wants
//!   [`engine::Session::handle_timeout`] next. It never reads a clock, opens a socket,
//!   draws entropy or blocks: the transmit jitter comes from a seeded generator in the
//!   configuration, so runs are reproducible.
//!
//! What the IO layer must do around it (RFC 5881 / RFC 5883): send from one UDP source
//! port of [`SOURCE_PORTS`] per session to [`engine::Hop::dst_port`] (3784 single hop,
//! 4784 multihop) with TTL / hop limit [`engine::SessionConfig::tx_ttl`]; report the
//! received TTL / hop limit in [`engine::RxMeta`]; demultiplex received packets to
//! sessions by Your Discriminator, or by addresses when it is zero
//! ([`wire::ControlPacket::your_discriminator`]), counting unmatched packets with
//! [`DropReason::NoSession`] on whatever session set it keeps.
//!
//! Not implemented: demand mode (never requested by us; a peer's demand request is
//! honoured as RFC 5880 §6.8.7 requires), the echo function (Required Min Echo RX
//! Interval is sent as 0), and authentication — as in keepalived 2.4.3, which has none:
//! packets with the A bit are dropped and counted ([`DropReason::Authenticated`]).

pub mod engine;
pub mod wire;

pub use engine::{Action, Hop, RxMeta, Session, SessionConfig};
pub use wire::{ControlPacket, Diagnostic, DropReason, State};

/// UDP destination port of single-hop BFD control packets (RFC 5881 §4).
pub const PORT_SINGLE_HOP: u16 = 3784;
/// UDP destination port of multihop BFD control packets (RFC 5883 §5).
pub const PORT_MULTI_HOP: u16 = 4784;
/// Source ports a session's packets must come from (RFC 5881 §4, RFC 5883 §5): one
/// port for the life of the session.
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// TTL / hop limit of single-hop packets, sent and required on receipt (RFC 5881 §5).
pub const SINGLE_HOP_TTL: u8 = 255;

/// Pick a session's source port from [`SOURCE_PORTS`] given any random number.
pub fn source_port(random: u32) -> u16 {
    let span = u32::from(*SOURCE_PORTS.end() - *SOURCE_PORTS.start()) + 1;
    *SOURCE_PORTS.start() + (random % span) as u16
}

/// Every port of [`SOURCE_PORTS`] once, starting at [`source_port`]`(random)` and
/// wrapping: the order in which the IO layer tries to bind a session's socket (a port
/// in use is skipped, as keepalived does).
pub fn source_ports(random: u32) -> impl Iterator<Item = u16> {
    let start = u32::from(*SOURCE_PORTS.start());
    let span = u32::from(*SOURCE_PORTS.end()) - start + 1;
    let first = u32::from(source_port(random)) - start;
    (0..span).map(move |k| (start + (first + k) % span) as u16)
}

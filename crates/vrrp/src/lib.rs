//! vipd's VRRP protocol core, free of I/O.
//!
//! * [`wire`] encodes and decodes VRRPv2/v3 adverts, gratuitous ARP and unsolicited
//!   neighbour advertisements, byte for byte, with no sockets involved.
//! * [`engine`] is the RFC 3768 / RFC 5798 (RFC 9568) state machine of one virtual
//!   router: it takes events (a received packet, the passage of time, a fault, a
//!   shutdown) plus the current time and answers with [`engine::Action`]s for the
//!   runtime to carry out. It never reads a clock, opens a socket or blocks, which is
//!   what lets `vipd-sim` run whole clusters in virtual time.

pub mod engine;
pub mod timing;
pub mod wire;

pub use engine::{Action, Event, Instance, InstanceConfig, PeerTakeover, State, TransitionReason};
pub use wire::{DropReason, Family, Version};

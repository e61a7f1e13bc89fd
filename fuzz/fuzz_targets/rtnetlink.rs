//! rtnetlink replies and events as vipd reads them from the kernel (crates/linux):
//! `netlink::messages` (the walk every receive loop uses: request acks, address and
//! neighbour dumps, link events), the netlink-packet-route decoder under it, and what
//! vipd keeps of each message: `ack_result`, `kernel_address`, `neighbour`,
//! `linkwatch::link_event`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use vipd_linux::{linkwatch, netlink};

/// `netlink::messages` contains panics of netlink-packet-route (they become an `Err`);
/// libfuzzer-sys's panic hook would abort on them before they are caught. A panic that
/// escapes the target still aborts: libfuzzer-sys catches it and calls abort.
fn contain_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    contain_decoder_panics();
    let mut walked = 0usize;
    for m in netlink::messages(data) {
        let Ok(m) = m else { break };
        walked += 1;
        assert!(walked <= data.len() / 4 + 1, "the walk must advance");
        let _ = linkwatch::link_event(&m.payload);
        match &m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => {
                if let Some(k) = netlink::kernel_address(a) {
                    assert_eq!(k.ifindex, a.header.index);
                }
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) => {
                let _ = netlink::neighbour(n);
            }
            NetlinkPayload::Error(e) => {
                let r = netlink::ack_result(e);
                assert_eq!(r.is_ok(), e.code.is_none());
                assert!(
                    r.err().is_none_or(|errno| errno > 0),
                    "errno must be positive"
                );
            }
            _ => {}
        }
    }
});

//! BFD Control packets (`vipd_bfd::wire::decode`, every packet the BFD thread reads):
//! any bytes decode or are dropped with a reason, never a panic; a packet that decodes
//! encodes back to the same packet, and the discriminator peek agrees with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd_bfd::wire;

fuzz_target!(|data: &[u8]| {
    let peek = wire::peek_your_discriminator(data);
    if let Ok(p) = wire::decode(data) {
        assert_eq!(peek, Some(p.your_discriminator));
        assert_eq!(wire::decode(&p.encode()), Ok(p));
    }
});

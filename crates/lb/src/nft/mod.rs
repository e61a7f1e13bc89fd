//! nftables backend (being written).

//! IPVS backend (being written).

//! Desired forwarding table (being written).

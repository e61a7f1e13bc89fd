//! Health checkers (being written).

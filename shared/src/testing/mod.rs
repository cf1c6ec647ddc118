//! What every backend of a port must prove (feature `testing`): [`contract`] for state stores.

pub mod contract;

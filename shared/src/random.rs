//! The pipeline's random draws (backoff jitter, unique object-name suffixes), from one
//! generator per thread that a test can seed: the deterministic simulation runs each
//! history on one thread and seeds it, so a seed replays the same history.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;

thread_local! {
    static RNG: RefCell<StdRng> = RefCell::new(StdRng::from_entropy());
}

/// Makes this thread's draws repeat from `seed` on.
pub fn seed(seed: u64) {
    RNG.with(|r| *r.borrow_mut() = StdRng::seed_from_u64(seed));
}

pub fn u64() -> u64 {
    RNG.with(|r| r.borrow_mut().gen())
}

pub fn u32() -> u32 {
    RNG.with(|r| r.borrow_mut().gen())
}

//! Politeness towards remote servers: per-source limits on requests in flight and requests
//! per second that hold across every harvester invocation, not only inside one process.
//!
//! Limits are opt-in per source (`options.max_in_flight`, `options.requests_per_second`):
//! the deployment already bounds a source to `MaximumConcurrency × batch concurrency` requests
//! at once, and a shared limit costs state-store writes per request. A request that cannot get
//! a slot within its wait budget fails with `THROTTLED` (retryable), so its message comes back
//! later through the queue's backoff instead of holding a Lambda.
//!
//! [`crate::aws::dynamodb`] keeps the slots in the state table (leases that expire, so a
//! crashed invocation cannot hold a slot forever); [`MemoryGate`] does the same in one process.

use crate::ports::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source's limits; `None` = no shared limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_in_flight: Option<u32>,
    pub requests_per_second: Option<u32>,
}

impl From<&crate::model::SourceOptions> for Limits {
    fn from(o: &crate::model::SourceOptions) -> Limits {
        Limits {
            max_in_flight: o.max_in_flight,
            requests_per_second: o.requests_per_second,
        }
    }
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.max_in_flight.is_none() && self.requests_per_second.is_none()
    }
}

/// Held while a request is in flight; hand it back to [`RequestGate::release`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permit {
    pub source_id: String,
    /// The in-flight slot held, if the source limits requests in flight.
    pub slot: Option<u32>,
    /// Identifies this holder, so only it can release the slot.
    pub token: String,
}

/// One attempt to pass the gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted(Permit),
    /// No slot or no rate budget right now; try again after this long.
    Wait(Duration),
}

/// The shared state behind the limits. `try_acquire` takes one slot and one unit of this
/// second's rate budget, or neither.
#[async_trait]
pub trait RequestGate: Send + Sync {
    async fn try_acquire(
        &self,
        source_id: &str,
        limits: &Limits,
        lease: Duration,
    ) -> Result<Admission, StoreError>;
    async fn release(&self, permit: &Permit) -> Result<(), StoreError>;
}

/// Waits for admission up to `budget`; `Ok(None)` when the budget ran out.
pub async fn acquire(
    gate: &dyn RequestGate,
    source_id: &str,
    limits: &Limits,
    lease: Duration,
    budget: Duration,
) -> Result<Option<Permit>, StoreError> {
    let deadline = Instant::now() + budget;
    loop {
        match gate.try_acquire(source_id, limits, lease).await? {
            Admission::Admitted(permit) => return Ok(Some(permit)),
            Admission::Wait(wait) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                // Jitter, so waiting invocations do not retry in lockstep.
                let jitter = Duration::from_millis(rand::random::<u64>() % 50);
                tokio::time::sleep((wait + jitter).min(deadline - now)).await;
            }
        }
    }
}

pub(crate) fn epoch_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Until the next whole second, when a new rate budget opens.
pub(crate) fn until_next_second() -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()))
}

pub(crate) fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The gate for one process: the same rules as the shared one, in memory.
#[derive(Default)]
pub struct MemoryGate {
    state: Mutex<MemoryGateState>,
}

#[derive(Default)]
struct MemoryGateState {
    /// (source, slot) → (holder, lease end).
    slots: HashMap<(String, u32), (String, Instant)>,
    /// (source, epoch second) → requests admitted in it.
    rate: HashMap<(String, u64), u32>,
}

#[async_trait]
impl RequestGate for MemoryGate {
    async fn try_acquire(
        &self,
        source_id: &str,
        limits: &Limits,
        lease: Duration,
    ) -> Result<Admission, StoreError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let second = epoch_second();
        s.rate.retain(|(_, sec), _| *sec + 2 >= second);
        if let Some(rps) = limits.requests_per_second {
            if s.rate
                .get(&(source_id.to_string(), second))
                .copied()
                .unwrap_or(0)
                >= rps
            {
                return Ok(Admission::Wait(until_next_second()));
            }
        }
        let token = token();
        let slot = match limits.max_in_flight {
            None => None,
            Some(max) => {
                let free = (0..max).find(|i| {
                    s.slots
                        .get(&(source_id.to_string(), *i))
                        .is_none_or(|(_, until)| *until < now)
                });
                match free {
                    Some(i) => {
                        s.slots
                            .insert((source_id.to_string(), i), (token.clone(), now + lease));
                        Some(i)
                    }
                    None => return Ok(Admission::Wait(Duration::from_millis(20))),
                }
            }
        };
        if limits.requests_per_second.is_some() {
            *s.rate.entry((source_id.to_string(), second)).or_default() += 1;
        }
        Ok(Admission::Admitted(Permit {
            source_id: source_id.to_string(),
            slot,
            token,
        }))
    }

    async fn release(&self, permit: &Permit) -> Result<(), StoreError> {
        if let Some(slot) = permit.slot {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let key = (permit.source_id.clone(), slot);
            if s.slots.get(&key).is_some_and(|(t, _)| *t == permit.token) {
                s.slots.remove(&key);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_limited_released_by_their_holder_only_and_leases_expire() {
        let gate = MemoryGate::default();
        let limits = Limits {
            max_in_flight: Some(2),
            requests_per_second: None,
        };
        let lease = Duration::from_millis(200);
        let a = gate.try_acquire("s", &limits, lease).await.unwrap();
        let b = gate.try_acquire("s", &limits, lease).await.unwrap();
        assert!(matches!(
            gate.try_acquire("s", &limits, lease).await.unwrap(),
            Admission::Wait(_)
        ));
        assert!(
            matches!(
                gate.try_acquire("other", &limits, lease).await.unwrap(),
                Admission::Admitted(_)
            ),
            "limits are per source"
        );
        let Admission::Admitted(a) = a else { panic!() };
        let stranger = Permit {
            token: "not-mine".into(),
            ..a.clone()
        };
        gate.release(&stranger).await.unwrap();
        assert!(matches!(
            gate.try_acquire("s", &limits, lease).await.unwrap(),
            Admission::Wait(_)
        ));
        gate.release(&a).await.unwrap();
        assert!(matches!(
            gate.try_acquire("s", &limits, lease).await.unwrap(),
            Admission::Admitted(_)
        ));
        // `b` is never released (a crashed holder): its lease runs out.
        let Admission::Admitted(_) = b else { panic!() };
        tokio::time::sleep(lease + Duration::from_millis(20)).await;
        assert!(matches!(
            gate.try_acquire("s", &limits, lease).await.unwrap(),
            Admission::Admitted(_)
        ));
    }

    #[tokio::test]
    async fn the_rate_budget_opens_again_each_second() {
        let gate = MemoryGate::default();
        let limits = Limits {
            max_in_flight: None,
            requests_per_second: Some(3),
        };
        tokio::time::sleep(until_next_second()).await;
        let lease = Duration::from_secs(1);
        for _ in 0..3 {
            assert!(matches!(
                gate.try_acquire("s", &limits, lease).await.unwrap(),
                Admission::Admitted(_)
            ));
        }
        let Admission::Wait(wait) = gate.try_acquire("s", &limits, lease).await.unwrap() else {
            panic!("a fourth request in the same second is admitted")
        };
        assert!(wait <= Duration::from_secs(1));
        let started = Instant::now();
        let permit = acquire(&gate, "s", &limits, lease, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(permit.is_some());
        assert!(started.elapsed() >= wait.saturating_sub(Duration::from_millis(5)));
        assert_eq!(
            acquire(
                &gate,
                "s",
                &Limits {
                    max_in_flight: Some(0),
                    requests_per_second: None
                },
                lease,
                Duration::from_millis(50)
            )
            .await
            .unwrap(),
            None,
            "a budget that runs out gives up"
        );
    }
}

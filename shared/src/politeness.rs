//! Politeness towards remote servers: per-source limits on requests in flight and requests
//! per second that hold across every harvester invocation, not only inside one process.
//!
//! Limits are opt-in per source (`options.max_in_flight`, `options.requests_per_second`):
//! the deployment already bounds a source to `MaximumConcurrency × batch concurrency` requests
//! at once, and a shared limit costs state-store writes per request. A request that cannot get
//! a slot within its wait budget fails with `THROTTLED` (retryable), so its message comes back
//! later through the queue's backoff instead of holding a Lambda.
//!
//! A rate is kept as a pace, not as a count per calendar second: each request reserves a send
//! time `1/rate` after the previous one's (or now, if the source has been idle) and sleeps
//! until then. A count per second lets `rate` requests go in the last milliseconds of one
//! second and `rate` more in the first of the next, twice the rate within one second as the
//! server sees it, which a server limiting by leaky bucket (nginx `limit_req`) answers with
//! 503s. A request reserves at most [`PACE_HORIZON`] ahead, so a queue of waiting invocations
//! does not book the future.
//!
//! [`crate::aws::gate`] keeps the slots and the pace in the state table (leases that expire, so
//! a crashed invocation cannot hold a slot forever); [`MemoryGate`] does the same in one
//! process.

use crate::ports::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
// Tokio's clock: the same as std's in a deployment, virtual in the simulation.
use tokio::time::Instant;

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
    /// How long to wait, from admission, for this request's place in the source's pace.
    pub delay: Duration,
}

/// One attempt to pass the gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted(Permit),
    /// No slot, or no place in the pace within reach; try again after this long.
    Wait(Duration),
}

/// The shared state behind the limits. `try_acquire` takes one slot and a place in the pace at
/// most `max_delay` ahead, or neither.
#[async_trait]
pub trait RequestGate: Send + Sync {
    async fn try_acquire(
        &self,
        source_id: &str,
        limits: &Limits,
        lease: Duration,
        max_delay: Duration,
    ) -> Result<Admission, StoreError>;
    async fn release(&self, permit: &Permit) -> Result<(), StoreError>;
}

/// The furthest ahead a request reserves its place in a source's pace.
pub const PACE_HORIZON: Duration = Duration::from_secs(1);

/// Waits for admission, and then for the request's place in the pace, up to `budget`;
/// `Ok(None)` when the budget ran out.
pub async fn acquire(
    gate: &dyn RequestGate,
    source_id: &str,
    limits: &Limits,
    lease: Duration,
    budget: Duration,
) -> Result<Option<Permit>, StoreError> {
    let deadline = Instant::now() + budget;
    loop {
        let max_delay = deadline
            .saturating_duration_since(Instant::now())
            .min(PACE_HORIZON);
        match gate
            .try_acquire(source_id, limits, lease, max_delay)
            .await?
        {
            Admission::Admitted(permit) => {
                tokio::time::sleep(permit.delay).await;
                return Ok(Some(permit));
            }
            Admission::Wait(wait) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                // Jitter, so waiting invocations do not retry in lockstep.
                let jitter = Duration::from_millis(crate::random::u64() % 50);
                tokio::time::sleep((wait + jitter).min(deadline - now)).await;
            }
        }
    }
}

/// The time between two requests' sends at `per_second`. 5% wider than `1/per_second`:
/// requests reach the server a few milliseconds after they leave, unevenly, and two that
/// arrive closer than the interval would put `per_second + 1` in one second at the server.
pub fn pace_interval(per_second: u32) -> Duration {
    Duration::from_micros(1_050_000 / u64::from(per_second.max(1)))
}

pub(crate) fn token() -> String {
    format!("{:016x}", crate::random::u64())
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
    /// source → when its next request may be sent.
    next_send: HashMap<String, Instant>,
}

#[async_trait]
impl RequestGate for MemoryGate {
    async fn try_acquire(
        &self,
        source_id: &str,
        limits: &Limits,
        lease: Duration,
        max_delay: Duration,
    ) -> Result<Admission, StoreError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let next_send = s.next_send.get(source_id).copied().unwrap_or(now).max(now);
        let delay = next_send - now;
        if let Some(rps) = limits.requests_per_second {
            if delay > max_delay {
                return Ok(Admission::Wait(pace_interval(rps)));
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
        let delay = match limits.requests_per_second {
            Some(rps) => {
                s.next_send
                    .insert(source_id.to_string(), next_send + pace_interval(rps));
                delay
            }
            None => Duration::ZERO,
        };
        Ok(Admission::Admitted(Permit {
            source_id: source_id.to_string(),
            slot,
            token,
            delay,
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
        let a = gate
            .try_acquire("s", &limits, lease, PACE_HORIZON)
            .await
            .unwrap();
        let b = gate
            .try_acquire("s", &limits, lease, PACE_HORIZON)
            .await
            .unwrap();
        assert!(matches!(
            gate.try_acquire("s", &limits, lease, PACE_HORIZON)
                .await
                .unwrap(),
            Admission::Wait(_)
        ));
        assert!(
            matches!(
                gate.try_acquire("other", &limits, lease, PACE_HORIZON)
                    .await
                    .unwrap(),
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
            gate.try_acquire("s", &limits, lease, PACE_HORIZON)
                .await
                .unwrap(),
            Admission::Wait(_)
        ));
        gate.release(&a).await.unwrap();
        assert!(matches!(
            gate.try_acquire("s", &limits, lease, PACE_HORIZON)
                .await
                .unwrap(),
            Admission::Admitted(_)
        ));
        // `b` is never released (a crashed holder): its lease runs out.
        let Admission::Admitted(_) = b else { panic!() };
        tokio::time::sleep(lease + Duration::from_millis(20)).await;
        assert!(matches!(
            gate.try_acquire("s", &limits, lease, PACE_HORIZON)
                .await
                .unwrap(),
            Admission::Admitted(_)
        ));
    }

    #[tokio::test]
    async fn requests_are_paced_one_interval_apart_and_only_a_horizon_ahead() {
        let gate = MemoryGate::default();
        let limits = Limits {
            max_in_flight: None,
            requests_per_second: Some(4),
        };
        let lease = Duration::from_secs(1);
        let interval = pace_interval(4);
        assert_eq!(interval, Duration::from_micros(262_500));
        // An idle source sends at once; the next ones queue one interval apart.
        let mut delays = Vec::new();
        for _ in 0..3 {
            let Admission::Admitted(p) = gate
                .try_acquire("s", &limits, lease, PACE_HORIZON)
                .await
                .unwrap()
            else {
                panic!("room within the horizon")
            };
            delays.push(p.delay);
        }
        assert_eq!(delays[0], Duration::ZERO);
        for (later, earlier) in delays.iter().skip(1).zip(&delays) {
            let gap = *later - *earlier;
            assert!(
                gap > interval - Duration::from_millis(5) && gap <= interval,
                "{delays:?}"
            );
        }
        // The next place is ~790 ms ahead: not within 500 ms, so nothing is reserved.
        assert!(matches!(
            gate.try_acquire("s", &limits, lease, Duration::from_millis(500))
                .await
                .unwrap(),
            Admission::Wait(_)
        ));
        assert!(
            matches!(
                gate.try_acquire("other", &limits, lease, Duration::ZERO)
                    .await
                    .unwrap(),
                Admission::Admitted(Permit {
                    delay: Duration::ZERO,
                    ..
                })
            ),
            "paces are per source"
        );
        // `acquire` sleeps until the request's place: four sends span three intervals.
        let started = Instant::now();
        let permit = acquire(&gate, "s", &limits, lease, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(permit.is_some());
        assert!(started.elapsed() >= 3 * interval - Duration::from_millis(10));
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

//! The embedded run: one session of one source with every stage in this process. The same
//! pipeline functions the Lambda handlers call do the work; an in-process queue stands in
//! for SQS (with the same receive counting and backoff, held in the queue, and the same
//! `maxReceiveCount`: a message out of receives is set aside as the DLQ would keep it, and
//! what it owed is counted `LOST` as the watchdog would), and the finalizer is called when
//! the queue is drained, as the table stream would.

use super::MemoryQueue;
use crate::messages::WorkMessage;
use crate::model::selection::Selection;
use crate::model::{Counters, Session};
use crate::pipeline::finalize::finalize_session;
use crate::pipeline::harvest::{handle_in_batch, retry_delay, Disposition};
use crate::pipeline::schedule::{run_now, run_selection};
use crate::pipeline::tally::Tally;
use crate::pipeline::Services;
use crate::ports::{StoreError, WorkQueue};
use chrono::{DateTime, Utc};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::HashMap;
use tokio::time::Instant;

/// Winds up the sessions a killed run left `running`, as the watchdog does past a session's
/// deadline on AWS: what they still owed is counted `LOST` and they are closed (the listing
/// they did not finish is incomplete, so nothing is deleted). Only for a store no harvest is
/// using: the CLI calls it holding the data directory's lock. Returns the sessions closed.
pub async fn wind_up_interrupted(svc: &Services) -> Result<Vec<String>, StoreError> {
    let mut wound_up = Vec::new();
    for entry in svc.store.list_sources().await? {
        let Some(session_id) = entry.running_session else {
            continue;
        };
        let Some(session) = svc.store.get_session(&session_id).await? else {
            continue;
        };
        if session.ended_at.is_some() {
            continue;
        }
        let (pages, resources) = crate::pipeline::watchdog::expire(svc, &session).await?;
        tracing::warn!(session = %session_id, pages, resources, "a run was interrupted; its session is wound up");
        finalize_session(svc, &session_id).await?;
        wound_up.push(session_id);
    }
    Ok(wound_up)
}

/// The services an embedded run harvests with: `store`, `objects` and `queue` (which must be
/// [`MemoryQueue::with_delays`]), and sources' politeness limits kept in this process, as
/// the deployed functions keep them in DynamoDB.
pub fn services(
    store: std::sync::Arc<dyn crate::ports::StateStore>,
    objects: std::sync::Arc<dyn crate::ports::ObjectStore>,
    queue: std::sync::Arc<MemoryQueue>,
    settings: crate::pipeline::Settings,
) -> Services {
    let mut svc = Services::new(store, objects, queue, settings);
    svc.http = svc
        .http
        .with_gate(std::sync::Arc::new(crate::politeness::MemoryGate::default()));
    svc
}

/// What one embedded session did.
pub struct EmbeddedRun {
    pub session: Session,
    /// How long each resource message took to handle (fetch, normalize, store, count), one
    /// entry per attempt, in completion order. Time spent waiting in the queue is not in it.
    pub resource_times: Vec<std::time::Duration>,
}

impl EmbeddedRun {
    /// The `q`-quantile (0.0..=1.0) of [`EmbeddedRun::resource_times`], nearest rank.
    pub fn resource_time_quantile(&self, q: f64) -> Option<std::time::Duration> {
        let mut times = self.resource_times.clone();
        times.sort_unstable();
        let last = times.len().checked_sub(1)?;
        times
            .get(((last as f64) * q.clamp(0.0, 1.0)).round() as usize)
            .copied()
    }
}

/// Harvests `source_id` once, `concurrency` messages at a time; `progress` sees the
/// session's counters after every message. Returns the closed session and per-resource
/// timings. The queue must be [`MemoryQueue::with_delays`]: retries and deferrals wait in
/// it, as they would in SQS.
pub async fn harvest_once(
    svc: &Services,
    queue: &MemoryQueue,
    source_id: &str,
    at: DateTime<Utc>,
    concurrency: usize,
    progress: &(dyn Fn(&Counters) + Sync),
) -> Result<EmbeddedRun, StoreError> {
    harvest_session(svc, queue, source_id, None, at, concurrency, progress).await
}

/// [`harvest_once`] for only `selection`'s resources (`trawl run SOURCE --resources ID…
/// --data-dir DIR`): a session with trigger `selection`, which deletes nothing as stale.
pub async fn harvest_selection_once(
    svc: &Services,
    queue: &MemoryQueue,
    source_id: &str,
    selection: &Selection,
    at: DateTime<Utc>,
    concurrency: usize,
    progress: &(dyn Fn(&Counters) + Sync),
) -> Result<EmbeddedRun, StoreError> {
    harvest_session(
        svc,
        queue,
        source_id,
        Some(selection),
        at,
        concurrency,
        progress,
    )
    .await
}

async fn harvest_session(
    svc: &Services,
    queue: &MemoryQueue,
    source_id: &str,
    selection: Option<&Selection>,
    at: DateTime<Utc>,
    concurrency: usize,
    progress: &(dyn Fn(&Counters) + Sync),
) -> Result<EmbeddedRun, StoreError> {
    if !queue.honours_delays() {
        return Err(StoreError::new(
            "the embedded run needs MemoryQueue::with_delays (retries would not back off)",
        ));
    }
    // Session ids are named after the scheduled second: two runs within one second (or a
    // clock that went back) must not land in a closed session.
    let mut at = at;
    while svc
        .store
        .get_session(&crate::model::session::session_id(source_id, at))
        .await?
        .is_some()
    {
        at += chrono::Duration::seconds(1);
    }
    let report = match selection {
        Some(selection) => run_selection(svc, source_id, selection, at).await?,
        None => run_now(svc, source_id, at).await?,
    };
    let Some(session_id) = report.started.first().cloned() else {
        return Err(StoreError::new(format!(
            "no session started for {source_id}: {}",
            serde_json::to_string(&report).expect("reports serialize")
        )));
    };
    let resource_times = drain(svc, queue, &session_id, concurrency, None, progress).await?;
    let session = close(svc, &session_id).await?;
    Ok(EmbeddedRun {
        session,
        resource_times,
    })
}

/// Delivers the queue's messages for `session_id`, `concurrency` at a time, until the queue
/// holds nothing (retries and deferrals waited for), or once `at_most` messages were taken
/// (the rest stay queued: a run stopped part-way, as tests show a running session). Returns
/// how long each resource message took.
pub async fn drain(
    svc: &Services,
    queue: &MemoryQueue,
    session_id: &str,
    concurrency: usize,
    at_most: Option<usize>,
    progress: &(dyn Fn(&Counters) + Sync),
) -> Result<Vec<std::time::Duration>, StoreError> {
    let mut receives: HashMap<String, u32> = HashMap::new();
    let mut resource_times = Vec::new();
    let mut taken = 0;
    // Counted in small groups as messages get there: the store is in memory, so waiting for
    // every message in flight would only hold them back (see `Tally::early`).
    let tally = Tally::early();
    let tally = &tally;
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < concurrency.max(1) && at_most.is_none_or(|n| taken < n) {
            let Some(message) = queue.pop() else { break };
            taken += 1;
            let body = message.to_json();
            let receive = receives.entry(body.clone()).or_insert(0);
            *receive += 1;
            let receive = *receive;
            in_flight.push(async move {
                let started = Instant::now();
                let disposition = handle_in_batch(svc, tally, "embedded", &body, receive).await;
                (message, body, receive, disposition, started.elapsed())
            });
        }
        let Some((message, body, receive, disposition, took)) = in_flight.next().await else {
            if at_most.is_some_and(|n| taken >= n) {
                break;
            }
            // Nothing ready: wait for what the queue holds back (retries backing off,
            // deferrals until the server's `Retry-After`), or stop when it holds nothing.
            match queue.next_due() {
                Some(due) => {
                    tokio::time::sleep_until(Instant::from_std(due)).await;
                    continue;
                }
                None => break,
            }
        };
        if matches!(message, WorkMessage::Resource { .. }) {
            resource_times.push(took);
        }
        if disposition == Disposition::Retry && receive >= svc.settings.max_receive_count {
            tracing::error!(session = %session_id, receive, "a message is out of receives; set aside, its work is counted LOST");
            receives.remove(&body);
        } else if disposition == Disposition::Retry {
            let wait = retry_delay(receive, svc.settings.max_retry_delay);
            queue.send_delayed(&[message], wait).await?;
        } else {
            // Receive counts are kept for messages coming back only, so they do not pile up.
            receives.remove(&body);
        }
        if let Some(session) = svc.store.get_session(session_id).await? {
            progress(&session.counters);
        }
    }
    Ok(resource_times)
}

/// Closes a drained session: work set aside still holds it open, so it is settled now rather
/// than at a deadline, since nothing else will deliver it; then it is finalized.
pub async fn close(svc: &Services, session_id: &str) -> Result<Session, StoreError> {
    if let Some(open) = svc.store.get_session(session_id).await? {
        if open.ended_at.is_none() && open.counters.remaining > 0 {
            crate::pipeline::watchdog::expire(svc, &open).await?;
        }
    }
    finalize_session(svc, session_id).await?;
    svc.store
        .get_session(session_id)
        .await?
        .ok_or_else(|| StoreError::new(format!("session {session_id} vanished")))
}

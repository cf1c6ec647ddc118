//! The embedded run: one session of each source asked for, with every stage in this process. The same
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
/// the deployed functions keep them in DynamoDB; alerts go to stderr and `alerts.json`
/// beside each summary.
pub fn services(
    store: std::sync::Arc<dyn crate::ports::StateStore>,
    objects: std::sync::Arc<dyn crate::ports::ObjectStore>,
    queue: std::sync::Arc<MemoryQueue>,
    settings: crate::pipeline::Settings,
) -> Services {
    let mut svc = Services::new(store, objects.clone(), queue, settings);
    // Alerts are printed and written beside the session's summary.
    svc.alerts = std::sync::Arc::new(crate::pipeline::alerts::EmbeddedAlerts::new(objects));
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
    /// From the start of the run to the session's close.
    pub took: std::time::Duration,
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
    let mut runs = harvest_together(svc, queue, &[source_id], at, concurrency, &|_, c| {
        progress(c)
    })
    .await?;
    runs.pop()
        .ok_or_else(|| StoreError::new(format!("no session ran for {source_id}")))
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
    needs_delays(queue)?;
    let started = Instant::now();
    let session_id = start(svc, source_id, Some(selection), at).await?;
    let mut runs = finish(
        svc,
        queue,
        vec![session_id],
        concurrency,
        started,
        &|_, c| progress(c),
    )
    .await?;
    runs.pop()
        .ok_or_else(|| StoreError::new(format!("no session ran for {source_id}")))
}

/// Harvests several sources at once, as the deployed functions do: one session each, all
/// delivered from one queue that takes turns between sources (so a small source is not
/// kept waiting behind a large one's backlog), each session closed as soon as its counters
/// say it is done, as the table stream starts the finalizer. `progress` sees a source id and
/// its session's counters after each of its messages. Returns the runs in the order of `source_ids`.
pub async fn harvest_together(
    svc: &Services,
    queue: &MemoryQueue,
    source_ids: &[&str],
    at: DateTime<Utc>,
    concurrency: usize,
    progress: &(dyn Fn(&str, &Counters) + Sync),
) -> Result<Vec<EmbeddedRun>, StoreError> {
    needs_delays(queue)?;
    let started = Instant::now();
    // Started together: starting a session lists its first page, and one slow catalog must
    // not hold back the others' start.
    let session_ids = futures::future::try_join_all(
        source_ids
            .iter()
            .map(|source_id| start(svc, source_id, None, at)),
    )
    .await?;
    finish(svc, queue, session_ids, concurrency, started, progress).await
}

fn needs_delays(queue: &MemoryQueue) -> Result<(), StoreError> {
    if queue.honours_delays() {
        Ok(())
    } else {
        Err(StoreError::new(
            "the embedded run needs MemoryQueue::with_delays (retries would not back off)",
        ))
    }
}

/// Delivers the started sessions' work and closes each; their runs, in `session_ids` order.
async fn finish(
    svc: &Services,
    queue: &MemoryQueue,
    session_ids: Vec<String>,
    concurrency: usize,
    started: Instant,
    progress: &(dyn Fn(&str, &Counters) + Sync),
) -> Result<Vec<EmbeddedRun>, StoreError> {
    let mut delivered = deliver(svc, queue, concurrency, None, Some(started), progress).await?;
    let mut runs = Vec::with_capacity(session_ids.len());
    for session_id in session_ids {
        let (session, took) = match delivered.closed.remove(&session_id) {
            Some(closed) => closed,
            None => (close(svc, &session_id).await?, started.elapsed()),
        };
        runs.push(EmbeddedRun {
            session,
            resource_times: delivered.times.remove(&session_id).unwrap_or_default(),
            took,
        });
    }
    Ok(runs)
}

/// Starts one session of `source_id` through the scheduler's path for a manual run (or,
/// with a selection, for a selection) and returns its id.
async fn start(
    svc: &Services,
    source_id: &str,
    selection: Option<&Selection>,
    at: DateTime<Utc>,
) -> Result<String, StoreError> {
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
    report.started.first().cloned().ok_or_else(|| {
        StoreError::new(format!(
            "no session started for {source_id}: {}",
            serde_json::to_string(&report).expect("reports serialize")
        ))
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
    let mut delivered =
        deliver(svc, queue, concurrency, at_most, None, &|_, c| progress(c)).await?;
    Ok(delivered.times.remove(session_id).unwrap_or_default())
}

/// What [`deliver`] did, by session.
#[derive(Default)]
struct Delivered {
    times: HashMap<String, Vec<std::time::Duration>>,
    /// Sessions closed as soon as they were done, with the time since `deliver`'s caller
    /// started.
    closed: HashMap<String, (Session, std::time::Duration)>,
}

/// Delivers the queue's messages, `concurrency` at a time, until it holds nothing or
/// `at_most` were taken. With `close_done_since`, a session whose counters say it is done
/// is closed at once (its time measured from that instant).
async fn deliver(
    svc: &Services,
    queue: &MemoryQueue,
    concurrency: usize,
    at_most: Option<usize>,
    close_done_since: Option<Instant>,
    progress: &(dyn Fn(&str, &Counters) + Sync),
) -> Result<Delivered, StoreError> {
    // `concurrency` is requests in flight. Twice as many messages are worked on, so a
    // message whose response is read and that waits to be counted with others (see
    // `Tally::early`) has handed its request slot on to the next.
    let concurrency = concurrency.max(1);
    let with_slots = Services {
        http: svc.http.with_request_slots(concurrency),
        ..svc.clone()
    };
    let svc = &with_slots;
    let messages_in_flight = 2 * concurrency;
    let mut receives: HashMap<String, u32> = HashMap::new();
    let mut delivered = Delivered::default();
    let mut taken = 0;
    // Counted in small groups as messages get there: the store is in memory, so waiting for
    // every message in flight would only hold them back (see `Tally::early`).
    let tally = Tally::early();
    let tally = &tally;
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < messages_in_flight && at_most.is_none_or(|n| taken < n) {
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
        let session_id = message.session_id().to_string();
        let source_id = message.source_id().to_string();
        if matches!(message, WorkMessage::Resource { .. }) {
            delivered
                .times
                .entry(session_id.clone())
                .or_default()
                .push(took);
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
        let Some(session) = svc.store.get_session(&session_id).await? else {
            continue;
        };
        progress(&source_id, &session.counters);
        if let Some(since) = close_done_since {
            if session.ended_at.is_none() && session.counters.remaining == 0 {
                let closed = close(svc, &session_id).await?;
                delivered
                    .closed
                    .insert(session_id, (closed, since.elapsed()));
            }
        }
    }
    Ok(delivered)
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

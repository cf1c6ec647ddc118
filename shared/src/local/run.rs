//! The embedded run: one session of one source with every stage in this process. The same
//! pipeline functions the Lambda handlers call do the work; an in-process queue stands in
//! for SQS (with the same receive counting and backoff, held in the queue), and the finalizer is called when
//! the queue is drained, as the table stream would.

use super::MemoryQueue;
use crate::model::{Counters, Session};
use crate::pipeline::finalize::finalize_session;
use crate::pipeline::harvest::{handle_message, retry_delay, Disposition};
use crate::pipeline::schedule::run_now;
use crate::pipeline::Services;
use crate::ports::{StoreError, WorkQueue};
use chrono::{DateTime, Utc};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::HashMap;
use tokio::time::Instant;

/// Harvests `source_id` once, `concurrency` messages at a time; `progress` sees the
/// session's counters after every message. Returns the closed session. The queue must be
/// [`MemoryQueue::with_delays`]: retries and deferrals wait in it, as they would in SQS.
pub async fn harvest_once(
    svc: &Services,
    queue: &MemoryQueue,
    source_id: &str,
    at: DateTime<Utc>,
    concurrency: usize,
    progress: &(dyn Fn(&Counters) + Sync),
) -> Result<Session, StoreError> {
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
    let report = run_now(svc, source_id, at).await?;
    let Some(session_id) = report.started.first().cloned() else {
        return Err(StoreError::new(format!(
            "no session started for {source_id}: {}",
            serde_json::to_string(&report).expect("reports serialize")
        )));
    };

    let mut receives: HashMap<String, u32> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < concurrency.max(1) {
            let Some(message) = queue.pop() else { break };
            let body = message.to_json();
            let receive = receives.entry(body.clone()).or_insert(0);
            *receive += 1;
            let receive = *receive;
            in_flight.push(async move {
                let disposition = handle_message(svc, "embedded", &body, receive).await;
                (message, receive, disposition)
            });
        }
        let Some((message, receive, disposition)) = in_flight.next().await else {
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
        if disposition == Disposition::Retry {
            let wait = retry_delay(receive, svc.settings.max_retry_delay);
            queue.send_delayed(&[message], wait).await?;
        }
        if let Some(session) = svc.store.get_session(&session_id).await? {
            progress(&session.counters);
        }
    }

    finalize_session(svc, &session_id).await?;
    svc.store
        .get_session(&session_id)
        .await?
        .ok_or_else(|| StoreError::new(format!("session {session_id} vanished")))
}

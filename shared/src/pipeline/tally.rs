//! Counting a batch of resources together. Every message of a batch (an SQS batch in the
//! harvester, the messages in flight in the embedded run) is worked on concurrently; each
//! one that reaches the counting step hands its outcome to the batch's [`Tally`] and waits.
//! When every message still running is waiting, the last one to arrive writes the batch's
//! logs as one object per session (NDJSON, a line per resource) and counts all outcomes in
//! one DynamoDB transaction ([`SessionLedger::record_outcomes`]).
//!
//! Why: per resource, a separate log object and a separate transaction were two of the five
//! billable requests a changed resource cost (with the record, the raw response and the
//! state read). Batched, they cost a tenth of a request each at SQS's batch size of 10.
//! Nothing else changes: logs are still written before the count, and the transaction
//! keeps every resource's marker condition, so a redelivered copy still counts nothing
//! (when one condition fails the store counts the batch one by one to say which).
//!
//! A source with `options.raw: batch` has its raw responses written here too: one object
//! per session in the batch, the responses one after another, each state naming the object
//! with its offset and length. Written before the count like the logs, so a state never
//! names an object that is not whole; a batch retried after a crash writes a new object
//! (random part in its name), and the first one, which no state names, is swept when a
//! later session of the source closes (`pipeline::raw`).

use crate::documents::ResourceLog;
use crate::keys;
use crate::model::{session::split_session_id, ByteRange, RawLocation, ResourceState};
use crate::ports::{Counting, ObjectStore, StateStore, StoreError};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tokio::sync::{oneshot, Notify};

/// One resource's outcome, ready to be counted.
pub struct OutcomeToCount {
    pub session_id: String,
    pub state: ResourceState,
    /// Its log line; `None` writes no log (an unchanged resource keeps its last log).
    pub log: Option<ResourceLog>,
    /// Its raw response, to be kept in the batch's raw object (`options.raw: batch`).
    pub raw: Option<BatchedRaw>,
}

/// A raw response for the batch's raw object, and the extension its source's responses have.
pub struct BatchedRaw {
    pub body: Bytes,
    pub extension: &'static str,
}

type Reply = oneshot::Sender<Result<Counting, StoreError>>;

#[derive(Default)]
struct Waiting {
    /// Messages entered and not yet finished (waiting ones included).
    running: usize,
    pending: Vec<(OutcomeToCount, Reply)>,
}

/// A batch's counting point. Cheap to create: one per SQS batch, one per embedded run.
#[derive(Default)]
pub struct Tally {
    /// Count as soon as half of the messages running are waiting (see [`Tally::early`]).
    early: bool,
    waiting: Mutex<Waiting>,
    changed: Notify,
    /// States read for the whole batch up front (one BatchGetItem instead of a GetItem
    /// per message): (source, resource) → state, `None` for a resource never seen.
    prefetched: Mutex<HashMap<(String, String), Option<ResourceState>>>,
}

/// Held by a message while it is worked on; dropping it says the message is finished.
pub struct Entered<'a> {
    tally: &'a Tally,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.tally.lock().running -= 1;
        self.tally.changed.notify_waiters();
    }
}

impl Tally {
    /// Waits for the whole batch: what a Lambda batch costs anyway, since the invocation
    /// ends when its last message does.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Counts as soon as half of the messages running are waiting. For the embedded run,
    /// where messages flow continuously: waiting for all of them would move them in lockstep,
    /// each wave as slow as its slowest fetch, while counting each alone writes a log file
    /// per resource (BENCHMARKS.md has the figures for both).
    pub fn early() -> Tally {
        Tally {
            early: true,
            ..Tally::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message starts: until its guard drops, a flush waits for it to count or finish.
    pub fn enter(&self) -> Entered<'_> {
        self.lock().running += 1;
        Entered { tally: self }
    }

    /// Reads the states of the batch's resources in one go.
    pub async fn prefetch(
        &self,
        store: &dyn StateStore,
        keys: &[(String, String)],
    ) -> Result<(), StoreError> {
        let found = store.get_resources(keys).await?;
        let mut prefetched = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            prefetched.insert(key.clone(), found.get(key).cloned());
        }
        Ok(())
    }

    /// A resource's state as the batch found it, or from the store if it was not prefetched.
    /// Taken, not copied: a second copy of the message in the same batch reads afresh.
    pub async fn previous(
        &self,
        store: &dyn StateStore,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError> {
        let key = (source_id.to_string(), resource_id.to_string());
        let taken = self
            .prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        match taken {
            Some(state) => Ok(state),
            None => store.get_resource(source_id, resource_id).await,
        }
    }

    /// Counts `outcome` with the rest of the batch; returns when its batch is counted.
    pub async fn count(
        &self,
        store: &dyn StateStore,
        objects: &dyn ObjectStore,
        outcome: OutcomeToCount,
    ) -> Result<Counting, StoreError> {
        let (reply, mut answer) = oneshot::channel();
        self.lock().pending.push((outcome, reply));
        loop {
            // Registered before the check, so a change between the two is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let batch = {
                let mut waiting = self.lock();
                (!waiting.pending.is_empty()
                    && if self.early {
                        waiting.pending.len() * 2 >= waiting.running
                    } else {
                        waiting.pending.len() >= waiting.running
                    })
                .then(|| std::mem::take(&mut waiting.pending))
            };
            if let Some(batch) = batch {
                flush(store, objects, batch).await;
            }
            // Biased: the same order every time, so a simulated history replays exactly.
            tokio::select! {
                biased;
                result = &mut answer => {
                    return result.unwrap_or_else(|_| Err(StoreError::new("the batch's count was dropped")));
                }
                _ = changed => {}
            }
        }
    }
}

async fn flush(
    store: &dyn StateStore,
    objects: &dyn ObjectStore,
    batch: Vec<(OutcomeToCount, Reply)>,
) {
    let (outcomes, replies): (Vec<OutcomeToCount>, Vec<Reply>) = batch.into_iter().unzip();
    let results = count_together(store, objects, outcomes).await;
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// Writes the raw responses of `outcomes` that carry one and their logs (one object of each
/// per session), then counts them all with [`SessionLedger::record_outcomes`]; one result
/// each, in order. An outcome whose raw response or log could not be written is not counted
/// (its message is retried). The batch's [`Tally`] calls this; so does the watchdog for the
/// resources it gives up on.
pub async fn count_together(
    store: &dyn StateStore,
    objects: &dyn ObjectStore,
    mut outcomes: Vec<OutcomeToCount>,
) -> Vec<Result<Counting, StoreError>> {
    let mut results: Vec<Option<Result<Counting, StoreError>>> =
        outcomes.iter().map(|_| None).collect();
    write_raw(objects, &mut outcomes, &mut results).await;
    let mut by_session: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        if outcome.log.is_some() && results[i].is_none() {
            by_session
                .entry(outcome.session_id.clone())
                .or_default()
                .push(i);
        }
    }
    for (session_id, members) in by_session {
        let first = &outcomes[members[0]].state;
        let source_id = first.source_id.clone();
        let (_, stamp) = split_session_id(&session_id).unwrap_or((&source_id, &session_id));
        let key = keys::batch_log_key(&source_id, stamp, &first.resource_id);
        let mut body = Vec::new();
        for &i in &members {
            let line = outcomes[i].log.as_ref().expect("grouped by having a log");
            serde_json::to_writer(&mut body, line).expect("logs serialize");
            body.push(b'\n');
        }
        match objects
            .put(&key, Bytes::from(body), "application/x-ndjson")
            .await
        {
            Ok(()) => {
                for &i in &members {
                    outcomes[i].state.log_key = Some(key.clone());
                }
            }
            Err(e) => {
                for &i in &members {
                    results[i] = Some(Err(e.clone().context(format_args!("log {key}"))));
                }
            }
        }
    }
    let (indexes, counted): (Vec<usize>, Vec<(String, ResourceState)>) = outcomes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| results[*i].is_none())
        .map(|(i, o)| (i, (o.session_id, o.state)))
        .unzip();
    if !counted.is_empty() {
        for (i, result) in indexes
            .into_iter()
            .zip(store.record_outcomes(&counted).await)
        {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every outcome answered"))
        .collect()
}

/// Writes the raw responses the outcomes carry, one object per session, and names each one's
/// range in its state; an outcome whose object could not be written gets the error.
async fn write_raw(
    objects: &dyn ObjectStore,
    outcomes: &mut [OutcomeToCount],
    results: &mut [Option<Result<Counting, StoreError>>],
) {
    let mut by_session: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        if outcome.raw.is_some() {
            by_session
                .entry(outcome.session_id.clone())
                .or_default()
                .push(i);
        }
    }
    for (session_id, members) in by_session {
        let first = &outcomes[members[0]];
        let source_id = first.state.source_id.clone();
        let extension = first.raw.as_ref().expect("grouped by having one").extension;
        let (_, stamp) = split_session_id(&session_id).unwrap_or((&source_id, &session_id));
        let key = keys::raw_batch_key(&source_id, stamp, &first.state.resource_id, extension);
        let mut body = Vec::new();
        let mut ranges = Vec::with_capacity(members.len());
        for &i in &members {
            let raw = outcomes[i].raw.as_ref().expect("grouped by having one");
            ranges.push(ByteRange {
                offset: body.len() as u64,
                length: raw.body.len() as u64,
            });
            body.extend_from_slice(&raw.body);
        }
        let content_type = super::stale::content_type(&key);
        match objects.put(&key, Bytes::from(body), content_type).await {
            Ok(()) => {
                for (&i, range) in members.iter().zip(ranges) {
                    outcomes[i].state.set_raw(Some(RawLocation {
                        key: key.clone(),
                        range: Some(range),
                    }));
                }
            }
            Err(e) => {
                for &i in &members {
                    results[i] = Some(Err(e.clone().context(format_args!("raw {key}"))));
                }
            }
        }
    }
}

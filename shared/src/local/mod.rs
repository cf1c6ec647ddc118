//! Local adapters of the ports: the same semantics as the AWS ones (conditional, atomic
//! counting), for fast pipeline tests and runs without AWS. [`LocalStore`] keeps state in
//! memory ([`MemoryStore`]) or, for the embedded run, with its per-resource rows in SQLite
//! ([`DiskStore`], feature `disk-state`); [`FileObjects`] keeps objects as files; [`run`]
//! drives a whole session in one process (the embedded run).

mod files;
pub mod retention;
mod rows;
pub mod run;
#[cfg(feature = "disk-state")]
mod sqlite;
mod store;

pub use files::FileObjects;
pub use rows::{MemoryRows, Rows, Settled};
#[cfg(feature = "disk-state")]
pub use sqlite::{DiskStore, SqliteRows};
pub use store::{LocalStore, MemoryStore, Snapshot};

use crate::messages::WorkMessage;
use crate::ports::{ObjectStore, StoreError, WorkQueue};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryObjects {
    objects: Mutex<BTreeMap<String, (Bytes, String)>>,
}

impl MemoryObjects {
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.insert(key.to_string(), (body, content_type.to_string()));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        Ok(objects.get(key).map(|(b, _)| b.clone()))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.remove(key);
        Ok(())
    }

    async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let folders: std::collections::BTreeSet<String> = objects
            .keys()
            .filter_map(|k| k.strip_prefix(prefix))
            .filter_map(|rest| {
                rest.split_once('/')
                    .map(|(dir, _)| format!("{prefix}{dir}/"))
            })
            .collect();
        Ok(folders.into_iter().collect())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let before = objects.len();
        objects.retain(|key, _| !key.starts_with(prefix));
        Ok((before - objects.len()) as u64)
    }

    async fn files(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .keys(prefix)
            .into_iter()
            .filter(|k| !k[prefix.len()..].contains('/'))
            .collect())
    }
}

/// The embedded run's stand-in for SQS; whoever drives it decides about retries. Delayed
/// sends are queued at once, unless the queue was made [`MemoryQueue::with_delays`] (the
/// embedded run, which must not ask a server that said "later" again right away).
///
/// Delivery is fair between sources, as the work queue's `MessageGroupId` makes SQS deliver
/// (a fair queue): each source's messages wait in their own lane, first in first out, and
/// [`MemoryQueue::pop`] takes from the lanes in turn. A source with 20,000 messages waiting
/// then delays another source's next message by one message, not by its whole backlog.
#[derive(Default)]
pub struct MemoryQueue {
    lanes: Mutex<Lanes>,
    /// With delays honoured: messages not to be handed out before their instant.
    delayed: Option<Mutex<Vec<(std::time::Instant, WorkMessage)>>>,
}

/// One first-in-first-out lane per source, and the sources with messages waiting in the
/// order they take their next turn.
#[derive(Default)]
struct Lanes {
    by_source: HashMap<String, VecDeque<WorkMessage>>,
    turns: VecDeque<String>,
    len: usize,
}

impl Lanes {
    fn push(&mut self, message: WorkMessage) {
        let lane = self
            .by_source
            .entry(message.source_id().to_string())
            .or_default();
        if lane.is_empty() {
            self.turns.push_back(message.source_id().to_string());
        }
        lane.push_back(message);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<WorkMessage> {
        let source = self.turns.pop_front()?;
        let lane = self.by_source.get_mut(&source)?;
        let message = lane.pop_front();
        if lane.is_empty() {
            self.by_source.remove(&source);
        } else {
            self.turns.push_back(source);
        }
        self.len -= usize::from(message.is_some());
        message
    }
}

impl MemoryQueue {
    pub fn with_delays() -> MemoryQueue {
        MemoryQueue {
            lanes: Mutex::default(),
            delayed: Some(Mutex::default()),
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next message, taking turns between the sources that have one ready.
    pub fn pop(&self) -> Option<WorkMessage> {
        if let Some(delayed) = &self.delayed {
            let now = std::time::Instant::now();
            let mut delayed = delayed.lock().unwrap_or_else(|e| e.into_inner());
            let (due, later): (Vec<_>, Vec<_>) = delayed.drain(..).partition(|(at, _)| *at <= now);
            *delayed = later;
            let mut lanes = self.lanes();
            for (_, message) in due {
                lanes.push(message);
            }
        }
        self.lanes().pop()
    }

    pub fn honours_delays(&self) -> bool {
        self.delayed.is_some()
    }

    /// When the next delayed message becomes due, if any is waiting.
    pub fn next_due(&self) -> Option<std::time::Instant> {
        let delayed = self.delayed.as_ref()?;
        let delayed = delayed.lock().unwrap_or_else(|e| e.into_inner());
        delayed.iter().map(|(at, _)| *at).min()
    }

    /// Messages ready now (delayed ones not yet due are not counted).
    pub fn len(&self) -> usize {
        self.lanes().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn send_delayed(
        &self,
        messages: &[WorkMessage],
        delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        if let Some(delayed) = &self.delayed {
            let at = std::time::Instant::now() + delay;
            delayed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(messages.iter().map(|m| (at, m.clone())));
            return Ok(());
        }
        let mut lanes = self.lanes();
        for message in messages {
            lanes.push(message.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::SourceSnapshot;

    fn resource(source: &str, n: usize) -> WorkMessage {
        let snapshot: SourceSnapshot = serde_json::from_value(serde_json::json!({
            "id": source, "protocol": "erddap", "base_url": "http://h/erddap"
        }))
        .unwrap();
        WorkMessage::Resource {
            session_id: format!("{source}@20260101T000000Z"),
            source: snapshot,
            resource_id: format!("r{n}"),
            deferrals: 0,
        }
    }

    #[tokio::test]
    async fn a_source_queued_behind_a_large_backlog_gets_every_other_turn() {
        let queue = MemoryQueue::default();
        let large: Vec<_> = (0..10_000).map(|n| resource("large", n)).collect();
        let small: Vec<_> = (0..50).map(|n| resource("small", n)).collect();
        queue.send(&large).await.unwrap();
        queue.send(&small).await.unwrap();
        let first_hundred: Vec<_> = (0..100).map(|_| queue.pop().unwrap()).collect();
        assert!(
            first_hundred
                .iter()
                .filter(|m| m.source_id() == "small")
                .count()
                == 50,
            "the small source's 50 messages are all in the first 100 delivered"
        );
        // Each source's own messages keep their order.
        let small_order: Vec<_> = first_hundred
            .iter()
            .filter_map(|m| match m {
                WorkMessage::Resource {
                    source,
                    resource_id,
                    ..
                } if source.id == "small" => Some(resource_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            small_order,
            (0..50).map(|n| format!("r{n}")).collect::<Vec<_>>()
        );
        assert_eq!(queue.len(), 9_950);
        let mut rest = 0;
        while let Some(m) = queue.pop() {
            assert_eq!(m.source_id(), "large");
            rest += 1;
        }
        assert_eq!(rest, 9_950);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn delayed_messages_join_their_sources_turn_when_due() {
        let queue = MemoryQueue::with_delays();
        queue
            .send_delayed(&[resource("b", 0)], std::time::Duration::from_millis(30))
            .await
            .unwrap();
        queue
            .send(&(0..3).map(|n| resource("a", n)).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(queue.pop().unwrap().source_id(), "a");
        assert!(queue.next_due().is_some());
        std::thread::sleep(std::time::Duration::from_millis(40));
        // Due now, "b" joins the turns: after one more of "a", not after all of them.
        assert_eq!(queue.pop().unwrap().source_id(), "a");
        assert_eq!(queue.pop().unwrap().source_id(), "b");
        assert_eq!(queue.pop().unwrap().source_id(), "a");
        assert!(queue.pop().is_none());
    }
}

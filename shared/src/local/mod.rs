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
use std::collections::{BTreeMap, VecDeque};
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

/// A FIFO of work messages; whoever drives it decides about retries. Delayed sends are
/// queued at once, unless the queue was made [`MemoryQueue::with_delays`] (the embedded run,
/// which must not ask a server that said "later" again right away).
#[derive(Default)]
pub struct MemoryQueue {
    messages: Mutex<VecDeque<WorkMessage>>,
    /// With delays honoured: messages not to be handed out before their instant.
    delayed: Option<Mutex<Vec<(std::time::Instant, WorkMessage)>>>,
}

impl MemoryQueue {
    pub fn with_delays() -> MemoryQueue {
        MemoryQueue {
            messages: Mutex::default(),
            delayed: Some(Mutex::default()),
        }
    }

    pub fn pop(&self) -> Option<WorkMessage> {
        if let Some(delayed) = &self.delayed {
            let now = std::time::Instant::now();
            let mut delayed = delayed.lock().unwrap_or_else(|e| e.into_inner());
            let (due, later): (Vec<_>, Vec<_>) = delayed.drain(..).partition(|(at, _)| *at <= now);
            *delayed = later;
            self.messages
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(due.into_iter().map(|(_, m)| m));
        }
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
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

    pub fn len(&self) -> usize {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
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
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(messages.iter().cloned());
        Ok(())
    }
}

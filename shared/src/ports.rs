//! The small traits the pipeline is written against. `aws/` implements them with DynamoDB,
//! S3 and SQS; tests and local tools can bring their own.

use crate::messages::WorkMessage;
pub use crate::model::ledger::{Closing, Counting, Marker, PageState, SessionStart, SourceEntry};
use crate::model::{ResourceState, Session, Source};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A storage failure, and whether trying again can help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Throttling, a timeout, the network, a server error: the message or event that hit it
    /// is handed back to the Lambda service and tried again, within the queue's
    /// `maxReceiveCount` like any other failure.
    Transient,
    /// The same request will fail the same way: a request the service refuses as such (a key
    /// too long, validation, a missing table or bucket, access denied), a stored document
    /// that does not parse, a broken invariant. Logged as an error; a resource that meets one
    /// is counted as failed with reason `STORAGE_ERROR` where it still can be.
    Permanent,
}

impl StoreError {
    /// A transient failure (see [`StoreErrorKind::Transient`]).
    pub fn new(what: impl std::fmt::Display) -> StoreError {
        StoreError {
            kind: StoreErrorKind::Transient,
            message: what.to_string(),
        }
    }

    /// A permanent failure (see [`StoreErrorKind::Permanent`]).
    pub fn permanent(what: impl std::fmt::Display) -> StoreError {
        StoreError {
            kind: StoreErrorKind::Permanent,
            message: what.to_string(),
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.kind == StoreErrorKind::Permanent
    }

    /// The same failure, its message prefixed with what was being done.
    pub fn context(self, doing: impl std::fmt::Display) -> StoreError {
        StoreError {
            message: format!("{doing}: {}", self.message),
            ..self
        }
    }
}

/// The sources operators registered, with their run state (the scheduler, the CLI, the API).
#[async_trait]
pub trait SourceRegistry: Send + Sync {
    async fn put_source(&self, source: &Source) -> Result<(), StoreError>;

    async fn get_source(&self, id: &str) -> Result<Option<SourceEntry>, StoreError>;

    async fn list_sources(&self) -> Result<Vec<SourceEntry>, StoreError>;

    /// Removes a source's registration (its resources, records and history stay); `false`
    /// (nothing removed) while it has a running session, or if it does not exist.
    async fn remove_source(&self, id: &str) -> Result<bool, StoreError>;
}

/// Sessions, their listing pages and their resources' markers: the counting steps of
/// `model::ledger`, each persisted only under its condition (the listing, the harvester, the
/// finalizer, the watchdog).
#[async_trait]
pub trait SessionLedger: Send + Sync {
    /// Creates the session and marks its source running, atomically and only once.
    async fn create_session(&self, session: &Session) -> Result<SessionStart, StoreError>;

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError>;

    async fn get_page(&self, session_id: &str, page: u32) -> Result<Option<PageState>, StoreError>;

    /// Commits a page once: adds its resources (and its next page, if any) to the session's
    /// `total`/`remaining` and settles the page's own unit. `false` if it was committed before.
    async fn commit_page(&self, session_id: &str, page: &PageState) -> Result<bool, StoreError>;

    async fn mark_page_sent(&self, session_id: &str, page: u32) -> Result<(), StoreError>;

    /// Which of `resource_ids` already have a marker in the session: listed on an earlier page.
    async fn listed_before(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<HashSet<String>, StoreError>;

    /// Writes pending markers where none exist: an existing one (possibly counted already)
    /// is kept as it is, so a copy of a page delivering late never un-counts a resource.
    async fn put_pending_markers(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<(), StoreError>;

    /// In one transaction: settles the pending marker, counts the outcome in the session and
    /// stores the resource's new state. A marker already settled means "already counted".
    async fn record_outcome(
        &self,
        session_id: &str,
        state: &ResourceState,
    ) -> Result<Counting, StoreError>;

    /// [`SessionLedger::record_outcome`] for a batch of (session id, state), one result each, in
    /// order. Stores that can count a batch in one transaction override this; they must keep
    /// each resource's own answer (counted, or already counted by a redelivered copy).
    async fn record_outcomes(
        &self,
        outcomes: &[(String, ResourceState)],
    ) -> Vec<Result<Counting, StoreError>> {
        let mut results = Vec::with_capacity(outcomes.len());
        for (session_id, state) in outcomes {
            results.push(self.record_outcome(session_id, state).await);
        }
        results
    }

    /// Flags a running session as aborted; `false` if it is not running (or unknown) or has
    /// nothing remaining (it is closing with what it did: `ledger::may_abort`).
    async fn request_abort(&self, session_id: &str) -> Result<bool, StoreError>;

    /// Closes a running session whose `remaining` is zero and sets its source back to ready.
    async fn close_session(
        &self,
        session_id: &str,
        ended_at: DateTime<Utc>,
    ) -> Result<Closing, StoreError>;

    /// One page of a session's markers, in resource-id order.
    async fn session_markers(
        &self,
        session_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<Marker>, Option<String>), StoreError>;
}

/// Every resource's state between sessions: what the harvester compares against and the
/// stale check tombstones.
#[async_trait]
pub trait ResourceStates: Send + Sync {
    async fn get_resource(
        &self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError>;

    /// Several resources' states at once, keyed by (source id, resource id); absent ones are
    /// left out. Stores that can read in batches (DynamoDB's BatchGetItem) override this.
    async fn get_resources(
        &self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), ResourceState>, StoreError> {
        let mut found = HashMap::new();
        for (source_id, resource_id) in keys {
            if let Some(state) = self.get_resource(source_id, resource_id).await? {
                found.insert((source_id.clone(), resource_id.clone()), state);
            }
        }
        Ok(found)
    }

    /// One page of a source's resource states, in resource-id order.
    async fn list_resources(
        &self,
        source_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<ResourceState>, Option<String>), StoreError>;

    /// Stores a stale resource's new tombstone, once per session: `false` (nothing written)
    /// if `state.missing_session` was already recorded for this resource.
    async fn mark_missing(&self, state: &ResourceState) -> Result<bool, StoreError>;

    /// Compare-and-swap of a resource's state: writes `next` only if the stored state is
    /// still exactly `current`; `false` (nothing written) otherwise.
    async fn replace_resource(
        &self,
        current: &ResourceState,
        next: &ResourceState,
    ) -> Result<bool, StoreError>;

    /// Removes every resource state of a source, histories with them (a purged source);
    /// how many there were.
    async fn remove_resources(&self, source_id: &str) -> Result<u64, StoreError>;
}

/// The three state ports together: what a whole backend (memory, SQLite, DynamoDB) provides
/// and `testing::contract` proves. Stages that need only one ask for only that one.
pub trait StateStore: SourceRegistry + SessionLedger + ResourceStates {}

impl<T: SourceRegistry + SessionLedger + ResourceStates + ?Sized> StateStore for T {}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Bytes `offset..offset + length` of an object (S3's ranged GET): `None` when the object
    /// does not exist, a permanent error when it is shorter than the range asks, so a range
    /// never reads back as fewer bytes than were written there. A zero length reads nothing.
    /// The default reads the whole object; the backends read only the range.
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        let Some(body) = self.get(key).await? else {
            return Ok(None);
        };
        slice_range(&body, key, offset, length).map(Some)
    }
    /// Deleting a key that does not exist is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The "folders" directly under `prefix` (which ends with `/`), like S3's common
    /// prefixes with delimiter `/`: `sessions/s/` → `sessions/s/20261123T120000Z/`, …, sorted.
    async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// The objects directly under `prefix` (which ends with `/`), not in its folders, sorted:
    /// how the status API finds a session's logs. Stores that cannot list say so.
    async fn files(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Err(StoreError::permanent(format!(
            "this object store does not list objects ({prefix})"
        )))
    }
    /// Deletes every object under `prefix` (which ends with `/`), in its folders too; how
    /// many. Stores that can delete in batches (S3's DeleteObjects) override this.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for folder in self.folders(prefix).await? {
            deleted += self.delete_prefix(&folder).await?;
        }
        for key in self.files(prefix).await? {
            self.delete(&key).await?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// Bytes `offset..offset + length` of `body` (the object at `key`), or why not.
pub fn slice_range(body: &Bytes, key: &str, offset: u64, length: u64) -> Result<Bytes, StoreError> {
    let end = offset.checked_add(length);
    match end {
        Some(end) if end <= body.len() as u64 => Ok(body.slice(offset as usize..end as usize)),
        _ => Err(StoreError::permanent(format!(
            "{key} holds {} bytes, not bytes {offset}+{length}",
            body.len()
        ))),
    }
}

#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Sends all messages or fails; partial batch failures are retried inside.
    async fn send(&self, messages: &[WorkMessage]) -> Result<(), StoreError> {
        self.send_delayed(messages, Duration::ZERO).await
    }
    /// Sends messages that become visible only after `delay` (at most 15 minutes).
    async fn send_delayed(
        &self,
        messages: &[WorkMessage],
        delay: Duration,
    ) -> Result<(), StoreError>;
    /// Makes a received message (by its receipt handle) visible again after `delay` instead
    /// of the queue's full visibility timeout. Best effort: queues without it keep the default.
    async fn retry_later(&self, _receipt_handle: &str, _delay: Duration) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Where alerts go: the SNS topic, a chat webhook, or the embedded run's terminal and files.
/// Best effort: a failure is logged and counted by the caller, never retried by failing the
/// stage that raised the alert.
#[async_trait]
pub trait AlertSink: Send + Sync {
    async fn publish(&self, alerts: &[crate::model::alert::Alert]) -> Result<(), AlertError>;
}

/// An alert that could not be delivered, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AlertError(pub String);

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

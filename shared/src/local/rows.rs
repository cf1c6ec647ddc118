//! The two tables of the local store that grow with the catalog: every resource's state, and
//! the running sessions' markers. [`LocalStore`](super::LocalStore) keeps its accounting
//! rules in one place and these rows where its owner wants them: in memory for tests
//! ([`MemoryRows`]), in SQLite for the embedded run (`SqliteRows`, feature `disk-state`), so
//! that a catalog of a million datasets does not need a million states in RAM.
//!
//! Ids compare as bytes in both, the order DynamoDB sorts keys in: the stale check walks a
//! session's markers and the source's resources side by side and relies on it.

use crate::model::{Outcome, Reason, RecordChange, ResourceState, Session};
use crate::ports::{PageState, SourceEntry, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// A counted resource's outcome in a session.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settled {
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The session brought the resource back after it was deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
    /// What the harvest changed in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<RecordChange>,
}

impl Settled {
    /// What counting `state` settles its marker with.
    pub fn of(state: &ResourceState) -> Settled {
        Settled {
            outcome: state.last_outcome,
            reason: state.last_reason.clone(),
            restored: state.restored_now(),
            change: state.change_now().cloned(),
        }
    }
}

pub trait Rows: Send {
    fn resource(
        &mut self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError>;

    fn put_resource(&mut self, state: &ResourceState) -> Result<(), StoreError>;

    /// Up to `limit` of a source's resources after `after` (from the first with `None`), in
    /// id order.
    fn resources_after(
        &mut self,
        source_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ResourceState>, StoreError>;

    /// Removes every resource of a source; how many there were.
    fn remove_resources(&mut self, source_id: &str) -> Result<u64, StoreError>;

    /// Every resource of every source, in (source, id) order, handed to `each` in turn.
    fn each_resource(
        &mut self,
        each: &mut dyn FnMut(&ResourceState) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// A resource's marker in a session: `None` if the session never listed it,
    /// `Some(None)` while pending, `Some(Some(outcome))` once counted.
    fn marker(
        &mut self,
        session_id: &str,
        resource_id: &str,
    ) -> Result<Option<Option<Settled>>, StoreError>;

    /// Marks the ids pending in the session, leaving existing markers (settled ones
    /// included) as they are.
    fn put_pending(&mut self, session_id: &str, resource_ids: &[String]) -> Result<(), StoreError>;

    /// Settles the marker if it is pending; `false` (nothing changed) if the session never
    /// listed the resource or it was counted already.
    fn settle_marker(
        &mut self,
        session_id: &str,
        resource_id: &str,
        settled: &Settled,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` of a session's markers after `after`, in id order.
    #[allow(clippy::type_complexity)]
    fn markers_after(
        &mut self,
        session_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Settled>)>, StoreError>;

    /// Keeps a source, session or page beside the rows, inside the open batch, so the counts
    /// it carries are written with the rows they count. Only a store that outlives its
    /// process needs them (`SqliteRows`); a killed run then leaves its session running, for
    /// the next run to wind up.
    fn keep(&mut self, _run: Kept<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    /// For a reader beside a writer in another process (`trawl serve` beside a harvest):
    /// the sources, sessions and pages as the writer last committed them, when they changed
    /// since the last call; `None` when they did not, or for a store that is its own writer.
    fn reload(&mut self) -> Result<Option<Loaded>, StoreError> {
        Ok(None)
    }

    /// Starts writing several rows as one unit (one transaction on disk); ended by
    /// [`Rows::end_batch`] with whether to keep them.
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn end_batch(&mut self, _commit: bool) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What a store that outlives its process holds beside the rows ([`Rows::keep`]).
pub struct Loaded {
    pub sources: Vec<SourceEntry>,
    pub sessions: Vec<Session>,
    pub pages: Vec<(String, PageState)>,
}

/// What [`Rows::keep`] is handed.
pub enum Kept<'a> {
    Source(&'a SourceEntry),
    SourceRemoved(&'a str),
    Session(&'a Session),
    Page(&'a str, &'a PageState),
}

/// The rows in ordered maps: what tests use, and what `MemoryStore` is.
#[derive(Default)]
pub struct MemoryRows {
    /// Ordered, so a source's resources are read page by page as a range (sorting them for
    /// every page made the stale check quadratic: seconds at 100k).
    resources: BTreeMap<(String, String), ResourceState>,
    /// session → resource → outcome (`None` = pending).
    markers: HashMap<String, BTreeMap<String, Option<Settled>>>,
}

impl Rows for MemoryRows {
    fn resource(
        &mut self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError> {
        Ok(self
            .resources
            .get(&(source_id.to_string(), resource_id.to_string()))
            .cloned())
    }

    fn put_resource(&mut self, state: &ResourceState) -> Result<(), StoreError> {
        self.resources.insert(
            (state.source_id.clone(), state.resource_id.clone()),
            state.clone(),
        );
        Ok(())
    }

    fn resources_after(
        &mut self,
        source_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ResourceState>, StoreError> {
        let start = match after {
            Some(after) => Bound::Excluded((source_id.to_string(), after.to_string())),
            None => Bound::Included((source_id.to_string(), String::new())),
        };
        Ok(self
            .resources
            .range((start, Bound::Unbounded))
            .take_while(|((src, _), _)| src == source_id)
            .take(limit)
            .map(|(_, state)| state.clone())
            .collect())
    }

    fn each_resource(
        &mut self,
        each: &mut dyn FnMut(&ResourceState) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.resources.values().try_for_each(each)
    }

    fn remove_resources(&mut self, source_id: &str) -> Result<u64, StoreError> {
        let before = self.resources.len();
        self.resources.retain(|(source, _), _| source != source_id);
        Ok((before - self.resources.len()) as u64)
    }

    fn marker(
        &mut self,
        session_id: &str,
        resource_id: &str,
    ) -> Result<Option<Option<Settled>>, StoreError> {
        Ok(self
            .markers
            .get(session_id)
            .and_then(|m| m.get(resource_id))
            .cloned())
    }

    fn put_pending(&mut self, session_id: &str, resource_ids: &[String]) -> Result<(), StoreError> {
        let markers = self.markers.entry(session_id.to_string()).or_default();
        for id in resource_ids {
            markers.entry(id.clone()).or_insert(None);
        }
        Ok(())
    }

    fn settle_marker(
        &mut self,
        session_id: &str,
        resource_id: &str,
        settled: &Settled,
    ) -> Result<bool, StoreError> {
        match self
            .markers
            .get_mut(session_id)
            .and_then(|m| m.get_mut(resource_id))
        {
            Some(marker @ None) => {
                *marker = Some(settled.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn markers_after(
        &mut self,
        session_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Settled>)>, StoreError> {
        let Some(markers) = self.markers.get(session_id) else {
            return Ok(Vec::new());
        };
        // A range from where the last page ended, not a scan from the start for every page.
        let start = match after {
            Some(after) => Bound::Excluded(after.to_string()),
            None => Bound::Unbounded,
        };
        Ok(markers
            .range::<String, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(id, outcome)| (id.clone(), outcome.clone()))
            .collect())
    }
}

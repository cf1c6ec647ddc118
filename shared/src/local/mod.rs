//! In-memory adapters of the ports: the same semantics as the AWS ones (conditional, atomic
//! counting), for fast pipeline tests and runs without AWS; [`FileObjects`] keeps objects as
//! files and [`run`] drives a whole session in one process (the embedded run).

mod files;
pub mod run;

pub use files::FileObjects;

use crate::keys;
use crate::messages::WorkMessage;
use crate::model::{Outcome, ResourceState, Session, SessionStatus, Source};
use crate::ports::{
    Closing, Counting, Marker, ObjectStore, PageState, SessionStart, SourceEntry, StateStore,
    StoreError, WorkQueue,
};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

type Settled = (Outcome, Option<crate::model::Reason>);

#[derive(Default)]
struct State {
    sources: BTreeMap<String, SourceEntry>,
    sessions: HashMap<String, Session>,
    pages: HashMap<(String, u32), PageState>,
    /// session → resource → outcome (`None` = pending).
    markers: HashMap<String, BTreeMap<String, Option<Settled>>>,
    /// Ordered, so a source's resources are read page by page as a range (sorting them for
    /// every page made the stale check quadratic: seconds at 100k).
    resources: BTreeMap<(String, String), ResourceState>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What outlives a run: sources, closed sessions and resource states (with their
    /// history); pages and markers only matter while a session runs. Written straight to
    /// `out` as JSON, without copying the state first: a copy doubled the embedded run's
    /// peak memory at 100k resources.
    pub fn write_snapshot(&self, out: impl std::io::Write) -> serde_json::Result<()> {
        #[derive(serde::Serialize)]
        struct View<'a> {
            sources: Vec<SourceEntry>,
            sessions: Vec<&'a Session>,
            resources: Vec<&'a ResourceState>,
        }
        let s = self.lock();
        let mut sessions: Vec<&Session> = s
            .sessions
            .values()
            .filter(|session| session.status != SessionStatus::Running)
            .collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        let resources: Vec<&ResourceState> = s.resources.values().collect();
        let sources = s
            .sources
            .values()
            .cloned()
            .map(|mut entry| {
                entry.running_session = None;
                entry
            })
            .collect();
        serde_json::to_writer(
            out,
            &View {
                sources,
                sessions,
                resources,
            },
        )
    }

    /// [`MemoryStore::write_snapshot`] as a value.
    pub fn snapshot(&self) -> Snapshot {
        let mut json = Vec::new();
        self.write_snapshot(&mut json)
            .expect("the state serializes");
        serde_json::from_slice(&json).expect("a snapshot reads back")
    }

    pub fn from_snapshot(snapshot: Snapshot) -> MemoryStore {
        let store = MemoryStore::default();
        {
            let mut s = store.lock();
            for entry in snapshot.sources {
                s.sources.insert(entry.source.id.clone(), entry);
            }
            for session in snapshot.sessions {
                s.sessions.insert(session.id.clone(), session);
            }
            for state in snapshot.resources {
                s.resources
                    .insert((state.source_id.clone(), state.resource_id.clone()), state);
            }
        }
        store
    }
}

/// The embedded run's state between runs (see [`MemoryStore::snapshot`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub sources: Vec<SourceEntry>,
    pub sessions: Vec<Session>,
    pub resources: Vec<ResourceState>,
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn put_source(&self, source: &Source) -> Result<(), StoreError> {
        let mut s = self.lock();
        let entry = s
            .sources
            .entry(source.id.clone())
            .or_insert_with(|| SourceEntry {
                source: source.clone(),
                running_session: None,
                last_session: None,
                last_status: None,
                incremental_base: None,
                last_full_listing_at: None,
            });
        entry.source = source.clone();
        Ok(())
    }

    async fn remove_source(&self, id: &str) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.sources.get(id) {
            Some(entry) if entry.running_session.is_none() => {
                s.sources.remove(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get_source(&self, id: &str) -> Result<Option<SourceEntry>, StoreError> {
        Ok(self.lock().sources.get(id).cloned())
    }

    async fn list_sources(&self) -> Result<Vec<SourceEntry>, StoreError> {
        Ok(self.lock().sources.values().cloned().collect())
    }

    async fn create_session(&self, session: &Session) -> Result<SessionStart, StoreError> {
        let mut s = self.lock();
        if let Some(existing) = s.sessions.get(&session.id) {
            return Ok(SessionStart::AlreadyExists(Box::new(existing.clone())));
        }
        let Some(entry) = s.sources.get_mut(&session.source_id) else {
            return Ok(SessionStart::UnknownSource);
        };
        if let Some(running) = &entry.running_session {
            return Ok(SessionStart::SourceBusy {
                running: running.clone(),
            });
        }
        entry.running_session = Some(session.id.clone());
        s.sessions.insert(session.id.clone(), session.clone());
        Ok(SessionStart::Created)
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.lock().sessions.get(id).cloned())
    }

    async fn get_page(&self, session_id: &str, page: u32) -> Result<Option<PageState>, StoreError> {
        Ok(self
            .lock()
            .pages
            .get(&(session_id.to_string(), page))
            .cloned())
    }

    async fn commit_page(&self, session_id: &str, page: &PageState) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let key = (session_id.to_string(), page.page);
        if s.pages.contains_key(&key) {
            return Ok(false);
        }
        let session = s
            .sessions
            .get_mut(session_id)
            .ok_or_else(|| StoreError::new(format!("no session {session_id}")))?;
        session.counters.total += page.count;
        session.counters.remaining =
            session.counters.remaining + page.count + u64::from(page.next_cursor.is_some()) - 1;
        if page.error.is_some() {
            session.listing_error = page.error.clone();
        }
        session.listing.listed += page.listed;
        if page.expected_total.is_some() {
            session.listing.expected_total = page.expected_total;
        }
        session
            .listing
            .problems
            .extend(page.problems.iter().cloned());
        s.pages.insert(key, page.clone());
        Ok(true)
    }

    async fn listed_before(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let s = self.lock();
        let Some(markers) = s.markers.get(session_id) else {
            return Ok(HashSet::new());
        };
        Ok(resource_ids
            .iter()
            .filter(|id| markers.contains_key(*id))
            .cloned()
            .collect())
    }

    async fn mark_page_sent(&self, session_id: &str, page: u32) -> Result<(), StoreError> {
        if let Some(p) = self.lock().pages.get_mut(&(session_id.to_string(), page)) {
            p.sent = true;
        }
        Ok(())
    }

    async fn put_pending_markers(
        &self,
        session_id: &str,
        resource_ids: &[String],
        only_missing: bool,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        let markers = s.markers.entry(session_id.to_string()).or_default();
        for id in resource_ids {
            if only_missing {
                markers.entry(id.clone()).or_insert(None);
            } else {
                markers.insert(id.clone(), None);
            }
        }
        Ok(())
    }

    async fn get_resource(
        &self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError> {
        Ok(self
            .lock()
            .resources
            .get(&(source_id.to_string(), resource_id.to_string()))
            .cloned())
    }

    async fn record_outcome(
        &self,
        session_id: &str,
        state: &ResourceState,
    ) -> Result<Counting, StoreError> {
        let mut s = self.lock();
        let pending = s
            .markers
            .get(session_id)
            .and_then(|m| m.get(&state.resource_id))
            .is_some_and(Option::is_none);
        if !pending {
            return Ok(Counting::AlreadyCounted);
        }
        if let Some(marker) = s
            .markers
            .get_mut(session_id)
            .and_then(|m| m.get_mut(&state.resource_id))
        {
            *marker = Some((state.last_outcome, state.last_reason.clone()));
        }
        if let Some(session) = s.sessions.get_mut(session_id) {
            let c = &mut session.counters;
            c.remaining = c.remaining.saturating_sub(1);
            match state.last_outcome {
                Outcome::Harvested => c.harvested += 1,
                Outcome::Unchanged => c.unchanged += 1,
                Outcome::Failed => c.failed += 1,
            }
        }
        s.resources.insert(
            (state.source_id.clone(), state.resource_id.clone()),
            state.clone(),
        );
        Ok(Counting::Counted)
    }

    async fn list_resources(
        &self,
        source_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<ResourceState>, Option<String>), StoreError> {
        const PAGE: usize = 100;
        let s = self.lock();
        let start = match after {
            Some(after) => Bound::Excluded((source_id.to_string(), after)),
            None => Bound::Included((source_id.to_string(), String::new())),
        };
        let page: Vec<ResourceState> = s
            .resources
            .range((start, Bound::Unbounded))
            .take_while(|((src, _), _)| src == source_id)
            .take(PAGE)
            .map(|(_, state)| state.clone())
            .collect();
        let next = (page.len() == PAGE).then(|| page[PAGE - 1].resource_id.clone());
        Ok((page, next))
    }

    async fn mark_missing(&self, state: &ResourceState) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let key = (state.source_id.clone(), state.resource_id.clone());
        if let Some(current) = s.resources.get(&key) {
            if current.missing_session.is_some() && current.missing_session == state.missing_session
            {
                return Ok(false);
            }
        }
        s.resources.insert(key, state.clone());
        Ok(true)
    }

    async fn replace_resource(
        &self,
        current: &ResourceState,
        next: &ResourceState,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let key = (current.source_id.clone(), current.resource_id.clone());
        if s.resources.get(&key) != Some(current) {
            return Ok(false);
        }
        s.resources.insert(key, next.clone());
        Ok(true)
    }

    async fn request_abort(&self, session_id: &str) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.sessions.get_mut(session_id) {
            Some(session) if session.status == SessionStatus::Running => {
                session.abort_requested = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn close_session(
        &self,
        session_id: &str,
        ended_at: DateTime<Utc>,
    ) -> Result<Closing, StoreError> {
        let mut s = self.lock();
        let Some(session) = s.sessions.get_mut(session_id) else {
            return Ok(Closing::NotClosable(None));
        };
        if session.status != SessionStatus::Running || session.counters.remaining != 0 {
            return Ok(Closing::NotClosable(Some(Box::new(session.clone()))));
        }
        session.status = session.closing_status();
        session.ended_at = Some(ended_at);
        let closed = session.clone();
        if let Some(entry) = s.sources.get_mut(&closed.source_id) {
            if entry.running_session.as_deref() == Some(session_id) {
                entry.running_session = None;
                entry.last_session = Some(closed.id.clone());
                entry.last_status = Some(closed.status.as_str().to_string());
                if closed.is_incremental_base() {
                    entry.incremental_base = Some(closed.id.clone());
                    if closed.since.is_none() {
                        entry.last_full_listing_at = Some(closed.started_at);
                    }
                }
            }
        }
        Ok(Closing::Closed(Box::new(closed)))
    }

    async fn session_markers(
        &self,
        session_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<Marker>, Option<String>), StoreError> {
        const PAGE: usize = 100;
        let s = self.lock();
        let Some(markers) = s.markers.get(session_id) else {
            return Ok((Vec::new(), None));
        };
        // A range from where the last page ended, not a scan from the start for every page.
        let start = match after {
            Some(sk) => Bound::Excluded(sk.trim_start_matches(keys::MARKER_PREFIX).to_string()),
            None => Bound::Unbounded,
        };
        let page: Vec<Marker> = markers
            .range::<String, _>((start, Bound::Unbounded))
            .take(PAGE)
            .map(|(id, outcome)| Marker {
                resource_id: id.clone(),
                outcome: outcome.as_ref().map(|o| o.0),
                reason: outcome.as_ref().and_then(|o| o.1.clone()),
            })
            .collect();
        let next = (page.len() == PAGE).then(|| keys::marker_sk(&page[PAGE - 1].resource_id));
        Ok((page, next))
    }
}

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

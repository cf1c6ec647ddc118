//! The local state store: the same accounting rules as DynamoDB's (conditional markers,
//! counting exactly once), under one lock. Sources, sessions and pages, which grow with runs
//! rather than with the catalog, are kept in memory; resource states and markers go to the
//! [`Rows`] it was made with.

use super::rows::{Kept, Loaded, MemoryRows, Rows, Settled};
use crate::keys;
use crate::model::ledger::{self, Tally};
use crate::model::{ResourceState, Session, SessionStatus, Source};
use crate::ports::{
    Closing, Counting, Marker, PageState, ResourceStates, SessionLedger, SessionStart, SourceEntry,
    SourceRegistry, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// Rows per page of [`ResourceStates::list_resources`] and [`SessionLedger::session_markers`].
const PAGE: usize = 100;

pub struct LocalStore<R: Rows> {
    state: Mutex<State<R>>,
}

/// Everything in memory: tests, and the function stages' benchmarks.
pub type MemoryStore = LocalStore<MemoryRows>;

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        LocalStore::with_rows(MemoryRows::default())
    }
}

pub(super) struct State<R> {
    pub(super) sources: BTreeMap<String, SourceEntry>,
    pub(super) sessions: HashMap<String, Session>,
    pages: HashMap<(String, u32), PageState>,
    pub(super) rows: R,
}

impl<R: Rows> LocalStore<R> {
    pub fn with_rows(rows: R) -> LocalStore<R> {
        LocalStore {
            state: Mutex::new(State {
                sources: BTreeMap::new(),
                sessions: HashMap::new(),
                pages: HashMap::new(),
                rows,
            }),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`LocalStore::lock`], with sources, sessions and pages read again first if another
    /// process committed changes to them (see [`Rows::reload`]).
    fn fresh(&self) -> Result<std::sync::MutexGuard<'_, State<R>>, StoreError> {
        let mut s = self.lock();
        if let Some(loaded) = s.rows.reload()? {
            s.load(loaded);
        }
        Ok(s)
    }

    /// What outlives a run: sources, closed sessions and resource states (with their
    /// history); pages and markers only matter while a session runs. Written straight to
    /// `out` as JSON, one resource at a time: a copy of the state first doubled the embedded
    /// run's peak memory at 100k resources.
    pub fn write_snapshot(&self, mut out: impl std::io::Write) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::new(format!("writing the snapshot: {e}"));
        let json = |e: serde_json::Error| StoreError::new(format!("writing the snapshot: {e}"));
        let mut s = self.lock();
        let sources: Vec<SourceEntry> = s
            .sources
            .values()
            .cloned()
            .map(|mut entry| {
                entry.running_session = None;
                entry
            })
            .collect();
        let mut sessions: Vec<&Session> = s
            .sessions
            .values()
            .filter(|session| session.status != SessionStatus::Running)
            .collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        out.write_all(b"{\"sources\":").map_err(io)?;
        serde_json::to_writer(&mut out, &sources).map_err(json)?;
        out.write_all(b",\"sessions\":").map_err(io)?;
        serde_json::to_writer(&mut out, &sessions).map_err(json)?;
        out.write_all(b",\"resources\":[").map_err(io)?;
        let mut first = true;
        s.rows.each_resource(&mut |state| {
            if !std::mem::take(&mut first) {
                out.write_all(b",").map_err(io)?;
            }
            serde_json::to_writer(&mut out, state).map_err(json)
        })?;
        out.write_all(b"]}").map_err(io)
    }

    /// [`LocalStore::write_snapshot`] as a value.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut json = Vec::new();
        self.write_snapshot(&mut json)?;
        serde_json::from_slice(&json)
            .map_err(|e| StoreError::new(format!("reading a snapshot back: {e}")))
    }
}

/// The embedded run's state between runs (see [`LocalStore::snapshot`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub sources: Vec<SourceEntry>,
    pub sessions: Vec<Session>,
    pub resources: Vec<ResourceState>,
}

impl<R: Rows> State<R> {
    /// Takes what was read from disk as the sources, sessions and pages.
    pub(super) fn load(&mut self, loaded: Loaded) {
        self.sources = loaded
            .sources
            .into_iter()
            .map(|entry| (entry.source.id.clone(), entry))
            .collect();
        self.sessions = loaded
            .sessions
            .into_iter()
            .map(|session| (session.id.clone(), session))
            .collect();
        self.pages = loaded
            .pages
            .into_iter()
            .map(|(session_id, page)| ((session_id, page.page), page))
            .collect();
    }

    /// Runs `change` as one batch of rows: kept whole if it succeeds, undone if not.
    fn batch<T>(
        &mut self,
        change: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.rows.begin_batch()?;
        let out = change(self);
        self.rows.end_batch(out.is_ok())?;
        out
    }

    fn keep_session(&mut self, session_id: &str) -> Result<(), StoreError> {
        match self.sessions.get(session_id) {
            Some(session) => self.rows.keep(Kept::Session(session)),
            None => Ok(()),
        }
    }

    fn keep_source(&mut self, source_id: &str) -> Result<(), StoreError> {
        match self.sources.get(source_id) {
            Some(entry) => self.rows.keep(Kept::Source(entry)),
            None => Ok(()),
        }
    }

    fn keep_page(&mut self, session_id: &str, page: u32) -> Result<(), StoreError> {
        match self.pages.get(&(session_id.to_string(), page)) {
            Some(state) => self.rows.keep(Kept::Page(session_id, state)),
            None => Ok(()),
        }
    }

    /// [`SessionLedger::record_outcome`] under the caller's lock.
    fn record_outcome(
        &mut self,
        session_id: &str,
        state: &ResourceState,
    ) -> Result<Counting, StoreError> {
        let settled =
            self.rows
                .settle_marker(session_id, &state.resource_id, &Settled::of(state))?;
        if !settled {
            return Ok(Counting::AlreadyCounted);
        }
        self.rows.put_resource(state)?;
        if let Some(session) = self.sessions.get_mut(session_id) {
            Tally::of([state.last_outcome]).apply(session);
        }
        Ok(Counting::Counted)
    }
}

#[async_trait]
impl<R: Rows + 'static> SourceRegistry for LocalStore<R> {
    async fn put_source(&self, source: &Source) -> Result<(), StoreError> {
        let mut s = self.lock();
        let entry = s
            .sources
            .entry(source.id.clone())
            .or_insert_with(|| SourceEntry::new(source.clone()));
        entry.source = source.clone();
        s.batch(|s| s.keep_source(&source.id))
    }

    async fn remove_source(&self, id: &str) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.sources.get(id) {
            Some(entry) if ledger::may_remove(entry) => {
                s.sources.remove(id);
                s.batch(|s| s.rows.keep(Kept::SourceRemoved(id)))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get_source(&self, id: &str) -> Result<Option<SourceEntry>, StoreError> {
        Ok(self.fresh()?.sources.get(id).cloned())
    }

    async fn list_sources(&self) -> Result<Vec<SourceEntry>, StoreError> {
        Ok(self.fresh()?.sources.values().cloned().collect())
    }
}

#[async_trait]
impl<R: Rows + 'static> SessionLedger for LocalStore<R> {
    async fn create_session(&self, session: &Session) -> Result<SessionStart, StoreError> {
        let mut s = self.lock();
        if let Some(refused) = ledger::start(
            session,
            s.sessions.get(&session.id),
            s.sources.get(&session.source_id),
        ) {
            return Ok(refused);
        }
        let entry = s
            .sources
            .get_mut(&session.source_id)
            .expect("ledger::start checked the source");
        entry.running_session = Some(session.id.clone());
        s.sessions.insert(session.id.clone(), session.clone());
        s.batch(|s| {
            s.keep_source(&session.source_id)?;
            s.keep_session(&session.id)
        })?;
        Ok(SessionStart::Created)
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.fresh()?.sessions.get(id).cloned())
    }

    async fn get_page(&self, session_id: &str, page: u32) -> Result<Option<PageState>, StoreError> {
        Ok(self
            .fresh()?
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
            .ok_or_else(|| StoreError::permanent(format!("no session {session_id}")))?;
        ledger::commit_page(page).apply(session);
        s.pages.insert(key, page.clone());
        s.batch(|s| {
            s.keep_page(session_id, page.page)?;
            s.keep_session(session_id)
        })?;
        Ok(true)
    }

    async fn listed_before(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut s = self.lock();
        let mut before = HashSet::new();
        for id in resource_ids {
            if s.rows.marker(session_id, id)?.is_some() {
                before.insert(id.clone());
            }
        }
        Ok(before)
    }

    async fn mark_page_sent(&self, session_id: &str, page: u32) -> Result<(), StoreError> {
        let mut s = self.lock();
        if let Some(p) = s.pages.get_mut(&(session_id.to_string(), page)) {
            p.sent = true;
            s.batch(|s| s.keep_page(session_id, page))?;
        }
        Ok(())
    }

    async fn put_pending_markers(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.rows.begin_batch()?;
        let put = s.rows.put_pending(session_id, resource_ids);
        s.rows.end_batch(put.is_ok())?;
        put
    }

    async fn record_outcome(
        &self,
        session_id: &str,
        state: &ResourceState,
    ) -> Result<Counting, StoreError> {
        self.lock().batch(|s| {
            let counted = s.record_outcome(session_id, state)?;
            s.keep_session(session_id)?;
            Ok(counted)
        })
    }

    /// The batch under one lock and, on disk, one transaction. Counters move only for
    /// resources whose rows were written; if the transaction is then not kept, the batch's
    /// counts are taken back with it.
    async fn record_outcomes(
        &self,
        outcomes: &[(String, ResourceState)],
    ) -> Vec<Result<Counting, StoreError>> {
        let mut s = self.lock();
        if let Err(e) = s.rows.begin_batch() {
            return outcomes.iter().map(|_| Err(e.clone())).collect();
        }
        let sessions_before: HashMap<String, Session> = outcomes
            .iter()
            .filter_map(|(id, _)| s.sessions.get(id).map(|x| (id.clone(), x.clone())))
            .collect();
        let results: Vec<Result<Counting, StoreError>> = outcomes
            .iter()
            .map(|(session_id, state)| s.record_outcome(session_id, state))
            .collect();
        let kept = sessions_before
            .keys()
            .try_for_each(|session_id| s.keep_session(session_id));
        let ok = results.iter().all(Result::is_ok) && kept.is_ok();
        match s.rows.end_batch(ok) {
            Ok(()) if ok => results,
            ended => {
                // Nothing of the batch was kept: neither are its counts.
                for (id, session) in sessions_before {
                    s.sessions.insert(id, session);
                }
                let e = ended
                    .err()
                    .or_else(|| results.iter().find_map(|r| r.as_ref().err().cloned()))
                    .or(kept.err())
                    .expect("a failed batch has an error");
                outcomes.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }

    async fn request_abort(&self, session_id: &str) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.sessions.get_mut(session_id) {
            Some(session) if ledger::may_abort(session) => {
                session.abort_requested = true;
                s.batch(|s| s.keep_session(session_id))?;
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
        let Some(closure) = ledger::close(session, ended_at) else {
            return Ok(Closing::NotClosable(Some(Box::new(session.clone()))));
        };
        closure.apply(session);
        let closed = session.clone();
        let release = ledger::release(&closed);
        if let Some(entry) = s.sources.get_mut(&closed.source_id) {
            if release.holds(entry) {
                release.apply(entry);
            }
        }
        s.batch(|s| {
            s.keep_session(session_id)?;
            s.keep_source(&closed.source_id)
        })?;
        Ok(Closing::Closed(Box::new(closed)))
    }

    async fn session_markers(
        &self,
        session_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<Marker>, Option<String>), StoreError> {
        let after = after.map(|sk| sk.trim_start_matches(keys::MARKER_PREFIX).to_string());
        let page: Vec<Marker> = self
            .lock()
            .rows
            .markers_after(session_id, after.as_deref(), PAGE)?
            .into_iter()
            .map(|(resource_id, outcome)| Marker {
                resource_id,
                outcome: outcome.as_ref().map(|o: &Settled| o.outcome),
                restored: outcome.as_ref().is_some_and(|o| o.restored),
                change: outcome.as_ref().and_then(|o| o.change.clone()),
                reason: outcome.and_then(|o| o.reason),
            })
            .collect();
        let next = (page.len() == PAGE).then(|| keys::marker_sk(&page[PAGE - 1].resource_id));
        Ok((page, next))
    }
}

#[async_trait]
impl<R: Rows + 'static> ResourceStates for LocalStore<R> {
    async fn get_resource(
        &self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError> {
        self.lock().rows.resource(source_id, resource_id)
    }

    async fn list_resources(
        &self,
        source_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<ResourceState>, Option<String>), StoreError> {
        let page = self
            .lock()
            .rows
            .resources_after(source_id, after.as_deref(), PAGE)?;
        let next = (page.len() == PAGE).then(|| page[PAGE - 1].resource_id.clone());
        Ok((page, next))
    }

    async fn mark_missing(&self, state: &ResourceState) -> Result<bool, StoreError> {
        let mut s = self.lock();
        if let Some(current) = s.rows.resource(&state.source_id, &state.resource_id)? {
            if current.missing_session.is_some() && current.missing_session == state.missing_session
            {
                return Ok(false);
            }
        }
        s.rows.put_resource(state)?;
        Ok(true)
    }

    async fn replace_resource(
        &self,
        current: &ResourceState,
        next: &ResourceState,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        if s.rows
            .resource(&current.source_id, &current.resource_id)?
            .as_ref()
            != Some(current)
        {
            return Ok(false);
        }
        s.rows.put_resource(next)?;
        Ok(true)
    }

    async fn remove_resources(&self, source_id: &str) -> Result<u64, StoreError> {
        self.lock().rows.remove_resources(source_id)
    }
}

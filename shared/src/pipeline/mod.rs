//! The stage logic, written against the ports only. One dataset's journey, a file a step:
//!
//! 1. A tick starts a session ([`schedule`]): `ledger::start` decides, the store claims the
//!    source, and the first listing page is queued.
//! 2. A listing page is fetched and committed ([`listing`]): the protocol lists
//!    ([`crate::protocols::Catalog::list_page`], typed entries), the page is checked and
//!    bounded (`ledger::bound_page`), its ids are saved (`documents::PageDocument`),
//!    `ledger::commit_page` counts them in the session, and one message per resource is sent.
//! 3. A resource is harvested ([`harvest`]): fetched through a
//!    [`crate::protocols::FetchContext`] and normalized by its protocol, its record and raw
//!    response stored unless unchanged ([`content`]).
//! 4. A batch of outcomes is counted together ([`tally`]): one log object for the batch
//!    (`documents::ResourceLog`) and, with `options.raw: batch`, one raw object, then `ledger::Tally` settles the markers in one
//!    transaction.
//! 5. The session closes when nothing remains ([`finalize`]): the stale check ([`stale`]),
//!    the sweep of batch raw objects no state names ([`raw`]), the summary (`documents::SessionSummary`), `ledger::close` and `ledger::release`.
//!
//! Each ledger change is persisted by a store under its condition: `local::store` (memory
//! and SQLite) or `aws::dynamodb` (`expressions.rs`), both proved by `testing::contract`.
//!
//! 6. What the close means for operators: alerts ([`alerts`], rules in `model::alert`) and
//!    metrics ([`metrics`]).
//!
//! Beside them: [`incremental`] (listing changes since a base session) and [`watchdog`]
//! (every tick: stalled listings resent, sessions past their deadline wound up).

pub mod alerts;
pub mod content;
pub mod deletions;
pub mod finalize;
pub mod harvest;
pub mod incremental;
pub mod listing;
pub mod metrics;
pub mod raw;
pub mod schedule;
pub mod sources;
pub mod stale;
pub mod tally;
pub mod watchdog;

use crate::http::{HttpClient, DEFAULT_MAX_BODY_BYTES};
use crate::ports::{
    Clock, ObjectStore, SessionLedger, StateStore, StoreError, SystemClock, WorkQueue,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock, so a simulated history (paused, virtual time) ages these flags as it runs.
use tokio::time::Instant;

/// Knobs that come from the deployment (template parameters → function environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The scheduler's tick period: a source is due when it fires within the last tick.
    pub tick_minutes: u32,
    /// The work queue's `maxReceiveCount`: on that receive, a transient failure is final.
    pub max_receive_count: u32,
    pub http_timeout: Duration,
    pub max_body_bytes: usize,
    /// How many messages of one batch are worked on at once.
    pub batch_concurrency: usize,
    /// The most resource messages one listing message sends: a larger page is fanned out a
    /// chunk at a time, so memory and the queue stay bounded however large one answer is.
    pub delivery_chunk: usize,
    /// A session still running this long after it started is wound up by the watchdog.
    pub session_deadline_minutes: u32,
    /// The longest backoff before a transient failure is retried: the work queue's
    /// visibility timeout, which is what a retry would wait without one.
    pub max_retry_delay: Duration,
    /// Thresholds and links of the alerts (`pipeline::alerts`).
    pub alerts: alerts::AlertSettings,
    /// Print metrics in CloudWatch's embedded metric format on stdout (the functions do).
    pub emit_metrics: bool,
}

impl Settings {
    /// How long a session's listing may run: half its deadline, so what was listed has the
    /// other half to be harvested.
    pub fn listing_deadline(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.session_deadline_minutes) / 2)
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            tick_minutes: 5,
            max_receive_count: 5,
            http_timeout: Duration::from_secs(10),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            batch_concurrency: 10,
            delivery_chunk: 10_000,
            session_deadline_minutes: 360,
            max_retry_delay: Duration::from_secs(180),
            alerts: alerts::AlertSettings::default(),
            emit_metrics: false,
        }
    }
}

/// Everything a stage needs, built once per process (Lambda cold start) and shared.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn StateStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub http: HttpClient,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub aborts: Arc<AbortFlags>,
    /// Where alerts go (`pipeline::alerts`); a log line by default.
    pub alerts: Arc<dyn crate::ports::AlertSink>,
}

impl Services {
    pub fn new(
        store: Arc<dyn StateStore>,
        objects: Arc<dyn ObjectStore>,
        queue: Arc<dyn WorkQueue>,
        settings: Settings,
    ) -> Services {
        Services {
            store,
            objects,
            queue,
            http: HttpClient::new(settings.http_timeout, settings.max_body_bytes),
            clock: Arc::new(SystemClock),
            settings,
            aborts: Arc::new(AbortFlags::default()),
            alerts: Arc::new(alerts::LogAlerts),
        }
    }

    /// Whether an operator aborted the session (see [`AbortFlags`]).
    pub async fn session_aborted(&self, session_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .aborts
            .check(self.store.as_ref(), session_id)
            .await?
            .aborted)
    }

    /// Whether the session lists the catalog (every session but a selection), read with
    /// the abort flag and cached with it.
    pub async fn session_lists_catalog(&self, session_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .aborts
            .check(self.store.as_ref(), session_id)
            .await?
            .lists_catalog)
    }
}

/// What the harvester asks about a message's session.
#[derive(Clone, Copy, Debug)]
pub struct SessionFlags {
    pub aborted: bool,
    pub lists_catalog: bool,
}

/// Remembers for a moment whether a session was aborted, so a warm harvester asks the store
/// about once per session every couple of seconds rather than once per message.
#[derive(Default)]
pub struct AbortFlags {
    seen: Mutex<HashMap<String, (Instant, SessionFlags)>>,
}

impl AbortFlags {
    const FRESH_FOR: Duration = Duration::from_secs(2);

    async fn check(
        &self,
        store: &dyn SessionLedger,
        session_id: &str,
    ) -> Result<SessionFlags, StoreError> {
        let now = Instant::now();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|_, (at, _)| now.duration_since(*at) < Self::FRESH_FOR);
            if let Some((_, flags)) = seen.get(session_id) {
                return Ok(*flags);
            }
        }
        let session = store.get_session(session_id).await?;
        let flags = SessionFlags {
            aborted: session.as_ref().is_some_and(|s| s.abort_requested),
            lists_catalog: session.as_ref().is_none_or(|s| s.lists_catalog()),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(session_id.to_string(), (now, flags));
        Ok(flags)
    }
}

/// The source's catalog with its protocol options. Its options were checked when the source
/// was registered, so a snapshot whose options no longer parse is a broken invariant: set
/// aside, not retried.
pub(crate) fn open_catalog(
    source: &crate::messages::SourceSnapshot,
) -> Result<Box<dyn crate::protocols::Catalog>, StoreError> {
    crate::protocols::open(source).map_err(|e| {
        StoreError::permanent(format!(
            "source {}'s snapshot no longer validates: {e}",
            source.id
        ))
    })
}

//! The simulated world around the real stage code: models of SQS (at-least-once, visibility
//! timeouts, receive counts, a DLQ), the DynamoDB stream (at-least-once, retries, the
//! template's filter, an on-failure list), and fault-injecting wrappers of the state store
//! (the local store, which holds the same conditional rules as the DynamoDB adapter) and the
//! object store. Everything runs on tokio's paused clock in one thread, drawing every choice
//! from one seeded generator, so a seed is one repeatable history.
//!
//! A crash is a Lambda invocation cut off between two writes: the wrapper that reaches the
//! chosen write (before or after applying it) parks forever and the driver drops the whole
//! invocation, so nothing after that point runs and nothing written before it is undone.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use trawl::local::{MemoryObjects, MemoryStore};
use trawl::messages::WorkMessage;
use trawl::model::{ResourceState, Session, SessionStatus, Source};
use trawl::ports::{
    Clock, Closing, Counting, Marker, ObjectStore, PageState, ResourceStates, SessionLedger,
    SessionStart, SourceEntry, SourceRegistry, StoreError, WorkQueue,
};

/// The fault mix of a history, drawn from its seed.
#[derive(Clone, Debug)]
pub struct FaultMix {
    /// Share of invocations (harvester, finalizer, scheduler) cut off between two writes.
    pub crash: f64,
    /// Share of storage calls refused before they apply (throttling, a 5xx).
    pub store_error: f64,
    /// Share of writes applied whose answer is lost (a timeout after the write).
    pub ambiguous: f64,
    /// Share of SQS sends delivered twice, and of stream records delivered twice.
    pub duplicate: f64,
    /// Remote faults, per request.
    pub remote_5xx: f64,
    pub remote_retry_after: f64,
    pub remote_stall: f64,
    pub remote_cut: f64,
    /// Whether the catalog changes while a listing pages through it.
    pub shifting_pages: bool,
}

impl FaultMix {
    pub fn draw(rng: &mut StdRng) -> FaultMix {
        // Some histories are calm, some are storms: a fixed mix would only ever explore
        // the neighbourhood of its own rates.
        let level: f64 = [0.0, 0.3, 1.0, 2.0][rng.gen_range(0..4)];
        let mut p = |base: f64| (base * level * rng.gen_range(0.5..1.5)).min(0.5);
        FaultMix {
            crash: p(0.08),
            store_error: p(0.02),
            ambiguous: p(0.01),
            duplicate: p(0.10),
            remote_5xx: p(0.05),
            remote_retry_after: p(0.02),
            remote_stall: p(0.02),
            remote_cut: p(0.01),
            shifting_pages: rng.gen_bool(0.5),
        }
    }
}

/// What every part of the world shares: the generator, the fault mix, the trace.
pub struct World {
    rng: Mutex<StdRng>,
    pub faults: FaultMix,
    trace: Mutex<VecDeque<String>>,
    pub started: Instant,
    pub epoch: DateTime<Utc>,
    pub injected: Mutex<BTreeMap<&'static str, u64>>,
}

/// Trace lines kept for a failing seed's printout.
const TRACE_LINES: usize = 4000;

impl World {
    pub fn new(seed: u64, epoch: DateTime<Utc>) -> Arc<World> {
        let mut rng = StdRng::seed_from_u64(seed);
        let faults = FaultMix::draw(&mut rng);
        Arc::new(World {
            rng: Mutex::new(rng),
            faults,
            trace: Mutex::new(VecDeque::new()),
            started: Instant::now(),
            epoch,
            injected: Mutex::default(),
        })
    }

    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng().gen_bool(p.min(1.0))
    }

    pub fn range(&self, range: std::ops::Range<u64>) -> u64 {
        self.rng().gen_range(range)
    }

    pub fn rng(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn elapsed(&self) -> Duration {
        Instant::now() - self.started
    }

    pub fn trace(&self, line: impl Into<String>) {
        let mut trace = self.trace.lock().unwrap_or_else(|e| e.into_inner());
        if trace.len() == TRACE_LINES {
            trace.pop_front();
        }
        trace.push_back(format!(
            "{:>9.3}s {}",
            self.elapsed().as_secs_f64(),
            line.into()
        ));
    }

    pub fn inject(&self, kind: &'static str, what: impl Into<String>) {
        *self
            .injected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
        self.trace(format!("FAULT {kind}: {}", what.into()));
    }

    pub fn trace_lines(&self) -> Vec<String> {
        self.trace
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// The virtual wall clock: the epoch plus tokio's (paused) time since the world began.
pub struct SimClock(pub Arc<World>);

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.0.elapsed()).unwrap_or_default();
        self.0.epoch + elapsed
    }
}

/// One Lambda invocation: where it is cut off, if anywhere.
pub struct Invocation {
    pub name: String,
    /// Cut off before (`false`) or after (`true`) applying write number `.0`.
    crash_at: Option<(u32, bool)>,
    writes: AtomicU32,
    crashed: AtomicBool,
    pub on_crash: Notify,
}

impl Invocation {
    pub fn new(world: &World, name: String) -> Arc<Invocation> {
        let crash_at = world
            .chance(world.faults.crash)
            .then(|| (world.range(0..40) as u32, world.chance(0.5)));
        Arc::new(Invocation {
            name,
            crash_at,
            writes: AtomicU32::new(0),
            crashed: AtomicBool::new(false),
            on_crash: Notify::new(),
        })
    }

    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    async fn crash(&self, world: &World, what: String) -> ! {
        if !self.crashed.swap(true, Ordering::SeqCst) {
            world.inject("crash", format!("{} cut off {what}", self.name));
        }
        self.on_crash.notify_one();
        std::future::pending::<()>().await;
        unreachable!("a crashed invocation never resumes")
    }
}

tokio::task_local! {
    pub static INVOCATION: Arc<Invocation>;
}

fn current() -> Option<Arc<Invocation>> {
    INVOCATION.try_with(Arc::clone).ok()
}

fn who() -> String {
    current().map_or_else(|| "checks".into(), |inv| inv.name.clone())
}

fn short(hash: &Option<String>) -> String {
    hash.as_deref()
        .map_or("-".into(), |h| h.chars().take(8).collect())
}

/// The hooks every wrapped port calls around its operations.
#[derive(Clone)]
pub struct Hooks {
    pub world: Arc<World>,
}

impl Hooks {
    /// A request's round trip: other invocations run meanwhile, so two stages' writes
    /// interleave as they do against the real services.
    async fn latency(&self) {
        let ms = self.world.range(1..25);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn read(&self, op: &str) -> Result<(), StoreError> {
        let Some(inv) = current() else { return Ok(()) };
        self.latency().await;
        if inv.crashed() {
            inv.crash(&self.world, format!("at {op}")).await;
        }
        if self.world.chance(self.world.faults.store_error / 2.0) {
            self.world
                .inject("store_error", format!("{} {op} refused", inv.name));
            return Err(StoreError::new(format!("simulated: {op} throttled")));
        }
        Ok(())
    }

    async fn before(&self, op: &str) -> Result<u32, StoreError> {
        let Some(inv) = current() else { return Ok(0) };
        self.latency().await;
        if inv.crashed() {
            inv.crash(&self.world, format!("at {op}")).await;
        }
        let n = inv.writes.fetch_add(1, Ordering::SeqCst);
        if inv.crash_at == Some((n, false)) {
            inv.crash(&self.world, format!("before write {n} ({op})"))
                .await;
        }
        if self.world.chance(self.world.faults.store_error) {
            self.world
                .inject("store_error", format!("{} {op} refused", inv.name));
            return Err(StoreError::new(format!("simulated: {op} throttled")));
        }
        Ok(n)
    }

    async fn after(&self, op: &str, n: u32) -> Result<(), StoreError> {
        let Some(inv) = current() else { return Ok(()) };
        if inv.crash_at == Some((n, true)) {
            inv.crash(&self.world, format!("after write {n} ({op})"))
                .await;
        }
        if self.world.chance(self.world.faults.ambiguous) {
            self.world.inject(
                "ambiguous",
                format!("{} {op} applied, answer lost", inv.name),
            );
            return Err(StoreError::new(format!(
                "simulated: {op} timed out (it was applied)"
            )));
        }
        Ok(())
    }

    /// An operation that writes: refused, applied then cut off, or answered.
    async fn write<T>(
        &self,
        op: &str,
        apply: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let n = self.before(op).await?;
        let result = apply.await;
        self.after(op, n).await?;
        result
    }
}

/// A DynamoDB stream record of a session item, as the template's filter lets through.
#[derive(Clone, Debug)]
pub struct StreamRecord {
    pub sequence: u64,
    pub session_id: String,
}

/// The state store as the stages see it: the local store (the same conditional rules as
/// DynamoDB's), with faults around every call and a stream of session changes.
pub struct SimStore {
    pub inner: Arc<MemoryStore>,
    hooks: Hooks,
    /// Last image of each session seen by the stream: (remaining, running).
    images: Mutex<HashMap<String, (u64, bool)>>,
    pub stream: Arc<SimStream>,
    /// Session id → closes that committed (whatever happened to the answer).
    pub closes: Mutex<BTreeMap<String, u32>>,
    /// Session id → (created, last page committed): the window its listing saw the catalog.
    pub listings: Mutex<BTreeMap<String, (Instant, Instant)>>,
}

impl SimStore {
    pub fn new(inner: Arc<MemoryStore>, hooks: Hooks, stream: Arc<SimStream>) -> SimStore {
        SimStore {
            inner,
            hooks,
            images: Mutex::default(),
            stream,
            closes: Mutex::default(),
            listings: Mutex::default(),
        }
    }

    /// What the stream shows after a write to `session_id`'s item, through the template's
    /// filter: running, `remaining` now "0", and not "0" before.
    async fn observe(&self, session_id: &str) {
        let Ok(Some(session)) = self.inner.get_session(session_id).await else {
            return;
        };
        let new = (
            session.counters.remaining,
            session.status == SessionStatus::Running,
        );
        let old = self
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session_id.to_string(), new);
        if old != Some(new) && new.1 && new.0 == 0 && old.is_some_and(|(r, _)| r != 0) {
            self.stream.publish(session_id);
        }
    }
}

#[async_trait]
impl SourceRegistry for SimStore {
    async fn put_source(&self, source: &Source) -> Result<(), StoreError> {
        self.hooks
            .write("put_source", self.inner.put_source(source))
            .await
    }

    async fn get_source(&self, id: &str) -> Result<Option<SourceEntry>, StoreError> {
        self.hooks.read("get_source").await?;
        self.inner.get_source(id).await
    }

    async fn list_sources(&self) -> Result<Vec<SourceEntry>, StoreError> {
        self.hooks.read("list_sources").await?;
        self.inner.list_sources().await
    }

    async fn remove_source(&self, id: &str) -> Result<bool, StoreError> {
        self.hooks
            .write("remove_source", self.inner.remove_source(id))
            .await
    }
}

#[async_trait]
impl SessionLedger for SimStore {
    async fn create_session(&self, session: &Session) -> Result<SessionStart, StoreError> {
        let n = self.hooks.before("create_session").await?;
        let result = self.inner.create_session(session).await;
        if matches!(result, Ok(SessionStart::Created)) {
            self.hooks
                .world
                .trace(format!("session {} created", session.id));
            let now = Instant::now();
            self.listings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(session.id.clone(), (now, now));
        }
        self.observe(&session.id).await;
        self.hooks.after("create_session", n).await?;
        result
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.hooks.read("get_session").await?;
        self.inner.get_session(id).await
    }

    async fn get_page(&self, session_id: &str, page: u32) -> Result<Option<PageState>, StoreError> {
        self.hooks.read("get_page").await?;
        self.inner.get_page(session_id, page).await
    }

    async fn commit_page(&self, session_id: &str, page: &PageState) -> Result<bool, StoreError> {
        let n = self.hooks.before("commit_page").await?;
        let result = self.inner.commit_page(session_id, page).await;
        if matches!(result, Ok(true)) {
            if let Some(window) = self
                .listings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(session_id)
            {
                window.1 = Instant::now();
            }
            self.hooks.world.trace(format!(
                "{session_id} page {} committed: {} ids, next {:?}, error {:?}, problems {:?}",
                page.page, page.count, page.next_cursor, page.error, page.problems
            ));
        }
        self.observe(session_id).await;
        self.hooks.after("commit_page", n).await?;
        result
    }

    async fn mark_page_sent(&self, session_id: &str, page: u32) -> Result<(), StoreError> {
        self.hooks
            .write(
                "mark_page_sent",
                self.inner.mark_page_sent(session_id, page),
            )
            .await
    }

    async fn listed_before(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        self.hooks.read("listed_before").await?;
        self.inner.listed_before(session_id, resource_ids).await
    }

    async fn put_pending_markers(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<(), StoreError> {
        self.hooks
            .write(
                "put_pending_markers",
                self.inner.put_pending_markers(session_id, resource_ids),
            )
            .await
    }

    async fn record_outcome(
        &self,
        session_id: &str,
        state: &ResourceState,
    ) -> Result<Counting, StoreError> {
        let n = self.hooks.before("record_outcome").await?;
        let result = self.inner.record_outcome(session_id, state).await;
        self.hooks.world.trace(format!(
            "{} counts {}/{} for {session_id}: {:?} content {}: {result:?}",
            who(),
            state.source_id,
            state.resource_id,
            state.last_outcome,
            short(&state.content_hash)
        ));
        self.observe(session_id).await;
        self.hooks.after("record_outcome", n).await?;
        result
    }

    async fn record_outcomes(
        &self,
        outcomes: &[(String, ResourceState)],
    ) -> Vec<Result<Counting, StoreError>> {
        let refused = |e: StoreError| outcomes.iter().map(|_| Err(e.clone())).collect();
        let n = match self.hooks.before("record_outcomes").await {
            Ok(n) => n,
            Err(e) => return refused(e),
        };
        let results = self.inner.record_outcomes(outcomes).await;
        for ((session_id, state), result) in outcomes.iter().zip(&results) {
            self.hooks.world.trace(format!(
                "{} counts {}/{} for {session_id}: {:?} content {} {:?}: {result:?}",
                who(),
                state.source_id,
                state.resource_id,
                state.last_outcome,
                short(&state.content_hash),
                state.record_key
            ));
        }
        let sessions: std::collections::BTreeSet<&String> =
            outcomes.iter().map(|(s, _)| s).collect();
        for session_id in sessions {
            self.observe(session_id).await;
        }
        if let Err(e) = self.hooks.after("record_outcomes", n).await {
            return refused(e);
        }
        results
    }

    async fn request_abort(&self, session_id: &str) -> Result<bool, StoreError> {
        let n = self.hooks.before("request_abort").await?;
        let result = self.inner.request_abort(session_id).await;
        self.observe(session_id).await;
        self.hooks.after("request_abort", n).await?;
        result
    }

    async fn close_session(
        &self,
        session_id: &str,
        ended_at: DateTime<Utc>,
    ) -> Result<Closing, StoreError> {
        let n = self.hooks.before("close_session").await?;
        let result = self.inner.close_session(session_id, ended_at).await;
        if let Ok(Closing::Closed(session)) = &result {
            *self
                .closes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(session_id.to_string())
                .or_default() += 1;
            self.hooks.world.trace(format!(
                "{session_id} closed {}: {:?}",
                session.status.as_str(),
                session.counters
            ));
        }
        self.observe(session_id).await;
        self.hooks.after("close_session", n).await?;
        result
    }

    async fn session_markers(
        &self,
        session_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<Marker>, Option<String>), StoreError> {
        self.hooks.read("session_markers").await?;
        self.inner.session_markers(session_id, after).await
    }
}

#[async_trait]
impl ResourceStates for SimStore {
    async fn get_resource(
        &self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError> {
        self.hooks.read("get_resource").await?;
        self.inner.get_resource(source_id, resource_id).await
    }

    async fn get_resources(
        &self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), ResourceState>, StoreError> {
        self.hooks.read("get_resources").await?;
        self.inner.get_resources(keys).await
    }

    async fn list_resources(
        &self,
        source_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<ResourceState>, Option<String>), StoreError> {
        self.hooks.read("list_resources").await?;
        self.inner.list_resources(source_id, after).await
    }

    async fn mark_missing(&self, state: &ResourceState) -> Result<bool, StoreError> {
        let n = self.hooks.before("mark_missing").await?;
        let result = self.inner.mark_missing(state).await;
        self.hooks.world.trace(format!(
            "{} marks {}/{} missing ({} listings, deleted {:?}): {result:?}",
            who(),
            state.source_id,
            state.resource_id,
            state.missing_listings,
            state.deleted_at.is_some()
        ));
        self.hooks.after("mark_missing", n).await?;
        result
    }

    async fn replace_resource(
        &self,
        current: &ResourceState,
        next: &ResourceState,
    ) -> Result<bool, StoreError> {
        let n = self.hooks.before("replace_resource").await?;
        let result = self.inner.replace_resource(current, next).await;
        self.hooks.world.trace(format!(
            "{} replaces {}/{}: content {} → {} {:?}, deleted {:?}: {result:?}",
            who(),
            next.source_id,
            next.resource_id,
            short(&current.content_hash),
            short(&next.content_hash),
            next.record_key,
            next.deleted_at.is_some()
        ));
        self.hooks.after("replace_resource", n).await?;
        result
    }

    async fn remove_resources(&self, source_id: &str) -> Result<u64, StoreError> {
        self.inner.remove_resources(source_id).await
    }
}

/// S3 with faults around every call.
pub struct SimObjects {
    pub inner: Arc<MemoryObjects>,
    pub hooks: Hooks,
}

#[async_trait]
impl ObjectStore for SimObjects {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        let n = self.hooks.before("s3 put").await?;
        if key.starts_with("records/") || key.starts_with("deleted/records/") {
            let hash = serde_json::from_slice::<trawl::model::Record>(&body)
                .map(|r| r.content_hash())
                .ok();
            self.hooks
                .world
                .trace(format!("{} puts {key} content {}", who(), short(&hash)));
        }
        let result = self.inner.put(key, body, content_type).await;
        self.hooks.after("s3 put", n).await?;
        result
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.hooks.read("s3 get").await?;
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let n = self.hooks.before("s3 delete").await?;
        if key.contains("records/") {
            self.hooks.world.trace(format!("{} deletes {key}", who()));
        }
        let result = self.inner.delete(key).await;
        self.hooks.after("s3 delete", n).await?;
        result
    }
    async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.hooks.read("s3 list").await?;
        self.inner.folders(prefix).await
    }
}

/// One message in the simulated SQS queue.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    pub message_id: String,
    pub body: String,
    pub visible_at: Instant,
    pub receive_count: u32,
    pub receipt: Option<String>,
}

/// SQS as Lambda's event source mapping sees it: at-least-once delivery (a send may be
/// delivered twice), delays, visibility timeouts, receive counts and a redrive to the DLQ
/// after `max_receive_count` receives.
pub struct SimQueue {
    hooks: Hooks,
    pub visibility: Duration,
    pub max_receive_count: u32,
    state: Mutex<QueueState>,
    pub changed: Notify,
}

#[derive(Default)]
struct QueueState {
    next_id: u64,
    messages: Vec<QueuedMessage>,
    pub dlq: Vec<QueuedMessage>,
    /// Every message body ever sent, for the checks (which resources had a message).
    sent: Vec<String>,
}

impl SimQueue {
    pub fn new(hooks: Hooks, visibility: Duration, max_receive_count: u32) -> SimQueue {
        SimQueue {
            hooks,
            visibility,
            max_receive_count,
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, body: String, delay: Duration) {
        let mut state = self.lock();
        state.next_id += 1;
        let message_id = format!("m{}", state.next_id);
        state.sent.push(body.clone());
        state.messages.push(QueuedMessage {
            message_id,
            body,
            visible_at: Instant::now() + delay,
            receive_count: 0,
            receipt: None,
        });
        drop(state);
        self.changed.notify_waiters();
    }

    /// Up to `max` visible messages, in a seeded order (SQS standard queues do not keep
    /// order); each one's receive count goes up, and one received past the limit goes to the
    /// DLQ instead, as the redrive policy does.
    pub fn receive(&self, max: usize) -> Vec<QueuedMessage> {
        let now = Instant::now();
        let world = &self.hooks.world;
        let mut state = self.lock();
        let mut visible: Vec<usize> = (0..state.messages.len())
            .filter(|&i| state.messages[i].visible_at <= now)
            .collect();
        let mut taken = Vec::new();
        while taken.len() < max && !visible.is_empty() {
            let pick = visible.remove(world.range(0..visible.len() as u64) as usize);
            let message = &mut state.messages[pick];
            if message.receive_count >= self.max_receive_count {
                taken.push((pick, None));
                continue;
            }
            message.receive_count += 1;
            state.next_id += 1;
            let receipt = format!("r{}", state.next_id);
            let message = &mut state.messages[pick];
            message.receipt = Some(receipt);
            message.visible_at = now + self.visibility;
            taken.push((pick, Some(message.clone())));
        }
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for (i, received) in &taken {
            match received {
                Some(m) => out.push(m.clone()),
                None => dead.push(*i),
            }
        }
        dead.sort_unstable();
        for i in dead.into_iter().rev() {
            let m = state.messages.remove(i);
            world.trace(format!(
                "DLQ {} after {} receives: {}",
                m.message_id, m.receive_count, m.body
            ));
            state.dlq.push(m);
        }
        out
    }

    pub fn delete(&self, receipt: &str) {
        let mut state = self.lock();
        // Only the newest receipt deletes, as SQS documents for a message received again.
        state
            .messages
            .retain(|m| m.receipt.as_deref() != Some(receipt));
    }

    /// When the next message becomes visible, if any is queued.
    pub fn next_visible(&self) -> Option<Instant> {
        self.lock().messages.iter().map(|m| m.visible_at).min()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().messages.is_empty()
    }

    pub fn dlq(&self) -> Vec<QueuedMessage> {
        self.lock().dlq.clone()
    }

    /// Every message body sent so far (copies included).
    pub fn sent(&self) -> Vec<String> {
        self.lock().sent.clone()
    }
}

#[async_trait]
impl WorkQueue for SimQueue {
    async fn send_delayed(
        &self,
        messages: &[WorkMessage],
        delay: Duration,
    ) -> Result<(), StoreError> {
        let n = self.hooks.before("sqs send").await?;
        for m in messages {
            let body = serde_json::to_string(m).expect("messages serialize");
            self.enqueue(body.clone(), delay);
            if self.hooks.world.chance(self.hooks.world.faults.duplicate) {
                let later = delay + Duration::from_millis(self.hooks.world.range(0..30_000));
                self.hooks
                    .world
                    .inject("duplicate", format!("sqs delivers twice: {body}"));
                self.enqueue(body, later);
            }
        }
        self.hooks.after("sqs send", n).await
    }

    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        let n = self.hooks.before("sqs change visibility").await?;
        {
            let mut state = self.lock();
            if let Some(m) = state
                .messages
                .iter_mut()
                .find(|m| m.receipt.as_deref() == Some(receipt_handle))
            {
                m.visible_at = Instant::now() + delay;
            }
        }
        self.changed.notify_waiters();
        self.hooks.after("sqs change visibility", n).await
    }
}

/// The table's stream after the template's filter: at-least-once, in order.
pub struct SimStream {
    world: Arc<World>,
    state: Mutex<(u64, VecDeque<StreamRecord>)>,
    pub changed: Notify,
}

impl SimStream {
    pub fn new(world: Arc<World>) -> SimStream {
        SimStream {
            world,
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    fn publish(&self, session_id: &str) {
        let copies = if self.world.chance(self.world.faults.duplicate) {
            self.world
                .inject("duplicate", format!("stream delivers {session_id} twice"));
            2
        } else {
            1
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..copies {
            state.0 += 1;
            let sequence = state.0;
            state.1.push_back(StreamRecord {
                sequence,
                session_id: session_id.to_string(),
            });
        }
        drop(state);
        self.world
            .trace(format!("stream: {session_id} has nothing remaining"));
        self.changed.notify_waiters();
    }

    pub fn take(&self, max: usize) -> Vec<StreamRecord> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = max.min(state.1.len());
        state.1.drain(..n).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .is_empty()
    }
}

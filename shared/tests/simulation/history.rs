//! One seeded history: several CKAN sources harvested over several virtual hours by the real
//! handlers (`trawl::handlers::{scheduler, harvester, finalizer}`) while the world misbehaves,
//! then checked (`checks.rs`).

use super::catalog::Remote;
use super::checks;
use super::world::{
    Hooks, Invocation, SimClock, SimObjects, SimQueue, SimStore, SimStream, StreamRecord, World,
    INVOCATION,
};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trawl::local::{MemoryObjects, MemoryStore};
use trawl::model::{RawStorage, SourceOptions, SourceSpec, StaleAction};
use trawl::pipeline::{AbortFlags, Services, Settings};
use trawl::ports::{SessionLedger, SourceRegistry};

/// What a history did and what was wrong with it.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub sessions: u64,
    pub resources_counted: u64,
    pub invocations: u64,
    /// Alerts the stages published.
    pub alerts: u64,
    pub violations: Vec<String>,
    pub faults: String,
    pub injected: BTreeMap<&'static str, u64>,
    pub trace: Vec<String>,
}

/// Everything the simulated Lambda service needs.
pub struct Ctx {
    pub world: Arc<World>,
    pub svc: Services,
    pub store: Arc<SimStore>,
    pub inner: Arc<MemoryStore>,
    pub objects: Arc<MemoryObjects>,
    pub queue: Arc<SimQueue>,
    pub stream: Arc<SimStream>,
    pub remote: Arc<Remote>,
    pub sources: Vec<(String, String)>,
    /// Stream records given up on (the mapping's on-failure destination).
    pub stream_failures: Mutex<Vec<StreamRecord>>,
    pub invocations: AtomicU64,
    /// Every alert the stages published.
    pub alerts: Arc<SimAlerts>,
    stop: AtomicBool,
}

/// The alert topic: keeps what it is given.
#[derive(Default)]
pub struct SimAlerts(Mutex<Vec<trawl::model::alert::Alert>>);

impl SimAlerts {
    pub fn published(&self) -> Vec<trawl::model::alert::Alert> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl trawl::ports::AlertSink for SimAlerts {
    async fn publish(
        &self,
        alerts: &[trawl::model::alert::Alert],
    ) -> Result<(), trawl::ports::AlertError> {
        self.0.lock().unwrap().extend(alerts.iter().cloned());
        Ok(())
    }
}

/// Template values (`template.yaml` defaults): harvester timeout 30 s, visibility 180 s,
/// 5 receives, batches of 10, at most 5 concurrent batches, stream retries 5.
const HARVESTER_TIMEOUT: Duration = Duration::from_secs(30);
const FINALIZER_TIMEOUT: Duration = Duration::from_secs(60);
const VISIBILITY: Duration = Duration::from_secs(180);
const MAX_RECEIVES: u32 = 5;
const CONCURRENCY: usize = 5;
const STREAM_RETRIES: u32 = 5;
/// Sessions are started for this long; then the world runs until everything settles.
const HORIZON: Duration = Duration::from_secs(8 * 3600);
const DRAIN: Duration = Duration::from_secs(8 * 3600);

/// Runs history `seed`. `selections`: operators (or servers' pushes) also start selections
/// of named packages, drawn from a generator of their own, so a history without them is
/// exactly the history it was before they existed (the regression seeds run without them).
pub fn run(seed: u64, selections: bool) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    trawl::random::seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    runtime.block_on(async move {
        let epoch = "2026-01-05T00:00:00Z".parse().expect("a time");
        let world = World::new(seed, epoch);
        let ctx = Arc::new(build(world.clone()));
        let mut tasks = Vec::new();
        for k in 0..CONCURRENCY {
            tasks.push(tokio::spawn(harvester_poller(ctx.clone(), k)));
        }
        tasks.push(tokio::spawn(finalizer_poller(ctx.clone())));
        tasks.push(tokio::spawn(catalog_changes(ctx.clone())));
        // Half the histories that may have selections have them.
        let mut own = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5e1e_c710_0000_0000);
        if selections && own.gen_bool(0.5) {
            tasks.push(tokio::spawn(operator_selections(ctx.clone(), own)));
        }
        schedule(&ctx).await;
        ctx.stop.store(true, Ordering::SeqCst);
        for t in &tasks {
            t.abort();
        }
        let mut report = Report {
            seed,
            faults: format!("{:?}", world.faults),
            ..Report::default()
        };
        checks::check(&ctx, &mut report).await;
        report.invocations = ctx.invocations.load(Ordering::Relaxed);
        report.alerts = ctx.alerts.published().len() as u64;
        report.injected = world
            .injected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        report.trace = world.trace_lines();
        report
    })
}

fn build(world: Arc<World>) -> Ctx {
    let settings = Settings {
        tick_minutes: 5,
        max_receive_count: MAX_RECEIVES,
        http_timeout: Duration::from_secs(10),
        batch_concurrency: 10,
        // Small, so most listing pages are fanned out in several chunks, each its own message
        // that can die, be duplicated or race its copies.
        delivery_chunk: 3,
        // Short enough that the watchdog's deadline falls inside a history.
        session_deadline_minutes: 120,
        max_retry_delay: VISIBILITY,
        ..Settings::default()
    };
    let hooks = Hooks {
        world: world.clone(),
    };
    let clock: Arc<dyn trawl::ports::Clock> = Arc::new(SimClock(world.clone()));
    let stream = Arc::new(SimStream::new(world.clone()));
    let inner = Arc::new(MemoryStore::default());
    let store = Arc::new(SimStore::new(inner.clone(), hooks.clone(), stream.clone()));
    let objects = Arc::new(MemoryObjects::default());
    let queue = Arc::new(SimQueue::new(hooks.clone(), VISIBILITY, MAX_RECEIVES));
    let remote = Arc::new(Remote::new(
        world.clone(),
        settings.http_timeout,
        clock.clone(),
    ));
    let alerts = Arc::new(SimAlerts::default());
    let svc = Services {
        store: store.clone(),
        objects: Arc::new(SimObjects {
            inner: objects.clone(),
            hooks: hooks.clone(),
        }),
        queue: queue.clone(),
        http: trawl::http::HttpClient::over(
            remote.clone(),
            settings.http_timeout,
            settings.max_body_bytes,
        )
        .with_gate(Arc::new(trawl::politeness::MemoryGate::default())),
        clock,
        settings,
        aborts: Arc::new(AbortFlags::default()),
        alerts: alerts.clone(),
    };

    // Sources and their catalogs, drawn from the seed.
    let n_sources = world.range(1..4) as usize;
    let mut sources = Vec::new();
    for i in 0..n_sources {
        let host = format!("cat{i}.example.org");
        let id = format!("src{i}");
        let mut rng = world.rng();
        let every = [1, 2, 3][rng.gen_range(0..3)];
        let minute = rng.gen_range(0..60);
        let options = SourceOptions {
            stale_after_listings: rng.gen_range(1..4),
            max_shrink_percent: [50, 100][rng.gen_range(0..2)],
            // Hold for a third of the sources that would move, from a draw already made (a
            // new draw would change every kept seed's history).
            on_stale: match (rng.gen_bool(0.5), minute % 3) {
                (true, 0) => StaleAction::Hold,
                (true, _) => StaleAction::Move,
                (false, _) => StaleAction::Remove,
            },
            // Half the sources keep raw responses one object each, a quarter in batches, a
            // quarter not at all: from a draw already made, as above.
            raw: match (minute / 3) % 4 {
                2 => RawStorage::Batch,
                3 => RawStorage::None,
                _ => RawStorage::Resource,
            },
            incremental: rng.gen_bool(0.3),
            max_in_flight: rng.gen_bool(0.3).then(|| rng.gen_range(1..4)),
            requests_per_second: rng.gen_bool(0.3).then(|| rng.gen_range(1..20)),
            exclude: if rng.gen_bool(0.2) {
                vec!["*-x".into()]
            } else {
                Vec::new()
            },
            ..SourceOptions::default()
        };
        let size = rng.gen_range(0..25);
        let cap = rng.gen_range(2..9);
        drop(rng);
        let source = SourceSpec {
            id: id.clone(),
            protocol: "ckan".into(),
            base_url: format!("https://{host}"),
            schedule: format!("cron({minute} */{every} * * ? *)"),
            enabled: true,
            internal: false,
            options,
        }
        .validate()
        .expect("simulated sources are valid");
        world.trace(format!("source {id}: {source:?}"));
        {
            let mut sites = remote.lock();
            sites.entry(host.clone()).or_default().rows_cap = cap;
        }
        for k in 0..size {
            remote.add(&host, &package_id(k));
        }
        futures::executor::block_on(inner.put_source(&source)).expect("memory store");
        sources.push((id, host));
    }
    Ctx {
        world,
        svc,
        store,
        inner,
        objects,
        queue,
        stream,
        remote,
        sources,
        stream_failures: Mutex::default(),
        invocations: AtomicU64::new(0),
        alerts,
        stop: AtomicBool::new(false),
    }
}

/// Package ids: UUID-like, sorted as CKAN sorts them; a `-x` suffix on some is excluded by
/// the sources that exclude `*-x`.
fn package_id(k: u64) -> String {
    let h = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    if k % 7 == 3 {
        format!("{h:06x}-{k:03}-x")
    } else {
        format!("{h:06x}-{k:03}")
    }
}

pub enum Ran<T> {
    Done(T),
    Crashed,
    TimedOut,
}

/// Runs `f` as one Lambda invocation: cut off where the invocation's crash point falls, or
/// at `timeout`.
pub async fn invoke<F: Future>(ctx: &Ctx, name: String, timeout: Duration, f: F) -> Ran<F::Output> {
    ctx.invocations.fetch_add(1, Ordering::Relaxed);
    let inv = Invocation::new(&ctx.world, name);
    let run = INVOCATION.scope(inv.clone(), tokio::time::timeout(timeout, f));
    tokio::select! {
        biased;
        _ = inv.on_crash.notified() => Ran::Crashed,
        r = run => match r {
            Ok(v) => Ran::Done(v),
            Err(_) => {
                ctx.world.trace(format!("{} timed out", inv.name));
                Ran::TimedOut
            }
        },
    }
}

/// EventBridge Scheduler: a tick every 5 minutes, retried (as its retry policy does) when the
/// invocation fails. Returns when the horizon is past and everything has settled.
async fn schedule(ctx: &Ctx) {
    let tick = Duration::from_secs(300);
    let mut k: u32 = 1;
    loop {
        let at = ctx.world.started + tick * k;
        tokio::time::sleep_until(at).await;
        let scheduled = ctx.world.epoch + chrono::Duration::seconds(i64::from(k) * 300);
        if ctx.world.elapsed() < HORIZON {
            for attempt in 0..3 {
                let event = json!({"scheduled_time": scheduled});
                let ran = invoke(
                    ctx,
                    format!("scheduler tick {k} attempt {attempt}"),
                    Duration::from_secs(60),
                    trawl::handlers::scheduler(&ctx.svc, event),
                )
                .await;
                match ran {
                    Ran::Done(Ok(report)) => {
                        if !report.started.is_empty()
                            || !report.expired.is_empty()
                            || !report.resumed_listings.is_empty()
                            || !report.closed.is_empty()
                        {
                            ctx.world.trace(format!("tick {k}: {report:?}"));
                        }
                        break;
                    }
                    Ran::Done(Err(e)) => ctx.world.trace(format!("tick {k} failed: {e}")),
                    _ => {}
                }
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
        } else {
            // Past the horizon no session starts, but the watchdog still runs on each tick.
            let ran = invoke(
                ctx,
                format!("watchdog tick {k}"),
                Duration::from_secs(60),
                trawl::pipeline::watchdog::sweep(&ctx.svc, ctx.svc.clock.now()),
            )
            .await;
            if let Ran::Done(Ok(sweep)) = ran {
                if !sweep.expired.is_empty()
                    || !sweep.resumed_listings.is_empty()
                    || !sweep.closed.is_empty()
                {
                    ctx.world.trace(format!("watchdog tick {k}: {sweep:?}"));
                }
            }
            if settled(ctx).await || ctx.world.elapsed() > HORIZON + DRAIN {
                return;
            }
        }
        k += 1;
    }
}

async fn settled(ctx: &Ctx) -> bool {
    let sources = ctx.inner.list_sources().await.unwrap_or_default();
    sources.iter().all(|s| s.running_session.is_none())
        && ctx.queue.is_empty()
        && ctx.stream.is_empty()
}

/// What `take` finds, waiting for `changed` (or for `wait()`) while it finds nothing. The
/// wakeup is registered before each look, so a change in between is not missed.
async fn next_batch<T>(
    changed: &tokio::sync::Notify,
    mut take: impl FnMut() -> Vec<T>,
    wait: impl Fn() -> Duration,
) -> Vec<T> {
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch = take();
        if !batch.is_empty() {
            return batch;
        }
        tokio::select! {
            biased;
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait()) => {}
        }
    }
}

/// One poller of the SQS event source mapping: batches of up to 10 to the harvester handler;
/// what it does not report failed is deleted, nothing is deleted after a crash or timeout.
async fn harvester_poller(ctx: Arc<Ctx>, k: usize) {
    let mut n = 0u64;
    loop {
        let batch = next_batch(
            &ctx.queue.changed,
            || ctx.queue.receive(10),
            || {
                ctx.queue
                    .next_visible()
                    .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
                    .unwrap_or(Duration::from_secs(3600))
                    .max(Duration::from_millis(100))
            },
        )
        .await;
        n += 1;
        let records: Vec<Value> = batch
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt,
                    "body": m.body,
                    "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:work",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let event = serde_json::from_value(json!({ "Records": records })).expect("an SQS event");
        let name = format!("harvester {k}.{n} ({} messages)", batch.len());
        match invoke(
            &ctx,
            name,
            HARVESTER_TIMEOUT,
            trawl::handlers::harvester(&ctx.svc, event),
        )
        .await
        {
            Ran::Done(response) => {
                let failed: Vec<String> = response
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect();
                for m in &batch {
                    if !failed.contains(&m.message_id) {
                        if let Some(receipt) = &m.receipt {
                            ctx.queue.delete(receipt);
                        }
                    }
                }
            }
            Ran::Crashed | Ran::TimedOut => {}
        }
    }
}

/// The stream's event source mapping: batches of up to 10 in order, partial batch responses,
/// bisection on a failed invocation, 5 retries, then the on-failure destination.
async fn finalizer_poller(ctx: Arc<Ctx>) {
    let mut n = 0u64;
    loop {
        let records = next_batch(
            &ctx.stream.changed,
            || ctx.stream.take(10),
            || Duration::from_secs(3600),
        )
        .await;
        let mut batches = std::collections::VecDeque::from([(records, 0u32)]);
        while let Some((batch, attempts)) = batches.pop_front() {
            n += 1;
            let event = json!({"Records": batch.iter().map(|r| json!({
                "eventName": "MODIFY",
                "dynamodb": {
                    "SequenceNumber": r.sequence.to_string(),
                    "NewImage": {
                        "pk": {"S": trawl::keys::session_pk(&r.session_id)},
                        "sk": {"S": trawl::keys::SESSION_SK},
                        "status": {"S": "running"},
                        "remaining": {"N": "0"},
                    },
                },
            })).collect::<Vec<_>>()});
            let ran = invoke(
                &ctx,
                format!("finalizer {n} ({} records)", batch.len()),
                FINALIZER_TIMEOUT,
                trawl::handlers::finalizer(&ctx.svc, event),
            )
            .await;
            let retry: Vec<StreamRecord> = match ran {
                Ran::Done(response) => {
                    let first_failed = response["batchItemFailures"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f["itemIdentifier"].as_str()?.parse::<u64>().ok())
                        .min();
                    match first_failed {
                        Some(seq) => batch.into_iter().filter(|r| r.sequence >= seq).collect(),
                        None => Vec::new(),
                    }
                }
                Ran::Crashed | Ran::TimedOut if batch.len() > 1 => {
                    let mut batch = batch;
                    let second = batch.split_off(batch.len() / 2);
                    batches.push_front((second, attempts + 1));
                    batches.push_front((batch, attempts + 1));
                    continue;
                }
                Ran::Crashed | Ran::TimedOut => batch,
            };
            if retry.is_empty() {
                continue;
            }
            if attempts >= STREAM_RETRIES {
                ctx.world.trace(format!(
                    "stream: records {:?} sent to the on-failure destination",
                    retry.iter().map(|r| &r.session_id).collect::<Vec<_>>()
                ));
                ctx.stream_failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(retry);
                continue;
            }
            tokio::time::sleep(Duration::from_secs(1 << attempts.min(6))).await;
            batches.push_front((retry, attempts + 1));
        }
    }
}

/// Now and then a selection of 1–3 packages is started (`{"source_id", "resource_ids"}`),
/// sometimes naming one the catalog never had, through the scheduler handler like a tick
/// (retried the same way, so a retry resumes the same session). Its choices come from `rng`.
async fn operator_selections(ctx: Arc<Ctx>, mut rng: rand::rngs::StdRng) {
    let mut n = 0u64;
    loop {
        tokio::time::sleep(Duration::from_secs(rng.gen_range(1200..5400))).await;
        if ctx.world.elapsed() > HORIZON || ctx.sources.is_empty() {
            return;
        }
        let (source_id, host) = ctx.sources[rng.gen_range(0..ctx.sources.len())].clone();
        let known: Vec<String> = ctx
            .remote
            .lock()
            .get(&host)
            .map(|s| s.packages.keys().cloned().collect())
            .unwrap_or_default();
        let mut ids: Vec<String> = (0..rng.gen_range(1..4))
            .filter(|_| !known.is_empty())
            .map(|_| known[rng.gen_range(0..known.len())].clone())
            .collect();
        if ids.is_empty() || rng.gen_bool(0.2) {
            n += 1;
            ids.push(format!("never-there-{n}"));
        }
        // Off the minute, so it never names the same session as a tick.
        let at = ctx.world.epoch
            + chrono::Duration::seconds(ctx.world.elapsed().as_secs() as i64)
            + chrono::Duration::seconds(rng.gen_range(1..59));
        let event = json!({"source_id": source_id, "resource_ids": ids, "scheduled_time": at});
        ctx.world
            .trace(format!("operator selects {ids:?} of {source_id}"));
        for attempt in 0..3 {
            let ran = invoke(
                &ctx,
                format!("selection of {source_id} attempt {attempt}"),
                Duration::from_secs(60),
                trawl::handlers::scheduler(&ctx.svc, event.clone()),
            )
            .await;
            match ran {
                Ran::Done(Ok(report)) => {
                    ctx.world.trace(format!("selection: {report:?}"));
                    break;
                }
                Ran::Done(Err(e)) => ctx.world.trace(format!("selection failed: {e}")),
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
    }
}

/// The remote catalogs change over the history: additions, removals (some come back), and
/// content changes, between sessions and (in histories with shifting pages) during listings.
async fn catalog_changes(ctx: Arc<Ctx>) {
    let mut next_id = 1000u64;
    let mut removed: Vec<(String, String)> = Vec::new();
    loop {
        let wait = Duration::from_secs(ctx.world.range(60..2400));
        tokio::time::sleep(wait).await;
        if ctx.world.elapsed() > HORIZON || ctx.sources.is_empty() {
            return;
        }
        let (source_id, host) =
            ctx.sources[ctx.world.range(0..ctx.sources.len() as u64) as usize].clone();
        if !ctx.world.faults.shifting_pages {
            let running = ctx
                .inner
                .get_source(&source_id)
                .await
                .ok()
                .flatten()
                .and_then(|e| e.running_session);
            if running.is_some() {
                continue;
            }
        }
        let ids: Vec<String> = ctx
            .remote
            .lock()
            .get(&host)
            .map(|s| s.packages.keys().cloned().collect())
            .unwrap_or_default();
        // Now and then an operator aborts a running session (`trawl abort`).
        if ctx.world.chance(0.03) {
            let running = ctx
                .inner
                .get_source(&source_id)
                .await
                .ok()
                .flatten()
                .and_then(|e| e.running_session);
            if let Some(session) = running {
                ctx.world.trace(format!("operator aborts {session}"));
                let _ = ctx.inner.request_abort(&session).await;
                continue;
            }
        }
        match ctx.world.range(0..10) {
            0..=2 => {
                next_id += 1;
                ctx.remote.add(&host, &package_id(next_id));
            }
            3..=4 if !ids.is_empty() => {
                let id = ids[ctx.world.range(0..ids.len() as u64) as usize].clone();
                ctx.remote.remove(&host, &id);
                removed.push((host.clone(), id));
            }
            5..=7 if !ids.is_empty() => {
                let id = ids[ctx.world.range(0..ids.len() as u64) as usize].clone();
                ctx.remote.change(&host, &id);
            }
            8 if !removed.is_empty() => {
                let (h, id) = removed.remove(ctx.world.range(0..removed.len() as u64) as usize);
                ctx.remote.add(&h, &id);
            }
            _ => {}
        }
    }
}

//! The fault-injection suite: the whole local pipeline (LocalStack queue, table, stream and
//! bucket; the runner playing Lambda) harvesting ≥ 2,000 datasets while everything around it
//! misbehaves, driven by a seed:
//!
//! - every work message is delivered twice, the copy at a random moment (0–20 s later);
//! - ~10% of harvester invocations die mid-batch like a crashed Lambda (no response; the
//!   batch reappears after the visibility timeout; what was written stays written);
//! - the remote answers ~5% of requests with a 5xx, stalls ~2% past the HTTP timeout and cuts
//!   ~1% of bodies short; 0.5% of its datasets are gone for good (404).
//!
//! Work that dies on its last allowed receive goes to the DLQ uncounted and the session
//! stalls; that is the watchdog's case, so the suite runs the watchdog as if the session's
//! deadline had passed, exactly as the scheduler's next tick after the deadline would.
//!
//! Then it checks the invariants and prints the figures. CI runs the seeds in
//! `TRAWL_FAULT_SEEDS` (default `1,2`); for a longer run:
//!
//!   TRAWL_FAULT_SEEDS=1,2,3,4,5,6,7,8 cargo test --workspace --test faults -- --nocapture

use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use trawl::model::{Outcome, ReasonCode, Record, SessionStatus, SourceSpec};
use trawl::pipeline::watchdog;
use trawl_e2e::{list_objects, lock_stack, runner, unique_source_id};
use trawl_fixtures::{Chaos, ErddapConfig, ErddapFixture, Failure};
use trawl_runner::{Faults, Runner};

const RESOURCES: usize = 2000;

#[derive(Debug, Default)]
struct Figures {
    seed: u64,
    resources: u64,
    seconds: f64,
    harvested: u64,
    failed: u64,
    reasons: BTreeMap<String, u64>,
    messages: u64,
    duplicates: u64,
    crashed_batches: u64,
    injected_5xx: u64,
    injected_stalls: u64,
    injected_malformed: u64,
    dead_lettered: u64,
    watchdog_lost: u64,
    refetches: u64,
    orphan_records: u64,
    /// Failed resources keeping content an uncounted attempt wrote.
    kept_content: u64,
    violations: Vec<String>,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_suite_every_session_closes_once_with_every_resource_counted_once() {
    let _lock = lock_stack();
    // `TRAWL_FAULT_LOG=warn` (an env-filter) prints the stages' logs: why work was retried,
    // which batches timed out.
    if let Ok(filter) = std::env::var("TRAWL_FAULT_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let seeds: Vec<u64> = std::env::var("TRAWL_FAULT_SEEDS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let resources = env_or("TRAWL_FAULT_RESOURCES", RESOURCES);
    assert!(!seeds.is_empty(), "TRAWL_FAULT_SEEDS names no seed");

    let mut all = Vec::new();
    for seed in seeds {
        let figures = run_seed(seed, resources).await;
        println!(
            "{}",
            serde_json::to_string(&figures_json(&figures)).unwrap()
        );
        all.push(figures);
    }
    println!(
        "fault suite: {} seeds × {} resources, {} violations",
        all.len(),
        resources,
        all.iter().map(|f| f.violations.len()).sum::<usize>()
    );
    for f in &all {
        println!(
            "  seed {:>3}: {:>6.1} s, harvested {}, failed {} {:?}, messages {}, duplicates {}, crashed batches {}, injected 5xx/stall/malformed {}/{}/{}, dead-lettered {}, lost {}, refetches {}, orphan records {}, failed keeping content {}, violations {}",
            f.seed, f.seconds, f.harvested, f.failed, f.reasons, f.messages, f.duplicates,
            f.crashed_batches, f.injected_5xx, f.injected_stalls, f.injected_malformed,
            f.dead_lettered, f.watchdog_lost, f.refetches, f.orphan_records, f.kept_content, f.violations.len()
        );
    }
    let violations: Vec<String> = all
        .iter()
        .flat_map(|f| {
            f.violations
                .iter()
                .map(move |v| format!("seed {}: {v}", f.seed))
        })
        .collect();
    assert!(violations.is_empty(), "{violations:#?}");
}

fn figures_json(f: &Figures) -> serde_json::Value {
    json!({
        "seed": f.seed, "resources": f.resources, "seconds": f.seconds,
        "harvested": f.harvested, "failed": f.failed, "reasons": f.reasons,
        "messages": f.messages, "duplicates": f.duplicates, "crashed_batches": f.crashed_batches,
        "injected": {"5xx": f.injected_5xx, "stalls": f.injected_stalls, "malformed": f.injected_malformed},
        "dead_lettered": f.dead_lettered, "watchdog_lost": f.watchdog_lost,
        "refetches": f.refetches, "orphan_records": f.orphan_records, "kept_content": f.kept_content, "violations": f.violations,
    })
}

async fn run_seed(seed: u64, resources: usize) -> Figures {
    let mut f = Figures {
        seed,
        resources: resources as u64,
        ..Figures::default()
    };
    let runner = runner(Faults {
        duplicate_every_message: true,
        duplicate_delay_max_secs: 20,
        crash_probability: 0.10,
        seed,
    })
    .await
    .unwrap();
    let http_timeout = runner.services.settings.http_timeout;
    let width = resources.to_string().len().max(4);
    let gone: BTreeMap<String, Failure> = (1..=resources)
        .filter(|i| i % 200 == 0)
        .map(|i| (format!("ds_{i:0width$}"), Failure::NotFound))
        .collect();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: resources,
        failures: gone.clone(),
        chaos: Some(Chaos::flaky(
            seed,
            http_timeout + Duration::from_millis(500),
        )),
        ..Default::default()
    })
    .await
    .unwrap();
    let source_id = unique_source_id(&format!("faults-{seed}"));
    let source = SourceSpec {
        id: source_id.clone(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: "cron(0 3 1 1 ? *)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    let store = runner.services.store.clone();
    store.put_source(&source).await.unwrap();

    let started = Instant::now();
    let at = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let report = runner
        .invoke_scheduler(json!({"source_id": source_id, "scheduled_time": at}))
        .await
        .unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    let session_id = report.started[0].clone();
    let ids = [session_id.clone()];
    let timeout = Duration::from_secs(env_or("TRAWL_FAULT_TIMEOUT_SECS", 1800));
    let open = runner
        .run_until_closed_or_stalled(&ids, timeout, Duration::from_secs(20))
        .await
        .unwrap();
    if !open.is_empty() {
        // Work died on its last receive and sits in the DLQ uncounted: what the scheduler's
        // watchdog does once the session's deadline passes.
        let session = store.get_session(&session_id).await.unwrap().unwrap();
        let (_, lost) = watchdog::expire(&runner.services, &session).await.unwrap();
        f.watchdog_lost = lost;
        runner.run_until_closed(&ids, timeout).await.unwrap();
    }
    f.seconds = started.elapsed().as_secs_f64();
    let stats = runner.stats.snapshot();
    f.messages = stats["messages"];
    f.duplicates = stats["duplicates_sent"];
    f.crashed_batches = stats["crashed_batches"];
    let chaos = fixture.chaos_counts();
    (f.injected_5xx, f.injected_stalls, f.injected_malformed) =
        (chaos.server_errors, chaos.stalls, chaos.malformed);

    let mut violation = |v: String| f.violations.push(v);
    let session = store.get_session(&session_id).await.unwrap().unwrap();
    let c = session.counters;
    f.harvested = c.harvested;
    f.failed = c.failed;

    // The session closed, exactly once.
    if session.status == SessionStatus::Running {
        violation(format!("session still running: {c:?}"));
    }
    let closes = runner.closes_observed(&session_id);
    if closes != 1 {
        violation(format!("the stream showed {closes} closes"));
    }
    let summary_key = trawl::keys::summary_key(&source_id, &session.stamp());
    if runner
        .services
        .objects
        .get(&summary_key)
        .await
        .unwrap()
        .is_none()
    {
        violation(format!("no summary at {summary_key}"));
    }

    // The outcome counters sum to the number of resources.
    let n = resources as u64;
    if c.total != n || c.harvested + c.unchanged + c.failed != n || c.remaining != 0 {
        violation(format!("counters do not add up to {n}: {c:?}"));
    }

    // Every resource has exactly one outcome for the session, and it matches its marker.
    let mut markers = BTreeMap::new();
    let mut after = None;
    loop {
        let (page, next) = store.session_markers(&session_id, after).await.unwrap();
        for m in page {
            markers.insert(m.resource_id.clone(), m);
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let expected: BTreeSet<String> = fixture.dataset_ids().into_iter().collect();
    if markers.keys().cloned().collect::<BTreeSet<_>>() != expected {
        violation(format!(
            "{} markers for {} datasets",
            markers.len(),
            expected.len()
        ));
    }
    let by_outcome = |o: Outcome| markers.values().filter(|m| m.outcome == Some(o)).count() as u64;
    if (
        by_outcome(Outcome::Harvested),
        by_outcome(Outcome::Unchanged),
        by_outcome(Outcome::Failed),
    ) != (c.harvested, c.unchanged, c.failed)
    {
        violation("marker outcomes disagree with the counters".into());
    }
    for m in markers.values() {
        if let Some(r) = &m.reason {
            *f.reasons.entry(r.code.as_str().to_string()).or_default() += 1;
        }
    }
    for id in gone.keys() {
        if markers
            .get(id)
            .and_then(|m| m.reason.as_ref())
            .map(|r| r.code)
            != Some(ReasonCode::NotFound)
        {
            violation(format!("{id} is gone upstream but not counted NOT_FOUND"));
        }
    }
    let states: Vec<_> = futures::stream::iter(expected.iter().cloned())
        .map(|id| {
            let store = store.clone();
            let source_id = source_id.clone();
            async move {
                (
                    id.clone(),
                    store.get_resource(&source_id, &id).await.unwrap(),
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut with_record = BTreeMap::new();
    for (id, state) in &states {
        let Some(state) = state else {
            violation(format!("{id} has no resource state"));
            continue;
        };
        let entries = state
            .history
            .iter()
            .filter(|h| h.session_id == session_id)
            .count();
        if entries != 1 {
            violation(format!("{id} has {entries} outcomes for the session"));
        }
        if markers.get(id).and_then(|m| m.outcome) != Some(state.last_outcome) {
            violation(format!("{id}: state and marker disagree"));
        }
        if let (Some(key), Some(hash)) = (&state.record_key, &state.content_hash) {
            with_record.insert(key.clone(), hash.clone());
        }
    }

    // No record lost, none duplicated: every resource holding content has its one record
    // object, holding the content its state's hash names.
    let records: BTreeSet<String> = list_objects(&runner, &format!("records/{source_id}/"))
        .await
        .unwrap()
        .into_keys()
        .collect();
    let lost: Vec<&String> = with_record
        .keys()
        .filter(|k| !records.contains(*k))
        .collect();
    if !lost.is_empty() {
        violation(format!("{} records lost, e.g. {}", lost.len(), lost[0]));
    }
    // None left unnamed either: content an attempt wrote and was not counted for (it
    // crashed, or a copy counted a failure first) is named by the state all the same
    // (`pipeline/content.rs`), so its resource counts as failed but keeps the content.
    let orphans: Vec<&String> = records
        .iter()
        .filter(|k| !with_record.contains_key(*k))
        .collect();
    f.orphan_records = orphans.len() as u64;
    if !orphans.is_empty() {
        violation(format!(
            "{} record objects no state names, e.g. {}",
            orphans.len(),
            orphans[0]
        ));
    }
    // Every harvested resource has content; a failed one has it only when an uncounted
    // attempt of this session wrote it (the catalog is new, so nothing came before).
    let mut harvested_with_content = 0;
    for (id, state) in states.iter().filter_map(|(id, s)| Some((id, s.as_ref()?))) {
        match (state.last_outcome, &state.content_hash) {
            (Outcome::Harvested, Some(_)) => harvested_with_content += 1,
            (Outcome::Harvested, None) => violation(format!("{id} harvested without content")),
            (Outcome::Failed, Some(_)) => f.kept_content += 1,
            _ => {}
        }
    }
    if harvested_with_content != c.harvested {
        violation(format!(
            "{harvested_with_content} harvested resources with content, {} counted",
            c.harvested
        ));
    }
    let mismatched: Vec<String> = futures::stream::iter(with_record.clone())
        .map(|(key, hash)| {
            let objects = runner.services.objects.clone();
            async move {
                let body = objects.get(&key).await.unwrap();
                let record: Option<Record> = body.and_then(|b| serde_json::from_slice(&b).ok());
                (record.map(|r| r.content_hash()) != Some(hash)).then_some(key)
            }
        })
        .buffer_unordered(16)
        .filter_map(|k| async move { k })
        .collect()
        .await;
    if !mismatched.is_empty() {
        violation(format!(
            "{} records differ from their hash, e.g. {}",
            mismatched.len(),
            mismatched[0]
        ));
    }
    // Fetches beyond one per dataset: retries, redeliveries after crashes, racing copies.
    f.refetches = fixture.dataset_info_requests().saturating_sub(n);

    // The DLQ holds nothing that was not counted.
    let dlq = dlq_for(&runner, &session_id).await;
    f.dead_lettered = dlq.len() as u64;
    for resource in dlq {
        if markers.get(&resource).is_none_or(|m| m.outcome.is_none()) {
            violation(format!("{resource} is in the DLQ uncounted"));
        }
    }
    f
}

/// The resource ids of this session's work messages in the dead-letter queue.
async fn dlq_for(runner: &Runner, session_id: &str) -> Vec<String> {
    runner
        .dlq_list()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m["body"]["session_id"] == session_id)
        .filter_map(|m| m["body"]["resource_id"].as_str().map(str::to_string))
        .collect()
}

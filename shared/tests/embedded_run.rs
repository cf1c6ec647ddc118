//! The embedded run's driver (`local::run::harvest_once`): the in-process queue keeps a
//! deferred message until the time the server asked for, as SQS's delay would.

use std::sync::Arc;
use std::time::{Duration, Instant};
use trawl::local::{run, run::harvest_once, MemoryObjects, MemoryQueue, MemoryStore};
use trawl::model::SourceSpec;
use trawl::pipeline::{Services, Settings};
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_saying_retry_after_is_not_asked_again_before_then() {
    let fixture = Arc::new(
        ErddapFixture::start(ErddapConfig {
            datasets: 3,
            failures: [("ds_0002".to_string(), Failure::Throttled(2))].into(),
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    // The server recovers right after its first 503.
    let watcher = {
        let fixture = fixture.clone();
        tokio::spawn(async move {
            while fixture.requests("/erddap/info/ds_0002/") == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            fixture.set_failure("ds_0002", None);
        })
    };
    let queue = Arc::new(MemoryQueue::with_delays());
    let svc = Services::new(
        Arc::new(MemoryStore::default()),
        Arc::new(MemoryObjects::default()),
        queue.clone(),
        Settings::default(),
    );
    let source = SourceSpec {
        id: "s".into(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: "rate(1 day)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    svc.store.put_source(&source).await.unwrap();

    let started = Instant::now();
    let run = harvest_once(&svc, &queue, "s", chrono::Utc::now(), 4, &|_| {})
        .await
        .unwrap();
    let session = &run.session;
    watcher.await.unwrap();
    assert_eq!(session.counters.harvested, 3);
    // One timing per resource attempt: three resources, the deferred one handled twice.
    assert_eq!(run.resource_times.len(), 4, "{:?}", run.resource_times);
    let (p50, p99) = (
        run.resource_time_quantile(0.5).unwrap(),
        run.resource_time_quantile(0.99).unwrap(),
    );
    assert!(p50 <= p99 && p99 == *run.resource_times.iter().max().unwrap());
    assert_eq!(
        fixture.requests("/erddap/info/ds_0002/"),
        2,
        "asked once more, not five times"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the second request waited for Retry-After: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_politeness_limits_hold_in_the_embedded_run() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 12,
        ..Default::default()
    })
    .await
    .unwrap();
    let queue = Arc::new(MemoryQueue::with_delays());
    // What `trawl harvest` builds its run with.
    let svc = run::services(
        Arc::new(MemoryStore::default()),
        Arc::new(MemoryObjects::default()),
        queue.clone(),
        Settings::default(),
    );
    let source = SourceSpec::from_json(
        &serde_json::json!({"id": "polite", "protocol": "erddap", "base_url": fixture.base_url(),
            "schedule": "rate(1 day)", "internal": true,
            "options": {"max_in_flight": 1, "requests_per_second": 4}})
        .to_string(),
    )
    .unwrap();
    svc.store.put_source(&source).await.unwrap();

    let run = harvest_once(&svc, &queue, "polite", chrono::Utc::now(), 8, &|_| {})
        .await
        .unwrap();
    assert_eq!(run.session.counters.harvested, 12);
    assert_eq!(fixture.max_concurrent_info_requests(), 1);
    assert!(
        fixture.max_info_requests_in_a_second() <= 4,
        "{} requests within one second",
        fixture.max_info_requests_in_a_second()
    );
}

/// Fair share, end to end: a source with 20,000 datasets harvested together with five of
/// 50 (whose catalogs take 3 s to list) does not keep them waiting. All six sessions start
/// together, so the large source's first page (1,000 resources) is queued before the small
/// ones' resources: first in, first out, they would wait behind it; taking turns, each
/// small session is done and closed while the large one has harvested about its share of
/// the first few hundred messages. (The queue's turn-taking itself is tested
/// deterministically in `local::tests`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_sources_finish_while_a_large_one_runs() {
    let large = ErddapFixture::start(ErddapConfig {
        datasets: 20_000,
        ..Default::default()
    })
    .await
    .unwrap();
    // The fixture builds its catalog on the first request, in this test's runtime: not the
    // harvest's time. (A trawl client first: it installs the TLS provider reqwest needs.)
    let _ = trawl::http::HttpClient::new(Duration::from_secs(5), 1024);
    reqwest::get(format!(
        "{}/info/index.json?page=1&itemsPerPage=1000",
        large.base_url()
    ))
    .await
    .unwrap()
    .error_for_status()
    .unwrap();
    let mut small = Vec::new();
    for _ in 0..5 {
        small.push(
            ErddapFixture::start(ErddapConfig {
                datasets: 50,
                failures: [(
                    "allDatasets".to_string(),
                    Failure::Slow(Duration::from_secs(3)),
                )]
                .into(),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    let queue = Arc::new(MemoryQueue::with_delays());
    let svc = run::services(
        Arc::new(MemoryStore::default()),
        Arc::new(MemoryObjects::default()),
        queue.clone(),
        Settings::default(),
    );
    let mut ids = vec!["large".to_string()];
    let mut urls = vec![large.base_url()];
    for (i, fixture) in small.iter().enumerate() {
        ids.push(format!("small-{i}"));
        urls.push(fixture.base_url());
    }
    for (id, url) in ids.iter().zip(&urls) {
        let source = SourceSpec {
            id: id.clone(),
            protocol: "erddap".into(),
            base_url: url.clone(),
            schedule: "rate(1 day)".into(),
            enabled: true,
            internal: true,
            options: Default::default(),
        }
        .validate()
        .unwrap();
        svc.store.put_source(&source).await.unwrap();
    }

    // How many resources the large source had harvested when each small one was done.
    let large_done = std::sync::atomic::AtomicU64::new(0);
    let when_small_done = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let runs = run::harvest_together(&svc, &queue, &id_refs, chrono::Utc::now(), 8, &|id, c| {
        let done = c.harvested + c.unchanged + c.failed;
        if id == "large" {
            large_done.store(done, std::sync::atomic::Ordering::SeqCst);
        } else if c.total > 0 && c.remaining == 0 {
            when_small_done
                .lock()
                .unwrap()
                .entry(id.to_string())
                .or_insert(large_done.load(std::sync::atomic::Ordering::SeqCst));
        }
    })
    .await
    .unwrap();

    assert_eq!(runs[0].session.counters.harvested, 20_000);
    for run in &runs[1..] {
        assert_eq!(run.session.counters.harvested, 50, "{}", run.session.id);
        assert!(
            run.took < runs[0].took / 2,
            "{} closed after {:?}, the large source after {:?}",
            run.session.id,
            run.took,
            runs[0].took
        );
    }
    let seen = when_small_done.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    // Six sources taking turns: the small ones' 250 resources are done within about 300
    // messages, of which the large source's share is about 50, not its first page of 1,000.
    assert!(
        seen.values().all(|&large| large <= 500),
        "the large source had harvested this much when each small one was done: {seen:?}"
    );
}

//! Where raw responses are kept (`options.raw`): one object each, one object per harvester
//! batch (each state naming its range), or none; and everything that reads them back (the
//! status API's resource view and raw route, stale deletion, restoration, the sweep of batch
//! objects no state names), against the in-memory adapters and a fixture ERDDAP server.

mod common;

use common::{erddap_world, sqs_event, t, ErddapWorld};
use std::collections::HashMap;
use trawl::api::{handle, ApiRequest};
use trawl::messages::WorkMessage;
use trawl::model::{RawStorage, Session, SourceOptions, SourceSpec, StaleAction};
use trawl::pipeline::deletions;
use trawl::pipeline::finalize::finalize_session;
use trawl::pipeline::schedule::run_now;
use trawl::ports::{ObjectStore, StoreError, WorkQueue};

/// A world of `datasets` whose source keeps raw responses as `raw` says.
async fn world(datasets: usize, raw: RawStorage) -> ErddapWorld {
    let w = erddap_world(datasets, &[]).await;
    w.set_options(SourceOptions {
        raw,
        stale_after_listings: 1,
        ..SourceOptions::default()
    })
    .await;
    w
}

/// One session on `day`, its resources delivered to the harvester in SQS batches of 10, as
/// the harvester function gets them.
async fn harvest_in_batches(w: &ErddapWorld, day: &str) -> Session {
    let report = run_now(&w.svc, "src", t(&format!("{day}T12:00:00Z")))
        .await
        .unwrap();
    let mut receives: HashMap<String, u32> = HashMap::new();
    loop {
        let bodies = w.list_into_bodies().await;
        if bodies.is_empty() {
            break;
        }
        for batch in bodies.chunks(10) {
            let event = sqs_event(batch.iter().map(|body| {
                let count = receives.entry(body.clone()).or_insert(0);
                *count += 1;
                (body.as_str(), *count)
            }));
            let response = trawl::handlers::harvester(&w.svc, event).await;
            for failure in response.batch_item_failures {
                let i: usize = failure.item_identifier[3..].parse().unwrap();
                let message: WorkMessage = serde_json::from_str(&batch[i]).unwrap();
                w.queue.send(&[message]).await.unwrap();
            }
        }
    }
    finalize_session(&w.svc, &report.started[0]).await.unwrap();
    w.session(&report.started[0]).await
}

/// What the fixture server answers for a dataset: the raw response a harvest keeps.
async fn served(w: &ErddapWorld, id: &str) -> Vec<u8> {
    let url = format!("{}/info/{id}/index.json", w.fixture.base_url());
    reqwest::get(&url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn api(w: &ErddapWorld, path: &str, id: &str) -> (u16, Vec<u8>) {
    let response = handle(
        &w.svc,
        &ApiRequest {
            method: "GET",
            path,
            query: HashMap::from([("id".to_string(), id.to_string())]),
            may_decide: false,
        },
    )
    .await;
    (response.status, response.body)
}

async fn resource_view(w: &ErddapWorld, id: &str) -> serde_json::Value {
    let (status, body) = api(w, "/api/sources/src/resource", id).await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

async fn raw_route(w: &ErddapWorld, id: &str) -> (u16, Vec<u8>) {
    api(w, "/api/sources/src/raw", id).await
}

fn batch_objects(w: &ErddapWorld) -> Vec<String> {
    w.objects.keys("raw/src/batches/")
}

#[tokio::test]
async fn a_batch_source_writes_one_raw_object_per_batch_and_each_resource_reads_back_its_own_bytes()
{
    let w = world(25, RawStorage::Batch).await;
    let session = harvest_in_batches(&w, "2026-11-01").await;
    assert_eq!(session.counters.harvested, 25, "{:?}", session.counters);

    let objects = batch_objects(&w);
    assert_eq!(objects.len(), 3, "batches of 10, 10 and 5: {objects:?}");
    assert!(
        w.objects
            .keys("raw/src/")
            .iter()
            .all(|k| objects.contains(k)),
        "no object of a resource's own"
    );
    for id in w.fixture.dataset_ids() {
        let state = w.state(&id).await;
        let raw = state.raw().expect("a raw response is named");
        assert!(objects.contains(&raw.key), "{raw:?}");
        assert!(raw.range.is_some(), "a range of the batch's object");
        let (status, body) = raw_route(&w, &id).await;
        assert_eq!(status, 200);
        assert_eq!(body, served(&w, &id).await, "{id}: exactly its own bytes");
        let view = resource_view(&w, &id).await;
        assert_eq!(view["has_raw"], true);
        assert_eq!(view["raw_storage"], "batch");
        assert_eq!(view["state"]["raw_range"]["length"], body.len());
    }
}

#[tokio::test]
async fn unchanged_resources_write_no_raw_object_and_a_change_writes_only_its_own() {
    let w = world(12, RawStorage::Batch).await;
    harvest_in_batches(&w, "2026-11-01").await;
    let first = batch_objects(&w);

    let again = harvest_in_batches(&w, "2026-11-02").await;
    assert_eq!(again.counters.unchanged, 12);
    assert_eq!(batch_objects(&w), first, "nothing written, nothing swept");

    w.fixture.bump_version("ds_0003");
    let changed = harvest_in_batches(&w, "2026-11-03").await;
    assert_eq!(changed.counters.harvested, 1);
    let now = batch_objects(&w);
    assert_eq!(now.len(), first.len() + 1, "{now:?}");
    let state = w.state("ds_0003").await;
    let raw = state.raw().unwrap();
    assert!(!first.contains(&raw.key));
    assert_eq!(raw.range.unwrap().offset, 0, "alone in its batch's object");
    assert_eq!(
        raw_route(&w, "ds_0003").await.1,
        served(&w, "ds_0003").await
    );
    // The first objects hold other resources' responses still: kept.
    assert!(first.iter().all(|k| now.contains(k)));
}

#[tokio::test]
async fn a_batch_object_no_state_names_any_more_is_swept_when_a_later_session_closes() {
    let w = world(8, RawStorage::Batch).await;
    harvest_in_batches(&w, "2026-11-01").await;
    let first = batch_objects(&w);
    assert_eq!(first.len(), 1);
    for id in w.fixture.dataset_ids() {
        w.fixture.bump_version(&id);
    }
    harvest_in_batches(&w, "2026-11-02").await;
    let second = batch_objects(&w);
    assert_eq!(second.len(), 1, "the first swept at the close: {second:?}");
    assert_ne!(second, first);
    for id in w.fixture.dataset_ids() {
        assert_eq!(raw_route(&w, &id).await.1, served(&w, &id).await);
    }
}

/// Refuses the batch's log object once: its raw object is written, the count is not.
#[derive(Default)]
struct LogRefusedOnce {
    inner: trawl::local::MemoryObjects,
    refused: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ObjectStore for LogRefusedOnce {
    async fn put(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        if key.starts_with("logs/") && !self.refused.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::new("refused once"));
        }
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.folders(prefix).await
    }
    async fn files(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.files(prefix).await
    }
}

#[tokio::test]
async fn a_batch_retried_after_its_raw_object_was_written_names_only_the_retry_s_object() {
    let mut w = world(5, RawStorage::Batch).await;
    let objects = std::sync::Arc::new(LogRefusedOnce::default());
    w.svc.objects = objects.clone();
    harvest_in_batches(&w, "2026-11-01").await;
    let written = objects.inner.keys("raw/src/batches/");
    assert_eq!(
        written.len(),
        2,
        "the first attempt's and the retry's: {written:?}"
    );
    let named: std::collections::BTreeSet<String> = {
        let mut named = std::collections::BTreeSet::new();
        for id in w.fixture.dataset_ids() {
            let state = w.state(&id).await;
            named.insert(state.raw_key.unwrap());
            assert_eq!(raw_route(&w, &id).await.1, served(&w, &id).await);
        }
        named
    };
    assert_eq!(named.len(), 1, "every state names the retry's object");

    // Its own session cannot sweep it (a late copy may still write there); the next can.
    harvest_in_batches(&w, "2026-11-02").await;
    let left = objects.inner.keys("raw/src/batches/");
    assert_eq!(left, named.into_iter().collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stale_resource_s_batched_raw_response_is_copied_aside_and_restored_whole() {
    let w = world(6, RawStorage::Batch).await;
    harvest_in_batches(&w, "2026-11-01").await;
    let bytes = served(&w, "ds_0004").await;
    let batch = batch_objects(&w);
    w.fixture.remove_dataset("ds_0004");
    let deleted = harvest_in_batches(&w, "2026-11-02").await;
    assert_eq!(w.stale_report(&deleted).await.deleted, ["ds_0004"]);

    let state = w.state("ds_0004").await;
    assert_eq!(
        state.raw_key.as_deref(),
        Some("deleted/raw/src/ds_0004.json")
    );
    assert_eq!(state.raw_range, None, "an object of its own");
    assert_eq!(
        w.objects
            .get("deleted/raw/src/ds_0004.json")
            .await
            .unwrap()
            .unwrap(),
        bytes
    );
    assert_eq!(batch_objects(&w), batch, "shared: the batch's object stays");
    assert_eq!(raw_route(&w, "ds_0004").await.1, bytes, "still shown");

    // An operator brings it back: its raw response is back beside the live ones.
    let decision = deletions::restore(&w.svc, "src", &["ds_0004".to_string()])
        .await
        .unwrap();
    assert_eq!(decision.done, ["ds_0004"]);
    let state = w.state("ds_0004").await;
    assert_eq!(state.raw_key.as_deref(), Some("raw/src/ds_0004.json"));
    assert_eq!(raw_route(&w, "ds_0004").await.1, bytes);
    assert!(w.objects.keys("deleted/").is_empty());
}

#[tokio::test]
async fn a_stale_resource_that_comes_back_is_named_in_a_new_batch_and_its_aside_copy_goes() {
    let w = world(6, RawStorage::Batch).await;
    harvest_in_batches(&w, "2026-11-01").await;
    w.fixture.remove_dataset("ds_0002");
    harvest_in_batches(&w, "2026-11-02").await;
    assert_eq!(w.objects.keys("deleted/raw/src/").len(), 1);

    w.fixture.restore_dataset("ds_0002");
    let back = harvest_in_batches(&w, "2026-11-03").await;
    assert_eq!(back.counters.harvested, 1);
    let state = w.state("ds_0002").await;
    assert!(state.history.last().unwrap().restored);
    assert!(state.raw_range.is_some(), "{state:?}");
    assert_eq!(
        raw_route(&w, "ds_0002").await.1,
        served(&w, "ds_0002").await
    );
    assert!(w.objects.keys("deleted/").is_empty());
}

#[tokio::test]
async fn removing_a_stale_resource_leaves_the_shared_batch_object_to_the_others() {
    let w = world(4, RawStorage::Batch).await;
    w.set_options(SourceOptions {
        raw: RawStorage::Batch,
        stale_after_listings: 1,
        on_stale: StaleAction::Remove,
        ..SourceOptions::default()
    })
    .await;
    harvest_in_batches(&w, "2026-11-01").await;
    w.fixture.remove_dataset("ds_0001");
    harvest_in_batches(&w, "2026-11-02").await;
    let state = w.state("ds_0001").await;
    assert_eq!((state.raw_key, state.raw_range), (None, None));
    assert_eq!(raw_route(&w, "ds_0001").await.0, 404);
    for id in ["ds_0002", "ds_0003", "ds_0004"] {
        assert_eq!(raw_route(&w, id).await.1, served(&w, id).await);
    }
}

#[tokio::test]
async fn a_source_that_keeps_no_raw_response_stores_none_and_its_views_say_so() {
    let w = world(5, RawStorage::None).await;
    let session = harvest_in_batches(&w, "2026-11-01").await;
    assert_eq!(session.counters.harvested, 5);
    assert!(w.objects.keys("raw/").is_empty());
    assert_eq!(w.objects.keys("records/src/").len(), 5);
    let state = w.state("ds_0001").await;
    assert_eq!(state.raw(), None);
    let view = resource_view(&w, "ds_0001").await;
    assert_eq!(
        (view["has_raw"].clone(), view["raw_storage"].clone()),
        (false.into(), "none".into())
    );
    assert_eq!(raw_route(&w, "ds_0001").await.0, 404);
}

#[tokio::test]
async fn a_source_switched_to_batches_removes_each_resource_s_own_raw_object_as_it_changes() {
    let w = world(4, RawStorage::Resource).await;
    harvest_in_batches(&w, "2026-11-01").await;
    assert_eq!(w.objects.keys("raw/src/").len(), 4);
    w.set_options(SourceOptions {
        raw: RawStorage::Batch,
        stale_after_listings: 1,
        ..SourceOptions::default()
    })
    .await;
    w.fixture.bump_version("ds_0001");
    harvest_in_batches(&w, "2026-11-02").await;
    assert!(
        w.objects.keys("raw/src/ds_0001").is_empty(),
        "no state names it"
    );
    assert_eq!(
        w.objects.keys("raw/src/ds_0002").len(),
        1,
        "unchanged: still named"
    );
    for id in w.fixture.dataset_ids() {
        assert_eq!(raw_route(&w, &id).await.1, served(&w, &id).await);
    }
}

#[test]
fn an_unknown_raw_storage_is_refused_naming_the_field() {
    let spec = r#"{"id": "ocean", "protocol": "erddap", "base_url": "https://e.example/erddap",
        "schedule": "rate(1 day)", "options": {"raw": "bundle"}}"#;
    let e = SourceSpec::from_json(spec).unwrap_err();
    assert_eq!(e.field, "options.raw", "{e}");
    assert!(e.message.contains("bundle"), "{e}");
    let ok = spec.replace("bundle", "batch");
    assert_eq!(
        SourceSpec::from_json(&ok).unwrap().options.raw,
        RawStorage::Batch
    );
}

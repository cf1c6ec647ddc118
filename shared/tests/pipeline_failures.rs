//! What fails a resource and what does not, against the in-memory adapters and a fixture
//! ERDDAP server over real HTTP: unreadable messages, remotes that time out, addresses a
//! source may not reach, a bad body in a batch, and an object store refusing a record.

mod common;

use common::{erddap_world, t, ErddapWorld};
use std::sync::Arc;
use std::time::Duration;
use trawl::local::MemoryObjects;
use trawl::messages::WorkMessage;
use trawl::model::{Outcome, SessionStatus};
use trawl::pipeline::finalize::{finalize_session, Finalized};
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::schedule::run_now;
use trawl::ports::{ObjectStore, ResourceStates, SessionLedger, SourceRegistry};
use trawl_fixtures::Failure;

#[tokio::test]
async fn an_unreadable_message_is_set_aside_not_retried() {
    let w = erddap_world(1, &[]).await;
    let d = handle_message(&w.svc, "msg-1", "{not json", 1).await;
    assert_eq!(d, Disposition::Done);
    let kept = w.objects.keys("rejected/");
    assert_eq!(kept.len(), 1);
    assert!(kept[0].ends_with("/msg-1.json"));
    let unknown = WorkMessage::Resource {
        session_id: "nope@1".into(),
        source: trawl::messages::SourceSnapshot::from(
            &w.store.get_source("src").await.unwrap().unwrap().source,
        ),
        resource_id: "ds_0001".into(),
        deferrals: 0,
    };
    // A message for a session with no pending marker counts nothing.
    assert_eq!(
        handle_message(&w.svc, "m", &unknown.to_json(), 1).await,
        Disposition::Done
    );
    assert!(w.store.get_session("nope@1").await.unwrap().is_none());
}

#[tokio::test]
async fn a_remote_that_keeps_timing_out_is_retried_then_counted_as_failed() {
    // The client times out at 500 ms; this dataset answers after 800 ms.
    let w = erddap_world(3, &[("ds_0002", Failure::Slow(Duration::from_millis(800)))]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    w.drain().await;
    let s = w.session(&report.started[0]).await;
    assert_eq!(
        (
            s.counters.harvested,
            s.counters.failed,
            s.counters.remaining
        ),
        (2, 1, 0)
    );
    let state = w
        .store
        .get_resource("src", "ds_0002")
        .await
        .unwrap()
        .unwrap();
    let reason = state.last_reason.unwrap();
    assert_eq!(reason.code, trawl::model::ReasonCode::RetriesExhausted);
    assert!(reason.detail.contains("TIMEOUT"), "{reason}");
    assert_eq!(w.fixture.requests("/erddap/info/ds_0002/"), 3);
}

#[tokio::test]
async fn a_source_not_marked_internal_cannot_reach_loopback_by_address_or_by_name() {
    let w = erddap_world(2, &[]).await;
    let mut source = w.store.get_source("src").await.unwrap().unwrap().source;
    let by_name = w.fixture.base_url().replace("127.0.0.1", "localhost");
    for (i, base_url) in [w.fixture.base_url(), by_name].into_iter().enumerate() {
        source.internal = false;
        source.base_url = base_url;
        w.store.put_source(&source).await.unwrap();
        let at = t("2026-11-22T12:00:00Z") + chrono::Duration::hours(i as i64);
        let report = run_now(&w.svc, "src", at).await.unwrap();
        let id = &report.started[0];
        let s = w.session(id).await;
        let error = s.listing_error.clone().unwrap_or_default();
        assert!(
            error.contains("BLOCKED_ADDRESS"),
            "{}: {error}",
            source.base_url
        );
        assert_eq!(
            finalize_session(&w.svc, id).await.unwrap(),
            Finalized::Closed(SessionStatus::Failed)
        );
    }
    assert_eq!(w.fixture.requests("/"), 0, "no request reached the server");
}

#[tokio::test]
async fn one_bad_body_in_a_batch_fails_nothing_and_a_transient_failure_reports_only_itself() {
    let w = erddap_world(3, &[("ds_0002", Failure::ServerError)]).await;
    run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let mut records = Vec::new();
    let mut i = 0;
    let mut broken_message = String::new();
    while let Some(m) = w.queue.pop() {
        i += 1;
        if matches!(&m, WorkMessage::Resource { resource_id, .. } if resource_id == "ds_0002") {
            broken_message = format!("id-{i}");
        }
        records.push(
            serde_json::json!({"messageId": format!("id-{i}"), "body": m.to_json(),
            "attributes": {"ApproximateReceiveCount": "1"}}),
        );
    }
    records.push(serde_json::json!({"messageId": "garbage", "body": "<xml/>", "attributes": {"ApproximateReceiveCount": "1"}}));
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    let response = trawl::handlers::harvester(&w.svc, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    // Only the 500 (ds_0002) is handed back; the garbage is set aside.
    assert_eq!(failed, [broken_message.as_str()]);
    assert_eq!(w.objects.keys("rejected/").len(), 1);
}

/// Objects that refuse one record's key, the way a store refuses a key it cannot hold.
struct RefusingRecord {
    inner: Arc<MemoryObjects>,
    refused: &'static str,
    permanent: bool,
    refusals: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl ObjectStore for RefusingRecord {
    async fn put(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), trawl::ports::StoreError> {
        if key == self.refused {
            let n = self
                .refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let what = format!("{key}: File name too long (os error 36)");
            if self.permanent {
                return Err(trawl::ports::StoreError::permanent(what));
            }
            if n == 0 {
                return Err(trawl::ports::StoreError::new(what));
            }
        }
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, trawl::ports::StoreError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), trawl::ports::StoreError> {
        self.inner.delete(key).await
    }
    async fn folders(&self, prefix: &str) -> Result<Vec<String>, trawl::ports::StoreError> {
        self.inner.folders(prefix).await
    }
}

async fn harvest_refusing(permanent: bool) -> (ErddapWorld, trawl::model::Session, u32) {
    let mut w = erddap_world(4, &[]).await;
    let objects = Arc::new(RefusingRecord {
        inner: w.objects.clone(),
        refused: "records/src/ds_0001.json",
        permanent,
        refusals: Default::default(),
    });
    w.svc.objects = objects.clone();
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    w.drain().await;
    let session = w.session(&report.started[0]).await;
    let refusals = objects.refusals.load(std::sync::atomic::Ordering::Relaxed);
    (w, session, refusals)
}

#[tokio::test]
async fn a_record_the_store_refuses_for_good_is_counted_failed_not_retried() {
    let (w, s, refusals) = harvest_refusing(true).await;
    assert_eq!(refusals, 1, "a permanent refusal is not tried again");
    assert_eq!(
        (
            s.counters.remaining,
            s.counters.harvested,
            s.counters.failed
        ),
        (0, 3, 1)
    );
    let state = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.last_outcome, Outcome::Failed);
    let reason = state.last_reason.unwrap();
    assert_eq!(reason.code, trawl::model::ReasonCode::StorageError);
    assert!(reason.detail.contains("File name too long"), "{reason:?}");
}

#[tokio::test]
async fn a_record_the_store_refuses_once_is_stored_on_the_next_receive() {
    let (w, s, refusals) = harvest_refusing(false).await;
    assert_eq!(refusals, 2, "a transient refusal is retried");
    assert_eq!((s.counters.remaining, s.counters.harvested), (0, 4));
    assert!(w
        .objects
        .get("records/src/ds_0001.json")
        .await
        .unwrap()
        .is_some());
}

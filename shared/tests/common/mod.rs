//! The world the in-memory pipeline and protocol tests run in: the pipeline's services over
//! the in-memory adapters, one source `src` against a fixture server over real HTTP, and the
//! in-memory queue driven the way SQS would drive it.
//!
//! The simulation (`simulation/`) has its own world on purpose: its SQS keeps messages
//! invisible for a while and moves them to a DLQ, and its stores fail on demand.

// Each test file includes this module and uses its own part of it.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use trawl::local::{MemoryObjects, MemoryQueue, MemoryStore};
use trawl::messages::WorkMessage;
use trawl::model::{Record, ResourceState, Session, SourceOptions, SourceSpec};
use trawl::pipeline::finalize::finalize_session;
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::schedule::run_now;
use trawl::pipeline::stale::{self, StaleReport};
use trawl::pipeline::{Services, Settings};
use trawl::ports::{ObjectStore, WorkQueue};
use trawl::ports::{ResourceStates, SessionLedger, SourceRegistry};
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};

/// The pipeline's services over in-memory stores and queue, with the fixture server `F` the
/// source `src` points at (or `()` when the test holds its fixture itself).
pub struct World<F = ()> {
    pub svc: Services,
    pub store: Arc<MemoryStore>,
    pub objects: Arc<MemoryObjects>,
    pub queue: Arc<MemoryQueue>,
    pub fixture: F,
}

pub type ErddapWorld = World<ErddapFixture>;

/// An instant written the RFC 3339 way.
pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A world whose source `src` speaks `protocol` at `base_url`. Fixture servers answer well
/// within the 2 s HTTP timeout.
pub async fn world(protocol: &str, base_url: String) -> World {
    World::new(protocol, base_url, Duration::from_secs(2), ()).await
}

/// A world whose source `src` is a fixture ERDDAP server with `datasets` datasets, those named
/// in `failures` failing that way. The HTTP client gives up after 500 ms, so a slow dataset
/// costs a test little.
pub async fn erddap_world(datasets: usize, failures: &[(&str, Failure)]) -> ErddapWorld {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets,
        failures: failures
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let base_url = fixture.base_url();
    World::new("erddap", base_url, Duration::from_millis(500), fixture).await
}

/// Options for an incremental source whose full listing comes every `full_listing_every_days`.
pub fn incremental(full_listing_every_days: u32) -> SourceOptions {
    SourceOptions {
        incremental: true,
        full_listing_every_days,
        ..Default::default()
    }
}

impl<F> World<F> {
    /// Three receives before a message counts as failed, as the deployed queue is set.
    async fn new(protocol: &str, base_url: String, http_timeout: Duration, fixture: F) -> Self {
        let store = Arc::new(MemoryStore::default());
        let objects = Arc::new(MemoryObjects::default());
        let queue = Arc::new(MemoryQueue::default());
        let settings = Settings {
            max_receive_count: 3,
            http_timeout,
            ..Settings::default()
        };
        let svc = Services::new(store.clone(), objects.clone(), queue.clone(), settings);
        let source = SourceSpec {
            id: "src".into(),
            protocol: protocol.into(),
            base_url,
            schedule: "rate(1 day)".into(),
            enabled: true,
            internal: true,
            options: Default::default(),
        }
        .validate()
        .unwrap();
        store.put_source(&source).await.unwrap();
        World {
            svc,
            store,
            objects,
            queue,
            fixture,
        }
    }

    pub async fn session(&self, id: &str) -> Session {
        self.store
            .get_session(id)
            .await
            .unwrap()
            .expect("session exists")
    }

    /// Handles queued messages until none is left, like SQS would deliver them: a message to
    /// retry comes back with a higher receive count.
    pub async fn drain(&self) {
        self.drain_with(false, |_| {}).await
    }

    /// [`World::drain`], every message handled a second time (a duplicate delivery); the
    /// first handling decides about the retry.
    pub async fn drain_handling_twice(&self) {
        self.drain_with(true, |_| {}).await
    }

    /// [`World::drain`], `observe` seeing each message as it is received.
    pub async fn drain_observing(&self, observe: impl FnMut(&WorkMessage)) {
        self.drain_with(false, observe).await
    }

    async fn drain_with(&self, twice: bool, mut observe: impl FnMut(&WorkMessage)) {
        let mut receives: HashMap<String, u32> = HashMap::new();
        while let Some(message) = self.queue.pop() {
            observe(&message);
            let body = message.to_json();
            let count = receives.entry(body.clone()).or_insert(0);
            *count += 1;
            let disposition = handle_message(&self.svc, "m", &body, *count).await;
            if twice {
                handle_message(&self.svc, "m", &body, *count).await;
            }
            if disposition == Disposition::Retry {
                self.queue.send(&[message]).await.unwrap();
            }
        }
    }

    /// Handles each queued message once, as its `receive`th receive; nothing is retried.
    pub async fn handle_each_once(&self, receive: u32) {
        while let Some(message) = self.queue.pop() {
            handle_message(&self.svc, "m", &message.to_json(), receive).await;
        }
    }

    /// One whole session on `day` (a date): start (which lists page 1), drain, finalize.
    pub async fn harvest(&self, day: &str) -> Session {
        let report = run_now(&self.svc, "src", t(&format!("{day}T12:00:00Z")))
            .await
            .unwrap();
        assert_eq!(report.started.len(), 1, "{report:?}");
        self.drain().await;
        finalize_session(&self.svc, &report.started[0])
            .await
            .unwrap();
        self.session(&report.started[0]).await
    }

    pub async fn set_options(&self, options: SourceOptions) {
        let mut source = self.store.get_source("src").await.unwrap().unwrap().source;
        source.options = options;
        self.store.put_source(&source).await.unwrap();
    }

    pub async fn stale_report(&self, session: &Session) -> StaleReport {
        stale::stored_report(&self.svc, session)
            .await
            .unwrap()
            .expect("a stale report beside the summary")
    }

    pub async fn summary(&self, session: &Session) -> serde_json::Value {
        let key = trawl::keys::summary_key(&session.source_id, &session.stamp());
        serde_json::from_slice(&self.objects.get(&key).await.unwrap().unwrap()).unwrap()
    }

    /// The state of the source's resource `id`, which must exist.
    pub async fn state(&self, id: &str) -> ResourceState {
        self.store
            .get_resource("src", id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no state of {id}"))
    }

    pub async fn record(&self, id: &str) -> Record {
        let key = trawl::keys::record_key("src", id);
        serde_json::from_slice(&self.objects.get(&key).await.unwrap().expect(id)).unwrap()
    }

    /// Takes every queued message: listing messages are handled (what they send is taken
    /// too), resource messages are returned as their bodies, for a test to deliver in batches.
    pub async fn list_into_bodies(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        while let Some(m) = self.queue.pop() {
            match m {
                WorkMessage::Resource { .. } => bodies.push(m.to_json()),
                page => {
                    handle_message(&self.svc, "p", &page.to_json(), 1).await;
                }
            }
        }
        bodies
    }
}

/// An SQS event of `bodies`, each with its receive count, as the harvester function gets it
/// (message ids `id-0`, `id-1`… by position).
pub fn sqs_event<'a>(
    bodies: impl IntoIterator<Item = (&'a str, u32)>,
) -> aws_lambda_events::sqs::SqsEvent {
    let records: Vec<serde_json::Value> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, (body, receives))| {
            serde_json::json!({"messageId": format!("id-{i}"), "body": body,
                "attributes": {"ApproximateReceiveCount": receives.to_string()}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// A fresh folder under the system's temporary directory, unique to this process and call.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "trawl-test-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

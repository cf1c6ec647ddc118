//! The stage logic, written against the ports only. To follow one dataset through Trawl,
//! read `schedule.rs` (a session starts), `listing.rs` (its resources are counted and queued),
//! `harvest.rs` (one resource is fetched, stored and counted) and `finalize.rs` (the session
//! closes when nothing remains).

pub mod finalize;
pub mod harvest;
pub mod listing;
pub mod schedule;
pub mod watchdog;

use crate::http::{HttpClient, DEFAULT_MAX_BODY_BYTES};
use crate::ports::{Clock, ObjectStore, StateStore, SystemClock, WorkQueue};
use std::sync::Arc;
use std::time::Duration;

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
    /// A session still running this long after it started is wound up by the watchdog.
    pub session_deadline_minutes: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            tick_minutes: 5,
            max_receive_count: 5,
            http_timeout: Duration::from_secs(10),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            batch_concurrency: 10,
            session_deadline_minutes: 360,
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
        }
    }
}

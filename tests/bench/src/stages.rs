//! Part 5's second half: does a stage's memory grow with the size of the catalog? Each stage
//! the Lambda functions run (the scheduler starting a session, the listing page, the
//! finalizer closing it) is run in this process on N datasets, and the heap it allocates
//! above what was live before it started is measured by a counting allocator. The state
//! stays in memory (as DynamoDB would hold it) and objects go to files, so the figures are
//! the stage's own working memory, which is what a function's memory setting must hold.

use crate::process::{mib, sibling, Server};
use anyhow::{bail, Result};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use trawl::local::{FileObjects, MemoryQueue, MemoryStore};
use trawl::messages::WorkMessage;
use trawl::pipeline::finalize::finalize_session;
use trawl::pipeline::harvest::handle_in_batch;
use trawl::pipeline::schedule::run_now;
use trawl::pipeline::tally::Tally;
use trawl::pipeline::{Services, Settings};

/// The system allocator, counting live bytes and their high-water mark.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

/// Runs `stage` and returns its result with the most heap it held above the starting point.
async fn measured<T>(stage: impl Future<Output = T>) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = stage.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

pub async fn run(sizes: &[usize], work_dir: &std::path::Path) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &n in sizes {
        let row = one_size(n, work_dir).await?;
        println!("{}", serde_json::to_string(&row)?);
        rows.push(row);
    }
    println!();
    println!(
        "{:>8} {:>16} {:>16} {:>16} {:>16}",
        "N", "scheduler MiB", "listing MiB", "finalizer MiB", "finalizer 2 MiB"
    );
    for row in &rows {
        let f = |k: &str| mib(row[k].as_u64().unwrap_or(0));
        println!(
            "{:>8} {:>16.2} {:>16.2} {:>16.2} {:>16.2}",
            row["datasets"],
            f("scheduler_heap_bytes"),
            f("listing_heap_bytes"),
            f("finalizer_heap_bytes"),
            f("second_finalizer_heap_bytes"),
        );
    }
    Ok(rows)
}

async fn one_size(n: usize, work_dir: &std::path::Path) -> Result<Value> {
    let mut fixture = Command::new(sibling("fixture-erddap")?);
    fixture.args(["--port", "0", "--datasets", &n.to_string()]);
    let fixture = Server::start(fixture)?;
    let dir = work_dir.join(format!("stages-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let queue = Arc::new(MemoryQueue::with_delays());
    let svc = Services::new(
        Arc::new(MemoryStore::default()),
        Arc::new(FileObjects::new(&dir)),
        queue.clone(),
        Settings::default(),
    );
    let source = trawl::model::SourceSpec::from_json(
        &json!({"id": "stages", "protocol": "erddap", "base_url": fixture.base_url,
                "schedule": "rate(1 day)", "internal": true})
        .to_string(),
    )?;
    svc.store.put_source(&source).await?;

    let mut figures = Vec::new();
    for session in 0..2 {
        let at = chrono::Utc::now() + chrono::Duration::seconds(session);
        let (report, scheduler) = measured(run_now(&svc, "stages", at)).await;
        let report = report?;
        let Some(session_id) = report.started.first().cloned() else {
            bail!("no session started: {report:?}");
        };
        // The first message is the listing page; the rest are the resources it queued.
        let Some(page) = queue.pop() else {
            bail!("the scheduler queued nothing");
        };
        let (_, listing) = measured(handle_in_batch(
            &svc,
            &Tally::new(),
            "page",
            &page.to_json(),
            1,
        ))
        .await;
        drain(&svc, &queue).await?;
        let (closed, finalizer) = measured(finalize_session(&svc, &session_id)).await;
        closed?;
        let counted = svc
            .store
            .get_session(&session_id)
            .await?
            .map(|s| s.counters.harvested + s.counters.unchanged)
            .unwrap_or(0);
        if counted != n as u64 {
            bail!("session {session_id} counted {counted} of {n}");
        }
        figures.push((scheduler, listing, finalizer));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "datasets": n,
        "scheduler_heap_bytes": figures[0].0,
        "listing_heap_bytes": figures[0].1,
        "finalizer_heap_bytes": figures[0].2,
        "second_finalizer_heap_bytes": figures[1].2,
    }))
}

/// Harvests every queued resource, 16 at a time (not measured).
async fn drain(svc: &Services, queue: &MemoryQueue) -> Result<()> {
    let tally = Tally::early();
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < 16 {
            let Some(message) = queue.pop() else { break };
            if !matches!(message, WorkMessage::Resource { .. }) {
                bail!("unexpected message {message:?}");
            }
            let tally = &tally;
            in_flight
                .push(async move { handle_in_batch(svc, tally, "m", &message.to_json(), 1).await });
        }
        if in_flight.next().await.is_none() {
            return Ok(());
        }
    }
}

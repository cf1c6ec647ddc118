//! Part 5's second half: does a stage's memory grow with the size of the catalog? The stages
//! the scheduler and finalizer functions run (starting a session, which lists the first page;
//! the later listing pages, which the harvester function lists from their queue messages;
//! closing the session, with the stale check) are run in this process
//! on N datasets, and a counting allocator measures the heap each holds at its peak beyond
//! what remains when it returns. What remains is what it stored: here the in-memory table
//! and queue stand in for DynamoDB and SQS, which hold it outside the function. So the
//! figure is the stage's own working memory, what a function's memory setting must hold.

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

/// Runs `stage` and returns its result with the most heap it held at once beyond what was
/// live before it and what it left behind (its output, stored in the in-memory adapters).
pub async fn measured<T>(stage: impl Future<Output = T>) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = stage.await;
    let after = LIVE.load(Ordering::Relaxed);
    (
        out,
        PEAK.load(Ordering::Relaxed)
            .saturating_sub(before.max(after)),
    )
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
        "N", "scheduler MiB", "list page MiB", "finalizer MiB", "finalizer 2 MiB"
    );
    for row in &rows {
        let f = |k: &str| mib(row[k].as_u64().unwrap_or(0));
        println!(
            "{:>8} {:>16.2} {:>16.2} {:>16.2} {:>16.2}",
            row["datasets"],
            f("scheduler_heap_bytes"),
            f("list_page_heap_bytes"),
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
        let list_page = drain(&svc, &queue).await?;
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
        figures.push((scheduler, finalizer, list_page));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "datasets": n,
        "scheduler_heap_bytes": figures[0].0,
        "list_page_heap_bytes": figures[0].2,
        "finalizer_heap_bytes": figures[0].1,
        "second_finalizer_heap_bytes": figures[1].1,
    }))
}

/// Harvests every queued message, 16 at a time (not measured), except listing pages: each is
/// listed alone, once the messages before it are done, and measured. Returns the most heap
/// a listing page held.
async fn drain(svc: &Services, queue: &MemoryQueue) -> Result<usize> {
    let tally = Tally::early();
    let mut in_flight = FuturesUnordered::new();
    let mut list_page_peak = 0;
    loop {
        while in_flight.len() < 16 {
            let Some(message) = queue.pop() else { break };
            let body = message.to_json();
            if matches!(message, WorkMessage::ListPage { .. }) {
                while in_flight.next().await.is_some() {}
                let (_, heap) = measured(handle_in_batch(svc, &tally, "m", &body, 1)).await;
                list_page_peak = list_page_peak.max(heap);
                continue;
            }
            let tally = &tally;
            in_flight.push(async move { handle_in_batch(svc, tally, "m", &body, 1).await });
        }
        if in_flight.next().await.is_none() {
            return Ok(list_page_peak);
        }
    }
}

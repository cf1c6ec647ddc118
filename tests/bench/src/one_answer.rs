//! Issue 15's third case: one listing answer far larger than a page should be. A hostile
//! ERDDAP `info/index` ignores `itemsPerPage` and answers every row at once, with short rows
//! (title, access, id), so a million fit under the 50 MB body cap. The scheduler's stage that
//! lists that answer, commits it and delivers its first chunk is measured with the counting
//! allocator, and so is each continuation that delivers a next chunk; nothing is harvested.
//! The server runs in this process but renders its answer before the measurement and hands
//! out the same bytes, so the heap measured is the listing's own.

use crate::process::mib;
use crate::stages::measured;
use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use std::sync::Arc;
use trawl::local::{FileObjects, MemoryQueue, MemoryStore};
use trawl::messages::WorkMessage;
use trawl::pipeline::harvest::handle_in_batch;
use trawl::pipeline::schedule::run_now;
use trawl::pipeline::tally::Tally;
use trawl::pipeline::{Services, Settings};

pub async fn run(sizes: &[usize], work_dir: &std::path::Path) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &n in sizes {
        let row = one_size(n, work_dir).await?;
        println!("{}", serde_json::to_string(&row)?);
        rows.push(row);
    }
    println!();
    println!(
        "{:>9} {:>12} {:>16} {:>18} {:>10}",
        "rows", "answer MiB", "listing heap MiB", "chunk heap MiB", "chunks"
    );
    for row in &rows {
        let f = |k: &str| mib(row[k].as_u64().unwrap_or(0));
        println!(
            "{:>9} {:>12.1} {:>16.1} {:>18.1} {:>10}",
            row["rows"],
            f("answer_bytes"),
            f("listing_heap_bytes"),
            f("chunk_heap_bytes"),
            row["chunks"],
        );
    }
    Ok(rows)
}

/// `info/index.json` answers `rows` rows on page 1 whatever `itemsPerPage` says, and ERDDAP's
/// "no matching results" 404 after it.
async fn serve_one_answer(rows: usize) -> Result<(String, usize)> {
    let mut body = String::from(
        "{\n  \"table\": {\n    \"columnNames\": [\"Title\", \"Accessible\", \"Dataset ID\"],\n    \"columnTypes\": [\"String\", \"String\", \"String\"],\n    \"rows\": [\n",
    );
    for i in 1..=rows {
        let comma = if i < rows { "," } else { "" };
        body.push_str(&format!(
            "      [\"Set {i}\", \"public\", \"ds_{i:07}\"]{comma}\n"
        ));
    }
    body.push_str("    ]\n  }\n}\n");
    let answer = Bytes::from(body);
    let size = answer.len();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}/erddap", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let first = req.uri().query().unwrap_or("").contains("page=1&");
                    let reply = if first {
                        hyper::Response::new(Full::new(answer.clone()))
                    } else {
                        let mut r = hyper::Response::new(Full::new(Bytes::from_static(
                            b"Error {\n    code=404;\n    message=\"Not Found: Your query produced no matching results. (nRows = 0)\";\n}\n",
                        )));
                        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                        r
                    };
                    async move { Ok::<_, std::convert::Infallible>(reply) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((base_url, size))
}

async fn one_size(n: usize, work_dir: &std::path::Path) -> Result<Value> {
    let (base_url, answer_bytes) = serve_one_answer(n).await?;
    let dir = work_dir.join(format!("one-answer-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let queue = Arc::new(MemoryQueue::default());
    let svc = Services::new(
        Arc::new(MemoryStore::default()),
        Arc::new(FileObjects::new(&dir)),
        queue.clone(),
        Settings::default(),
    );
    let source = trawl::model::SourceSpec::from_json(
        &json!({"id": "one-answer", "protocol": "erddap", "base_url": base_url,
                "schedule": "rate(1 day)", "internal": true})
        .to_string(),
    )?;
    svc.store.put_source(&source).await?;

    let (report, listing_heap) = measured(run_now(&svc, "one-answer", chrono::Utc::now())).await;
    if report?.started.is_empty() {
        bail!("no session started");
    }
    // Resource messages are dropped unharvested; each continuation delivers the next chunk.
    let tally = Tally::early();
    let (mut chunks, mut chunk_heap, mut resources) = (1, 0, 0);
    while let Some(message) = queue.pop() {
        match message {
            WorkMessage::Resource { .. } => resources += 1,
            WorkMessage::ListPage { delivered, .. } => {
                let body = message.to_json();
                let (_, heap) = measured(handle_in_batch(&svc, &tally, "m", &body, 1)).await;
                if delivered > 0 {
                    chunk_heap = chunk_heap.max(heap);
                    chunks += 1;
                }
            }
        }
    }
    if resources != n {
        bail!("{resources} resource messages for {n} rows");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "rows": n,
        "answer_bytes": answer_bytes,
        "listing_heap_bytes": listing_heap,
        "chunk_heap_bytes": chunk_heap,
        "chunks": chunks,
    }))
}

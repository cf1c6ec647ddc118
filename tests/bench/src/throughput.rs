//! Parts 1, 2 and 5 of the benchmarks: the embedded run (`trawl harvest`, the release binary
//! users run) against the fixture ERDDAP server, next to the server's raw capacity for the
//! same request mix and next to erddapy fetching the same datasets in a loop. With several
//! runs, each figure is summarised as its median and range, ratios taken within each run.

use crate::process::{mib, run_measured, sibling, Server};
use crate::summary::{figure, Spread, Unit};
use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub struct Options {
    pub sizes: Vec<usize>,
    /// Runs of every size, taken in turn (all sizes, then all sizes again), so a busy spell
    /// on the machine does not fall on one size's runs only.
    pub runs: usize,
    pub concurrency: usize,
    /// erddapy runs for sizes up to this (it is the slow side).
    pub peer_max: usize,
    /// The Python with erddapy installed (`tests/bench/peer/setup.sh` prints it).
    pub peer_python: Option<PathBuf>,
    pub work_dir: PathBuf,
    /// The source's `options.raw`: `batch` writes one raw object per batch rather than a file
    /// per dataset.
    pub raw: trawl::model::RawStorage,
}

/// Every run of every size; each printed as a JSON line and a table row, then summarised.
pub async fn run(options: &Options) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for run in 1..=options.runs.max(1) {
        for &n in &options.sizes {
            let mut row = one_size(options, n, run).await?;
            row["run"] = json!(run);
            println!("{}", serde_json::to_string(&row)?);
            rows.push(row);
        }
    }
    print_table(&rows);
    if options.runs > 1 {
        print_summary(&options.sizes, &rows);
    }
    // 100k datasets leave ~300k small files: not kept.
    for row in &rows {
        if let Some(dir) = row["harvest"]["data_dir"].as_str() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    Ok(rows)
}

async fn one_size(options: &Options, n: usize, run: usize) -> Result<Value> {
    let mut fixture = Command::new(sibling("fixture-erddap")?);
    fixture.args(["--port", "0", "--datasets", &n.to_string()]);
    let server = Server::start(fixture)?;
    let base = server.base_url.clone();

    // The server's capacity for the harvest's request mix (one listing, then every info
    // table), at the harvest's concurrency. Best of two, so the ratio errs against us.
    let mut raw_per_second = 0.0_f64;
    for _ in 0..2 {
        raw_per_second = raw_per_second.max(raw_capacity(&base, options.concurrency).await?);
    }

    let harvest = harvest(options, &base, n, run)?;
    let per_second = harvest["resources_per_second"].as_f64().unwrap_or(0.0);

    let peer = match &options.peer_python {
        Some(python) if n <= options.peer_max => Some(peer(python, &base)?),
        _ => None,
    };
    let peer_per_second = peer
        .as_ref()
        .and_then(|p| p["best_datasets_per_second"].as_f64());

    Ok(json!({
        "datasets": n,
        "concurrency": options.concurrency,
        "harvest": harvest,
        "raw_capacity_per_second": raw_per_second,
        "harvest_vs_raw": per_second / raw_per_second,
        "peer": peer,
        "harvest_vs_peer": peer_per_second.map(|p| per_second / p),
    }))
}

/// Lists like the ERDDAP adapter does, then fetches every dataset's info table and reads
/// its body, `concurrency` at a time. Datasets per second.
async fn raw_capacity(base: &str, concurrency: usize) -> Result<f64> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    // The listing pages the adapter requests: 1,000 rows each, until a short page or ERDDAP's
    // 404 past the end.
    let mut ids: Vec<String> = Vec::new();
    for page in 1.. {
        let response = client
            .get(format!(
                "{base}/info/index.json?page={page}&itemsPerPage=1000"
            ))
            .send()
            .await?;
        if page > 1 && response.status() == reqwest::StatusCode::NOT_FOUND {
            break;
        }
        let listing: Value = response.error_for_status()?.json().await?;
        let column = listing["table"]["columnNames"]
            .as_array()
            .and_then(|names| names.iter().position(|n| n == "Dataset ID"))
            .context("info/index has no Dataset ID column")?;
        let rows = listing["table"]["rows"]
            .as_array()
            .context("info/index has no rows")?;
        ids.extend(
            rows.iter()
                .filter_map(|row| row[column].as_str())
                .filter(|id| *id != "allDatasets")
                .map(str::to_string),
        );
        if rows.len() < 1000 {
            break;
        }
    }
    let fetched: Vec<Result<usize>> = futures::stream::iter(ids.iter())
        .map(|id| {
            let client = client.clone();
            async move {
                let response = client
                    .get(format!("{base}/info/{id}/index.json"))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(response.bytes().await?.len())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let took = started.elapsed().as_secs_f64();
    let failed = fetched.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {} raw requests failed", ids.len());
    }
    Ok(ids.len() as f64 / took)
}

/// `trawl harvest` as users run it, into a fresh data directory.
fn harvest(options: &Options, base: &str, n: usize, run: usize) -> Result<Value> {
    // A directory of its own, removed only after the last size: creating files right after
    // deleting many makes ext4 search its recently freed inodes, which is not the harvest's cost.
    let dir = options.work_dir.join(format!(
        "harvest-{n}-run{run}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    std::fs::create_dir_all(&dir)?;
    let sources = dir.join("sources.json");
    std::fs::write(
        &sources,
        json!({"id": "bench", "protocol": "erddap", "base_url": base,
               "schedule": "rate(1 day)", "internal": true,
               "options": {"raw": options.raw.as_str()}})
        .to_string(),
    )?;
    let mut trawl = Command::new(sibling("trawl")?);
    trawl
        .arg("harvest")
        .arg("--sources")
        .arg(&sources)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--json",
            "--quiet",
            "--concurrency",
            &options.concurrency.to_string(),
        ]);
    let finished = run_measured(trawl)?;
    if !finished.success {
        bail!("trawl harvest failed for N={n}");
    }
    let mut report: Value = serde_json::from_str(
        finished
            .stdout
            .lines()
            .last()
            .context("trawl harvest printed nothing")?,
    )?;
    let counters = &report["counters"];
    if counters["harvested"].as_u64() != Some(n as u64) {
        bail!("expected {n} harvested, got {counters}");
    }
    report["peak_rss_bytes"] = json!(finished.peak_rss);
    report["peak_rss_mib"] = json!(mib(finished.peak_rss));
    // The harvester's own cost per dataset, apart from waiting on the server it shares the
    // machine with: flat across N means the slowdown of a large N is elsewhere.
    report["cpu_us_per_dataset"] = json!(finished.cpu.as_secs_f64() * 1e6 / n as f64);
    report["process_seconds"] = json!(finished.wall.as_secs_f64());
    report["data_dir"] = json!(dir);
    report["raw"] = json!(options.raw.as_str());
    Ok(report)
}

fn peer(python: &Path, base: &str) -> Result<Value> {
    let script = trawl_runner::repo_root().join("tests/bench/peer/erddapy_peer.py");
    let mut command = Command::new(python);
    command.arg(script).args(["--server", base]);
    let finished = run_measured(command)?;
    if !finished.success {
        bail!("the erddapy peer failed");
    }
    let line = finished
        .stdout
        .lines()
        .last()
        .context("the erddapy peer printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

fn print_table(rows: &[Value]) {
    println!();
    println!(
        "{:>4} {:>8} {:>12} {:>10} {:>10} {:>10} {:>10} {:>12} {:>8} {:>12} {:>8}",
        "run",
        "N",
        "harvest/s",
        "p50 ms",
        "p99 ms",
        "CPU µs/ds",
        "peak MiB",
        "raw/s",
        "÷raw",
        "erddapy/s",
        "×peer"
    );
    for row in rows {
        let h = &row["harvest"];
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        println!(
            "{:>4} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>10.0} {:>10.1} {:>12.0} {:>7.0}% {:>12} {:>8}",
            row["run"],
            row["datasets"],
            f(&h["resources_per_second"]),
            f(&h["resource_ms"]["p50"]),
            f(&h["resource_ms"]["p99"]),
            f(&h["cpu_us_per_dataset"]),
            mib(h["peak_rss_bytes"].as_u64().unwrap_or(0)),
            f(&row["raw_capacity_per_second"]),
            100.0 * f(&row["harvest_vs_raw"]),
            row["peer"]["best_datasets_per_second"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.0}")),
            row["harvest_vs_peer"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.1}×")),
        );
    }
}

/// The figures users quote (harvest/s, ÷ raw, × erddapy, …): what each size's runs show, as a
/// median and a range. Ratios come from within each run (`harvest_vs_raw`, `harvest_vs_peer`).
pub const SUMMARISED: &[(&str, &str, Unit)] = &[
    ("harvest/s", "/harvest/resources_per_second", Unit::Plain(0)),
    ("p50 ms", "/harvest/resource_ms/p50", Unit::Plain(2)),
    ("p99 ms", "/harvest/resource_ms/p99", Unit::Plain(2)),
    (
        "CPU µs/dataset",
        "/harvest/cpu_us_per_dataset",
        Unit::Plain(0),
    ),
    ("peak RSS MiB", "/harvest/peak_rss_mib", Unit::Plain(1)),
    ("raw capacity/s", "/raw_capacity_per_second", Unit::Plain(0)),
    ("harvest ÷ raw", "/harvest_vs_raw", Unit::Percent),
    (
        "erddapy/s",
        "/peer/best_datasets_per_second",
        Unit::Plain(0),
    ),
    ("harvest × erddapy", "/harvest_vs_peer", Unit::Times),
];

fn print_summary(sizes: &[usize], rows: &[Value]) {
    println!("\nmedian (min–max) of each size's runs; ratios taken within each run");
    let names: Vec<&str> = SUMMARISED.iter().map(|(name, _, _)| *name).collect();
    println!("| N | runs | {} |", names.join(" | "));
    println!("|---:|---:|{}", "---:|".repeat(names.len()));
    for &n in sizes {
        let runs: Vec<Value> = rows
            .iter()
            .filter(|r| r["datasets"].as_u64() == Some(n as u64))
            .cloned()
            .collect();
        let cells: Vec<String> = SUMMARISED
            .iter()
            .map(|(_, pointer, unit)| {
                Spread::of(&figure(&runs, pointer)).map_or("–".into(), |s| s.show(*unit))
            })
            .collect();
        println!("| {n} | {} | {} |", runs.len(), cells.join(" | "));
    }
}

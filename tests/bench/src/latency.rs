//! Issue 19, part 1: the embedded run on a real network's terms. The fixture ERDDAP answers
//! each request after a round trip (`--latency-ms`) and sends bodies over one shared link
//! (`--bandwidth-mbit`). Trawl's wall time is set against the physical limit for its
//! concurrency: requests × latency ÷ requests in flight, plus bytes ÷ bandwidth; and, where
//! a peer Python is given, against erddapy's loop on the same server. With several runs, each
//! figure is summarised as its median and range, ratios taken within each run.

use crate::process::{run_measured, sibling, Server};
use crate::summary::{figure, Spread, Unit};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Options {
    pub sizes: Vec<usize>,
    /// Runs of every latency and size, taken in turn.
    pub runs: usize,
    pub latencies_ms: Vec<u64>,
    pub bandwidth_mbit: u64,
    pub concurrency: usize,
    pub peer_python: Option<PathBuf>,
    /// erddapy is run for sizes up to this and at the lowest latency only (it is slow).
    pub peer_max: usize,
    pub work_dir: PathBuf,
}

/// Every run of every latency and size, each printed as a JSON line and a table row, then
/// summarised.
pub async fn run(options: &Options) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for run in 1..=options.runs.max(1) {
        for &latency in &options.latencies_ms {
            for &n in &options.sizes {
                let mut row = one(options, n, latency, run)?;
                row["run"] = json!(run);
                println!("{row}");
                rows.push(row);
            }
        }
    }
    println!(
        "\nconcurrency {}, link {} Mbit/s: wall seconds, and ÷ the physical limit",
        options.concurrency, options.bandwidth_mbit
    );
    println!("| run | latency | N | requests | MiB | limit s | closed-loop limit s | Trawl s | Trawl ÷ limit | Trawl ÷ closed-loop | erddapy s | Trawl × erddapy |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let peer = r["erddapy_seconds"].as_f64();
        println!(
            "| {} | {} ms | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r["run"],
            r["latency_ms"],
            r["datasets"],
            r["requests"],
            r["bytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0),
            r["limit_seconds"].as_f64().unwrap_or(f64::NAN),
            r["closed_loop_limit_seconds"].as_f64().unwrap_or(f64::NAN),
            r["trawl_seconds"].as_f64().unwrap_or(f64::NAN),
            r["trawl_vs_limit"].as_f64().unwrap_or(f64::NAN),
            r["trawl_vs_closed_loop_limit"].as_f64().unwrap_or(f64::NAN),
            peer.map_or("–".into(), |p| format!("{p:.1}")),
            r["trawl_x_erddapy"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.1}×")),
        );
    }
    if options.runs > 1 {
        print_summary(options, &rows);
    }
    Ok(rows)
}

/// The figures summarised over each latency and size's runs.
pub const SUMMARISED: &[(&str, &str, Unit)] = &[
    ("Trawl s", "/trawl_seconds", Unit::Seconds),
    ("Trawl ÷ limit", "/trawl_vs_limit", Unit::Plain(2)),
    (
        "Trawl ÷ closed-loop",
        "/trawl_vs_closed_loop_limit",
        Unit::Plain(2),
    ),
    ("erddapy s", "/erddapy_seconds", Unit::Seconds),
    ("Trawl × erddapy", "/trawl_x_erddapy", Unit::Times),
];

fn print_summary(options: &Options, rows: &[Value]) {
    println!("\nmedian (min–max) of each latency and size's runs; ratios taken within each run");
    let names: Vec<&str> = SUMMARISED.iter().map(|(name, _, _)| *name).collect();
    println!("| latency | N | runs | {} |", names.join(" | "));
    println!("|---:|---:|---:|{}", "---:|".repeat(names.len()));
    for &latency in &options.latencies_ms {
        for &n in &options.sizes {
            let runs: Vec<Value> = rows
                .iter()
                .filter(|r| {
                    r["datasets"].as_u64() == Some(n as u64)
                        && r["latency_ms"].as_u64() == Some(latency)
                })
                .cloned()
                .collect();
            let cells: Vec<String> = SUMMARISED
                .iter()
                .map(|(_, pointer, unit)| {
                    Spread::of(&figure(&runs, pointer)).map_or("–".into(), |s| s.show(*unit))
                })
                .collect();
            println!(
                "| {latency} ms | {n} | {} | {} |",
                runs.len(),
                cells.join(" | ")
            );
        }
    }
}

fn one(options: &Options, n: usize, latency_ms: u64, run: usize) -> Result<Value> {
    let mut fixture = Command::new(sibling("fixture-erddap")?);
    fixture.args([
        "--port",
        "0",
        "--datasets",
        &n.to_string(),
        "--latency-ms",
        &latency_ms.to_string(),
        "--bandwidth-mbit",
        &options.bandwidth_mbit.to_string(),
    ]);
    let server = Server::start(fixture)?;
    let dir = options.work_dir.join(format!(
        "latency-{n}-{latency_ms}-run{run}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    std::fs::create_dir_all(&dir)?;
    let sources = dir.join("sources.json");
    std::fs::write(
        &sources,
        json!({"id": "bench", "protocol": "erddap", "base_url": server.base_url,
               "schedule": "rate(1 day)", "internal": true})
        .to_string(),
    )?;
    let mut trawl = Command::new(sibling("trawl")?);
    trawl
        .args(["harvest", "--sources"])
        .arg(&sources)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--json", "--quiet", "--concurrency"])
        .arg(options.concurrency.to_string());
    let finished = run_measured(trawl)?;
    if !finished.success {
        bail!("trawl harvest failed for N={n} at {latency_ms} ms");
    }
    let report: Value = serde_json::from_str(
        finished
            .stdout
            .lines()
            .last()
            .context("trawl harvest printed nothing")?,
    )?;
    if report["counters"]["harvested"].as_u64() != Some(n as u64) {
        bail!("expected {n} harvested: {report}");
    }
    // What crossed the link: every info body (kept as the raw copy) and the listing pages
    // (1,000 ids a page, a short one to end).
    let info_bytes = dir_bytes(&dir.join("data/raw"))?;
    let pages = n / 1000 + 1;
    let page_bytes = listing_bytes(&server.base_url, n)?;
    let requests = n + pages;
    let bytes = info_bytes + page_bytes;
    let latency = latency_ms as f64 / 1000.0;
    let sending = bytes as f64 * 8.0 / (options.bandwidth_mbit.max(1) as f64 * 1e6);
    // The limit: requests × latency ÷ requests in flight, plus bytes ÷ bandwidth.
    let limit = requests as f64 * latency / options.concurrency as f64 + sending;
    // A tighter one: each of the requests in flight waits its round trip and then its own
    // body's time on the link, while the link may carry another's body meanwhile; unless
    // the link is the bottleneck, in which case it is bytes ÷ bandwidth.
    let closed_loop =
        ((requests as f64 * latency + sending) / options.concurrency as f64).max(sending);
    let trawl_seconds = finished.wall.as_secs_f64();
    let erddapy = match &options.peer_python {
        Some(python)
            if n <= options.peer_max && Some(&latency_ms) == options.latencies_ms.iter().min() =>
        {
            Some(peer(python, &server.base_url)?)
        }
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "datasets": n,
        "latency_ms": latency_ms,
        "bandwidth_mbit": options.bandwidth_mbit,
        "concurrency": options.concurrency,
        "requests": requests,
        "bytes": bytes,
        "limit_seconds": limit,
        "closed_loop_limit_seconds": closed_loop,
        "trawl_vs_closed_loop_limit": trawl_seconds / closed_loop,
        "trawl_seconds": trawl_seconds,
        "trawl_vs_limit": trawl_seconds / limit,
        "erddapy_seconds": erddapy,
        "trawl_x_erddapy": erddapy.map(|e| e / trawl_seconds),
    }))
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The listing pages' bytes, asked of the server as the harvest asks them.
fn listing_bytes(base: &str, n: usize) -> Result<u64> {
    let mut total = 0;
    for page in 1..=(n / 1000 + 1) {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{size_download}"])
            .arg(format!(
                "{base}/info/index.json?page={page}&itemsPerPage=1000"
            ))
            .output()?;
        total += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    Ok(total)
}

/// erddapy's loop (`urlopen`, its own fetch) on the same server: seconds.
fn peer(python: &Path, base: &str) -> Result<f64> {
    let script = trawl_runner::repo_root().join("tests/bench/peer/erddapy_peer.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--server", base, "--methods", "urlopen"]);
    let finished = run_measured(command)?;
    if !finished.success {
        bail!("the erddapy peer failed");
    }
    let line: Value = serde_json::from_str(
        finished
            .stdout
            .lines()
            .last()
            .context("the erddapy peer printed nothing")?,
    )?;
    let n = line["datasets"].as_f64().unwrap_or(0.0);
    let rate = line["best_datasets_per_second"]
        .as_f64()
        .context("erddapy's rate")?;
    Ok(n / rate)
}

//! Fair share between sources (issue 18): one large source harvested with several small
//! ones by `trawl harvest` (the release binary), all together (the queue takes turns between
//! sources) and, for comparison, one after the other, large first (how `trawl harvest` ran
//! sources before). Prints when each session closed, counted from the start of the run.

use crate::process::{run_measured, sibling, Server};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

pub struct Options {
    pub large: usize,
    pub small: usize,
    pub small_sources: usize,
    pub concurrency: usize,
    pub work_dir: std::path::PathBuf,
}

pub async fn run(options: &Options) -> Result<()> {
    let mut servers = vec![Server::start(fixture(options.large)?)?];
    for _ in 0..options.small_sources {
        servers.push(Server::start(fixture(options.small)?)?);
    }
    let sources: Vec<Value> = servers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let id = if i == 0 {
                "large".to_string()
            } else {
                format!("small-{i}")
            };
            json!({"id": id, "protocol": "erddap", "base_url": server.base_url,
                   "schedule": "rate(1 day)", "internal": true})
        })
        .collect();

    let together = harvest(options, "together", std::slice::from_ref(&sources))?;
    let one_by_one: Vec<Vec<Value>> = sources.iter().map(|s| vec![s.clone()]).collect();
    let in_turn = harvest(options, "one-after-another", &one_by_one)?;
    let figures = json!({
        "large": options.large,
        "small": options.small,
        "small_sources": options.small_sources,
        "concurrency": options.concurrency,
        "together": together,
        "one_after_another": in_turn,
    });
    println!("{figures}");
    println!(
        "\n{} datasets + {} × {}, concurrency {}: seconds from the start of the run to each session's close",
        options.large, options.small_sources, options.small, options.concurrency
    );
    println!("| run | small sources closed (first – last) | large source closed |");
    println!("|---|---|---|");
    for (name, row) in [
        ("together (taking turns)", &together),
        ("one after another, large first", &in_turn),
    ] {
        println!(
            "| {name} | {:.2} – {:.2} s | {:.2} s |",
            row["small_first_seconds"].as_f64().unwrap_or(f64::NAN),
            row["small_last_seconds"].as_f64().unwrap_or(f64::NAN),
            row["large_seconds"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

fn fixture(datasets: usize) -> Result<Command> {
    let mut fixture = Command::new(sibling("fixture-erddap")?);
    fixture.args(["--port", "0", "--datasets", &datasets.to_string()]);
    Ok(fixture)
}

/// Runs `trawl harvest` once per group of sources, one run after the other, into one fresh
/// data directory; each session's close is counted from the start of the first run.
fn harvest(options: &Options, name: &str, groups: &[Vec<Value>]) -> Result<Value> {
    let dir = options.work_dir.join(format!(
        "fair-share-{name}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    std::fs::create_dir_all(&dir)?;
    let mut elapsed = 0.0;
    let mut closed: Vec<(String, f64, u64)> = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let file = dir.join(format!("sources-{i}.json"));
        std::fs::write(&file, Value::Array(group.clone()).to_string())?;
        let finished = run_measured(command(options, &file, &dir.join("data"))?)?;
        if !finished.success {
            bail!("trawl harvest failed ({name})");
        }
        for line in finished.stdout.lines().filter(|l| l.starts_with('{')) {
            let report: Value = serde_json::from_str(line)?;
            let session = report["session_id"].as_str().context("session_id")?;
            let source = session.split('@').next().unwrap_or(session).to_string();
            let seconds = report["seconds"].as_f64().context("seconds")?;
            let harvested = report["counters"]["harvested"].as_u64().unwrap_or(0);
            closed.push((source, elapsed + seconds, harvested));
        }
        elapsed += finished.wall.as_secs_f64();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let small: Vec<f64> = closed
        .iter()
        .filter(|(s, _, _)| s != "large")
        .map(|(_, t, _)| *t)
        .collect();
    let large = closed
        .iter()
        .find(|(s, _, _)| s == "large")
        .context("no large session")?;
    if large.2 != options.large as u64 {
        bail!(
            "the large source harvested {} of {}",
            large.2,
            options.large
        );
    }
    Ok(json!({
        "small_first_seconds": small.iter().cloned().fold(f64::INFINITY, f64::min),
        "small_last_seconds": small.iter().cloned().fold(0.0, f64::max),
        "large_seconds": large.1,
        "sessions": closed.iter().map(|(s, t, h)| json!({"source": s, "closed_after_seconds": t, "harvested": h})).collect::<Vec<_>>(),
    }))
}

fn command(options: &Options, sources: &Path, data_dir: &Path) -> Result<Command> {
    let mut trawl = Command::new(sibling("trawl")?);
    trawl
        .arg("harvest")
        .arg("--sources")
        .arg(sources)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--json",
            "--quiet",
            "--concurrency",
            &options.concurrency.to_string(),
        ]);
    Ok(trawl)
}

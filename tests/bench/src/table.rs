//! Issue 19, items 4 and 5: every ratio BENCHMARKS.md states, measured in one invocation and
//! printed as one table with the machine and the command that reproduces it. Each figure is the
//! median of `--runs` runs with its range; a ratio is taken within each run (the harvest and
//! the raw capacity of the same run, Trawl and erddapy on the same server) and only then
//! summarised.
//!
//! 1. throughput: the embedded run ÷ the fixture's raw capacity, and × erddapy, no added latency;
//! 2. latency: the embedded run behind round trips and a link, ÷ both limits, and × erddapy;
//! 3. aws-requests: billable requests and dollars per million resources, changed and unchanged
//!    (on the stack `infra/deploy.sh` deployed; skipped with `--aws-datasets 0`);
//! 4. the function binaries' sizes, as built beside this binary.

use crate::summary::{figure, Spread, Unit};
use crate::{aws_requests, cold_start, latency, process, throughput};
use anyhow::{bail, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use trawl::model::RawStorage;

pub struct Options {
    pub runs: usize,
    pub throughput_size: usize,
    pub throughput_concurrency: usize,
    pub latency_size: usize,
    pub latency_ms: u64,
    pub bandwidth_mbit: u64,
    pub latency_concurrency: usize,
    /// 0: the AWS figures are not measured (no stack deployed).
    pub aws_datasets: usize,
    pub aws_runs: usize,
    pub peer_python: Option<PathBuf>,
    pub work_dir: PathBuf,
}

/// One line of the table: what, the target, the runs' figures and how they were measured.
struct Line {
    what: String,
    target: &'static str,
    values: Vec<f64>,
    unit: Unit,
    setting: String,
}

pub async fn run(options: &Options) -> Result<()> {
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let load_before = load_average();
    let mut lines = Vec::new();

    let throughput_runs = throughput::run(&throughput::Options {
        sizes: vec![options.throughput_size],
        runs: options.runs,
        concurrency: options.throughput_concurrency,
        peer_max: options.throughput_size,
        peer_python: options.peer_python.clone(),
        work_dir: options.work_dir.clone(),
        raw: RawStorage::Resource,
    })
    .await?;
    lines.extend(throughput_lines(options, &throughput_runs));

    let latency_runs = latency::run(&latency::Options {
        sizes: vec![options.latency_size],
        runs: options.runs,
        latencies_ms: vec![options.latency_ms],
        bandwidth_mbit: options.bandwidth_mbit,
        concurrency: options.latency_concurrency,
        peer_python: options.peer_python.clone(),
        peer_max: options.latency_size,
        work_dir: options.work_dir.clone(),
    })
    .await?;
    lines.extend(latency_lines(options, &latency_runs));

    // A part that fails leaves its lines empty and is named under the table, so the figures
    // already measured are not lost with it.
    let mut failed = Vec::new();
    if options.aws_datasets > 0 {
        let mut aws_runs = Vec::new();
        for run in 1..=options.aws_runs.max(1) {
            match aws_run(options.aws_datasets).await {
                Ok(figures) => aws_runs.push(figures),
                Err(e) => failed.push(format!("aws-requests run {run}: {e}")),
            }
        }
        lines.extend(aws_lines(options, &aws_runs));
    }

    let sizes = binary_sizes();
    let load_after = load_average();
    let took = clock.elapsed();

    println!();
    println!(
        "## Trawl benchmarks, one run: {} to {} UTC ({:.0} min)",
        started.format("%Y-%m-%d %H:%M"),
        chrono::Utc::now().format("%H:%M"),
        took.as_secs_f64() / 60.0
    );
    println!();
    println!("- machine: {}", machine());
    println!(
        "- load average (1 min) {load_before} at the start, {load_after} at the end: \
         whatever else ran on the machine shared its cores"
    );
    println!("- code: {}", commit());
    println!("- command: `{}`", command_line());
    println!(
        "- reproduce: `tests/bench/run.sh table` (builds the release binaries, then runs this)"
    );
    println!(
        "- each figure: median (min–max) of its runs; ratios taken within each run, then summarised"
    );
    println!();
    println!("| figure | target | median (min–max) | runs | measured |");
    println!("|---|---|---|---:|---|");
    for line in &lines {
        let cell = Spread::of(&line.values).map_or("–".into(), |s| s.show(line.unit));
        let runs = line.values.iter().filter(|v| v.is_finite()).count();
        println!(
            "| {} | {} | {} | {} | {} |",
            line.what, line.target, cell, runs, line.setting
        );
    }
    let sizes_cell: Vec<String> = sizes
        .iter()
        .map(|(name, bytes)| match bytes {
            Some(b) => format!(
                "{} {:.2} MB",
                name.trim_start_matches("trawl-"),
                *b as f64 / 1e6
            ),
            None => format!("{} not built", name.trim_start_matches("trawl-")),
        })
        .collect();
    println!(
        "| function binary size (10^6 bytes) | ≤ 10 MB | {} | – | release, each built on its own as deployed |",
        sizes_cell.join(", ")
    );
    if !failed.is_empty() {
        println!();
        for failure in &failed {
            println!("- not measured: {failure}");
        }
        bail!("{} part(s) of the table failed", failed.len());
    }
    Ok(())
}

/// One aws-requests run, tried a second time if the first fails: LocalStack shared with other
/// work now and then refuses a request outright ("timed out … waiting for a lock").
/// Measures `raw: resource` (the default, whose targets are the request counts) and `raw:
/// batch` (whose targets are issue 19's PUTs, requests and dollars).
async fn aws_run(datasets: usize) -> Result<Value> {
    let modes = [RawStorage::Resource, RawStorage::Batch];
    match aws_requests::run(datasets, &modes).await {
        Ok(figures) => Ok(figures),
        Err(first) => {
            eprintln!("aws-requests failed ({first}); once more");
            aws_requests::run(datasets, &modes).await
        }
    }
}

fn throughput_lines(options: &Options, runs: &[Value]) -> Vec<Line> {
    let setting = format!(
        "N = {}, `{}`, `--concurrency {}`",
        thousands_usize(options.throughput_size),
        options.work_dir.display(),
        options.throughput_concurrency
    );
    let line = |what: &str, target, pointer: &str, unit| Line {
        what: what.into(),
        target,
        values: figure(runs, pointer),
        unit,
        setting: setting.clone(),
    };
    vec![
        line(
            "embedded harvest ÷ fixture's raw capacity",
            "≥ 70%",
            "/harvest_vs_raw",
            Unit::Percent,
        ),
        line(
            "  embedded harvest, datasets/s",
            "",
            "/harvest/resources_per_second",
            Unit::Plain(0),
        ),
        line(
            "  raw capacity, datasets/s (best of two)",
            "",
            "/raw_capacity_per_second",
            Unit::Plain(0),
        ),
        line(
            "  harvest CPU µs per dataset",
            "",
            "/harvest/cpu_us_per_dataset",
            Unit::Plain(0),
        ),
        line(
            "  time per resource p50, ms",
            "",
            "/harvest/resource_ms/p50",
            Unit::Plain(2),
        ),
        line(
            "  harvest peak RSS, MiB",
            "",
            "/harvest/peak_rss_mib",
            Unit::Plain(1),
        ),
        line(
            "harvest × erddapy, no added latency",
            "≥ 20×",
            "/harvest_vs_peer",
            Unit::Times,
        ),
        line(
            "  erddapy, datasets/s (faster of its two ways)",
            "",
            "/peer/best_datasets_per_second",
            Unit::Plain(0),
        ),
    ]
}

fn latency_lines(options: &Options, runs: &[Value]) -> Vec<Line> {
    let setting = format!(
        "N = {}, {} ms, {} Mbit/s, `--concurrency {}`",
        thousands_usize(options.latency_size),
        options.latency_ms,
        options.bandwidth_mbit,
        options.latency_concurrency
    );
    let line = |what: String, target, pointer: &str, unit| Line {
        what,
        target,
        values: figure(runs, pointer),
        unit,
        setting: setting.clone(),
    };
    let ms = options.latency_ms;
    vec![
        line(
            format!("harvest ÷ the issue's latency limit at {ms} ms"),
            "≤ 1.15",
            "/trawl_vs_limit",
            Unit::Plain(2),
        ),
        line(
            format!("harvest ÷ the closed-loop limit at {ms} ms"),
            "",
            "/trawl_vs_closed_loop_limit",
            Unit::Plain(2),
        ),
        line(
            "  harvest wall time".into(),
            "",
            "/trawl_seconds",
            Unit::Seconds,
        ),
        line(
            format!("harvest × erddapy at {ms} ms"),
            "≥ 7×",
            "/trawl_x_erddapy",
            Unit::Times,
        ),
        line(
            "  erddapy wall time".into(),
            "",
            "/erddapy_seconds",
            Unit::Seconds,
        ),
    ]
}

/// Each aws-requests run gives, per raw mode, a first session (everything changed) and a
/// second (everything unchanged); requests and dollars are per resource of the same session.
fn aws_lines(options: &Options, runs: &[Value]) -> Vec<Line> {
    let setting = format!(
        "LocalStack, N = {}, billable requests; USD: requests incl. Lambda's, not duration",
        thousands_usize(options.aws_datasets)
    );
    let session = |mode: RawStorage, index: usize| -> Vec<Value> {
        runs.iter()
            .map(|r| {
                r["modes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| m["raw"] == mode.as_str())
                    .map(|m| m["runs"][index].clone())
                    .unwrap_or(Value::Null)
            })
            .collect()
    };
    let line = |what: &str, target, mode, index, pointer: &str, unit| Line {
        what: what.into(),
        target,
        values: figure(&session(mode, index), pointer),
        unit,
        setting: setting.clone(),
    };
    let puts = |mode, index| -> Vec<f64> {
        session(mode, index)
            .iter()
            .map(|run| match run["operations"].as_array() {
                Some(ops) => ops
                    .iter()
                    .filter(|op| {
                        op["operation"]
                            .as_str()
                            .is_some_and(|o| o.eq_ignore_ascii_case("s3.PutObject"))
                    })
                    .filter_map(|op| op["per_resource"].as_f64())
                    .sum(),
                None => f64::NAN,
            })
            .collect()
    };
    use RawStorage::{Batch, Resource};
    vec![
        line(
            "AWS requests per changed resource",
            "≤ 3",
            Resource,
            0,
            "/billable_requests_per_resource",
            Unit::Plain(2),
        ),
        line(
            "AWS requests per unchanged resource",
            "≤ 1.5",
            Resource,
            1,
            "/billable_requests_per_resource",
            Unit::Plain(2),
        ),
        Line {
            what: "S3 PUTs per changed resource, `raw: batch`".into(),
            target: "≤ 1.3",
            values: puts(Batch, 0),
            unit: Unit::Plain(3),
            setting: setting.clone(),
        },
        line(
            "AWS requests per changed resource, `raw: batch`",
            "≤ 2.0",
            Batch,
            0,
            "/billable_requests_per_resource",
            Unit::Plain(2),
        ),
        line(
            "USD per million changed resources, `raw: batch`",
            "≤ $8",
            Batch,
            0,
            "/usd_per_million_resources/total",
            Unit::Dollars,
        ),
        line(
            "USD per million unchanged resources, `raw: batch`",
            "≤ $3",
            Batch,
            1,
            "/usd_per_million_resources/total",
            Unit::Dollars,
        ),
    ]
}

/// Each function binary beside this one, in bytes (`None`: not built).
fn binary_sizes() -> Vec<(&'static str, Option<u64>)> {
    cold_start::FUNCTIONS
        .iter()
        .map(|name| {
            let bytes = process::sibling(name)
                .ok()
                .and_then(|path| std::fs::metadata(path).ok())
                .map(|m| m.len());
            (*name, bytes)
        })
        .collect()
}

fn thousands_usize(n: usize) -> String {
    crate::summary::thousands(n as f64, 0)
}

/// CPU, cores, memory, kernel, OS and Rust, as read from the machine now.
fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "rustc unknown".into());
    format!(
        "{} × {}, {:.0} GiB RAM, Linux {}, {}; {}",
        cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        field(&cpuinfo, "model name").unwrap_or("unknown CPU"),
        field(&read("/proc/meminfo"), "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / (1024.0 * 1024.0)),
        read("/proc/sys/kernel/osrelease").trim(),
        field(&read("/etc/os-release"), "PRETTY_NAME")
            .map(|v| v.trim_matches('"'))
            .unwrap_or("unknown OS"),
        rustc
    )
}

/// The value of the first `name: value` or `name=value` line.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':').or_else(|| line.split_once('='))?;
        (key.trim() == name).then(|| value.trim())
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The commit measured, and whether the code differed from it (a page of figures being
/// edited while the benchmarks run does not count).
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(trawl_runner::repo_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":(exclude)*.md",
    ])
    .is_empty();
    match (head.is_empty(), dirty) {
        (true, _) => "not a git checkout".into(),
        (false, true) => format!("{head} with uncommitted changes to the code"),
        (false, false) => head,
    }
}

fn command_line() -> String {
    let mut args = std::env::args();
    let program = args.next().unwrap_or_default();
    // The path as run from the repository root, where run.sh runs it.
    let program = std::path::Path::new(&program)
        .file_name()
        .map_or(program.clone(), |n| n.to_string_lossy().into_owned());
    std::iter::once(format!("target/release/{program}"))
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_is_read_from_colon_and_equals_lines() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            field(cpuinfo, "model name"),
            Some("Intel(R) Xeon(R) Processor")
        );
        let os = "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            field(os, "PRETTY_NAME"),
            Some("\"Debian GNU/Linux 12 (bookworm)\"")
        );
        assert_eq!(field(os, "VERSION"), None);
    }

    #[test]
    fn the_aws_lines_take_changed_figures_from_each_runs_first_session_and_unchanged_from_its_second(
    ) {
        let session = |puts: f64, requests: f64, usd: f64| {
            json!({"billable_requests_per_resource": requests,
                   "operations": [{"operation": "S3.PutObject", "per_resource": puts},
                                  {"operation": "S3.GetObject", "per_resource": 9.0}],
                   "usd_per_million_resources": {"total": usd}})
        };
        let run = |shift: f64| {
            json!({"modes": [
                {"raw": "resource", "runs": [session(2.1, 2.8 - shift, 15.4), session(0.1, 0.9 - shift, 4.9)]},
                {"raw": "batch", "runs": [session(1.2 - shift, 1.9, 11.0 - shift), session(0.1, 0.5, 5.0 - shift)]},
            ]})
        };
        let runs = [run(0.0), run(0.1)];
        let options = Options {
            runs: 2,
            throughput_size: 10_000,
            throughput_concurrency: 16,
            latency_size: 2_000,
            latency_ms: 20,
            bandwidth_mbit: 50,
            latency_concurrency: 8,
            aws_datasets: 2_000,
            aws_runs: 2,
            peer_python: None,
            work_dir: "/dev/shm/trawl-bench".into(),
        };
        let lines = aws_lines(&options, &runs);
        let values: Vec<&[f64]> = lines.iter().map(|l| l.values.as_slice()).collect();
        let rounded: Vec<Vec<f64>> = values
            .iter()
            .map(|v| v.iter().map(|x| (x * 100.0).round() / 100.0).collect())
            .collect();
        assert_eq!(
            rounded,
            vec![
                vec![2.8, 2.7],
                vec![0.9, 0.8],
                vec![1.2, 1.1],
                vec![1.9, 1.9],
                vec![11.0, 10.9],
                vec![5.0, 4.9]
            ]
        );
    }
}

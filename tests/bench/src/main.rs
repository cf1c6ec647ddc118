//! Trawl's benchmark harness: prints figures, asserts nothing (BENCHMARKS.md records them).
//!
//! ```text
//! trawl-bench throughput [--sizes 1000,10000,100000] [--runs 1] [--concurrency 16] [--peer-python PY] [--raw resource]
//! trawl-bench cold-start [--repeats 20]        (needs LocalStack and infra/deploy.sh)
//! trawl-bench aws-requests [--datasets 2000] [--raw resource,batch,none]   (needs LocalStack and infra/deploy.sh)
//! trawl-bench stages [--sizes 1000,10000,100000]
//! trawl-bench one-answer [--sizes 10000,100000,1000000]
//! trawl-bench fair-share [--large 20000] [--small 50] [--small-sources 5] [--concurrency 8]
//! trawl-bench latency [--sizes 2000,10000] [--runs 1] [--latencies-ms 20,50] [--bandwidth-mbit 50] [--peer-python PY]
//! trawl-bench table [--runs 3] [--peer-python PY] [--aws-datasets 2000]   (every ratio, one table)
//! ```
//! `tests/bench/run.sh` builds the release binaries these drive and runs them all. With
//! `--runs N` each figure is the median of N runs with its range (`summary`).

mod aws_requests;
mod cold_start;
mod fair_share;
mod latency;
mod one_answer;
mod process;
mod stages;
mod summary;
mod table;

/// Counts heap bytes for `stages`; the other benchmarks measure child processes.
#[global_allocator]
static ALLOCATOR: stages::Counting = stages::Counting;
mod throughput;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "trawl-bench",
    about = "Trawl's benchmarks (figures, not tests)"
)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The embedded run vs the fixture server's raw capacity and vs erddapy (parts 1, 2, 5).
    Throughput {
        #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000, 100000])]
        sizes: Vec<usize>,
        /// Runs of every size; figures are then summarised as median and range.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Python with erddapy 3.3.1 (tests/bench/peer/setup.sh prints it); no peer without.
        #[arg(long)]
        peer_python: Option<PathBuf>,
        /// erddapy is run for sizes up to this.
        #[arg(long, default_value_t = 10000)]
        peer_max: usize,
        #[arg(long, default_value = "target/bench")]
        work_dir: PathBuf,
        /// The harvested source's `options.raw` (`resource`, `batch` or `none`).
        #[arg(long, default_value = "resource")]
        raw: String,
    },
    /// AWS requests per resource on LocalStack, first and second run (part 3).
    AwsRequests {
        #[arg(long, default_value_t = 2000)]
        datasets: usize,
        /// The `options.raw` modes to measure, each a source of its own.
        #[arg(long, value_delimiter = ',', default_values_t = [String::from("resource"), String::from("batch"), String::from("none")])]
        raw: Vec<String>,
    },
    /// Heap each stage allocates vs catalog size: scheduler, listing, finalizer (part 5).
    Stages {
        #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000, 100000])]
        sizes: Vec<usize>,
        #[arg(long, default_value = "target/bench")]
        work_dir: PathBuf,
    },
    /// Heap of listing one answer of N rows (a server ignoring `itemsPerPage`), and of each
    /// chunk delivered after it (issue 15).
    OneAnswer {
        #[arg(long, value_delimiter = ',', default_values_t = [10000, 100000, 1000000])]
        sizes: Vec<usize>,
        #[arg(long, default_value = "target/bench")]
        work_dir: PathBuf,
    },
    /// One large source harvested with small ones: when each session closes, together
    /// (taking turns) and one after another (issue 18, fair share).
    FairShare {
        #[arg(long, default_value_t = 20000)]
        large: usize,
        #[arg(long, default_value_t = 50)]
        small: usize,
        #[arg(long, default_value_t = 5)]
        small_sources: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value = "target/bench")]
        work_dir: PathBuf,
    },
    /// The embedded run against a server with per-request latency and a bandwidth limit, set
    /// against the physical limit and erddapy (issue 19, part 1).
    Latency {
        #[arg(long, value_delimiter = ',', default_values_t = [2000, 10000])]
        sizes: Vec<usize>,
        /// Runs of every latency and size; figures are then summarised as median and range.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        #[arg(long, value_delimiter = ',', default_values_t = [20, 50])]
        latencies_ms: Vec<u64>,
        #[arg(long, default_value_t = 50)]
        bandwidth_mbit: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long)]
        peer_python: Option<PathBuf>,
        #[arg(long, default_value_t = 2000)]
        peer_max: usize,
        #[arg(long, default_value = "target/bench")]
        work_dir: PathBuf,
    },
    /// Each function binary: start to first Runtime API request, size, RSS after 10 (part 4).
    ColdStart {
        #[arg(long, default_value_t = 20)]
        repeats: usize,
    },
    /// Every ratio BENCHMARKS.md states, from one invocation, as one table with the machine and
    /// the command: throughput, latency, AWS requests, binary sizes (issue 19, items 4 and 5).
    Table {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 10000)]
        throughput_size: usize,
        #[arg(long, default_value_t = 16)]
        throughput_concurrency: usize,
        #[arg(long, default_value_t = 2000)]
        latency_size: usize,
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        #[arg(long, default_value_t = 50)]
        bandwidth_mbit: u64,
        #[arg(long, default_value_t = 8)]
        latency_concurrency: usize,
        /// Datasets of the aws-requests source; 0 skips it (no stack deployed).
        #[arg(long, default_value_t = 2000)]
        aws_datasets: usize,
        /// aws-requests runs (each two sessions on LocalStack, minutes each).
        #[arg(long, default_value_t = 1)]
        aws_runs: usize,
        #[arg(long)]
        peer_python: Option<PathBuf>,
        /// The harvests' data directories; tmpfs by default, as the headline figures are.
        #[arg(long, default_value = "/dev/shm/trawl-bench")]
        work_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Bench::Throughput {
            sizes,
            runs,
            concurrency,
            peer_python,
            peer_max,
            work_dir,
            raw,
        } => {
            throughput::run(&throughput::Options {
                sizes,
                runs,
                concurrency,
                peer_max,
                peer_python,
                work_dir,
                raw: raw_mode(&raw)?,
            })
            .await?;
        }
        Bench::AwsRequests { datasets, raw } => {
            let modes = raw
                .iter()
                .map(String::as_str)
                .map(raw_mode)
                .collect::<Result<Vec<_>, _>>()?;
            aws_requests::run(datasets, &modes).await?;
        }
        Bench::Stages { sizes, work_dir } => {
            stages::run(&sizes, &work_dir).await?;
        }
        Bench::OneAnswer { sizes, work_dir } => {
            one_answer::run(&sizes, &work_dir).await?;
        }
        Bench::FairShare {
            large,
            small,
            small_sources,
            concurrency,
            work_dir,
        } => {
            fair_share::run(&fair_share::Options {
                large,
                small,
                small_sources,
                concurrency,
                work_dir,
            })
            .await?;
        }
        Bench::Latency {
            sizes,
            runs,
            latencies_ms,
            bandwidth_mbit,
            concurrency,
            peer_python,
            peer_max,
            work_dir,
        } => {
            latency::run(&latency::Options {
                sizes,
                runs,
                latencies_ms,
                bandwidth_mbit,
                concurrency,
                peer_python,
                peer_max,
                work_dir,
            })
            .await?;
        }
        Bench::ColdStart { repeats } => {
            cold_start::run(repeats.max(1)).await?;
        }
        Bench::Table {
            runs,
            throughput_size,
            throughput_concurrency,
            latency_size,
            latency_ms,
            bandwidth_mbit,
            latency_concurrency,
            aws_datasets,
            aws_runs,
            peer_python,
            work_dir,
        } => {
            table::run(&table::Options {
                runs,
                throughput_size,
                throughput_concurrency,
                latency_size,
                latency_ms,
                bandwidth_mbit,
                latency_concurrency,
                aws_datasets,
                aws_runs,
                peer_python,
                work_dir,
            })
            .await?;
        }
    }
    Ok(())
}

/// An `options.raw` mode named on the command line.
fn raw_mode(name: &str) -> anyhow::Result<trawl::model::RawStorage> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|e| anyhow::anyhow!("--raw {name}: {e}"))
}

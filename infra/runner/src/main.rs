//! `trawl-runner`: run Trawl's pipeline against the stack deployed into LocalStack.
//!
//!   trawl-runner demo [--datasets N]     harvest a bundled sample ERDDAP catalog end to end
//!   trawl-runner add-source FILE.json    register (validate and store) a source
//!   trawl-runner run SOURCE_ID [--resources ID...]  start a session now (of only those
//!                                        resources, with --resources) and drain it
//!   trawl-runner deploy [--sources FILE] [--prune] [--harvest]  what the template's
//!                                        DeploySources custom resource does (infra/deploy.sh)
//!   trawl-runner tick [--at TIME]        invoke the scheduler like the EventBridge schedule
//!   trawl-runner drain SESSION_ID...     run the harvester and finalizer until those sessions close
//!   trawl-runner dlq list|replay         show, or move back to the work queue, dead-lettered work
//!   trawl-runner abort SESSION_ID        abort a running session

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::time::Duration;
use trawl::model::SourceSpec;
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};
use trawl_runner::{connect_local, Faults, Runner};

#[derive(Parser)]
#[command(
    name = "trawl-runner",
    about = "Run Trawl's pipeline against the local emulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How long to wait for sessions to close.
    #[arg(long, default_value_t = 300, global = true)]
    timeout_secs: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a sample ERDDAP catalog, register it, harvest it, print the summary.
    Demo {
        #[arg(long, default_value_t = 50)]
        datasets: usize,
    },
    /// Register or update a source from a JSON file.
    AddSource { file: std::path::PathBuf },
    /// Start a session for a source now and drain it.
    Run {
        source_id: String,
        /// Harvest only these resources (a selection: nothing is deleted as stale).
        #[arg(long, num_args = 1..)]
        resources: Vec<String>,
    },
    /// Do what a deployment's DeploySources custom resource does: upload the sources
    /// document to the bucket, make the registered sources match it, and with --harvest
    /// start (and drain) one session of every enabled source with trigger `deploy`.
    Deploy {
        /// The sources document (one source or a list, JSON or YAML).
        #[arg(long)]
        sources: Option<std::path::PathBuf>,
        /// Where it goes in the bucket (the template's SourcesKey).
        #[arg(long, default_value = "config/sources.yaml")]
        key: String,
        /// Remove registered sources the document does not name.
        #[arg(long)]
        prune: bool,
        /// Start one session of every enabled source (HarvestOnDeploy).
        #[arg(long)]
        harvest: bool,
    },
    /// Invoke the scheduler as the schedule would at TIME (default: now).
    Tick {
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Drain until the given sessions close.
    Drain { session_ids: Vec<String> },
    /// Abort a running session: its remaining work is counted as aborted, not fetched.
    Abort { session_id: String },
    /// List the work dead-letter queue, or move its messages back to the work queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    List,
    Replay,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let timeout = Duration::from_secs(cli.timeout_secs);
    let runner = connect_local(Faults::default()).await?;
    match cli.command {
        Command::Demo { datasets } => demo(&runner, datasets, timeout).await,
        Command::AddSource { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let source = SourceSpec::from_json(&text)?;
            runner.services.store.put_source(&source).await?;
            println!("{}", serde_json::to_string_pretty(&source)?);
            Ok(())
        }
        Command::Run {
            source_id,
            resources,
        } => {
            let event = if resources.is_empty() {
                json!({ "source_id": source_id })
            } else {
                json!({ "source_id": source_id, "resource_ids": resources })
            };
            let report = runner.invoke_scheduler(event).await?;
            drain_report(&runner, report, timeout).await
        }
        Command::Deploy {
            sources,
            key,
            prune,
            harvest,
        } => {
            let sources_key = match sources {
                Some(file) => {
                    let body = std::fs::read(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    runner
                        .services
                        .objects
                        .put(&key, body.into(), "text/plain")
                        .await?;
                    Some(key)
                }
                None => None,
            };
            let properties = trawl::deploy::DeployProperties {
                sources_key,
                prune,
                harvest_on_deploy: harvest,
            };
            let deployed = trawl::deploy::deploy(&runner.services, &properties).await?;
            println!("{}", serde_json::to_string_pretty(&deployed)?);
            if let Some(report) = deployed.harvest {
                runner.run_until_closed(&report.started, timeout).await?;
                for id in &report.started {
                    print_summary(&runner, id).await?;
                }
            }
            Ok(())
        }
        Command::Tick { at } => {
            let at = at.unwrap_or_else(chrono::Utc::now);
            let report = runner.tick(at).await?;
            drain_report(&runner, report, timeout).await
        }
        Command::Abort { session_id } => {
            if runner.services.store.request_abort(&session_id).await? {
                println!("abort requested for {session_id}; `drain {session_id}` counts the rest as aborted");
                Ok(())
            } else {
                bail!("{session_id} is not running, or has nothing left to abort (it is closing)")
            }
        }
        Command::Dlq {
            action: DlqAction::List,
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&runner.dlq_list().await?)?
            );
            Ok(())
        }
        Command::Dlq {
            action: DlqAction::Replay,
        } => {
            println!(
                "replayed {} messages onto the work queue",
                runner.dlq_replay().await?
            );
            Ok(())
        }
        Command::Drain { session_ids } => {
            runner.run_until_closed(&session_ids, timeout).await?;
            for id in &session_ids {
                print_summary(&runner, id).await?;
            }
            Ok(())
        }
    }
}

async fn drain_report(
    runner: &Runner,
    report: trawl::pipeline::schedule::ScheduleReport,
    timeout: Duration,
) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&report)?);
    runner.run_until_closed(&report.started, timeout).await?;
    for id in &report.started {
        print_summary(runner, id).await?;
    }
    Ok(())
}

async fn demo(runner: &Runner, datasets: usize, timeout: Duration) -> Result<()> {
    // A sample catalog with the failure modes real servers have: one dataset gone (404), one
    // server error that persists through retries, one malformed body.
    let ids: Vec<String> = (1..=datasets).map(|i| format!("ds_{i:04}")).collect();
    let mut failures = std::collections::BTreeMap::new();
    for (i, failure) in [
        (2, Failure::NotFound),
        (6, Failure::ServerError),
        (10, Failure::Malformed),
    ] {
        if let Some(id) = ids.get(i) {
            failures.insert(id.clone(), failure);
        }
    }
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets,
        failures,
        port: 0,
        ..Default::default()
    })
    .await?;
    println!(
        "sample ERDDAP catalog serving {datasets} datasets at {}",
        fixture.base_url()
    );
    let source = SourceSpec {
        id: "demo-erddap".into(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: "cron(0 3 * * ? *)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()?;
    runner.services.store.put_source(&source).await?;
    let started = std::time::Instant::now();
    let report = runner
        .invoke_scheduler(json!({ "source_id": source.id }))
        .await?;
    if report.started.is_empty() {
        bail!("the scheduler started no session: {report:?}");
    }
    runner.run_until_closed(&report.started, timeout).await?;
    println!(
        "harvested in {:.1} s; runner: {:?}",
        started.elapsed().as_secs_f64(),
        runner.stats.snapshot()
    );
    for id in &report.started {
        print_summary(runner, id).await?;
    }
    Ok(())
}

async fn print_summary(runner: &Runner, session_id: &str) -> Result<()> {
    let session = runner
        .services
        .store
        .get_session(session_id)
        .await?
        .with_context(|| format!("no session {session_id}"))?;
    let key = trawl::keys::summary_key(&session.source_id, &session.stamp());
    let summary: Value = match runner.services.objects.get(&key).await? {
        Some(body) => serde_json::from_slice(&body)?,
        None => bail!("session {session_id} has no summary at {key}"),
    };
    let bucket = runner.stack.get("BucketName")?;
    println!("session summary (s3://{bucket}/{key}):");
    println!("{}", serde_json::to_string_pretty(&summary)?);
    println!("records:  s3://{bucket}/records/{}/", session.source_id);
    println!("raw:      s3://{bucket}/raw/{}/", session.source_id);
    println!("logs:     s3://{bucket}/logs/{}/", session.source_id);
    Ok(())
}

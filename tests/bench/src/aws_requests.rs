//! Part 3: AWS requests per resource, counted at the SDK level (an interceptor on every
//! client), for one source of N ERDDAP datasets harvested twice through the local pipeline on
//! LocalStack: the first session finds everything changed, the second everything unchanged.
//! The functions' requests and the event source mappings' (the runner plays them: SQS polls
//! and deletes, stream reads) are counted apart, then priced with public on-demand prices.
//! Each `options.raw` mode asked for (`resource`, `batch`, `none`) is a source of its own,
//! harvested twice; a table at the end sets the modes side by side.

use crate::process::{sibling, Server};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use trawl::aws::counting::Requests;
use trawl::aws::RequestCounter;
use trawl::model::RawStorage;

/// us-east-1 on-demand prices, USD (aws.amazon.com/{s3,sqs,dynamodb,lambda}/pricing, 2026).
const S3_PUT_LIST_PER_1K: f64 = 0.005;
const S3_GET_PER_1K: f64 = 0.0004;
const SQS_PER_MILLION: f64 = 0.40;
const DYNAMODB_WRU_PER_MILLION: f64 = 0.625;
const DYNAMODB_RRU_PER_MILLION: f64 = 0.125;
const LAMBDA_REQUESTS_PER_MILLION: f64 = 0.20;

pub async fn run(datasets: usize, modes: &[RawStorage]) -> Result<Value> {
    trawl_runner::default_to_local_emulator();
    let root = trawl_runner::repo_root();
    let stack = trawl_runner::Stack::load(&root.join(".local/stack.json"))?;
    let sources = trawl_runner::EventSources::from_file(&root.join("template.yaml"))?;

    let mut fixture = Command::new(sibling("fixture-erddap")?);
    fixture.args(["--port", "0", "--datasets", &datasets.to_string()]);
    let fixture = Server::start(fixture)?;

    let functions = RequestCounter::default();
    let event_sources = RequestCounter::default();
    let runner = trawl_runner::Runner::connect_counted(
        stack,
        sources,
        Default::default(),
        Some(&functions),
        Some(&event_sources),
    )
    .await?;
    let mut by_mode = Vec::new();
    for &mode in modes {
        let runs = harvest_twice(
            &runner,
            &functions,
            &event_sources,
            &fixture.base_url,
            datasets,
            mode,
        )
        .await?;
        by_mode.push(json!({"raw": mode.as_str(), "runs": runs}));
    }
    print_modes(&by_mode);
    Ok(json!({ "datasets": datasets, "modes": by_mode }))
}

/// One source keeping raw responses as `mode` says, harvested twice: everything changed,
/// then everything unchanged; a priced row per run.
async fn harvest_twice(
    runner: &trawl_runner::Runner,
    functions: &RequestCounter,
    event_sources: &RequestCounter,
    base_url: &str,
    datasets: usize,
    mode: RawStorage,
) -> Result<Vec<Value>> {
    let source_id = format!(
        "bench-aws-{}-{}",
        mode.as_str(),
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    );
    let source = trawl::model::SourceSpec::from_json(
        &json!({"id": source_id, "protocol": "erddap", "base_url": base_url,
                "schedule": "rate(1 day)", "internal": true, "options": {"raw": mode.as_str()}})
        .to_string(),
    )?;
    runner.services.store.put_source(&source).await?;
    functions.reset();

    let mut runs = Vec::new();
    for (label, expect) in [
        ("first (all changed)", "harvested"),
        ("second (all unchanged)", "unchanged"),
    ] {
        let before = runner.stats.snapshot();
        functions.reset();
        event_sources.reset();
        let started = std::time::Instant::now();
        let report = runner
            .invoke_scheduler(json!({ "source_id": source_id }))
            .await?;
        let Some(session_id) = report.started.first().cloned() else {
            bail!("no session started: {report:?}");
        };
        runner
            .run_until_closed(std::slice::from_ref(&session_id), Duration::from_secs(1800))
            .await?;
        let took = started.elapsed();
        // Taken before the benchmark's own read of the session below.
        let (by_functions, by_event_sources) = (functions.snapshot(), event_sources.snapshot());
        let session = runner
            .services
            .store
            .get_session(&session_id)
            .await?
            .expect("closed session");
        let counted = match expect {
            "harvested" => session.counters.harvested,
            _ => session.counters.unchanged,
        };
        if counted != datasets as u64 {
            bail!(
                "{label}: expected {datasets} {expect}, got {:?}",
                session.counters
            );
        }
        let after = runner.stats.snapshot();
        let invocations = (after["harvester_invocations"] - before["harvester_invocations"])
            + (after["finalizer_invocations"] - before["finalizer_invocations"])
            + 1;
        let row = priced(
            &format!("{label}, raw: {}", mode.as_str()),
            datasets,
            &by_functions,
            &by_event_sources,
            invocations,
        );
        println!("{}", serde_json::to_string(&row)?);
        print_run(&row, took);
        runs.push(row);
        // Session ids are named after the second they start in.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    runner.services.store.remove_source(&source_id).await?;
    Ok(runs)
}

fn price(operation: &str, r: &Requests) -> f64 {
    let (service, op) = operation.split_once('.').unwrap_or(("", operation));
    match service.to_ascii_lowercase().as_str() {
        "s3" if op.starts_with("Get") || op.starts_with("Head") => {
            r.requests as f64 * S3_GET_PER_1K / 1e3
        }
        "s3" if op.starts_with("Delete") => 0.0,
        "s3" => r.requests as f64 * S3_PUT_LIST_PER_1K / 1e3,
        "sqs" => r.requests as f64 * SQS_PER_MILLION / 1e6,
        "dynamodb" if is_write(op) => r.capacity_units * DYNAMODB_WRU_PER_MILLION / 1e6,
        "dynamodb" => r.capacity_units * DYNAMODB_RRU_PER_MILLION / 1e6,
        // Stream reads by a Lambda trigger are free.
        _ => 0.0,
    }
}

fn is_write(op: &str) -> bool {
    matches!(
        op,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
    )
}

fn priced(
    label: &str,
    datasets: usize,
    functions: &BTreeMap<String, Requests>,
    event_sources: &BTreeMap<String, Requests>,
    lambda_invocations: u64,
) -> Value {
    let n = datasets as f64;
    let per_million = 1e6 / n;
    let mut operations = Vec::new();
    let mut billable_per_resource = 0.0;
    let mut cost = 0.0;
    for (who, counts) in [("function", functions), ("event source", event_sources)] {
        for (op, r) in counts {
            // Stream reads by Lambda triggers are not billed; GetQueueAttributes is the local
            // runner's own idle check, which Lambda's event source mapping does not make.
            let billable = !op.to_ascii_lowercase().starts_with("dynamodb streams")
                && !op.starts_with("DynamoDBStreams")
                && op != "SQS.GetQueueAttributes";
            let usd = price(op, r) * per_million;
            if billable {
                billable_per_resource += r.requests as f64 / n;
                cost += usd;
            }
            operations.push(json!({
                "by": who, "operation": op, "requests": r.requests,
                "per_resource": r.requests as f64 / n, "capacity_units": r.capacity_units,
                "capacity_units_estimated_requests": r.estimated,
                "billable": billable, "usd_per_million_resources": usd,
            }));
        }
    }
    let lambda = lambda_invocations as f64 * LAMBDA_REQUESTS_PER_MILLION / 1e6 * per_million;
    json!({
        "run": label,
        "datasets": datasets,
        "operations": operations,
        "billable_requests_per_resource": billable_per_resource,
        "lambda_invocations": lambda_invocations,
        "usd_per_million_resources": {"aws_requests": cost, "lambda_requests": lambda, "total": cost + lambda},
    })
}

fn print_run(row: &Value, took: Duration) {
    println!(
        "\n{} run, {} datasets, {:.0} s on LocalStack",
        row["run"].as_str().unwrap_or_default(),
        row["datasets"],
        took.as_secs_f64()
    );
    println!(
        "{:<14} {:<36} {:>9} {:>12} {:>10} {:>12}",
        "by", "operation", "requests", "per resource", "units", "USD per 1M"
    );
    for op in row["operations"].as_array().into_iter().flatten() {
        println!(
            "{:<14} {:<36} {:>9} {:>12.3} {:>10.1} {:>12.2}{}{}",
            op["by"].as_str().unwrap_or_default(),
            op["operation"].as_str().unwrap_or_default(),
            op["requests"],
            op["per_resource"].as_f64().unwrap_or_default(),
            op["capacity_units"].as_f64().unwrap_or_default(),
            op["usd_per_million_resources"].as_f64().unwrap_or_default(),
            match op["capacity_units_estimated_requests"].as_u64() {
                Some(n) if n > 0 => format!("  ({n} answers without units: estimated)"),
                _ => String::new(),
            },
            if op["billable"].as_bool() == Some(false) {
                "  (not billed)"
            } else {
                ""
            }
        );
    }
    println!(
        "billable requests per resource: {:.2}; USD per 1M resources: {:.2} (+ {:.2} Lambda requests, duration not included)",
        row["billable_requests_per_resource"].as_f64().unwrap_or_default(),
        row["usd_per_million_resources"]["aws_requests"].as_f64().unwrap_or_default(),
        row["usd_per_million_resources"]["lambda_requests"].as_f64().unwrap_or_default(),
    );
}

/// The modes side by side: per changed and per unchanged resource, S3 PUTs, billable
/// requests and USD per million (AWS requests and Lambda requests).
fn print_modes(by_mode: &[Value]) {
    println!(
        "\n{:<9} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "raw", "PUT/changed", "req/changed", "$/M changed", "PUT/unch.", "req/unch.", "$/M unch."
    );
    for mode in by_mode {
        let runs = mode["runs"].as_array().cloned().unwrap_or_default();
        let figures = |run: Option<&Value>| {
            let Some(run) = run else {
                return (0.0, 0.0, 0.0);
            };
            let puts: f64 = run["operations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|op| {
                    op["operation"]
                        .as_str()
                        .is_some_and(|o| o.eq_ignore_ascii_case("s3.PutObject"))
                })
                .map(|op| op["per_resource"].as_f64().unwrap_or_default())
                .sum();
            (
                puts,
                run["billable_requests_per_resource"]
                    .as_f64()
                    .unwrap_or_default(),
                run["usd_per_million_resources"]["total"]
                    .as_f64()
                    .unwrap_or_default(),
            )
        };
        let (cp, cr, cu) = figures(runs.first());
        let (up, ur, uu) = figures(runs.get(1));
        println!(
            "{:<9} {cp:>12.3} {cr:>12.2} {cu:>12.2} {up:>12.3} {ur:>12.2} {uu:>12.2}",
            mode["raw"].as_str().unwrap_or_default()
        );
    }
}

//! The operator commands that talk to a deployed Trawl (AWS, or LocalStack with the standard
//! AWS environment: `source infra/env.sh`). They call the same pipeline and store functions
//! the Lambda functions do; nothing here has logic of its own beyond presenting it.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use trawl::documents::{ResourceLog, SessionChanges, SessionSummary};
use trawl::model::{ResourceState, Session, SourceSpec};
use trawl::pipeline::{schedule::run_now, Services, Settings};
use trawl::ports::SourceEntry;

/// A deployed stack: its services plus the queues the DLQ commands need.
pub struct Deployed {
    pub svc: Services,
    sqs: aws_sdk_sqs::Client,
    work_queue: Option<String>,
    dead_letters: Option<String>,
}

/// Finds the stack's resources: the outputs file (`--stack-outputs`, `TRAWL_STACK_OUTPUTS`,
/// or `.local/stack.json` as `infra/deploy.sh` writes it), else `TRAWL_TABLE`,
/// `TRAWL_BUCKET`, `TRAWL_WORK_QUEUE_URL` and `TRAWL_DLQ_URL` (the template's outputs).
pub async fn connect(stack_outputs: Option<PathBuf>) -> Result<Deployed> {
    let file = stack_outputs
        .or_else(|| std::env::var_os("TRAWL_STACK_OUTPUTS").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(".local/stack.json")).filter(|p| p.is_file()));
    let outputs: HashMap<String, String> = match &file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading stack outputs {}", file.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a map of stack outputs", file.display()))?
        }
        None => [
            ("TableName", "TRAWL_TABLE"),
            ("BucketName", "TRAWL_BUCKET"),
            ("WorkQueueUrl", "TRAWL_WORK_QUEUE_URL"),
            ("WorkDeadLetterQueueUrl", "TRAWL_DLQ_URL"),
        ]
        .into_iter()
        .filter_map(|(k, env)| Some((k.to_string(), std::env::var(env).ok()?)))
        .collect(),
    };
    let need = |k: &str| {
        outputs.get(k).cloned().ok_or_else(|| {
            anyhow!("no {k}: pass --stack-outputs FILE or set TRAWL_TABLE and TRAWL_BUCKET (see the README)")
        })
    };
    let resources = trawl::aws::Resources {
        table: need("TableName")?,
        bucket: need("BucketName")?,
        work_queue_url: outputs.get("WorkQueueUrl").cloned(),
        // The CLI closes no session (the functions do), so it raises no alert.
        alert_topic_arn: None,
        webhook_url: None,
    };
    let config = trawl::aws::sdk_config().await;
    Ok(Deployed {
        svc: trawl::aws::services(&config, &resources, Settings::default()),
        sqs: aws_sdk_sqs::Client::new(&config),
        work_queue: resources.work_queue_url,
        dead_letters: outputs.get("WorkDeadLetterQueueUrl").cloned(),
    })
}

/// What a command prints: a table for people, the same data as JSON for scripts.
pub struct Shown {
    pub json: Value,
    pub text: String,
}

pub async fn add_source(d: &Deployed, file: &Path, update: bool) -> Result<Shown> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let source = SourceSpec::from_json(&text).with_context(|| format!("{}", file.display()))?;
    let exists = d.svc.store.get_source(&source.id).await?.is_some();
    match (exists, update) {
        (true, false) => bail!("source {} exists; use `trawl sources update`", source.id),
        (false, true) => bail!("no source {}; use `trawl sources add`", source.id),
        _ => {}
    }
    d.svc.store.put_source(&source).await?;
    Ok(Shown {
        text: format!(
            "{} source {} ({} {})",
            if update { "updated" } else { "added" },
            source.id,
            source.protocol,
            source.base_url
        ),
        json: serde_json::to_value(&source)?,
    })
}

pub async fn remove_source(svc: &Services, id: &str, purge: bool) -> Result<Shown> {
    if purge {
        let purged = trawl::pipeline::sources::purge(svc, id).await?;
        return Ok(Shown {
            text: format!(
                "removed source {id} and purged it: {} resource states (with their history) and {} objects (records, raw responses, logs, sessions, deleted copies)",
                purged.states, purged.objects
            ),
            json: json!({"removed": id, "purged": purged}),
        });
    }
    let Some(entry) = svc.store.get_source(id).await? else {
        bail!("no source {id}");
    };
    if let Some(running) = &entry.running_session {
        bail!("source {id} has a running session ({running}); abort it first");
    }
    if !svc.store.remove_source(id).await? {
        bail!("source {id} could not be removed (a session started meanwhile?)");
    }
    Ok(Shown {
        text: format!("removed source {id} (its records and history are kept)"),
        json: json!({"removed": id}),
    })
}

pub async fn list_sources(d: &Deployed) -> Result<Shown> {
    let entries = d.svc.store.list_sources().await?;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.source.id.clone(),
                e.source.protocol.to_string(),
                if e.source.enabled { "yes" } else { "no" }.into(),
                e.source.schedule.clone(),
                e.running_session.clone().unwrap_or_else(|| "-".into()),
                e.last_status.map_or("-", |s| s.as_str()).into(),
            ]
        })
        .collect();
    Ok(Shown {
        text: table(
            &[
                "SOURCE",
                "PROTOCOL",
                "ENABLED",
                "SCHEDULE",
                "RUNNING",
                "LAST STATUS",
            ],
            &rows,
        ),
        json: Value::Array(entries.iter().map(entry_json).collect()),
    })
}

pub async fn show_source(d: &Deployed, id: &str) -> Result<Shown> {
    let entry = d
        .svc
        .store
        .get_source(id)
        .await?
        .ok_or_else(|| anyhow!("no source {id}"))?;
    let json = entry_json(&entry);
    Ok(Shown {
        text: serde_json::to_string_pretty(&json)?,
        json,
    })
}

fn entry_json(e: &SourceEntry) -> Value {
    json!({
        "source": e.source,
        "running_session": e.running_session,
        "last_session": e.last_session,
        "last_status": e.last_status,
        "incremental_base": e.incremental_base,
        "last_full_listing_at": e.last_full_listing_at,
    })
}

/// Harvest now: the session starts here (page 1 listed, its work sent to the queue) and the
/// deployed harvesters take it from there, as with a scheduled run.
/// With a selection, only its resources are harvested (trigger `selection`).
pub async fn run(
    d: &Deployed,
    source_id: &str,
    selection: Option<&trawl::model::selection::Selection>,
) -> Result<Shown> {
    if d.work_queue.is_none() {
        bail!("no work queue: pass --stack-outputs or set TRAWL_WORK_QUEUE_URL");
    }
    let now = trawl::model::session::whole_second(chrono::Utc::now());
    let report = match selection {
        Some(selection) => {
            trawl::pipeline::schedule::run_selection(&d.svc, source_id, selection, now).await?
        }
        None => run_now(&d.svc, source_id, now).await?,
    };
    if !report.errors.is_empty() {
        bail!("{}", report.errors.join("; "));
    }
    if !report.busy.is_empty() {
        bail!("{source_id} has a running session; `trawl sources show {source_id}` names it");
    }
    Ok(Shown {
        text: format!(
            "started {} (follow it with `trawl session ID`)",
            report.started.join(", ")
        ),
        json: serde_json::to_value(&report)?,
    })
}

pub async fn abort(d: &Deployed, session_id: &str) -> Result<Shown> {
    if !d.svc.store.request_abort(session_id).await? {
        bail!("session {session_id} is not running, or has nothing left to abort (it is closing)");
    }
    Ok(Shown {
        text: format!("abort requested for {session_id}: remaining work is counted as ABORTED without fetching"),
        json: json!({"abort_requested": session_id}),
    })
}

pub async fn session(svc: &Services, id: &str, changes: bool) -> Result<Shown> {
    let session = svc
        .store
        .get_session(id)
        .await?
        .ok_or_else(|| anyhow!("no session {id}"))?;
    let summary: Option<SessionSummary> = trawl::documents::get(
        svc.objects.as_ref(),
        &trawl::keys::summary_key(&session.source_id, &session.stamp()),
    )
    .await?;
    if changes {
        let Some(summary) = summary else {
            bail!("session {id} has no summary yet (its changes are known when it closes)");
        };
        return Ok(Shown {
            text: changes_text(&summary.changes),
            json: json!({"session_id": id, "changes": summary.changes}),
        });
    }
    Ok(Shown {
        text: session_text(&session, summary.as_ref()),
        json: json!({"session": session, "summary": summary}),
    })
}

/// `trawl session ID --changes`: each kind's count, then its ids (changed ones with their
/// fields), the summary's first `SessionChanges::LISTED` of each.
fn changes_text(c: &SessionChanges) -> String {
    let more = |listed: usize, count: u64| {
        (count > listed as u64)
            .then(|| format!("  … and {} more", count - listed as u64))
            .into_iter()
    };
    let mut out = vec![format!(
        "added {}, changed {}, removed {}, restored {}",
        c.added.count, c.changed.count, c.removed.count, c.restored.count
    )];
    for (kind, ids) in [
        ("added", &c.added),
        ("removed", &c.removed),
        ("restored", &c.restored),
    ] {
        if !ids.ids.is_empty() {
            out.push(format!("{kind}:"));
            out.extend(ids.ids.iter().map(|id| format!("  {id}")));
            out.extend(more(ids.ids.len(), ids.count));
        }
    }
    if !c.changed.resources.is_empty() {
        out.push("changed:".into());
        out.extend(c.changed.resources.iter().map(|r| match &r.fields {
            Some(fields) => format!("  {}  ({})", r.resource_id, fields.join(", ")),
            None => format!("  {}  (fields not known)", r.resource_id),
        }));
        out.extend(more(c.changed.resources.len(), c.changed.count));
    }
    out.join("\n")
}

fn session_text(s: &Session, summary: Option<&SessionSummary>) -> String {
    let c = &s.counters;
    let mut out = vec![
        format!("session    {}", s.id),
        format!("status     {}", s.status.as_str()),
        format!(
            "started    {}{}",
            s.started_at.to_rfc3339(),
            s.ended_at
                .map(|e| format!(
                    ", ended {} ({:.1} s)",
                    e.to_rfc3339(),
                    (e - s.started_at).num_milliseconds() as f64 / 1000.0
                ))
                .unwrap_or_default()
        ),
        format!(
            "resources  total {}, harvested {}, unchanged {}, failed {}, remaining {}",
            c.total, c.harvested, c.unchanged, c.failed, c.remaining
        ),
    ];
    if let Some(reasons) = summary.map(|s| &s.reasons).filter(|r| !r.is_empty()) {
        let list: Vec<String> = reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push(format!("reasons    {}", list.join(", ")));
    }
    let problems = s.listing_problems();
    out.push(if !s.lists_catalog() {
        format!(
            "listing    a selection of {} named resources{}",
            s.listing.listed,
            problems
                .iter()
                .map(|p| format!("; {p}"))
                .collect::<String>()
        )
    } else if problems.is_empty() {
        format!("listing    complete ({} listed)", s.listing.listed)
    } else {
        format!("listing    incomplete: {}", problems.join("; "))
    });
    if let Some(since) = s.since {
        out.push(format!("since      {} (incremental)", since.to_rfc3339()));
    }
    out.join("\n")
}

pub async fn sessions(d: &Deployed, source_id: &str, limit: usize) -> Result<Shown> {
    let sessions = trawl::queries::recent_sessions(&d.svc, source_id, limit).await?;
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let c = &s.counters;
            vec![
                s.id.clone(),
                s.status.as_str().to_string(),
                c.total.to_string(),
                c.harvested.to_string(),
                c.unchanged.to_string(),
                c.failed.to_string(),
                s.ended_at
                    .map(|e| {
                        format!(
                            "{:.1}",
                            (e - s.started_at).num_milliseconds() as f64 / 1000.0
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                if !s.lists_catalog() {
                    "selection"
                } else if s.listing_problems().is_empty() {
                    "complete"
                } else {
                    "incomplete"
                }
                .into(),
            ]
        })
        .collect();
    Ok(Shown {
        text: table(
            &[
                "SESSION",
                "STATUS",
                "TOTAL",
                "HARVESTED",
                "UNCHANGED",
                "FAILED",
                "SECONDS",
                "LISTING",
            ],
            &rows,
        ),
        json: serde_json::to_value(&sessions)?,
    })
}

pub async fn check(d: &Deployed, source_id: &str, max_pages: u32) -> Result<Shown> {
    let entry = d
        .svc
        .store
        .get_source(source_id)
        .await?
        .ok_or_else(|| anyhow!("no source {source_id}"))?;
    let source = trawl::messages::SourceSnapshot::from(&entry.source);
    // The deployment's concurrency per source: up to 10 messages per batch, several batches.
    let report = trawl::catalog_check::check_source(&d.svc, &source, max_pages, 10).await;
    let mut text = vec![
        format!(
            "source     {source_id} ({} {})",
            source.protocol, source.base_url
        ),
        format!("reachable  {}", if report.reachable { "yes" } else { "no" }),
        format!(
            "listing    {} resources on {} page(s) in {:.1} s{}{}",
            report.resources_listed,
            report.pages_listed,
            report.listing_seconds,
            if report.listing_truncated {
                " (stopped early)"
            } else {
                ""
            },
            report
                .expected_total
                .map(|t| format!("; the server announces {t}"))
                .unwrap_or_default()
        ),
    ];
    if let (Some(id), Some(secs)) = (&report.sample_resource, report.sample_fetch_seconds) {
        text.push(format!(
            "sample     {id} fetched and normalized in {secs:.2} s"
        ));
    }
    if let Some(error) = &report.error {
        text.push(format!("error      {error}"));
    }
    if let Some(est) = report.estimated_seconds {
        text.push(format!(
            "estimate   about {:.0} s for a full harvest",
            est.ceil()
        ));
    }
    Ok(Shown {
        text: text.join("\n"),
        json: serde_json::to_value(&report)?,
    })
}

pub async fn resource(d: &Deployed, source_id: &str, id: &str) -> Result<Shown> {
    let state = resource_state(d, source_id, id).await?;
    let log: Option<ResourceLog> = match &state.log_key {
        Some(key) => d
            .svc
            .objects
            .get(key)
            .await?
            .and_then(|body| ResourceLog::find(&body, id)),
        None => None,
    };
    let rows: Vec<Vec<String>> = state
        .history
        .iter()
        .rev()
        .map(|h| {
            vec![
                h.session_id.clone(),
                h.outcome.as_str().to_string(),
                h.reason.as_ref().map(|r| r.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    let requests: Vec<String> = log
        .iter()
        .flat_map(|l| &l.requests)
        .map(|r| {
            let status = r.status.map_or("-".to_string(), |s| s.to_string());
            format!("  {status} {}", r.url)
        })
        .collect();
    let raw_storage = d
        .svc
        .store
        .get_source(source_id)
        .await?
        .map(|e| e.source.options.raw);
    let raw = match (state.raw(), raw_storage) {
        (Some(raw), _) => match raw.range {
            Some(r) => format!("{} bytes {}+{}", raw.key, r.offset, r.length),
            None => raw.key,
        },
        (None, Some(trawl::model::RawStorage::None)) => "- (not kept: options.raw is none)".into(),
        (None, _) => "-".into(),
    };
    let text = format!(
        "resource   {} / {}\nlast       {}{}\nrecord     {}\nraw        {}\nhistory (newest first):\n{}\nlatest log ({}):\n{}",
        source_id,
        id,
        state.last_outcome.as_str(),
        state
            .last_reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        state.record_key.as_deref().unwrap_or("-"),
        raw,
        table(&["SESSION", "OUTCOME", "REASON"], &rows),
        state.log_key.as_deref().unwrap_or("-"),
        requests.join("\n"),
    );
    Ok(Shown {
        text,
        json: json!({"state": state, "latest_log": log}),
    })
}

/// A resource's state, or an error naming what is not there.
async fn resource_state(d: &Deployed, source_id: &str, id: &str) -> Result<ResourceState> {
    d.svc
        .store
        .get_resource(source_id, id)
        .await?
        .ok_or_else(|| anyhow!("no resource {id} in source {source_id}"))
}

/// `trawl resource SOURCE ID --raw`: the raw response its state names, as stored.
pub async fn raw_response(d: &Deployed, source_id: &str, id: &str) -> Result<bytes::Bytes> {
    let state = resource_state(d, source_id, id).await?;
    trawl::pipeline::raw::read(&d.svc, &state)
        .await?
        .ok_or_else(|| anyhow!("no raw response of {id} in {source_id} is kept"))
}

pub async fn dlq_list(d: &Deployed) -> Result<Shown> {
    let dlq = d.dead_letters.as_deref().ok_or_else(|| {
        anyhow!("no dead-letter queue: pass --stack-outputs or set TRAWL_DLQ_URL")
    })?;
    let messages = trawl::aws::sqs::dead_letters(&d.sqs, dlq).await?;
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let body = &m["body"];
            vec![
                m["message_id"].as_str().unwrap_or_default().to_string(),
                body["kind"].as_str().unwrap_or("?").to_string(),
                body["session_id"].as_str().unwrap_or("?").to_string(),
                body["resource_id"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| body["page"].as_u64().map(|p| format!("page {p}")))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    Ok(Shown {
        text: format!(
            "{} dead-lettered\n{}",
            messages.len(),
            table(&["MESSAGE", "KIND", "SESSION", "RESOURCE"], &rows)
        ),
        json: Value::Array(messages),
    })
}

pub async fn dlq_replay(d: &Deployed) -> Result<Shown> {
    let (Some(dlq), Some(work)) = (d.dead_letters.as_deref(), d.work_queue.as_deref()) else {
        bail!("dlq replay needs both queues: pass --stack-outputs or set TRAWL_DLQ_URL and TRAWL_WORK_QUEUE_URL");
    };
    let moved = trawl::aws::sqs::replay_dead_letters(&d.sqs, dlq, work).await?;
    Ok(Shown {
        text: format!("moved {moved} messages back to the work queue"),
        json: json!({"replayed": moved}),
    })
}

/// Columns padded to their widest cell.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

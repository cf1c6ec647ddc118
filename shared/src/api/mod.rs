//! The status API: read-only JSON about sources, sessions and resources, answered from the
//! same stores the pipeline writes. A plain function of (method, path, query), so the same
//! handler serves behind API Gateway, in the local runner and in the embedded run
//! (`trawl serve`). `openapi.json` beside this file describes it.

use crate::documents::{self, ResourceLog, SessionSummary};
use crate::keys;
use crate::model::{Outcome, Session, SessionStatus};
use crate::pipeline::Services;
use crate::ports::{SourceEntry, StoreError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// The OpenAPI 3 description of every route below.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The dashboard: a static page (no build toolchain) reading the routes below.
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// At most this many resources or markers in one answer; `after` pages on.
const PAGE_LIMIT: usize = 500;

pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: HashMap<String, String>,
}

#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl ApiResponse {
    fn json(status: u16, value: &Value) -> ApiResponse {
        ApiResponse {
            status,
            content_type: "application/json",
            body: serde_json::to_vec_pretty(value).expect("values serialize"),
        }
    }

    fn error(status: u16, message: impl Into<String>) -> ApiResponse {
        ApiResponse::json(status, &json!({"error": message.into()}))
    }
}

/// Answers one request. Store failures are a 503 (the caller may retry), never a panic.
pub async fn handle(svc: &Services, request: &ApiRequest<'_>) -> ApiResponse {
    if request.method != "GET" {
        return ApiResponse::error(405, "the status API is read-only: GET only");
    }
    let segments: Vec<String> = request
        .path
        .trim_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let answer = match segments.as_slice() {
        [""] | ["dashboard"] => {
            return ApiResponse {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: DASHBOARD.as_bytes().to_vec(),
            }
        }
        ["api", "openapi.json"] => {
            return ApiResponse {
                status: 200,
                content_type: "application/json",
                body: OPENAPI.as_bytes().to_vec(),
            }
        }
        ["api", "sources"] => sources(svc).await,
        ["api", "sources", id] => source(svc, id).await,
        ["api", "sources", id, "resources"] => resources(svc, id, &request.query).await,
        ["api", "sources", id, "resources", rid] => resource(svc, id, rid).await,
        // The same resource named in the query: a browser resolves an id of `.` or `..` out
        // of a path (escaped or not) before sending it, so the dashboard asks this way.
        ["api", "sources", id, "resource"] => match request.query.get("id") {
            Some(rid) => resource(svc, id, rid).await,
            None => Ok(Err(ApiResponse::error(
                400,
                "id is required: the resource's id, as a query parameter",
            ))),
        },
        ["api", "sessions", id] => session(svc, id, &request.query).await,
        ["api", "reasons"] => top_reasons(svc).await,
        _ => Ok(Err(ApiResponse::error(
            404,
            format!("no route {}", request.path),
        ))),
    };
    match answer {
        Ok(Ok(value)) => ApiResponse::json(200, &value),
        Ok(Err(response)) => response,
        Err(e) => ApiResponse::error(503, format!("storage unavailable: {e}")),
    }
}

type Answer = Result<Result<Value, ApiResponse>, StoreError>;

/// Percent-decodes one path segment (ids may hold `@`, `:` or `/`, sent as `%40`, `%3A`,
/// `%2F`); a malformed escape is kept as it is.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn not_found(what: String) -> Answer {
    Ok(Err(ApiResponse::error(404, what)))
}

/// Every source with its last session's counters, its health and its next scheduled run.
async fn sources(svc: &Services) -> Answer {
    let mut out = Vec::new();
    for entry in svc.store.list_sources().await? {
        out.push(source_overview(svc, &entry).await?);
    }
    Ok(Ok(json!({"sources": out})))
}

async fn source_overview(svc: &Services, entry: &SourceEntry) -> Result<Value, StoreError> {
    let last = match &entry.last_session {
        Some(id) => svc.store.get_session(id).await?,
        None => None,
    };
    let next_run = entry
        .source
        .schedule()
        .next_after(svc.clock.now())
        .filter(|_| entry.source.enabled);
    Ok(json!({
        "id": entry.source.id,
        "protocol": entry.source.protocol,
        "base_url": entry.source.base_url,
        "enabled": entry.source.enabled,
        "schedule": entry.source.schedule,
        "running_session": entry.running_session,
        "last_session": last.as_ref().map(session_brief),
        "health": health(entry, last.as_ref()),
        "next_run": next_run,
    }))
}

/// `ok` (last session succeeded), `degraded` (some failures or an incomplete listing),
/// `failing` (the last session failed), `new` (never harvested).
fn health(entry: &SourceEntry, last: Option<&Session>) -> &'static str {
    match (entry.last_status, last) {
        (None, _) => "new",
        (Some(SessionStatus::Failed), _) => "failing",
        (Some(SessionStatus::Succeeded), Some(s)) if s.listing_problems().is_empty() => "ok",
        _ => "degraded",
    }
}

fn session_brief(s: &Session) -> Value {
    json!({
        "id": s.id,
        "status": s.status.as_str(),
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "counters": s.counters,
        "listing_complete": s.listing_problems().is_empty(),
    })
}

async fn source(svc: &Services, id: &str) -> Answer {
    let Some(entry) = svc.store.get_source(id).await? else {
        return not_found(format!("no source {id}"));
    };
    let mut overview = source_overview(svc, &entry).await?;
    let sessions = crate::queries::recent_sessions(svc, id, 30).await?;
    overview["options"] = serde_json::to_value(&entry.source.options).expect("options serialize");
    overview["sessions"] = Value::Array(sessions.iter().map(session_brief).collect());
    Ok(Ok(overview))
}

/// A source's resources, optionally only those whose last outcome is `status`, or whose id
/// or title contains `q` (case-insensitive); paged by `after` (the last id of a page).
async fn resources(svc: &Services, source_id: &str, query: &HashMap<String, String>) -> Answer {
    if svc.store.get_source(source_id).await?.is_none() {
        return not_found(format!("no source {source_id}"));
    }
    let status = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) => match Outcome::parse(s) {
            Some(o) => Some(o),
            None => {
                return Ok(Err(ApiResponse::error(
                    400,
                    format!("status must be harvested, unchanged or failed, not {s:?}"),
                )))
            }
        },
    };
    let needle = query
        .get("q")
        .map(|q| q.to_lowercase())
        .filter(|q| !q.is_empty());
    let mut after = query.get("after").cloned();
    let mut found = Vec::new();
    let mut next = None;
    'pages: loop {
        let (states, more) = svc.store.list_resources(source_id, after.clone()).await?;
        for state in states {
            let matches = status.is_none_or(|s| s == state.last_outcome)
                && needle.as_ref().is_none_or(|n| {
                    state.resource_id.to_lowercase().contains(n)
                        || state
                            .title
                            .as_deref()
                            .is_some_and(|t| t.to_lowercase().contains(n))
                });
            if matches {
                found.push(json!({
                    "id": state.resource_id,
                    "title": state.title,
                    "status": state.last_outcome,
                    "reason": state.last_reason,
                    "last_session": state.last_session,
                    "last_harvested_at": state.last_harvested_at,
                    "deleted_at": state.deleted_at,
                    "history": state.history.iter().map(|h| json!({"session_id": h.session_id, "outcome": h.outcome})).collect::<Vec<_>>(),
                }));
                if found.len() == PAGE_LIMIT {
                    next = Some(state.resource_id.clone());
                    break 'pages;
                }
            }
        }
        match more {
            Some(m) => after = Some(m),
            None => break,
        }
    }
    Ok(Ok(
        json!({"source_id": source_id, "resources": found, "next_after": next}),
    ))
}

async fn resource(svc: &Services, source_id: &str, id: &str) -> Answer {
    let Some(state) = svc.store.get_resource(source_id, id).await? else {
        return not_found(format!("no resource {id} in source {source_id}"));
    };
    let log = match &state.log_key {
        Some(key) => svc
            .objects
            .get(key)
            .await?
            .and_then(|b| ResourceLog::find(&b, id)),
        None => None,
    };
    Ok(Ok(json!({"state": state, "latest_log": log})))
}

/// A session with its summary (when closed), reason counts and per-resource outcomes (paged
/// by `after`).
async fn session(svc: &Services, id: &str, query: &HashMap<String, String>) -> Answer {
    let Some(session) = svc.store.get_session(id).await? else {
        return not_found(format!("no session {id}"));
    };
    let summary = summary_of(svc, &session).await?;
    let mut outcomes = Vec::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut after = query.get("after").map(|a| keys::marker_sk(a));
    let mut next = None;
    loop {
        let (markers, more) = svc.store.session_markers(id, after.clone()).await?;
        for m in markers {
            if let Some(r) = &m.reason {
                *reasons.entry(r.code.as_str().to_string()).or_default() += 1;
            }
            if outcomes.len() < PAGE_LIMIT {
                outcomes.push(
                    json!({"resource_id": m.resource_id, "outcome": m.outcome, "reason": m.reason}),
                );
            } else if next.is_none() {
                next = outcomes
                    .last()
                    .and_then(|o: &Value| o["resource_id"].as_str().map(str::to_string));
            }
        }
        match more {
            Some(m) => after = Some(m),
            None => break,
        }
    }
    // Markers outlive a session only where the state store keeps them (DynamoDB, for its
    // TTL); the embedded run keeps summaries instead, which hold the reason counts and the
    // failed resources.
    if outcomes.is_empty() && !query.contains_key("after") {
        if let Some(summary) = &summary {
            reasons = summary.reasons.clone();
            outcomes = summary
                .failed_resources
                .iter()
                .map(|f| json!({"resource_id": f.resource_id, "outcome": "failed", "reason": f.reason}))
                .collect();
        }
    }
    Ok(Ok(json!({
        "session": session,
        "listing_problems": session.listing_problems(),
        "reasons": reasons,
        "outcomes": outcomes,
        "outcomes_next_after": next,
        "summary": summary,
    })))
}

/// A session's summary, once it closed; one that does not parse is left out, not an error
/// of the page that shows it.
async fn summary_of(
    svc: &Services,
    session: &Session,
) -> Result<Option<SessionSummary>, StoreError> {
    let key = keys::summary_key(&session.source_id, &session.stamp());
    match documents::get(svc.objects.as_ref(), &key).await {
        Err(e) if e.is_permanent() => {
            tracing::warn!(%key, error = %e, "session summary unreadable");
            Ok(None)
        }
        other => other,
    }
}

/// The most common failure reasons over every source's last session.
async fn top_reasons(svc: &Services) -> Answer {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_source = Vec::new();
    for entry in svc.store.list_sources().await? {
        let Some(last) = &entry.last_session else {
            continue;
        };
        let Some(session) = svc.store.get_session(last).await? else {
            continue;
        };
        let Some(summary) = summary_of(svc, &session).await? else {
            continue;
        };
        for (code, n) in &summary.reasons {
            *totals.entry(code.clone()).or_default() += n;
        }
        by_source.push(
            json!({"source_id": entry.source.id, "session_id": last, "reasons": summary.reasons}),
        );
    }
    let mut top: Vec<(String, u64)> = totals.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Ok(json!({
        "top": top.iter().map(|(code, count)| json!({"code": code, "count": count})).collect::<Vec<_>>(),
        "by_source": by_source,
    })))
}

//! The status API: read-only JSON about sources, sessions and resources, answered from the
//! same stores the pipeline writes. A plain function of (method, path, query), so the same
//! handler serves behind API Gateway, in the local runner and in the embedded run
//! (`trawl serve`). `openapi.json` beside this file describes it; `dashboard.html` is the
//! page that reads it.
//!
//! Everything a remote server wrote (ids, titles, error texts, raw responses) is data here:
//! JSON strings, or a raw response served as `text/plain` that the browser may not sniff.
//! Objects are read only by the keys the state store names, never by a key a request spells.

mod resources;
mod sessions;

use crate::documents::{self, SessionSummary};
use crate::keys;
use crate::model::{Session, SessionStatus};
use crate::pipeline::Services;
use crate::ports::{SourceEntry, StoreError};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// The OpenAPI 3 description of every route below.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The dashboard: a static page (no build toolchain) reading the routes below.
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// At most this many resources or outcomes in one answer; `offset` or `after` pages on.
const PAGE_LIMIT: usize = 500;

/// How many of a source's sessions its sparkline and freshness look back over.
const RECENT_SESSIONS: usize = 30;

/// The dashboard's policy: only its own inline script runs (by hash, so a script that text
/// from a remote server smuggled in would not, were it ever rendered as HTML), it talks only
/// to this API, and no other site may frame it.
static DASHBOARD_POLICY: LazyLock<String> = LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    let script = DASHBOARD
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(script, _)| script)
        .expect("the dashboard has one inline script");
    let hash = aws_smithy_types::base64::encode(Sha256::digest(script.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
});

pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: HashMap<String, String>,
    /// Whether this request may decide deletions (the only `POST`s): the local `trawl serve`
    /// sets it for a request carrying [`DECIDE_HEADER`], which a page on another site cannot
    /// send without a CORS preflight this server never grants; the deployed HTTP API never
    /// does, so it stays read-only.
    pub may_decide: bool,
}

/// The header a `POST` must carry to be taken as the operator's decision (the dashboard
/// sends it); a plain cross-site form cannot.
pub const DECIDE_HEADER: &str = "x-trawl-decide";

#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers beside the content type: every answer forbids content sniffing (a raw
    /// response must stay text), the dashboard carries its content security policy.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> ApiResponse {
        ApiResponse {
            status,
            content_type,
            headers: vec![
                ("x-content-type-options", "nosniff".into()),
                ("referrer-policy", "no-referrer".into()),
                ("cache-control", "no-store".into()),
            ],
            body,
        }
    }

    fn json(status: u16, value: &Value) -> ApiResponse {
        ApiResponse::new(
            status,
            "application/json",
            serde_json::to_vec_pretty(value).expect("values serialize"),
        )
    }

    fn error(status: u16, message: impl Into<String>) -> ApiResponse {
        ApiResponse::json(status, &json!({"error": message.into()}))
    }

    fn dashboard() -> ApiResponse {
        let mut page = ApiResponse::new(
            200,
            "text/html; charset=utf-8",
            DASHBOARD.as_bytes().to_vec(),
        );
        page.headers
            .push(("content-security-policy", DASHBOARD_POLICY.clone()));
        page.headers.push(("x-frame-options", "DENY".into()));
        page
    }
}

/// Answers one request: `GET`, or `HEAD` (the same answer without its body). Store failures
/// are a 503 (the caller may retry), never a panic.
pub async fn handle(svc: &Services, request: &ApiRequest<'_>) -> ApiResponse {
    let mut response = match request.method {
        "GET" | "HEAD" => route(svc, request).await,
        "POST" if request.may_decide => decide(svc, request).await,
        _ => {
            let mut refused = ApiResponse::error(
                405,
                "the status API is read-only: GET and HEAD only (deletions are decided through `trawl serve`'s dashboard or `trawl deletions`)",
            );
            refused.headers.push(("allow", "GET, HEAD".into()));
            refused
        }
    };
    if request.method == "HEAD" {
        response.body.clear();
    }
    response
}

async fn route(svc: &Services, request: &ApiRequest<'_>) -> ApiResponse {
    let segments: Vec<String> = request
        .path
        .trim_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let query = &request.query;
    let answer = match segments.as_slice() {
        [""] | ["dashboard"] => return ApiResponse::dashboard(),
        ["api", "openapi.json"] => {
            return ApiResponse::new(200, "application/json", OPENAPI.as_bytes().to_vec())
        }
        ["api", "sources"] => sources(svc).await,
        ["api", "sources", id] => source(svc, id).await,
        ["api", "sources", id, "reasons"] => resources::source_reasons(svc, id).await,
        ["api", "sources", id, "resources"] => resources::list(svc, id, query).await,
        ["api", "sources", id, "resources", rid] => resources::one(svc, id, rid).await,
        // The same resource named in the query: a browser resolves an id of `.` or `..` out
        // of a path (escaped or not) before sending it, so the dashboard asks this way.
        ["api", "sources", id, what @ ("resource" | "record" | "raw")] => match query.get("id") {
            Some(rid) => match *what {
                "resource" => resources::one(svc, id, rid).await,
                "record" => resources::record(svc, id, rid).await,
                _ => return resources::raw(svc, id, rid).await,
            },
            None => Ok(Err(ApiResponse::error(
                400,
                "id is required: the resource's id, as a query parameter",
            ))),
        },
        ["api", "sources", id, "deletions"] => resources::held_deletions(svc, id).await,
        ["api", "sessions"] => sessions::recent(svc, query).await,
        ["api", "sessions", id] => sessions::one(svc, id, query).await,
        ["api", "sessions", id, "outcomes"] => sessions::outcomes(svc, id, query).await,
        ["api", "sessions", id, "summary"] => sessions::summary(svc, id).await,
        ["api", "sessions", id, "logs"] => sessions::logs(svc, id, query).await,
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

/// `POST /api/sources/{id}/deletions/approve|restore[?id=]`: an operator's decision about a
/// source's pending deletions (one resource, or all pending), as `trawl deletions` makes it.
async fn decide(svc: &Services, request: &ApiRequest<'_>) -> ApiResponse {
    use crate::pipeline::deletions::{self, DeletionError};
    let segments: Vec<String> = request
        .path
        .trim_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ids: Vec<String> = request.query.get("id").cloned().into_iter().collect();
    let decided = match segments.as_slice() {
        ["api", "sources", id, "deletions", "approve"] => deletions::approve(svc, id, &ids).await,
        ["api", "sources", id, "deletions", "restore"] => deletions::restore(svc, id, &ids).await,
        _ => {
            return ApiResponse::error(
                404,
                format!("no route POST {}: only deletions are decided", request.path),
            )
        }
    };
    match decided {
        Ok(decision) => ApiResponse::json(200, &json!(decision)),
        Err(e @ DeletionError::UnknownSource(_)) => ApiResponse::error(404, e.to_string()),
        Err(e @ DeletionError::SessionRunning { .. }) => ApiResponse::error(409, e.to_string()),
        Err(DeletionError::Store(e)) => {
            ApiResponse::error(503, format!("storage unavailable: {e}"))
        }
    }
}

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

fn bad_request(what: String) -> Answer {
    Ok(Err(ApiResponse::error(400, what)))
}

/// A `limit` query parameter: `default` when absent, at most [`PAGE_LIMIT`].
fn limit_of(query: &HashMap<String, String>, default: usize) -> Result<usize, ApiResponse> {
    number_of(query, "limit", default).map(|n| n.clamp(1, PAGE_LIMIT))
}

fn number_of(
    query: &HashMap<String, String>,
    name: &str,
    default: usize,
) -> Result<usize, ApiResponse> {
    match query.get(name).map(String::as_str) {
        None | Some("") => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ApiResponse::error(400, format!("{name} must be a whole number, not {v:?}"))
        }),
    }
}

/// Every source with its last session's counters, its health and its next scheduled run.
async fn sources(svc: &Services) -> Answer {
    let mut out = Vec::new();
    for entry in svc.store.list_sources().await? {
        out.push(source_overview(svc, &entry).await?.0);
    }
    Ok(Ok(json!({"sources": out, "now": svc.clock.now()})))
}

/// A source's overview, and its recent sessions (newest first) it was drawn from.
async fn source_overview(
    svc: &Services,
    entry: &SourceEntry,
) -> Result<(Value, Vec<Session>), StoreError> {
    let now = svc.clock.now();
    let recent = crate::queries::recent_sessions(svc, &entry.source.id, RECENT_SESSIONS).await?;
    let stored = |id: &Option<String>| {
        id.as_ref()
            .and_then(|id| recent.iter().find(|s| &s.id == id).cloned())
    };
    let last = match (&entry.last_session, stored(&entry.last_session)) {
        (_, Some(s)) => Some(s),
        (Some(id), None) => svc.store.get_session(id).await?,
        (None, None) => None,
    };
    let running = match (&entry.running_session, stored(&entry.running_session)) {
        (_, Some(s)) => Some(s),
        (Some(id), None) => svc.store.get_session(id).await?,
        (None, None) => None,
    };
    let next_run = entry
        .source
        .schedule()
        .next_after(now)
        .filter(|_| entry.source.enabled);
    let last_success = recent
        .iter()
        .find(|s| s.status == SessionStatus::Succeeded)
        .and_then(|s| s.ended_at);
    let closed: Vec<&Session> = recent
        .iter()
        .filter(|s| s.status != SessionStatus::Running)
        .collect();
    let overview = json!({
        "id": entry.source.id,
        "protocol": entry.source.protocol,
        "base_url": entry.source.base_url,
        "enabled": entry.source.enabled,
        "schedule": entry.source.schedule,
        "running_session": entry.running_session,
        "running": running.as_ref().filter(|s| s.status == SessionStatus::Running).map(|s| session_brief(s, now)),
        "last_session": last.as_ref().map(|s| session_brief(s, now)),
        "health": health(entry, last.as_ref()),
        "next_run": next_run,
        "last_success": last_success,
        // How many closed sessions `last_success` looked over (none found among them is
        // "no success in the last N", not "never").
        "sessions_looked_at": closed.len(),
        "recent": recent.iter().take(20).map(|s| session_brief(s, now)).collect::<Vec<_>>(),
    });
    Ok((overview, recent))
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

/// A session as lists show it: status, times, duration, mode, trigger, counters and, while
/// it runs, its progress.
fn session_brief(s: &Session, now: DateTime<Utc>) -> Value {
    let c = &s.counters;
    let done = c.harvested + c.unchanged + c.failed;
    let running = s.status == SessionStatus::Running;
    let duration = s.ended_at.unwrap_or(now) - s.started_at;
    json!({
        "id": s.id,
        "source_id": s.source_id,
        "status": s.status.as_str(),
        "scheduled_time": s.scheduled_time,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "duration_seconds": duration.num_milliseconds().max(0) as f64 / 1000.0,
        "mode": if !s.lists_catalog() { "selection" } else if s.since.is_some() { "incremental" } else { "full" },
        "since": s.since,
        "trigger": s.trigger.map(|t| t.as_str()),
        "counters": s.counters,
        "listing_complete": s.listing_complete(),
        "abort_requested": s.abort_requested,
        // `remaining` counts unfinished listing pages beside unfinished resources.
        "progress": running.then(|| json!({
            "done": done,
            "total": c.total,
            "pages_remaining": c.remaining.saturating_sub(c.total.saturating_sub(done)),
        })),
    })
}

async fn source(svc: &Services, id: &str) -> Answer {
    let Some(entry) = svc.store.get_source(id).await? else {
        return not_found(format!("no source {id}"));
    };
    let now = svc.clock.now();
    let (mut overview, sessions) = source_overview(svc, &entry).await?;
    let schedule = entry.source.schedule();
    let mut next_runs = Vec::new();
    let mut t = now;
    while next_runs.len() < 5 && entry.source.enabled {
        let Some(next) = schedule.next_after(t) else {
            break;
        };
        next_runs.push(next);
        t = next;
    }
    overview["options"] = serde_json::to_value(&entry.source.options).expect("options serialize");
    overview["incremental_available"] = entry.source.protocol.lists_incrementally().into();
    overview["next_runs"] = json!(next_runs);
    overview["last_full_listing_at"] = json!(entry.last_full_listing_at);
    overview["sessions"] = Value::Array(sessions.iter().map(|s| session_brief(s, now)).collect());
    Ok(Ok(overview))
}

/// A session's summary, once it closed; one that does not parse is left out, not an error
/// of the page that shows it.
async fn summary_of(
    svc: &Services,
    session: &Session,
) -> Result<Option<SessionSummary>, StoreError> {
    let key = keys::summary_key(&session.source_id, &session.stamp());
    readable(svc, &key).await
}

/// A document, or `None` when there is none or it does not parse (logged).
async fn readable<T: serde::de::DeserializeOwned>(
    svc: &Services,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match documents::get(svc.objects.as_ref(), key).await {
        Err(e) if e.is_permanent() => {
            tracing::warn!(%key, error = %e, "document unreadable");
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

/// A link's address if it is one a page may follow (`http` or `https`); a catalog can write
/// `javascript:` as easily as a URL.
fn followable(href: &str) -> Option<String> {
    let url = url::Url::parse(href.trim()).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_links_are_followable() {
        assert_eq!(
            followable(" https://example.org/a b").as_deref(),
            Some("https://example.org/a%20b")
        );
        assert!(followable("http://example.org").is_some());
        for hostile in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            " javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "//evil.example/x",
            "/relative",
            "",
        ] {
            assert_eq!(followable(hostile), None, "{hostile}");
        }
    }

    /// The dashboard's string tables, by language.
    fn strings() -> BTreeMap<String, BTreeMap<String, String>> {
        let block = DASHBOARD
            .split_once(r#"<script type="application/json" id="strings">"#)
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .expect("the dashboard has its string tables")
            .0;
        serde_json::from_str(block).expect("the string tables are JSON")
    }

    #[test]
    fn every_dashboard_string_is_in_both_languages_and_every_key_used_exists() {
        let tables = strings();
        assert_eq!(
            tables.keys().map(String::as_str).collect::<Vec<_>>(),
            ["en", "fr"]
        );
        let (en, fr) = (&tables["en"], &tables["fr"]);
        let missing_in = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
            a.keys()
                .filter(|k| !b.contains_key(*k))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            missing_in(en, fr),
            Vec::<String>::new(),
            "missing in French"
        );
        assert_eq!(
            missing_in(fr, en),
            Vec::<String>::new(),
            "missing in English"
        );
        for (key, text) in fr {
            assert!(!text.trim().is_empty(), "{key} is empty in French");
        }
        // Keys the script spells out, and those it builds from a value the API gives.
        let script = DASHBOARD.split_once("<script>").unwrap().1;
        let mut used: Vec<String> = Vec::new();
        for opener in [r#"t(""#, r#"data-i18n=""#] {
            for (at, _) in script.match_indices(opener) {
                // `t("` as a call of its own, not the end of `split("`.
                let before = script[..at].chars().next_back().unwrap_or(' ');
                if before.is_alphanumeric() || before == '_' || before == '.' {
                    continue;
                }
                let key = script[at + opener.len()..].split('"').next().unwrap();
                if !key.ends_with('.') {
                    used.push(key.to_string());
                }
            }
        }
        use crate::model::ReasonCode::*;
        let reasons = [
            NotFound,
            HttpError,
            Timeout,
            ConnectError,
            TooLarge,
            ParseError,
            BlockedAddress,
            RetriesExhausted,
            Lost,
            Aborted,
            Throttled,
            StorageError,
        ];
        used.extend(reasons.iter().map(|r| format!("reason.{r}")));
        for status in [
            SessionStatus::Running,
            SessionStatus::Succeeded,
            SessionStatus::PartiallyFailed,
            SessionStatus::Failed,
            SessionStatus::Aborted,
        ] {
            used.push(format!("status.{}", status.as_str()));
        }
        let built = [
            (
                "outcome",
                &[
                    "harvested",
                    "unchanged",
                    "failed",
                    "pending",
                    "restored",
                    "tombstoned",
                    "deleted",
                ][..],
            ),
            ("health", &["ok", "degraded", "failing", "new", "disabled"]),
            (
                "filter",
                &[
                    "all",
                    "harvested",
                    "unchanged",
                    "failed",
                    "tombstoned",
                    "deleted",
                    "pending",
                    "restored",
                ],
            ),
            ("sort", &["id", "failures", "last_attempt", "title"]),
            (
                "trigger",
                &["schedule", "manual", "deploy", "selection", "unknown"],
            ),
            (
                "tile",
                &["sources", "ok", "degraded", "failing", "new", "running"],
            ),
            ("record", &["created", "modified", "published"]),
        ];
        for (prefix, values) in built {
            used.extend(values.iter().map(|v| format!("{prefix}.{v}")));
        }
        assert!(
            used.len() > 150,
            "the scan found the script's keys: {}",
            used.len()
        );
        let unknown: Vec<&String> = used.iter().filter(|k| !en.contains_key(*k)).collect();
        assert!(unknown.is_empty(), "keys used but in no table: {unknown:?}");
    }

    #[test]
    fn the_dashboards_policy_allows_exactly_its_own_script() {
        let policy = DASHBOARD_POLICY.as_str();
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe-eval"));
        assert_eq!(DASHBOARD.matches("<script>").count(), 1);
    }
}

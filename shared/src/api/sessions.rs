//! Sessions: the recent ones across sources, one with its summary and stale report, its
//! resources' outcomes (filtered, paged), its summary document and its logs.

use super::{
    bad_request, limit_of, not_found, number_of, readable, session_brief, summary_of, Answer,
    ApiResponse,
};
use crate::documents::{ResourceLog, StaleReport};
use crate::keys;
use crate::model::{Outcome, Reason, Session};
use crate::pipeline::Services;
use crate::ports::StoreError;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Sessions across every source, newest first: `limit` of them (default 25), `before` a
/// session id (the last of the previous page) to page on.
pub(super) async fn recent(svc: &Services, query: &HashMap<String, String>) -> Answer {
    let limit = match limit_of(query, 25) {
        Ok(l) => l,
        Err(e) => return Ok(Err(e)),
    };
    let before = match query.get("before").filter(|b| !b.is_empty()) {
        None => None,
        Some(id) => match svc.store.get_session(id).await? {
            Some(s) => Some((s.started_at, s.id)),
            None => return bad_request(format!("before names no session: {id:?}")),
        },
    };
    let older = |s: &Session| {
        before
            .as_ref()
            .is_none_or(|(at, id)| (s.started_at, &s.id) < (*at, id))
    };
    let mut found: Vec<Session> = Vec::new();
    for entry in svc.store.list_sources().await? {
        let prefix = keys::sessions_prefix(&entry.source.id);
        let mut stamps: Vec<String> = svc
            .objects
            .folders(&prefix)
            .await?
            .into_iter()
            .filter_map(|f| Some(f.strip_prefix(&prefix)?.trim_end_matches('/').to_string()))
            .collect();
        stamps.sort_unstable_by(|a, b| b.cmp(a));
        // Newest stamp first: a source contributes at most `limit` sessions to a page.
        let mut taken = 0;
        for stamp in stamps {
            if taken == limit {
                break;
            }
            let id = format!("{}@{stamp}", entry.source.id);
            if let Some(session) = svc.store.get_session(&id).await? {
                if older(&session) {
                    found.push(session);
                    taken += 1;
                }
            }
        }
    }
    found.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    let more = found.len() > limit;
    found.truncate(limit);
    let now = svc.clock.now();
    Ok(Ok(json!({
        "sessions": found.iter().map(|s| session_brief(s, now)).collect::<Vec<_>>(),
        "next_before": more.then(|| found.last().map(|s| s.id.clone())).flatten(),
    })))
}

/// A session: its brief, listing integrity, reason counts, summary, stale report, the
/// source's deletion rules it ran under, and the first outcomes (as `outcomes` pages them).
pub(super) async fn one(svc: &Services, id: &str, query: &HashMap<String, String>) -> Answer {
    let Some(session) = svc.store.get_session(id).await? else {
        return not_found(format!("no session {id}"));
    };
    let summary = summary_of(svc, &session).await?;
    let stale: Option<StaleReport> = readable(
        svc,
        &keys::stale_report_key(&session.source_id, &session.stamp()),
    )
    .await?;
    let rows = outcome_rows(svc, &session).await?;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        if let Some(reason) = &r.reason {
            *reasons.entry(reason.code.as_str().to_string()).or_default() += 1;
        }
    }
    // Resource histories keep the last 30 sessions; an older session's reasons are in its
    // summary only.
    if let Some(summary) = summary.as_ref().filter(|s| !s.reasons.is_empty()) {
        reasons = summary.reasons.clone();
    }
    let options = svc
        .store
        .get_source(&session.source_id)
        .await?
        .map(|e| e.source.options);
    let after = query.get("after").cloned();
    let first: Vec<&OutcomeRow> = rows
        .iter()
        .filter(|r| after.as_ref().is_none_or(|a| r.resource_id > *a))
        .take(super::PAGE_LIMIT + 1)
        .collect();
    let next =
        (first.len() > super::PAGE_LIMIT).then(|| first[super::PAGE_LIMIT - 1].resource_id.clone());
    Ok(Ok(json!({
        "session": session,
        "brief": session_brief(&session, svc.clock.now()),
        "listing_problems": session.listing_problems(),
        "reasons": reasons,
        "outcomes": first.iter().take(super::PAGE_LIMIT).map(|r| r.to_json()).collect::<Vec<_>>(),
        "outcomes_next_after": next,
        "summary": summary,
        "stale": stale,
        "stale_after_listings": options.as_ref().map(|o| o.stale_after_listings),
        "max_shrink_percent": options.as_ref().map(|o| o.max_shrink_percent),
    })))
}

/// What one resource came to in a session.
struct OutcomeRow {
    resource_id: String,
    /// `None` while the resource is still owed (a running session).
    outcome: Option<Outcome>,
    reason: Option<Reason>,
    at: Option<DateTime<Utc>>,
    restored: bool,
}

impl OutcomeRow {
    fn to_json(&self) -> Value {
        json!({
            "resource_id": self.resource_id,
            "outcome": self.outcome.map(|o| o.as_str()).unwrap_or("pending"),
            "reason": self.reason,
            "at": self.at,
            "restored": self.restored,
        })
    }

    fn kind(&self) -> &'static str {
        self.outcome.map(|o| o.as_str()).unwrap_or("pending")
    }
}

/// Every resource's outcome in a session, in id order: its markers where the state store
/// keeps them (DynamoDB, for their TTL; the embedded run while it runs), else the resources'
/// histories, which remember their last 30 sessions.
async fn outcome_rows(svc: &Services, session: &Session) -> Result<Vec<OutcomeRow>, StoreError> {
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let (markers, more) = svc.store.session_markers(&session.id, after).await?;
        rows.extend(markers.into_iter().map(|m| OutcomeRow {
            resource_id: m.resource_id,
            outcome: m.outcome,
            reason: m.reason,
            at: None,
            restored: m.restored,
        }));
        match more {
            Some(m) => after = Some(m),
            None => break,
        }
    }
    if !rows.is_empty() {
        return Ok(rows);
    }
    let mut cursor = None;
    loop {
        let (states, more) = svc.store.list_resources(&session.source_id, cursor).await?;
        for state in states {
            if let Some(h) = state.history.iter().find(|h| h.session_id == session.id) {
                rows.push(OutcomeRow {
                    resource_id: state.resource_id.clone(),
                    outcome: Some(h.outcome),
                    reason: h.reason.clone(),
                    at: Some(h.at),
                    restored: h.restored,
                });
            }
        }
        match more {
            Some(m) => cursor = Some(m),
            None => break,
        }
    }
    Ok(rows)
}

/// A session's outcomes: `outcome` (harvested, unchanged, failed, pending, restored), `q` (a
/// substring of the id or the reason), paged by `offset` and `limit`; with counts per
/// outcome.
pub(super) async fn outcomes(svc: &Services, id: &str, query: &HashMap<String, String>) -> Answer {
    let Some(session) = svc.store.get_session(id).await? else {
        return not_found(format!("no session {id}"));
    };
    let wanted = query
        .get("outcome")
        .map(String::as_str)
        .filter(|o| !o.is_empty() && *o != "all");
    if let Some(w) = wanted {
        if !["harvested", "unchanged", "failed", "pending", "restored"].contains(&w) {
            return bad_request(format!(
                "outcome must be harvested, unchanged, failed, pending or restored, not {w:?}"
            ));
        }
    }
    let (limit, offset) = match (limit_of(query, 100), number_of(query, "offset", 0)) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    let needle = query
        .get("q")
        .map(|q| q.to_lowercase())
        .filter(|q| !q.is_empty());
    let rows = outcome_rows(svc, &session).await?;
    let mut counts: BTreeMap<&str, u64> = [
        "all",
        "harvested",
        "unchanged",
        "failed",
        "pending",
        "restored",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect();
    let mut kept = Vec::new();
    for r in &rows {
        let searched = needle.as_ref().is_none_or(|n| {
            r.resource_id.to_lowercase().contains(n)
                || r.reason.as_ref().is_some_and(|x| {
                    x.detail.to_lowercase().contains(n) || x.code.as_str().to_lowercase() == *n
                })
        });
        if !searched {
            continue;
        }
        *counts.entry("all").or_default() += 1;
        *counts.entry(r.kind()).or_default() += 1;
        if r.restored {
            *counts.entry("restored").or_default() += 1;
        }
        let keep = match wanted {
            None => true,
            Some("restored") => r.restored,
            Some(w) => r.kind() == w,
        };
        if keep {
            kept.push(r);
        }
    }
    let total = kept.len();
    let page: Vec<Value> = kept
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| r.to_json())
        .collect();
    let more = offset + page.len() < total;
    Ok(Ok(json!({
        "session_id": id,
        "source_id": session.source_id,
        "total": total,
        "offset": offset,
        "limit": limit,
        "counts": counts,
        "outcomes": page,
        "next_offset": more.then_some(offset + page.len()),
    })))
}

/// The session's summary document as written when it closed.
pub(super) async fn summary(svc: &Services, id: &str) -> Answer {
    let Some(session) = svc.store.get_session(id).await? else {
        return not_found(format!("no session {id}"));
    };
    match summary_of(svc, &session).await? {
        Some(summary) => Ok(Ok(
            serde_json::to_value(summary).expect("summaries serialize")
        )),
        None => not_found(format!("session {id} has no summary (yet)")),
    }
}

/// The session's logs, one batch log (`part`, from 0) at a time: a line per resource attempt
/// with its requests. The parts are the objects under the session's log folder.
pub(super) async fn logs(svc: &Services, id: &str, query: &HashMap<String, String>) -> Answer {
    let Some(session) = svc.store.get_session(id).await? else {
        return not_found(format!("no session {id}"));
    };
    let part = match number_of(query, "part", 0) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let folder = format!("logs/{}/{}/", session.source_id, session.stamp());
    let parts = match svc.objects.files(&folder).await {
        Ok(parts) => parts,
        Err(e) if e.is_permanent() => {
            return Ok(Err(ApiResponse::error(501, e.message)));
        }
        Err(e) => return Err(e),
    };
    let lines: Vec<ResourceLog> = match parts.get(part) {
        Some(key) => svc
            .objects
            .get(key)
            .await?
            .map(|body| {
                body.split(|b| *b == b'\n')
                    .filter_map(|line| serde_json::from_slice(line).ok())
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(Ok(json!({
        "session_id": id,
        "parts": parts.len(),
        "part": part,
        "next_part": (part + 1 < parts.len()).then_some(part + 1),
        "lines": lines,
    })))
}

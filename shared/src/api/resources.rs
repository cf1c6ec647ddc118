//! A source's resources: listed (filtered, searched, sorted, paged), one with its latest
//! log, its normalized record and its raw response, and the reasons they fail for.

use super::{
    bad_request, followable, limit_of, not_found, number_of, Answer, ApiResponse, PAGE_LIMIT,
};
use crate::documents::ResourceLog;
use crate::model::{Outcome, Record, ResourceState};
use crate::pipeline::Services;
use crate::ports::StoreError;
use futures::future::join_all;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Which resources a `status` filter keeps: a last outcome (of live resources), the
/// tombstoned (live, missing from recent complete listings) or the deleted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    All,
    Outcome(Outcome),
    Tombstoned,
    Deleted,
}

impl Filter {
    fn parse(s: Option<&str>) -> Option<Filter> {
        Some(match s {
            None | Some("") | Some("all") => Filter::All,
            Some("tombstoned") => Filter::Tombstoned,
            Some("deleted") => Filter::Deleted,
            Some(other) => Filter::Outcome(Outcome::parse(other)?),
        })
    }

    fn keeps(self, state: &ResourceState) -> bool {
        match self {
            Filter::All => true,
            Filter::Outcome(o) => state.is_live() && state.last_outcome == o,
            Filter::Tombstoned => state.is_live() && state.missing_listings > 0,
            Filter::Deleted => !state.is_live(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Id,
    /// Failed first (the longest failing first), then the rest by id.
    Failures,
    /// The most recent attempt first.
    LastAttempt,
    Title,
}

impl Sort {
    fn parse(s: Option<&str>) -> Option<Sort> {
        Some(match s {
            None | Some("") | Some("id") => Sort::Id,
            Some("failures") => Sort::Failures,
            Some("last_attempt") => Sort::LastAttempt,
            Some("title") => Sort::Title,
            Some(_) => return None,
        })
    }
}

/// A source's resources: `status` (harvested, unchanged, failed, tombstoned, deleted), `q`
/// (a case-insensitive substring of the id, the title or the failure's text), `sort` (id,
/// failures, last_attempt, title), paged by `offset` and `limit`, or by `after` (the last id
/// of a page, in id order). Each row on the page carries its record's landing link.
pub(super) async fn list(
    svc: &Services,
    source_id: &str,
    query: &HashMap<String, String>,
) -> Answer {
    let Some(entry) = svc.store.get_source(source_id).await? else {
        return not_found(format!("no source {source_id}"));
    };
    let Some(filter) = Filter::parse(query.get("status").map(String::as_str)) else {
        return bad_request(format!(
            "status must be harvested, unchanged, failed, tombstoned or deleted, not {:?}",
            query["status"]
        ));
    };
    let Some(sort) = Sort::parse(query.get("sort").map(String::as_str)) else {
        return bad_request(format!(
            "sort must be id, failures, last_attempt or title, not {:?}",
            query["sort"]
        ));
    };
    let (limit, offset) = match (limit_of(query, PAGE_LIMIT), number_of(query, "offset", 0)) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    let needle = query
        .get("q")
        .map(|q| q.to_lowercase())
        .filter(|q| !q.is_empty());
    let after = query.get("after").filter(|a| !a.is_empty()).cloned();

    // Every state is read once; only what sorting and counting need is kept of each.
    let mut counts: BTreeMap<&str, u64> = [
        "all",
        "harvested",
        "unchanged",
        "failed",
        "tombstoned",
        "deleted",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect();
    let mut found: Vec<ResourceState> = Vec::new();
    let mut cursor = None;
    loop {
        let (states, more) = svc.store.list_resources(source_id, cursor).await?;
        for mut state in states {
            if !searched(&state, needle.as_deref()) {
                continue;
            }
            *counts.entry("all").or_default() += 1;
            for f in ["harvested", "unchanged", "failed", "tombstoned", "deleted"] {
                if Filter::parse(Some(f)).expect("known").keeps(&state) {
                    *counts.entry(f).or_default() += 1;
                }
            }
            if filter.keeps(&state) && after.as_ref().is_none_or(|a| state.resource_id > *a) {
                // History beyond the last ten is not shown in a list.
                let keep = state.history.len().saturating_sub(10);
                state.history.drain(..keep);
                found.push(state);
            }
        }
        match more {
            Some(m) => cursor = Some(m),
            None => break,
        }
    }
    match sort {
        Sort::Id => {}
        Sort::Failures => found.sort_by(|a, b| {
            let failing = |s: &ResourceState| s.last_outcome != Outcome::Failed;
            failing(a)
                .cmp(&failing(b))
                .then(a.last_harvested_at.cmp(&b.last_harvested_at))
                .then(a.resource_id.cmp(&b.resource_id))
        }),
        Sort::LastAttempt => found.sort_by(|a, b| {
            b.last_attempt_at
                .cmp(&a.last_attempt_at)
                .then(a.resource_id.cmp(&b.resource_id))
        }),
        Sort::Title => found.sort_by(|a, b| {
            let title =
                |s: &ResourceState| s.title.as_deref().unwrap_or(&s.resource_id).to_lowercase();
            title(a)
                .cmp(&title(b))
                .then(a.resource_id.cmp(&b.resource_id))
        }),
    }
    let total = found.len();
    let page: Vec<ResourceState> = found.into_iter().skip(offset).take(limit).collect();
    let more = offset + page.len() < total;
    let records = join_all(page.iter().map(|s| record_of(svc, s))).await;
    let mut rows = Vec::with_capacity(page.len());
    for (state, record) in page.iter().zip(records) {
        rows.push(row(state, record?.as_ref()));
    }
    Ok(Ok(json!({
        "source_id": source_id,
        "stale_after_listings": entry.source.options.stale_after_listings,
        "total": total,
        "offset": offset,
        "limit": limit,
        "counts": counts,
        "resources": rows,
        "next_offset": more.then_some(offset + page.len()),
        "next_after": (more && sort == Sort::Id).then(|| page.last().map(|s| s.resource_id.clone())).flatten(),
    })))
}

fn searched(state: &ResourceState, needle: Option<&str>) -> bool {
    let Some(n) = needle else {
        return true;
    };
    let has = |s: &str| s.to_lowercase().contains(n);
    has(&state.resource_id)
        || state.title.as_deref().is_some_and(has)
        || state
            .last_reason
            .as_ref()
            .is_some_and(|r| has(&r.detail) || has(r.code.as_str()))
}

/// One row of a resource list.
fn row(state: &ResourceState, record: Option<&Record>) -> Value {
    json!({
        "id": state.resource_id,
        "title": state.title,
        "language": record.and_then(|r| r.language.clone()),
        "titles": record.map(|r| r.translations.iter()
            .filter_map(|(lang, t)| Some((lang.clone(), t.title.clone()?)))
            .collect::<BTreeMap<_, _>>()),
        "status": state.last_outcome,
        "reason": state.last_reason,
        "last_session": state.last_session,
        "last_attempt_at": state.last_attempt_at,
        "last_harvested_at": state.last_harvested_at,
        "missing_listings": state.missing_listings,
        "deleted_at": state.deleted_at,
        "landing": record.and_then(landing),
        "history": state.history.iter().map(|h| json!({
            "session_id": h.session_id, "outcome": h.outcome, "at": h.at, "restored": h.restored,
        })).collect::<Vec<_>>(),
    })
}

/// The dataset's page on the remote server: its `landing` link, else its `info` link, when
/// either is http(s).
fn landing(record: &Record) -> Option<String> {
    ["landing", "info"].iter().find_map(|rel| {
        record
            .links
            .iter()
            .filter(|l| l.rel == *rel)
            .find_map(|l| followable(&l.href))
    })
}

/// The record a state names, if it names one that reads; one that does not parse is left
/// out of a list rather than failing it.
async fn record_of(svc: &Services, state: &ResourceState) -> Result<Option<Record>, StoreError> {
    let Some(key) = &state.record_key else {
        return Ok(None);
    };
    super::readable(svc, key).await
}

/// A resource's state, its latest log and its record's landing link.
pub(super) async fn one(svc: &Services, source_id: &str, id: &str) -> Answer {
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
    let options = svc
        .store
        .get_source(source_id)
        .await?
        .map(|e| e.source.options);
    let record = record_of(svc, &state).await?;
    Ok(Ok(json!({
        "state": state,
        "latest_log": log,
        "stale_after_listings": options.as_ref().map(|o| o.stale_after_listings),
        // How the source keeps raw responses now (`none`: the view says none is kept).
        "raw_storage": options.as_ref().map(|o| o.raw.as_str()),
        "landing": record.as_ref().and_then(landing),
        "has_record": record.is_some(),
        "has_raw": state.raw_key.is_some(),
    })))
}

/// The normalized record the resource's state names (under `deleted/` once deleted, when its
/// source moves deleted records aside), with its links that may be followed marked.
pub(super) async fn record(svc: &Services, source_id: &str, id: &str) -> Answer {
    let Some(state) = svc.store.get_resource(source_id, id).await? else {
        return not_found(format!("no resource {id} in source {source_id}"));
    };
    let Some(key) = &state.record_key else {
        return not_found(format!("resource {id} has no record yet"));
    };
    let Some(record) = super::readable::<Record>(svc, key).await? else {
        return not_found(format!("the record of {id} is gone or unreadable"));
    };
    let followable: Vec<Option<String>> =
        record.links.iter().map(|l| followable(&l.href)).collect();
    Ok(Ok(json!({
        "source_id": source_id,
        "resource_id": id,
        "key": key,
        "deleted": crate::keys::is_deleted_key(key),
        "record": record,
        // Per link, its address if a page may follow it (http or https), else null.
        "followable": followable,
    })))
}

/// The raw response the resource's state names (a whole object, or its range of a batch's
/// object), as plain text whatever it holds: an HTML page a server sent must not be rendered
/// as a page of this origin.
pub(super) async fn raw(svc: &Services, source_id: &str, id: &str) -> ApiResponse {
    let found = async {
        let Some(state) = svc.store.get_resource(source_id, id).await? else {
            return Ok(None);
        };
        crate::pipeline::raw::read(svc, &state).await
    };
    match found.await {
        Ok(Some(body)) => ApiResponse::new(200, "text/plain; charset=utf-8", body.to_vec()),
        Ok(None) => ApiResponse::error(404, format!("no raw response of {id} in {source_id}")),
        Err(e) => ApiResponse::error(503, format!("storage unavailable: {e}")),
    }
}

/// Why a source's resources fail now: its live failed resources by reason code, most common
/// first, each with an example.
pub(super) async fn source_reasons(svc: &Services, source_id: &str) -> Answer {
    if svc.store.get_source(source_id).await?.is_none() {
        return not_found(format!("no source {source_id}"));
    }
    let mut by_code: BTreeMap<String, (u64, Value)> = BTreeMap::new();
    let mut failing = 0;
    let mut cursor = None;
    loop {
        let (states, more) = svc.store.list_resources(source_id, cursor).await?;
        for state in states {
            if !state.is_live() || state.last_outcome != Outcome::Failed {
                continue;
            }
            failing += 1;
            let Some(reason) = &state.last_reason else {
                continue;
            };
            let entry = by_code
                .entry(reason.code.as_str().to_string())
                .or_insert_with(|| {
                    (
                        0,
                        json!({"resource_id": state.resource_id, "detail": reason.detail}),
                    )
                });
            entry.0 += 1;
        }
        match more {
            Some(m) => cursor = Some(m),
            None => break,
        }
    }
    let mut reasons: Vec<(String, (u64, Value))> = by_code.into_iter().collect();
    reasons.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    Ok(Ok(json!({
        "source_id": source_id,
        "failing": failing,
        "reasons": reasons.into_iter().map(|(code, (count, example))| json!({
            "code": code, "count": count, "example": example,
        })).collect::<Vec<_>>(),
    })))
}

/// A source's deletions held for an operator (`on_stale: hold`).
pub(super) async fn held_deletions(svc: &Services, source_id: &str) -> Answer {
    if svc.store.get_source(source_id).await?.is_none() {
        return not_found(format!("no source {source_id}"));
    }
    let held = crate::pipeline::deletions::held(svc, source_id).await?;
    let pending: Vec<Value> = held
        .iter()
        .map(|s| {
            json!({
                "resource_id": s.resource_id,
                "title": s.title,
                "held_at": s.deletion_held_at,
                "missing_listings": s.missing_listings,
                "last_harvested_at": s.last_harvested_at,
            })
        })
        .collect();
    Ok(Ok(
        json!({"source_id": source_id, "count": pending.len(), "pending": pending}),
    ))
}

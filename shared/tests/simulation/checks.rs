//! The invariants every history must keep, checked against what the stores hold at its end
//! (read past the fault wrappers) and what the world recorded on the way.

use super::history::{Ctx, Report};
use std::collections::{BTreeMap, BTreeSet};
use trawl::messages::WorkMessage;
use trawl::model::{Outcome, RawStorage, Record, Session, SessionStatus};
use trawl::ports::{Marker, ObjectStore};
use trawl::ports::{ResourceStates, SessionLedger, SourceRegistry};

pub async fn check(ctx: &Ctx, report: &mut Report) {
    let store = ctx.inner.as_ref();
    let mut violation = |v: String| report.violations.push(v);
    let listings = snapshot(&ctx.store.listings);
    let closes = snapshot(&ctx.store.closes);

    let mut sessions: Vec<Session> = Vec::new();
    for id in listings.keys() {
        match store.get_session(id).await {
            Ok(Some(s)) => sessions.push(s),
            _ => violation(format!("{id}: created but not found")),
        }
    }
    sessions.sort_by_key(|s| s.scheduled_time);
    report.sessions = sessions.len() as u64;

    // Markers of every session: resource id → marker.
    let mut markers: BTreeMap<String, BTreeMap<String, Marker>> = BTreeMap::new();
    for s in &sessions {
        let mut all = BTreeMap::new();
        let mut after = None;
        loop {
            let (page, next) = store.session_markers(&s.id, after).await.expect("markers");
            for m in page {
                all.insert(m.resource_id.clone(), m);
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        markers.insert(s.id.clone(), all);
    }

    // Which resources had a message, and which sessions had a listing message die.
    let mut sent = std::collections::HashSet::new();
    for body in ctx.queue.sent() {
        if let Ok(WorkMessage::Resource {
            session_id,
            resource_id,
            ..
        }) = serde_json::from_str::<WorkMessage>(&body)
        {
            sent.insert((session_id, resource_id));
        }
    }
    let listing_died: std::collections::HashSet<String> = ctx
        .queue
        .dlq()
        .iter()
        .filter_map(|m| match serde_json::from_str::<WorkMessage>(&m.body) {
            Ok(WorkMessage::ListPage { session_id, .. }) => Some(session_id),
            _ => None,
        })
        .collect();
    // A session's alerts come from the call that closed it: never twice (however often its
    // stream record is redelivered), and a failure alert only for a failed session.
    let mut alerted: BTreeMap<(String, &'static str), u32> = BTreeMap::new();
    for a in ctx.alerts.published() {
        if let Some(session) = &a.session_id {
            if a.kind != trawl::model::alert::AlertKind::NoSuccess {
                *alerted
                    .entry((session.clone(), a.kind.as_str()))
                    .or_default() += 1;
            }
        }
    }
    for ((session, kind), n) in &alerted {
        if *n > 1 {
            violation(format!("{session}: alert {kind} published {n} times"));
        }
        let failed = sessions
            .iter()
            .any(|s| &s.id == session && s.status == SessionStatus::Failed);
        if matches!(*kind, "session_failed" | "failing_in_a_row") && !failed {
            violation(format!(
                "{session}: alert {kind} for a session that did not fail"
            ));
        }
    }
    for s in &sessions {
        let c = &s.counters;
        let mine = &markers[&s.id];
        report.resources_counted += c.harvested + c.unchanged + c.failed;
        // Each session closes exactly once.
        if s.status == SessionStatus::Running {
            violation(format!("{}: still running at the end: {c:?}", s.id));
        }
        let closed = closes.get(&s.id).copied().unwrap_or(0);
        if closed != 1 {
            violation(format!("{}: closed {closed} times", s.id));
        }
        // Its counters add up to the distinct resources its listing found.
        if c.total != mine.len() as u64
            || c.harvested + c.unchanged + c.failed != c.total
            || c.remaining != 0
        {
            violation(format!(
                "{}: counters do not add up to its {} markers: {c:?}",
                s.id,
                mine.len()
            ));
        }
        let by = |o: Outcome| mine.values().filter(|m| m.outcome == Some(o)).count() as u64;
        if (
            by(Outcome::Harvested),
            by(Outcome::Unchanged),
            by(Outcome::Failed),
        ) != (c.harvested, c.unchanged, c.failed)
        {
            violation(format!(
                "{}: marker outcomes disagree with the counters {c:?}",
                s.id
            ));
        }
        // Each listed resource has exactly one outcome for the session, matching its marker.
        for m in mine.values() {
            let Some(outcome) = m.outcome else {
                violation(format!("{}: {} still pending", s.id, m.resource_id));
                continue;
            };
            match store.get_resource(&s.source_id, &m.resource_id).await {
                Ok(Some(state)) => {
                    let entries: Vec<_> = state
                        .history
                        .iter()
                        .filter(|h| h.session_id == s.id)
                        .collect();
                    if entries.len() != 1 || entries[0].outcome != outcome {
                        violation(format!(
                            "{}: {} has {} history entries for it ({:?}), marker says {outcome:?}",
                            s.id,
                            m.resource_id,
                            entries.len(),
                            entries.iter().map(|e| e.outcome).collect::<Vec<_>>()
                        ));
                    }
                }
                _ => violation(format!(
                    "{}: {} counted but has no state",
                    s.id, m.resource_id
                )),
            }
        }
        // A resource counted LOST had a message that was lost (or its session's listing
        // message died): work the pipeline forgot to send (a page's later chunk, a next page)
        // is only healed by the deadline, and must not happen.
        for m in mine.values() {
            if m.outcome != Some(Outcome::Failed)
                || sent.contains(&(s.id.clone(), m.resource_id.clone()))
            {
                continue;
            }
            let lost = match store.get_resource(&s.source_id, &m.resource_id).await {
                Ok(Some(state)) => state.history.iter().any(|h| {
                    h.session_id == s.id
                        && h.reason
                            .as_ref()
                            .is_some_and(|r| r.code == trawl::model::ReasonCode::Lost)
                }),
                _ => false,
            };
            if lost && !listing_died.contains(&s.id) {
                violation(format!(
                    "{}: {} was counted LOST but never had a message",
                    s.id, m.resource_id
                ));
            }
        }
        // A selection counts exactly the ids it named (those its source selects), unless it
        // was aborted, and deletes nothing.
        if !s.lists_catalog() {
            let key = trawl::keys::selection_key(&s.source_id, &s.stamp());
            let named: Option<trawl::documents::SelectionDocument> =
                trawl::documents::get(ctx.objects.as_ref(), &key)
                    .await
                    .ok()
                    .flatten();
            let selects = store
                .get_source(&s.source_id)
                .await
                .ok()
                .flatten()
                .map(|e| e.source.options);
            match (named, selects) {
                (Some(named), Some(options)) if !s.abort_requested => {
                    let wanted: std::collections::BTreeSet<&String> = named
                        .resource_ids
                        .iter()
                        .filter(|id| options.selects(id))
                        .collect();
                    let counted: std::collections::BTreeSet<&String> = mine.keys().collect();
                    if wanted != counted {
                        violation(format!(
                            "{}: a selection of {wanted:?} counted {counted:?}",
                            s.id
                        ));
                    }
                }
                (None, _) => violation(format!("{}: a selection without its {key}", s.id)),
                _ => {}
            }
            if let Ok(Some(stale)) = trawl::pipeline::stale::stored_report(&ctx.svc, s).await {
                if !stale.tombstoned.is_empty()
                    || stale.deleted.len() > stale.deleted_upstream.len()
                {
                    violation(format!(
                        "{}: a selection tombstoned {:?} and deleted {:?}",
                        s.id, stale.tombstoned, stale.deleted
                    ));
                }
            }
        }
        // The summary was written.
        let summary = trawl::keys::summary_key(&s.source_id, &s.stamp());
        if s.status != SessionStatus::Running
            && ctx.objects.get(&summary).await.ok().flatten().is_none()
        {
            violation(format!("{}: no summary at {summary}", s.id));
        }
        // Every harvested resource is one change, counted once: added, changed or restored.
        if s.status != SessionStatus::Running {
            let written: Option<trawl::documents::SessionSummary> =
                trawl::documents::get(ctx.objects.as_ref(), &summary)
                    .await
                    .ok()
                    .flatten();
            if let Some(c) = written.map(|w| w.changes) {
                let counted = c.added.count + c.changed.count + c.restored.count;
                if counted != s.counters.harvested {
                    violation(format!(
                        "{}: changes count {counted} (added {}, changed {}, restored {}) for {} harvested",
                        s.id, c.added.count, c.changed.count, c.restored.count, s.counters.harvested
                    ));
                }
            }
        }
        // A listing that missed a resource is marked incomplete.
        let source = store
            .get_source(&s.source_id)
            .await
            .ok()
            .flatten()
            .map(|e| e.source);
        let host = ctx
            .sources
            .iter()
            .find(|(id, _)| *id == s.source_id)
            .map(|(_, h)| h.clone())
            .unwrap_or_default();
        if let (Some(source), Some((from, to))) = (source, listings.get(&s.id)) {
            if complete_full_listing(s) {
                let sites = ctx.remote.lock();
                if let Some(site) = sites.get(&host) {
                    let ids: BTreeSet<&String> = site.changes.iter().map(|(_, id, _)| id).collect();
                    for id in ids {
                        if source.options.selects(id)
                            && site.present_throughout(id, *from, *to)
                            && !mine.contains_key(id)
                        {
                            violation(format!(
                                "{}: {id} was in the catalog for the whole listing, was not listed, \
                                 and the listing counts as complete",
                                s.id
                            ));
                        }
                    }
                }
            }
        }
    }

    // No resource is deleted unless it was missing from `stale_after_listings` consecutive
    // complete listings.
    for (source_id, _) in &ctx.sources {
        let Ok(Some(entry)) = store.get_source(source_id).await else {
            continue;
        };
        if let Some(running) = &entry.running_session {
            violation(format!("{source_id}: still held by {running} at the end"));
        }
        let n = entry.source.options.stale_after_listings as usize;
        let mine: Vec<&Session> = sessions
            .iter()
            .filter(|s| &s.source_id == source_id)
            .collect();
        for s in &mine {
            let Ok(Some(stale)) = trawl::pipeline::stale::stored_report(&ctx.svc, s).await else {
                continue;
            };
            if s.status == SessionStatus::Aborted
                && !(stale.deleted.is_empty() && stale.tombstoned.is_empty())
            {
                violation(format!(
                    "{}: closed aborted after its stale check deleted {:?} and tombstoned {:?}",
                    s.id, stale.deleted, stale.tombstoned
                ));
            }
            if entry.source.options.on_stale == trawl::model::StaleAction::Hold
                && !stale.deleted.is_empty()
            {
                violation(format!(
                    "{}: deleted {:?} although its source holds deletions for an operator",
                    s.id, stale.deleted
                ));
            }
            for deleted in stale.deleted.iter().chain(&stale.held) {
                let complete: Vec<&&Session> = mine
                    .iter()
                    .filter(|o| o.scheduled_time <= s.scheduled_time && complete_full_listing(o))
                    .collect();
                let last: Vec<&&&Session> = complete.iter().rev().take(n).collect();
                let missing_from_all =
                    last.len() == n && last.iter().all(|o| !markers[&o.id].contains_key(deleted));
                if !missing_from_all {
                    violation(format!(
                        "{}: deleted (or held) {deleted}, which was not missing from the last {n} complete listings",
                        s.id
                    ));
                }
            }
        }
    }

    // Politeness limits hold at the server, in virtual time.
    for (source_id, host) in &ctx.sources {
        let Ok(Some(entry)) = store.get_source(source_id).await else {
            continue;
        };
        let sites = ctx.remote.lock();
        let Some(site) = sites.get(host) else {
            continue;
        };
        if let Some(max) = entry.source.options.max_in_flight {
            if site.most_in_flight > max {
                violation(format!(
                    "{source_id}: {} requests in flight at once, the limit is {max}",
                    site.most_in_flight
                ));
            }
        }
        if let (Some(rps), Some(gap)) =
            (entry.source.options.requests_per_second, site.shortest_gap)
        {
            if gap < std::time::Duration::from_secs(1) / rps {
                violation(format!(
                    "{source_id}: two requests {gap:?} apart, the limit is {rps} per second"
                ));
            }
        }
    }

    // Every record object is named by a live state and holds the content its hash names.
    let mut named = BTreeSet::new();
    for (source_id, _) in &ctx.sources {
        let mut after = None;
        loop {
            let (page, next) = store
                .list_resources(source_id, after)
                .await
                .expect("resources");
            for state in page {
                if !state.is_live() {
                    continue;
                }
                if let (Some(key), Some(hash)) = (&state.record_key, &state.content_hash) {
                    named.insert(key.clone());
                    let body = ctx.objects.get(key).await.ok().flatten();
                    let record: Option<Record> = body.and_then(|b| serde_json::from_slice(&b).ok());
                    match record {
                        None => violation(format!(
                            "{source_id}/{}: its record {key} is missing",
                            state.resource_id
                        )),
                        Some(r) if &r.content_hash() != hash => violation(format!(
                            "{source_id}/{}: {key} holds other content than its hash names",
                            state.resource_id
                        )),
                        Some(_) => {}
                    }
                }
                // Its raw response reads back whole where its state says: a batch's object
                // is written before any state names a range of it.
                if let Some(raw) = state.raw() {
                    let read = match raw.range {
                        Some(r) => ctx.objects.get_range(&raw.key, r.offset, r.length).await,
                        None => ctx.objects.get(&raw.key).await,
                    };
                    if !matches!(read, Ok(Some(_))) {
                        violation(format!(
                            "{source_id}/{}: its raw response {} {:?} does not read: {read:?}",
                            state.resource_id, raw.key, raw.range
                        ));
                    }
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    for key in ctx.objects.keys("records/") {
        if !named.contains(&key) {
            violation(format!("record object {key} is named by no live state"));
        }
    }
    // A source's raw responses are where its `options.raw` puts them, and nowhere else.
    for (source_id, _) in &ctx.sources {
        let Ok(Some(entry)) = store.get_source(source_id).await else {
            continue;
        };
        let misplaced = |key: &String| match entry.source.options.raw {
            RawStorage::Resource => trawl::keys::is_raw_batch_key(key),
            RawStorage::Batch => !trawl::keys::is_raw_batch_key(key),
            RawStorage::None => true,
        };
        for key in ctx.objects.keys(&format!("raw/{source_id}/")) {
            if misplaced(&key) {
                violation(format!(
                    "raw object {key} of {source_id}, whose raw responses are kept {}",
                    entry.source.options.raw.as_str()
                ));
            }
        }
    }

    // Nothing is left uncounted in the DLQ.
    for m in ctx.queue.dlq() {
        match serde_json::from_str::<WorkMessage>(&m.body) {
            Ok(WorkMessage::Resource {
                session_id,
                resource_id,
                ..
            }) => {
                let counted = markers
                    .get(&session_id)
                    .and_then(|all| all.get(&resource_id))
                    .is_some_and(|m| m.outcome.is_some());
                if !counted {
                    violation(format!("{session_id}: {resource_id} is in the DLQ uncounted"));
                }
            }
            Ok(WorkMessage::ListPage {
                session_id, page, ..
            }) => match store.get_page(&session_id, page).await {
                Ok(Some(p)) if p.error.as_deref().is_some_and(|e| e.contains("before the deadline")) => {
                    violation(format!(
                        "{session_id}: listing page {page} died in the DLQ and was only settled by the deadline"
                    ))
                }
                Ok(Some(_)) => {}
                _ => violation(format!(
                    "{session_id}: listing page {page} is in the DLQ and was never committed"
                )),
            },
            Err(e) => violation(format!("unreadable message in the DLQ: {e}")),
        }
    }
}

fn snapshot<T: Clone>(shared: &std::sync::Mutex<T>) -> T {
    shared.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A closed, full (not incremental, not a selection) listing with no integrity problem, not
/// aborted: the kind that may delete.
fn complete_full_listing(s: &Session) -> bool {
    s.status != SessionStatus::Running
        && s.lists_catalog()
        && s.since.is_none()
        && !s.abort_requested
        && s.listing_problems().is_empty()
}

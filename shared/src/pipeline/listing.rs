//! Listing: one page of a source's resources becomes counted, pending work.
//!
//! Order matters for exactly-once accounting. The page's ids are saved first (under a key of
//! their own), then the page is committed in one transaction that adds its resources to the
//! session's `total` and `remaining`; only then are markers written and messages sent. A page
//! redelivered after its commit re-sends exactly the ids that were counted, and the harvester's
//! marker condition makes the second copies no-ops.

use super::Services;
use crate::documents::{self, PageDocument};
use crate::keys;
use crate::messages::{SourceSnapshot, WorkMessage};
use crate::model::ledger::{bound_page, ListingBounds};
use crate::model::{session::split_session_id, Reason, ReasonCode};
use crate::ports::{PageState, StoreError};
use crate::protocols::{Entry, ListingPage, Remote};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashSet;

#[derive(Debug)]
pub enum PageResult {
    Listed {
        resources: u64,
        has_next: bool,
    },
    /// Committed and sent before: nothing was done.
    AlreadyListed,
    /// A transient remote failure; the page should be tried again later.
    Retry(Reason),
}

/// Lists page `page` of `source` for the session, or, when it is committed, delivers what is
/// left of it from `delivered` on. `final_attempt` turns a transient failure into a failed
/// listing (the session then closes as failed) instead of a retry.
pub async fn list_page(
    svc: &Services,
    session_id: &str,
    source: &SourceSnapshot,
    page: u32,
    cursor: Option<String>,
    delivered: u64,
    final_attempt: bool,
) -> Result<PageResult, StoreError> {
    if let Some(existing) = svc.store.get_page(session_id, page).await? {
        if existing.sent {
            return Ok(PageResult::AlreadyListed);
        }
        // A continuation reads only the chunk it delivers.
        let from = delivered as usize;
        let chunk = documents::get_page_ids(
            svc.objects.as_ref(),
            &existing.ids_key,
            from,
            svc.settings.delivery_chunk.max(1),
        )
        .await?
        .ok_or_else(|| {
            StoreError::permanent(format!("page ids {} are missing", existing.ids_key))
        })?;
        let delivery = Delivery {
            session_id,
            source,
            cursor: cursor.as_deref(),
        };
        delivery
            .deliver(
                svc,
                &existing,
                &chunk.ids,
                from.min(chunk.total),
                chunk.total,
            )
            .await?;
        return Ok(PageResult::Listed {
            resources: existing.count,
            has_next: existing.next_cursor.is_some(),
        });
    }

    let session = svc
        .store
        .get_session(session_id)
        .await?
        .ok_or_else(|| StoreError::permanent(format!("no session {session_id} to list for")))?;
    let mut requests = Vec::new();
    // Read just now, so fresher than the per-process abort cache the harvester uses.
    let listed = if session.abort_requested {
        Err(Reason::new(
            ReasonCode::Aborted,
            "the session was aborted by an operator",
        ))
    } else if !session.lists_catalog() {
        Ok(selected_page(svc, session_id, source).await?)
    } else {
        let mut remote = Remote {
            http: &svc.http,
            source,
            requests: &mut requests,
        };
        super::open_catalog(source)?
            .list_page(&mut remote, cursor.as_deref(), session.since)
            .await
    };
    let mut check = PageCheck::default();
    let (ids, next_cursor, error) = match listed {
        Ok(listing) => {
            let entries = Entries::sort(listing.entries);
            if !entries.declared_deleted.is_empty() {
                check.deleted_upstream = super::stale::delete_reported(
                    svc,
                    &session,
                    &entries.declared_deleted,
                    source.options.on_stale,
                )
                .await?;
            }
            check.expected_total = listing.expected_total;
            check.problems = listing
                .problems
                .into_iter()
                .map(|p| format!("page {page}: {p}"))
                .collect();
            let (mut new_ids, mut next_cursor) = check_page(
                svc,
                session_id,
                page,
                cursor.as_deref(),
                entries.live,
                listing.next_cursor,
                &mut check,
            )
            .await?;
            // Deleted entries are in the server's total too.
            check.listed += entries.deleted.len() as u64;
            let bounds = ListingBounds {
                max_pages: source.options.max_pages,
                max_resources: source.options.max_resources,
                deadline: svc.settings.listing_deadline(),
            };
            let bound = bound_page(
                &bounds,
                page,
                session.listing.listed,
                new_ids.len(),
                next_cursor.is_some(),
                svc.clock.now() - session.started_at,
            );
            if let Some(stop) = bound.stop {
                tracing::warn!(session = %session_id, page, problem = %stop, "listing stopped");
                check.listed -= (new_ids.len() - bound.keep) as u64;
                new_ids.truncate(bound.keep);
                check.problems.push(format!("page {page}: {stop}"));
                next_cursor = None;
            }
            let mut ids: Vec<String> = new_ids
                .into_iter()
                .filter(|id| source.options.selects(id))
                .collect();
            // An incremental session retries what its base failed on (unchanged upstream,
            // so outside the window), after the last page so no page mistakes them for
            // duplicates; they are not part of the server's listing or its total.
            if let (None, Some(base)) = (&next_cursor, &session.base_session) {
                let mut retry: Vec<String> = super::incremental::failed_ids(svc, base)
                    .await?
                    .into_iter()
                    .filter(|id| !ids.contains(id) && source.options.selects(id))
                    .collect();
                let before = svc.store.listed_before(session_id, &retry).await?;
                retry.retain(|id| !before.contains(id));
                check.retried = retry.len() as u64;
                ids.extend(retry);
            }
            keep_inline_documents(svc, session_id, source, entries.inline, &ids).await?;
            (ids, next_cursor, None)
        }
        Err(reason) if reason.retryable() && !final_attempt => {
            return Ok(PageResult::Retry(reason));
        }
        // A transient failure here is on the last allowed receive: retries are used up.
        Err(reason) => {
            let reason = reason.exhausted(svc.settings.max_receive_count);
            (Vec::new(), None, Some(format!("page {page}: {reason}")))
        }
    };
    if let Some(error) = &error {
        tracing::error!(session = %session_id, %error, "listing failed");
    }

    let (_, stamp) = split_session_id(session_id).unwrap_or((&source.id, session_id));
    let ids_key = keys::page_attempt_ids_key(&source.id, stamp, page, crate::random::u64());
    let document = PageDocument {
        session_id: session_id.to_string(),
        page,
        cursor: cursor.clone(),
        next_cursor: next_cursor.clone(),
        error: error.clone(),
        expected_total: check.expected_total,
        problems: check.problems.clone(),
        retried_from_base: check.retried,
        deleted_upstream: check.deleted_upstream.clone(),
        requests,
        resource_ids: ids,
    };
    documents::put(svc.objects.as_ref(), &ids_key, &document).await?;
    let ids = document.resource_ids;
    let state = PageState {
        page,
        ids_key,
        count: ids.len() as u64,
        next_cursor,
        sent: false,
        error,
        listed: check.listed,
        expected_total: check.expected_total,
        problems: check.problems,
        listed_at: Some(svc.clock.now()),
        deleted_upstream: check.deleted_upstream.len() as u64,
    };
    let delivery = Delivery {
        session_id,
        source,
        cursor: cursor.as_deref(),
    };
    if svc.store.commit_page(session_id, &state).await? {
        delivery.deliver_first_chunk(svc, &state, &ids).await?;
        Ok(PageResult::Listed {
            resources: state.count,
            has_next: state.next_cursor.is_some(),
        })
    } else {
        // Another attempt committed this page first: deliver what *it* counted.
        let committed = svc
            .store
            .get_page(session_id, page)
            .await?
            .ok_or_else(|| StoreError::new("page vanished after a failed commit"))?;
        let ids = read_ids(svc, &committed.ids_key).await?;
        delivery.deliver_first_chunk(svc, &committed, &ids).await?;
        Ok(PageResult::Listed {
            resources: committed.count,
            has_next: committed.next_cursor.is_some(),
        })
    }
}

/// A selection session's only page: the ids it was asked for, as saved when it started (so a
/// retried or resent page lists the same ones). Ids outside the source's include/exclude
/// are not harvested (the source's scope holds for a push too) and are named as a problem.
async fn selected_page(
    svc: &Services,
    session_id: &str,
    source: &SourceSnapshot,
) -> Result<ListingPage, StoreError> {
    let (_, stamp) = split_session_id(session_id).unwrap_or((&source.id, session_id));
    let key = keys::selection_key(&source.id, stamp);
    let selection: documents::SelectionDocument = documents::get(svc.objects.as_ref(), &key)
        .await?
        .ok_or_else(|| StoreError::permanent(format!("selection {key} is missing")))?;
    let outside: Vec<&String> = selection
        .resource_ids
        .iter()
        .filter(|id| !source.options.selects(id))
        .collect();
    let mut problems = Vec::new();
    if let Some(example) = outside.first() {
        problems.push(format!(
            "{} named ids are outside the source's include/exclude and were not harvested (e.g. {example})",
            outside.len()
        ));
    }
    Ok(ListingPage {
        entries: selection
            .resource_ids
            .into_iter()
            .map(Entry::Listed)
            .collect(),
        next_cursor: None,
        expected_total: None,
        problems,
    })
}

/// A page's entries by what the listing does with each.
struct Entries {
    /// Ids to harvest (listed or inline), in the server's order.
    live: Vec<String>,
    /// Ids the server lists as deleted: part of its total, not harvested.
    deleted: HashSet<String>,
    /// Those of them the server declared deleted: acted on at once.
    declared_deleted: Vec<String>,
    /// Documents delivered whole, kept apart (see [`keep_inline_documents`]).
    inline: Vec<(String, Bytes)>,
}

impl Entries {
    fn sort(entries: Vec<Entry>) -> Entries {
        let mut sorted = Entries {
            live: Vec::with_capacity(entries.len()),
            deleted: HashSet::new(),
            declared_deleted: Vec::new(),
            inline: Vec::new(),
        };
        for entry in entries {
            match entry {
                Entry::Listed(id) => sorted.live.push(id),
                Entry::Inline { id, document } => {
                    sorted.inline.push((id.clone(), document));
                    sorted.live.push(id);
                }
                Entry::Deleted { id, declared } => {
                    if declared {
                        sorted.declared_deleted.push(id.clone());
                    }
                    sorted.deleted.insert(id);
                }
            }
        }
        sorted
    }
}

/// Keeps the documents a listing delivered whole (data.json) beside the session, where the
/// fetch reads them ([`super::harvest::SessionInline`]), before the page is committed and its
/// messages sent. Only the page's counted ids are kept.
async fn keep_inline_documents(
    svc: &Services,
    session_id: &str,
    source: &SourceSnapshot,
    inline: Vec<(String, Bytes)>,
    ids: &[String],
) -> Result<(), StoreError> {
    if inline.is_empty() {
        return Ok(());
    }
    let (_, stamp) = split_session_id(session_id).unwrap_or((&source.id, session_id));
    let wanted: HashSet<&String> = ids.iter().collect();
    let puts = inline
        .into_iter()
        .filter(|(id, _)| wanted.contains(id))
        .map(|(id, body)| {
            let key = keys::staged_key(&source.id, stamp, &id);
            async move { svc.objects.put(&key, body, "application/json").await }
        });
    let results: Vec<Result<(), StoreError>> = futures::stream::iter(puts)
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// What a page adds to the listing's integrity check (see [`crate::model::ListingCheck`]).
#[derive(Debug, Default)]
struct PageCheck {
    listed: u64,
    /// Ids added to the last page of an incremental session: its base's failed resources.
    retried: u64,
    /// Resources the server reported deleted that were deleted now.
    deleted_upstream: Vec<String>,
    expected_total: Option<u64>,
    problems: Vec<String>,
}

/// Drops ids listed twice (on this page or an earlier one), and ids too long to keep, and
/// notes each paging problem; returns the page's new ids and where the listing goes next. Servers with unstable sort
/// orders, ignored offsets or recycled tokens produce exactly these: counting a duplicate
/// would leave the session owing a resource that is harvested once, and following a page
/// that repeats forever would never end. The listing stops when the server asks for the same
/// page again, or when two pages in a row bring nothing new.
async fn check_page(
    svc: &Services,
    session_id: &str,
    page: u32,
    cursor: Option<&str>,
    live: Vec<String>,
    next_cursor: Option<String>,
    check: &mut PageCheck,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    // An id too long to key is a listing problem (the listing is then incomplete, so its
    // absence deletes nothing), not a failure of the whole page.
    let (live, too_long): (Vec<String>, Vec<String>) = live
        .into_iter()
        .partition(|id| id.len() <= keys::MAX_RESOURCE_ID_BYTES);
    if let Some(example) = too_long.first() {
        let head: String = example.chars().take(60).collect();
        check.problems.push(format!(
            "page {page}: {} ids are longer than {} bytes and cannot be kept; skipped (e.g. {head:?}…, {} bytes)",
            too_long.len(),
            keys::MAX_RESOURCE_ID_BYTES,
            example.len()
        ));
    }
    let on_page = live.len();
    // The first of each id stays, in the server's order; the set borrows, so a page of a
    // million ids is not held twice.
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(live.len());
        live.iter().map(|id| seen.insert(id.as_str())).collect()
    };
    let mut first = first.into_iter();
    let mut distinct = live;
    distinct.retain(|_| first.next().unwrap_or(false));
    if distinct.len() < on_page {
        check.problems.push(format!(
            "page {page}: {} ids appear twice on the page",
            on_page - distinct.len()
        ));
    }
    // Page 1 has nothing before it; later pages ask which of their ids have markers.
    let before = if page > 1 && !distinct.is_empty() {
        svc.store.listed_before(session_id, &distinct).await?
    } else {
        HashSet::new()
    };
    let new_ids: Vec<String> = distinct
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    let mut next_cursor = next_cursor;
    if !before.is_empty() {
        let example = before.iter().min().cloned().unwrap_or_default();
        check.problems.push(format!(
            "page {page}: {} ids were already listed on earlier pages (e.g. {example})",
            before.len()
        ));
        let previous_added_nothing = match svc.store.get_page(session_id, page - 1).await? {
            Some(previous) => previous.listed == 0,
            None => false,
        };
        if new_ids.is_empty() && previous_added_nothing {
            check.problems.push(format!(
                "page {page}: a second page in a row with nothing new; the listing stops here"
            ));
            next_cursor = None;
        }
    }
    if next_cursor.is_some() && next_cursor.as_deref() == cursor {
        check.problems.push(format!(
            "page {page}: the server pointed back at the same page; the listing stops here"
        ));
        next_cursor = None;
    }
    check.listed = new_ids.len() as u64;
    Ok((new_ids, next_cursor))
}

/// Where a committed page's messages go: its session and source, and the cursor it was
/// listed with (carried by a continuation, so it is the same page's message).
struct Delivery<'a> {
    session_id: &'a str,
    source: &'a SourceSnapshot,
    cursor: Option<&'a str>,
}

impl Delivery<'_> {
    async fn deliver_first_chunk(
        &self,
        svc: &Services,
        page: &PageState,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let end = svc.settings.delivery_chunk.max(1).min(ids.len());
        self.deliver(svc, page, &ids[..end], 0, ids.len()).await
    }

    /// Writes the pending markers of `chunk`, the page's ids from `from` on (of `total`), and
    /// sends their messages, with either a message that delivers the next chunk or the next
    /// page's message among them; then records that this page is delivered. A page within one chunk
    /// (every protocol's normal page) is one send, as it always was.
    async fn deliver(
        &self,
        svc: &Services,
        page: &PageState,
        chunk: &[String],
        from: usize,
        total: usize,
    ) -> Result<(), StoreError> {
        let end = from + chunk.len();
        // Only missing markers are added: a copy of this page that delivered first may have
        // had some of them counted already.
        svc.store
            .put_pending_markers(self.session_id, chunk)
            .await?;
        let mut messages: Vec<WorkMessage> = chunk
            .iter()
            .map(|id| WorkMessage::Resource {
                session_id: self.session_id.to_string(),
                source: self.source.clone(),
                resource_id: id.clone(),
                deferrals: 0,
            })
            .collect();
        // The next page (or chunk) is listed ahead: its message goes in the middle of this
        // chunk's, so its resources are queued before this chunk's run out and the harvest
        // does not wait on a listing request between pages, while no more than about one
        // and a half pages' messages wait in the queue.
        let ahead = messages.len() / 2;
        if end < total {
            messages.insert(
                ahead,
                WorkMessage::ListPage {
                    session_id: self.session_id.to_string(),
                    source: self.source.clone(),
                    page: page.page,
                    cursor: self.cursor.map(str::to_string),
                    delivered: end as u64,
                },
            );
            return svc.queue.send(&messages).await;
        }
        if let Some(cursor) = &page.next_cursor {
            messages.insert(
                ahead,
                WorkMessage::ListPage {
                    session_id: self.session_id.to_string(),
                    source: self.source.clone(),
                    page: page.page + 1,
                    cursor: Some(cursor.clone()),
                    delivered: 0,
                },
            );
        }
        svc.queue.send(&messages).await?;
        svc.store.mark_page_sent(self.session_id, page.page).await
    }
}

/// The resource ids a committed page counted (saved before its commit).
pub(crate) async fn read_ids(svc: &Services, key: &str) -> Result<Vec<String>, StoreError> {
    let page: PageDocument = documents::get(svc.objects.as_ref(), key)
        .await?
        .ok_or_else(|| StoreError::permanent(format!("page ids {key} are missing")))?;
    Ok(page.resource_ids)
}

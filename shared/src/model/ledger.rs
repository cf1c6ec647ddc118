//! The session ledger: every counting rule of a harvest, as plain functions on plain types.
//!
//! A session owes `remaining` units of work: one per listing page not yet committed and one
//! per listed resource not yet counted. Four steps move it, and each is decided here:
//!
//! 1. [`commit_page`]: a listing page adds its resources and its successor page, and settles
//!    its own unit, in one change ([`PageCommit`]). Holds once per page.
//! 2. [`Tally`]: counting outcomes settles resources' markers and adds to the counters. Holds
//!    per resource only while its marker is pending, so a redelivered message counts nothing.
//! 3. [`close`]: a running session with nothing remaining closes with the status its counters
//!    earned ([`Closure`]). Holds once.
//! 4. [`release`]: what a closed session does to its source ([`Release`]). Holds only while
//!    the source still names that session as running.
//!
//! Stores persist these changes and nothing else: each store states a change's condition in
//! its own terms (a DynamoDB condition expression, a compare under a lock), and
//! `testing::contract` proves every store keeps them alike.

use super::session::whole_second;
use super::{Outcome, Reason, Session, SessionStatus, Source};
use chrono::{DateTime, Utc};

/// A source with its run state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceEntry {
    pub source: Source,
    /// The session currently running, if any: never two at once.
    pub running_session: Option<String>,
    pub last_session: Option<String>,
    pub last_status: Option<SessionStatus>,
    /// The newest closed session whose listing was complete (not aborted): what an
    /// incremental session lists changes since.
    pub incremental_base: Option<String>,
    /// When the newest complete *full* listing started.
    pub last_full_listing_at: Option<DateTime<Utc>>,
}

impl SourceEntry {
    /// A source registered just now: never harvested.
    pub fn new(source: Source) -> SourceEntry {
        SourceEntry {
            source,
            running_session: None,
            last_session: None,
            last_status: None,
            incremental_base: None,
            last_full_listing_at: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionStart {
    Created,
    /// This (source, scheduled time) was already started.
    AlreadyExists(Box<Session>),
    /// Another session of the source is still running.
    SourceBusy {
        running: String,
    },
    UnknownSource,
}

/// Whether `session` may start: once per (source, scheduled time), never beside another
/// running session of its source. `None` means it may (and the source then names it running).
pub fn start(
    session: &Session,
    existing: Option<&Session>,
    source: Option<&SourceEntry>,
) -> Option<SessionStart> {
    if let Some(existing) = existing {
        return Some(SessionStart::AlreadyExists(Box::new(existing.clone())));
    }
    let Some(entry) = source else {
        return Some(SessionStart::UnknownSource);
    };
    match &entry.running_session {
        Some(running) if running != &session.id => Some(SessionStart::SourceBusy {
            running: running.clone(),
        }),
        _ => None,
    }
}

/// A listing page as committed: its resources are counted in the session from then on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageState {
    pub page: u32,
    /// Object key of the page's resource ids, so a redelivered page re-sends exactly what
    /// was counted.
    pub ids_key: String,
    pub count: u64,
    pub next_cursor: Option<String>,
    /// All of the page's messages were sent.
    pub sent: bool,
    /// Why listing failed at this page (then it holds no ids and no next page).
    pub error: Option<String>,
    /// Distinct ids this page added to the listing, before the source's include/exclude
    /// filter (what the server's announced total is compared with).
    pub listed: u64,
    /// The server's announced total for the whole listing, as of this page.
    pub expected_total: Option<u64>,
    /// Paging problems found on this page (duplicates, a repeated page, the protocol's own).
    pub problems: Vec<String>,
    /// When the page was committed: how the watchdog tells a listing that stalled (its next
    /// message died) from one that is only slow.
    pub listed_at: Option<DateTime<Utc>>,
    /// Resources the server declared deleted on this page that were deleted now (their ids
    /// are in the page document): the stale report lists them when this is not zero.
    #[serde(default)]
    pub deleted_upstream: u64,
}

/// What committing one listing page changes in its session. Holds only if the page was not
/// committed before, and only for a session that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCommit {
    /// Added to `counters.total`: the page's resources.
    pub total: u64,
    /// Added to `counters.remaining`: the page's resources and its successor page, less the
    /// page's own unit. In one step, so `remaining` cannot touch zero in between.
    pub remaining: i64,
    /// Added to `listing.listed`.
    pub listed: u64,
    /// Replaces `listing.expected_total` when the page announced one.
    pub expected_total: Option<u64>,
    /// Set as the session's `listing_error` when listing failed at this page.
    pub listing_error: Option<String>,
    /// Appended to `listing.problems`.
    pub problems: Vec<String>,
    /// Added to `listing.deleted_upstream`.
    pub deleted_upstream: u64,
}

pub fn commit_page(page: &PageState) -> PageCommit {
    PageCommit {
        total: page.count,
        remaining: page.count as i64 + i64::from(page.next_cursor.is_some()) - 1,
        listed: page.listed,
        expected_total: page.expected_total,
        listing_error: page.error.clone(),
        problems: page.problems.clone(),
        deleted_upstream: page.deleted_upstream,
    }
}

impl PageCommit {
    pub fn apply(&self, session: &mut Session) {
        let c = &mut session.counters;
        c.total += self.total;
        c.remaining = c.remaining.saturating_add_signed(self.remaining);
        session.listing.listed += self.listed;
        if self.expected_total.is_some() {
            session.listing.expected_total = self.expected_total;
        }
        if self.listing_error.is_some() {
            session.listing_error = self.listing_error.clone();
        }
        session
            .listing
            .problems
            .extend(self.problems.iter().cloned());
        session.listing.deleted_upstream += self.deleted_upstream;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counting {
    Counted,
    /// The marker was no longer pending: a redelivery of work already counted.
    AlreadyCounted,
}

/// One resource's line in a session: `outcome` is `None` while still pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub resource_id: String,
    pub outcome: Option<Outcome>,
    pub reason: Option<Reason>,
    /// The session brought the resource back after it was deleted.
    pub restored: bool,
    /// What the session's harvest changed in the record (added, or which fields changed).
    pub change: Option<super::RecordChange>,
}

/// Outcomes counted in one session: what settling their (pending) markers adds to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub harvested: u64,
    pub unchanged: u64,
    pub failed: u64,
}

impl Tally {
    pub fn of(outcomes: impl IntoIterator<Item = Outcome>) -> Tally {
        let mut tally = Tally::default();
        for outcome in outcomes {
            tally.add(outcome);
        }
        tally
    }

    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Harvested => self.harvested += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    /// Resources settled: what `remaining` goes down by.
    pub fn settled(&self) -> u64 {
        self.harvested + self.unchanged + self.failed
    }

    /// Each outcome's counter with how many it adds, leaving out those that add none.
    pub fn counters(&self) -> Vec<(Outcome, u64)> {
        [
            (Outcome::Harvested, self.harvested),
            (Outcome::Unchanged, self.unchanged),
            (Outcome::Failed, self.failed),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    pub fn apply(&self, session: &mut Session) {
        let c = &mut session.counters;
        c.remaining = c.remaining.saturating_sub(self.settled());
        c.harvested += self.harvested;
        c.unchanged += self.unchanged;
        c.failed += self.failed;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closing {
    Closed(Box<Session>),
    /// Someone closed it before (a redelivered stream record), or it is not finished.
    NotClosable(Option<Box<Session>>),
}

/// A session closing: the status its counters earned, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closure {
    pub status: SessionStatus,
    /// Whole seconds: what every store keeps, so the session closed is the one read back.
    pub ended_at: DateTime<Utc>,
}

/// How `session` closes at `ended_at`; `None` while it is not closable: closed already, or
/// still owing work. Counters only move together with `remaining`, so at zero they are final.
pub fn close(session: &Session, ended_at: DateTime<Utc>) -> Option<Closure> {
    (session.status == SessionStatus::Running && session.counters.remaining == 0).then(|| Closure {
        status: session.closing_status(),
        ended_at: whole_second(ended_at),
    })
}

impl Closure {
    pub fn apply(&self, session: &mut Session) {
        session.status = self.status;
        session.ended_at = Some(self.ended_at);
    }
}

/// What a closed session does to its source: the source is ready again, remembers how its
/// last session went, and a complete listing becomes what the next incremental one lists
/// changes since. Holds only while the source still names the session as running (a
/// removed or re-registered source is left alone; the session closes anyway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub session_id: String,
    pub status: SessionStatus,
    /// The session becomes the source's incremental base.
    pub incremental_base: bool,
    /// The start of a complete full listing: the source's `last_full_listing_at`.
    pub full_listing_at: Option<DateTime<Utc>>,
}

pub fn release(closed: &Session) -> Release {
    let base = closed.is_incremental_base();
    Release {
        session_id: closed.id.clone(),
        status: closed.status,
        incremental_base: base,
        full_listing_at: (base && closed.since.is_none()).then_some(closed.started_at),
    }
}

impl Release {
    pub fn holds(&self, entry: &SourceEntry) -> bool {
        entry.running_session.as_deref() == Some(self.session_id.as_str())
    }

    pub fn apply(&self, entry: &mut SourceEntry) {
        entry.running_session = None;
        entry.last_session = Some(self.session_id.clone());
        entry.last_status = Some(self.status);
        if self.incremental_base {
            entry.incremental_base = Some(self.session_id.clone());
        }
        if let Some(at) = self.full_listing_at {
            entry.last_full_listing_at = Some(at);
        }
    }
}

/// Whether an operator's abort still applies: only to a running session that owes work. With
/// nothing remaining the finalizer may already be deleting stale resources, which an aborted
/// session must never do: the session closes with what it did.
pub fn may_abort(session: &Session) -> bool {
    session.status == SessionStatus::Running && session.counters.remaining > 0
}

/// Whether a source may be unregistered: it exists and runs no session.
pub fn may_remove(entry: &SourceEntry) -> bool {
    entry.running_session.is_none()
}

/// Where a listing must stop however long the server goes on: after `max_pages` pages, after
/// `max_resources` resources, or once the listing has run past its deadline (a share of the
/// session's, so what was listed still has time to be harvested).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListingBounds {
    pub max_pages: u32,
    pub max_resources: u64,
    pub deadline: chrono::Duration,
}

/// What the bounds make of one page: how many of its new ids to keep, and, when the listing
/// stops here, why (a listing problem: the listing is incomplete and deletes nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageBound {
    pub keep: usize,
    pub stop: Option<String>,
}

/// Applies `bounds` to page `page`, which brings `new_ids` ids after `listed_before` and has
/// a next page or not, `elapsed` into its session.
pub fn bound_page(
    bounds: &ListingBounds,
    page: u32,
    listed_before: u64,
    new_ids: usize,
    has_next: bool,
    elapsed: chrono::Duration,
) -> PageBound {
    let allowed = bounds.max_resources.saturating_sub(listed_before);
    if new_ids as u64 > allowed {
        return PageBound {
            keep: allowed as usize,
            stop: Some(format!(
                "stopped at {} resources (options.max_resources) on page {page}: the server kept listing new ids",
                bounds.max_resources
            )),
        };
    }
    let stop = if !has_next {
        None
    } else if page >= bounds.max_pages {
        Some(format!(
            "stopped after {page} pages (options.max_pages): the server kept sending new pages"
        ))
    } else if elapsed >= bounds.deadline {
        Some(format!(
            "stopped after {page} pages at the listing deadline ({} minutes into the session): the server kept sending new pages",
            bounds.deadline.num_minutes()
        ))
    } else {
        None
    };
    PageBound {
        keep: new_ids,
        stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap() + chrono::Duration::seconds(s)
    }

    fn page(count: u64, next: bool) -> PageState {
        PageState {
            page: 1,
            ids_key: "ids".into(),
            count,
            next_cursor: next.then(|| "2".into()),
            sent: false,
            error: None,
            listed: count,
            expected_total: None,
            problems: vec![],
            listed_at: None,
            deleted_upstream: 0,
        }
    }

    #[test]
    fn a_page_with_a_successor_keeps_the_session_owing() {
        let mut s = Session::start("a", t(0), t(0));
        commit_page(&page(0, true)).apply(&mut s);
        assert_eq!((s.counters.total, s.counters.remaining), (0, 1));
        let mut last = page(3, false);
        last.expected_total = Some(3);
        commit_page(&last).apply(&mut s);
        assert_eq!((s.counters.total, s.counters.remaining), (3, 3));
        assert_eq!(s.listing.listed, 3);
        assert_eq!(s.listing.expected_total, Some(3));
        assert!(close(&s, t(1)).is_none(), "three resources are owed");
    }

    #[test]
    fn an_empty_last_page_finishes_the_listing() {
        let mut s = Session::start("a", t(0), t(0));
        commit_page(&page(0, false)).apply(&mut s);
        assert_eq!(s.counters.remaining, 0);
        let closure = close(&s, t(1) + chrono::Duration::milliseconds(700)).unwrap();
        assert_eq!(closure.status, SessionStatus::Succeeded);
        assert_eq!(closure.ended_at, t(1), "whole seconds");
    }

    #[test]
    fn a_failed_page_records_the_listing_error() {
        let mut s = Session::start("a", t(0), t(0));
        let mut failed = page(0, false);
        failed.error = Some("HTTP_ERROR 500".into());
        failed.problems = vec!["page 1 repeats page 0".into()];
        commit_page(&failed).apply(&mut s);
        assert_eq!(s.listing_error.as_deref(), Some("HTTP_ERROR 500"));
        assert_eq!(s.listing.problems, ["page 1 repeats page 0"]);
        assert_eq!(close(&s, t(1)).unwrap().status, SessionStatus::Failed);
    }

    #[test]
    fn a_tally_settles_what_it_counts() {
        let mut s = Session::start("a", t(0), t(0));
        commit_page(&page(4, false)).apply(&mut s);
        let tally = Tally::of([Outcome::Harvested, Outcome::Failed, Outcome::Harvested]);
        assert_eq!(
            tally.counters(),
            [(Outcome::Harvested, 2), (Outcome::Failed, 1)]
        );
        tally.apply(&mut s);
        assert_eq!(s.counters.remaining, 1);
        assert_eq!((s.counters.harvested, s.counters.failed), (2, 1));
        Tally::of([Outcome::Unchanged]).apply(&mut s);
        assert_eq!(
            close(&s, t(2)).unwrap().status,
            SessionStatus::PartiallyFailed
        );
    }

    #[test]
    fn a_closed_session_closes_once_and_cannot_be_aborted() {
        let mut s = Session::start("a", t(0), t(0));
        assert!(may_abort(&s));
        commit_page(&page(0, false)).apply(&mut s);
        assert!(!may_abort(&s), "nothing remains: it is closing");
        close(&s, t(1)).unwrap().apply(&mut s);
        assert!(close(&s, t(2)).is_none());
        assert!(!may_abort(&s));
    }

    #[test]
    fn releasing_a_source_needs_it_to_name_the_session() {
        let mut entry = SourceEntry::new(Source {
            id: "a".into(),
            protocol: crate::model::Protocol::Ckan,
            base_url: "https://catalog.example".into(),
            schedule: "rate(1 day)".into(),
            enabled: true,
            internal: false,
            options: Default::default(),
        });
        let mut s = Session::start("a", t(0), t(0));
        assert!(start(&s, None, Some(&entry)).is_none());
        entry.running_session = Some(s.id.clone());
        assert!(start(&s, None, Some(&entry)).is_none(), "its own claim");
        commit_page(&page(0, false)).apply(&mut s);
        close(&s, t(1)).unwrap().apply(&mut s);
        let release = release(&s);
        assert!(release.holds(&entry));
        release.apply(&mut entry);
        assert_eq!(entry.running_session, None);
        assert_eq!(entry.last_status, Some(SessionStatus::Succeeded));
        assert_eq!(entry.incremental_base.as_deref(), Some(s.id.as_str()));
        assert_eq!(entry.last_full_listing_at, Some(t(0)));
        assert!(!release.holds(&entry), "released once");
    }

    #[test]
    fn an_aborted_or_incomplete_session_is_no_incremental_base() {
        let mut s = Session::start("a", t(0), t(0));
        s.abort_requested = true;
        commit_page(&page(0, false)).apply(&mut s);
        close(&s, t(1)).unwrap().apply(&mut s);
        assert_eq!(s.status, SessionStatus::Aborted);
        let r = release(&s);
        assert!(!r.incremental_base);
        assert_eq!(r.full_listing_at, None);
    }

    fn bounds() -> ListingBounds {
        ListingBounds {
            max_pages: 3,
            max_resources: 2_500,
            deadline: chrono::Duration::minutes(180),
        }
    }

    #[test]
    fn a_listing_stops_at_its_page_resource_and_time_bounds() {
        let minute = chrono::Duration::minutes(1);
        // Within every bound: everything kept, the listing goes on.
        let b = bound_page(&bounds(), 2, 1_000, 1_000, true, minute);
        assert_eq!(
            b,
            PageBound {
                keep: 1_000,
                stop: None
            }
        );
        // The last allowed page with more to come stops the listing.
        let b = bound_page(&bounds(), 3, 2_000, 400, true, minute);
        assert_eq!(b.keep, 400);
        assert!(b.stop.unwrap().contains("stopped after 3 pages"));
        // A last page within the bound is simply the end.
        assert_eq!(
            bound_page(&bounds(), 3, 2_000, 400, false, minute).stop,
            None
        );
        // Past max_resources: only what fits is kept.
        let b = bound_page(&bounds(), 2, 2_000, 1_000, true, minute);
        assert_eq!(b.keep, 500);
        assert!(b.stop.unwrap().contains("max_resources"));
        let b = bound_page(&bounds(), 2, 2_500, 1_000, false, minute);
        assert_eq!(b.keep, 0);
        // Past the deadline with more to come.
        let b = bound_page(&bounds(), 2, 10, 10, true, chrono::Duration::minutes(181));
        assert!(b.stop.unwrap().contains("listing deadline (180 minutes"));
    }
}

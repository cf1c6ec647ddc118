//! Sessions: one harvest of one source.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Running,
    Succeeded,
    PartiallyFailed,
    Failed,
    /// An operator aborted it; unfinished resources were counted as `ABORTED`.
    Aborted,
}

impl SessionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionStatus::Running => "running",
            SessionStatus::Succeeded => "succeeded",
            SessionStatus::PartiallyFailed => "partially_failed",
            SessionStatus::Failed => "failed",
            SessionStatus::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<SessionStatus> {
        Some(match s {
            "running" => SessionStatus::Running,
            "succeeded" => SessionStatus::Succeeded,
            "partially_failed" => SessionStatus::PartiallyFailed,
            "failed" => SessionStatus::Failed,
            "aborted" => SessionStatus::Aborted,
            _ => return None,
        })
    }
}

/// Work still owed and what became of the rest. `remaining` counts unfinished resources *and*
/// unfinished listing pages, so it cannot reach zero while a page may still add resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub total: u64,
    pub remaining: u64,
    pub harvested: u64,
    pub unchanged: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub source_id: String,
    pub scheduled_time: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: SessionStatus,
    pub counters: Counters,
    /// Why the listing failed, when it did (the session then harvests nothing).
    pub listing_error: Option<String>,
    /// An operator asked to abort: remaining work is counted as aborted, not fetched.
    #[serde(default)]
    pub abort_requested: bool,
    /// What the listing's pages found about its own integrity.
    #[serde(default)]
    pub listing: ListingCheck,
    /// An incremental session lists only what changed since this time; `None` = a full
    /// listing (the only kind that can find resources gone upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The session an incremental one lists changes since (its failed resources are retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_session: Option<String>,
    /// What started it; `None` for sessions stored before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

/// What started a session: a scheduler tick, an operator (`trawl run`, the scheduler
/// invoked with a `source_id`, an embedded `trawl harvest`), a deployment (`HarvestOnDeploy`),
/// or a request to harvest named resources now (`trawl run --resources`, a server's push).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    Deploy,
    /// Harvests only the resources it was given (see `model::selection`): its "listing" is
    /// that list, so it proves nothing about the rest of the catalog.
    Selection,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Deploy => "deploy",
            Trigger::Selection => "selection",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        match s {
            "schedule" => Some(Trigger::Schedule),
            "manual" => Some(Trigger::Manual),
            "deploy" => Some(Trigger::Deploy),
            "selection" => Some(Trigger::Selection),
            _ => None,
        }
    }

    /// Whether the session lists the source's catalog. A selection does not: it may not
    /// delete anything as stale, nor serve as a base (or a full listing) for incremental ones.
    pub fn lists_catalog(&self) -> bool {
        !matches!(self, Trigger::Selection)
    }
}

/// The listing's integrity, gathered page by page: a listing is *complete* only when it did
/// not fail, no page found a problem, and the server's announced total (when it announces
/// one) matches the distinct resources gathered. Only a complete listing may delete stale
/// resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingCheck {
    /// Distinct ids gathered over all pages, before the source's include/exclude filter.
    pub listed: u64,
    /// The server's announced total (from the latest page that announced one).
    pub expected_total: Option<u64>,
    /// Problems pages found: duplicates across pages, a repeated page, the protocol's own.
    pub problems: Vec<String>,
    /// Resources the server declared deleted that pages deleted (see `PageState`).
    #[serde(default)]
    pub deleted_upstream: u64,
}

impl Session {
    /// A new running session, owing its first listing page.
    pub fn start(source_id: &str, scheduled_time: DateTime<Utc>, now: DateTime<Utc>) -> Session {
        Session {
            id: session_id(source_id, scheduled_time),
            source_id: source_id.to_string(),
            scheduled_time,
            started_at: now,
            ended_at: None,
            status: SessionStatus::Running,
            counters: Counters {
                remaining: 1,
                ..Counters::default()
            },
            listing_error: None,
            abort_requested: false,
            listing: ListingCheck::default(),
            since: None,
            base_session: None,
            trigger: None,
        }
    }

    /// Whether a later incremental session may list changes since this one: its listing was
    /// complete and it was not aborted (its failed resources are retried by that session).
    pub fn is_incremental_base(&self) -> bool {
        self.lists_catalog() && !self.abort_requested && self.listing_problems().is_empty()
    }

    /// Whether its listing was of the source's catalog (every session but a selection).
    pub fn lists_catalog(&self) -> bool {
        self.trigger.is_none_or(|t| t.lists_catalog())
    }

    /// Why this session's listing is not a complete, verified listing; empty when it is.
    /// Meaningful once the listing has ended (all pages counted).
    pub fn listing_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(error) = &self.listing_error {
            problems.push(error.clone());
        }
        problems.extend(self.listing.problems.iter().cloned());
        if let Some(expected) = self.listing.expected_total {
            if expected != self.listing.listed && self.listing_error.is_none() {
                problems.push(format!(
                    "the server announced {expected} resources but {} distinct ones were listed",
                    self.listing.listed
                ));
            }
        }
        problems
    }

    /// Whether it listed the whole catalog without a problem: never for a selection, whose
    /// "listing" is the ids it was given.
    pub fn listing_complete(&self) -> bool {
        self.lists_catalog() && self.listing_problems().is_empty()
    }

    /// The status a finished session closes with.
    pub fn closing_status(&self) -> SessionStatus {
        let c = &self.counters;
        if self.abort_requested {
            SessionStatus::Aborted
        } else if self.listing_error.is_some() && c.total == 0 {
            SessionStatus::Failed
        } else if c.failed == 0 && self.listing_error.is_none() {
            SessionStatus::Succeeded
        } else if c.harvested + c.unchanged == 0 {
            SessionStatus::Failed
        } else {
            SessionStatus::PartiallyFailed
        }
    }

    /// The compact stamp used in session ids and object keys.
    pub fn stamp(&self) -> String {
        stamp(self.scheduled_time)
    }
}

/// Deterministic: the same source and scheduled time always name the same session, so a
/// retried scheduler invocation finds the session it already created.
pub fn session_id(source_id: &str, scheduled_time: DateTime<Utc>) -> String {
    format!("{source_id}@{}", stamp(scheduled_time))
}

pub fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// `t` without its fraction: what session items store (see [`rfc3339`]).
pub fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Splits a session id back into its source id and stamp.
pub fn split_session_id(id: &str) -> Option<(&str, &str)> {
    id.rsplit_once('@')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn session_ids_are_derived_from_source_and_scheduled_time() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let later = t + chrono::Duration::seconds(42);
        let a = Session::start("erddap-1", t, later);
        let b = Session::start("erddap-1", t, later + chrono::Duration::minutes(3));
        assert_eq!(a.id, "erddap-1@20261122T120000Z");
        assert_eq!(a.id, b.id);
        assert_eq!(
            split_session_id(&a.id),
            Some(("erddap-1", "20261122T120000Z"))
        );
        assert_eq!(
            a.counters.remaining, 1,
            "the first page is owed from the start"
        );
    }

    #[test]
    fn closing_status_follows_the_counters() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut s = Session::start("a", t, t);
        let with = |h, u, f| Counters {
            total: h + u + f,
            remaining: 0,
            harvested: h,
            unchanged: u,
            failed: f,
        };
        s.counters = with(3, 1, 0);
        assert_eq!(s.closing_status(), SessionStatus::Succeeded);
        s.counters = with(3, 0, 2);
        assert_eq!(s.closing_status(), SessionStatus::PartiallyFailed);
        s.counters = with(0, 0, 2);
        assert_eq!(s.closing_status(), SessionStatus::Failed);
        s.counters = with(0, 0, 0);
        assert_eq!(
            s.closing_status(),
            SessionStatus::Succeeded,
            "an empty catalog is not a failure"
        );
        s.listing_error = Some("HTTP_ERROR 500".into());
        assert_eq!(s.closing_status(), SessionStatus::Failed);
    }

    #[test]
    fn a_listing_is_complete_only_without_errors_problems_or_a_total_mismatch() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut s = Session::start("a", t, t);
        s.listing.listed = 10;
        assert!(s.listing_problems().is_empty(), "no total announced");
        s.listing.expected_total = Some(10);
        assert!(s.listing_problems().is_empty());
        s.listing.expected_total = Some(12);
        assert_eq!(
            s.listing_problems(),
            ["the server announced 12 resources but 10 distinct ones were listed"]
        );
        s.listing.expected_total = Some(10);
        s.listing.problems.push("page 3 repeats page 2".into());
        assert_eq!(s.listing_problems(), ["page 3 repeats page 2"]);
    }
}

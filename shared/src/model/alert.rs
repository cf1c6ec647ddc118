//! Alerts: what an operator must hear about, decided by plain rules over a closed session,
//! its summary and the source's earlier sessions. Publishing them is a port
//! (`ports::AlertSink`); the stages only call [`at_close`] and [`no_success`].
//!
//! The rules:
//! - **session failed**: the session closed `failed` (its listing failed, or nothing it
//!   listed could be harvested).
//! - **failing in a row**: the session is the K-th failed session in a row. It fires once,
//!   when the streak reaches K exactly: the K+1-th failure is already known. Aborted
//!   sessions neither break nor extend a streak (an operator stopped them); any other
//!   closed session breaks it.
//! - **no success**: no successful session (`succeeded` or `partially_failed`: the listing
//!   worked and something was harvested) for `alert_after_days`, counted from the last
//!   success, or from the first session the history holds when there was none. At most once
//!   a day per source: the caller keeps when it last fired (see [`no_success`]).
//! - **deletions blocked**: the shrink guard kept a listing that shrank by more than
//!   `max_shrink_percent` from deleting anything.

use super::{Session, SessionStatus};
use crate::documents::SessionSummary;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Every kind of alert, in one place: adding one is a variant here and a rule below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    SessionFailed,
    FailingInARow,
    NoSuccess,
    DeletionsBlocked,
    DeletionsHeld,
}

impl AlertKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertKind::SessionFailed => "session_failed",
            AlertKind::FailingInARow => "failing_in_a_row",
            AlertKind::NoSuccess => "no_success",
            AlertKind::DeletionsBlocked => "deletions_blocked",
            AlertKind::DeletionsHeld => "deletions_held",
        }
    }
}

/// One alert: what happened, to which source, and where to look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub source_id: String,
    /// The session it is about; none for a source that has not run at all lately.
    pub session_id: Option<String>,
    pub at: DateTime<Utc>,
    /// One line, for a mail subject or a chat notification.
    pub subject: String,
    /// What happened, to which source, and where to look.
    pub body: String,
    /// Where to look: the dashboard's view when a base URL is configured, else the CLI
    /// command that shows it.
    pub link: String,
}

/// The thresholds that apply to one source: its own options, else the deployment's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertRules {
    /// K of "failing in a row" (at least 1).
    pub failures_in_a_row: u32,
    /// Days without a successful session before "no success" fires (at least 1).
    pub after_days: u32,
}

/// How alerts point at things: the dashboard's base URL (`DashboardUrl`), if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertLinks {
    pub dashboard_url: Option<String>,
}

impl AlertLinks {
    pub fn session(&self, session_id: &str) -> String {
        match self.base() {
            Some(base) => format!("{base}#/session/{}", encode(session_id)),
            None => format!("trawl session {session_id}"),
        }
    }

    pub fn source(&self, source_id: &str) -> String {
        match self.base() {
            Some(base) => format!("{base}#/source/{}", encode(source_id)),
            None => format!("trawl sessions {source_id}"),
        }
    }

    fn base(&self) -> Option<String> {
        let base = self.dashboard_url.as_deref()?.trim();
        if base.is_empty() {
            return None;
        }
        // The dashboard's views live in the address's hash, after its page.
        let base = base.split('#').next().unwrap_or(base);
        Some(if base.ends_with('/') {
            base.to_string()
        } else {
            format!("{base}/")
        })
    }
}

/// Percent-encodes everything but unreserved characters, as the dashboard's links do.
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a closed session counts as a success for "no success" (the listing worked and
/// something was harvested or found unchanged).
pub fn is_success(status: SessionStatus) -> bool {
    matches!(
        status,
        SessionStatus::Succeeded | SessionStatus::PartiallyFailed
    )
}

/// The alerts a session's close raises. `history` is the source's other sessions, newest
/// first (this one left out, running ones ignored).
pub fn at_close(
    session: &Session,
    summary: &SessionSummary,
    history: &[Session],
    rules: AlertRules,
    links: &AlertLinks,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let source = &session.source_id;
    let at = session.ended_at.unwrap_or(session.started_at);
    let link = links.session(&session.id);
    if session.status == SessionStatus::Failed {
        let what = match &session.listing_error {
            Some(error) => format!("its listing failed: {error}"),
            None => format!(
                "none of its {} resources could be harvested ({})",
                session.counters.total,
                reasons_line(summary)
            ),
        };
        alerts.push(Alert {
            kind: AlertKind::SessionFailed,
            source_id: source.clone(),
            session_id: Some(session.id.clone()),
            at,
            subject: format!("Trawl: session {} of {source} failed", session.id),
            body: format!(
                "Session {} of source {source} failed: {what}. Look at {link}.",
                session.id
            ),
            link: link.clone(),
        });
    }
    if let Some(streak) = failure_streak_reached(session, history, rules.failures_in_a_row) {
        alerts.push(Alert {
            kind: AlertKind::FailingInARow,
            source_id: source.clone(),
            session_id: Some(session.id.clone()),
            at,
            subject: format!("Trawl: {source} failed {streak} sessions in a row"),
            body: format!(
                "Source {source} has failed {streak} sessions in a row, the last one {}. \
                 Check its server with `trawl check {source}`, and its sessions at {}.",
                session.id,
                links.source(source)
            ),
            link: links.source(source),
        });
    }
    if let Some(stale) = &summary.stale {
        if stale.shrink_guard {
            alerts.push(Alert {
                kind: AlertKind::DeletionsBlocked,
                source_id: source.clone(),
                session_id: Some(session.id.clone()),
                at,
                subject: format!("Trawl: {source}'s listing shrank; nothing deleted"),
                body: format!(
                    "Session {} of source {source} listed {} resources fewer than the {} it \
                     knows, more than its max_shrink_percent allows, so the shrink guard \
                     deleted nothing. If the catalog really shrank, raise max_shrink_percent \
                     for one session; otherwise the server is listing short. Look at {link}.",
                    session.id, stale.missing, stale.known
                ),
                link: link.clone(),
            });
        }
    }
    // `on_stale: hold`: said at every close while deletions wait for a person.
    if summary.held_deletions > 0 {
        let n = summary.held_deletions;
        alerts.push(Alert {
            kind: AlertKind::DeletionsHeld,
            source_id: source.clone(),
            session_id: Some(session.id.clone()),
            at,
            subject: format!("Trawl: {n} deletions of {source} wait for approval"),
            body: format!(
                "Session {} of source {source} found {n} resources gone long enough to delete; \
                 its on_stale is hold, so they wait. `trawl deletions list {source}` shows \
                 them, `trawl deletions approve|restore {source} [ID…]` decides. Look at {}.",
                session.id,
                links.source(source)
            ),
            link: links.source(source),
        });
    }
    alerts
}

/// K when `session` is the K-th failed session in a row (aborted ones skipped), else none.
pub fn failure_streak_reached(session: &Session, history: &[Session], k: u32) -> Option<u32> {
    if session.status != SessionStatus::Failed || k == 0 {
        return None;
    }
    let earlier = history
        .iter()
        .filter(|s| s.id != session.id && s.status != SessionStatus::Running)
        .filter(|s| s.status != SessionStatus::Aborted)
        .take_while(|s| s.status == SessionStatus::Failed)
        .count() as u64;
    (earlier + 1 == u64::from(k)).then_some(k)
}

/// "No success": fires when the source has had no successful session for `rules.after_days`
/// at `now`, unless it already fired for this same silence less than a day ago
/// (`last_alerted`, kept by the caller). `history` is the source's sessions, newest first;
/// a source with none has no silence to measure (never harvested, or its history expired).
pub fn no_success(
    source_id: &str,
    history: &[Session],
    now: DateTime<Utc>,
    rules: AlertRules,
    last_alerted: Option<DateTime<Utc>>,
    links: &AlertLinks,
) -> Option<Alert> {
    let closed: Vec<&Session> = history
        .iter()
        .filter(|s| s.status != SessionStatus::Running)
        .collect();
    let last_success = closed
        .iter()
        .find(|s| is_success(s.status))
        .map(|s| s.ended_at.unwrap_or(s.started_at));
    let since = match last_success {
        Some(t) => t,
        // Nothing succeeded in what the history holds: it has been failing since its oldest.
        None => history.iter().map(|s| s.started_at).min()?,
    };
    let due = since + Duration::days(i64::from(rules.after_days));
    if now < due {
        return None;
    }
    // Fired for this silence (after it became due) less than a day ago: once a day.
    if last_alerted.is_some_and(|t| t >= due && now - t < Duration::days(1)) {
        return None;
    }
    let days = (now - since).num_days();
    let link = links.source(source_id);
    let last = history.first();
    let (what, session_id) = match (last_success, last) {
        (Some(t), _) => (
            format!(
                "its last successful session ended {} ({days} days ago)",
                super::session::rfc3339(t)
            ),
            last.map(|s| s.id.clone()),
        ),
        (None, Some(s)) => (
            format!(
                "none of its sessions since {} succeeded",
                super::session::rfc3339(since)
            ),
            Some(s.id.clone()),
        ),
        (None, None) => unreachable!("a silence is measured from a session"),
    };
    let latest = match last {
        Some(s) => format!(" The latest session is {} ({}).", s.id, s.status.as_str()),
        None => String::new(),
    };
    Some(Alert {
        kind: AlertKind::NoSuccess,
        source_id: source_id.to_string(),
        session_id,
        at: now,
        subject: format!("Trawl: no successful harvest of {source_id} for {days} days"),
        body: format!(
            "Source {source_id} has had no successful session for {days} days (alert_after_days \
             is {}): {what}.{latest} Check that it is enabled and its schedule runs, and look \
             at {link}.",
            rules.after_days
        ),
        link,
    })
}

fn reasons_line(summary: &SessionSummary) -> String {
    let mut reasons: Vec<(&String, &u64)> = summary.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = reasons
        .iter()
        .take(3)
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    if shown.is_empty() {
        "no reason recorded".into()
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::{StaleReport, SummaryListing};
    use crate::model::Counters;
    use chrono::TimeZone;

    fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn session(day: u32, status: SessionStatus) -> Session {
        let mut s = Session::start("src", t(day, 3), t(day, 3));
        s.status = status;
        s.ended_at = (status != SessionStatus::Running).then(|| t(day, 4));
        s.counters = Counters {
            total: 10,
            failed: if status == SessionStatus::Failed {
                10
            } else {
                0
            },
            harvested: if status == SessionStatus::Failed {
                0
            } else {
                10
            },
            ..Counters::default()
        };
        s
    }

    fn summary(session: &Session) -> SessionSummary {
        SessionSummary {
            session_id: session.id.clone(),
            source_id: session.source_id.clone(),
            status: session.status,
            scheduled_time: session.scheduled_time,
            started_at: session.started_at,
            ended_at: session.ended_at,
            duration_seconds: 3600.0,
            counters: session.counters,
            listing_error: session.listing_error.clone(),
            listing: SummaryListing {
                complete: true,
                incremental_since: None,
                listed: 10,
                expected_total: None,
                problems: vec![],
            },
            reasons: [("NOT_FOUND".to_string(), 7), ("TIMEOUT".to_string(), 3)].into(),
            failed_resources: vec![],
            failed_resources_truncated: false,
            restored: vec![],
            restored_count: 0,
            pending_markers: 0,
            held_deletions: 0,
            changes: Default::default(),
            stale: None,
            records_prefix: "records/src/".into(),
        }
    }

    const RULES: AlertRules = AlertRules {
        failures_in_a_row: 3,
        after_days: 7,
    };

    fn kinds(alerts: &[Alert]) -> Vec<AlertKind> {
        alerts.iter().map(|a| a.kind).collect()
    }

    /// Newest first, as `queries::recent_sessions` returns them.
    fn history(statuses: &[(u32, SessionStatus)]) -> Vec<Session> {
        statuses.iter().map(|(d, s)| session(*d, *s)).collect()
    }

    #[test]
    fn a_failed_listing_fires_session_failed_with_its_error_and_where_to_look() {
        let mut s = session(10, SessionStatus::Failed);
        s.listing_error = Some("HTTP 503 from info/index.json".into());
        let alerts = at_close(&s, &summary(&s), &[], RULES, &AlertLinks::default());
        assert_eq!(kinds(&alerts), [AlertKind::SessionFailed]);
        let a = &alerts[0];
        assert_eq!(a.source_id, "src");
        assert_eq!(a.session_id.as_deref(), Some(s.id.as_str()));
        assert!(!a.subject.contains('\n'));
        assert!(
            a.body.contains("HTTP 503 from info/index.json"),
            "{}",
            a.body
        );
        assert_eq!(a.link, format!("trawl session {}", s.id));
        assert!(a.body.contains(&a.link));
    }

    #[test]
    fn a_session_that_harvested_nothing_names_its_top_reasons() {
        let s = session(10, SessionStatus::Failed);
        let alerts = at_close(&s, &summary(&s), &[], RULES, &AlertLinks::default());
        assert!(
            alerts[0].body.contains("NOT_FOUND 7, TIMEOUT 3"),
            "{}",
            alerts[0].body
        );
    }

    #[test]
    fn partial_failures_successes_and_aborts_fire_nothing() {
        for status in [
            SessionStatus::Succeeded,
            SessionStatus::PartiallyFailed,
            SessionStatus::Aborted,
        ] {
            let s = session(10, status);
            let failed_before = history(&[(9, SessionStatus::Failed), (8, SessionStatus::Failed)]);
            let alerts = at_close(
                &s,
                &summary(&s),
                &failed_before,
                RULES,
                &AlertLinks::default(),
            );
            assert!(alerts.is_empty(), "{status:?}: {alerts:?}");
        }
    }

    #[test]
    fn failing_in_a_row_fires_when_the_streak_reaches_k_and_not_before_or_after() {
        let s = session(10, SessionStatus::Failed);
        let one_before = history(&[(9, SessionStatus::Failed), (8, SessionStatus::Succeeded)]);
        assert_eq!(failure_streak_reached(&s, &one_before, 3), None, "2 < K");
        let two_before = history(&[
            (9, SessionStatus::Failed),
            (8, SessionStatus::Failed),
            (7, SessionStatus::Succeeded),
        ]);
        assert_eq!(failure_streak_reached(&s, &two_before, 3), Some(3));
        let three_before = history(&[
            (9, SessionStatus::Failed),
            (8, SessionStatus::Failed),
            (7, SessionStatus::Failed),
        ]);
        assert_eq!(
            failure_streak_reached(&s, &three_before, 3),
            None,
            "the 4th failure does not fire again"
        );
        let alerts = at_close(&s, &summary(&s), &two_before, RULES, &AlertLinks::default());
        assert_eq!(
            kinds(&alerts),
            [AlertKind::SessionFailed, AlertKind::FailingInARow]
        );
        assert!(alerts[1].body.contains("trawl check src"));
    }

    #[test]
    fn a_streak_starts_with_no_history_and_skips_aborted_sessions() {
        let s = session(10, SessionStatus::Failed);
        assert_eq!(failure_streak_reached(&s, &[], 1), Some(1));
        assert_eq!(failure_streak_reached(&s, &[], 2), None);
        let with_abort = history(&[
            (9, SessionStatus::Aborted),
            (8, SessionStatus::Failed),
            (7, SessionStatus::PartiallyFailed),
        ]);
        assert_eq!(failure_streak_reached(&s, &with_abort, 2), Some(2));
        // The session itself in the history (read back after its close) is not counted twice.
        let mut itself = vec![s.clone()];
        itself.extend(history(&[(9, SessionStatus::Failed)]));
        assert_eq!(failure_streak_reached(&s, &itself, 2), Some(2));
    }

    #[test]
    fn held_deletions_are_said_with_their_number_and_how_to_decide() {
        let session = session(10, SessionStatus::Succeeded);
        let mut sum = summary(&session);
        let links = AlertLinks {
            dashboard_url: None,
        };
        assert!(at_close(&session, &sum, &[], RULES, &links).is_empty());
        sum.held_deletions = 3;
        let alerts = at_close(&session, &sum, &[], RULES, &links);
        assert_eq!(kinds(&alerts), [AlertKind::DeletionsHeld]);
        assert!(
            alerts[0].subject.contains("3 deletions"),
            "{}",
            alerts[0].subject
        );
        assert!(
            alerts[0].body.contains("trawl deletions approve"),
            "{}",
            alerts[0].body
        );
    }

    #[test]
    fn the_shrink_guard_blocking_deletions_fires_with_the_figures() {
        let s = session(10, SessionStatus::Succeeded);
        let mut sum = summary(&s);
        sum.stale = Some(StaleReport {
            skipped: Some("the listing shrank".into()),
            known: 100,
            missing: 60,
            shrink_guard: true,
            ..StaleReport::default()
        });
        let links = AlertLinks {
            dashboard_url: Some("https://trawl.example.org/dash".into()),
        };
        let alerts = at_close(&s, &sum, &[], RULES, &links);
        assert_eq!(kinds(&alerts), [AlertKind::DeletionsBlocked]);
        assert!(alerts[0].body.contains("60") && alerts[0].body.contains("100"));
        assert_eq!(
            alerts[0].link,
            "https://trawl.example.org/dash/#/session/src%4020261110T030000Z"
        );
        // Skipped for another reason (an incomplete listing): not the shrink guard.
        sum.stale.as_mut().unwrap().shrink_guard = false;
        assert!(at_close(&s, &sum, &[], RULES, &links).is_empty());
    }

    #[test]
    fn no_success_fires_once_the_silence_reaches_alert_after_days() {
        let links = AlertLinks::default();
        // Last success ended on the 1st at 04:00; then only failures.
        let h = history(&[(5, SessionStatus::Failed), (1, SessionStatus::Succeeded)]);
        let due = t(8, 4);
        assert!(no_success("src", &h, due - Duration::seconds(1), RULES, None, &links).is_none());
        let alert = no_success("src", &h, due, RULES, None, &links).expect("due");
        assert_eq!(alert.kind, AlertKind::NoSuccess);
        assert_eq!(alert.link, "trawl sessions src");
        assert!(alert.body.contains("7 days"), "{}", alert.body);
        assert!(
            alert.body.contains("src@20261105T030000Z"),
            "{}",
            alert.body
        );
    }

    #[test]
    fn no_success_fires_at_most_once_a_day_for_the_same_silence() {
        let links = AlertLinks::default();
        let h = history(&[(1, SessionStatus::Succeeded)]);
        let fired = t(8, 4);
        let later = |hours| fired + Duration::hours(hours);
        assert!(no_success("src", &h, later(23), RULES, Some(fired), &links).is_none());
        assert!(no_success("src", &h, later(24), RULES, Some(fired), &links).is_some());
        // An alert about an earlier silence (before a success) does not hold this one back.
        let h = history(&[(12, SessionStatus::Succeeded)]);
        assert!(no_success("src", &h, t(19, 4), RULES, Some(t(18, 4)), &links).is_some());
    }

    #[test]
    fn no_success_counts_from_the_oldest_session_when_none_succeeded_and_needs_one() {
        let links = AlertLinks::default();
        let h = history(&[(9, SessionStatus::Failed), (2, SessionStatus::Failed)]);
        // The oldest started on the 2nd at 03:00: due 7 days later.
        let alert = no_success("src", &h, t(9, 3), RULES, None, &links).expect("due");
        assert!(
            alert.body.contains("none of its sessions since"),
            "{}",
            alert.body
        );
        let before = t(9, 3) - Duration::seconds(1);
        assert!(no_success("src", &h, before, RULES, None, &links).is_none());
        assert!(no_success("src", &[], t(30, 0), RULES, None, &links).is_none());
        // A partial failure is a success here: the listing worked.
        let h = history(&[
            (9, SessionStatus::PartiallyFailed),
            (1, SessionStatus::Failed),
        ]);
        assert!(no_success("src", &h, t(12, 0), RULES, None, &links).is_none());
    }
}

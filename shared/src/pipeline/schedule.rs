//! Stage 1: start sessions for the sources that are due, and list their first page.

use super::listing::{list_page, PageResult};
use super::Services;
use crate::messages::{SourceSnapshot, WorkMessage};
use crate::model::selection::Selection;
use crate::model::{Session, Trigger};
use crate::ports::{SessionStart, SourceEntry, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleReport {
    /// Sessions started by this invocation.
    pub started: Vec<String>,
    /// Sessions this (source, scheduled time) already had: nothing was created or sent again.
    pub already_started: Vec<String>,
    /// Due sources skipped because a previous session is still running.
    pub busy: Vec<String>,
    /// Sources that could not be started, with why.
    pub errors: Vec<String>,
    /// Running sessions past their deadline, wound up by the watchdog on this tick.
    pub expired: Vec<String>,
    /// Running sessions whose stalled listing page the watchdog sent again.
    pub resumed_listings: Vec<String>,
    /// Sessions with nothing remaining, still open, that the watchdog closed.
    pub closed: Vec<String>,
}

/// An EventBridge Scheduler tick: winds up sessions past their deadline, then starts every
/// enabled source that fires in the tick's window.
pub async fn on_tick(
    svc: &Services,
    scheduled_time: DateTime<Utc>,
) -> Result<ScheduleReport, StoreError> {
    let window_start = scheduled_time - Duration::minutes(i64::from(svc.settings.tick_minutes));
    let sweep = super::watchdog::sweep(svc, svc.clock.now()).await?;
    let mut report = ScheduleReport {
        expired: sweep.expired,
        resumed_listings: sweep.resumed_listings,
        closed: sweep.closed,
        ..ScheduleReport::default()
    };
    for entry in svc.store.list_sources().await? {
        if !entry.source.enabled {
            continue;
        }
        if let Some(fire) = entry
            .source
            .schedule()
            .fire_time_in(window_start, scheduled_time)
        {
            start(svc, &entry, fire, Start::Schedule, &mut report).await?;
        }
    }
    // After the sessions are started: a source that just started is not silent any more
    // than it was, and a failing start must not be hidden behind an alert.
    super::alerts::on_tick(svc, scheduled_time).await;
    Ok(report)
}

/// A manual run ("harvest now"): the session is named after `at`.
pub async fn run_now(
    svc: &Services,
    source_id: &str,
    at: DateTime<Utc>,
) -> Result<ScheduleReport, StoreError> {
    let mut report = ScheduleReport::default();
    match svc.store.get_source(source_id).await? {
        Some(entry) => start(svc, &entry, at, Start::Manual, &mut report).await?,
        None => report.errors.push(format!("{source_id}: no such source")),
    }
    Ok(report)
}

/// Harvests only `selection`'s resources of the source, now (a session with trigger
/// `selection`, named after `at`). A disabled source is harvested too: naming resources is
/// an operator's (or a trusted push's) explicit request.
pub async fn run_selection(
    svc: &Services,
    source_id: &str,
    selection: &Selection,
    at: DateTime<Utc>,
) -> Result<ScheduleReport, StoreError> {
    let mut report = ScheduleReport::default();
    match svc.store.get_source(source_id).await? {
        Some(entry) => start(svc, &entry, at, Start::Selection(selection), &mut report).await?,
        None => report.errors.push(format!("{source_id}: no such source")),
    }
    Ok(report)
}

/// A deployment's harvest (`HarvestOnDeploy`): one session of every enabled source, with
/// trigger `deploy`. Their first pages are queued rather than listed here, so the call takes
/// the same short time however many sources there are (CloudFormation waits on it).
pub async fn run_on_deploy(
    svc: &Services,
    at: DateTime<Utc>,
) -> Result<ScheduleReport, StoreError> {
    let mut report = ScheduleReport::default();
    for entry in svc.store.list_sources().await? {
        if entry.source.enabled {
            start(svc, &entry, at, Start::Deploy, &mut report).await?;
        }
    }
    Ok(report)
}

/// How a session is started: what it records as its trigger, and what it lists.
#[derive(Clone, Copy)]
enum Start<'a> {
    Schedule,
    Manual,
    Deploy,
    Selection(&'a Selection),
}

impl Start<'_> {
    fn trigger(&self) -> Trigger {
        match self {
            Start::Schedule => Trigger::Schedule,
            Start::Manual => Trigger::Manual,
            Start::Deploy => Trigger::Deploy,
            Start::Selection(_) => Trigger::Selection,
        }
    }
}

async fn start(
    svc: &Services,
    entry: &SourceEntry,
    scheduled_time: DateTime<Utc>,
    how: Start<'_>,
    report: &mut ScheduleReport,
) -> Result<(), StoreError> {
    let now = svc.clock.now();
    let mut session = Session::start(&entry.source.id, scheduled_time, now);
    session.trigger = Some(how.trigger());
    if let Start::Selection(selection) = how {
        // Saved before the session exists, so whatever lists its page reads these ids.
        let key = crate::keys::selection_key(&entry.source.id, &session.stamp());
        let document = crate::documents::SelectionDocument {
            session_id: session.id.clone(),
            resource_ids: selection.ids().to_vec(),
        };
        crate::documents::put(svc.objects.as_ref(), &key, &document).await?;
    } else if let Some((since, base)) = super::incremental::window(svc, entry, now).await? {
        session.since = Some(since);
        session.base_session = Some(base);
    }
    let resume = match svc.store.create_session(&session).await? {
        SessionStart::Created => false,
        // A retried invocation: finish page 1 if the first attempt died before sending it.
        SessionStart::AlreadyExists(existing) => {
            let page1 = svc.store.get_page(&existing.id, 1).await?;
            if page1.is_some_and(|p| p.sent) {
                report.already_started.push(existing.id.clone());
                return Ok(());
            }
            true
        }
        SessionStart::SourceBusy { running } => {
            tracing::warn!(source = %entry.source.id, %running, "previous session still running; not starting another");
            report.busy.push(entry.source.id.clone());
            return Ok(());
        }
        SessionStart::UnknownSource => {
            report
                .errors
                .push(format!("{}: no such source", entry.source.id));
            return Ok(());
        }
    };
    let source = SourceSnapshot::from(&entry.source);
    tracing::info!(session = %session.id, resume, since = ?session.since, "session started");
    // The first page is listed right here; when the remote is flaky, or for a deployment
    // (which must answer CloudFormation in bounded time), it is handed to the work queue so
    // SQS lists (and retries) it like any other unit of work.
    let queue_first_page = match how {
        Start::Deploy => true,
        _ => match list_page(svc, &session.id, &source, 1, None, 0, false).await? {
            PageResult::Retry(reason) => {
                tracing::warn!(session = %session.id, %reason, "first listing failed; retrying through the queue");
                true
            }
            PageResult::Listed { .. } | PageResult::AlreadyListed => false,
        },
    };
    if queue_first_page {
        svc.queue
            .send(&[WorkMessage::ListPage {
                session_id: session.id.clone(),
                source,
                page: 1,
                cursor: None,
                delivered: 0,
            }])
            .await?;
    }
    report.started.push(session.id);
    Ok(())
}

//! Alerts raised by the real stages (the close, the tick) against the in-memory adapters and
//! a fixture ERDDAP server; the webhook sink against a local HTTP server that answers, fails,
//! or never answers.

mod common;

use async_trait::async_trait;
use common::{erddap_world, t};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trawl::model::alert::{Alert, AlertKind};
use trawl::model::{SessionStatus, SourceOptions};
use trawl::pipeline::alerts::{AllOf, WebhookAlerts};
use trawl::pipeline::finalize::{finalize_session, Finalized};
use trawl::pipeline::schedule::run_now;
use trawl::ports::{AlertError, AlertSink, SourceRegistry};

/// Keeps what it is given.
#[derive(Default)]
struct Recorded(Mutex<Vec<Alert>>);

#[async_trait]
impl AlertSink for Recorded {
    async fn publish(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        self.0.lock().unwrap().extend(alerts.iter().cloned());
        Ok(())
    }
}

impl Recorded {
    fn kinds(&self) -> Vec<AlertKind> {
        self.0.lock().unwrap().iter().map(|a| a.kind).collect()
    }
    fn take(&self) -> Vec<Alert> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Always fails.
struct Broken;

#[async_trait]
impl AlertSink for Broken {
    async fn publish(&self, _: &[Alert]) -> Result<(), AlertError> {
        Err(AlertError("the topic is gone".into()))
    }
}

async fn point_at_missing_listing(w: &common::ErddapWorld) {
    let mut source = w.store.get_source("src").await.unwrap().unwrap().source;
    source.base_url = format!("{}/missing", w.fixture.base_url());
    w.store.put_source(&source).await.unwrap();
}

/// A session whose listing fails (404), closed; its id.
async fn failed_session(w: &common::ErddapWorld, day: &str) -> String {
    let report = run_now(&w.svc, "src", t(&format!("{day}T12:00:00Z")))
        .await
        .unwrap();
    let id = report.started[0].clone();
    assert_eq!(
        finalize_session(&w.svc, &id).await.unwrap(),
        Finalized::Closed(SessionStatus::Failed)
    );
    id
}

#[tokio::test]
async fn a_failed_listing_raises_one_alert_naming_the_session_even_when_the_stream_redelivers() {
    let mut w = erddap_world(3, &[]).await;
    let recorded = Arc::new(Recorded::default());
    w.svc.alerts = recorded.clone();
    point_at_missing_listing(&w).await;
    let id = failed_session(&w, "2026-11-22").await;
    // The stream's record delivered again: the session is closed already, nothing is said twice.
    assert_eq!(
        finalize_session(&w.svc, &id).await.unwrap(),
        Finalized::AlreadyClosed
    );
    let alerts = recorded.take();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.kind, AlertKind::SessionFailed);
    assert_eq!(
        (a.source_id.as_str(), a.session_id.as_deref()),
        ("src", Some(id.as_str()))
    );
    assert!(a.body.contains("NOT_FOUND"), "{}", a.body);
    assert!(
        a.body.contains(&format!("trawl session {id}")),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn failing_in_a_row_fires_on_the_kth_failure_of_the_source_only() {
    let mut w = erddap_world(3, &[]).await;
    let recorded = Arc::new(Recorded::default());
    w.svc.alerts = recorded.clone();
    w.set_options(SourceOptions {
        alert_failures_in_a_row: Some(2),
        ..Default::default()
    })
    .await;
    point_at_missing_listing(&w).await;
    failed_session(&w, "2026-11-20").await;
    assert_eq!(
        recorded.take().len(),
        1,
        "the first failure: session_failed alone"
    );
    let second = failed_session(&w, "2026-11-21").await;
    let alerts = recorded.take();
    assert_eq!(
        alerts.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [AlertKind::SessionFailed, AlertKind::FailingInARow]
    );
    assert_eq!(alerts[1].session_id.as_deref(), Some(second.as_str()));
    failed_session(&w, "2026-11-22").await;
    assert_eq!(
        recorded.kinds(),
        [AlertKind::SessionFailed],
        "the 3rd: not again"
    );
}

#[tokio::test]
async fn a_listing_that_shrank_past_the_guard_raises_deletions_blocked() {
    let mut w = erddap_world(10, &[]).await;
    let recorded = Arc::new(Recorded::default());
    w.svc.alerts = recorded.clone();
    assert_eq!(
        w.harvest("2026-11-20").await.status,
        SessionStatus::Succeeded
    );
    assert!(recorded.take().is_empty(), "a success says nothing");
    for id in w.fixture.dataset_ids_in_listing_order().into_iter().take(6) {
        w.fixture.remove_dataset(&id);
    }
    let s = w.harvest("2026-11-21").await;
    assert!(w.stale_report(&s).await.shrink_guard);
    let alerts = recorded.take();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::DeletionsBlocked);
    assert!(
        alerts[0].body.contains("6 resources fewer than the 10"),
        "{}",
        alerts[0].body
    );
}

#[tokio::test]
async fn the_tick_notices_a_source_that_stopped_succeeding_once_a_day() {
    let mut w = erddap_world(2, &[]).await;
    let recorded = Arc::new(Recorded::default());
    w.svc.alerts = recorded.clone();
    let ok = w.harvest("2026-11-01").await;
    let ended = ok.ended_at.unwrap();
    let tick = |at| trawl::pipeline::alerts::on_tick(&w.svc, at);
    // alert_after_days defaults to 7.
    tick(ended + chrono::Duration::days(7) - chrono::Duration::minutes(5)).await;
    assert!(recorded.take().is_empty());
    tick(ended + chrono::Duration::days(7)).await;
    let alerts = recorded.take();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::NoSuccess);
    assert_eq!(alerts[0].session_id.as_deref(), Some(ok.id.as_str()));
    tick(ended + chrono::Duration::days(7) + chrono::Duration::hours(23)).await;
    assert!(recorded.take().is_empty(), "once a day");
    tick(ended + chrono::Duration::days(8)).await;
    assert_eq!(recorded.kinds(), [AlertKind::NoSuccess]);
    // A disabled source is the operator's choice: nothing.
    let mut source = w.store.get_source("src").await.unwrap().unwrap().source;
    source.enabled = false;
    w.store.put_source(&source).await.unwrap();
    recorded.take();
    tick(ended + chrono::Duration::days(20)).await;
    assert!(recorded.take().is_empty());
}

#[tokio::test]
async fn a_sink_that_fails_does_not_fail_the_close_and_the_others_still_get_the_alert() {
    let mut w = erddap_world(3, &[]).await;
    let recorded = Arc::new(Recorded::default());
    w.svc.alerts = Arc::new(AllOf(vec![Arc::new(Broken), recorded.clone()]));
    point_at_missing_listing(&w).await;
    let id = failed_session(&w, "2026-11-22").await;
    assert_eq!(w.session(&id).await.status, SessionStatus::Failed);
    assert_eq!(recorded.kinds(), [AlertKind::SessionFailed]);
}

/// How the local webhook answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    ServerError,
    Never,
}

/// A one-route HTTP server on loopback (a thread per request) that keeps each request's body.
fn webhook_server(answer: Answer) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let n = socket.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break body.to_string();
                        }
                    }
                };
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or_default());
                let status = match answer {
                    Answer::Ok => "200 OK",
                    Answer::ServerError => "500 Internal Server Error",
                    // Holds the connection without a word, for longer than any test.
                    Answer::Never => {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                };
                let _ = socket.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                );
            });
        }
    });
    (url, bodies)
}

#[tokio::test]
async fn the_webhook_gets_a_json_body_with_text_kind_source_session_and_link() {
    let (url, bodies) = webhook_server(Answer::Ok);
    let mut w = erddap_world(3, &[]).await;
    w.svc.settings.alerts.dashboard_url = Some("https://trawl.example.org/".into());
    w.svc.alerts = Arc::new(WebhookAlerts::new(&url, Duration::from_secs(2)).unwrap());
    point_at_missing_listing(&w).await;
    let id = failed_session(&w, "2026-11-22").await;
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let b = &bodies[0];
    assert_eq!(b["kind"], "session_failed");
    assert_eq!(b["source"], "src");
    assert_eq!(b["session"], id.as_str());
    assert_eq!(
        b["link"],
        format!(
            "https://trawl.example.org/#/session/{}",
            id.replace('@', "%40")
        )
    );
    let text = b["text"].as_str().unwrap();
    assert!(
        text.contains("failed") && text.contains("#/session/"),
        "{text}"
    );
}

#[tokio::test]
async fn a_webhook_that_fails_or_hangs_delays_the_close_by_its_timeout_at_most() {
    for answer in [Answer::ServerError, Answer::Never] {
        let (url, bodies) = webhook_server(answer);
        let webhook = WebhookAlerts::new(&url, Duration::from_millis(300)).unwrap();
        let mut w = erddap_world(3, &[]).await;
        w.svc.alerts = Arc::new(webhook);
        point_at_missing_listing(&w).await;
        let started = std::time::Instant::now();
        let id = failed_session(&w, "2026-11-22").await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(w.session(&id).await.status, SessionStatus::Failed);
        assert_eq!(bodies.lock().unwrap().len(), 1, "the webhook was called");
        // Said as a failure, for the caller to log and count.
        let direct = WebhookAlerts::new(&url, Duration::from_millis(300)).unwrap();
        let alert = Alert {
            kind: AlertKind::SessionFailed,
            source_id: "src".into(),
            session_id: Some(id.clone()),
            at: chrono::Utc::now(),
            subject: "s".into(),
            body: "b".into(),
            link: "l".into(),
        };
        let error = direct.publish(&[alert]).await.unwrap_err();
        assert!(
            error.0.contains("500")
                || error.0.contains("did not answer")
                || error.0.contains("webhook"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_webhook_url_that_is_not_http_is_refused_up_front() {
    assert!(WebhookAlerts::new("ftp://chat.example.org/hook", Duration::from_secs(1)).is_err());
    assert!(WebhookAlerts::new("not a url", Duration::from_secs(1)).is_err());
}

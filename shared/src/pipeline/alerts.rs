//! Raising alerts: the rules of `model::alert` applied at a session's close and on every
//! scheduler tick, and published through the [`AlertSink`] port. Nothing here fails its
//! caller: a history that cannot be read or an alert that cannot be delivered is logged and
//! counted (`AlertPublishFailures`), and the close or the tick goes on.
//!
//! Sinks: [`LogAlerts`] (the default: a log line), [`WebhookAlerts`] (a chat tool's incoming
//! webhook), [`EmbeddedAlerts`] (the embedded run: stderr and `alerts.json` beside the
//! summary), `aws::sns::SnsAlerts` (the stack's topic), and [`AllOf`] for several.

use super::Services;
use crate::documents::{self, SessionSummary};
use crate::keys;
use crate::model::alert::{self, Alert, AlertLinks, AlertRules};
use crate::model::{Session, SourceOptions};
use crate::ports::{AlertError, AlertSink, ObjectStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How many of a source's recent sessions the rules look over.
const HISTORY: usize = 30;

/// The deployment's alert settings (template parameters → function environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    /// `AlertFailuresInARow`: K, unless a source sets `alert_failures_in_a_row`.
    pub failures_in_a_row: u32,
    /// `AlertAfterDays`: unless a source sets `alert_after_days`.
    pub after_days: u32,
    /// `DashboardUrl`: alerts link to its views; without it they name the CLI command.
    pub dashboard_url: Option<String>,
}

impl Default for AlertSettings {
    fn default() -> AlertSettings {
        AlertSettings {
            failures_in_a_row: 3,
            after_days: 7,
            dashboard_url: None,
        }
    }
}

impl AlertSettings {
    pub fn rules(&self, options: Option<&SourceOptions>) -> AlertRules {
        AlertRules {
            failures_in_a_row: options
                .and_then(|o| o.alert_failures_in_a_row)
                .unwrap_or(self.failures_in_a_row)
                .max(1),
            after_days: options
                .and_then(|o| o.alert_after_days)
                .unwrap_or(self.after_days)
                .max(1),
        }
    }

    pub fn links(&self) -> AlertLinks {
        AlertLinks {
            dashboard_url: self.dashboard_url.clone(),
        }
    }
}

/// The close of `session` (just closed by this call): its alerts, published. Never fails.
pub async fn at_close(svc: &Services, session: &Session, summary: &SessionSummary) {
    let options = match svc.store.get_source(&session.source_id).await {
        Ok(entry) => entry.map(|e| e.source.options),
        Err(e) => {
            tracing::warn!(session = %session.id, error = %e, "alerts: source not read; deployment defaults apply");
            None
        }
    };
    let rules = svc.settings.alerts.rules(options.as_ref());
    let links = svc.settings.alerts.links();
    let history = match crate::queries::recent_sessions(svc, &session.source_id, HISTORY).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(session = %session.id, error = %e, "alerts: history not read; judging the session alone");
            Vec::new()
        }
    };
    let others: Vec<Session> = history
        .iter()
        .filter(|s| s.id != session.id)
        .cloned()
        .collect();
    let mut alerts = alert::at_close(session, summary, &others, rules, &links);
    // The source's history with this session in it, newest first.
    let mut with_this = vec![session.clone()];
    with_this.extend(others);
    alerts.extend(no_success(svc, &session.source_id, &with_this, rules, &links).await);
    publish(svc, &alerts).await;
}

/// Every scheduler tick: "no success" for each enabled source, so a source that stopped
/// running at all is noticed. Never fails.
pub async fn on_tick(svc: &Services, now: DateTime<Utc>) {
    let sources = match svc.store.list_sources().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "alerts: sources not listed; no staleness check this tick");
            return;
        }
    };
    let links = svc.settings.alerts.links();
    let mut alerts = Vec::new();
    for entry in sources.into_iter().filter(|e| e.source.enabled) {
        let rules = svc.settings.alerts.rules(Some(&entry.source.options));
        // The common case in one read: the last session succeeded recently enough.
        if let (Some(status), Some(last)) = (entry.last_status, &entry.last_session) {
            if alert::is_success(status) {
                if let Ok(Some(s)) = svc.store.get_session(last).await {
                    let ended = s.ended_at.unwrap_or(s.started_at);
                    if now < ended + chrono::Duration::days(i64::from(rules.after_days)) {
                        continue;
                    }
                }
            }
        }
        let history = match crate::queries::recent_sessions(svc, &entry.source.id, HISTORY).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(source = %entry.source.id, error = %e, "alerts: history not read");
                continue;
            }
        };
        alerts.extend(no_success_at(svc, &entry.source.id, &history, rules, &links, now).await);
    }
    publish(svc, &alerts).await;
}

/// When the "no success" alert last fired for a source.
#[derive(Debug, Serialize, Deserialize)]
struct NoSuccessMemory {
    alerted_at: DateTime<Utc>,
}

async fn no_success(
    svc: &Services,
    source_id: &str,
    history: &[Session],
    rules: AlertRules,
    links: &AlertLinks,
) -> Option<Alert> {
    let now = svc.clock.now();
    no_success_at(svc, source_id, history, rules, links, now).await
}

/// The rule, with its once-a-day memory kept in the object store. Losing the memory (a
/// failed read or write) costs one extra alert at most, never a missed one.
async fn no_success_at(
    svc: &Services,
    source_id: &str,
    history: &[Session],
    rules: AlertRules,
    links: &AlertLinks,
    now: DateTime<Utc>,
) -> Option<Alert> {
    let key = keys::no_success_alert_key(source_id);
    let last: Option<NoSuccessMemory> = documents::get(svc.objects.as_ref(), &key)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(source = %source_id, error = %e, "alerts: no_success memory not read");
            None
        });
    let alert = alert::no_success(
        source_id,
        history,
        now,
        rules,
        last.map(|m| m.alerted_at),
        links,
    )?;
    let memory = NoSuccessMemory { alerted_at: now };
    if let Err(e) = documents::put_readable(svc.objects.as_ref(), &key, &memory).await {
        tracing::warn!(source = %source_id, error = %e, "alerts: no_success memory not written");
    }
    Some(alert)
}

/// Publishes `alerts` (if any); a failure is logged and counted, not returned.
pub async fn publish(svc: &Services, alerts: &[Alert]) {
    if alerts.is_empty() {
        return;
    }
    for a in alerts {
        tracing::warn!(kind = a.kind.as_str(), source = %a.source_id, session = ?a.session_id, subject = %a.subject, "alert");
    }
    if let Err(e) = svc.alerts.publish(alerts).await {
        tracing::error!(error = %e, alerts = alerts.len(), "alerts could not be published");
        if svc.settings.emit_metrics {
            super::metrics::print(&super::metrics::publish_failures(
                svc.clock.now(),
                alerts.len(),
            ));
        }
    }
}

/// The default sink: the alert is in the log (`publish` logs every alert) and nowhere else.
pub struct LogAlerts;

#[async_trait]
impl AlertSink for LogAlerts {
    async fn publish(&self, _alerts: &[Alert]) -> Result<(), AlertError> {
        Ok(())
    }
}

/// Several sinks: each gets every alert; one failing does not keep the others from theirs.
pub struct AllOf(pub Vec<Arc<dyn AlertSink>>);

#[async_trait]
impl AlertSink for AllOf {
    async fn publish(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        let mut failures = Vec::new();
        for sink in &self.0 {
            if let Err(e) = sink.publish(alerts).await {
                failures.push(e.0);
            }
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(AlertError(failures.join("; "))),
        }
    }
}

/// A chat tool's incoming webhook (`WebhookUrl`): one POST of JSON per alert,
/// `{text, kind, source, session, link}`. Bounded by `timeout` per request, so a hanging
/// endpoint delays a close by that at most.
pub struct WebhookAlerts {
    url: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl WebhookAlerts {
    /// The webhook is the operator's own address (a chat bridge may well be on a private
    /// network), so it is not held to the remote catalogs' address rules; it follows no
    /// redirects.
    pub fn new(url: &str, timeout: Duration) -> Result<WebhookAlerts, AlertError> {
        let parsed =
            url::Url::parse(url).map_err(|e| AlertError(format!("webhook URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(AlertError(format!("webhook URL {url:?} is not http(s)")));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("Trawl/", env!("CARGO_PKG_VERSION"), " (alerts)"))
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AlertError(format!("webhook client: {e}")))?;
        Ok(WebhookAlerts {
            url: url.to_string(),
            client,
            timeout,
        })
    }

    /// The JSON body posted for one alert (`text` is what chat tools show).
    pub fn body(alert: &Alert) -> serde_json::Value {
        serde_json::json!({
            "text": format!("{}\n{}", alert.subject, alert.body),
            "kind": alert.kind.as_str(),
            "source": alert.source_id,
            "session": alert.session_id,
            "link": alert.link,
        })
    }
}

#[async_trait]
impl AlertSink for WebhookAlerts {
    async fn publish(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        let mut failures = Vec::new();
        for alert in alerts {
            let sent = tokio::time::timeout(
                self.timeout,
                self.client.post(&self.url).json(&Self::body(alert)).send(),
            )
            .await;
            match sent {
                Ok(Ok(response)) if response.status().is_success() => {}
                Ok(Ok(response)) => failures.push(format!(
                    "webhook answered {} to the {} alert",
                    response.status().as_u16(),
                    alert.kind.as_str()
                )),
                Ok(Err(e)) => failures.push(format!("webhook: {e}")),
                Err(_) => failures.push(format!(
                    "webhook did not answer within {} ms",
                    self.timeout.as_millis()
                )),
            }
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(AlertError(failures.join("; "))),
        }
    }
}

/// The embedded run's alerts: printed to stderr, and a session's alerts written beside its
/// summary (`sessions/{source}/{stamp}/alerts.json`, pruned with it).
pub struct EmbeddedAlerts {
    objects: Arc<dyn ObjectStore>,
    /// Printed under each alert: how to open what its link points at.
    hint: Option<String>,
}

impl EmbeddedAlerts {
    pub fn new(objects: Arc<dyn ObjectStore>) -> EmbeddedAlerts {
        EmbeddedAlerts {
            objects,
            hint: None,
        }
    }

    pub fn with_hint(self, hint: impl Into<String>) -> EmbeddedAlerts {
        EmbeddedAlerts {
            hint: Some(hint.into()),
            ..self
        }
    }
}

#[async_trait]
impl AlertSink for EmbeddedAlerts {
    async fn publish(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        for a in alerts {
            eprintln!("ALERT {}: {}\n  {}", a.kind.as_str(), a.subject, a.body);
            if let Some(hint) = &self.hint {
                eprintln!("  ({hint})");
            }
        }
        let mut by_session: std::collections::BTreeMap<&str, Vec<&Alert>> = Default::default();
        for a in alerts {
            if let Some(session) = &a.session_id {
                by_session.entry(session.as_str()).or_default().push(a);
            }
        }
        for (session_id, new) in by_session {
            let Some((source, stamp)) = session_id.rsplit_once('@') else {
                continue;
            };
            let key = keys::session_alerts_key(source, stamp);
            let mut all: Vec<Alert> = documents::get(self.objects.as_ref(), &key)
                .await
                .map_err(store_failure)?
                .unwrap_or_default();
            let fresh: Vec<Alert> = new
                .into_iter()
                .filter(|a| !all_contains(&all, a))
                .cloned()
                .collect();
            all.extend(fresh);
            documents::put_readable(self.objects.as_ref(), &key, &all)
                .await
                .map_err(store_failure)?;
        }
        Ok(())
    }
}

fn all_contains(all: &[Alert], a: &Alert) -> bool {
    all.iter()
        .any(|b| b.kind == a.kind && b.session_id == a.session_id && b.at == a.at)
}

fn store_failure(e: StoreError) -> AlertError {
    AlertError(format!("alerts not written: {e}"))
}

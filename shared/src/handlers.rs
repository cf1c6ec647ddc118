//! The Lambda-facing edge: turns events into pipeline calls and results into responses.
//! The functions' `main.rs` and the local runner call exactly these.

use crate::model::selection::Selection;
use crate::pipeline::finalize::{finalize_session, Finalized};
use crate::pipeline::harvest::{handle_in_batch, retry_delay, Disposition};
use crate::pipeline::schedule::{on_tick, run_now, run_on_deploy, run_selection, ScheduleReport};
use crate::pipeline::tally::Tally;
use crate::pipeline::Services;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

/// What the scheduler accepts: the EventBridge Scheduler payload of `template.yaml`
/// (`{"scheduled_time": "<aws.scheduler.scheduled-time>"}`), an EventBridge scheduled event
/// (`time`), a manual run `{"source_id": "..."}` (optionally with `scheduled_time`), a
/// selection `{"source_id": "...", "resource_ids": [...]}` (harvest only those, now), or a
/// deployment's harvest `{"deploy": true}` (every enabled source). A CloudFormation custom
/// resource event goes to [`crate::deploy`] instead (see [`scheduler_function`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerEvent {
    scheduled_time: Option<DateTime<Utc>>,
    source_id: Option<String>,
    resource_ids: Option<Vec<String>>,
    #[serde(default)]
    deploy: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("bad event: {0}")]
    BadEvent(String),
    #[error(transparent)]
    Store(#[from] crate::ports::StoreError),
    /// A CloudFormation custom resource event whose answer could not be delivered.
    #[error("{0}")]
    Unanswered(String),
}

/// The scheduler function's whole event handling: a CloudFormation custom resource event is
/// answered to CloudFormation (always, see [`crate::deploy`]); anything else is a
/// [`scheduler`] event.
pub async fn scheduler_function(svc: &Services, payload: Value) -> Result<Value, HandlerError> {
    if crate::deploy::is_custom_resource_event(&payload) {
        let answer = crate::deploy::custom_resource(svc, payload).await?;
        return serde_json::to_value(answer).map_err(|e| HandlerError::BadEvent(e.to_string()));
    }
    let report = scheduler(svc, payload).await?;
    serde_json::to_value(report).map_err(|e| HandlerError::BadEvent(e.to_string()))
}

pub async fn scheduler(svc: &Services, payload: Value) -> Result<ScheduleReport, HandlerError> {
    let event = parse_scheduler_event(payload)?;
    let at = || {
        crate::model::session::whole_second(event.scheduled_time.unwrap_or_else(|| svc.clock.now()))
    };
    match (&event.source_id, &event.resource_ids, event.deploy) {
        (None, None, true) => Ok(run_on_deploy(svc, at()).await?),
        (Some(_), _, true) | (None, Some(_), true) => Err(HandlerError::BadEvent(
            "deploy starts every enabled source: it takes neither source_id nor resource_ids"
                .into(),
        )),
        (None, Some(_), false) => Err(HandlerError::BadEvent(
            "resource_ids needs the source_id they belong to".into(),
        )),
        (Some(source_id), Some(ids), false) => {
            let selection =
                Selection::new(ids.clone()).map_err(|e| HandlerError::BadEvent(e.to_string()))?;
            Ok(run_selection(svc, source_id, &selection, at()).await?)
        }
        (Some(source_id), None, false) => Ok(run_now(svc, source_id, at()).await?),
        (None, None, false) => {
            let at = event.scheduled_time.ok_or_else(|| {
                HandlerError::BadEvent(
                    "needs scheduled_time (a tick), source_id (a manual run, with resource_ids: a selection) or deploy".into(),
                )
            })?;
            Ok(on_tick(svc, at).await?)
        }
    }
}

fn parse_scheduler_event(payload: Value) -> Result<SchedulerEvent, HandlerError> {
    // EventBridge's classic scheduled event carries the time as `time`.
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let time = payload
            .get("time")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let at = time
            .parse()
            .map_err(|e| HandlerError::BadEvent(format!("time {time:?}: {e}")))?;
        return Ok(SchedulerEvent {
            scheduled_time: Some(at),
            source_id: None,
            resource_ids: None,
            deploy: false,
        });
    }
    serde_json::from_value(payload).map_err(|e| HandlerError::BadEvent(e.to_string()))
}

/// The SQS batch handler: every message is handled on its own; the ones to retry are
/// reported as batch item failures (the event source mapping has `ReportBatchItemFailures`).
pub async fn harvester(svc: &Services, event: SqsEvent) -> SqsBatchResponse {
    // What the batch is about, read once from its bodies (each message still reads its own).
    let mut sessions = std::collections::BTreeSet::new();
    let mut resources: Vec<(String, String)> = Vec::new();
    for message in event
        .records
        .iter()
        .filter_map(|r| r.body.as_deref())
        .filter_map(|b| serde_json::from_str::<crate::messages::WorkMessage>(b).ok())
    {
        sessions.insert(message.session_id().to_string());
        if let crate::messages::WorkMessage::Resource {
            source,
            resource_id,
            ..
        } = message
        {
            resources.push((source.id, resource_id));
        }
    }
    // Look up each session's abort flag once for the whole batch, before its messages run
    // concurrently and would each miss the cache. A failed lookup is retried per message.
    for session_id in &sessions {
        let _ = svc.session_aborted(session_id).await;
    }
    // The batch's resource states are read in one request and its outcomes counted in one
    // transaction (see `pipeline::tally`). A failed read leaves each message to read its own.
    let tally = Tally::new();
    if !resources.is_empty() {
        if let Err(e) = tally.prefetch(svc.store.as_ref(), &resources).await {
            tracing::warn!(error = %e, "batch read of resource states failed; reading one by one");
        }
    }
    let tally = &tally;
    let failures: Vec<BatchItemFailure> = futures::stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let receive_count = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let body = record.body.unwrap_or_default();
            let disposition = handle_in_batch(svc, tally, &id, &body, receive_count).await;
            if disposition == Disposition::Retry {
                if let Some(receipt) = record.receipt_handle.as_deref() {
                    let delay = retry_delay(receive_count, svc.settings.max_retry_delay);
                    if let Err(e) = svc.queue.retry_later(receipt, delay).await {
                        // The visibility timeout still brings it back, only later.
                        tracing::warn!(message_id = %id, error = %e, "could not shorten the retry delay");
                    }
                }
            }
            // An empty identifier would fail the whole batch: such a message is retried by
            // the batch succeeding without it, which SQS cannot express, so skip it.
            (disposition == Disposition::Retry && !id.is_empty()).then(|| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                f
            })
        })
        .buffer_unordered(svc.settings.batch_concurrency.max(1))
        .filter_map(|f| async move { f })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// The stream handler: for each session record that says "nothing remains", close the
/// session. Records that do not qualify (the filter should have dropped them) are ignored;
/// unreadable ones are logged and skipped, never failing the batch.
pub async fn finalizer(svc: &Services, event: Value) -> Value {
    let mut failures = Vec::new();
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for record in records {
        let sequence = record
            .pointer("/dynamodb/SequenceNumber")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(session_id) = completed_session(&record) else {
            tracing::debug!(%sequence, "stream record is not a completed session; ignored");
            continue;
        };
        match finalize_session(svc, &session_id).await {
            Ok(Finalized::Closed(status)) => {
                tracing::info!(session = %session_id, status = status.as_str(), "finalized")
            }
            Ok(other) => tracing::info!(session = %session_id, ?other, "nothing to close"),
            Err(e) => {
                tracing::error!(session = %session_id, error = %e, "finalize failed; record will be retried");
                if !sequence.is_empty() {
                    failures.push(json!({"itemIdentifier": sequence}));
                }
            }
        }
    }
    json!({"batchItemFailures": failures})
}

/// The session id of a stream record whose new image is a running session with nothing
/// remaining (the same test the template's filter makes, repeated because the handler must
/// be safe without it).
pub fn completed_session(record: &Value) -> Option<String> {
    let new = record.pointer("/dynamodb/NewImage")?;
    let sk = new.pointer("/sk/S")?.as_str()?;
    let pk = new.pointer("/pk/S")?.as_str()?;
    let status = new.pointer("/status/S")?.as_str()?;
    let remaining = new.pointer("/remaining/N")?.as_str()?;
    (sk == crate::keys::SESSION_SK && status == "running" && remaining == "0")
        .then(|| crate::keys::session_id_of_pk(pk).map(str::to_string))
        .flatten()
}

/// The api function: an API Gateway HTTP API (payload 2.0) request → the status API's
/// answer. Anything unreadable in the event is a 400, never a failed invocation.
pub async fn api(svc: &Services, event: Value) -> Value {
    let method = event["requestContext"]["http"]["method"]
        .as_str()
        .unwrap_or("GET")
        .to_string();
    let Some(path) = event["rawPath"].as_str() else {
        return json!({"statusCode": 400, "headers": {"content-type": "application/json"},
            "body": json!({"error": "the event has no rawPath (an HTTP API payload 2.0 event is expected)"}).to_string()});
    };
    let query = event["queryStringParameters"]
        .as_object()
        .map(|q| {
            q.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let response = crate::api::handle(
        svc,
        &crate::api::ApiRequest {
            method: &method,
            path,
            query,
            // Behind API Gateway the API stays read-only (see `ApiRequest::may_decide`).
            may_decide: false,
        },
    )
    .await;
    let mut headers = serde_json::Map::new();
    headers.insert("content-type".into(), response.content_type.into());
    for (name, value) in response.headers {
        headers.insert(name.into(), value.into());
    }
    json!({
        "statusCode": response.status,
        "headers": headers,
        "body": String::from_utf8_lossy(&response.body),
        "isBase64Encoded": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_stream_event_names_a_completed_session() {
        let event: Value =
            serde_json::from_str(include_str!("../../infra/events/finalizer-stream.json")).unwrap();
        let id = completed_session(&event["Records"][0]).unwrap();
        assert_eq!(id, "demo-erddap@20261122T120000Z");
    }

    #[test]
    fn records_with_work_remaining_or_other_items_are_not_completions() {
        let rec = |sk: &str, status: &str, remaining: &str| {
            json!({"dynamodb": {"NewImage": {"pk": {"S": "SESSION#s@1"}, "sk": {"S": sk},
                "status": {"S": status}, "remaining": {"N": remaining}}}})
        };
        assert_eq!(
            completed_session(&rec("SESSION", "running", "0")).as_deref(),
            Some("s@1")
        );
        assert_eq!(completed_session(&rec("SESSION", "running", "1")), None);
        assert_eq!(completed_session(&rec("SESSION", "succeeded", "0")), None);
        assert_eq!(
            completed_session(&rec("PAGE#00000001", "running", "0")),
            None
        );
        assert_eq!(completed_session(&json!({"garbage": true})), None);
    }

    #[test]
    fn scheduler_events_are_read_in_every_documented_shape() {
        let tick =
            parse_scheduler_event(json!({"scheduled_time": "2026-11-22T12:00:00Z"})).unwrap();
        assert!(tick.scheduled_time.is_some() && tick.source_id.is_none());
        let manual = parse_scheduler_event(json!({"source_id": "a"})).unwrap();
        assert_eq!(manual.source_id.as_deref(), Some("a"));
        let classic = parse_scheduler_event(
            json!({"detail-type": "Scheduled Event", "time": "2026-11-22T12:00:00Z"}),
        )
        .unwrap();
        assert!(classic.scheduled_time.is_some());
        assert!(parse_scheduler_event(json!({"sauce_id": "a"})).is_err());
        for file in [
            include_str!("../../infra/events/scheduler-tick.json"),
            include_str!("../../infra/events/scheduler-manual.json"),
            include_str!("../../infra/events/scheduler-selection.json"),
        ] {
            parse_scheduler_event(serde_json::from_str(file).unwrap()).unwrap();
        }
        let selection = parse_scheduler_event(
            serde_json::from_str(include_str!("../../infra/events/scheduler-selection.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(selection.resource_ids.unwrap(), ["ds_0001", "ds_0002"]);
        let deploy = parse_scheduler_event(json!({"deploy": true})).unwrap();
        assert!(deploy.deploy && deploy.source_id.is_none());
        let custom: Value = serde_json::from_str(include_str!(
            "../../infra/events/scheduler-deploy-resource.json"
        ))
        .unwrap();
        assert!(crate::deploy::is_custom_resource_event(&custom));
        let properties =
            crate::deploy::DeployProperties::from_properties(&custom["ResourceProperties"])
                .unwrap();
        assert_eq!(
            properties.sources_key.as_deref(),
            Some("config/sources.yaml")
        );
        assert!(properties.harvest_on_deploy && !properties.prune);
    }
}

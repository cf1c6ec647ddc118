//! What a deployment does to the running system, as the CloudFormation custom resource
//! `DeploySources` of `template.yaml` asks the scheduler function to:
//!
//! 1. read the sources document named by `SourcesKey` in the stack's bucket (JSON or YAML);
//! 2. make the registered sources match it (`model::sources_file::plan`, applied by
//!    `pipeline::sources::apply`; with `Prune`, sources it does not name are removed);
//! 3. with `HarvestOnDeploy`, start one session of every enabled source (trigger `deploy`,
//!    `pipeline::schedule::run_on_deploy`);
//! 4. answer CloudFormation by a PUT of the response document to the event's `ResponseURL`,
//!    always: a stack waits an hour for an answer that never comes.
//!
//! A bad document fails the deployment (CloudFormation rolls back) with a reason naming the
//! source and field, and changes nothing: the whole document is validated before anything is
//! applied. `Delete` succeeds and removes nothing: the state table outlives the stack
//! (`DeletionPolicy: Retain`), and sources removed with the resource would be missing from a
//! stack recreated over the same table. The physical id never changes, so an update never
//! makes CloudFormation delete the previous resource.

use crate::handlers::HandlerError;
use crate::model::session::whole_second;
use crate::model::sources_file::{plan, sources_of_text};
use crate::model::Source;
use crate::pipeline::schedule::{run_on_deploy, ScheduleReport};
use crate::pipeline::sources::{apply, Applied};
use crate::pipeline::Services;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The physical id of the custom resource: one, whatever the deployment.
pub const PHYSICAL_RESOURCE_ID: &str = "trawl-deploy";

/// CloudFormation's response must fit 4,096 bytes; the reason is kept well within.
const MAX_REASON_CHARS: usize = 1500;

/// Whether an event is a CloudFormation custom resource request (rather than a scheduler
/// event, whose fields are all snake_case).
pub fn is_custom_resource_event(event: &Value) -> bool {
    event.get("RequestType").is_some() && event.get("ResponseURL").is_some()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CustomResourceEvent {
    request_type: RequestType,
    stack_id: String,
    request_id: String,
    logical_resource_id: String,
    physical_resource_id: Option<String>,
    #[serde(default)]
    resource_properties: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum RequestType {
    Create,
    Update,
    Delete,
}

/// The custom resource's properties, as CloudFormation passes them (every value a string).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeployProperties {
    /// The sources document's key in the stack's bucket; `None`: sources are left alone.
    pub sources_key: Option<String>,
    pub prune: bool,
    pub harvest_on_deploy: bool,
}

impl DeployProperties {
    /// Reads the properties; unknown ones are ignored (`ServiceToken`, the deploy token
    /// whose only purpose is to change), a flag that is neither true nor false is refused.
    pub fn from_properties(properties: &Value) -> Result<DeployProperties, String> {
        let flag = |name: &str| match properties.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
            Some(other) => Err(format!("{name}: {other} is neither true nor false")),
        };
        let sources_key = match properties.get("SourcesKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(other) => return Err(format!("SourcesKey: {other} is not a key")),
        };
        Ok(DeployProperties {
            sources_key,
            prune: flag("Prune")?,
            harvest_on_deploy: flag("HarvestOnDeploy")?,
        })
    }
}

/// What a deployment did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Deployed {
    /// The sources document applied, when there was one.
    pub sources: Option<Applied>,
    /// The sessions started, when `HarvestOnDeploy`.
    pub harvest: Option<ScheduleReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "no sources document at s3 key {0:?} in the stack's bucket (upload it before deploying)"
    )]
    NoDocument(String),
    #[error("{key}: {message}")]
    BadDocument { key: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::ports::StoreError),
}

/// Steps 1–3: the sources document applied, then the deployment's harvest. Idempotent: a
/// second call with the same document changes nothing (its harvest finds the sources busy).
pub async fn deploy(
    svc: &Services,
    properties: &DeployProperties,
) -> Result<Deployed, DeployError> {
    let mut deployed = Deployed::default();
    if let Some(key) = &properties.sources_key {
        let desired = read_document(svc, key).await?;
        let registered: Vec<Source> = svc
            .store
            .list_sources()
            .await?
            .into_iter()
            .map(|entry| entry.source)
            .collect();
        let plan = plan(&registered, desired, properties.prune);
        let applied = apply(svc.store.as_ref(), plan).await?;
        tracing::info!(key = %key, added = ?applied.added, updated = ?applied.updated,
            removed = ?applied.removed, kept_running = ?applied.kept_running, "sources applied");
        deployed.sources = Some(applied);
    }
    if properties.harvest_on_deploy {
        let report = run_on_deploy(svc, whole_second(svc.clock.now())).await?;
        tracing::info!(started = ?report.started, busy = ?report.busy, "harvest on deploy");
        deployed.harvest = Some(report);
    }
    Ok(deployed)
}

/// The sources the document at `key` describes, every one validated.
async fn read_document(svc: &Services, key: &str) -> Result<Vec<Source>, DeployError> {
    let body = svc
        .objects
        .get(key)
        .await?
        .ok_or_else(|| DeployError::NoDocument(key.to_string()))?;
    let bad = |message: String| DeployError::BadDocument {
        key: key.to_string(),
        message,
    };
    let text = std::str::from_utf8(&body).map_err(|e| bad(format!("not UTF-8 ({e})")))?;
    sources_of_text(text).map_err(|e| bad(e.to_string()))
}

/// What was sent to CloudFormation (also the function's result, for its logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomResourceAnswer {
    pub status: &'static str,
    pub reason: String,
    pub deployed: Option<Deployed>,
}

/// Handles a custom resource event and answers CloudFormation (step 4). An error is returned
/// only when no answer could be delivered: the function then fails and its invocation is
/// retried by Lambda, which answers again.
pub async fn custom_resource(
    svc: &Services,
    event: Value,
) -> Result<CustomResourceAnswer, HandlerError> {
    let response_url = event
        .get("ResponseURL")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            HandlerError::BadEvent("a custom resource event without ResponseURL".into())
        })?
        .to_string();
    let parsed = serde_json::from_value::<CustomResourceEvent>(event.clone());
    let (status, reason, deployed) = match &parsed {
        Err(e) => (
            "FAILED",
            format!("unreadable custom resource event: {e}"),
            None,
        ),
        Ok(request) => match request.request_type {
            RequestType::Delete => (
                "SUCCESS",
                "deleting the stack leaves the registered sources as they are".to_string(),
                None,
            ),
            RequestType::Create | RequestType::Update => {
                match DeployProperties::from_properties(&request.resource_properties) {
                    Err(e) => ("FAILED", e, None),
                    Ok(properties) => match deploy(svc, &properties).await {
                        Ok(deployed) => ("SUCCESS", summary(&deployed), Some(deployed)),
                        Err(e) => ("FAILED", e.to_string(), None),
                    },
                }
            }
        },
    };
    if status == "FAILED" {
        tracing::error!(%reason, "deployment failed");
    }
    let text = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
    let physical = parsed
        .as_ref()
        .ok()
        .and_then(|r| r.physical_resource_id.clone())
        .unwrap_or_else(|| PHYSICAL_RESOURCE_ID.to_string());
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    let response = json!({
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical,
        "StackId": text("StackId"),
        "RequestId": text("RequestId"),
        "LogicalResourceId": text("LogicalResourceId"),
        "NoEcho": false,
        "Data": data(deployed.as_ref()),
    });
    send_response(&response_url, &response).await?;
    if let Ok(request) = &parsed {
        tracing::info!(stack = %request.stack_id, request = %request.request_id,
            resource = %request.logical_resource_id, status, "answered CloudFormation");
    }
    Ok(CustomResourceAnswer {
        status,
        reason,
        deployed,
    })
}

/// The figures a stack can read with `Fn::GetAtt` (counts only: the response is bounded).
fn data(deployed: Option<&Deployed>) -> Value {
    let Some(d) = deployed else {
        return json!({});
    };
    let count = |v: Option<&Vec<String>>| v.map_or(0, Vec::len).to_string();
    json!({
        "Added": count(d.sources.as_ref().map(|a| &a.added)),
        "Updated": count(d.sources.as_ref().map(|a| &a.updated)),
        "Removed": count(d.sources.as_ref().map(|a| &a.removed)),
        "Started": count(d.harvest.as_ref().map(|h| &h.started)),
    })
}

/// One line saying what the deployment did (the response's `Reason` on success).
fn summary(d: &Deployed) -> String {
    let mut parts = Vec::new();
    match &d.sources {
        Some(a) => parts.push(format!(
            "sources: {} added, {} updated, {} unchanged, {} removed, {} kept (running)",
            a.added.len(),
            a.updated.len(),
            a.unchanged.len(),
            a.removed.len(),
            a.kept_running.len()
        )),
        None => parts.push("no sources document".into()),
    }
    if let Some(h) = &d.harvest {
        parts.push(format!(
            "harvest: {} started, {} busy, {} errors",
            h.started.len(),
            h.busy.len(),
            h.errors.len()
        ));
    }
    parts.join("; ")
}

/// PUTs the response to the presigned URL (with no content type: the URL's signature names
/// none), a few times over, since an undelivered answer hangs the stack.
async fn send_response(url: &str, response: &Value) -> Result<(), HandlerError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| HandlerError::BadEvent(format!("HTTP client: {e}")))?;
    let body = response.to_string();
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt))).await;
        }
        match client.put(url).body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(HandlerError::Unanswered(format!(
        "could not answer CloudFormation at its ResponseURL: {last}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_read_as_cloudformation_passes_them() {
        let p = DeployProperties::from_properties(&json!({
            "ServiceToken": "arn:aws:lambda:…", "SourcesKey": " config/sources.yaml ",
            "Prune": "true", "HarvestOnDeploy": "false", "DeployToken": "abc"
        }))
        .unwrap();
        assert_eq!(
            p,
            DeployProperties {
                sources_key: Some("config/sources.yaml".into()),
                prune: true,
                harvest_on_deploy: false
            }
        );
        let none = DeployProperties::from_properties(&json!({"SourcesKey": ""})).unwrap();
        assert_eq!(none.sources_key, None);
        let err = DeployProperties::from_properties(&json!({"Prune": "yes"})).unwrap_err();
        assert!(err.contains("Prune"), "{err}");
    }

    #[test]
    fn only_cloudformation_events_are_custom_resource_events() {
        assert!(is_custom_resource_event(
            &json!({"RequestType": "Create", "ResponseURL": "https://x"})
        ));
        assert!(!is_custom_resource_event(&json!({"source_id": "a"})));
        assert!(!is_custom_resource_event(&json!({"RequestType": "Create"})));
    }
}

//! The deployment's custom resource, handled by the scheduler function's handler in-process
//! against the in-memory stores: CloudFormation events in, the response PUT to a recording
//! `ResponseURL` out. (`tests/e2e/tests/deploy.rs` runs the same against LocalStack.)

use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;
use trawl::handlers::{scheduler_function, HandlerError};
use trawl::local::{MemoryObjects, MemoryQueue, MemoryStore};
use trawl::model::Trigger;
use trawl::pipeline::{Services, Settings};
use trawl::ports::{ObjectStore, SessionLedger, SourceRegistry};
use trawl_fixtures::ResponseUrlFixture;

struct Deployment {
    svc: Services,
    store: Arc<MemoryStore>,
    objects: Arc<MemoryObjects>,
    cloudformation: ResponseUrlFixture,
}

async fn deployment() -> Deployment {
    let store = Arc::new(MemoryStore::default());
    let objects = Arc::new(MemoryObjects::default());
    let queue = Arc::new(MemoryQueue::default());
    let svc = Services::new(store.clone(), objects.clone(), queue, Settings::default());
    Deployment {
        svc,
        store,
        objects,
        cloudformation: ResponseUrlFixture::start().await.unwrap(),
    }
}

impl Deployment {
    fn event(&self, request_type: &str, properties: Value) -> Value {
        let mut properties = properties;
        properties["ServiceToken"] =
            json!("arn:aws:lambda:us-east-1:000000000000:function:scheduler");
        let mut event = json!({
            "RequestType": request_type,
            "ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:scheduler",
            "ResponseURL": self.cloudformation.url(request_type),
            "StackId": "arn:aws:cloudformation:us-east-1:000000000000:stack/trawl/1",
            "RequestId": format!("req-{request_type}"),
            "LogicalResourceId": "DeploySources",
            "ResourceType": "Custom::DeploySources",
            "ResourceProperties": properties,
        });
        if request_type != "Create" {
            event["PhysicalResourceId"] = json!("trawl-deploy");
        }
        event
    }

    /// Invokes the scheduler function with the custom resource event; CloudFormation's
    /// answer is then [`Deployment::answer`].
    async fn send(&self, request_type: &str, properties: Value) {
        scheduler_function(&self.svc, self.event(request_type, properties))
            .await
            .unwrap();
    }

    async fn upload(&self, key: &str, text: &str) {
        self.objects
            .put(key, Bytes::from(text.to_string()), "application/yaml")
            .await
            .unwrap();
    }

    /// The sessions running now, from the sources' run state.
    async fn running(&self) -> Vec<trawl::model::Session> {
        let mut sessions = Vec::new();
        for entry in self.store.list_sources().await.unwrap() {
            if let Some(id) = entry.running_session {
                sessions.push(self.store.get_session(&id).await.unwrap().unwrap());
            }
        }
        sessions
    }

    async fn source_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .store
            .list_sources()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.source.id)
            .collect();
        ids.sort();
        ids
    }

    /// The last response CloudFormation received.
    fn answer(&self) -> Value {
        let all = self.cloudformation.responses();
        let last = all.last().expect("CloudFormation was answered");
        assert_eq!(last.method, "PUT");
        assert_eq!(
            last.content_type, None,
            "the presigned URL signs no content type"
        );
        last.body.clone()
    }
}

const TWO_SOURCES: &str = "\
- id: alpha
  protocol: ckan
  base_url: https://alpha.example.org
  schedule: rate(1 day)
- id: beta
  protocol: erddap
  base_url: https://beta.example.org/erddap
  schedule: cron(0 3 * * ? *)
  enabled: false
";

#[tokio::test]
async fn a_create_applies_the_yaml_document_and_answers_success() {
    let d = deployment().await;
    d.upload("config/sources.yaml", TWO_SOURCES).await;

    d.send(
        "Create",
        json!({"SourcesKey": "config/sources.yaml", "Prune": "true",
            "HarvestOnDeploy": "false", "DeployToken": "1"}),
    )
    .await;

    let answer = d.answer();
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["PhysicalResourceId"], "trawl-deploy");
    assert_eq!(answer["RequestId"], "req-Create");
    assert_eq!(answer["LogicalResourceId"], "DeploySources");
    assert_eq!(
        answer["StackId"],
        "arn:aws:cloudformation:us-east-1:000000000000:stack/trawl/1"
    );
    assert_eq!(answer["Data"]["Added"], "2");
    assert_eq!(d.source_ids().await, ["alpha", "beta"]);
    assert!(d.running().await.is_empty());

    // The same document again: nothing changes.
    d.send(
        "Update",
        json!({"SourcesKey": "config/sources.yaml", "Prune": "true",
            "DeployToken": "2"}),
    )
    .await;
    let answer = d.answer();
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(
        (
            answer["Data"]["Added"].as_str(),
            answer["Data"]["Updated"].as_str()
        ),
        (Some("0"), Some("0"))
    );
    assert!(
        answer["Reason"].as_str().unwrap().contains("2 unchanged"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_update_with_prune_removes_what_the_document_no_longer_names() {
    let d = deployment().await;
    d.upload(
        "sources.json",
        &serde_json::to_string(&serde_yaml_like(TWO_SOURCES)).unwrap(),
    )
    .await;
    d.send("Create", json!({"SourcesKey": "sources.json"}))
        .await;
    d.upload(
        "sources.json",
        r#"{"id": "alpha", "protocol": "ckan", "base_url": "https://alpha.example.org", "schedule": "rate(2 days)"}"#,
    )
    .await;

    // Without Prune, beta stays; with it, it goes.
    d.send("Update", json!({"SourcesKey": "sources.json"}))
        .await;
    assert_eq!(d.answer()["Data"]["Updated"], "1");
    assert_eq!(d.source_ids().await, ["alpha", "beta"]);
    d.send(
        "Update",
        json!({"SourcesKey": "sources.json", "Prune": "true"}),
    )
    .await;
    assert_eq!(d.answer()["Data"]["Removed"], "1");
    assert_eq!(d.source_ids().await, ["alpha"]);
}

/// The YAML fixture as JSON, so both formats are read from the same sources.
fn serde_yaml_like(yaml: &str) -> Value {
    let sources = trawl::model::sources_file::sources_of_text(yaml).unwrap();
    Value::Array(
        sources
            .iter()
            .map(|s| {
                json!({"id": s.id, "protocol": s.protocol, "base_url": s.base_url,
                    "schedule": "rate(1 day)", "enabled": s.enabled})
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_bad_document_fails_the_deployment_saying_where_and_changes_nothing() {
    let d = deployment().await;
    d.upload("config/sources.yaml", TWO_SOURCES).await;
    d.send("Create", json!({"SourcesKey": "config/sources.yaml"}))
        .await;
    d.upload(
        "config/sources.yaml",
        "- id: alpha\n  protocol: ckan\n  base_url: https://alpha.example.org\n  schedule: rate(9 days)\n\
         - id: gamma\n  protocol: gopher\n  base_url: https://g.example.org\n  schedule: rate(1 day)\n",
    )
    .await;

    d.send(
        "Update",
        json!({"SourcesKey": "config/sources.yaml", "Prune": "true",
            "HarvestOnDeploy": "true"}),
    )
    .await;

    let answer = d.answer();
    assert_eq!(answer["Status"], "FAILED");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("config/sources.yaml")
            && reason.contains("source #2")
            && reason.contains("protocol"),
        "{reason}"
    );
    // Neither alpha's update, nor a removal, nor a harvest happened.
    assert_eq!(d.source_ids().await, ["alpha", "beta"]);
    let alpha = d.store.get_source("alpha").await.unwrap().unwrap().source;
    let registered_first = trawl::model::sources_file::sources_of_text(TWO_SOURCES).unwrap();
    assert_eq!(alpha, registered_first[0]);
    assert!(d.running().await.is_empty());
}

#[tokio::test]
async fn a_missing_document_or_unreadable_properties_fail_with_a_reason() {
    let d = deployment().await;
    d.send("Create", json!({"SourcesKey": "nowhere.yaml"}))
        .await;
    let reason = d.answer()["Reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("no sources document") && reason.contains("nowhere.yaml"),
        "{reason}"
    );

    d.send("Create", json!({"HarvestOnDeploy": "maybe"})).await;
    let answer = d.answer();
    assert_eq!(answer["Status"], "FAILED");
    assert!(answer["Reason"]
        .as_str()
        .unwrap()
        .contains("HarvestOnDeploy"));

    // An event CloudFormation would never send, but that names where to answer: answered.
    let mut odd = d.event("Create", json!({}));
    odd["RequestType"] = json!("Replace");
    scheduler_function(&d.svc, odd).await.unwrap();
    let answer = d.answer();
    assert_eq!(answer["Status"], "FAILED");
    assert!(answer["Reason"]
        .as_str()
        .unwrap()
        .contains("unreadable custom resource event"));
    assert_eq!(answer["RequestId"], "req-Create");
}

#[tokio::test]
async fn a_delete_succeeds_and_leaves_the_sources() {
    let d = deployment().await;
    d.upload("config/sources.yaml", TWO_SOURCES).await;
    d.send("Create", json!({"SourcesKey": "config/sources.yaml"}))
        .await;
    d.send(
        "Delete",
        json!({"SourcesKey": "config/sources.yaml", "Prune": "true"}),
    )
    .await;
    let answer = d.answer();
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["PhysicalResourceId"], "trawl-deploy");
    assert_eq!(d.source_ids().await, ["alpha", "beta"]);
}

#[tokio::test]
async fn harvest_on_deploy_starts_one_deploy_session_per_enabled_source() {
    let d = deployment().await;
    d.upload("config/sources.yaml", TWO_SOURCES).await;
    d.send(
        "Create",
        json!({"SourcesKey": "config/sources.yaml", "HarvestOnDeploy": "true"}),
    )
    .await;
    assert_eq!(d.answer()["Data"]["Started"], "1");
    let running = d.running().await;
    assert_eq!(running.len(), 1, "beta is disabled");
    assert_eq!(running[0].source_id, "alpha");
    assert_eq!(running[0].trigger, Some(Trigger::Deploy));
}

#[tokio::test]
async fn an_answer_cloudformation_refuses_fails_the_invocation_so_lambda_retries_it() {
    let d = deployment().await;
    d.cloudformation.refuse();
    let result = scheduler_function(&d.svc, d.event("Delete", json!({}))).await;
    assert!(
        matches!(result, Err(HandlerError::Unanswered(ref why)) if why.contains("403")),
        "{result:?}"
    );
    assert_eq!(d.cloudformation.responses().len(), 3, "tried three times");
}

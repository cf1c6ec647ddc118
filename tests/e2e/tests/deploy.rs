//! The deployment on LocalStack: the template's DeploySources custom resource, answered by
//! the scheduler function's handler in-process (LocalStack's free edition runs no Lambda),
//! with the sources document in the stack's real bucket, the sources ending up in its real
//! table, the deployment's sessions harvested through its queue and stream; CloudFormation's
//! `ResponseURL` is a local server that records the answer. Then a selection, the same way.

use chrono::Utc;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use trawl::model::{Outcome, ReasonCode, SessionStatus, Trigger};
use trawl_e2e::{lock_stack, runner, unique_source_id};
use trawl_fixtures::{ErddapConfig, ErddapFixture, ResponseUrlFixture};
use trawl_runner::{Faults, Runner};

const TIMEOUT: Duration = Duration::from_secs(240);

fn event(cloudformation: &ResponseUrlFixture, request_type: &str, properties: Value) -> Value {
    json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:trawl-SchedulerFunction",
        "ResponseURL": cloudformation.url(request_type),
        "StackId": "arn:aws:cloudformation:us-east-1:000000000000:stack/trawl-h1/e2e",
        "RequestId": format!("e2e-{request_type}-{}", std::process::id()),
        "LogicalResourceId": "DeploySources",
        "PhysicalResourceId": "trawl-deploy",
        "ResourceType": "Custom::DeploySources",
        "ResourceProperties": properties,
    })
}

async fn upload(runner: &Runner, key: &str, text: &str) {
    runner
        .services
        .objects
        .put(key, text.to_string().into(), "text/yaml")
        .await
        .unwrap();
}

async fn registered(runner: &Runner) -> BTreeMap<String, trawl::model::Source> {
    runner
        .services
        .store
        .list_sources()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.source.id.clone(), e.source))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_applies_its_sources_document_and_harvests_every_enabled_source() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 12,
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let cloudformation = ResponseUrlFixture::start().await.unwrap();
    let (on, off) = (
        unique_source_id("e2e-deploy"),
        unique_source_id("e2e-deploy-off"),
    );
    let key = format!("config/{on}.yaml");
    let document = format!(
        "- id: {on}\n  protocol: erddap\n  base_url: {url}\n  schedule: cron(0 3 1 1 ? *)\n  internal: true\n\
         - id: {off}\n  protocol: erddap\n  base_url: {url}\n  schedule: rate(1 day)\n  internal: true\n  enabled: false\n",
        url = fixture.base_url()
    );
    upload(&runner, &key, &document).await;

    // Prune: the stack ends with exactly the document's sources (earlier tests' are gone).
    let answer = trawl::handlers::scheduler_function(
        &runner.services,
        event(
            &cloudformation,
            "Create",
            json!({"SourcesKey": key, "Prune": "true", "HarvestOnDeploy": "true",
                "DeployToken": Utc::now().to_rfc3339()}),
        ),
    )
    .await
    .unwrap();
    let put = cloudformation
        .responses()
        .pop()
        .expect("CloudFormation answered");
    assert_eq!(put.method, "PUT");
    assert_eq!(put.body["Status"], "SUCCESS", "{}", put.body);
    assert_eq!(put.body["LogicalResourceId"], "DeploySources");
    assert_eq!(put.body["Data"]["Added"], "2");
    let sources = registered(&runner).await;
    let ids: Vec<&String> = sources.keys().collect();
    assert_eq!(ids, [&on, &off], "{answer}");
    assert!(!sources[&off].enabled);

    let started: Vec<String> = answer["deployed"]["harvest"]["started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(started.len(), 1, "{answer}");
    runner.run_until_closed(&started, TIMEOUT).await.unwrap();
    let session = runner
        .services
        .store
        .get_session(&started[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.source_id, on);
    assert_eq!(session.trigger, Some(Trigger::Deploy));
    assert_eq!(
        (
            session.status,
            session.counters.total,
            session.counters.harvested
        ),
        (SessionStatus::Succeeded, 12, 12)
    );

    // A bad document: FAILED with the reason, and the registry as it was.
    let bad_key = format!("config/{on}-bad.yaml");
    upload(
        &runner,
        &bad_key,
        &format!(
            "- id: {on}\n  protocol: erddap\n  base_url: ftp://nowhere\n  schedule: rate(1 day)\n"
        ),
    )
    .await;
    trawl::handlers::scheduler_function(
        &runner.services,
        event(
            &cloudformation,
            "Update",
            json!({"SourcesKey": bad_key, "Prune": "true", "HarvestOnDeploy": "true"}),
        ),
    )
    .await
    .unwrap();
    let put = cloudformation.responses().pop().unwrap();
    assert_eq!(put.body["Status"], "FAILED");
    let reason = put.body["Reason"].as_str().unwrap();
    assert!(
        reason.contains(&bad_key) && reason.contains("source #1") && reason.contains("base_url"),
        "{reason}"
    );
    assert_eq!(registered(&runner).await, sources);
    let entry = runner
        .services
        .store
        .get_source(&on)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        entry.running_session, None,
        "no harvest on a failed deployment"
    );

    // Delete: answered, sources left in the retained table.
    trawl::handlers::scheduler_function(
        &runner.services,
        event(&cloudformation, "Delete", json!({"SourcesKey": key})),
    )
    .await
    .unwrap();
    assert_eq!(
        cloudformation.responses().pop().unwrap().body["Status"],
        "SUCCESS"
    );
    assert_eq!(registered(&runner).await, sources);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_harvests_only_the_named_datasets_through_the_deployed_queue() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 20,
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let id = unique_source_id("e2e-selection");
    let source = trawl::model::SourceSpec {
        id: id.clone(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: "cron(0 3 1 1 ? *)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    runner.services.store.put_source(&source).await.unwrap();

    let report = runner
        .invoke_scheduler(
            json!({"source_id": id, "resource_ids": ["ds_0005", "ds_0017", "gone_ds"]}),
        )
        .await
        .unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    runner
        .run_until_closed(&report.started, TIMEOUT)
        .await
        .unwrap();
    let session = runner
        .services
        .store
        .get_session(&report.started[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.trigger, Some(Trigger::Selection));
    let c = session.counters;
    assert_eq!((c.total, c.harvested, c.failed, c.remaining), (3, 2, 1, 0));
    assert_eq!(session.status, SessionStatus::PartiallyFailed);
    let gone = runner
        .services
        .store
        .get_resource(&id, "gone_ds")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.last_outcome, Outcome::Failed);
    assert_eq!(gone.last_reason.map(|r| r.code), Some(ReasonCode::NotFound));
    assert!(runner
        .services
        .store
        .get_resource(&id, "ds_0001")
        .await
        .unwrap()
        .is_none());
    let entry = runner
        .services
        .store
        .get_source(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.incremental_base, None, "a selection is no listing");
    assert_eq!(entry.last_full_listing_at, None);
}

//! The alert wiring on LocalStack: the deployed stack's alarms notify its alert topic, and so
//! does the finalizer when a session fails; a subscriber of the topic (here an SQS queue, as
//! a chat bridge or a mail relay would be) receives what happened and where to look. The AWS
//! CLI that `infra/install.sh` installs drives it; the alarm is put in ALARM by hand, since
//! the emulator does not evaluate SQS metrics on its own.

use serde_json::Value;
use std::process::Command;
use trawl_runner::repo_root;

fn aws(args: &[&str]) -> String {
    let out = Command::new(repo_root().join(".local/tools-venv/bin/aws"))
        .args([
            "--endpoint-url",
            &std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into()),
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("the aws CLI from infra/install.sh runs");
    assert!(out.status.success(), "aws {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The stack's alert topic.
fn topic() -> String {
    let outputs: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join(".local/stack.json")).unwrap())
            .unwrap();
    outputs["AlertTopic"]
        .as_str()
        .expect("the stack outputs its alert topic")
        .to_string()
}

/// A new queue subscribed to the topic (raw delivery off: each message is SNS's envelope).
fn subscribed_queue(topic: &str, name: &str) -> String {
    let name = format!("{name}-{}", std::process::id());
    let queue = json(&aws(&["sqs", "create-queue", "--queue-name", &name]))["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let arn = json(&aws(&[
        "sqs",
        "get-queue-attributes",
        "--queue-url",
        &queue,
        "--attribute-names",
        "QueueArn",
    ]))["Attributes"]["QueueArn"]
        .as_str()
        .unwrap()
        .to_string();
    aws(&[
        "sns",
        "subscribe",
        "--topic-arn",
        topic,
        "--protocol",
        "sqs",
        "--notification-endpoint",
        &arn,
    ]);
    queue
}

/// Reads the queue for up to 20 s until `wanted` accepts a notification's envelope.
fn receive(queue: &str, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
    for _ in 0..10 {
        let received = json(&aws(&[
            "sqs",
            "receive-message",
            "--queue-url",
            queue,
            "--wait-time-seconds",
            "2",
            "--max-number-of-messages",
            "10",
        ]));
        for message in received["Messages"].as_array().into_iter().flatten() {
            let body = json(message["Body"].as_str().unwrap_or_default());
            if wanted(&body) {
                return Some(body);
            }
        }
    }
    None
}

#[test]
fn a_dead_letter_alarm_reaches_a_subscriber_of_the_alert_topic_saying_what_to_do() {
    let _stack = trawl_e2e::lock_stack();
    let topic = topic();
    let queue = subscribed_queue(&topic, "alert-subscriber");

    let alarms = json(&aws(&["cloudwatch", "describe-alarms"]));
    let alarm = alarms["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        // This stack's alarm: other stacks may share the emulator.
        .filter(|a| {
            a["AlarmActions"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == topic.as_str()))
        })
        .filter_map(|a| a["AlarmName"].as_str())
        .find(|n| n.contains("WorkDeadLetterAlarm"))
        .expect("the stack has a dead-letter alarm")
        .to_string();
    // From OK: only a change of state notifies.
    set_alarm(&alarm, "OK", "before the test");
    drain(&queue);
    set_alarm(&alarm, "ALARM", "one message in the work dead-letter queue");

    let notification = receive(&queue, |body| {
        json(body["Message"].as_str().unwrap_or_default())["NewStateValue"] == "ALARM"
    });
    aws(&["sqs", "delete-queue", "--queue-url", &queue]);
    set_alarm(&alarm, "OK", "test over");
    let notification = notification.expect("the subscriber got the alarm");
    let message = json(notification["Message"].as_str().unwrap());
    assert_eq!(message["AlarmName"], alarm.as_str());
    assert_eq!(message["NewStateValue"], "ALARM");
    let description = message["AlarmDescription"].as_str().unwrap();
    assert!(
        description.contains("dead-letter") && description.contains("trawl dlq"),
        "{description}"
    );
}

/// Receives and drops what the queue holds now (an OK notification, say).
fn drain(queue: &str) {
    std::thread::sleep(std::time::Duration::from_secs(1));
    aws(&["sqs", "purge-queue", "--queue-url", queue]);
}

fn set_alarm(alarm: &str, state: &str, reason: &str) {
    aws(&[
        "cloudwatch",
        "set-alarm-state",
        "--alarm-name",
        alarm,
        "--state-value",
        state,
        "--state-reason",
        reason,
    ]);
}

/// The real close, run in-process against the deployed stack (the runner plays Lambda and the
/// table's stream): a source whose listing fails gets its session closed `failed`, and the
/// topic's subscriber hears it from the finalizer, with the session and where to look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_session_reaches_a_subscriber_of_the_alert_topic_from_the_finalizer() {
    let _stack = trawl_e2e::lock_stack();
    let topic = topic();
    let queue = subscribed_queue(&topic, "session-alert-subscriber");

    let fixture = trawl_fixtures::ErddapFixture::start(trawl_fixtures::ErddapConfig {
        datasets: 3,
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let runner = trawl_e2e::runner(trawl_runner::Faults::default())
        .await
        .unwrap();
    let source_id = trawl_e2e::unique_source_id("alerting");
    let source = trawl::model::SourceSpec {
        id: source_id.clone(),
        protocol: "erddap".into(),
        // No catalog there: the listing is a permanent 404.
        base_url: format!("{}/missing", fixture.base_url()),
        schedule: "rate(1 day)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    trawl::ports::SourceRegistry::put_source(runner.services.store.as_ref(), &source)
        .await
        .unwrap();
    let report = runner
        .invoke_scheduler(serde_json::json!({"source_id": source_id}))
        .await
        .unwrap();
    let session_id = report.started[0].clone();
    runner
        .run_until_closed(&report.started, std::time::Duration::from_secs(120))
        .await
        .unwrap();
    let session = runner
        .services
        .store
        .get_session(&session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.status, trawl::model::SessionStatus::Failed);

    let notification = tokio::task::spawn_blocking(move || {
        let found = receive(&queue, |body| {
            body["Message"]
                .as_str()
                .is_some_and(|m| m.contains(&session_id))
        });
        aws(&["sqs", "delete-queue", "--queue-url", &queue]);
        found
    })
    .await
    .unwrap()
    .expect("the subscriber got the session's alert");
    let subject = notification["Subject"].as_str().unwrap();
    assert!(
        subject.contains(&source_id) && subject.contains("failed"),
        "{subject}"
    );
    let message = notification["Message"].as_str().unwrap();
    assert!(message.contains("kind: session_failed"), "{message}");
    assert!(message.contains("NOT_FOUND"), "{message}");
    assert!(
        message.contains(&format!("trawl session {}", session.id)),
        "{message}"
    );
    assert_eq!(
        notification["MessageAttributes"]["kind"]["Value"],
        "session_failed"
    );
}

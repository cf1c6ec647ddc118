//! The alert wiring on LocalStack: the deployed stack's alarms notify its alert topic, and a
//! subscriber of the topic (here an SQS queue, as a chat bridge or a mail relay would be)
//! receives what happened and where to look. The AWS CLI that `infra/install.sh` installs
//! drives it; the alarm is put in ALARM by hand, since the emulator does not evaluate SQS
//! metrics on its own.

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

#[test]
fn a_dead_letter_alarm_reaches_a_subscriber_of_the_alert_topic_saying_what_to_do() {
    let _stack = trawl_e2e::lock_stack();
    let outputs: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join(".local/stack.json")).unwrap())
            .unwrap();
    let topic = outputs["AlertTopic"]
        .as_str()
        .expect("the stack outputs its alert topic");

    let name = format!("alert-subscriber-{}", std::process::id());
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

    let alarms = json(&aws(&["cloudwatch", "describe-alarms"]));
    let alarm = alarms["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["AlarmName"].as_str())
        .find(|n| n.contains("WorkDeadLetterAlarm"))
        .expect("the stack has a dead-letter alarm")
        .to_string();
    // From OK: only a change of state notifies.
    set_alarm(&alarm, "OK", "before the test");
    drain(&queue);
    set_alarm(&alarm, "ALARM", "one message in the work dead-letter queue");

    let mut notification = None;
    for _ in 0..10 {
        if notification.is_some() {
            break;
        }
        let received = json(&aws(&[
            "sqs",
            "receive-message",
            "--queue-url",
            &queue,
            "--wait-time-seconds",
            "2",
        ]));
        for message in received["Messages"].as_array().into_iter().flatten() {
            let body = json(message["Body"].as_str().unwrap_or_default());
            let alarm_message = json(body["Message"].as_str().unwrap_or_default());
            if alarm_message["NewStateValue"] == "ALARM" {
                notification = Some(body);
            }
        }
    }
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

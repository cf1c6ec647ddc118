//! `template.yaml` is the one description of the AWS wiring: these tests hold it to what the
//! code expects, and run the linters on it.

use serde_yaml::Value;
use trawl_runner::repo_root;

fn template() -> Value {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn default_number(t: &Value, parameter: &str) -> u64 {
    let d = &t["Parameters"][parameter]["Default"];
    d.as_u64()
        .or_else(|| d.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("parameter {parameter} has no numeric default"))
}

const FUNCTIONS: [&str; 4] = [
    "SchedulerFunction",
    "HarvesterFunction",
    "FinalizerFunction",
    "ApiFunction",
];

#[test]
fn the_work_queue_visibility_timeout_is_at_least_six_harvester_timeouts() {
    let t = template();
    assert!(
        default_number(&t, "WorkVisibilityTimeout") >= 6 * default_number(&t, "HarvesterTimeout")
    );
    assert!(default_number(&t, "HttpTimeoutMs") < 1000 * default_number(&t, "HarvesterTimeout"));
}

#[test]
fn functions_can_be_switched_off_for_emulators_that_cannot_run_lambda() {
    let t = template();
    for f in FUNCTIONS {
        assert_eq!(
            t["Resources"][f]["Condition"].as_str(),
            Some("DeployFunctions"),
            "{f}"
        );
    }
}

#[test]
fn function_environments_are_what_the_code_reads() {
    let t = template();
    for f in FUNCTIONS {
        let vars = t["Resources"][f]["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{f} has no environment"));
        for name in vars
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| k.starts_with("TRAWL_"))
        {
            assert!(
                trawl::aws::ENV_VARS.contains(&name),
                "{f} sets {name}, which nothing reads"
            );
        }
        for required in [trawl::aws::ENV_TABLE, trawl::aws::ENV_BUCKET] {
            assert!(vars.contains_key(required), "{f} lacks {required}");
        }
    }
    let harvester = &t["Resources"]["HarvesterFunction"]["Properties"]["Environment"]["Variables"];
    for needed in [
        trawl::aws::ENV_WORK_QUEUE_URL,
        trawl::aws::ENV_MAX_RECEIVE_COUNT,
    ] {
        assert!(harvester.get(needed).is_some(), "harvester lacks {needed}");
    }
}

#[test]
fn cfn_lint_and_sam_validate_pass() {
    let status = std::process::Command::new(repo_root().join("infra/lint.sh"))
        .current_dir(repo_root())
        .status()
        .expect("running infra/lint.sh (installed by infra/install.sh)");
    assert!(status.success(), "infra/lint.sh failed");
}

#[test]
fn logs_session_documents_and_deleted_records_expire_by_their_retention_parameters() {
    let t = template();
    let rules = t["Resources"]["ArtifactBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .expect("the bucket has lifecycle rules");
    let expiry = |prefix: &str| {
        let rule = rules
            .iter()
            .find(|r| r["Prefix"].as_str() == Some(prefix))
            .unwrap_or_else(|| panic!("no lifecycle rule for {prefix}"));
        assert_eq!(rule["Status"].as_str(), Some("Enabled"));
        match &rule["ExpirationInDays"] {
            Value::Tagged(tagged) if tagged.tag == "!Ref" => {
                tagged.value.as_str().unwrap().to_string()
            }
            other => panic!("{prefix} expires after {other:?}, not a parameter"),
        }
    };
    assert_eq!(expiry("logs/"), "LogRetentionDays");
    assert_eq!(expiry("sessions/"), "LogRetentionDays");
    assert_eq!(expiry("deleted/"), "DeletedRetentionDays");
    // Records and raw responses are the catalog itself: no rule may touch them.
    assert!(rules
        .iter()
        .all(|r| !matches!(r["Prefix"].as_str(), Some("records/" | "raw/" | ""))));
    // An incremental session reads its base session's failed ids under sessions/; its base
    // is at most `full_listing_every_days` (7 by default) old.
    assert!(default_number(&t, "LogRetentionDays") > 7);
    assert_eq!(default_number(&t, "DeletedRetentionDays"), 365);
}

#[test]
fn the_functions_that_close_sessions_publish_alerts_to_the_topic_with_their_settings() {
    let t = template();
    for f in ["SchedulerFunction", "FinalizerFunction"] {
        let properties = &t["Resources"][f]["Properties"];
        let vars = &properties["Environment"]["Variables"];
        for needed in [
            trawl::aws::ENV_ALERT_TOPIC_ARN,
            trawl::aws::ENV_WEBHOOK_URL,
            trawl::aws::ENV_ALERT_AFTER_DAYS,
            trawl::aws::ENV_ALERT_FAILURES_IN_A_ROW,
            trawl::aws::ENV_DASHBOARD_URL,
        ] {
            assert!(vars.get(needed).is_some(), "{f} lacks {needed}");
        }
        let publishes = properties["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|p| p.get("SNSPublishMessagePolicy"))
            .any(|p| format!("{:?}", p["TopicName"]).contains("AlertTopic"));
        assert!(publishes, "{f} may not publish to AlertTopic");
    }
    assert_eq!(default_number(&t, "AlertAfterDays"), 7);
    assert_eq!(default_number(&t, "AlertFailuresInARow"), 3);
    let defaults = trawl::pipeline::alerts::AlertSettings::default();
    assert_eq!(u64::from(defaults.after_days), 7);
    assert_eq!(u64::from(defaults.failures_in_a_row), 3);
}

#[test]
fn a_non_empty_dead_letter_or_stream_failure_queue_alerts_the_topic() {
    let t = template();
    let resources = &t["Resources"];
    let reference = |v: &Value| match v {
        Value::Tagged(tagged) => tagged.value.as_str().map(str::to_string),
        _ => None,
    };
    for (alarm, queue) in [
        ("WorkDeadLetterAlarm", "WorkDeadLetterQueue"),
        ("StreamFailureAlarm", "StreamFailureQueue"),
    ] {
        let p = &resources[alarm]["Properties"];
        assert_eq!(
            p["MetricName"].as_str(),
            Some("ApproximateNumberOfMessagesVisible")
        );
        assert_eq!(
            reference(&p["Dimensions"][0]["Value"]).as_deref(),
            Some(format!("{queue}.QueueName").as_str()),
            "{alarm} watches {queue}"
        );
        assert_eq!(
            p["ComparisonOperator"].as_str(),
            Some("GreaterThanOrEqualToThreshold")
        );
        assert_eq!(p["Threshold"].as_u64(), Some(1));
        assert_eq!(
            reference(&p["AlarmActions"][0]).as_deref(),
            Some("AlertTopic"),
            "{alarm} alerts"
        );
    }
    assert_eq!(
        resources["AlertTopic"]["Type"].as_str(),
        Some("AWS::SNS::Topic")
    );
    // Alarms cannot publish to a topic under the AWS-managed aws/sns key: the topic's key is
    // the stack's own, and its policy lets CloudWatch use it.
    assert_eq!(
        reference(&resources["AlertTopic"]["Properties"]["KmsMasterKeyId"]).as_deref(),
        Some("AlertTopicKey")
    );
    let key_policy = &resources["AlertTopicKey"]["Properties"]["KeyPolicy"]["Statement"];
    assert!(
        key_policy
            .as_sequence()
            .unwrap()
            .iter()
            .any(
                |st| st["Principal"]["Service"].as_str() == Some("cloudwatch.amazonaws.com")
                    && st["Action"].as_sequence().is_some_and(|a| a
                        .iter()
                        .any(|x| x.as_str() == Some("kms:GenerateDataKey*")))
            ),
        "{key_policy:?}"
    );
    assert_eq!(
        resources["AlertEmailSubscription"]["Condition"].as_str(),
        Some("HasAlertEmail"),
        "no e-mail subscription without an address"
    );
}

#[test]
fn the_deployment_custom_resource_is_answered_by_the_scheduler_with_the_properties_it_reads() {
    let t = template();
    let resource = &t["Resources"]["DeploySources"];
    assert_eq!(resource["Type"].as_str(), Some("Custom::DeploySources"));
    // Only with the functions (and with work to do): LocalStack deploys none.
    let condition = resource["Condition"].as_str().unwrap();
    let parts = serde_yaml::to_string(&t["Conditions"][condition]).unwrap();
    assert!(
        parts.contains("DeployFunctions") && parts.contains("HasDeployWork"),
        "{parts}"
    );
    let properties = &resource["Properties"];
    let token = serde_yaml::to_string(&properties["ServiceToken"]).unwrap();
    assert!(token.contains("SchedulerFunction.Arn"), "{token}");
    // What `trawl::deploy::DeployProperties` reads, each from a parameter.
    for (property, parameter) in [
        ("SourcesKey", "SourcesKey"),
        ("Prune", "PruneSources"),
        ("HarvestOnDeploy", "HarvestOnDeploy"),
        ("DeployToken", "DeployToken"),
    ] {
        let value = serde_yaml::to_string(&properties[property]).unwrap();
        assert!(value.contains(parameter), "{property}: {value}");
        assert!(t["Parameters"][parameter].is_mapping(), "{parameter}");
    }
    assert_eq!(
        t["Parameters"]["HarvestOnDeploy"]["Default"].as_str(),
        Some("false")
    );
    assert_eq!(t["Parameters"]["SourcesKey"]["Default"].as_str(), Some(""));
}

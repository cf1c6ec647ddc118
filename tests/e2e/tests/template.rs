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

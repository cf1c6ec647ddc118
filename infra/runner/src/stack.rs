//! The deployed stack's outputs, as `infra/deploy.sh` saved them (`.local/stack.json`).

use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Stack {
    pub outputs: HashMap<String, String>,
}

impl Stack {
    pub fn load(path: &Path) -> Result<Stack> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {} — is LocalStack running and the stack deployed? (infra/localstack.sh start && infra/deploy.sh)",
                path.display()
            )
        })?;
        let outputs: HashMap<String, String> =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Stack { outputs })
    }

    pub fn get(&self, key: &str) -> Result<&str> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("stack output {key} is missing"))
    }

    fn number(&self, key: &str) -> Result<u64> {
        self.get(key)?
            .parse()
            .with_context(|| format!("stack output {key} is not a number"))
    }

    pub fn resources(&self) -> Result<trawl::aws::Resources> {
        Ok(trawl::aws::Resources {
            table: self.get("TableName")?.to_string(),
            bucket: self.get("BucketName")?.to_string(),
            work_queue_url: Some(self.get("WorkQueueUrl")?.to_string()),
            // The functions' alerts go to the stack's topic (a stack deployed before it had
            // one: only logged).
            alert_topic_arn: self.get("AlertTopic").ok().map(str::to_string),
            webhook_url: None,
        })
    }

    /// The settings the deployed functions get from their environment, from the same
    /// parameters.
    pub fn settings(&self) -> Result<trawl::pipeline::Settings> {
        Ok(trawl::pipeline::Settings {
            tick_minutes: self.number("TickMinutes")? as u32,
            max_receive_count: self.number("MaxReceiveCount")? as u32,
            http_timeout: Duration::from_millis(self.number("HttpTimeoutMs")?),
            session_deadline_minutes: self.number("SessionDeadlineMinutes")? as u32,
            max_retry_delay: Duration::from_secs(self.number("WorkVisibilityTimeout")?),
            ..trawl::pipeline::Settings::default()
        })
    }

    pub fn harvester_timeout(&self) -> Result<Duration> {
        Ok(Duration::from_secs(self.number("HarvesterTimeout")?))
    }
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// Points the AWS SDK at the local emulator unless the environment already says otherwise.
/// Call it at start-up, before other threads read the environment.
pub fn default_to_local_emulator() {
    let defaults = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required"),
        ("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required"),
    ];
    for (k, v) in defaults {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
}

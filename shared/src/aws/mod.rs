//! AWS adapters of the ports, and building [`Services`] from a function's environment.

pub mod counting;
pub mod dynamodb;
pub mod errors;
pub mod gate;
pub mod s3;
pub mod sns;
pub mod sqs;

pub use counting::RequestCounter;

use crate::pipeline::{Services, Settings};
use std::sync::Arc;
use std::time::Duration;

/// Names of the deployed resources (template outputs → function environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    pub table: String,
    pub bucket: String,
    /// The finalizer sends no work, so it runs without one.
    pub work_queue_url: Option<String>,
    /// Where alerts are published (`AlertTopic`); none: alerts are only logged.
    pub alert_topic_arn: Option<String>,
    /// A chat tool's incoming webhook that gets each alert too (`WebhookUrl`).
    pub webhook_url: Option<String>,
}

/// The environment variables `template.yaml` sets on the functions.
pub const ENV_TABLE: &str = "TRAWL_TABLE";
pub const ENV_BUCKET: &str = "TRAWL_BUCKET";
pub const ENV_WORK_QUEUE_URL: &str = "TRAWL_WORK_QUEUE_URL";
pub const ENV_TICK_MINUTES: &str = "TRAWL_TICK_MINUTES";
pub const ENV_MAX_RECEIVE_COUNT: &str = "TRAWL_MAX_RECEIVE_COUNT";
pub const ENV_HTTP_TIMEOUT_MS: &str = "TRAWL_HTTP_TIMEOUT_MS";
pub const ENV_SESSION_DEADLINE_MINUTES: &str = "TRAWL_SESSION_DEADLINE_MINUTES";
pub const ENV_WORK_VISIBILITY_TIMEOUT: &str = "TRAWL_WORK_VISIBILITY_TIMEOUT";
pub const ENV_ALERT_TOPIC_ARN: &str = "TRAWL_ALERT_TOPIC_ARN";
pub const ENV_WEBHOOK_URL: &str = "TRAWL_WEBHOOK_URL";
pub const ENV_ALERT_AFTER_DAYS: &str = "TRAWL_ALERT_AFTER_DAYS";
pub const ENV_ALERT_FAILURES_IN_A_ROW: &str = "TRAWL_ALERT_FAILURES_IN_A_ROW";
pub const ENV_DASHBOARD_URL: &str = "TRAWL_DASHBOARD_URL";
pub const ENV_VARS: &[&str] = &[
    ENV_ALERT_TOPIC_ARN,
    ENV_WEBHOOK_URL,
    ENV_ALERT_AFTER_DAYS,
    ENV_ALERT_FAILURES_IN_A_ROW,
    ENV_DASHBOARD_URL,
    ENV_WORK_VISIBILITY_TIMEOUT,
    ENV_SESSION_DEADLINE_MINUTES,
    ENV_TABLE,
    ENV_BUCKET,
    ENV_WORK_QUEUE_URL,
    ENV_TICK_MINUTES,
    ENV_MAX_RECEIVE_COUNT,
    ENV_HTTP_TIMEOUT_MS,
];

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct EnvError(String);

/// Reads resources and settings from the environment; missing settings keep their defaults.
pub fn from_env() -> Result<(Resources, Settings), EnvError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let required = |k: &str| var(k).ok_or_else(|| EnvError(format!("{k} is not set")));
    let number = |k: &str, default: u64| -> Result<u64, EnvError> {
        var(k).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| EnvError(format!("{k}={v:?} is not a whole number")))
        })
    };
    let defaults = Settings::default();
    let resources = Resources {
        table: required(ENV_TABLE)?,
        bucket: required(ENV_BUCKET)?,
        work_queue_url: var(ENV_WORK_QUEUE_URL),
        alert_topic_arn: var(ENV_ALERT_TOPIC_ARN),
        webhook_url: var(ENV_WEBHOOK_URL),
    };
    let settings = Settings {
        tick_minutes: number(ENV_TICK_MINUTES, defaults.tick_minutes.into())? as u32,
        max_receive_count: number(ENV_MAX_RECEIVE_COUNT, defaults.max_receive_count.into())? as u32,
        http_timeout: Duration::from_millis(number(
            ENV_HTTP_TIMEOUT_MS,
            defaults.http_timeout.as_millis() as u64,
        )?),
        session_deadline_minutes: number(
            ENV_SESSION_DEADLINE_MINUTES,
            defaults.session_deadline_minutes.into(),
        )? as u32,
        max_retry_delay: Duration::from_secs(number(
            ENV_WORK_VISIBILITY_TIMEOUT,
            defaults.max_retry_delay.as_secs(),
        )?),
        alerts: crate::pipeline::alerts::AlertSettings {
            after_days: number(ENV_ALERT_AFTER_DAYS, defaults.alerts.after_days.into())?.max(1)
                as u32,
            failures_in_a_row: number(
                ENV_ALERT_FAILURES_IN_A_ROW,
                defaults.alerts.failures_in_a_row.into(),
            )?
            .max(1) as u32,
            dashboard_url: var(ENV_DASHBOARD_URL),
        },
        // The functions' stdout goes to CloudWatch Logs, which reads the metrics out of it.
        emit_metrics: true,
        ..defaults
    };
    Ok((resources, settings))
}

/// Loads the SDK configuration the standard way (env, profile, role). When an endpoint is
/// overridden (LocalStack), S3 uses path-style addressing and checksums only when required,
/// which emulators need.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The SDK's own HTTPS client with rustls on ring instead of its default aws-lc-rs, which
/// makes each function binary larger (BENCHMARKS.md); the same crypto library `trawl::http`
/// uses.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    s3_client_counted(config, None)
}

fn s3_client_counted(
    config: &aws_config::SdkConfig,
    counter: Option<&RequestCounter>,
) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config);
    if let Some(counter) = counter {
        builder = builder.interceptor(counter.clone());
    }
    if config.endpoint_url().is_some() {
        builder = builder
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Services backed by DynamoDB, S3 and SQS.
pub fn services(
    config: &aws_config::SdkConfig,
    resources: &Resources,
    settings: Settings,
) -> Services {
    services_counted(config, resources, settings, None)
}

/// [`services`] whose clients count every request they send into `counter` (benchmarks).
pub fn services_counted(
    config: &aws_config::SdkConfig,
    resources: &Resources,
    settings: Settings,
    counter: Option<&RequestCounter>,
) -> Services {
    let dynamodb = || {
        let mut builder = aws_sdk_dynamodb::config::Builder::from(config);
        if let Some(counter) = counter {
            builder = builder.interceptor(counter.clone());
        }
        aws_sdk_dynamodb::Client::from_conf(builder.build())
    };
    let store = dynamodb::DynamoStore::new(dynamodb(), &resources.table);
    let objects = s3::S3Objects::new(s3_client_counted(config, counter), &resources.bucket);
    let queue: Arc<dyn crate::ports::WorkQueue> = match &resources.work_queue_url {
        Some(url) => {
            let mut builder = aws_sdk_sqs::config::Builder::from(config);
            if let Some(counter) = counter {
                builder = builder.interceptor(counter.clone());
            }
            let client = aws_sdk_sqs::Client::from_conf(builder.build());
            Arc::new(sqs::SqsQueue::new(client, url))
        }
        None => Arc::new(NoQueue),
    };
    // Politeness limits live in the same table, so they hold across every invocation.
    let gate = gate::DynamoGate::new(dynamodb(), &resources.table);
    let mut services = Services::new(Arc::new(store), Arc::new(objects), queue, settings);
    services.http = services.http.with_gate(Arc::new(gate));
    services.alerts = alert_sinks(config, resources, counter);
    services
}

/// The stack's topic and the webhook, whichever are configured; a webhook URL that does not
/// parse is logged and left out (alerts still reach the topic).
fn alert_sinks(
    config: &aws_config::SdkConfig,
    resources: &Resources,
    counter: Option<&RequestCounter>,
) -> Arc<dyn crate::ports::AlertSink> {
    let mut sinks: Vec<Arc<dyn crate::ports::AlertSink>> = Vec::new();
    if let Some(topic) = &resources.alert_topic_arn {
        let mut builder = aws_sdk_sns::config::Builder::from(config);
        if let Some(counter) = counter {
            builder = builder.interceptor(counter.clone());
        }
        let client = aws_sdk_sns::Client::from_conf(builder.build());
        sinks.push(Arc::new(sns::SnsAlerts::new(client, topic)));
    }
    if let Some(url) = &resources.webhook_url {
        match crate::pipeline::alerts::WebhookAlerts::new(url, WEBHOOK_TIMEOUT) {
            Ok(webhook) => sinks.push(Arc::new(webhook)),
            Err(e) => tracing::error!(error = %e, "the alert webhook is left out"),
        }
    }
    match sinks.len() {
        0 => Arc::new(crate::pipeline::alerts::LogAlerts),
        _ => Arc::new(crate::pipeline::alerts::AllOf(sinks)),
    }
}

/// A chat webhook that does not answer within this delays a close by this much at most.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Services for a Lambda function, from its environment.
pub async fn services_from_env() -> Result<Services, EnvError> {
    let (resources, settings) = from_env()?;
    Ok(services(&sdk_config().await, &resources, settings))
}

/// For functions deployed without a work queue: sending is a configuration error.
struct NoQueue;

#[async_trait::async_trait]
impl crate::ports::WorkQueue for NoQueue {
    async fn send_delayed(
        &self,
        _: &[crate::messages::WorkMessage],
        _: Duration,
    ) -> Result<(), crate::ports::StoreError> {
        Err(crate::ports::StoreError::new(format!(
            "{ENV_WORK_QUEUE_URL} is not set"
        )))
    }
}

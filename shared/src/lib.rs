//! Trawl: serverless metadata harvesting for open-data catalogs.
//!
//! - [`model`]: sources, sessions, resources, records (plain data).
//! - [`protocols`]: one module per remote catalog protocol behind [`protocols::Catalog`].
//! - [`pipeline`]: the stages (schedule → list → harvest → finalize), written against [`ports`].
//! - [`aws`]: DynamoDB / S3 / SQS implementations of the ports; [`local`]: in-memory ones.
//! - [`handlers`]: the Lambda event edge the functions and the local runner call.

pub mod api;
pub mod aws;
pub mod catalog_check;
pub mod handlers;
pub mod http;
pub mod keys;
pub mod local;
pub mod messages;
pub mod model;
pub mod pipeline;
pub mod politeness;
pub mod ports;
pub mod protocols;
pub mod queries;
pub mod xml;

/// Installs the tracing subscriber: JSON lines (what Lambda's JSON log format expects), level
/// from `RUST_LOG`, else from the function's `ApplicationLogLevel` (`AWS_LAMBDA_LOG_LEVEL`),
/// else `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        tracing_subscriber::EnvFilter::new(level.to_lowercase())
    });
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .try_init();
}

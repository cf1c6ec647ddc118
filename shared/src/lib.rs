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
pub mod deploy;
pub mod documents;
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
pub mod random;
#[cfg(feature = "testing")]
pub mod testing;
pub mod xml;

/// Installs the tracing subscriber: JSON lines (what Lambda's JSON log format expects), level
/// from `RUST_LOG`, else from the function's `ApplicationLogLevel` (`AWS_LAMBDA_LOG_LEVEL`),
/// else `info`.
pub fn init_tracing() {
    // `RUST_LOG` in its `target=level,level` form, else the Lambda log level. `Targets`, not
    // `EnvFilter`: no span/field filters, and none of the regex engine they bring (300 KB
    // of each function binary).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_else(|_| "info".into());
            level.to_lowercase().parse().unwrap_or_else(|_| {
                tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
            })
        });
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(false)
                .without_time()
                .with_filter(filter),
        )
        .try_init();
}

//! The api function: the read-only status API and the dashboard behind an HTTP API.
//! Logic: `trawl::api` (the same handler `trawl serve` runs locally).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    trawl::init_tracing();
    let services = trawl::aws::services_from_env().await?;
    let services = &services;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(trawl::handlers::api(services, event.payload).await)
    }))
    .await
}

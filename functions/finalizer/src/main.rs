//! The finalizer function: DynamoDB stream records of sessions whose `remaining` reached
//! zero (the template's filter) close those sessions. Logic: `trawl::pipeline::finalize`.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    trawl::init_tracing();
    let services = trawl::aws::services_from_env().await?;
    let services = &services;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(trawl::handlers::finalizer(services, event.payload).await)
    }))
    .await
}

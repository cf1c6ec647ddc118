//! The scheduler function: an EventBridge Scheduler tick (or a manual `{"source_id": ...}`)
//! starts the sessions that are due. Logic: `trawl::pipeline::schedule`.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    trawl::init_tracing();
    let services = trawl::aws::services_from_env().await?;
    let services = &services;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let report = trawl::handlers::scheduler(services, event.payload).await?;
        Ok::<_, Error>(serde_json::to_value(report)?)
    }))
    .await
}

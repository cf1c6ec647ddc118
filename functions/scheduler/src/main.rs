//! The scheduler function: an EventBridge Scheduler tick (or a manual `{"source_id": ...}`,
//! a selection, a deployment's harvest) starts sessions; a CloudFormation custom resource
//! event applies the deployment (`trawl::deploy`). Logic: `trawl::pipeline::schedule`.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    trawl::init_tracing();
    let services = trawl::aws::services_from_env().await?;
    let services = &services;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(trawl::handlers::scheduler_function(services, event.payload).await?)
    }))
    .await
}

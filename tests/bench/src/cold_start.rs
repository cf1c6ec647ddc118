//! Part 4: each function's release binary started the way Lambda starts it, against a minimal
//! Lambda Runtime API served here: time from process start to its first
//! `GET /runtime/invocation/next`, binary size, and resident memory after ten real
//! invocations (against the stack deployed on LocalStack and a fixture ERDDAP server).

use crate::process::{current_rss, mib, sibling, Server};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex as AsyncMutex, Notify};

pub const FUNCTIONS: &[&str] = &[
    "trawl-scheduler",
    "trawl-harvester",
    "trawl-finalizer",
    "trawl-api",
];
const SOURCE_ID: &str = "bench-coldstart";

/// The Runtime API's side of one function process.
struct RuntimeApi {
    /// When the first `next` arrived.
    first_next: Mutex<Option<Instant>>,
    nexts: Mutex<u32>,
    arrived: Notify,
    /// Events to hand out; when closed, `next` waits forever (the function idles, as in Lambda).
    events: AsyncMutex<mpsc::Receiver<Value>>,
    responses: mpsc::Sender<Value>,
}

impl RuntimeApi {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
        let path = req.uri().path().to_string();
        if path.ends_with("/runtime/invocation/next") {
            {
                let mut first = self.first_next.lock().expect("lock");
                first.get_or_insert_with(Instant::now);
                *self.nexts.lock().expect("lock") += 1;
            }
            self.arrived.notify_waiters();
            let event = self.events.lock().await.recv().await;
            let Some(event) = event else {
                std::future::pending::<()>().await;
                unreachable!()
            };
            let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
            return Ok(Response::builder()
                .header("Lambda-Runtime-Aws-Request-Id", format!("req-{deadline}"))
                .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                .header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:000000000000:function:bench",
                )
                .header(
                    "Lambda-Runtime-Trace-Id",
                    "Root=1-00000000-000000000000000000000000",
                )
                .body(Full::new(Bytes::from(event.to_string())))?);
        }
        let body = req.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if path.ends_with("/response") {
            let _ = self.responses.send(value).await;
        } else if path.ends_with("/error") {
            let _ = self.responses.send(json!({"lambda_error": value})).await;
        }
        Ok(Response::builder()
            .status(202)
            .body(Full::new(Bytes::from_static(b"{}")))?)
    }
}

/// A started function process with its Runtime API.
struct Function {
    child: Child,
    started: Instant,
    api: Arc<RuntimeApi>,
    events: Option<mpsc::Sender<Value>>,
    responses: mpsc::Receiver<Value>,
}

impl Function {
    async fn start(name: &str, env: &[(String, String)]) -> Result<Function> {
        let (event_tx, event_rx) = mpsc::channel(1);
        let (response_tx, response_rx) = mpsc::channel(16);
        let api = Arc::new(RuntimeApi {
            first_next: Mutex::new(None),
            nexts: Mutex::new(0),
            arrived: Notify::new(),
            events: AsyncMutex::new(event_rx),
            responses: response_tx,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = api.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| api.clone().handle(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let mut command = Command::new(sibling(name)?);
        command
            .env_clear()
            .envs(env.iter().cloned())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let child = command.spawn()?;
        Ok(Function {
            child,
            started,
            api,
            events: Some(event_tx),
            responses: response_rx,
        })
    }

    /// Waits until the process has asked for its `count`-th event.
    async fn wait_for_next(&self, count: u32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.api.arrived.notified();
            if *self.api.nexts.lock().expect("lock") >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the function did not ask for event {count} within 30 s");
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    fn cold_start(&self) -> Option<Duration> {
        self.api
            .first_next
            .lock()
            .expect("lock")
            .map(|t| t.duration_since(self.started))
    }

    async fn invoke(&mut self, event: Value) -> Result<Value> {
        self.events
            .as_ref()
            .context("closed")?
            .send(event)
            .await
            .ok()
            .context("the runtime API stopped")?;
        tokio::time::timeout(Duration::from_secs(120), self.responses.recv())
            .await
            .context("no response within 120 s")?
            .context("the runtime API stopped")
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment `infra/deploy.sh` prepared for the functions (`.local/functions.env`),
/// plus what a Lambda sandbox always has.
fn function_env() -> Result<Vec<(String, String)>> {
    let file = trawl_runner::repo_root().join(".local/functions.env");
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "reading {} (run infra/localstack.sh start && infra/deploy.sh)",
            file.display()
        )
    })?;
    let mut env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    env.push(("RUST_LOG".into(), "info".into()));
    env.push(("PATH".into(), "/usr/bin:/bin".into()));
    Ok(env)
}

pub async fn run(repeats: usize) -> Result<Vec<Value>> {
    let env = function_env()?;
    let mut rows = Vec::new();
    let mut ctx = Invocations::start(&env).await?;
    for name in FUNCTIONS {
        let size = std::fs::metadata(sibling(name)?)?.len();
        // Cold starts: fresh processes, each stopped at its first `next`.
        let mut starts = Vec::new();
        for _ in 0..repeats {
            let f = Function::start(name, &env).await?;
            f.wait_for_next(1).await?;
            starts.push(f.cold_start().expect("first next seen"));
        }
        starts.sort();
        // Footprint: one process, ten real invocations, RSS while it waits for the eleventh.
        let mut f = Function::start(name, &env).await?;
        let mut errors = 0;
        for i in 0..10 {
            let event = ctx.event(name, i).await?;
            let response = f.invoke(event.clone()).await?;
            if response.get("lambda_error").is_some() {
                errors += 1;
                eprintln!("{name} invocation {i} failed: {response}");
            }
            ctx.after(name, &event, &response).await?;
        }
        f.wait_for_next(11).await?;
        let rss = current_rss(f.child.id())?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let row = json!({
            "function": name,
            "binary_bytes": size,
            "cold_start_ms": {"min": ms(starts[0]), "median": ms(starts[starts.len() / 2]),
                              "max": ms(starts[starts.len() - 1]), "runs": starts.len()},
            "rss_after_10_bytes": rss,
            "invocation_errors": errors,
        });
        println!("{}", serde_json::to_string(&row)?);
        rows.push(row);
    }
    // The source goes; its closed session, records and history stay, as after any removal.
    ctx.svc.store.remove_source(SOURCE_ID).await?;
    println!();
    println!(
        "{:<18} {:>10} {:>12} {:>12} {:>14}",
        "function", "size MiB", "start ms p50", "start ms max", "RSS MiB @10"
    );
    for row in &rows {
        println!(
            "{:<18} {:>10.1} {:>12.1} {:>12.1} {:>14.1}",
            row["function"].as_str().unwrap_or_default(),
            mib(row["binary_bytes"].as_u64().unwrap_or(0)),
            row["cold_start_ms"]["median"].as_f64().unwrap_or(f64::NAN),
            row["cold_start_ms"]["max"].as_f64().unwrap_or(f64::NAN),
            mib(row["rss_after_10_bytes"].as_u64().unwrap_or(0)),
        );
    }
    Ok(rows)
}

/// What the ten invocations of each function work on: a source registered on the deployed
/// stack, served by a fixture ERDDAP server, and the session the scheduler starts for it.
struct Invocations {
    _fixture: Server,
    svc: trawl::pipeline::Services,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    session_id: Option<String>,
}

impl Invocations {
    async fn start(env: &[(String, String)]) -> Result<Invocations> {
        for (k, v) in env {
            if k.starts_with("AWS_") {
                std::env::set_var(k, v);
            }
        }
        let mut fixture = Command::new(sibling("fixture-erddap")?);
        fixture.args(["--port", "0", "--datasets", "100"]);
        let fixture = Server::start(fixture)?;
        let stack =
            trawl_runner::Stack::load(&trawl_runner::repo_root().join(".local/stack.json"))?;
        let config = trawl::aws::sdk_config().await;
        let svc = trawl::aws::services(&config, &stack.resources()?, stack.settings()?);
        let source = trawl::model::SourceSpec::from_json(
            &json!({"id": SOURCE_ID, "protocol": "erddap", "base_url": fixture.base_url,
                    "schedule": "rate(1 day)", "internal": true})
            .to_string(),
        )?;
        svc.store.put_source(&source).await?;
        Ok(Invocations {
            _fixture: fixture,
            svc,
            sqs: aws_sdk_sqs::Client::new(&config),
            queue_url: stack.get("WorkQueueUrl")?.to_string(),
            session_id: None,
        })
    }

    async fn event(&mut self, function: &str, i: usize) -> Result<Value> {
        Ok(match function {
            "trawl-scheduler" => json!({"source_id": SOURCE_ID}),
            "trawl-harvester" => self.sqs_batch().await?,
            "trawl-finalizer" => {
                let id = self.session_id.clone().unwrap_or_default();
                json!({"Records": [{
                    "eventID": format!("bench-{i}"), "eventName": "MODIFY", "eventSource": "aws:dynamodb",
                    "dynamodb": {
                        "Keys": {"pk": {"S": format!("SESSION#{id}")}, "sk": {"S": "SESSION"}},
                        "NewImage": {"pk": {"S": format!("SESSION#{id}")}, "sk": {"S": "SESSION"},
                                     "status": {"S": "running"}, "remaining": {"N": "0"}},
                        "SequenceNumber": format!("{}", 1000 + i), "StreamViewType": "NEW_AND_OLD_IMAGES"
                    }
                }]})
            }
            _ => {
                let paths = [
                    "/api/sources".to_string(),
                    format!("/api/sources/{SOURCE_ID}"),
                    format!("/api/sources/{SOURCE_ID}/resources"),
                ];
                let path = &paths[i % paths.len()];
                json!({
                    "version": "2.0", "routeKey": "GET /{proxy+}", "rawPath": path, "rawQueryString": "",
                    "headers": {"accept": "application/json"},
                    "requestContext": {"http": {"method": "GET", "path": path}, "stage": "$default"},
                    "isBase64Encoded": false
                })
            }
        })
    }

    /// Up to ten messages of the work queue, as the SQS event source mapping delivers them.
    async fn sqs_batch(&self) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut records = Vec::new();
        while records.is_empty() && Instant::now() < deadline {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
                )
                .send()
                .await?;
            for m in received.messages() {
                let count = m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .cloned()
                    .unwrap_or_else(|| "1".into());
                records.push(json!({
                    "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                    "body": m.body(), "attributes": {"ApproximateReceiveCount": count},
                    "messageAttributes": {}, "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:work", "awsRegion": "us-east-1"
                }));
            }
        }
        if records.is_empty() {
            bail!("the work queue stayed empty");
        }
        Ok(json!({ "Records": records }))
    }

    /// Plays the rest of the event source: remembers the session, deletes what was handled.
    async fn after(&mut self, function: &str, event: &Value, response: &Value) -> Result<()> {
        match function {
            "trawl-scheduler" => {
                if let Some(id) = response["started"][0].as_str() {
                    self.session_id = Some(id.to_string());
                }
            }
            "trawl-harvester" => {
                let failed: Vec<&str> = response["batchItemFailures"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|x| x["itemIdentifier"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                for record in event["Records"].as_array().into_iter().flatten() {
                    if failed.contains(&record["messageId"].as_str().unwrap_or_default()) {
                        continue;
                    }
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(record["receiptHandle"].as_str().unwrap_or_default())
                        .send()
                        .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

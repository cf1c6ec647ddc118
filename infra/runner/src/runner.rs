//! Plays the Lambda service for a stack deployed without functions (LocalStack host mode
//! cannot run them): polls the work queue like an SQS event source mapping, reads the table's
//! stream like a DynamoDB event source mapping, and invokes Trawl's handlers in-process.
//!
//! What it honours, as Lambda does: batch size and concurrency from `template.yaml`; partial
//! batch failures (failed messages are not deleted, so SQS makes them visible again after the
//! queue's visibility timeout and moves them to the DLQ after `maxReceiveCount`); the function
//! timeout (a timed-out batch deletes nothing); the stream filter; stream retries and the
//! on-failure destination; and delivery as a fair queue (see [`crate::fair`]).

use crate::fair::{FairShare, DIGS};
use crate::stack::Stack;
use crate::template::{pattern_matches, EventSources};
use anyhow::{Context, Result};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use trawl::model::SessionStatus;
use trawl::pipeline::schedule::ScheduleReport;
use trawl::pipeline::Services;

/// Ways to make delivery worse than SQS usually is, for tests. Random choices come from
/// `seed`, so a failing run can be replayed.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Every message is delivered a second time: the runner puts a copy back on the queue
    /// before handing the original to the harvester.
    pub duplicate_every_message: bool,
    /// The copy becomes visible after a random delay of up to this many seconds (SQS
    /// `DelaySeconds`), so the two deliveries meet at random moments.
    pub duplicate_delay_max_secs: i32,
    /// The share of harvester invocations that die mid-batch the way a Lambda crashes: the
    /// handler is cut off at a random moment and nothing is reported, so the batch's messages
    /// reappear after the visibility timeout and whatever was written stays written.
    pub crash_probability: f64,
    pub seed: u64,
}

/// What the runner did, for tests and the demo's printout.
#[derive(Debug, Default)]
pub struct Stats {
    pub harvester_invocations: AtomicU64,
    pub messages: AtomicU64,
    pub batch_item_failures: AtomicU64,
    pub duplicates_sent: AtomicU64,
    pub timed_out_batches: AtomicU64,
    pub crashed_batches: AtomicU64,
    pub stream_records_seen: AtomicU64,
    pub finalizer_invocations: AtomicU64,
    pub stream_failures_sent: AtomicU64,
    /// Messages of a source over its share sent to the back of the queue.
    pub put_back_for_fairness: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BTreeMap::from([
            ("harvester_invocations", get(&self.harvester_invocations)),
            ("messages", get(&self.messages)),
            ("batch_item_failures", get(&self.batch_item_failures)),
            ("duplicates_sent", get(&self.duplicates_sent)),
            ("timed_out_batches", get(&self.timed_out_batches)),
            ("crashed_batches", get(&self.crashed_batches)),
            ("stream_records_seen", get(&self.stream_records_seen)),
            ("finalizer_invocations", get(&self.finalizer_invocations)),
            ("stream_failures_sent", get(&self.stream_failures_sent)),
            ("put_back_for_fairness", get(&self.put_back_for_fairness)),
        ])
    }
}

/// What one look at the run's sessions saw: those still open, and whether the queue is idle.
struct Looked {
    open: Vec<(String, Option<trawl::model::Counters>)>,
    idle: bool,
}

pub struct Runner {
    pub services: Services,
    pub stack: Stack,
    pub sources: EventSources,
    pub faults: Faults,
    pub stats: Arc<Stats>,
    /// The runner's own looks at its sessions, which nothing does on AWS (the finalizer is
    /// woken by the table's stream): a client of its own, so a benchmark does not bill them
    /// as the functions' requests.
    watch: Arc<dyn trawl::ports::StateStore>,
    sqs: aws_sdk_sqs::Client,
    /// Puts messages back for fairness. Not counted with the event source mappings' requests:
    /// on AWS the fair queue orders its messages itself, at no charge.
    fair_sqs: aws_sdk_sqs::Client,
    fair: std::sync::Mutex<FairShare>,
    streams: aws_sdk_dynamodbstreams::Client,
    /// Shard id → next iterator (None once a shard is closed and drained).
    shards: Mutex<HashMap<String, Option<String>>>,
    /// Shard id → sequence number of the last record read, to resume after an expired iterator.
    last_sequence: Mutex<HashMap<String, String>>,
    harvester_timeout: Duration,
    rng: std::sync::Mutex<StdRng>,
    /// Session id → how many times the stream showed it going from running to closed.
    closes: std::sync::Mutex<BTreeMap<String, u64>>,
}

const DUPLICATE_ATTRIBUTE: &str = "trawl-injected-duplicate";

impl Runner {
    /// Connects to the deployed stack. Stream reading starts at the stream's current end, so
    /// records from earlier runs are not replayed.
    pub async fn connect(stack: Stack, sources: EventSources, faults: Faults) -> Result<Runner> {
        Runner::connect_counted(stack, sources, faults, None, None).await
    }

    /// [`Runner::connect`], counting the requests the functions send into `functions` and
    /// those the runner sends as the event source mappings (SQS polls and deletes, stream
    /// reads) into `event_sources`: the benchmarks bill them apart.
    pub async fn connect_counted(
        stack: Stack,
        sources: EventSources,
        faults: Faults,
        functions: Option<&trawl::aws::RequestCounter>,
        event_sources: Option<&trawl::aws::RequestCounter>,
    ) -> Result<Runner> {
        let config = trawl::aws::sdk_config().await;
        let resources = stack.resources()?;
        let services =
            trawl::aws::services_counted(&config, &resources, stack.settings()?, functions);
        let watch = Arc::new(trawl::aws::dynamodb::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            &resources.table,
        ));
        let fair_sqs = aws_sdk_sqs::Client::new(&config);
        let mut sqs = aws_sdk_sqs::config::Builder::from(&config);
        let mut streams = aws_sdk_dynamodbstreams::config::Builder::from(&config);
        if let Some(counter) = event_sources {
            sqs = sqs.interceptor(counter.clone());
            streams = streams.interceptor(counter.clone());
        }
        let runner = Runner {
            services,
            watch,
            harvester_timeout: stack.harvester_timeout()?,
            stack,
            sources,
            stats: Arc::new(Stats::default()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            fair_sqs,
            fair: std::sync::Mutex::new(FairShare::default()),
            streams: aws_sdk_dynamodbstreams::Client::from_conf(streams.build()),
            shards: Mutex::new(HashMap::new()),
            last_sequence: Mutex::new(HashMap::new()),
            rng: std::sync::Mutex::new(StdRng::seed_from_u64(faults.seed)),
            closes: std::sync::Mutex::new(BTreeMap::new()),
            faults,
        };
        runner.refresh_shards(ShardIteratorType::Latest).await?;
        Ok(runner)
    }

    /// Invokes the scheduler handler with a payload, as EventBridge Scheduler or an operator would.
    pub async fn invoke_scheduler(&self, payload: Value) -> Result<ScheduleReport> {
        Ok(trawl::handlers::scheduler(&self.services, payload).await?)
    }

    /// Invokes the scheduler the way the template's ScheduleV2 does at `at`.
    pub async fn tick(&self, at: DateTime<Utc>) -> Result<ScheduleReport> {
        let input = self.sources.schedule_input.replace(
            "<aws.scheduler.scheduled-time>",
            &trawl::model::session::rfc3339(at),
        );
        let payload: Value = serde_json::from_str(&input).context("schedule Input is not JSON")?;
        self.invoke_scheduler(payload).await
    }

    /// How many times the table's stream showed `session_id` closing (running → closed),
    /// as seen while this runner was polling.
    pub fn closes_observed(&self, session_id: &str) -> u64 {
        let closes = self.closes.lock().unwrap_or_else(|e| e.into_inner());
        closes.get(session_id).copied().unwrap_or(0)
    }

    /// Runs the harvester and finalizer until every listed session is closed and the work
    /// queue is empty, or `timeout` passes.
    pub async fn run_until_closed(&self, session_ids: &[String], timeout: Duration) -> Result<()> {
        self.drive(session_ids, Instant::now() + timeout, None)
            .await
            .map(|_| ())
    }

    /// Like [`Runner::run_until_closed`], but also returns when the work queue has been empty
    /// for `stall` while sessions are still open (work that died on its last receive and went
    /// to the DLQ uncounted: the watchdog's case). Returns the sessions still open.
    pub async fn run_until_closed_or_stalled(
        &self,
        session_ids: &[String],
        timeout: Duration,
        stall: Duration,
    ) -> Result<Vec<String>> {
        self.drive(session_ids, Instant::now() + timeout, Some(stall))
            .await
    }

    async fn drive(
        &self,
        session_ids: &[String],
        deadline: Instant,
        stall: Option<Duration>,
    ) -> Result<Vec<String>> {
        let stop = AtomicBool::new(false);
        let workers = (0..self.sources.harvester_max_concurrency).map(|_| self.poll_work(&stop));
        let watcher = async {
            let result = self.wait_closed(session_ids, deadline, stall).await;
            stop.store(true, Ordering::SeqCst);
            result
        };
        let (work_results, stream_result, watch_result) = tokio::join!(
            futures::future::join_all(workers),
            self.poll_stream(&stop),
            watcher
        );
        for r in work_results {
            r.context("work queue poller")?;
        }
        stream_result.context("stream poller")?;
        watch_result
    }

    async fn wait_closed(
        &self,
        session_ids: &[String],
        deadline: Instant,
        stall: Option<Duration>,
    ) -> Result<Vec<String>> {
        let mut idle_since: Option<Instant> = None;
        // The runner's own looks at sessions and the queue: one failed request (an emulator's
        // 500 under load) is looked at again on the next turn, not the end of the run.
        let mut failed_looks = 0u32;
        loop {
            match self.look_at_sessions(session_ids).await {
                Ok(looked) => {
                    failed_looks = 0;
                    if let Some(open) = self.settled(looked, &mut idle_since, stall, deadline)? {
                        return Ok(open);
                    }
                }
                Err(e) if failed_looks < 20 => {
                    failed_looks += 1;
                    tracing::warn!(error = %format!("{e:#}"), failed_looks, "runner: looking at sessions failed; looking again");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Which of `session_ids` are still open (with their counters), and whether the work
    /// queue is empty; tells the fair share which sources still have work.
    async fn look_at_sessions(&self, session_ids: &[String]) -> Result<Looked> {
        let mut open = Vec::new();
        let mut waiting = Vec::new();
        for id in session_ids {
            match self.watch.get_session(id).await? {
                Some(s) if s.status != SessionStatus::Running => {}
                other => {
                    waiting.extend(
                        other
                            .as_ref()
                            .filter(|s| s.counters.remaining > 0)
                            .map(|s| s.source_id.clone()),
                    );
                    open.push((id.clone(), other.map(|s| s.counters)));
                }
            }
        }
        self.fair_share().set_waiting(waiting);
        let idle = self.work_queue_is_empty().await?;
        Ok(Looked { open, idle })
    }

    /// `Some(still open)` once the run is over: every session closed and the queue empty, or
    /// the queue idle for `stall`; an error past `deadline`; `None` to look again.
    fn settled(
        &self,
        looked: Looked,
        idle_since: &mut Option<Instant>,
        stall: Option<Duration>,
        deadline: Instant,
    ) -> Result<Option<Vec<String>>> {
        let Looked { open, idle } = looked;
        if open.is_empty() && idle {
            return Ok(Some(Vec::new()));
        }
        *idle_since = if idle {
            idle_since.or(Some(Instant::now()))
        } else {
            None
        };
        if let (Some(stall), Some(since)) = (stall, *idle_since) {
            if since.elapsed() >= stall {
                return Ok(Some(open.into_iter().map(|(id, _)| id).collect()));
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out with sessions still open: {open:?}");
        }
        Ok(None)
    }

    async fn work_queue_is_empty(&self) -> Result<bool> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(self.stack.get("WorkQueueUrl")?)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await?;
        let attrs = out.attributes.unwrap_or_default();
        let count = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count(QueueAttributeName::ApproximateNumberOfMessages) == 0
            && count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == 0
            && count(QueueAttributeName::ApproximateNumberOfMessagesDelayed) == 0)
    }

    /// One poller of the SQS event source mapping.
    async fn poll_work(&self, stop: &AtomicBool) -> Result<()> {
        let queue_url = self.stack.get("WorkQueueUrl")?.to_string();
        let queue_arn = self.stack.get("WorkQueueArn")?.to_string();
        let capacity = self.sources.harvester_max_concurrency
            * self.sources.harvester_batch_size.max(1) as usize;
        // Receives in a row that found only over-share messages.
        let mut digs = 0;
        while !stop.load(Ordering::SeqCst) {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(self.sources.harvester_batch_size)
                .wait_time_seconds(self.sources.harvester_batching_window_secs.clamp(1, 20))
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            let received = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receive failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if received.is_empty() {
                continue;
            }
            let groups: Vec<Option<String>> = received.iter().map(message_group).collect();
            let split = self.fair_share().split(
                &groups,
                capacity,
                self.sources.harvester_batch_size.max(1) as usize,
                digs >= DIGS,
            );
            let (mut messages, mut parked) = (Vec::new(), Vec::new());
            for (i, m) in received.into_iter().enumerate() {
                if split.take.contains(&i) {
                    messages.push(m);
                } else {
                    parked.push(m);
                }
            }
            let taken: Vec<Option<String>> =
                split.take.iter().map(|&i| groups[i].clone()).collect();
            let _in_flight = Released(self, taken);
            if !parked.is_empty() {
                // Not put back: they come back when their visibility timeout ends, later than
                // a fair queue would deliver them but not lost.
                if let Err(e) = self.park(&queue_url, &parked).await {
                    tracing::warn!(error = %format!("{e:#}"), "putting messages back for fairness failed");
                }
            }
            if messages.is_empty() {
                digs += 1;
                continue;
            }
            digs = 0;
            if self.faults.duplicate_every_message {
                self.send_duplicates(&queue_url, &messages).await?;
            }
            let event = sqs_event(&messages, &queue_arn);
            self.stats
                .harvester_invocations
                .fetch_add(1, Ordering::Relaxed);
            self.stats
                .messages
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            if let Some(after) = self.crash_point() {
                // The invocation dies at a random moment: no response, nothing deleted.
                let _ =
                    tokio::time::timeout(after, trawl::handlers::harvester(&self.services, event))
                        .await;
                self.stats.crashed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    millis = after.as_millis() as u64,
                    "harvester invocation crashed"
                );
                continue;
            }
            let started = Instant::now();
            let response = match tokio::time::timeout(
                self.harvester_timeout,
                trawl::handlers::harvester(&self.services, event),
            )
            .await
            {
                Ok(r) => {
                    tracing::debug!(
                        messages = messages.len(),
                        millis = started.elapsed().as_millis() as u64,
                        "harvester batch done"
                    );
                    r
                }
                Err(_) => {
                    // Like a Lambda timeout: the whole batch comes back after the visibility timeout.
                    self.stats.timed_out_batches.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("harvester batch timed out");
                    continue;
                }
            };
            let failed: Vec<String> = if self.sources.harvester_reports_batch_item_failures {
                response
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect()
            } else {
                Vec::new()
            };
            self.stats
                .batch_item_failures
                .fetch_add(failed.len() as u64, Ordering::Relaxed);
            let done: Vec<DeleteMessageBatchRequestEntry> = messages
                .iter()
                .enumerate()
                .filter(|(_, m)| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("d{i}"))
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .expect("id and handle set")
                })
                .collect();
            if !done.is_empty() {
                self.sqs
                    .delete_message_batch()
                    .queue_url(&queue_url)
                    .set_entries(Some(done))
                    .send()
                    .await?;
            }
        }
        Ok(())
    }

    fn fair_share(&self) -> std::sync::MutexGuard<'_, FairShare> {
        self.fair.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `messages` back at the end of the queue, so the other sources' messages behind
    /// them are received first. Sent again rather than made visible again: a fair queue does
    /// not receive what it holds back, and each receive counts towards the dead-letter
    /// queue's `maxReceiveCount`. Sent before the originals are deleted, so a failure between
    /// the two only delivers twice, which the harvest is built for.
    async fn park(&self, queue_url: &str, messages: &[aws_sdk_sqs::types::Message]) -> Result<()> {
        let copies = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("p{i}"))
                    .message_body(m.body().unwrap_or_default())
                    .set_message_attributes(m.message_attributes().cloned())
                    .set_message_group_id(message_group(m))
                    .build()
                    .expect("id and body set")
            })
            .collect();
        let sent = self
            .fair_sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(copies))
            .send()
            .await?;
        anyhow::ensure!(
            sent.failed().is_empty(),
            "messages not put back: {:?}",
            sent.failed()
        );
        let originals = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("p{i}"))
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("id and handle set")
            })
            .collect();
        self.fair_sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(originals))
            .send()
            .await?;
        self.stats
            .put_back_for_fairness
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the next invocation crashes, and when.
    fn crash_point(&self) -> Option<Duration> {
        if self.faults.crash_probability <= 0.0 {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.gen_bool(self.faults.crash_probability.min(1.0))
            .then(|| Duration::from_millis(rng.gen_range(0..1500)))
    }

    async fn send_duplicates(
        &self,
        queue_url: &str,
        messages: &[aws_sdk_sqs::types::Message],
    ) -> Result<()> {
        let originals: Vec<&aws_sdk_sqs::types::Message> = messages
            .iter()
            .filter(|m| {
                !m.message_attributes()
                    .is_some_and(|a| a.contains_key(DUPLICATE_ATTRIBUTE))
            })
            .collect();
        if originals.is_empty() {
            return Ok(());
        }
        let entries = originals
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let delay = match self.faults.duplicate_delay_max_secs {
                    max if max > 0 => self
                        .rng
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .gen_range(0..=max.min(900)),
                    _ => 0,
                };
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("dup{i}"))
                    .delay_seconds(delay)
                    .message_body(m.body().unwrap_or_default())
                    .set_message_group_id(message_group(m))
                    .message_attributes(
                        DUPLICATE_ATTRIBUTE,
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value("1")
                            .build()
                            .expect("type set"),
                    )
                    .build()
                    .expect("id and body set")
            })
            .collect();
        let out = self
            .sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
        anyhow::ensure!(
            out.failed().is_empty(),
            "duplicates not sent: {:?}",
            out.failed()
        );
        self.stats
            .duplicates_sent
            .fetch_add(originals.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The work messages in the dead-letter queue, without consuming them.
    pub async fn dlq_list(&self) -> Result<Vec<Value>> {
        let url = self.stack.get("WorkDeadLetterQueueUrl")?;
        Ok(trawl::aws::sqs::dead_letters(&self.sqs, url).await?)
    }

    /// Moves every dead-lettered work message back to the work queue.
    pub async fn dlq_replay(&self) -> Result<u64> {
        let dlq = self.stack.get("WorkDeadLetterQueueUrl")?;
        let work = self.stack.get("WorkQueueUrl")?;
        Ok(trawl::aws::sqs::replay_dead_letters(&self.sqs, dlq, work).await?)
    }

    /// The DynamoDB stream event source mapping: filter, batch, invoke, retry, give up to the
    /// on-failure destination.
    async fn poll_stream(&self, stop: &AtomicBool) -> Result<()> {
        let mut last_refresh = Instant::now();
        // After `stop`, keep reading until the stream has been quiet twice: the records of
        // the last closes (seen through the table already) may not have been read yet.
        let mut quiet_after_stop = 0;
        let mut read_failures = 0u32;
        while quiet_after_stop < 2 {
            if last_refresh.elapsed() > Duration::from_secs(10) {
                self.refresh_shards(ShardIteratorType::TrimHorizon).await?;
                last_refresh = Instant::now();
            }
            let shards: Vec<(String, String)> = self
                .shards
                .lock()
                .await
                .iter()
                .filter_map(|(id, it)| it.clone().map(|it| (id.clone(), it)))
                .collect();
            let mut got_any = false;
            for (shard, iterator) in shards {
                let read = self
                    .streams
                    .get_records()
                    .shard_iterator(iterator)
                    .limit(1000)
                    .send()
                    .await;
                let out = match read {
                    Ok(out) => out,
                    // Iterators expire (LocalStack's after a few minutes, however recently
                    // they were handed out, in long runs); Lambda's mapping then asks for a
                    // new one after the last record it read, and so does this.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_expired_iterator_exception()) =>
                    {
                        tracing::warn!(%shard, "shard iterator expired; asking for a new one");
                        self.renew_iterator(&shard).await?;
                        continue;
                    }
                    // Lambda's mapping retries a failed read; so does this, for a while
                    // (LocalStack's stream helper answers InternalError when it is loaded).
                    Err(e) if read_failures < 30 => {
                        read_failures += 1;
                        tracing::warn!(%shard, error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e), "stream read failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("reading stream shard {shard}"))
                    }
                };
                read_failures = 0;
                if let Some(last) = out.records().last().and_then(|r| r.dynamodb()) {
                    if let Some(sequence) = last.sequence_number() {
                        self.last_sequence
                            .lock()
                            .await
                            .insert(shard.clone(), sequence.to_string());
                    }
                }
                let records: Vec<Value> = out.records().iter().map(stream_record_json).collect();
                got_any |= !records.is_empty();
                self.observe_closes(&records);
                self.stats
                    .stream_records_seen
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                let matching: Vec<Value> = records
                    .into_iter()
                    .filter(|r| pattern_matches(&self.sources.finalizer_filter, r))
                    .collect();
                for batch in matching.chunks(self.sources.finalizer_batch_size.max(1) as usize) {
                    self.invoke_finalizer(batch.to_vec()).await?;
                }
                self.shards
                    .lock()
                    .await
                    .insert(shard, out.next_shard_iterator().map(str::to_string));
            }
            if !got_any {
                if stop.load(Ordering::SeqCst) {
                    quiet_after_stop += 1;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Counts session items whose stream record shows the step from running to closed.
    fn observe_closes(&self, records: &[Value]) {
        let mut closes = self.closes.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            let d = &r["dynamodb"];
            let closed = d["Keys"]["sk"]["S"] == trawl::keys::SESSION_SK
                && d["OldImage"]["status"]["S"] == "running"
                && d["NewImage"]["status"]["S"]
                    .as_str()
                    .is_some_and(|s| s != "running");
            if let Some(id) = d["Keys"]["pk"]["S"]
                .as_str()
                .and_then(trawl::keys::session_id_of_pk)
                .filter(|_| closed)
            {
                *closes.entry(id.to_string()).or_default() += 1;
            }
        }
    }

    async fn invoke_finalizer(&self, mut records: Vec<Value>) -> Result<()> {
        let mut attempt = 0;
        loop {
            self.stats
                .finalizer_invocations
                .fetch_add(1, Ordering::Relaxed);
            let response =
                trawl::handlers::finalizer(&self.services, json!({ "Records": records })).await;
            let failed: Vec<String> = response["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if failed.is_empty() {
                return Ok(());
            }
            // Lambda retries from the first failed record onwards.
            let first = records
                .iter()
                .position(|r| {
                    failed
                        .iter()
                        .any(|f| r["dynamodb"]["SequenceNumber"].as_str() == Some(f))
                })
                .unwrap_or(0);
            records.drain(..first);
            attempt += 1;
            if attempt > self.sources.finalizer_max_retry_attempts {
                self.sqs
                    .send_message()
                    .queue_url(self.stack.get("StreamFailureQueueUrl")?)
                    .message_body(
                        json!({"Records": records, "reason": "retries exhausted"}).to_string(),
                    )
                    .send()
                    .await?;
                self.stats
                    .stream_failures_sent
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
        }
    }

    /// Learns the stream's shards; new shards start at `position`, known ones keep their place.
    /// A fresh iterator for `shard`, after the last record read from it (or from its start).
    async fn renew_iterator(&self, shard: &str) -> Result<()> {
        let arn = self.stack.get("TableStreamArn")?.to_string();
        let last = self.last_sequence.lock().await.get(shard).cloned();
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard);
        let request = match &last {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let iterator = request
            .send()
            .await
            .context("renewing a shard iterator")?
            .shard_iterator;
        self.shards.lock().await.insert(shard.to_string(), iterator);
        Ok(())
    }

    async fn refresh_shards(&self, position: ShardIteratorType) -> Result<()> {
        let arn = self.stack.get("TableStreamArn")?.to_string();
        let mut shard_ids = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .streams
                .describe_stream()
                .stream_arn(&arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .context("describing the table stream")?;
            let Some(desc) = out.stream_description else {
                break;
            };
            shard_ids.extend(
                desc.shards()
                    .iter()
                    .filter_map(|s| s.shard_id().map(str::to_string)),
            );
            match desc.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        let mut shards = self.shards.lock().await;
        for id in shard_ids {
            if shards.contains_key(&id) {
                continue;
            }
            let iterator = self
                .streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(&id)
                .shard_iterator_type(position.clone())
                .send()
                .await
                .context("getting a shard iterator")?
                .shard_iterator;
            shards.insert(id, iterator);
        }
        Ok(())
    }
}

/// The SQS Lambda event for a batch, as the event source mapping builds it.
/// The messages an invocation took, counted in flight until it ends, however it ends.
struct Released<'a>(&'a Runner, Vec<Option<String>>);

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.0.fair_share().release(&self.1);
    }
}

fn message_group(m: &aws_sdk_sqs::types::Message) -> Option<String> {
    m.attributes()?
        .get(&MessageSystemAttributeName::MessageGroupId)
        .cloned()
}

fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_string);
            record.receipt_handle = m.receipt_handle().map(str::to_string);
            record.body = m.body().map(str::to_string);
            record.md5_of_body = m.md5_of_body().map(str::to_string);
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(queue_arn.to_string());
            record.aws_region = std::env::var("AWS_REGION").ok();
            record.attributes = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            record
        })
        .collect();
    event
}

/// A stream record in the JSON shape Lambda hands to a function.
fn stream_record_json(r: &aws_sdk_dynamodbstreams::types::Record) -> Value {
    let image = |m: Option<&HashMap<String, AttributeValue>>| {
        m.map(|m| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), attribute_json(v)))
                    .collect(),
            )
        })
    };
    let mut dynamodb = Map::new();
    if let Some(d) = r.dynamodb() {
        if let Some(v) = image(d.keys.as_ref()) {
            dynamodb.insert("Keys".into(), v);
        }
        if let Some(v) = image(d.new_image.as_ref()) {
            dynamodb.insert("NewImage".into(), v);
        }
        if let Some(v) = image(d.old_image.as_ref()) {
            dynamodb.insert("OldImage".into(), v);
        }
        if let Some(s) = d.sequence_number() {
            dynamodb.insert("SequenceNumber".into(), json!(s));
        }
        if let Some(t) = d.approximate_creation_date_time() {
            dynamodb.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
        }
        if let Some(v) = d.stream_view_type() {
            dynamodb.insert("StreamViewType".into(), json!(v.as_str()));
        }
    }
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|e| e.as_str()),
        "eventSource": "aws:dynamodb",
        "eventVersion": r.event_version(),
        "awsRegion": r.aws_region(),
        "dynamodb": Value::Object(dynamodb),
    })
}

fn attribute_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::L(items) => {
            json!({ "L": items.iter().map(attribute_json).collect::<Vec<_>>() })
        }
        AttributeValue::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<Map<_, _>>() })
        }
        // Trawl stores no binary attributes; keep the shape without decoding.
        _ => json!({ "B": "" }),
    }
}

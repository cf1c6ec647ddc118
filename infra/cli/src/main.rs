//! `trawl`: the operator's command.
//!
//! The embedded run, the way to try Trawl on a real server with one command and no AWS:
//!
//!   trawl harvest PROTOCOL URL [--id ID] [--internal]   harvest one catalog now
//!   trawl harvest --sources FILE.json                    harvest each enabled source in a file
//!   trawl harvest --sample                               harvest a bundled sample catalog
//!
//! And the day-to-day commands against a deployed Trawl (AWS, or LocalStack), see
//! `deployed.rs`: `sources add|update|remove|list|show`, `run`, `abort`, `session`,
//! `resource`, `dlq list|replay`; tables by default, `--json` for scripts.
//!
//! Every stage runs in this process: records, raw responses, logs and summaries are files
//! under `--data-dir` (laid out like the bucket), and the state (sources, sessions, each
//! resource's status and history) is kept in `DATA_DIR/state.db` (SQLite) between runs, so
//! history accumulates and unchanged records are recognised.

mod apply;
mod deletions;
mod deployed;
mod serve;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trawl::local::{
    retention::{self, Retention},
    run::{self, harvest_together, wind_up_interrupted, EmbeddedRun},
    DiskStore, FileObjects, MemoryQueue,
};
use trawl::model::selection::Selection;
use trawl::model::{SessionStatus, Source, SourceSpec};
use trawl::pipeline::{Services, Settings};
use trawl::ports::ObjectStore;
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};

/// Where `trawl serve` answers unless told otherwise (embedded alerts link there).
const DEFAULT_SERVE_PORT: u16 = 8080;

/// Where `--sample` serves its catalog when the port is free.
const SAMPLE_PORT: u16 = 47810;

#[derive(Parser)]
#[command(name = "trawl", about = "Metadata harvesting for open-data catalogs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print JSON instead of tables (for `harvest`: one JSON line per session).
    #[arg(long, global = true)]
    json: bool,
    /// The deployed stack's outputs (JSON map; default `.local/stack.json` if present, else
    /// TRAWL_TABLE, TRAWL_BUCKET, TRAWL_WORK_QUEUE_URL, TRAWL_DLQ_URL).
    #[arg(long, global = true, env = "TRAWL_STACK_OUTPUTS")]
    stack_outputs: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Harvest now, in this process, with files for storage (no AWS).
    Harvest {
        /// erddap, ckan, csw, oai-pmh, dcat, geonode or arcgis.
        #[arg(required_unless_present_any = ["sources", "sample"])]
        protocol: Option<String>,
        /// The catalog's base URL (see the README's protocol table).
        #[arg(required_unless_present_any = ["sources", "sample"])]
        url: Option<String>,
        /// The source's id (default: derived from the URL's host).
        #[arg(long)]
        id: Option<String>,
        /// The server is on a private or loopback network, on purpose.
        #[arg(long)]
        internal: bool,
        /// A JSON file holding one source or an array of sources (as registered on AWS); each
        /// needs its own id, and disabled ones are skipped.
        #[arg(long, conflicts_with_all = ["protocol", "url", "sample"])]
        sources: Option<PathBuf>,
        /// Serve a bundled sample ERDDAP catalog on loopback and harvest it.
        #[arg(long, conflicts_with_all = ["protocol", "url"])]
        sample: bool,
        /// Where records, logs, summaries and state.db are kept.
        #[arg(long, default_value = "trawl-data")]
        data_dir: PathBuf,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// No progress bar (for scripts and logs).
        #[arg(long)]
        quiet: bool,
    },
    /// Registered sources.
    Sources {
        #[command(subcommand)]
        action: SourcesAction,
    },
    /// Start a session of a source now (the deployed harvesters do the work), or with
    /// --data-dir harvest it here from an embedded run's data directory.
    Run {
        source_id: String,
        /// Harvest only these resources (at most 1000): nothing is deleted as stale, and
        /// the session is no listing of the catalog.
        #[arg(long, num_args = 1..)]
        resources: Vec<String>,
        /// An embedded run's data directory (the source registered there) instead of the
        /// deployed stack.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Abort a running session: its remaining work is counted as aborted, not fetched.
    Abort { session_id: String },
    /// A session: counters, reasons, duration, listing integrity.
    Session {
        session_id: String,
        /// What it changed instead: added, changed (with the record fields), removed, restored.
        #[arg(long)]
        changes: bool,
        /// An embedded run's data directory instead of the deployed stack.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// A source's recent sessions, newest first.
    Sessions {
        source_id: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Can this source be harvested? Lists it and fetches one resource; writes nothing.
    Check {
        source_id: String,
        /// Stop listing after this many pages (the estimate extrapolates).
        #[arg(long, default_value_t = 20)]
        max_pages: u32,
    },
    /// A resource: its status, history, where its record and raw response are and its latest
    /// log (request URLs).
    Resource {
        source_id: String,
        resource_id: String,
        /// Print its raw response instead, byte for byte, as the server sent it.
        #[arg(long)]
        raw: bool,
    },
    /// Serve the status API on localhost: over --data-dir (the embedded run's), or over the
    /// deployed stack with --deployed.
    Serve {
        #[arg(long, default_value = "trawl-data")]
        data_dir: PathBuf,
        #[arg(long)]
        deployed: bool,
        #[arg(long, default_value_t = DEFAULT_SERVE_PORT)]
        port: u16,
    },
    /// Deletions kept pending by a source's `on_stale: hold`, and resources moved under deleted/.
    Deletions {
        #[command(subcommand)]
        action: DeletionsAction,
        /// An embedded run's data directory instead of the deployed stack.
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// The work dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Remove what the retention rules expire from a data directory, as the bucket's lifecycle
    /// rules do on AWS (also done after every `trawl harvest`, with the defaults).
    Prune {
        #[arg(long, default_value = "trawl-data")]
        data_dir: PathBuf,
        /// Days a session's logs and documents are kept (more than any source's
        /// `full_listing_every_days`: incremental sessions read their base session's).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(8..))]
        log_days: u32,
        /// Days a record or raw response moved under deleted/ is kept.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..))]
        deleted_days: u32,
    },
}

#[derive(Subcommand)]
enum SourcesAction {
    /// Register a new source from a JSON file (validated; errors name the field).
    Add {
        file: PathBuf,
    },
    /// Replace an existing source's configuration from a JSON file.
    Update {
        file: PathBuf,
    },
    /// Unregister a source (its records and history are kept, unless --purge).
    Remove {
        id: String,
        /// Also remove its records, raw responses, logs, sessions, resource states and
        /// history, so the source added again starts clean (refused while a session runs).
        #[arg(long)]
        purge: bool,
        /// An embedded run's data directory instead of the deployed stack.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Make the registered sources match FILE (one source or a list, JSON or YAML): add and
    /// update, and with --prune remove those not in it. Prints what changed.
    Apply {
        file: PathBuf,
        /// Remove registered sources the file does not name (not while a session runs).
        #[arg(long)]
        prune: bool,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// An embedded run's data directory instead of the deployed stack.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    List,
    Show {
        id: String,
    },
}

#[derive(Subcommand)]
enum DeletionsAction {
    /// The source's pending deletions.
    List { source_id: String },
    /// Delete them (moved under deleted/, history kept): the named ones, or all pending.
    Approve {
        source_id: String,
        resource_ids: Vec<String>,
    },
    /// Keep them: discard the named pending deletions (all, if none is named), and bring
    /// the named deleted resources back from deleted/ with their history.
    Restore {
        source_id: String,
        resource_ids: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Show dead-lettered work without consuming it.
    List,
    /// Move it back to the work queue (safe: counted work counts nothing twice).
    Replay,
}

/// See the workspace manifest: the allocator is most of the per-dataset cost otherwise.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(all_ok) => std::process::exit(if all_ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("trawl: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Whether every session ended without failing outright.
async fn run(cli: Cli) -> Result<bool> {
    if let Command::Prune {
        data_dir,
        log_days,
        deleted_days,
    } = &cli.command
    {
        let _only_one = lock_data_dir(data_dir)?;
        let retention = Retention {
            log_days: *log_days,
            deleted_days: *deleted_days,
        };
        let pruned = retention::prune(data_dir, chrono::Utc::now(), &retention)
            .with_context(|| format!("pruning {}", data_dir.display()))?;
        print_shown(
            cli.json,
            &deployed::Shown {
                text: format!(
                    "removed {} session folders of logs and documents and {} deleted records ({} bytes)",
                    pruned.session_folders, pruned.deleted_files, pruned.bytes
                ),
                json: serde_json::to_value(&pruned)?,
            },
        )?;
        return Ok(true);
    }
    if let Command::Serve {
        data_dir,
        deployed,
        port,
    } = cli.command
    {
        let (svc, state) = if deployed {
            (deployed::connect(cli.stack_outputs).await?.svc, None)
        } else {
            let store = Arc::new(DiskStore::open_reader(&data_dir)?);
            let objects = Arc::new(FileObjects::new(&data_dir));
            let mut svc = Services::new(
                store.clone(),
                objects.clone(),
                Arc::new(MemoryQueue::default()),
                Settings::default(),
            );
            svc.alerts = Arc::new(trawl::pipeline::alerts::EmbeddedAlerts::new(objects));
            // A run that was killed left its session running; with no harvest holding the
            // directory now, nothing will finish it, so it is wound up before it is shown.
            if let Ok(_no_harvest) = lock_data_dir(&data_dir) {
                wind_up(&svc).await?;
            }
            (svc, Some(store))
        };
        serve::serve(svc, state, port).await?;
        return Ok(true);
    }
    if let Command::Sources {
        action:
            SourcesAction::Apply {
                file,
                prune,
                dry_run,
                data_dir: Some(data_dir),
            },
    } = &cli.command
    {
        let _only_one = lock_data_dir(data_dir)?;
        let store = DiskStore::open(data_dir)?;
        let shown = apply::apply_file(&store, file, *prune, *dry_run).await?;
        store.save()?;
        print_shown(cli.json, &shown)?;
        return Ok(true);
    }
    if let Command::Run {
        source_id,
        resources,
        data_dir: Some(data_dir),
    } = &cli.command
    {
        return run_embedded(cli.json, data_dir, source_id, selection(resources.clone())?).await;
    }
    if let Command::Sources {
        action:
            SourcesAction::Remove {
                id,
                purge,
                data_dir: Some(data_dir),
            },
    } = &cli.command
    {
        let (_only_one, store, svc) = open_to_change(data_dir).await?;
        let shown = deployed::remove_source(&svc, id, *purge).await?;
        store.save()?;
        print_shown(cli.json, &shown)?;
        return Ok(true);
    }
    if let Command::Deletions {
        action,
        data_dir: Some(data_dir),
    } = &cli.command
    {
        let (_only_one, store, svc) = open_to_change(data_dir).await?;
        let shown = decide_deletions(&svc, action).await?;
        store.save()?;
        print_shown(cli.json, &shown)?;
        return Ok(true);
    }
    if let Command::Session {
        session_id,
        changes,
        data_dir: Some(data_dir),
    } = &cli.command
    {
        if !data_dir.join("state.db").is_file() {
            bail!("{} holds no embedded run (no state.db)", data_dir.display());
        }
        let svc = Services::new(
            Arc::new(DiskStore::open_reader(data_dir)?),
            Arc::new(FileObjects::new(data_dir)),
            Arc::new(MemoryQueue::default()),
            Settings::default(),
        );
        print_shown(
            cli.json,
            &deployed::session(&svc, session_id, *changes).await?,
        )?;
        return Ok(true);
    }
    if !matches!(cli.command, Command::Harvest { .. }) {
        let d = deployed::connect(cli.stack_outputs).await?;
        let shown = match cli.command {
            Command::Sources { action } => match action {
                SourcesAction::Add { file } => deployed::add_source(&d, &file, false).await?,
                SourcesAction::Update { file } => deployed::add_source(&d, &file, true).await?,
                SourcesAction::Remove { id, purge, .. } => {
                    deployed::remove_source(&d.svc, &id, purge).await?
                }
                SourcesAction::List => deployed::list_sources(&d).await?,
                SourcesAction::Show { id } => deployed::show_source(&d, &id).await?,
                SourcesAction::Apply {
                    file,
                    prune,
                    dry_run,
                    data_dir: None,
                } => apply::apply_file(d.svc.store.as_ref(), &file, prune, dry_run).await?,
                SourcesAction::Apply { .. } => unreachable!("applied to a data directory above"),
            },
            Command::Run {
                source_id,
                resources,
                data_dir: None,
            } => deployed::run(&d, &source_id, selection(resources)?.as_ref()).await?,
            Command::Run { .. } => unreachable!("run on a data directory above"),
            Command::Abort { session_id } => deployed::abort(&d, &session_id).await?,
            Command::Session {
                session_id,
                changes,
                ..
            } => deployed::session(&d.svc, &session_id, changes).await?,
            Command::Sessions { source_id, limit } => {
                deployed::sessions(&d, &source_id, limit).await?
            }
            Command::Check {
                source_id,
                max_pages,
            } => deployed::check(&d, &source_id, max_pages).await?,
            Command::Resource {
                source_id,
                resource_id,
                raw: true,
            } => {
                let body = deployed::raw_response(&d, &source_id, &resource_id).await?;
                std::io::Write::write_all(&mut std::io::stdout().lock(), &body)?;
                return Ok(true);
            }
            Command::Resource {
                source_id,
                resource_id,
                raw: false,
            } => deployed::resource(&d, &source_id, &resource_id).await?,
            Command::Deletions { action, .. } => decide_deletions(&d.svc, &action).await?,
            Command::Dlq { action } => match action {
                DlqAction::List => deployed::dlq_list(&d).await?,
                DlqAction::Replay => deployed::dlq_replay(&d).await?,
            },
            Command::Harvest { .. } | Command::Serve { .. } | Command::Prune { .. } => {
                unreachable!("handled apart")
            }
        };
        print_shown(cli.json, &shown)?;
        return Ok(true);
    }
    let json = cli.json;
    let Command::Harvest {
        protocol,
        url,
        id,
        internal,
        sources,
        sample,
        data_dir,
        concurrency,
        quiet,
    } = cli.command
    else {
        unreachable!("the deployed commands returned above")
    };

    // Kept alive for the whole run when `--sample` serves it.
    let mut _sample = None;
    let specs: Vec<Source> = if let Some(file) = sources {
        apply::read_sources(&file)?
    } else if sample {
        // A fixed port when free: record links name the server, so the same address run
        // after run is what lets the second run find its records unchanged.
        let config = |port| ErddapConfig {
            datasets: 50,
            failures: BTreeMap::from([
                ("ds_0003".to_string(), Failure::NotFound),
                ("ds_0011".to_string(), Failure::Malformed),
            ]),
            port,
            ..Default::default()
        };
        let fixture = match ErddapFixture::start(config(SAMPLE_PORT)).await {
            Ok(fixture) => fixture,
            Err(_) => ErddapFixture::start(config(0)).await?,
        };
        let spec = spec(
            "sample-erddap".into(),
            "erddap".into(),
            fixture.base_url(),
            true,
        )?;
        println!(
            "serving a sample ERDDAP catalog (50 datasets, 2 broken) at {}",
            fixture.base_url()
        );
        _sample = Some(fixture);
        vec![spec]
    } else {
        let (protocol, url) = (protocol.unwrap_or_default(), url.unwrap_or_default());
        let id = match id {
            Some(id) => id,
            None => id_from_url(&url)?,
        };
        vec![spec(id, protocol, url, internal)?]
    };

    let _only_harvest = lock_data_dir(&data_dir)?;
    let store = Arc::new(DiskStore::open(&data_dir)?);
    let objects = Arc::new(FileObjects::new(&data_dir));
    let queue = Arc::new(MemoryQueue::with_delays());
    // Alerts link to the dashboard `trawl serve` shows over this directory.
    let mut settings = Settings::default();
    settings.alerts.dashboard_url = Some(format!("http://127.0.0.1:{DEFAULT_SERVE_PORT}/"));
    let mut svc = run::services(store.clone(), objects.clone(), queue.clone(), settings);
    svc.alerts = Arc::new(
        trawl::pipeline::alerts::EmbeddedAlerts::new(objects.clone()).with_hint(format!(
            "the dashboard: trawl serve --data-dir {}",
            data_dir.display()
        )),
    );
    wind_up(&svc).await?;
    // What is counted is committed at least this often, even while the run waits on a retry:
    // `trawl serve` shows it, and a killed run keeps it.
    let committer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                every.tick().await;
                if let Err(e) = store.commit() {
                    eprintln!("could not commit the state database: {e}");
                }
            }
        })
    };

    let mut sources = Vec::new();
    for source in specs {
        // As the scheduler does: a source switched off in its file is left alone.
        if !source.enabled {
            eprintln!(
                "trawl: skipping source {}: it is disabled (enabled: false)",
                source.id
            );
            continue;
        }
        svc.store.put_source(&source).await?;
        sources.push(source.id);
    }
    // All sources harvest together, taking turns in the queue, so a large source does not
    // keep the others waiting (see `MemoryQueue`).
    let bars = MultiProgress::new();
    let bar_of: HashMap<&str, ProgressBar> = sources
        .iter()
        .map(|id| (id.as_str(), bars.add(progress_bar(quiet, id))))
        .collect();
    let ids: Vec<&str> = sources.iter().map(String::as_str).collect();
    let runs = harvest_together(
        &svc,
        &queue,
        &ids,
        chrono::Utc::now(),
        concurrency,
        &|id, c| {
            if let Some(bar) = bar_of.get(id) {
                bar.set_length(c.total.max(1));
                bar.set_position(c.harvested + c.unchanged + c.failed);
            }
        },
    )
    .await?;
    for bar in bar_of.values() {
        bar.finish_and_clear();
    }
    store.save()?;
    let mut all_ok = true;
    for run in &runs {
        if json {
            println!("{}", run_json(run, run.took));
        } else {
            print_summary(run, objects.as_ref(), &data_dir, run.took).await?;
        }
        all_ok &= run.session.status != SessionStatus::Failed;
    }
    committer.abort();
    // What the bucket's lifecycle rules would have expired by now. The harvest is done and
    // saved whatever happens here, so a failure is said, not made the run's.
    if let Err(e) = retention::prune(&data_dir, chrono::Utc::now(), &Retention::default()) {
        eprintln!("could not prune {}: {e}", data_dir.display());
    }
    Ok(all_ok)
}

/// `--resources` as a selection (checked: at most 1000 ids, none empty); none given: `None`.
fn selection(resources: Vec<String>) -> Result<Option<Selection>> {
    if resources.is_empty() {
        return Ok(None);
    }
    Ok(Some(Selection::new(resources)?))
}

/// `trawl run SOURCE [--resources ID…] --data-dir DIR`: one session of a source registered
/// in the data directory, harvested here as `trawl harvest` would.
async fn run_embedded(
    json: bool,
    data_dir: &Path,
    source_id: &str,
    selection: Option<Selection>,
) -> Result<bool> {
    let _only_harvest = lock_data_dir(data_dir)?;
    let store = Arc::new(DiskStore::open(data_dir)?);
    let objects = Arc::new(FileObjects::new(data_dir));
    let queue = Arc::new(MemoryQueue::with_delays());
    let svc = run::services(
        store.clone(),
        objects.clone(),
        queue.clone(),
        Settings::default(),
    );
    wind_up(&svc).await?;
    if svc.store.get_source(source_id).await?.is_none() {
        bail!(
            "no source {source_id} in {} (`trawl sources apply FILE --data-dir {}` registers it)",
            data_dir.display(),
            data_dir.display()
        );
    }
    let started = std::time::Instant::now();
    let now = chrono::Utc::now();
    let run = match &selection {
        Some(selection) => {
            run::harvest_selection_once(&svc, &queue, source_id, selection, now, 8, &|_| {}).await?
        }
        None => run::harvest_once(&svc, &queue, source_id, now, 8, &|_| {}).await?,
    };
    store.save()?;
    let took = started.elapsed();
    if json {
        println!("{}", run_json(&run, took));
    } else {
        print_summary(&run, objects.as_ref(), data_dir, took).await?;
    }
    Ok(run.session.status != SessionStatus::Failed)
}

async fn decide_deletions(svc: &Services, action: &DeletionsAction) -> Result<deployed::Shown> {
    match action {
        DeletionsAction::List { source_id } => deletions::list(svc, source_id).await,
        DeletionsAction::Approve {
            source_id,
            resource_ids,
        } => deletions::approve(svc, source_id, resource_ids).await,
        DeletionsAction::Restore {
            source_id,
            resource_ids,
        } => deletions::restore(svc, source_id, resource_ids).await,
    }
}

fn spec(id: String, protocol: String, base_url: String, internal: bool) -> Result<Source> {
    Ok(SourceSpec {
        id,
        protocol,
        base_url,
        schedule: "rate(1 day)".into(),
        enabled: true,
        internal,
        options: Default::default(),
    }
    .validate()?)
}

/// `https://data.example.org:8443/erddap` → `data-example-org-8443`.
fn id_from_url(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
    let Some(host) = parsed.host_str() else {
        bail!("the URL {url:?} has no host");
    };
    let mut id: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if let Some(port) = parsed.port() {
        id.push_str(&format!("-{port}"));
    }
    Ok(id)
}

/// Says which sessions a killed run left `running` were wound up (see `wind_up_interrupted`).
async fn wind_up(svc: &Services) -> Result<()> {
    for session in wind_up_interrupted(svc).await? {
        eprintln!("{session} was interrupted (its run stopped); wound up");
    }
    Ok(())
}

/// An embedded run's data directory opened to change it: locked against a harvest, and a
/// killed run's session wound up first (it would hold its source forever), as a harvest
/// would. Save the store when done.
async fn open_to_change(data_dir: &Path) -> Result<(std::fs::File, Arc<DiskStore>, Services)> {
    let lock = lock_data_dir(data_dir)?;
    let store = Arc::new(DiskStore::open(data_dir)?);
    let svc = Services::new(
        store.clone(),
        Arc::new(FileObjects::new(data_dir)),
        Arc::new(MemoryQueue::default()),
        Settings::default(),
    );
    wind_up(&svc).await?;
    Ok((lock, store, svc))
}

/// One harvest per data directory at a time: two would count into each other's state
/// database and files. Held until the returned file is dropped; the OS lets go of it if the
/// process dies. (`trawl serve` only reads; it takes the lock just long enough to wind up
/// the sessions of a run that was killed, when no harvest holds it.)
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("harvest.lock");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `trawl harvest` is running on {}; wait for it or use another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

fn print_shown(json: bool, shown: &deployed::Shown) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&shown.json)?);
    } else {
        println!("{}", shown.text);
    }
    Ok(())
}

fn progress_bar(quiet: bool, source_id: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(source_id.to_string());
    bar
}

/// `--json`: what a script (or the benchmark harness) needs to know of one session.
fn run_json(run: &EmbeddedRun, took: std::time::Duration) -> serde_json::Value {
    let c = &run.session.counters;
    let ms = |q| {
        run.resource_time_quantile(q)
            .map(|d| d.as_secs_f64() * 1000.0)
    };
    serde_json::json!({
        "session_id": run.session.id,
        "status": run.session.status.as_str(),
        "counters": c,
        "listing_complete": run.session.listing_error.is_none() && run.session.listing_complete(),
        "seconds": took.as_secs_f64(),
        "resources_per_second": c.total as f64 / took.as_secs_f64().max(1e-9),
        "resource_ms": {"p50": ms(0.5), "p99": ms(0.99), "attempts": run.resource_times.len()},
    })
}

async fn print_summary(
    run: &EmbeddedRun,
    objects: &dyn ObjectStore,
    data_dir: &Path,
    took: std::time::Duration,
) -> Result<()> {
    let session = &run.session;
    let c = &session.counters;
    let summary_key = trawl::keys::summary_key(&session.source_id, &session.stamp());
    let summary: Option<trawl::documents::SessionSummary> =
        trawl::documents::get(objects, &summary_key).await?;
    println!(
        "session   {}  {}  in {:.1} s",
        session.id,
        session.status.as_str(),
        took.as_secs_f64()
    );
    println!(
        "resources {}: harvested {}, unchanged {}, failed {}",
        c.total, c.harvested, c.unchanged, c.failed
    );
    if let (Some(p50), Some(p99)) = (
        run.resource_time_quantile(0.5),
        run.resource_time_quantile(0.99),
    ) {
        println!(
            "timing    {:.0} resources/s; per resource p50 {:.1} ms, p99 {:.1} ms",
            c.total as f64 / took.as_secs_f64().max(1e-9),
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }
    if let Some(reasons) = summary
        .as_ref()
        .map(|s| &s.reasons)
        .filter(|r| !r.is_empty())
    {
        let list: Vec<String> = reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("reasons   {}", list.join(", "));
    }
    if let Some(error) = &session.listing_error {
        println!("listing   failed: {error}");
    } else {
        let problems = session.listing_problems();
        if !session.lists_catalog() {
            println!(
                "listing   a selection of {} named resources{}",
                session.listing.listed,
                problems
                    .iter()
                    .map(|p| format!("; {p}"))
                    .collect::<String>()
            );
        } else if problems.is_empty() {
            println!("listing   complete ({} listed)", session.listing.listed);
        } else {
            println!("listing   incomplete: {}", problems.join("; "));
        }
    }
    if let Some(stale) = summary.as_ref().and_then(|s| s.stale.as_ref()) {
        match &stale.skipped {
            Some(skipped) => println!("stale     nothing deleted: {skipped}"),
            None => println!(
                "stale     {} tombstoned, {} deleted",
                stale.tombstoned.len(),
                stale.deleted.len()
            ),
        }
    }
    println!(
        "records   {}",
        data_dir
            .join(trawl::keys::records_prefix(&session.source_id))
            .display()
    );
    println!("summary   {}", data_dir.join(&summary_key).display());
    Ok(())
}

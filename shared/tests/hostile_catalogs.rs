//! Catalogs that answer in well-formed but hostile ways: ids no file system or URL can hold
//! as they are, and listings that never end. Each runs the embedded pipeline end to end
//! (records as files on disk, where a name over 255 bytes fails) against an in-process
//! server, and must finish with every resource counted and every bound holding.

mod common;

use common::temp_dir;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trawl::http::{HttpClient, Response, Transport};
use trawl::local::run::{harvest_once, EmbeddedRun};
use trawl::local::{FileObjects, MemoryQueue, MemoryStore};
use trawl::model::{Reason, Record, SourceSpec};
use trawl::pipeline::{Services, Settings};

/// A server answering each request through `answer`, keeping every URL asked for.
struct Server<F> {
    answer: F,
    urls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl<F: Fn(&url::Url) -> (u16, String) + Send + Sync> Transport for Server<F> {
    async fn get(&self, url: &str) -> Result<Response, Reason> {
        self.urls.lock().unwrap().push(url.to_string());
        let (status, body) = (self.answer)(&url::Url::parse(url).unwrap());
        Ok(Response {
            status,
            content_type: Some("application/json".into()),
            body: body.into(),
            retry_after: None,
        })
    }
}

/// Harvests `spec` once against `server`, records as files under `dir`; a run that does not
/// finish within a minute fails the test instead of hanging it.
async fn harvest<F>(server: Arc<Server<F>>, spec: SourceSpec, dir: &Path) -> EmbeddedRun
where
    F: Fn(&url::Url) -> (u16, String) + Send + Sync + 'static,
{
    let queue = Arc::new(MemoryQueue::with_delays());
    let settings = Settings {
        http_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    let mut svc = Services::new(
        Arc::new(MemoryStore::default()),
        Arc::new(FileObjects::new(dir)),
        queue.clone(),
        settings.clone(),
    );
    svc.http = HttpClient::over(server, settings.http_timeout, settings.max_body_bytes);
    let source = spec.validate().unwrap();
    svc.store.put_source(&source).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        harvest_once(&svc, &queue, &source.id, chrono::Utc::now(), 4, &|_| {}),
    )
    .await
    .expect("the harvest finishes")
    .expect("the harvest runs")
}

fn spec(protocol: &str, base_url: &str, options: serde_json::Value) -> SourceSpec {
    SourceSpec {
        id: "s".into(),
        protocol: protocol.into(),
        base_url: base_url.into(),
        schedule: "rate(1 day)".into(),
        enabled: true,
        internal: false,
        options: serde_json::from_value(options).unwrap(),
    }
}

/// Every record file under `dir/records/s/`: its file name and the record it holds.
fn records(dir: &Path) -> Vec<(String, Record)> {
    let folder = dir.join("records/s");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let record: Record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        out.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            record,
        ));
    }
    out
}

fn erddap_table(columns: &[&str], rows: Vec<Vec<String>>) -> String {
    serde_json::json!({"table": {
        "columnNames": columns,
        "columnTypes": columns.iter().map(|_| "String").collect::<Vec<_>>(),
        "rows": rows,
    }})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_too_long_for_a_file_name_and_dot_segments_are_each_handled_alone() {
    let long = "x".repeat(300);
    let percents = "%".repeat(90);
    let listed = vec![
        "ds_ok".to_string(),
        long.clone(),
        percents.clone(),
        "..".to_string(),
        ".".to_string(),
    ];
    let answer = {
        let listed = listed.clone();
        move |url: &url::Url| {
            match url.path() {
            "/erddap/info/index.json" => (
                200,
                erddap_table(
                    &["Dataset ID"],
                    listed.iter().map(|id| vec![id.clone()]).collect(),
                ),
            ),
            path if path.starts_with("/erddap/info/") && path.ends_with("/index.json") => {
                let id = path
                    .trim_start_matches("/erddap/info/")
                    .trim_end_matches("/index.json");
                let id = percent_decode(id);
                let row = |name: &str, value: &str| {
                    vec![
                        "attribute".into(),
                        "NC_GLOBAL".into(),
                        name.into(),
                        "String".into(),
                        value.to_string(),
                    ]
                };
                (
                    200,
                    erddap_table(
                        &[
                            "Row Type",
                            "Variable Name",
                            "Attribute Name",
                            "Data Type",
                            "Value",
                        ],
                        vec![row("title", &format!("dataset {}", id.len()))],
                    ),
                )
            }
            // What `info/../index.json` resolves to: the server's own index.
            _ => (200, r#"{"table": {"columnNames": ["Dataset ID"], "columnTypes": ["String"], "rows": [["not a dataset"]]}}"#.into()),
        }
        }
    };
    let server = Arc::new(Server {
        answer,
        urls: Mutex::new(Vec::new()),
    });
    let dir = temp_dir("ids");
    let run = harvest(
        server.clone(),
        spec(
            "erddap",
            "http://erddap.example/erddap",
            serde_json::json!({}),
        ),
        &dir,
    )
    .await;

    let session = &run.session;
    assert_eq!(session.counters.harvested, 3, "{session:?}");
    assert_eq!(session.counters.failed, 0, "{session:?}");
    let dot_problems = session
        .listing
        .problems
        .iter()
        .filter(|p| p.contains("dot segment"))
        .count();
    assert_eq!(dot_problems, 2, "{:?}", session.listing.problems);
    // No request left the dataset's own path.
    for url in server.urls.lock().unwrap().iter() {
        let path = url::Url::parse(url).unwrap().path().to_string();
        assert!(path.starts_with("/erddap/info/"), "{url}");
    }
    // Each record keeps its full id, under a name a file system holds.
    let stored = records(&dir);
    let ids: BTreeSet<String> = stored.iter().map(|(_, r)| r.id.clone()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["ds_ok".to_string(), long.clone(), percents.clone()])
    );
    for (name, _) in &stored {
        assert!(name.len() <= 255, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unkeepable_identifier_in_a_data_json_is_a_listing_problem_not_the_catalog() {
    let long = "L".repeat(300);
    let too_long = "T".repeat(1_200);
    let catalog = serde_json::json!({"dataset": [
        {"identifier": "plain", "title": "Plain"},
        {"identifier": long, "title": "Long"},
        {"identifier": too_long, "title": "Too long to key"},
    ]})
    .to_string();
    let server = Arc::new(Server {
        answer: move |url: &url::Url| match url.path() {
            "/data.json" => (200, catalog.clone()),
            _ => (404, "{}".into()),
        },
        urls: Mutex::new(Vec::new()),
    });
    let dir = temp_dir("datajson");
    let run = harvest(
        server,
        spec("dcat", "http://portal.example", serde_json::json!({})),
        &dir,
    )
    .await;
    let session = &run.session;
    assert_eq!(session.counters.harvested, 2, "{session:?}");
    assert!(session.listing_error.is_none(), "{session:?}");
    assert!(
        session
            .listing
            .problems
            .iter()
            .any(|p| p.contains("longer than 1000 bytes")),
        "{:?}",
        session.listing.problems
    );
    let ids: BTreeSet<String> = records(&dir).into_iter().map(|(_, r)| r.id).collect();
    assert_eq!(ids, BTreeSet::from(["plain".to_string(), long]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CKAN site whose `count` is 10¹² and whose every page brings new ids (ten rows a page,
/// as a server capping `rows` would).
fn endless_ckan(url: &url::Url) -> (u16, String) {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match url.path() {
        "/api/3/action/package_search" => {
            let start: u64 = param("start").unwrap().parse().unwrap();
            let results: Vec<_> = (start..start + 10)
                .map(|n| serde_json::json!({"id": format!("{n:015}")}))
                .collect();
            let body = serde_json::json!({"success": true, "result": {"count": 1_000_000_000_000u64, "results": results}});
            (200, body.to_string())
        }
        "/api/3/action/package_show" => {
            let id = param("id").unwrap();
            let body =
                serde_json::json!({"success": true, "result": {"id": id, "name": id, "title": id}});
            (200, body.to_string())
        }
        _ => (404, "{}".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_never_ends_stops_at_the_sources_bounds_and_deletes_nothing() {
    for (options, listed, says) in [
        (
            serde_json::json!({"max_pages": 4}),
            37,
            "stopped after 4 pages",
        ),
        (
            serde_json::json!({"max_resources": 25}),
            25,
            "stopped at 25 resources",
        ),
    ] {
        let server = Arc::new(Server {
            answer: endless_ckan,
            urls: Mutex::new(Vec::new()),
        });
        let dir = temp_dir("endless");
        let run = harvest(
            server,
            spec("ckan", "http://ckan.example", options.clone()),
            &dir,
        )
        .await;
        let session = &run.session;
        // Pages overlap by one row, so four pages of ten bring 10 + 3 × 9 ids.
        assert_eq!(session.counters.harvested, listed, "{options}: {session:?}");
        assert!(
            session.listing.problems.iter().any(|p| p.contains(says)),
            "{options}: {:?}",
            session.listing.problems
        );
        assert!(
            !session.is_incremental_base(),
            "{options}: an incomplete listing"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Objects in memory, except that writing a record whose key contains `refused` always fails
/// as a transient store error (a bucket policy, a full disk: nothing a retry fixes).
#[derive(Default)]
struct RefusingObjects(trawl::local::MemoryObjects);

#[async_trait::async_trait]
impl trawl::ports::ObjectStore for RefusingObjects {
    async fn put(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), trawl::ports::StoreError> {
        if key.starts_with("records/") && key.contains("refused") {
            return Err(trawl::ports::StoreError::new(format!("{key}: refused")));
        }
        self.0.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, trawl::ports::StoreError> {
        self.0.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), trawl::ports::StoreError> {
        self.0.delete(key).await
    }
    async fn folders(&self, prefix: &str) -> Result<Vec<String>, trawl::ports::StoreError> {
        self.0.folders(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_error_that_never_clears_is_retried_a_bounded_number_of_times() {
    let ids = ["ds_ok".to_string(), "ds_refused".to_string()];
    let server = Arc::new(Server {
        answer: move |url: &url::Url| match url.path() {
            "/erddap/info/index.json" => (
                200,
                erddap_table(
                    &["Dataset ID"],
                    ids.iter().map(|i| vec![i.clone()]).collect(),
                ),
            ),
            _ => (
                200,
                erddap_table(
                    &[
                        "Row Type",
                        "Variable Name",
                        "Attribute Name",
                        "Data Type",
                        "Value",
                    ],
                    vec![vec![
                        "attribute".into(),
                        "NC_GLOBAL".into(),
                        "title".into(),
                        "String".into(),
                        "t".into(),
                    ]],
                ),
            ),
        },
        urls: Mutex::new(Vec::new()),
    });
    let queue = Arc::new(MemoryQueue::with_delays());
    let settings = Settings {
        max_retry_delay: Duration::from_millis(20),
        ..Settings::default()
    };
    let mut svc = Services::new(
        Arc::new(MemoryStore::default()),
        Arc::new(RefusingObjects::default()),
        queue.clone(),
        settings.clone(),
    );
    svc.http = HttpClient::over(
        server.clone(),
        settings.http_timeout,
        settings.max_body_bytes,
    );
    let source = spec(
        "erddap",
        "http://erddap.example/erddap",
        serde_json::json!({}),
    )
    .validate()
    .unwrap();
    svc.store.put_source(&source).await.unwrap();
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        harvest_once(&svc, &queue, "s", chrono::Utc::now(), 4, &|_| {}),
    )
    .await
    .expect("the harvest finishes")
    .unwrap();
    let session = &run.session;
    assert_eq!(session.counters.harvested, 1, "{session:?}");
    assert_eq!(session.counters.failed, 1, "{session:?}");
    assert_eq!(session.counters.remaining, 0, "{session:?}");
    assert!(session.ended_at.is_some(), "{session:?}");
    // Fetched once per allowed receive, not without end.
    let fetches = server
        .urls
        .lock()
        .unwrap()
        .iter()
        .filter(|u| u.contains("/info/ds_refused/"))
        .count();
    assert_eq!(fetches as u32, settings.max_receive_count, "{fetches}");
}

//! The `trawl harvest` binary end to end: no AWS at all, fixture catalogs over real HTTP,
//! files and a state file that carry history from one run to the next.

mod common;
use common::trawl;

use std::path::{Path, PathBuf};
use std::process::Output;
use trawl_fixtures::{CkanConfig, CkanFixture, ErddapConfig, ErddapFixture, Failure};
use trawl_fixtures::{OaiConfig, OaiFixture};

fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("trawl-cli-{:016x}", rand_u64()))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .elapsed()
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn args(list: &[&str], dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.extend([
        "--data-dir".into(),
        dir.display().to_string(),
        "--quiet".into(),
    ]);
    v
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn state(dir: &Path) -> serde_json::Value {
    let store = trawl::local::DiskStore::open(dir).expect("state.db opens");
    serde_json::to_value(store.snapshot().expect("a snapshot")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erddap_catalog_is_harvested_into_files_and_history_accumulates_across_runs() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 20,
        failures: [("ds_0004".to_string(), Failure::NotFound)].into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    let run = || {
        trawl(args(
            &[
                "harvest",
                "erddap",
                &fixture.base_url(),
                "--internal",
                "--id",
                "ocean",
            ],
            &dir,
        ))
    };

    let first = run().await;
    assert!(first.status.success(), "{first:?}");
    let out = stdout(&first);
    assert!(
        out.contains("resources 20: harvested 19, unchanged 0, failed 1"),
        "{out}"
    );
    assert!(out.contains("reasons   NOT_FOUND 1"), "{out}");
    let records: Vec<_> = std::fs::read_dir(dir.join("records/ocean"))
        .unwrap()
        .collect();
    assert_eq!(records.len(), 19);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("records/ocean/ds_0001.json")).unwrap())
            .unwrap();
    assert_eq!(record["id"], "ds_0001");
    assert!(dir.join("raw/ocean/ds_0001.json").is_file());

    let second = run().await;
    assert!(second.status.success());
    assert!(
        stdout(&second).contains("harvested 0, unchanged 19, failed 1"),
        "{}",
        stdout(&second)
    );
    let s = state(&dir);
    let ds1 = s["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource_id"] == "ds_0001")
        .unwrap();
    assert_eq!(ds1["history"].as_array().unwrap().len(), 2);
    assert_eq!(s["sessions"].as_array().unwrap().len(), 2);

    // Gone upstream: tombstoned by the next complete listing, not deleted yet.
    fixture.remove_dataset("ds_0007");
    let third = run().await;
    assert!(
        stdout(&third).contains("stale     1 tombstoned, 0 deleted"),
        "{}",
        stdout(&third)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_file_harvests_each_source_in_turn() {
    let ckan = CkanFixture::start(CkanConfig {
        datasets: 12,
        rows_cap: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let oai = OaiFixture::start(OaiConfig {
        records: 7,
        page_size: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sources.json");
    let sources = serde_json::json!([
        {"id": "portal", "protocol": "ckan", "base_url": ckan.base_url(), "schedule": "rate(1 day)", "internal": true},
        {"id": "repo", "protocol": "oai-pmh", "base_url": oai.base_url(), "schedule": "rate(1 day)", "internal": true},
    ]);
    std::fs::write(&file, sources.to_string()).unwrap();
    let out = trawl(args(
        &["harvest", "--sources", &file.display().to_string()],
        &dir,
    ))
    .await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("session   portal@"), "{text}");
    assert!(text.contains("resources 12: harvested 12"), "{text}");
    assert!(text.contains("session   repo@"), "{text}");
    assert!(text.contains("resources 7: harvested 7"), "{text}");
    assert_eq!(
        std::fs::read_dir(dir.join("records/repo")).unwrap().count(),
        7
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_file_skips_a_disabled_source_saying_so() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sources.json");
    let sources = serde_json::json!([
        {"id": "paused", "protocol": "erddap", "base_url": fixture.base_url(), "schedule": "rate(1 day)", "internal": true, "enabled": false},
        {"id": "live", "protocol": "erddap", "base_url": fixture.base_url(), "schedule": "rate(1 day)", "internal": true},
    ]);
    std::fs::write(&file, sources.to_string()).unwrap();
    let out = trawl(args(
        &["harvest", "--sources", &file.display().to_string()],
        &dir,
    ))
    .await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("session   live@"), "{text}");
    assert!(!text.contains("paused@"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("paused") && err.contains("disabled"),
        "stderr: {err}"
    );
    assert!(!dir.join("records/paused").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_file_giving_one_id_twice_is_refused_before_any_request() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sources.json");
    let source = serde_json::json!({"id": "twice", "protocol": "erddap", "base_url": fixture.base_url(), "schedule": "rate(1 day)", "internal": true});
    std::fs::write(&file, serde_json::json!([source, source]).to_string()).unwrap();
    let out = trawl(args(
        &["harvest", "--sources", &file.display().to_string()],
        &dir,
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("id") && err.contains("\"twice\"") && err.contains("#1 and #2"),
        "stderr: {err}"
    );
    assert_eq!(fixture.requests("/erddap"), 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_a_blocked_address_fails_the_session() {
    let dir = data_dir();
    let bad = trawl(args(&["harvest", "gopher", "http://example.org"], &dir)).await;
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("protocol") && err.contains("gopher"), "{err}");

    // A password in the URL is refused, and not repeated in the error.
    let secret = trawl(args(
        &[
            "harvest",
            "erddap",
            "https://harvester:s3cr3t@data.example.org/erddap",
        ],
        &dir,
    ))
    .await;
    assert_eq!(secret.status.code(), Some(2));
    let err = String::from_utf8_lossy(&secret.stderr);
    assert!(err.contains("base_url"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");

    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    // Loopback without --internal: refused before any request is sent.
    let blocked = trawl(args(&["harvest", "erddap", &fixture.base_url()], &dir)).await;
    assert_eq!(blocked.status.code(), Some(1), "{blocked:?}");
    assert!(
        stdout(&blocked).contains("BLOCKED_ADDRESS"),
        "{}",
        stdout(&blocked)
    );
    assert_eq!(fixture.requests("/erddap"), 0);

    // A directory another harvest is using is refused, saying why, before any request.
    let held = std::fs::File::create(dir.join("harvest.lock")).unwrap();
    held.try_lock().unwrap();
    let busy = trawl(args(
        &["harvest", "erddap", &fixture.base_url(), "--internal"],
        &dir,
    ))
    .await;
    assert_eq!(busy.status.code(), Some(2), "{busy:?}");
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(err.contains("another `trawl harvest` is running"), "{err}");
    assert_eq!(fixture.requests("/erddap"), 0);
    drop(held);

    let sources = dir.join("broken.json");
    std::fs::write(&sources, r#"[{"id": "x", "protocol": "ckan"}]"#).unwrap();
    let broken = trawl(args(
        &["harvest", "--sources", &sources.display().to_string()],
        &dir,
    ))
    .await;
    assert_eq!(broken.status.code(), Some(2));
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(
        err.contains("source #1") && err.contains("base_url"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trawl_serve_answers_the_status_api_over_the_embedded_runs_data() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    let harvest = trawl(args(
        &[
            "harvest",
            "erddap",
            &fixture.base_url(),
            "--internal",
            "--id",
            "served",
        ],
        &dir,
    ))
    .await;
    assert!(harvest.status.success(), "{harvest:?}");

    let served = Served::start(&dir).await;
    let port = served.port;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/sources");
    let mut body = None;
    for _ in 0..100 {
        if let Ok(response) = client.get(&url).send().await {
            assert_eq!(response.status(), 200);
            body = Some(response.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let resource = client
        .get(format!(
            "http://127.0.0.1:{port}/api/sources/served/resources/ds_0003"
        ))
        .send()
        .await
        .unwrap();
    let missing = client
        .get(format!("http://127.0.0.1:{port}/api/sources/nope"))
        .send()
        .await
        .unwrap()
        .status();
    drop(served);
    let body = body.expect("the server answered");
    assert_eq!(body["sources"][0]["id"], "served");
    assert_eq!(body["sources"][0]["health"], "ok");
    assert_eq!(
        body["sources"][0]["last_session"]["counters"]["harvested"],
        5
    );
    assert_eq!(resource.status(), 200);
    let resource: serde_json::Value = resource.json().await.unwrap();
    assert_eq!(resource["state"]["last_outcome"], "harvested");
    assert_eq!(missing, 404);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trawl_serve_answers_only_to_loopback_host_names() {
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let served = Served::start(&dir).await;
    let client = reqwest::Client::new();
    let status = |host: &'static str| {
        let request = client
            .get(format!("http://127.0.0.1:{}/api/sources", served.port))
            .header(
                reqwest::header::HOST,
                host.replace("PORT", &served.port.to_string()),
            );
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for host in [
        "localhost",
        "localhost:PORT",
        "LOCALHOST:PORT",
        "127.0.0.1",
        "127.0.0.1:PORT",
        "[::1]",
        "[::1]:PORT",
    ] {
        assert_eq!(status(host).await, 200, "Host: {host}");
    }
    // A page on another site that rebinds its name to 127.0.0.1 still sends its own name.
    for host in [
        "evil.example",
        "evil.example:PORT",
        "localhost.evil.example:PORT",
        "127.0.0.1.nip.io:PORT",
        "",
    ] {
        assert_eq!(status(host).await, 421, "Host: {host}");
    }
    drop(served);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `trawl serve` over `dir` on a free port, stopped when dropped (a panic included).
struct Served {
    child: std::process::Child,
    port: u16,
}

impl Served {
    async fn start(dir: &Path) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args([
                "serve",
                "--data-dir",
                &dir.display().to_string(),
                "--port",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Served { child, port }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

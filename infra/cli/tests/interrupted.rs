//! A `trawl harvest` that waits and one that is killed: what it counted is committed while
//! it waits (so `trawl serve` shows it), its session is in the store from the start, and the
//! next run winds a killed run's session up instead of leaving it running forever.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};

fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "trawl-interrupted-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    for _ in 0..100 {
        if let Ok(response) = client.get(url).send().await {
            assert!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            return response.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_shows_what_it_counted_and_a_killed_runs_session_is_wound_up() {
    // Two datasets answer after a minute: the run counts the other 18 and then waits.
    let slow = Failure::Slow(Duration::from_secs(60));
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 20,
        failures: [
            ("ds_0007".to_string(), slow.clone()),
            ("ds_0013".to_string(), slow),
        ]
        .into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    let harvest_args = |dir: &PathBuf| {
        vec![
            "harvest".to_string(),
            "erddap".into(),
            fixture.base_url(),
            "--internal".into(),
            "--id".into(),
            "waits".into(),
            "--concurrency".into(),
            "4".into(),
            "--quiet".into(),
            "--data-dir".into(),
            dir.display().to_string(),
        ]
    };
    let mut harvest = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(harvest_args(&dir))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if fixture.dataset_info_requests() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fixture.dataset_info_requests(),
        20,
        "every dataset was asked for"
    );
    // Longer than the commit timer, far shorter than the two slow answers.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let port = free_port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args([
            "serve",
            "--data-dir",
            &dir.display().to_string(),
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api");
    let sources = get_json(&client, &format!("{base}/sources")).await;
    let running = sources["sources"][0]["running_session"]
        .as_str()
        .expect("the running session is in the store")
        .to_string();
    let session = get_json(&client, &format!("{base}/sessions/{running}")).await;
    let resource = get_json(&client, &format!("{base}/sources/waits/resources/ds_0001")).await;

    // kill -9: no chance to commit or close anything.
    harvest.kill().unwrap();
    harvest.wait().unwrap();
    serve.kill().unwrap();
    serve.wait().unwrap();

    assert_eq!(session["session"]["status"], "running", "{session}");
    let counters = &session["session"]["counters"];
    assert_eq!(counters["total"], 20, "{session}");
    assert_eq!(counters["harvested"], 18, "{session}");
    assert_eq!(counters["remaining"], 2, "{session}");
    assert_eq!(resource["state"]["last_outcome"], "harvested", "{resource}");

    // The next run winds the killed one up, then harvests as usual.
    fixture.set_failure("ds_0007", None);
    fixture.set_failure("ds_0013", None);
    let next = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(harvest_args(&dir))
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&next.stderr);
    assert!(next.status.success(), "{next:?}");
    assert!(
        stderr.contains(&format!("{running} was interrupted")),
        "{stderr}"
    );

    let store = trawl::local::DiskStore::open(&dir).unwrap();
    let snapshot = store.snapshot().unwrap();
    let killed = snapshot
        .sessions
        .iter()
        .find(|s| s.id == running)
        .expect("the killed run's session is kept");
    assert!(killed.ended_at.is_some(), "{killed:?}");
    assert_eq!(killed.counters.remaining, 0);
    assert_eq!(killed.counters.harvested, 18);
    assert_eq!(killed.counters.failed, 2, "the two in flight are LOST");
    let after = snapshot
        .sessions
        .iter()
        .find(|s| s.id != running)
        .expect("the next run's session");
    assert_eq!(after.counters.total, 20);
    assert_eq!(after.counters.harvested + after.counters.unchanged, 20);
    assert_eq!(snapshot.sources[0].running_session, None);
    std::fs::remove_dir_all(&dir).ok();
}

//! The embedded run's alerts: printed on stderr and written beside the session's summary,
//! where `trawl prune` removes them with the session's folder.

mod common;
use common::trawl;

use std::path::Path;
use trawl_fixtures::{ErddapConfig, ErddapFixture};

fn session_folders(dir: &Path, source: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("sessions").join(source))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_listing_is_alerted_on_stderr_and_in_alerts_json_beside_the_summary() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("trawl-cli-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let harvest = |base_url: String| {
        trawl(vec![
            "harvest".into(),
            "erddap".into(),
            base_url,
            "--internal".into(),
            "--id".into(),
            "lost".into(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--quiet".into(),
        ])
    };

    // A catalog that lists fine raises nothing.
    let ok = harvest(fixture.base_url()).await;
    assert!(ok.status.success(), "{ok:?}");
    assert!(!String::from_utf8_lossy(&ok.stderr).contains("ALERT"));
    let first = session_folders(&dir, "lost");
    assert_eq!(first.len(), 1);
    assert!(!first[0].join("alerts.json").exists());

    // No catalog there: the listing fails (404), and the session with it.
    let failed = harvest(format!("{}/missing", fixture.base_url())).await;
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("ALERT session_failed"), "{stderr}");
    assert!(stderr.contains("source lost"), "{stderr}");
    let folder = session_folders(&dir, "lost")
        .into_iter()
        .find(|f| !first.contains(f))
        .expect("the failed session's folder");
    assert!(folder.join("summary.json").exists());
    let alerts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("alerts.json")).unwrap()).unwrap();
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let session_id = format!("lost@{}", folder.file_name().unwrap().to_str().unwrap());
    assert_eq!(alerts[0]["kind"], "session_failed");
    assert_eq!(alerts[0]["source_id"], "lost");
    assert_eq!(alerts[0]["session_id"], session_id.as_str());
    assert_eq!(
        alerts[0]["link"],
        format!(
            "http://127.0.0.1:8080/#/session/{}",
            session_id.replace('@', "%40")
        )
    );
    assert!(stderr.contains("trawl serve --data-dir"), "{stderr}");
    assert!(
        alerts[0]["body"].as_str().unwrap().contains("NOT_FOUND"),
        "{alerts:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

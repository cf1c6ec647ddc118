//! The dashboard in headless Chromium (Debian `chromium`, installed by `infra/install.sh`):
//! each view is rendered from the status API served by `trawl serve`, its figures are checked
//! against the API's own answers, and a screenshot of each is saved under
//! `target/dashboard-screenshots/` (test artifacts, not committed).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};

fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate;
        }
    }
    panic!("headless Chromium is needed: apt-get install chromium (infra/install.sh does)");
}

/// The page's DOM after its scripts ran, and a screenshot of it.
fn render(url: &str, shot: &Path) -> String {
    render_in_state(url, shot, "ready")
}

/// The page's DOM once its view reached `state` (`ready`, `error`), and a screenshot of it.
fn render_in_state(url: &str, shot: &Path, state: &str) -> String {
    let browser = chromium();
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ];
    let shot_arg = format!("--screenshot={}", shot.display());
    let screenshot = Command::new(browser)
        .args(base)
        .args([shot_arg.as_str(), "--window-size=1280,900", url])
        .output()
        .unwrap();
    assert!(screenshot.status.success(), "{screenshot:?}");
    let dom = Command::new(browser)
        .args(base)
        .args(["--dump-dom", url])
        .output()
        .unwrap();
    assert!(dom.status.success(), "{dom:?}");
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        html.contains(&format!(r#"data-state="{state}""#)),
        "{url} did not end {state}: {html}"
    );
    html
}

/// The text of the first cell `data-field="FIELD"` after `marker`, within its table.
fn field(html: &str, marker: &str, name: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the page"));
    let row = &html[start..];
    let row = &row[..row.find("</table>").unwrap_or(row.len())];
    let cell = format!(r#"data-field="{name}">"#);
    let at = row
        .find(&cell)
        .unwrap_or_else(|| panic!("{name} not in {row}"))
        + cell.len();
    row[at..row[at..].find('<').unwrap() + at].to_string()
}

async fn api(port: u16, path: &str) -> Value {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_view_shows_what_the_api_says() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 12,
        failures: [
            ("ds_0002".to_string(), Failure::NotFound),
            ("ds_0009".to_string(), Failure::Malformed),
        ]
        .into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("trawl-dashboard-{}", std::process::id()));
    for _ in 0..2 {
        let base_url = fixture.base_url();
        let dir = dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_trawl"))
                .args([
                    "harvest",
                    "erddap",
                    &base_url,
                    "--internal",
                    "--id",
                    "coast",
                    "--quiet",
                ])
                .args(["--data-dir", &dir.display().to_string()])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    let (_server, port) = serve(&dir).await;
    let shots =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let page = |view: &str| format!("http://127.0.0.1:{port}/#/{view}");

    {
        // Overview: counters, health badge, one sparkline bar per session, top reasons.
        let sources = api(port, "/api/sources").await;
        let source = &sources["sources"][0];
        let html = tokio::task::block_in_place(|| render(&page(""), &shots.join("overview.png")));
        let row = r#"data-source="coast""#;
        for name in ["total", "harvested", "unchanged", "failed"] {
            assert_eq!(
                field(&html, row, name),
                source["last_session"]["counters"][name].to_string(),
                "{name}"
            );
        }
        assert!(html.contains(r#"data-badge="degraded""#));
        assert!(html.contains(r#"data-sessions="2""#), "a bar per session");
        let reasons = api(port, "/api/reasons").await;
        for r in reasons["top"].as_array().unwrap() {
            let code = r["code"].as_str().unwrap();
            assert!(html.contains(&format!(r#"data-reason="{code}""#)), "{code}");
        }

        // Source view: its sessions and its resources with history.
        let detail = api(port, "/api/sources/coast").await;
        let html = tokio::task::block_in_place(|| {
            render(&page("source/coast"), &shots.join("source.png"))
        });
        for s in detail["sessions"].as_array().unwrap() {
            assert!(html.contains(&format!(r#"data-session="{}""#, s["id"].as_str().unwrap())));
        }
        assert_eq!(html.matches(r#"data-resource="ds_"#).count(), 12);
        let html = tokio::task::block_in_place(|| {
            render(
                &page("source/coast/failed"),
                &shots.join("source-failed.png"),
            )
        });
        assert_eq!(
            html.matches(r#"data-resource="ds_"#).count(),
            2,
            "the failed filter"
        );

        // Session view: counters and reasons as the API gives them.
        let session_id = source["last_session"]["id"].as_str().unwrap().to_string();
        let session = api(
            port,
            &format!("/api/sessions/{}", session_id.replace('@', "%40")),
        )
        .await;
        let html = tokio::task::block_in_place(|| {
            render(
                &page(&format!("session/{}", session_id.replace('@', "%40"))),
                &shots.join("session.png"),
            )
        });
        for name in ["total", "harvested", "unchanged", "failed"] {
            assert_eq!(
                field(&html, r#"id="counters""#, name),
                session["session"]["counters"][name].to_string(),
                "{name}"
            );
        }
        assert!(html.contains(r#"data-reason="NOT_FOUND""#));

        // Resource view: history and the request URLs of its latest log.
        let html = tokio::task::block_in_place(|| {
            render(&page("resource/coast/ds_0002"), &shots.join("resource.png"))
        });
        assert!(html.contains("/info/ds_0002/index.json"), "the request URL");
        assert_eq!(
            html.matches(r#"data-badge="failed""#).count(),
            3,
            "status + 2 history rows"
        );
        for shot in ["overview", "source", "source-failed", "session", "resource"] {
            let size = std::fs::metadata(shots.join(format!("{shot}.png")))
                .unwrap()
                .len();
            assert!(size > 5_000, "{shot}.png is {size} bytes");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_whose_id_is_a_dot_segment_has_its_view_and_a_broken_address_says_so() {
    // A data.json catalog (no per-resource URL, so any id is harvested) naming `.` and `..`.
    let catalog = serve_body(
        serde_json::json!({"dataset": [
            {"identifier": ".", "title": "One dot"},
            {"identifier": "..", "title": "Two dots"},
            {"identifier": "plain", "title": "No dots"},
        ]})
        .to_string(),
    )
    .await;
    let dir = std::env::temp_dir().join(format!("trawl-dashboard-dots-{}", std::process::id()));
    let harvest = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_trawl"))
                .args(["harvest", "dcat", &catalog, "--internal", "--id", "dots"])
                .args(["--data-dir", &dir.display().to_string(), "--quiet"])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    assert!(harvest.status.success(), "{harvest:?}");
    let (_server, port) = serve(&dir).await;
    let shots =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let page = |view: &str| format!("http://127.0.0.1:{port}/#/{view}");

    let html = tokio::task::block_in_place(|| {
        render(&page("source/dots"), &shots.join("source-dots.png"))
    });
    for link in ["#/resource/dots/.", "#/resource/dots/.."] {
        assert!(html.contains(&format!(r#"href="{link}""#)), "{link}");
    }
    for (view, title) in [
        ("resource/dots/.", "One dot"),
        ("resource/dots/..", "Two dots"),
        ("resource/dots/%2E%2E", "Two dots"),
    ] {
        let html =
            tokio::task::block_in_place(|| render(&page(view), &shots.join("resource-dots.png")));
        assert!(html.contains(title), "{view}: {html}");
    }

    // A broken escape in the address: an error, not "Loading…" forever.
    let html = tokio::task::block_in_place(|| {
        render_in_state(
            &page("resource/dots/%E0%A4%A"),
            &shots.join("malformed-address.png"),
            "error",
        )
    });
    assert!(html.contains("is malformed"), "{html}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `trawl serve` over `dir` on a free port, answering once this returns.
async fn serve(dir: &Path) -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
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
            .unwrap(),
    );
    for _ in 0..100 {
        if reqwest::get(format!("http://127.0.0.1:{port}/api/sources"))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (server, port)
}

/// Answers every request on loopback with `body` as JSON, until the test ends; returns the
/// URL.
async fn serve_body(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/data.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    url
}

/// Stops the served API however the test ends (a panic included), so nothing outlives it.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! The dashboard in headless Chromium (Debian `chromium`, installed by `infra/install.sh`),
//! one browser per test: each view is rendered from the status API served by `trawl serve`,
//! its figures are checked against the API's own answers, and a screenshot of each is saved
//! under `target/dashboard-screenshots/` (test artifacts, not committed).

mod browser;
mod common;

use browser::Browser;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure, OaiConfig, OaiFixture};

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

/// A clock `behind` the wall clock: the world's sessions happened over the last week, so
/// the page's "3 days ago" and next runs read as they would on a real morning.
struct Behind(std::sync::Mutex<chrono::Duration>);

impl trawl::ports::Clock for Behind {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() - *self.0.lock().unwrap()
    }
}

/// What the world holds, by name, for the checks.
struct World {
    dir: PathBuf,
    /// Held while the dashboard is served: `trawl serve` would otherwise wind up the running
    /// session as a killed run's.
    _lock: std::fs::File,
    coast_sessions: Vec<String>,
    oai_incremental: String,
    oai_deleted: String,
    aborted: String,
    running: String,
    /// `kept`'s second session: one dataset gone (its deletion held), one edited.
    kept_session: String,
    _fixtures: (
        ErddapFixture,
        ErddapFixture,
        ErddapFixture,
        OaiFixture,
        ErddapFixture,
    ),
}

/// A data directory as an operator's looks after a week: `coast` (ERDDAP, two resources
/// failing, five sessions in which two datasets went missing, were tombstoned, deleted, one
/// came back and another went missing), `shelf` (1,200 datasets, healthy), `broken` (its
/// listing fails), `oai` (a full session, then an incremental one the schedule started in
/// which the server declared a record deleted), `paused` (aborted), `live` (running, 3 of its
/// resources done) and `fresh` (never harvested).
async fn world() -> World {
    use trawl::local::{run, DiskStore, FileObjects, MemoryQueue};
    use trawl::model::SourceSpec;
    use trawl::pipeline::Settings;

    let dir = std::env::temp_dir().join(format!("trawl-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(DiskStore::open(&dir).unwrap());
    let queue = Arc::new(MemoryQueue::with_delays());
    let mut svc = run::services(
        store.clone(),
        Arc::new(FileObjects::new(&dir)),
        queue.clone(),
        // `broken`'s listing is retried as on AWS, without a minute of backoff in the test.
        Settings {
            max_retry_delay: std::time::Duration::from_secs(1),
            ..Settings::default()
        },
    );
    let clock = Arc::new(Behind(std::sync::Mutex::new(chrono::Duration::zero())));
    svc.clock = clock.clone();
    let at = |days: f64| {
        *clock.0.lock().unwrap() = chrono::Duration::minutes((days * 1440.0) as i64);
        trawl::model::session::whole_second(
            chrono::Utc::now() - chrono::Duration::minutes((days * 1440.0) as i64),
        )
    };
    let erddap = |datasets, failures: &[(&str, Failure)]| {
        ErddapFixture::start(ErddapConfig {
            datasets,
            failures: failures
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        })
    };
    let coast = erddap(
        12,
        &[
            ("ds_0002", Failure::NotFound),
            ("ds_0009", Failure::Malformed),
        ],
    )
    .await
    .unwrap();
    let shelf = erddap(1200, &[]).await.unwrap();
    let broken = erddap(3, &[("allDatasets", Failure::ServerError)])
        .await
        .unwrap();
    let kept = erddap(4, &[]).await.unwrap();
    let oai = OaiFixture::start(OaiConfig {
        records: 12,
        page_size: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let register =
        |id: &str, protocol: &str, base_url: String, schedule: &str, options: serde_json::Value| {
            SourceSpec {
                id: id.into(),
                protocol: protocol.into(),
                base_url,
                schedule: schedule.into(),
                enabled: true,
                internal: true,
                options: serde_json::from_value(options).unwrap(),
            }
            .validate()
            .unwrap()
        };
    for source in [
        register(
            "coast",
            "erddap",
            coast.base_url(),
            "cron(0 3 * * ? *)",
            json!({"exclude": ["*_test"], "max_in_flight": 4, "requests_per_second": 10}),
        ),
        register(
            "shelf",
            "erddap",
            shelf.base_url(),
            "rate(6 hours)",
            json!({}),
        ),
        register(
            "broken",
            "erddap",
            broken.base_url(),
            "cron(30 2 ? * MON-FRI *)",
            json!({}),
        ),
        register(
            "oai",
            "oai-pmh",
            oai.base_url(),
            "cron(17 4 * * ? *)",
            json!({"incremental": true, "full_listing_every_days": 7}),
        ),
        register(
            "paused",
            "erddap",
            shelf.base_url(),
            "rate(1 day)",
            json!({"include": ["ds_000*"]}),
        ),
        register(
            "live",
            "erddap",
            coast.base_url(),
            "cron(0 */6 * * ? *)",
            json!({}),
        ),
        register(
            "kept",
            "erddap",
            kept.base_url(),
            "rate(1 day)",
            json!({"stale_after_listings": 1, "on_stale": "hold"}),
        ),
        register(
            "fresh",
            "erddap",
            shelf.base_url(),
            "rate(12 hours)",
            json!({}),
        ),
    ] {
        svc.store.put_source(&source).await.unwrap();
    }
    let harvest = |id: &'static str, days: f64| {
        let svc = &svc;
        let queue = &queue;
        let store = &store;
        let at = at(days);
        async move {
            let run = run::harvest_once(svc, queue, id, at, 8, &|_| {})
                .await
                .unwrap();
            store.save().unwrap();
            run.session.id
        }
    };

    let mut coast_sessions = vec![harvest("coast", 6.0).await];
    coast.remove_dataset("ds_0011");
    coast.remove_dataset("ds_0012");
    coast_sessions.push(harvest("coast", 4.0).await);
    coast_sessions.push(harvest("coast", 3.0).await);
    coast.restore_dataset("ds_0011");
    coast_sessions.push(harvest("coast", 2.0).await);
    coast.remove_dataset("ds_0010");
    coast_sessions.push(harvest("coast", 1.0).await);
    harvest("shelf", 2.5).await;
    harvest("shelf", 0.5).await;
    harvest("broken", 1.2).await;
    harvest("kept", 5.0).await;
    kept.remove_dataset("ds_0003");
    kept.bump_version("ds_0001");
    let kept_session = harvest("kept", 4.5).await;

    harvest("oai", 3.5).await;
    let oai_deleted = oai.identifiers()[3].clone();
    oai.delete(&oai_deleted);
    oai.touch(&oai.identifiers()[5]);
    // The schedule starts the next one: a tick at its 04:17 fire time, two days ago.
    let now = at(2.0);
    let tick = now.date_naive().and_hms_opt(4, 17, 0).unwrap().and_utc();
    let tick = if tick > now {
        tick - chrono::Duration::days(1)
    } else {
        tick
    };
    // The function runs on the tick, a few seconds after it.
    *clock.0.lock().unwrap() = chrono::Utc::now() - tick - chrono::Duration::seconds(20);
    let report = trawl::pipeline::schedule::on_tick(&svc, tick)
        .await
        .unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    let oai_incremental = report.started[0].clone();
    run::drain(&svc, &queue, &oai_incremental, 8, None, &|_| {})
        .await
        .unwrap();
    run::close(&svc, &oai_incremental).await.unwrap();
    store.save().unwrap();

    // Aborted by an operator once its listing was in.
    let report = trawl::pipeline::schedule::run_now(&svc, "paused", at(0.8))
        .await
        .unwrap();
    let aborted = report.started[0].clone();
    assert!(svc.store.request_abort(&aborted).await.unwrap());
    run::drain(&svc, &queue, &aborted, 8, None, &|_| {})
        .await
        .unwrap();
    run::close(&svc, &aborted).await.unwrap();
    store.save().unwrap();

    // Running: started ten minutes ago, 3 of its resources done.
    let report = trawl::pipeline::schedule::run_now(&svc, "live", at(10.0 / 1440.0))
        .await
        .unwrap();
    let running = report.started[0].clone();
    run::drain(&svc, &queue, &running, 1, Some(3), &|_| {})
        .await
        .unwrap();
    store.commit().unwrap();

    let lock = std::fs::File::create(dir.join("harvest.lock")).unwrap();
    lock.try_lock().unwrap();
    World {
        dir,
        _lock: lock,
        coast_sessions,
        oai_incremental,
        oai_deleted,
        aborted,
        running,
        kept_session,
        _fixtures: (coast, shelf, broken, oai, kept),
    }
}

/// The world's directory goes however the test ends: 20-odd MB a run.
impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a test's data directory however the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The text a number shows in `lang` (en-CA: `1,200`; fr-CA: `1 200`, spaces normalized).
fn shown(n: &Value, lang: &str) -> String {
    let n = n.as_u64().unwrap_or_else(|| panic!("{n} is not a count"));
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(if lang == "fr" { ' ' } else { ',' });
        }
        out.push(c);
    }
    out
}

/// The rendered page, without the scripts that follow it (whose text names the same
/// attributes), with the spaces fr-CA formats numbers with made plain.
fn plain(html: String) -> String {
    let page = html.split("<script").next().unwrap_or_default();
    page.replace("&nbsp;", " ")
        .replace(['\u{a0}', '\u{202f}'], " ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_view_in_english_and_french_shows_what_the_api_says() {
    let w = world().await;
    let (_server, port) = serve(&w.dir).await;
    let shots =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let get = |path: String| async move { api(port, &path).await };
    let esc = |id: &str| id.replace('@', "%40");
    let latest_coast = w.coast_sessions.last().unwrap().clone();

    // The browser's language is the default; ?lang= forces one.
    let (default, forced) = tokio::task::block_in_place(|| {
        let mut french = Browser::launch("fr");
        french.open(&format!("http://127.0.0.1:{port}/#/"), "ready");
        let default = french.dom();
        french.open(&format!("http://127.0.0.1:{port}/?lang=en#/"), "ready");
        (default, french.dom())
    });
    assert!(
        default.contains(r#"<html lang="fr""#),
        "the browser's French is the default"
    );
    assert!(
        forced.contains(r#"<html lang="en""#),
        "?lang=en wins over the browser"
    );

    let mut browser = tokio::task::block_in_place(|| Browser::launch("en-CA"));
    for lang in ["en", "fr"] {
        let page = |view: &str| format!("http://127.0.0.1:{port}/?lang={lang}#/{view}");
        let mut view = |name: &str, v: &str| {
            let url = page(v);
            tokio::task::block_in_place(|| {
                browser.open(&url, "ready");
                browser.screenshot(&shots.join(format!("{name}-{lang}.png")), 1400, 1800);
                browser.screenshot(&shots.join(format!("{name}-{lang}-phone.png")), 390, 1600);
                plain(browser.dom())
            })
        };
        let word = |en: &'static str, fr: &'static str| if lang == "en" { en } else { fr };

        // Overview: every source's counters, health and sessions; the running session's
        // progress; the top reasons; the recent runs in the API's order.
        let sources = get("/api/sources".into()).await;
        let html = view("overview", "");
        assert!(html.contains(&format!(r#"<html lang="{lang}""#)));
        for s in sources["sources"].as_array().unwrap() {
            let id = s["id"].as_str().unwrap();
            let row = format!(r#"data-source="{id}""#);
            assert!(html.contains(&row), "{id}");
            if let Some(last) = s["last_session"].as_object() {
                for name in ["total", "harvested", "unchanged", "failed"] {
                    assert_eq!(
                        field(&html, &row, name),
                        shown(&last["counters"][name], lang),
                        "{id} {name}"
                    );
                }
            }
            let health = s["health"].as_str().unwrap();
            let row_html = &html[html.find(&row).unwrap()..];
            assert!(
                row_html[..row_html.find("</tr>").unwrap()]
                    .contains(&format!(r#"data-badge="{health}""#)),
                "{id} {health}"
            );
        }
        assert!(
            html.contains(r#"data-sessions="5""#),
            "coast: a bar per session"
        );
        assert!(html.contains(&format!(r#"data-running="{}""#, w.running)));
        let live = sources["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "live")
            .unwrap();
        let progress = &live["running"]["progress"];
        assert_eq!(progress["done"], 3);
        assert_eq!(
            field(&html, r#"id="running""#, "progress"),
            format!(
                "3 {} {}",
                word("of", "sur"),
                shown(&progress["total"], lang)
            )
        );
        assert!(html.contains(word("last success", "dernier succès")));
        assert!(html.contains(word("never harvested", "jamais moissonnée")));
        let reasons = get("/api/reasons".into()).await;
        for r in reasons["top"].as_array().unwrap() {
            assert!(html.contains(&format!(r#"data-reason="{}""#, r["code"].as_str().unwrap())));
        }
        let recent = get("/api/sessions?limit=15".into()).await;
        let order: Vec<&str> = recent["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        let table = &html[html.find(r#"id="runs""#).unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        let shown_order: Vec<&str> = table
            .split(r#"data-session=""#)
            .skip(1)
            .map(|p| p.split('"').next().unwrap())
            .collect();
        assert_eq!(shown_order, order, "recent runs, newest first");
        assert!(
            html.contains(r#"data-trigger="schedule""#)
                && html.contains(r#"data-mode="incremental""#)
        );

        // Every run, paged.
        let html = view("runs", "runs");
        let all = get("/api/sessions?limit=50".into()).await;
        assert_eq!(
            html.matches("data-session=").count(),
            all["sessions"].as_array().unwrap().len()
        );

        // Source view: configuration, reasons, resources filtered, searched and paged.
        let html = view("source", "source/coast");
        assert!(
            html.contains(&format!(r#"href="{}""#, w._fixtures.0.base_url())),
            "base URL as a link"
        );
        assert!(
            html.contains(word("every day at 03:00 UTC", "tous les jours à 03:00 UTC")),
            "schedule in words"
        );
        assert!(html.contains(word(
            "at most 4 requests at once",
            "au plus 4 requêtes à la fois"
        )));
        assert!(
            html.contains(r#"data-reason="NOT_FOUND""#)
                && html.contains(r#"data-reason="PARSE_ERROR""#)
        );
        let detail = get("/api/sources/coast".into()).await;
        for s in detail["sessions"].as_array().unwrap() {
            assert!(html.contains(&format!(r#"data-session="{}""#, s["id"].as_str().unwrap())));
        }
        let listed = get("/api/sources/coast/resources?sort=failures&limit=50".into()).await;
        let ids: Vec<&str> = html
            .split(r#"data-resource=""#)
            .skip(1)
            .map(|p| p.split('"').next().unwrap())
            .collect();
        let expected: Vec<&str> = listed["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, expected, "failures first, as the API sorts them");
        assert_eq!(&ids[..2], ["ds_0002", "ds_0009"]);

        let html = view("source-tombstoned", "source/coast?status=tombstoned");
        assert_eq!(html.matches(r#"data-resource=""#).count(), 1);
        assert!(html.contains(r#"data-resource="ds_0010""#));
        assert!(
            html.contains(word(
                "missing from 1 of 2 listings",
                "absente de 1 inventaire sur 2"
            )),
            "the tombstone"
        );
        let html = view("source-deleted", "source/coast?status=deleted");
        assert!(
            html.contains(r#"data-resource="ds_0012""#)
                && !html.contains(r#"data-resource="ds_0011""#),
            "ds_0011 came back"
        );
        let html = view("source-search", "source/coast?q=not_found");
        assert_eq!(
            html.matches(r#"data-resource=""#).count(),
            1,
            "searched by the error"
        );

        // Past the first page of 1,200.
        let html = view("source-page-2", "source/shelf?sort=id&page=2");
        let second = get("/api/sources/shelf/resources?sort=id&limit=50&offset=50".into()).await;
        let ids: Vec<&str> = html
            .split(r#"data-resource=""#)
            .skip(1)
            .map(|p| p.split('"').next().unwrap())
            .collect();
        let expected: Vec<&str> = second["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, expected);
        assert!(
            html.contains(word("51–100 of 1,200", "51 à 100 sur 1 200")),
            "the range"
        );

        // Session views: the latest coast session (a tombstone), the one that deleted, the
        // one that restored; the incremental one the schedule started; aborted; running.
        let session = get(format!("/api/sessions/{}", esc(&latest_coast))).await;
        let html = view("session", &format!("session/{}", esc(&latest_coast)));
        for name in ["total", "harvested", "unchanged", "failed", "remaining"] {
            assert_eq!(
                field(&html, r#"id="counters""#, name),
                shown(&session["session"]["counters"][name], lang),
                "{name}"
            );
        }
        assert!(html.contains(r#"data-reason="NOT_FOUND""#));
        assert!(html.contains(r#"data-mode="full""#) && html.contains(r#"data-trigger="manual""#));
        assert!(html[html.find(r#"id="stale-tombstoned""#).unwrap()..].contains("ds_0010"));
        let outcomes = get(format!(
            "/api/sessions/{}/outcomes?limit=50",
            esc(&latest_coast)
        ))
        .await;
        assert_eq!(
            html.matches("data-outcome=").count(),
            outcomes["outcomes"].as_array().unwrap().len()
        );
        assert!(html.contains(
            &format!("/api/sessions/{}/summary", esc(&latest_coast)).replace('@', "%40")
        ));
        let html = view(
            "session-failed-outcomes",
            &format!("session/{}?outcome=failed", esc(&latest_coast)),
        );
        assert_eq!(html.matches("data-outcome=").count(), 2);

        let html = view(
            "session-deleted",
            &format!("session/{}", esc(&w.coast_sessions[2])),
        );
        let deleted = &html[html.find(r#"id="stale-deleted""#).unwrap()..];
        assert!(deleted.contains("ds_0011") && deleted.contains("ds_0012"));
        let removed = &html[html.find(r#"id="changes-removed""#).unwrap()..];
        assert!(removed.contains("ds_0011") && removed.contains("ds_0012"));
        let html = view(
            "session-restored",
            &format!("session/{}", esc(&w.coast_sessions[3])),
        );
        assert!(html[html.find(r#"id="restored""#).unwrap()..].contains("ds_0011"));

        let html = view(
            "session-incremental",
            &format!("session/{}", esc(&w.oai_incremental)),
        );
        assert!(
            html.contains(r#"data-mode="incremental""#)
                && html.contains(r#"data-trigger="schedule""#)
        );
        assert!(html.contains(word(
            "incremental, changes since",
            "incrémentielle, changements depuis"
        )));
        assert!(html[html.find(r#"id="declared-deleted""#).unwrap()..].contains(&w.oai_deleted));

        let html = view("session-aborted", &format!("session/{}", esc(&w.aborted)));
        assert!(html.contains(r#"data-badge="aborted""#));
        let html = view("session-running", &format!("session/{}", esc(&w.running)));
        assert!(html.contains(r#"data-badge="running""#));
        assert!(html.contains(r#"data-filter="pending""#));
        // A source holding deletions: each pending one with approve and discard buttons; its
        // session lists the held one and what changed (the edited record with its fields).
        let html = view("source-held", "source/kept");
        let pending = get("/api/sources/kept/deletions".into()).await;
        assert_eq!(pending["count"], 1);
        let held = &html[html.find(r#"id="pending-deletions""#).unwrap()..];
        assert!(held.contains(r#"data-held="ds_0003""#), "{held}");
        assert!(held.contains(r#"data-decide="approve" data-id="ds_0003""#));
        assert!(held.contains(r#"data-decide="restore" data-id="ds_0003""#));
        assert!(
            held.contains(word("Approve", "Approuver"))
                && held.contains(word("Discard", "Écarter"))
        );
        assert!(html.contains(word(
            "kept pending until an operator approves",
            "gardées en attente"
        )));
        let summary = get(format!("/api/sessions/{}/summary", esc(&w.kept_session))).await;
        let html = view(
            "session-changes",
            &format!("session/{}", esc(&w.kept_session)),
        );
        assert!(html[html.find(r#"id="stale-held""#).unwrap()..].contains("ds_0003"));
        for kind in ["added", "changed", "removed", "restored"] {
            assert_eq!(
                field(&html, r#"id="changes""#, kind).trim(),
                shown(&summary["changes"][kind]["count"], lang),
                "{kind}"
            );
        }
        let changed = &html[html.find(r#"data-changed="ds_0001""#).unwrap()..];
        assert!(
            changed[..changed.find("</li>").unwrap()].contains("<code>title</code>"),
            "{changed}"
        );
        assert!(html.contains(word("What changed", "Ce qui a changé")));
        let html = view("source-broken", "source/broken");
        assert!(html.contains(r#"data-badge="failing""#));

        // Resource views: a failure with its error, marked request and history; a record.
        let html = view("resource-failed", "resource/coast/ds_0002");
        assert!(html.contains(r#"id="error-detail""#));
        let failed_row = &html[html.find("data-failed").unwrap()..];
        assert!(
            failed_row[..failed_row.find("</tr>").unwrap()].contains("/info/ds_0002/index.json"),
            "the failed request is marked"
        );
        assert_eq!(
            html.matches("data-history=").count(),
            5,
            "a row per session"
        );
        let html = view("resource", "resource/shelf/ds_0001");
        let record = get("/api/sources/shelf/record?id=ds_0001".into()).await;
        assert!(html.contains(&format!(
            r#"<h3 id="record-title">{}</h3>"#,
            record["record"]["title"].as_str().unwrap()
        )));
        assert!(html.contains("data-box"), "the bounding box drawn");
        assert!(html.contains(r#"id="raw-link""#));
        let oai_first = get("/api/sources/oai/resources?limit=1".into()).await;
        let oai_first = oai_first["resources"][0]["id"].as_str().unwrap();
        let html = view("resource-oai", &format!("resource/oai/{}", esc(oai_first)));
        assert!(html.contains(r#"id="record-title""#));
    }
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

    let mut browser = tokio::task::block_in_place(|| Browser::launch("en-CA"));
    let mut render = |view: &str, shot: &str, state: &str| {
        tokio::task::block_in_place(|| {
            browser.open(&page(view), state);
            browser.screenshot(&shots.join(shot), 1280, 900);
            browser.dom()
        })
    };

    let html = render("source/dots", "source-dots.png", "ready");
    for link in ["#/resource/dots/.", "#/resource/dots/.."] {
        assert!(html.contains(&format!(r#"href="{link}""#)), "{link}");
    }
    for (view, title) in [
        ("resource/dots/.", "One dot"),
        ("resource/dots/..", "Two dots"),
        ("resource/dots/%2E%2E", "Two dots"),
    ] {
        let html = render(view, "resource-dots.png", "ready");
        assert!(html.contains(title), "{view}: {html}");
    }

    // A broken escape in the address: an error, not "Loading…" forever.
    let html = render("resource/dots/%E0%A4%A", "malformed-address.png", "error");
    assert!(html.contains("is malformed"), "{html}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_approves_and_discards_held_deletions_with_the_dashboards_buttons() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = common::data_dir("dashboard-decide");
    let _cleanup = TempDir(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let sources = dir.join("sources.json");
    std::fs::write(
        &sources,
        json!({
            "id": "held", "protocol": "erddap", "base_url": fixture.base_url(),
            "schedule": "rate(1 day)", "internal": true,
            "options": {"stale_after_listings": 1, "on_stale": "hold"},
        })
        .to_string(),
    )
    .unwrap();
    let harvest = || {
        let args: Vec<String> = ["harvest", "--sources", &sources.display().to_string()]
            .into_iter()
            .chain(["--quiet", "--data-dir", &dir.display().to_string()])
            .map(String::from)
            .collect();
        common::trawl(args)
    };
    assert!(harvest().await.status.success());
    for gone in ["ds_0002", "ds_0003", "ds_0004"] {
        fixture.remove_dataset(gone);
    }
    // Session ids are whole seconds: the next harvest starts in the next one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(harvest().await.status.success());
    let (_server, port) = serve(&dir).await;
    let pending = || async move {
        let held = api(port, "/api/sources/held/deletions").await;
        held["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["resource_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(pending().await, ["ds_0002", "ds_0003", "ds_0004"]);

    let url = format!("http://127.0.0.1:{port}/?lang=fr#/source/held");
    let mut page = tokio::task::block_in_place(|| {
        let mut page = Browser::launch("fr");
        page.navigate(&url);
        page.wait_for(r#"document.querySelectorAll("[data-held]").length === 3"#);
        page.click(r#"button[data-decide="approve"][data-id="ds_0002"]"#);
        // The view is drawn again from the API once the decision is taken.
        page.wait_for(
            r#"document.querySelectorAll("[data-held]").length === 2 && !document.querySelector('[data-held="ds_0002"]')"#,
        );
        page.click(r#"button[data-decide="restore"][data-id="ds_0003"]"#);
        page.wait_for(r#"document.querySelectorAll("[data-held]").length === 1"#);
        page
    });
    assert_eq!(pending().await, ["ds_0004"]);
    assert!(dir.join("deleted/records/held/ds_0002.json").is_file());
    assert!(!dir.join("records/held/ds_0002.json").exists());
    assert!(dir.join("records/held/ds_0003.json").is_file());
    assert!(!dir.join("deleted/records/held/ds_0003.json").exists());

    // Decided elsewhere meanwhile: the page's button is stale, and pressing it says why in
    // the page's language instead of pretending it worked.
    let cli = common::trawl(
        ["deletions", "approve", "held", "ds_0004", "--data-dir"]
            .into_iter()
            .map(String::from)
            .chain([dir.display().to_string()])
            .collect(),
    )
    .await;
    assert!(cli.status.success(), "{cli:?}");
    let shown = tokio::task::block_in_place(|| {
        page.click(r#"button[data-decide="approve"][data-id="ds_0004"]"#);
        page.wait_for(r##"!document.querySelector("#decide-error").hidden"##);
        let error = page.eval(r##"document.querySelector("#decide-error").textContent"##);
        let enabled = page.eval(
            r#"[...document.querySelectorAll("button[data-decide]")].every((b) => !b.disabled)"#,
        );
        // The header's language buttons redraw the view in the other language, and the
        // address keeps the choice.
        page.click(r#"button[data-lang="en"]"#);
        page.wait_for(
            r##"document.documentElement.lang === "en" && document.querySelector('[data-i18n="nav.overview"]').textContent === "Overview" && document.querySelector("#view").dataset.state === "ready" && document.querySelector("#view").innerText.includes("Base URL")"##,
        );
        let address = page.eval("location.search");
        let pressed = page.eval(
            r#"document.querySelector('button[data-lang="en"]').getAttribute("aria-pressed")"#,
        );
        assert_eq!((address, pressed), (json!("?lang=en"), json!("true")));
        // A search typed into the resources' form becomes the address (so it is a link).
        page.eval(r#"document.querySelector('form.search input[name="q"]').value = "ds_0007""#);
        page.click(r#"form.search button[type="submit"]"#);
        page.wait_for(
            r##"location.hash.includes("q=ds_0007") && document.querySelector("#view").dataset.state === "ready" && document.querySelectorAll("[data-resource]").length === 1"##,
        );
        (error, enabled)
    });
    let error = shown.0.as_str().unwrap().to_string();
    assert!(
        error.starts_with("Décision impossible") && error.contains("ds_0004"),
        "{error}"
    );
    assert_eq!(
        shown.1,
        json!(true),
        "the buttons work again after a refusal"
    );
    assert!(pending().await.is_empty());
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

/// Markup, script and `javascript:` payloads in every field a catalog writes: ids, titles,
/// descriptions, keywords, publishers, landing pages and distributions.
fn hostile_catalog() -> String {
    let run = |n: u32| format!("document.body.setAttribute('data-pwned','{n}')");
    json!({"dataset": [
        {
            "identifier": format!("<img src=x onerror=\"{}\">", run(1)),
            "title": format!("<script>{}</script>", run(2)),
            "description": format!("<b onmouseover=\"{}\">bold</b><svg onload=\"{}\"></svg>", run(3), run(4)),
            "keyword": [format!("<iframe src=\"javascript:{}\"></iframe>", run(5))],
            "publisher": {"name": "<style>body{display:none}</style>"},
            "landingPage": format!("javascript:{}", run(6)),
            "distribution": [
                {"downloadURL": format!("JaVaScRiPt:{}", run(7)), "title": format!("<a href=\"javascript:{}\">x</a>", run(8))},
                {"accessURL": format!(" javascript:{}", run(9)), "description": "\"><script>alert(10)</script>"},
                {"downloadURL": "data:text/html,<script>alert(11)</script>"}
            ]
        },
        {
            "identifier": format!("\"><script>{}</script>", run(12)),
            "title": "'><img src=x onerror=alert(13)>",
            "landingPage": "https://example.org/fine"
        }
    ]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_of_html_and_script_payloads_is_shown_as_text_and_nothing_in_it_runs() {
    let catalog = serve_body(hostile_catalog()).await;
    // A listing whose body is a page with a script in it: its error text is shown too.
    let broken = serve_body(format!(
        "<html><script>document.body.setAttribute('data-pwned','14')</script>{}",
        "x".repeat(200)
    ))
    .await;
    let dir = std::env::temp_dir().join(format!("trawl-dashboard-hostile-{}", std::process::id()));
    let _cleanup = TempDir(dir.clone());
    for (url, id) in [(catalog, "hostile"), (broken, "hostile-listing")] {
        let dir = dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_trawl"))
                .args(["harvest", "dcat", &url, "--internal", "--id", id, "--quiet"])
                .args(["--data-dir", &dir.display().to_string()])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
    }
    let (_server, port) = serve(&dir).await;
    let shots =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let resources = api(port, "/api/sources/hostile/resources").await;
    let ids: Vec<String> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{resources}");
    let sessions = api(port, "/api/sessions").await;
    let mut views = vec![
        "".to_string(),
        "runs".into(),
        "source/hostile".into(),
        "source/hostile-listing".into(),
    ];
    for s in sessions["sessions"].as_array().unwrap() {
        views.push(format!(
            "session/{}",
            s["id"].as_str().unwrap().replace('@', "%40")
        ));
    }
    for id in &ids {
        let escaped: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        views.push(format!("resource/hostile/{}", escaped.replace('+', "%20")));
    }
    let mut browser = tokio::task::block_in_place(|| Browser::launch("en-CA"));
    for lang in ["en", "fr"] {
        for (i, view) in views.iter().enumerate() {
            let url = format!("http://127.0.0.1:{port}/?lang={lang}#/{view}");
            let html = tokio::task::block_in_place(|| {
                browser.open(&url, "ready");
                browser.screenshot(&shots.join(format!("hostile-{i}-{lang}.png")), 1400, 1400);
                // A payload that became an element would run once its image failed to load
                // or its frame loaded: give it the time to.
                std::thread::sleep(std::time::Duration::from_millis(300));
                browser.dom()
            });
            let lower = html.to_lowercase();
            assert!(!lower.contains("data-pwned=\""), "{view}: a payload ran");
            assert_eq!(
                lower.matches("<script").count(),
                2,
                "{view}: only the page's own scripts"
            );
            assert_eq!(
                lower.matches("<style").count(),
                1,
                "{view}: only the page's own style"
            );
            // The elements the page holds (text is serialized with `<` escaped, so whatever
            // a payload spelled as text is not among them), up to the page's scripts.
            let page = lower.split("<script").next().unwrap();
            let tags = tags(page);
            for tag in &tags {
                for element in ["<img", "<iframe", "<svg onload", "<b ", "<object", "<embed"] {
                    assert!(!tag.starts_with(element), "{view}: {tag} became an element");
                }
                for (name, value) in attributes(tag) {
                    assert!(!name.starts_with("on"), "{view}: a handler in {tag}");
                    if name == "href" || name == "src" || name == "action" {
                        assert!(
                            value.starts_with('#')
                                || value.starts_with("http://")
                                || value.starts_with("https://")
                                || value.starts_with("/api/"),
                            "{view}: {name} to {value}"
                        );
                    }
                }
            }
        }
    }
    // The payloads are there, as text.
    let url = format!("http://127.0.0.1:{port}/?lang=en#/resource/hostile/{}", {
        let img = ids.iter().find(|id| id.starts_with("<img")).unwrap();
        let escaped: String = url::form_urlencoded::byte_serialize(img.as_bytes()).collect();
        escaped.replace('+', "%20")
    });
    let html = tokio::task::block_in_place(|| {
        browser.open(&url, "ready");
        browser.dom()
    });
    assert!(
        html.contains("&lt;script&gt;document.body.setAttribute"),
        "the title, as text"
    );
    assert!(html.contains("&lt;iframe"), "the keyword, as text");
    std::fs::remove_dir_all(&dir).ok();
}

/// The start tags of serialized HTML, in order: `<` inside a quoted attribute value does not
/// start one, and text never holds a raw `<`.
fn tags(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut quoted = false;
    for c in html.chars() {
        match (&mut current, c) {
            (None, '<') => current = Some("<".into()),
            (None, _) => {}
            (Some(tag), '"') => {
                quoted = !quoted;
                tag.push(c);
            }
            (Some(tag), '>') if !quoted => {
                if !tag.starts_with("</") {
                    out.push(std::mem::take(tag));
                }
                current = None;
            }
            (Some(tag), _) => tag.push(c),
        }
    }
    out
}

/// A start tag's `name="value"` attributes.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq]
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        let after = &rest[eq + 2..];
        let end = after.find('"').unwrap_or(after.len());
        out.push((name, after[..end].to_string()));
        rest = &after[(end + 1).min(after.len())..];
    }
    out
}

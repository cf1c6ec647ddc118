//! The status API handler over a harvested in-memory world: every route, its filters and its
//! errors, and the OpenAPI document covering exactly the routes served.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use trawl::api::{handle, ApiRequest, OPENAPI};
use trawl::http::{HttpClient, Response, Transport};
use trawl::local::{run::harvest_once, MemoryObjects, MemoryQueue, MemoryStore};
use trawl::model::{Reason, SourceSpec};
use trawl::pipeline::{Services, Settings};
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};

async fn harvested() -> (Services, ErddapFixture, String) {
    let (svc, fixture, session, _) = harvested_with_queue().await;
    (svc, fixture, session)
}

/// [`harvested`], with the queue its services send to (for harvesting again).
async fn harvested_with_queue() -> (Services, ErddapFixture, String, Arc<MemoryQueue>) {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 10,
        failures: BTreeMap::from([
            ("ds_0002".to_string(), Failure::NotFound),
            ("ds_0005".to_string(), Failure::Malformed),
        ]),
        ..Default::default()
    })
    .await
    .unwrap();
    let queue = Arc::new(MemoryQueue::with_delays());
    let svc = Services::new(
        Arc::new(MemoryStore::default()),
        Arc::new(MemoryObjects::default()),
        queue.clone(),
        Settings {
            http_timeout: Duration::from_secs(2),
            ..Settings::default()
        },
    );
    let source = SourceSpec {
        id: "ocean".into(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: "cron(0 3 * * ? *)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    svc.store.put_source(&source).await.unwrap();
    let session = harvest_once(&svc, &queue, "ocean", chrono::Utc::now(), 4, &|_| {})
        .await
        .unwrap()
        .session;
    (svc, fixture, session.id, queue)
}

async fn get(svc: &Services, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    get_method(svc, "GET", path, query).await
}

async fn get_method(
    svc: &Services,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
) -> (u16, Value) {
    let query: HashMap<String, String> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let response = handle(
        svc,
        &ApiRequest {
            method,
            path,
            query,
            may_decide: false,
        },
    )
    .await;
    (
        response.status,
        serde_json::from_slice(&response.body).expect("every answer is JSON"),
    )
}

#[tokio::test]
async fn the_overview_source_session_resource_and_reason_routes_answer_from_the_stores() {
    let (svc, _fixture, session_id) = harvested().await;

    let (status, body) = get(&svc, "/api/sources", &[]).await;
    assert_eq!(status, 200);
    let source = &body["sources"][0];
    assert_eq!(source["id"], "ocean");
    assert_eq!(source["health"], "degraded", "two failures");
    assert_eq!(source["last_session"]["counters"]["harvested"], 8);
    assert!(
        source["next_run"].as_str().unwrap().ends_with("03:00:00Z"),
        "{source}"
    );

    let (_, detail) = get(&svc, "/api/sources/ocean", &[]).await;
    assert_eq!(detail["sessions"][0]["id"], session_id.as_str());

    let (_, failed) = get(
        &svc,
        "/api/sources/ocean/resources",
        &[("status", "failed")],
    )
    .await;
    let ids: Vec<&str> = failed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ds_0002", "ds_0005"]);
    assert_eq!(failed["resources"][0]["reason"]["code"], "NOT_FOUND");
    let (_, all) = get(&svc, "/api/sources/ocean/resources", &[]).await;
    assert_eq!(all["resources"].as_array().unwrap().len(), 10);
    // Searched by title as well as id.
    let title = all["resources"][0]["title"].as_str().unwrap().to_string();
    let word = title.split_whitespace().last().unwrap().to_lowercase();
    let (_, by_title) = get(&svc, "/api/sources/ocean/resources", &[("q", &word)]).await;
    assert!(!by_title["resources"].as_array().unwrap().is_empty());
    let (_, by_id) = get(&svc, "/api/sources/ocean/resources", &[("q", "DS_0007")]).await;
    assert_eq!(by_id["resources"][0]["id"], "ds_0007");
    assert_eq!(by_id["resources"].as_array().unwrap().len(), 1);

    let (_, one) = get(&svc, "/api/sources/ocean/resources/ds_0002", &[]).await;
    assert_eq!(one["state"]["last_outcome"], "failed");
    let url = one["latest_log"]["requests"][0]["url"].as_str().unwrap();
    assert!(url.ends_with("/info/ds_0002/index.json"), "{url}");

    let encoded = session_id.replace('@', "%40");
    let (status, session) = get(&svc, &format!("/api/sessions/{encoded}"), &[]).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["reasons"]["NOT_FOUND"], 1);
    assert_eq!(session["reasons"]["PARSE_ERROR"], 1);
    assert_eq!(session["outcomes"].as_array().unwrap().len(), 10);
    assert_eq!(session["summary"]["counters"]["failed"], 2);

    let (_, reasons) = get(&svc, "/api/reasons", &[]).await;
    assert_eq!(reasons["top"].as_array().unwrap().len(), 2);
    assert_eq!(reasons["by_source"][0]["source_id"], "ocean");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let (svc, _fixture, _) = harvested().await;
    let (status, body) = get(&svc, "/api/sources/ocean/resources", &[("status", "lost")]).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("status must be"));
    assert_eq!(get(&svc, "/api/sources/nope", &[]).await.0, 404);
    assert_eq!(get(&svc, "/api/sessions/nope@1", &[]).await.0, 404);
    assert_eq!(
        get(&svc, "/api/sources/ocean/resources/ds_9999", &[])
            .await
            .0,
        404
    );
    assert_eq!(get(&svc, "/api/everything", &[]).await.0, 404);
    assert_eq!(
        get_method(&svc, "DELETE", "/api/sources/ocean", &[])
            .await
            .0,
        405
    );
    for (path, query) in [
        ("/api/sources/ocean/resources", ("sort", "size")),
        ("/api/sources/ocean/resources", ("limit", "many")),
        ("/api/sessions", ("before", "nope@1")),
        ("/api/sources/ocean/record", ("x", "")),
    ] {
        let (status, body) = get(&svc, path, &[query]).await;
        assert_eq!(status, 400, "{path} {query:?}: {body}");
    }
}

/// A data.json catalog whose identifiers include `.` and `..`, harvested into `svc` as
/// source `dots`.
async fn harvested_dot_ids() -> Services {
    let queue = Arc::new(MemoryQueue::with_delays());
    let mut svc = Services::new(
        Arc::new(MemoryStore::default()),
        Arc::new(MemoryObjects::default()),
        queue.clone(),
        Settings::default(),
    );
    svc.http = HttpClient::over(
        Arc::new(DataJson),
        Duration::from_secs(2),
        Settings::default().max_body_bytes,
    );
    let source = SourceSpec {
        id: "dots".into(),
        protocol: "dcat".into(),
        base_url: "https://catalog.example.org/data.json".into(),
        schedule: "rate(1 day)".into(),
        enabled: true,
        internal: false,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    svc.store.put_source(&source).await.unwrap();
    let run = harvest_once(&svc, &queue, "dots", chrono::Utc::now(), 4, &|_| {})
        .await
        .unwrap();
    assert_eq!(run.session.counters.harvested, 3, "{:?}", run.session);
    svc
}

struct DataJson;

#[async_trait::async_trait]
impl Transport for DataJson {
    async fn get(&self, _url: &str) -> Result<Response, Reason> {
        let body = serde_json::json!({"dataset": [
            {"identifier": ".", "title": "One dot"},
            {"identifier": "..", "title": "Two dots"},
            {"identifier": "plain", "title": "No dots"},
        ]});
        Ok(Response {
            status: 200,
            content_type: Some("application/json".into()),
            body: body.to_string().into(),
            retry_after: None,
        })
    }
}

#[tokio::test]
async fn a_resource_whose_id_is_a_dot_segment_is_served_escaped_in_the_path_or_in_the_query() {
    let svc = harvested_dot_ids().await;
    // Browsers resolve `.`, `..` and their escapes (`%2E`) out of a path before sending it,
    // so the dashboard names a resource in the query; other clients may send the escape.
    for (id, escaped) in [(".", "%2E"), ("..", "%2E%2E"), ("..", ".%2e")] {
        let (status, body) =
            get(&svc, &format!("/api/sources/dots/resources/{escaped}"), &[]).await;
        assert_eq!(status, 200, "{escaped}: {body}");
        assert_eq!(body["state"]["resource_id"], id, "{escaped}");
        let (status, body) = get(&svc, "/api/sources/dots/resource", &[("id", id)]).await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["state"]["resource_id"], id);
    }
    let (status, body) = get(&svc, "/api/sources/dots/resource", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("id"), "{body}");
    assert_eq!(
        get(&svc, "/api/sources/dots/resource", &[("id", "...")])
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_served() {
    let (svc, _fixture, session_id) = harvested().await;
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 18);
    for (path, item) in paths {
        if let Some(post) = item.get("post") {
            // Decisions: answered for a request that may decide (none pending here: none done).
            assert!(item.get("get").is_none(), "{path}");
            assert!(post["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["in"] == "header"));
            let concrete = path.replace("{source_id}", "ocean");
            let (status, body) = decide(&svc, &concrete, &[], true).await;
            assert_eq!(
                (status, &body["done"]),
                (200, &serde_json::json!([])),
                "{path}"
            );
            continue;
        }
        let concrete = path
            .replace("{source_id}", "ocean")
            .replace("{resource_id}", "ds_0001")
            .replace("{session_id}", &session_id);
        // Required query parameters get a value (there is one: a resource's id).
        let required: Vec<(&str, &str)> = item["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .map(|p| (p["name"].as_str().unwrap(), "ds_0001"))
            .collect();
        let response = handle(
            &svc,
            &ApiRequest {
                method: "GET",
                path: &concrete,
                query: required
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                may_decide: false,
            },
        )
        .await;
        assert_eq!(response.status, 200, "{path}: {:?}", response.body);
        // What the document says each answers with.
        let documented: Vec<&String> = item["get"]["responses"]["200"]["content"]
            .as_object()
            .map(|c| c.keys().collect())
            .unwrap_or_default();
        if !documented.is_empty() {
            assert!(
                documented
                    .iter()
                    .any(|t| response.content_type.starts_with(t.as_str())),
                "{path}: {} not in {documented:?}",
                response.content_type
            );
        }
    }
}

#[tokio::test]
async fn the_api_function_answers_an_http_api_event_and_refuses_a_foreign_one() {
    let (svc, _fixture, _) = harvested().await;
    let event: Value =
        serde_json::from_str(include_str!("../../infra/events/api-get-sources.json")).unwrap();
    let answer = trawl::handlers::api(&svc, event.clone()).await;
    assert_eq!(answer["statusCode"], 200);
    assert_eq!(answer["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["sources"][0]["id"], "ocean");

    let mut dashboard = event.clone();
    dashboard["rawPath"] = "/".into();
    let page = trawl::handlers::api(&svc, dashboard).await;
    assert_eq!(page["statusCode"], 200);
    assert!(page["headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page["body"].as_str().unwrap().contains("<main id=\"view\""));

    let mut post = event.clone();
    post["requestContext"]["http"]["method"] = "POST".into();
    assert_eq!(trawl::handlers::api(&svc, post).await["statusCode"], 405);
    let foreign = trawl::handlers::api(&svc, serde_json::json!({"Records": []})).await;
    assert_eq!(foreign["statusCode"], 400);
}

/// The answer to `method path?query`, headers and all.
async fn answer(
    svc: &Services,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
) -> trawl::api::ApiResponse {
    handle(
        svc,
        &ApiRequest {
            method,
            path,
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            may_decide: false,
        },
    )
    .await
}

fn header<'a>(response: &'a trawl::api::ApiResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn head_answers_like_get_without_a_body_and_other_methods_are_refused() {
    let (svc, _fixture, _) = harvested().await;
    let get = answer(&svc, "GET", "/api/sources", &[]).await;
    let head = answer(&svc, "HEAD", "/api/sources", &[]).await;
    assert_eq!((head.status, head.content_type), (200, get.content_type));
    assert!(head.body.is_empty() && !get.body.is_empty());
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let refused = answer(&svc, method, "/api/sources", &[]).await;
        assert_eq!(refused.status, 405, "{method}");
        assert_eq!(header(&refused, "allow"), Some("GET, HEAD"));
    }
    let page = answer(&svc, "GET", "/", &[]).await;
    let policy = header(&page, "content-security-policy").unwrap();
    assert!(
        policy.contains("script-src 'sha256-") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    assert_eq!(header(&get, "x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn a_resources_record_and_raw_response_are_served_from_the_keys_its_state_names() {
    let (svc, _fixture, _) = harvested().await;
    let (status, body) = get(&svc, "/api/sources/ocean/record", &[("id", "ds_0001")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["record"]["id"], "ds_0001");
    assert_eq!(body["key"], "records/ocean/ds_0001.json");
    let links = body["record"]["links"].as_array().unwrap();
    assert_eq!(body["followable"].as_array().unwrap().len(), links.len());

    let raw = answer(&svc, "GET", "/api/sources/ocean/raw", &[("id", "ds_0001")]).await;
    assert_eq!(raw.status, 200);
    assert_eq!(
        raw.content_type, "text/plain; charset=utf-8",
        "never rendered as a page"
    );
    assert_eq!(header(&raw, "x-content-type-options"), Some("nosniff"));
    assert!(std::str::from_utf8(&raw.body).unwrap().contains("ds_0001"));

    // A failed resource has no record; an id the store does not know reads nothing, however
    // it is spelled.
    assert_eq!(
        get(&svc, "/api/sources/ocean/record", &[("id", "ds_0002")])
            .await
            .0,
        404
    );
    for id in [
        "../records/ocean/ds_0001",
        "records/ocean/ds_0001.json",
        "/etc/passwd",
    ] {
        assert_eq!(
            get(&svc, "/api/sources/ocean/raw", &[("id", id)]).await.0,
            404,
            "{id}"
        );
    }

    let (_, one) = get(&svc, "/api/sources/ocean/resource", &[("id", "ds_0001")]).await;
    assert_eq!(one["has_record"], true);
    assert!(
        one["landing"].as_str().unwrap().starts_with("https://"),
        "{one}"
    );
}

#[tokio::test]
async fn resources_are_filtered_by_tombstone_and_deletion_sorted_searched_by_error_and_paged() {
    let (svc, fixture, _, queue) = harvested_with_queue().await;
    let again = |days: i64| {
        let svc = &svc;
        let queue = &queue;
        async move {
            harvest_once(
                svc,
                queue,
                "ocean",
                chrono::Utc::now() + chrono::Duration::days(days),
                4,
                &|_| {},
            )
            .await
            .unwrap()
            .session
        }
    };
    fixture.remove_dataset("ds_0009");
    fixture.remove_dataset("ds_0010");
    again(1).await;
    let (_, tombstoned) = get(
        &svc,
        "/api/sources/ocean/resources",
        &[("status", "tombstoned")],
    )
    .await;
    let ids: Vec<&str> = tombstoned["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ds_0009", "ds_0010"]);
    assert_eq!(tombstoned["resources"][0]["missing_listings"], 1);
    assert_eq!(tombstoned["stale_after_listings"], 2);
    again(2).await;
    let (_, deleted) = get(
        &svc,
        "/api/sources/ocean/resources",
        &[("status", "deleted")],
    )
    .await;
    assert_eq!(deleted["total"], 2, "{deleted}");
    assert!(deleted["resources"][0]["deleted_at"].is_string());
    assert_eq!(deleted["counts"]["tombstoned"], 0);
    assert_eq!(deleted["counts"]["all"], 10);
    let (_, live_harvested) = get(
        &svc,
        "/api/sources/ocean/resources",
        &[("status", "unchanged")],
    )
    .await;
    assert_eq!(
        live_harvested["total"], 6,
        "deleted resources are not among the unchanged: {}",
        live_harvested["counts"]
    );

    // Failures first, then paged past the first page.
    let (_, first) = get(
        &svc,
        "/api/sources/ocean/resources",
        &[("sort", "failures"), ("limit", "3")],
    )
    .await;
    let page1: Vec<&str> = first["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(&page1[..2], ["ds_0002", "ds_0005"]);
    assert_eq!(first["next_offset"], 3);
    let (_, second) = get(
        &svc,
        "/api/sources/ocean/resources",
        &[("sort", "failures"), ("limit", "3"), ("offset", "3")],
    )
    .await;
    assert_eq!(second["resources"].as_array().unwrap().len(), 3);
    assert!(!page1.contains(&second["resources"][0]["id"].as_str().unwrap()));
    // The error text is searched too.
    let (_, by_error) = get(&svc, "/api/sources/ocean/resources", &[("q", "not_found")]).await;
    assert_eq!(by_error["resources"][0]["id"], "ds_0002");
    assert_eq!(by_error["total"], 1);

    let (_, reasons) = get(&svc, "/api/sources/ocean/reasons", &[]).await;
    assert_eq!(reasons["failing"], 2, "{reasons}");
    let codes: Vec<&str> = reasons["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["NOT_FOUND", "PARSE_ERROR"]);
    assert_eq!(reasons["reasons"][0]["example"]["resource_id"], "ds_0002");
}

#[tokio::test]
async fn recent_sessions_across_sources_are_newest_first_and_page_on_with_before() {
    let (svc, fixture, first, queue) = harvested_with_queue().await;
    let second = SourceSpec {
        id: "shelf".into(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: "rate(6 hours)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    svc.store.put_source(&second).await.unwrap();
    let mut ids = vec![first];
    for (source, days) in [("shelf", 1), ("ocean", 2), ("shelf", 3)] {
        // Started later each time: the clock is the wall clock, so wait a moment between.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let run = harvest_once(
            &svc,
            &queue,
            source,
            chrono::Utc::now() + chrono::Duration::days(days),
            4,
            &|_| {},
        )
        .await
        .unwrap();
        ids.push(run.session.id);
    }
    ids.reverse();
    let (_, page) = get(&svc, "/api/sessions", &[("limit", "3")]).await;
    let listed: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ids[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let brief = &page["sessions"][0];
    assert_eq!(brief["source_id"], "shelf");
    assert_eq!(brief["mode"], "full");
    assert_eq!(brief["trigger"], "manual");
    assert!(brief["duration_seconds"].as_f64().unwrap() >= 0.0);
    let before = page["next_before"].as_str().unwrap();
    assert_eq!(before, ids[2]);
    let (_, rest) = get(&svc, "/api/sessions", &[("limit", "3"), ("before", before)]).await;
    let listed: Vec<&str> = rest["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[3].as_str()]);
    assert!(rest["next_before"].is_null());

    let (_, overview) = get(&svc, "/api/sources", &[]).await;
    let ocean = overview["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "ocean")
        .unwrap();
    assert_eq!(ocean["recent"].as_array().unwrap().len(), 2);
    assert!(
        ocean["last_success"].is_null(),
        "partially failed both times"
    );
    let shelf = overview["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "shelf")
        .unwrap();
    assert_eq!(shelf["sessions_looked_at"], 2);
}

#[tokio::test]
async fn a_sessions_outcomes_are_filtered_and_paged_and_its_logs_and_summary_are_linked() {
    let (svc, _fixture, session_id) = harvested().await;
    let path = format!("/api/sessions/{}/outcomes", session_id.replace('@', "%40"));
    let (_, failed) = get(&svc, &path, &[("outcome", "failed")]).await;
    assert_eq!(failed["total"], 2);
    assert_eq!(failed["counts"]["all"], 10);
    assert_eq!(failed["counts"]["harvested"], 8);
    let (_, page) = get(&svc, &path, &[("limit", "4"), ("offset", "8")]).await;
    let ids: Vec<&str> = page["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["resource_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ds_0009", "ds_0010"]);
    assert!(page["next_offset"].is_null());
    assert_eq!(get(&svc, &path, &[("outcome", "lost")]).await.0, 400);

    let (status, summary) = get(&svc, &format!("/api/sessions/{session_id}/summary"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(summary["counters"]["failed"], 2);
    let (status, logs) = get(&svc, &format!("/api/sessions/{session_id}/logs"), &[]).await;
    assert_eq!(status, 200, "{logs}");
    assert!(logs["parts"].as_u64().unwrap() >= 1);
    let mut lines = 0;
    let mut part = Some(0);
    while let Some(p) = part {
        let (_, logs) = get(
            &svc,
            &format!("/api/sessions/{session_id}/logs"),
            &[("part", &p.to_string())],
        )
        .await;
        lines += logs["lines"].as_array().unwrap().len();
        part = logs["next_part"].as_u64();
    }
    assert_eq!(lines, 10, "a line per resource attempt");

    let (_, detail) = get(&svc, &format!("/api/sessions/{session_id}"), &[]).await;
    assert_eq!(detail["brief"]["mode"], "full");
    assert_eq!(detail["stale"]["known"], 10, "{detail}");
}

#[tokio::test]
async fn a_scheduled_session_says_so_and_an_incremental_one_says_since_when() {
    let (svc, _fixture, _) = harvested().await;
    // A tick in the window of the source's 03:00 schedule starts it.
    let tick: chrono::DateTime<chrono::Utc> = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(3, 0, 0)
        .unwrap()
        .and_utc();
    let report = trawl::pipeline::schedule::on_tick(&svc, tick)
        .await
        .unwrap();
    let id = &report.started[0];
    let (_, detail) = get(&svc, &format!("/api/sessions/{id}"), &[]).await;
    assert_eq!(detail["brief"]["trigger"], "schedule", "{detail}");
    assert_eq!(detail["brief"]["status"], "running");
    assert_eq!(detail["brief"]["progress"]["total"], 10);
    assert_eq!(detail["brief"]["progress"]["done"], 0);
    let (_, outcomes) = get(
        &svc,
        &format!("/api/sessions/{id}/outcomes"),
        &[("outcome", "pending")],
    )
    .await;
    assert_eq!(outcomes["total"], 10);
    let (_, overview) = get(&svc, "/api/sources", &[]).await;
    assert_eq!(overview["sources"][0]["running"]["id"], id.as_str());
}

/// `method path?query` as the local server passes it when the request carries the decide
/// header (`may_decide`).
async fn decide(
    svc: &Services,
    path: &str,
    query: &[(&str, &str)],
    may_decide: bool,
) -> (u16, Value) {
    let response = handle(
        svc,
        &ApiRequest {
            method: "POST",
            path,
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            may_decide,
        },
    )
    .await;
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap(),
    )
}

#[tokio::test]
async fn held_deletions_are_listed_and_decided_only_by_a_request_that_may_decide() {
    let (svc, fixture, _, queue) = harvested_with_queue().await;
    let mut source = svc.store.get_source("ocean").await.unwrap().unwrap().source;
    source.options.stale_after_listings = 1;
    source.options.on_stale = trawl::model::StaleAction::Hold;
    svc.store.put_source(&source).await.unwrap();
    fixture.remove_dataset("ds_0007");
    fixture.remove_dataset("ds_0008");
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    harvest_once(&svc, &queue, "ocean", later, 4, &|_| {})
        .await
        .unwrap();

    let (status, body) = get(&svc, "/api/sources/ocean/deletions", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 2);
    assert_eq!(body["pending"][0]["resource_id"], "ds_0007");
    assert_eq!(get(&svc, "/api/sources/nosuch/deletions", &[]).await.0, 404);

    // Without the header's permission a POST is refused as before, and changes nothing.
    let path = "/api/sources/ocean/deletions/approve";
    assert_eq!(decide(&svc, path, &[("id", "ds_0007")], false).await.0, 405);
    assert_eq!(
        get(&svc, "/api/sources/ocean/deletions", &[]).await.1["count"],
        2
    );

    let (status, body) = decide(&svc, path, &[("id", "ds_0007")], true).await;
    assert_eq!(
        (status, &body["done"]),
        (200, &serde_json::json!(["ds_0007"])),
        "{body}"
    );
    let (status, body) = decide(&svc, "/api/sources/ocean/deletions/restore", &[], true).await;
    assert_eq!(
        (status, &body["done"]),
        (200, &serde_json::json!(["ds_0008"])),
        "{body}"
    );
    assert_eq!(
        get(&svc, "/api/sources/ocean/deletions", &[]).await.1["count"],
        0
    );
    let (_, resource) = get(&svc, "/api/sources/ocean/resources/ds_0007", &[]).await;
    assert!(resource["state"]["deleted_at"].is_string(), "{resource}");

    assert_eq!(
        decide(&svc, "/api/sources/nosuch/deletions/approve", &[], true)
            .await
            .0,
        404
    );
    assert_eq!(
        decide(&svc, "/api/sources/ocean/resources", &[], true)
            .await
            .0,
        404
    );
}

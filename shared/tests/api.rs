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
    (svc, fixture, session.id)
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
    assert_eq!(paths.len(), 8);
    for (path, item) in paths {
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
        let (status, body) = get(&svc, &concrete, &required).await;
        assert_eq!(status, 200, "{path}: {body}");
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

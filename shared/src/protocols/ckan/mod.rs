//! CKAN action API: lists with `package_search` (sorted by id, paged by `start`), fetches each
//! dataset with `package_show`.
//!
//! The source's base URL is the site root (`https://catalog.example.org`); a resource id is
//! the package's `id` (a UUID), which, unlike its `name`, never changes.
//!
//! Paging traps handled here: servers cap `rows` silently (often at 1000), so the next
//! `start` is advanced by what came back, not by what was asked for; the `count` each page
//! announces is checked against what was gathered when the listing ends (the pipeline does
//! that, and also catches a page the server repeats).

use super::{
    expect_success, geojson_bbox, json_body, Catalog, Entry, FetchContext, FetchError, Fetched,
    ListingPage, ProtocolOptions, Remote,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::{ConfigError, Link, Reason, Record, TimeRange};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

#[derive(Default)]
pub struct Ckan {
    options: CkanOptions,
}

/// A CKAN source's own options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CkanOptions {
    /// A Solr filter query scoping the harvest (`organization:noaa-gov`,
    /// `res_format:NetCDF`), sent as `package_search`'s `fq`; an incremental listing adds its
    /// `metadata_modified` window to it.
    #[serde(default)]
    pub fq: Option<String>,
}

pub const RAW_EXTENSION: &str = "json";
pub const LISTS_INCREMENTALLY: bool = true;
/// CKAN's API paths are under the site root.
pub const REFUSES_BASE_URL_QUERY: Option<&str> = Some(
    "the CKAN action API is reached under the site root: give the root without a query (https://catalog.example.org); scope the harvest with options.fq",
);

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    let options: CkanOptions = options.parse("ckan")?;
    if options.fq.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(ConfigError::new("options.fq", "must not be empty"));
    }
    Ok(Box::new(Ckan { options }))
}

/// Rows asked for per page: CKAN's usual cap; servers with a lower one return fewer.
pub const PAGE_ROWS: usize = 1000;

#[async_trait]
impl Catalog for Ckan {
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, Reason> {
        let source = remote.source;
        // The cursor is the next start and the id the previous page ended on. The next page
        // is asked for from one row earlier, and that row must still be the previous page's
        // last: if a package before it was removed meanwhile, every later one moved up a row
        // and one would be skipped without anything else showing it (the `count` can hide
        // it too, when another package was added after the cursor).
        let (start, last) = match cursor {
            None => (0, None),
            Some(c) => {
                let (start, last) = match c.split_once(':') {
                    Some((start, last)) => (start, Some(last)),
                    None => (c, None),
                };
                let start: u64 = start
                    .parse()
                    .map_err(|_| Reason::parse(format!("bad CKAN listing cursor {c:?}")))?;
                (start, last.filter(|_| start > 0))
            }
        };
        let ask = start - u64::from(last.is_some());
        let mut url = format!(
            "{}/api/3/action/package_search?q=*:*&rows={PAGE_ROWS}&start={ask}&sort=id%20asc",
            base(source)
        );
        // Solr range syntax; CKAN stores metadata_modified in UTC.
        let window = since.map(|since| {
            format!(
                "metadata_modified:[{} TO *]",
                since.format("%Y-%m-%dT%H:%M:%SZ")
            )
        });
        let fq = match (&self.options.fq, window) {
            (Some(scope), Some(window)) => Some(format!("+({scope}) +{window}")),
            (Some(scope), None) => Some(scope.clone()),
            (None, window) => window,
        };
        if let Some(fq) = fq {
            url.push_str("&fq=");
            url.extend(url::form_urlencoded::byte_serialize(fq.as_bytes()));
        }
        let response = ok_or_reason(remote.get(&url).await?)?;
        let search: SearchResult = result_of(&response.body, "package_search")?;
        let mut ids = Vec::with_capacity(search.results.len());
        for (i, package) in search.results.iter().enumerate() {
            match package.get("id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => ids.push(id.to_string()),
                _ => {
                    return Err(Reason::parse(format!(
                        "package_search result {} (start {ask}) has no id",
                        i + 1
                    )))
                }
            }
        }
        let next = ask + ids.len() as u64;
        let next_cursor = match ids.last() {
            Some(end) if next < search.count && next > start => Some(format!("{next}:{end}")),
            _ => None,
        };
        let mut problems = Vec::new();
        if let Some(last) = last {
            if ids.first().map(String::as_str) == Some(last) {
                ids.remove(0);
            } else {
                problems.push(format!(
                    "the catalog changed between pages: row {ask} is {} where the previous page \
                     ended with {last}, so packages may have moved past the listing",
                    ids.first().map_or("missing", String::as_str)
                ));
            }
        }
        Ok(ListingPage {
            entries: ids.into_iter().map(Entry::Listed).collect(),
            next_cursor,
            expected_total: Some(search.count),
            problems,
        })
    }

    async fn fetch(
        &self,
        ctx: &mut FetchContext<'_>,
        resource_id: &str,
    ) -> Result<Fetched, FetchError> {
        let source = ctx.remote.source;
        let url = format!(
            "{}/api/3/action/package_show?id={}",
            base(source),
            url::form_urlencoded::byte_serialize(resource_id.as_bytes()).collect::<String>()
        );
        let response = ok_or_reason(ctx.remote.get(&url).await?)?;
        Ok(Fetched {
            body: response.body,
            content_type: "application/json",
        })
    }

    fn normalize(
        &self,
        source: &SourceSnapshot,
        resource_id: &str,
        fetched: &Fetched,
    ) -> Result<Record, Reason> {
        let package: Value = result_of(&fetched.body, "package_show")?;
        Ok(to_record(source, resource_id, &package))
    }
}

fn base(source: &SourceSnapshot) -> &str {
    source.base_url.trim_end_matches('/')
}

#[derive(Deserialize)]
struct SearchResult {
    count: u64,
    #[serde(default)]
    results: Vec<Value>,
}

/// CKAN wraps every answer as `{"success": bool, "result": ..., "error": {...}}`.
fn result_of<T: serde::de::DeserializeOwned>(body: &[u8], action: &str) -> Result<T, Reason> {
    let text = std::str::from_utf8(json_body(body))
        .map_err(|e| Reason::parse(format!("{action} answer is not UTF-8: {e}")))?;
    let envelope: Value = serde_json::from_str(text)
        .map_err(|e| Reason::parse(format!("{action} answer is not JSON: {e}")))?;
    if envelope.get("success") != Some(&Value::Bool(true)) {
        return Err(Reason::parse(format!(
            "{action} did not succeed: {}",
            error_message(&envelope).unwrap_or_else(|| "no error message".into())
        )));
    }
    let result = envelope
        .get("result")
        .cloned()
        .ok_or_else(|| Reason::parse(format!("{action} answer has no result")))?;
    serde_json::from_value(result)
        .map_err(|e| Reason::parse(format!("{action} result is not what CKAN sends: {e}")))
}

fn error_message(envelope: &Value) -> Option<String> {
    let error = envelope.get("error")?;
    let message = error.get("message").and_then(Value::as_str)?;
    Some(match error.get("__type").and_then(Value::as_str) {
        Some(kind) => format!("{kind}: {message}"),
        None => message.to_string(),
    })
}

/// A 404 (`Not Found Error`) means the package is gone; other statuses keep their meaning,
/// with CKAN's error message as the detail.
fn ok_or_reason(response: Response) -> Result<Response, Reason> {
    expect_success(response, |body| {
        serde_json::from_slice::<Value>(json_body(body))
            .ok()
            .and_then(|v| error_message(&v))
    })
}

/// Field mapping (documented in the README's protocol table):
/// `title` → title, `notes` → summary, `tags[].name` → keywords, `organization.title` →
/// institution, `license_title` (else `license_id`) → license, the `spatial` extra (GeoJSON)
/// → bounding box, `temporal_start`/`temporal_end` extras → time range, `resources[].url` →
/// `data` links, `{site}/dataset/{name}` → the `landing` link.
fn to_record(source: &SourceSnapshot, resource_id: &str, package: &Value) -> Record {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let extras: Vec<(String, String)> = package
        .get("extras")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| Some((text(e.get("key"))?, text(e.get("value"))?)))
                .collect()
        })
        .unwrap_or_default();
    let extra = |k: &str| {
        extras
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let keywords = package
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(|t| text(t.get("name"))).collect())
        .unwrap_or_default();
    let time_range = match (extra("temporal_start"), extra("temporal_end")) {
        (None, None) => None,
        (start, end) => Some(TimeRange { start, end }),
    };
    let mut links = Vec::new();
    if let Some(name) = text(package.get("name")) {
        links.push(Link::new(
            "landing",
            format!("{}/dataset/{name}", base(source)),
        ));
    }
    for resource in package
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(url) = text(resource.get("url")) {
            links.push(Link::new("data", url));
        }
    }
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title: text(package.get("title")),
        summary: text(package.get("notes")),
        keywords,
        institution: text(package.get("organization").and_then(|o| o.get("title"))),
        license: text(package.get("license_title")).or_else(|| text(package.get("license_id"))),
        bounding_box: extra("spatial").and_then(|s| geojson_bbox(&s)),
        time_range,
        variables: Vec::new(),
        links,
        ..Record::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BoundingBox, Protocol, ReasonCode, SourceOptions};

    fn source() -> SourceSnapshot {
        SourceSnapshot {
            id: "ckan".into(),
            protocol: Protocol::Ckan,
            base_url: "https://catalog.example.org/".into(),
            internal: false,
            options: SourceOptions::default(),
        }
    }

    fn fetched(body: &str) -> Fetched {
        Fetched {
            body: body.to_string().into(),
            content_type: "application/json",
        }
    }

    #[test]
    fn a_package_maps_onto_the_record_model() {
        let body = r#"{"help": "h", "success": true, "result": {
            "id": "0001", "name": "sea-temp", "title": " Sea temperature ", "notes": "Daily SST.",
            "license_id": "cc-by", "license_title": "Creative Commons Attribution",
            "organization": {"name": "ocean", "title": "Ocean Institute"},
            "tags": [{"name": "ocean"}, {"name": "temperature"}],
            "extras": [
                {"key": "spatial", "value": "{\"type\": \"Polygon\", \"coordinates\": [[[-70.5, 40.0], [-60.0, 40.0], [-60.0, 48.25], [-70.5, 48.25], [-70.5, 40.0]]]}"},
                {"key": "temporal_start", "value": "2001-01-01"}
            ],
            "resources": [{"url": "https://data.example.org/sst.csv", "format": "CSV"}, {"url": ""}]
        }}"#;
        let r = Ckan::default()
            .normalize(&source(), "0001", &fetched(body))
            .unwrap();
        assert_eq!(r.title.as_deref(), Some("Sea temperature"));
        assert_eq!(r.summary.as_deref(), Some("Daily SST."));
        assert_eq!(r.keywords, ["ocean", "temperature"]);
        assert_eq!(r.institution.as_deref(), Some("Ocean Institute"));
        assert_eq!(r.license.as_deref(), Some("Creative Commons Attribution"));
        assert_eq!(
            r.bounding_box,
            Some(BoundingBox {
                west: -70.5,
                south: 40.0,
                east: -60.0,
                north: 48.25
            })
        );
        assert_eq!(r.time_range.unwrap().start.as_deref(), Some("2001-01-01"));
        assert_eq!(
            r.links,
            [
                Link::new(
                    "landing",
                    "https://catalog.example.org/dataset/sea-temp".into()
                ),
                Link::new("data", "https://data.example.org/sst.csv".into()),
            ]
        );
    }

    #[test]
    fn an_unsuccessful_or_foreign_answer_is_a_parse_error_with_ckans_message() {
        let e = Ckan::default()
            .normalize(
                &source(),
                "x",
                &fetched(r#"{"success": false, "error": {"message": "Access denied", "__type": "Authorization Error"}}"#),
            )
            .unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(
            e.detail.contains("Authorization Error: Access denied"),
            "{e}"
        );
        let e = Ckan::default()
            .normalize(&source(), "x", &fetched("<html>login</html>"))
            .unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        let e = Ckan::default()
            .normalize(
                &source(),
                "x",
                &fetched(r#"{"success": true, "result": {"id": "x", "ti"#),
            )
            .unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;
    use crate::model::Protocol;
    use crate::protocols::recorded::{self, list_one_page};

    fn source(options: serde_json::Value) -> SourceSnapshot {
        recorded::source(Protocol::Ckan, "https://catalog.example.org", options)
    }

    const PAGE: &str = r#"{"success":true,"result":{"count":1,"results":[{"id":"p1"}]}}"#;

    fn fq_of(url: &str) -> Option<String> {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "fq")
            .map(|(_, v)| v.into_owned())
    }

    #[tokio::test]
    async fn a_byte_order_mark_before_the_json_is_not_content() {
        let bom =
            "\u{feff}{\"success\":true,\"result\":{\"count\":1,\"results\":[{\"id\":\"p1\"}]}}";
        let (page, _) = list_one_page(&source(serde_json::json!({})), None, None, bom).await;
        assert_eq!(page.unwrap().live_ids().collect::<Vec<_>>(), vec!["p1"]);
    }

    #[tokio::test]
    async fn an_fq_scopes_every_page_and_joins_the_incremental_window() {
        let scoped = source(serde_json::json!({"fq": "organization:noaa-gov"}));
        let (page, urls) = list_one_page(&scoped, None, None, PAGE).await;
        assert_eq!(page.unwrap().live_ids().collect::<Vec<_>>(), vec!["p1"]);
        assert_eq!(fq_of(&urls[0]).as_deref(), Some("organization:noaa-gov"));

        let since = "2026-11-01T00:00:00Z".parse().unwrap();
        let (_, urls) = list_one_page(&scoped, Some("1000:p0"), Some(since), PAGE).await;
        assert_eq!(
            fq_of(&urls[0]).as_deref(),
            Some("+(organization:noaa-gov) +metadata_modified:[2026-11-01T00:00:00Z TO *]")
        );

        let (_, urls) =
            list_one_page(&source(serde_json::json!({})), None, Some(since), PAGE).await;
        assert_eq!(
            fq_of(&urls[0]).as_deref(),
            Some("metadata_modified:[2026-11-01T00:00:00Z TO *]")
        );
        let (_, urls) = list_one_page(&source(serde_json::json!({})), None, None, PAGE).await;
        assert_eq!(fq_of(&urls[0]), None);
    }
}

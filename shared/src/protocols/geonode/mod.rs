//! GeoNode API v2 (GeoNode 4.x): lists datasets with `/api/v2/resources/` (page numbers),
//! fetches each with `/api/v2/datasets/{pk}/`.
//!
//! The source's base URL is the site root; a resource id is the dataset's `pk` (GeoNode 4
//! serializes it as a string, older ones as a number: both are read).
//!
//! GeoNode orders resources newest-edited first by default, so an edit during a harvest
//! shifts every later page and a dataset is skipped: the listing asks for `sort[]=pk`. The
//! `links.next` URL is only read as "there is a next page"; the page number is ours, so a
//! server that writes another host into its links cannot redirect the harvest.

use super::{
    expect_success, geojson_value_bbox, json_body, plain_text, Catalog, Entry, FetchContext,
    FetchError, Fetched, ListingPage, NoOptions, ProtocolOptions, Remote,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::ConfigError;
use crate::model::{Link, Reason, Record, TimeRange};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub struct GeoNode;

pub const RAW_EXTENSION: &str = "json";
pub const LISTS_INCREMENTALLY: bool = true;
/// GeoNode's API paths are under the site root.
pub const REFUSES_BASE_URL_QUERY: Option<&str> = Some(
    "the GeoNode API is reached under the site root: give the root without a query (https://geonode.example.org)",
);

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    options.parse::<NoOptions>("geonode")?;
    Ok(Box::new(GeoNode))
}

/// GeoNode's largest page.
pub const PAGE_SIZE: u32 = 100;

#[async_trait]
impl Catalog for GeoNode {
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, Reason> {
        let source = remote.source;
        let page: u32 = match cursor {
            None => 1,
            Some(c) => c
                .parse()
                .map_err(|_| Reason::parse(format!("bad GeoNode listing cursor {c:?}")))?,
        };
        let mut url = format!(
            "{}/api/v2/resources/?page={page}&page_size={PAGE_SIZE}&filter%7Bresource_type.in%7D=dataset&sort%5B%5D=pk",
            base(source)
        );
        if let Some(since) = since {
            url.push_str("&filter%7Blast_updated.gte%7D=");
            url.push_str(&since.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        let response = ok_or_reason(remote.get(&url).await?)?;
        let body = json(&response.body, "resources")?;
        let resources = body
            .get("resources")
            .and_then(Value::as_array)
            .ok_or_else(|| Reason::parse("the resources answer has no \"resources\" array"))?;
        let mut listing = ListingPage {
            expected_total: body.get("total").and_then(Value::as_u64),
            ..ListingPage::default()
        };
        for (i, resource) in resources.iter().enumerate() {
            let pk = pk_of(resource).ok_or_else(|| {
                Reason::parse(format!("resource {} on page {page} has no pk", i + 1))
            })?;
            listing.entries.push(Entry::Listed(pk));
        }
        let has_next = body
            .get("links")
            .and_then(|l| l.get("next"))
            .is_some_and(|n| n.is_string());
        listing.next_cursor = (has_next && !resources.is_empty()).then(|| (page + 1).to_string());
        Ok(listing)
    }

    async fn fetch(
        &self,
        ctx: &mut FetchContext<'_>,
        resource_id: &str,
    ) -> Result<Fetched, FetchError> {
        let source = ctx.remote.source;
        if resource_id.is_empty() || !resource_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(
                Reason::parse(format!("GeoNode pks are numbers; {resource_id:?} is not")).into(),
            );
        }
        let url = format!("{}/api/v2/datasets/{resource_id}/", base(source));
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
        let body = json(&fetched.body, "dataset")?;
        let dataset = body
            .get("dataset")
            .filter(|d| d.is_object())
            .ok_or_else(|| Reason::parse("the dataset answer has no \"dataset\" object"))?;
        Ok(to_record(source, resource_id, dataset))
    }
}

fn base(source: &SourceSnapshot) -> &str {
    source.base_url.trim_end_matches('/')
}

fn pk_of(resource: &Value) -> Option<String> {
    match resource.get("pk")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn json(body: &[u8], what: &str) -> Result<Value, Reason> {
    serde_json::from_slice(json_body(body))
        .map_err(|e| Reason::parse(format!("the {what} answer is not JSON: {e}")))
}

/// Django REST framework errors are `{"detail": "..."}`.
fn ok_or_reason(response: Response) -> Result<Response, Reason> {
    expect_success(response, |body| {
        serde_json::from_slice::<Value>(json_body(body))
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
    })
}

/// Field mapping (documented in the README's protocol table): `title`, `abstract` (HTML →
/// text) → summary, `keywords[].name`, `attribution` (else `owner.username`) → institution,
/// `license.name` (else identifier) → license, `ll_bbox_polygon` → bounding box,
/// `temporal_extent_start/end` → time range, `detail_url` → `landing`, `links[]` → `data`
/// (download links), `wms` (OGC:WMS) or `metadata`.
fn to_record(source: &SourceSnapshot, resource_id: &str, d: &Value) -> Record {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let keywords = d
        .get("keywords")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(|k| text(k.get("name"))).collect())
        .unwrap_or_default();
    let license = d
        .get("license")
        .and_then(|l| text(l.get("name")).or_else(|| text(l.get("identifier"))));
    let time_range = match (
        text(d.get("temporal_extent_start")),
        text(d.get("temporal_extent_end")),
    ) {
        (None, None) => None,
        (start, end) => Some(TimeRange { start, end }),
    };
    let mut links = Vec::new();
    if let Some(detail) = text(d.get("detail_url")) {
        let href = if detail.starts_with('/') {
            format!("{}{detail}", base(source))
        } else {
            detail
        };
        links.push(Link::new("landing", href));
    }
    for link in d
        .get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(url) = text(link.get("url")) else {
            continue;
        };
        let rel = match link.get("link_type").and_then(Value::as_str) {
            Some("OGC:WMS") => "wms",
            Some("metadata") => "metadata",
            _ => "data",
        };
        links.push(Link::new(rel, url));
    }
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title: text(d.get("title")),
        summary: text(d.get("abstract")).and_then(|a| plain_text(&a)),
        keywords,
        institution: text(d.get("attribution"))
            .or_else(|| text(d.get("owner").and_then(|o| o.get("username")))),
        license,
        bounding_box: d.get("ll_bbox_polygon").and_then(geojson_value_bbox),
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
            id: "gn".into(),
            protocol: Protocol::GeoNode,
            base_url: "https://geonode.example.org/".into(),
            internal: false,
            options: SourceOptions::default(),
        }
    }

    #[test]
    fn a_dataset_maps_onto_the_record_model() {
        let body = r#"{"dataset": {"pk": "12", "title": "Roads", "abstract": "<p>All roads &amp; tracks</p>",
            "keywords": [{"name": "transport", "slug": "transport"}], "owner": {"username": "admin"},
            "license": {"identifier": "cc-by", "name": "Creative Commons BY"},
            "ll_bbox_polygon": {"type": "Polygon", "coordinates": [[[10, 40], [12, 40], [12, 42], [10, 42], [10, 40]]]},
            "temporal_extent_start": "2020-01-01T00:00:00Z", "temporal_extent_end": null,
            "detail_url": "/catalogue/#/dataset/12",
            "links": [{"link_type": "OGC:WMS", "url": "https://geonode.example.org/geoserver/ows"}, {"link_type": "data", "url": "https://geonode.example.org/download/12.zip"}]}}"#;
        let f = Fetched {
            body: body.to_string().into(),
            content_type: "application/json",
        };
        let r = GeoNode.normalize(&source(), "12", &f).unwrap();
        assert_eq!(r.summary.as_deref(), Some("All roads & tracks"));
        assert_eq!(r.keywords, ["transport"]);
        assert_eq!(r.institution.as_deref(), Some("admin"));
        assert_eq!(r.license.as_deref(), Some("Creative Commons BY"));
        assert_eq!(
            r.bounding_box,
            Some(BoundingBox {
                west: 10.0,
                south: 40.0,
                east: 12.0,
                north: 42.0
            })
        );
        assert_eq!(
            r.links[0].href,
            "https://geonode.example.org/catalogue/#/dataset/12"
        );
        assert_eq!(
            r.links.iter().map(|l| l.rel.as_str()).collect::<Vec<_>>(),
            ["landing", "wms", "data"]
        );
        let e = GeoNode
            .normalize(
                &source(),
                "12",
                &Fetched {
                    body: "{\"detail\": \"x\"}".into(),
                    content_type: "application/json",
                },
            )
            .unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
    }
}

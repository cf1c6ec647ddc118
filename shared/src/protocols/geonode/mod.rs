//! GeoNode API v2: lists datasets with `/api/v2/resources/` (page numbers), fetches each with
//! `/api/v2/datasets/{pk}/` (GeoNode 4) or `/api/v2/layers/{pk}/` (GeoNode 3).
//!
//! GeoNode 3 calls its datasets layers (`resource_type` `layer`, served under `layers/`), so
//! the listing asks for both types, and a fetch that finds no `datasets/` route at all (Django's
//! own 404 page, not the API's JSON "No Dataset matches") asks `layers/` instead: each fetch
//! from a GeoNode 3 costs two requests, the first a 404.
//!
//! The source's base URL is the site root; a resource id is the dataset's `pk` (GeoNode 4
//! serializes it as a string, older ones as a number: both are read).
//!
//! GeoNode orders resources newest-edited first by default, so an edit during a harvest
//! shifts every later page and a dataset is skipped: the listing asks for `sort[]=pk`. The
//! `links.next` URL is only read as "there is a next page"; the page number is ours, so a
//! server that writes another host into its links cannot redirect the harvest.

use super::{
    expect_success, geojson_extent, inverse_mercator, json_body, plain_text, Catalog, Entry,
    FetchContext, FetchError, Fetched, ListingPage, NoOptions, ProtocolOptions, Remote,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::ConfigError;
use crate::model::{BoundingBox, Dates, Identifier, Link, Reason, Record, TimeRange};
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
            "{}/api/v2/resources/?page={page}&page_size={PAGE_SIZE}&filter%7Bresource_type.in%7D=dataset&filter%7Bresource_type.in%7D=layer&sort%5B%5D=pk",
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
        let mut response = ctx.remote.get(&url).await?;
        if response.status == 404 && api_detail(&response.body).is_none() {
            let url = format!("{}/api/v2/layers/{resource_id}/", base(source));
            response = ctx.remote.get(&url).await?;
        }
        let response = ok_or_reason(response)?;
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
        let dataset = ["dataset", "layer"]
            .iter()
            .find_map(|k| body.get(k).filter(|d| d.is_object()))
            .ok_or_else(|| {
                Reason::parse("the dataset answer has no \"dataset\" (or \"layer\") object")
            })?;
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
fn api_detail(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(json_body(body))
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
}

fn ok_or_reason(response: Response) -> Result<Response, Reason> {
    expect_success(response, api_detail)
}

/// Field mapping (documented in the README's protocol table): `title`, `abstract` (HTML →
/// text) → summary, `keywords[].name`, `attribution` (else `owner.username`) → institution,
/// `license.name` (else identifier) → license, the box (see [`bounding_box`]),
/// `temporal_extent_start/end` → time range, `date` (by its `date_type`), `created` and
/// `last_updated` → dates, `doi` and `uuid` → identifiers, `language`, `detail_url` →
/// `landing`, `links[]` → `data` (download links), `wms` (OGC:WMS) or `metadata`, each with
/// its `link_type` (when it names a protocol, else its `mime`) and `name`.
fn to_record(source: &SourceSnapshot, resource_id: &str, d: &Value) -> Record {
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
        let link_type = text(link.get("link_type"));
        let rel = match link_type.as_deref() {
            Some("OGC:WMS") => "wms",
            Some("metadata") => "metadata",
            _ => "data",
        };
        links.push(Link {
            protocol: link_type
                .filter(|t| t.contains(':'))
                .or_else(|| text(link.get("mime"))),
            name: text(link.get("name")),
            ..Link::new(rel, url)
        });
    }
    // `date` is the metadata's own date, of the kind `date_type` says.
    let date = text(d.get("date"));
    let date_of = |kind: &str| {
        date.clone()
            .filter(|_| d.get("date_type").and_then(Value::as_str) == Some(kind))
    };
    let mut identifiers = Vec::new();
    if let Some(doi) = text(d.get("doi")) {
        identifiers.push(Identifier::new("doi", &doi));
    }
    if let Some(uuid) = text(d.get("uuid")) {
        identifiers.push(Identifier::new("uuid", &uuid));
    }
    let (bounding_box, note) = bounding_box(d);
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title: text(d.get("title")),
        summary: text(d.get("abstract")).and_then(|a| plain_text(&a)),
        keywords,
        institution: text(d.get("attribution"))
            .or_else(|| text(d.get("owner").and_then(|o| o.get("username")))),
        license,
        bounding_box,
        time_range,
        variables: Vec::new(),
        links,
        language: text(d.get("language")),
        dates: Dates {
            created: date_of("creation").or_else(|| text(d.get("created"))),
            modified: date_of("revision").or_else(|| text(d.get("last_updated"))),
            published: date_of("publication"),
        },
        identifiers,
        notes: note.into_iter().collect(),
        ..Record::default()
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The box in degrees: `ll_bbox_polygon` (GeoNode 4, and late 3.x), else `bbox_polygon` in the
/// layer's `srid` (GeoNode 3): Web Mercator converted, EPSG:4326 or CRS84 taken as is, any
/// other CRS left out with a note saying so (a projected box cannot be converted without that
/// CRS's definition).
fn bounding_box(d: &Value) -> (Option<BoundingBox>, Option<String>) {
    if let Some(b) = d.get("ll_bbox_polygon").and_then(geojson_extent) {
        return (Some(b), None);
    }
    let Some(native) = d.get("bbox_polygon").and_then(geojson_extent) else {
        return (None, None);
    };
    let srid = text(d.get("srid")).unwrap_or_default();
    let code = srid
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    match code.as_str() {
        "4326" | "84" | "CRS84" => (Some(native), None),
        "3857" | "900913" | "3785" | "102100" | "102113" => {
            let (west, south) = inverse_mercator(native.west, native.south);
            let (east, north) = inverse_mercator(native.east, native.north);
            (
                Some(BoundingBox {
                    west,
                    south,
                    east,
                    north,
                }),
                None,
            )
        }
        _ => {
            (
                None,
                Some(format!(
                "bounding box left out: bbox_polygon is in {}, which is not converted to degrees",
                if srid.is_empty() { "an unnamed CRS" } else { &srid }
            )),
            )
        }
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

    fn layer(fields: serde_json::Value) -> Record {
        let mut layer =
            serde_json::json!({"pk": "18", "resource_type": "layer", "title": "Boulder"});
        layer
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let f = Fetched {
            body: serde_json::json!({ "layer": layer }).to_string().into(),
            content_type: "application/json",
        };
        GeoNode.normalize(&source(), "18", &f).unwrap()
    }

    #[test]
    fn a_geonode_3_layer_gives_its_box_from_its_native_crs() {
        // Web Mercator metres, as GeoNode 3 stores a layer published in EPSG:3857.
        let r = layer(serde_json::json!({
            "srid": "EPSG:3857",
            "bbox_polygon": {"type": "Polygon", "coordinates": [[
                [-20037508.342789244, 0.0], [20037508.342789244, 0.0],
                [20037508.342789244, 20037508.342789244], [-20037508.342789244, 20037508.342789244],
                [-20037508.342789244, 0.0]]]},
        }));
        let b = r.bounding_box.unwrap();
        assert!(
            (b.west + 180.0).abs() < 1e-9 && (b.east - 180.0).abs() < 1e-9,
            "{b:?}"
        );
        assert!(
            b.south.abs() < 1e-9 && (b.north - 85.0511287798066).abs() < 1e-9,
            "{b:?}"
        );
        // Degrees, under either way of naming them.
        for srid in ["EPSG:4326", "4326", "CRS:84"] {
            let r = layer(serde_json::json!({
                "srid": srid,
                "bbox_polygon": {"type": "Polygon", "coordinates": [[[10, 40], [12, 42]]]},
            }));
            assert_eq!(
                r.bounding_box.map(|b| (b.west, b.north)),
                Some((10.0, 42.0)),
                "{srid}"
            );
        }
        // A state-plane box: not guessed at, and said so.
        let r = layer(serde_json::json!({
            "srid": "EPSG:2876",
            "bbox_polygon": {"type": "Polygon", "coordinates": [[[3055613.75, 1229960.625], [3090085.5, 1277375.875]]]},
        }));
        assert_eq!(r.bounding_box, None);
        assert!(
            r.notes.iter().any(|n| n.contains("EPSG:2876")),
            "{:?}",
            r.notes
        );
        // Where the server also gives the box in degrees, that one is taken.
        let r = layer(serde_json::json!({
            "srid": "EPSG:2876",
            "bbox_polygon": {"type": "Polygon", "coordinates": [[[3055613.75, 1229960.625], [3090085.5, 1277375.875]]]},
            "ll_bbox_polygon": {"type": "Polygon", "coordinates": [[[-105.3, 39.96], [-105.17, 40.09]]]},
        }));
        assert_eq!(r.bounding_box.map(|b| b.west), Some(-105.3));
        assert!(r.notes.is_empty());
    }

    #[test]
    fn dates_doi_and_link_details_are_kept() {
        let r = layer(serde_json::json!({
            "date": "2021-07-13T16:43:58.509987Z", "date_type": "publication",
            "created": "2021-07-13T16:43:58.533229Z", "last_updated": "2021-07-13T16:44:23.431238Z",
            "doi": "10.1234/gn.18", "language": "eng",
            "links": [{"link_type": "OGC:WMS", "name": "geonode:boulder", "mime": "image/png", "url": "https://g/ows"}],
        }));
        assert_eq!(
            r.dates.published.as_deref(),
            Some("2021-07-13T16:43:58.509987Z")
        );
        assert_eq!(
            r.dates.created.as_deref(),
            Some("2021-07-13T16:43:58.533229Z")
        );
        assert_eq!(
            r.dates.modified.as_deref(),
            Some("2021-07-13T16:44:23.431238Z")
        );
        assert!(r
            .identifiers
            .contains(&crate::model::Identifier::new("doi", "10.1234/gn.18")));
        assert_eq!(r.language.as_deref(), Some("eng"));
        let wms = r.links.iter().find(|l| l.rel == "wms").unwrap();
        assert_eq!(wms.protocol.as_deref(), Some("OGC:WMS"));
        assert_eq!(wms.name.as_deref(), Some("geonode:boulder"));
    }
}

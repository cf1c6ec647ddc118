//! DCAT-US 1.1 `data.json`: the whole catalog in one document, no paging and no per-record
//! endpoint.
//!
//! The listing downloads the catalog once and hands each dataset's own JSON back as an
//! [`Entry::Inline`] document; the pipeline keeps it beside the session and the fetch reads
//! it from there ([`FetchContext::inline`]). Fetching from the server would mean downloading
//! the whole catalog again for every dataset.
//!
//! The source's base URL is the `data.json` URL itself, or a site root (then
//! `{root}/data.json`). A dataset's id is its `identifier`. Datasets with no identifier, or
//! repeating one, cannot be told apart from the next listing's: they are skipped and noted,
//! which makes the listing incomplete (nothing is deleted on its account).

use super::{
    expect_success, json_body, Catalog, Entry, FetchContext, FetchError, Fetched, ListingPage,
    NoOptions, ProtocolOptions, Remote,
};
use crate::messages::SourceSnapshot;
use crate::model::ConfigError;
use crate::model::{BoundingBox, Link, Reason, ReasonCode, Record, TimeRange};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashSet;

pub struct Dcat;

pub const RAW_EXTENSION: &str = "json";
pub const LISTS_INCREMENTALLY: bool = false;
/// A query is kept on the catalog URL (`…/data.json?format=…`).
pub const REFUSES_BASE_URL_QUERY: Option<&str> = None;

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    options.parse::<NoOptions>("dcat")?;
    Ok(Box::new(Dcat))
}

#[async_trait]
impl Catalog for Dcat {
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        _cursor: Option<&str>,
        _since: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, Reason> {
        let source = remote.source;
        let response = remote.get(&catalog_url(source)).await?;
        if response.status == 404 {
            return Err(Reason {
                http_status: Some(404),
                ..Reason::not_found("no data.json at this address")
            });
        }
        let response = expect_success(response, |_| None)?;
        let catalog: Value = serde_json::from_slice(json_body(&response.body))
            .map_err(|e| Reason::parse(format!("data.json is not JSON: {e}")))?;
        let datasets = catalog
            .get("dataset")
            .and_then(Value::as_array)
            .ok_or_else(|| Reason::parse("data.json has no \"dataset\" array"))?;
        let mut listing = ListingPage {
            expected_total: Some(datasets.len() as u64),
            ..ListingPage::default()
        };
        let mut seen = HashSet::new();
        for (i, dataset) in datasets.iter().enumerate() {
            let id = dataset
                .get("identifier")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|id| !id.is_empty());
            let Some(id) = id else {
                listing.problems.push(format!(
                    "dataset #{} ({}) has no identifier; skipped",
                    i + 1,
                    title_of(dataset)
                ));
                continue;
            };
            if !seen.insert(id.to_string()) {
                listing.problems.push(format!(
                    "dataset #{} repeats identifier {id:?}; only the first is harvested",
                    i + 1
                ));
                continue;
            }
            listing.entries.push(Entry::Inline {
                id: id.to_string(),
                document: Bytes::from(serde_json::to_vec(dataset).expect("values serialize")),
            });
        }
        Ok(listing)
    }

    async fn fetch(
        &self,
        ctx: &mut FetchContext<'_>,
        resource_id: &str,
    ) -> Result<Fetched, FetchError> {
        match ctx.inline.document(resource_id).await? {
            Some(body) => Ok(Fetched {
                body,
                content_type: "application/json",
            }),
            None => Err(Reason::new(
                ReasonCode::Lost,
                "the document the listing delivered for this resource is gone",
            )
            .into()),
        }
    }

    fn normalize(
        &self,
        source: &SourceSnapshot,
        resource_id: &str,
        fetched: &Fetched,
    ) -> Result<Record, Reason> {
        let dataset: Value = serde_json::from_slice(&fetched.body)
            .map_err(|e| Reason::parse(format!("staged dataset is not JSON: {e}")))?;
        if !dataset.is_object() {
            return Err(Reason::parse("a data.json dataset must be an object"));
        }
        Ok(to_record(source, resource_id, &dataset))
    }
}

/// The base URL when it names a `.json` document (its query kept), else `data.json` under it.
fn catalog_url(source: &SourceSnapshot) -> String {
    let path = source.base_url.split(['?', '#']).next().unwrap_or_default();
    if path.ends_with(".json") {
        source.base_url.clone()
    } else {
        super::endpoint(&source.base_url, "data.json", &[])
    }
}

fn title_of(dataset: &Value) -> String {
    dataset
        .get("title")
        .and_then(Value::as_str)
        .map(|t| format!("{t:?}"))
        .unwrap_or_else(|| "untitled".into())
}

/// Field mapping (documented in the README's protocol table): `title`, `description` →
/// summary, `keyword` → keywords, `publisher.name` → institution, `license`, `spatial` as
/// `W,S,E,N` → bounding box, `temporal` as `start/end` → time range, `landingPage` →
/// `landing`, each distribution's `downloadURL` (else `accessURL`) → `data`.
fn to_record(source: &SourceSnapshot, resource_id: &str, d: &Value) -> Record {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let keywords = match d.get("keyword") {
        Some(Value::Array(k)) => k.iter().filter_map(|k| text(Some(k))).collect(),
        // Some catalogs put one comma-separated string.
        Some(Value::String(k)) => k
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    let bounding_box = text(d.get("spatial")).and_then(|s| {
        let n: Vec<f64> = s
            .split(',')
            .filter_map(|p| p.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .collect();
        (n.len() == 4 && s.split(',').count() == 4).then(|| BoundingBox {
            west: n[0],
            south: n[1],
            east: n[2],
            north: n[3],
        })
    });
    let time_range = text(d.get("temporal")).and_then(|t| {
        let (start, end) = t.split_once('/')?;
        Some(TimeRange {
            start: Some(start.trim().to_string()).filter(|s| !s.is_empty()),
            end: Some(end.trim().to_string()).filter(|s| !s.is_empty()),
        })
    });
    let mut links = Vec::new();
    if let Some(url) = text(d.get("landingPage")) {
        links.push(Link::new("landing", url));
    }
    for dist in d
        .get("distribution")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(url) = text(dist.get("downloadURL")).or_else(|| text(dist.get("accessURL"))) {
            links.push(Link::new("data", url));
        }
    }
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title: text(d.get("title")),
        summary: text(d.get("description")),
        keywords,
        institution: text(d.get("publisher").and_then(|p| p.get("name"))),
        license: text(d.get("license")),
        bounding_box,
        time_range,
        variables: Vec::new(),
        links,
        ..Record::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, SourceOptions};

    fn source(base_url: &str) -> SourceSnapshot {
        SourceSnapshot {
            id: "dcat".into(),
            protocol: Protocol::Dcat,
            base_url: base_url.into(),
            internal: false,
            options: SourceOptions::default(),
        }
    }

    #[test]
    fn the_catalog_url_is_the_base_url_or_data_json_under_it() {
        assert_eq!(
            catalog_url(&source("https://agency.gov/")),
            "https://agency.gov/data.json"
        );
        assert_eq!(
            catalog_url(&source("https://agency.gov/open/catalog.json")),
            "https://agency.gov/open/catalog.json"
        );
        // A query the site needs stays where it was.
        assert_eq!(
            catalog_url(&source(
                "https://agency.gov/open/catalog.json?format=dcat-us"
            )),
            "https://agency.gov/open/catalog.json?format=dcat-us"
        );
        assert_eq!(
            catalog_url(&source("https://agency.gov/open?portal=water")),
            "https://agency.gov/open/data.json?portal=water"
        );
    }

    #[test]
    fn a_dataset_maps_onto_the_record_model() {
        let body = r#"{"@type": "dcat:Dataset", "identifier": "EPA-1", "title": "Air quality",
            "description": "Hourly ozone.", "keyword": ["air", " ozone "],
            "publisher": {"name": "EPA"}, "license": "https://creativecommons.org/publicdomain/zero/1.0/",
            "spatial": "-125.0,24.5,-66.9,49.4", "temporal": "2001-01-01/2010-12-31",
            "landingPage": "https://agency.gov/air",
            "distribution": [{"downloadURL": "https://agency.gov/air.csv"}, {"accessURL": "https://agency.gov/api"}, {"title": "none"}]}"#;
        let f = Fetched {
            body: body.to_string().into(),
            content_type: "application/json",
        };
        let r = Dcat
            .normalize(&source("https://agency.gov"), "EPA-1", &f)
            .unwrap();
        assert_eq!(r.title.as_deref(), Some("Air quality"));
        assert_eq!(r.keywords, ["air", "ozone"]);
        assert_eq!(r.institution.as_deref(), Some("EPA"));
        assert_eq!(
            r.bounding_box,
            Some(BoundingBox {
                west: -125.0,
                south: 24.5,
                east: -66.9,
                north: 49.4
            })
        );
        let t = r.time_range.unwrap();
        assert_eq!(
            (t.start.as_deref(), t.end.as_deref()),
            (Some("2001-01-01"), Some("2010-12-31"))
        );
        assert_eq!(r.links.len(), 3);
        // A place name is not a bounding box.
        let named = r#"{"identifier": "x", "spatial": "Lake Erie"}"#;
        let f = Fetched {
            body: named.to_string().into(),
            content_type: "application/json",
        };
        let r = Dcat.normalize(&source("https://a"), "x", &f).unwrap();
        assert_eq!(r.bounding_box, None);
    }
}

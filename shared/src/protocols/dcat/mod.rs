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
    expect_success, iso_interval, json_body, spatial_value, Catalog, Entry, FetchContext,
    FetchError, Fetched, ListingPage, NoOptions, ProtocolOptions, Remote, Spatial,
};
use crate::messages::SourceSnapshot;
use crate::model::ConfigError;
use crate::model::{Dates, Identifier, Link, Reason, ReasonCode, Record};
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
/// summary, `keyword` → keywords, `publisher.name` → institution, `license`, `spatial` (a box,
/// GeoJSON or WKT → bounding box; a place name → place), `temporal` (any ISO 8601 interval) →
/// time range, `issued`/`modified` → dates, `identifier` → identifiers, the first `language`,
/// `landingPage` → `landing`, each distribution's `downloadURL` (else `accessURL`) → `data`
/// with its `mediaType` (else `format`), `title` and `description`.
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
    let (bounding_box, place) = match d.get("spatial").and_then(spatial_value) {
        Some(Spatial::Box(b)) => (Some(b), None),
        Some(Spatial::Place(p)) => (None, Some(p)),
        None => (None, None),
    };
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
            links.push(Link {
                protocol: text(dist.get("mediaType")).or_else(|| text(dist.get("format"))),
                name: text(dist.get("title")),
                description: text(dist.get("description")),
                ..Link::new("data", url)
            });
        }
    }
    let language = match d.get("language") {
        Some(Value::Array(l)) => l.iter().find_map(|l| text(Some(l))),
        other => text(other),
    };
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title: text(d.get("title")),
        summary: text(d.get("description")),
        keywords,
        institution: text(d.get("publisher").and_then(|p| p.get("name"))),
        license: text(d.get("license")),
        bounding_box,
        time_range: text(d.get("temporal")).and_then(|t| iso_interval(&t)),
        variables: Vec::new(),
        links,
        language,
        dates: Dates {
            created: None,
            // DCAT-US also allows an update frequency here (`R/P1D`), which is no date.
            modified: text(d.get("modified"))
                .filter(|m| m.starts_with(|c: char| c.is_ascii_digit())),
            published: text(d.get("issued")),
        },
        identifiers: text(d.get("identifier"))
            .map(|id| vec![Identifier::new("identifier", &id)])
            .unwrap_or_default(),
        place,
        ..Record::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BoundingBox, Protocol, SourceOptions};

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

    fn normalized(body: &str) -> Record {
        let f = Fetched {
            body: body.to_string().into(),
            content_type: "application/json",
        };
        Dcat.normalize(&source("https://agency.gov"), "x", &f)
            .unwrap()
    }

    fn range_of(temporal: &str) -> (Option<String>, Option<String>) {
        let r =
            normalized(&serde_json::json!({"identifier": "x", "temporal": temporal}).to_string());
        let t = r.time_range.unwrap_or_default();
        (t.start, t.end)
    }

    fn pair(start: Option<&str>, end: Option<&str>) -> (Option<String>, Option<String>) {
        (start.map(str::to_string), end.map(str::to_string))
    }

    #[test]
    fn temporal_is_read_in_every_iso_8601_interval_form_federal_catalogs_use() {
        // start/duration, as agencies write a year's or a day's coverage.
        assert_eq!(range_of("2010/P1Y"), pair(Some("2010"), Some("2011")));
        assert_eq!(
            range_of("2010-01-01/P1Y"),
            pair(Some("2010-01-01"), Some("2011-01-01"))
        );
        assert_eq!(
            range_of("2015-06-01T00:00:00Z/P1DT12H"),
            pair(Some("2015-06-01T00:00:00Z"), Some("2015-06-02T12:00:00Z"))
        );
        // duration/end.
        assert_eq!(
            range_of("P2W/2020-03-15"),
            pair(Some("2020-03-01"), Some("2020-03-15"))
        );
        // Repeating: unbounded has no end; R5 covers five repetitions.
        assert_eq!(range_of("R/2008-07-01/P1D"), pair(Some("2008-07-01"), None));
        assert_eq!(
            range_of("R5/2008-07-01/P1D"),
            pair(Some("2008-07-01"), Some("2008-07-06"))
        );
        // Dates of any precision, as given.
        assert_eq!(range_of("1993/2005"), pair(Some("1993"), Some("2005")));
        assert_eq!(
            range_of("2001-01/2001-06"),
            pair(Some("2001-01"), Some("2001-06"))
        );
        assert_eq!(range_of("1993"), pair(Some("1993"), Some("1993")));
        // A month's duration from a year keeps what the sum needs.
        assert_eq!(range_of("2010/P6M"), pair(Some("2010"), Some("2010-07")));
    }

    #[test]
    fn spatial_is_a_box_from_coordinates_geojson_or_wkt_and_a_place_name_is_kept() {
        let bbox = |spatial: serde_json::Value| {
            normalized(&serde_json::json!({"identifier": "x", "spatial": spatial}).to_string())
        };
        let want = Some(BoundingBox {
            west: -125.0,
            south: 24.5,
            east: -66.9,
            north: 49.4,
        });
        assert_eq!(bbox("-125.0,24.5,-66.9,49.4".into()).bounding_box, want);
        assert_eq!(
            bbox(r#"{"type": "Polygon", "coordinates": [[[-125.0, 24.5], [-66.9, 24.5], [-66.9, 49.4], [-125.0, 49.4], [-125.0, 24.5]]]}"#.into()).bounding_box,
            want
        );
        assert_eq!(
            bbox(serde_json::json!({"type": "Polygon", "coordinates": [[[-125.0, 24.5], [-66.9, 49.4]]]})).bounding_box,
            want
        );
        assert_eq!(
            bbox(
                "POLYGON ((-125.0 24.5, -66.9 24.5, -66.9 49.4, -125.0 49.4, -125.0 24.5))".into()
            )
            .bounding_box,
            want
        );
        assert_eq!(
            bbox("ENVELOPE(-125.0, -66.9, 49.4, 24.5)".into()).bounding_box,
            want
        );
        assert_eq!(
            bbox("BBOX(-125.0,24.5,-66.9,49.4)".into()).bounding_box,
            want
        );
        let named = bbox("Lake Erie".into());
        assert_eq!(named.bounding_box, None);
        assert_eq!(named.place.as_deref(), Some("Lake Erie"));
    }

    #[test]
    fn dates_identifier_and_distribution_details_are_kept() {
        let r = normalized(
            r#"{"identifier": "doi:10.5066/F7VX0DMQ", "issued": "2015-03-01", "modified": "2020-05-06T10:00:00Z",
                "distribution": [{"downloadURL": "https://agency.gov/a.csv", "mediaType": "text/csv", "format": "CSV",
                                  "title": "Annual table", "description": "One row a station."}]}"#,
        );
        assert_eq!(r.dates.published.as_deref(), Some("2015-03-01"));
        assert_eq!(r.dates.modified.as_deref(), Some("2020-05-06T10:00:00Z"));
        assert_eq!(
            r.identifiers,
            [crate::model::Identifier::new(
                "identifier",
                "doi:10.5066/F7VX0DMQ"
            )]
        );
        assert_eq!(r.identifiers[0].scheme, "doi");
        let data = &r.links[0];
        assert_eq!(data.protocol.as_deref(), Some("text/csv"));
        assert_eq!(data.name.as_deref(), Some("Annual table"));
        assert_eq!(data.description.as_deref(), Some("One row a station."));
    }
}

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
    expect_success, iso_interval, json_body, spatial_value, Catalog, Entry, FetchContext,
    FetchError, Fetched, ListingPage, ProtocolOptions, Remote, Spatial,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::{
    BoundingBox, ConfigError, Dates, Identifier, Link, Reason, Record, TimeRange, Translation,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

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
/// institution, `license_title` (else `license_id`) → license, time and space (see
/// [`time_range`], [`extent`]), ckanext-fluent translations (see [`languages`]),
/// `metadata_created`/`metadata_modified`/`issued` → dates, `doi`, `identifier` and CIOOS's
/// `unique-resource-identifier-full` → identifiers, `resources[]` → `data` links (`url`, with
/// `format` (else `mimetype`), `name` and `description`), `{site}/dataset/{name}` → the
/// `landing` link.
fn to_record(source: &SourceSnapshot, resource_id: &str, package: &Value) -> Record {
    let fields = Fields::of(package);
    let tags: Vec<String> = package
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(|t| text(t.get("name"))).collect())
        .unwrap_or_default();
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
            links.push(Link {
                protocol: text(resource.get("format")).or_else(|| text(resource.get("mimetype"))),
                name: text(resource.get("name")),
                description: text(resource.get("description")),
                ..Link::new("data", url)
            });
        }
    }
    let (bounding_box, place) = extent(&fields);
    let languages = languages(package);
    let main = |texts: &BTreeMap<String, String>| {
        languages.main.as_ref().and_then(|l| texts.get(l)).cloned()
    };
    let keywords = match languages
        .main
        .as_ref()
        .and_then(|l| languages.keywords.get(l))
    {
        Some(k) => k.clone(),
        None => tags,
    };
    let identifiers = ["doi", "unique-resource-identifier-full", "identifier"]
        .iter()
        .filter_map(|k| fields.text(k).map(|v| Identifier::new(k, &v)))
        .fold(Vec::new(), |mut all, id| {
            if !all.contains(&id) {
                all.push(id);
            }
            all
        });
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title: text(package.get("title")).or_else(|| main(&languages.titles)),
        summary: main(&languages.notes).or_else(|| text(package.get("notes"))),
        keywords,
        institution: text(package.get("organization").and_then(|o| o.get("title"))),
        license: text(package.get("license_title")).or_else(|| text(package.get("license_id"))),
        bounding_box,
        time_range: time_range(&fields),
        variables: Vec::new(),
        links,
        language: languages.main.clone(),
        translations: languages.translations(),
        dates: Dates {
            created: text(package.get("metadata_created")),
            modified: text(package.get("metadata_modified")),
            published: fields.text("issued"),
        },
        identifiers,
        place,
        ..Record::default()
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A package's own fields and its `extras`: portals running ckanext-scheming put at the top
/// level what others keep as extras (`spatial`, `temporal_start`), so each is looked up in
/// both, the top level first.
struct Fields<'a> {
    package: &'a Value,
    extras: Vec<(String, Value)>,
}

impl<'a> Fields<'a> {
    fn of(package: &'a Value) -> Fields<'a> {
        let extras = package
            .get("extras")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| Some((text(e.get("key"))?, e.get("value")?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        Fields { package, extras }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        let present = |v: &&Value| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty());
        self.package.get(key).filter(present).or_else(|| {
            self.extras
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .filter(present)
        })
    }

    fn text(&self, key: &str) -> Option<String> {
        text(self.get(key))
    }

    /// A field that may be an object or that object's JSON in a string (ckanext-composite
    /// stores either way).
    fn object(&self, key: &str) -> Option<Value> {
        match self.get(key)? {
            Value::String(s) => serde_json::from_str(s).ok().filter(Value::is_object),
            v if v.is_object() => Some(v.clone()),
            _ => None,
        }
    }
}

/// The time range, from the first of: ckanext-dcat's `temporal_start`/`temporal_end`,
/// ckanext-spatial's `temporal-extent-begin`/`-end` (ISO harvests) or CIOOS's composite
/// `temporal-extent` `{begin, end}`, and a DCAT-US `temporal` interval (catalog.data.gov's
/// harvested packages) read as any ISO 8601 interval.
fn time_range(fields: &Fields) -> Option<TimeRange> {
    let pair = |start: Option<String>, end: Option<String>| {
        (start.is_some() || end.is_some()).then_some(TimeRange { start, end })
    };
    let composite = fields.object("temporal-extent");
    let composite = |k: &str| composite.as_ref().and_then(|c| text(c.get(k)));
    pair(fields.text("temporal_start"), fields.text("temporal_end"))
        .or_else(|| {
            pair(
                fields.text("temporal-extent-begin"),
                fields.text("temporal-extent-end"),
            )
        })
        .or_else(|| pair(composite("begin"), composite("end")))
        .or_else(|| fields.text("temporal").and_then(|t| iso_interval(&t)))
}

/// The bounding box and the place name: `spatial` (ckanext-spatial's GeoJSON, in a string or
/// as an object; ckanext-dcat's WKT; a harvested DCAT-US box or place name), then
/// ckanext-dcat's `spatial_bbox`, then ckanext-spatial's `bbox-west-long` … `bbox-north-lat`;
/// the place is ckanext-dcat's `spatial_text`, else a `spatial` that is a name.
fn extent(fields: &Fields) -> (Option<BoundingBox>, Option<String>) {
    let spatial = fields.get("spatial").and_then(spatial_value);
    let as_box = |s: Option<Spatial>| match s {
        Some(Spatial::Box(b)) => Some(b),
        _ => None,
    };
    let corner = |k: &str| {
        fields.get(k).and_then(|v| match v {
            Value::Number(n) => n.as_f64(),
            v => text(Some(v))?.parse().ok(),
        })
    };
    let corners = || {
        let b = format!(
            "{},{},{},{}",
            corner("bbox-west-long")?,
            corner("bbox-south-lat")?,
            corner("bbox-east-long")?,
            corner("bbox-north-lat")?
        );
        as_box(super::spatial(&b))
    };
    let bbox = as_box(spatial.clone())
        .or_else(|| as_box(fields.get("spatial_bbox").and_then(spatial_value)))
        .or_else(corners);
    let place = fields.text("spatial_text").or(match spatial {
        Some(Spatial::Place(p)) => Some(p),
        _ => None,
    });
    (bbox, place)
}

/// ckanext-fluent's `title_translated`, `notes_translated` (`{lang: text}`) and `keywords`
/// (`{lang: [..]}`), with the portal's main language among them: the one whose text is the
/// package's `title`, else (no `title`) English if given, else the first.
struct Languages {
    main: Option<String>,
    titles: BTreeMap<String, String>,
    notes: BTreeMap<String, String>,
    keywords: BTreeMap<String, Vec<String>>,
}

fn languages(package: &Value) -> Languages {
    let texts = |key: &str| -> BTreeMap<String, String> {
        package
            .get(key)
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(lang, v)| Some((lang.clone(), text(Some(v))?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let titles = texts("title_translated");
    let notes = texts("notes_translated");
    let keywords: BTreeMap<String, Vec<String>> = package
        .get("keywords")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(lang, words)| {
                    let words = words.as_array().map(Vec::as_slice).unwrap_or_default();
                    (
                        lang.clone(),
                        words.iter().filter_map(|w| text(Some(w))).collect(),
                    )
                })
                .filter(|(_, words): &(String, Vec<String>)| !words.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut all: Vec<&String> = titles
        .keys()
        .chain(notes.keys())
        .chain(keywords.keys())
        .collect();
    all.sort();
    all.dedup();
    let main = match text(package.get("title")) {
        Some(title) => {
            let same: Vec<&String> = titles
                .iter()
                .filter(|(_, t)| **t == title)
                .map(|(l, _)| l)
                .collect();
            same.iter()
                .find(|l| l.as_str() == "en")
                .or(same.first())
                .map(|l| l.to_string())
        }
        None => all
            .iter()
            .find(|l| l.as_str() == "en")
            .or(all.first())
            .map(|l| l.to_string()),
    };
    Languages {
        main,
        titles,
        notes,
        keywords,
    }
}

impl Languages {
    /// Every language but the main one, with what it has.
    fn translations(&self) -> BTreeMap<String, Translation> {
        let mut out: BTreeMap<String, Translation> = BTreeMap::new();
        for (lang, title) in &self.titles {
            out.entry(lang.clone()).or_default().title = Some(title.clone());
        }
        for (lang, notes) in &self.notes {
            out.entry(lang.clone()).or_default().summary = Some(notes.clone());
        }
        for (lang, words) in &self.keywords {
            out.entry(lang.clone()).or_default().keywords = words.clone();
        }
        if let Some(main) = &self.main {
            out.remove(main);
        }
        out
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
                Link {
                    protocol: Some("CSV".into()),
                    ..Link::new("data", "https://data.example.org/sst.csv".into())
                },
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
mod extent_tests {
    use super::*;
    use crate::model::{BoundingBox, Protocol};
    use crate::protocols::recorded;

    fn record(package: serde_json::Value) -> Record {
        let body = serde_json::json!({"success": true, "result": package}).to_string();
        let source = recorded::source(
            Protocol::Ckan,
            "https://catalog.example.org",
            serde_json::json!({}),
        );
        Ckan::default()
            .normalize(
                &source,
                "p",
                &Fetched {
                    body: body.into(),
                    content_type: "application/json",
                },
            )
            .unwrap()
    }

    fn extras(pairs: &[(&str, &str)]) -> serde_json::Value {
        serde_json::json!({
            "id": "p",
            "extras": pairs.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect::<Vec<_>>(),
        })
    }

    fn range(r: &Record) -> (Option<&str>, Option<&str>) {
        let t = r.time_range.as_ref().expect("a time range");
        (t.start.as_deref(), t.end.as_deref())
    }

    const BOX: BoundingBox = BoundingBox {
        west: -70.5,
        south: 40.0,
        east: -60.0,
        north: 48.25,
    };

    #[test]
    fn a_harvested_data_gov_package_gives_its_temporal_interval_and_spatial_extra() {
        // catalog.data.gov keeps the harvested DCAT-US `temporal` and `spatial` as extras.
        let r = record(extras(&[
            ("temporal", "1993/2005"),
            ("spatial", "-70.5,40.0,-60.0,48.25"),
        ]));
        assert_eq!(range(&r), (Some("1993"), Some("2005")));
        assert_eq!(r.bounding_box, Some(BOX));
        let r = record(extras(&[
            ("temporal", "2010-01-01/P1Y"),
            ("spatial", "Gulf of Maine"),
        ]));
        assert_eq!(range(&r), (Some("2010-01-01"), Some("2011-01-01")));
        assert_eq!(
            (r.bounding_box, r.place.as_deref()),
            (None, Some("Gulf of Maine"))
        );
    }

    #[test]
    fn ckanext_dcat_spatial_bbox_and_wkt_give_a_box_and_spatial_text_a_place() {
        let r = record(extras(&[
            (
                "spatial_bbox",
                "POLYGON ((-70.5 40.0, -60.0 40.0, -60.0 48.25, -70.5 48.25, -70.5 40.0))",
            ),
            ("spatial_text", "Scotian Shelf"),
            ("temporal_start", "2001-01-01"),
            ("temporal_end", "2003-12-31"),
        ]));
        assert_eq!(r.bounding_box, Some(BOX));
        assert_eq!(r.place.as_deref(), Some("Scotian Shelf"));
        assert_eq!(range(&r), (Some("2001-01-01"), Some("2003-12-31")));
        let r = record(extras(&[(
            "spatial",
            "POLYGON ((-70.5 40.0, -60.0 48.25, -70.5 40.0))",
        )]));
        assert_eq!(r.bounding_box, Some(BOX));
    }

    #[test]
    fn scheming_fields_at_the_top_level_are_read_like_extras() {
        let r = record(serde_json::json!({
            "id": "p",
            "spatial": "{\"type\": \"Polygon\", \"coordinates\": [[[-70.5, 40.0], [-60.0, 48.25]]]}",
            "temporal_start": "2001-01-01",
            "temporal_end": "2003-12-31",
        }));
        assert_eq!(r.bounding_box, Some(BOX));
        assert_eq!(range(&r), (Some("2001-01-01"), Some("2003-12-31")));
        // CIOOS: GeoJSON as an object, the extent as a composite field.
        let r = record(serde_json::json!({
            "id": "p",
            "spatial": {"type": "Polygon", "coordinates": [[[-70.5, 40.0], [-60.0, 48.25]]]},
            "temporal-extent": {"begin": "2019-09-25", "end": "2026-03-04"},
        }));
        assert_eq!(r.bounding_box, Some(BOX));
        assert_eq!(range(&r), (Some("2019-09-25"), Some("2026-03-04")));
        let r = record(serde_json::json!({"id": "p", "temporal": "R/2008-07-01/P1D"}));
        assert_eq!(range(&r), (Some("2008-07-01"), None));
    }

    /// A package of CIOOS's bilingual catalogue (ckanext-fluent fields).
    fn bilingual(title: Option<&str>) -> serde_json::Value {
        let mut p = serde_json::json!({
            "id": "p",
            "title_translated": {"en": "Sea surface temperature", "fr": "Température de surface de la mer"},
            "notes_translated": {"en": "Daily means.", "fr": "Moyennes journalières."},
            "keywords": {"en": ["ocean", "temperature"], "fr": ["océan", "température"]},
            "unique-resource-identifier-full": "https://doi.org/10.25976/4y34-rn27",
        });
        if let Some(t) = title {
            p["title"] = t.into();
        }
        p
    }

    #[test]
    fn fluent_titles_notes_and_keywords_go_to_the_main_language_and_translations() {
        let r = record(bilingual(None));
        assert_eq!(r.language.as_deref(), Some("en"));
        assert_eq!(r.title.as_deref(), Some("Sea surface temperature"));
        assert_eq!(r.summary.as_deref(), Some("Daily means."));
        assert_eq!(r.keywords, ["ocean", "temperature"]);
        let fr = &r.translations["fr"];
        assert_eq!(
            fr.title.as_deref(),
            Some("Température de surface de la mer")
        );
        assert_eq!(fr.summary.as_deref(), Some("Moyennes journalières."));
        assert_eq!(fr.keywords, ["océan", "température"]);
        assert_eq!(r.translations.len(), 1);
        assert_eq!(r.identifiers[0].scheme, "doi");
        assert_eq!(r.identifiers[0].value, "10.25976/4y34-rn27");

        // A portal whose default is French: `title` is the French one.
        let r = record(bilingual(Some("Température de surface de la mer")));
        assert_eq!(r.language.as_deref(), Some("fr"));
        assert_eq!(r.summary.as_deref(), Some("Moyennes journalières."));
        assert_eq!(
            r.translations["en"].title.as_deref(),
            Some("Sea surface temperature")
        );
    }

    #[test]
    fn package_dates_and_resource_details_are_kept() {
        let r = record(serde_json::json!({
            "id": "p", "name": "sst",
            "metadata_created": "2019-02-01T10:00:00.123456", "metadata_modified": "2024-05-06T07:08:09.000001",
            "resources": [{"url": "https://d.example.org/sst.nc", "format": "NetCDF", "name": "SST grid", "description": "Daily grid."}],
        }));
        assert_eq!(
            r.dates.created.as_deref(),
            Some("2019-02-01T10:00:00.123456")
        );
        assert_eq!(
            r.dates.modified.as_deref(),
            Some("2024-05-06T07:08:09.000001")
        );
        let data = &r.links[1];
        assert_eq!(
            (
                data.protocol.as_deref(),
                data.name.as_deref(),
                data.description.as_deref()
            ),
            (Some("NetCDF"), Some("SST grid"), Some("Daily grid."))
        );
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

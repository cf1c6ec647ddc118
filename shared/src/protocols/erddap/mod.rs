//! ERDDAP: lists datasets a page at a time with `info/index.json?page=N&itemsPerPage=1000`
//! and fetches each dataset's `info/{id}/index.json` attribute table.
//!
//! Why not `tabledap/allDatasets`, which peers use: it has no paging, so the whole catalog
//! arrives as one response the scheduler must hold, growing with the catalog.
//! Pages keep the scheduler's memory flat. What paging costs: ERDDAP sorts the list by title,
//! so a dataset added or removed mid-listing shifts the pages after it. An addition repeats an
//! id on the next page, which the pipeline flags, and the listing then deletes nothing; a
//! removal can hide one id for one listing, which at most tombstones it (deletion needs
//! `stale_after_listings` consecutive misses).

mod table;

use super::{
    expect_success, path_segment, Catalog, FetchContext, FetchError, Fetched, ListingPage,
    NoOptions, ProtocolOptions, Remote,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::ConfigError;
use crate::model::{BoundingBox, Link, Reason, ReasonCode, Record, TimeRange, Variable};
use async_trait::async_trait;
use std::collections::BTreeMap;
use table::Cell;

pub struct Erddap;

pub const RAW_EXTENSION: &str = "json";
pub const LISTS_INCREMENTALLY: bool = false;
/// ERDDAP's own URLs are queries.
pub const REFUSES_BASE_URL_QUERY: Option<&str> = Some(
    "ERDDAP URLs carry ERDDAP's own queries (constraints, page numbers) under the server's root: give the root without a query (https://host/erddap)",
);

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    options.parse::<NoOptions>("erddap")?;
    Ok(Box::new(Erddap))
}

/// The pseudo-dataset real ERDDAP servers list first, in `info/index` as in `allDatasets`.
const ALL_DATASETS: &str = "allDatasets";

/// Datasets asked for per listing page: ERDDAP's own default `itemsPerPage`.
pub const PAGE_ITEMS: usize = 1000;

#[async_trait]
impl Catalog for Erddap {
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        cursor: Option<&str>,
        _since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<ListingPage, Reason> {
        let source = remote.source;
        let page: u32 = match cursor {
            None => 1,
            Some(c) => c
                .parse()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| Reason::parse(format!("bad ERDDAP listing page {c:?}")))?,
        };
        let url = format!(
            "{}/info/index.json?page={page}&itemsPerPage={PAGE_ITEMS}",
            source.base_url
        );
        let response = match ok_or_reason(remote.get(&url).await?) {
            Ok(response) => response,
            // Past the last page ERDDAP answers "no matching results": the page before was
            // full and was the last. On page 1 it means the listing itself is missing.
            Err(reason) if page > 1 && reason.code == ReasonCode::NotFound => {
                return Ok(ListingPage::default())
            }
            Err(reason) => return Err(reason),
        };
        // Only the two columns the listing needs are kept, row by row: a server that ignores
        // `itemsPerPage` may send its whole catalog (a million rows fit under the body cap).
        let mut ids = Vec::new();
        let mut problems = Vec::new();
        let rows = table::scan_rows(
            &response.body,
            &["Dataset ID"],
            &["Accessible"],
            &mut |i, cells| {
                let id = cells[0].as_ref().and_then(Cell::as_text);
                // Servers with `listPrivateDatasets` list private datasets too, marked "log in".
                let public = cells[1]
                    .as_ref()
                    .and_then(Cell::as_text)
                    .is_none_or(|a| a == "public");
                match id {
                    Some(id) if id == ALL_DATASETS || id.is_empty() => {}
                    Some(id) if path_segment(&id).is_none() => problems.push(format!(
                        "dataset id {id:?} (row {}) cannot be requested: it would be a dot segment in the URL; skipped",
                        i + 1
                    )),
                    Some(id) if public => ids.push(id),
                    Some(_) => {}
                    None => {
                        return Err(format!("info/index page {page} row {} has no Dataset ID", i + 1))
                    }
                }
                Ok(())
            },
        )?;
        // The answer is not needed once its ids are out: a large one is freed before the
        // listing's own copies of the ids are made.
        drop(response);
        // A short page is the last one; a full one may be too, which the next request's
        // "no matching results" says.
        let next_cursor = (rows >= PAGE_ITEMS).then(|| (page + 1).to_string());
        Ok(ListingPage {
            next_cursor,
            problems,
            ..ListingPage::of_ids(ids)
        })
    }

    async fn fetch(
        &self,
        ctx: &mut FetchContext<'_>,
        resource_id: &str,
    ) -> Result<Fetched, FetchError> {
        let source = ctx.remote.source;
        // Dataset ids are letters, digits and `_`; escaping keeps anything else inside its segment.
        let segment = path_segment(resource_id).ok_or_else(|| {
            Reason::parse(format!("{resource_id:?} cannot be an ERDDAP dataset id"))
        })?;
        let url = format!("{}/info/{segment}/index.json", source.base_url);
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
        let info = Info::from_body(&fetched.body)?;
        Ok(info.into_record(source, resource_id))
    }
}

/// ERDDAP reports errors as `Error {\n code=404;\n message="...";\n}`. "No data" comes back
/// as a 404, or on older servers as a 500 whose message says so: both mean not found.
fn ok_or_reason(response: Response) -> Result<Response, Reason> {
    let status = response.status;
    expect_success(response, |body| {
        error_message(&String::from_utf8_lossy(body))
    })
    .map_err(|reason| {
        if reason
            .detail
            .contains("Your query produced no matching results")
        {
            Reason {
                http_status: Some(status),
                ..Reason::not_found(reason.detail)
            }
        } else {
            reason
        }
    })
}

fn error_message(body: &str) -> Option<String> {
    let start = body.find("message=\"")? + "message=\"".len();
    let end = body[start..].rfind('"')? + start;
    Some(body[start..end].to_string())
}

/// A dataset's `info` table, grouped: global attributes, and variables with their attributes.
#[derive(Debug, Default)]
struct Info {
    globals: BTreeMap<String, String>,
    variables: Vec<(String, BTreeMap<String, String>)>,
}

impl Info {
    /// Read row by row as the table is parsed (`table::scan_rows`), each cell moved into its
    /// group: one pass over the body, no table of every cell built and then copied out of
    /// (normalizing is on every harvested dataset's path; BENCHMARKS.md, section 1).
    fn from_body(body: &[u8]) -> Result<Info, Reason> {
        let mut info = Info::default();
        table::scan_rows(
            body,
            &["Row Type", "Variable Name", "Attribute Name", "Value"],
            &[],
            &mut |_, cells| {
                let mut text = |i: usize| {
                    cells[i]
                        .take()
                        .and_then(Cell::into_text)
                        .unwrap_or_default()
                };
                let (row_type, name) = (text(0), text(1));
                match row_type.as_str() {
                    "attribute" if name == "NC_GLOBAL" => {
                        info.globals.insert(text(2), text(3));
                    }
                    "attribute" => {
                        let attribute = (text(2), text(3));
                        match info.variables.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, attrs)) => {
                                attrs.insert(attribute.0, attribute.1);
                            }
                            // An attribute before its variable row: keep it anyway.
                            None => info.variables.push((name, BTreeMap::from([attribute]))),
                        }
                    }
                    "variable" | "dimension" if !info.variables.iter().any(|(n, _)| *n == name) => {
                        info.variables.push((name, BTreeMap::new()));
                    }
                    _ => {}
                }
                Ok(())
            },
        )
        .map_err(|reason| Reason::parse(format!("info table: {}", reason.detail)))?;
        if info.globals.is_empty() && info.variables.is_empty() {
            return Err(Reason::parse("info table has no attribute rows"));
        }
        Ok(info)
    }

    fn into_record(self, source: &SourceSnapshot, id: &str) -> Record {
        let g = |k: &str| {
            self.globals
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let num = |k: &str| {
            g(k).and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        let bounding_box = match (
            num("geospatial_lon_min").or_else(|| num("Westernmost_Easting")),
            num("geospatial_lat_min").or_else(|| num("Southernmost_Northing")),
            num("geospatial_lon_max").or_else(|| num("Easternmost_Easting")),
            num("geospatial_lat_max").or_else(|| num("Northernmost_Northing")),
        ) {
            (Some(west), Some(south), Some(east), Some(north)) => Some(BoundingBox {
                west,
                south,
                east,
                north,
            }),
            _ => None,
        };
        let time_range = match (g("time_coverage_start"), g("time_coverage_end")) {
            (None, None) => None,
            (start, end) => Some(TimeRange { start, end }),
        };
        let keywords = g("keywords")
            .map(|k| {
                k.split([',', '\n'])
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let variables = self
            .variables
            .iter()
            .map(|(name, attrs)| {
                let a = |k: &str| attrs.get(k).cloned().filter(|v| !v.is_empty());
                Variable {
                    name: name.clone(),
                    standard_name: a("standard_name"),
                    units: a("units"),
                    long_name: a("long_name"),
                }
            })
            .collect();
        let base = &source.base_url;
        let seg = path_segment(id).unwrap_or_default();
        let mut links = vec![Link::new("info", format!("{base}/info/{seg}/index.html"))];
        if let Some(url) = g("infoUrl") {
            links.push(Link::new("landing", url));
        }
        links.push(Link::new(
            "iso19115",
            format!("{base}/metadata/iso19115/xml/{seg}_iso19115.xml"),
        ));
        links.push(Link::new(
            "fgdc",
            format!("{base}/metadata/fgdc/xml/{seg}_fgdc.xml"),
        ));
        Record {
            id: id.to_string(),
            source_id: source.id.clone(),
            title: g("title"),
            summary: g("summary"),
            keywords,
            institution: g("institution"),
            license: g("license"),
            bounding_box,
            time_range,
            variables,
            links,
            ..Record::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ReasonCode, SourceOptions};

    fn source() -> SourceSnapshot {
        SourceSnapshot {
            id: "test".into(),
            protocol: Protocol::Erddap,
            base_url: "https://erddap.example.org/erddap".into(),
            internal: false,
            options: SourceOptions::default(),
        }
    }

    async fn list(body: &'static str) -> Result<ListingPage, Reason> {
        crate::protocols::recorded::list_one_page(&source(), None, None, body)
            .await
            .0
    }

    #[tokio::test]
    async fn a_listing_keeps_the_id_and_access_columns_wherever_they_are() {
        // Real info/index columns, abridged: the id is the last one, access before it.
        let page = list(
            "\u{feff}{\"table\": {\"columnNames\": [\"griddap\", \"Title\", \"Accessible\", \"Dataset ID\"],
             \"columnTypes\": [\"String\", \"String\", \"String\", \"String\"],
             \"rows\": [[\"\", \"* The List of All Active Datasets in this ERDDAP *\", \"public\", \"allDatasets\"],
                      [\"https://e/griddap/a\", \"A\", \"public\", \"a\"],
                      [\"\", \"Private\", \"log in\", \"p\"],
                      [\"\", \"Dots\", \"public\", \"..\"],
                      [\"\", \"B\", null, \"b\"],
                      [\"\", \"Short row\"]]}}",
        )
        .await;
        let e = page.unwrap_err();
        assert!(e.detail.contains("row 6 has no Dataset ID"), "{e:?}");

        let page = list(
            r#"{"table": {"columnNames": ["Title", "Dataset ID"], "rows": [["A", "a"], ["B", 7]]}}"#,
        )
        .await
        .unwrap();
        assert_eq!(page.live_ids().collect::<Vec<_>>(), ["a", "7"]);
        assert_eq!(page.next_cursor, None);
    }

    #[tokio::test]
    async fn a_listing_skips_private_and_unrequestable_ids_and_notes_the_second() {
        let page = list(
            r#"{"table": {"columnNames": ["Title", "Accessible", "Dataset ID"],
             "rows": [["all", "public", "allDatasets"], ["A", "public", "a"], ["P", "log in", "p"],
                      ["D", "public", ".."], ["B", null, "b"]]}}"#,
        )
        .await
        .unwrap();
        assert_eq!(page.live_ids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(page.problems.len(), 1);
        assert!(
            page.problems[0].contains("\"..\" (row 4)"),
            "{:?}",
            page.problems
        );
    }

    #[tokio::test]
    async fn a_listing_without_its_id_column_or_in_another_order_is_refused() {
        for (body, says) in [
            (
                r#"{"table": {"columnNames": ["Title"], "rows": []}}"#,
                "no \"Dataset ID\" column",
            ),
            (
                r#"{"table": {"rows": [["a"]], "columnNames": ["Dataset ID"]}}"#,
                "rows come before columnNames",
            ),
            (
                r#"{"table": {"columnNames": ["Dataset ID"]}}"#,
                "missing field `rows`",
            ),
            (r#"{"rows": []}"#, "missing field `table`"),
            (
                r#"{"table": {"columnNames": ["Dataset ID"], "rows": [["a"]]}} ]"#,
                "trailing",
            ),
        ] {
            let e = list(body).await.unwrap_err();
            assert_eq!(e.code, ReasonCode::ParseError, "{body}");
            assert!(e.detail.contains(says), "{body}: {e:?}");
        }
    }

    fn info_json(rows: &str) -> Fetched {
        let body = format!(
            r#"{{"table": {{"columnNames": ["Row Type", "Variable Name", "Attribute Name", "Data Type", "Value"],
            "columnTypes": ["String", "String", "String", "String", "String"], "rows": [{rows}]}}}}"#
        );
        Fetched {
            body: body.into(),
            content_type: "application/json",
        }
    }

    #[test]
    fn an_info_table_normalizes_into_a_record() {
        let fetched = info_json(
            r#"["attribute", "NC_GLOBAL", "title", "String", "Ocean temps"],
            ["attribute", "NC_GLOBAL", "summary", "String", "Hourly CTD"],
            ["attribute", "NC_GLOBAL", "keywords", "String", "ocean, temperature,\nsalinity"],
            ["attribute", "NC_GLOBAL", "institution", "String", "CIOOS"],
            ["attribute", "NC_GLOBAL", "license", "String", "CC-BY-4.0"],
            ["attribute", "NC_GLOBAL", "geospatial_lat_min", "double", "48.5"],
            ["attribute", "NC_GLOBAL", "geospatial_lat_max", "double", "50.25"],
            ["attribute", "NC_GLOBAL", "geospatial_lon_min", "double", "-130.0"],
            ["attribute", "NC_GLOBAL", "geospatial_lon_max", "double", "-123.5"],
            ["attribute", "NC_GLOBAL", "time_coverage_start", "String", "2020-01-01T00:00:00Z"],
            ["attribute", "NC_GLOBAL", "time_coverage_end", "String", "2021-01-01T00:00:00Z"],
            ["variable", "time", "", "double", ""],
            ["attribute", "time", "standard_name", "String", "time"],
            ["attribute", "time", "units", "String", "seconds since 1970-01-01T00:00:00Z"],
            ["variable", "sea_water_temperature", "", "float", ""],
            ["attribute", "sea_water_temperature", "standard_name", "String", "sea_water_temperature"],
            ["attribute", "sea_water_temperature", "units", "String", "degree_C"],
            ["attribute", "sea_water_temperature", "long_name", "String", "Temperature"]"#,
        );
        let r = Erddap.normalize(&source(), "ctd_1", &fetched).unwrap();
        assert_eq!(r.title.as_deref(), Some("Ocean temps"));
        assert_eq!(r.keywords, ["ocean", "temperature", "salinity"]);
        assert_eq!(
            r.bounding_box,
            Some(BoundingBox {
                west: -130.0,
                south: 48.5,
                east: -123.5,
                north: 50.25
            })
        );
        assert_eq!(
            r.time_range.unwrap().end.as_deref(),
            Some("2021-01-01T00:00:00Z")
        );
        assert_eq!(r.variables.len(), 2);
        assert_eq!(
            r.variables[1].standard_name.as_deref(),
            Some("sea_water_temperature")
        );
        assert_eq!(r.variables[1].units.as_deref(), Some("degree_C"));
        assert_eq!(
            r.links[0].href,
            "https://erddap.example.org/erddap/info/ctd_1/index.html"
        );
    }

    #[test]
    fn numeric_values_may_be_json_numbers_and_missing_globals_stay_empty() {
        let fetched = info_json(
            r#"["attribute", "NC_GLOBAL", "geospatial_lat_min", "double", 1.5],
            ["attribute", "NC_GLOBAL", "geospatial_lat_max", "double", 2],
            ["attribute", "NC_GLOBAL", "geospatial_lon_min", "double", "NaN"],
            ["attribute", "NC_GLOBAL", "geospatial_lon_max", "double", 4]"#,
        );
        let r = Erddap.normalize(&source(), "x", &fetched).unwrap();
        assert_eq!(r.bounding_box, None, "NaN is not a coordinate");
        assert_eq!(r.title, None);
    }

    #[test]
    fn malformed_bodies_are_parse_errors() {
        for body in [
            r#"{"table": {"columnNames": ["Row Type""#,
            "<html>",
            r#"{"table": {"rows": []}}"#,
            // A column it reads is missing; no attribute rows at all; rows before the names.
            r#"{"table": {"columnNames": ["Row Type", "Variable Name", "Attribute Name"], "rows": []}}"#,
            r#"{"table": {"columnNames": ["Row Type", "Variable Name", "Attribute Name", "Data Type", "Value"], "rows": [["x", "", "", "", ""]]}}"#,
            r#"{"table": {"rows": [], "columnNames": ["Row Type", "Variable Name", "Attribute Name", "Value"]}}"#,
        ] {
            let f = Fetched {
                body: body.to_string().into(),
                content_type: "application/json",
            };
            let e = Erddap.normalize(&source(), "x", &f).unwrap_err();
            assert_eq!(e.code, ReasonCode::ParseError, "{body}: {e}");
        }
        // Not UTF-8 at all (a Latin-1 page sent as JSON).
        let f = Fetched {
            body: bytes::Bytes::from_static(b"{\"table\": {\"columnNames\": [\"caf\xe9\"]}}"),
            content_type: "application/json",
        };
        let e = Erddap.normalize(&source(), "x", &f).unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError, "{e}");
    }

    #[test]
    fn erddap_error_bodies_map_to_reasons() {
        let not_found = Response {
            status: 500,
            content_type: None,
            body: "Error {\n    code=500;\n    message=\"Internal Server Error: Your query produced no matching results. (nRows = 0)\";\n}\n".into(),
            retry_after: None,
        };
        let e = ok_or_reason(not_found).unwrap_err();
        assert_eq!(e.code, ReasonCode::NotFound);
        assert!(!e.retryable());
        let boom = Response {
            status: 502,
            content_type: None,
            body: "bad gateway".into(),
            retry_after: None,
        };
        let e = ok_or_reason(boom).unwrap_err();
        assert_eq!((e.code, e.http_status), (ReasonCode::HttpError, Some(502)));
        assert!(e.retryable());
    }
}

//! ArcGIS portal (ArcGIS Online / Enterprise) items: lists with `sharing/rest/search` (paged
//! by `start`/`nextStart`), fetches each with `sharing/rest/content/items/{id}`.
//!
//! The source's base URL is the portal root (`https://www.arcgis.com`, or
//! `https://host/portal`); a `q` in it scopes the search (`…?q=orgid:abc123`), else public
//! items are listed: the adapter's own `q` is that scope, combined with its modified window.
//! Any other parameter of the base URL is sent with every request, the adapter's own winning.
//! A resource id is the item's 32-hex `id`.
//!
//! ArcGIS answers most errors with HTTP 200 and `{"error": {...}}`: every answer is checked
//! for one. Paging is sorted by id (stable while items are edited); a `nextStart` that does
//! not move forward ends the listing and is reported.

use super::{
    endpoint, expect_success, json_body, plain_text, Catalog, Entry, FetchContext, FetchError,
    Fetched, ListingPage, NoOptions, ProtocolOptions, Remote,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::ConfigError;
use crate::model::{BoundingBox, Dates, Link, Reason, Record};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub struct ArcGis;

pub const RAW_EXTENSION: &str = "json";
pub const LISTS_INCREMENTALLY: bool = true;
/// A query is the search scope (`?q=orgid:abc`), combined with the adapter's own `q`.
pub const REFUSES_BASE_URL_QUERY: Option<&str> = None;

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    options.parse::<NoOptions>("arcgis")?;
    Ok(Box::new(ArcGis))
}

/// The portal's largest page.
pub const PAGE_ITEMS: u32 = 100;

#[async_trait]
impl Catalog for ArcGis {
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, Reason> {
        let source = remote.source;
        let start: i64 = match cursor {
            None => 1,
            Some(c) => c
                .parse()
                .map_err(|_| Reason::parse(format!("bad ArcGIS listing cursor {c:?}")))?,
        };
        let portal = portal(source)?;
        let mut q = portal.scope.unwrap_or_else(|| "access:public".to_string());
        if let Some(since) = since {
            // Epoch milliseconds, zero-padded to 19 digits as the portal's index wants.
            q = format!(
                "({q}) AND modified:[{:019} TO 9999999999999999999]",
                since.timestamp_millis().max(0)
            );
        }
        let (num, start_at) = (PAGE_ITEMS.to_string(), start.to_string());
        let url = endpoint(
            &portal.base,
            "sharing/rest/search",
            &[
                ("f", "json"),
                ("q", &q),
                ("num", &num),
                ("start", &start_at),
                ("sortField", "id"),
                ("sortOrder", "asc"),
            ],
        );
        let response = ok_or_reason(remote.get(&url).await?)?;
        let body = checked_json(&response.body, "search")?;
        let results = body
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| Reason::parse("the search answer has no \"results\" array"))?;
        let mut listing = ListingPage {
            expected_total: body.get("total").and_then(Value::as_u64),
            ..ListingPage::default()
        };
        for (i, item) in results.iter().enumerate() {
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    Reason::parse(format!("search result {} (start {start}) has no id", i + 1))
                })?;
            listing.entries.push(Entry::Listed(id.to_string()));
        }
        let next = body.get("nextStart").and_then(Value::as_i64).unwrap_or(-1);
        listing.next_cursor = if next == -1 || results.is_empty() {
            None
        } else if next <= start {
            listing.problems.push(format!(
                "nextStart {next} does not move on from start {start}; the listing stops here"
            ));
            None
        } else {
            Some(next.to_string())
        };
        Ok(listing)
    }

    async fn fetch(
        &self,
        ctx: &mut FetchContext<'_>,
        resource_id: &str,
    ) -> Result<Fetched, FetchError> {
        let source = ctx.remote.source;
        if resource_id.is_empty() || !resource_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Reason::parse(format!(
                "ArcGIS item ids are alphanumeric; {resource_id:?} is not"
            ))
            .into());
        }
        let portal = portal(source)?;
        let url = endpoint(
            &portal.base,
            &format!("sharing/rest/content/items/{resource_id}"),
            &[("f", "json")],
        );
        let response = ok_or_reason(ctx.remote.get(&url).await?)?;
        checked_json(&response.body, "item")?;
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
        let item = checked_json(&fetched.body, "item")?;
        if !item.is_object() {
            return Err(Reason::parse("an ArcGIS item must be an object"));
        }
        let portal = portal(source)?;
        Ok(to_record(source, &portal.root, resource_id, &item))
    }
}

/// What a portal's base URL says.
#[derive(Debug, PartialEq, Eq)]
struct Portal {
    /// Without any query: what item pages are linked under.
    root: String,
    /// The search scope (`q`), if any.
    scope: Option<String>,
    /// The base URL without its scope, other parameters kept: what requests are built on.
    base: String,
}

fn portal(source: &SourceSnapshot) -> Result<Portal, Reason> {
    let url = url::Url::parse(&source.base_url)
        .map_err(|e| Reason::parse(format!("bad portal URL {:?}: {e}", source.base_url)))?;
    let scope = url
        .query_pairs()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
        .filter(|q| !q.trim().is_empty());
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "q")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut root = url.clone();
    root.set_query(None);
    root.set_fragment(None);
    let root = root.as_str().trim_end_matches('/').to_string();
    let params: Vec<(&str, &str)> = others
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let base = endpoint(&root, "", &params);
    Ok(Portal { root, scope, base })
}

/// Parses an answer and turns an `{"error": {...}}` body (sent with HTTP 200) into a reason:
/// `CONT_0001` (item does not exist or is inaccessible) is not found, the rest keep their code.
fn checked_json(body: &[u8], what: &str) -> Result<Value, Reason> {
    let value: Value = serde_json::from_slice(json_body(body))
        .map_err(|e| Reason::parse(format!("the {what} answer is not JSON: {e}")))?;
    if let Some(error) = value.get("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        if error.get("messageCode").and_then(Value::as_str) == Some("CONT_0001") {
            return Err(Reason::not_found(format!("ArcGIS: {message}")));
        }
        return Err(Reason::parse(format!(
            "ArcGIS error {code} in the {what} answer: {message}"
        )));
    }
    Ok(value)
}

fn ok_or_reason(response: Response) -> Result<Response, Reason> {
    expect_success(response, |_| None)
}

/// Field mapping (documented in the README's protocol table): `title`, `description` (HTML →
/// text, else `snippet`) → summary, `tags` → keywords, `accessInformation` → institution,
/// `licenseInfo` (HTML → text) → license, `extent` `[[xmin, ymin], [xmax, ymax]]` → bounding
/// box, `created`/`modified` (epoch milliseconds) → dates, `culture` → language,
/// `{portal}/home/item.html?id=` → `landing`, the service `url` → `data`. Text fields read
/// through [`item_text`]: ArcGIS fills what the owner never set with the string `null` or an
/// empty HTML fragment.
fn to_record(source: &SourceSnapshot, root: &str, resource_id: &str, item: &Value) -> Record {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).and_then(item_text);
    let html = |v: Option<&Value>| {
        text(v)
            .and_then(|h| plain_text(&h))
            .and_then(|t| item_text(&t))
    };
    let bounding_box = item.get("extent").and_then(Value::as_array).and_then(|e| {
        let corner = |i: usize| {
            let c = e.get(i)?.as_array()?;
            Some((c.first()?.as_f64()?, c.get(1)?.as_f64()?))
        };
        let ((xmin, ymin), (xmax, ymax)) = (corner(0)?, corner(1)?);
        [xmin, ymin, xmax, ymax]
            .iter()
            .all(|v| v.is_finite())
            .then_some(BoundingBox {
                west: xmin,
                south: ymin,
                east: xmax,
                north: ymax,
            })
    });
    let mut links = vec![Link::new(
        "landing",
        format!("{root}/home/item.html?id={resource_id}"),
    )];
    if let Some(url) = text(item.get("url")) {
        links.push(Link::new("data", url));
    }
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title: text(item.get("title")),
        summary: html(item.get("description")).or_else(|| text(item.get("snippet"))),
        keywords: item
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(|t| text(Some(t))).collect())
            .unwrap_or_default(),
        institution: html(item.get("accessInformation")),
        license: html(item.get("licenseInfo")),
        bounding_box,
        time_range: None,
        variables: Vec::new(),
        links,
        language: text(item.get("culture")),
        dates: Dates {
            created: epoch_millis(item.get("created")),
            modified: epoch_millis(item.get("modified")),
            published: None,
        },
        ..Record::default()
    }
}

/// A text field's content: trimmed, with nothing and the literal `null` (what the portal
/// writes for a field never set) as `None`.
fn item_text(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && !s.eq_ignore_ascii_case("null")).then(|| s.to_string())
}

/// Epoch milliseconds as ISO 8601 UTC (`2019-01-01T00:00:00Z`, milliseconds when there are).
fn epoch_millis(v: Option<&Value>) -> Option<String> {
    let millis = v?.as_i64().filter(|m| *m > 0)?;
    let at = DateTime::<Utc>::from_timestamp_millis(millis)?;
    Some(if millis % 1000 == 0 {
        at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ReasonCode, SourceOptions};

    fn source(base_url: &str) -> SourceSnapshot {
        SourceSnapshot {
            id: "agol".into(),
            protocol: Protocol::ArcGis,
            base_url: base_url.into(),
            internal: false,
            options: SourceOptions::default(),
        }
    }

    #[test]
    fn the_base_url_gives_the_portal_root_and_an_optional_scope() {
        assert_eq!(
            portal(&source("https://www.arcgis.com/")).unwrap(),
            Portal {
                root: "https://www.arcgis.com".into(),
                scope: None,
                base: "https://www.arcgis.com".into()
            }
        );
        assert_eq!(
            portal(&source("https://host/portal?q=orgid:abc&culture=fr")).unwrap(),
            Portal {
                root: "https://host/portal".into(),
                scope: Some("orgid:abc".into()),
                base: "https://host/portal?culture=fr".into()
            }
        );
    }

    #[test]
    fn errors_sent_with_200_are_reasons() {
        let e = checked_json(
            br#"{"error": {"code": 400, "messageCode": "CONT_0001", "message": "Item does not exist or is inaccessible.", "details": []}}"#,
            "item",
        )
        .unwrap_err();
        assert_eq!(e.code, ReasonCode::NotFound);
        let e = checked_json(
            br#"{"error": {"code": 498, "message": "Invalid token."}}"#,
            "search",
        )
        .unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(
            e.detail.contains("498") && e.detail.contains("Invalid token"),
            "{e}"
        );
    }

    #[test]
    fn an_item_maps_onto_the_record_model() {
        let body = r#"{"id": "0123456789abcdef0123456789abcdef", "title": "Parcels", "snippet": "Short",
            "description": "<div>Tax <b>parcels</b></div>", "tags": ["cadastre", "land"],
            "accessInformation": "County GIS", "licenseInfo": "<p>Public domain</p>",
            "extent": [[-122.5, 37.7], [-122.3, 37.8]], "url": "https://services.example.com/FeatureServer"}"#;
        let f = Fetched {
            body: body.to_string().into(),
            content_type: "application/json",
        };
        let r = ArcGis
            .normalize(
                &source("https://www.arcgis.com"),
                "0123456789abcdef0123456789abcdef",
                &f,
            )
            .unwrap();
        assert_eq!(r.summary.as_deref(), Some("Tax parcels"));
        assert_eq!(r.license.as_deref(), Some("Public domain"));
        assert_eq!(r.institution.as_deref(), Some("County GIS"));
        assert_eq!(r.bounding_box.unwrap().north, 37.8);
        assert_eq!(
            r.links[0].href,
            "https://www.arcgis.com/home/item.html?id=0123456789abcdef0123456789abcdef"
        );
        // An empty extent is no bounding box.
        let f = Fetched {
            body: r#"{"id": "x", "extent": []}"#.to_string().into(),
            content_type: "application/json",
        };
        assert_eq!(
            ArcGis
                .normalize(&source("https://a.b"), "x", &f)
                .unwrap()
                .bounding_box,
            None
        );
    }

    #[test]
    fn the_text_null_and_empty_html_are_absent_not_content() {
        // As ArcGIS Online serves items whose owners never filled these in.
        let body = r#"{"id": "abc", "title": "Parcels", "snippet": "null", "description": "<div><br></div>",
            "accessInformation": "null", "licenseInfo": "<p></p>", "tags": ["null", "land"],
            "culture": "null", "url": "null", "created": 1546300800000, "modified": 1700000000123}"#;
        let f = Fetched {
            body: body.to_string().into(),
            content_type: "application/json",
        };
        let r = ArcGis
            .normalize(&source("https://www.arcgis.com"), "abc", &f)
            .unwrap();
        assert_eq!(r.summary, None);
        assert_eq!(r.institution, None);
        assert_eq!(r.license, None);
        assert_eq!(r.language, None);
        assert_eq!(r.keywords, ["land"]);
        assert_eq!(r.links.len(), 1, "{:?}", r.links);
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("null\""), "{json}");
        // `<p>null</p>` is the same emptiness, wrapped.
        let f = Fetched {
            body: r#"{"id": "abc", "description": "<p>null</p>", "snippet": "Short", "licenseInfo": "<div>null</div>"}"#.to_string().into(),
            content_type: "application/json",
        };
        let r = ArcGis
            .normalize(&source("https://www.arcgis.com"), "abc", &f)
            .unwrap();
        assert_eq!((r.summary.as_deref(), r.license), (Some("Short"), None));
    }

    #[test]
    fn item_dates_are_iso_8601() {
        let f = Fetched {
            body: r#"{"id": "abc", "created": 1546300800000, "modified": 1700000000123, "culture": "en-us"}"#.to_string().into(),
            content_type: "application/json",
        };
        let r = ArcGis
            .normalize(&source("https://www.arcgis.com"), "abc", &f)
            .unwrap();
        assert_eq!(r.dates.created.as_deref(), Some("2019-01-01T00:00:00Z"));
        assert_eq!(
            r.dates.modified.as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(r.language.as_deref(), Some("en-us"));
    }
}

#[cfg(test)]
mod listing_tests {
    use crate::model::Protocol;
    use crate::protocols::recorded::{self, list_one_page};

    const EMPTY: &str = r#"{"total": 0, "start": 1, "num": 100, "nextStart": -1, "results": []}"#;

    #[tokio::test]
    async fn the_scope_is_combined_into_the_search_and_other_parameters_kept() {
        let source = recorded::source(
            Protocol::ArcGis,
            "https://host/portal?q=orgid:abc&culture=fr&num=5",
            serde_json::json!({}),
        );
        let since = "2026-11-01T00:00:00Z".parse().unwrap();
        let (page, urls) = list_one_page(&source, None, Some(since), EMPTY).await;
        assert_eq!(page.unwrap().entries, []);
        assert_eq!(
            urls,
            ["https://host/portal/sharing/rest/search?culture=fr&f=json&q=%28orgid%3Aabc%29+AND+modified%3A%5B0000001793491200000+TO+9999999999999999999%5D&num=100&start=1&sortField=id&sortOrder=asc"]
        );
    }
}

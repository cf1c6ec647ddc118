//! OAI-PMH 2.0: lists with `ListIdentifiers` (paged by resumption token), fetches each record
//! with `GetRecord` in `oai_dc`.
//!
//! The source's base URL is the repository's OAI endpoint (`https://repo.example.org/oai`); a
//! resource id is the OAI identifier (`oai:repo.example.org:1234`).
//!
//! Protocol rules that matter here: a resumption token is sent *alone* (no other argument);
//! an empty token ends the list; `completeListSize` is the announced total; errors come back
//! as HTTP 200 with an `<error code="...">` element; `noRecordsMatch` means an empty list, not
//! a failure; `badResumptionToken` (tokens expire) ends the listing as incomplete, so nothing
//! is deleted on its account; 503 with `Retry-After` is the protocol's flow control. Headers
//! with `status="deleted"` are part of the announced total but are not harvested.

use super::{
    expect_success, Catalog, Entry, FetchContext, FetchError, Fetched, ListingPage,
    ProtocolOptions, Remote,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::{ConfigError, Link, Reason, Record};
use crate::xml::{self, Node};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Default)]
pub struct OaiPmh {
    options: OaiOptions,
}

/// An OAI-PMH source's own options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OaiOptions {
    /// Harvest only this set (its `setSpec`, as `ListSets` names it).
    #[serde(default)]
    pub set: Option<String>,
}

pub const RAW_EXTENSION: &str = "xml";
pub const LISTS_INCREMENTALLY: bool = true;

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    let options: OaiOptions = options.parse("oai-pmh")?;
    if options.set.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(ConfigError::new("options.set", "must not be empty"));
    }
    Ok(Box::new(OaiPmh { options }))
}

const OAI: &str = "http://www.openarchives.org/OAI/2.0/";
const OAI_DC: &str = "http://www.openarchives.org/OAI/2.0/oai_dc/";
const DC: &str = "http://purl.org/dc/elements/1.1/";

#[async_trait]
impl Catalog for OaiPmh {
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, Reason> {
        let source = remote.source;
        let url = match cursor {
            // The token alone carries the window and set of the first request.
            None => {
                let mut url = format!(
                    "{}?verb=ListIdentifiers&metadataPrefix=oai_dc",
                    source.base_url
                );
                if let Some(set) = &self.options.set {
                    url.push_str(&format!("&set={}", encode(set)));
                }
                if let Some(from) = since {
                    // At the granularity the repository declares: a day-only one refuses
                    // a time (`badArgument`), and a day is always supported.
                    let format = match identify(remote).await?.granularity.as_str() {
                        "YYYY-MM-DD" => "%Y-%m-%d",
                        _ => "%Y-%m-%dT%H:%M:%SZ",
                    };
                    let from = from.format(format).to_string();
                    url.push_str(&format!("&from={}", encode(&from)));
                }
                url
            }
            Some(token) => format!(
                "{}?verb=ListIdentifiers&resumptionToken={}",
                source.base_url,
                encode(token)
            ),
        };
        let response = ok_or_reason(remote.get(&url).await?)?;
        let text = xml::decode(&response.body)?;
        let doc = xml::parse(&text)?;
        let root = envelope(&doc)?;
        match protocol_error(root) {
            Some((code, _)) if code == "noRecordsMatch" => {
                return Ok(ListingPage {
                    expected_total: Some(0),
                    ..ListingPage::default()
                })
            }
            Some((code, message)) if code == "badResumptionToken" => {
                return Ok(ListingPage {
                    problems: vec![format!(
                        "the server rejected the resumption token (badResumptionToken: {message}); the listing ends incomplete"
                    )],
                    ..ListingPage::default()
                })
            }
            Some((code, message)) => return Err(oai_error(&code, &message)),
            None => {}
        }
        let list = xml::child(root, OAI, "ListIdentifiers")
            .ok_or_else(|| Reason::parse("ListIdentifiers answer has no <ListIdentifiers>"))?;
        let mut listing = ListingPage::default();
        let mut deleted = Vec::new();
        for header in xml::children(list, OAI, "header") {
            let id = xml::child(header, OAI, "identifier")
                .and_then(xml::text)
                .ok_or_else(|| Reason::parse("a ListIdentifiers header has no identifier"))?;
            if header.attribute("status") == Some("deleted") {
                deleted.push(id);
            } else {
                listing.entries.push(Entry::Listed(id));
            }
        }
        if !deleted.is_empty() {
            // Deleted headers are only authoritative from a server that says it tracks
            // deletions; asked only when a page carries some.
            let declared = matches!(
                identify(remote).await?.deleted_record.as_str(),
                "transient" | "persistent"
            );
            listing.entries.extend(
                deleted
                    .into_iter()
                    .map(|id| Entry::Deleted { id, declared }),
            );
        }
        if let Some(token) = xml::child(list, OAI, "resumptionToken") {
            listing.next_cursor = xml::text(token);
            listing.expected_total = token
                .attribute("completeListSize")
                .and_then(|n| n.trim().parse().ok());
        }
        Ok(listing)
    }

    async fn fetch(
        &self,
        ctx: &mut FetchContext<'_>,
        resource_id: &str,
    ) -> Result<Fetched, FetchError> {
        let source = ctx.remote.source;
        let url = record_url(source, resource_id);
        let response = ok_or_reason(ctx.remote.get(&url).await?)?;
        // Errors and deleted records come back as 200: find them now, so they are counted
        // for what they are (not found), not as unreadable records.
        let text = xml::decode(&response.body)?;
        let doc = xml::parse(&text)?;
        let root = envelope(&doc)?;
        if let Some((code, message)) = protocol_error(root) {
            return Err(oai_error(&code, &message).into());
        }
        let deleted =
            xml::descendants(root, OAI, "header").any(|h| h.attribute("status") == Some("deleted"));
        if deleted {
            return Err(Reason::not_found("the record is marked deleted upstream").into());
        }
        Ok(Fetched {
            body: response.body,
            content_type: "application/xml",
        })
    }

    fn normalize(
        &self,
        source: &SourceSnapshot,
        resource_id: &str,
        fetched: &Fetched,
    ) -> Result<Record, Reason> {
        let text = xml::decode(&fetched.body)?;
        let doc = xml::parse(&text)?;
        let root = envelope(&doc)?;
        let dc = xml::descendants(root, OAI_DC, "dc")
            .next()
            .ok_or_else(|| Reason::parse("GetRecord answer has no oai_dc:dc metadata"))?;
        Ok(to_record(source, resource_id, dc))
    }
}

/// What `Identify` says that matters here.
struct Identity {
    /// `no`, `transient` or `persistent`.
    deleted_record: String,
    /// `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ssZ`.
    granularity: String,
}

async fn identify(remote: &mut Remote<'_>) -> Result<Identity, Reason> {
    let source = remote.source;
    let url = format!("{}?verb=Identify", source.base_url);
    let response = ok_or_reason(remote.get(&url).await?)?;
    let text = xml::decode(&response.body)?;
    let doc = xml::parse(&text)?;
    let root = envelope(&doc)?;
    if let Some((code, message)) = protocol_error(root) {
        return Err(oai_error(&code, &message));
    }
    let identify = xml::child(root, OAI, "Identify")
        .ok_or_else(|| Reason::parse("Identify answer has no <Identify>"))?;
    let field = |name: &str| xml::child(identify, OAI, name).and_then(xml::text);
    Ok(Identity {
        deleted_record: field("deletedRecord")
            .ok_or_else(|| Reason::parse("Identify answer has no deletedRecord"))?,
        // Required by the protocol; a repository leaving it out is read as day-only, which
        // every repository supports.
        granularity: field("granularity").unwrap_or_else(|| "YYYY-MM-DD".into()),
    })
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn record_url(source: &SourceSnapshot, id: &str) -> String {
    format!(
        "{}?verb=GetRecord&identifier={}&metadataPrefix=oai_dc",
        source.base_url,
        encode(id)
    )
}

fn envelope<'a, 'i>(doc: &'a xml::Document<'i>) -> Result<Node<'a, 'i>, Reason> {
    let root = doc.root_element();
    if xml::is(root, OAI, "OAI-PMH") {
        Ok(root)
    } else {
        Err(Reason::parse(format!(
            "not an OAI-PMH answer (root element <{}>)",
            root.tag_name().name()
        )))
    }
}

/// The `<error code="...">message</error>` an OAI-PMH answer carries instead of content.
fn protocol_error(root: Node<'_, '_>) -> Option<(String, String)> {
    let error = xml::child(root, OAI, "error")?;
    Some((
        error.attribute("code").unwrap_or("unknown").to_string(),
        xml::text(error).unwrap_or_default(),
    ))
}

fn oai_error(code: &str, message: &str) -> Reason {
    match code {
        "idDoesNotExist" => Reason::not_found(format!("OAI-PMH {code}: {message}")),
        _ => Reason::parse(format!("OAI-PMH error {code}: {message}")),
    }
}

/// A 2xx answer, or one whose body is an OAI error whatever its status: Invenio-based
/// repositories (Zenodo among them) send `idDoesNotExist` and `noRecordsMatch` with 422, and
/// those mean what they say (an unknown record, an empty incremental listing). Callers read
/// the `<error>` from the body. A 429 stays flow control.
fn ok_or_reason(response: Response) -> Result<Response, Reason> {
    let client_error = (400..500).contains(&response.status) && response.status != 429;
    if client_error && carries_oai_error(&response.body) {
        return Ok(response);
    }
    expect_success(response, |_| None)
}

fn carries_oai_error(body: &[u8]) -> bool {
    let Ok(text) = xml::decode(body) else {
        return false;
    };
    let Ok(doc) = xml::parse(&text) else {
        return false;
    };
    envelope(&doc).is_ok_and(|root| protocol_error(root).is_some())
}

/// Field mapping (documented in the README's protocol table): `dc:title` → title,
/// `dc:description` → summary, `dc:subject` → keywords, `dc:publisher` (else the first
/// `dc:creator`) → institution, `dc:rights` → license, `dc:identifier` URLs → `landing` links,
/// the GetRecord URL → the `info` link.
fn to_record(source: &SourceSnapshot, resource_id: &str, dc: Node<'_, '_>) -> Record {
    let all = |local: &str| -> Vec<String> {
        xml::children(dc, DC, local).filter_map(xml::text).collect()
    };
    let first = |local: &str| all(local).into_iter().next();
    let mut links = vec![Link::new("info", record_url(source, resource_id))];
    links.extend(
        all("identifier")
            .into_iter()
            .filter(|i| i.starts_with("http://") || i.starts_with("https://"))
            .map(|href| Link::new("landing", href)),
    );
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title: first("title"),
        summary: first("description"),
        keywords: all("subject"),
        institution: first("publisher").or_else(|| first("creator")),
        license: first("rights"),
        bounding_box: None,
        time_range: None,
        variables: Vec::new(),
        links,
        ..Record::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ReasonCode, SourceOptions};

    fn source() -> SourceSnapshot {
        SourceSnapshot {
            id: "oai".into(),
            protocol: Protocol::OaiPmh,
            base_url: "https://repo.example.org/oai".into(),
            internal: false,
            options: SourceOptions::default(),
        }
    }

    fn fetched(body: &str) -> Fetched {
        Fetched {
            body: body.to_string().into(),
            content_type: "application/xml",
        }
    }

    const RECORD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">
  <responseDate>2026-11-23T12:00:00Z</responseDate>
  <request verb="GetRecord">https://repo.example.org/oai</request>
  <GetRecord><record>
    <header><identifier>oai:repo:1</identifier><datestamp>2026-01-01T00:00:00Z</datestamp></header>
    <metadata>
      <oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/" xmlns:dc="http://purl.org/dc/elements/1.1/">
        <dc:title>Tides at Québec</dc:title>
        <dc:creator>Doe, Jane</dc:creator>
        <dc:subject>tides</dc:subject><dc:subject>sea level</dc:subject>
        <dc:description>Hourly tide gauge data.</dc:description>
        <dc:identifier>https://repo.example.org/record/1</dc:identifier>
        <dc:identifier>doi:10.1234/abc</dc:identifier>
        <dc:rights>CC-BY 4.0</dc:rights>
      </oai_dc:dc>
    </metadata>
  </record></GetRecord>
</OAI-PMH>"#;

    #[test]
    fn an_oai_dc_record_maps_onto_the_record_model() {
        let r = OaiPmh::default()
            .normalize(&source(), "oai:repo:1", &fetched(RECORD))
            .unwrap();
        assert_eq!(r.title.as_deref(), Some("Tides at Québec"));
        assert_eq!(r.summary.as_deref(), Some("Hourly tide gauge data."));
        assert_eq!(r.keywords, ["tides", "sea level"]);
        assert_eq!(r.institution.as_deref(), Some("Doe, Jane"));
        assert_eq!(r.license.as_deref(), Some("CC-BY 4.0"));
        assert_eq!(
            r.links,
            [
                Link::new("info", "https://repo.example.org/oai?verb=GetRecord&identifier=oai%3Arepo%3A1&metadataPrefix=oai_dc".into()),
                Link::new("landing", "https://repo.example.org/record/1".into()),
            ]
        );
    }

    #[test]
    fn hostile_or_foreign_xml_is_a_parse_error() {
        let xxe = RECORD.replace(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<?xml version=\"1.0\"?><!DOCTYPE OAI-PMH [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>",
        ).replace("Hourly tide gauge data.", "&x;");
        let e = OaiPmh::default()
            .normalize(&source(), "oai:repo:1", &fetched(&xxe))
            .unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(e.detail.contains("DTD"), "{e}");
        let e = OaiPmh::default()
            .normalize(
                &source(),
                "x",
                &fetched("<html><body>Maintenance</body></html>"),
            )
            .unwrap_err();
        assert!(e.detail.contains("not an OAI-PMH answer"), "{e}");
        let e = OaiPmh::default()
            .normalize(&source(), "x", &fetched(&RECORD[..RECORD.len() / 2]))
            .unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;
    use crate::model::Protocol;
    use crate::protocols::recorded::{self, list_one_page};
    use crate::protocols::Entry;

    fn source(options: serde_json::Value) -> SourceSnapshot {
        recorded::source(Protocol::OaiPmh, "https://repo.example.org/oai", options)
    }

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">
  <responseDate>2026-11-23T12:00:00Z</responseDate>
  <request verb="ListIdentifiers">https://repo.example.org/oai</request>
  <ListIdentifiers>
    <header><identifier>oai:repo:1</identifier><datestamp>2026-01-01</datestamp><setSpec>ocean</setSpec></header>
    <header status="deleted"><identifier>oai:repo:2</identifier><datestamp>2026-01-02</datestamp></header>
    <resumptionToken completeListSize="3">tok-1</resumptionToken>
  </ListIdentifiers>
  <Identify><deletedRecord>persistent</deletedRecord><granularity>YYYY-MM-DDThh:mm:ssZ</granularity></Identify>
</OAI-PMH>"#;

    #[tokio::test]
    async fn a_set_scopes_the_first_request_and_the_token_carries_it_after() {
        let since = "2026-11-01T00:00:00Z".parse().unwrap();
        let source = source(serde_json::json!({"set": "ocean:tides"}));
        let (page, urls) = list_one_page(&source, None, Some(since), PAGE).await;
        let page = page.unwrap();
        // The repository's granularity first, for `from`.
        assert_eq!(urls[0], "https://repo.example.org/oai?verb=Identify");
        assert_eq!(
            urls[1],
            "https://repo.example.org/oai?verb=ListIdentifiers&metadataPrefix=oai_dc&set=ocean%3Atides&from=2026-11-01T00%3A00%3A00Z"
        );
        assert_eq!(page.next_cursor.as_deref(), Some("tok-1"));
        assert_eq!(page.expected_total, Some(3));
        let (_, urls) = list_one_page(&source, Some("tok-1"), Some(since), PAGE).await;
        assert_eq!(
            urls[0],
            "https://repo.example.org/oai?verb=ListIdentifiers&resumptionToken=tok-1"
        );
    }

    #[tokio::test]
    async fn deleted_headers_are_typed_entries_acted_on_only_when_declared() {
        let (page, urls) = list_one_page(&source(serde_json::json!({})), None, None, PAGE).await;
        let page = page.unwrap();
        assert!(!urls[0].contains("set="), "{}", urls[0]);
        // The recorded server answers Identify with the same document: `persistent`.
        assert!(urls[1].ends_with("?verb=Identify"), "{urls:?}");
        assert_eq!(
            page.entries,
            vec![
                Entry::Listed("oai:repo:1".into()),
                Entry::Deleted {
                    id: "oai:repo:2".into(),
                    declared: true
                }
            ]
        );
        assert_eq!(page.live_ids().collect::<Vec<_>>(), vec!["oai:repo:1"]);
    }
}

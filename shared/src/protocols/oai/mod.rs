//! OAI-PMH 2.0: lists with `ListIdentifiers` (paged by resumption token), fetches each record
//! with `GetRecord` in the source's `metadata_prefix` (`oai_dc` by default; `oai_datacite`,
//! `datacite` and ISO 19139's `iso19139`/`gmd` are mapped too, the last through the CSW
//! adapter's ISO mapping).
//!
//! The source's base URL is the repository's OAI endpoint (`https://repo.example.org/oai`, or
//! pycsw's `…/csw?mode=oaipmh`: a query in it is kept, our arguments win); a resource id is the
//! OAI identifier (`oai:repo.example.org:1234`).
//!
//! A prefix other than `oai_dc` (which every repository must offer) is checked against
//! `ListMetadataFormats` when a listing starts: a repository asked for a format it lacks may
//! answer `noRecordsMatch`, which would read as an empty catalog. Not offered, the listing
//! fails with `CONFIG_ERROR`, naming the prefixes the repository does offer.
//!
//! Protocol rules that matter here: a resumption token is sent *alone* (no other argument);
//! an empty token ends the list; `completeListSize` is the announced total; errors come back
//! as HTTP 200 with an `<error code="...">` element; `noRecordsMatch` means an empty list, not
//! a failure; `badResumptionToken` (tokens expire) ends the listing as incomplete, so nothing
//! is deleted on its account; 503 with `Retry-After` is the protocol's flow control. Headers
//! with `status="deleted"` are part of the announced total but are not harvested.

mod datacite;
mod dublin_core;

use super::csw::iso;
use super::{
    endpoint, expect_success, Catalog, Entry, FetchContext, FetchError, Fetched, ListingPage,
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
    /// The metadata format listed and fetched (`oai_dc` when not given).
    #[serde(default)]
    pub metadata_prefix: Option<String>,
}

impl OaiOptions {
    fn prefix(&self) -> &str {
        self.metadata_prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
    }
}

/// The format every repository must offer.
const DEFAULT_PREFIX: &str = "oai_dc";

pub const RAW_EXTENSION: &str = "xml";
pub const LISTS_INCREMENTALLY: bool = true;
/// A query is kept: pycsw serves OAI-PMH at `…/csw?mode=oaipmh`.
pub const REFUSES_BASE_URL_QUERY: Option<&str> = None;

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    let options: OaiOptions = options.parse("oai-pmh")?;
    if options.set.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(ConfigError::new("options.set", "must not be empty"));
    }
    if let Some(prefix) = &options.metadata_prefix {
        // The protocol's metadataPrefix: unreserved URI characters only.
        let valid = !prefix.is_empty()
            && prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
                    )
            });
        if !valid {
            return Err(ConfigError::new(
                "options.metadata_prefix",
                format!(
                    "{prefix:?} is not a metadataPrefix (letters, digits and - _ . ! ~ * ' ( ))"
                ),
            ));
        }
    }
    Ok(Box::new(OaiPmh { options }))
}

const OAI: &str = "http://www.openarchives.org/OAI/2.0/";
const OAI_DC: &str = "http://www.openarchives.org/OAI/2.0/oai_dc/";

#[async_trait]
impl Catalog for OaiPmh {
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, Reason> {
        let source = remote.source;
        let prefix = self.options.prefix();
        let url = match cursor {
            // The token alone carries the window and set of the first request.
            None => {
                if prefix != DEFAULT_PREFIX {
                    check_offered(remote, prefix).await?;
                }
                let mut params = vec![("verb", "ListIdentifiers"), ("metadataPrefix", prefix)];
                if let Some(set) = &self.options.set {
                    params.push(("set", set));
                }
                let from = match since {
                    // At the granularity the repository declares: a day-only one refuses
                    // a time (`badArgument`), and a day is always supported.
                    Some(from) => Some(
                        from.format(match identify(remote).await?.granularity.as_str() {
                            "YYYY-MM-DD" => "%Y-%m-%d",
                            _ => "%Y-%m-%dT%H:%M:%SZ",
                        })
                        .to_string(),
                    ),
                    None => None,
                };
                if let Some(from) = &from {
                    params.push(("from", from));
                }
                endpoint(&source.base_url, "", &params)
            }
            Some(token) => endpoint(
                &source.base_url,
                "",
                &[("verb", "ListIdentifiers"), ("resumptionToken", token)],
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
            Some((code, _)) if code == "cannotDisseminateFormat" => {
                return Err(check_offered(remote, prefix).await.err().unwrap_or_else(|| {
                    Reason::config(
                        "options.metadata_prefix",
                        format!("the repository lists {prefix:?} among its formats but refuses to list records in it (cannotDisseminateFormat)"),
                    )
                }))
            }
            Some((code, message)) => return Err(oai_error(&code, &message)),
            None => {}
        }
        let list = xml::child(root, OAI, "ListIdentifiers")
            .ok_or_else(|| Reason::parse("ListIdentifiers answer has no <ListIdentifiers>"))?;
        let mut listing = ListingPage::default();
        let mut deleted = Vec::new();
        // pycsw 2.6 wraps each header in a `record`, as if answering ListRecords.
        let wrapped =
            xml::children(list, OAI, "record").filter_map(|r| xml::child(r, OAI, "header"));
        for header in xml::children(list, OAI, "header").chain(wrapped) {
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
        let url = record_url(source, resource_id, self.options.prefix());
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
        let metadata = xml::descendants(root, OAI, "metadata")
            .next()
            .ok_or_else(|| Reason::parse("GetRecord answer has no <metadata>"))?;
        let mut record = Record {
            id: resource_id.to_string(),
            source_id: source.id.clone(),
            links: vec![Link::new(
                "info",
                record_url(source, resource_id, self.options.prefix()),
            )],
            ..Record::default()
        };
        // Read by what the metadata is, whatever the prefix is called (`datacite`,
        // `oai_datacite`, `datacite4`; `iso19139`, `gmd`).
        if let Some(dc) = xml::descendants(metadata, OAI_DC, "dc").next() {
            dublin_core::fill(&mut record, dc);
        } else if let Some(resource) = datacite::find(metadata) {
            datacite::fill(&mut record, resource);
        } else if let Some((md, encoding)) = iso::find(metadata) {
            iso::fill(&mut record, md, encoding);
        } else {
            let found = metadata
                .children()
                .find(|c| c.is_element())
                .map(|e| {
                    format!(
                        "<{}> in {}",
                        e.tag_name().name(),
                        e.tag_name().namespace().unwrap_or("no namespace")
                    )
                })
                .unwrap_or_else(|| "nothing".into());
            return Err(Reason::parse(format!(
                "the record's metadata is {found}: not Dublin Core (oai_dc), DataCite nor ISO 19139, the formats Trawl maps"
            )));
        }
        Ok(record)
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
    let url = endpoint(&source.base_url, "", &[("verb", "Identify")]);
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

/// Fails the listing unless the repository offers `prefix` (`ListMetadataFormats`), naming
/// the prefixes it does offer.
async fn check_offered(remote: &mut Remote<'_>, prefix: &str) -> Result<(), Reason> {
    let source = remote.source;
    let url = endpoint(&source.base_url, "", &[("verb", "ListMetadataFormats")]);
    let response = ok_or_reason(remote.get(&url).await?)?;
    let text = xml::decode(&response.body)?;
    let doc = xml::parse(&text)?;
    let root = envelope(&doc)?;
    if let Some((code, message)) = protocol_error(root) {
        return Err(oai_error(&code, &message));
    }
    let offered: Vec<String> = xml::descendants(root, OAI, "metadataPrefix")
        .filter_map(xml::text)
        .collect();
    if offered.iter().any(|p| p == prefix) {
        return Ok(());
    }
    Err(Reason::config(
        "options.metadata_prefix",
        format!(
            "the repository does not offer {prefix:?}; it offers {}",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        ),
    ))
}

fn record_url(source: &SourceSnapshot, id: &str, prefix: &str) -> String {
    endpoint(
        &source.base_url,
        "",
        &[
            ("verb", "GetRecord"),
            ("identifier", id),
            ("metadataPrefix", prefix),
        ],
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
    fn an_oai_dc_record_carries_its_date_language_and_identifiers() {
        let body = RECORD.replace(
            "<dc:rights>",
            "<dc:date>2021-04-30</dc:date><dc:language>fre</dc:language><dc:identifier>ISBN 978-0-00-000000-0</dc:identifier><dc:rights>",
        );
        let r = OaiPmh::default()
            .normalize(&source(), "oai:repo:1", &fetched(&body))
            .unwrap();
        assert_eq!(r.dates.published.as_deref(), Some("2021-04-30"));
        assert_eq!(r.language.as_deref(), Some("fre"));
        // URLs and DOIs; the ISBN is neither.
        assert_eq!(
            r.identifiers,
            [
                crate::model::Identifier {
                    scheme: "url".into(),
                    value: "https://repo.example.org/record/1".into()
                },
                crate::model::Identifier {
                    scheme: "doi".into(),
                    value: "10.1234/abc".into()
                },
            ]
        );
    }

    /// Zenodo's answer in `oai_datacite`.
    const ZENODO_DATACITE: &str =
        include_str!("../../../../tests/fixtures/data/oai-datacite-zenodo.xml");

    fn with_prefix(prefix: &str) -> OaiPmh {
        OaiPmh {
            options: OaiOptions {
                metadata_prefix: Some(prefix.into()),
                ..OaiOptions::default()
            },
        }
    }

    #[test]
    fn an_oai_datacite_record_maps_onto_the_record_model() {
        let r = with_prefix("oai_datacite")
            .normalize(
                &source(),
                "oai:zenodo.org:7654321",
                &fetched(ZENODO_DATACITE),
            )
            .unwrap();
        assert_eq!(
            r.title.as_deref(),
            Some("Dissolved oxygen profiles in the St. Lawrence Estuary, 2019-2022")
        );
        // The abstract in the record's language, its HTML made text.
        assert_eq!(
            r.summary.as_deref(),
            Some("Vertical profiles of dissolved oxygen & temperature from CTD casts.")
        );
        assert_eq!(
            r.keywords,
            [
                "dissolved oxygen",
                "hypoxia",
                "https://vocab.nerc.ac.uk/collection/P02/current/DOXY/"
            ]
        );
        assert_eq!(r.language.as_deref(), Some("en"));
        let fr = &r.translations["fr"];
        assert_eq!(
            fr.title.as_deref(),
            Some("Profils d'oxygène dissous dans l'estuaire du Saint-Laurent, 2019-2022")
        );
        assert_eq!(
            fr.summary.as_deref(),
            Some("Profils verticaux d'oxygène dissous et de température.")
        );
        assert_eq!(fr.keywords, ["oxygène dissous"]);
        assert_eq!(r.institution.as_deref(), Some("Zenodo"));
        // The licence, not the access right beside it.
        assert_eq!(
            r.license.as_deref(),
            Some("Creative Commons Attribution 4.0 International")
        );
        assert_eq!(r.dates.created.as_deref(), Some("2022-12-15"));
        assert_eq!(r.dates.modified.as_deref(), Some("2024-03-05"));
        assert_eq!(r.dates.published.as_deref(), Some("2023-01-10"));
        // Both geoLocation boxes together.
        assert_eq!(
            r.bounding_box,
            Some(crate::model::BoundingBox {
                west: -71.2,
                south: 47.5,
                east: -67.0,
                north: 49.5
            })
        );
        assert_eq!(
            r.identifiers,
            [
                crate::model::Identifier {
                    scheme: "doi".into(),
                    value: "10.5281/zenodo.7654321".into()
                },
                crate::model::Identifier {
                    scheme: "url".into(),
                    value: "https://zenodo.org/record/7654321".into()
                },
            ]
        );
        assert_eq!(
            r.links,
            [
                Link::new("info", "https://repo.example.org/oai?verb=GetRecord&identifier=oai%3Azenodo.org%3A7654321&metadataPrefix=oai_datacite".into()),
                Link::new("landing", "https://doi.org/10.5281/zenodo.7654321".into()),
                Link::new("landing", "https://zenodo.org/record/7654321".into()),
            ]
        );
    }

    #[test]
    fn a_bare_datacite_resource_and_a_kernel_3_box_are_read_too() {
        let start = ZENODO_DATACITE.find("<resource").unwrap();
        let end = ZENODO_DATACITE.find("</resource>").unwrap() + "</resource>".len();
        let resource = ZENODO_DATACITE[start..end]
            .replace("kernel-4", "kernel-3")
            .replace(
                "<geoLocationBox>\n                    <westBoundLongitude>-70.5</westBoundLongitude>\n                    <eastBoundLongitude>-67.0</eastBoundLongitude>\n                    <southBoundLatitude>47.5</southBoundLatitude>\n                    <northBoundLatitude>49.5</northBoundLatitude>\n                  </geoLocationBox>",
                "<geoLocationBox>47.5 -70.5 49.5 -67.0</geoLocationBox>",
            );
        assert!(resource.contains("<geoLocationBox>47.5 -70.5 49.5 -67.0</geoLocationBox>"));
        let body = RECORD.replace(
            &RECORD[RECORD.find("<oai_dc:dc").unwrap()..RECORD.find("</metadata>").unwrap()],
            &resource.replace(
                "<resource ",
                "<resource xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ",
            ),
        );
        let r = with_prefix("datacite")
            .normalize(&source(), "oai:zenodo.org:7654321", &fetched(&body))
            .unwrap();
        assert_eq!(r.institution.as_deref(), Some("Zenodo"));
        assert_eq!(r.bounding_box.unwrap().west, -71.2);
        assert_eq!(r.dates.published.as_deref(), Some("2023-01-10"));
    }

    #[test]
    fn an_iso_19139_record_is_mapped_as_csw_maps_it() {
        let iso = r#"<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd" xmlns:gco="http://www.isotc211.org/2005/gco">
          <gmd:language><gmd:LanguageCode codeList="http://www.loc.gov/standards/iso639-2/" codeListValue="eng">eng</gmd:LanguageCode></gmd:language>
          <gmd:dateStamp><gco:DateTime>2024-01-02T03:04:05Z</gco:DateTime></gmd:dateStamp>
          <gmd:identificationInfo><gmd:MD_DataIdentification>
            <gmd:citation><gmd:CI_Citation><gmd:title><gco:CharacterString>Sea level, Halifax</gco:CharacterString></gmd:title></gmd:CI_Citation></gmd:citation>
            <gmd:abstract><gco:CharacterString>Hourly sea level.</gco:CharacterString></gmd:abstract>
          </gmd:MD_DataIdentification></gmd:identificationInfo>
          <gmd:distributionInfo><gmd:MD_Distribution><gmd:transferOptions><gmd:MD_DigitalTransferOptions><gmd:onLine><gmd:CI_OnlineResource>
            <gmd:linkage><gmd:URL>https://data.example.org/halifax.csv</gmd:URL></gmd:linkage><gmd:protocol><gco:CharacterString>WWW:DOWNLOAD</gco:CharacterString></gmd:protocol>
          </gmd:CI_OnlineResource></gmd:onLine></gmd:MD_DigitalTransferOptions></gmd:transferOptions></gmd:MD_Distribution></gmd:distributionInfo>
        </gmd:MD_Metadata>"#;
        let body = RECORD.replace(
            &RECORD[RECORD.find("<oai_dc:dc").unwrap()..RECORD.find("</metadata>").unwrap()],
            iso,
        );
        let r = with_prefix("iso19139")
            .normalize(&source(), "oai:repo:1", &fetched(&body))
            .unwrap();
        assert_eq!(r.title.as_deref(), Some("Sea level, Halifax"));
        assert_eq!(r.summary.as_deref(), Some("Hourly sea level."));
        assert_eq!(r.language.as_deref(), Some("eng"));
        assert_eq!(r.dates.modified.as_deref(), Some("2024-01-02T03:04:05Z"));
        assert!(r.links[0].href.ends_with("&metadataPrefix=iso19139"));
        assert_eq!(r.links[1].href, "https://data.example.org/halifax.csv");
        assert_eq!(r.links[1].protocol.as_deref(), Some("WWW:DOWNLOAD"));
        // Anything else is named, not guessed at.
        let body = RECORD.replace(
            &RECORD[RECORD.find("<oai_dc:dc").unwrap()..RECORD.find("</metadata>").unwrap()],
            "<marc:record xmlns:marc=\"http://www.loc.gov/MARC21/slim\"/>",
        );
        let e = with_prefix("marcxml")
            .normalize(&source(), "oai:repo:1", &fetched(&body))
            .unwrap_err();
        assert!(
            e.detail
                .contains("<record> in http://www.loc.gov/MARC21/slim"),
            "{e}"
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

    const FORMATS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">
  <responseDate>2026-11-23T12:00:00Z</responseDate>
  <request verb="ListMetadataFormats">https://zenodo.org/oai2d</request>
  <ListMetadataFormats>
    <metadataFormat><metadataPrefix>oai_dc</metadataPrefix><schema>http://www.openarchives.org/OAI/2.0/oai_dc.xsd</schema><metadataNamespace>http://www.openarchives.org/OAI/2.0/oai_dc/</metadataNamespace></metadataFormat>
    <metadataFormat><metadataPrefix>datacite</metadataPrefix><schema>http://schema.datacite.org/meta/nonexistant/nonexistant.xsd</schema><metadataNamespace>http://datacite.org/schema/kernel-4</metadataNamespace></metadataFormat>
    <metadataFormat><metadataPrefix>oai_datacite</metadataPrefix><schema>http://schema.datacite.org/oai/oai-1.1/oai.xsd</schema><metadataNamespace>http://schema.datacite.org/oai/oai-1.1/</metadataNamespace></metadataFormat>
  </ListMetadataFormats>
  <ListIdentifiers>
    <header><identifier>oai:zenodo.org:1</identifier><datestamp>2026-01-01T00:00:00Z</datestamp></header>
  </ListIdentifiers>
</OAI-PMH>"#;

    #[tokio::test]
    async fn the_metadata_prefix_is_checked_then_listed_and_a_missing_one_is_a_config_error() {
        let source = recorded::source(
            Protocol::OaiPmh,
            "https://host/pycsw/csw?mode=oaipmh",
            serde_json::json!({"metadata_prefix": "oai_datacite"}),
        );
        let (page, urls) = list_one_page(&source, None, None, FORMATS).await;
        assert_eq!(
            page.unwrap().live_ids().collect::<Vec<_>>(),
            ["oai:zenodo.org:1"]
        );
        assert_eq!(
            urls,
            [
                "https://host/pycsw/csw?mode=oaipmh&verb=ListMetadataFormats",
                "https://host/pycsw/csw?mode=oaipmh&verb=ListIdentifiers&metadataPrefix=oai_datacite",
            ]
        );
        // The token's page asks nothing more.
        let (_, urls) = list_one_page(&source, Some("t"), None, FORMATS).await;
        assert_eq!(
            urls,
            ["https://host/pycsw/csw?mode=oaipmh&verb=ListIdentifiers&resumptionToken=t"]
        );

        let source = recorded::source(
            Protocol::OaiPmh,
            "https://zenodo.org/oai2d",
            serde_json::json!({"metadata_prefix": "iso19139"}),
        );
        let (page, urls) = list_one_page(&source, None, None, FORMATS).await;
        let e = page.unwrap_err();
        assert_eq!(e.code, crate::model::ReasonCode::ConfigError);
        assert_eq!(
            e.detail,
            "options.metadata_prefix: the repository does not offer \"iso19139\"; it offers oai_dc, datacite, oai_datacite"
        );
        assert_eq!(urls.len(), 1, "nothing listed: {urls:?}");
        // oai_dc, which every repository offers, is not asked about.
        let (_, urls) = list_one_page(
            &recorded::source(
                Protocol::OaiPmh,
                "https://zenodo.org/oai2d",
                serde_json::json!({}),
            ),
            None,
            None,
            FORMATS,
        )
        .await;
        assert_eq!(
            urls,
            ["https://zenodo.org/oai2d?verb=ListIdentifiers&metadataPrefix=oai_dc"]
        );
    }

    #[test]
    fn a_metadata_prefix_must_be_one() {
        for bad in ["", "oai dc", "a&b=c"] {
            let e = open(&ProtocolOptions(
                serde_json::json!({"metadata_prefix": bad})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ))
            .err()
            .unwrap();
            assert_eq!(e.field, "options.metadata_prefix", "{bad:?}");
        }
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

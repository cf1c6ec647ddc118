//! OGC CSW 2.0.2 (GeoNetwork, pycsw, GeoNode's catalogue): lists with `GetRecords` (summary
//! records, paged by `startPosition`), fetches each record as ISO 19139 with `GetRecordById`.
//!
//! The source's base URL is the CSW endpoint (`https://host/geonetwork/srv/eng/csw`); a
//! resource id is the record's `dc:identifier` (the ISO `fileIdentifier`).
//!
//! CSW servers page badly, and every trap below has been seen in production:
//! - `nextRecord` missing: continue at start + returned, while that stays within the match;
//! - `nextRecord` past the end (greater than `numberOfRecordsMatched`): the end;
//! - `nextRecord` behind the start: noted (the listing is then incomplete) and replaced by
//!   start + returned, so the listing cannot loop;
//! - fewer records than `maxRecords`, or a page with none but a `nextRecord`: followed as the
//!   server says;
//! - an unstable sort (duplicates and gaps across pages): the pipeline's duplicate check and
//!   the `numberOfRecordsMatched` comparison report it.

use super::{
    expect_success, Catalog, Entry, FetchContext, FetchError, Fetched, ListingPage, NoOptions,
    ProtocolOptions, Remote,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::ConfigError;
use crate::model::{BoundingBox, Link, Reason, Record, TimeRange};
use crate::xml::{self, Node};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub struct Csw;

pub const RAW_EXTENSION: &str = "xml";
pub const LISTS_INCREMENTALLY: bool = true;

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    options.parse::<NoOptions>("csw")?;
    Ok(Box::new(Csw))
}

/// Records asked for per page (servers commonly cap at 100 or fewer).
pub const PAGE_RECORDS: u64 = 100;

const CSW: &str = "http://www.opengis.net/cat/csw/2.0.2";
const DC: &str = "http://purl.org/dc/elements/1.1/";
const OWS: &str = "http://www.opengis.net/ows";
const GMD: &str = "http://www.isotc211.org/2005/gmd";
/// ISO 19115-2's namespace: `gmi:MI_Metadata` extends `gmd:MD_Metadata` (acquisition and
/// quality for imagery and gridded data) with the same content in `gmd`; NOAA/IOOS and
/// satellite catalogs answer `outputSchema=gmd` with it.
const GMI: &str = "http://www.isotc211.org/2005/gmi";

/// The ISO record in an answer: `gmd:MD_Metadata` or ISO 19115-2's `gmi:MI_Metadata`.
fn iso_metadata<'a, 'i>(root: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    root.descendants().find(|n| {
        n.is_element()
            && ((n.tag_name().namespace() == Some(GMD) && n.tag_name().name() == "MD_Metadata")
                || (n.tag_name().namespace() == Some(GMI) && n.tag_name().name() == "MI_Metadata"))
    })
}

#[async_trait]
impl Catalog for Csw {
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, Reason> {
        let source = remote.source;
        let start: u64 = match cursor {
            None => 1,
            Some(c) => c
                .parse()
                .map_err(|_| Reason::parse(format!("bad CSW listing cursor {c:?}")))?,
        };
        let mut url = format!(
            "{}?service=CSW&version=2.0.2&request=GetRecords&typeNames=csw:Record&resultType=results&elementSetName=summary&outputSchema={}&startPosition={start}&maxRecords={PAGE_RECORDS}&sortBy=dc:identifier:A",
            source.base_url,
            encode(CSW)
        );
        if let Some(since) = since {
            let filter = format!("dct:modified >= '{}'", since.format("%Y-%m-%dT%H:%M:%SZ"));
            url.push_str(
                "&constraintLanguage=CQL_TEXT&constraint_language_version=1.1.0&constraint=",
            );
            url.push_str(&encode(&filter));
        }
        let response = ok_or_reason(remote.get(&url).await?)?;
        let text = xml::decode(&response.body)?;
        let doc = xml::parse(&text)?;
        let root = doc.root_element();
        if let Some(reason) = exception(root) {
            return Err(reason);
        }
        if !xml::is(root, CSW, "GetRecordsResponse") {
            return Err(Reason::parse(format!(
                "not a CSW GetRecords answer (root element <{}>)",
                root.tag_name().name()
            )));
        }
        let results = xml::child(root, CSW, "SearchResults")
            .ok_or_else(|| Reason::parse("GetRecords answer has no <csw:SearchResults>"))?;
        let number = |name: &str| {
            results
                .attribute(name)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        Reason::parse(format!("SearchResults@{name} is not a number: {v:?}"))
                    })
                })
                .transpose()
        };
        let matched = number("numberOfRecordsMatched")?
            .ok_or_else(|| Reason::parse("SearchResults has no numberOfRecordsMatched"))?;
        let next_record = number("nextRecord")?;

        let mut listing = ListingPage {
            expected_total: Some(matched),
            ..ListingPage::default()
        };
        for record in results.children().filter(|n| n.is_element()) {
            let id = xml::child(record, DC, "identifier")
                .and_then(xml::text)
                .ok_or_else(|| {
                    Reason::parse(format!(
                        "a <{}> at startPosition {start} has no dc:identifier",
                        record.tag_name().name()
                    ))
                })?;
            listing.entries.push(Entry::Listed(id));
        }
        let returned = listing.entries.len() as u64;
        let by_count = start + returned;
        listing.next_cursor = match next_record {
            Some(0) => None,
            Some(n) if n > matched => None,
            Some(n) if n <= start => {
                listing.problems.push(format!(
                    "nextRecord {n} points back from startPosition {start}; continued at {by_count}"
                ));
                (returned > 0 && by_count <= matched).then_some(by_count)
            }
            Some(n) => Some(n),
            None => (returned > 0 && by_count <= matched).then_some(by_count),
        }
        .map(|n| n.to_string());
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
        let text = xml::decode(&response.body)?;
        let doc = xml::parse(&text)?;
        let root = doc.root_element();
        if let Some(reason) = exception(root) {
            return Err(reason.into());
        }
        // An unknown id is an empty response, not an error (pycsw, GeoNetwork).
        if iso_metadata(root).is_none() {
            return Err(Reason::not_found(
                "GetRecordById returned no gmd:MD_Metadata (nor gmi:MI_Metadata) for this id",
            )
            .into());
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
        let md = iso_metadata(doc.root_element()).ok_or_else(|| {
            Reason::parse("no gmd:MD_Metadata (nor gmi:MI_Metadata) in the record")
        })?;
        Ok(to_record(source, resource_id, md))
    }
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn record_url(source: &SourceSnapshot, id: &str) -> String {
    format!(
        "{}?service=CSW&version=2.0.2&request=GetRecordById&id={}&elementSetName=full&outputSchema={}",
        source.base_url,
        encode(id),
        encode(GMD)
    )
}

/// An OGC `ows:ExceptionReport` as a reason.
fn exception(root: Node<'_, '_>) -> Option<Reason> {
    if !xml::is(root, OWS, "ExceptionReport") {
        return None;
    }
    let e = xml::child(root, OWS, "Exception");
    let code = e
        .and_then(|e| e.attribute("exceptionCode"))
        .unwrap_or("unknown");
    let locator = e.and_then(|e| e.attribute("locator")).unwrap_or("-");
    let message = e
        .and_then(|e| xml::child(e, OWS, "ExceptionText"))
        .and_then(xml::text)
        .unwrap_or_default();
    Some(Reason::parse(format!(
        "CSW exception {code} (locator {locator}): {message}"
    )))
}

/// Servers answer exceptions with 400 and an ExceptionReport body: keep its words.
fn ok_or_reason(response: Response) -> Result<Response, Reason> {
    if !(200..300).contains(&response.status) {
        let body = String::from_utf8_lossy(&response.body);
        if let Some(reason) = xml::parse(&body)
            .ok()
            .and_then(|d| exception(d.root_element()))
        {
            return Err(Reason {
                http_status: Some(response.status),
                ..reason
            });
        }
    }
    expect_success(response, |_| None)
}

/// The text of the first descendant element `gmd:{local}` under `node`, read through its
/// `gco:CharacterString` (or any other child holding the text).
fn gmd_text(node: Node<'_, '_>, local: &str) -> Option<String> {
    xml::descendants(node, GMD, local).find_map(iso_text)
}

const GCO: &str = "http://www.isotc211.org/2005/gco";
const GMX: &str = "http://www.isotc211.org/2005/gmx";

/// A character string property's main-language text: its `gco:CharacterString` (or
/// `gmx:Anchor`), not the `gmd:PT_FreeText` translations an INSPIRE record puts beside it,
/// which a plain text read would run into one string.
fn iso_text(property: Node<'_, '_>) -> Option<String> {
    xml::child(property, GCO, "CharacterString")
        .or_else(|| xml::child(property, GMX, "Anchor"))
        .and_then(xml::text)
        .or_else(|| {
            // Only translations: the first of them.
            xml::descendants(property, GMD, "LocalisedCharacterString")
                .next()
                .and_then(xml::text)
        })
        .or_else(|| xml::text(property))
}

/// The record's data links: only the distribution's online resources, in document order,
/// each once, and only what is a URL. Other `linkage`s in a record are not data: a contact's
/// web site, a service's connect point, a registry's page.
fn data_links(md: Node<'_, '_>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    xml::descendants(md, GMD, "distributionInfo")
        .flat_map(|d| xml::descendants(d, GMD, "onLine"))
        .filter_map(|online| {
            xml::descendants(online, GMD, "linkage")
                .next()
                .and_then(|l| xml::child(l, GMD, "URL"))
                .and_then(xml::text)
        })
        .map(|href| href.trim().to_string())
        .filter(|href| {
            url::Url::parse(href)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https" | "ftp") && u.has_host())
        })
        .filter(|href| seen.insert(href.clone()))
        .collect()
}

/// Field mapping (documented in the README's protocol table), all under `gmd:MD_Metadata`:
/// `identificationInfo//citation//title` → title, `//abstract` → summary, every
/// `//descriptiveKeywords//keyword` → keywords, the identification's `pointOfContact`
/// `organisationName` (else the record's `contact`) → institution, `//resourceConstraints`
/// `useLimitation`/`otherConstraints` → license, `EX_GeographicBoundingBox` → bounding box,
/// `gml:TimePeriod` begin/end → time range, the distribution's transfer options'
/// `onLine//linkage/URL` → `data` links (see [`data_links`]) and the GetRecordById URL →
/// `info`.
fn to_record(source: &SourceSnapshot, resource_id: &str, md: Node<'_, '_>) -> Record {
    let ident = xml::descendants(md, GMD, "identificationInfo").next();
    let within = ident.unwrap_or(md);
    let title = xml::descendants(within, GMD, "citation")
        .next()
        .and_then(|c| gmd_text(c, "title"));
    let keywords = xml::descendants(within, GMD, "keyword")
        .filter_map(iso_text)
        .collect();
    let institution = ident
        .and_then(|i| xml::descendants(i, GMD, "pointOfContact").next())
        .and_then(|p| gmd_text(p, "organisationName"))
        .or_else(|| xml::child(md, GMD, "contact").and_then(|c| gmd_text(c, "organisationName")));
    let license = xml::descendants(within, GMD, "resourceConstraints")
        .find_map(|c| gmd_text(c, "useLimitation").or_else(|| gmd_text(c, "otherConstraints")));
    let bounding_box = xml::descendants(md, GMD, "EX_GeographicBoundingBox")
        .next()
        .and_then(|b| {
            let n = |local: &str| {
                gmd_text(b, local)
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite())
            };
            Some(BoundingBox {
                west: n("westBoundLongitude")?,
                south: n("southBoundLatitude")?,
                east: n("eastBoundLongitude")?,
                north: n("northBoundLatitude")?,
            })
        });
    // GML 3.1 and 3.2 differ by namespace only: match the local names.
    let period = md
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "TimePeriod");
    let time_range = period.and_then(|p| {
        let at = |local: &str| {
            p.children()
                .find(|c| c.is_element() && c.tag_name().name() == local)
                .and_then(xml::text)
        };
        match (at("beginPosition"), at("endPosition")) {
            (None, None) => None,
            (start, end) => Some(TimeRange { start, end }),
        }
    });
    let mut links = vec![Link::new("info", record_url(source, resource_id))];
    links.extend(
        data_links(md)
            .into_iter()
            .map(|href| Link::new("data", href)),
    );
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        title,
        summary: gmd_text(within, "abstract"),
        keywords,
        institution,
        license,
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
    use crate::model::{Protocol, ReasonCode, SourceOptions};

    fn source() -> SourceSnapshot {
        SourceSnapshot {
            id: "csw".into(),
            protocol: Protocol::Csw,
            base_url: "https://host/csw".into(),
            internal: false,
            options: SourceOptions::default(),
        }
    }

    const ISO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<csw:GetRecordByIdResponse xmlns:csw="http://www.opengis.net/cat/csw/2.0.2">
<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd" xmlns:gco="http://www.isotc211.org/2005/gco" xmlns:gml="http://www.opengis.net/gml/3.2">
  <gmd:fileIdentifier><gco:CharacterString>abc</gco:CharacterString></gmd:fileIdentifier>
  <gmd:contact><gmd:CI_ResponsibleParty><gmd:organisationName><gco:CharacterString>Catalog Office</gco:CharacterString></gmd:organisationName></gmd:CI_ResponsibleParty></gmd:contact>
  <gmd:identificationInfo><gmd:MD_DataIdentification>
    <gmd:citation><gmd:CI_Citation><gmd:title><gco:CharacterString>Bathymetry of Baie-Comeau</gco:CharacterString></gmd:title></gmd:CI_Citation></gmd:citation>
    <gmd:abstract><gco:CharacterString>Multibeam survey.</gco:CharacterString></gmd:abstract>
    <gmd:pointOfContact><gmd:CI_ResponsibleParty><gmd:organisationName><gco:CharacterString>Hydrographic Service</gco:CharacterString></gmd:organisationName></gmd:CI_ResponsibleParty></gmd:pointOfContact>
    <gmd:descriptiveKeywords><gmd:MD_Keywords><gmd:keyword><gco:CharacterString>bathymetry</gco:CharacterString></gmd:keyword><gmd:keyword><gco:CharacterString>ocean</gco:CharacterString></gmd:keyword></gmd:MD_Keywords></gmd:descriptiveKeywords>
    <gmd:resourceConstraints><gmd:MD_LegalConstraints><gmd:otherConstraints><gco:CharacterString>Open Government Licence</gco:CharacterString></gmd:otherConstraints></gmd:MD_LegalConstraints></gmd:resourceConstraints>
    <gmd:extent><gmd:EX_Extent>
      <gmd:geographicElement><gmd:EX_GeographicBoundingBox>
        <gmd:westBoundLongitude><gco:Decimal>-68.5</gco:Decimal></gmd:westBoundLongitude>
        <gmd:eastBoundLongitude><gco:Decimal>-67.9</gco:Decimal></gmd:eastBoundLongitude>
        <gmd:southBoundLatitude><gco:Decimal>49.0</gco:Decimal></gmd:southBoundLatitude>
        <gmd:northBoundLatitude><gco:Decimal>49.3</gco:Decimal></gmd:northBoundLatitude>
      </gmd:EX_GeographicBoundingBox></gmd:geographicElement>
      <gmd:temporalElement><gmd:EX_TemporalExtent><gmd:extent><gml:TimePeriod gml:id="t"><gml:beginPosition>2019-05-01</gml:beginPosition><gml:endPosition/></gml:TimePeriod></gmd:extent></gmd:EX_TemporalExtent></gmd:temporalElement>
    </gmd:EX_Extent></gmd:extent>
  </gmd:MD_DataIdentification></gmd:identificationInfo>
  <gmd:distributionInfo><gmd:MD_Distribution><gmd:transferOptions><gmd:MD_DigitalTransferOptions><gmd:onLine><gmd:CI_OnlineResource><gmd:linkage><gmd:URL>https://data.example.org/bathy.zip</gmd:URL></gmd:linkage></gmd:CI_OnlineResource></gmd:onLine></gmd:MD_DigitalTransferOptions></gmd:transferOptions></gmd:MD_Distribution></gmd:distributionInfo>
</gmd:MD_Metadata>
</csw:GetRecordByIdResponse>"#;

    #[test]
    fn an_iso_19139_record_maps_onto_the_record_model() {
        let f = Fetched {
            body: ISO.to_string().into(),
            content_type: "application/xml",
        };
        let r = Csw.normalize(&source(), "abc", &f).unwrap();
        assert_eq!(r.title.as_deref(), Some("Bathymetry of Baie-Comeau"));
        assert_eq!(r.summary.as_deref(), Some("Multibeam survey."));
        assert_eq!(r.keywords, ["bathymetry", "ocean"]);
        assert_eq!(r.institution.as_deref(), Some("Hydrographic Service"));
        assert_eq!(r.license.as_deref(), Some("Open Government Licence"));
        assert_eq!(
            r.bounding_box,
            Some(BoundingBox {
                west: -68.5,
                south: 49.0,
                east: -67.9,
                north: 49.3
            })
        );
        let t = r.time_range.unwrap();
        assert_eq!((t.start.as_deref(), t.end), (Some("2019-05-01"), None));
        assert_eq!(r.links[1].href, "https://data.example.org/bathy.zip");
    }

    #[test]
    fn an_iso_19115_2_record_maps_like_its_19139_core() {
        let mi = ISO
            .replace(
                "<gmd:MD_Metadata xmlns:gmd",
                "<gmi:MI_Metadata xmlns:gmi=\"http://www.isotc211.org/2005/gmi\" xmlns:gmd",
            )
            .replace(
                "</gmd:MD_Metadata>",
                "<gmi:acquisitionInformation><gmi:MI_AcquisitionInformation/></gmi:acquisitionInformation></gmi:MI_Metadata>",
            );
        assert!(mi.contains("<gmi:MI_Metadata") && !mi.contains("MD_Metadata"));
        let f = |body: &str| Fetched {
            body: body.to_string().into(),
            content_type: "application/xml",
        };
        let iso = Csw.normalize(&source(), "abc", &f(ISO)).unwrap();
        let r = Csw.normalize(&source(), "abc", &f(&mi)).unwrap();
        assert_eq!(r.title.as_deref(), Some("Bathymetry of Baie-Comeau"));
        assert_eq!(r.content_hash(), iso.content_hash());
        let doc = xml::parse(&mi).unwrap();
        assert!(iso_metadata(doc.root_element()).is_some());
        let doc = xml::parse(
            "<csw:GetRecordByIdResponse xmlns:csw=\"http://www.opengis.net/cat/csw/2.0.2\"/>",
        )
        .unwrap();
        assert!(iso_metadata(doc.root_element()).is_none());
    }

    #[test]
    fn data_links_are_the_distributions_urls_once_and_nothing_else() {
        let online = |url: &str| {
            format!("<gmd:onLine><gmd:CI_OnlineResource><gmd:linkage><gmd:URL>{url}</gmd:URL></gmd:linkage></gmd:CI_OnlineResource></gmd:onLine>")
        };
        let contact_site = "<gmd:contactInfo><gmd:CI_Contact><gmd:onlineResource><gmd:CI_OnlineResource><gmd:linkage><gmd:URL>https://agency.example.org/</gmd:URL></gmd:linkage></gmd:CI_OnlineResource></gmd:onlineResource></gmd:CI_Contact></gmd:contactInfo>";
        let body = ISO
            .replace(
                "<gmd:organisationName><gco:CharacterString>Catalog Office",
                &format!("{contact_site}<gmd:organisationName><gco:CharacterString>Catalog Office"),
            )
            .replace(
                "</gmd:MD_DigitalTransferOptions>",
                &format!(
                    "{}{}{}{}</gmd:MD_DigitalTransferOptions>",
                    online("https://data.example.org/bathy.zip"),
                    online(" https://data.example.org/wms?service=WMS "),
                    online("see the attached file"),
                    online("https://data.example.org/wms?service=WMS"),
                ),
            );
        let f = Fetched {
            body: body.into(),
            content_type: "application/xml",
        };
        let r = Csw.normalize(&source(), "abc", &f).unwrap();
        let data: Vec<&str> = r
            .links
            .iter()
            .filter(|l| l.rel == "data")
            .map(|l| l.href.as_str())
            .collect();
        assert_eq!(
            data,
            [
                "https://data.example.org/bathy.zip",
                "https://data.example.org/wms?service=WMS"
            ]
        );
    }

    #[test]
    fn a_multilingual_record_keeps_its_main_language_not_every_language_run_together() {
        let free_text = |main: &str, fr: &str| {
            format!("<gco:CharacterString>{main}</gco:CharacterString><gmd:PT_FreeText><gmd:textGroup><gmd:LocalisedCharacterString locale=\"#fra\">{fr}</gmd:LocalisedCharacterString></gmd:textGroup></gmd:PT_FreeText>")
        };
        let body = ISO
            .replace(
                "<gmd:title><gco:CharacterString>Bathymetry of Baie-Comeau</gco:CharacterString></gmd:title>",
                &format!("<gmd:title xsi:type=\"gmd:PT_FreeText_PropertyType\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">{}</gmd:title>", free_text("Bathymetry of Baie-Comeau", "Bathymétrie de Baie-Comeau")),
            )
            .replace(
                "<gmd:keyword><gco:CharacterString>bathymetry</gco:CharacterString></gmd:keyword>",
                &format!("<gmd:keyword>{}</gmd:keyword>", free_text("bathymetry", "bathymétrie")),
            )
            .replace(
                "<gmd:abstract><gco:CharacterString>Multibeam survey.</gco:CharacterString></gmd:abstract>",
                "<gmd:abstract><gmd:PT_FreeText><gmd:textGroup><gmd:LocalisedCharacterString locale=\"#fra\">Levé multifaisceaux.</gmd:LocalisedCharacterString></gmd:textGroup></gmd:PT_FreeText></gmd:abstract>",
            );
        assert!(body.contains("Bathymétrie") && body.contains("bathymétrie"));
        let f = Fetched {
            body: body.into(),
            content_type: "application/xml",
        };
        let r = Csw.normalize(&source(), "abc", &f).unwrap();
        assert_eq!(r.title.as_deref(), Some("Bathymetry of Baie-Comeau"));
        assert_eq!(r.keywords, ["bathymetry", "ocean"]);
        // Only translations: the first one.
        assert_eq!(r.summary.as_deref(), Some("Levé multifaisceaux."));
    }

    #[test]
    fn an_exception_report_names_its_code_and_text() {
        let body = r#"<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows" version="1.2.0"><ows:Exception exceptionCode="InvalidParameterValue" locator="outputschema"><ows:ExceptionText>Invalid outputschema</ows:ExceptionText></ows:Exception></ows:ExceptionReport>"#;
        let doc = xml::parse(body).unwrap();
        let e = exception(doc.root_element()).unwrap();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(
            e.detail
                .contains("InvalidParameterValue (locator outputschema): Invalid outputschema"),
            "{e}"
        );
    }
}

//! OGC CSW 2.0.2 (GeoNetwork, pycsw, GeoNode's catalogue): lists with `GetRecords` (summary
//! records, paged by `startPosition`), fetches each record with `GetRecordById` in the richest
//! schema the server gives: ISO 19139 (`gmd`), else ISO 19115-3 (`mdb`, what a GeoNetwork 4
//! holding 19115-3 records may offer alone), else CSW's own Dublin Core `csw:Record`.
//!
//! The source's base URL is the CSW endpoint (`https://host/geonetwork/srv/eng/csw`, with a
//! query if the server wants one: its parameters are kept, ours win); a resource id is the
//! record's `dc:identifier` (the ISO `fileIdentifier`).
//!
//! A schema the server does not offer is learnt from its answer, record by record, so nothing
//! is asked twice of a server that gives ISO 19139: an exception about `outputSchema` (pycsw's
//! `InvalidParameterValue`, GeoNetwork's `NoApplicableCode` naming `OutputSchema`), or an empty
//! answer (GeoNetwork's default for a record it cannot convert to the schema asked, and how
//! every server says "no such id") moves on to the next schema; empty in every schema is not
//! found.
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

mod dublin_core;
pub(crate) mod iso;

use super::{
    endpoint, expect_success, Catalog, Entry, FetchContext, FetchError, Fetched, ListingPage,
    NoOptions, ProtocolOptions, Remote,
};
use crate::http::Response;
use crate::messages::SourceSnapshot;
use crate::model::ConfigError;
use crate::model::{Link, Reason, Record};
use crate::xml::{self, Node};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub struct Csw;

pub const RAW_EXTENSION: &str = "xml";
pub const LISTS_INCREMENTALLY: bool = true;
/// A query is kept: some endpoints want one (`…/csw?service=CSW`).
pub const REFUSES_BASE_URL_QUERY: Option<&str> = None;

pub fn open(options: &ProtocolOptions) -> Result<Box<dyn Catalog>, ConfigError> {
    options.parse::<NoOptions>("csw")?;
    Ok(Box::new(Csw))
}

/// Records asked for per page (servers commonly cap at 100 or fewer).
pub const PAGE_RECORDS: u64 = 100;

const CSW: &str = "http://www.opengis.net/cat/csw/2.0.2";
const DC: &str = "http://purl.org/dc/elements/1.1/";
const OWS: &str = "http://www.opengis.net/ows";

/// The schemas a record is fetched in, richest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schema {
    Iso19139,
    Iso19115_3,
    DublinCore,
}

impl Schema {
    const PREFERENCE: [Schema; 3] = [Schema::Iso19139, Schema::Iso19115_3, Schema::DublinCore];

    /// As `outputSchema` names it.
    fn uri(self) -> &'static str {
        match self {
            Schema::Iso19139 => iso::GMD_SCHEMA,
            Schema::Iso19115_3 => iso::MDB_SCHEMA,
            Schema::DublinCore => CSW,
        }
    }

    /// Whether the answer holds a record in this schema.
    fn found_in(self, root: Node<'_, '_>) -> bool {
        match self {
            Schema::Iso19139 | Schema::Iso19115_3 => {
                iso::find(root).is_some_and(|(_, e)| Schema::of(e) == self)
            }
            Schema::DublinCore => dublin_core::find(root).is_some(),
        }
    }

    fn of(encoding: iso::Encoding) -> Schema {
        match encoding {
            iso::Encoding::Iso19139 => Schema::Iso19139,
            iso::Encoding::Iso19115_3 => Schema::Iso19115_3,
        }
    }
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
        let (start_position, max_records) = (start.to_string(), PAGE_RECORDS.to_string());
        let mut params = vec![
            ("service", "CSW"),
            ("version", "2.0.2"),
            ("request", "GetRecords"),
            ("typeNames", "csw:Record"),
            ("resultType", "results"),
            ("elementSetName", "summary"),
            ("outputSchema", CSW),
            ("startPosition", start_position.as_str()),
            ("maxRecords", max_records.as_str()),
            ("sortBy", "dc:identifier:A"),
        ];
        let filter =
            since.map(|since| format!("dct:modified >= '{}'", since.format("%Y-%m-%dT%H:%M:%SZ")));
        if let Some(filter) = &filter {
            params.extend([
                ("constraintLanguage", "CQL_TEXT"),
                ("constraint_language_version", "1.1.0"),
                ("constraint", filter.as_str()),
            ]);
        }
        let url = endpoint(&source.base_url, "", &params);
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
        let mut refused = Vec::new();
        for schema in Schema::PREFERENCE {
            let url = record_url(source, resource_id, schema);
            let response = ctx.remote.get(&url).await?;
            if let Some(why) = refuses_schema(&response) {
                refused.push(format!("{}: {why}", schema.uri()));
                continue;
            }
            let response = ok_or_reason(response)?;
            let text = xml::decode(&response.body)?;
            let doc = xml::parse(&text)?;
            let root = doc.root_element();
            if let Some(reason) = exception(root) {
                return Err(reason.into());
            }
            if schema.found_in(root) {
                return Ok(Fetched {
                    body: response.body,
                    content_type: "application/xml",
                });
            }
        }
        if refused.len() == Schema::PREFERENCE.len() {
            return Err(Reason::parse(format!(
                "the catalogue refused every schema Trawl reads ({})",
                refused.join("; ")
            ))
            .into());
        }
        // An unknown id is an empty response, not an error (pycsw, GeoNetwork).
        Err(Reason::not_found(
            "GetRecordById returned no record for this id in any schema (ISO 19139, ISO 19115-3, Dublin Core)",
        )
        .into())
    }

    fn normalize(
        &self,
        source: &SourceSnapshot,
        resource_id: &str,
        fetched: &Fetched,
    ) -> Result<Record, Reason> {
        let text = xml::decode(&fetched.body)?;
        let doc = xml::parse(&text)?;
        let root = doc.root_element();
        if let Some((md, encoding)) = iso::find(root) {
            let mut record = new_record(source, resource_id, Schema::of(encoding));
            iso::fill(&mut record, md, encoding);
            return Ok(record);
        }
        let csw_record = dublin_core::find(root).ok_or_else(|| {
            Reason::parse(
                "no ISO record (gmd:MD_Metadata, gmi:MI_Metadata, mdb:MD_Metadata) nor csw:Record in the answer",
            )
        })?;
        let mut record = new_record(source, resource_id, Schema::DublinCore);
        dublin_core::fill(&mut record, csw_record);
        Ok(record)
    }
}

fn record_url(source: &SourceSnapshot, id: &str, schema: Schema) -> String {
    endpoint(
        &source.base_url,
        "",
        &[
            ("service", "CSW"),
            ("version", "2.0.2"),
            ("request", "GetRecordById"),
            ("id", id),
            ("elementSetName", "full"),
            ("outputSchema", schema.uri()),
        ],
    )
}

/// A record carrying its id, source and the GetRecordById URL it was read from (`info`).
fn new_record(source: &SourceSnapshot, resource_id: &str, schema: Schema) -> Record {
    Record {
        id: resource_id.to_string(),
        source_id: source.id.clone(),
        links: vec![Link::new("info", record_url(source, resource_id, schema))],
        ..Record::default()
    }
}

/// Why the server refused the `outputSchema` asked, if that is what its answer says: an
/// exception located at `outputSchema` (pycsw, the spec), or naming it in its text
/// (GeoNetwork wraps it in `NoApplicableCode`).
fn refuses_schema(response: &Response) -> Option<String> {
    let text = xml::decode(&response.body).ok()?;
    let doc = xml::parse(&text).ok()?;
    let root = doc.root_element();
    if !xml::is(root, OWS, "ExceptionReport") {
        return None;
    }
    let why = xml::children(root, OWS, "Exception").find_map(|e| {
        let message = xml::child(e, OWS, "ExceptionText")
            .and_then(xml::text)
            .unwrap_or_default();
        let about_schema = e
            .attribute("locator")
            .is_some_and(|l| l.eq_ignore_ascii_case("outputSchema"))
            || message.to_ascii_lowercase().contains("outputschema");
        about_schema.then(|| {
            let code = e.attribute("exceptionCode").unwrap_or("unknown");
            format!("{code} {message}").trim().to_string()
        })
    });
    why
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BoundingBox, Protocol, ReasonCode, SourceOptions};

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
        assert!(iso::find(doc.root_element()).is_some());
        let doc = xml::parse(
            "<csw:GetRecordByIdResponse xmlns:csw=\"http://www.opengis.net/cat/csw/2.0.2\"/>",
        )
        .unwrap();
        assert!(iso::find(doc.root_element()).is_none());
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

    fn fetched(body: &str) -> Fetched {
        Fetched {
            body: body.to_string().into(),
            content_type: "application/xml",
        }
    }

    /// GeoNetwork 4's answer for a record it holds in ISO 19115-3.
    const GEONETWORK_4_19115_3: &str =
        include_str!("../../../../tests/fixtures/data/csw-iso19115-3-geonetwork4.xml");
    /// An INSPIRE record in English with French and German translations.
    const INSPIRE_MULTILINGUAL: &str =
        include_str!("../../../../tests/fixtures/data/csw-iso19139-inspire-multilingual.xml");
    /// pycsw's `csw:Record` (`elementSetName=full`).
    const PYCSW_DUBLIN_CORE: &str =
        include_str!("../../../../tests/fixtures/data/csw-dublin-core-pycsw.xml");

    #[test]
    fn an_iso_19115_3_record_maps_the_fields_its_19139_twin_does() {
        let r = Csw
            .normalize(&source(), "7a0c", &fetched(GEONETWORK_4_19115_3))
            .unwrap();
        assert_eq!(
            r.title.as_deref(),
            Some("Bathymetry of the Gulf of St. Lawrence")
        );
        assert_eq!(
            r.summary.as_deref(),
            Some("Multibeam bathymetry compiled from hydrographic surveys.")
        );
        assert_eq!(r.keywords, ["bathymetry", "seafloor"]);
        assert_eq!(
            r.institution.as_deref(),
            Some("Canadian Hydrographic Service")
        );
        assert_eq!(
            r.license.as_deref(),
            Some("Open Government Licence - Canada")
        );
        assert_eq!(
            r.bounding_box,
            Some(crate::model::BoundingBox {
                west: -69.5,
                south: 45.5,
                east: -56.0,
                north: 51.5
            })
        );
        let t = r.time_range.clone().unwrap();
        assert_eq!(
            (t.start.as_deref(), t.end.as_deref()),
            (Some("2015-04-01"), Some("2018-10-31"))
        );
        assert_eq!(r.language.as_deref(), Some("eng"));
        assert_eq!(
            r.translations["fre"].title.as_deref(),
            Some("Bathymétrie du golfe du Saint-Laurent")
        );
        assert_eq!(r.translations["fre"].keywords, ["bathymétrie"]);
        assert_eq!(r.dates.created.as_deref(), Some("2019-05-01"));
        assert_eq!(r.dates.published.as_deref(), Some("2020-01-20"));
        // No citation revision: the metadata's own revision date.
        assert_eq!(r.dates.modified.as_deref(), Some("2024-02-01T09:30:00"));
        assert_eq!(
            r.identifiers,
            [crate::model::Identifier::new(
                "url",
                "10.5072/gsl-bathy-2019"
            )]
        );
        assert_eq!(r.identifiers[0].scheme, "doi");
        // The info link names the schema it was read in; the contact's web site is no data.
        assert!(r.links[0].href.ends_with(
            "outputSchema=http%3A%2F%2Fstandards.iso.org%2Fiso%2F19115%2F-3%2Fmdb%2F2.0"
        ));
        let data: Vec<&Link> = r.links.iter().filter(|l| l.rel == "data").collect();
        assert_eq!(data.len(), 2, "{data:?}");
        assert_eq!(data[0].href, "https://data.example.org/gsl/bathymetry.tif");
        assert_eq!(
            data[0].protocol.as_deref(),
            Some("WWW:DOWNLOAD-1.0-http--download")
        );
        assert_eq!(data[0].name.as_deref(), Some("bathymetry.tif"));
        assert_eq!(data[0].description.as_deref(), Some("GeoTIFF, 50 m grid"));
        assert_eq!(
            data[1].href,
            "https://maps.example.org/geoserver/ows?service=WMS&request=GetCapabilities"
        );
        assert_eq!(data[1].protocol.as_deref(), Some("OGC:WMS"));
    }

    #[test]
    fn an_inspire_record_keeps_its_translations_by_the_language_its_locales_declare() {
        let r = Csw
            .normalize(&source(), "b4c7", &fetched(INSPIRE_MULTILINGUAL))
            .unwrap();
        assert_eq!(r.language.as_deref(), Some("eng"));
        assert_eq!(
            r.title.as_deref(),
            Some("Sea surface temperature, Bay of Biscay")
        );
        assert_eq!(
            r.keywords,
            [
                "Sea surface temperature",
                "Oceanographic geographical features"
            ]
        );
        assert_eq!(
            r.institution.as_deref(),
            Some("Ocean Observation Institute")
        );
        assert_eq!(r.translations.keys().collect::<Vec<_>>(), ["fre", "ger"]);
        let fre = &r.translations["fre"];
        assert_eq!(
            fre.title.as_deref(),
            Some("Température de surface de la mer, golfe de Gascogne")
        );
        assert_eq!(
            fre.summary.as_deref(),
            Some(
                "Température de surface quotidienne issue d'observations satellitaires et in situ."
            )
        );
        assert_eq!(fre.keywords, ["Température de surface de la mer"]);
        let ger = &r.translations["ger"];
        assert_eq!(
            ger.title.as_deref(),
            Some("Meeresoberflächentemperatur, Golf von Biskaya")
        );
        assert_eq!(ger.summary, None);
        assert_eq!(ger.keywords, ["Meeresoberflächentemperatur"]);
    }

    #[test]
    fn an_iso_record_carries_its_dates_identifiers_and_link_details() {
        let r = Csw
            .normalize(&source(), "b4c7", &fetched(INSPIRE_MULTILINGUAL))
            .unwrap();
        // The citation's dates by type, not the thesaurus's publication date nor the stamp.
        assert_eq!(r.dates.created.as_deref(), Some("2018-02-01"));
        assert_eq!(r.dates.published.as_deref(), Some("2018-03-15"));
        assert_eq!(r.dates.modified.as_deref(), Some("2022-11-30T08:00:00"));
        assert_eq!(
            r.identifiers,
            [
                crate::model::Identifier {
                    scheme: "https://marine.example.eu/id".into(),
                    value: "FR-MDC-SST-0042".into()
                },
                crate::model::Identifier {
                    scheme: "doi".into(),
                    value: "10.5072/mdc-sst-42".into()
                },
            ]
        );
        let data: Vec<&Link> = r.links.iter().filter(|l| l.rel == "data").collect();
        assert_eq!(
            data.iter().map(|l| l.href.as_str()).collect::<Vec<_>>(),
            [
                "https://marine.example.eu/thredds/sst/catalog.html",
                "https://marine.example.eu/geoserver/wms"
            ]
        );
        assert_eq!(data[0].protocol.as_deref(), Some("WWW:LINK-1.0-http--link"));
        assert_eq!(data[0].name.as_deref(), Some("THREDDS catalogue"));
        // The main language, not the translations run together.
        assert_eq!(
            data[0].description.as_deref(),
            Some("Daily files, NetCDF-4")
        );
        assert_eq!(data[1].protocol.as_deref(), Some("OGC:WMS"));
        assert_eq!(data[1].description, None);
        // Only a dateStamp: it is the modification date.
        let stamp_only = ISO.replace(
            "<gmd:contact>",
            "<gmd:dateStamp><gco:Date>2024-05-06</gco:Date></gmd:dateStamp><gmd:contact>",
        );
        let r = Csw
            .normalize(&source(), "abc", &fetched(&stamp_only))
            .unwrap();
        assert_eq!(r.dates.modified.as_deref(), Some("2024-05-06"));
        assert_eq!((r.dates.created, r.dates.published), (None, None));
    }

    #[test]
    fn a_dublin_core_record_maps_onto_the_record_model() {
        let r = Csw
            .normalize(&source(), "urn:uuid:19887a8a", &fetched(PYCSW_DUBLIN_CORE))
            .unwrap();
        assert_eq!(
            r.title.as_deref(),
            Some("Lorraine - Carte des sols au 1/250 000")
        );
        assert!(r.summary.as_deref().unwrap().starts_with("Soil map"));
        assert_eq!(r.keywords, ["soils", "geoscientificInformation"]);
        assert_eq!(
            r.institution.as_deref(),
            Some("Chambre d'agriculture de Lorraine")
        );
        assert_eq!(r.license.as_deref(), Some("CC-BY 4.0"));
        assert_eq!(r.language.as_deref(), Some("fre"));
        assert_eq!(r.dates.modified.as_deref(), Some("2023-09-12"));
        // pycsw writes EPSG:4326 corners latitude first.
        assert_eq!(
            r.bounding_box,
            Some(crate::model::BoundingBox {
                west: 4.85,
                south: 47.8,
                east: 7.65,
                north: 49.62
            })
        );
        assert_eq!(
            r.identifiers,
            [crate::model::Identifier {
                scheme: "doi".into(),
                value: "10.5072/lorraine-sols".into()
            }]
        );
        assert!(r.links[0]
            .href
            .ends_with("outputSchema=http%3A%2F%2Fwww.opengis.net%2Fcat%2Fcsw%2F2.0.2"));
        let data: Vec<&Link> = r.links.iter().filter(|l| l.rel == "data").collect();
        assert_eq!(data.len(), 2, "{data:?}");
        assert_eq!(data[0].protocol.as_deref(), Some("OGC:WMS"));
        assert_eq!(
            data[1].protocol.as_deref(),
            Some("WWW:DOWNLOAD-1.0-http--download")
        );
        // GeoNetwork's dc:URI carries protocol, name and description as attributes, and its
        // 4326 corners longitude first: a first coordinate beyond ±90 is a longitude.
        let geonetwork = r#"<csw:GetRecordByIdResponse xmlns:csw="http://www.opengis.net/cat/csw/2.0.2" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dct="http://purl.org/dc/terms/" xmlns:ows="http://www.opengis.net/ows"><csw:Record>
            <dc:identifier>x</dc:identifier><dc:title>T</dc:title>
            <ows:BoundingBox crs="urn:ogc:def:crs:EPSG:6.6:4326"><ows:LowerCorner>-123.5 48.2</ows:LowerCorner><ows:UpperCorner>-122.9 49.0</ows:UpperCorner></ows:BoundingBox>
            <dc:URI protocol="OGC:WMS" name="layer_1" description="A layer">https://maps.example.org/wms</dc:URI>
            <dc:URI protocol="image/png" name="thumbnail">resources.get?id=12&amp;fname=a.png</dc:URI>
        </csw:Record></csw:GetRecordByIdResponse>"#;
        let r = Csw.normalize(&source(), "x", &fetched(geonetwork)).unwrap();
        let b = r.bounding_box.unwrap();
        assert_eq!(
            (b.west, b.south, b.east, b.north),
            (-123.5, 48.2, -122.9, 49.0)
        );
        let data: Vec<&Link> = r.links.iter().filter(|l| l.rel == "data").collect();
        assert_eq!(
            data.len(),
            1,
            "a relative thumbnail path is no URL: {data:?}"
        );
        assert_eq!(
            (data[0].name.as_deref(), data[0].description.as_deref()),
            (Some("layer_1"), Some("A layer"))
        );
    }

    #[test]
    fn a_refused_output_schema_is_told_from_other_exceptions() {
        let answer = |status: u16, body: &str| Response {
            status,
            content_type: None,
            body: bytes::Bytes::from(body.to_string()),
            retry_after: None,
        };
        let pycsw = r#"<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows" version="1.2.0"><ows:Exception exceptionCode="InvalidParameterValue" locator="outputschema"><ows:ExceptionText>Invalid outputschema parameter http://www.isotc211.org/2005/gmd</ows:ExceptionText></ows:Exception></ows:ExceptionReport>"#;
        assert!(refuses_schema(&answer(400, pycsw)).is_some());
        let geonetwork = r#"<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows" version="1.2.0"><ows:Exception exceptionCode="NoApplicableCode"><ows:ExceptionText>java.lang.RuntimeException: org.fao.geonet.csw.common.exceptions.InvalidParameterValueEx: code=InvalidParameterValue, locator=OutputSchema, message=OutputSchema 'gmd' not supported for metadata with '106' (iso19115-3.2018).</ows:ExceptionText></ows:Exception></ows:ExceptionReport>"#;
        assert!(refuses_schema(&answer(200, geonetwork)).is_some());
        let other = r#"<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows" version="1.2.0"><ows:Exception exceptionCode="MissingParameterValue" locator="id"><ows:ExceptionText>Missing id parameter</ows:ExceptionText></ows:Exception></ows:ExceptionReport>"#;
        assert!(refuses_schema(&answer(400, other)).is_none());
        assert!(refuses_schema(&answer(200, ISO)).is_none());
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;
    use crate::model::Protocol;
    use crate::protocols::recorded::{self, list_one_page};

    const EMPTY: &str = r#"<csw:GetRecordsResponse xmlns:csw="http://www.opengis.net/cat/csw/2.0.2"><csw:SearchResults numberOfRecordsMatched="0" numberOfRecordsReturned="0" nextRecord="0"/></csw:GetRecordsResponse>"#;

    #[tokio::test]
    async fn a_base_url_query_is_kept_and_the_adapters_parameters_win() {
        let source = recorded::source(
            Protocol::Csw,
            "https://host/geonetwork/srv/eng/csw?SERVICE=CSW&version=2.0.0&hl=fre",
            serde_json::json!({}),
        );
        let (page, urls) = list_one_page(&source, None, None, EMPTY).await;
        assert_eq!(page.unwrap().entries, []);
        assert_eq!(
            urls,
            ["https://host/geonetwork/srv/eng/csw?hl=fre&service=CSW&version=2.0.2&request=GetRecords&typeNames=csw%3ARecord&resultType=results&elementSetName=summary&outputSchema=http%3A%2F%2Fwww.opengis.net%2Fcat%2Fcsw%2F2.0.2&startPosition=1&maxRecords=100&sortBy=dc%3Aidentifier%3AA"]
        );
        assert_eq!(
            record_url(&source, "a b", Schema::Iso19139),
            "https://host/geonetwork/srv/eng/csw?hl=fre&service=CSW&version=2.0.2&request=GetRecordById&id=a+b&elementSetName=full&outputSchema=http%3A%2F%2Fwww.isotc211.org%2F2005%2Fgmd"
        );
    }
}

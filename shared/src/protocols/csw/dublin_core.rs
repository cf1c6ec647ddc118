//! The Dublin Core `csw:Record` (CSW's own schema, `elementSetName=full`) onto the record
//! model: what a catalogue that offers neither ISO encoding still answers.

use super::iso::is_url;
use crate::model::{BoundingBox, Dates, Identifier, Link, Record};
use crate::xml::{self, Node};
use std::collections::HashSet;

const CSW: &str = "http://www.opengis.net/cat/csw/2.0.2";
const DC: &str = "http://purl.org/dc/elements/1.1/";
const DCT: &str = "http://purl.org/dc/terms/";
const OWS: &str = "http://www.opengis.net/ows";

/// The `csw:Record` in an answer.
pub fn find<'a, 'i>(root: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    xml::descendants(root, CSW, "Record").next()
}

/// Fills `record` from a `csw:Record`. Field mapping: `dc:title` → title, `dct:abstract`
/// (else `dc:description`) → summary, every `dc:subject` → keywords, `dc:publisher` (else
/// `dc:creator`) → institution, `dct:license` (else `dc:rights`) → license, `dc:language` →
/// language, `ows:WGS84BoundingBox` or `ows:BoundingBox` → bounding box, `dct:created`,
/// `dct:modified` (else `dc:date`) and `dct:issued` → dates, `dc:identifier`s other than the
/// record's own that are DOIs or URLs → identifiers, `dc:URI` (with its `protocol`, `name`
/// and `description` attributes, as GeoNetwork writes them) and `dct:references` (its
/// `scheme` as protocol, as pycsw writes them) that are URLs → `data` links, each once.
pub fn fill(record: &mut Record, csw_record: Node<'_, '_>) {
    let all = |ns: &'static str, local: &'static str| -> Vec<String> {
        xml::children(csw_record, ns, local)
            .filter_map(xml::text)
            .collect()
    };
    let first = |ns: &'static str, local: &'static str| all(ns, local).into_iter().next();
    record.title = first(DC, "title");
    record.summary = first(DCT, "abstract").or_else(|| first(DC, "description"));
    record.keywords = all(DC, "subject");
    record.institution = first(DC, "publisher").or_else(|| first(DC, "creator"));
    record.license = first(DCT, "license").or_else(|| first(DC, "rights"));
    record.language = first(DC, "language");
    record.bounding_box = bounding_box(csw_record);
    record.dates = Dates {
        created: first(DCT, "created"),
        modified: first(DCT, "modified").or_else(|| first(DC, "date")),
        published: first(DCT, "issued"),
    };
    let own_id = record.id.clone();
    let mut identifiers: Vec<Identifier> = Vec::new();
    for value in all(DC, "identifier").into_iter().filter(|v| *v != own_id) {
        let id = Identifier::new("url", &value);
        if (id.scheme == "doi" || is_url(&id.value)) && !identifiers.contains(&id) {
            identifiers.push(id);
        }
    }
    record.identifiers = identifiers;
    let mut seen = HashSet::new();
    let links = csw_record
        .children()
        .filter_map(|c| {
            let attribute = |name: &str| {
                c.attribute(name)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            let (protocol, name, description) = if xml::is(c, DC, "URI") {
                (
                    attribute("protocol"),
                    attribute("name"),
                    attribute("description"),
                )
            } else if xml::is(c, DCT, "references") {
                (attribute("scheme"), None, None)
            } else {
                return None;
            };
            Some(Link {
                protocol,
                name,
                description,
                ..Link::new("data", xml::text(c)?)
            })
        })
        .filter(|l| is_url(&l.href) && seen.insert(l.href.clone()));
    record.links.extend(links);
}

/// `ows:WGS84BoundingBox` corners are longitude first. `ows:BoundingBox` corners follow its
/// CRS: latitude first for EPSG:4326 (pycsw writes them so), longitude first for CRS84; a
/// first coordinate outside ±90 can only be a longitude, whatever the CRS says (some servers
/// write 4326 boxes longitude first). Corners are ordered, as some servers swap them.
fn bounding_box(csw_record: Node<'_, '_>) -> Option<BoundingBox> {
    let (element, lon_first) = match xml::child(csw_record, OWS, "WGS84BoundingBox") {
        Some(b) => (b, true),
        None => {
            let b = xml::child(csw_record, OWS, "BoundingBox")?;
            let crs = b.attribute("crs").unwrap_or_default().to_ascii_uppercase();
            (b, crs.is_empty() || crs.contains("CRS84"))
        }
    };
    let corner = |local: &str| -> Option<(f64, f64)> {
        let text = xml::child(element, OWS, local).and_then(xml::text)?;
        let mut values = text.split_whitespace().map(|v| v.parse::<f64>().ok());
        let (a, b) = (values.next()??, values.next()??);
        (a.is_finite() && b.is_finite()).then_some((a, b))
    };
    let (lower, upper) = (corner("LowerCorner")?, corner("UpperCorner")?);
    let lon_first = lon_first || lower.0.abs() > 90.0 || upper.0.abs() > 90.0;
    let ((x1, y1), (x2, y2)) = if lon_first {
        (lower, upper)
    } else {
        ((lower.1, lower.0), (upper.1, upper.0))
    };
    Some(BoundingBox {
        west: x1.min(x2),
        south: y1.min(y2),
        east: x1.max(x2),
        north: y1.max(y2),
    })
}

//! Simple Dublin Core (`oai_dc`, the format every repository offers) onto the record model.

use crate::model::{Identifier, Link, Record};
use crate::xml::{self, Node};

const DC: &str = "http://purl.org/dc/elements/1.1/";

/// Fills `record` from an `oai_dc:dc`. Field mapping: `dc:title` → title, `dc:description` →
/// summary, every `dc:subject` → keywords, `dc:publisher` (else the first `dc:creator`) →
/// institution, `dc:rights` → license, `dc:language` → language, the first `dc:date` →
/// published (Dublin Core's date of the resource is, in practice, its issue), `dc:identifier`s
/// that are DOIs (in any form) or URLs → identifiers, and those that are URLs → `landing`
/// links.
pub fn fill(record: &mut Record, dc: Node<'_, '_>) {
    let all = |local: &str| -> Vec<String> {
        xml::children(dc, DC, local).filter_map(xml::text).collect()
    };
    let first = |local: &str| all(local).into_iter().next();
    record.title = first("title");
    record.summary = first("description");
    record.keywords = all("subject");
    record.institution = first("publisher").or_else(|| first("creator"));
    record.license = first("rights");
    record.language = first("language");
    record.dates.published = first("date");
    for value in all("identifier") {
        let is_url = value.starts_with("http://") || value.starts_with("https://");
        let id = Identifier::new("url", &value);
        if (id.scheme == "doi" || is_url) && !record.identifiers.contains(&id) {
            record.identifiers.push(id);
        }
        if is_url {
            record.links.push(Link::new("landing", value));
        }
    }
}

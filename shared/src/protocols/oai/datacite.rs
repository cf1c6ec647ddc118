//! DataCite metadata (kernel 3 and 4) onto the record model: the `oai_datacite` prefix wraps
//! the DataCite `resource` in `<oai_datacite><payload>` (Zenodo, DataCite's own repository,
//! Invenio, Dataverse), the `datacite` prefix sends the `resource` bare.

use crate::model::{BoundingBox, Dates, Identifier, Link, Record, Translation};
use crate::protocols::plain_text;
use crate::xml::{self, Node};
use std::collections::BTreeMap;

/// Every DataCite kernel namespace (`…/kernel-3`, `…/kernel-4`) starts so.
const KERNEL: &str = "http://datacite.org/schema/kernel-";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The DataCite `resource` in an answer.
pub fn find<'a, 'i>(root: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    root.descendants().find(|n| {
        n.is_element()
            && n.tag_name().name() == "resource"
            && n.tag_name()
                .namespace()
                .is_some_and(|ns| ns.starts_with(KERNEL))
    })
}

fn is(node: Node<'_, '_>, local: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == local
        && node
            .tag_name()
            .namespace()
            .is_some_and(|ns| ns.starts_with(KERNEL))
}

fn child<'a, 'i>(node: Node<'a, 'i>, local: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is(*c, local))
}

/// The elements `list/item` (`titles/title`, `subjects/subject`, …).
fn items<'a, 'i: 'a>(
    resource: Node<'a, 'i>,
    list: &str,
    item: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    child(resource, list)
        .into_iter()
        .flat_map(move |l| l.children().filter(move |c| is(*c, item)))
}

fn lang(node: Node<'_, '_>) -> Option<String> {
    node.attribute((XML_NS, "lang"))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// A text in the record's language (or with none given) belongs to the record; in another
/// language, to its translations.
fn is_main(node: Node<'_, '_>, language: Option<&str>) -> bool {
    match (lang(node), language) {
        (None, _) | (_, None) => true,
        (Some(l), Some(main)) => l.eq_ignore_ascii_case(main),
    }
}

/// Fills `record` from a DataCite `resource`. Field mapping: `titles/title` (one without a
/// `titleType`) → title, `descriptions/description` (the `Abstract`, HTML → text) → summary,
/// `subjects/subject` → keywords, each in the record's `language`, the others by their
/// `xml:lang` into `translations`; `publisher` (else the first `creators/creator/creatorName`)
/// → institution; the first `rightsList/rights` that is a licence (not an
/// `info:eu-repo/semantics` access right), its text or else its `rightsURI` → license;
/// `dates/date` `Created`/`Updated`/`Issued` (else `publicationYear`) → dates;
/// `geoLocations//geoLocationBox` (kernel 4's four bounds or kernel 3's "S W N E"), all boxes
/// together → bounding box; `identifier identifierType="DOI"` and every
/// `alternateIdentifiers/alternateIdentifier` (scheme = its type) → identifiers; the DOI's
/// `https://doi.org/` address and URL alternate identifiers → `landing` links.
pub fn fill(record: &mut Record, resource: Node<'_, '_>) {
    let language = child(resource, "language").and_then(xml::text);
    let main_lang = language.as_deref();
    let mut translations: BTreeMap<String, Translation> = BTreeMap::new();

    let titles: Vec<Node> = items(resource, "titles", "title")
        .filter(|t| matches!(t.attribute("titleType"), None | Some("TranslatedTitle")))
        .collect();
    record.title = titles
        .iter()
        .find(|t| t.attribute("titleType").is_none() && is_main(**t, main_lang))
        .or_else(|| titles.first())
        .and_then(|t| xml::text(*t));
    for title in titles.iter().filter(|t| !is_main(**t, main_lang)) {
        if let (Some(l), Some(text)) = (lang(*title), xml::text(*title)) {
            translations.entry(l).or_default().title.get_or_insert(text);
        }
    }

    let descriptions: Vec<Node> = items(resource, "descriptions", "description").collect();
    let abstracts: Vec<Node> = descriptions
        .iter()
        .copied()
        .filter(|d| d.attribute("descriptionType") == Some("Abstract"))
        .collect();
    let described = if abstracts.is_empty() {
        descriptions
    } else {
        abstracts
    };
    let text_of = |d: Node<'_, '_>| xml::text(d).and_then(|t| plain_text(&t));
    record.summary = described
        .iter()
        .find(|d| is_main(**d, main_lang))
        .or_else(|| described.first())
        .and_then(|d| text_of(*d));
    for description in described.iter().filter(|d| !is_main(**d, main_lang)) {
        if let (Some(l), Some(text)) = (lang(*description), text_of(*description)) {
            translations
                .entry(l)
                .or_default()
                .summary
                .get_or_insert(text);
        }
    }

    for subject in items(resource, "subjects", "subject") {
        let Some(text) = xml::text(subject) else {
            continue;
        };
        match lang(subject).filter(|_| !is_main(subject, main_lang)) {
            Some(l) => translations.entry(l).or_default().keywords.push(text),
            None => record.keywords.push(text),
        }
    }
    translations.retain(|_, t| !t.is_empty());
    record.translations = translations;
    record.language = language.clone();

    record.institution = child(resource, "publisher")
        .and_then(xml::text)
        .or_else(|| {
            items(resource, "creators", "creator")
                .find_map(|c| child(c, "creatorName").and_then(xml::text))
        });
    record.license = items(resource, "rightsList", "rights")
        .filter(|r| {
            !r.attribute("rightsURI")
                .is_some_and(|u| u.trim().starts_with("info:eu-repo/semantics"))
        })
        .find_map(|r| {
            xml::text(r).or_else(|| {
                r.attribute("rightsURI")
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
            })
        });

    let dated = |kind: &str| {
        items(resource, "dates", "date")
            .find(|d| d.attribute("dateType") == Some(kind))
            .and_then(xml::text)
    };
    record.dates = Dates {
        created: dated("Created"),
        modified: dated("Updated"),
        published: dated("Issued")
            .or_else(|| child(resource, "publicationYear").and_then(xml::text)),
    };

    record.bounding_box = items(resource, "geoLocations", "geoLocation")
        .filter_map(|g| child(g, "geoLocationBox"))
        .filter_map(geo_box)
        .reduce(|a, b| BoundingBox {
            west: a.west.min(b.west),
            south: a.south.min(b.south),
            east: a.east.max(b.east),
            north: a.north.max(b.north),
        });

    let doi = child(resource, "identifier")
        .filter(|i| {
            i.attribute("identifierType")
                .is_some_and(|t| t.eq_ignore_ascii_case("DOI"))
        })
        .and_then(xml::text)
        .map(|doi| Identifier::new("doi", &doi));
    let alternates: Vec<Identifier> =
        items(resource, "alternateIdentifiers", "alternateIdentifier")
            .filter_map(|a| {
                let scheme = a
                    .attribute("alternateIdentifierType")
                    .unwrap_or("other")
                    .trim()
                    .to_ascii_lowercase();
                Some(Identifier::new(&scheme, &xml::text(a)?))
            })
            .collect();
    for id in doi.iter().chain(&alternates) {
        if !record.identifiers.contains(id) {
            record.identifiers.push(id.clone());
        }
    }
    if let Some(doi) = doi.filter(|d| d.scheme == "doi") {
        record.links.push(Link::new(
            "landing",
            format!("https://doi.org/{}", doi.value),
        ));
    }
    for id in alternates.iter().filter(|i| i.scheme == "url") {
        if id.value.starts_with("http://") || id.value.starts_with("https://") {
            record.links.push(Link::new("landing", id.value.clone()));
        }
    }
}

/// Kernel 4 writes a box's four bounds as elements; kernel 3 as one text, "S W N E".
fn geo_box(b: Node<'_, '_>) -> Option<BoundingBox> {
    let number = |text: Option<String>| {
        text.and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let bound = |local: &str| number(child(b, local).and_then(xml::text));
    if let (Some(west), Some(east), Some(south), Some(north)) = (
        bound("westBoundLongitude"),
        bound("eastBoundLongitude"),
        bound("southBoundLatitude"),
        bound("northBoundLatitude"),
    ) {
        return Some(BoundingBox {
            west,
            south,
            east,
            north,
        });
    }
    let values: Vec<f64> = xml::text(b)?
        .split_whitespace()
        .filter_map(|v| number(Some(v.to_string())))
        .collect();
    match values[..] {
        [south, west, north, east] => Some(BoundingBox {
            west,
            south,
            east,
            north,
        }),
        _ => None,
    }
}

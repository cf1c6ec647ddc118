//! ISO 19115 metadata onto the record model, in the two XML encodings catalogs send: ISO 19139
//! (`gmd:MD_Metadata`, and ISO 19115-2's `gmi:MI_Metadata`, which extends it with the same
//! content) and ISO 19115-3 (`mdb:MD_Metadata`, GeoNetwork 4's own). Both name the elements
//! read here with the same local names, in different namespaces (19139: `gmd`, `gco`, `gmx`;
//! 19115-3: a namespace per package, `mdb`, `mri`, `cit`, `lan`, `gex`, `mco`, `mrd`, `mcc`,
//! `gco`, `gcx`), so one mapping reads both through [`Encoding`], which also spells the few
//! paths that differ. CSW fetches these records; OAI-PMH's `iso19139` prefix reuses the
//! mapping.
//!
//! Multilingual records (INSPIRE) write each text as its main-language `gco:CharacterString`
//! beside `PT_FreeText/textGroup/LocalisedCharacterString locale="#FR"` translations; the
//! locale's language is declared once in the record (`PT_Locale id="FR"` with its language
//! code). Reading "all the text" of such an element would run every language together.

use crate::model::{BoundingBox, Dates, Identifier, Link, Record, TimeRange, Translation};
use crate::xml::{self, Node};
use std::collections::{BTreeMap, HashMap, HashSet};

const GMD: &str = "http://www.isotc211.org/2005/gmd";
const GMI: &str = "http://www.isotc211.org/2005/gmi";
const GCO: &str = "http://www.isotc211.org/2005/gco";
const GMX: &str = "http://www.isotc211.org/2005/gmx";
const SRV: &str = "http://www.isotc211.org/2005/srv";
/// Every ISO 19115-3 namespace (`…/mdb/2.0`, `…/cit/2.0`, `…/lan/1.0`, …) starts so.
const ISO_19115_3: &str = "http://standards.iso.org/iso/19115/-3/";

/// ISO 19115-3's root schema, as `outputSchema` names it.
pub const MDB_SCHEMA: &str = "http://standards.iso.org/iso/19115/-3/mdb/2.0";
/// ISO 19139's, as `outputSchema` names it.
pub const GMD_SCHEMA: &str = GMD;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Iso19139,
    Iso19115_3,
}

impl Encoding {
    fn owns(self, namespace: Option<&str>) -> bool {
        match (self, namespace) {
            (Encoding::Iso19139, Some(ns)) => [GMD, GMI, GCO, GMX, SRV].contains(&ns),
            (Encoding::Iso19115_3, Some(ns)) => ns.starts_with(ISO_19115_3),
            _ => false,
        }
    }

    fn is(self, node: Node<'_, '_>, local: &str) -> bool {
        node.is_element()
            && node.tag_name().name() == local
            && self.owns(node.tag_name().namespace())
    }

    fn child<'a, 'i>(self, node: Node<'a, 'i>, local: &str) -> Option<Node<'a, 'i>> {
        node.children().find(|c| self.is(*c, local))
    }

    fn children<'a, 'i: 'a>(
        self,
        node: Node<'a, 'i>,
        local: &'a str,
    ) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
        node.children().filter(move |c| self.is(*c, local))
    }

    fn descendants<'a, 'i: 'a>(
        self,
        node: Node<'a, 'i>,
        local: &'a str,
    ) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
        node.descendants().filter(move |c| self.is(*c, local))
    }

    /// The text of the first descendant `local` under `node`, in its main language.
    fn text_of(self, node: Node<'_, '_>, local: &str) -> Option<String> {
        self.descendants(node, local).find_map(|p| self.text(p))
    }

    /// A character string property's main-language text: its `gco:CharacterString` (or
    /// `gmx:Anchor`/`gcx:Anchor`), not the `PT_FreeText` translations beside it; a property
    /// with only translations gives the first of them.
    fn text(self, property: Node<'_, '_>) -> Option<String> {
        self.child(property, "CharacterString")
            .or_else(|| self.child(property, "Anchor"))
            .and_then(xml::text)
            .or_else(|| {
                self.descendants(property, "LocalisedCharacterString")
                    .next()
                    .and_then(xml::text)
            })
            .or_else(|| {
                // Text directly in the property (`gmd:URL`, a bare value), never a
                // translation's.
                (!property.descendants().any(|d| self.is(d, "PT_FreeText")))
                    .then(|| xml::text(property))
                    .flatten()
            })
    }

    /// A property's translations: (locale reference without its `#`, text).
    fn translations(self, property: Node<'_, '_>) -> Vec<(String, String)> {
        self.descendants(property, "LocalisedCharacterString")
            .filter_map(|l| {
                let locale = l.attribute("locale")?.trim().trim_start_matches('#');
                Some((locale.to_string(), xml::text(l)?))
            })
            .filter(|(locale, _)| !locale.is_empty())
            .collect()
    }

    /// A language code element's value: `LanguageCode@codeListValue`, else its text.
    fn language_in(self, node: Node<'_, '_>) -> Option<String> {
        self.descendants(node, "LanguageCode")
            .find_map(|code| {
                code.attribute("codeListValue")
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .or_else(|| xml::text(code))
            })
            .or_else(|| self.text(node))
    }

    /// The record's own language: 19139's `gmd:language`, 19115-3's `mdb:defaultLocale`.
    fn record_language(self, md: Node<'_, '_>) -> Option<String> {
        let property = match self {
            Encoding::Iso19139 => "language",
            Encoding::Iso19115_3 => "defaultLocale",
        };
        self.child(md, property).and_then(|p| self.language_in(p))
    }

    /// Locale id → its language, as the record declares them (19139 `gmd:locale`, 19115-3
    /// `mdb:otherLocale`, each a `PT_Locale id=` with its language code).
    fn locales(self, md: Node<'_, '_>) -> HashMap<String, String> {
        self.descendants(md, "PT_Locale")
            .filter_map(|locale| {
                let id = locale.attribute("id")?.trim().to_string();
                let property = match self {
                    Encoding::Iso19139 => "languageCode",
                    Encoding::Iso19115_3 => "language",
                };
                let language = self
                    .child(locale, property)
                    .and_then(|p| self.language_in(p))?;
                Some((id, language))
            })
            .collect()
    }

    /// An organisation's name under a responsible party: 19139's `organisationName`, 19115-3's
    /// `CI_Organisation/name`.
    fn organisation(self, party: Node<'_, '_>) -> Option<String> {
        match self {
            Encoding::Iso19139 => self.text_of(party, "organisationName"),
            Encoding::Iso19115_3 => self
                .descendants(party, "CI_Organisation")
                .find_map(|o| self.child(o, "name").and_then(|n| self.text(n))),
        }
    }

    /// When the metadata itself was last stamped: 19139's `gmd:dateStamp`, 19115-3's
    /// `mdb:dateInfo` revision (else creation) date.
    fn metadata_date(self, md: Node<'_, '_>) -> Option<String> {
        match self {
            Encoding::Iso19139 => self.child(md, "dateStamp").and_then(xml::text),
            Encoding::Iso19115_3 => {
                let dates: Vec<(String, String)> = self
                    .children(md, "dateInfo")
                    .flat_map(|d| self.dated(d))
                    .collect();
                ["revision", "creation"].iter().find_map(|kind| {
                    dates
                        .iter()
                        .find(|(k, _)| k == kind)
                        .map(|(_, v)| v.clone())
                })
            }
        }
    }

    /// (`CI_DateTypeCode`, date) of every `CI_Date` under `node`.
    fn dated(self, node: Node<'_, '_>) -> Vec<(String, String)> {
        self.descendants(node, "CI_Date")
            .filter_map(|d| {
                let date = self.child(d, "date").and_then(xml::text)?;
                let kind = self.child(d, "dateType").and_then(|t| {
                    self.descendants(t, "CI_DateTypeCode").find_map(|c| {
                        c.attribute("codeListValue")
                            .map(str::to_string)
                            .or_else(|| xml::text(c))
                    })
                })?;
                Some((kind.trim().to_string(), date))
            })
            .collect()
    }
}

/// The ISO record in a document (the root itself, or inside a CSW or OAI-PMH envelope) and
/// its encoding.
pub fn find<'a, 'i>(root: Node<'a, 'i>) -> Option<(Node<'a, 'i>, Encoding)> {
    root.descendants().find_map(|n| {
        if !n.is_element() {
            return None;
        }
        match (n.tag_name().namespace(), n.tag_name().name()) {
            (Some(GMD), "MD_Metadata") | (Some(GMI), "MI_Metadata") => {
                Some((n, Encoding::Iso19139))
            }
            (Some(ns), "MD_Metadata") if ns.starts_with(ISO_19115_3) => {
                Some((n, Encoding::Iso19115_3))
            }
            _ => None,
        }
    })
}

/// Fills `record` from the ISO metadata `md` (everything but its id, source and the link to
/// the metadata itself, which the protocol knows). Field mapping, in both encodings:
/// - title, summary, keywords: `identificationInfo//citation//title`, `//abstract`, every
///   `//descriptiveKeywords//keyword`, each in the main language; their `PT_FreeText`
///   translations into `translations`, by the language their locale declares;
/// - language: 19139 `gmd:language`, 19115-3 `mdb:defaultLocale`;
/// - institution: the identification's `pointOfContact` organisation, else the record's
///   `contact`'s;
/// - license: `//resourceConstraints` `useLimitation`, else `otherConstraints`;
/// - bounding box: `EX_GeographicBoundingBox`; time range: `gml:TimePeriod` begin/end;
/// - dates: the citation's `CI_Date`s by `CI_DateTypeCode` (creation → created, revision →
///   modified, publication → published), modified falling back on the metadata's own date
///   (19139 `dateStamp`, 19115-3 `dateInfo`);
/// - identifiers: the citation's `identifier` codes (DOIs recognised), scheme from
///   `codeSpace`;
/// - links: each distribution `onLine` resource's `linkage` that is a URL, once, as `data`
///   with its `protocol`, `name` and `description` (see [`data_links`]).
pub fn fill(record: &mut Record, md: Node<'_, '_>, e: Encoding) {
    let ident = e.descendants(md, "identificationInfo").next();
    let within = ident.unwrap_or(md);
    let citation = e.descendants(within, "citation").next();
    let title = citation.and_then(|c| e.descendants(c, "title").next());
    let summary = e.descendants(within, "abstract").next();
    let keywords: Vec<Node> = e.descendants(within, "keyword").collect();

    record.language = e.record_language(md);
    record.title = title.and_then(|t| e.text(t));
    record.summary = summary.and_then(|s| e.text(s));
    record.keywords = keywords.iter().filter_map(|k| e.text(*k)).collect();
    record.translations =
        translations(md, e, title, summary, &keywords, record.language.as_deref());

    record.institution = ident
        .and_then(|i| e.descendants(i, "pointOfContact").next())
        .and_then(|p| e.organisation(p))
        .or_else(|| e.child(md, "contact").and_then(|c| e.organisation(c)));
    record.license = e.descendants(within, "resourceConstraints").find_map(|c| {
        e.text_of(c, "useLimitation")
            .or_else(|| e.text_of(c, "otherConstraints"))
    });
    record.bounding_box = e
        .descendants(md, "EX_GeographicBoundingBox")
        .next()
        .and_then(|b| {
            let n = |local: &str| {
                e.text_of(b, local)
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
    record.time_range = time_range(md);
    record.dates = dates(md, e, citation);
    record.identifiers = citation.map(|c| identifiers(c, e)).unwrap_or_default();
    record.links.extend(data_links(md, e));
}

/// Translations of the title, abstract and keywords, by language. A locale whose language is
/// the record's own repeats the main text and is left out.
fn translations(
    md: Node<'_, '_>,
    e: Encoding,
    title: Option<Node<'_, '_>>,
    summary: Option<Node<'_, '_>>,
    keywords: &[Node<'_, '_>],
    main: Option<&str>,
) -> BTreeMap<String, Translation> {
    let locales = e.locales(md);
    let language = |locale: &str| {
        locales
            .get(locale)
            .cloned()
            .unwrap_or_else(|| locale.to_string())
    };
    enum Field {
        Title,
        Summary,
        Keyword,
    }
    let properties = title
        .map(|t| (t, Field::Title))
        .into_iter()
        .chain(summary.map(|s| (s, Field::Summary)))
        .chain(keywords.iter().map(|k| (*k, Field::Keyword)));
    let mut out: BTreeMap<String, Translation> = BTreeMap::new();
    for (property, field) in properties {
        for (locale, text) in e.translations(property) {
            let language = language(&locale);
            if main.is_some_and(|m| m.eq_ignore_ascii_case(&language)) {
                continue;
            }
            let translation = out.entry(language).or_default();
            match field {
                Field::Title => {
                    translation.title.get_or_insert(text);
                }
                Field::Summary => {
                    translation.summary.get_or_insert(text);
                }
                Field::Keyword => translation.keywords.push(text),
            }
        }
    }
    out.retain(|_, t| !t.is_empty());
    out
}

fn time_range(md: Node<'_, '_>) -> Option<TimeRange> {
    // GML 3.1 and 3.2 differ by namespace only: match the local names.
    let period = md
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "TimePeriod")?;
    let at = |local: &str| {
        period
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == local)
            .and_then(xml::text)
    };
    match (at("beginPosition"), at("endPosition")) {
        (None, None) => None,
        (start, end) => Some(TimeRange { start, end }),
    }
}

fn dates(md: Node<'_, '_>, e: Encoding, citation: Option<Node<'_, '_>>) -> Dates {
    let cited = citation.map(|c| e.dated(c)).unwrap_or_default();
    let of = |kind: &str| {
        cited
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, date)| date.clone())
    };
    Dates {
        created: of("creation"),
        modified: of("revision").or_else(|| e.metadata_date(md)),
        published: of("publication"),
    }
}

/// The citation's identifiers (`MD_Identifier` or `RS_Identifier` `code`), each once.
fn identifiers(citation: Node<'_, '_>, e: Encoding) -> Vec<Identifier> {
    let mut out: Vec<Identifier> = Vec::new();
    for identifier in e.descendants(citation, "identifier") {
        let Some(code) = e.child_text(identifier, "code") else {
            continue;
        };
        let scheme = e.child_text(identifier, "codeSpace").unwrap_or_else(|| {
            if code.starts_with("http://") || code.starts_with("https://") {
                "url".into()
            } else {
                "code".into()
            }
        });
        let id = Identifier::new(&scheme, &code);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

impl Encoding {
    /// The text of `local` one identifier object down (`identifier/MD_Identifier/code`).
    fn child_text(self, property: Node<'_, '_>, local: &str) -> Option<String> {
        property
            .children()
            .filter(|c| c.is_element())
            .find_map(|object| self.child(object, local))
            .and_then(|p| self.text(p))
    }
}

/// The record's data links: only the distribution's online resources, in document order, each
/// URL once (the first mention keeps its protocol, name and description), and only what is a
/// URL. Other `linkage`s in a record are not data: a contact's web site, a service's connect
/// point, a registry's page.
pub fn data_links(md: Node<'_, '_>, e: Encoding) -> Vec<Link> {
    let mut seen = HashSet::new();
    e.descendants(md, "distributionInfo")
        .flat_map(|d| e.descendants(d, "onLine"))
        .filter_map(|online| {
            let resource = online.children().find(|c| c.is_element())?;
            let href = e
                .child(resource, "linkage")
                .and_then(|l| e.text(l))?
                .trim()
                .to_string();
            let field = |local: &str| e.child(resource, local).and_then(|p| e.text(p));
            Some(Link {
                protocol: field("protocol"),
                name: field("name"),
                description: field("description"),
                ..Link::new("data", href)
            })
        })
        .filter(|link| is_url(&link.href))
        .filter(|link| seen.insert(link.href.clone()))
        .collect()
}

pub(crate) fn is_url(href: &str) -> bool {
    url::Url::parse(href)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https" | "ftp") && u.has_host())
}

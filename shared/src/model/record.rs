//! The normalized record every protocol produces. The raw response is stored beside it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The remote id, unique within its source.
    pub id: String,
    pub source_id: String,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub keywords: Vec<String>,
    pub institution: Option<String>,
    pub license: Option<String>,
    pub bounding_box: Option<BoundingBox>,
    pub time_range: Option<TimeRange>,
    pub variables: Vec<Variable>,
    pub links: Vec<Link>,
    /// The language of the fields above, as the catalog names it (`en`, `fra`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The same title, summary and keywords in the catalog's other languages, by language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: BTreeMap<String, Translation>,
    /// When the metadata says the dataset was created, last modified and published.
    #[serde(default, skip_serializing_if = "Dates::is_empty")]
    pub dates: Dates,
    /// DOIs and other identifiers the record carries besides its id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// Where the dataset is, when the catalog names a place (`Lake Erie`, a gazetteer URI)
    /// rather than giving coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// What the catalog gave that could not be mapped faithfully, and so was left out (a
    /// bounding box in a coordinate system we do not convert), so a reader of the record
    /// knows the gap is the source's form, not an absence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A record's text in one more language.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
}

impl Translation {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.summary.is_none() && self.keywords.is_empty()
    }
}

/// ISO 8601, as the catalog gave each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
}

impl Dates {
    pub fn is_empty(&self) -> bool {
        self.created.is_none() && self.modified.is_none() && self.published.is_none()
    }
}

/// An identifier of the dataset: `scheme` is `doi`, `url`, or the catalog's own name for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    pub scheme: String,
    pub value: String,
}

impl Identifier {
    /// A DOI in any of the forms catalogs write it (`10.x/y`, `doi:10.x/y`,
    /// `https://doi.org/10.x/y`) as `doi` and its bare name; anything else as `scheme`.
    pub fn new(scheme: &str, value: &str) -> Identifier {
        let value = value.trim();
        let lower = value.to_ascii_lowercase();
        for prefix in [
            "https://doi.org/",
            "http://doi.org/",
            "https://dx.doi.org/",
            "http://dx.doi.org/",
            "doi:",
        ] {
            if lower.starts_with(prefix) {
                return Identifier {
                    scheme: "doi".into(),
                    value: value[prefix.len()..].trim().to_string(),
                };
            }
        }
        if lower.starts_with("10.") && value.contains('/') {
            return Identifier {
                scheme: "doi".into(),
                value: value.to_string(),
            };
        }
        Identifier {
            scheme: scheme.to_string(),
            value: value.to_string(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// ISO 8601 as the server gave it.
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    pub standard_name: Option<String>,
    pub units: Option<String>,
    pub long_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// What the link is for: `info`, `data`, `iso19115`, `fgdc`, `landing`.
    pub rel: String,
    pub href: String,
    /// How to use it, as the catalog says (`OGC:WMS`, `WWW:DOWNLOAD-1.0-http--download`,
    /// a media type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Link {
    pub fn new(rel: &str, href: String) -> Link {
        Link {
            rel: rel.to_string(),
            href,
            protocol: None,
            name: None,
            description: None,
        }
    }
}

impl Record {
    /// A content hash of the normalized record: the same metadata gives the same hash no
    /// matter how the server spaced or ordered its response.
    pub fn content_hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("records serialize");
        hex::encode(Sha256::digest(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_changes_with_content_only() {
        let a = Record {
            id: "x".into(),
            title: Some("T".into()),
            ..Record::default()
        };
        let b = a.clone();
        let c = Record {
            title: Some("T2".into()),
            ..a.clone()
        };
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
        assert_eq!(a.content_hash().len(), 64);
    }

    #[test]
    fn fields_a_catalog_does_not_give_leave_the_json_and_its_hash_as_they_were() {
        let record = Record {
            id: "x".into(),
            links: vec![Link::new("info", "https://e/x".into())],
            ..Record::default()
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(
            !json.contains("translations") && !json.contains("protocol"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
    }

    #[test]
    fn dois_are_recognised_in_every_form_catalogs_write() {
        for form in [
            "10.5281/zenodo.1",
            "doi:10.5281/zenodo.1",
            "https://doi.org/10.5281/zenodo.1",
            "http://dx.doi.org/10.5281/zenodo.1",
        ] {
            assert_eq!(
                Identifier::new("uri", form),
                Identifier {
                    scheme: "doi".into(),
                    value: "10.5281/zenodo.1".into()
                },
                "{form}"
            );
        }
        assert_eq!(Identifier::new("uri", "urn:x:1").scheme, "uri");
    }
}

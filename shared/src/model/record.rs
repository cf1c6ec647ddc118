//! The normalized record every protocol produces. The raw response is stored beside it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
}

//! ERDDAP's JSON table: `{"table": {"columnNames": [...], "rows": [[...]]}}`.

use crate::model::Reason;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Envelope {
    table: Table,
}

#[derive(Debug, Deserialize)]
pub struct Table {
    #[serde(rename = "columnNames")]
    pub column_names: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// ERDDAP prints attribute values as strings, numeric columns as numbers, and missing
/// values as `null`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
    Null,
}

impl Cell {
    pub fn as_text(&self) -> Option<String> {
        match self {
            Cell::Text(s) => Some(s.clone()),
            Cell::Number(n) => Some(n.to_string()),
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Null => None,
        }
    }
}

impl Table {
    pub fn parse(body: &[u8]) -> Result<Table, Reason> {
        let text = std::str::from_utf8(body)
            .map_err(|e| Reason::parse(format!("body is not UTF-8: {e}")))?;
        let envelope: Envelope = serde_json::from_str(text)
            .map_err(|e| Reason::parse(format!("not an ERDDAP JSON table: {e}")))?;
        Ok(envelope.table)
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.column_names.iter().position(|c| c == name)
    }
}

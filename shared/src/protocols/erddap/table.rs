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
#[derive(Debug)]
pub enum Cell {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
    Null,
}

/// By hand rather than `#[serde(untagged)]`: untagged buffers every cell and tries each
/// variant in turn, which made parsing most of the embedded run's CPU time (info tables
/// have hundreds of cells).
impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cell, D::Error> {
        struct CellVisitor;
        impl<'de> serde::de::Visitor<'de> for CellVisitor {
            type Value = Cell;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cell, E> {
                Ok(Cell::Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Cell, E> {
                Ok(Cell::Text(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Cell, E> {
                Ok(Cell::Number(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Cell, E> {
                Ok(Cell::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Cell, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Cell::Null, Cell::Number))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Cell, E> {
                Ok(Cell::Bool(v))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Cell, E> {
                Ok(Cell::Null)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Cell, E> {
                Ok(Cell::Null)
            }
        }
        deserializer.deserialize_any(CellVisitor)
    }
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

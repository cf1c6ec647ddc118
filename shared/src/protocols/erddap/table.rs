//! ERDDAP's JSON table: `{"table": {"columnNames": [...], "rows": [[...]]}}`, read row by
//! row ([`scan_rows`]), never held whole.

use crate::model::Reason;
use crate::protocols::json_body;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// ERDDAP prints attribute values as strings, numeric columns as numbers, and missing
/// values as `null`.
#[derive(Debug, Clone)]
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
    /// [`Cell::as_text`] without copying a text cell.
    pub fn into_text(self) -> Option<String> {
        match self {
            Cell::Text(s) => Some(s),
            other => other.as_text(),
        }
    }

    pub fn as_text(&self) -> Option<String> {
        match self {
            Cell::Text(s) => Some(s.clone()),
            Cell::Number(n) => Some(n.to_string()),
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Null => None,
        }
    }
}

/// What [`scan_rows`] hands each row to: its index and its kept cells (which it may take: the
/// next row starts afresh); an error stops the scan.
pub type OnRow<'a> = dyn FnMut(usize, &mut [Option<Cell>]) -> Result<(), String> + 'a;

/// Reads a table's rows one at a time, keeping only the cells of the `required` columns, then
/// the `optional` ones (by name; `None` where the table lacks an optional column or a row
/// the cell), and hands each row to `row` as it is read: a listing answer of a million rows is never held as a table of every cell, only
/// as what `row` keeps. ERDDAP writes `columnNames` before `rows`, as every table it sends.
pub fn scan_rows(
    body: &[u8],
    required: &[&str],
    optional: &[&str],
    row: &mut OnRow,
) -> Result<usize, Reason> {
    let text = std::str::from_utf8(json_body(body))
        .map_err(|e| Reason::parse(format!("body is not UTF-8: {e}")))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let columns: Vec<&str> = required.iter().chain(optional).copied().collect();
    let scan = Scan {
        columns: &columns,
        required: required.len(),
        row,
        rows: 0,
    };
    let rows = scan
        .deserialize(&mut deserializer)
        .and_then(|rows| deserializer.end().map(|()| rows))
        .map_err(|e| Reason::parse(format!("not an ERDDAP JSON table: {e}")))?;
    Ok(rows)
}

/// The envelope `{"table": {...}}`; yields the number of rows read.
struct Scan<'c, 'r> {
    columns: &'c [&'c str],
    required: usize,
    row: &'r mut OnRow<'r>,
    rows: usize,
}

impl<'de> DeserializeSeed<'de> for Scan<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with a \"table\"")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<usize, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "table" && !found {
                found = true;
                self.rows = map.next_value_seed(TableScan {
                    columns: self.columns,
                    required: self.required,
                    row: &mut *self.row,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if found {
            Ok(self.rows)
        } else {
            Err(A::Error::missing_field("table"))
        }
    }
}

struct TableScan<'c, 'r> {
    columns: &'c [&'c str],
    required: usize,
    row: &'r mut OnRow<'r>,
}

impl<'de> DeserializeSeed<'de> for TableScan<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TableScan<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table with columnNames and rows")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        // Where each wanted column sits in a row, once the names are read.
        let mut positions: Option<Vec<Option<usize>>> = None;
        let mut rows = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "columnNames" => {
                    let names: Vec<String> = map.next_value()?;
                    let found: Vec<Option<usize>> = self
                        .columns
                        .iter()
                        .map(|c| names.iter().position(|n| n == c))
                        .collect();
                    if let Some(missing) = (0..self.required).find(|&i| found[i].is_none()) {
                        return Err(A::Error::custom(format!(
                            "the table has no {:?} column",
                            self.columns[missing]
                        )));
                    }
                    positions = Some(found);
                }
                "rows" => {
                    let Some(positions) = positions.as_deref() else {
                        return Err(A::Error::custom("rows come before columnNames"));
                    };
                    rows = Some(map.next_value_seed(RowsScan {
                        positions,
                        row: &mut *self.row,
                    })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (positions, rows) {
            (None, _) => Err(A::Error::missing_field("columnNames")),
            (_, None) => Err(A::Error::missing_field("rows")),
            (_, Some(rows)) => Ok(rows),
        }
    }
}

struct RowsScan<'p, 'r> {
    positions: &'p [Option<usize>],
    row: &'r mut OnRow<'r>,
}

impl<'de> DeserializeSeed<'de> for RowsScan<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsScan<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        // One buffer of kept cells, reused row after row.
        let mut cells: Vec<Option<Cell>> = vec![None; self.positions.len()];
        let mut index = 0;
        while seq
            .next_element_seed(RowScan {
                positions: self.positions,
                cells: &mut cells,
            })?
            .is_some()
        {
            (self.row)(index, &mut cells).map_err(A::Error::custom)?;
            index += 1;
        }
        Ok(index)
    }
}

struct RowScan<'p, 'c> {
    positions: &'p [Option<usize>],
    cells: &'c mut Vec<Option<Cell>>,
}

impl<'de> DeserializeSeed<'de> for RowScan<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowScan<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row (an array of cells)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.cells.iter_mut().for_each(|c| *c = None);
        let mut at = 0;
        loop {
            match self.positions.iter().position(|p| *p == Some(at)) {
                Some(wanted) => match seq.next_element::<Cell>()? {
                    Some(cell) => self.cells[wanted] = Some(cell),
                    None => break,
                },
                None => {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                }
            }
            at += 1;
        }
        Ok(())
    }
}

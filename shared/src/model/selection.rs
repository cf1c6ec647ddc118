//! A selection: resources named for harvesting now (`trawl run SOURCE --resources ID…`, the
//! scheduler event `{"source_id": …, "resource_ids": […]}`, a server's push naming a
//! dataset). Its session "lists" exactly these ids, so it deletes nothing as stale and is no
//! listing of the catalog (`Trigger::lists_catalog`).

use crate::keys::MAX_RESOURCE_ID_BYTES;

/// The most ids one selection may name: a push names a handful, and a larger set is a
/// listing's job (a full or incremental session).
pub const MAX_SELECTION_IDS: usize = 1000;

/// The ids of a selection, checked: at least one, at most [`MAX_SELECTION_IDS`] distinct,
/// none empty or too long to key; in the order given, each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection(Vec<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectionError {
    #[error("resource_ids: name at least one resource")]
    Empty,
    #[error("resource_ids: {0} ids, more than {MAX_SELECTION_IDS} in one selection (a listing harvests more)")]
    TooMany(usize),
    #[error("resource_ids: an empty id")]
    EmptyId,
    #[error("resource_ids: {head:?}… is {bytes} bytes, longer than {MAX_RESOURCE_ID_BYTES}")]
    TooLong { head: String, bytes: usize },
}

impl Selection {
    pub fn new(ids: Vec<String>) -> Result<Selection, SelectionError> {
        let mut seen = std::collections::HashSet::new();
        let mut distinct = Vec::with_capacity(ids.len());
        for id in ids {
            if id.is_empty() {
                return Err(SelectionError::EmptyId);
            }
            if id.len() > MAX_RESOURCE_ID_BYTES {
                return Err(SelectionError::TooLong {
                    head: id.chars().take(40).collect(),
                    bytes: id.len(),
                });
            }
            if seen.insert(id.clone()) {
                distinct.push(id);
            }
        }
        match distinct.len() {
            0 => Err(SelectionError::Empty),
            n if n > MAX_SELECTION_IDS => Err(SelectionError::TooMany(n)),
            _ => Ok(Selection(distinct)),
        }
    }

    pub fn ids(&self) -> &[String] {
        &self.0
    }

    pub fn into_ids(self) -> Vec<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ds_{i}")).collect()
    }

    #[test]
    fn a_selection_keeps_each_id_once_in_the_order_given() {
        let s = Selection::new(vec!["b".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(s.ids(), ["b", "a"]);
    }

    #[test]
    fn a_selection_is_bounded_and_every_id_keyable() {
        assert_eq!(Selection::new(vec![]), Err(SelectionError::Empty));
        assert!(Selection::new(ids(MAX_SELECTION_IDS)).is_ok());
        let err = Selection::new(ids(MAX_SELECTION_IDS + 1)).unwrap_err();
        assert_eq!(err, SelectionError::TooMany(MAX_SELECTION_IDS + 1));
        assert!(err.to_string().contains("more than 1000"), "{err}");
        // Repeats do not count against the cap.
        let mut repeated = ids(MAX_SELECTION_IDS);
        repeated.extend(ids(10));
        assert!(Selection::new(repeated).is_ok());
        assert_eq!(
            Selection::new(vec!["a".into(), String::new()]),
            Err(SelectionError::EmptyId)
        );
        let long = "x".repeat(MAX_RESOURCE_ID_BYTES + 1);
        assert!(matches!(
            Selection::new(vec![long]),
            Err(SelectionError::TooLong { bytes, .. }) if bytes == MAX_RESOURCE_ID_BYTES + 1
        ));
    }
}

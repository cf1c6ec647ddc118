//! The work queue's message format. One message is one unit the session counts: a resource
//! to harvest, or a listing page to fetch (for protocols whose listings span many requests).

use crate::model::{Protocol, Source, SourceOptions};
use serde::{Deserialize, Serialize};

/// The part of a source a harvester needs, snapshotted when the session starts so a source
/// edited mid-session does not change how the session's remaining work is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    pub id: String,
    pub protocol: Protocol,
    pub base_url: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub options: SourceOptions,
}

impl From<&Source> for SourceSnapshot {
    fn from(s: &Source) -> SourceSnapshot {
        SourceSnapshot {
            id: s.id.clone(),
            protocol: s.protocol,
            base_url: s.base_url.clone(),
            internal: s.internal,
            options: s.options.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkMessage {
    Resource {
        session_id: String,
        source: SourceSnapshot,
        resource_id: String,
        /// Times this resource was put back because the server asked us to wait
        /// (`Retry-After`); bounded, so a server that always says "later" still gets counted.
        #[serde(default, skip_serializing_if = "is_zero")]
        deferrals: u32,
    },
    ListPage {
        session_id: String,
        source: SourceSnapshot,
        /// 1-based page number: the page's identity within the session.
        page: u32,
        /// The protocol's own cursor (start position, resumption token, next URL).
        cursor: Option<String>,
        /// How many of the committed page's ids earlier messages delivered: a page larger
        /// than the delivery chunk is fanned out a chunk a message, so neither the queue nor
        /// one invocation holds all of its messages (see `pipeline::listing::deliver`).
        #[serde(default, skip_serializing_if = "is_zero_u64")]
        delivered: u64,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

impl WorkMessage {
    pub fn session_id(&self) -> &str {
        match self {
            WorkMessage::Resource { session_id, .. } | WorkMessage::ListPage { session_id, .. } => {
                session_id
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("work messages serialize")
    }

    /// The source the work is for.
    pub fn source_id(&self) -> &str {
        match self {
            WorkMessage::Resource { source, .. } | WorkMessage::ListPage { source, .. } => {
                &source.id
            }
        }
    }

    /// A dedupe-friendly id for batch entries (SQS batch entry ids: alphanumerics, - and _).
    pub fn entry_id(&self, index: usize) -> String {
        format!("m{index}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reject_unknown_kinds() {
        let m = WorkMessage::ListPage {
            session_id: "s@1".into(),
            source: SourceSnapshot {
                id: "s".into(),
                protocol: Protocol::Erddap,
                base_url: "http://h/erddap".into(),
                internal: false,
                options: SourceOptions::default(),
            },
            page: 2,
            cursor: Some("start=1000".into()),
            delivered: 0,
        };
        let json = m.to_json();
        assert!(json.contains(r#""kind":"list_page""#), "{json}");
        assert_eq!(serde_json::from_str::<WorkMessage>(&json).unwrap(), m);
        assert!(serde_json::from_str::<WorkMessage>(r#"{"kind":"mystery"}"#).is_err());
    }

    #[test]
    fn the_example_event_body_parses() {
        let event: serde_json::Value =
            serde_json::from_str(include_str!("../../infra/events/harvester-sqs.json")).unwrap();
        let body = event["Records"][0]["body"].as_str().unwrap();
        let m: WorkMessage = serde_json::from_str(body).unwrap();
        assert!(matches!(m, WorkMessage::Resource { .. }));
    }
}

//! Remote catalog protocols. Each lives in its own folder behind [`Catalog`]: its options
//! type, how it lists, fetches and normalizes. The pipeline only ever talks to the trait and
//! to [`open`], so adding a protocol touches its folder and one line of the registry below.

pub mod arcgis;
pub mod ckan;
mod common;
pub mod csw;
pub mod dcat;
pub mod erddap;
mod extent;
pub mod geonode;
pub mod oai;

pub use common::{endpoint, expect_success, json_body, path_segment, plain_text};
pub use extent::{geojson_extent, inverse_mercator, iso_interval, spatial, spatial_value, Spatial};

use crate::http::{HttpClient, RequestLog, Response};
use crate::messages::SourceSnapshot;
use crate::model::{ConfigError, Reason, Record};
use crate::ports::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The registry: each protocol's name (as operators write it) and its folder. The `Protocol`
/// enum, its names and [`open`] are generated from this one table; each folder provides
/// `open`, `RAW_EXTENSION`, `LISTS_INCREMENTALLY` and `REFUSES_BASE_URL_QUERY`.
macro_rules! registry {
    ($($variant:ident => $name:literal, $module:ident;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Protocol {
            $($variant),*
        }

        impl Protocol {
            pub const ALL: &'static [Protocol] = &[$(Protocol::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Protocol::$variant => $name),*
                }
            }

            /// File extension of the raw copy kept beside each record (`json`, `xml`).
            pub fn raw_extension(self) -> &'static str {
                match self {
                    $(Protocol::$variant => $module::RAW_EXTENSION),*
                }
            }

            /// Whether the protocol can list only what changed since a time.
            pub fn lists_incrementally(self) -> bool {
                match self {
                    $(Protocol::$variant => $module::LISTS_INCREMENTALLY),*
                }
            }

            /// Why a `base_url` of this protocol may not carry a query; `None` when it may (the
            /// query is then kept and merged with the adapter's own parameters, see
            /// [`endpoint`]).
            pub fn refuses_base_url_query(self) -> Option<&'static str> {
                match self {
                    $(Protocol::$variant => $module::REFUSES_BASE_URL_QUERY),*
                }
            }
        }

        /// The source's catalog, configured with its protocol's own options.
        pub fn open(source: &SourceSnapshot) -> Result<Box<dyn Catalog>, ConfigError> {
            match source.protocol {
                $(Protocol::$variant => $module::open(&source.options.protocol)),*
            }
        }
    };
}

registry! {
    Erddap => "erddap", erddap;
    Ckan => "ckan", ckan;
    OaiPmh => "oai-pmh", oai;
    Dcat => "dcat", dcat;
    Csw => "csw", csw;
    GeoNode => "geonode", geonode;
    ArcGis => "arcgis", arcgis;
}

impl Protocol {
    pub fn parse(name: &str) -> Option<Protocol> {
        Protocol::ALL.iter().copied().find(|p| p.as_str() == name)
    }

    /// Every name, for error messages and help texts.
    pub fn names() -> String {
        Protocol::ALL
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let name = String::deserialize(d)?;
        Protocol::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown protocol {name:?}; supported: {}",
                Protocol::names()
            ))
        })
    }
}

/// A source's protocol-specific options as the operator wrote them (beside the common ones
/// in `options`); only the protocol's own options type reads them, in its `open`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProtocolOptions(pub serde_json::Map<String, serde_json::Value>);

impl ProtocolOptions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The protocol's own options type, refusing fields it does not know; errors name the
    /// field as the operator wrote it (`options.set`).
    pub fn parse<T: DeserializeOwned>(&self, protocol: &str) -> Result<T, ConfigError> {
        let value = serde_json::Value::Object(self.0.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            let field = match self.0.keys().find(|k| message.contains(&format!("`{k}`"))) {
                Some(unknown) if message.contains("unknown field") => unknown.clone(),
                _ => path,
            };
            ConfigError::new(
                &format!("options.{field}"),
                format!("{message} (for {protocol}, besides the options every source has)"),
            )
        })
    }
}

/// Options of a protocol that has none of its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingPage {
    pub entries: Vec<Entry>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
    /// How many resources the server says the whole listing holds (`count`,
    /// `numberOfRecordsMatched`, `completeListSize`, `total`), when it says. Checked against
    /// what was gathered once the listing ends.
    pub expected_total: Option<u64>,
    /// Paging problems the protocol itself noticed on this page (a `nextRecord` behind the
    /// start, fewer records than announced). Any problem makes the listing incomplete.
    pub problems: Vec<String>,
}

/// What a listing says of one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// To be fetched with [`Catalog::fetch`].
    Listed(String),
    /// Delivered whole with the listing (data.json): kept beside the session, and what
    /// [`FetchContext::inline`] hands back to the fetch.
    Inline { id: String, document: Bytes },
    /// The server lists it as deleted (an OAI-PMH `status="deleted"` header): part of its
    /// announced total, not harvested. `declared`: the server says it keeps track of
    /// deletions, so the deletion may be acted on at once.
    Deleted { id: String, declared: bool },
}

impl Entry {
    pub fn id(&self) -> &str {
        match self {
            Entry::Listed(id) | Entry::Inline { id, .. } | Entry::Deleted { id, .. } => id,
        }
    }

    /// Whether the resource is to be harvested (listed or inline).
    pub fn is_live(&self) -> bool {
        !matches!(self, Entry::Deleted { .. })
    }
}

impl ListingPage {
    /// A page of plain listed ids.
    pub fn of_ids(ids: impl IntoIterator<Item = String>) -> ListingPage {
        ListingPage {
            entries: ids.into_iter().map(Entry::Listed).collect(),
            ..ListingPage::default()
        }
    }

    /// The ids to harvest, in the server's order.
    pub fn live_ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(|e| e.is_live()).map(Entry::id)
    }
}

/// A resource's metadata as the server sent it.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub body: Bytes,
    pub content_type: &'static str,
}

/// The source's server, as one listing page or one fetch talks to it: every request goes
/// through the source's politeness limits and into the attempt's request log.
pub struct Remote<'a> {
    pub http: &'a HttpClient,
    pub source: &'a SourceSnapshot,
    pub requests: &'a mut Vec<RequestLog>,
}

impl Remote<'_> {
    pub async fn get(&mut self, url: &str) -> Result<Response, Reason> {
        self.http.get(self.source, url, self.requests).await
    }
}

/// Documents a listing delivered whole ([`Entry::Inline`]), as kept for the session.
#[async_trait]
pub trait InlineDocuments: Send + Sync {
    async fn document(&self, resource_id: &str) -> Result<Option<Bytes>, StoreError>;
}

/// Documents held in memory, by resource id: what `trawl check` keeps of a listing, or none
/// (an empty map) for a fetch outside any session.
#[async_trait]
impl InlineDocuments for std::collections::HashMap<String, Bytes> {
    async fn document(&self, resource_id: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get(resource_id).cloned())
    }
}

/// What a fetch may use: the server, and the documents its session's listing delivered.
pub struct FetchContext<'a> {
    pub remote: Remote<'a>,
    pub inline: &'a dyn InlineDocuments,
}

/// Why a fetch failed: the remote side (counted with its reason, retried if transient), or
/// our own storage (retried through the queue like any other store error).
#[derive(Debug)]
pub enum FetchError {
    Remote(Reason),
    Store(StoreError),
}

impl From<Reason> for FetchError {
    fn from(reason: Reason) -> FetchError {
        FetchError::Remote(reason)
    }
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> FetchError {
        FetchError::Store(e)
    }
}

#[async_trait]
pub trait Catalog: Send + Sync {
    /// Lists one page of the source's resources starting at `cursor` (`None` = the first
    /// page); with `since`, only those changed since then, where the protocol lists
    /// incrementally ([`Protocol::lists_incrementally`]).
    async fn list_page(
        &self,
        remote: &mut Remote<'_>,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, Reason>;

    /// Fetches one resource's metadata document.
    async fn fetch(
        &self,
        ctx: &mut FetchContext<'_>,
        resource_id: &str,
    ) -> Result<Fetched, FetchError>;

    /// Maps the fetched document onto the common record model.
    fn normalize(
        &self,
        source: &SourceSnapshot,
        resource_id: &str,
        fetched: &Fetched,
    ) -> Result<Record, Reason>;
}

/// A remote for protocol unit tests: answers every request with one body and keeps the URLs.
#[cfg(test)]
pub(crate) mod recorded {
    use super::*;
    use crate::http::Transport;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    pub struct Recorder {
        pub urls: Mutex<Vec<String>>,
        body: &'static str,
    }

    #[async_trait]
    impl Transport for Recorder {
        async fn get(&self, url: &str) -> Result<Response, Reason> {
            self.urls.lock().unwrap().push(url.to_string());
            Ok(Response {
                status: 200,
                content_type: None,
                body: Bytes::from_static(self.body.as_bytes()),
                retry_after: None,
            })
        }
    }

    /// A source of `protocol` at `base_url` with protocol options `options` (a JSON object).
    pub fn source(
        protocol: Protocol,
        base_url: &str,
        options: serde_json::Value,
    ) -> SourceSnapshot {
        SourceSnapshot {
            id: "test".into(),
            protocol,
            base_url: base_url.into(),
            internal: false,
            options: crate::model::SourceOptions {
                protocol: ProtocolOptions(options.as_object().cloned().unwrap_or_default()),
                ..Default::default()
            },
        }
    }

    /// Lists one page of `source` against a server answering `body`; returns the page and
    /// every URL requested.
    pub async fn list_one_page(
        source: &SourceSnapshot,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
        body: &'static str,
    ) -> (Result<ListingPage, Reason>, Vec<String>) {
        let recorder = Arc::new(Recorder {
            urls: Mutex::new(Vec::new()),
            body,
        });
        let http = HttpClient::over(recorder.clone(), Duration::from_secs(5), 1 << 20);
        let catalog = open(source).expect("the test's options are valid");
        let mut requests = Vec::new();
        let mut remote = Remote {
            http: &http,
            source,
            requests: &mut requests,
        };
        let page = catalog.list_page(&mut remote, cursor, since).await;
        let urls = recorder.urls.lock().unwrap().clone();
        (page, urls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SourceOptions, SourceSpec};

    #[test]
    fn every_registered_name_reads_back_as_its_protocol() {
        for protocol in Protocol::ALL {
            let json = serde_json::to_string(protocol).unwrap();
            assert_eq!(json, format!("\"{}\"", protocol.as_str()));
            assert_eq!(serde_json::from_str::<Protocol>(&json).unwrap(), *protocol);
            assert_eq!(Protocol::parse(protocol.as_str()), Some(*protocol));
        }
        let e = serde_json::from_str::<Protocol>("\"gopher\"").unwrap_err();
        assert!(e.to_string().contains("oai-pmh"), "{e}");
    }

    fn spec(
        protocol: &str,
        options: &str,
    ) -> Result<crate::model::Source, crate::model::ConfigError> {
        SourceSpec::from_json(&format!(
            r#"{{"id":"s","protocol":"{protocol}","base_url":"https://h.example/x","schedule":"rate(1 day)","options":{options}}}"#
        ))
    }

    #[test]
    fn a_protocol_takes_its_own_options_and_refuses_another_protocols() {
        let source = spec(
            "oai-pmh",
            r#"{"set":"physical-oceanography","incremental":true}"#,
        )
        .unwrap();
        assert!(source.options.incremental);
        assert_eq!(
            source.options.protocol.0.get("set"),
            Some(&serde_json::json!("physical-oceanography"))
        );
        let e = spec("erddap", r#"{"set":"physical-oceanography"}"#).unwrap_err();
        assert_eq!(e.field, "options.set", "{e}");
        let e = spec("ckan", r#"{"fq":17}"#).unwrap_err();
        assert_eq!(e.field, "options.fq", "{e}");
        let e = spec("ckan", r#"{"colour":"red"}"#).unwrap_err();
        assert_eq!(e.field, "options.colour", "{e}");
        assert!(spec("ckan", r#"{"fq":"organization:noaa-gov"}"#).is_ok());
        // A snapshot carries them: what the work messages hold opens the same catalog.
        let snapshot: SourceSnapshot = (&source).into();
        let json = serde_json::to_string(&snapshot).unwrap();
        assert!(json.contains(r#""set":"physical-oceanography""#), "{json}");
        let back: SourceSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(
            SourceOptions::default().protocol,
            ProtocolOptions::default()
        );
    }
}

//! Remote catalog protocols. Each lives in its own folder and implements [`Catalog`]; the
//! pipeline only ever talks to this trait, so adding a protocol touches one folder and the
//! match in [`catalog_for`].

pub mod arcgis;
pub mod ckan;
mod common;
pub mod csw;
pub mod dcat;
pub mod erddap;
pub mod geonode;
pub mod oai;

pub use common::{expect_success, geojson_bbox, geojson_value_bbox, plain_text};

use crate::http::{HttpClient, RequestLog};
use crate::messages::SourceRef;
use crate::model::{Protocol, Reason, Record};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub resource_ids: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
    /// How many resources the server says the whole listing holds (`count`,
    /// `numberOfRecordsMatched`, `completeListSize`, `total`), when it says. Checked against
    /// what was gathered once the listing ends.
    pub expected_total: Option<u64>,
    /// Ids the server lists as deleted (OAI-PMH `status="deleted"` headers): part of its
    /// announced total, not harvested.
    pub deleted: Vec<String>,
    /// Documents that came whole with the listing (data.json): (id, the dataset's JSON). The
    /// pipeline keeps them beside the session for the harvester to read instead of fetching.
    pub staged: Vec<(String, Bytes)>,
    /// The server declares it keeps track of deletions (OAI-PMH `deletedRecord` is
    /// `transient` or `persistent`), so `deleted` may be acted on at once.
    pub deletions_declared: bool,
    /// Paging problems the protocol itself noticed on this page (a `nextRecord` behind the
    /// start, fewer records than announced). Any problem makes the listing incomplete.
    pub problems: Vec<String>,
}

/// A resource's metadata as the server sent it.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub body: Bytes,
    pub content_type: &'static str,
}

#[async_trait]
pub trait Catalog: Send + Sync {
    /// File extension of the raw copy kept beside each record (`json`, `xml`).
    fn raw_extension(&self) -> &'static str;

    /// Whether the listing hands over each resource's document ([`Listing::staged`]), so
    /// the harvester reads it from the session instead of calling [`Catalog::fetch`].
    fn stages_documents(&self) -> bool {
        false
    }

    /// Whether [`Catalog::list_page`] honours `since` (lists only what changed).
    fn incremental(&self) -> bool {
        false
    }

    /// Lists one page of the source's resources starting at `cursor` (`None` = the first
    /// page); with `since`, only those changed since then, where the protocol allows.
    async fn list_page(
        &self,
        http: &HttpClient,
        source: &SourceRef,
        cursor: Option<&str>,
        since: Option<DateTime<Utc>>,
        log: &mut Vec<RequestLog>,
    ) -> Result<Listing, Reason>;

    /// Fetches one resource's metadata document.
    async fn fetch(
        &self,
        http: &HttpClient,
        source: &SourceRef,
        resource_id: &str,
        log: &mut Vec<RequestLog>,
    ) -> Result<Fetched, Reason>;

    /// Maps the fetched document onto the common record model.
    fn normalize(
        &self,
        source: &SourceRef,
        resource_id: &str,
        fetched: &Fetched,
    ) -> Result<Record, Reason>;
}

pub fn catalog_for(protocol: Protocol) -> &'static dyn Catalog {
    match protocol {
        Protocol::Erddap => &erddap::Erddap,
        Protocol::Ckan => &ckan::Ckan,
        Protocol::Csw => &csw::Csw,
        Protocol::GeoNode => &geonode::GeoNode,
        Protocol::ArcGis => &arcgis::ArcGis,
        Protocol::Dcat => &dcat::Dcat,
        Protocol::OaiPmh => &oai::OaiPmh,
    }
}

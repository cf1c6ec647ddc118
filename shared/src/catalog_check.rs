//! `check`: can Trawl harvest this source, and how long would it take? Lists the catalog
//! through the source's protocol adapter and fetches one resource, exactly as a session
//! would, but writes nothing anywhere.

use crate::messages::SourceSnapshot;
use crate::model::Reason;
use crate::pipeline::Services;
use crate::protocols::{Entry, FetchContext, FetchError, Remote};
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub source_id: String,
    /// Whether the listing's first page could be read.
    pub reachable: bool,
    pub pages_listed: u32,
    /// Distinct resources on the pages listed (after the source's include/exclude filter).
    pub resources_listed: u64,
    /// What the server announces for the whole listing, when it does.
    pub expected_total: Option<u64>,
    /// The listing went on beyond `max_pages`.
    pub listing_truncated: bool,
    pub listing_seconds: f64,
    /// One resource fetched and normalized: its id and how long it took.
    pub sample_resource: Option<String>,
    pub sample_fetch_seconds: Option<f64>,
    /// Why the listing or the sample fetch failed.
    pub error: Option<String>,
    /// Listing time for every page plus one fetch per resource at `concurrency` at once.
    pub estimated_seconds: Option<f64>,
}

/// Lists at most `max_pages` pages and fetches the first resource listed.
pub async fn check_source(
    svc: &Services,
    source: &SourceSnapshot,
    max_pages: u32,
    concurrency: u32,
) -> CheckReport {
    let mut report = CheckReport {
        source_id: source.id.clone(),
        reachable: false,
        pages_listed: 0,
        resources_listed: 0,
        expected_total: None,
        listing_truncated: false,
        listing_seconds: 0.0,
        sample_resource: None,
        sample_fetch_seconds: None,
        error: None,
        estimated_seconds: None,
    };
    let catalog = match crate::protocols::open(source) {
        Ok(catalog) => catalog,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    let mut ids = std::collections::BTreeSet::new();
    // The first listed resource's document when the listing delivers documents whole: the
    // sample fetch reads it as a session's fetch would read it from the session.
    let mut inline: HashMap<String, Bytes> = HashMap::new();
    let mut cursor: Option<String> = None;
    let started = Instant::now();
    loop {
        let mut log = Vec::new();
        let mut remote = Remote {
            http: &svc.http,
            source,
            requests: &mut log,
        };
        match catalog
            .list_page(&mut remote, cursor.as_deref(), None)
            .await
        {
            Ok(listing) => {
                report.reachable = true;
                report.pages_listed += 1;
                report.expected_total = listing.expected_total.or(report.expected_total);
                for entry in listing.entries {
                    match entry {
                        Entry::Listed(id) if source.options.selects(&id) => {
                            ids.insert(id);
                        }
                        Entry::Inline { id, document } if source.options.selects(&id) => {
                            if inline.is_empty() {
                                inline.insert(id.clone(), document);
                            }
                            ids.insert(id);
                        }
                        _ => {}
                    }
                }
                match listing.next_cursor {
                    Some(next)
                        if report.pages_listed < max_pages && Some(&next) != cursor.as_ref() =>
                    {
                        cursor = Some(next)
                    }
                    Some(_) => {
                        report.listing_truncated = true;
                        break;
                    }
                    None => break,
                }
            }
            Err(reason) => {
                report.error = Some(format!(
                    "listing page {}: {reason}",
                    report.pages_listed + 1
                ));
                break;
            }
        }
    }
    report.listing_seconds = started.elapsed().as_secs_f64();
    report.resources_listed = ids.len() as u64;

    if report.error.is_none() {
        // An inline listing's sample is its first document; otherwise the first id.
        let sample = inline.keys().next().or(ids.iter().next()).cloned();
        if let Some(id) = &sample {
            let started = Instant::now();
            let mut log = Vec::new();
            let mut ctx = FetchContext {
                remote: Remote {
                    http: &svc.http,
                    source,
                    requests: &mut log,
                },
                inline: &inline,
            };
            let fetched: Result<_, Reason> = match catalog.fetch(&mut ctx, id).await {
                Ok(f) => catalog.normalize(source, id, &f),
                Err(FetchError::Remote(reason)) => Err(reason),
                Err(FetchError::Store(e)) => Err(Reason::new(
                    crate::model::ReasonCode::StorageError,
                    e.to_string(),
                )),
            };
            report.sample_resource = Some(id.clone());
            match fetched {
                Ok(_) => report.sample_fetch_seconds = Some(started.elapsed().as_secs_f64()),
                Err(reason) => report.error = Some(format!("fetching {id}: {reason}")),
            }
        }
    }
    if report.error.is_none() {
        let total = report
            .expected_total
            .unwrap_or(report.resources_listed)
            .max(report.resources_listed);
        let per_page = report.listing_seconds / f64::from(report.pages_listed.max(1));
        let pages = if report.listing_truncated && report.resources_listed > 0 {
            (total as f64 / (report.resources_listed as f64 / f64::from(report.pages_listed)))
                .ceil()
        } else {
            f64::from(report.pages_listed)
        };
        let fetch = report.sample_fetch_seconds.unwrap_or(0.0);
        let fetching =
            Duration::from_secs_f64(fetch * total as f64 / f64::from(concurrency.max(1)));
        report.estimated_seconds = Some(per_page * pages + fetching.as_secs_f64());
    }
    report
}

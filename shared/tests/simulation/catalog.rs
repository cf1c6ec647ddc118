//! The remote catalogs of a history: CKAN sites answering the action API the way CKAN 2.x
//! does (`package_search` sorted by id with a silent `rows` cap, `count`, Solr `fq` ranges on
//! `metadata_modified`; `package_show`, a 404 `Not Found Error` for a package that is gone),
//! with the faults deployed servers show: 5xx pages from the proxy, 503 with `Retry-After`,
//! stalls past the client's timeout, bodies cut short, and a catalog that changes between
//! two pages of one listing.

use super::world::World;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use trawl::http::{Response, Transport};
use trawl::model::Reason;

#[derive(Clone, Debug)]
pub struct Package {
    pub version: u32,
    pub modified: DateTime<Utc>,
}

/// One site's packages and what happened to them, for the checks.
#[derive(Default)]
pub struct Site {
    pub packages: BTreeMap<String, Package>,
    pub rows_cap: usize,
    /// (when, package id, present after): every addition and removal.
    pub changes: Vec<(Instant, String, bool)>,
    /// Requests being answered now, the most seen at once, and the shortest time between
    /// two arrivals: what the source's politeness limits promise the server.
    pub in_flight: u32,
    pub most_in_flight: u32,
    pub last_arrival: Option<Instant>,
    pub shortest_gap: Option<Duration>,
}

impl Site {
    /// Whether `id` was in the catalog for the whole of `[from, to]`.
    pub fn present_throughout(&self, id: &str, from: Instant, to: Instant) -> bool {
        let mut present_at_from = false;
        for (at, changed, present) in &self.changes {
            if changed != id {
                continue;
            }
            if *at <= from {
                present_at_from = *present;
            } else if *at <= to && !present {
                return false;
            }
        }
        present_at_from
    }
}

pub struct Remote {
    world: Arc<World>,
    pub sites: Mutex<HashMap<String, Site>>,
    pub http_timeout: Duration,
    pub clock: Arc<dyn trawl::ports::Clock>,
}

impl Remote {
    pub fn new(
        world: Arc<World>,
        http_timeout: Duration,
        clock: Arc<dyn trawl::ports::Clock>,
    ) -> Remote {
        Remote {
            world,
            sites: Mutex::default(),
            http_timeout,
            clock,
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Site>> {
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, host: &str, id: &str) {
        let now = self.clock.now();
        let mut sites = self.lock();
        let site = sites.entry(host.to_string()).or_default();
        let version = site.packages.get(id).map_or(1, |p| p.version + 1);
        site.packages.insert(
            id.to_string(),
            Package {
                version,
                modified: now,
            },
        );
        site.changes.push((Instant::now(), id.to_string(), true));
        drop(sites);
        self.world.trace(format!("catalog {host}: {id} added"));
    }

    pub fn remove(&self, host: &str, id: &str) {
        let mut sites = self.lock();
        let site = sites.entry(host.to_string()).or_default();
        if site.packages.remove(id).is_some() {
            site.changes.push((Instant::now(), id.to_string(), false));
            drop(sites);
            self.world.trace(format!("catalog {host}: {id} removed"));
        }
    }

    pub fn change(&self, host: &str, id: &str) {
        let now = self.clock.now();
        let mut sites = self.lock();
        if let Some(p) = sites.get_mut(host).and_then(|s| s.packages.get_mut(id)) {
            p.version += 1;
            p.modified = now;
            let v = p.version;
            drop(sites);
            self.world
                .trace(format!("catalog {host}: {id} changed to v{v}"));
        }
    }

    /// A remote fault for this request, if the seed draws one.
    async fn fault(&self, url: &str) -> Option<Response> {
        let f = &self.world.faults;
        let roll = self.world.range(0..1_000_000) as f64 / 1_000_000.0;
        let mut edge = f.remote_5xx;
        if roll < edge {
            self.world.inject("remote_5xx", url.to_string());
            return Some(html(502, "Bad Gateway"));
        }
        edge += f.remote_retry_after;
        if roll < edge {
            let secs = self.world.range(1..40) as u32;
            self.world
                .inject("remote_retry_after", format!("{url} (Retry-After {secs})"));
            let mut r = html(503, "Service Unavailable");
            r.retry_after = Some(secs);
            return Some(r);
        }
        edge += f.remote_stall;
        if roll < edge {
            self.world.inject("remote_stall", url.to_string());
            tokio::time::sleep(self.http_timeout * 3).await;
            return None;
        }
        None
    }
}

fn html(status: u16, title: &str) -> Response {
    Response {
        status,
        content_type: Some("text/html".into()),
        body: Bytes::from(format!(
            "<html><head><title>{status} {title}</title></head><body><h1>{title}</h1></body></html>"
        )),
        retry_after: None,
    }
}

fn json_response(status: u16, body: serde_json::Value) -> Response {
    Response {
        status,
        content_type: Some("application/json;charset=utf-8".into()),
        body: Bytes::from(body.to_string()),
        retry_after: None,
    }
}

fn package_json(host: &str, id: &str, p: &Package) -> serde_json::Value {
    json!({
        "id": id,
        "name": format!("dataset-{id}"),
        "title": format!("Dataset {id}"),
        "notes": format!("Observations of {id}, revision {}.", p.version),
        "metadata_modified": p.modified.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "license_id": "CC-BY-4.0",
        "organization": {"title": format!("Observatory of {host}")},
        "tags": [{"name": "ocean"}, {"name": format!("v{}", p.version)}],
        "resources": [{"url": format!("https://{host}/data/{id}.csv")}],
        "extras": [],
    })
}

/// Counts a request in flight at its site until it is answered or abandoned (a client's
/// timeout, a crashed invocation).
struct InFlight<'a> {
    remote: &'a Remote,
    host: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(site) = self.remote.lock().get_mut(&self.host) {
            site.in_flight -= 1;
        }
    }
}

impl Remote {
    fn arrive(&self, url: &str) -> InFlight<'_> {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let now = Instant::now();
        let mut sites = self.lock();
        let site = sites.entry(host.clone()).or_default();
        site.in_flight += 1;
        site.most_in_flight = site.most_in_flight.max(site.in_flight);
        if let Some(last) = site.last_arrival {
            let gap = now - last;
            site.shortest_gap = Some(site.shortest_gap.map_or(gap, |g| g.min(gap)));
        }
        site.last_arrival = Some(now);
        drop(sites);
        InFlight { remote: self, host }
    }
}

#[async_trait]
impl Transport for Remote {
    async fn get(&self, url: &str) -> Result<Response, Reason> {
        let _in_flight = self.arrive(url);
        tokio::time::sleep(Duration::from_millis(self.world.range(5..250))).await;
        if let Some(fault) = self.fault(url).await {
            return Ok(fault);
        }
        let parsed = url::Url::parse(url).expect("the adapters build valid URLs");
        let host = parsed.host_str().unwrap_or_default().to_string();
        let query: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
        let mut response = {
            let sites = self.lock();
            let Some(site) = sites.get(&host) else {
                return Ok(html(404, "Not Found"));
            };
            match parsed.path() {
                "/api/3/action/package_search" => {
                    let rows: usize = query.get("rows").and_then(|r| r.parse().ok()).unwrap_or(10);
                    let start: usize = query.get("start").and_then(|r| r.parse().ok()).unwrap_or(0);
                    let since = query
                        .get("fq")
                        .and_then(|fq| fq.strip_prefix("metadata_modified:["))
                        .and_then(|r| r.split(" TO ").next())
                        .and_then(|t| t.parse::<DateTime<Utc>>().ok());
                    let matching: Vec<(&String, &Package)> = site
                        .packages
                        .iter()
                        .filter(|(_, p)| since.is_none_or(|s| p.modified >= s))
                        .collect();
                    let results: Vec<serde_json::Value> = matching
                        .iter()
                        .skip(start)
                        .take(rows.min(site.rows_cap))
                        .map(|(id, p)| package_json(&host, id, p))
                        .collect();
                    json_response(
                        200,
                        json!({"help": format!("https://{host}/api/3/action/help_show?name=package_search"),
                            "success": true,
                            "result": {"count": matching.len(), "results": results, "sort": "id asc"}}),
                    )
                }
                "/api/3/action/package_show" => {
                    let id = query.get("id").cloned().unwrap_or_default();
                    match site.packages.get(&id) {
                        Some(p) => json_response(
                            200,
                            json!({"success": true, "result": package_json(&host, &id, p)}),
                        ),
                        None => json_response(
                            404,
                            json!({"success": false,
                                "error": {"__type": "Not Found Error", "message": "Not found"}}),
                        ),
                    }
                }
                _ => html(404, "Not Found"),
            }
        };
        if response.status == 200 && self.world.chance(self.world.faults.remote_cut) {
            self.world.inject("remote_cut", url.to_string());
            let cut = response.body.len() / 3;
            response.body = response.body.slice(..cut);
        }
        Ok(response)
    }
}

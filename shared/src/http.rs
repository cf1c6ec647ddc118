//! HTTP for talking to remote catalogs: timeouts below the function's, a bounded number of
//! redirects (to http and https only), a size cap enforced while the body streams in, no requests to private or
//! cloud-metadata addresses (unless the source is marked internal), and errors mapped to
//! reasons.

use crate::messages::SourceSnapshot;
use crate::model::{Reason, ReasonCode};
use crate::politeness::{self, Limits, RequestGate};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEFAULT_MAX_BODY_BYTES: usize = 50 * 1024 * 1024;
pub const MAX_REDIRECTS: usize = 5;

#[derive(Clone)]
pub struct HttpClient {
    /// For ordinary sources: resolves names through [`PublicOnly`] and checks every URL,
    /// redirects included, so no request reaches a private or metadata address.
    public: reqwest::Client,
    /// For sources explicitly marked internal (fixtures, the demo, on-premises catalogs).
    internal: reqwest::Client,
    max_body_bytes: usize,
    timeout: Duration,
    /// Where per-source politeness limits are enforced; none = no shared limits.
    gate: Option<Arc<dyn RequestGate>>,
    /// Answers requests in place of the network (the deterministic simulation's remote
    /// catalogs); the timeout and the size cap still apply.
    transport: Option<Arc<dyn Transport>>,
    /// At most this many requests at once through this client (the embedded run's
    /// `--concurrency`); a slot is held from the request to its body read, not longer.
    request_slots: Option<Arc<tokio::sync::Semaphore>>,
}

/// A remote that answers in-process, so a simulated history needs no sockets and its
/// stalls last virtual time (`tokio::time`).
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    async fn get(&self, url: &str) -> Result<Response, Reason>;
}

/// A response of any status, for the protocol to interpret (ERDDAP says "not found" with a
/// 500 sometimes).
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// `Retry-After` in seconds (delta-seconds or an HTTP date), when the server sent one.
    pub retry_after: Option<u32>,
}

impl Response {
    /// The reason for an unexpected status, carrying the server's `Retry-After` (honoured on
    /// 429 and 503, the statuses that define it).
    pub fn status_reason(&self, message: impl Into<String>) -> Reason {
        Reason {
            retry_after_secs: self
                .retry_after
                .filter(|_| matches!(self.status, 429 | 503)),
            ..Reason::http(self.status, message)
        }
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
fn parse_retry_after(value: &str) -> Option<u32> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u32>() {
        return Some(secs);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(secs.clamp(0, i64::from(u32::MAX)) as u32)
}

/// What one request did, for the resource's log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestLog {
    pub url: String,
    pub status: Option<u16>,
    pub millis: u64,
    pub bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HttpClient {
    pub fn new(timeout: Duration, max_body_bytes: usize) -> HttpClient {
        // rustls on ring for the process (the workspace manifest says why); a second call
        // finds it installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!(
                    "Trawl/",
                    env!("CARGO_PKG_VERSION"),
                    " (metadata harvester)"
                ))
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .read_timeout(timeout)
                .timeout(timeout)
                .tcp_nodelay(true)
                .pool_max_idle_per_host(32)
                // Catalogs compress JSON and XML 5-10x. Bodies arrive decompressed, so the
                // size cap below counts what the server's content is, and a small
                // compressed body that expands past it (a bomb) is refused as it streams;
                // the raw copy kept is the content, not its transfer encoding.
                .gzip(true)
                .deflate(true)
                .brotli(true)
        };
        let public = builder()
            .dns_resolver(Arc::new(PublicOnly))
            .redirect(redirect_policy(false))
            .build()
            .expect("the HTTP client configuration is valid");
        let internal = builder()
            .redirect(redirect_policy(true))
            .build()
            .expect("the HTTP client configuration is valid");
        HttpClient {
            public,
            internal,
            max_body_bytes,
            timeout,
            gate: None,
            transport: None,
            request_slots: None,
        }
    }

    /// Sends every request to `transport` instead of the network.
    pub fn over(
        transport: Arc<dyn Transport>,
        timeout: Duration,
        max_body_bytes: usize,
    ) -> HttpClient {
        HttpClient {
            transport: Some(transport),
            ..HttpClient::new(timeout, max_body_bytes)
        }
    }

    /// A copy of this client (same connections) that sends at most `slots` requests at once.
    pub fn with_request_slots(&self, slots: usize) -> HttpClient {
        HttpClient {
            request_slots: Some(Arc::new(tokio::sync::Semaphore::new(slots.max(1)))),
            ..self.clone()
        }
    }

    /// Enforces sources' politeness limits through `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn RequestGate>) -> HttpClient {
        self.gate = Some(gate);
        self
    }

    /// GETs `url` for `source`, reading at most the size cap. Transport failures become
    /// reasons; every status comes back as a [`Response`].
    pub async fn get(
        &self,
        source: &SourceSnapshot,
        url: &str,
        log: &mut Vec<RequestLog>,
    ) -> Result<Response, Reason> {
        let limits = Limits::from(&source.options);
        let permit = match &self.gate {
            Some(gate) if !limits.is_unlimited() => {
                // Waiting for a slot may take as long as a request: both stay well inside
                // the function's timeout.
                let lease = self.timeout + Duration::from_secs(5);
                match politeness::acquire(gate.as_ref(), &source.id, &limits, lease, self.timeout)
                    .await
                {
                    Ok(Some(permit)) => Some(permit),
                    Ok(None) => {
                        return Err(Reason::new(
                            ReasonCode::Throttled,
                            format!(
                                "no room within the source's limits ({limits:?}) in {:?}",
                                self.timeout
                            ),
                        ))
                    }
                    Err(e) => {
                        return Err(Reason::new(
                            ReasonCode::Throttled,
                            format!("politeness limits could not be checked: {e}"),
                        ))
                    }
                }
            }
            _ => None,
        };
        // After the politeness wait: a slot is for a request, not for waiting on a source's
        // limits.
        let slot = match &self.request_slots {
            Some(slots) => Some(
                slots
                    .acquire()
                    .await
                    .expect("request slots are never closed"),
            ),
            None => None,
        };
        let started = Instant::now();
        let result = self.get_inner(source.internal, url).await;
        drop(slot);
        if let (Some(gate), Some(permit)) = (&self.gate, &permit) {
            if let Err(e) = gate.release(permit).await {
                // The lease runs out on its own.
                tracing::warn!(source = %source.id, error = %e, "could not release a request slot");
            }
        }
        let millis = started.elapsed().as_millis() as u64;
        log.push(match &result {
            Ok(r) => RequestLog {
                url: url.to_string(),
                status: Some(r.status),
                millis,
                bytes: r.body.len(),
                error: None,
            },
            Err(e) => RequestLog {
                url: url.to_string(),
                status: e.http_status,
                millis,
                bytes: 0,
                error: Some(e.to_string()),
            },
        });
        result
    }

    async fn get_inner(&self, internal: bool, url: &str) -> Result<Response, Reason> {
        if let Some(transport) = &self.transport {
            let response = tokio::time::timeout(self.timeout, transport.get(url))
                .await
                .map_err(|_| {
                    Reason::new(
                        ReasonCode::Timeout,
                        format!("no complete answer within {:?}", self.timeout),
                    )
                })??;
            if response.body.len() > self.max_body_bytes {
                return Err(too_large(self.max_body_bytes));
            }
            return Ok(response);
        }
        let client = if internal {
            &self.internal
        } else {
            // Names are checked when resolved; an address written into the URL is checked here.
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| Reason::new(ReasonCode::HttpError, format!("bad URL {url:?}: {e}")))?;
            if let Some(ip) = literal_ip(&parsed).filter(|ip| blocked(*ip)) {
                return Err(blocked_reason(ip));
            }
            &self.public
        };
        match self.read(client, url, false).await {
            // A server whose compression is broken (pycsw 2.6's WSGI sends the length of the
            // uncompressed body with the compressed one) is asked once more for the plain
            // content, which it then sends whole.
            Err(Unread::Undecodable(e)) => {
                tracing::warn!(%url, error = %e, "a compressed body did not decode; asked again uncompressed");
                self.read(client, url, true)
                    .await
                    .map_err(Unread::into_reason)
            }
            other => other.map_err(Unread::into_reason),
        }
    }

    /// One GET, its body read under the size cap; `identity` asks for it uncompressed.
    async fn read(
        &self,
        client: &reqwest::Client,
        url: &str,
        identity: bool,
    ) -> Result<Response, Unread> {
        let mut request = client.get(url);
        if identity {
            request = request.header(reqwest::header::ACCEPT_ENCODING, "identity");
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| Unread::Failed(transport_reason(e)))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if let Some(len) = response.content_length() {
            if len as usize > self.max_body_bytes {
                return Err(Unread::Failed(too_large(self.max_body_bytes)));
            }
        }
        let mut body = BytesMut::with_capacity(
            response
                .content_length()
                .map_or(16 * 1024, |len| len as usize),
        );
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) if e.is_decode() && !identity => return Err(Unread::Undecodable(e)),
                Err(e) => return Err(Unread::Failed(transport_reason(e))),
            };
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(Unread::Failed(too_large(self.max_body_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            content_type,
            body: body.freeze(),
            retry_after,
        })
    }
}

/// Why a body was not read: its compression did not decode, or anything else.
enum Unread {
    Undecodable(reqwest::Error),
    Failed(Reason),
}

impl Unread {
    fn into_reason(self) -> Reason {
        match self {
            Unread::Undecodable(e) => transport_reason(e),
            Unread::Failed(reason) => reason,
        }
    }
}

fn too_large(cap: usize) -> Reason {
    Reason::new(
        ReasonCode::TooLarge,
        format!("response exceeds the {cap}-byte cap"),
    )
}

fn transport_reason(e: reqwest::Error) -> Reason {
    // Our own refusals travel inside reqwest's error chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refusal) = err.downcast_ref::<Refusal>() {
            return refusal.reason();
        }
        source = err.source();
    }
    if e.is_timeout() {
        Reason::new(ReasonCode::Timeout, e.to_string())
    } else if e.is_redirect() {
        Reason::new(ReasonCode::HttpError, format!("too many redirects: {e}"))
    } else if e.is_connect() {
        Reason::new(ReasonCode::ConnectError, e.to_string())
    } else if e.is_body() || e.is_decode() {
        // A connection cut mid-body: a transient network failure, worth a retry.
        Reason::new(ReasonCode::ConnectError, format!("body interrupted: {e}"))
    } else {
        Reason::new(ReasonCode::ConnectError, e.to_string())
    }
}

fn blocked_reason(ip: IpAddr) -> Reason {
    Reason::new(
        ReasonCode::BlockedAddress,
        format!("{ip} is a private, loopback, link-local or metadata address; mark the source internal to allow it"),
    )
}

/// A request we decline to send, raised inside reqwest (its redirect policy, our resolver)
/// and read back out of its error chain by [`transport_reason`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("{0} is not a public address")]
    BlockedAddress(IpAddr),
    #[error("unsupported redirect scheme {0}")]
    UnsupportedScheme(String),
}

impl Refusal {
    fn reason(&self) -> Reason {
        match self {
            Refusal::TooManyRedirects => Reason::new(ReasonCode::HttpError, self.to_string()),
            Refusal::BlockedAddress(ip) => blocked_reason(*ip),
            // The server sent us there on purpose, and will again: nothing to retry.
            Refusal::UnsupportedScheme(_) => Reason::new(
                ReasonCode::BlockedAddress,
                format!("{self}: only http and https are followed"),
            ),
        }
    }
}

/// Where a redirect may lead after `followed` redirects: http(s) only, whatever the source
/// (`gopher://` and `file://` are how a redirect reaches what a URL alone cannot), and for
/// an ordinary source no private address written into the URL (names are checked when
/// resolved).
fn redirect_refusal(next: &reqwest::Url, followed: usize, internal: bool) -> Option<Refusal> {
    if followed >= MAX_REDIRECTS {
        return Some(Refusal::TooManyRedirects);
    }
    if !matches!(next.scheme(), "http" | "https") {
        return Some(Refusal::UnsupportedScheme(next.scheme().to_string()));
    }
    match literal_ip(next) {
        Some(ip) if !internal && blocked(ip) => Some(Refusal::BlockedAddress(ip)),
        _ => None,
    }
}

fn redirect_policy(internal: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match redirect_refusal(attempt.url(), attempt.previous().len(), internal) {
            Some(refusal) => attempt.error(refusal),
            None => attempt.follow(),
        }
    })
}

fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Addresses a harvester must never reach on behalf of an ordinary source: loopback, private
/// ranges, link-local (where cloud metadata lives, 169.254.169.254), unspecified, and unique
/// local IPv6 — also when written as IPv4-mapped IPv6.
pub fn blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64/10
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return blocked(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        }
    }
}

/// A resolver that drops every address [`blocked`] refuses, so a public-looking name that
/// resolves to a private address (or a redirect to one) fails to connect.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                addrs.iter().copied().filter(|a| !blocked(a.ip())).collect();
            match (allowed.is_empty(), addrs.first()) {
                (true, Some(first)) => Err(Box::new(Refusal::BlockedAddress(first.ip()))
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_both_forms_and_kept_only_where_it_is_defined() {
        assert_eq!(parse_retry_after(" 120 "), Some(120));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        assert!(parse_retry_after(&soon).is_some_and(|s| (85..=90).contains(&s)));
        assert_eq!(parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("later"), None);
        let response = |status| Response {
            status,
            content_type: None,
            body: Bytes::new(),
            retry_after: Some(30),
        };
        assert_eq!(response(503).status_reason("x").retry_after_secs, Some(30));
        assert_eq!(response(429).status_reason("x").retry_after_secs, Some(30));
        assert_eq!(response(500).status_reason("x").retry_after_secs, None);
    }

    #[test]
    fn a_redirect_leads_only_to_http_and_for_an_ordinary_source_only_to_public_addresses() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        for internal in [false, true] {
            assert_eq!(
                redirect_refusal(&url("https://data.example.org/x"), 0, internal),
                None
            );
            for (to, scheme) in [
                ("gopher://data.example.org:70/_x", "gopher"),
                ("ftp://data.example.org/pub", "ftp"),
                ("file:///etc/passwd", "file"),
            ] {
                let refusal = redirect_refusal(&url(to), 0, internal).unwrap();
                assert_eq!(refusal, Refusal::UnsupportedScheme(scheme.into()));
                let reason = refusal.reason();
                assert_eq!(reason.code, ReasonCode::BlockedAddress, "{reason}");
                assert!(!reason.retryable(), "{reason}");
            }
            assert_eq!(
                redirect_refusal(&url("https://data.example.org/x"), MAX_REDIRECTS, internal),
                Some(Refusal::TooManyRedirects)
            );
        }
        let metadata = url("http://169.254.169.254/latest/meta-data/");
        assert_eq!(
            redirect_refusal(&metadata, 0, false),
            Some(Refusal::BlockedAddress("169.254.169.254".parse().unwrap()))
        );
        assert_eq!(redirect_refusal(&metadata, 0, true), None);
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_blocked() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(blocked(ip.parse().unwrap()), "{ip} should be blocked");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "2001:4860:4860::8888",
            "100.128.0.1",
        ] {
            assert!(!blocked(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }
}

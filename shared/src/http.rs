//! HTTP for talking to remote catalogs: timeouts below the function's, a bounded number of
//! redirects, a size cap enforced while the body streams in, and errors mapped to reasons.

use crate::model::{Reason, ReasonCode};
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use std::time::{Duration, Instant};

pub const DEFAULT_MAX_BODY_BYTES: usize = 50 * 1024 * 1024;

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    max_body_bytes: usize,
}

/// A response of any status, for the protocol to interpret (ERDDAP says "not found" with a
/// 500 sometimes).
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// What one request did, for the resource's log.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
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
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "Trawl/",
                env!("CARGO_PKG_VERSION"),
                " (metadata harvester)"
            ))
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .read_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(32)
            .build()
            .expect("the HTTP client configuration is valid");
        HttpClient {
            client,
            max_body_bytes,
        }
    }

    /// GETs `url`, reading at most the size cap. Transport failures become reasons; every
    /// status comes back as a [`Response`].
    pub async fn get(&self, url: &str, log: &mut Vec<RequestLog>) -> Result<Response, Reason> {
        let started = Instant::now();
        let result = self.get_inner(url).await;
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

    async fn get_inner(&self, url: &str) -> Result<Response, Reason> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(transport_reason)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(len) = response.content_length() {
            if len as usize > self.max_body_bytes {
                return Err(too_large(self.max_body_bytes));
            }
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_reason)? {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(too_large(self.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            content_type,
            body: body.freeze(),
        })
    }
}

fn too_large(cap: usize) -> Reason {
    Reason::new(
        ReasonCode::TooLarge,
        format!("response exceeds the {cap}-byte cap"),
    )
}

fn transport_reason(e: reqwest::Error) -> Reason {
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

//! Why a resource failed, in one taxonomy for every protocol. Each code says whether trying
//! again later can help; the harvester retries only those that can.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonCode {
    /// The server says the resource does not exist (404, or ERDDAP's "no matching results").
    NotFound,
    /// Any other unexpected HTTP status; 5xx, 408 and 429 are retryable.
    HttpError,
    /// Connect, read or total timeout.
    Timeout,
    /// The connection failed (refused, reset, DNS).
    ConnectError,
    /// The body was larger than the configured cap.
    TooLarge,
    /// The body could not be parsed (malformed, truncated, wrong encoding or shape).
    ParseError,
    /// The URL, a redirect or a name resolved to a private, loopback, link-local or
    /// cloud-metadata address, and the source is not marked internal; or a redirect led to a
    /// scheme other than http(s).
    BlockedAddress,
    /// Retries ran out on a retryable error; `detail` holds the last one.
    RetriesExhausted,
    /// Still unharvested when the session's deadline passed (a lost message or page).
    Lost,
    /// Not harvested because an operator aborted the session.
    Aborted,
    /// The source's politeness limits (requests in flight, per second) had no room in time.
    Throttled,
    /// The harvested record could not be stored, and trying again would fail the same way
    /// (a key the store refuses, a store that refuses the request as such).
    StorageError,
    /// The source's configuration does not fit its server (an OAI-PMH `metadata_prefix` the
    /// repository does not offer): the operator has to change the source.
    ConfigError,
}

impl ReasonCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReasonCode::NotFound => "NOT_FOUND",
            ReasonCode::HttpError => "HTTP_ERROR",
            ReasonCode::Timeout => "TIMEOUT",
            ReasonCode::ConnectError => "CONNECT_ERROR",
            ReasonCode::TooLarge => "TOO_LARGE",
            ReasonCode::ParseError => "PARSE_ERROR",
            ReasonCode::BlockedAddress => "BLOCKED_ADDRESS",
            ReasonCode::RetriesExhausted => "RETRIES_EXHAUSTED",
            ReasonCode::Lost => "LOST",
            ReasonCode::Aborted => "ABORTED",
            ReasonCode::Throttled => "THROTTLED",
            ReasonCode::StorageError => "STORAGE_ERROR",
            ReasonCode::ConfigError => "CONFIG_ERROR",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub detail: String,
    /// The server's `Retry-After` (seconds) on a 429 or 503: when to ask again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u32>,
}

impl Reason {
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Reason {
        Reason {
            code,
            http_status: None,
            detail: truncate(detail.into(), 500),
            retry_after_secs: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Reason {
        Reason::new(ReasonCode::NotFound, detail)
    }

    pub fn http(status: u16, detail: impl Into<String>) -> Reason {
        Reason {
            http_status: Some(status),
            ..Reason::new(ReasonCode::HttpError, detail)
        }
    }

    pub fn parse(detail: impl Into<String>) -> Reason {
        Reason::new(ReasonCode::ParseError, detail)
    }

    /// The source's `field` does not fit its server; `detail` says what would.
    pub fn config(field: &str, detail: impl Into<String>) -> Reason {
        Reason::new(
            ReasonCode::ConfigError,
            format!("{field}: {}", detail.into()),
        )
    }

    /// Whether another attempt later may succeed.
    pub fn retryable(&self) -> bool {
        match self.code {
            ReasonCode::Timeout | ReasonCode::ConnectError | ReasonCode::Throttled => true,
            ReasonCode::HttpError => {
                matches!(self.http_status, Some(s) if s >= 500 || s == 408 || s == 429)
            }
            ReasonCode::NotFound
            | ReasonCode::TooLarge
            | ReasonCode::ParseError
            | ReasonCode::BlockedAddress
            | ReasonCode::RetriesExhausted
            | ReasonCode::Lost
            | ReasonCode::Aborted
            | ReasonCode::StorageError
            | ReasonCode::ConfigError => false,
        }
    }

    /// What the resource is counted with once retries have run out.
    pub fn exhausted(self, attempts: u32) -> Reason {
        if self.retryable() {
            Reason {
                code: ReasonCode::RetriesExhausted,
                http_status: self.http_status,
                detail: format!("after {attempts} attempts, last: {self}"),
                retry_after_secs: None,
            }
        } else {
            self
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.http_status {
            Some(s) => write!(f, "{} ({s}): {}", self.code, self.detail),
            None => write!(f, "{}: {}", self.code, self.detail),
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(Reason::http(503, "x").retryable());
        assert!(Reason::http(429, "x").retryable());
        assert!(!Reason::http(403, "x").retryable());
        assert!(!Reason::not_found("x").retryable());
        assert!(!Reason::parse("x").retryable());
        assert!(Reason::new(ReasonCode::Timeout, "x").retryable());
    }

    #[test]
    fn exhausted_retries_keep_the_last_error() {
        let r = Reason::http(500, "boom").exhausted(3);
        assert_eq!(r.code, ReasonCode::RetriesExhausted);
        assert_eq!(r.http_status, Some(500));
        assert!(
            r.detail.contains("3 attempts") && r.detail.contains("boom"),
            "{r}"
        );
        assert_eq!(
            Reason::not_found("x").exhausted(3).code,
            ReasonCode::NotFound
        );
    }

    #[test]
    fn long_details_are_truncated_on_a_char_boundary() {
        let r = Reason::parse("é".repeat(400));
        assert!(r.detail.len() <= 504);
        assert!(r.detail.ends_with('…'));
    }
}

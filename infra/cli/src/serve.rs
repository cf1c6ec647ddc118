//! `trawl serve`: the status API on localhost, over the embedded run's data directory or a
//! deployed stack, through the same handler the api function uses. It answers only requests
//! addressed to a loopback name: a page on another site can point its own name at 127.0.0.1
//! (DNS rebinding) and read whatever answers, but its requests still carry its own name.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use tokio::net::TcpListener;
use trawl::api::{handle, ApiRequest, DECIDE_HEADER};
use trawl::pipeline::Services;

/// Serves the API; `state`, for an embedded run's data directory, is committed after each
/// decision so it is on disk at once (not held open until the store's next group).
pub async fn serve(
    svc: Services,
    state: Option<Arc<trawl::local::DiskStore>>,
    port: u16,
) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    println!(
        "status API on http://{}/api/sources (OpenAPI: /api/openapi.json)",
        listener.local_addr()?
    );
    let bound = listener.local_addr()?;
    let svc = Arc::new(svc);
    loop {
        let (stream, _) = listener.accept().await?;
        let svc = svc.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let svc = svc.clone();
                let state = state.clone();
                async move {
                    let host = request
                        .uri()
                        .authority()
                        .map(|a| a.as_str())
                        .or_else(|| request.headers().get(HOST)?.to_str().ok());
                    Ok::<_, Infallible>(if answers_to(host, bound.ip()) {
                        let answered = answer(&svc, &request).await;
                        if request.method() == hyper::Method::POST {
                            if let Some(Err(e)) = state.as_ref().map(|s| s.commit()) {
                                eprintln!("could not commit the state database: {e}");
                            }
                        }
                        answered
                    } else {
                        misdirected()
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Whether a request naming `host` (its `Host` header, or the authority of an absolute
/// request target) is addressed to this server: `localhost`, `127.0.0.1`, `[::1]` or the
/// address it is bound to, with any port or none.
fn answers_to(host: Option<&str>, bound: IpAddr) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    literal.parse::<IpAddr>().is_ok_and(|ip| {
        ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
            || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
            || ip == bound
    })
}

fn misdirected() -> Response<Full<Bytes>> {
    Response::builder()
        .status(421)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"error": "misdirected request: this server answers only to localhost, 127.0.0.1 and [::1]"}"#,
        )))
        .expect("a valid response")
}

async fn answer(svc: &Services, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let response = handle(
        svc,
        &ApiRequest {
            method: request.method().as_str(),
            path: request.uri().path(),
            query,
            may_decide: request.headers().contains_key(DECIDE_HEADER),
        },
    )
    .await;
    let mut builder = Response::builder()
        .status(response.status)
        .header("content-type", response.content_type);
    for (name, value) in &response.headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_and_the_bound_address_are_answered() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        for host in [
            "localhost",
            "localhost:8080",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(answers_to(Some(host), loopback), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8080",
            "127.0.0.2:8080",
            "::1",
            "[::1",
            "localhost:",
            "localhost:80a",
            "",
        ] {
            assert!(!answers_to(Some(host), loopback), "{host}");
        }
        assert!(!answers_to(None, loopback), "no Host at all");
        let lan: IpAddr = "192.168.1.20".parse().unwrap();
        assert!(answers_to(Some("192.168.1.20:8080"), lan));
        assert!(!answers_to(Some("192.168.1.21:8080"), lan));
    }
}

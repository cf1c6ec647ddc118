//! `trawl serve`: the status API on localhost, over the embedded run's data directory or a
//! deployed stack, through the same handler the api function uses.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use trawl::api::{handle, ApiRequest};
use trawl::pipeline::Services;

pub async fn serve(svc: Services, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    println!(
        "status API on http://{}/api/sources (OpenAPI: /api/openapi.json)",
        listener.local_addr()?
    );
    let svc = Arc::new(svc);
    loop {
        let (stream, _) = listener.accept().await?;
        let svc = svc.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let svc = svc.clone();
                async move { Ok::<_, Infallible>(answer(&svc, &request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
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
        },
    )
    .await;
    Response::builder()
        .status(response.status)
        .header("content-type", response.content_type)
        .body(Full::new(Bytes::from(response.body)))
        .expect("a valid response")
}

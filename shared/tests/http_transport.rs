//! The HTTP client's transport: HTTP/2 where a server offers it (ALPN over TLS, as nginx and
//! Tomcat in front of catalogs do), and one kept-alive connection for a source's requests
//! rather than a handshake each. The functions build their client once per process, so a
//! warm invocation reuses the connections the previous one opened.
//!
//! The TLS server's certificate is signed by a test CA (`tests/tls/ca.pem`) that this test
//! binary trusts through `SSL_CERT_FILE`, as an operator's machine would trust its own CA.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use trawl::http::HttpClient;
use trawl::messages::SourceSnapshot;
use trawl::model::{Protocol, SourceOptions};

/// What a test server saw: connections accepted, and each request's HTTP version.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    versions: Mutex<Vec<Version>>,
}

fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls")
}

fn source(base: &str) -> SourceSnapshot {
    SourceSnapshot {
        id: "transport".into(),
        protocol: Protocol::Erddap,
        base_url: base.into(),
        internal: true,
        options: SourceOptions::default(),
    }
}

async fn answer(
    seen: Arc<Seen>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    seen.versions.lock().unwrap().push(request.version());
    Ok(Response::new(Full::new(Bytes::from_static(
        b"{\"ok\":true}",
    ))))
}

/// A server speaking HTTPS; with `h2`, it offers HTTP/2 first by ALPN.
async fn tls_server(h2: bool) -> (String, Arc<Seen>) {
    let certs: Vec<_> =
        rustls::pki_types::CertificateDer::pem_file_iter(tls_dir().join("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(tls_dir().join("server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let server_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            server_seen.connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, seen) = (acceptor.clone(), server_seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let negotiated_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper::service::service_fn(move |r| answer(seen.clone(), r));
                let io = TokioIo::new(tls);
                if negotiated_h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (base, seen)
}

/// Both cases in one test: `SSL_CERT_FILE` is read when the first client verifies a
/// certificate, so it is set before any client exists in this binary.
#[tokio::test]
async fn a_server_offering_http2_gets_it_and_requests_share_one_connection() {
    std::env::set_var("SSL_CERT_FILE", tls_dir().join("ca.pem"));
    let http = HttpClient::new(Duration::from_secs(5), 1 << 20);

    let (base, seen) = tls_server(true).await;
    let mut log = Vec::new();
    for n in 0..5 {
        let response = http
            .get(
                &source(&base),
                &format!("{base}/erddap/info/ds_{n}/index.json"),
                &mut log,
            )
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], b"{\"ok\":true}");
    }
    assert_eq!(*seen.versions.lock().unwrap(), vec![Version::HTTP_2; 5]);
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "one connection for five requests"
    );

    // A server offering only HTTP/1.1 is spoken to in HTTP/1.1, its connection kept alive.
    let (base, seen) = tls_server(false).await;
    for n in 0..3 {
        http.get(
            &source(&base),
            &format!("{base}/erddap/info/ds_{n}/index.json"),
            &mut log,
        )
        .await
        .unwrap();
    }
    assert_eq!(*seen.versions.lock().unwrap(), vec![Version::HTTP_11; 3]);
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "kept alive between requests"
    );
}

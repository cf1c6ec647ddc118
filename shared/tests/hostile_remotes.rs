//! The HTTP client against a server that misbehaves at the byte level: bodies over the size
//! cap (announced or not), endless redirects, redirects out of HTTP, bodies cut short. Raw TCP, so nothing tidies
//! the responses up.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use trawl::http::HttpClient;
use trawl::messages::SourceSnapshot;
use trawl::model::{Protocol, ReasonCode, SourceOptions};

/// Serves canned raw responses by path until the test ends; returns the base URL.
async fn hostile_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let accepts = |coding: &str| {
                    request.to_ascii_lowercase().lines().any(|l| {
                        l.strip_prefix("accept-encoding:")
                            .is_some_and(|v| v.split(',').any(|c| c.trim() == coding))
                    })
                };
                let asks_gzip = accepts("gzip");
                let _ = match path.as_str() {
                    "/br" | "/br-bomb" if accepts("br") => {
                        let content = if path == "/br" {
                            COMPRESSED_CONTENT.repeat(100)
                        } else {
                            // 64 MiB of zeros: a few dozen bytes compressed.
                            vec![0u8; 64 << 20]
                        };
                        let body = brotli(&content);
                        let mut out = format!(
                            "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        out.extend_from_slice(&body);
                        stream.write_all(&out).await
                    }
                    "/br" | "/br-bomb" => {
                        stream
                            .write_all(b"HTTP/1.1 406 Not Acceptable\r\nContent-Length: 0\r\n\r\n")
                            .await
                    }
                    "/gzip" | "/gzip-bomb" if asks_gzip => {
                        let content = if path == "/gzip" {
                            COMPRESSED_CONTENT.repeat(100)
                        } else {
                            // 64 MiB of zeros: about 64 KiB compressed.
                            vec![0u8; 64 << 20]
                        };
                        let body = gzip(&content);
                        let mut out = format!(
                            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        out.extend_from_slice(&body);
                        stream.write_all(&out).await
                    }
                    "/gzip" | "/gzip-bomb" => {
                        stream
                            .write_all(b"HTTP/1.1 406 Not Acceptable\r\nContent-Length: 0\r\n\r\n")
                            .await
                    }
                    "/big-announced" => {
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
                            .await
                    }
                    "/big-chunked" => {
                        let mut out =
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                        for _ in 0..64 {
                            out.extend_from_slice(b"400\r\n");
                            out.extend_from_slice(&[b'x'; 1024]);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                        stream.write_all(&out).await
                    }
                    "/loop" => stream
                        .write_all(
                            b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n",
                        )
                        .await,
                    "/to-gopher" => stream
                        .write_all(
                            b"HTTP/1.1 302 Found\r\nLocation: gopher://127.0.0.1:70/_stats\r\nContent-Length: 0\r\n\r\n",
                        )
                        .await,
                    "/to-ftp" => stream
                        .write_all(
                            b"HTTP/1.1 301 Moved Permanently\r\nLocation: ftp://files.example.org/pub/\r\nContent-Length: 0\r\n\r\n",
                        )
                        .await,
                    "/cut" => {
                        stream
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{\"table\":",
                            )
                            .await
                    }
                    _ => {
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                            .await
                    }
                };
                // Dropping the stream closes it: a cut body ends here.
            });
        }
    });
    base
}

const COMPRESSED_CONTENT: &[u8] =
    br#"{"table": {"columnNames": ["Dataset ID"], "rows": [["compressed"]]}}"#;

fn gzip(content: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(content).unwrap();
    encoder.finish().unwrap()
}

fn brotli(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::BrotliCompress(
        &mut &content[..],
        &mut out,
        &brotli::enc::BrotliEncoderParams::default(),
    )
    .unwrap();
    out
}

fn internal_source(base: &str) -> SourceSnapshot {
    SourceSnapshot {
        id: "hostile".into(),
        protocol: Protocol::Erddap,
        base_url: base.into(),
        internal: true,
        options: SourceOptions::default(),
    }
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_whether_announced_or_streamed() {
    let base = hostile_server().await;
    let http = HttpClient::new(Duration::from_secs(2), 32 * 1024);
    let source = internal_source(&base);
    let mut log = Vec::new();
    for path in ["/big-announced", "/big-chunked"] {
        let e = http
            .get(&source, &format!("{base}{path}"), &mut log)
            .await
            .unwrap_err();
        assert_eq!(e.code, ReasonCode::TooLarge, "{path}: {e}");
        assert!(!e.retryable());
    }
    assert!(http
        .get(&source, &format!("{base}/ok"), &mut log)
        .await
        .is_ok());
}

#[tokio::test]
async fn compressed_bodies_are_asked_for_read_as_content_and_capped_once_expanded() {
    let base = hostile_server().await;
    let http = HttpClient::new(Duration::from_secs(2), 1 << 20);
    let source = internal_source(&base);
    let mut log = Vec::new();
    let response = http
        .get(&source, &format!("{base}/gzip"), &mut log)
        .await
        .unwrap();
    assert_eq!(response.status, 200, "the server was asked for gzip");
    assert!(
        response.body.starts_with(br#"{"table""#),
        "the content, decompressed"
    );
    assert_eq!(response.body.len(), 100 * COMPRESSED_CONTENT.len());
    // Small on the wire, 64 MiB once expanded: refused at the cap, as it streams.
    let e = http
        .get(&source, &format!("{base}/gzip-bomb"), &mut log)
        .await
        .unwrap_err();
    assert_eq!(e.code, ReasonCode::TooLarge, "{e}");
    assert!(!e.retryable());
}

#[tokio::test]
async fn brotli_bodies_are_asked_for_read_as_content_and_capped_once_expanded() {
    let base = hostile_server().await;
    let http = HttpClient::new(Duration::from_secs(5), 1 << 20);
    let source = internal_source(&base);
    let mut log = Vec::new();
    let response = http
        .get(&source, &format!("{base}/br"), &mut log)
        .await
        .unwrap();
    assert_eq!(response.status, 200, "the server was asked for br");
    assert_eq!(response.body.len(), 100 * COMPRESSED_CONTENT.len());
    assert!(response.body.starts_with(br#"{"table""#));
    let e = http
        .get(&source, &format!("{base}/br-bomb"), &mut log)
        .await
        .unwrap_err();
    assert_eq!(e.code, ReasonCode::TooLarge, "{e}");
}

#[tokio::test]
async fn endless_redirects_stop_at_the_limit() {
    let base = hostile_server().await;
    let http = HttpClient::new(Duration::from_secs(2), 1024);
    let mut log = Vec::new();
    let e = http
        .get(&internal_source(&base), &format!("{base}/loop"), &mut log)
        .await
        .unwrap_err();
    assert_eq!(e.code, ReasonCode::HttpError, "{e}");
    assert!(e.detail.contains("redirect"), "{e}");
}

#[tokio::test]
async fn a_redirect_out_of_http_is_refused_for_good_naming_the_scheme() {
    let base = hostile_server().await;
    let http = HttpClient::new(Duration::from_secs(2), 1024);
    let mut log = Vec::new();
    for (path, scheme) in [("/to-gopher", "gopher"), ("/to-ftp", "ftp")] {
        let e = http
            .get(&internal_source(&base), &format!("{base}{path}"), &mut log)
            .await
            .unwrap_err();
        assert_eq!(e.code, ReasonCode::BlockedAddress, "{path}: {e}");
        assert!(
            e.detail
                .contains(&format!("unsupported redirect scheme {scheme}")),
            "{path}: {e}"
        );
        assert!(
            !e.retryable(),
            "{path}: the server will send us there again"
        );
    }
}

#[tokio::test]
async fn a_body_cut_short_is_a_transient_error_that_says_so() {
    let base = hostile_server().await;
    let http = HttpClient::new(Duration::from_secs(2), 1024 * 1024);
    let mut log = Vec::new();
    let e = http
        .get(&internal_source(&base), &format!("{base}/cut"), &mut log)
        .await
        .unwrap_err();
    assert_eq!(e.code, ReasonCode::ConnectError, "{e}");
    assert!(e.retryable());
    assert_eq!(log.len(), 1, "the attempt is logged");
    assert!(log[0].error.is_some());
}

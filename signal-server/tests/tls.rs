//! wss:// and https:// with --tls-cert/--tls-key: a self-signed certificate made for the test,
//! clients that trust exactly that certificate, and the same protocol over TLS.

mod support;

use std::path::Path;

use serde_json::json;
use support::cert::Cert;
use support::{candidate, config, relayed, TestServer, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts a server configured with the certificate's files, as the binary does with flags.
async fn tls_server(cert: &Cert, flags: &[&str]) -> TestServer {
    let (cert_path, key_path) = (cert.cert(), cert.key());
    let mut all = vec!["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()];
    all.extend_from_slice(flags);
    let config = config(&all);
    let acceptor = signal_server::tls::acceptor(
        config.tls_cert.as_deref().unwrap_or(Path::new("")),
        config.tls_key.as_deref().unwrap_or(Path::new("")),
    )
    .unwrap();
    TestServer::start_tls(config, acceptor, cert.connector()).await
}

#[tokio::test]
async fn wss_carries_the_protocol_including_a_resume() {
    let cert = Cert::new();
    let server = tls_server(&cert, &["--resume-grace", "10"]).await;
    assert!(server.ws_url().starts_with("wss://localhost:"));
    let (mut a, mut b, room) = server.pair().await;
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));
    b.send_text(&candidate(2));
    assert_eq!(a.recv_text().await, relayed(2));

    let token = b.token.clone();
    b.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    a.send_text(&candidate(3));
    let mut b = server.connect().await;
    let welcome = b.resume(&token).await;
    assert_eq!((welcome["resumed"].clone(), welcome["room"].clone()), (json!(true), json!(room)));
    assert_eq!(b.recv_text().await, relayed(3));
    a.expect_silence(100).await;
}

#[tokio::test]
async fn https_serves_healthz_and_metrics() {
    let cert = Cert::new();
    let server = tls_server(&cert, &[]).await;
    let health = server.get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(server.metrics().await.get("strangers_connections"), 0.0);
}

#[tokio::test]
async fn plaintext_and_untrusting_clients_fail_alone() {
    let cert = Cert::new();
    let server = tls_server(&cert, &[]).await;
    let (a, mut b, _) = server.pair().await;

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, plain.read_to_end(&mut answer)).await.expect("the server hangs up");
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP got an HTTP answer on the TLS port");

    // A client that trusts another certificate refuses the handshake.
    let other = Cert::new();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let refused = tokio::time::timeout(STEP, other.connector().connect(name, tcp)).await.expect("handshake ends");
    assert!(refused.is_err(), "a certificate the client does not trust is refused");

    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));
    b.expect_silence(100).await;
    assert_eq!(server.metrics().await.get("strangers_connections"), 2.0);
}

#[test]
fn unusable_pem_files_are_errors() {
    let cert = Cert::new();
    let other = Cert::new();
    let empty = cert.dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(signal_server::tls::acceptor(&empty, &cert.key()).is_err());
    assert!(signal_server::tls::acceptor(&cert.cert(), &empty).is_err());
    assert!(signal_server::tls::acceptor(&cert.cert(), &other.key()).is_err());
    assert!(signal_server::tls::acceptor(&cert.dir.path().join("missing.pem"), &cert.key()).is_err());
    assert!(signal_server::tls::acceptor(&cert.cert(), &cert.key()).is_ok());
}

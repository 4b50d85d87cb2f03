//! Graceful shutdown: the server stops accepting, closes every WebSocket with 1012 (service
//! restart) whatever state it is in, and returns.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{config, TestServer};
use tokio::net::TcpStream;

#[tokio::test]
async fn shutdown_closes_every_socket_with_1012_and_stops_accepting() {
    let mut server = TestServer::start(config(&[])).await;
    let (mut a, mut b, _) = server.pair().await;
    let mut queued = server.greeted().await;
    queued.send_json(json!({"type": "find"}));
    queued.expect("queued").await;
    let mut idle = server.greeted().await;
    let mut silent = server.connect().await;
    let frozen = server.greeted().await;
    frozen.freeze();
    server.wait_metric("strangers_connections", 6.0).await;

    let took = server.shutdown().await;
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    for client in [&mut a, &mut b, &mut queued, &mut idle, &mut silent] {
        let reason = client.expect_close(1012).await;
        assert!(!reason.is_empty(), "the close frame says why");
    }
    let refused = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(server.addr)).await;
    assert!(matches!(refused, Ok(Err(_))), "the listener is closed: {refused:?}");
}

#[tokio::test]
async fn shutdown_of_an_idle_server_is_prompt() {
    let mut server = TestServer::start(config(&[])).await;
    assert_eq!(server.get("/healthz").await.status, 200);
    let took = server.shutdown().await;
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
}

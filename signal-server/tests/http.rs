//! The plain HTTP side of the port: /healthz, /metrics (Prometheus text) and the answers to
//! requests that are not a WebSocket upgrade.

mod support;

use serde_json::json;
use support::{candidate, config, relayed, TestServer};

#[tokio::test]
async fn healthz_answers_200() {
    let server = TestServer::start(config(&[])).await;
    let response = server.get("/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok\n");
    assert_eq!(response.headers["content-length"], "3");
    assert_eq!(server.get("/healthz?probe=1").await.status, 200);
}

#[tokio::test]
async fn other_requests_get_the_matching_status() {
    let server = TestServer::start(config(&[])).await;
    assert_eq!(server.get("/").await.status, 404);
    assert_eq!(server.get("/ws2").await.status, 404);
    let post = server.request(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET");
    let plain_ws = server.get("/ws").await;
    assert_eq!(plain_ws.status, 426);
    assert_eq!(plain_ws.headers["upgrade"], "websocket");
    let old_version = server
        .request(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .await;
    assert_eq!(old_version.status, 426);
    assert_eq!(old_version.headers["sec-websocket-version"], "13");
    assert_eq!(server.request(b"\x16\x03\x01garbage\r\n\r\n").await.status, 400);
    let huge = format!("GET /healthz HTTP/1.1\r\nX-Filler: {}\r\n\r\n", "a".repeat(16 * 1024));
    assert_eq!(server.request(huge.as_bytes()).await.status, 431);
    let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(server.request(format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes()).await.status, 431);
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_every_documented_family() {
    let server = TestServer::start(config(&[])).await;
    let response = server.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(response.headers["content-type"].starts_with("text/plain; version=0.0.4"), "{:?}", response.headers);
    for (family, kind) in [
        ("strangers_connections", "gauge"),
        ("strangers_tasks", "gauge"),
        ("strangers_queued", "gauge"),
        ("strangers_rooms", "gauge"),
        ("strangers_sessions", "gauge"),
        ("strangers_sessions_dropped", "gauge"),
        ("strangers_bans_active", "gauge"),
        ("strangers_matches_total", "counter"),
        ("strangers_signals_relayed_total", "counter"),
        ("strangers_resumes_total", "counter"),
        ("strangers_reports_total", "counter"),
        ("strangers_bans_total", "counter"),
        ("strangers_stun_requests_total", "counter"),
        ("strangers_errors_total", "counter"),
    ] {
        assert!(response.body.contains(&format!("\n# TYPE {family} {kind}\n")), "{family} {kind}:\n{}", response.body);
        assert!(response.body.contains(&format!("# HELP {family} ")), "{family} has help:\n{}", response.body);
    }
    let metrics = server.metrics().await;
    for code in ["bad_message", "not_matched", "too_large", "rate_limited", "banned", "version", "too_many_connections"]
    {
        assert_eq!(metrics.errors(code), 0.0);
    }
    assert_eq!(metrics.get("strangers_connections"), 0.0);
}

#[tokio::test]
async fn metrics_follow_what_happens() {
    let server = TestServer::start(config(&["--resume-grace", "10"])).await;
    let (mut a, b, _) = server.pair().await;
    let mut waiting = server.greeted().await;
    waiting.send_json(json!({"type": "find"}));
    waiting.expect("queued").await;
    let mut idle = server.greeted().await;
    idle.send_text("nonsense");
    idle.expect_error("bad_message").await;
    idle.send_text(&candidate(0));
    idle.expect_error("not_matched").await;
    let token = b.token.clone();
    b.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    for n in 0..3 {
        a.send_text(&candidate(n));
    }
    a.expect_silence(100).await;

    let metrics = server.metrics().await;
    for (name, value) in [
        ("strangers_connections", 3.0),
        ("strangers_sessions", 4.0),
        ("strangers_sessions_dropped", 1.0),
        ("strangers_queued", 1.0),
        ("strangers_rooms", 1.0),
        ("strangers_matches_total", 1.0),
        ("strangers_signals_relayed_total", 3.0),
        ("strangers_resumes_total", 0.0),
        ("strangers_connections_total", 4.0),
    ] {
        assert_eq!(metrics.get(name), value, "{name}");
    }
    assert_eq!(metrics.errors("bad_message"), 1.0);
    assert_eq!(metrics.errors("not_matched"), 1.0);

    let mut b = server.connect().await;
    b.resume(&token).await;
    for n in 0..3 {
        assert_eq!(b.recv_text().await, relayed(n));
    }
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_resumes_total"), 1.0);
    assert_eq!(metrics.get("strangers_sessions_dropped"), 0.0);
    assert_eq!(metrics.get("strangers_connections"), 4.0);
}

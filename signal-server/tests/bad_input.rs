//! Bad input and limits: malformed messages, binary frames, oversized messages, floods and
//! connection caps are answered with the documented error codes, and none of it disturbs
//! any other client.

mod support;

use serde_json::json;
use support::{candidate, config, loopback, relayed, Client, Event, RawPeer, TestServer, LOCALHOST, QUIET_MS};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// Messages that are not valid client messages, whatever the state of the socket.
const MALFORMED: &[&str] = &[
    "not json",
    "{\"type\":\"find\"",
    "[1,2]",
    "\"find\"",
    "null",
    "{}",
    r#"{"kind":"find"}"#,
    r#"{"type":"dance"}"#,
    r#"{"type":5}"#,
    r#"{"type":"hello"}"#,
    r#"{"type":"hello","version":"1"}"#,
    r#"{"type":"hello","version":1,"interests":"music"}"#,
    r#"{"type":"hello","version":1,"resume":7}"#,
    r#"{"type":"signal"}"#,
    r#"{"type":"signal","data":"x"}"#,
    r#"{"type":"signal","data":{}}"#,
    r#"{"type":"signal","data":{"sdp":{"type":"pranswer","sdp":"v=0"}}}"#,
    r#"{"type":"signal","data":{"candidate":"x"}}"#,
    r#"{"type":"signal","data":{"restart":false}}"#,
    r#"{"type":"report","reason":{"a":1}}"#,
    "",
];

/// Sends every malformed message and a binary frame; each is answered with `bad_message`.
async fn send_garbage(client: &mut Client) {
    for text in MALFORMED {
        client.send_text(text);
        let error = client.recv_json().await;
        assert_eq!(error["type"], json!("error"), "{text:?} got {error}");
        assert_eq!(error["code"], json!("bad_message"), "{text:?} got {error}");
    }
    client.send(Message::binary(b"{\"type\":\"find\"}".to_vec()));
    client.expect_error("bad_message").await;
}

#[tokio::test]
async fn malformed_messages_get_bad_message_and_the_socket_stays_open() {
    let server = TestServer::start(config(&["--rate-limit", "0"])).await;
    let mut fresh = server.connect().await;
    send_garbage(&mut fresh).await;
    fresh.hello().await;
    send_garbage(&mut fresh).await;
    fresh.send_json(json!({"type": "find"}));
    fresh.expect("queued").await;
    send_garbage(&mut fresh).await;

    // In a room, garbage changes nothing for the partner.
    let mut partner = server.greeted().await;
    partner.send_json(json!({"type": "find"}));
    partner.expect("queued").await;
    partner.expect("matched").await;
    fresh.expect("matched").await;
    send_garbage(&mut fresh).await;
    partner.expect_silence(100).await;
    fresh.send_text(&candidate(1));
    assert_eq!(partner.recv_text().await, relayed(1));
    let metrics = server.metrics().await;
    assert_eq!(metrics.errors("bad_message"), (4 * (MALFORMED.len() + 1)) as f64);
}

#[tokio::test]
async fn a_message_over_64_kib_is_too_large_and_the_socket_stays_open() {
    let server = TestServer::start(config(&[])).await;
    let (mut a, mut b, _) = server.pair().await;

    // A valid signal of exactly 64 KiB is relayed.
    let prefix = r#"{"type":"signal","data":{"candidate":{"candidate":""#;
    let suffix = r#""}}}"#;
    let exact = format!("{prefix}{}{suffix}", "x".repeat(64 * 1024 - prefix.len() - suffix.len()));
    assert_eq!(exact.len(), 64 * 1024);
    a.send_text(&exact);
    assert_eq!(b.recv_text().await, exact);

    let over = format!("{prefix}{}{suffix}", "x".repeat(64 * 1024 + 1 - prefix.len() - suffix.len()));
    a.send_text(&over);
    a.expect_error("too_large").await;
    b.expect_silence(100).await;
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));
    assert_eq!(server.metrics().await.errors("too_large"), 1.0);
}

#[tokio::test]
async fn a_message_far_too_large_closes_only_its_socket() {
    let server = TestServer::start(config(&[])).await;
    let (mut a, mut b, _) = server.pair().await;
    let mut bystander = server.greeted().await;
    a.send_text(&format!(r#"{{"type":"report","reason":"{}"}}"#, "x".repeat(2 * 1024 * 1024)));
    a.expect_error("too_large").await;
    a.expect_close(1009).await;
    b.expect_partner_left("disconnect").await;
    bystander.send_json(json!({"type": "find"}));
    bystander.expect("queued").await;
}

#[tokio::test]
async fn the_rate_limit_answers_rate_limited_and_then_recovers() {
    let server = TestServer::start(config(&["--rate-limit", "5", "--rate-burst", "5"])).await;
    let mut a = server.greeted().await;
    // hello took one token; four stops fit in the burst, the fifth does not.
    for _ in 0..8 {
        a.send_json(json!({"type": "stop"}));
    }
    a.expect_error("rate_limited").await;
    a.expect_silence(200).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
}

/// Floods with `frame` until the server closes the socket; returns the errors received.
async fn flood_until_closed(client: &mut Client, frame: Message) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        client.send(frame.clone());
    }
    let mut errors = Vec::new();
    loop {
        match client.recv().await {
            Event::Text(text) => errors.push(serde_json::from_str(&text).unwrap()),
            Event::Closed(code, _) => {
                assert_eq!(code, 1008, "a flooder is closed for policy");
                break;
            }
            other => panic!("a flooder expects errors then a close, got {other:?}"),
        }
    }
    errors
}

#[tokio::test]
async fn a_client_that_keeps_flooding_is_closed_and_nobody_else_notices() {
    let server = TestServer::start(config(&["--rate-limit", "5", "--rate-burst", "10"])).await;
    let (mut a, mut b, _) = server.pair().await;
    let mut flooder = server.greeted().await;
    let errors = flood_until_closed(&mut flooder, Message::text(r#"{"type":"stop"}"#)).await;
    assert!((2..=12).contains(&errors.len()), "rate_limited answers are themselves limited: {errors:?}");
    for error in &errors {
        assert_eq!(error["code"], json!("rate_limited"), "{error}");
    }
    for n in 0..4 {
        a.send_text(&candidate(n));
        assert_eq!(b.recv_text().await, relayed(n));
    }
    a.expect_silence(100).await;
    b.expect_silence(QUIET_MS).await;
}

#[tokio::test]
async fn a_flood_of_binary_frames_is_rate_limited_too() {
    let server = TestServer::start(config(&["--rate-limit", "5", "--rate-burst", "5"])).await;
    let mut flooder = server.greeted().await;
    let errors = flood_until_closed(&mut flooder, Message::binary(vec![0u8; 16])).await;
    let codes: Vec<&str> = errors.iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(codes[..4], ["bad_message"; 4], "{codes:?}");
    assert!((6..=15).contains(&codes.len()) && codes[4..].iter().all(|c| *c == "rate_limited"), "{codes:?}");
}

#[tokio::test]
async fn the_per_address_cap_refuses_extra_connections_with_too_many_connections() {
    let server = TestServer::start(config(&["--max-conns-per-ip", "2"])).await;
    let (a, mut b, _) = server.pair().await;
    let mut third = server.connect().await;
    third.expect_error("too_many_connections").await;
    third.expect_close(1008).await;

    // Another address is not affected, and neither is the pair.
    let mut elsewhere = server.connect_from(loopback(2)).await;
    elsewhere.hello().await;
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));

    // A freed slot can be taken again.
    a.close().await;
    b.expect_partner_left("disconnect").await;
    server.wait_metric("strangers_connections", 2.0).await;
    let mut again = server.connect_from(LOCALHOST).await;
    again.hello().await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_connections_refused_total"), 1.0);
    assert_eq!(metrics.errors("too_many_connections"), 1.0);
}

#[tokio::test]
async fn the_total_cap_refuses_with_unavailable() {
    let server = TestServer::start(config(&["--max-conns", "1"])).await;
    let mut first = server.greeted().await;
    let mut second = server.connect_from(loopback(2)).await;
    second.expect_error("unavailable").await;
    second.expect_close(1008).await;
    first.send_json(json!({"type": "find"}));
    first.expect("queued").await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_does_not_disturb_others() {
    let server = TestServer::start(config(&[])).await;
    let (a, mut b, _) = server.pair().await;
    let mut raw = support::RawPeer::upgrade(&server).await;
    raw.write_frame(0x1, &[0xff, 0xfe, b'{', b'}']).await;
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));
    server.wait_metric("strangers_connections", 2.0).await;
}

/// A thousand sockets each announce a 60 KB frame and send nothing more. The server holds
/// them (it grows buffers only as bytes arrive, so each costs what it sent), stays healthy
/// and serves a normal pair as before.
#[tokio::test]
async fn a_thousand_sockets_sending_only_frame_headers_leave_the_server_serving() {
    const SOCKETS: usize = 1000;
    let server = TestServer::start(config(&["--max-conns-per-ip", "0"])).await;
    // A masked text frame header announcing 60,000 bytes, and nothing after it.
    let header = [0x81, 0x80 | 126, 0xea, 0x60, 0x37, 0xfa, 0x21, 0x3d];
    let mut silent = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let mut raw = RawPeer::upgrade(&server).await;
        raw.tcp.write_all(&header).await.expect("writing a frame header");
        silent.push(raw);
    }
    server.wait_metric("strangers_connections", SOCKETS as f64).await;
    assert_eq!(server.get("/healthz").await.status, 200);
    let (a, mut b, _) = server.pair().await;
    for n in 0..3 {
        a.send_text(&candidate(n));
        assert_eq!(b.recv_text().await, relayed(n));
    }
    assert_eq!(
        server.metrics().await.get("strangers_connections"),
        (SOCKETS + 2) as f64,
        "every silent socket is still held"
    );
}

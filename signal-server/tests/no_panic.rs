//! The server never panics on network input: raw garbage, broken HTTP heads, broken
//! WebSocket frames and random sequences of valid messages from many clients, with a panic
//! hook that counts every panic in this process. Afterwards the server still serves, and its
//! books balance once everyone has gone. This file holds one test so that the hook sees no
//! other test's panics.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use support::{client_frame, config, loopback, Client, Event, RawPeer, TestServer, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Sends `bytes` on a fresh connection and reads whatever comes back until the server hangs
/// up or a short while passes.
async fn throw(server: &TestServer, bytes: &[u8]) {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    let _ = tcp.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(300), tcp.read_to_end(&mut sink)).await;
}

/// Upgrades, writes `bytes` after the upgrade, and reads until the server hangs up or a
/// short while passes.
async fn throw_frames(server: &TestServer, bytes: &[u8]) {
    let mut raw = RawPeer::upgrade(server).await;
    let _ = raw.tcp.write_all(bytes).await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(200), raw.tcp.read_to_end(&mut sink)).await;
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A random message: valid ones, valid ones with a twist, and junk.
fn random_message(rng: &mut Rng, tokens: &[String]) -> String {
    let token = if tokens.is_empty() || rng.below(4) == 0 {
        "not-a-token".to_owned()
    } else {
        tokens[rng.below(tokens.len())].clone()
    };
    let (reason_len, noise_len) = (rng.below(400), rng.below(64));
    let noise = rng.bytes(noise_len);
    let valid = [
        json!({"type": "hello", "version": 1}).to_string(),
        json!({"type": "hello", "version": 1, "resume": token}).to_string(),
        json!({"type": "hello", "version": 1, "interests": ["a", "b"]}).to_string(),
        json!({"type": "find"}).to_string(),
        json!({"type": "find"}).to_string(),
        json!({"type": "next"}).to_string(),
        json!({"type": "stop"}).to_string(),
        json!({"type": "report", "reason": "x".repeat(reason_len)}).to_string(),
        json!({"type": "signal", "data": {"sdp": {"type": "offer", "sdp": "v=0"}}}).to_string(),
        json!({"type": "signal", "data": {"candidate": {"candidate": "c"}}}).to_string(),
        json!({"type": "signal", "data": {"restart": true}}).to_string(),
    ];
    let junk = [
        json!({"type": "hello", "version": 18446744073709551615u64}).to_string(),
        r#"{"type":"hello","version":1e400}"#.to_owned(),
        "{\"type\":\"signal\",\"data\":".to_owned() + &"[".repeat(200) + &"]".repeat(200) + "}",
        "[".repeat(10_000),
        "{\"type\":\"\u{0}\u{ffff}\"}".to_owned(),
        String::from_utf8_lossy(&noise).into_owned(),
    ];
    if rng.below(5) == 0 {
        junk[rng.below(junk.len())].clone()
    } else {
        valid[rng.below(valid.len())].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_input_never_panics_the_server() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let outcome = tokio::time::timeout(Duration::from_secs(40), barrage()).await;
    assert!(outcome.is_ok(), "the barrage finished in time");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no panic anywhere in the process");
}

async fn barrage() {
    let server = TestServer::start(config(&[
        "--resume-grace",
        "0.3",
        "--interest-wait",
        "0.1",
        "--report-threshold",
        "3",
        "--ban-duration",
        "1",
        "--ping-interval",
        "0.3",
        "--idle-timeout",
        "1",
    ]))
    .await;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);

    // Raw bytes and broken HTTP heads.
    let heads: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n".to_vec(),
        b"GET".to_vec(),
        b"GET / HTTP/1.1\r\n".to_vec(),
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".to_vec(),
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: \xff\xfe\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
        format!("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n", "k".repeat(7000)).into_bytes(),
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
        b"G\0T / HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /metrics HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n".to_vec(),
        b"DELETE /ws HTTP/1.1\r\n\r\n".to_vec(),
        vec![b'a'; 20_000],
    ];
    for head in &heads {
        throw(&server, head).await;
    }
    for _ in 0..20 {
        let len = rng.below(3000);
        throw(&server, &rng.bytes(len)).await;
    }

    // A request head with frames right behind it in the same write, including a close.
    let mut eager = UPGRADE.as_bytes().to_vec();
    eager.extend(client_frame(0x1, br#"{"type":"hello","version":1}"#));
    eager.extend(client_frame(0x1, br#"{"type":"find"}"#));
    eager.extend(client_frame(0x8, &[0x03, 0xe8]));
    throw(&server, &eager).await;

    // Broken frames after a good upgrade.
    let mut unmasked = vec![0x81, 0x05];
    unmasked.extend_from_slice(b"hello");
    let frames: Vec<Vec<u8>> = vec![
        unmasked,
        client_frame(0x3, b"reserved opcode"),
        client_frame(0xb, b"reserved control"),
        client_frame(0x0, b"continuation without a start"),
        client_frame(0x9, &[0u8; 200]),
        client_frame(0x8, &[0x00]),
        client_frame(0x8, &[0x03, 0xe7]),
        client_frame(0x8, &[0x03, 0xe8, 0xff, 0xfe]),
        [vec![0x01 | 0x40, 0x80 | 3, 0, 0, 0, 0], b"abc".to_vec()].concat(),
        vec![0x82, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        vec![0x81, 0x80 | 127, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        [client_frame(0x1, b"{\"ty").as_slice(), &[0x00]].concat(),
        [vec![0x01, 0x80 | 4, 0, 0, 0, 0], b"{\"ty".to_vec(), client_frame(0x9, b"p"), client_frame(0x0, b"pe\":1}")]
            .concat(),
        client_frame(0x1, &[0xc3, 0x28]),
    ];
    for frame in &frames {
        throw_frames(&server, frame).await;
    }
    for _ in 0..20 {
        let len = rng.below(200);
        let bytes = rng.bytes(len);
        throw_frames(&server, &bytes).await;
    }

    // Random message sequences from many clients on a handful of addresses, with random
    // drops, clean closes and reconnects, and resume tokens that are sometimes real.
    let mut clients: Vec<Option<Client>> = Vec::new();
    for i in 0..8 {
        clients.push(Some(server.connect_from(loopback(20 + i % 4)).await));
    }
    let mut tokens: Vec<String> = Vec::new();
    for step in 0..1500 {
        let i = rng.below(clients.len());
        match rng.below(40) {
            0 => {
                if let Some(client) = clients[i].take() {
                    client.drop_abruptly();
                }
            }
            1 => {
                if let Some(client) = clients[i].take() {
                    client.reset();
                }
            }
            2 => {
                if let Some(client) = clients[i].take() {
                    client.send(tokio_tungstenite::tungstenite::Message::Close(None));
                }
            }
            3 => {
                if let Some(client) = &clients[i] {
                    client.send(tokio_tungstenite::tungstenite::Message::binary(rng.bytes(8)));
                }
            }
            _ => match &mut clients[i] {
                None => {
                    let transport = server.transport_from(loopback(20 + (i % 4) as u8)).await;
                    if let Ok(transport) = transport {
                        if let Ok(Ok((ws, _))) =
                            tokio::time::timeout(STEP, tokio_tungstenite::client_async(server.ws_url(), transport))
                                .await
                        {
                            let client = Client::from_stream(ws);
                            if !tokens.is_empty() && rng.below(2) == 0 {
                                let token = &tokens[rng.below(tokens.len())];
                                client.send_json(json!({"type": "hello", "version": 1, "resume": token}));
                            }
                            clients[i] = Some(client);
                        }
                    }
                }
                Some(client) => {
                    client.send_text(&random_message(&mut rng, &tokens));
                    while let Some(event) = client.try_recv() {
                        let Event::Text(text) = event else { continue };
                        if let Ok(msg) = serde_json::from_str::<serde_json::Value>(&text) {
                            if let Some(token) = msg["resume"].as_str() {
                                tokens.push(token.to_owned());
                            }
                        }
                    }
                }
            },
        }
        if step % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Once everyone has gone and the grace period is over, nothing is left over.
    drop(clients);
    server.wait_metric("strangers_connections", 0.0).await;
    server.wait_metric("strangers_sessions", 0.0).await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_rooms"), 0.0);
    assert_eq!(metrics.get("strangers_queued"), 0.0);
    assert!(metrics.get("strangers_matches_total") >= 5.0, "the barrage made matches:\n{}", metrics.text);
    assert!(metrics.get("strangers_resumes_total") >= 1.0, "the barrage resumed sessions:\n{}", metrics.text);

    // The server still serves, on an address the barrage never used.
    assert_eq!(server.get("/healthz").await.status, 200);
    let mut a = server.connect_from(loopback(99)).await;
    a.hello().await;
    let mut b = server.connect_from(loopback(98)).await;
    b.hello().await;
    support::match_pair(&mut a, &mut b).await;
    a.send_text(&support::candidate(1));
    assert_eq!(b.recv_text().await, support::relayed(1));
    a.close().await;
    b.expect_partner_left("disconnect").await;
    b.close().await;
    server.wait_metric("strangers_connections", 0.0).await;
    assert_eq!(metrics.get("strangers_sessions_dropped"), 0.0);
}

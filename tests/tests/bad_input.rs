//! Missing or bad input gives a clear error event or message, never a crash, and the client
//! can go on: an unreachable server, a malformed SDP from the stranger, a stranger offering no
//! codec we speak, a file that is not Y4M.

use std::process::Command;
use std::time::Duration;

use strangers_system_tests::{bin_dir, cpu_seconds, Client, RawPeer, Server};

const T: Duration = Duration::from_secs(20);

#[test]
fn an_unreachable_server_is_reported_and_retried_without_crashing() {
    // Nothing listens on port 9 of loopback (discard is never enabled here).
    let mut client = Client::start("lonely", "ws://127.0.0.1:9/ws", &["--loopback", "--exit-after", "3"]).unwrap();
    let down = client.wait_event(T, "server_down").unwrap();
    assert!(down["reason"].as_str().unwrap().contains("cannot connect"), "{down}");
    // It keeps retrying with backoff, then exits cleanly when told to.
    client.wait_for(T, "a retry", |e| e["event"] == "server_down").unwrap();
    let status = client.wait_exit(T).unwrap();
    assert!(status.success(), "exit status {status}");
}

/// A loopback server that answers every connection with `answer` (after reading what the
/// client sends first); stops when the test ends.
fn fake_server(answer: impl Fn(std::net::TcpStream) + Send + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            answer(stream);
        }
    });
    format!("ws://{addr}/ws")
}

#[test]
fn an_address_that_is_not_a_strangers_server_is_told_as_such() {
    // A web server: it answers HTTP, but not with a WebSocket.
    let url = fake_server(|mut stream| {
        use std::io::{Read, Write};
        let mut request = [0u8; 2048];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let mut client = Client::start("lost", &url, &["--loopback", "--exit-after", "3"]).unwrap();
    let down = client.wait_event(T, "server_down").unwrap();
    assert_eq!(down["kind"], "not_strangers", "{down}");
    assert!(down["reason"].as_str().unwrap_or_default().contains("404"), "{down}");
    assert!(client.wait_exit(T).unwrap().success());

    // Nothing listening: unreachable.
    let mut client = Client::start("lonely", "ws://127.0.0.1:9/ws", &["--loopback", "--exit-after", "2"]).unwrap();
    assert_eq!(client.wait_event(T, "server_down").unwrap()["kind"], "unreachable");
    assert!(client.wait_exit(T).unwrap().success());
}

#[test]
fn a_server_speaking_a_newer_protocol_is_told_and_not_hammered() {
    let url = fake_server(|stream| {
        let Ok(mut ws) = tungstenite::accept(stream) else { return };
        let _ = ws.read();
        let refusal = r#"{"type":"error","code":"version","message":"this server speaks version 2"}"#;
        let _ = ws.send(tungstenite::Message::text(refusal));
        let _ = ws.close(None);
        let _ = ws.flush();
    });
    let mut client = Client::start("old", &url, &["--loopback", "--exit-after", "3"]).unwrap();
    let error = client.wait_for(T, "a refusal", |e| e["event"] == "error").unwrap();
    assert_eq!(error["kind"], "outdated", "{error}");
    assert!(client.wait_exit(T).unwrap().success());
    assert!(client.seen_named("server_down").is_empty(), "it kept trying: {:?}", client.seen_named("server_down"));
    assert!(client.seen_named("welcome").is_empty());
}

#[test]
fn a_file_that_is_not_y4m_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("strangers-bad-y4m-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.y4m");
    std::fs::write(&path, b"this is not a video\n").unwrap();
    let output = Command::new(bin_dir().join("strangers"))
        .args(["--headless", "--server", "ws://127.0.0.1:9/ws", "--video"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a Y4M file"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

/// Starts a client that meets a raw peer, which makes the offer (it waited longer).
fn meet_raw_peer(server: &Server) -> (RawPeer, Client) {
    let mut peer = RawPeer::connect(&server.ws_url()).unwrap();
    peer.send(r#"{"type":"hello","version":1}"#).unwrap();
    peer.expect("welcome").unwrap();
    peer.send(r#"{"type":"find"}"#).unwrap();
    peer.expect("queued").unwrap();
    let mut client =
        Client::start("victim", &server.ws_url(), &["--loopback", "--width", "320", "--height", "240"]).unwrap();
    let matched = peer.expect("matched").unwrap();
    assert_eq!(matched["initiator"], true, "the raw peer waited longer, so it offers");
    client.wait_event(T, "matched").unwrap();
    (peer, client)
}

#[test]
fn a_malformed_sdp_ends_the_call_with_an_error_and_the_client_finds_again() {
    let server = Server::start(&[]).unwrap();
    let (mut peer, mut client) = meet_raw_peer(&server);
    peer.send(r#"{"type":"signal","data":{"sdp":{"type":"offer","sdp":"this is not SDP"}}}"#).unwrap();
    let error = client.wait_event(T, "error").unwrap();
    assert_eq!(error["kind"], "signal", "{error}");
    assert!(error["message"].as_str().unwrap().contains("SDP") || error["message"].as_str().unwrap().contains("sdp"));
    // The stranger is told the call is over, and the client is back in the queue.
    let left = peer.expect("partner_left").unwrap();
    assert_eq!(left["reason"], "stop");
    client.wait_event(T, "idle").unwrap();
    client.wait_event(T, "queued").unwrap();
}

#[test]
fn a_stranger_offering_no_codec_we_speak_gets_a_clear_error() {
    let server = Server::start(&[]).unwrap();
    let (mut peer, mut client) = meet_raw_peer(&server);
    let fingerprint = (0..32).map(|i| format!("{:02X}", i * 7 % 256)).collect::<Vec<_>>().join(":");
    let sdp = [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {fingerprint}"),
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=rtcp-mux",
        "a=rtpmap:96 VP9/90000",
        "",
    ]
    .join("\r\n");
    let signal = serde_json::json!({"type": "signal", "data": {"sdp": {"type": "offer", "sdp": sdp}}});
    peer.send(&signal.to_string()).unwrap();
    let error = client.wait_event(T, "error").unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("codec"), "{error}");
    peer.expect("partner_left").unwrap();
    client.wait_event(T, "queued").unwrap();
}

#[test]
fn a_client_the_server_refuses_waits_quietly_until_it_is_closed() {
    // One report bans an address; everything here shares 127.0.0.1, so the victim is refused.
    let server = Server::start(&["--report-threshold", "1"]).unwrap();
    let (mut peer, mut client) = meet_raw_peer(&server);
    peer.send(r#"{"type":"report","reason":"test"}"#).unwrap();
    let refused = client.wait_for(T, "refused", |e| e["event"] == "error" && e["kind"] == "refused").unwrap();
    assert!(refused["message"].as_str().unwrap_or_default().contains("ban"), "{refused}");
    // The engine lives on without a server: it must not spin on the ended signaling task.
    let before = cpu_seconds(client.pid()).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(client.pid()).unwrap() - before;
    assert!(used < 0.5, "a refused client used {used:.2} s of CPU in 3 s");
    client.command("quit").unwrap();
    client.wait_exit(T).unwrap();
}

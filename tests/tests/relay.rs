//! Relay-only privacy mode through a real coturn on loopback: both clients gather relay
//! candidates only, never reveal a host address, and still carry verified video.

use std::time::Duration;

use strangers_system_tests::{Client, Server, Turn};

const T: Duration = Duration::from_secs(30);

#[test]
fn relay_only_calls_go_through_turn_and_reveal_no_address() {
    let turn = Turn::start().expect("coturn starts");
    let args = turn.server_args();
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let media = ["--loopback", "--relay-only", "--width", "320", "--height", "240"];
    let mut a = Client::start("a", &server.ws_url(), &media).unwrap();
    let mut b = Client::start("b", &server.ws_url(), &media).unwrap();
    for c in [&mut a, &mut b] {
        c.wait_event(T, "connected").unwrap();
        c.wait_event(T, "first_frame").unwrap();
        let stats = c
            .wait_for(T, "verified frames", |e| {
                e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= 60
            })
            .unwrap();
        assert_eq!(stats["verify_errors"], 0, "{stats}");
        assert_eq!(stats["path"]["local"], "relay", "{stats}");
        assert_eq!(stats["path"]["remote"], "relay", "{stats}");
        let kinds: Vec<_> = c.seen_named("local_candidate").iter().map(|e| e["kind"].clone()).collect();
        assert!(!kinds.is_empty(), "no candidate gathered");
        assert!(kinds.iter().all(|k| k == "relay"), "a non-relay candidate was sent: {kinds:?}");
    }
}

#[test]
fn relay_only_without_a_turn_server_is_a_clear_error() {
    let server = Server::start(&[]).unwrap();
    let media = ["--loopback", "--relay-only", "--width", "320", "--height", "240"];
    let mut a = Client::start("a", &server.ws_url(), &media).unwrap();
    let mut b = Client::start("b", &server.ws_url(), &["--loopback", "--width", "320", "--height", "240"]).unwrap();
    let error = a.wait_for(T, "an error", |e| e["event"] == "error" && e["kind"] == "call").unwrap();
    assert!(error["message"].as_str().unwrap().contains("TURN"), "{error}");
    // The stranger hears the call is over.
    b.wait_event(T, "partner_left").unwrap();
}

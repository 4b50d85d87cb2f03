//! A call whose secure (DTLS) handshake loses flights still connects, with the same stranger.
//! In a network namespace of the test's own, nftables drops the first two datagrams that start
//! one side's flight. The other side then repeats its own previous flight, and in the DTLS
//! stack that stops the retransmission timer of the side whose flight was lost: the handshake
//! would wait forever. Two drops make that certain, whichever timer fires first after the
//! first drop. The initiator notices that the handshake makes no progress and builds its peer
//! connection anew; the partner answers the new session with a new connection of its own.
//! Needs root (network namespaces and nftables); skipped, saying so, without it.

use std::time::Duration;

use serde_json::Value;
use strangers_system_tests::{call_in, root_or_skip, Client, Netns, RawPeer, Server};

const T: Duration = Duration::from_secs(30);
const MEDIA: [&str; 9] = ["--loopback", "--bind", "127.0.0.1", "--width", "320", "--height", "240", "--fps", "30"];

/// Matches the first two datagrams that start with a DTLS handshake record (content type 22)
/// whose first message is of type `message`. The UDP payload starts at bit 64 of the transport
/// header; the handshake type is its 14th byte, after the 13-byte record header.
fn first_two_flights_starting_with(message: &'static str) -> [&'static str; 10] {
    ["@th,64,8", "22", "@th,168,8", message, "limit", "rate", "1/hour", "burst", "2", "packets"]
}

/// The DTLS client's key flight starts with its Certificate (type 11); in DTLS 1.2 no other
/// flight does.
#[test]
fn a_call_connects_although_its_dtls_handshake_loses_the_clients_key_flight() {
    survives_lost_flights("key", &first_two_flights_starting_with("11"));
}

/// The DTLS server's flight starts with ServerHello (type 2). Its loss makes the client repeat
/// its ClientHello, which stops the server's retransmission timer in turn.
#[test]
fn a_call_connects_although_its_dtls_handshake_loses_the_servers_flight() {
    survives_lost_flights("server", &first_two_flights_starting_with("2"));
}

fn survives_lost_flights(tag: &str, rule: &[&str]) {
    if !root_or_skip("handshake", "network namespaces and nftables") {
        return;
    }
    // Dropped last: the processes below end before their namespace is deleted.
    let netns = Netns::create(&format!("strangers-dtls-{tag}-{}", std::process::id())).expect("network namespace");
    netns.drop_udp_input("flights", rule).expect("nftables rule");
    let (_server, mut a, mut b) = call_in(&netns, &MEDIA, T).unwrap();
    let dropped = netns.dropped("flights").unwrap();
    assert!((1..=2).contains(&dropped), "flights dropped: {dropped}");
    // The initiator renewed its stalled connection, and its partner followed.
    let initiator =
        [&a, &b].into_iter().find(|c| c.seen_named("matched")[0]["initiator"] == true).expect("an initiator");
    let other = if initiator.name == a.name { &b } else { &a };
    let renewed =
        |c: &Client, reason: &str| c.seen_named("call_renewed").iter().filter(|e| e["reason"] == reason).count();
    assert!(renewed(initiator, "stalled") >= 1, "{}: {:?}", initiator.name, initiator.seen_named("call_renewed"));
    assert_eq!(
        renewed(other, "partner_renewed"),
        renewed(initiator, "stalled"),
        "{:?}",
        other.seen_named("call_renewed")
    );
    // The call is whole: frames verify on both sides and chat gets through.
    for c in [&mut a, &mut b] {
        let name = c.name.clone();
        c.wait_for(T, "verified frames", |e| e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= 30)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    a.command("chat hello after the lost flight").unwrap();
    let said = b.wait_event(T, "chat").unwrap();
    assert_eq!(said["text"], "hello after the lost flight");
    // With the same stranger all along: one match, nobody left, nothing failed.
    for c in [&a, &b] {
        assert_eq!(c.seen_named("matched").len(), 1, "{}: matched again: {:?}", c.name, c.seen_named("matched"));
        for name in ["partner_left", "error", "idle"] {
            assert!(c.seen_named(name).is_empty(), "{}: {name}: {:?}", c.name, c.seen_named(name));
        }
    }
}

/// The next offer a raw peer receives (candidates are skipped), and its SDP session id.
fn next_offer(peer: &mut RawPeer) -> String {
    loop {
        let signal: Value = peer.expect("signal").expect("a signal");
        if signal["data"]["sdp"]["type"] == "offer" {
            let sdp = signal["data"]["sdp"]["sdp"].as_str().expect("an SDP text");
            let origin = sdp.lines().find_map(|l| l.strip_prefix("o=")).expect("an origin line");
            return origin.split_whitespace().nth(1).expect("a session id").to_owned();
        }
    }
}

/// An offer that is never answered (as when it is lost with a failed server) leaves ICE with
/// nothing to check: the initiator renews its connection after a while and offers a new
/// session. The stranger here is a bare protocol client that ignores the first offer.
#[test]
fn an_offer_never_answered_is_made_again_on_a_new_connection() {
    let server = Server::start(&[]).unwrap();
    let mut client =
        Client::start("offerer", &server.ws_url(), &["--loopback", "--width", "320", "--height", "240"]).unwrap();
    // The client must wait longer than the stranger, so it offers.
    let deadline = std::time::Instant::now() + T;
    while server.metric("queued").unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "the client never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut peer = RawPeer::connect(&server.ws_url()).unwrap();
    peer.send(r#"{"type":"hello","version":1}"#).unwrap();
    peer.expect("welcome").unwrap();
    peer.send(r#"{"type":"find"}"#).unwrap();
    assert_eq!(peer.expect("matched").unwrap()["initiator"], false, "the client waited longer, so it offers");
    let first = next_offer(&mut peer);
    let second = next_offer(&mut peer);
    assert_ne!(first, second, "the second offer is for a new connection");
    let renewed = client.wait_event(T, "call_renewed").unwrap();
    assert_eq!(renewed["reason"], "stalled", "{renewed}");
    assert!(client.seen_named("partner_left").is_empty() && client.seen_named("error").is_empty());
}

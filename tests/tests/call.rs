//! Two real headless clients meet through the real signal server on loopback: they match,
//! connect peer to peer, decode hundreds of verified frames in order, hear each other's tone,
//! chat, ask each other for keyframes, and `next` pairs one of them with a third client.

use std::time::Duration;

use serde_json::Value;
use strangers_system_tests::{Client, Server};

const T: Duration = Duration::from_secs(20);
/// Small pictures keep three clients and a server light on two cores.
const MEDIA: [&str; 7] = ["--loopback", "--width", "320", "--height", "240", "--fps", "30"];

fn client(name: &str, server: &Server, extra: &[&str]) -> Client {
    let mut args: Vec<&str> = MEDIA.to_vec();
    args.extend_from_slice(extra);
    Client::start(name, &server.ws_url(), &args).expect("client starts")
}

/// Waits until a client's stats show `frames` verified frames, checking the stream stays clean.
fn wait_verified(c: &mut Client, frames: u64) -> Value {
    c.wait_for(Duration::from_secs(30), "enough verified frames", |e| {
        e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= frames
    })
    .expect("frames verified")
}

fn assert_clean(stats: &Value, who: &str) {
    assert_eq!(stats["verify_errors"], 0, "{who}: corrupt frames: {stats}");
    assert_eq!(stats["out_of_order"], 0, "{who}: frames out of order: {stats}");
    assert_eq!(stats["width"], 320, "{who}: {stats}");
    assert_eq!(stats["height"], 240, "{who}: {stats}");
}

/// Waits for a second of audio whose dominant frequency is the stranger's tone (within 5 Hz).
/// The first second of a call may hold the jitter buffer's start-up gaps, which move the
/// estimate; a tone that never comes through fails, listing the last statistics heard.
fn wait_tone(client: &mut Client, hz: f64, who: &str) -> Value {
    client
        .wait_for(T, &format!("{who} to hear {hz} Hz"), |e| {
            e["event"] == "stats" && e["audio_hz"].as_f64().is_some_and(|heard| (heard - hz).abs() < 5.0)
        })
        .unwrap()
}

#[test]
fn two_clients_call_chat_and_next_repairs_with_a_third() {
    let server = Server::start(&[]).expect("server starts");
    let mut a = client("a", &server, &["--tone-hz", "440", "--say", "hello from a"]);
    let mut b = client("b", &server, &["--tone-hz", "660", "--say", "hello from b"]);

    let ma = a.wait_event(T, "matched").unwrap();
    let mb = b.wait_event(T, "matched").unwrap();
    assert_eq!(ma["room"], mb["room"], "both sides name the same room");
    assert_ne!(ma["initiator"], mb["initiator"], "exactly one side offers");
    for c in [&mut a, &mut b] {
        c.wait_event(T, "connected").unwrap();
        let first = c.wait_event(T, "first_frame").unwrap();
        assert_eq!(first["width"], 320);
    }

    let sa = wait_verified(&mut a, 200);
    let sb = wait_verified(&mut b, 200);
    assert_clean(&sa, "a");
    assert_clean(&sb, "b");
    // Each hears the other's tone.
    let sa = wait_tone(&mut a, 660.0, "a");
    wait_tone(&mut b, 440.0, "b");
    // Chat went peer to peer, exactly once each way.
    assert_eq!(a.seen_named("chat").len(), 1, "a got one chat message");
    assert_eq!(a.seen_named("chat")[0]["text"], "hello from b");
    assert_eq!(b.seen_named("chat").len(), 1, "b got one chat message");
    assert_eq!(b.seen_named("chat")[0]["text"], "hello from a");
    assert_eq!(sa["path"]["local"], "host");

    // A keyframe request (PLI) from a reaches b's encoder, and the picture stays clean.
    let before = b.wait_event(T, "stats").unwrap()["keyframes_requested"].as_u64().unwrap();
    a.command("keyframe").unwrap();
    b.wait_for(T, "the keyframe request", |e| {
        e["event"] == "stats" && e["keyframes_requested"].as_u64().unwrap_or(0) > before
    })
    .unwrap();
    let after = a.wait_event(T, "stats").unwrap();
    assert_clean(&after, "a after a keyframe");

    // A third client waits; `next` from a pairs it with a (the longest-waiting stranger).
    let mut c = client("c", &server, &["--tone-hz", "880"]);
    c.wait_event(T, "queued").unwrap();
    a.command("next").unwrap();
    let left = b.wait_event(T, "partner_left").unwrap();
    assert_eq!(left["reason"], "next");
    let ma2 = a.wait_event(T, "matched").unwrap();
    let mc = c.wait_event(T, "matched").unwrap();
    assert_eq!(ma2["room"], mc["room"], "a and c are paired");
    assert_ne!(ma2["room"], ma["room"], "in a new room");
    a.wait_event(T, "first_frame").unwrap();
    c.wait_event(T, "first_frame").unwrap();
    // The new call's counters start afresh and stay clean.
    let sc = wait_verified(&mut c, 60);
    assert_clean(&sc, "c");
    let sa2 = wait_verified(&mut a, 60);
    assert_clean(&sa2, "a after next");
    wait_tone(&mut c, 440.0, "c");
    // b went back to the queue and found nobody free.
    b.wait_for(T, "b queued again", |e| e["event"] == "queued").unwrap();
}

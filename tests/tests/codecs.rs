//! Video codec negotiation between two real headless clients on loopback: VP8 by default,
//! H.264 when both prefer it, and H.264 when either side has only H.264, whichever side offers.
//! Each call decodes and verifies frames both ways in the codec both sides report.

use std::time::Duration;

use serde_json::Value;
use strangers_system_tests::{Client, Server};

const T: Duration = Duration::from_secs(20);
const MEDIA: [&str; 7] = ["--loopback", "--width", "320", "--height", "240", "--fps", "30"];

fn client(name: &str, server: &Server, extra: &[&str]) -> Client {
    let mut args: Vec<&str> = MEDIA.to_vec();
    args.extend_from_slice(extra);
    Client::start(name, &server.ws_url(), &args).expect("client starts")
}

/// Runs a call between an offerer with `offerer_args` (it queues first, so it offers) and an
/// answerer with `answerer_args`, and checks both sides send and receive verified video in
/// `codec`.
fn call_in(codec: &str, offerer_args: &[&str], answerer_args: &[&str]) {
    let server = Server::start(&[]).expect("server starts");
    let mut offerer = client("offerer", &server, offerer_args);
    offerer.wait_event(T, "queued").unwrap();
    let mut answerer = client("answerer", &server, answerer_args);
    assert_eq!(offerer.wait_event(T, "matched").unwrap()["initiator"], true, "the first to queue offers");
    assert_eq!(answerer.wait_event(T, "matched").unwrap()["initiator"], false);
    for (c, who) in [(&mut offerer, "offerer"), (&mut answerer, "answerer")] {
        let stats: Value = c
            .wait_for(T, "verified frames", |e| {
                e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= 60
            })
            .unwrap();
        assert_eq!(stats["codec"], codec, "{who} sends in {codec}: {stats}");
        assert_eq!(stats["verify_errors"], 0, "{who}: corrupt frames: {stats}");
        assert_eq!(stats["width"], 320, "{who}: {stats}");
        assert!(c.seen_named("error").is_empty(), "{who} reported errors: {:?}", c.seen_named("error"));
    }
}

#[test]
fn two_clients_call_in_vp8_by_default() {
    call_in("VP8", &[], &[]);
}

#[test]
fn two_clients_preferring_h264_call_in_h264() {
    call_in("H264", &["--video-codecs", "h264,vp8"], &["--video-codecs", "h264,vp8"]);
}

#[test]
fn an_offerer_with_only_h264_gets_h264() {
    call_in("H264", &["--video-codecs", "h264"], &[]);
}

#[test]
fn an_answerer_with_only_h264_gets_h264() {
    call_in("H264", &[], &["--video-codecs", "h264"]);
}

#[test]
fn the_answerer_follows_the_offerers_order() {
    // The answerer prefers H.264 but the offerer lists VP8 first: VP8 it is.
    call_in("VP8", &[], &["--video-codecs", "h264,vp8"]);
}

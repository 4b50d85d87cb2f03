//! A client whose signaling socket drops mid-call reconnects, resumes its session with its
//! token, and the peer-to-peer call never stops.

use std::time::Duration;

use strangers_system_tests::{Client, CutProxy, Server};

const T: Duration = Duration::from_secs(20);

#[test]
fn a_dropped_signaling_socket_resumes_without_dropping_the_call() {
    let server = Server::start(&["--resume-grace", "10"]).unwrap();
    let proxy = CutProxy::start(&server.addr).unwrap();
    let media = ["--loopback", "--width", "320", "--height", "240"];
    let mut a = Client::start("a", &proxy.ws_url(), &media).unwrap();
    let mut b = Client::start("b", &server.ws_url(), &media).unwrap();
    a.wait_event(T, "first_frame").unwrap();
    b.wait_event(T, "first_frame").unwrap();
    let before =
        a.wait_for(T, "frames", |e| e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= 30).unwrap();
    let first_welcome = a.seen_named("welcome")[0].clone();

    proxy.cut();
    a.wait_event(T, "server_down").unwrap();
    let welcome = a.wait_event(T, "welcome").unwrap();
    assert_eq!(welcome["resumed"], true, "{welcome}");
    assert_eq!(welcome["id"], first_welcome["id"], "the same session came back");

    // Media kept flowing through and after the drop, on both sides, with no partner_left.
    let after = a
        .wait_for(T, "more frames", |e| {
            e["event"] == "stats"
                && e["frames_verified"].as_u64().unwrap_or(0) >= before["frames_verified"].as_u64().unwrap() + 60
        })
        .unwrap();
    assert_eq!(after["verify_errors"], 0);
    b.wait_for(T, "b frames", |e| e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= 120).unwrap();
    assert!(a.seen_named("partner_left").is_empty(), "a lost its partner");
    assert!(b.seen_named("partner_left").is_empty(), "b lost its partner");
    // The call is still the same call: signaling works after the resume (a chat goes P2P, but
    // `next` goes through the server and must reach b).
    a.command("next").unwrap();
    let left = b.wait_event(T, "partner_left").unwrap();
    assert_eq!(left["reason"], "next");
}

//! A client whose signaling socket drops mid-call reconnects, resumes its session with its
//! token, and the peer-to-peer call never stops.

use std::time::Duration;

use strangers_system_tests::{assert_call_survived, Client, CutProxy, Server};

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
    // Media kept flowing through and after the drop, on both sides, with no partner_left; the
    // call is still the same call: `next` goes through the server and must reach b.
    let frames_before = before["frames_verified"].as_u64().unwrap();
    assert_call_survived(&mut a, &mut b, &first_welcome, frames_before, T).unwrap();
}

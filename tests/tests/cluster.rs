//! Three signal servers sharing one Redis. A node is killed with SIGKILL mid-call: its client
//! moves to the next server in its list, resumes its session there with its token, and the
//! peer-to-peer call never stops, because media never passed through the server.

use std::time::Duration;

use strangers_system_tests::{Client, Redis, Server};

const T: Duration = Duration::from_secs(20);

#[test]
fn a_killed_node_costs_its_clients_nothing_but_a_reconnect() {
    let redis = Redis::start().unwrap();
    let flags = ["--redis", &redis.url, "--node-timeout", "1", "--resume-grace", "10"];
    let doomed = Server::start(&flags).unwrap();
    let second = Server::start(&flags).unwrap();
    let third = Server::start(&flags).unwrap();
    let media = ["--loopback", "--width", "320", "--height", "240"];
    // a knows two servers and starts on the one that will die; b is on another node.
    let servers = format!("{},{}", doomed.ws_url(), second.ws_url());
    let mut a = Client::start("a", &servers, &media).unwrap();
    let mut b = Client::start("b", &third.ws_url(), &media).unwrap();
    a.wait_event(T, "first_frame").unwrap();
    b.wait_event(T, "first_frame").unwrap();
    let before =
        a.wait_for(T, "frames", |e| e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= 30).unwrap();
    let first_welcome = a.seen_named("welcome")[0].clone();

    drop(doomed); // SIGKILL
    a.wait_event(T, "server_down").unwrap();
    let welcome = a.wait_event(T, "welcome").unwrap();
    assert_eq!(welcome["resumed"], true, "{welcome}");
    assert_eq!(welcome["id"], first_welcome["id"], "the same session came back on another node");

    let after = a
        .wait_for(T, "more frames", |e| {
            e["event"] == "stats"
                && e["frames_verified"].as_u64().unwrap_or(0) >= before["frames_verified"].as_u64().unwrap() + 60
        })
        .unwrap();
    assert_eq!(after["verify_errors"], 0);
    assert!(a.seen_named("partner_left").is_empty(), "a lost its partner");
    assert!(b.seen_named("partner_left").is_empty(), "b lost its partner");
    // Signaling goes on across nodes: a's next, sent through the second node, reaches b.
    a.command("next").unwrap();
    let left = b.wait_event(T, "partner_left").unwrap();
    assert_eq!(left["reason"], "next");
}

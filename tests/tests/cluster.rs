//! Three signal servers sharing one Redis. A node is killed with SIGKILL mid-call: its client
//! moves to the next server in its list, resumes its session there with its token, and the
//! peer-to-peer call never stops, because media never passed through the server.

use std::time::Duration;

use strangers_system_tests::{assert_call_survived, Client, Redis, Server};

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
    // Same session on another node, media unbroken, and a's next (through the second node)
    // reaches b on the third.
    let frames_before = before["frames_verified"].as_u64().unwrap();
    assert_call_survived(&mut a, &mut b, &first_welcome, frames_before, T).unwrap();
}

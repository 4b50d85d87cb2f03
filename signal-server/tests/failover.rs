//! Losing parts of a cluster: a node killed with SIGKILL mid-call, a ban reached on one node,
//! Redis itself restarting empty, and a node started before its Redis. Real redis-server, real
//! node processes.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::node::NodeProcess;
use support::{candidate, loopback, match_pair, relayed, Event, RedisServer, TestServer};

fn nodes(redis: &RedisServer, count: usize, flags: &[&str]) -> Vec<NodeProcess> {
    (0..count).map(|_| NodeProcess::start(redis, flags)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_call_has_its_clients_resume_on_another_node() {
    let redis = RedisServer::start();
    let mut nodes = nodes(&redis, 3, &["--node-timeout", "1", "--resume-grace", "3"]);
    let [n0, n1, n2] = [0, 1, 2].map(|i| TestServer::at(nodes[i].server.addr));
    let mut a = n0.greeted().await;
    let mut b = n1.greeted().await;
    let room = match_pair(&mut a, &mut b).await;
    let mut c = n0.greeted().await;
    let mut d = n2.greeted().await;
    match_pair(&mut c, &mut d).await;

    nodes[0].kill9();
    assert!(matches!(a.recv().await, Event::Ended(_)), "a's node is gone");
    assert!(matches!(c.recv().await, Event::Ended(_)), "c's node is gone");
    // Redis sees the dead node's subscription close at once; what b sends now is held.
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.send_text(&candidate(1));

    // a resumes its room through another node: the call never needed the server.
    let mut a2 = n2.connect().await;
    let welcome = a2.resume(&a.token).await;
    assert_eq!(welcome["resumed"], json!(true));
    assert_eq!(welcome["room"], json!(room));
    assert_eq!(a2.recv_text().await, relayed(1));
    a2.send_text(&candidate(2));
    assert_eq!(b.recv_text().await, relayed(2));
    b.send_text(&candidate(3));
    assert_eq!(a2.recv_text().await, relayed(3));

    // c never comes back: once the node is reaped and the grace is over, d is told.
    let started = Instant::now();
    let left = d.recv_within(Duration::from_secs(10)).await;
    assert_eq!(left, Event::Text(r#"{"type":"partner_left","reason":"disconnect"}"#.into()));
    eprintln!("partner of a dead node's client told after {:?}", started.elapsed());
    b.expect_silence(200).await;

    // Nothing of c's session stays: a, b and d are the only sessions left.
    assert_eq!(redis.keys("strangers:s:*").len(), 3, "{:?}", redis.keys("strangers:*"));
    assert_eq!(redis.keys("strangers:c:*").len(), 3);
    assert!(redis.violations().is_empty(), "{:?}", redis.violations());
    let metrics = n1.metrics().await;
    assert_eq!(metrics.get("strangers_sessions"), 3.0);
    assert_eq!(metrics.get("strangers_rooms"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_reached_on_one_node_applies_on_every_node_within_a_second() {
    let redis = RedisServer::start();
    let nodes = nodes(&redis, 3, &["--report-threshold", "2"]);
    let (n0, n1, n2) = (&nodes[0].server, &nodes[1].server, &nodes[2].server);
    let mut bad = n0.connect_from(loopback(9)).await;
    bad.hello().await;
    let mut bad_idle = n2.connect_from(loopback(9)).await;
    bad_idle.hello().await;

    let mut r1 = n1.connect_from(loopback(11)).await;
    r1.hello().await;
    match_pair(&mut bad, &mut r1).await;
    r1.send_json(json!({"type": "report", "reason": "rude"}));
    r1.send_json(json!({"type": "next"}));
    bad.expect_partner_left("next").await;
    r1.expect("queued").await;

    let mut r2 = n2.connect_from(loopback(12)).await;
    r2.hello().await;
    r1.send_json(json!({"type": "stop"}));
    r1.send_json(json!({"type": "signal", "data": {"restart": true}}));
    r1.expect_error("not_matched").await;
    match_pair(&mut bad, &mut r2).await;
    r2.send_json(json!({"type": "report", "reason": "rude again"}));

    for client in [&mut bad, &mut bad_idle] {
        let error = client.recv_within(Duration::from_secs(1)).await;
        let Event::Text(text) = error else { panic!("expected banned, got {error:?}") };
        assert!(text.contains(r#""code":"banned""#), "{text}");
        assert!(matches!(client.recv_within(Duration::from_secs(1)).await, Event::Closed(1008, _)));
    }
    r2.expect_partner_left("disconnect").await;

    // Every node refuses the address now.
    for node in [n0, n1, n2] {
        let mut again = node.connect_from(loopback(9)).await;
        again.send_json(json!({"type": "hello", "version": 1}));
        again.expect_error("banned").await;
        again.expect_close(1008).await;
    }
    let mut fine = n1.connect_from(loopback(13)).await;
    fine.hello().await;
    assert_eq!(n0.metrics().await.get("strangers_bans_active"), 1.0);
}

async fn healthz(server: &TestServer) -> u16 {
    server.get("/healthz").await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_ride_out_a_redis_restart() {
    let mut redis = RedisServer::start();
    let nodes = nodes(&redis, 2, &["--node-timeout", "1"]);
    let (n0, n1) = (&nodes[0].server, &nodes[1].server);
    let mut a = n0.greeted().await;
    let mut b = n1.greeted().await;
    match_pair(&mut a, &mut b).await;

    redis.kill();
    // Meanwhile: a clear error, not a crash, and /healthz says why.
    a.send_text(&candidate(1));
    let error = a.recv_within(Duration::from_secs(10)).await;
    let Event::Text(text) = error else { panic!("expected unavailable, got {error:?}") };
    assert!(text.contains(r#""code":"unavailable""#), "{text}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthz(n0).await != 503 {
        assert!(Instant::now() < deadline, "/healthz still says ok without Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    redis.restart();
    // Redis came back empty: every node asks its sockets to reconnect.
    for client in [&mut a, &mut b] {
        match client.recv_within(Duration::from_secs(15)).await {
            Event::Closed(1012, _) => {}
            other => panic!("expected close 1012, got {other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthz(n0).await != 200 || healthz(n1).await != 200 {
        assert!(Instant::now() < deadline, "/healthz does not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old tokens are gone with the old state: fresh sessions, which pair again.
    let mut a = n0.connect().await;
    assert_eq!(a.resume(&b.token).await["resumed"], json!(false));
    let mut b = n1.greeted().await;
    match_pair(&mut a, &mut b).await;
    a.send_text(&candidate(2));
    assert_eq!(b.recv_text().await, relayed(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_redis_waits_for_it() {
    let mut redis = RedisServer::start();
    redis.kill();
    let mut nodes = nodes(&redis, 2, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for node in &mut nodes {
        assert!(node.is_running(), "a node gave up on a Redis that is not up yet");
    }
    redis.restart();
    // Clients that came while Redis was away are served once it is up, and pair across nodes.
    let (mut a, mut b) = tokio::time::timeout(Duration::from_secs(15), async {
        (nodes[0].server.greeted().await, nodes[1].server.greeted().await)
    })
    .await
    .expect("the nodes serve once Redis is up");
    match_pair(&mut a, &mut b).await;
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));
}

//! Several signal servers sharing one real redis-server: pairing and relay across nodes.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::{candidate, config, relayed, RedisServer, TestServer};

async fn cluster(nodes: usize, flags: &[&str]) -> (Arc<RedisServer>, Vec<TestServer>) {
    let redis = Arc::new(RedisServer::start());
    let mut servers = Vec::new();
    for _ in 0..nodes {
        servers.push(TestServer::start_with_redis(config(flags), &redis).await);
    }
    (redis, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_two_nodes_meet_and_their_signals_cross_in_order() {
    let (_redis, nodes) = cluster(2, &[]).await;
    let mut a = nodes[0].greeted().await;
    let mut b = nodes[1].greeted().await;
    let room = support::match_pair(&mut a, &mut b).await;
    assert_eq!(room.len(), 16);
    for n in 0..50 {
        a.send_text(&candidate(n));
        b.send_text(&candidate(1000 + n));
    }
    for n in 0..50 {
        assert_eq!(b.recv_text().await, relayed(n));
        assert_eq!(a.recv_text().await, relayed(1000 + n));
    }
    b.send_json(json!({"type": "next"}));
    a.expect_partner_left("next").await;
    b.expect("queued").await;
    a.expect_silence(100).await;
}

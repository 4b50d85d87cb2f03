//! Several signal servers sharing one real redis-server: pairing and relay across nodes, and
//! hundreds of clients churning across three node processes with the matching invariants
//! checked from what the clients saw.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::node::NodeProcess;
use support::{candidate, config, loopback, relayed, Client, Event, RedisServer, TestServer};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

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

/// Signals skip the scripts while both sockets of a room are up (`redis/route.rs`); when the
/// partner's socket is gone, moved or out of the room, they fall back to the scripts and
/// nothing is lost, reordered or handed to the wrong stranger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_to_a_partner_that_dropped_or_moved_node_are_held_and_follow_it() {
    let (_redis, nodes) = cluster(3, &[]).await;
    let mut a = nodes[0].greeted().await;
    let mut b = nodes[1].greeted().await;
    let room = support::match_pair(&mut a, &mut b).await;
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));

    // b's socket drops; once its node knows, what a sends waits for b's resume.
    let token = b.token.clone();
    b.drop_abruptly();
    nodes[1].wait_metric("strangers_sessions_dropped", 1.0).await;
    for n in 2..5 {
        a.send_text(&candidate(n));
    }
    // b resumes on a third node: the held signals first, then a's next ones, in order.
    let mut b2 = nodes[2].connect().await;
    let welcome = b2.resume(&token).await;
    assert_eq!(welcome["room"], json!(room));
    for n in 2..5 {
        assert_eq!(b2.recv_text().await, relayed(n));
    }
    for n in 5..25 {
        a.send_text(&candidate(n));
    }
    for n in 5..25 {
        assert_eq!(b2.recv_text().await, relayed(n));
    }
    b2.send_text(&candidate(100));
    assert_eq!(a.recv_text().await, relayed(100));

    // The room ends: a's signals now reach nobody, and a is told it is not matched.
    b2.send_json(json!({"type": "next"}));
    a.expect_partner_left("next").await;
    b2.expect("queued").await;
    a.send_text(&candidate(200));
    a.expect_error("not_matched").await;
    let mut c = nodes[0].greeted().await;
    c.send_json(json!({"type": "find"}));
    c.expect("queued").await;
    assert_eq!(c.expect("matched").await["room"].as_str().map(str::len), Some(16));
    b2.expect("matched").await;
    c.expect_silence(100).await;
    b2.expect_silence(100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_interest_is_found_on_another_node_and_the_queue_is_shared() {
    let (_redis, nodes) = cluster(3, &["--interest-wait", "30"]).await;
    let mut clients = Vec::new();
    for (node, interests) in nodes.iter().zip([json!(["chess"]), json!(["go"]), json!(["Chess", "art"])]) {
        let mut client = node.connect().await;
        client.hello_with(json!({"type": "hello", "version": 1, "interests": interests})).await;
        client.send_json(json!({"type": "find"}));
        client.expect("queued").await;
        clients.push(client);
    }
    let [mut a, mut b, mut c]: [Client; 3] = clients.try_into().ok().unwrap();
    let mc = c.expect("matched").await;
    let ma = a.expect("matched").await;
    assert_eq!(ma["room"], mc["room"]);
    assert_eq!(ma["common_interests"], json!(["chess"]));
    assert_eq!(ma["initiator"], json!(true));
    b.expect_silence(200).await;
}

/// A tiny deterministic generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What every client saw, for the checks across clients.
#[derive(Default)]
struct Observed {
    /// Room id -> (client id, initiator) of each client told it is in that room.
    rooms: Mutex<HashMap<String, Vec<(String, bool)>>>,
    /// Rooms finished (each counted by both members).
    finished: AtomicUsize,
    signals: AtomicUsize,
    resumes: AtomicUsize,
    reconnects: AtomicUsize,
}

const CLIENTS: usize = 300;
const ROOMS_EACH: usize = 10;
/// Signals each side sends in each room.
const K: usize = 5;

fn tagged_signal(from: &str, room: &str, seq: usize) -> Value {
    json!({"type": "signal", "data": {"candidate": {"candidate": format!("candidate:{seq} 1 udp 1 127.0.0.1 9 typ host"), "sdpMid": format!("{from}|{room}|{seq}")}}})
}

struct Churner {
    i: usize,
    rng: Rng,
    nodes: Arc<Vec<TestServer>>,
    seen: Arc<Observed>,
    client: Client,
    node: usize,
}

impl Churner {
    async fn connect(nodes: &[TestServer], node: usize, i: usize) -> Client {
        nodes[node].connect_from(loopback(1 + (i % 200) as u8)).await
    }

    fn done(&self) -> bool {
        self.seen.finished.load(Ordering::Relaxed) >= CLIENTS * ROOMS_EACH
    }

    /// Waits for `matched`, or gives up (idle, and says false) once everyone has had enough.
    /// Notes that this client was told it is in a room.
    fn record(&self, matched: &Value) {
        let room = matched["room"].as_str().unwrap().to_owned();
        let initiator = matched["initiator"].as_bool().unwrap();
        self.seen.rooms.lock().unwrap().entry(room).or_default().push((self.client.id.clone(), initiator));
    }

    async fn await_match(&mut self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "client {}: no match within 60 s", self.i);
            match tokio::time::timeout(Duration::from_millis(300), self.client.recv()).await {
                Ok(Event::Text(text)) => {
                    let msg: Value = serde_json::from_str(&text).unwrap();
                    match msg["type"].as_str() {
                        Some("matched") => {
                            self.record(&msg);
                            return Some(msg["room"].as_str().unwrap().to_owned());
                        }
                        // A partner who sent next first is announced before our own queued.
                        Some("queued") | Some("partner_left") => {}
                        _ => panic!("client {}: while waiting, unexpected {msg}", self.i),
                    }
                }
                Ok(other) => panic!("client {}: while waiting, unexpected {other:?}", self.i),
                Err(_) if self.done() => {
                    self.sync_idle().await;
                    return None;
                }
                Err(_) => {}
            }
        }
    }

    /// Leaves wherever it is with `stop`, then uses a refused signal as a barrier: anything
    /// the old partner caused before the stop arrives before the refusal.
    async fn sync_idle(&mut self) {
        self.client.send_json(json!({"type": "stop"}));
        self.client.send_json(json!({"type": "signal", "data": {"restart": true}}));
        loop {
            let msg = self.client.recv_json().await;
            match msg["type"].as_str() {
                Some("error") if msg["code"] == "not_matched" => return,
                Some("partner_left") | Some("queued") => {}
                // Matched just before the stop: the room counts, and ends at once.
                Some("matched") => self.record(&msg),
                // At the very end a client may leave a room it was just put in.
                Some("signal") if self.done() => {}
                _ => panic!("client {}: while stopping, unexpected {msg}", self.i),
            }
        }
    }

    /// One room: send K tagged signals, receive exactly the partner's K in order.
    async fn talk(&mut self, room: &str) -> bool {
        let me = self.client.id.clone();
        for seq in 0..K {
            self.client.send_json(tagged_signal(&me, room, seq));
        }
        let mut partner: Option<String> = None;
        let mut got = 0;
        while got < K {
            let msg = self.client.recv_json().await;
            match msg["type"].as_str() {
                Some("signal") => {
                    let tag = msg["data"]["candidate"]["sdpMid"].as_str().unwrap().to_owned();
                    let parts: Vec<&str> = tag.split('|').collect();
                    assert_eq!(parts[1], room, "client {}: a signal from another room (ghost)", self.i);
                    assert_ne!(parts[0], me, "client {}: its own signal came back", self.i);
                    let from = partner.get_or_insert_with(|| parts[0].to_owned());
                    assert_eq!(parts[0], from, "client {}: two senders in one room", self.i);
                    assert_eq!(parts[2], got.to_string(), "client {}: signals out of order or lost", self.i);
                    got += 1;
                }
                // At the very end, a partner who had enough may leave a fresh room at once.
                Some("partner_left") if self.done() => return false,
                _ => panic!("client {}: in room {room}, after {got} signals, unexpected {msg}", self.i),
            }
        }
        self.seen.signals.fetch_add(K, Ordering::Relaxed);
        true
    }

    async fn run(mut self) {
        self.client.hello().await;
        self.client.send_json(json!({"type": "find"}));
        loop {
            let Some(room) = self.await_match().await else { break };
            if !self.talk(&room).await {
                self.sync_idle().await;
                break;
            }
            self.seen.finished.fetch_add(1, Ordering::Relaxed);
            if self.done() {
                self.sync_idle().await;
                break;
            }
            match self.rng.below(10) {
                0 => {
                    // Drop the socket and resume the (idle) session on another node.
                    self.sync_idle().await;
                    let token = self.client.token.clone();
                    let old = std::mem::replace(&mut self.client, self.nodes[0].connect().await);
                    old.drop_abruptly();
                    self.node = (self.node + 1) % self.nodes.len();
                    self.client = Churner::connect(&self.nodes, self.node, self.i).await;
                    let welcome = self.client.resume(&token).await;
                    assert_eq!(welcome["resumed"], json!(true), "client {}: resume across nodes", self.i);
                    self.seen.resumes.fetch_add(1, Ordering::Relaxed);
                    self.client.send_json(json!({"type": "find"}));
                }
                1 => {
                    // Leave for good and come back as a stranger through another node.
                    self.sync_idle().await;
                    let old = std::mem::replace(&mut self.client, self.nodes[0].connect().await);
                    old.close().await;
                    self.node = (self.node + 2) % self.nodes.len();
                    self.client = Churner::connect(&self.nodes, self.node, self.i).await;
                    self.client.hello().await;
                    self.seen.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.client.send_json(json!({"type": "find"}));
                }
                2 => {
                    self.sync_idle().await;
                    self.client.send_json(json!({"type": "find"}));
                }
                _ => {
                    // next: the partner may have left first; either way we end up queued.
                    self.client.send_json(json!({"type": "next"}));
                }
            }
        }
        // Close cleanly; in the end phase some refusals may still be on their way.
        self.client.send_json(json!({"type": "stop"}));
        self.client.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })));
        loop {
            match self.client.recv().await {
                Event::Text(text) if self.done() => {
                    let msg: Value = serde_json::from_str(&text).unwrap();
                    assert!(msg["type"] == "error" || msg["type"] == "partner_left", "client {}: {msg}", self.i);
                }
                Event::Closed(code, _) => {
                    assert_eq!(code, 1000);
                    break;
                }
                other => panic!("client {}: while closing, unexpected {other:?}", self.i),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_clients_churning_across_three_nodes_keep_every_invariant() {
    let redis = RedisServer::start();
    let flags = ["--rate-limit", "0", "--max-conns-per-ip", "0", "--resume-grace", "5"];
    let processes: Vec<NodeProcess> = (0..3).map(|_| NodeProcess::start(&redis, &flags)).collect();
    let nodes = Arc::new(processes.iter().map(|p| TestServer::at(p.server.addr)).collect::<Vec<_>>());
    let seen = Arc::new(Observed::default());
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let node = i % nodes.len();
        let client = Churner::connect(&nodes, node, i).await;
        let churner = Churner {
            i,
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1)),
            nodes: nodes.clone(),
            seen: seen.clone(),
            client,
            node,
        };
        tasks.push(tokio::spawn(churner.run()));
    }
    // Meanwhile, the shared state is checked again and again, each time in one atomic read.
    let redis = Arc::new(redis);
    let (checked, stop) = (redis.clone(), Arc::new(AtomicBool::new(false)));
    let stopped = stop.clone();
    let checker = tokio::task::spawn_blocking(move || {
        let mut checks = 0;
        while !stopped.load(Ordering::Relaxed) {
            let violations = checked.violations();
            assert!(violations.is_empty(), "shared state broken during the churn: {violations:?}");
            checks += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        checks
    });
    let all = futures_util::future::join_all(tasks);
    for result in tokio::time::timeout(Duration::from_secs(240), all).await.expect("the churn ends in time") {
        result.expect("no client saw a broken invariant");
    }

    stop.store(true, Ordering::Relaxed);
    let checks = checker.await.expect("the shared state held at every check");
    assert!(redis.violations().is_empty(), "{:?}", redis.violations());
    // No self match, no double match: every room has exactly two distinct members, one of
    // whom makes the offer.
    let rooms = std::mem::take(&mut *seen.rooms.lock().unwrap());
    assert!(rooms.len() >= CLIENTS * ROOMS_EACH / 2, "{} rooms", rooms.len());
    for (room, members) in rooms.iter() {
        assert_eq!(members.len(), 2, "room {room}: {members:?}");
        assert_ne!(members[0].0, members[1].0, "room {room}: a client met itself");
        assert_ne!(members[0].1, members[1].1, "room {room}: exactly one initiator");
    }
    assert!(seen.resumes.load(Ordering::Relaxed) > 0 && seen.reconnects.load(Ordering::Relaxed) > 0);

    // Every session ended with its clean close: nothing stays in Redis but counters, and
    // every key left has a TTL.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys = redis.keys("strangers:*");
        let leftovers: Vec<&String> = keys
            .iter()
            .filter(|k| !["strangers:nodes", "strangers:stats", "strangers:seq"].contains(&k.as_str()))
            .collect();
        if leftovers.is_empty() {
            for key in &keys {
                let ttl = redis.command(&["PTTL", key]);
                assert!(ttl.starts_with(':') && !ttl.starts_with(":-"), "{key} has no TTL: {ttl:?}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "keys left after every client closed: {leftovers:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = nodes[0].metrics().await;
    assert_eq!(metrics.get("strangers_sessions"), 0.0);
    assert_eq!(metrics.get("strangers_rooms"), 0.0);
    assert_eq!(metrics.get("strangers_queued"), 0.0);
    assert_eq!(metrics.get("strangers_matches_total"), rooms.len() as f64);
    eprintln!(
        "churn: {} clients, {} rooms, {} signals checked, {} cross-node resumes, {} reconnects, {checks} state checks",
        CLIENTS,
        rooms.len(),
        seen.signals.load(Ordering::Relaxed),
        seen.resumes.load(Ordering::Relaxed),
        seen.reconnects.load(Ordering::Relaxed)
    );
}

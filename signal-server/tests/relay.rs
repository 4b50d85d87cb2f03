//! Relay isolation: a signal reaches the sender's current partner, exactly once and in order,
//! and nobody else, ever; not a client of another room, not the next partner of either side.

mod support;

use serde_json::json;
use support::{candidate, config, relayed, Backend, Client, TestServer, QUIET_MS};

/// Collects `count` text frames.
async fn texts(client: &mut Client, count: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(count);
    for _ in 0..count {
        got.push(client.recv_text().await);
    }
    got
}

async fn signals_arrive_exactly_once_and_in_order_while_both_sides_talk(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--rate-limit", "0"])).await;
    let (mut a, mut b, _) = server.pair().await;
    const N: usize = 300;
    for n in 0..N {
        a.send_text(&candidate(n));
        b.send_text(&candidate(10_000 + n));
    }
    let to_b = texts(&mut b, N).await;
    let to_a = texts(&mut a, N).await;
    assert_eq!(to_b, (0..N).map(relayed).collect::<Vec<_>>());
    assert_eq!(to_a, (10_000..10_000 + N).map(relayed).collect::<Vec<_>>());
    a.expect_silence(200).await;
    b.expect_silence(QUIET_MS).await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_signals_relayed_total"), (2 * N) as f64);
}

async fn rooms_never_hear_each_other(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--rate-limit", "0"])).await;
    let (mut a, mut b, room_ab) = server.pair().await;
    let (mut c, mut d, room_cd) = server.pair().await;
    assert_ne!(room_ab, room_cd);
    for n in 0..50 {
        a.send_text(&candidate(n));
        b.send_text(&candidate(100 + n));
        c.send_text(&candidate(200 + n));
        d.send_text(&candidate(300 + n));
    }
    assert_eq!(texts(&mut b, 50).await, (0..50).map(relayed).collect::<Vec<_>>());
    assert_eq!(texts(&mut a, 50).await, (100..150).map(relayed).collect::<Vec<_>>());
    assert_eq!(texts(&mut d, 50).await, (200..250).map(relayed).collect::<Vec<_>>());
    assert_eq!(texts(&mut c, 50).await, (300..350).map(relayed).collect::<Vec<_>>());
    for client in [&mut a, &mut b, &mut c, &mut d] {
        client.expect_silence(50).await;
    }
}

async fn signals_racing_a_next_never_reach_the_next_partner(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--rate-limit", "0"])).await;
    let (mut a, mut b, _) = server.pair().await;
    let mut c = server.greeted().await;
    c.send_json(json!({"type": "find"}));
    c.expect("queued").await;

    // a keeps signalling while b moves on to c, who is waiting.
    const N: usize = 40;
    for n in 0..N / 2 {
        a.send_text(&candidate(n));
    }
    b.send_json(json!({"type": "next"}));
    for n in N / 2..N {
        a.send_text(&candidate(n));
    }

    // b hears a prefix of a's signals, then its own requeue and the new match. How long the
    // prefix is depends on how the server's reads of the two sockets interleave: no order
    // between two sockets exists on the wire. What matters is that each signal is either
    // relayed to b or refused to a, exactly once, and never reaches c.
    let mut relayed_to_b = 0;
    let room = loop {
        let msg = b.recv_text().await;
        if msg == relayed(relayed_to_b) {
            relayed_to_b += 1;
            continue;
        }
        let msg: serde_json::Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(msg, json!({"type": "queued"}), "after a's signals b hears queued");
        let matched = b.expect("matched").await;
        break matched["room"].clone();
    };
    assert_eq!(c.expect("matched").await["room"], room);

    // a hears that b left, then a refusal for every signal b did not get.
    a.expect_partner_left("next").await;
    for _ in relayed_to_b..N {
        a.expect_error("not_matched").await;
    }
    a.expect_silence(100).await;

    // c hears only b.
    c.expect_silence(100).await;
    b.send_text(&candidate(999));
    assert_eq!(c.recv_text().await, relayed(999));

    // a meets d: d hears nothing of a's old room either.
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    let mut d = server.greeted().await;
    d.send_json(json!({"type": "find"}));
    d.expect("queued").await;
    d.expect("matched").await;
    a.expect("matched").await;
    d.expect_silence(100).await;
    a.send_text(&candidate(1000));
    assert_eq!(d.recv_text().await, relayed(1000));
    d.expect_silence(100).await;
    b.expect_silence(QUIET_MS).await;
    c.expect_silence(QUIET_MS).await;
}

async fn a_partner_switching_rooms_back_and_forth_gets_only_current_signals(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--rate-limit", "0"])).await;
    let mut a = server.greeted().await;
    let mut b = server.greeted().await;
    for round in 0..5 {
        support::match_pair(&mut a, &mut b).await;
        a.send_text(&candidate(round));
        assert_eq!(b.recv_text().await, relayed(round));
        b.send_json(json!({"type": "stop"}));
        a.expect_partner_left("stop").await;
        a.send_text(&candidate(100 + round));
        a.expect_error("not_matched").await;
    }
    b.expect_silence(100).await;
}

on_both_backends!(
    signals_arrive_exactly_once_and_in_order_while_both_sides_talk,
    rooms_never_hear_each_other,
    signals_racing_a_next_never_reach_the_next_partner,
    a_partner_switching_rooms_back_and_forth_gets_only_current_signals,
);

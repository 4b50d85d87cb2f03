//! Drops, resumes and the grace period: an abrupt drop holds the session (its room or its
//! queue place) for the grace period, signals meanwhile wait for the resume, a clean close
//! ends the session at once, and a silent socket counts as dropped.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{candidate, config, relayed, Backend, RawPeer, TestServer, QUIET_MS};

async fn an_abrupt_drop_keeps_the_room_and_buffers_signals_until_the_resume(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "10"])).await;
    let (mut a, b, room) = server.pair().await;
    let (id, token) = (b.id.clone(), b.token.clone());
    b.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;

    for n in 0..10 {
        a.send_text(&candidate(n));
    }
    a.expect_silence(200).await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_rooms"), 1.0);
    assert_eq!(metrics.get("strangers_signals_relayed_total"), 10.0);

    let mut b = server.connect().await;
    let welcome = b.resume(&token).await;
    assert_eq!(welcome["resumed"], json!(true));
    assert_eq!(welcome["room"], json!(room));
    assert_eq!(welcome["id"], json!(id));
    assert_eq!(welcome["resume"], json!(token), "the token stays valid for the next drop");
    for n in 0..10 {
        assert_eq!(b.recv_text().await, relayed(n));
    }
    b.expect_silence(150).await;

    b.send_text(&candidate(100));
    assert_eq!(a.recv_text().await, relayed(100));
    a.send_text(&candidate(101));
    assert_eq!(b.recv_text().await, relayed(101));
    a.expect_silence(100).await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_resumes_total"), 1.0);
    assert_eq!(metrics.get("strangers_sessions_dropped"), 0.0);
}

async fn a_tcp_reset_is_a_drop_too(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "10"])).await;
    let (mut a, b, room) = server.pair().await;
    let token = b.token.clone();
    b.reset();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    a.send_text(&candidate(1));
    let mut b = server.connect().await;
    let welcome = b.resume(&token).await;
    assert_eq!((welcome["resumed"].clone(), welcome["room"].clone()), (json!(true), json!(room)));
    assert_eq!(b.recv_text().await, relayed(1));
    a.expect_silence(100).await;
}

async fn after_the_grace_period_the_partner_hears_disconnect(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "0.6"])).await;
    let (mut a, b, _) = server.pair().await;
    let token = b.token.clone();
    let dropped = Instant::now();
    b.drop_abruptly();
    a.expect_silence(400).await;
    a.expect_partner_left("disconnect").await;
    let waited = dropped.elapsed();
    assert!(waited >= Duration::from_millis(550), "partner_left came after {waited:?}, before the grace period");
    a.expect_silence(100).await;

    // The session is gone: its token starts a new one, and its partner is idle.
    let mut b = server.connect().await;
    let welcome = b.resume(&token).await;
    assert_eq!(welcome["resumed"], json!(false));
    assert_ne!(welcome["resume"], json!(token));
    b.expect_silence(100).await;
    a.send_text(&candidate(1));
    a.expect_error("not_matched").await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_rooms"), 0.0);
    assert_eq!(metrics.get("strangers_resumes_total"), 0.0);
}

async fn buffered_signals_die_with_an_expired_session(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "0.3"])).await;
    let (mut a, b, _) = server.pair().await;
    let token = b.token.clone();
    b.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    a.send_text(&candidate(1));
    a.expect_partner_left("disconnect").await;
    let mut b = server.connect().await;
    assert_eq!(b.resume(&token).await["resumed"], json!(false));
    b.expect_silence(150).await;
}

async fn a_clean_close_ends_the_session_at_once(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "30"])).await;
    let (mut a, b, _) = server.pair().await;
    let token = b.token.clone();
    let closed = Instant::now();
    b.close().await;
    a.expect_partner_left("disconnect").await;
    assert!(closed.elapsed() < Duration::from_secs(2), "a clean close does not wait for the grace period");
    let mut b = server.connect().await;
    assert_eq!(b.resume(&token).await["resumed"], json!(false), "a closed session cannot be resumed");
    server.wait_metric("strangers_sessions_dropped", 0.0).await;
}

async fn a_clean_close_while_queued_leaves_the_queue(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "30"])).await;
    let mut a = server.greeted().await;
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    a.close().await;
    let mut b = server.greeted().await;
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    b.expect_silence(200).await;
}

async fn a_queued_session_whose_socket_dropped_is_never_matched_until_it_resumes(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "10"])).await;
    let mut a = server.greeted().await;
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    let token = a.token.clone();
    a.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    assert_eq!(server.metrics().await.get("strangers_queued"), 0.0, "a dropped session leaves the queue");

    let mut b = server.greeted().await;
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    b.expect_silence(300).await;
    assert_eq!(server.metrics().await.get("strangers_queued"), 1.0);

    let mut a = server.connect().await;
    let welcome = a.resume(&token).await;
    assert_eq!(welcome["resumed"], json!(true));
    assert!(welcome.get("room").is_none(), "a queued session has no room: {welcome}");
    a.expect("queued").await;
    let matched_a = a.expect("matched").await;
    let matched_b = b.expect("matched").await;
    assert_eq!(matched_a["room"], matched_b["room"]);
    assert_eq!(matched_a["initiator"], json!(true), "a resumed session keeps its place and waited longer");
    assert_eq!(matched_b["initiator"], json!(false));
    a.expect_silence(100).await;
}

async fn a_resume_replaces_a_socket_that_is_still_open(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "10"])).await;
    let (mut a, mut b, room) = server.pair().await;
    let mut b2 = server.connect().await;
    let welcome = b2.resume(&b.token).await;
    assert_eq!((welcome["resumed"].clone(), welcome["room"].clone()), (json!(true), json!(room)));
    b.expect_close(4000).await;
    a.expect_silence(150).await;
    a.send_text(&candidate(1));
    assert_eq!(b2.recv_text().await, relayed(1));
    b2.send_text(&candidate(2));
    assert_eq!(a.recv_text().await, relayed(2));
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_rooms"), 1.0);
    assert_eq!(metrics.get("strangers_resumes_total"), 1.0);
}

async fn the_buffer_for_a_dropped_partner_is_bounded_and_says_so(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "10", "--max-pending-signals", "3"])).await;
    let (mut a, b, _) = server.pair().await;
    let token = b.token.clone();
    b.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    for n in 0..5 {
        a.send_text(&candidate(n));
    }
    a.expect_error("buffer_full").await;
    a.expect_error("buffer_full").await;
    a.expect_silence(100).await;
    let mut b = server.connect().await;
    b.resume(&token).await;
    for n in 0..3 {
        assert_eq!(b.recv_text().await, relayed(n));
    }
    b.expect_silence(150).await;
}

async fn leaving_a_dropped_partner_discards_what_was_buffered_for_it(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "10"])).await;
    let (mut a, b, _) = server.pair().await;
    let token = b.token.clone();
    b.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    for n in 0..3 {
        a.send_text(&candidate(n));
    }
    a.send_json(json!({"type": "next"}));
    a.expect("queued").await;

    let mut b = server.connect().await;
    let welcome = b.resume(&token).await;
    assert_eq!(welcome["resumed"], json!(true));
    assert!(welcome.get("room").is_none(), "the room ended: {welcome}");
    b.expect_partner_left("next").await;
    b.expect_silence(150).await;

    // a waits in the queue; b meets it again in a new room, and still hears nothing old.
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    b.expect("matched").await;
    a.expect("matched").await;
    b.expect_silence(150).await;
    a.send_text(&candidate(50));
    assert_eq!(b.recv_text().await, relayed(50));
}

async fn both_sides_dropping_and_resuming_keep_the_room(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--resume-grace", "10"])).await;
    let (a, b, room) = server.pair().await;
    let (token_a, token_b) = (a.token.clone(), b.token.clone());
    a.drop_abruptly();
    b.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 2.0).await;
    let mut a = server.connect().await;
    assert_eq!(a.resume(&token_a).await["room"], json!(room));
    a.send_text(&candidate(1));
    a.expect_silence(100).await;
    let mut b = server.connect().await;
    assert_eq!(b.resume(&token_b).await["room"], json!(room));
    assert_eq!(b.recv_text().await, relayed(1));
    b.send_text(&candidate(2));
    assert_eq!(a.recv_text().await, relayed(2));
}

async fn a_half_open_socket_is_detected_by_pings_and_its_partner_told_after_the_grace(backend: Backend) {
    let (idle, grace) = (0.6, 0.4);
    let server = TestServer::start_on(
        backend,
        config(&["--ping-interval", "0.2", "--idle-timeout", &idle.to_string(), "--resume-grace", &grace.to_string()]),
    )
    .await;
    // A raw peer says hello and find, then never reads again and never answers a ping.
    let mut raw = RawPeer::upgrade(&server).await;
    raw.write_text(r#"{"type":"hello","version":1}"#).await;
    raw.write_text(r#"{"type":"find"}"#).await;
    server.wait_metric("strangers_queued", 1.0).await;
    let silent_since = Instant::now();
    let mut b = server.greeted().await;
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    assert_eq!(b.expect("matched").await["initiator"], json!(false));

    let earliest = Duration::from_secs_f64(idle + grace);
    let quiet = earliest.saturating_sub(silent_since.elapsed() + Duration::from_millis(100));
    b.expect_silence(quiet.as_millis() as u64).await;
    b.expect_partner_left("disconnect").await;
    let waited = silent_since.elapsed();
    assert!(waited >= earliest - Duration::from_millis(100), "partner_left after {waited:?}");
    assert!(waited < earliest + Duration::from_secs(2), "partner_left only after {waited:?}");
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_sessions"), 1.0);
    assert_eq!(metrics.get("strangers_rooms"), 0.0);
    drop(raw);
}

async fn a_silent_socket_counts_as_dropped_and_its_session_can_resume(backend: Backend) {
    let server = TestServer::start_on(
        backend,
        config(&["--ping-interval", "0.2", "--idle-timeout", "0.5", "--resume-grace", "10"]),
    )
    .await;
    let (mut a, b, room) = server.pair().await;
    b.freeze();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    a.send_text(&candidate(1));
    a.expect_silence(100).await;
    let mut b2 = server.connect().await;
    let welcome = b2.resume(&b.token).await;
    assert_eq!((welcome["resumed"].clone(), welcome["room"].clone()), (json!(true), json!(room)));
    assert_eq!(b2.recv_text().await, relayed(1));
    b2.expect_silence(100).await;
    a.expect_silence(QUIET_MS).await;
}

async fn pings_keep_a_quiet_client_alive(backend: Backend) {
    let server = TestServer::start_on(
        backend,
        config(&["--ping-interval", "0.2", "--idle-timeout", "0.5", "--resume-grace", "0.2"]),
    )
    .await;
    let (mut a, mut b, _) = server.pair().await;
    a.expect_silence(1500).await;
    b.expect_silence(QUIET_MS).await;
    assert!(a.pings() > 0 && b.pings() > 0, "the server pings quiet sockets: {} {}", a.pings(), b.pings());
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_sessions_dropped"), 0.0);
    assert_eq!(metrics.get("strangers_rooms"), 1.0);
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));
}

async fn a_frozen_client_that_stops_reading_a_flood_is_dropped_too(backend: Backend) {
    let server = TestServer::start_on(
        backend,
        config(&["--ping-interval", "0.2", "--idle-timeout", "0.6", "--resume-grace", "0.4", "--rate-limit", "0"]),
    )
    .await;
    let (mut a, b, _) = server.pair().await;
    b.freeze();
    let big = format!(r#"{{"type":"signal","data":{{"candidate":{{"candidate":"{}"}}}}}}"#, "x".repeat(60 * 1024));
    for _ in 0..300 {
        a.send_text(&big);
    }
    let started = Instant::now();
    loop {
        let msg = a.recv_json().await;
        if msg["type"] == json!("partner_left") {
            assert_eq!(msg, json!({"type": "partner_left", "reason": "disconnect"}));
            break;
        }
        assert_eq!(msg["code"], json!("buffer_full"), "{msg}");
    }
    assert!(started.elapsed() < Duration::from_secs(4), "partner_left after {:?}", started.elapsed());
    drop(b);
}

on_both_backends!(
    an_abrupt_drop_keeps_the_room_and_buffers_signals_until_the_resume,
    a_tcp_reset_is_a_drop_too,
    after_the_grace_period_the_partner_hears_disconnect,
    buffered_signals_die_with_an_expired_session,
    a_clean_close_ends_the_session_at_once,
    a_clean_close_while_queued_leaves_the_queue,
    a_queued_session_whose_socket_dropped_is_never_matched_until_it_resumes,
    a_resume_replaces_a_socket_that_is_still_open,
    the_buffer_for_a_dropped_partner_is_bounded_and_says_so,
    leaving_a_dropped_partner_discards_what_was_buffered_for_it,
    both_sides_dropping_and_resuming_keep_the_room,
    a_half_open_socket_is_detected_by_pings_and_its_partner_told_after_the_grace,
    a_silent_socket_counts_as_dropped_and_its_session_can_resume,
    pings_keep_a_quiet_client_alive,
    a_frozen_client_that_stops_reading_a_flood_is_dropped_too,
);

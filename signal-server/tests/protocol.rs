//! The rows of PROTOCOL-v1, one message type after another, against the real server.

mod support;

use serde_json::json;
use support::{candidate, config, match_pair, relayed, Backend, TestServer, QUIET_MS};

async fn hello_is_answered_with_a_welcome_and_nothing_else(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut client = server.connect().await;
    let welcome = client.hello().await;
    let fields: Vec<&str> = welcome.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["ice_servers", "id", "resume", "resumed", "type"], "{welcome}");
    assert_eq!(welcome["ice_servers"], json!([]));
    assert_eq!(welcome["resumed"], json!(false));
    assert!(client.id.len() == 16 && client.id.chars().all(|c| c.is_ascii_hexdigit()), "{welcome}");
    assert!(client.token.len() == 64 && client.token.chars().all(|c| c.is_ascii_hexdigit()), "{welcome}");
    client.expect_silence(200).await;

    let mut other = server.connect().await;
    other.hello().await;
    assert_ne!(other.id, client.id);
    assert_ne!(other.token, client.token);
}

async fn stun_urls_are_handed_out_as_given(backend: Backend) {
    let server = TestServer::start_on(
        backend,
        config(&["--stun-url", "stun:127.0.0.1:3478", "--stun-url", "stuns:127.0.0.1:5349"]),
    )
    .await;
    let mut client = server.connect().await;
    let welcome = client.hello().await;
    assert_eq!(welcome["ice_servers"], json!([{"urls": ["stun:127.0.0.1:3478"]}, {"urls": ["stuns:127.0.0.1:5349"]}]));
}

async fn two_finds_make_a_match_with_one_initiator(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut a = server.greeted().await;
    let mut b = server.greeted().await;
    a.send_json(json!({"type": "find"}));
    assert_eq!(a.recv_json().await, json!({"type": "queued"}));
    b.send_json(json!({"type": "find"}));
    assert_eq!(b.recv_json().await, json!({"type": "queued"}));
    let matched_b = b.recv_json().await;
    let room = matched_b["room"].as_str().unwrap().to_owned();
    assert_eq!(matched_b, json!({"type": "matched", "room": room, "initiator": false, "common_interests": []}));
    assert_eq!(
        a.recv_json().await,
        json!({"type": "matched", "room": room, "initiator": true, "common_interests": []})
    );
    a.expect_silence(100).await;
    b.expect_silence(QUIET_MS).await;
}

async fn find_while_queued_is_a_no_op(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut a = server.greeted().await;
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    a.send_json(json!({"type": "find"}));
    a.send_json(json!({"type": "next"}));
    a.expect_silence(200).await;
    let mut b = server.greeted().await;
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    b.expect("matched").await;
    a.expect("matched").await;
    a.expect_silence(200).await;
}

async fn signals_are_relayed_verbatim_in_both_directions_and_never_echoed(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let (mut a, mut b, _) = server.pair().await;
    let offer = r#"{"type":"signal","data":{"sdp":{"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}}}"#;
    a.send_text(offer);
    assert_eq!(b.recv_text().await, offer);
    let answer = r#"{ "type" : "signal", "extra": 1, "data" : {"sdp": {"sdp": "v=0\r\n", "type": "answer"}} }"#;
    b.send_text(answer);
    assert_eq!(a.recv_text().await, r#"{"type":"signal","data":{"sdp": {"sdp": "v=0\r\n", "type": "answer"}}}"#);
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));
    b.send_json(json!({"type": "signal", "data": {"restart": true}}));
    assert_eq!(a.recv_text().await, r#"{"type":"signal","data":{"restart":true}}"#);
    a.expect_silence(150).await;
    b.expect_silence(QUIET_MS).await;
}

async fn next_tells_the_partner_and_requeues_the_leaver(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let (mut a, mut b, room) = server.pair().await;
    b.send_json(json!({"type": "next"}));
    a.expect_partner_left("next").await;
    assert_eq!(b.recv_json().await, json!({"type": "queued"}));

    let mut c = server.greeted().await;
    c.send_json(json!({"type": "find"}));
    c.expect("queued").await;
    let matched_c = c.expect("matched").await;
    let matched_b = b.expect("matched").await;
    assert_eq!(matched_b["room"], matched_c["room"]);
    assert_ne!(matched_b["room"], json!(room), "a new match is a new room");
    assert_eq!(matched_b["initiator"], json!(true), "b waited longer");

    a.send_text(&candidate(1));
    a.expect_error("not_matched").await;
    a.expect_silence(100).await;
    b.expect_silence(QUIET_MS).await;
    c.expect_silence(QUIET_MS).await;
}

async fn stop_while_matched_tells_the_partner_and_leaves_the_client_idle(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let (mut a, mut b, _) = server.pair().await;
    b.send_json(json!({"type": "stop"}));
    a.expect_partner_left("stop").await;
    b.expect_silence(150).await;
    b.send_text(&candidate(1));
    b.expect_error("not_matched").await;
    a.expect_silence(QUIET_MS).await;

    // Both stay connected and can meet again.
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    b.expect("matched").await;
    a.expect("matched").await;
}

async fn stop_while_queued_leaves_the_queue(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut a = server.greeted().await;
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    a.send_json(json!({"type": "stop"}));
    a.expect_silence(100).await;
    server.wait_metric("strangers_queued", 0.0).await;
    let mut b = server.greeted().await;
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    b.expect_silence(200).await;
    a.expect_silence(QUIET_MS).await;
}

async fn signal_and_report_need_a_partner(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut a = server.greeted().await;
    a.send_text(&candidate(1));
    a.expect_error("not_matched").await;
    a.send_json(json!({"type": "report", "reason": "nobody"}));
    a.expect_error("not_matched").await;
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    a.send_text(&candidate(2));
    a.expect_error("not_matched").await;
    a.expect_silence(100).await;
}

async fn find_while_matched_is_refused_and_the_room_survives(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let (mut a, mut b, _) = server.pair().await;
    a.send_json(json!({"type": "find"}));
    a.expect_error("bad_message").await;
    b.expect_silence(100).await;
    a.send_text(&candidate(7));
    assert_eq!(b.recv_text().await, relayed(7));
}

async fn hello_must_come_first_and_only_once(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut a = server.connect().await;
    a.send_json(json!({"type": "find"}));
    a.expect_error("bad_message").await;
    a.send_text(&candidate(1));
    a.expect_error("bad_message").await;
    a.hello().await;
    a.send_json(json!({"type": "hello", "version": 1}));
    a.expect_error("bad_message").await;
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
}

async fn an_unknown_version_is_refused_with_version(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut a = server.connect().await;
    a.send_json(json!({"type": "hello", "version": 2}));
    a.expect_error("version").await;
    a.hello().await;
}

async fn unknown_fields_are_ignored(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut a = server.connect().await;
    a.hello_with(json!({"type": "hello", "version": 1, "client": "test", "resume": null})).await;
    a.send_json(json!({"type": "find", "when": "now", "data": 5}));
    a.expect("queued").await;
}

async fn strangers_sharing_an_interest_are_paired_first(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--interest-wait", "0.3"])).await;
    let mut a = server.connect().await;
    a.hello_with(json!({"type": "hello", "version": 1, "interests": ["Chess", "go"]})).await;
    let mut b = server.connect().await;
    b.hello_with(json!({"type": "hello", "version": 1, "interests": ["art"]})).await;
    let mut c = server.connect().await;
    c.hello_with(json!({"type": "hello", "version": 1, "interests": ["  GO "]})).await;

    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    c.send_json(json!({"type": "find"}));
    c.expect("queued").await;
    let matched_c = c.expect("matched").await;
    assert_eq!(matched_c["common_interests"], json!(["go"]));
    assert_eq!(a.expect("matched").await["room"], matched_c["room"]);

    // After its interest wait, b accepts a stranger with no interest in common.
    let mut d = server.greeted().await;
    d.send_json(json!({"type": "find"}));
    d.expect("queued").await;
    let matched_d = d.expect("matched").await;
    let matched_b = b.expect("matched").await;
    assert_eq!(matched_b["room"], matched_d["room"]);
    assert_eq!(matched_b["common_interests"], json!([]));
    assert_eq!(matched_b["initiator"], json!(true), "b waited longer");
    assert_eq!(matched_d["initiator"], json!(false));
}

async fn repeated_matches_get_fresh_room_ids(backend: Backend) {
    let server = TestServer::start_on(backend, config(&[])).await;
    let mut a = server.greeted().await;
    let mut b = server.greeted().await;
    let first = match_pair(&mut a, &mut b).await;
    a.send_json(json!({"type": "stop"}));
    b.expect_partner_left("stop").await;
    let second = match_pair(&mut a, &mut b).await;
    assert_ne!(first, second, "every match gets a fresh room id");
}

on_both_backends!(
    hello_is_answered_with_a_welcome_and_nothing_else,
    stun_urls_are_handed_out_as_given,
    two_finds_make_a_match_with_one_initiator,
    find_while_queued_is_a_no_op,
    signals_are_relayed_verbatim_in_both_directions_and_never_echoed,
    next_tells_the_partner_and_requeues_the_leaver,
    stop_while_matched_tells_the_partner_and_leaves_the_client_idle,
    stop_while_queued_leaves_the_queue,
    signal_and_report_need_a_partner,
    find_while_matched_is_refused_and_the_room_survives,
    hello_must_come_first_and_only_once,
    an_unknown_version_is_refused_with_version,
    unknown_fields_are_ignored,
    strangers_sharing_an_interest_are_paired_first,
    repeated_matches_get_fresh_room_ids,
);

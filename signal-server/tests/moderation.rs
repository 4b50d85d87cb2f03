//! Reports and bans: a report counts once per match against the reported address; enough of
//! them ban the address for a while, closing its sockets and refusing new ones, while every
//! other address carries on.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use support::{candidate, config, loopback, match_pair, relayed, Backend, Client, TestServer, QUIET_MS};

/// A greeted client from `127.0.0.<last>`.
async fn greeted_from(server: &TestServer, last: u8) -> Client {
    let mut client = server.connect_from(loopback(last)).await;
    client.hello().await;
    client
}

async fn a_report_needs_a_partner_and_changes_nothing_visible_below_the_threshold(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--report-threshold", "3"])).await;
    let mut lonely = server.greeted().await;
    lonely.send_json(json!({"type": "report", "reason": "nobody"}));
    lonely.expect_error("not_matched").await;

    let mut a = greeted_from(&server, 2).await;
    let mut b = greeted_from(&server, 3).await;
    match_pair(&mut a, &mut b).await;
    a.send_json(json!({"type": "report", "reason": "rude"}));
    a.send_json(json!({"type": "report", "reason": "still rude"}));
    a.send_json(json!({"type": "report"}));
    a.expect_silence(150).await;
    b.expect_silence(QUIET_MS).await;
    b.send_text(&candidate(1));
    assert_eq!(a.recv_text().await, relayed(1));
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_reports_total"), 1.0, "one report per match and reporter");
    assert_eq!(metrics.get("strangers_bans_total"), 0.0);
}

async fn reports_from_two_matches_ban_the_address_for_the_ban_duration(backend: Backend) {
    let server = TestServer::start_on(
        backend,
        config(&["--report-threshold", "2", "--report-window", "60", "--ban-duration", "1"]),
    )
    .await;

    // A bystanding pair on other addresses, matched before anything happens.
    let mut x = greeted_from(&server, 10).await;
    let mut y = greeted_from(&server, 11).await;
    match_pair(&mut x, &mut y).await;

    // The reported address holds two sockets: one in the rooms, one idle.
    let mut rude = greeted_from(&server, 2).await;
    let mut rude_idle = greeted_from(&server, 2).await;

    let mut first = greeted_from(&server, 3).await;
    match_pair(&mut first, &mut rude).await;
    first.send_json(json!({"type": "report", "reason": "rude"}));
    first.expect_silence(100).await;
    first.send_json(json!({"type": "next"}));
    rude.expect_partner_left("next").await;
    first.expect("queued").await;
    first.send_json(json!({"type": "stop"}));

    let mut second = greeted_from(&server, 4).await;
    match_pair(&mut second, &mut rude).await;
    second.send_json(json!({"type": "report", "reason": "rude again"}));
    rude.expect_error("banned").await;
    rude.expect_close(1008).await;
    rude_idle.expect_error("banned").await;
    rude_idle.expect_close(1008).await;
    second.expect_partner_left("disconnect").await;

    // A new socket from the banned address is refused before it can say anything.
    let mut again = server.connect_from(loopback(2)).await;
    again.expect_error("banned").await;
    again.expect_close(1008).await;

    // The bystanders and the reporters never noticed.
    x.send_text(&candidate(1));
    assert_eq!(y.recv_text().await, relayed(1));
    x.expect_silence(50).await;
    first.expect_silence(QUIET_MS).await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("strangers_reports_total"), 2.0);
    assert_eq!(metrics.get("strangers_bans_total"), 1.0);
    assert_eq!(metrics.get("strangers_bans_active"), 1.0);
    assert_eq!(metrics.errors("banned"), 3.0);

    // The ban ends after its duration.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut forgiven = greeted_from(&server, 2).await;
    forgiven.send_json(json!({"type": "find"}));
    forgiven.expect("queued").await;
    assert_eq!(server.metrics().await.get("strangers_bans_active"), 0.0);
}

async fn reports_count_per_address_not_per_session(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--report-threshold", "2", "--ban-duration", "60"])).await;
    let mut reporter_1 = greeted_from(&server, 3).await;
    let mut reporter_2 = greeted_from(&server, 4).await;

    // Two different sessions from the same address, each reported once.
    let mut one = greeted_from(&server, 2).await;
    match_pair(&mut reporter_1, &mut one).await;
    reporter_1.send_json(json!({"type": "report", "reason": "spam"}));
    reporter_1.send_json(json!({"type": "stop"}));
    one.expect_partner_left("stop").await;

    let mut two = greeted_from(&server, 2).await;
    match_pair(&mut reporter_2, &mut two).await;
    reporter_2.send_json(json!({"type": "report", "reason": "spam"}));
    two.expect_error("banned").await;
    two.expect_close(1008).await;
    one.expect_error("banned").await;
    one.expect_close(1008).await;
    reporter_2.expect_partner_left("disconnect").await;
    reporter_1.expect_silence(100).await;
}

async fn behind_a_trusted_proxy_bans_hit_the_client_address_not_the_proxy(backend: Backend) {
    let server =
        TestServer::start_on(backend, config(&["--report-threshold", "1", "--trusted-proxy", "127.0.0.1"])).await;
    let rude: IpAddr = "203.0.113.7".parse().unwrap();
    let mut a = server.connect_as_proxy_for(rude).await;
    a.hello().await;
    let mut b = server.connect_as_proxy_for("203.0.113.8".parse().unwrap()).await;
    b.hello().await;
    match_pair(&mut a, &mut b).await;
    b.send_json(json!({"type": "report", "reason": "rude"}));
    a.expect_error("banned").await;
    a.expect_close(1008).await;
    b.expect_partner_left("disconnect").await;

    let mut again = server.connect_as_proxy_for(rude).await;
    again.send_json(json!({"type": "hello", "version": 1}));
    again.expect_error("banned").await;
    again.expect_close(1008).await;
    // Everyone else behind the same proxy is still welcome, and so is the proxy itself.
    let mut other = server.connect_as_proxy_for("203.0.113.9".parse().unwrap()).await;
    other.hello().await;
    let mut direct = server.connect().await;
    direct.hello().await;
}

async fn an_untrusted_peer_cannot_pick_its_address(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--report-threshold", "1"])).await;
    let mut a = server.connect_as_proxy_for("203.0.113.7".parse().unwrap()).await;
    a.hello().await;
    let mut b = server.connect_from(loopback(8)).await;
    b.hello().await;
    match_pair(&mut a, &mut b).await;
    b.send_json(json!({"type": "report", "reason": "rude"}));
    a.expect_error("banned").await;
    // The ban is on 127.0.0.1, the real address, whatever the header said.
    let mut again = server.connect_as_proxy_for("203.0.113.99".parse().unwrap()).await;
    again.send_json(json!({"type": "hello", "version": 1}));
    again.expect_error("banned").await;
}

/// A ban closes every socket of the address, also one that has not said hello yet (the Redis
/// backend knows only sessions: the node closes the rest when it hears of the ban).
async fn a_ban_closes_the_sockets_of_the_address_that_have_not_said_hello(backend: Backend) {
    let server = TestServer::start_on(backend, config(&["--report-threshold", "1"])).await;
    let mut silent = server.connect_from(loopback(7)).await;
    let mut a = greeted_from(&server, 7).await;
    let mut b = greeted_from(&server, 8).await;
    match_pair(&mut a, &mut b).await;
    b.send_json(json!({"type": "report", "reason": "rude"}));
    a.expect_error("banned").await;
    a.expect_close(1008).await;
    silent.expect_error("banned").await;
    silent.expect_close(1008).await;
}

on_both_backends!(
    a_ban_closes_the_sockets_of_the_address_that_have_not_said_hello,
    behind_a_trusted_proxy_bans_hit_the_client_address_not_the_proxy,
    an_untrusted_peer_cannot_pick_its_address,
    a_report_needs_a_partner_and_changes_nothing_visible_below_the_threshold,
    reports_from_two_matches_ban_the_address_for_the_ban_duration,
    reports_count_per_address_not_per_session,
);

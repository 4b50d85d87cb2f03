//! TURN credentials in `welcome.ice_servers`, in the coturn REST scheme: for every
//! `--turn-url`, username `<unix expiry>:<session id>` and credential
//! `base64(HMAC-SHA1(secret, username))`, expiring after `--turn-ttl`.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha1::Sha1;
use support::{config, TestServer};

fn hmac_sha1_base64(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn every_turn_url_gets_short_lived_coturn_credentials() {
    let server = TestServer::start(config(&[
        "--stun-url",
        "stun:127.0.0.1:3478",
        "--turn-url",
        "turn:127.0.0.1:3478?transport=udp",
        "--turn-url",
        "turns:127.0.0.1:5349",
        "--turn-secret",
        "s3cret",
        "--turn-ttl",
        "600",
    ]))
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut client = server.connect().await;
        let before = unix_now();
        let welcome = client.hello().await;
        let after = unix_now();
        let servers = welcome["ice_servers"].as_array().unwrap();
        assert_eq!(servers.len(), 3, "{welcome}");
        assert_eq!(servers[0], json!({"urls": ["stun:127.0.0.1:3478"]}));
        let username = servers[1]["username"].as_str().unwrap();
        let (expiry, id) = username.split_once(':').unwrap();
        assert_eq!(id, client.id);
        let expiry: u64 = expiry.parse().unwrap();
        assert!((before + 600..=after + 600).contains(&expiry), "expiry {expiry}, now {before}..{after}");
        for (server, url) in servers[1..].iter().zip(["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349"]) {
            assert_eq!(
                server,
                &json!({"urls": [url], "username": username, "credential": hmac_sha1_base64("s3cret", username)})
            );
        }
        ids.push(username.to_owned());
    }
    assert_ne!(ids[0], ids[1], "each session gets its own username");
}

#[tokio::test]
async fn a_resumed_session_gets_fresh_credentials_for_the_same_id() {
    let server = TestServer::start(config(&[
        "--turn-url",
        "turn:127.0.0.1:3478",
        "--turn-secret",
        "k",
        "--turn-ttl",
        "60",
        "--resume-grace",
        "10",
    ]))
    .await;
    let mut first = server.connect().await;
    first.hello().await;
    let (id, token) = (first.id.clone(), first.token.clone());
    first.drop_abruptly();
    server.wait_metric("strangers_sessions_dropped", 1.0).await;
    let mut again = server.connect().await;
    let before = unix_now();
    let welcome = again.resume(&token).await;
    let turn = &welcome["ice_servers"][0];
    let username = turn["username"].as_str().unwrap();
    let (expiry, got_id) = username.split_once(':').unwrap();
    assert_eq!(got_id, id);
    assert!(expiry.parse::<u64>().unwrap() >= before + 60);
    assert_eq!(turn["credential"], json!(hmac_sha1_base64("k", username)));
}

#[test]
fn the_reference_credential_matches_an_independent_computation() {
    // Python: base64.b64encode(hmac.new(b"s3cret", b"1700003600:abc", hashlib.sha1).digest())
    assert_eq!(hmac_sha1_base64("s3cret", "1700003600:abc"), "Fe5EJwoqvfV1NLt6WgDwx7yTyxg=");
    assert_eq!(signal_server::turn::turn_credential("s3cret", "1700003600:abc"), "Fe5EJwoqvfV1NLt6WgDwx7yTyxg=");
}

//! The STUN responder (`--stun-listen`): real Binding requests over UDP get the sender's address
//! back in XOR-MAPPED-ADDRESS with the same transaction id; anything else gets no answer and
//! leaves the responder working; it is off by default and stops on shutdown.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{Getter, Message, Setter, TransactionId, BINDING_REQUEST, BINDING_SUCCESS};
use rtc_stun::xoraddr::XorMappedAddress;
use support::{config, TestServer, STEP};
use tokio::net::UdpSocket;

fn binding_request(id: TransactionId) -> Vec<u8> {
    let mut m = Message::new();
    let setters: [Box<dyn Setter>; 3] = [Box::new(BINDING_REQUEST), Box::new(id), Box::new(FINGERPRINT)];
    m.build(&setters).expect("building a Binding request");
    m.raw
}

/// Sends a Binding request from `socket` and checks the answer; returns the mapped address.
async fn bind(socket: &UdpSocket, server: SocketAddr) -> SocketAddr {
    let id = TransactionId::new();
    socket.send_to(&binding_request(id), server).await.expect("sending a Binding request");
    let mut buf = [0u8; 1500];
    let (len, from) = tokio::time::timeout(STEP, socket.recv_from(&mut buf))
        .await
        .expect("the Binding request is answered in time")
        .expect("receiving the answer");
    assert_eq!(from, server, "the answer comes from the STUN address");
    let mut response = Message::new();
    response.unmarshal_binary(&buf[..len]).expect("the answer is a STUN message");
    assert_eq!(response.typ, BINDING_SUCCESS);
    assert_eq!(response.transaction_id, id, "the transaction id is mirrored");
    FINGERPRINT.check(&response).expect("the answer carries a valid FINGERPRINT");
    let mut mapped = XorMappedAddress::default();
    mapped.get_from(&response).expect("the answer carries XOR-MAPPED-ADDRESS");
    SocketAddr::new(mapped.ip, mapped.port)
}

/// Asserts that nothing arrives on `socket` for a while.
async fn expect_silence(socket: &UdpSocket) {
    let mut buf = [0u8; 1500];
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await {
        panic!("expected no answer, got {got:?}");
    }
}

#[tokio::test]
async fn a_binding_request_gets_the_sender_address_back() {
    let server = TestServer::start(config(&["--stun-listen", "127.0.0.1:0"])).await;
    let stun = server.stun_addr.expect("the STUN responder is listening");
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(bind(&client, stun).await, client.local_addr().unwrap());
    let other = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    assert_eq!(bind(&other, stun).await, other.local_addr().unwrap());
    server.wait_metric("strangers_stun_requests_total", 2.0).await;
}

#[tokio::test]
async fn answers_over_ipv6() {
    let Ok(client) = UdpSocket::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let server = TestServer::start(config(&["--stun-listen", "[::1]:0"])).await;
    let stun = server.stun_addr.unwrap();
    assert_eq!(bind(&client, stun).await, client.local_addr().unwrap());
}

#[tokio::test]
async fn garbage_gets_no_answer_and_does_not_disturb_what_follows() {
    let server = TestServer::start(config(&["--stun-listen", "127.0.0.1:0"])).await;
    let stun = server.stun_addr.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let good = binding_request(TransactionId::new());
    let mut success = Message::new();
    let setters: [Box<dyn Setter>; 2] = [Box::new(BINDING_SUCCESS), Box::new(TransactionId::new())];
    success.build(&setters).unwrap();
    let mut bad_cookie = good.clone();
    bad_cookie[5] ^= 0xff;
    let mut bad_length = good.clone();
    bad_length[3] += 4;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"hello".to_vec(),
        good[..19].to_vec(),
        good[..good.len() - 1].to_vec(),
        bad_cookie,
        bad_length,
        success.raw,
        vec![0xab; 1400],
        vec![0; 9000],
    ];
    for datagram in &garbage {
        client.send_to(datagram, stun).await.unwrap();
    }
    expect_silence(&client).await;
    assert_eq!(bind(&client, stun).await, client.local_addr().unwrap());
    server.wait_metric("strangers_stun_requests_total", 1.0).await;
}

#[tokio::test]
async fn off_by_default_and_stops_on_shutdown() {
    let plain = TestServer::start(config(&[])).await;
    assert_eq!(plain.stun_addr, None);
    assert_eq!(plain.metrics().await.get("strangers_stun_requests_total"), 0.0);

    let mut server = TestServer::start(config(&["--stun-listen", "127.0.0.1:0"])).await;
    let stun = server.stun_addr.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    bind(&client, stun).await;
    server.shutdown().await;
    client.send_to(&binding_request(TransactionId::new()), stun).await.unwrap();
    expect_silence(&client).await;
    // The port is free again once `run` has returned.
    UdpSocket::bind(stun).await.expect("the STUN socket is closed after shutdown");
}

/// `--stun-listen [::]:PORT` answers IPv4 and IPv6 alike, each with its own family's address
/// (an IPv4 sender is told its IPv4 address, not the IPv4-mapped form the socket sees).
#[tokio::test]
async fn a_responder_on_every_ipv6_address_answers_both_families() {
    let Ok(v6) = UdpSocket::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let server = TestServer::start(config(&["--stun-listen", "[::]:0"])).await;
    let port = server.stun_addr.expect("the STUN responder is listening").port();
    let v4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(bind(&v4, SocketAddr::from(([127, 0, 0, 1], port))).await, v4.local_addr().unwrap());
    let to_v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    assert_eq!(bind(&v6, to_v6).await, v6.local_addr().unwrap());
}

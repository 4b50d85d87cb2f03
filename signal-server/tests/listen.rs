//! `--listen [::]:PORT` serves both families on one socket: a client over IPv4 and one over
//! IPv6 reach the same server and meet each other.

mod support;

use std::net::{IpAddr, Ipv6Addr};

use support::{config, match_pair, TestServer, LOCALHOST};

#[tokio::test]
async fn a_server_on_every_ipv6_address_serves_ipv4_and_ipv6_clients() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let mut dual = config(&[]);
    dual.listen = "[::]:0".parse().expect("an address");
    let server = TestServer::start(dual).await;
    assert!(server.addr.is_ipv6() && server.addr.ip().is_unspecified(), "{}", server.addr);
    let mut a = server.connect_from(LOCALHOST).await;
    a.hello().await;
    let mut b = server.connect_from(IpAddr::V6(Ipv6Addr::LOCALHOST)).await;
    b.hello().await;
    let room = match_pair(&mut a, &mut b).await;
    assert!(!room.is_empty());
}

//! A minimal STUN responder (RFC 5389 Binding only) for operators without coturn: it tells each
//! client the address its datagram came from. It keeps no state, does no authentication and
//! never relays; the codec is `rtc-stun`'s, this file only decides what to answer and moves
//! datagrams. It must not touch the hub beyond its one counter.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rtc_stun::attributes::ATTR_FINGERPRINT;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{is_stun_message, Message, Setter, BINDING_REQUEST, BINDING_SUCCESS, MESSAGE_HEADER_SIZE};
use rtc_stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::hub::Hub;

/// The largest datagram read whole. A Binding request is a few dozen bytes; anything longer is
/// truncated by the read, fails the length check and is ignored.
const MAX_DATAGRAM: usize = 1500;

/// The answer to one datagram from `from`: the encoded Binding success response carrying
/// XOR-MAPPED-ADDRESS and FINGERPRINT, or `None` for anything that is not a well-formed Binding
/// request. Never panics; work is bounded by the datagram's length.
pub fn answer(datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    // RFC 5389 section 7.3: the two top bits are zero, the cookie is right, and the header's
    // length (a multiple of 4) covers exactly the rest of the datagram. `rtc-stun` checks only
    // the cookie and that the datagram is long enough, so the rest is checked here.
    if !is_stun_message(datagram) || datagram[0] & 0xc0 != 0 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if length % 4 != 0 || MESSAGE_HEADER_SIZE + length != datagram.len() {
        return None;
    }
    let mut request = Message::new();
    request.unmarshal_binary(datagram).ok()?;
    if request.typ != BINDING_REQUEST {
        return None;
    }
    if request.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&request).is_err() {
        return None;
    }
    // A dual-stack socket sees IPv4 clients as ::ffff:a.b.c.d; they are told their IPv4 address.
    let mapped = XorMappedAddress { ip: from.ip().to_canonical(), port: from.port() };
    let mut response = Message::new();
    let setters: [Box<dyn Setter>; 4] =
        [Box::new(BINDING_SUCCESS), Box::new(request.transaction_id), Box::new(mapped), Box::new(FINGERPRINT)];
    response.build(&setters).ok()?;
    Some(response.raw)
}

/// Answers Binding requests on `socket` until the task is aborted, counting each answer in
/// `strangers_stun_requests_total`.
pub async fn serve(socket: UdpSocket, hub: Arc<Hub>) {
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                // An ICMP error reported on the socket, or out of buffers: back off, never spin.
                warn!(error = %e, "STUN receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(response) = answer(&buf[..len], from) else {
            debug!(%from, len, "ignored a datagram that is not a STUN Binding request");
            continue;
        };
        match socket.send_to(&response, from).await {
            Ok(_) => {
                hub.counters().stun_requests.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => debug!(%from, error = %e, "STUN answer not sent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_stun::message::{Getter, TransactionId};

    fn request(id: TransactionId) -> Vec<u8> {
        let mut m = Message::new();
        let setters: [Box<dyn Setter>; 2] = [Box::new(BINDING_REQUEST), Box::new(id)];
        m.build(&setters).unwrap();
        m.raw
    }

    #[test]
    fn answers_ipv4_and_ipv6_with_the_sender_address_and_transaction_id() {
        for from in ["192.0.2.7:4242", "[2001:db8::1]:5000", "[::ffff:192.0.2.7]:4242"] {
            let from: SocketAddr = from.parse().unwrap();
            let id = TransactionId::new();
            let raw = answer(&request(id), from).expect("a Binding request is answered");
            let mut response = Message::new();
            response.unmarshal_binary(&raw).unwrap();
            assert_eq!(response.typ, BINDING_SUCCESS);
            assert_eq!(response.transaction_id, id);
            FINGERPRINT.check(&response).expect("a valid fingerprint");
            let mut mapped = XorMappedAddress::default();
            mapped.get_from(&response).unwrap();
            assert_eq!(SocketAddr::new(mapped.ip, mapped.port), SocketAddr::new(from.ip().to_canonical(), from.port()));
        }
    }

    #[test]
    fn ignores_what_is_not_a_well_formed_binding_request() {
        let from: SocketAddr = "192.0.2.7:4242".parse().unwrap();
        let good = request(TransactionId::new());
        assert!(answer(&good, from).is_some());
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![0; 19], good[..19].to_vec(), vec![0xff; 64]];
        let mut top_bits = good.clone();
        top_bits[0] |= 0x80;
        let mut longer = good.clone();
        longer.extend_from_slice(&[0, 0, 0, 0]);
        let mut bad_length = good.clone();
        bad_length[3] = 2;
        let mut cookie = good.clone();
        cookie[4] ^= 1;
        let mut response = Message::new();
        let setters: [Box<dyn Setter>; 2] = [Box::new(BINDING_SUCCESS), Box::new(TransactionId::new())];
        response.build(&setters).unwrap();
        let mut bad_fingerprint = Message::new();
        let setters: [Box<dyn Setter>; 3] =
            [Box::new(BINDING_REQUEST), Box::new(TransactionId::new()), Box::new(FINGERPRINT)];
        bad_fingerprint.build(&setters).unwrap();
        let last = bad_fingerprint.raw.len() - 1;
        bad_fingerprint.raw[last] ^= 1;
        // An attribute header claiming more bytes than the message holds.
        let mut truncated_attr = good.clone();
        truncated_attr[3] = 4;
        truncated_attr.extend_from_slice(&[0x80, 0x22, 0x00, 0x40]);
        cases.extend([top_bits, longer, bad_length, cookie, response.raw, bad_fingerprint.raw, truncated_attr]);
        for case in cases {
            assert_eq!(answer(&case, from), None, "answered {case:02x?}");
        }
    }

    #[test]
    fn never_panics_on_random_bytes() {
        use rand::RngExt;
        let from: SocketAddr = "192.0.2.7:4242".parse().unwrap();
        let mut rng = rand::rng();
        let template = request(TransactionId::new());
        for _ in 0..20_000 {
            let mut bytes = template.clone();
            let extra = 4 * rng.random_range(0..10usize);
            bytes.extend((0..extra).map(|_| rng.random::<u8>()));
            // Keep the cookie, and usually a matching length, so that decoding gets exercised.
            for _ in 0..rng.random_range(0..6) {
                let i = rng.random_range(0..bytes.len());
                if !(4..8).contains(&i) {
                    bytes[i] = rng.random();
                }
            }
            if rng.random_bool(0.8) {
                bytes[0] &= 0x3f;
                let length = (bytes.len() - MESSAGE_HEADER_SIZE) as u16;
                bytes[2..4].copy_from_slice(&length.to_be_bytes());
            }
            let _ = answer(&bytes, from);
        }
    }
}

//! A bare TURN client for probing a TURN server's rules: allocate with given long-term
//! credentials, then ask for a permission to a peer, and report the server's answer (success or
//! its STUN error code: 401 for refused credentials, 403 for a peer it will not relay to). The
//! messages are built with `rtc-stun` and `rtc-turn`'s attributes; this file only sequences
//! requests over one UDP socket and never sends media.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rtc_crypto::RTCCryptoProvider;
use rtc_stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use rtc_stun::error_code::ErrorCodeAttribute;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{
    Getter, Message, MessageType, Method, Setter, TransactionId, CLASS_ERROR_RESPONSE, CLASS_REQUEST, METHOD_ALLOCATE,
    METHOD_CREATE_PERMISSION,
};
use rtc_stun::textattrs::TextAttribute;
use rtc_turn::proto::peeraddr::PeerAddress;
use rtc_turn::proto::reqtrans::RequestedTransport;
use rtc_turn::proto::PROTO_UDP;

/// A TURN server's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Success,
    /// A STUN error code and its reason phrase.
    Error(u16, String),
}

impl Answer {
    pub fn code(&self) -> Option<u16> {
        match self {
            Answer::Success => None,
            Answer::Error(code, _) => Some(*code),
        }
    }
}

/// A TURN client session with one server: after [`TurnProbe::allocate`] succeeds it holds an
/// allocation and asks for permissions with the same credentials.
pub struct TurnProbe {
    socket: UdpSocket,
    server: SocketAddr,
    crypto: Arc<dyn RTCCryptoProvider>,
    username: String,
    password: String,
    realm: String,
    nonce: String,
}

impl TurnProbe {
    /// Opens a socket towards `server` (in the calling thread's network namespace).
    pub fn new(server: SocketAddr, username: &str, password: &str) -> anyhow::Result<TurnProbe> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        let crypto = rtc_crypto::default_provider().map_err(|e| anyhow::anyhow!("crypto provider: {e:?}"))?;
        Ok(TurnProbe {
            socket,
            server,
            crypto,
            username: username.to_owned(),
            password: password.to_owned(),
            realm: String::new(),
            nonce: String::new(),
        })
    }

    /// Asks for a UDP relay: first unauthenticated (the server answers 401 with its realm and
    /// a nonce), then with the credentials.
    pub fn allocate(&mut self) -> anyhow::Result<Answer> {
        let first = self.transact(METHOD_ALLOCATE, &[&RequestedTransport { protocol: PROTO_UDP }], false)?;
        if first.typ.class != CLASS_ERROR_RESPONSE {
            bail!("the server allocated without asking for credentials");
        }
        self.realm = TextAttribute::get_from_as(&first, ATTR_REALM).context("401 without a realm")?.text;
        self.nonce = TextAttribute::get_from_as(&first, ATTR_NONCE).context("401 without a nonce")?.text;
        let reply = self.transact(METHOD_ALLOCATE, &[&RequestedTransport { protocol: PROTO_UDP }], true)?;
        Ok(answer(&reply))
    }

    /// Asks for a permission to exchange data with `peer` through the allocation.
    pub fn permit(&mut self, peer: SocketAddr) -> anyhow::Result<Answer> {
        let peer = PeerAddress { ip: peer.ip(), port: peer.port() };
        let reply = self.transact(METHOD_CREATE_PERMISSION, &[&peer], true)?;
        Ok(answer(&reply))
    }

    /// Sends one request (retransmitted a few times) and returns the server's response.
    fn transact(&self, method: Method, attrs: &[&dyn Setter], authenticated: bool) -> anyhow::Result<Message> {
        let mut msg = Message::new();
        let id = TransactionId::new();
        msg.build(&[Box::new(id), Box::new(MessageType::new(method, CLASS_REQUEST))])?;
        for attr in attrs {
            attr.add_to(&mut msg)?;
        }
        if authenticated {
            TextAttribute::new(ATTR_USERNAME, self.username.clone()).add_to(&mut msg)?;
            TextAttribute::new(ATTR_REALM, self.realm.clone()).add_to(&mut msg)?;
            TextAttribute::new(ATTR_NONCE, self.nonce.clone()).add_to(&mut msg)?;
            MessageIntegrity::new_long_term_integrity_with_provider(
                self.username.clone(),
                self.realm.clone(),
                self.password.clone(),
                self.crypto.crypto(),
            )?
            .add_to(&mut msg)?;
        }
        FINGERPRINT.add_to(&mut msg)?;
        let mut buf = [0u8; 1500];
        for _ in 0..6 {
            self.socket.send_to(&msg.raw, self.server)?;
            while let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                let mut reply = Message::new();
                if reply.unmarshal_binary(&buf[..n]).is_ok() && reply.transaction_id == id {
                    return Ok(reply);
                }
            }
        }
        bail!("no answer from the TURN server at {}", self.server)
    }
}

fn answer(reply: &Message) -> Answer {
    if reply.typ.class != CLASS_ERROR_RESPONSE {
        return Answer::Success;
    }
    let mut code = ErrorCodeAttribute::default();
    match code.get_from(reply) {
        Ok(()) => Answer::Error(code.code.0, String::from_utf8_lossy(&code.reason).into_owned()),
        Err(_) => Answer::Error(0, "an error without a code".into()),
    }
}

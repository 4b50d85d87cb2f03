//! A minimal bench client: connects a WebSocket over loopback TCP, says `hello`, and sorts
//! what the server sends into the few cases the bench acts on. Signals take a fast path that
//! reads only what the bench needs (their kind and send time) without parsing the 3 KB SDP,
//! so the bench spends its CPU on load rather than on JSON.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use strangers_protocol::{ClientMsg, Hello, ServerMsg, SignalData, SignalKind};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::payload;

pub type Ws = WebSocketStream<TcpStream>;

/// The text the server puts before a relayed signal's data.
const SIGNAL_PREFIX: &str = r#"{"type":"signal","data":"#;

/// What the server said, reduced to what the bench acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Welcome,
    Queued,
    Matched {
        initiator: bool,
    },
    /// A relayed signal, with the send time the bench stamped into it.
    Signal {
        kind: SignalKind,
        sent_ns: Option<u64>,
    },
    PartnerLeft,
    Error {
        code: String,
    },
    /// Pings, pongs and anything else the bench ignores.
    Other,
    /// The socket closed or failed.
    Closed,
}

/// Small buffers: the bench may hold 20,000 of these sockets.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

/// Opens a WebSocket to `url` at `addr` (the URL's path and host go in the request).
pub async fn connect(addr: SocketAddr, url: &str) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
        .await
        .with_context(|| format!("WebSocket handshake with {url} failed"))?;
    Ok(ws)
}

/// Connects and completes `hello` / `welcome`.
pub async fn connect_hello(addr: SocketAddr, url: &str) -> anyhow::Result<Ws> {
    let mut ws = connect(addr, url).await?;
    send(&mut ws, ClientMsg::Hello(Hello::default()).to_json()).await?;
    match recv(&mut ws).await {
        Incoming::Welcome => Ok(ws),
        other => bail!("expected welcome after hello, got {other:?}"),
    }
}

/// Sends one text frame and flushes it.
pub async fn send(ws: &mut Ws, text: String) -> anyhow::Result<()> {
    ws.send(Message::text(text)).await.context("send failed")
}

/// Waits for the next message the bench cares about (pings and pongs are skipped).
pub async fn recv(ws: &mut Ws) -> Incoming {
    loop {
        let incoming = match ws.next().await {
            Some(Ok(Message::Text(text))) => classify(text.as_str()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Incoming::Closed,
            Some(Ok(_)) => Incoming::Other,
        };
        if incoming != Incoming::Other {
            return incoming;
        }
    }
}

/// Sorts one server message.
pub fn classify(text: &str) -> Incoming {
    if let Some(data) = text.strip_prefix(SIGNAL_PREFIX).and_then(|rest| rest.strip_suffix('}')) {
        if let Some(kind) = fast_kind(data) {
            return Incoming::Signal { kind, sent_ns: payload::sent_ns(data) };
        }
    }
    match ServerMsg::parse(text) {
        Ok(ServerMsg::Welcome { .. }) => Incoming::Welcome,
        Ok(ServerMsg::Queued) => Incoming::Queued,
        Ok(ServerMsg::Matched { initiator, .. }) => Incoming::Matched { initiator },
        Ok(ServerMsg::Signal { data }) => {
            Incoming::Signal { kind: data.kind(), sent_ns: payload::sent_ns(data.as_json()) }
        }
        Ok(ServerMsg::PartnerLeft { .. }) => Incoming::PartnerLeft,
        Ok(ServerMsg::Error { code, .. }) => Incoming::Error { code: code.as_str().to_owned() },
        Err(_) => Incoming::Error { code: "unparsable_server_message".to_owned() },
    }
}

/// The kind of signal data the bench itself wrote, read from its fixed opening.
fn fast_kind(data: &str) -> Option<SignalKind> {
    if data.starts_with(r#"{"candidate":"#) {
        Some(SignalKind::Candidate)
    } else if data.starts_with(r#"{"sdp":{"type":"offer""#) {
        Some(SignalKind::Offer)
    } else if data.starts_with(r#"{"sdp":{"type":"answer""#) {
        Some(SignalKind::Answer)
    } else {
        None
    }
}

/// Checks that the fast path reads the bench's own payloads as the full parser does.
pub fn self_check() -> anyhow::Result<()> {
    let payloads = payload::Payloads::new();
    for (text, kind) in [
        (payloads.offer(42), SignalKind::Offer),
        (payloads.answer(42), SignalKind::Answer),
        (payloads.candidate(3, 42), SignalKind::Candidate),
    ] {
        let ClientMsg::Signal(data) = ClientMsg::parse(&text).context("the server would refuse a bench signal")? else {
            bail!("a bench signal does not parse as a signal");
        };
        if data.kind() != kind {
            bail!("a bench signal parses as {:?}, not {kind:?}", data.kind());
        }
        let relayed = ServerMsg::Signal { data: SignalData::from_json(data.as_json())? }.to_json();
        let got = classify(&relayed);
        if got != (Incoming::Signal { kind, sent_ns: Some(42) }) {
            bail!("the fast path reads a relayed {kind:?} as {got:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_agrees_with_the_parser() {
        self_check().unwrap();
    }

    #[test]
    fn classifies_control_messages() {
        assert_eq!(classify(r#"{"type":"queued"}"#), Incoming::Queued);
        assert_eq!(
            classify(r#"{"type":"matched","room":"r","initiator":true,"common_interests":[]}"#),
            Incoming::Matched { initiator: true }
        );
        assert_eq!(classify(r#"{"type":"partner_left","reason":"next"}"#), Incoming::PartnerLeft);
        assert_eq!(
            classify(r#"{"type":"error","code":"not_matched","message":"x"}"#),
            Incoming::Error { code: "not_matched".into() }
        );
    }
}

//! The signaling client: one WebSocket to the signal server, kept alive across drops. It says
//! `hello` (with the resume token once it has one), reconnects with exponential backoff,
//! trying each server URL in turn, and holds outgoing messages while the socket is down so
//! nothing is lost; after a reconnect that did not resume, held signals of the old call are
//! dropped (they would reach nobody).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use strangers_protocol::{close, ClientMsg, Hello, ServerMsg};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

use crate::api::DownKind;

/// Most messages held while the socket is down.
const MAX_HELD: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct SignalingConfig {
    /// Server URLs (`ws://host:port/ws`), tried in order; the next one after a failure.
    pub urls: Vec<String>,
    pub interests: Vec<String>,
    /// First and longest wait between reconnection attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// What the signaling client reports.
#[derive(Debug, Clone)]
pub enum SignalingEvent {
    /// A message from the server (the first after each connection is `welcome`).
    Message(ServerMsg),
    /// The socket is down; the client retries after `retry_in`.
    Down { url: String, kind: DownKind, reason: String, retry_in: Duration },
    /// The server refused us for good (banned, or `outdated`: it does not speak our protocol
    /// version); the client stopped retrying.
    Refused { outdated: bool, reason: String },
}

/// Sends messages to the server; dropping it closes the socket cleanly.
#[derive(Clone)]
pub struct SignalingHandle {
    tx: mpsc::UnboundedSender<ClientMsg>,
}

impl SignalingHandle {
    pub fn send(&self, msg: ClientMsg) {
        let _ = self.tx.send(msg);
    }
}

/// Starts the client on the current tokio runtime.
pub fn spawn(config: SignalingConfig) -> (SignalingHandle, mpsc::UnboundedReceiver<SignalingEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(config, rx, event_tx));
    (SignalingHandle { tx }, event_rx)
}

enum Ended {
    /// The handle was dropped: we are done.
    Finished,
    /// The socket broke; reconnect.
    Broken(String),
    /// The server refused us (`true`: for our protocol version); stop.
    Refused(bool, String),
}

async fn run(
    config: SignalingConfig,
    mut outgoing: mpsc::UnboundedReceiver<ClientMsg>,
    events: mpsc::UnboundedSender<SignalingEvent>,
) {
    let mut token: Option<String> = None;
    let mut held: VecDeque<ClientMsg> = VecDeque::new();
    let mut backoff = config.backoff_min;
    let mut attempt = 0usize;
    if config.urls.is_empty() {
        // No server chosen yet: nothing to connect to; wait to be dropped.
        while outgoing.recv().await.is_some() {}
        return;
    }
    loop {
        let url = &config.urls[attempt % config.urls.len()];
        match session(url, &config, &mut token, &mut held, &mut outgoing, &events).await {
            Ok(Ended::Finished) => return,
            Ok(Ended::Refused(outdated, reason)) => {
                let _ = events.send(SignalingEvent::Refused { outdated, reason });
                return;
            }
            Ok(Ended::Broken(reason)) => {
                // A connection that got as far as a welcome resets the backoff.
                backoff = config.backoff_min;
                let kind = DownKind::Lost;
                let _ = events.send(SignalingEvent::Down { url: url.clone(), kind, reason, retry_in: backoff });
            }
            Err((kind, reason)) => {
                let _ = events.send(SignalingEvent::Down { url: url.clone(), kind, reason, retry_in: backoff });
                attempt += 1;
            }
        }
        // Wait, but keep holding what the engine sends meanwhile (and notice if it is gone).
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                msg = outgoing.recv() => match msg {
                    Some(msg) => hold(&mut held, msg),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

fn hold(held: &mut VecDeque<ClientMsg>, msg: ClientMsg) {
    if held.len() == MAX_HELD {
        held.pop_front();
    }
    held.push_back(msg);
}

/// What kind of failure a WebSocket connection error is.
fn connect_failure(error: &tokio_tungstenite::tungstenite::Error) -> DownKind {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Url(_) => DownKind::BadAddress,
        // Something answered, but not as a WebSocket server would.
        Error::Http(_) | Error::HttpFormat(_) | Error::Protocol(_) => DownKind::NotStrangers,
        _ => DownKind::Unreachable,
    }
}

/// One connection, from connect to its end. `Err` means it never got to a welcome.
async fn session(
    url: &str,
    config: &SignalingConfig,
    token: &mut Option<String>,
    held: &mut VecDeque<ClientMsg>,
    outgoing: &mut mpsc::UnboundedReceiver<ClientMsg>,
    events: &mpsc::UnboundedSender<SignalingEvent>,
) -> Result<Ended, (DownKind, String)> {
    let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| (DownKind::Unreachable, format!("no answer from {url} within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| (connect_failure(&e), format!("cannot connect to {url}: {e}")))?;
    let hello = ClientMsg::Hello(Hello { interests: config.interests.clone(), resume: token.clone() });
    ws.send(Message::text(hello.to_json())).await.map_err(|e| (DownKind::Lost, format!("sending hello: {e}")))?;
    // The welcome comes first; anything else first is a refusal (banned, version, full).
    let welcome = loop {
        let frame = tokio::time::timeout(CONNECT_TIMEOUT, ws.next())
            .await
            .map_err(|_| (DownKind::NotStrangers, "no welcome from the server".to_string()))?;
        match frame {
            Some(Ok(Message::Text(text))) => match ServerMsg::parse(text.as_str()) {
                Ok(msg @ ServerMsg::Welcome { .. }) => break msg,
                Ok(ServerMsg::Error { code, message }) => {
                    use strangers_protocol::ErrorCode::*;
                    let reason = format!("{}: {message}", code.as_str());
                    return match code {
                        Banned => Ok(Ended::Refused(false, reason)),
                        Version => Ok(Ended::Refused(true, reason)),
                        _ => Err((DownKind::Busy, reason)),
                    };
                }
                Ok(other) => debug!(kind = other.kind(), "message before welcome ignored"),
                Err(e) => warn!(error = %e, "unparsable message from the server"),
            },
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                return Err((DownKind::Lost, format!("the server closed the connection: {reason}")));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err((DownKind::Lost, format!("reading welcome: {e}"))),
            None => return Err((DownKind::Lost, "the server closed the connection".into())),
        }
    };
    let ServerMsg::Welcome { resume, resumed, .. } = &welcome else { unreachable!("matched above") };
    let had_session = token.replace(resume.clone()).is_some();
    if had_session && !resumed {
        // The old session is gone: what was held for it means nothing to the new one. The
        // session state machine decides what to ask again.
        held.clear();
    }
    let _ = events.send(SignalingEvent::Message(welcome));
    while let Some(msg) = held.pop_front() {
        if let Err(e) = ws.feed(Message::text(msg.to_json())).await {
            held.push_front(msg);
            return Ok(Ended::Broken(format!("sending: {e}")));
        }
    }
    if let Err(e) = ws.flush().await {
        return Ok(Ended::Broken(format!("sending: {e}")));
    }
    loop {
        tokio::select! {
            msg = outgoing.recv() => {
                let Some(msg) = msg else {
                    let _ = ws.close(None).await;
                    return Ok(Ended::Finished);
                };
                if let Err(e) = ws.send(Message::text(msg.to_json())).await {
                    hold(held, msg);
                    return Ok(Ended::Broken(format!("sending: {e}")));
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match ServerMsg::parse(text.as_str()) {
                    Ok(msg) => { let _ = events.send(SignalingEvent::Message(msg)); }
                    Err(e) => warn!(error = %e, "unparsable message from the server"),
                },
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(close::NORMAL);
                    let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    if code == close::POLICY {
                        return Ok(Ended::Refused(false, format!("closed by the server: {reason}")));
                    }
                    return Ok(Ended::Broken(format!("closed by the server ({code}): {reason}")));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ok(Ended::Broken(format!("connection lost: {e}"))),
                None => return Ok(Ended::Broken("connection lost".into())),
            },
        }
    }
}

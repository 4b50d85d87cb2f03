//! One WebSocket's task: reads frames, checks size and rate, parses, hands messages to the
//! hub, and writes what the hub queued in its outbox. Errors end this task only; they never
//! reach the listener or another socket.

use std::future::poll_fn;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use strangers_matchmaker::Disconnect;
use strangers_protocol::limits::MAX_MESSAGE_BYTES;
use strangers_protocol::{close, ClientMsg, ErrorCode, ServerMsg};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info_span, Instrument};

use crate::hub::{Hub, Refusal};
use crate::outbox::{Outbox, Outgoing};

/// Rejected messages within one flood window that get a client cut off.
const FLOOD_STRIKES: u32 = 100;
const FLOOD_WINDOW: Duration = Duration::from_secs(5);

/// Per-connection rate settings.
#[derive(Debug, Clone, Copy)]
pub struct RateSettings {
    /// Messages per second; 0 turns the limit off.
    pub per_second: u32,
    pub burst: u32,
}

/// Serves one upgraded WebSocket until it ends.
pub async fn serve<S>(hub: Arc<Hub>, mut ws: WebSocketStream<S>, ip: IpAddr, rate: RateSettings)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let outbox = Arc::new(Outbox::default());
    let conn = match hub.open(ip, outbox.clone()) {
        Ok(conn) => conn,
        Err(refusal) => {
            let (code, text) = match refusal {
                Refusal::TooManyFromAddress => {
                    (ErrorCode::TooManyConnections, "too many connections from your address")
                }
                Refusal::TooManyInAll => (ErrorCode::Unavailable, "the server is full; try again later"),
                Refusal::ShuttingDown => (ErrorCode::Unavailable, "the server is restarting; try again shortly"),
            };
            hub.counters.count_error(code);
            let _ = ws.send(Message::text(ServerMsg::error(code, text).to_json())).await;
            let code = if refusal == Refusal::ShuttingDown { close::SERVICE_RESTART } else { close::POLICY };
            let _ = ws.close(Some(close_frame(code, text))).await;
            return;
        }
    };
    let span = info_span!("conn", id = conn, %ip);
    let how = run(&hub, conn, &outbox, &mut ws, rate).instrument(span.clone()).await;
    span.in_scope(|| debug!(?how, "socket ended"));
    hub.close(conn, how);
}

async fn run<S>(hub: &Hub, conn: u64, outbox: &Outbox, ws: &mut WebSocketStream<S>, rate: RateSettings) -> Disconnect
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limiter = limiter(rate);
    let mut flood = Flood::default();
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = poll_fn(|cx| outbox.poll_take(cx, &mut batch)) => {
                let ended = tokio::select! {
                    how = write_batch(ws, &mut batch) => how,
                    () = poll_fn(|cx| outbox.poll_abandoned(cx)) => Some(Disconnect::Dropped),
                };
                if let Some(how) = ended {
                    return how;
                }
            }
            frame = ws.next() => {
                outbox.heard_at(hub.millis());
                match frame {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        if let Some(limiter) = &limiter {
                            if limiter.check().is_err() {
                                if flood.strike() {
                                    hub.reject(conn, ErrorCode::RateLimited, "you are sending too fast; disconnecting".into());
                                    outbox.push(Outgoing::Close(close::POLICY, "flooding"));
                                } else if flood.should_tell() {
                                    hub.reject(conn, ErrorCode::RateLimited, format!(
                                        "you are sending too fast (limit {} messages per second); message dropped",
                                        rate.per_second
                                    ));
                                }
                                continue;
                            }
                        }
                        let Message::Text(text) = message else {
                            hub.reject(conn, ErrorCode::BadMessage, "binary frames are refused: send JSON text".into());
                            continue;
                        };
                        match ClientMsg::parse(text.as_str()) {
                            Ok(msg) => hub.message(conn, msg),
                            Err(e) => hub.reject(conn, e.code(), e.to_string()),
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) => {
                        // Tungstenite answers the close frame; drain until it is done.
                        let _ = ws.flush().await;
                        return Disconnect::Clean;
                    }
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                        let text = format!("message of {size} bytes is far above the limit of {MAX_MESSAGE_BYTES} (cut off at {max_size})");
                        let _ = ws.send(Message::text(ServerMsg::error(ErrorCode::TooLarge, text).to_json())).await;
                        hub.counters.count_error(ErrorCode::TooLarge);
                        let _ = ws.close(Some(close_frame(close::TOO_BIG, "message too big"))).await;
                        // Closed for its own fault: no resume, the partner learns at once.
                        return Disconnect::Clean;
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        hub.counters.count_error(ErrorCode::BadMessage);
                        let _ = ws.close(Some(close_frame(close::INVALID_DATA, "text frame is not UTF-8"))).await;
                        return Disconnect::Clean;
                    }
                    Some(Err(e)) => {
                        debug!(error = %e, "read failed");
                        return Disconnect::Dropped;
                    }
                    None => return Disconnect::Dropped,
                }
            }
        }
    }
}

/// Writes queued frames with one flush. Returns how the socket ended, if it did.
async fn write_batch<S>(ws: &mut WebSocketStream<S>, batch: &mut Vec<Outgoing>) -> Option<Disconnect>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for item in batch.drain(..) {
        let result = match item {
            Outgoing::Text(text) => ws.feed(Message::text(text)).await,
            Outgoing::Ping => ws.feed(Message::Ping(Default::default())).await,
            Outgoing::Close(code, reason) => {
                let _ = ws.close(Some(close_frame(code, reason))).await;
                // A client cut off for its own behaviour (flooding) ends its session at once, so
                // its partner is not kept waiting. For the other closes the core already forgot
                // the socket (ban, replaced) or the server is going away, and a resume elsewhere
                // stays possible.
                let how = if code == close::POLICY { Disconnect::Clean } else { Disconnect::Dropped };
                return Some(how);
            }
            Outgoing::Abandon => return Some(Disconnect::Dropped),
        };
        if result.is_err() {
            return Some(Disconnect::Dropped);
        }
    }
    match ws.flush().await {
        Ok(()) => None,
        Err(_) => Some(Disconnect::Dropped),
    }
}

fn limiter(rate: RateSettings) -> Option<DefaultDirectRateLimiter> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let burst = NonZeroU32::new(rate.burst.max(1)).expect("max(1) is never zero");
    Some(RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)))
}

/// Counts rejected messages in short windows, to tell a flooding client apart from a merely
/// eager one.
#[derive(Default)]
struct Flood {
    window_start: Option<Instant>,
    strikes: u32,
}

impl Flood {
    /// Counts a rejected message; true when the client should be cut off.
    fn strike(&mut self) -> bool {
        let now = Instant::now();
        if self.window_start.is_none_or(|start| now.duration_since(start) > FLOOD_WINDOW) {
            self.window_start = Some(now);
            self.strikes = 0;
        }
        self.strikes += 1;
        self.strikes >= FLOOD_STRIKES
    }

    /// Whether to answer this rejection (the first of a window and every tenth after it), so
    /// that answering never costs more than the flood itself.
    fn should_tell(&self) -> bool {
        self.strikes % 10 == 1
    }
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }
}

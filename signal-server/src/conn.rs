//! One WebSocket's task: reads frames, checks size and rate, parses, hands messages to the
//! hub, and writes what the hub queued in its outbox. Errors end this task only; they never
//! reach the listener or another socket.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use strangers_matchmaker::Disconnect;
use strangers_protocol::limits::MAX_MESSAGE_BYTES;
use strangers_protocol::{close, ClientMsg, ErrorCode, ServerMsg};
use tracing::{debug, debug_span, Instrument};

use crate::hub::{Hub, Refusal};
use crate::outbox::{Outbox, Outgoing};
use crate::ws::{Incoming, ReadError, Transport, MAX_READ_BYTES, PROTOCOL_ERROR};

/// Rejected messages within one flood window that get a client cut off.
const FLOOD_STRIKES: u32 = 100;
const FLOOD_WINDOW: Duration = Duration::from_secs(5);
/// How long the last frames (an error, a close) may take to leave before the socket is dropped.
const LAST_WORDS_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-connection rate settings.
#[derive(Debug, Clone, Copy)]
pub struct RateSettings {
    /// Messages per second; 0 turns the limit off.
    pub per_second: u32,
    pub burst: u32,
}

/// Serves one upgraded WebSocket until it ends.
pub async fn serve<T: Transport>(hub: Arc<Hub>, mut ws: T, ip: IpAddr, rate: RateSettings) {
    let outbox = Arc::new(Outbox::default());
    let conn = match hub.open(ip, outbox.clone()) {
        Ok(conn) => conn,
        Err(refusal) => {
            // Boxed so that its state does not add to every connection's task.
            Box::pin(refuse(&hub, &mut ws, refusal)).await;
            return;
        }
    };
    let span = debug_span!("conn", id = conn, %ip);
    let how = run(&hub, conn, &outbox, &mut ws, rate).instrument(span.clone()).await;
    span.in_scope(|| debug!(?how, "socket ended"));
    hub.close(conn, how);
}

async fn refuse<T: Transport>(hub: &Hub, ws: &mut T, refusal: Refusal) {
    let (code, text) = match refusal {
        Refusal::TooManyFromAddress => (ErrorCode::TooManyConnections, "too many connections from your address"),
        Refusal::TooManyInAll => (ErrorCode::Unavailable, "the server is full; try again later"),
        Refusal::ShuttingDown => (ErrorCode::Unavailable, "the server is restarting; try again shortly"),
    };
    hub.counters.count_error(code);
    ws.queue_text(ServerMsg::error(code, text).to_json());
    let code = if refusal == Refusal::ShuttingDown { close::SERVICE_RESTART } else { close::POLICY };
    ws.queue_close(code, text);
    last_words(ws).await;
}

/// Writes what is queued, within a time limit, ignoring errors: the socket is ending.
async fn last_words<T: Transport>(ws: &mut T) {
    let _ = tokio::time::timeout(LAST_WORDS_TIMEOUT, ws.flush()).await;
}

async fn run<T: Transport>(hub: &Hub, conn: u64, outbox: &Outbox, ws: &mut T, rate: RateSettings) -> Disconnect {
    let limiter = limiter(rate);
    let mut flood = Flood::default();
    loop {
        // Every message already read, in order, unless the hub has decided to close.
        while !outbox.is_finished() {
            let Some(read) = ws.next() else { break };
            let text = match read {
                Ok(Incoming::Text(text)) => Some(text),
                Ok(Incoming::Binary) => None,
                Ok(Incoming::Ping | Incoming::Pong) => continue,
                Ok(Incoming::Close(_)) => {
                    // The transport queued the answering close frame.
                    last_words(ws).await;
                    return Disconnect::Clean;
                }
                Err(e) => return read_failed(hub, ws, e).await,
            };
            if let Some(limiter) = &limiter {
                if limiter.check().is_err() {
                    if flood.strike() {
                        hub.reject(conn, ErrorCode::RateLimited, "you are sending too fast; disconnecting".into());
                        outbox.push(Outgoing::Close(close::POLICY, "flooding"));
                    } else if flood.should_tell() {
                        hub.reject(
                            conn,
                            ErrorCode::RateLimited,
                            format!(
                                "you are sending too fast (limit {} messages per second); message dropped",
                                rate.per_second
                            ),
                        );
                    }
                    continue;
                }
            }
            let Some(text) = text else {
                hub.reject(conn, ErrorCode::BadMessage, "binary frames are refused: send JSON text".into());
                continue;
            };
            match ClientMsg::parse(text) {
                Ok(msg) => hub.message(conn, msg),
                Err(e) => hub.reject(conn, e.code(), e.to_string()),
            }
        }
        if ws.has_output() {
            // Pongs the transport queued while reading.
            if let Some(how) = write_or_abandon(ws, outbox, VecDeque::new()).await {
                return how;
            }
        }
        tokio::select! {
            biased;
            batch = poll_fn(|cx| outbox.poll_take(cx)) => {
                if let Some(how) = write_or_abandon(ws, outbox, batch).await {
                    return how;
                }
            }
            read = ws.fill() => match read {
                Ok(true) => outbox.heard_at(hub.millis()),
                Ok(false) => return Disconnect::Dropped,
                Err(e) => {
                    debug!(error = %e, "read failed");
                    return Disconnect::Dropped;
                }
            },
        }
    }
}

/// Ends a socket whose input broke the rules; returns how it ended.
async fn read_failed<T: Transport>(hub: &Hub, ws: &mut T, error: ReadError) -> Disconnect {
    match error {
        ReadError::TooLarge(size) => {
            let text = format!(
                "message of {size} bytes is far above the limit of {MAX_MESSAGE_BYTES} (cut off at {MAX_READ_BYTES})"
            );
            ws.queue_text(ServerMsg::error(ErrorCode::TooLarge, text).to_json());
            hub.counters.count_error(ErrorCode::TooLarge);
            ws.queue_close(close::TOO_BIG, "message too big");
            last_words(ws).await;
            // Closed for its own fault: no resume, the partner learns at once.
            Disconnect::Clean
        }
        ReadError::InvalidUtf8 => {
            hub.counters.count_error(ErrorCode::BadMessage);
            ws.queue_close(close::INVALID_DATA, "text frame is not UTF-8");
            last_words(ws).await;
            Disconnect::Clean
        }
        ReadError::Protocol(e) => {
            debug!(error = %e, "WebSocket protocol error");
            ws.queue_close(PROTOCOL_ERROR, "WebSocket protocol error");
            last_words(ws).await;
            Disconnect::Dropped
        }
    }
}

/// Writes a batch unless the socket is abandoned meanwhile. Returns how the socket ended, if
/// it did.
async fn write_or_abandon<T: Transport>(ws: &mut T, outbox: &Outbox, batch: VecDeque<Outgoing>) -> Option<Disconnect> {
    tokio::select! {
        how = write_batch(ws, batch) => how,
        () = poll_fn(|cx| outbox.poll_abandoned(cx)) => Some(Disconnect::Dropped),
    }
}

/// Writes queued frames with one flush. Returns how the socket ended, if it did.
async fn write_batch<T: Transport>(ws: &mut T, batch: VecDeque<Outgoing>) -> Option<Disconnect> {
    let mut ended = None;
    for item in batch {
        match item {
            Outgoing::Text(text) => ws.queue_text(text),
            Outgoing::Ping => ws.queue_ping(),
            Outgoing::Close(code, reason) => {
                ws.queue_close(code, reason);
                // A client cut off for its own behaviour (flooding) ends its session at once, so
                // its partner is not kept waiting. For the other closes the core already forgot
                // the socket (ban, replaced) or the server is going away, and a resume elsewhere
                // stays possible.
                ended = Some(if code == close::POLICY { Disconnect::Clean } else { Disconnect::Dropped });
                break;
            }
            Outgoing::Abandon => return Some(Disconnect::Dropped),
        }
    }
    match ws.flush().await {
        Ok(()) => ended,
        Err(_) => Some(ended.unwrap_or(Disconnect::Dropped)),
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

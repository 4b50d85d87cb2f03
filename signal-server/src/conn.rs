//! One WebSocket's task: reads frames, checks size and rate, parses, hands messages to the
//! hub, and writes what the hub queued in its outbox. Errors end this task only; they never
//! reach the listener or another socket.
//!
//! The task is a hand-written future ([`Connection`]) rather than an `async fn`: a generator
//! reserves room for every state it may be in, at times twice over, and that room is paid by
//! every idle connection. The struct holds exactly what a connection needs.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use strangers_matchmaker::{ConnId, Disconnect};
use strangers_protocol::limits::MAX_MESSAGE_BYTES;
use strangers_protocol::{close, ClientMsg, ErrorCode, ServerMsg};
use tokio::time::Sleep;
use tracing::{debug, debug_span, Span};

use crate::hub::Hub;
use crate::outbox::{Outbox, Outgoing};
use crate::sockets::Refusal;
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

/// Admits an upgraded WebSocket to the hub. Returns its task, to be spawned, or `None` when
/// the hub refused it (the refusal is sent before this returns).
pub async fn admit<T: Transport>(hub: Arc<Hub>, mut ws: T, ip: IpAddr, rate: RateSettings) -> Option<Connection<T>> {
    let outbox = Arc::new(Outbox::default());
    let refusal = match hub.open(ip, outbox.clone()) {
        Ok(conn) => {
            return Some(Connection {
                span: debug_span!("conn", id = conn, %ip),
                hub,
                outbox,
                conn,
                ws,
                limiter: limiter(rate),
                per_second: rate.per_second,
                flood: Flood::default(),
                state: State::Reading,
            });
        }
        Err(refusal) => refusal,
    };
    let (code, text) = match refusal {
        Refusal::TooManyFromAddress => (ErrorCode::TooManyConnections, "too many connections from your address"),
        Refusal::TooManyInAll => (ErrorCode::Unavailable, "the server is full; try again later"),
        Refusal::ShuttingDown => (ErrorCode::Unavailable, "the server is restarting; try again shortly"),
    };
    hub.counters().count_error(code);
    ws.queue_text(ServerMsg::error(code, text).to_json());
    let code = if refusal == Refusal::ShuttingDown { close::SERVICE_RESTART } else { close::POLICY };
    ws.queue_close(code, text);
    let _ = tokio::time::timeout(LAST_WORDS_TIMEOUT, poll_fn(|cx| ws.poll_flush(cx))).await;
    None
}

/// One admitted WebSocket's task; it tells the hub when the socket ends.
pub struct Connection<T> {
    hub: Arc<Hub>,
    outbox: Arc<Outbox>,
    conn: ConnId,
    ws: T,
    limiter: Option<DefaultDirectRateLimiter>,
    per_second: u32,
    flood: Flood,
    state: State,
    span: Span,
}

enum State {
    /// Reading messages and waiting for input or output.
    Reading,
    /// Writing frames; `then` is how the socket ends once they are written, if it does.
    Writing {
        then: Option<Disconnect>,
    },
    /// Writing the last frames, within a deadline, then ending as `how`.
    Ending {
        how: Disconnect,
        deadline: Pin<Box<Sleep>>,
    },
    Done,
}

/// What a batch from the outbox asks for.
enum Batch {
    Write,
    /// Write, then end the socket this way.
    WriteThenEnd(Disconnect),
    /// End the socket without writing.
    Drop,
}

impl<T: Transport> Future for Connection<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if matches!(this.state, State::Done) {
            return Poll::Ready(());
        }
        let span = this.span.clone();
        let _entered = span.enter();
        let how = std::task::ready!(this.step(cx));
        this.state = State::Done;
        debug!(?how, "socket ended");
        this.hub.close(this.conn, how);
        Poll::Ready(())
    }
}

impl<T: Transport> Connection<T> {
    /// Advances as far as possible; ready with how the socket ended.
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect> {
        loop {
            match &mut self.state {
                State::Reading => {
                    if let Some(how) = self.read_buffered() {
                        self.state = State::Ending { how, deadline: Box::pin(tokio::time::sleep(LAST_WORDS_TIMEOUT)) };
                        continue;
                    }
                    if self.ws.has_output() {
                        // Pongs the transport queued while reading.
                        self.state = State::Writing { then: None };
                        continue;
                    }
                    if let Poll::Ready(batch) = self.outbox.poll_take(cx) {
                        self.state = match queue_batch(&mut self.ws, batch) {
                            Batch::Write => State::Writing { then: None },
                            Batch::WriteThenEnd(how) => State::Writing { then: Some(how) },
                            Batch::Drop => return Poll::Ready(Disconnect::Dropped),
                        };
                        continue;
                    }
                    match std::task::ready!(self.ws.poll_fill(cx)) {
                        Ok(true) => self.outbox.heard_at(self.hub.millis()),
                        Ok(false) => return Poll::Ready(Disconnect::Dropped),
                        Err(e) => {
                            debug!(error = %e, "read failed");
                            return Poll::Ready(Disconnect::Dropped);
                        }
                    }
                }
                State::Writing { then } => {
                    let then = *then;
                    // A socket stuck writing to a peer that never reads is dropped when abandoned.
                    if self.outbox.poll_abandoned(cx).is_ready() {
                        return Poll::Ready(Disconnect::Dropped);
                    }
                    match std::task::ready!(self.ws.poll_flush(cx)) {
                        Ok(()) => match then {
                            Some(how) => return Poll::Ready(how),
                            None => self.state = State::Reading,
                        },
                        Err(_) => return Poll::Ready(then.unwrap_or(Disconnect::Dropped)),
                    }
                }
                State::Ending { how, deadline } => {
                    let how = *how;
                    if self.ws.poll_flush(cx).is_ready() || deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(how);
                    }
                    return Poll::Pending;
                }
                State::Done => return Poll::Ready(Disconnect::Dropped),
            }
        }
    }

    /// Handles every message already read, in order, unless the hub has decided to close.
    /// Returns how the socket ends (after what is queued is written) if the input ends it.
    fn read_buffered(&mut self) -> Option<Disconnect> {
        while !self.outbox.is_finished() {
            let text = match self.ws.next()? {
                Ok(Incoming::Text(text)) => Some(text),
                Ok(Incoming::Binary) => None,
                Ok(Incoming::Ping | Incoming::Pong) => continue,
                // The transport queued the answering close frame.
                Ok(Incoming::Close(_)) => return Some(Disconnect::Clean),
                Err(e) => return Some(read_failed(&self.hub, &mut self.ws, e)),
            };
            let (hub, conn) = (&self.hub, self.conn);
            if let Some(limiter) = &self.limiter {
                if limiter.check().is_err() {
                    if self.flood.strike() {
                        hub.reject(conn, ErrorCode::RateLimited, "you are sending too fast; disconnecting".into());
                        self.outbox.push(Outgoing::Close(close::POLICY, "flooding"));
                    } else if self.flood.should_tell() {
                        hub.reject(
                            conn,
                            ErrorCode::RateLimited,
                            format!(
                                "you are sending too fast (limit {} messages per second); message dropped",
                                self.per_second
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
        None
    }
}

/// Queues the last frames for a socket whose input broke the rules; returns how it ends.
fn read_failed<T: Transport>(hub: &Hub, ws: &mut T, error: ReadError) -> Disconnect {
    match error {
        ReadError::TooLarge(size) => {
            let text = format!(
                "message of {size} bytes is far above the limit of {MAX_MESSAGE_BYTES} (cut off at {MAX_READ_BYTES})"
            );
            ws.queue_text(ServerMsg::error(ErrorCode::TooLarge, text).to_json());
            hub.counters().count_error(ErrorCode::TooLarge);
            ws.queue_close(close::TOO_BIG, "message too big");
            // Closed for its own fault: no resume, the partner learns at once.
            Disconnect::Clean
        }
        ReadError::InvalidUtf8 => {
            hub.counters().count_error(ErrorCode::BadMessage);
            ws.queue_close(close::INVALID_DATA, "text frame is not UTF-8");
            Disconnect::Clean
        }
        ReadError::Protocol(e) => {
            debug!(error = %e, "WebSocket protocol error");
            ws.queue_close(PROTOCOL_ERROR, "WebSocket protocol error");
            Disconnect::Dropped
        }
    }
}

/// Queues a batch of frames from the outbox.
fn queue_batch<T: Transport>(ws: &mut T, batch: VecDeque<Outgoing>) -> Batch {
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
                return Batch::WriteThenEnd(if code == close::POLICY {
                    Disconnect::Clean
                } else {
                    Disconnect::Dropped
                });
            }
            Outgoing::Abandon => return Batch::Drop,
        }
    }
    Batch::Write
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

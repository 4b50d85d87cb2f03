//! The WebSocket layer after the HTTP upgrade, behind one small trait so that the connection
//! task does not care how bytes move. Plain TCP uses our own frame codec driven by socket
//! readiness ([`plain`]): no read buffer while idle and one read per burst. TLS goes through
//! tokio-tungstenite ([`tls`]), which is not on the hot path.

pub mod frame;
pub(crate) mod inbound;
pub mod plain;
pub mod tls;

use std::io;
use std::task::{Context, Poll};

pub use frame::FrameError;

/// Messages above this are refused outright (close 1009); between the protocol limit and this,
/// the message is read, answered with `too_large`, and the socket stays open.
pub const MAX_READ_BYTES: usize = 1024 * 1024;

/// Close code for a frame that breaks RFC 6455.
pub const PROTOCOL_ERROR: u16 = 1002;

/// One message from the client. Pings are answered and closes echoed by the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    Text(&'a str),
    Binary,
    Ping,
    Pong,
    /// The client's close frame, with its status code if it gave one.
    Close(Option<u16>),
}

/// Why reading stopped; the connection ends after any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// A message of this many bytes (at least) is above [`MAX_READ_BYTES`].
    TooLarge(u64),
    /// A text message that is not UTF-8.
    InvalidUtf8,
    /// A frame that breaks RFC 6455.
    Protocol(FrameError),
}

/// A server-side WebSocket after the upgrade, polled by the connection's hand-written future.
///
/// Reading is split in two so that messages can borrow the transport's buffer: [`poll_fill`]
/// waits for bytes and takes them in, then [`next`] hands out every complete message.
/// Writing is split the same way: frames are queued, then [`poll_flush`] writes them together.
///
/// [`poll_fill`]: Transport::poll_fill
/// [`next`]: Transport::next
/// [`poll_flush`]: Transport::poll_flush
pub trait Transport: Unpin + Send + 'static {
    /// Takes in what the client sent, or registers to be woken when it sends something;
    /// `Ready(Ok(false))` once the client hung up.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>>;

    /// The next message already taken in, if any.
    fn next(&mut self) -> Option<Result<Incoming<'_>, ReadError>>;

    fn queue_text(&mut self, text: String);
    fn queue_ping(&mut self);
    fn queue_close(&mut self, code: u16, reason: &str);

    /// Whether frames (queued, or answers to pings and closes) wait to be written.
    fn has_output(&self) -> bool;

    /// Writes everything queued; what was written is never written again.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

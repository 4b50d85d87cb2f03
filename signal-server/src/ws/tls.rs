//! A WebSocket over TLS through tokio-tungstenite, behind the same [`Transport`] trait as the
//! plain codec. TLS sockets are few and off the hot path, so this favours simplicity.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{Incoming, ReadError, Transport, MAX_READ_BYTES};

/// A server-side WebSocket over any stream, framed by tungstenite.
pub struct TungsteniteWs<S> {
    ws: WebSocketStream<S>,
    /// The last message or error read; handed out once by `next`.
    current: Option<Result<Message, ReadError>>,
    handed_out: bool,
    queued: Vec<Message>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> TungsteniteWs<S> {
    /// Wraps an upgraded stream; `leftover` is what the client sent behind its request head.
    pub async fn new(stream: S, leftover: Vec<u8>) -> Self {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(64 * 1024)
            .max_write_buffer_size(8 * 1024 * 1024)
            .max_message_size(Some(MAX_READ_BYTES))
            .max_frame_size(Some(MAX_READ_BYTES));
        let ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
        TungsteniteWs { ws, current: None, handed_out: false, queued: Vec::new() }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for TungsteniteWs<S> {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let read = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
            None => return Poll::Ready(Ok(false)),
            Some(Ok(message)) => Ok(message),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, .. }))) => {
                Err(ReadError::TooLarge(size as u64))
            }
            Some(Err(WsError::Utf8(_))) => Err(ReadError::InvalidUtf8),
            Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
        };
        self.current = Some(read);
        self.handed_out = false;
        Poll::Ready(Ok(true))
    }

    fn next(&mut self) -> Option<Result<Incoming<'_>, ReadError>> {
        if self.handed_out {
            self.current = None;
            self.handed_out = false;
        }
        let current = self.current.as_ref()?;
        self.handed_out = true;
        Some(match current {
            Ok(Message::Text(text)) => Ok(Incoming::Text(text.as_str())),
            Ok(Message::Binary(_)) => Ok(Incoming::Binary),
            Ok(Message::Ping(_)) => Ok(Incoming::Ping),
            Ok(Message::Pong(_) | Message::Frame(_)) => Ok(Incoming::Pong),
            Ok(Message::Close(frame)) => Ok(Incoming::Close(frame.as_ref().map(|f| u16::from(f.code)))),
            Err(e) => Err(*e),
        })
    }

    fn queue_text(&mut self, text: String) {
        self.queued.push(Message::text(text));
    }

    fn queue_ping(&mut self) {
        self.queued.push(Message::Ping(Default::default()));
    }

    fn queue_close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
        self.queued.push(Message::Close(Some(frame)));
    }

    fn has_output(&self) -> bool {
        // Tungstenite answers pings and closes on its own, on the next read or flush.
        !self.queued.is_empty()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut ws = Pin::new(&mut self.ws);
        while !self.queued.is_empty() {
            ready!(ws.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
            let message = self.queued.remove(0);
            ws.as_mut().start_send(message).map_err(io::Error::other)?;
        }
        ws.poll_flush(cx).map_err(io::Error::other)
    }
}

//! A WebSocket on a plain TCP socket, driven by readiness: the task waits for the socket to
//! become readable holding no buffer, then reads everything available in one call into a
//! per-thread scratch buffer and keeps only the bytes of an incomplete frame. Outgoing frames
//! gather in a buffer that is freed once written.

use std::cell::RefCell;
use std::io;
use std::task::{ready, Context, Poll};

use tokio::net::TcpStream;

use super::frame::{self, OP_PING, OP_TEXT};
use super::inbound::Inbound;
use super::{Incoming, ReadError, Transport};

/// Size of the per-thread read buffer: one read takes in any burst a client sends.
const SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// A server-side WebSocket over TCP.
pub struct PlainWs {
    tcp: TcpStream,
    inbound: Inbound,
    /// Frames waiting to be written.
    out: Vec<u8>,
}

impl PlainWs {
    /// Wraps an upgraded socket; `leftover` is what the client sent behind its request head.
    pub fn new(tcp: TcpStream, leftover: &[u8]) -> PlainWs {
        PlainWs { tcp, inbound: Inbound::new(leftover), out: Vec::new() }
    }

    /// Reads what is available without waiting: `Ok(None)` if nothing is.
    fn try_fill(&mut self) -> io::Result<Option<usize>> {
        let (tcp, inbound) = (&self.tcp, &mut self.inbound);
        SCRATCH.with_borrow_mut(|scratch| match tcp.try_read(scratch) {
            Ok(n) => {
                inbound.push(&scratch[..n]);
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        })
    }
}

impl Transport for PlainWs {
    // Both directions poll the socket's readiness directly instead of awaiting `readable()` or
    // `writable()`: those futures hold a waiter node of about 150 bytes, which would sit in
    // every idle connection's task.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            if let Some(n) = self.try_fill()? {
                return Poll::Ready(Ok(n > 0));
            }
        }
    }

    fn next(&mut self) -> Option<Result<Incoming<'_>, ReadError>> {
        self.inbound.next(&mut self.out)
    }

    fn queue_text(&mut self, text: String) {
        frame::write_frame(&mut self.out, OP_TEXT, text.as_bytes());
    }

    fn queue_ping(&mut self) {
        frame::write_frame(&mut self.out, OP_PING, &[]);
    }

    fn queue_close(&mut self, code: u16, reason: &str) {
        frame::write_close(&mut self.out, code, reason);
    }

    fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            match self.tcp.try_write(&self.out) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                // Freed once written: an idle connection keeps no write buffer.
                Ok(n) if n == self.out.len() => self.out = Vec::new(),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(self.tcp.poll_write_ready(cx))?,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

//! A WebSocket on a plain TCP socket, driven by readiness: the task waits for the socket to
//! become readable holding no buffer, then reads everything available in one call into a
//! per-thread scratch buffer and keeps only the bytes of an incomplete frame. Outgoing frames
//! gather in a buffer that is freed once written.
//!
//! The socket sits in an [`AsyncFd`] rather than a tokio `TcpStream` so that a short read can
//! clear the readiness it consumed: a TCP read that returns less than was asked for has
//! emptied the receive queue, and anything arriving later raises a fresh edge. Without that,
//! every burst would cost a second `recv` that only answers "would block".

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
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
    tcp: AsyncFd<std::net::TcpStream>,
    inbound: Inbound,
    /// Frames waiting to be written.
    out: Vec<u8>,
}

impl PlainWs {
    /// Wraps an upgraded socket; `leftover` is what the client sent behind its request head.
    /// Fails only if the socket cannot move from tokio's own registration to ours.
    pub fn new(tcp: TcpStream, leftover: &[u8]) -> io::Result<PlainWs> {
        let tcp = tcp.into_std()?;
        // SAFETY: a std `TcpStream` owns its descriptor, keeps it open until dropped and always
        // reports the same one; the `AsyncFd` owns the stream from here on.
        let tcp = unsafe { AsyncFd::register(tcp) }?;
        Ok(PlainWs { tcp, inbound: Inbound::new(leftover), out: Vec::new() })
    }
}

impl Transport for PlainWs {
    // Both directions poll the socket's readiness directly instead of awaiting `readable()` or
    // `writable()`: those futures hold a waiter node of about 150 bytes, which would sit in
    // every idle connection's task.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let inbound = &mut self.inbound;
        loop {
            let mut guard = ready!(self.tcp.poll_read_ready(cx))?;
            let read = SCRATCH.with_borrow_mut(|scratch| match guard.get_inner().read(scratch) {
                Ok(n) => {
                    inbound.push(&scratch[..n]);
                    Ok(Some((n, n < scratch.len())))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            });
            match read {
                Ok(Some((n, drained))) => {
                    if drained && n > 0 {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n > 0));
                }
                Ok(None) => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
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
            match self.tcp.get_ref().write(&self.out) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                // Freed once written: an idle connection keeps no write buffer.
                Ok(n) if n == self.out.len() => self.out = Vec::new(),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?.clear_ready();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

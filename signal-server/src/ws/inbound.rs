//! Bytes read from a client, turned into messages: frames are parsed where they lie,
//! fragmented messages reassembled, text checked to be UTF-8, and pings and closes answered
//! into the caller's output buffer. Only the bytes of an incomplete frame are kept, so an idle
//! connection holds no allocation here.

use super::frame::{self, FrameError, Header, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use super::{Incoming, ReadError, MAX_READ_BYTES};

/// The read side of one connection.
#[derive(Default)]
pub struct Inbound {
    /// Bytes read and not yet consumed, from `pos` on.
    buf: Vec<u8>,
    pos: usize,
    /// The fragments of the message being reassembled, or the last message handed out.
    message: Vec<u8>,
    /// Opcode of the message being reassembled.
    fragmented: Option<u8>,
    /// `message` holds a message already handed out, to be dropped on the next call.
    message_out: bool,
}

impl Inbound {
    /// Starts with bytes that arrived behind the HTTP request head.
    pub fn new(leftover: &[u8]) -> Inbound {
        Inbound { buf: leftover.to_vec(), ..Inbound::default() }
    }

    /// Adds bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            // Everything earlier was consumed: start afresh (allocating exactly what is needed).
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, or `None` until more bytes arrive. Pongs and close echoes
    /// are appended to `replies`. After an error the connection must end.
    pub fn next(&mut self, replies: &mut Vec<u8>) -> Option<Result<Incoming<'_>, ReadError>> {
        if self.message_out {
            self.message = Vec::new();
            self.message_out = false;
        }
        loop {
            let header = match frame::parse_header(&self.buf[self.pos..]) {
                Ok(Some(header)) => header,
                Ok(None) => {
                    self.compact();
                    return None;
                }
                Err(e) => return Some(Err(ReadError::Protocol(e))),
            };
            let size = header.payload_len.saturating_add(self.message.len() as u64);
            if size > MAX_READ_BYTES as u64 {
                return Some(Err(ReadError::TooLarge(size)));
            }
            // Within the limit, so the whole frame fits in memory.
            let frame_len = header.header_len + header.payload_len as usize;
            if self.buf.len() - self.pos < frame_len {
                self.compact();
                return None;
            }
            let start = self.pos + header.header_len;
            let end = self.pos + frame_len;
            self.pos = end;
            frame::unmask(&mut self.buf[start..end], header.mask);
            match self.frame(header, start, end, replies) {
                Step::Again => continue,
                Step::Out(Ok(Out::Text(range, from_message))) => {
                    let bytes = if from_message { &self.message[range] } else { &self.buf[range] };
                    return Some(match std::str::from_utf8(bytes) {
                        Ok(text) => Ok(Incoming::Text(text)),
                        Err(_) => Err(ReadError::InvalidUtf8),
                    });
                }
                Step::Out(Ok(Out::Other(incoming))) => return Some(Ok(incoming)),
                Step::Out(Err(e)) => return Some(Err(e)),
            }
        }
    }

    /// Handles one complete, unmasked frame whose payload is `buf[start..end]`.
    fn frame(&mut self, header: Header, start: usize, end: usize, replies: &mut Vec<u8>) -> Step {
        let payload = &self.buf[start..end];
        match header.opcode {
            OP_PING => {
                frame::write_frame(replies, OP_PONG, payload);
                Step::Out(Ok(Out::Other(Incoming::Ping)))
            }
            OP_PONG => Step::Out(Ok(Out::Other(Incoming::Pong))),
            OP_CLOSE => match frame::parse_close(payload) {
                Ok(code) => {
                    match code {
                        Some(code) => frame::write_close(replies, code, ""),
                        None => frame::write_frame(replies, OP_CLOSE, &[]),
                    }
                    Step::Out(Ok(Out::Other(Incoming::Close(code))))
                }
                Err(e) => Step::Out(Err(ReadError::Protocol(e))),
            },
            OP_TEXT | OP_BINARY if self.fragmented.is_some() => {
                Step::Out(Err(ReadError::Protocol(FrameError::BadContinuation)))
            }
            OP_TEXT if header.fin => Step::Out(Ok(Out::Text(start..end, false))),
            OP_BINARY if header.fin => Step::Out(Ok(Out::Other(Incoming::Binary))),
            OP_CONTINUATION if self.fragmented.is_none() => {
                Step::Out(Err(ReadError::Protocol(FrameError::BadContinuation)))
            }
            opcode => {
                // The first or a later fragment of a message.
                self.message.extend_from_slice(payload);
                let kind = *self.fragmented.get_or_insert(opcode);
                if !header.fin {
                    return Step::Again;
                }
                self.fragmented = None;
                self.message_out = true;
                if kind == OP_TEXT {
                    Step::Out(Ok(Out::Text(0..self.message.len(), true)))
                } else {
                    Step::Out(Ok(Out::Other(Incoming::Binary)))
                }
            }
        }
    }

    /// Drops consumed bytes and frees the buffer when nothing is left. Room for a frame is
    /// never reserved from the length its header announces: the buffer grows only as bytes
    /// arrive, so a header alone (14 bytes from anyone) holds no more than itself.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
            return;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Bytes held for this connection (for tests).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.buf.capacity() + self.message.capacity()
    }
}

enum Out {
    /// A text message in `buf` (false) or `message` (true), not yet checked to be UTF-8.
    Text(std::ops::Range<usize>, bool),
    Other(Incoming<'static>),
}

enum Step {
    Again,
    Out(Result<Out, ReadError>),
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;

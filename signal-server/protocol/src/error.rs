//! Error codes carried by `error` messages, and the parse error that maps onto them.

use serde::{Deserialize, Serialize};

/// The `code` of an `error` message. The first six are those of the base protocol; the others
/// are additive extensions documented in `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, unknown `type`, missing or mistyped field, binary frame,
    /// a message out of order (anything before `hello`, a second `hello`).
    BadMessage,
    /// `signal` or `report` while not matched.
    NotMatched,
    /// A message larger than [`crate::limits::MAX_MESSAGE_BYTES`].
    TooLarge,
    /// The per-connection message rate was exceeded; the message was dropped.
    RateLimited,
    /// The client's address is banned.
    Banned,
    /// `hello.version` is not a version this server speaks.
    Version,
    /// Extension: the address already holds as many connections as the server allows.
    TooManyConnections,
    /// Extension: the partner is reconnecting and the buffer holding signals for it is full;
    /// the message was not relayed.
    BufferFull,
    /// Extension: the server is shutting down or otherwise unable to serve right now.
    Unavailable,
}

impl ErrorCode {
    /// Every code, for metrics that list them all.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadMessage,
        ErrorCode::NotMatched,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Banned,
        ErrorCode::Version,
        ErrorCode::TooManyConnections,
        ErrorCode::BufferFull,
        ErrorCode::Unavailable,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::NotMatched => "not_matched",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Banned => "banned",
            ErrorCode::Version => "version",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::BufferFull => "buffer_full",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// Why a text frame is not a valid client message. `Display` is a sentence fit for the
/// `message` of an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ParseError {
    code: ErrorCode,
    detail: String,
}

impl ParseError {
    pub(crate) fn bad(detail: impl Into<String>) -> Self {
        ParseError { code: ErrorCode::BadMessage, detail: detail.into() }
    }

    pub(crate) fn with_code(code: ErrorCode, detail: impl Into<String>) -> Self {
        ParseError { code, detail: detail.into() }
    }

    /// The error code to answer with.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

//! The signaling protocol v1: the JSON messages exchanged between a client and the signal
//! server, their limits and error codes. This crate only parses and prints messages; it knows
//! nothing of sockets, runtimes or time, so the server, the client and tests all share it.

mod client;
pub mod close;
mod error;
mod interests;
pub mod limits;
mod server;
mod signal;

pub use client::{ClientMsg, Hello};
pub use error::{ErrorCode, ParseError};
pub use interests::normalize_interests;
pub use server::{IceServer, PartnerLeftReason, ServerMsg};
pub use signal::{SignalData, SignalKind};

/// The protocol version this crate speaks (`hello.version`).
pub const PROTOCOL_VERSION: u64 = 1;

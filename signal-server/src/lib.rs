//! The Strangers signal server as a library: the IO shell around the pure matchmaker. It
//! accepts sockets, speaks PROTOCOL-v1 over WebSocket, serves /healthz and /metrics, and
//! hands out TURN credentials, and can answer STUN Binding requests. It never touches media. `main.rs` only parses flags, sets up
//! logging and signals, and calls [`run`].

pub mod community;
pub mod config;
mod conn;
#[cfg(test)]
mod fuzz;
mod http;
mod hub;
pub mod listen;
mod memory;
mod metrics;
mod outbox;
pub mod redis;
mod server;
mod sockets;
mod stun;
pub mod tls;
pub mod turn;
mod ws;

pub use config::Config;
pub use server::run;

//! The hub: the socket layer and the backend chosen at start, joined. Socket tasks call into
//! it; it hands each socket's open, messages and close to the backend, which decides and
//! pushes what to send into the socket layer. It holds no state of its own and must not turn
//! outputs into frames (the socket layer does) or decide anything (the backend does).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strangers_matchmaker::{ConnId, Disconnect, Stats};
use strangers_protocol::{ClientMsg, ErrorCode};

use crate::memory::Memory;
use crate::outbox::Outbox;
use crate::redis::Link;
use crate::sockets::{Counters, Refusal, Sockets};

/// Who decides: chosen once, at start.
pub enum Backend {
    /// The pure matchmaker, in this process (the default).
    Memory(Arc<Memory>),
    /// Several nodes sharing one Redis (`--redis`).
    Redis(Arc<Link>),
}

pub struct Hub {
    pub sockets: Arc<Sockets>,
    backend: Backend,
}

impl Hub {
    pub fn new(sockets: Arc<Sockets>, backend: Backend) -> Arc<Hub> {
        Arc::new(Hub { sockets, backend })
    }

    pub fn counters(&self) -> &Counters {
        &self.sockets.counters
    }

    /// Milliseconds since the server started (the clock of `Outbox::last_heard`).
    pub fn millis(&self) -> u64 {
        self.sockets.millis()
    }

    /// Admits a socket from `ip`, or says why not.
    pub fn open(&self, ip: IpAddr, outbox: Arc<Outbox>) -> Result<ConnId, Refusal> {
        match &self.backend {
            Backend::Memory(memory) => memory.open(ip, outbox),
            Backend::Redis(link) => link.open(ip, outbox),
        }
    }

    /// A parsed message from a socket.
    pub fn message(&self, conn: ConnId, msg: ClientMsg) {
        self.sockets.counters.messages_in.fetch_add(1, Ordering::Relaxed);
        match &self.backend {
            Backend::Memory(memory) => memory.message(conn, msg),
            Backend::Redis(link) => link.message(conn, msg),
        }
    }

    /// An error found by the socket's task itself (parse errors, rate limit, size).
    pub fn reject(&self, conn: ConnId, code: ErrorCode, message: String) {
        self.sockets.reject(conn, code, message);
    }

    /// A socket's task ended.
    pub fn close(&self, conn: ConnId, how: Disconnect) {
        match &self.backend {
            Backend::Memory(memory) => memory.close(conn, how),
            Backend::Redis(link) => link.close(conn, how),
        }
    }

    /// Stops admitting sockets and asks every open one to close with 1012 ("restarting").
    pub fn shut_down(&self) {
        match &self.backend {
            Backend::Memory(_) => self.sockets.shut_down(),
            Backend::Redis(link) => link.shut_down(),
        }
    }

    pub fn open_connections(&self) -> usize {
        self.sockets.open_connections()
    }

    /// This server's gauges and counters; with Redis, the whole cluster's, read from Redis
    /// (none if Redis does not answer).
    pub async fn stats(&self) -> Stats {
        match &self.backend {
            Backend::Memory(memory) => memory.stats(),
            Backend::Redis(link) => link.cluster_stats().await.unwrap_or_default(),
        }
    }

    /// The Redis backend, if this server runs with one.
    pub fn remote(&self) -> Option<&Link> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis(link) => Some(link),
        }
    }
}

//! The socket layer: every open socket's outbox, the caps on sockets per address and in all,
//! the ping sweeper and the shutdown. Backends push the outputs they decide into it
//! ([`Sockets::push`]); it turns them into frames. It knows no backend and decides nothing
//! about sessions: it must not import the matchmaker's state or `redis/`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strangers_matchmaker::{ConnId, Output};
use strangers_protocol::{close, ErrorCode, ServerMsg};

use crate::community::Community;
use crate::outbox::{Outbox, Outgoing};
use crate::turn::IceConfig;

/// Why a socket was refused before it could speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyFromAddress,
    TooManyInAll,
    ShuttingDown,
}

/// Counters of the sockets' traffic, for metrics.
#[derive(Default)]
pub struct Counters {
    pub errors: [AtomicU64; ErrorCode::ALL.len()],
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub connections_total: AtomicU64,
    pub refused_total: AtomicU64,
    /// STUN Binding requests answered (`--stun-listen`).
    pub stun_requests: AtomicU64,
}

impl Counters {
    pub fn count_error(&self, code: ErrorCode) {
        let index = ErrorCode::ALL.iter().position(|c| *c == code).expect("ALL lists every code");
        self.errors[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// Limits on connections, enforced at the door.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// 0: unlimited.
    pub per_ip: u32,
    /// 0: unlimited.
    pub total: u32,
}

#[derive(Default)]
struct Table {
    outboxes: HashMap<ConnId, (Arc<Outbox>, IpAddr)>,
    per_ip: HashMap<IpAddr, u32>,
    next_conn: ConnId,
    shutting_down: bool,
}

impl Table {
    fn push_text(&self, counters: &Counters, conn: ConnId, text: String) {
        if let Some((outbox, _)) = self.outboxes.get(&conn) {
            counters.messages_out.fetch_add(1, Ordering::Relaxed);
            outbox.push(Outgoing::Text(text));
        }
    }

    /// Queues a close frame on a socket (its task reads no more input).
    fn close(&self, conn: ConnId, code: u16, reason: &'static str) {
        if let Some((outbox, _)) = self.outboxes.get(&conn) {
            outbox.push(Outgoing::Close(code, reason));
        }
    }

    /// Whether a socket is open and still reads its outbox (no close or abandon queued).
    fn takes(&self, conn: ConnId) -> bool {
        self.outboxes.get(&conn).is_some_and(|(outbox, _)| !outbox.is_finished())
    }

    fn close_all(&self, code: u16, reason: &'static str) {
        for (outbox, _) in self.outboxes.values() {
            outbox.push(Outgoing::Close(code, reason));
        }
    }
}

/// The socket layer. See the module documentation.
pub struct Sockets {
    table: Mutex<Table>,
    ice: IceConfig,
    community: Community,
    limits: ConnLimits,
    epoch: Instant,
    pub counters: Counters,
}

impl Sockets {
    pub fn new(ice: IceConfig, community: Community, limits: ConnLimits) -> Arc<Sockets> {
        Arc::new(Sockets {
            table: Mutex::new(Table { next_conn: 1, ..Table::default() }),
            ice,
            community,
            limits,
            epoch: Instant::now(),
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while the lock is held (network input never panics), so a poisoned
        // lock would be a bug worth stopping for.
        self.table.lock().expect("socket table lock poisoned")
    }

    /// Milliseconds since the layer started (the clock of `Outbox::last_heard`).
    pub fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Admits a socket from `ip` and numbers it, or says why not.
    pub fn admit(&self, ip: IpAddr, outbox: Arc<Outbox>) -> Result<ConnId, Refusal> {
        let mut table = self.lock();
        if table.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        if self.limits.total > 0 && table.outboxes.len() >= self.limits.total as usize {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::TooManyInAll);
        }
        let count = table.per_ip.entry(ip).or_default();
        if self.limits.per_ip > 0 && *count >= self.limits.per_ip {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::TooManyFromAddress);
        }
        *count += 1;
        let conn = table.next_conn;
        table.next_conn += 1;
        outbox.heard_at(self.millis());
        table.outboxes.insert(conn, (outbox, ip));
        self.counters.connections_total.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Forgets a socket whose task ended; what is pushed for it afterwards is dropped.
    pub fn remove(&self, conn: ConnId) {
        let mut table = self.lock();
        if let Some((_, ip)) = table.outboxes.remove(&conn) {
            if let Some(count) = table.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    table.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Turns outputs into frames in their sockets' outboxes, in order. Backends call it
    /// under their own lock, so the order they decide is the order on the wire.
    pub fn push(&self, outputs: impl IntoIterator<Item = Output>) {
        let table = self.lock();
        for output in outputs {
            self.push_one(&table, output);
        }
    }

    /// Whether a socket is open and still reads its outbox (no close or abandon queued).
    pub fn takes(&self, conn: ConnId) -> bool {
        self.lock().takes(conn)
    }

    /// The open sockets from `ip`.
    pub fn conns_from(&self, ip: IpAddr) -> Vec<ConnId> {
        let table = self.lock();
        table.outboxes.iter().filter(|(_, (_, from))| *from == ip).map(|(conn, _)| *conn).collect()
    }

    /// Whether a socket is open (its close may still be on the way to the backend).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.lock().outboxes.contains_key(&conn)
    }

    fn push_one(&self, table: &Table, output: Output) {
        match output {
            Output::Send { conn, msg } => {
                if let ServerMsg::Error { code, .. } = &msg {
                    self.counters.count_error(*code);
                }
                if table.outboxes.contains_key(&conn) {
                    table.push_text(&self.counters, conn, msg.into_json());
                }
            }
            Output::Welcome { conn, session_id, resume_token, resumed, room } => {
                let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let ice_servers = self.ice.ice_servers(&session_id, unix_now);
                let Community { name, rules } = self.community.clone();
                let msg = ServerMsg::Welcome {
                    id: session_id,
                    resume: resume_token,
                    ice_servers,
                    resumed,
                    room,
                    name,
                    rules,
                };
                table.push_text(&self.counters, conn, msg.to_json());
            }
            Output::Close { conn, code, reason } => table.close(conn, code, reason),
        }
    }

    /// An error found by the socket's task itself (parse errors, rate limit, size).
    pub fn reject(&self, conn: ConnId, code: ErrorCode, message: String) {
        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
        self.push([Output::Send { conn, msg: ServerMsg::error(code, message) }]);
    }

    /// Asks every open socket to reconnect and resume (close 1012), keeping the door open.
    pub fn restart_all(&self) {
        self.lock().close_all(close::SERVICE_RESTART, "server restarting");
    }

    /// Stops admitting sockets and asks every open one to close with 1012 ("restarting").
    pub fn shut_down(&self) {
        let mut table = self.lock();
        table.shutting_down = true;
        table.close_all(close::SERVICE_RESTART, "server restarting");
    }

    pub fn open_connections(&self) -> usize {
        self.lock().outboxes.len()
    }

    /// Pings sockets that have been silent for `ping_after`, abandons those silent for
    /// `drop_after` (their sessions are held for a resume, as after any drop).
    pub async fn run_sweeper(self: Arc<Sockets>, ping_after: Duration, drop_after: Duration) {
        let period = (ping_after / 2).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (ping_ms, drop_ms) = (ping_after.as_millis() as u64, drop_after.as_millis() as u64);
        loop {
            ticker.tick().await;
            let now = self.millis();
            let table = self.lock();
            for (outbox, _) in table.outboxes.values() {
                let silent = now.saturating_sub(outbox.last_heard());
                if silent >= drop_ms {
                    outbox.push(Outgoing::Abandon);
                } else if silent >= ping_ms {
                    outbox.push(Outgoing::Ping);
                }
            }
        }
    }
}

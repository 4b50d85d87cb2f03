//! The hub: the one matchmaker of this server behind a lock, the outboxes of every socket,
//! and the small background tasks that drive the matchmaker's timers and watch for silent
//! sockets. Socket tasks call into it; it turns the core's outputs into frames in outboxes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strangers_matchmaker::{ConnId, Disconnect, Matchmaker, Output, Stats};
use strangers_protocol::{close, ClientMsg, ErrorCode, ServerMsg};
use tokio::sync::Notify;

use crate::outbox::{Outbox, Outgoing};
use crate::redis::{Link, Record, Route};
use crate::turn::IceConfig;

/// Why a socket was refused before it could speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyFromAddress,
    TooManyInAll,
    ShuttingDown,
}

/// Counters the hub keeps beside the matchmaker's.
#[derive(Default)]
pub struct HubCounters {
    pub errors: [AtomicU64; ErrorCode::ALL.len()],
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub connections_total: AtomicU64,
    pub refused_total: AtomicU64,
    /// STUN Binding requests answered (`--stun-listen`).
    pub stun_requests: AtomicU64,
}

impl HubCounters {
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

struct Inner {
    core: Matchmaker,
    outboxes: HashMap<ConnId, (Arc<Outbox>, IpAddr)>,
    per_ip: HashMap<IpAddr, u32>,
    next_conn: ConnId,
    shutting_down: bool,
    /// The deadline the timer task sleeps towards.
    armed: Option<Instant>,
    /// Redis mode: where matched sockets' signals go without a script (`redis/route.rs`).
    routes: HashMap<ConnId, Route>,
}

impl Inner {
    /// Redis mode: whether a signal of `room` can go straight into this socket's outbox (it
    /// holds a route to that room and is not closing); if not, the scripts decide.
    fn takes_signal(&self, conn: ConnId, room: &str) -> bool {
        self.routes.get(&conn).is_some_and(|r| &*r.room == room)
            && self.outboxes.get(&conn).is_some_and(|(outbox, _)| !outbox.is_finished())
    }
}

pub struct Hub {
    inner: Mutex<Inner>,
    ice: IceConfig,
    limits: ConnLimits,
    epoch: Instant,
    timer_changed: Notify,
    pub counters: HubCounters,
    /// With `--redis`, the shared backend that replaces the in-memory matchmaker.
    remote: Option<Arc<Link>>,
}

impl Hub {
    pub fn new(core: Matchmaker, ice: IceConfig, limits: ConnLimits, remote: Option<Arc<Link>>) -> Arc<Hub> {
        Arc::new(Hub {
            inner: Mutex::new(Inner {
                core,
                outboxes: HashMap::new(),
                per_ip: HashMap::new(),
                next_conn: 1,
                shutting_down: false,
                armed: None,
                routes: HashMap::new(),
            }),
            ice,
            limits,
            epoch: Instant::now(),
            timer_changed: Notify::new(),
            counters: HubCounters::default(),
            remote,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held (network input never panics), so a poisoned
        // lock would be a bug worth stopping for.
        self.inner.lock().expect("hub lock poisoned")
    }

    /// Milliseconds since the hub started (the clock of `Outbox::last_heard`).
    pub fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Admits a socket from `ip`, or says why not.
    pub fn open(&self, ip: IpAddr, outbox: Arc<Outbox>) -> Result<ConnId, Refusal> {
        let mut inner = self.lock();
        if inner.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        if self.limits.total > 0 && inner.outboxes.len() >= self.limits.total as usize {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::TooManyInAll);
        }
        let count = inner.per_ip.entry(ip).or_default();
        if self.limits.per_ip > 0 && *count >= self.limits.per_ip {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::TooManyFromAddress);
        }
        *count += 1;
        let conn = inner.next_conn;
        inner.next_conn += 1;
        outbox.heard_at(self.millis());
        inner.outboxes.insert(conn, (outbox, ip));
        self.counters.connections_total.fetch_add(1, Ordering::Relaxed);
        match &self.remote {
            None => {
                inner.core.handle_open(Instant::now(), conn, ip);
                self.dispatch(&mut inner);
            }
            Some(remote) if remote.is_banned(ip) => {
                self.send(&inner, conn, &ServerMsg::error(ErrorCode::Banned, "this address is banned for a while"));
                if let Some((outbox, _)) = inner.outboxes.get(&conn) {
                    outbox.push(Outgoing::Close(close::POLICY, "banned"));
                }
            }
            Some(remote) => remote.opened(conn, ip),
        }
        Ok(conn)
    }

    /// A parsed message from a socket.
    pub fn message(&self, conn: ConnId, msg: ClientMsg) {
        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
        if let Some(remote) = &self.remote {
            return self.message_remote(remote, conn, msg);
        }
        let mut inner = self.lock();
        inner.core.handle_message(Instant::now(), conn, msg);
        self.dispatch(&mut inner);
    }

    /// Redis mode: a signal goes the short way when the socket has a route, anything else to
    /// the backend's scripts.
    fn message_remote(&self, remote: &Link, conn: ConnId, msg: ClientMsg) {
        match msg {
            ClientMsg::Signal(data) => {
                let text = data.into_wire();
                let inner = self.lock();
                let Some(route) = inner.routes.get(&conn) else {
                    drop(inner);
                    return remote.signal(conn, text);
                };
                if !route.local {
                    return remote.publish(conn, route, text);
                }
                match route.partner_conn.filter(|p| inner.takes_signal(*p, &route.room)) {
                    Some(partner) => {
                        self.push_text(&inner, partner, text);
                        remote.relayed_locally();
                    }
                    None => remote.signal(conn, text),
                }
            }
            ClientMsg::Find | ClientMsg::Next | ClientMsg::Stop => {
                self.lock().routes.remove(&conn);
                remote.message(conn, msg);
            }
            msg => remote.message(conn, msg),
        }
    }

    /// An error found by the socket's task itself (parse errors, rate limit, size).
    pub fn reject(&self, conn: ConnId, code: ErrorCode, message: String) {
        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
        let inner = self.lock();
        self.send(&inner, conn, &ServerMsg::error(code, message));
    }

    /// A socket's task ended.
    pub fn close(&self, conn: ConnId, how: Disconnect) {
        let mut inner = self.lock();
        inner.routes.remove(&conn);
        if let Some((_, ip)) = inner.outboxes.remove(&conn) {
            if let Some(count) = inner.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    inner.per_ip.remove(&ip);
                }
            }
        }
        match &self.remote {
            None => {
                inner.core.handle_close(Instant::now(), conn, how);
                self.dispatch(&mut inner);
            }
            Some(remote) => remote.closed(conn, how),
        }
    }

    /// Sends one message on a socket, if it is still open (the Redis backend's direct answers).
    pub(crate) fn deliver(&self, conn: ConnId, msg: &ServerMsg) {
        let inner = self.lock();
        self.send(&inner, conn, msg);
    }

    /// Applies what the Redis backend published for this node's sockets, in order.
    pub(crate) fn apply(&self, remote: &Link, batch: &[Record<'_>]) {
        let mut inner = self.lock();
        for record in batch {
            match *record {
                Record::Text { conn, text } => self.send_text(&inner, conn, text),
                Record::Matched { conn, ref route, text } => {
                    if inner.outboxes.contains_key(&conn) {
                        inner.routes.insert(conn, Route::new(route, &remote.node));
                    }
                    self.send_text(&inner, conn, text);
                }
                Record::Left { conn, text } => {
                    inner.routes.remove(&conn);
                    self.send_text(&inner, conn, text);
                }
                Record::Signal { conn, room, sender, text } => {
                    if inner.takes_signal(conn, room) {
                        self.send_text(&inner, conn, text);
                    } else {
                        remote.reroute(room, sender, text);
                    }
                }
                Record::Error { conn, code, message } => self.send(&inner, conn, &ServerMsg::error(code, message)),
                Record::Welcome { conn, session_id, token, resumed, room } => {
                    if inner.outboxes.contains_key(&conn) {
                        remote.welcomed(conn, session_id);
                    }
                    let msg =
                        self.welcome(session_id.to_string(), token.to_string(), resumed, room.map(str::to_string));
                    self.send(&inner, conn, &msg);
                }
                Record::Close { conn, code } => {
                    inner.routes.remove(&conn);
                    let reason = match code {
                        close::REPLACED => "resumed elsewhere",
                        close::POLICY => "banned",
                        _ => "closed by the server",
                    };
                    if let Some((outbox, _)) = inner.outboxes.get(&conn) {
                        outbox.push(Outgoing::Close(code, reason));
                    }
                }
            }
        }
    }

    /// Asks every open socket to reconnect and resume (close 1012), keeping the door open:
    /// the Redis backend lost what it had published for this node.
    pub(crate) fn restart_all(&self) {
        let mut inner = self.lock();
        inner.routes.clear();
        for (outbox, _) in inner.outboxes.values() {
            outbox.push(Outgoing::Close(close::SERVICE_RESTART, "server restarting"));
        }
    }

    fn welcome(&self, id: String, resume: String, resumed: bool, room: Option<String>) -> ServerMsg {
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let ice_servers = self.ice.ice_servers(&id, unix_now);
        ServerMsg::Welcome { id, resume, ice_servers, resumed, room }
    }

    /// Turns the core's outputs into frames, in order, then rearms the timer if needed.
    fn dispatch(&self, inner: &mut Inner) {
        while let Some(output) = inner.core.poll_output() {
            match output {
                Output::Send { conn, msg } => self.send_owned(inner, conn, msg),
                Output::Welcome { conn, session_id, resume_token, resumed, room } => {
                    let msg = self.welcome(session_id, resume_token, resumed, room);
                    self.send(inner, conn, &msg);
                }
                Output::Close { conn, code, reason } => {
                    if let Some((outbox, _)) = inner.outboxes.get(&conn) {
                        outbox.push(Outgoing::Close(code, reason));
                    }
                }
            }
        }
        let next = inner.core.poll_timeout();
        if next.is_some() && (inner.armed.is_none() || next < inner.armed) {
            inner.armed = next;
            self.timer_changed.notify_one();
        }
    }

    fn send_text(&self, inner: &Inner, conn: ConnId, text: &str) {
        if inner.outboxes.contains_key(&conn) {
            self.push_text(inner, conn, text.to_string());
        }
    }

    /// Like `send`, moving a signal's text instead of copying it.
    fn send_owned(&self, inner: &Inner, conn: ConnId, msg: ServerMsg) {
        match msg {
            ServerMsg::Signal { data } => self.push_text(inner, conn, data.into_wire()),
            msg => self.send(inner, conn, &msg),
        }
    }

    fn push_text(&self, inner: &Inner, conn: ConnId, text: String) {
        if let Some((outbox, _)) = inner.outboxes.get(&conn) {
            self.counters.messages_out.fetch_add(1, Ordering::Relaxed);
            outbox.push(Outgoing::Text(text));
        }
    }

    fn send(&self, inner: &Inner, conn: ConnId, msg: &ServerMsg) {
        if let ServerMsg::Error { code, .. } = msg {
            self.counters.count_error(*code);
        }
        if inner.outboxes.contains_key(&conn) {
            self.push_text(inner, conn, msg.to_json());
        }
    }

    /// Drives the matchmaker's timers until the hub is dropped by everyone else.
    pub async fn run_timers(self: Arc<Hub>) {
        loop {
            let deadline = {
                let mut inner = self.lock();
                let now = Instant::now();
                if inner.core.poll_timeout().is_some_and(|t| t <= now) {
                    inner.core.handle_timeout(now);
                    self.dispatch(&mut inner);
                }
                inner.armed = inner.core.poll_timeout();
                inner.armed
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = self.timer_changed.notified() => {}
                    }
                }
                None => self.timer_changed.notified().await,
            }
        }
    }

    /// Pings sockets that have been silent for `ping_after`, abandons those silent for
    /// `drop_after` (their sessions are held for a resume, as after any drop).
    pub async fn run_sweeper(self: Arc<Hub>, ping_after: Duration, drop_after: Duration) {
        let period = (ping_after / 2).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (ping_ms, drop_ms) = (ping_after.as_millis() as u64, drop_after.as_millis() as u64);
        loop {
            ticker.tick().await;
            let now = self.millis();
            let inner = self.lock();
            for (outbox, _) in inner.outboxes.values() {
                let silent = now.saturating_sub(outbox.last_heard());
                if silent >= drop_ms {
                    outbox.push(Outgoing::Abandon);
                } else if silent >= ping_ms {
                    outbox.push(Outgoing::Ping);
                }
            }
        }
    }

    /// Stops admitting sockets and asks every open one to close with 1012 ("restarting").
    pub fn shut_down(&self) {
        let mut inner = self.lock();
        inner.shutting_down = true;
        inner.routes.clear();
        for (outbox, _) in inner.outboxes.values() {
            outbox.push(Outgoing::Close(close::SERVICE_RESTART, "server restarting"));
        }
    }

    pub fn open_connections(&self) -> usize {
        self.lock().outboxes.len()
    }

    /// This server's gauges and counters; with Redis, the whole cluster's, read from Redis
    /// (this node's own figures if Redis does not answer).
    pub async fn stats(&self) -> Stats {
        if let Some(remote) = &self.remote {
            if let Ok(stats) = remote.cluster_stats().await {
                return stats;
            }
        }
        self.lock().core.stats(Instant::now())
    }

    /// The Redis backend, if this server runs with one.
    pub fn remote(&self) -> Option<&Link> {
        self.remote.as_deref()
    }
}

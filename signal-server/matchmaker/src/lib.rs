//! The pairing core of the signal server: who waits, who is matched with whom, which socket
//! speaks for which session, and what each of them must be told. It is sans-IO: no sockets,
//! no runtime, no clock. Inputs come in through `handle_*` with the current instant; what to
//! send, close or schedule comes out of [`Matchmaker::poll_output`] and
//! [`Matchmaker::poll_timeout`]. The server is a thin shell around it.
//!
//! Pairing rules, in order: a stranger sharing an interest is preferred (the longest-waiting
//! of them); otherwise, a client that accepts anyone (no interests, or its interest wait is
//! over) is paired with the longest-waiting client that also accepts anyone. A session whose
//! socket is down never waits in the queue: it is parked and rejoins, at its old place, when
//! it resumes.

mod config;
mod ids;
mod invariants;
mod moderation;
mod queue;
mod session;
mod stats;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

pub use config::Config;
pub use stats::Stats;
use strangers_protocol::{close, ClientMsg, ErrorCode, Hello, PartnerLeftReason, ServerMsg, SignalData};

use ids::IdGen;
use moderation::{Moderation, ReportOutcome};
use queue::WaitingQueue;
use session::{Place, Room, Session};

/// Identifies one socket. The shell numbers sockets; a number is never reused.
pub type ConnId = u64;

pub(crate) type SessionKey = u64;
pub(crate) type RoomKey = u64;

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this message on this socket.
    Send { conn: ConnId, msg: ServerMsg },
    /// Send `welcome` on this socket; the shell adds the ICE servers (whose TURN credentials
    /// need the wall clock and the secret) for this session id.
    Welcome { conn: ConnId, session_id: String, resume_token: String, resumed: bool, room: Option<String> },
    /// Close this socket with this WebSocket close code, after sending what came before.
    /// The core has already forgotten the socket.
    Close { conn: ConnId, code: u16, reason: &'static str },
}

/// How a socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The client closed it on purpose (close frame): the session ends at once.
    Clean,
    /// It broke (no close frame, a read error, silence): the session is held for the grace
    /// period so the client can resume it.
    Dropped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A dropped session's grace period ends.
    Grace(SessionKey),
    /// A waiting session's interest wait ends.
    Open(SessionKey),
    /// A ban ends or a report stops counting.
    Moderation,
}

#[derive(Debug)]
struct Conn {
    ip: IpAddr,
    session: Option<SessionKey>,
}

/// The matchmaker. See the crate documentation.
pub struct Matchmaker {
    config: Config,
    ids: IdGen,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<SessionKey, Session>,
    tokens: HashMap<String, SessionKey>,
    rooms: HashMap<RoomKey, Room>,
    queue: WaitingQueue,
    moderation: Moderation,
    timers: BTreeSet<(Instant, Timer)>,
    outputs: VecDeque<Output>,
    next_key: u64,
    next_ticket: u64,
    counters: stats::Counters,
}

impl Matchmaker {
    pub fn new(config: Config) -> Self {
        Matchmaker {
            ids: IdGen::new(config.seed),
            config,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            rooms: HashMap::new(),
            queue: WaitingQueue::default(),
            moderation: Moderation::default(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            next_key: 1,
            next_ticket: 1,
            counters: stats::Counters::default(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether an address is banned now (the shell checks before spending anything on it).
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.moderation.is_banned(ip, now)
    }

    /// A socket opened from `ip`. A banned address is told so and closed.
    pub fn handle_open(&mut self, now: Instant, conn: ConnId, ip: IpAddr) {
        self.handle_timeout(now);
        if self.moderation.is_banned(ip, now) {
            self.send(conn, ServerMsg::error(ErrorCode::Banned, "this address is banned for a while"));
            self.outputs.push_back(Output::Close { conn, code: close::POLICY, reason: "banned" });
            return;
        }
        self.conns.insert(conn, Conn { ip, session: None });
    }

    /// A socket ended.
    pub fn handle_close(&mut self, now: Instant, conn: ConnId, how: Disconnect) {
        self.handle_timeout(now);
        let Some(Conn { session: Some(key), .. }) = self.conns.remove(&conn) else { return };
        match how {
            Disconnect::Clean => self.end_session(key, PartnerLeftReason::Disconnect),
            Disconnect::Dropped => {
                let until = now + self.config.resume_grace;
                let session = self.session_mut(key);
                session.conn = None;
                session.grace_until = Some(until);
                if let Place::Waiting { ticket, since } = session.place {
                    session.place = Place::Parked { ticket, since };
                    self.leave_queue(key, ticket);
                }
                self.timers.insert((until, Timer::Grace(key)));
            }
        }
    }

    /// A valid message arrived on a socket.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, msg: ClientMsg) {
        self.handle_timeout(now);
        let Some(state) = self.conns.get(&conn) else { return };
        let Some(key) = state.session else {
            match msg {
                ClientMsg::Hello(hello) => self.hello(now, conn, hello),
                _ => self.send(conn, ServerMsg::error(ErrorCode::BadMessage, "the first message must be hello")),
            }
            return;
        };
        match msg {
            ClientMsg::Hello(_) => {
                self.send(conn, ServerMsg::error(ErrorCode::BadMessage, "hello was already received on this socket"))
            }
            ClientMsg::Find => match self.session(key).place {
                Place::Idle => self.enqueue_fresh(now, key),
                Place::Waiting { .. } => {}
                Place::InRoom { .. } => self.send(
                    conn,
                    ServerMsg::error(ErrorCode::BadMessage, "already matched: send next to meet someone else"),
                ),
                Place::Parked { .. } => unreachable!("a session with a live socket is never parked"),
            },
            ClientMsg::Next => match self.session(key).place {
                Place::Idle => self.enqueue_fresh(now, key),
                Place::Waiting { .. } => {}
                Place::InRoom { room } => {
                    self.end_room(room, key, PartnerLeftReason::Next);
                    self.enqueue_fresh(now, key);
                }
                Place::Parked { .. } => unreachable!("a session with a live socket is never parked"),
            },
            ClientMsg::Stop => match self.session(key).place {
                Place::Idle => {}
                Place::Waiting { ticket, .. } => {
                    self.leave_queue(key, ticket);
                    self.session_mut(key).place = Place::Idle;
                }
                Place::InRoom { room } => self.end_room(room, key, PartnerLeftReason::Stop),
                Place::Parked { .. } => unreachable!("a session with a live socket is never parked"),
            },
            ClientMsg::Signal(data) => match self.session(key).place {
                Place::InRoom { room } => self.relay(conn, key, room, data),
                _ => self
                    .send(conn, ServerMsg::error(ErrorCode::NotMatched, "signal needs a partner: you are not matched")),
            },
            ClientMsg::Report { .. } => match self.session(key).place {
                Place::InRoom { room } => self.report(now, key, room),
                _ => self
                    .send(conn, ServerMsg::error(ErrorCode::NotMatched, "report needs a partner: you are not matched")),
            },
        }
    }

    /// Runs every timer due at `now`. Every other `handle_*` calls it first, so the shell only
    /// needs to call it when [`Matchmaker::poll_timeout`] says so.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Grace(key) => {
                    if self
                        .sessions
                        .get(&key)
                        .is_some_and(|s| s.conn.is_none() && s.grace_until.is_some_and(|t| t <= now))
                    {
                        self.end_session(key, PartnerLeftReason::Disconnect);
                    }
                }
                Timer::Open(key) => {
                    self.open_up(now, key);
                    // Waits that end at the same instant end together: pair only once all of
                    // them are open, so the longest waiters meet first.
                    if !matches!(self.timers.first(), Some(&(next, Timer::Open(_))) if next == at) {
                        self.pair_open();
                    }
                }
                Timer::Moderation => {
                    self.moderation.expire(now, self.config.report_window);
                    self.schedule_moderation();
                }
            }
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Matchmaker::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Gauges and counters for metrics.
    pub fn stats(&self, now: Instant) -> Stats {
        Stats {
            connections: self.conns.len(),
            sessions: self.sessions.len(),
            queued: self.queue.len(),
            rooms: self.rooms.len(),
            sessions_dropped: self.sessions.values().filter(|s| s.conn.is_none()).count(),
            bans_active: self.moderation.active_bans(now),
            matches_total: self.counters.matches,
            signals_relayed_total: self.counters.signals_relayed,
            resumes_total: self.counters.resumes,
            reports_total: self.counters.reports,
            bans_total: self.counters.bans,
        }
    }

    fn hello(&mut self, now: Instant, conn: ConnId, hello: Hello) {
        let resumed = hello.resume.as_ref().and_then(|t| self.tokens.get(t)).copied();
        let ip = self.conns[&conn].ip;
        let key = match resumed {
            Some(key) => {
                let session = self.session_mut(key);
                let old = session.conn.replace(conn);
                session.grace_until = None;
                session.ip = ip;
                if let Some(old) = old {
                    self.conns.remove(&old);
                    self.outputs.push_back(Output::Close {
                        conn: old,
                        code: close::REPLACED,
                        reason: "resumed elsewhere",
                    });
                }
                self.counters.resumes += 1;
                key
            }
            None => {
                let key = self.next_key;
                self.next_key += 1;
                let id = self.ids.public_id();
                let token = self.ids.secret();
                self.tokens.insert(token.clone(), key);
                self.sessions.insert(key, Session::new(id, token, ip, conn, hello.interests));
                key
            }
        };
        self.conns.get_mut(&conn).expect("the socket saying hello is known").session = Some(key);
        let session = self.session(key);
        let room = match session.place {
            Place::InRoom { room } => Some(self.rooms[&room].id.clone()),
            _ => None,
        };
        self.outputs.push_back(Output::Welcome {
            conn,
            session_id: session.id.clone(),
            resume_token: session.token.clone(),
            resumed: resumed.is_some(),
            room,
        });
        let pending = std::mem::take(&mut self.session_mut(key).pending);
        self.session_mut(key).pending_bytes = 0;
        for msg in pending {
            self.send(conn, msg);
        }
        match self.session(key).place {
            Place::Parked { ticket, since } => self.enqueue(now, key, ticket, since),
            Place::Waiting { .. } => self.send(conn, ServerMsg::Queued),
            Place::Idle | Place::InRoom { .. } => {}
        }
    }

    fn enqueue_fresh(&mut self, now: Instant, key: SessionKey) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.enqueue(now, key, ticket, now);
    }

    /// Tells a connected session it is queued, then pairs it or lets it wait.
    fn enqueue(&mut self, now: Instant, key: SessionKey, ticket: u64, since: Instant) {
        let conn = self.session(key).conn.expect("only connected sessions join the queue");
        self.send(conn, ServerMsg::Queued);
        let open_at = since + self.config.interest_wait;
        let session = self.session(key);
        let open = session.interests.is_empty() || now >= open_at;
        match self.queue.best_partner(&session.interests, open) {
            Some((partner_ticket, partner)) => {
                self.leave_queue(partner, partner_ticket);
                self.pair((partner_ticket, partner), (ticket, key));
            }
            None => {
                let session = self.sessions.get_mut(&key).expect("session exists");
                session.place = Place::Waiting { ticket, since };
                self.queue.insert(ticket, key, &session.interests, open);
                if !open {
                    self.timers.insert((open_at, Timer::Open(key)));
                }
            }
        }
    }

    /// A waiting session's interest wait is over: it now accepts anyone. It is paired by
    /// [`Matchmaker::pair_open`] once every wait ending at the same instant is over.
    fn open_up(&mut self, now: Instant, key: SessionKey) {
        let Some(session) = self.sessions.get(&key) else { return };
        let Place::Waiting { ticket, since } = session.place else { return };
        if now >= since + self.config.interest_wait {
            self.queue.open_up(ticket, key);
        }
    }

    /// Pairs the longest-waiting sessions that accept anyone, two by two. No one sharing an
    /// interest waits (they would have been paired), so these are the only pairs to make.
    fn pair_open(&mut self) {
        while let Some([a, b]) = self.queue.two_oldest_open() {
            self.leave_queue(a.1, a.0);
            self.leave_queue(b.1, b.0);
            self.pair(a, b);
        }
    }

    fn leave_queue(&mut self, key: SessionKey, ticket: u64) {
        let session = self.sessions.get(&key).expect("session exists");
        self.queue.remove(ticket, &session.interests);
    }

    /// Puts two sessions that left the queue, given with their tickets, into a new room. The
    /// one with the older ticket waited longer and makes the offer, whichever of them the
    /// queue was searched for (a resumed session keeps its old ticket).
    fn pair(&mut self, a: (u64, SessionKey), b: (u64, SessionKey)) {
        let ((_, first), (_, second)) = if a.0 < b.0 { (a, b) } else { (b, a) };
        let room = self.next_key;
        self.next_key += 1;
        let id = self.ids.public_id();
        let (a, b) = (self.session(first), self.session(second));
        let common: Vec<String> = a.interests.iter().filter(|t| b.interests.contains(t)).cloned().collect();
        self.rooms.insert(room, Room { id: id.clone(), members: [first, second], reported: [false; 2] });
        self.counters.matches += 1;
        for (key, initiator) in [(first, true), (second, false)] {
            self.session_mut(key).place = Place::InRoom { room };
            let msg = ServerMsg::Matched { room: id.clone(), initiator, common_interests: common.clone() };
            self.deliver(key, msg);
        }
    }

    /// Ends a room that `leaver` left; the other member is told why.
    fn end_room(&mut self, room: RoomKey, leaver: SessionKey, reason: PartnerLeftReason) {
        let room = self.rooms.remove(&room).expect("the room of a member exists");
        for key in room.members {
            let session = self.session_mut(key);
            session.place = Place::Idle;
            // Signals of the ended room must never reach anyone later.
            session.drop_pending_signals();
            if key != leaver {
                self.deliver(key, ServerMsg::PartnerLeft { reason });
            }
        }
    }

    /// Ends a session for good: its room, its queue place, its token.
    fn end_session(&mut self, key: SessionKey, reason: PartnerLeftReason) {
        match self.session(key).place {
            Place::InRoom { room } => self.end_room(room, key, reason),
            Place::Waiting { ticket, .. } => self.leave_queue(key, ticket),
            Place::Idle | Place::Parked { .. } => {}
        }
        let session = self.sessions.remove(&key).expect("session exists");
        self.tokens.remove(&session.token);
        if let Some(conn) = session.conn {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = None;
            }
        }
    }

    fn relay(&mut self, from_conn: ConnId, from: SessionKey, room: RoomKey, data: SignalData) {
        let partner = self.rooms[&room].partner_of(from);
        let config = &self.config;
        let session = self.sessions.get_mut(&partner).expect("room members exist");
        match session.conn {
            Some(conn) => self.outputs.push_back(Output::Send { conn, msg: ServerMsg::Signal { data } }),
            None => {
                if !session.hold(ServerMsg::Signal { data }, config.pending_max_msgs, config.pending_max_bytes) {
                    self.send(
                        from_conn,
                        ServerMsg::error(
                            ErrorCode::BufferFull,
                            "your partner is reconnecting and cannot take more signals yet; retry later",
                        ),
                    );
                    return;
                }
            }
        }
        self.counters.signals_relayed += 1;
    }

    fn report(&mut self, now: Instant, reporter: SessionKey, room_key: RoomKey) {
        let room = self.rooms.get_mut(&room_key).expect("the room of a member exists");
        let side = room.side_of(reporter);
        if room.reported[side] {
            return; // One report per match and reporter.
        }
        room.reported[side] = true;
        let reported = room.members[1 - side];
        let ip = self.session(reported).ip;
        self.counters.reports += 1;
        let config = &self.config;
        let outcome =
            self.moderation.report(ip, now, config.report_threshold, config.report_window, config.ban_duration);
        if let ReportOutcome::Banned { .. } = outcome {
            self.counters.bans += 1;
            self.ban(ip);
        }
        self.schedule_moderation();
    }

    /// Closes every socket of a banned address and ends its sessions.
    fn ban(&mut self, ip: IpAddr) {
        let mut conns: Vec<ConnId> = self.conns.iter().filter(|(_, c)| c.ip == ip).map(|(id, _)| *id).collect();
        conns.sort_unstable();
        for conn in conns {
            self.send(
                conn,
                ServerMsg::error(ErrorCode::Banned, "this address was reported too often and is banned for a while"),
            );
            self.outputs.push_back(Output::Close { conn, code: close::POLICY, reason: "banned" });
            if let Some(Conn { session: Some(key), .. }) = self.conns.remove(&conn) {
                self.session_mut(key).conn = None;
            }
        }
        let mut keys: Vec<SessionKey> = self.sessions.iter().filter(|(_, s)| s.ip == ip).map(|(k, _)| *k).collect();
        keys.sort_unstable();
        for key in keys {
            self.end_session(key, PartnerLeftReason::Disconnect);
        }
    }

    fn schedule_moderation(&mut self) {
        if let Some(at) = self.moderation.next_expiry(self.config.report_window) {
            self.timers.insert((at, Timer::Moderation));
        }
    }

    /// Sends to a session now, or holds the message until it resumes.
    fn deliver(&mut self, key: SessionKey, msg: ServerMsg) {
        let session = self.sessions.get_mut(&key).expect("session exists");
        match session.conn {
            Some(conn) => self.outputs.push_back(Output::Send { conn, msg }),
            // Control messages are few and always kept; only signals count against the bound.
            None => session.pending.push_back(msg),
        }
    }

    fn send(&mut self, conn: ConnId, msg: ServerMsg) {
        self.outputs.push_back(Output::Send { conn, msg });
    }

    fn session(&self, key: SessionKey) -> &Session {
        self.sessions.get(&key).expect("session keys in use always name a live session")
    }

    fn session_mut(&mut self, key: SessionKey) -> &mut Session {
        self.sessions.get_mut(&key).expect("session keys in use always name a live session")
    }
}

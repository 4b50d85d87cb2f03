//! The reference model of the property tests: from the inputs alone, it predicts what every
//! socket must be told, in order. Ids and tokens are random, so they are bound when first
//! seen and must match from then on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use strangers_matchmaker::{Config, ConnId, Disconnect};
use strangers_protocol::{close, ClientMsg, ErrorCode, Hello, PartnerLeftReason, ServerMsg};

use super::common::Got;

/// One message the model expects on a socket. Ids are bound when first seen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expect {
    Welcome { session: usize, resumed: bool, room: Option<usize> },
    Queued,
    Matched { room: usize, initiator: bool, common: Vec<String> },
    Signal(String),
    PartnerLeft(PartnerLeftReason),
    Error(ErrorCode),
    Close(u16),
}

/// Where a session stands, as the model sees it. `order` ranks queue places, older first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Place {
    Idle,
    Waiting { order: u64, since: Instant, open: bool },
    Parked { order: u64, since: Instant },
    InRoom(usize),
}

/// A session of the model; its id and token are bound from its first welcome.
#[derive(Debug)]
pub(crate) struct MSession {
    id: Option<String>,
    pub(crate) token: Option<String>,
    ip: IpAddr,
    interests: Vec<String>,
    pub(crate) conn: Option<ConnId>,
    grace_until: Option<Instant>,
    pub(crate) place: Place,
    held: Vec<Expect>,
    held_signals: usize,
    held_bytes: usize,
    pub(crate) ended: bool,
}

/// A room of the model; its id is bound from its first `matched`.
#[derive(Debug)]
struct MRoom {
    id: Option<String>,
    /// The initiator first.
    members: [usize; 2],
    reported: [bool; 2],
}

/// The reference model: sessions, rooms, the queue order, reports and bans.
pub(crate) struct Model {
    cfg: Config,
    pub(crate) now: Instant,
    /// Open sockets: their address and session.
    pub(crate) conns: BTreeMap<ConnId, (IpAddr, Option<usize>)>,
    /// Every session, in creation order.
    pub(crate) sessions: Vec<MSession>,
    tokens: HashMap<String, usize>,
    rooms: Vec<MRoom>,
    next_order: u64,
    reports: HashMap<IpAddr, VecDeque<Instant>>,
    bans: HashMap<IpAddr, Instant>,
    pub(crate) expect: Vec<(ConnId, Expect)>,
}

impl Model {
    pub(crate) fn new(cfg: Config, now: Instant) -> Self {
        Model {
            cfg,
            now,
            conns: BTreeMap::new(),
            sessions: Vec::new(),
            tokens: HashMap::new(),
            rooms: Vec::new(),
            next_order: 0,
            reports: HashMap::new(),
            bans: HashMap::new(),
            expect: Vec::new(),
        }
    }

    fn out(&mut self, conn: ConnId, e: Expect) {
        self.expect.push((conn, e));
    }

    /// The next instant at which the model expects the core to act on its own.
    pub(crate) fn next_event(&self) -> Option<Instant> {
        let live = self.sessions.iter().filter(|s| !s.ended);
        live.filter_map(|s| match s.place {
            _ if s.conn.is_none() => s.grace_until,
            Place::Waiting { since, open: false, .. } => Some(since + self.cfg.interest_wait),
            _ => None,
        })
        .min()
    }

    pub(crate) fn tick(&mut self, at: Instant) {
        self.now = at;
        // Grace periods end before interest waits at the same instant, as in the core.
        for s in 0..self.sessions.len() {
            let sess = &self.sessions[s];
            if !sess.ended && sess.conn.is_none() && sess.grace_until.is_some_and(|t| t <= at) {
                self.end_session(s, PartnerLeftReason::Disconnect);
            }
        }
        // Interest waits ending at one instant end together; then the longest-waiting
        // sessions that accept anyone are paired, two by two.
        let mut due: Vec<(Instant, usize)> = (0..self.sessions.len())
            .filter_map(|s| match self.sessions[s].place {
                Place::Waiting { since, open: false, .. } if since + self.cfg.interest_wait <= at => {
                    Some((since + self.cfg.interest_wait, s))
                }
                _ => None,
            })
            .collect();
        due.sort();
        for (i, (open_at, s)) in due.iter().enumerate() {
            if let Place::Waiting { open, .. } = &mut self.sessions[*s].place {
                *open = true;
            }
            if due.get(i + 1).is_none_or(|(next, _)| next != open_at) {
                while let Some((a, b)) = self.two_oldest_open() {
                    self.pair(a, b);
                }
            }
        }
    }

    /// The longest-waiting session other than `s` that `accept` takes.
    fn oldest_waiting(&self, s: usize, accept: impl Fn(&MSession, bool) -> bool) -> Option<usize> {
        (0..self.sessions.len())
            .filter(|w| *w != s)
            .filter_map(|w| match self.sessions[w].place {
                Place::Waiting { order, open, .. } if accept(&self.sessions[w], open) => Some((order, w)),
                _ => None,
            })
            .min()
            .map(|(_, w)| w)
    }

    fn two_oldest_open(&self) -> Option<(usize, usize)> {
        let mut open: Vec<(u64, usize)> = (0..self.sessions.len())
            .filter_map(|s| match self.sessions[s].place {
                Place::Waiting { order, open: true, .. } => Some((order, s)),
                _ => None,
            })
            .collect();
        open.sort();
        (open.len() >= 2).then(|| (open[0].1, open[1].1))
    }

    pub(crate) fn open(&mut self, conn: ConnId, ip: IpAddr) {
        if self.bans.get(&ip).is_some_and(|until| self.now < *until) {
            self.out(conn, Expect::Error(ErrorCode::Banned));
            self.out(conn, Expect::Close(close::POLICY));
            return;
        }
        self.conns.insert(conn, (ip, None));
    }

    pub(crate) fn message(&mut self, conn: ConnId, msg: &ClientMsg) {
        let Some(&(ip, session)) = self.conns.get(&conn) else { return };
        let Some(s) = session else {
            match msg {
                ClientMsg::Hello(hello) => self.hello(conn, ip, hello),
                _ => self.out(conn, Expect::Error(ErrorCode::BadMessage)),
            }
            return;
        };
        let place = self.sessions[s].place;
        match (msg, place) {
            (ClientMsg::Hello(_), _) => self.out(conn, Expect::Error(ErrorCode::BadMessage)),
            (ClientMsg::Find | ClientMsg::Next, Place::Idle) => self.enqueue_fresh(s),
            (ClientMsg::Find | ClientMsg::Next | ClientMsg::Stop, Place::Waiting { .. }) => {
                if matches!(msg, ClientMsg::Stop) {
                    self.sessions[s].place = Place::Idle;
                }
            }
            (ClientMsg::Find, Place::InRoom(_)) => self.out(conn, Expect::Error(ErrorCode::BadMessage)),
            (ClientMsg::Next, Place::InRoom(r)) => {
                self.end_room(r, s, PartnerLeftReason::Next);
                self.enqueue_fresh(s);
            }
            (ClientMsg::Stop, Place::Idle) => {}
            (ClientMsg::Stop, Place::InRoom(r)) => self.end_room(r, s, PartnerLeftReason::Stop),
            (ClientMsg::Signal(data), Place::InRoom(r)) => self.relay(conn, s, r, data.as_json()),
            (ClientMsg::Report { .. }, Place::InRoom(r)) => self.report(s, r),
            (ClientMsg::Signal(_) | ClientMsg::Report { .. }, _) => {
                self.out(conn, Expect::Error(ErrorCode::NotMatched))
            }
            (_, Place::Parked { .. }) => panic!("model: a session with a live socket is parked"),
        }
    }

    fn hello(&mut self, conn: ConnId, ip: IpAddr, hello: &Hello) {
        let resumed = hello.resume.as_ref().and_then(|t| self.tokens.get(t)).copied();
        let s = match resumed {
            Some(s) => {
                let old = self.sessions[s].conn.replace(conn);
                self.sessions[s].grace_until = None;
                self.sessions[s].ip = ip;
                if let Some(old) = old {
                    self.conns.remove(&old);
                    self.out(old, Expect::Close(close::REPLACED));
                }
                s
            }
            None => {
                self.sessions.push(MSession {
                    id: None,
                    token: None,
                    ip,
                    interests: hello.interests.clone(),
                    conn: Some(conn),
                    grace_until: None,
                    place: Place::Idle,
                    held: Vec::new(),
                    held_signals: 0,
                    held_bytes: 0,
                    ended: false,
                });
                self.sessions.len() - 1
            }
        };
        self.conns.get_mut(&conn).expect("model: the greeting socket is open").1 = Some(s);
        let room = match self.sessions[s].place {
            Place::InRoom(r) => Some(r),
            _ => None,
        };
        self.out(conn, Expect::Welcome { session: s, resumed: resumed.is_some(), room });
        let sess = &mut self.sessions[s];
        let held = std::mem::take(&mut sess.held);
        (sess.held_signals, sess.held_bytes) = (0, 0);
        for e in held {
            self.out(conn, e);
        }
        match self.sessions[s].place {
            Place::Parked { order, since } => self.enqueue(s, order, since),
            Place::Waiting { .. } => self.out(conn, Expect::Queued),
            Place::Idle | Place::InRoom(_) => {}
        }
    }

    fn enqueue_fresh(&mut self, s: usize) {
        let order = self.next_order;
        self.next_order += 1;
        self.enqueue(s, order, self.now);
    }

    fn enqueue(&mut self, s: usize, order: u64, since: Instant) {
        let conn = self.sessions[s].conn.expect("model: only connected sessions queue");
        self.out(conn, Expect::Queued);
        let interests = self.sessions[s].interests.clone();
        let open = interests.is_empty() || self.now >= since + self.cfg.interest_wait;
        self.sessions[s].place = Place::Waiting { order, since, open };
        let shared = self.oldest_waiting(s, |w, _| w.interests.iter().any(|t| interests.contains(t)));
        let anyone = || if open { self.oldest_waiting(s, |_, w_open| w_open) } else { None };
        if let Some(p) = shared.or_else(anyone) {
            self.pair(p, s);
        }
    }

    fn order_of(&self, s: usize) -> u64 {
        match self.sessions[s].place {
            Place::Waiting { order, .. } => order,
            other => panic!("model: pairing session {s}, which is {other:?}"),
        }
    }

    fn pair(&mut self, x: usize, y: usize) {
        let (first, second) = if self.order_of(x) < self.order_of(y) { (x, y) } else { (y, x) };
        let mut common: Vec<String> = self.sessions[first]
            .interests
            .iter()
            .filter(|t| self.sessions[second].interests.contains(t))
            .cloned()
            .collect();
        common.sort();
        let room = self.rooms.len();
        self.rooms.push(MRoom { id: None, members: [first, second], reported: [false; 2] });
        for (s, initiator) in [(first, true), (second, false)] {
            self.sessions[s].place = Place::InRoom(room);
            self.deliver(s, Expect::Matched { room, initiator, common: common.clone() });
        }
    }

    fn deliver(&mut self, s: usize, e: Expect) {
        match self.sessions[s].conn {
            Some(conn) => self.out(conn, e),
            None => self.sessions[s].held.push(e),
        }
    }

    fn end_room(&mut self, r: usize, leaver: usize, reason: PartnerLeftReason) {
        for m in self.rooms[r].members {
            let sess = &mut self.sessions[m];
            sess.place = Place::Idle;
            sess.held.retain(|e| !matches!(e, Expect::Signal(_)));
            (sess.held_signals, sess.held_bytes) = (0, 0);
            if m != leaver {
                self.deliver(m, Expect::PartnerLeft(reason));
            }
        }
    }

    fn end_session(&mut self, s: usize, reason: PartnerLeftReason) {
        if let Place::InRoom(r) = self.sessions[s].place {
            self.end_room(r, s, reason);
        }
        let sess = &mut self.sessions[s];
        sess.place = Place::Idle;
        sess.ended = true;
        if let Some(token) = &sess.token {
            self.tokens.remove(token);
        }
    }

    pub(crate) fn close(&mut self, conn: ConnId, how: Disconnect) {
        let Some((_, Some(s))) = self.conns.remove(&conn) else { return };
        match how {
            Disconnect::Clean => self.end_session(s, PartnerLeftReason::Disconnect),
            Disconnect::Dropped => {
                let sess = &mut self.sessions[s];
                sess.conn = None;
                sess.grace_until = Some(self.now + self.cfg.resume_grace);
                if let Place::Waiting { order, since, .. } = sess.place {
                    sess.place = Place::Parked { order, since };
                }
            }
        }
    }

    fn relay(&mut self, from: ConnId, s: usize, r: usize, text: &str) {
        let [a, b] = self.rooms[r].members;
        let partner = if a == s { b } else { a };
        let (max_msgs, max_bytes) = (self.cfg.pending_max_msgs, self.cfg.pending_max_bytes);
        let p = &mut self.sessions[partner];
        match p.conn {
            Some(conn) => self.out(conn, Expect::Signal(text.to_string())),
            None if p.held_signals >= max_msgs || p.held_bytes + text.len() > max_bytes => {
                self.out(from, Expect::Error(ErrorCode::BufferFull))
            }
            None => {
                p.held_signals += 1;
                p.held_bytes += text.len();
                p.held.push(Expect::Signal(text.to_string()));
            }
        }
    }

    fn report(&mut self, s: usize, r: usize) {
        let room = &mut self.rooms[r];
        let side = usize::from(room.members[1] == s);
        if room.reported[side] {
            return;
        }
        room.reported[side] = true;
        let ip = self.sessions[room.members[1 - side]].ip;
        let (now, window) = (self.now, self.cfg.report_window);
        let recent = self.reports.entry(ip).or_default();
        while recent.front().is_some_and(|t| now - *t >= window) {
            recent.pop_front();
        }
        recent.push_back(now);
        if recent.len() >= self.cfg.report_threshold as usize {
            self.reports.remove(&ip);
            self.bans.insert(ip, now + self.cfg.ban_duration);
            let conns: Vec<ConnId> = self.conns.iter().filter(|(_, (i, _))| *i == ip).map(|(c, _)| *c).collect();
            for conn in conns {
                self.out(conn, Expect::Error(ErrorCode::Banned));
                self.out(conn, Expect::Close(close::POLICY));
                if let Some((_, Some(s))) = self.conns.remove(&conn) {
                    self.sessions[s].conn = None;
                }
            }
            for s in 0..self.sessions.len() {
                if !self.sessions[s].ended && self.sessions[s].ip == ip {
                    self.end_session(s, PartnerLeftReason::Disconnect);
                }
            }
        }
    }

    /// Checks one received message against one expected, binding ids on first sight.
    pub(crate) fn bind(&mut self, e: &Expect, got: &Got, tokens: &mut Vec<String>) -> bool {
        match (e, got) {
            (Expect::Welcome { session, resumed, room }, Got::Welcome { id, token, resumed: r, room: got_room }) => {
                let sess = &mut self.sessions[*session];
                if sess.id.is_none() {
                    assert!(!self.tokens.contains_key(token), "a fresh session got a token in use");
                    sess.id = Some(id.clone());
                    sess.token = Some(token.clone());
                    self.tokens.insert(token.clone(), *session);
                    tokens.push(token.clone());
                }
                let want_room = room.map(|r| self.rooms[r].id.clone().expect("model: a resumed room has an id"));
                sess.id.as_ref() == Some(id)
                    && sess.token.as_ref() == Some(token)
                    && resumed == r
                    && &want_room == got_room
            }
            (
                Expect::Matched { room, initiator, common },
                Got::Msg(ServerMsg::Matched { room: id, initiator: i, common_interests }),
            ) => {
                let bound = self.rooms[*room].id.get_or_insert_with(|| id.clone());
                let mut got_common = common_interests.clone();
                got_common.sort();
                bound == id && initiator == i && *common == got_common
            }
            (Expect::Queued, Got::Msg(ServerMsg::Queued)) => true,
            (Expect::Signal(text), Got::Msg(ServerMsg::Signal { data })) => data.as_json() == text,
            (Expect::PartnerLeft(want), Got::Msg(ServerMsg::PartnerLeft { reason })) => want == reason,
            (Expect::Error(want), Got::Msg(ServerMsg::Error { code, .. })) => want == code,
            (Expect::Close(want), Got::Close(code)) => want == code,
            _ => false,
        }
    }
}

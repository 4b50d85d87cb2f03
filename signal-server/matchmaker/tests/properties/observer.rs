//! The observer of the property tests: it sees only what goes in and what comes out, and
//! checks the promises clients rely on. Nobody is matched with themselves, partners agree on
//! their room and on who makes the offer, only sessions that wait with a live socket are
//! matched and the longest-waiting fitting one first, and every signal sent while matched
//! reaches the sender's current partner exactly once unless its room ended or the sender was
//! told `buffer_full`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use strangers_matchmaker::{ConnId, Disconnect};
use strangers_protocol::{close, ErrorCode, ServerMsg};

use super::common::Got;

/// A queue place as seen from outside: taken at the first `queued`, kept across a drop.
#[derive(Debug)]
struct ObsWait {
    order: u64,
    since: Instant,
    parked: bool,
}

/// A session as seen from outside.
#[derive(Debug)]
struct ObsSession {
    conn: Option<ConnId>,
    dropped_until: Option<Instant>,
    interests: Vec<String>,
    room: Option<String>,
    wait: Option<ObsWait>,
}

/// What the observer has seen so far.
#[derive(Default)]
pub(crate) struct Observer {
    grace: Duration,
    interest_wait: Duration,
    conn_session: HashMap<ConnId, String>,
    sessions: HashMap<String, ObsSession>,
    rooms_seen: HashSet<String>,
    /// The first half of a pair, until the other `matched` of the same room arrives.
    half: HashMap<String, (String, bool, Vec<String>)>,
    next_order: u64,
    /// Signals sent while matched and not delivered yet: recipient session and room.
    outstanding: HashMap<u64, (String, String)>,
    hello_interests: HashMap<ConnId, Vec<String>>,
    /// The signal sent in this step, for a `buffer_full` answer.
    this_signal: Option<(ConnId, u64)>,
}

impl Observer {
    pub(crate) fn new(grace: Duration, interest_wait: Duration) -> Self {
        Observer { grace, interest_wait, ..Observer::default() }
    }

    fn session_of(&self, conn: ConnId) -> Option<String> {
        self.conn_session.get(&conn).cloned()
    }

    fn leave_room(&mut self, s: &str) {
        let Some(room) = self.sessions.get_mut(s).and_then(|sess| sess.room.take()) else { return };
        self.outstanding.retain(|_, (_, r)| *r != room);
    }

    fn end_session(&mut self, s: &str) {
        self.leave_room(s);
        self.sessions.remove(s);
    }

    pub(crate) fn on_hello(&mut self, conn: ConnId, interests: &[String]) {
        if !self.conn_session.contains_key(&conn) {
            self.hello_interests.insert(conn, interests.to_vec());
        }
    }

    pub(crate) fn on_leave(&mut self, conn: ConnId, stop: bool) {
        let Some(s) = self.session_of(conn) else { return };
        self.leave_room(&s);
        let sess = self.sessions.get_mut(&s).expect("observer: a greeted socket has a session");
        if stop {
            sess.wait = None;
        }
    }

    pub(crate) fn on_signal(&mut self, conn: ConnId, n: u64) {
        let Some(s) = self.session_of(conn) else { return };
        let Some(room) = self.sessions[&s].room.clone() else { return };
        let partner = self.sessions.iter().find(|(k, v)| **k != s && v.room.as_ref() == Some(&room)).map(|(k, _)| k);
        let partner = partner.expect("observer: a room has two members").clone();
        self.outstanding.insert(n, (partner, room));
        self.this_signal = Some((conn, n));
    }

    pub(crate) fn on_close(&mut self, conn: ConnId, how: Disconnect, now: Instant) {
        let Some(s) = self.conn_session.remove(&conn) else { return };
        match how {
            Disconnect::Clean => self.end_session(&s),
            Disconnect::Dropped => {
                let sess = self.sessions.get_mut(&s).expect("observer: a greeted socket has a session");
                sess.conn = None;
                sess.dropped_until = Some(now + self.grace);
                if let Some(wait) = &mut sess.wait {
                    wait.parked = true;
                }
            }
        }
    }

    pub(crate) fn on_tick(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.dropped_until.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for s in expired {
            self.end_session(&s);
        }
    }

    fn is_open(&self, s: &ObsSession, now: Instant) -> bool {
        s.interests.is_empty() || s.wait.as_ref().is_some_and(|w| now >= w.since + self.interest_wait)
    }

    pub(crate) fn on_output(&mut self, conn: ConnId, got: &Got, now: Instant) {
        match got {
            Got::Welcome { id, resumed: false, .. } => {
                assert!(!self.sessions.contains_key(id), "a fresh welcome reuses session id {id}");
                let interests = self.hello_interests.remove(&conn).expect("observer: a welcome answers a hello");
                let sess = ObsSession { conn: Some(conn), dropped_until: None, interests, room: None, wait: None };
                self.sessions.insert(id.clone(), sess);
                self.conn_session.insert(conn, id.clone());
            }
            Got::Welcome { id, resumed: true, .. } => {
                self.hello_interests.remove(&conn);
                let sess = self.sessions.get_mut(id).expect("a session resumed after it ended");
                sess.conn = Some(conn);
                sess.dropped_until = None;
                self.conn_session.insert(conn, id.clone());
            }
            Got::Close(code) => {
                let s = self.conn_session.remove(&conn);
                match (s, *code) {
                    (Some(s), close::POLICY) => self.end_session(&s),
                    (Some(s), close::REPLACED) => self.sessions.get_mut(&s).expect("observer: session").conn = None,
                    (s, code) => assert!(s.is_none(), "close {code} for a greeted socket"),
                }
            }
            Got::Msg(msg) => {
                let s = self.session_of(conn);
                let s = match (s, msg) {
                    (Some(s), _) => s,
                    (None, ServerMsg::Error { .. }) => return,
                    (None, other) => panic!("{other:?} for socket {conn}, which has no session"),
                };
                self.on_message(&s, conn, msg, now);
            }
        }
    }

    fn on_message(&mut self, s: &str, conn: ConnId, msg: &ServerMsg, now: Instant) {
        match msg {
            ServerMsg::Queued => {
                let order = self.next_order;
                let sess = self.sessions.get_mut(s).expect("observer: session");
                assert!(sess.room.is_none(), "session {s} is told queued while in room {:?}", sess.room);
                match &mut sess.wait {
                    None => {
                        sess.wait = Some(ObsWait { order, since: now, parked: false });
                        self.next_order += 1;
                    }
                    Some(wait) => wait.parked = false,
                }
            }
            ServerMsg::Matched { room, initiator, common_interests } => {
                assert!(self.sessions[s].room.is_none(), "session {s} is matched again while in a room");
                let mut common = common_interests.clone();
                common.sort();
                match self.half.remove(room) {
                    None => {
                        assert!(self.rooms_seen.insert(room.clone()), "room id {room} was used before");
                        self.half.insert(room.clone(), (s.to_string(), *initiator, common));
                    }
                    Some((other, other_initiator, other_common)) => {
                        assert_ne!(other, s, "session {s} is matched with itself");
                        assert_ne!(
                            other_initiator, *initiator,
                            "both sides of room {room} got the same initiator flag"
                        );
                        assert_eq!(other_common, common, "the two sides of room {room} got different common interests");
                        let (first, second) = if *initiator { (s.to_string(), other) } else { (other, s.to_string()) };
                        self.check_pair(&first, &second, &common, now);
                        for m in [first, second] {
                            let sess = self.sessions.get_mut(&m).expect("observer: session");
                            sess.wait = None;
                            sess.room = Some(room.clone());
                        }
                    }
                }
            }
            ServerMsg::Signal { data } => {
                let n = signal_number(data.as_json());
                let (to, room) = self.outstanding.remove(&n).unwrap_or_else(|| {
                    panic!(
                        "signal s{n} reached {s}: delivered twice, after its room ended, or never sent while matched"
                    )
                });
                assert_eq!(to, s, "signal s{n} reached {s}, not the sender's partner {to}");
                assert_eq!(self.sessions[s].room.as_ref(), Some(&room), "signal s{n} of room {room} reached {s} later");
            }
            ServerMsg::PartnerLeft { .. } => {
                let room = self.sessions[s].room.clone();
                let room = room.unwrap_or_else(|| panic!("session {s} is told partner_left without a partner"));
                // The partner may still seem to hold the room if it ended unseen (a ban of a
                // dropped session): it does not any more.
                for sess in self.sessions.values_mut() {
                    if sess.room.as_ref() == Some(&room) {
                        sess.room = None;
                    }
                }
                self.outstanding.retain(|_, (_, r)| *r != room);
            }
            ServerMsg::Error { code: ErrorCode::BufferFull, .. } => {
                let (from, n) = self.this_signal.expect("buffer_full without a signal in this step");
                assert_eq!(from, conn, "buffer_full went to a socket that did not send the signal");
                let (to, _) = self.outstanding.remove(&n).expect("buffer_full for a signal that was delivered");
                assert!(self.sessions[&to].conn.is_none(), "buffer_full although the partner {to} is connected");
            }
            ServerMsg::Error { .. } => {}
            ServerMsg::Welcome { .. } => panic!("the core sends welcome as Output::Welcome"),
        }
    }

    /// A pair was formed: both waited with a live socket, they fit, the initiator waited
    /// longer, and no longer-waiting session that fitted at least as well was skipped.
    fn check_pair(&self, first: &str, second: &str, common: &[String], now: Instant) {
        let (a, b) = (&self.sessions[first], &self.sessions[second]);
        for (name, s) in [(first, a), (second, b)] {
            assert!(s.conn.is_some(), "session {name} is matched while its socket is down");
            let wait = s.wait.as_ref().unwrap_or_else(|| panic!("session {name} is matched without waiting"));
            assert!(!wait.parked, "session {name} is matched while parked");
        }
        let order = |s: &ObsSession| s.wait.as_ref().expect("checked above").order;
        assert!(order(a) < order(b), "the initiator {first} waited less than {second}");
        let share = |x: &ObsSession, y: &ObsSession| x.interests.iter().any(|t| y.interests.contains(t));
        let mut want_common: Vec<String> = a.interests.iter().filter(|t| b.interests.contains(t)).cloned().collect();
        want_common.sort();
        assert_eq!(common, want_common, "wrong common interests");
        assert!(
            share(a, b) || (self.is_open(a, now) && self.is_open(b, now)),
            "{first} and {second} are matched with no common interest before their interest waits ended"
        );
        for (m, n) in [(a, b), (b, a)] {
            for (z_name, z) in &self.sessions {
                if z_name == first || z_name == second || z.wait.as_ref().is_none_or(|w| w.parked) {
                    continue;
                }
                let skipped = if share(m, n) {
                    share(m, z) && order(z) < order(n)
                } else {
                    share(m, z) || (self.is_open(m, now) && self.is_open(z, now) && order(z) < order(n))
                };
                assert!(!skipped, "{first} and {second} are matched although {z_name} waited and fitted better");
            }
        }
    }

    /// What must hold once a step's outputs are all seen.
    pub(crate) fn end_step(&mut self) {
        assert!(self.half.is_empty(), "only one side of rooms {:?} was told", self.half.keys());
        for (n, (to, room)) in &self.outstanding {
            let sess = self.sessions.get(to).unwrap_or_else(|| panic!("signal s{n} waits for ended session {to}"));
            assert!(sess.conn.is_none(), "signal s{n} for connected session {to} was not delivered");
            assert_eq!(sess.room.as_ref(), Some(room), "signal s{n} waits for {to}, which left room {room}");
        }
        self.this_signal = None;
    }
}

fn signal_number(json: &str) -> u64 {
    let start = json.find(r#""candidate":"s"#).expect("test signals name themselves") + r#""candidate":"s"#.len();
    json[start..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("a signal number")
}

//! A harness shared by the integration tests of the matchmaker: it owns the core and an
//! explicit clock, feeds inputs, runs timers exactly when `poll_timeout` asks, checks the
//! invariants after every step and files every output under the socket it is for. It touches
//! no socket and no real clock beyond the one base `Instant`.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use strangers_matchmaker::{Config, ConnId, Disconnect, Matchmaker, Output};
use strangers_protocol::{ClientMsg, Hello, PartnerLeftReason, ServerMsg, SignalData};

/// What one socket received.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Welcome { id: String, token: String, resumed: bool, room: Option<String> },
    Msg(ServerMsg),
    Close(u16),
}

impl Got {
    /// A short text for assertions: `welcome`, `queued`, `matched`, `signal {..}`,
    /// `partner_left next`, `error not_matched`, `close 4000`.
    pub fn summary(&self) -> String {
        match self {
            Got::Welcome { resumed: false, .. } => "welcome".into(),
            Got::Welcome { resumed: true, .. } => "welcome resumed".into(),
            Got::Close(code) => format!("close {code}"),
            Got::Msg(ServerMsg::Queued) => "queued".into(),
            Got::Msg(ServerMsg::Matched { .. }) => "matched".into(),
            Got::Msg(ServerMsg::Signal { data }) => format!("signal {}", data.as_json()),
            Got::Msg(ServerMsg::PartnerLeft { reason }) => format!("partner_left {}", reason_name(*reason)),
            Got::Msg(ServerMsg::Error { code, .. }) => format!("error {}", code.as_str()),
            Got::Msg(ServerMsg::Welcome { .. }) => panic!("the core sends welcome as Output::Welcome"),
        }
    }
}

/// The wire name of a `partner_left` reason.
pub fn reason_name(reason: PartnerLeftReason) -> &'static str {
    match reason {
        PartnerLeftReason::Next => "next",
        PartnerLeftReason::Stop => "stop",
        PartnerLeftReason::Disconnect => "disconnect",
        PartnerLeftReason::Timeout => "timeout",
    }
}

/// A greeted client: its socket and what its welcome said.
#[derive(Debug, Clone)]
pub struct Client {
    pub conn: ConnId,
    pub id: String,
    pub token: String,
}

/// The core, its clock and everything it said, per socket.
pub struct Harness {
    pub mm: Matchmaker,
    /// The base instant; tests speak in offsets from it.
    pub t0: Instant,
    pub now: Instant,
    next_conn: ConnId,
    inbox: HashMap<ConnId, VecDeque<Got>>,
    /// Every output since the last [`Harness::take_log`], in the order the core gave them.
    log: Vec<(ConnId, Got)>,
    /// Sockets the core closed or the shell reported ended: nothing may reach them any more.
    gone: HashSet<ConnId>,
}

impl Harness {
    pub fn new(config: Config) -> Self {
        let t0 = Instant::now();
        Harness {
            mm: Matchmaker::new(config),
            t0,
            now: t0,
            next_conn: 1,
            inbox: HashMap::new(),
            log: Vec::new(),
            gone: HashSet::new(),
        }
    }

    /// The time since the base instant.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Moves the clock forward, running every timer at the instant it is due.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(at) = self.mm.poll_timeout() {
            assert!(at > self.now, "a timer at {at:?} is overdue at {:?}", self.now);
            if at > target {
                break;
            }
            self.tick(at);
        }
        self.now = target;
    }

    /// Moves the clock to `at` and runs the timers due then, as the shell does when
    /// `poll_timeout` says so.
    pub fn tick(&mut self, at: Instant) {
        assert!(at >= self.now, "the clock only moves forward");
        self.now = at;
        self.mm.handle_timeout(at);
        self.collect();
    }

    /// Moves the clock to `t0 + at`.
    pub fn advance_to(&mut self, at: Duration) {
        let target = self.t0 + at;
        assert!(target >= self.now, "the clock only moves forward");
        self.advance(target - self.now);
    }

    /// A socket opens from `ip` (written like `10.0.0.1`).
    pub fn open(&mut self, ip: &str) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let ip: IpAddr = ip.parse().expect("tests write valid addresses");
        self.mm.handle_open(self.now, conn, ip);
        self.collect();
        conn
    }

    pub fn send(&mut self, conn: ConnId, msg: ClientMsg) {
        self.mm.handle_message(self.now, conn, msg);
        self.collect();
    }

    pub fn close(&mut self, conn: ConnId, how: Disconnect) {
        self.mm.handle_close(self.now, conn, how);
        self.gone.insert(conn);
        self.collect();
    }

    /// Opens a socket from `ip`, says hello with these interests and takes the welcome.
    pub fn join(&mut self, ip: &str, interests: &[&str]) -> Client {
        let conn = self.open(ip);
        self.send(conn, hello(interests));
        let got = self.take(conn);
        match got.as_slice() {
            [Got::Welcome { id, token, resumed: false, room: None }] => {
                Client { conn, id: id.clone(), token: token.clone() }
            }
            other => panic!("expected a fresh welcome, got {other:?}"),
        }
    }

    /// Opens a socket from `ip` and resumes with `token`; returns the socket and its welcome.
    pub fn resume(&mut self, ip: &str, token: &str) -> (ConnId, Got) {
        let conn = self.open(ip);
        self.send(conn, resume(token));
        let mut got = self.take(conn);
        assert!(!got.is_empty(), "no welcome after a resume");
        let welcome = got.remove(0);
        assert!(matches!(welcome, Got::Welcome { .. }), "the first reply is not a welcome: {welcome:?}");
        // Whatever followed the welcome stays for the test to read.
        self.inbox.entry(conn).or_default().extend(got);
        (conn, welcome)
    }

    /// Everything this socket received since the last call.
    pub fn take(&mut self, conn: ConnId) -> Vec<Got> {
        self.inbox.remove(&conn).map(Vec::from).unwrap_or_default()
    }

    /// Every output since the last call, in the core's order; the per-socket inboxes are
    /// emptied too.
    pub fn take_log(&mut self) -> Vec<(ConnId, Got)> {
        self.inbox.clear();
        std::mem::take(&mut self.log)
    }

    /// Summaries of everything this socket received since the last call.
    pub fn take_summary(&mut self, conn: ConnId) -> Vec<String> {
        self.take(conn).iter().map(Got::summary).collect()
    }

    /// Takes a `queued` then a `matched` from this socket; returns the room, the initiator
    /// flag and the common interests.
    pub fn take_queued_matched(&mut self, conn: ConnId) -> (String, bool, Vec<String>) {
        let got = self.take(conn);
        match got.as_slice() {
            [Got::Msg(ServerMsg::Queued), Got::Msg(ServerMsg::Matched { room, initiator, common_interests })] => {
                (room.clone(), *initiator, common_interests.clone())
            }
            other => panic!("expected queued then matched on conn {conn}, got {other:?}"),
        }
    }

    /// Takes exactly one `matched` from this socket.
    pub fn take_matched(&mut self, conn: ConnId) -> (String, bool, Vec<String>) {
        let got = self.take(conn);
        match got.as_slice() {
            [Got::Msg(ServerMsg::Matched { room, initiator, common_interests })] => {
                (room.clone(), *initiator, common_interests.clone())
            }
            other => panic!("expected matched on conn {conn}, got {other:?}"),
        }
    }

    /// Asserts that no socket has anything unread.
    pub fn assert_quiet(&self) {
        let unread: Vec<_> = self.inbox.iter().filter(|(_, q)| !q.is_empty()).collect();
        assert!(unread.is_empty(), "unread outputs: {unread:?}");
    }

    /// Files the outputs of the last input and checks the invariants.
    fn collect(&mut self) {
        while let Some(out) = self.mm.poll_output() {
            let (conn, got) = match out {
                Output::Send { conn, msg } => (conn, Got::Msg(msg)),
                Output::Welcome { conn, session_id, resume_token, resumed, room } => {
                    (conn, Got::Welcome { id: session_id, token: resume_token, resumed, room })
                }
                Output::Close { conn, code, .. } => (conn, Got::Close(code)),
            };
            assert!(!self.gone.contains(&conn), "{got:?} for conn {conn}, which is already closed");
            if let Got::Close(_) = got {
                self.gone.insert(conn);
            }
            self.inbox.entry(conn).or_default().push_back(got.clone());
            self.log.push((conn, got));
        }
        if let Err(broken) = self.mm.check_invariants(self.now) {
            panic!("invariant broken at {:?}: {broken}", self.elapsed());
        }
    }
}

/// A `hello` with these interests.
pub fn hello(interests: &[&str]) -> ClientMsg {
    ClientMsg::Hello(Hello { interests: interests.iter().map(|s| s.to_string()).collect(), resume: None })
}

/// A `hello` resuming with this token.
pub fn resume(token: &str) -> ClientMsg {
    ClientMsg::Hello(Hello { interests: Vec::new(), resume: Some(token.to_string()) })
}

/// A `signal` carrying this JSON text.
pub fn signal(json: &str) -> ClientMsg {
    ClientMsg::Signal(SignalData::from_json(json).expect("tests send valid signal data"))
}

/// The data of a candidate signal named `name`, padded with `pad` more bytes.
pub fn candidate(name: &str, pad: usize) -> String {
    format!(r#"{{"candidate": {{"candidate":"{name}","pad":"{}"}}}}"#, "x".repeat(pad))
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

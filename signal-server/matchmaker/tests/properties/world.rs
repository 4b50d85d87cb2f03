//! The generator and driver of the model-based property test, over any [`Subject`]: the
//! in-memory matchmaker (`properties.rs`) or the Redis backend's scripts (the server's
//! `redis/model_tests.rs`). After every step the subject's outputs are compared with the
//! reference model's and shown to the observer. Shared by both; it must not name either
//! subject.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use strangers_matchmaker::{Config, ConnId, Disconnect};
use strangers_protocol::{ClientMsg, Hello, SignalData};

use super::common::{candidate, Got};
use super::model::{Expect, Model, Place};
use super::observer::Observer;

const TAGS: [&str; 3] = ["art", "chess", "go"];
const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"];

/// Short periods and small bounds, so that random sequences reach them. Four unpadded
/// signals fit in the byte bound, so the message bound is the one that refuses the fourth;
/// two well-padded ones do not.
pub(crate) fn config() -> Config {
    Config {
        resume_grace: Duration::from_secs(5),
        interest_wait: Duration::from_secs(3),
        pending_max_msgs: 3,
        pending_max_bytes: 200,
        report_threshold: 2,
        report_window: Duration::from_secs(30),
        ban_duration: Duration::from_secs(15),
        seed: [3; 32],
    }
}

// Operations.

/// Which socket an operation acts on: usually an open one where the operation means
/// something, sometimes any open one, and now and then any socket ever opened (which
/// exercises input on closed sockets).
#[derive(Debug, Clone)]
struct Pick {
    /// 0: any socket ever opened; 1: any open socket; otherwise a preferred one.
    kind: u8,
    index: Index,
}

/// The sockets an operation prefers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prefer {
    Ungreeted,
    Greeted,
    Matched,
}

/// An operation, and whether it happens at the instant of the one before.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    same_instant: bool,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        ip: usize,
    },
    /// Opens a socket and says hello on it, the usual start.
    Join {
        ip: usize,
        interests: Vec<&'static str>,
        resume: Option<Resume>,
    },
    Hello {
        pick: Pick,
        interests: Vec<&'static str>,
        resume: Option<Resume>,
    },
    Find(Pick),
    Next(Pick),
    Stop(Pick),
    Signal {
        pick: Pick,
        pad: usize,
    },
    Report(Pick),
    Close {
        pick: Pick,
        clean: bool,
    },
    Wait {
        ms: u64,
    },
}

fn pick() -> impl Strategy<Value = Pick> {
    (0u8..20, any::<Index>()).prop_map(|(kind, index)| Pick { kind, index })
}

fn interests() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(TAGS.to_vec(), 0..=2)
}

/// Which token a hello resumes with: usually that of a session whose socket is down, else
/// any token handed out so far or one never handed out.
#[derive(Debug, Clone)]
struct Resume {
    dropped: bool,
    index: Index,
}

fn resume() -> impl Strategy<Value = Option<Resume>> {
    let resume = (prop::bool::weighted(0.7), any::<Index>()).prop_map(|(dropped, index)| Resume { dropped, index });
    prop::option::weighted(0.4, resume)
}

/// Random operation sequences; `waits` says whether the clock may jump (subjects that cannot
/// run timers at a virtual instant are driven without it).
pub(crate) fn steps(waits: bool) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(waits), 1..200)
}

fn step(waits: bool) -> impl Strategy<Value = Step> {
    (prop::bool::weighted(0.3), op(waits)).prop_map(|(same_instant, op)| Step { same_instant, op })
}

fn op(waits: bool) -> impl Strategy<Value = Op> {
    let wait_weight = if waits { 3 } else { 0 };
    prop_oneof![
        1 => (0..IPS.len()).prop_map(|ip| Op::Open { ip }),
        4 => (0..IPS.len(), interests(), resume()).prop_map(|(ip, interests, resume)| Op::Join { ip, interests, resume }),
        1 => (pick(), interests(), resume()).prop_map(|(pick, interests, resume)| Op::Hello { pick, interests, resume }),
        5 => pick().prop_map(Op::Find),
        2 => pick().prop_map(Op::Next),
        1 => pick().prop_map(Op::Stop),
        5 => (pick(), prop_oneof![2 => Just(0usize), 1 => 0usize..80]).prop_map(|(pick, pad)| Op::Signal { pick, pad }),
        1 => pick().prop_map(Op::Report),
        2 => (pick(), prop::bool::weighted(0.3)).prop_map(|(pick, clean)| Op::Close { pick, clean }),
        wait_weight => prop_oneof![1u64..500, 500u64..8000].prop_map(|ms| Op::Wait { ms }),
    ]
}

// The driver.

/// What the property test drives: a backend with a virtual clock, which files every output
/// under its socket.
pub(crate) trait Subject {
    fn t0(&self) -> Instant;
    fn now(&self) -> Instant;
    /// The subject's next timer, or `None` if it runs no timers at virtual instants (then the
    /// sequences have no clock jumps and every period outlasts a case).
    fn next_timer(&self) -> Option<Instant>;
    /// Whether [`Subject::next_timer`] tells the subject's timers.
    fn runs_timers(&self) -> bool;
    /// Runs the timers due at `at`.
    fn tick(&mut self, at: Instant);
    /// Moves the clock without running timers (they were run up to the target already).
    fn advance(&mut self, by: Duration);
    fn open(&mut self, ip: &str) -> ConnId;
    fn send(&mut self, conn: ConnId, msg: ClientMsg);
    fn close(&mut self, conn: ConnId, how: Disconnect);
    /// Everything sent since the last call, in order.
    fn take_log(&mut self) -> Vec<(ConnId, Got)>;
}

pub(crate) struct World<S: Subject> {
    h: S,
    model: Model,
    observer: Observer,
    /// Every socket ever opened, in order.
    conns: Vec<ConnId>,
    /// Every resume token ever handed out, in order.
    tokens: Vec<String>,
    next_signal: u64,
    /// The operations so far; failure messages show the last few.
    trace: Vec<String>,
}

impl<S: Subject> World<S> {
    pub(crate) fn new(h: S, config: Config) -> Self {
        let model = Model::new(config.clone(), h.now());
        let observer = Observer::new(config.resume_grace, config.interest_wait);
        World { h, model, observer, conns: Vec::new(), tokens: Vec::new(), next_signal: 0, trace: Vec::new() }
    }

    /// Moves the clock, running each timer at its instant.
    fn advance(&mut self, by: Duration) {
        let target = self.h.now() + by;
        loop {
            let core = self.h.next_timer();
            if let Some(due) = self.model.next_event().filter(|_| self.h.runs_timers()) {
                let at = due - self.h.t0();
                assert!(core.is_some_and(|core| core <= due), "the core would sleep through an event due at {at:?}");
            }
            match core {
                Some(at) if at <= target => {
                    self.trace.push(format!("timer at {:?}", at - self.h.t0()));
                    self.h.tick(at);
                    self.observer.on_tick(at);
                    self.model.tick(at);
                    self.settle();
                }
                _ => break,
            }
        }
        let now = self.h.now();
        self.h.advance(target - now);
        self.model.now = self.h.now();
    }

    /// The socket an operation acts on.
    fn pick(&self, pick: &Pick, prefer: Prefer) -> Option<ConnId> {
        let live: Vec<ConnId> = self.model.conns.keys().copied().collect();
        let select = |prefer: Prefer| -> Vec<ConnId> {
            let conns = self.model.conns.iter();
            conns
                .filter(|(_, (_, s))| match (prefer, s) {
                    (Prefer::Ungreeted, s) => s.is_none(),
                    (Prefer::Greeted, s) => s.is_some(),
                    (Prefer::Matched, Some(s)) => matches!(self.model.sessions[*s].place, Place::InRoom(_)),
                    (Prefer::Matched, None) => false,
                })
                .map(|(c, _)| *c)
                .collect()
        };
        let mut preferred = select(prefer);
        if preferred.is_empty() && prefer == Prefer::Matched {
            preferred = select(Prefer::Greeted);
        }
        let from = match pick.kind {
            0 => &self.conns,
            _ if live.is_empty() => &self.conns,
            1 => &live,
            _ if preferred.is_empty() => &live,
            _ => &preferred,
        };
        (!from.is_empty()).then(|| *pick.index.get(from))
    }

    pub(crate) fn apply(&mut self, step: &Step) {
        let op = &step.op;
        if let Op::Wait { ms } = op {
            self.trace.push(format!("wait {ms} ms"));
            self.advance(Duration::from_millis(*ms));
            return;
        }
        if !step.same_instant {
            self.advance(Duration::from_millis(1));
        }
        let now = self.h.now();
        let (pick, msg) = match op {
            Op::Wait { .. } => unreachable!("handled above"),
            Op::Open { ip } => {
                self.open(*ip);
                return;
            }
            Op::Join { ip, interests, resume } => {
                let conn = self.open(*ip);
                let hello = self.hello(interests, resume);
                self.send(conn, hello);
                return;
            }
            Op::Close { pick, clean } => {
                let Some(conn) = self.pick(pick, Prefer::Greeted) else { return };
                let how = if *clean { Disconnect::Clean } else { Disconnect::Dropped };
                self.trace.push(format!("close {conn} {how:?}"));
                self.h.close(conn, how);
                self.observer.on_close(conn, how, now);
                self.model.close(conn, how);
                self.settle();
                return;
            }
            Op::Hello { pick, interests, resume } => (pick, self.hello(interests, resume)),
            Op::Find(pick) => (pick, ClientMsg::Find),
            Op::Next(pick) => (pick, ClientMsg::Next),
            Op::Stop(pick) => (pick, ClientMsg::Stop),
            Op::Report(pick) => (pick, ClientMsg::Report { reason: "rude".into() }),
            Op::Signal { pick, pad } => {
                let text = candidate(&format!("s{}", self.next_signal), *pad);
                (pick, ClientMsg::Signal(SignalData::from_json(&text).expect("valid signal data")))
            }
        };
        let prefer = match msg {
            ClientMsg::Hello(_) => Prefer::Ungreeted,
            ClientMsg::Signal(_) | ClientMsg::Report { .. } => Prefer::Matched,
            ClientMsg::Find | ClientMsg::Next | ClientMsg::Stop => Prefer::Greeted,
        };
        let Some(conn) = self.pick(pick, prefer) else { return };
        self.send(conn, msg);
    }

    fn open(&mut self, ip: usize) -> ConnId {
        let conn = self.h.open(IPS[ip]);
        self.trace.push(format!("open {conn} from {}", IPS[ip]));
        self.conns.push(conn);
        self.model.open(conn, IPS[ip].parse().expect("valid address"));
        self.settle();
        conn
    }

    /// A hello with these interests, perhaps resuming.
    fn hello(&self, interests: &[&str], resume: &Option<Resume>) -> ClientMsg {
        let resume = resume.as_ref().map(|r| {
            let sessions = self.model.sessions.iter().filter(|s| !s.ended && s.conn.is_none());
            let dropped: Vec<&String> = sessions.filter_map(|s| s.token.as_ref()).collect();
            if r.dropped && !dropped.is_empty() {
                return r.index.get(&dropped).to_string();
            }
            let k = r.index.index(self.tokens.len() + 1);
            self.tokens.get(k).cloned().unwrap_or_else(|| "never-handed-out".into())
        });
        ClientMsg::Hello(Hello { interests: interests.iter().map(|t| t.to_string()).collect(), resume })
    }

    fn send(&mut self, conn: ConnId, msg: ClientMsg) {
        self.trace.push(format!("{conn} says {}", msg.to_json()));
        match &msg {
            ClientMsg::Hello(hello) => self.observer.on_hello(conn, &hello.interests),
            ClientMsg::Next => self.observer.on_leave(conn, false),
            ClientMsg::Stop => self.observer.on_leave(conn, true),
            ClientMsg::Signal(_) => {
                self.observer.on_signal(conn, self.next_signal);
                self.next_signal += 1;
            }
            ClientMsg::Find | ClientMsg::Report { .. } => {}
        }
        self.h.send(conn, msg.clone());
        self.model.message(conn, &msg);
        self.settle();
    }

    /// Compares the outputs of the last step with the model and shows them to the observer.
    fn settle(&mut self) {
        let now = self.h.now();
        let log = self.h.take_log();
        for (conn, got) in &log {
            self.observer.on_output(*conn, got, now);
        }
        self.observer.end_step();
        let expect = std::mem::take(&mut self.model.expect);
        let mut got_by_conn: BTreeMap<ConnId, Vec<&Got>> = BTreeMap::new();
        for (conn, got) in &log {
            got_by_conn.entry(*conn).or_default().push(got);
        }
        let mut want_by_conn: BTreeMap<ConnId, Vec<Expect>> = BTreeMap::new();
        for (conn, e) in expect {
            want_by_conn.entry(conn).or_default().push(e);
        }
        let conns: HashSet<ConnId> = got_by_conn.keys().chain(want_by_conn.keys()).copied().collect();
        for conn in conns {
            let got = got_by_conn.remove(&conn).unwrap_or_default();
            let want = want_by_conn.remove(&conn).unwrap_or_default();
            let same =
                got.len() == want.len() && want.iter().zip(&got).all(|(e, g)| self.model.bind(e, g, &mut self.tokens));
            let recent = &self.trace[self.trace.len().saturating_sub(40)..];
            assert!(same, "socket {conn} expected {want:?}\ngot {got:?}\nafter {recent:#?}");
        }
    }
}

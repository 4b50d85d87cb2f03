//! The matchmaker's model-based property test (its generator, reference model and observer,
//! shared from `matchmaker/tests/properties/`) run against this backend's scripts in a real
//! redis-server: each socket's open, messages and close become the operations a node sends,
//! one `batch` call each, and what the scripts publish for the node is read back through
//! `records.rs` into the matchmaker's outputs. Redis keeps its own clock, so the sequences
//! have no clock jumps and every period outlasts a case: this proves the pairing rules,
//! rooms, resumes, held signals, reports and bans of the two copies agree, not their timers.
//! Tests only; it touches no socket of the server.

#[path = "../../matchmaker/tests/common/mod.rs"]
mod common;
#[path = "../../matchmaker/tests/properties/model.rs"]
mod model;
#[path = "../../matchmaker/tests/properties/observer.rs"]
mod observer;
// The server tests' helper; this test needs only a part of it.
#[allow(dead_code)]
#[path = "../../tests/support/redis.rs"]
mod redis_server;
#[path = "../../matchmaker/tests/properties/world.rs"]
mod world;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use redis::Value;
use strangers_matchmaker::{Config, ConnId, Disconnect, Output};
use strangers_protocol::ClientMsg;

use super::local::{refuse_banned, BANNED_BY_REPORTS};
use super::records::{self, Record};
use super::scripts::{Function, Library};
use super::worker::{batch_args, close_op, operation, Call};
use super::Settings;
use common::Got;
use redis_server::RedisServer;
use world::{Subject, World};

/// The world's settings with every period far longer than a case.
fn config() -> Config {
    let long = Duration::from_secs(3600);
    Config { resume_grace: long, interest_wait: long, report_window: long, ban_duration: long, ..world::config() }
}

fn settings(config: &Config) -> Settings {
    Settings {
        url: String::new(),
        node_timeout: Duration::from_secs(3600),
        batch_window: Duration::ZERO,
        signal_batch_window: Duration::ZERO,
        session_ttl: Duration::from_secs(3 * 3600),
        resume_grace: config.resume_grace,
        interest_wait: config.interest_wait,
        max_pending_signals: config.pending_max_msgs,
        max_pending_bytes: config.pending_max_bytes,
        report_threshold: config.report_threshold,
        report_window: config.report_window,
        ban_duration: config.ban_duration,
    }
}

const NODE: &str = "model0000node";

/// One node's worth of the Redis backend, driven one operation at a time.
struct RedisSubject {
    con: redis::Connection,
    /// Subscribed to this node's channel and the bans channel.
    sub: redis::Connection,
    library: Library,
    settings: Settings,
    t0: Instant,
    now: Instant,
    next_conn: ConnId,
    ips: HashMap<ConnId, IpAddr>,
    sessions: HashMap<ConnId, String>,
    banned: HashSet<IpAddr>,
    gone: HashSet<ConnId>,
    log: Vec<(ConnId, Got)>,
    sentinel: u64,
}

impl RedisSubject {
    /// A fresh node on an empty database of `server`.
    fn new(server: &RedisServer) -> RedisSubject {
        let client = redis::Client::open(server.url()).expect("a valid URL");
        let mut con = client.get_connection().expect("connecting to redis-server");
        redis::cmd("FLUSHALL").exec(&mut con).expect("emptying the database");
        let library = Library::new();
        library.load_cmd().exec(&mut con).expect("loading the functions");
        let mut sub = client.get_connection().expect("connecting to redis-server");
        sub.set_read_timeout(Some(Duration::from_secs(5))).expect("a read timeout");
        let channels = [super::node_channel(NODE), "strangers:bans".to_string()];
        sub.send_packed_command(&redis::cmd("SUBSCRIBE").arg(&channels).get_packed_command()).expect("subscribing");
        for _ in &channels {
            sub.recv_response().expect("a subscription answer");
        }
        let settings = settings(&config());
        let mut subject = RedisSubject {
            con,
            sub,
            library,
            settings,
            t0: Instant::now(),
            now: Instant::now(),
            next_conn: 1,
            ips: HashMap::new(),
            sessions: HashMap::new(),
            banned: HashSet::new(),
            gone: HashSet::new(),
            log: Vec::new(),
            sentinel: 0,
        };
        subject.run(Function::Heartbeat, vec!["3600000".into(), "0".into(), "1".into(), "0".into()]);
        subject
    }

    /// Runs one function with the common arguments, then reads what it published.
    fn run(&mut self, function: Function, args: Vec<String>) {
        let cmd = super::call_cmd(&self.library, NODE, &self.settings, function, args);
        let reply: redis::Value = cmd.query(&mut self.con).expect("the function runs");
        if let Value::Array(parts) = &reply {
            if let Some(Value::BulkString(failed)) = parts.first() {
                assert!(failed.is_empty(), "an operation failed in Redis: {}", String::from_utf8_lossy(failed));
            }
        }
        self.read_published();
        let violations: Vec<String> = redis::cmd("EVAL")
            .arg(include_str!("invariants.lua"))
            .arg(0)
            .query(&mut self.con)
            .expect("invariants.lua runs");
        assert!(violations.is_empty(), "the shared state breaks its invariants: {violations:?}");
    }

    fn batch(&mut self, call: Call) {
        self.run(Function::Batch, batch_args(&[call]));
    }

    /// Reads every message published for this node so far: a marker published after them
    /// comes back after them.
    fn read_published(&mut self) {
        self.sentinel += 1;
        let marker = format!("marker {}", self.sentinel);
        redis::cmd("PUBLISH").arg(super::node_channel(NODE)).arg(&marker).exec(&mut self.con).expect("publishing");
        loop {
            let Value::Array(parts) = self.sub.recv_response().expect("a published message") else { continue };
            let [_, Value::BulkString(channel), Value::BulkString(payload)] = &parts[..] else { continue };
            let payload = String::from_utf8(payload.clone()).expect("published text");
            if channel == b"strangers:bans" {
                // As the node does (`Link::close_banned`).
                let ip = payload.split(' ').next().and_then(|ip| ip.parse().ok()).expect("IP DURATION");
                self.banned.insert(ip);
                let ungreeted = |conn: &ConnId| !self.sessions.contains_key(conn);
                let from_ip = self.ips.iter().filter(|(_, from)| **from == ip).map(|(conn, _)| *conn);
                let conns: Vec<ConnId> = from_ip.filter(ungreeted).collect();
                for output in conns.into_iter().flat_map(|conn| refuse_banned(conn, BANNED_BY_REPORTS)) {
                    self.file(output);
                }
                continue;
            }
            if payload == marker {
                return;
            }
            let batch = records::parse(&payload).unwrap_or_else(|e| panic!("{e}: {payload:?}"));
            for record in batch {
                let output = match record {
                    Record::Output(output) => output,
                    Record::Matched { conn, msg, .. }
                    | Record::Left { conn, msg }
                    | Record::Signal { conn, msg, .. } => Output::Send { conn, msg },
                };
                self.file(output);
            }
        }
    }

    /// Files an output as the socket layer would deliver it: nothing reaches a closed socket.
    fn file(&mut self, output: Output) {
        let (conn, got) = match output {
            Output::Send { conn, msg } => (conn, Got::Msg(msg)),
            Output::Welcome { conn, session_id, resume_token, resumed, room } => {
                if !self.gone.contains(&conn) {
                    self.sessions.insert(conn, session_id.clone());
                }
                (conn, Got::Welcome { id: session_id, token: resume_token, resumed, room })
            }
            Output::Close { conn, code, .. } => (conn, Got::Close(code)),
        };
        if self.gone.contains(&conn) {
            return;
        }
        if let Got::Close(_) = got {
            self.gone.insert(conn);
            self.ips.remove(&conn);
            // The socket's task ends and tells the node, as after any close.
            let session = self.sessions.remove(&conn).unwrap_or_default();
            self.log.push((conn, got));
            let call = close_op(conn, Disconnect::Dropped, session);
            let cmd = super::call_cmd(&self.library, NODE, &self.settings, Function::Batch, batch_args(&[call]));
            let _: redis::Value = cmd.query(&mut self.con).expect("the close runs");
            return;
        }
        self.log.push((conn, got));
    }
}

impl Subject for RedisSubject {
    fn t0(&self) -> Instant {
        self.t0
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn next_timer(&self) -> Option<Instant> {
        None
    }

    fn runs_timers(&self) -> bool {
        false
    }

    fn tick(&mut self, _: Instant) {
        unreachable!("a subject with no timers is never ticked")
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn open(&mut self, ip: &str) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let ip: IpAddr = ip.parse().expect("tests write valid addresses");
        if self.banned.contains(&ip) {
            // As the node does at the door (`Link::open`): the socket never reaches Redis.
            for output in refuse_banned(conn, "this address is banned for a while") {
                let got = match output {
                    Output::Send { msg, .. } => Got::Msg(msg),
                    Output::Close { code, .. } => Got::Close(code),
                    Output::Welcome { .. } => unreachable!("a refusal welcomes nobody"),
                };
                self.log.push((conn, got));
            }
            self.gone.insert(conn);
        } else {
            self.ips.insert(conn, ip);
        }
        conn
    }

    fn send(&mut self, conn: ConnId, msg: ClientMsg) {
        // A closed socket's task reads no more.
        let Some(ip) = self.ips.get(&conn).copied() else { return };
        let session = self.sessions.get(&conn).cloned().unwrap_or_default();
        self.batch(operation(&self.settings, conn, ip, session, msg));
    }

    fn close(&mut self, conn: ConnId, how: Disconnect) {
        if self.gone.contains(&conn) {
            return;
        }
        self.gone.insert(conn);
        self.ips.remove(&conn);
        let session = self.sessions.remove(&conn).unwrap_or_default();
        self.batch(close_op(conn, how, session));
    }

    fn take_log(&mut self) -> Vec<(ConnId, Got)> {
        std::mem::take(&mut self.log)
    }
}

/// Cases per run: few, each a real round trip per step (`STRANGERS_REDIS_MODEL_CASES` asks
/// for more).
fn cases() -> u32 {
    std::env::var("STRANGERS_REDIS_MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(150)
}

#[test]
fn the_redis_scripts_keep_the_matchmakers_promises() {
    let server = RedisServer::start();
    let mut runner =
        TestRunner::new(RunnerConfig { cases: cases(), failure_persistence: None, ..RunnerConfig::default() });
    let outcome = runner.run(&world::steps(false), |steps| {
        let mut world = World::new(RedisSubject::new(&server), config());
        for step in &steps {
            world.apply(step);
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

//! Runs the operations for this node's sockets. One worker per node takes the commands in
//! the order the sockets produced them (the same order the in-memory backend would see) and
//! sends whatever is waiting as one call of the `batch` function (after gathering: see
//! [`gather`]): one round trip and
//! one atomic step per batch, the operations run in that order, and each node hears the
//! records of the whole batch as one message. An operation that fails (Redis unreachable or
//! erroring) is answered with `error unavailable`; the socket stays open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use strangers_matchmaker::{ConnId, Disconnect, Output};
use strangers_protocol::{ClientMsg, ErrorCode, ServerMsg};
use tokio::sync::mpsc;
use tracing::warn;

use super::publish::publish_waiting;
use super::{Command, Function, Settings, Shared};
use crate::sockets::Sockets;

/// Most operations in one batch.
const MAX_BATCH: usize = 128;

/// Attempts at telling Redis a socket closed before giving up (its session then ends with
/// its node, or with its TTL).
const CLOSE_ATTEMPTS: u32 = 3;

/// One operation of a batch (`OPS.<op>` in the scripts), with the local socket it is for
/// (none for a relay on behalf of another node's socket).
pub(crate) struct Call {
    conn: Option<ConnId>,
    op: &'static str,
    args: Vec<String>,
}

impl Call {
    /// A close is retried; anything else is answered with `unavailable` when it fails.
    fn is_close(&self) -> bool {
        self.op == "close"
    }
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut con: ConnectionManager,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut addresses: HashMap<ConnId, IpAddr> = HashMap::new();
    let mut batch: Vec<Command> = Vec::with_capacity(MAX_BATCH);
    while commands.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let publisher = Publisher { shared: &shared, con: &mut con };
        gather(&shared.settings, publisher, &mut commands, &mut batch).await;
        let mut calls = Vec::with_capacity(batch.len());
        for command in batch.drain(..) {
            match command {
                Command::Open { conn, ip } => {
                    addresses.insert(conn, ip);
                }
                Command::Message { conn, msg } => {
                    let Some(ip) = addresses.get(&conn) else { continue };
                    calls.push(call_for(&shared, conn, *ip, msg));
                }
                Command::Signal { conn, text } => {
                    if addresses.contains_key(&conn) {
                        calls.push(signal_call(&shared, conn, text));
                    }
                }
                // Published while gathering.
                Command::Publish(_) => {}
                Command::Reroute { session, room, text } => {
                    let mut args = vec![session, room, text];
                    args.extend(pending_limits(&shared.settings));
                    calls.push(Call { conn: None, op: "relay", args });
                }
                Command::Close { conn, how } => {
                    addresses.remove(&conn);
                    calls.push(close_op(conn, how, shared.link.forget_session(conn)));
                }
            }
        }
        if calls.is_empty() {
            continue;
        }
        let (mut closes, refused): (Vec<_>, Vec<_>) =
            run_batch(&shared, &mut con, calls).await.into_iter().partition(|(call, _)| call.is_close());
        for conn in refused.into_iter().filter_map(|(call, _)| call.conn) {
            tell_unavailable(&shared.link.sockets, conn);
        }
        for attempt in 1..CLOSE_ATTEMPTS {
            if closes.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            closes = run_batch(&shared, &mut con, closes.into_iter().map(|(call, _)| call).collect()).await;
        }
        for (_, error) in closes {
            warn!(%error, "could not tell Redis a socket closed");
        }
    }
}

/// What `gather` does with the signals for other nodes in the batch: publishes them at once
/// (returns how many came back to the batch because nobody heard them).
trait Publish {
    async fn publish(&mut self, batch: &mut Vec<Command>) -> usize;
}

struct Publisher<'a> {
    shared: &'a Shared,
    con: &'a mut ConnectionManager,
}

impl Publish for Publisher<'_> {
    async fn publish(&mut self, batch: &mut Vec<Command>) -> usize {
        publish_waiting(self.shared, self.con, batch).await
    }
}

/// Tells a socket its command could not reach Redis.
pub(crate) fn tell_unavailable(sockets: &Sockets, conn: ConnId) {
    let message = "matchmaking is unavailable for a moment (its store is unreachable); retry shortly";
    sockets.push([Output::Send { conn, msg: ServerMsg::error(ErrorCode::Unavailable, message) }]);
}

/// Group commit: what arrives while the batch waits shares its round trip and its call.
/// Each command may wait its kind's window (see [`window_of`]) from its arrival; the batch
/// goes out when the first of those runs out, or when it is full. Signals for another node
/// are not in the call: they wait the signal window, then go out as they are
/// (`publish.rs`) while the rest of the batch may wait on.
async fn gather(
    settings: &Settings,
    mut publisher: impl Publish,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    batch: &mut Vec<Command>,
) {
    let mut waits = Waits::default();
    waits.arrived(settings, &batch[..], Instant::now());
    while let (Some(at), false) = (waits.first(), batch.len() >= MAX_BATCH) {
        let before = batch.len();
        tokio::select! {
            biased;
            () = until(at) => {
                while batch.len() < MAX_BATCH {
                    let Ok(command) = commands.try_recv() else { break };
                    batch.push(command);
                }
                let now = Instant::now();
                waits.arrived(settings, &batch[before..], now);
                if waits.batch.is_some_and(|at| at <= now) {
                    break;
                }
                // Only the signals' wait ran out: they go, the rest waits on (with those
                // that nobody heard, back as relay operations).
                let back = publisher.publish(batch).await;
                waits.publish = None;
                waits.arrived(settings, &batch[batch.len() - back..], now);
            }
            // Cancel-safe: nothing is lost when the sleep wins.
            n = commands.recv_many(batch, MAX_BATCH - before) => {
                if n == 0 {
                    break;
                }
                waits.arrived(settings, &batch[before..], Instant::now());
            }
        }
    }
    publisher.publish(batch).await;
}

/// Sleeps until `at`, or not at all once it has come (a timer would wait for its next
/// millisecond tick: up to 1 ms more for a window of zero).
async fn until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// When the batch and the signals for other nodes waiting in it must go.
#[derive(Default)]
struct Waits {
    batch: Option<Instant>,
    publish: Option<Instant>,
}

impl Waits {
    fn arrived(&mut self, settings: &Settings, commands: &[Command], now: Instant) {
        for command in commands {
            let Some(wait) = window_of(settings, command) else { continue };
            let due = if matches!(command, Command::Publish(_)) { &mut self.publish } else { &mut self.batch };
            *due = Some(due.map_or(now + wait, |at| at.min(now + wait)));
        }
    }

    fn first(&self) -> Option<Instant> {
        self.batch.into_iter().chain(self.publish).min()
    }
}

/// How long a command may wait for others to share its round trip: signals briefly (they set
/// up a call; those for another node are published apart from the call, see [`Waits`]),
/// pairing commands longer; none for an open, which stays on the node.
fn window_of(settings: &Settings, command: &Command) -> Option<Duration> {
    match command {
        Command::Open { .. } => None,
        Command::Message { msg: ClientMsg::Signal(_), .. }
        | Command::Signal { .. }
        | Command::Publish(_)
        | Command::Reroute { .. } => Some(settings.signal_batch_window),
        Command::Message { .. } | Command::Close { .. } => Some(settings.batch_window),
    }
}

/// The most signals and bytes held for a partner who is reconnecting.
fn pending_limits(settings: &Settings) -> [String; 2] {
    [settings.max_pending_signals.to_string(), settings.max_pending_bytes.to_string()]
}

fn signal_call(shared: &Shared, conn: ConnId, text: String) -> Call {
    signal_op(&shared.settings, conn, text, shared.link.session_of(conn))
}

fn call_for(shared: &Shared, conn: ConnId, ip: IpAddr, msg: ClientMsg) -> Call {
    operation(&shared.settings, conn, ip, shared.link.session_of(conn), msg)
}

/// The `signal` operation of socket `conn` (welcomed as `session`, or '').
pub(crate) fn signal_op(settings: &Settings, conn: ConnId, text: String, session: String) -> Call {
    let mut args = vec![conn.to_string(), text];
    args.extend(pending_limits(settings));
    args.push(session);
    Call { conn: Some(conn), op: "signal", args }
}

/// The operation for a message of socket `conn` from `ip` (welcomed as `session`, or '').
pub(crate) fn operation(settings: &Settings, conn: ConnId, ip: IpAddr, session: String, msg: ClientMsg) -> Call {
    let c = conn.to_string();
    let (op, args) = match msg {
        ClientMsg::Hello(hello) => {
            let interests = serde_json::to_string(&hello.interests).expect("a list of strings serialises");
            let (sid, token) = fresh_ids();
            ("hello", vec![c, ip.to_string(), interests, hello.resume.unwrap_or_default(), sid, token])
        }
        ClientMsg::Find => ("queue", vec!["find".into(), c, session]),
        ClientMsg::Next => ("queue", vec!["next".into(), c, session]),
        ClientMsg::Stop => ("queue", vec!["stop".into(), c, session]),
        ClientMsg::Signal(data) => return signal_op(settings, conn, data.into_wire(), session),
        ClientMsg::Report { .. } => (
            "report",
            vec![
                c,
                settings.report_threshold.to_string(),
                settings.report_window.as_millis().to_string(),
                settings.ban_duration.as_millis().to_string(),
                session,
            ],
        ),
    };
    Call { conn: Some(conn), op, args }
}

/// The `close` operation of socket `conn` (welcomed as `session`, or '').
pub(crate) fn close_op(conn: ConnId, how: Disconnect, session: String) -> Call {
    let how = if how == Disconnect::Clean { "clean" } else { "dropped" };
    Call { conn: Some(conn), op: "close", args: vec![conn.to_string(), how.into(), session] }
}

/// Sends the calls as one batch script: one round trip, one atomic step in Redis. Returns
/// the calls that failed, in order, with why. If Redis has forgotten the script (it
/// restarted), it is loaded again and the batch runs once more.
async fn run_batch(shared: &Shared, con: &mut ConnectionManager, calls: Vec<Call>) -> Vec<(Call, redis::RedisError)> {
    let counters = &shared.link.counters;
    counters.operations.fetch_add(calls.len() as u64, Ordering::Relaxed);
    let (failed, matches) = match shared.query::<(String, u64)>(con, &batch_cmd(shared, &calls)).await {
        Ok(reply) => reply,
        Err(e) => {
            counters.errors.fetch_add(calls.len() as u64, Ordering::Relaxed);
            return calls.into_iter().map(|call| (call, e.clone())).collect();
        }
    };
    counters.matches.fetch_add(matches, Ordering::Relaxed);
    if failed.is_empty() {
        return Vec::new();
    }
    let failed: Vec<usize> = failed.split(' ').filter_map(|n| n.parse().ok()).collect();
    counters.errors.fetch_add(failed.len() as u64, Ordering::Relaxed);
    let error = || redis::RedisError::from((redis::ErrorKind::Io, "the operation failed in Redis (see its log)"));
    calls.into_iter().enumerate().filter(|(i, _)| failed.contains(&(i + 1))).map(|(_, call)| (call, error())).collect()
}

/// The FCALL of `batch` for these calls.
fn batch_cmd(shared: &Shared, calls: &[Call]) -> redis::Cmd {
    shared.call_cmd(Function::Batch, batch_args(calls))
}

/// The arguments of `batch` after the common ones: each call is its operation's name, its
/// argument count and its arguments.
pub(crate) fn batch_args(calls: &[Call]) -> Vec<String> {
    let mut ops = Vec::with_capacity(calls.len() * 8);
    for call in calls {
        ops.push(call.op.to_string());
        ops.push(call.args.len().to_string());
        ops.extend(call.args.iter().cloned());
    }
    ops
}

/// A new public session id (64 random bits) and secret resume token (256 random bits).
fn fresh_ids() -> (String, String) {
    use rand::RngExt;
    let mut rng = rand::rng();
    let id = format!("{:016x}", rng.random::<u64>());
    let token: [u8; 32] = rng.random();
    (id, token.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairing_ms: u64, signal_ms: u64) -> Settings {
        Settings {
            url: String::new(),
            node_timeout: Duration::from_secs(5),
            batch_window: Duration::from_millis(pairing_ms),
            signal_batch_window: Duration::from_millis(signal_ms),
            session_ttl: Duration::from_secs(600),
            resume_grace: Duration::from_secs(10),
            interest_wait: Duration::from_secs(3),
            max_pending_signals: 64,
            max_pending_bytes: 1 << 20,
            report_threshold: 3,
            report_window: Duration::from_secs(600),
            ban_duration: Duration::from_secs(600),
        }
    }

    /// These tests send no signal for another node.
    struct NoSignalsForOtherNodes;

    impl Publish for NoSignalsForOtherNodes {
        async fn publish(&mut self, _: &mut Vec<Command>) -> usize {
            0
        }
    }

    fn find(conn: ConnId) -> Command {
        Command::Message { conn, msg: ClientMsg::Find }
    }

    fn signal(conn: ConnId) -> Command {
        Command::Signal { conn, text: r#"{"type":"signal","data":{}}"#.into() }
    }

    /// Runs `gather` on `first` while `later` arrives, within a bound far below the long
    /// windows used here: exceeding it means the batch waited for a window it should not have.
    async fn gathered(settings: Settings, first: Vec<Command>, later: Vec<Command>) -> Vec<Command> {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let mut batch = first;
        let feeder = tokio::spawn(async move {
            for command in later {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = sender.send(command);
            }
            // Keep the channel open: a closed one would end the gathering by itself.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let bound = Duration::from_secs(5);
        tokio::time::timeout(bound, gather(&settings, NoSignalsForOtherNodes, &mut receiver, &mut batch))
            .await
            .expect("the batch waited for a window it should not have");
        feeder.abort();
        batch
    }

    #[tokio::test]
    async fn a_signal_ends_the_long_wait_of_pairing_commands_and_joins_their_batch() {
        let batch = gathered(settings(60_000, 0), vec![find(1)], vec![find(2), signal(3), find(4)]).await;
        let conns: Vec<_> = batch
            .iter()
            .map(|c| if let Command::Message { conn, .. } | Command::Signal { conn, .. } = c { *conn } else { 0 })
            .collect();
        assert_eq!(conns, [1, 2, 3], "the pairing commands waited, the signal went at once with them");
    }

    #[tokio::test]
    async fn without_a_window_a_command_goes_at_once() {
        let batch = gathered(settings(0, 60_000), vec![find(1)], vec![find(2)]).await;
        assert_eq!(batch.len(), 1);
        let batch = gathered(
            settings(60_000, 60_000),
            vec![Command::Open { conn: 1, ip: [127, 0, 0, 1].into() }],
            vec![find(2)],
        )
        .await;
        assert_eq!(batch.len(), 1, "an open alone does not wait");
    }

    #[test]
    fn signals_wait_the_signal_window_and_the_rest_the_pairing_window() {
        let s = settings(10, 2);
        assert_eq!(window_of(&s, &signal(1)), Some(Duration::from_millis(2)));
        let relayed = Command::Reroute { session: "a".into(), room: "r".into(), text: "{}".into() };
        assert_eq!(window_of(&s, &relayed), Some(Duration::from_millis(2)));
        assert_eq!(window_of(&s, &find(1)), Some(Duration::from_millis(10)));
        assert_eq!(window_of(&s, &Command::Close { conn: 1, how: Disconnect::Clean }), Some(Duration::from_millis(10)));
    }
}

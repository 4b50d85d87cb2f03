//! Runs the scripts for this node's sockets. One worker per node takes the commands in the
//! order the sockets produced them (the same order the in-memory hub would see) and sends
//! whatever is waiting as one pipeline of EVALSHA calls: one round trip per batch, and Redis
//! runs them in that order. A script that fails because Redis is unreachable is answered with
//! `error unavailable`; the socket stays open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use strangers_matchmaker::{ConnId, Disconnect};
use strangers_protocol::{ClientMsg, ErrorCode, ServerMsg};
use tokio::sync::mpsc;
use tracing::warn;

use super::{bounded, Command, Shared};
use crate::hub::Hub;

/// Most scripts in one pipeline.
const MAX_BATCH: usize = 128;

/// Attempts at telling Redis a socket closed before giving up (its session then ends with
/// its node, or with its TTL).
const CLOSE_ATTEMPTS: u32 = 3;

/// One script call, with the socket it is for.
struct Call {
    conn: ConnId,
    script: &'static str,
    args: Vec<String>,
    /// A close is retried; anything else is answered with `unavailable` when it fails.
    is_close: bool,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut con: ConnectionManager,
    hub: Arc<Hub>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut addresses: HashMap<ConnId, IpAddr> = HashMap::new();
    let mut batch: Vec<Command> = Vec::with_capacity(MAX_BATCH);
    while commands.recv_many(&mut batch, MAX_BATCH).await > 0 {
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
                Command::Close { conn, how } => {
                    addresses.remove(&conn);
                    let how = if how == Disconnect::Clean { "clean" } else { "dropped" };
                    calls.push(Call {
                        conn,
                        script: "close",
                        args: vec![conn.to_string(), how.into()],
                        is_close: true,
                    });
                }
            }
        }
        if calls.is_empty() {
            continue;
        }
        let (mut closes, refused): (Vec<_>, Vec<_>) =
            run_batch(&shared, &mut con, calls).await.into_iter().partition(|(call, _)| call.is_close);
        for (call, _) in refused {
            hub.deliver(
                call.conn,
                &ServerMsg::error(
                    ErrorCode::Unavailable,
                    "matchmaking is unavailable for a moment (its store is unreachable); retry shortly",
                ),
            );
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

fn call_for(shared: &Shared, conn: ConnId, ip: IpAddr, msg: ClientMsg) -> Call {
    let c = conn.to_string();
    let settings = &shared.settings;
    let (script, args) = match msg {
        ClientMsg::Hello(hello) => {
            let interests = serde_json::to_string(&hello.interests).expect("a list of strings serialises");
            let (sid, token) = fresh_ids();
            ("hello", vec![c, ip.to_string(), interests, hello.resume.unwrap_or_default(), sid, token])
        }
        ClientMsg::Find => ("queue", vec!["find".into(), c]),
        ClientMsg::Next => ("queue", vec!["next".into(), c]),
        ClientMsg::Stop => ("queue", vec!["stop".into(), c]),
        ClientMsg::Signal(data) => {
            let wire = ServerMsg::Signal { data }.to_json();
            let limits = [settings.max_pending_signals.to_string(), settings.max_pending_bytes.to_string()];
            let [msgs, bytes] = limits;
            ("signal", vec![c, wire, msgs, bytes])
        }
        ClientMsg::Report { .. } => (
            "report",
            vec![
                c,
                settings.report_threshold.to_string(),
                settings.report_window.as_millis().to_string(),
                settings.ban_duration.as_millis().to_string(),
            ],
        ),
    };
    Call { conn, script, args, is_close: false }
}

/// Sends the calls as one pipeline; returns those that failed, in order, with why. Scripts
/// Redis has forgotten (it restarted) are loaded again and their calls rerun once.
async fn run_batch(shared: &Shared, con: &mut ConnectionManager, calls: Vec<Call>) -> Vec<(Call, redis::RedisError)> {
    let results = match pipeline(shared, con, &calls).await {
        Ok(results) => results,
        Err(e) => return fail_all(shared, calls, e),
    };
    let mut failed = Vec::new();
    let mut forgotten = Vec::new();
    for (call, result) in calls.into_iter().zip(results) {
        match result {
            Ok((_, matches)) => {
                shared.link.counters.matches.fetch_add(matches, Ordering::Relaxed);
            }
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => forgotten.push(call),
            Err(e) => failed.push((call, e)),
        }
    }
    if !forgotten.is_empty() {
        if let Err(e) = bounded(shared.scripts.load_all(con)).await {
            failed.extend(fail_all(shared, forgotten, e));
            return failed;
        }
        match pipeline(shared, con, &forgotten).await {
            Ok(results) => {
                for (call, result) in forgotten.into_iter().zip(results) {
                    match result {
                        Ok((_, matches)) => {
                            shared.link.counters.matches.fetch_add(matches, Ordering::Relaxed);
                        }
                        Err(e) => failed.push((call, e)),
                    }
                }
            }
            Err(e) => failed.extend(fail_all(shared, forgotten, e)),
        }
    }
    let errors = failed.len() as u64;
    shared.link.counters.errors.fetch_add(errors, Ordering::Relaxed);
    failed
}

fn fail_all(shared: &Shared, calls: Vec<Call>, error: redis::RedisError) -> Vec<(Call, redis::RedisError)> {
    shared.link.counters.errors.fetch_add(calls.len() as u64, Ordering::Relaxed);
    calls.into_iter().map(|call| (call, error.clone())).collect()
}

type Reply = redis::RedisResult<(String, u64)>;

/// One round trip: every call as an EVALSHA, replies in order.
async fn pipeline(shared: &Shared, con: &mut ConnectionManager, calls: &[Call]) -> redis::RedisResult<Vec<Reply>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for call in calls {
        pipe.add_command(shared.eval_cmd(shared.scripts.by_name(call.script), &call.args));
    }
    let counters = &shared.link.counters;
    counters.round_trips.fetch_add(1, Ordering::Relaxed);
    counters.scripts.fetch_add(calls.len() as u64, Ordering::Relaxed);
    bounded(pipe.query_async(con)).await
}

/// A new public session id (64 random bits) and secret resume token (256 random bits).
fn fresh_ids() -> (String, String) {
    use rand::RngExt;
    let mut rng = rand::rng();
    let id = format!("{:016x}", rng.random::<u64>());
    let token: [u8; 32] = rng.random();
    (id, token.iter().map(|b| format!("{b:02x}")).collect())
}

//! The Redis backend (`--redis URL`): several signal servers ("nodes") share one Redis, which
//! holds the waiting queue, sessions, resume tokens, rooms, held messages, reports and bans,
//! every key with a TTL. Each change of that state is one call of a Lua function (the library
//! in `*.lua`, see `scripts.rs`), atomic in Redis, so no two nodes can hand out the same
//! stranger. What a call decides for a socket is published on the channel of the node holding
//! that socket, one message per node and call, so every socket sees its messages in the order
//! Redis ran the calls.
//!
//! This module is the node's side: [`Link`] is what the hub calls (commands in, in arrival
//! order, see `local.rs`), `worker.rs` sends them in batches, `subscriber.rs` hears what is
//! published to this node and `local.rs` pushes it into the socket layer, `liveness.rs` beats
//! the heartbeat and runs the cluster's timers. The pure in-memory matchmaker is not built in
//! this mode. Nothing here writes frames or imports the hub: outputs are pushed into the socket
//! layer (`crate::sockets`), in the matchmaker's vocabulary.
//!
//! Crate choice: `redis` (redis-rs) is the maintained Rust client; it runs on tokio, its
//! `ConnectionManager` reconnects by itself, and it speaks RESP3 with pub/sub pushes on the
//! same connection as the calls.

mod liveness;
mod local;
#[cfg(test)]
mod model_tests;
mod publish;
pub(crate) mod records;
mod route;
mod scripts;
mod subscriber;
mod worker;

pub use liveness::refresh_interval;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt;
use redis::aio::ConnectionManager;
use redis::IntoConnectionInfo;
use strangers_matchmaker::{ConnId, Disconnect, Stats};
use strangers_protocol::ClientMsg;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::sockets::Sockets;
pub(crate) use records::{Record, RouteText};
pub(crate) use route::Route;
pub(crate) use scripts::Function;
use scripts::Library;

/// What the Redis backend needs to know, taken from the server's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    /// A node silent this long is dead: its sessions are held for a resume elsewhere.
    pub node_timeout: Duration,
    /// How long a pairing command may wait for others to share its batch (zero: none).
    pub batch_window: Duration,
    /// How long a signal for another node's socket may wait for others (zero: none).
    pub signal_batch_window: Duration,
    /// TTL of the keys of a session; nodes extend it for the sessions they hold.
    pub session_ttl: Duration,
    pub resume_grace: Duration,
    pub interest_wait: Duration,
    pub max_pending_signals: usize,
    pub max_pending_bytes: usize,
    pub report_threshold: u32,
    pub report_window: Duration,
    pub ban_duration: Duration,
}

/// The longest a round trip to Redis may take before it counts as failed. (Whether a script
/// that timed out ran is unknown: the client is told `unavailable` and may retry.)
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis request bounded by [`ROUND_TRIP_TIMEOUT`].
async fn bounded<T>(request: impl std::future::Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, request).await {
        Ok(reply) => reply,
        Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "Redis did not answer in time"))),
    }
}

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("invalid Redis URL {url}: {source}")]
    Url { url: String, source: redis::RedisError },
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect { url: String, source: redis::RedisError },
    #[error("Redis at {url} did not load the pairing functions (Redis 7.0 or later is needed): {reason}")]
    Functions { url: String, reason: String },
}

/// A command from a socket, in the order the socket produced it.
#[derive(Debug)]
pub(crate) enum Command {
    Open {
        conn: ConnId,
        ip: IpAddr,
    },
    Message {
        conn: ConnId,
        msg: ClientMsg,
    },
    /// A signal (`text` as sent on the wire) for `signal.lua` to relay.
    Signal {
        conn: ConnId,
        text: String,
    },
    /// A signal relayed straight to the partner's socket on another node.
    Publish(publish::Signal),
    /// A signal relayed to this node that its socket could not take, for `relay.lua`.
    Reroute {
        session: String,
        room: String,
        text: String,
    },
    Close {
        conn: ConnId,
        how: Disconnect,
    },
}

/// The channel a node hears its records on.
pub(crate) fn node_channel(node: &str) -> String {
    format!("strangers:node:{node}")
}

/// Counters of the Redis backend, for metrics and the benchmark.
#[derive(Debug, Default)]
pub struct RedisCounters {
    /// Round trips to Redis (a pipeline of scripts counts once).
    pub round_trips: AtomicU64,
    /// Scripts run (a batch counts once).
    pub scripts: AtomicU64,
    /// Operations run in batches (the sockets' commands that went to Redis).
    pub operations: AtomicU64,
    /// Scripts that failed (Redis unreachable or erroring).
    pub errors: AtomicU64,
    /// Pairs formed by scripts this node ran.
    pub matches: AtomicU64,
    /// Of `round_trips`, those of the heartbeat and the timers (not caused by a client).
    pub background: AtomicU64,
    /// Times this node told its sockets to reconnect because Redis lost its state.
    pub restarts: AtomicU64,
    /// Signals sent straight to the partner's node, with no state read in Redis.
    pub relayed: AtomicU64,
    /// Signals handed to a partner on this node without Redis.
    pub local: AtomicU64,
    /// Of `local`, those not yet added to the cluster's count (at the next heartbeat).
    pub(crate) unreported: AtomicU64,
}

/// The hub's handle on the backend.
pub struct Link {
    /// Where outputs go.
    sockets: Arc<Sockets>,
    /// Where matched local sockets' signals go without a script (`route.rs`); its lock is
    /// the backend's, held while pushing into the socket layer (`local.rs`).
    routes: Mutex<HashMap<ConnId, Route>>,
    commands: mpsc::UnboundedSender<Command>,
    /// For reads outside the workers (/metrics), on the same pipelined connection.
    reads: ConnectionManager,
    library: Library,
    /// Held while signals relayed on this node are being added to the cluster's count, so
    /// that a stats read never sees them in neither place.
    reporting: tokio::sync::Mutex<()>,
    /// Whether the last heartbeat reached Redis (/healthz).
    healthy: AtomicBool,
    /// Whether this node hears its channel (/healthz).
    subscribed: AtomicBool,
    /// Bans heard of on the `bans` channel, so banned addresses are refused at the door.
    bans: Mutex<HashMap<IpAddr, Instant>>,
    /// The session each welcomed local socket speaks for, passed to the scripts so that
    /// they need not look it up.
    sessions: Mutex<HashMap<ConnId, Box<str>>>,
    pub counters: RedisCounters,
    pub node: String,
}

impl Link {
    fn submit(&self, command: Command) {
        // A closed channel means the server is shutting down: nothing left to do.
        let _ = self.commands.send(command);
    }

    /// Counts a signal handed over on this node.
    pub(crate) fn relayed_locally(&self) {
        self.counters.local.fetch_add(1, Ordering::Relaxed);
        self.counters.unreported.fetch_add(1, Ordering::Relaxed);
    }

    /// A local socket was welcomed as `session` (called under the routes lock, while the
    /// socket is open, so its close comes after).
    pub(crate) fn welcomed(&self, conn: ConnId, session: &str) {
        self.sessions.lock().expect("session map lock is never poisoned").insert(conn, session.into());
    }

    /// The session of a local socket, or '' if not known yet.
    fn session_of(&self, conn: ConnId) -> String {
        let sessions = self.sessions.lock().expect("session map lock is never poisoned");
        sessions.get(&conn).map(|s| s.to_string()).unwrap_or_default()
    }

    /// Forgets a closed socket's session; returns it, or '' if not known.
    fn forget_session(&self, conn: ConnId) -> String {
        let mut sessions = self.sessions.lock().expect("session map lock is never poisoned");
        sessions.remove(&conn).map(String::from).unwrap_or_default()
    }

    /// Whether a ban on `ip` was heard of and still runs.
    pub(crate) fn is_banned(&self, ip: IpAddr) -> bool {
        let mut bans = self.bans.lock().expect("ban list lock is never poisoned");
        let now = Instant::now();
        bans.retain(|_, until| *until > now);
        bans.contains_key(&ip)
    }

    fn heard_ban(&self, ip: IpAddr, duration: Duration) {
        self.bans.lock().expect("ban list lock is never poisoned").insert(ip, Instant::now() + duration);
    }

    /// Whether Redis answered the last heartbeat and this node hears its channel.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    /// The cluster's gauges and counters, read from Redis (`stats.lua`).
    pub(crate) async fn cluster_stats(&self) -> redis::RedisResult<Stats> {
        let _reporting = self.reporting.lock().await;
        let mut con = self.reads.clone();
        let mut cmd = self.library.call(Function::Stats);
        cmd.arg(&self.node).arg("0").arg("0").arg("0").arg("0");
        let v: Vec<u64> = call(&self.library, &mut con, &cmd).await?;
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Ok(Stats {
            connections: 0,
            sessions: at(0) as usize,
            sessions_dropped: at(1) as usize,
            queued: at(2) as usize,
            rooms: at(3) as usize,
            bans_active: at(4) as usize,
            matches_total: at(5),
            signals_relayed_total: at(6) + self.counters.unreported.load(Ordering::Relaxed),
            resumes_total: at(7),
            reports_total: at(8),
            bans_total: at(9),
        })
    }
}

/// A call of the library's function in `cmd`, bounded in time; if Redis has forgotten the
/// library (it restarted), it is loaded again and the call runs once more.
async fn call<T: redis::FromRedisValue>(
    library: &Library,
    con: &mut ConnectionManager,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let reply = bounded(cmd.query_async(con)).await;
    if matches!(&reply, Err(e) if scripts::is_not_loaded(e)) {
        bounded(library.load(con)).await?;
        return bounded(cmd.query_async(con)).await;
    }
    reply
}

/// An FCALL of `function` of `library` for `node` with the arguments every function takes
/// first (see `common.lua`), then `args`.
fn call_cmd<A: redis::ToRedisArgs>(
    library: &Library,
    node: &str,
    settings: &Settings,
    function: Function,
    args: A,
) -> redis::Cmd {
    let salt = format!("{:08x}", rand::rng().random::<u32>());
    let ms = |d: Duration| d.as_millis().to_string();
    let mut cmd = library.call(function);
    cmd.arg(node)
        .arg(ms(settings.session_ttl))
        .arg(ms(settings.resume_grace))
        .arg(ms(settings.interest_wait))
        .arg(salt)
        .arg(args);
    cmd
}

/// What every call needs: the settings, and the link (the node, the library, the counters).
pub(crate) struct Shared {
    settings: Settings,
    link: Arc<Link>,
}

impl Shared {
    /// An FCALL of `function` with the arguments every function takes first (see
    /// `common.lua`), then `args`.
    fn call_cmd<A: redis::ToRedisArgs>(&self, function: Function, args: A) -> redis::Cmd {
        call_cmd(&self.link.library, &self.link.node, &self.settings, function, args)
    }

    /// One round trip for a function call (counted): see [`call`].
    async fn query<T: redis::FromRedisValue>(
        &self,
        con: &mut ConnectionManager,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        self.link.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        self.link.counters.scripts.fetch_add(1, Ordering::Relaxed);
        call(&self.link.library, con, cmd).await
    }

    /// Runs one script on its own (heartbeat, timers) with the common arguments first, then
    /// `args`. Returns its text result and counts its round trip and the pairs it formed.
    async fn run(&self, con: &mut ConnectionManager, function: Function, args: &[&str]) -> redis::RedisResult<String> {
        match self.query::<(String, u64)>(con, &self.call_cmd(function, args)).await {
            Ok((text, matches)) => {
                self.link.counters.matches.fetch_add(matches, Ordering::Relaxed);
                Ok(text)
            }
            Err(e) => {
                self.link.counters.errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// The running backend of one node: the tasks to stop at shutdown.
pub struct Backend {
    tasks: Vec<JoinHandle<()>>,
}

impl Backend {
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// A Redis URL fit for logs: no password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The first half of starting: connects to Redis and subscribes to this node's channel, so
/// that nothing published for it is missed. Returns the link for the hub; [`Pending::spawn`]
/// then starts the tasks.
pub async fn connect(settings: Settings, sockets: Arc<Sockets>) -> Result<(Arc<Link>, Pending), BackendError> {
    let shown = redact(&settings.url);
    let url_error = |source| BackendError::Url { url: shown.clone(), source };
    let info = settings.url.as_str().into_connection_info().map_err(url_error)?;
    // RESP3, so that the subscription shares the connection (see subscriber.rs).
    let resp3 = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(resp3)).map_err(url_error)?;
    let (push_sender, pushes) = mpsc::unbounded_channel();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
        .set_push_sender(push_sender);
    let connect_error = |source| BackendError::Connect { url: shown.clone(), source };
    let mut manager = ConnectionManager::new_with_config(client, config).await.map_err(connect_error)?;
    let library = Library::new();
    library.load(&mut manager).await.map_err(|source| {
        // Redis echoes the start of the arguments, here the library's code: not worth showing.
        let text = source.to_string();
        let reason = text.split(", with args beginning with").next().unwrap_or_default().to_string();
        BackendError::Functions { url: shown.clone(), reason }
    })?;
    let node = format!("{:016x}", rand::rng().random::<u64>());
    subscriber::subscribe(&mut manager, &node).await.map_err(connect_error)?;
    let (commands, receiver) = mpsc::unbounded_channel();
    let link = Arc::new(Link {
        sockets,
        routes: Mutex::new(HashMap::new()),
        reads: manager.clone(),
        library,
        reporting: tokio::sync::Mutex::new(()),
        healthy: AtomicBool::new(true),
        subscribed: AtomicBool::new(true),
        commands,
        bans: Mutex::new(HashMap::new()),
        sessions: Mutex::new(HashMap::new()),
        counters: RedisCounters::default(),
        node,
    });
    let shared = Arc::new(Shared { settings, link: link.clone() });
    Ok((link, Pending { manager, shared, pushes, receiver }))
}

/// The longest pause between two tries of [`connect_patiently`].
const MAX_CONNECT_PAUSE: Duration = Duration::from_secs(5);

/// Connects like [`connect`], waiting for a Redis that cannot be reached yet (it may be
/// starting beside this node): tries again with pauses that grow to [`MAX_CONNECT_PAUSE`],
/// and says so in the log. Errors that waiting cannot mend (a bad URL, a refused password, a
/// Redis too old for function libraries) end it at once.
pub async fn connect_patiently(
    settings: Settings,
    sockets: Arc<Sockets>,
) -> Result<(Arc<Link>, Pending), BackendError> {
    let mut pause = Duration::from_millis(250);
    loop {
        match connect(settings.clone(), sockets.clone()).await {
            Err(BackendError::Connect { url, source }) if is_transient(&source) => {
                tracing::warn!(%url, error = %source, retry_in_ms = pause.as_millis() as u64, "cannot reach Redis yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_CONNECT_PAUSE);
            }
            other => return other,
        }
    }
}

/// Whether a Redis error may go away by itself: the server is down, unreachable, restarting or
/// still loading its data.
fn is_transient(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_connection_dropped()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::TryAgain | ServerErrorKind::MasterDown)
        )
}

/// A connected backend whose tasks are not started yet.
pub struct Pending {
    manager: ConnectionManager,
    shared: Arc<Shared>,
    pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    receiver: mpsc::UnboundedReceiver<Command>,
}

impl Pending {
    /// Beats the first heartbeat, then starts the workers, the subscriber and the timers.
    pub async fn spawn(self) -> Backend {
        let Pending { manager, shared, pushes, receiver } = self;
        liveness::first_beat(&shared, &mut manager.clone()).await;
        let mut tasks = vec![tokio::spawn(worker::run(shared.clone(), manager.clone(), receiver))];
        tasks.push(tokio::spawn(subscriber::run(shared.clone(), manager.clone(), pushes)));
        tasks.push(tokio::spawn(liveness::heartbeat(shared.clone(), manager.clone())));
        tasks.push(tokio::spawn(liveness::ticker(shared, manager)));
        Backend { tasks }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://user:secret@db:6379/0"), "redis://***@db:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}

//! The accept loop: takes an already-bound listener (tests bind 127.0.0.1:0), spawns one task
//! per connection, and on shutdown stops accepting, closes every socket with 1012 and waits
//! a moment for them to go. Beside it runs the STUN responder, if given a UDP socket.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rand::RngExt;
use strangers_matchmaker::{Config as CoreConfig, Matchmaker};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::community::Community;
use crate::config::Config;
use crate::conn::{self, RateSettings};
use crate::http;
use crate::hub::{Backend, Hub};
use crate::memory::Memory;
use crate::redis;
use crate::sockets::{ConnLimits, Sockets};
use crate::stun;
use crate::turn::IceConfig;
use crate::ws::plain::PlainWs;
use crate::ws::tls::TungsteniteWs;

/// How long shutdown waits for sockets to close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of signal data held for a session whose socket is down.
const PENDING_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The socket layer a configuration describes.
fn build_sockets(config: &Config, community: Community) -> Arc<Sockets> {
    let ice = IceConfig {
        stun_urls: config.stun_urls.clone(),
        turn_urls: config.turn_urls.clone(),
        turn_secret: config.turn_secret.clone().filter(|_| !config.turn_urls.is_empty()),
        turn_ttl_secs: config.turn_ttl,
    };
    Sockets::new(ice, community, ConnLimits { per_ip: config.max_conns_per_ip, total: config.max_conns })
}

/// The in-memory matchmaker a configuration describes.
fn build_matchmaker(config: &Config) -> Matchmaker {
    Matchmaker::new(CoreConfig {
        resume_grace: config.resume_grace(),
        interest_wait: config.interest_wait(),
        pending_max_msgs: config.max_pending_signals,
        pending_max_bytes: PENDING_MAX_BYTES,
        report_threshold: config.report_threshold,
        report_window: Duration::from_secs(config.report_window),
        ban_duration: Duration::from_secs(config.ban_duration),
        seed: rand::rng().random(),
    })
}

/// The tasks of the backend in use, stopped at shutdown.
enum BackendTasks {
    Memory(tokio::task::JoinHandle<()>),
    Redis(redis::Backend),
}

/// What the Redis backend needs from the configuration.
fn redis_settings(config: &Config, url: &str) -> redis::Settings {
    redis::Settings {
        url: url.to_string(),
        node_timeout: config.node_timeout(),
        batch_window: config.redis_batch_window(),
        signal_batch_window: config.redis_signal_batch_window(),
        session_ttl: session_ttl(config),
        resume_grace: config.resume_grace(),
        interest_wait: config.interest_wait(),
        max_pending_signals: config.max_pending_signals,
        max_pending_bytes: PENDING_MAX_BYTES,
        report_threshold: config.report_threshold,
        report_window: Duration::from_secs(config.report_window),
        ban_duration: Duration::from_secs(config.ban_duration),
    }
}

/// TTL of a session's keys in Redis, at least; the node holding a session extends it every
/// heartbeat-refresh, so only the keys of sessions no node holds any more run out.
const SESSION_TTL: Duration = Duration::from_secs(600);

/// The TTL of a session's keys: outlives its grace, and three refreshes (a long
/// `--node-timeout` spaces them out).
fn session_ttl(config: &Config) -> Duration {
    SESSION_TTL.max(config.resume_grace() * 2).max(redis::refresh_interval(config.node_timeout()) * 3)
}

/// The TCP peer of a connection, and whether it is a reverse proxy whose `X-Real-IP` names
/// the client.
#[derive(Debug, Clone, Copy)]
struct Peer {
    ip: IpAddr,
    trusted: bool,
}

impl Peer {
    /// The address that counts for caps, reports and bans.
    fn client(self, real_ip: Option<IpAddr>) -> IpAddr {
        match real_ip {
            Some(real) if self.trusted => real,
            _ => self.ip,
        }
    }
}

/// Serves one plain TCP connection: HTTP, then our own WebSocket codec after an upgrade. The
/// connection's long life runs in a task of its own, so that nothing of this one stays.
async fn serve_plain(tcp: TcpStream, peer: Peer, hub: Arc<Hub>, rate: RateSettings, guard: TaskGuard) {
    let Some(upgraded) = http::front_door(tcp, &hub).await else { return };
    let ip = peer.client(upgraded.real_ip);
    let ws = match PlainWs::new(upgraded.stream, &upgraded.leftover) {
        Ok(ws) => ws,
        Err(e) => return debug!(%ip, error = %e, "cannot register the upgraded socket"),
    };
    drop(upgraded.leftover);
    if let Some(connection) = conn::admit(hub, ws, ip, rate).await {
        tokio::spawn(Tracked { future: connection, _guard: guard });
    }
}

/// Serves one TLS connection: handshake, HTTP, then tungstenite after an upgrade.
async fn serve_tls(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: Peer,
    hub: Arc<Hub>,
    rate: RateSettings,
    guard: TaskGuard,
) {
    let ip = peer.ip;
    let stream = match tokio::time::timeout(http::HEAD_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return debug!(%ip, error = %e, "TLS handshake failed"),
        Err(_) => return debug!(%ip, "TLS handshake timed out"),
    };
    let Some(upgraded) = http::front_door(stream, &hub).await else { return };
    let ip = peer.client(upgraded.real_ip);
    let ws = TungsteniteWs::new(upgraded.stream, upgraded.leftover).await;
    if let Some(connection) = conn::admit(hub, ws, ip, rate).await {
        tokio::spawn(Tracked { future: connection, _guard: guard });
    }
}

/// Serves `listener`, and STUN Binding requests on `stun` if given, until `shutdown` completes.
/// The sockets come bound (the binary binds `--listen` and `--stun-listen`), so tests can bind
/// port 0 and know the address.
pub async fn run(
    listener: TcpListener,
    stun: Option<UdpSocket>,
    config: Config,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let community = config.community().map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    let sockets = build_sockets(&config, community);
    let (hub, backend) = match &config.redis {
        None => {
            let memory = Memory::new(build_matchmaker(&config), sockets.clone());
            let timers = tokio::spawn(memory.clone().run_timers());
            (Hub::new(sockets.clone(), Backend::Memory(memory)), BackendTasks::Memory(timers))
        }
        Some(url) => {
            let (link, pending) = tokio::select! {
                connected = redis::connect_patiently(redis_settings(&config, url), sockets.clone()) => connected?,
                // Asked to stop while Redis was still out of reach.
                () = &mut shutdown => return Ok(()),
            };
            info!(node = %link.node, redis = %redis::redact(url), "sharing pairing state through Redis");
            let tasks = pending.spawn().await;
            (Hub::new(sockets.clone(), Backend::Redis(link)), BackendTasks::Redis(tasks))
        }
    };
    let sweeper = tokio::spawn(sockets.clone().run_sweeper(config.ping_interval(), config.idle_timeout()));
    let rate = RateSettings { per_second: config.rate_limit, burst: config.rate_burst() };
    let tasks = TaskCount::default();
    let stun = stun.map(|socket| tokio::spawn(stun::serve(socket, hub.clone())));
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let ip = peer.ip().to_canonical();
                    let peer = Peer { ip, trusted: config.trusted_proxies.contains(&ip) };
                    let hub = hub.clone();
                    match tls.clone() {
                        None => { tokio::spawn(serve_plain(tcp, peer, hub, rate, tasks.guard())); }
                        Some(acceptor) => { tokio::spawn(serve_tls(acceptor, tcp, peer, hub, rate, tasks.guard())); }
                    }
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    info!(open = hub.open_connections(), "shutting down: closing sockets with 1012");
    drop(listener);
    if let Some(stun) = stun {
        // Nothing to drain for UDP: stop now, and wait so that the socket is closed on return.
        stun.abort();
        let _ = stun.await;
    }
    hub.shut_down();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, tasks.all_done()).await;
    if drained.is_err() {
        // They end with the runtime.
        warn!(left = tasks.open(), "sockets still open after the drain timeout; leaving them");
    }
    sweeper.abort();
    match backend {
        BackendTasks::Memory(timers) => timers.abort(),
        BackendTasks::Redis(tasks) => tasks.stop(),
    }
    Ok(())
}

/// Counts the connection tasks still running, so that shutdown can wait for them. Lighter
/// than a `JoinSet`, which keeps an entry per task, and it lets a task hand its count on to
/// the task it spawns.
#[derive(Clone, Default)]
struct TaskCount(Arc<TaskCountInner>);

#[derive(Default)]
struct TaskCountInner {
    open: AtomicUsize,
    all_done: Notify,
}

/// Held by a running task; the count drops when the last holder of a connection's guard ends.
struct TaskGuard(Arc<TaskCountInner>);

impl TaskCount {
    fn guard(&self) -> TaskGuard {
        self.0.open.fetch_add(1, Ordering::SeqCst);
        TaskGuard(self.0.clone())
    }

    fn open(&self) -> usize {
        self.0.open.load(Ordering::SeqCst)
    }

    async fn all_done(&self) {
        loop {
            let notified = self.0.all_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.all_done.notify_waiters();
        }
    }
}

/// A connection's task together with its guard.
struct Tracked<F> {
    future: F,
    _guard: TaskGuard,
}

impl<F: Future + Unpin> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.get_mut().future).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn session_keys_outlive_their_grace_and_three_ttl_refreshes() {
        let ttl = |args: &[&str]| session_ttl(&Config::parse_from([&["signal-server"], args].concat()));
        assert_eq!(ttl(&[]), SESSION_TTL, "defaults: 10 minutes");
        assert_eq!(ttl(&["--resume-grace", "900"]), Duration::from_secs(1800));
        // A one-hour node timeout refreshes every 10 hours.
        assert_eq!(ttl(&["--node-timeout", "3600"]), Duration::from_secs(3 * 36_000));
    }
}

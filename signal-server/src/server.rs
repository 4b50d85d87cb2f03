//! The accept loop: takes an already-bound listener (tests bind 127.0.0.1:0), spawns one task
//! per connection, and on shutdown stops accepting, closes every socket with 1012 and waits
//! a moment for them to go.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use strangers_matchmaker::{Config as CoreConfig, Matchmaker};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::conn::{self, RateSettings};
use crate::http;
use crate::hub::{ConnLimits, Hub};
use crate::turn::IceConfig;
use crate::ws::plain::PlainWs;
use crate::ws::tls::TungsteniteWs;

/// How long shutdown waits for sockets to close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the hub a configuration describes.
pub fn build_hub(config: &Config) -> Arc<Hub> {
    let core = Matchmaker::new(CoreConfig {
        resume_grace: config.resume_grace(),
        interest_wait: config.interest_wait(),
        pending_max_msgs: config.max_pending_signals,
        pending_max_bytes: 4 * 1024 * 1024,
        report_threshold: config.report_threshold,
        report_window: Duration::from_secs(config.report_window),
        ban_duration: Duration::from_secs(config.ban_duration),
        seed: rand::rng().random(),
    });
    let ice = IceConfig {
        stun_urls: config.stun_urls.clone(),
        turn_urls: config.turn_urls.clone(),
        turn_secret: config.turn_secret.clone().filter(|_| !config.turn_urls.is_empty()),
        turn_ttl_secs: config.turn_ttl,
    };
    Hub::new(core, ice, ConnLimits { per_ip: config.max_conns_per_ip, total: config.max_conns })
}

/// Serves one plain TCP connection: HTTP, then our own WebSocket codec after an upgrade.
async fn serve_plain(tcp: TcpStream, ip: IpAddr, hub: Arc<Hub>, rate: RateSettings) {
    // Boxed: the HTTP state is freed before the WebSocket's long life starts.
    if let Some((tcp, leftover)) = Box::pin(http::front_door(tcp, &hub)).await {
        conn::serve(hub, PlainWs::new(tcp, &leftover), ip, rate).await;
    }
}

/// Serves one TLS connection: handshake, HTTP, then tungstenite after an upgrade.
async fn serve_tls(acceptor: TlsAcceptor, tcp: TcpStream, ip: IpAddr, hub: Arc<Hub>, rate: RateSettings) {
    let stream = match tokio::time::timeout(http::HEAD_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return debug!(%ip, error = %e, "TLS handshake failed"),
        Err(_) => return debug!(%ip, "TLS handshake timed out"),
    };
    if let Some((stream, leftover)) = Box::pin(http::front_door(stream, &hub)).await {
        let ws = TungsteniteWs::new(stream, leftover).await;
        conn::serve(hub, ws, ip, rate).await;
    }
}

/// Serves `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let hub = build_hub(&config);
    let timers = tokio::spawn(hub.clone().run_timers());
    let sweeper = tokio::spawn(hub.clone().run_sweeper(config.ping_interval(), config.idle_timeout()));
    let rate = RateSettings { per_second: config.rate_limit, burst: config.rate_burst() };
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let ip = peer.ip().to_canonical();
                    let hub = hub.clone();
                    match tls.clone() {
                        None => { tasks.spawn(serve_plain(tcp, ip, hub, rate)); }
                        Some(acceptor) => { tasks.spawn(serve_tls(acceptor, tcp, ip, hub, rate)); }
                    }
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    info!(open = hub.open_connections(), "shutting down: closing sockets with 1012");
    drop(listener);
    hub.shut_down();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(left = tasks.len(), "sockets still open after the drain timeout; dropping them");
        tasks.abort_all();
    }
    timers.abort();
    sweeper.abort();
    Ok(())
}

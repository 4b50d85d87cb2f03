//! `signal-server`: flags in, server running until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use signal_server::{listen, run, tls, Config};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let mut config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr; stdout carries only the "listening on" line scripts read.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if config.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    }
    if let Err(problem) = config.validate().and_then(|()| config.load_community()) {
        anyhow::bail!("invalid configuration: {problem}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

/// Binds the sockets the configuration asks for and serves until a shutdown signal.
async fn serve(config: Config) -> anyhow::Result<()> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = listen::tcp(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    let stun = match config.stun_listen {
        None => None,
        Some(at) => {
            let socket = listen::udp(at).with_context(|| format!("cannot listen for STUN on udp {at}"))?;
            info!(addr = %socket.local_addr()?, "answering STUN Binding requests");
            if config.stun_urls.is_empty() {
                warn!("--stun-listen without --stun-url: clients are not told about it (pass stun:PUBLIC_HOST:PORT)");
            }
            Some(socket)
        }
    };
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    info!(%addr, "listening: {scheme}://{addr}/ws, /healthz, /metrics");
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on {addr}");
    run(listener, stun, config, tls, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

//! Memory per idle connection: opens sockets in steps up to each requested count; every
//! socket says `hello`, gets `welcome` and then idles (answering pings). At each step the
//! server's resident memory is read, and (RSS - baseline RSS) / connections is reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{self, Ws};
use crate::stats::thousands;
use crate::target::Target;

/// The target for memory per idle connection, in bytes.
const TARGET_BYTES: f64 = 2048.0;

/// Settings of the idle-memory run.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Connection counts to measure at, rising (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,15000,19900")]
    pub counts: Vec<usize>,
    /// Milliseconds to let the server settle before each memory reading.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    /// Handshakes in flight at once while opening sockets.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

/// One memory reading.
#[derive(Debug, Clone, Copy)]
pub struct IdlePoint {
    pub connections: usize,
    pub rss_bytes: u64,
    /// (RSS - baseline) / connections.
    pub bytes_per_conn: f64,
    /// Growth since the previous reading, per connection added.
    pub marginal_bytes_per_conn: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct IdleReport {
    pub baseline_rss_bytes: u64,
    pub points: Vec<IdlePoint>,
    /// Idle sockets the server closed or lost during the run (expected: none).
    pub dropped: u64,
}

pub async fn run(target: &mut Target, args: &IdleArgs) -> anyhow::Result<IdleReport> {
    if args.counts.is_empty() || args.counts.windows(2).any(|w| w[0] >= w[1]) || args.counts[0] == 0 {
        bail!("--counts must be positive and rising, e.g. 1000,5000,19900");
    }
    if target.pid.is_none() {
        bail!("memory per connection needs the server's process id: pass --server-pid");
    }
    let settle = Duration::from_millis(args.settle_ms);
    tokio::time::sleep(settle).await;
    let rss = |target: &Target| -> anyhow::Result<u64> {
        target.rss_bytes()?.context("the server's process id is known, checked above")
    };
    let baseline = rss(target)?;
    let dropped = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut idle = JoinSet::new();
    let mut points: Vec<IdlePoint> = Vec::new();
    let concurrency = args.connect_concurrency.max(1);
    for &count in &args.counts {
        let mut connecting = JoinSet::new();
        let mut opened = idle.len();
        while opened < count || !connecting.is_empty() {
            if opened < count && connecting.len() < concurrency {
                let (addr, url) = (target.addr, target.url.clone());
                connecting.spawn(async move { client::connect_hello(addr, &url).await });
                opened += 1;
                continue;
            }
            let ws = connecting
                .join_next()
                .await
                .expect("the set is not empty")
                .context("a connecting task panicked")?
                .with_context(|| format!("opening idle socket {} of {count}", idle.len() + 1))?;
            idle.spawn(idle_socket(ws, stop_rx.clone(), dropped.clone()));
        }
        tokio::time::sleep(settle).await;
        target.check_alive()?;
        let rss_bytes = rss(target)?;
        let marginal_bytes_per_conn =
            points.last().map(|prev| (rss_bytes as f64 - prev.rss_bytes as f64) / (count - prev.connections) as f64);
        points.push(IdlePoint {
            connections: count,
            rss_bytes,
            bytes_per_conn: (rss_bytes as f64 - baseline as f64) / count as f64,
            marginal_bytes_per_conn,
        });
    }
    let dropped = dropped.load(Ordering::Relaxed);
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), idle.shutdown()).await;
    Ok(IdleReport { baseline_rss_bytes: baseline, points, dropped })
}

/// Holds a socket open, reading (so pings get their pongs) until told to stop.
async fn idle_socket(mut ws: Ws, mut stop: watch::Receiver<bool>, dropped: Arc<AtomicU64>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            frame = ws.next() => if !matches!(frame, Some(Ok(_))) {
                dropped.fetch_add(1, Ordering::Relaxed);
                return;
            },
        }
    }
}

/// Bytes as KiB, or MiB when large.
fn kib(bytes: f64) -> String {
    if bytes.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    } else {
        format!("{:.2} KiB", bytes / 1024.0)
    }
}

impl IdleReport {
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![("server RSS, no connections".into(), kib(self.baseline_rss_bytes as f64))];
        for p in &self.points {
            let verdict = if p.bytes_per_conn <= TARGET_BYTES { "meets" } else { "misses" };
            let marginal = p.marginal_bytes_per_conn.map(|m| format!(", {} per added one", kib(m))).unwrap_or_default();
            rows.push((
                format!("per idle connection at {}", thousands(p.connections as u64)),
                format!(
                    "{} ({verdict} the 2 KiB target; RSS {:.1} MiB{marginal})",
                    kib(p.bytes_per_conn),
                    p.rss_bytes as f64 / (1024.0 * 1024.0)
                ),
            ));
        }
        if self.dropped > 0 {
            rows.push(("idle sockets lost".into(), thousands(self.dropped)));
        }
        rows
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "points": self.points.iter().map(|p| json!({
                "connections": p.connections,
                "rss_bytes": p.rss_bytes,
                "bytes_per_conn": p.bytes_per_conn.round(),
                "marginal_bytes_per_conn": p.marginal_bytes_per_conn.map(f64::round),
            })).collect::<Vec<_>>(),
            "dropped": self.dropped,
        })
    }
}

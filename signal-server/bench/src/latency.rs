//! Relay latency: a probe pair of clients, matched with each other, bounces a stamped ICE
//! candidate back and forth; each leg is one sample, from the sender's `send` to the
//! partner's receipt, on the bench's one clock. Measured first on an otherwise idle server,
//! then while the cycle load runs.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::client::{self, Incoming, Ws};
use crate::cycles::{self, CycleArgs, CycleReport};
use crate::payload::{self, Payloads};
use crate::stats::Latency;
use crate::target::Target;
use strangers_protocol::ClientMsg;

/// Settings of the latency probe.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Samples taken on the idle server (two per round trip).
    #[arg(long, default_value_t = 5000)]
    pub samples: usize,
    /// Pause between round trips, in microseconds (the timer's grain is about 1 ms).
    #[arg(long, default_value_t = 1000)]
    pub probe_interval_us: u64,
}

/// What the latency run measured.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    pub idle: Option<Latency>,
    pub loaded: CycleReport,
}

/// Two clients matched with each other, taking turns to send.
pub struct ProbePair {
    a: Ws,
    b: Ws,
    interval: Duration,
    payloads: Payloads,
}

impl ProbePair {
    /// Connects two clients, `a` to `first` and `b` to `second` (the same server, or two nodes
    /// sharing Redis), and has them matched. Call it while no one else is queued, or the
    /// server may pair a probe with someone else.
    pub async fn connect(first: &Target, second: &Target, interval: Duration) -> anyhow::Result<ProbePair> {
        let mut a = client::connect_hello(first.addr, &first.url).await?;
        let mut b = client::connect_hello(second.addr, &second.url).await?;
        client::send(&mut a, ClientMsg::Find.to_json()).await?;
        client::send(&mut b, ClientMsg::Find.to_json()).await?;
        for ws in [&mut a, &mut b] {
            loop {
                match client::recv(ws).await {
                    Incoming::Matched { .. } => break,
                    Incoming::Queued => {}
                    other => bail!("the probe expected to be matched, got {other:?}"),
                }
            }
        }
        Ok(ProbePair { a, b, interval: interval.max(Duration::from_micros(1)), payloads: Payloads::new() })
    }

    /// Bounces signals until `limit` samples are taken or `stop` turns true. Returns the
    /// samples, in nanoseconds.
    pub async fn run(&mut self, limit: Option<usize>, stop: watch::Receiver<bool>) -> anyhow::Result<Vec<u64>> {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut samples = Vec::with_capacity(limit.unwrap_or(16 * 1024));
        let mut round = 0;
        while limit.is_none_or(|n| samples.len() < n) && !*stop.borrow() {
            ticker.tick().await;
            samples.push(one_way(&mut self.a, &mut self.b, &self.payloads, round).await?);
            samples.push(one_way(&mut self.b, &mut self.a, &self.payloads, round).await?);
            round += 1;
        }
        if let Some(n) = limit {
            samples.truncate(n);
        }
        Ok(samples)
    }
}

/// Sends one stamped candidate from `from` and waits for `to` to receive it.
async fn one_way(from: &mut Ws, to: &mut Ws, payloads: &Payloads, round: usize) -> anyhow::Result<u64> {
    client::send(from, payloads.candidate(round, payload::now_ns())).await?;
    loop {
        match client::recv(to).await {
            Incoming::Signal { sent_ns: Some(sent), .. } => return Ok(payload::now_ns().saturating_sub(sent)),
            Incoming::Queued | Incoming::Other => {}
            other => bail!("the probe expected its partner's signal, got {other:?}"),
        }
    }
}

/// The idle phase, then the loaded phase, on one server; with `other`, the probe's second
/// client is on that server (cross-node relay) while the load stays on `target`.
pub async fn run(
    target: &mut Target,
    other: Option<&Target>,
    probe: &ProbeArgs,
    load: &CycleArgs,
) -> anyhow::Result<LatencyReport> {
    let interval = Duration::from_micros(probe.probe_interval_us);
    let mut pair = ProbePair::connect(target, other.unwrap_or(target), interval).await?;
    let (_never, idle_stop) = watch::channel(false);
    let idle = Latency::from_ns(pair.run(Some(probe.samples), idle_stop).await?);
    target.check_alive()?;
    let loaded = cycles::run(target, load, Some(pair)).await?;
    Ok(LatencyReport { idle, loaded })
}

impl LatencyReport {
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = Vec::new();
        if let Some(idle) = &self.idle {
            rows.push(("relay latency, idle server".into(), idle.describe()));
        }
        if let Some(probe) = &self.loaded.probe {
            rows.push((
                format!("relay latency, probe under load ({} cycles/s)", self.loaded.cycles_per_second().round()),
                probe.describe(),
            ));
        }
        if let Some(relay) = &self.loaded.relay {
            rows.push(("relay latency, all cycle signals".into(), relay.describe()));
        }
        rows
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "idle": self.idle.map(Latency::to_json),
            "probe_under_load": self.loaded.probe.map(Latency::to_json),
            "cycle_signals_under_load": self.loaded.relay.map(Latency::to_json),
            "load": self.loaded.to_json(),
        })
    }
}

//! The match-cycle load: many clients, each looping find, matched, offer/answer, eight ICE
//! candidates each way, then `next` from the initiator (the partner gets `partner_left` and
//! finds again). The server pairs whoever is queued, so a client plays its part with whoever
//! it is matched with. Server CPU per cycle is the server's CPU time over the measured window
//! divided by the cycles completed in it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use futures_util::StreamExt;
use serde_json::json;
use strangers_protocol::{ClientMsg, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Incoming, Ws};
use crate::latency::ProbePair;
use crate::payload::{self, Payloads, CANDIDATES_PER_SIDE};
use crate::procfs;
use crate::stats::{round1, thousands, Latency};
use crate::target::Target;

/// Settings of the cycle load.
#[derive(Debug, Clone, Args)]
pub struct CycleArgs {
    /// Concurrent pair loops (twice as many connections).
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of load before the window opens.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Cycles per second to offer in all [default: as fast as the clients go].
    #[arg(long, value_name = "CYCLES_PER_SEC")]
    pub cycle_rate: Option<f64>,
}

/// What one cycle run measured.
#[derive(Debug, Clone)]
pub struct CycleReport {
    pub connections: usize,
    /// The cycle rate offered, if the load was paced.
    pub offered_rate: Option<f64>,
    pub window: Duration,
    pub cycles: u64,
    pub matches: u64,
    pub server_cpu_us: Option<u64>,
    /// Of it, the server process's time in the kernel (only when it is the one process).
    pub server_kernel_us: Option<u64>,
    /// Of it, each companion process's CPU (redis-server, other nodes), by process id.
    pub companion_cpu_us: Vec<(u32, u64)>,
    pub bench_cpu_us: u64,
    pub server_errors: u64,
    /// Every signal relayed during the window, from send to receipt.
    pub relay: Option<Latency>,
    /// The probe pair's round trips during the window, when a probe ran.
    pub probe: Option<Latency>,
}

/// Counters the clients share.
#[derive(Default)]
struct Shared {
    measuring: AtomicBool,
    cycles: AtomicU64,
    matches: AtomicU64,
    errors: AtomicU64,
}

/// One side of one match, as a client sees it.
#[derive(Default)]
struct Match {
    initiator: bool,
    got_sdp: bool,
    got_candidates: usize,
    done: bool,
}

impl Match {
    fn complete(&self) -> bool {
        self.got_sdp && self.got_candidates == CANDIDATES_PER_SIDE
    }
}

/// Runs the load against `target`; with a probe pair, also samples its relay latency while
/// the load runs (the probe is matched before any load client queues, so it stays apart).
pub async fn run(target: &mut Target, args: &CycleArgs, mut probe: Option<ProbePair>) -> anyhow::Result<CycleReport> {
    if args.pairs == 0 || args.seconds <= 0.0 || args.warmup < 0.0 || args.cycle_rate.is_some_and(|r| r <= 0.0) {
        bail!("--pairs, --seconds and --cycle-rate must be positive and --warmup not negative");
    }
    let connections = args.pairs * 2;
    let clients = connect_all(target, connections).await?;
    let shared = Arc::new(Shared::default());
    let payloads = Arc::new(Payloads::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // Every cycle takes two trips to the queue, so each client may go once per this period.
    let period = args.cycle_rate.map(|rate| Duration::from_secs_f64(connections as f64 / (2.0 * rate)));
    let start = Instant::now();
    for (i, ws) in clients.into_iter().enumerate() {
        // Staggered first turns, so paced clients do not all queue at once.
        let pace = Pace { period, next: start + period.unwrap_or_default().mul_f64(i as f64 / connections as f64) };
        tasks.spawn(client_loop(ws, shared.clone(), payloads.clone(), pace, stop_rx.clone()));
    }
    let probe_task = probe.take().map(|mut pair| {
        let stop = stop_rx.clone();
        let window = Duration::from_secs_f64(args.warmup);
        tokio::spawn(async move {
            // The probe starts with the window, so its samples all come from under load.
            tokio::time::sleep(window).await;
            pair.run(None, stop).await
        })
    });

    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    target.check_alive()?;
    let started = Instant::now();
    let (cycles0, matches0) = (shared.cycles.load(Ordering::Relaxed), shared.matches.load(Ordering::Relaxed));
    let server_cpu0 = target.cpu_micros()?;
    let server_kernel0 = if target.companions.is_empty() { target.kernel_cpu_micros()? } else { None };
    let companions0 = target.companion_cpu_micros()?;
    let bench_cpu0 = procfs::cpu_micros(std::process::id())?;
    shared.measuring.store(true, Ordering::Relaxed);

    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;

    let server_cpu1 = target.cpu_micros()?;
    let server_kernel1 = if target.companions.is_empty() { target.kernel_cpu_micros()? } else { None };
    let companions1 = target.companion_cpu_micros()?;
    let bench_cpu1 = procfs::cpu_micros(std::process::id())?;
    let (cycles1, matches1) = (shared.cycles.load(Ordering::Relaxed), shared.matches.load(Ordering::Relaxed));
    let window = started.elapsed();
    shared.measuring.store(false, Ordering::Relaxed);
    stop_tx.send_replace(true);
    target.check_alive()?;

    let mut samples = Vec::new();
    let joined = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(result) = tasks.join_next().await {
            samples.extend(result.context("a client task panicked")??);
        }
        anyhow::Ok(())
    })
    .await;
    joined.context("clients did not stop within 10 s")??;
    let probe = match probe_task {
        Some(task) => Latency::from_ns(task.await.context("the probe task panicked")??),
        None => None,
    };
    Ok(CycleReport {
        connections,
        offered_rate: args.cycle_rate,
        window,
        cycles: cycles1 - cycles0,
        matches: matches1 - matches0,
        server_cpu_us: server_cpu0.zip(server_cpu1).map(|(a, b)| b - a),
        server_kernel_us: server_kernel0.zip(server_kernel1).map(|(a, b)| b - a),
        companion_cpu_us: companions0.iter().zip(&companions1).map(|((pid, a), (_, b))| (*pid, b - a)).collect(),
        bench_cpu_us: bench_cpu1 - bench_cpu0,
        server_errors: shared.errors.load(Ordering::Relaxed),
        relay: Latency::from_ns(samples),
        probe,
    })
}

/// Opens `count` sockets that have said hello, a few hundred handshakes at a time.
pub async fn connect_all(target: &Target, count: usize) -> anyhow::Result<Vec<Ws>> {
    let mut set = JoinSet::new();
    let mut clients = Vec::with_capacity(count);
    // Spread over the nodes, one after the other (with several, most pairs span two nodes).
    let nodes = target.nodes();
    for i in 0..count {
        if set.len() >= 256 {
            clients.push(set.join_next().await.expect("the set is not empty")??);
        }
        let (addr, url) = nodes[i % nodes.len()].clone();
        set.spawn(async move { client::connect_hello(addr, &url).await });
    }
    while let Some(ws) = set.join_next().await {
        clients.push(ws??);
    }
    Ok(clients)
}

/// One client's life: cycles with whoever the server pairs it with, until told to stop.
/// Returns the relay latencies (ns) it saw while the window was open.
async fn client_loop(
    mut ws: Ws,
    shared: Arc<Shared>,
    payloads: Arc<Payloads>,
    mut pace: Pace,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<u64>> {
    let mut samples = Vec::new();
    let mut current = Match::default();
    if !pace.wait(&mut stop).await {
        return Ok(samples);
    }
    client::send(&mut ws, ClientMsg::Find.to_json()).await?;
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = ws.next() => frame,
        };
        let incoming = match frame {
            Some(Ok(Message::Text(text))) => client::classify(text.as_str()),
            Some(Ok(Message::Close(_))) | None => bail!("the server closed a client's socket"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("a client's socket failed"),
        };
        match incoming {
            Incoming::Matched { initiator } => {
                current = Match { initiator, ..Match::default() };
                if initiator {
                    shared.matches.fetch_add(1, Ordering::Relaxed);
                    client::send(&mut ws, payloads.offer(payload::now_ns())).await?;
                    send_candidates(&mut ws, &payloads).await?;
                }
            }
            Incoming::Signal { kind, sent_ns } => {
                if let Some(sent) = sent_ns.filter(|_| shared.measuring.load(Ordering::Relaxed)) {
                    samples.push(payload::now_ns().saturating_sub(sent));
                }
                match kind {
                    SignalKind::Offer => {
                        current.got_sdp = true;
                        client::send(&mut ws, payloads.answer(payload::now_ns())).await?;
                        send_candidates(&mut ws, &payloads).await?;
                    }
                    SignalKind::Answer => current.got_sdp = true,
                    SignalKind::Candidate => current.got_candidates += 1,
                    SignalKind::Restart => {}
                }
                if current.initiator && !current.done && current.complete() {
                    current.done = true;
                    if !pace.wait(&mut stop).await {
                        break;
                    }
                    client::send(&mut ws, ClientMsg::Next.to_json()).await?;
                }
            }
            Incoming::PartnerLeft => {
                if !current.initiator && current.complete() {
                    shared.cycles.fetch_add(1, Ordering::Relaxed);
                }
                current = Match::default();
                if !pace.wait(&mut stop).await {
                    break;
                }
                client::send(&mut ws, ClientMsg::Find.to_json()).await?;
            }
            Incoming::Error { .. } => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::Closed => bail!("the server closed a client's socket"),
            Incoming::Welcome | Incoming::Queued | Incoming::Other => {}
        }
    }
    Ok(samples)
}

/// Spaces one client's trips to the queue when a cycle rate is set.
struct Pace {
    period: Option<Duration>,
    next: Instant,
}

impl Pace {
    /// Waits for this client's next turn. False when told to stop meanwhile.
    async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let Some(period) = self.period else { return true };
        let now = Instant::now();
        if self.next > now {
            tokio::select! {
                () = tokio::time::sleep_until(self.next.into()) => {}
                _ = stop.changed() => return false,
            }
        }
        // A client running late starts afresh rather than catching up in a burst.
        self.next = self.next.max(now) + period;
        true
    }
}

async fn send_candidates(ws: &mut Ws, payloads: &Payloads) -> anyhow::Result<()> {
    for i in 0..CANDIDATES_PER_SIDE {
        client::send(ws, payloads.candidate(i, payload::now_ns())).await?;
    }
    Ok(())
}

impl CycleReport {
    pub fn server_us_per_cycle(&self) -> Option<f64> {
        let cpu = self.server_cpu_us?;
        (self.cycles > 0).then(|| cpu as f64 / self.cycles as f64)
    }

    pub fn cycles_per_second(&self) -> f64 {
        self.cycles as f64 / self.window.as_secs_f64()
    }

    pub fn rows(&self) -> Vec<(String, String)> {
        let secs = self.window.as_secs_f64();
        let mut rows = vec![
            ("connections".into(), thousands(self.connections as u64)),
            (
                "offered load".into(),
                self.offered_rate.map_or("as fast as the clients go".into(), |r| format!("{r:.0} cycles per second")),
            ),
            ("measured window".into(), format!("{secs:.1} s")),
            ("full cycles".into(), thousands(self.cycles)),
            ("cycles per second".into(), format!("{:.0}", self.cycles as f64 / secs)),
            ("matches per second".into(), format!("{:.0}", self.matches as f64 / secs)),
        ];
        match (self.server_cpu_us, self.server_us_per_cycle()) {
            (Some(cpu), Some(per)) => {
                let verdict = if per <= 64.0 { "meets" } else { "misses" };
                rows.push(("server CPU per cycle".into(), format!("{per:.1} us ({verdict} the 64 us target)")));
                if let Some(kernel) = self.server_kernel_us {
                    let per_kernel = kernel as f64 / self.cycles as f64;
                    rows.push(("  of which the server's kernel time".into(), format!("{per_kernel:.1} us")));
                }
                rows.push(("server CPU use".into(), format!("{:.0}% of one core", cpu as f64 / secs / 1e4)));
            }
            _ => rows.push(("server CPU per cycle".into(), "n/a (pass --server-pid)".into())),
        }
        if self.cycles > 0 {
            rows.push((
                "bench CPU per cycle".into(),
                format!("{:.1} us", self.bench_cpu_us as f64 / self.cycles as f64),
            ));
        }
        if let Some(relay) = &self.relay {
            rows.push(("relay latency, all cycle signals".into(), relay.describe()));
        }
        if let Some(probe) = &self.probe {
            rows.push(("relay latency, probe under load".into(), probe.describe()));
        }
        if self.server_errors > 0 {
            rows.push(("server error messages".into(), thousands(self.server_errors)));
        }
        rows
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "connections": self.connections,
            "offered_cycles_per_s": self.offered_rate,
            "window_s": round1(self.window.as_secs_f64()),
            "cycles": self.cycles,
            "cycles_per_s": round1(self.cycles as f64 / self.window.as_secs_f64()),
            "matches_per_s": round1(self.matches as f64 / self.window.as_secs_f64()),
            "server_cpu_us": self.server_cpu_us,
            "server_cpu_us_per_cycle": self.server_us_per_cycle().map(round1),
            "server_kernel_us": self.server_kernel_us,
            "bench_cpu_us": self.bench_cpu_us,
            "server_errors": self.server_errors,
            "relay_latency": self.relay.map(Latency::to_json),
            "probe_latency_under_load": self.probe.map(Latency::to_json),
        })
    }
}

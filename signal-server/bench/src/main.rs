//! `signal-bench`: drives the real `signal-server` binary over loopback WebSockets and reports
//! server CPU per match cycle, server memory per idle connection and relay latency. It spawns
//! the server itself (and kills it on exit, error or Ctrl-C) or attaches to a running one; it
//! never sends traffic anywhere but a loopback address.

mod client;
mod cycles;
mod idle;
mod latency;
mod payload;
mod procfs;
mod redis;
mod report;
mod stats;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::cycles::CycleArgs;
use crate::idle::IdleArgs;
use crate::latency::ProbeArgs;
use crate::report::Report;
use crate::stats::thousands;
use crate::target::{Target, TargetSpec};

/// Benchmarks the Strangers signal server over loopback WebSockets.
#[derive(Debug, Parser)]
#[command(name = "signal-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// The server binary to spawn [default: signal-server next to this executable].
    #[arg(long, global = true, value_name = "PATH")]
    server_bin: Option<PathBuf>,

    /// An extra flag for the spawned server (repeatable), e.g. --server-arg=--resume-grace=1.
    #[arg(long = "server-arg", global = true, allow_hyphen_values = true, value_name = "ARG")]
    server_args: Vec<String>,

    /// Attach to a running server (ws://127.0.0.1:PORT/ws) instead of spawning one.
    #[arg(long, global = true, value_name = "URL", conflicts_with_all = ["server_bin", "server_args"])]
    server_url: Option<String>,

    /// The attached server's process id, to read its CPU time and memory.
    #[arg(long, global = true, value_name = "PID", requires = "server_url")]
    server_pid: Option<u32>,

    /// Redis mode: start a redis-server, give every spawned server --redis, count
    /// redis-server's CPU as the server's, report Redis round trips per match, and measure
    /// relay latency between two nodes.
    #[arg(long, global = true, conflicts_with = "server_url")]
    redis: bool,

    /// Redis mode: how many nodes share the cycle load (clients spread over them in turn;
    /// every node's CPU counts).
    #[arg(long, global = true, default_value_t = 1, requires = "redis", value_name = "N")]
    nodes: usize,

    /// Also print every figure as one JSON line after the table.
    #[arg(long, global = true)]
    json: bool,

    /// Give up after this many seconds in all.
    #[arg(long, global = true, default_value_t = 900, value_name = "SECS")]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Server CPU per full match cycle, matches per second, relay latency under load.
    Cycles(CycleArgs),
    /// Server memory per idle connection at rising connection counts.
    Idle(IdleArgs),
    /// Relay latency on an idle server, then under the cycle load.
    Latency {
        #[command(flatten)]
        probe: ProbeArgs,
        #[command(flatten)]
        load: CycleArgs,
    },
    /// Everything above, each part on a freshly started server.
    All {
        #[command(flatten)]
        load: CycleArgs,
        #[command(flatten)]
        probe: ProbeArgs,
        #[command(flatten)]
        idle: IdleArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signal-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_main(cli: Cli) -> anyhow::Result<()> {
    client::self_check().context("the bench's own payloads are not what the server expects")?;
    let open_files = procfs::raise_open_files_limit().context("cannot raise the open-file limit")?;
    note(format!("open-file limit {open_files} (the spawned server inherits it)"));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The runtime runs this future on the main thread, so the server is spawned from it and
    // its parent-death signal is tied to a thread that lives as long as the bench.
    let report = runtime.block_on(async {
        let deadline = Duration::from_secs(cli.timeout);
        tokio::select! {
            result = tokio::time::timeout(deadline, run(&cli)) => {
                result.map_err(|_| anyhow::anyhow!("gave up after --timeout {} s", cli.timeout))?
            }
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        }
    })?;
    // Dropping `run`'s future above killed any server it spawned; only the output is left.
    print!("{}", report.table());
    if cli.json {
        println!("{}", report.json_line());
    }
    Ok(())
}

/// Where the servers under test keep their state.
struct Mode {
    spec: TargetSpec,
    /// In Redis mode, the redis-server the bench started; a fresh one per part.
    redis: bool,
    /// Nodes for the cycle load in Redis mode.
    nodes: usize,
}

async fn run(cli: &Cli) -> anyhow::Result<Report> {
    let spec = match &cli.server_url {
        Some(url) => TargetSpec::Attach { url: url.clone(), pid: cli.server_pid },
        None => TargetSpec::Spawn {
            bin: cli.server_bin.clone().unwrap_or_else(target::default_server_bin),
            extra_args: cli.server_args.clone(),
        },
    };
    let mode = Mode { spec, redis: cli.redis, nodes: cli.nodes.max(1) };
    let mut report = Report::default();
    match &cli.command {
        Command::Cycles(load) => run_cycles(&mode, load, &mut report).await?,
        Command::Idle(idle) => run_idle(&mode, idle, &mut report).await?,
        Command::Latency { probe, load } => run_latency(&mode, probe, load, &mut report).await?,
        Command::All { load, probe, idle } => {
            run_cycles(&mode, load, &mut report).await?;
            run_latency(&mode, probe, load, &mut report).await?;
            run_idle(&mode, idle, &mut report).await?;
        }
    }
    Ok(report)
}

/// Starts the server (and, in Redis mode, the redis-server it uses, returned to keep alive).
fn open(mode: &Mode) -> anyhow::Result<(Target, Option<redis::RedisProcess>)> {
    if !mode.redis {
        return Ok((open_spec(&mode.spec)?, None));
    }
    let redis = redis::RedisProcess::start()?;
    note(format!("Redis mode: redis-server at {} (pid {}), counted as server CPU", redis.url, redis.pid()));
    let mut target = open_spec(&with_redis(&mode.spec, &redis))?;
    target.companions.push(redis.pid());
    Ok((target, Some(redis)))
}

fn with_redis(spec: &TargetSpec, redis: &redis::RedisProcess) -> TargetSpec {
    match spec {
        TargetSpec::Spawn { bin, extra_args } => {
            let mut extra_args = extra_args.clone();
            extra_args.push(format!("--redis={}", redis.url));
            TargetSpec::Spawn { bin: bin.clone(), extra_args }
        }
        attach => attach.clone(),
    }
}

fn open_spec(spec: &TargetSpec) -> anyhow::Result<Target> {
    let target = Target::open(spec)?;
    let how = if target.spawned() { "spawned" } else { "attached to" };
    let pid = target.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    note(format!("{how} the server at {}{pid}", target.url));
    Ok(target)
}

async fn run_cycles(mode: &Mode, load: &CycleArgs, report: &mut Report) -> anyhow::Result<()> {
    let (mut target, redis) = open(mode)?;
    if let Some(redis) = &redis {
        for _ in 1..mode.nodes {
            let other = open_spec(&with_redis(&mode.spec, redis))?;
            target.companions.extend(other.pid);
            target.others.push(other);
        }
    }
    note(format!(
        "cycles: {} connections, {} s warm-up, {} s measured",
        thousands(load.pairs as u64 * 2),
        load.warmup,
        load.seconds
    ));
    let result = cycles::run(&mut target, load, None).await?;
    let title = format!("Match cycles ({} pair loops, {} connections)", load.pairs, result.connections);
    let (mut rows, mut json) = (result.rows(), result.to_json());
    if redis.is_some() {
        let nodes: Vec<_> = target.nodes().into_iter().map(|(addr, _)| addr).collect();
        let (trips, operations) = redis::round_trips_per_match(&nodes)?;
        let counted = match nodes.len() {
            1 => "signal-server + redis-server".to_string(),
            n => format!("{n} signal-server nodes + redis-server"),
        };
        rows.push(("CPU counted".into(), counted));
        let redis_pid = redis.as_ref().map(|r| r.pid());
        if let Some((_, cpu)) = result.companion_cpu_us.iter().find(|(pid, _)| Some(*pid) == redis_pid) {
            let per = *cpu as f64 / result.cycles.max(1) as f64;
            rows.push(("  of which redis-server per cycle".into(), format!("{per:.1} us")));
            json["redis_server_us_per_cycle"] = serde_json::json!(per);
        }
        rows.push(("Redis round trips per match (pipelined)".into(), format!("{trips:.2}")));
        rows.push(("Redis operations per match (batched)".into(), format!("{operations:.2}")));
        json["redis_round_trips_per_match"] = serde_json::json!(trips);
        json["redis_operations_per_match"] = serde_json::json!(operations);
    }
    report.add("cycles", title, rows, json);
    Ok(())
}

async fn run_latency(mode: &Mode, probe: &ProbeArgs, load: &CycleArgs, report: &mut Report) -> anyhow::Result<()> {
    let (mut target, redis) = open(mode)?;
    // In Redis mode the probe's second client sits on a second node: cross-node relay.
    let other = match &redis {
        Some(redis) => Some(open_spec(&with_redis(&mode.spec, redis))?),
        None => None,
    };
    note(format!(
        "latency: {} samples on the idle server, then {} s under the cycle load",
        probe.samples, load.seconds
    ));
    let result = latency::run(&mut target, other.as_ref(), probe, load).await?;
    let title = if other.is_some() {
        "Cross-node relay latency (two nodes, one Redis)"
    } else {
        "Relay latency (send to partner's receipt)"
    };
    report.add("latency", title.into(), result.rows(), result.to_json());
    Ok(())
}

async fn run_idle(mode: &Mode, idle: &IdleArgs, report: &mut Report) -> anyhow::Result<()> {
    let (mut target, _redis) = open(mode)?;
    let counts: Vec<String> = idle.counts.iter().map(|c| thousands(*c as u64)).collect();
    note(format!("idle: opening sockets in steps of {}", counts.join(", ")));
    let result = idle::run(&mut target, idle).await?;
    report.add(
        "idle",
        "Memory per idle connection (hello, welcome, then silence)".into(),
        result.rows(),
        result.to_json(),
    );
    Ok(())
}

/// Progress goes to stderr, so stdout holds only the results.
fn note(text: String) {
    eprintln!("signal-bench: {text}");
}

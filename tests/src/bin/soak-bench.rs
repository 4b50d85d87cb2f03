//! soak-bench: long runs that show what grows. Two modes, each on its own signal server on
//! loopback, with real headless clients (real WebRTC calls with media):
//!
//! - `churn`: `--bots` clients press Next every `--next-after` seconds, again and again, and
//!   every `--restart-every` seconds one of them (in turn) quits and a new one connects in its
//!   place, so sockets come and go too. The server's resident memory, open descriptors, threads
//!   and live tasks are sampled.
//! - `call`: two clients in one call that lasts the whole run. One client's resident memory and
//!   CPU are sampled.
//!
//! Each sample is printed as it is taken; the end prints the first, middle and last samples and
//! each series' slope (least squares, per hour) over the whole run and over its second half.
//!
//! `target/debug/soak-bench --mode churn --minutes 30 --bots 6` (or `--mode call`). Flags:
//! `--sample-every S` (30), `--next-after S` (4), `--restart-every S` (60), `--width`, `--height`, `--fps` of the bots'
//! test pattern (320x240 at 15), `--csv FILE` to keep every sample.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use strangers_system_tests::{cpu_seconds, Client, Server};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Churn,
    Call,
}

struct Args {
    mode: Mode,
    minutes: f64,
    bots: usize,
    sample_every: f64,
    next_after: f64,
    restart_every: f64,
    width: u32,
    height: u32,
    fps: u32,
    csv: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        mode: Mode::Churn,
        minutes: 30.0,
        bots: 6,
        sample_every: 30.0,
        next_after: 4.0,
        restart_every: 60.0,
        width: 320,
        height: 240,
        fps: 15,
        csv: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => {
                args.mode = match value.as_str() {
                    "churn" => Mode::Churn,
                    "call" => Mode::Call,
                    other => bail!("unknown mode {other} (churn or call)"),
                }
            }
            "--minutes" => args.minutes = value.parse()?,
            "--bots" => args.bots = value.parse()?,
            "--sample-every" => args.sample_every = value.parse()?,
            "--next-after" => args.next_after = value.parse()?,
            "--restart-every" => args.restart_every = value.parse()?,
            "--width" => args.width = value.parse()?,
            "--height" => args.height = value.parse()?,
            "--fps" => args.fps = value.parse()?,
            "--csv" => args.csv = Some(value),
            other => bail!(
                "unknown flag {other} (try --mode churn|call, --minutes M, --bots N, --sample-every S, \
                 --next-after S, --restart-every S, --width W, --height H, --fps F, --csv FILE)"
            ),
        }
    }
    if args.bots < 2 {
        bail!("--bots needs at least 2 (a call has two sides)");
    }
    if args.sample_every <= 0.0 || args.minutes <= 0.0 || args.restart_every <= 0.0 {
        bail!("--minutes, --sample-every and --restart-every must be positive");
    }
    Ok(args)
}

/// A field of /proc/PID/status, such as `VmRSS` (in kB) or `Threads`.
fn proc_status(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let value = line[field.len() + 1..].split_whitespace().next().context("empty field")?;
    Ok(value.parse()?)
}

fn open_descriptors(pid: u32) -> anyhow::Result<f64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as f64)
}

/// Named series sampled over time: (seconds since start, values in `names` order).
struct Samples {
    names: Vec<&'static str>,
    rows: Vec<(f64, Vec<f64>)>,
}

impl Samples {
    fn new(names: &[&'static str]) -> Samples {
        Samples { names: names.to_vec(), rows: Vec::new() }
    }

    fn push(&mut self, t: f64, values: Vec<f64>) {
        let line: Vec<String> = self.names.iter().zip(&values).map(|(n, v)| format!("{n} {v:.1}")).collect();
        eprintln!("  t {:6.0} s  {}", t, line.join("  "));
        self.rows.push((t, values));
    }

    /// Least-squares slope of series `i` per hour, over rows from `from` on.
    fn slope_per_hour(&self, i: usize, from: usize) -> f64 {
        let rows = &self.rows[from..];
        let n = rows.len() as f64;
        if rows.len() < 2 {
            return f64::NAN;
        }
        let mean_t = rows.iter().map(|r| r.0).sum::<f64>() / n;
        let mean_v = rows.iter().map(|r| r.1[i]).sum::<f64>() / n;
        let cov: f64 = rows.iter().map(|r| (r.0 - mean_t) * (r.1[i] - mean_v)).sum();
        let var: f64 = rows.iter().map(|r| (r.0 - mean_t).powi(2)).sum();
        cov / var * 3600.0
    }

    fn report(&self, title: &str) {
        println!("\n{title}: {} samples", self.rows.len());
        if self.rows.is_empty() {
            return;
        }
        let picks = [0, self.rows.len() / 2, self.rows.len() - 1];
        println!(
            "  {:<22} {:>10} {:>10} {:>10} {:>14} {:>16}",
            "series", "start", "middle", "end", "slope /h", "2nd half /h"
        );
        for (i, name) in self.names.iter().enumerate() {
            println!(
                "  {:<22} {:>10.1} {:>10.1} {:>10.1} {:>14.2} {:>16.2}",
                name,
                self.rows[picks[0]].1[i],
                self.rows[picks[1]].1[i],
                self.rows[picks[2]].1[i],
                self.slope_per_hour(i, 0),
                self.slope_per_hour(i, self.rows.len() / 2),
            );
        }
        println!(
            "  (samples at t = {:.0}, {:.0}, {:.0} s)",
            self.rows[picks[0]].0, self.rows[picks[1]].0, self.rows[picks[2]].0
        );
    }

    fn write_csv(&self, path: &str) -> anyhow::Result<()> {
        let mut text = format!("t_s,{}\n", self.names.join(","));
        for (t, values) in &self.rows {
            let values: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
            text += &format!("{t:.1},{}\n", values.join(","));
        }
        std::fs::write(path, text).with_context(|| format!("writing {path}"))
    }
}

/// What a client's events showed since the last look: calls that decoded a first frame, and
/// stats lines that received video.
#[derive(Default)]
struct Seen {
    first_frames: u64,
    live_stats: u64,
    errors: u64,
}

fn look(client: &mut Client, seen: &mut Seen) {
    for event in client.drain() {
        match event["event"].as_str() {
            Some("first_frame") => seen.first_frames += 1,
            Some("stats") if event["recv_fps"].as_f64().unwrap_or(0.0) > 1.0 => seen.live_stats += 1,
            Some("error") => seen.errors += 1,
            _ => {}
        }
    }
}

fn bot_flags(args: &Args) -> Vec<String> {
    let mut flags = vec![
        "--loopback".to_owned(),
        "--width".to_owned(),
        args.width.to_string(),
        "--height".to_owned(),
        args.height.to_string(),
        "--fps".to_owned(),
        args.fps.to_string(),
    ];
    if args.mode == Mode::Churn {
        flags.extend(["--next-after".to_owned(), args.next_after.to_string()]);
    }
    flags
}

/// Replaces one client at a time with a new one, at a steady pace.
struct Restarts {
    every: Duration,
    next_at: Instant,
    next_index: usize,
    count: u64,
}

impl Restarts {
    fn due(&mut self, clients: &mut [Client], server: &Server, flags: &[&str]) -> anyhow::Result<()> {
        if Instant::now() < self.next_at {
            return Ok(());
        }
        self.next_at += self.every;
        let i = self.next_index % clients.len();
        self.next_index += 1;
        self.count += 1;
        // Dropping a client kills its process; the server sees its socket close.
        clients[i] = Client::start(&format!("soak-{i}-{}", self.count), &server.ws_url(), flags)?;
        Ok(())
    }
}

/// Sleeps until `at`, draining the clients' events meanwhile (so their pipes never fill) and
/// replacing clients when `restarts` says so.
fn wait_until(
    at: Instant,
    clients: &mut [Client],
    seen: &mut Seen,
    mut restarts: Option<(&mut Restarts, &Server, &[&str])>,
) -> anyhow::Result<()> {
    while Instant::now() < at {
        for c in clients.iter_mut() {
            look(c, seen);
        }
        if let Some((restarts, server, flags)) = restarts.as_mut() {
            restarts.due(clients, server, flags)?;
        }
        std::thread::sleep(Duration::from_millis(200).min(at.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

fn run(args: &Args) -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let flags = bot_flags(args);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let count = if args.mode == Mode::Churn { args.bots } else { 2 };
    let mut clients = (0..count)
        .map(|i| Client::start(&format!("soak-{i}"), &server.ws_url(), &flags))
        .collect::<Result<Vec<_>, _>>()?;
    // Let the first calls start before the first sample.
    for c in clients.iter_mut().take(2) {
        c.wait_event(Duration::from_secs(60), "first_frame")?;
    }
    let mut seen = Seen::default();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.minutes * 60.0);
    let every = Duration::from_secs_f64(args.sample_every);
    let mut samples = match args.mode {
        Mode::Churn => Samples::new(&[
            "server_rss_kib",
            "server_fds",
            "server_threads",
            "server_tasks",
            "server_connections",
            "matches_total",
            "first_frames",
            "bots_replaced",
        ]),
        Mode::Call => {
            Samples::new(&["client_rss_kib", "client_cpu_cores", "client_threads", "client_fds", "live_seconds"])
        }
    };
    let watched = clients[0].pid();
    let mut last_cpu = (Instant::now(), cpu_seconds(watched)?);
    let mut next_sample = start;
    let every_restart = Duration::from_secs_f64(args.restart_every);
    let mut restarts = Restarts { every: every_restart, next_at: start + every_restart, next_index: 0, count: 0 };
    loop {
        let churn = (args.mode == Mode::Churn).then_some((&mut restarts, &server, &flags[..]));
        wait_until(next_sample, &mut clients, &mut seen, churn)?;
        let t = start.elapsed().as_secs_f64();
        match args.mode {
            Mode::Churn => {
                let pid = server.pid();
                samples.push(
                    t,
                    vec![
                        proc_status(pid, "VmRSS")?,
                        open_descriptors(pid)?,
                        proc_status(pid, "Threads")?,
                        server.metric("tasks")? as f64,
                        server.metric("connections")? as f64,
                        server.metric("matches_total")? as f64,
                        seen.first_frames as f64,
                        restarts.count as f64,
                    ],
                );
            }
            Mode::Call => {
                let now = (Instant::now(), cpu_seconds(watched)?);
                let cores = (now.1 - last_cpu.1) / now.0.duration_since(last_cpu.0).as_secs_f64().max(1e-3);
                last_cpu = now;
                samples.push(
                    t,
                    vec![
                        proc_status(watched, "VmRSS")?,
                        cores,
                        proc_status(watched, "Threads")?,
                        open_descriptors(watched)?,
                        // Stats lines come once a second from each side.
                        seen.live_stats as f64 / 2.0,
                    ],
                );
            }
        }
        if Instant::now() >= end {
            break;
        }
        next_sample = (next_sample + every).min(end);
    }
    let title = match args.mode {
        Mode::Churn => format!(
            "churn: {} bots, Next every {} s, one replaced every {} s, {}x{}@{}, {:.1} min",
            args.bots, args.next_after, args.restart_every, args.width, args.height, args.fps, args.minutes
        ),
        Mode::Call => format!("call: one call of {:.1} min, {}x{}@{}", args.minutes, args.width, args.height, args.fps),
    };
    samples.report(&title);
    println!("  error events from the clients: {}", seen.errors);
    if let Some(path) = &args.csv {
        samples.write_csv(path)?;
    }
    // A client that died during the run would have stopped sending events: say so.
    for c in clients.iter_mut() {
        if c.has_exited() {
            bail!("{} exited during the run", c.name);
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    run(&args)
}

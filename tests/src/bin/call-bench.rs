//! call-bench: two real headless clients meet again and again through a real signal server
//! on loopback, and the figures a person feels are measured: find to first decoded frame,
//! glass-to-glass latency, CPU per call-second of each client, bitrate.
//!
//! Run from release builds: `cargo build --release --workspace --bins` then
//! `target/release/call-bench [--matches 20] [--sizes 640x480,1280x720] [--seconds 3]`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use strangers_system_tests::{cpu_seconds, Client, Server};

struct Args {
    matches: usize,
    sizes: Vec<(u32, u32)>,
    seconds: f64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { matches: 20, sizes: vec![(640, 480), (1280, 720)], seconds: 3.0 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--matches" => args.matches = value.parse()?,
            "--seconds" => args.seconds = value.parse()?,
            "--sizes" => {
                args.sizes = value
                    .split(',')
                    .map(|s| {
                        let (w, h) = s.split_once('x').context("sizes look like 640x480")?;
                        Ok((w.parse()?, h.parse()?))
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            other => bail!("unknown flag {other} (try --matches N, --sizes 640x480,1280x720, --seconds S)"),
        }
    }
    Ok(args)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

struct Figures {
    first_frame_ms: Vec<f64>,
    connect_ms: Vec<f64>,
    latency_p50: Vec<f64>,
    latency_max: Vec<f64>,
    kbps: Vec<f64>,
    fps: Vec<f64>,
    cpu_per_call_second: [f64; 2],
    verify_errors: u64,
}

fn run_size(width: u32, height: u32, args: &Args) -> anyhow::Result<Figures> {
    let server = Server::start(&[])?;
    let (w, h) = (width.to_string(), height.to_string());
    let secs = args.seconds.to_string();
    let common = ["--loopback", "--width", &w, "--height", &h, "--fps", "30", "--next-after", &secs];
    let mut clients = [Client::start("a", &server.ws_url(), &common)?, Client::start("b", &server.ws_url(), &common)?];
    let mut figures = Figures {
        first_frame_ms: vec![],
        connect_ms: vec![],
        latency_p50: vec![],
        latency_max: vec![],
        kbps: vec![],
        fps: vec![],
        cpu_per_call_second: [0.0; 2],
        verify_errors: 0,
    };
    let cpu_start = [cpu_seconds(clients[0].pid())?, cpu_seconds(clients[1].pid())?];
    let started = Instant::now();
    let mut in_call = Duration::ZERO;
    let mut pending_matched = [false, false];
    for round in 0..args.matches {
        let mut first = Vec::new();
        let mut connect = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            if !std::mem::take(&mut pending_matched[i]) {
                c.wait_event(Duration::from_secs(30), "matched")?;
            }
            let e = c.wait_event(Duration::from_secs(30), "connected")?;
            connect.push(e["ms_since_find"].as_f64().unwrap_or(f64::NAN));
            let e = c.wait_event(Duration::from_secs(30), "first_frame")?;
            first.push(e["ms_since_find"].as_f64().unwrap_or(f64::NAN));
        }
        // The client that found second is the one whose wait is smaller: what a person
        // pressing Next while someone waits experiences.
        figures.first_frame_ms.push(first.iter().copied().fold(f64::INFINITY, f64::min));
        figures.connect_ms.push(connect.iter().copied().fold(f64::INFINITY, f64::min));
        let call_start = Instant::now();
        // Collect per-second stats until one side presses Next.
        for (i, c) in clients.iter_mut().enumerate() {
            loop {
                let e = c.wait_for(Duration::from_secs(30), "stats or partner_left", |e: &Value| {
                    e["event"] == "stats" || e["event"] == "partner_left" || e["event"] == "matched"
                })?;
                if e["event"] == "matched" {
                    // Already paired again for the next round.
                    pending_matched[i] = true;
                    break;
                }
                if e["event"] != "stats" {
                    break;
                }
                if let Some(v) = e["latency_ms_p50"].as_f64() {
                    figures.latency_p50.push(v);
                }
                if let Some(v) = e["latency_ms_max"].as_f64() {
                    figures.latency_max.push(v);
                }
                if e["recv_fps"].as_f64().unwrap_or(0.0) > 1.0 {
                    figures.kbps.push(e["sent_kbps"].as_f64().unwrap_or(0.0));
                    figures.fps.push(e["recv_fps"].as_f64().unwrap_or(0.0));
                }
                figures.verify_errors = figures.verify_errors.max(e["verify_errors"].as_u64().unwrap_or(0));
            }
        }
        in_call += call_start.elapsed().max(Duration::from_secs_f64(args.seconds));
        eprintln!(
            "  {width}x{height} match {}/{}: first frame {:.0} ms",
            round + 1,
            args.matches,
            figures.first_frame_ms[round]
        );
        for c in clients.iter_mut() {
            c.seen.clear();
        }
    }
    let wall = started.elapsed().as_secs_f64();
    for (i, c) in clients.iter().enumerate() {
        let used = cpu_seconds(c.pid())? - cpu_start[i];
        // CPU per second of being in a call (matching gaps are short and cheap).
        figures.cpu_per_call_second[i] = used / wall;
    }
    let _ = in_call;
    Ok(figures)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    println!(
        "call-bench: {} matches per size, {} s per call, loopback, 2 clients + server",
        args.matches, args.seconds
    );
    for &(w, h) in &args.sizes {
        let mut f = run_size(w, h, &args)?;
        println!("\n{w}x{h}@30");
        println!(
            "  find -> connected (ms)         p50 {:7.1}  p90 {:7.1}",
            percentile(&mut f.connect_ms, 50.0),
            percentile(&mut f.connect_ms, 90.0)
        );
        println!(
            "  find -> first frame (ms)       p50 {:7.1}  p90 {:7.1}",
            percentile(&mut f.first_frame_ms, 50.0),
            percentile(&mut f.first_frame_ms, 90.0)
        );
        println!(
            "  glass-to-glass (ms)            p50 {:7.1}  p99 {:7.1}",
            percentile(&mut f.latency_p50, 50.0),
            percentile(&mut f.latency_max, 99.0)
        );
        println!("  video bitrate sent (kbit/s)    p50 {:7.0}", percentile(&mut f.kbps, 50.0));
        println!("  frames received per second     p50 {:7.1}", percentile(&mut f.fps, 50.0));
        println!(
            "  CPU per call-second (cores)    a {:5.3}  b {:5.3}",
            f.cpu_per_call_second[0], f.cpu_per_call_second[1]
        );
        println!("  verify errors                  {}", f.verify_errors);
    }
    Ok(())
}

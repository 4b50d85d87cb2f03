//! link-bench: real calls between two headless clients across an emulated thin link (two network
//! namespaces joined by a veth pair shaped with HTB and a packet FIFO, both directions alike),
//! and what each side received over the call's steady part: frame rate, frozen seconds,
//! glass-to-glass latency, picture size, bitrate against the link's rate, loss, audio gaps, and
//! for a link that falls, how long latency took to come back.
//!
//! Run as root from release builds: `cargo build --release --workspace --bins` then
//! `target/release/link-bench [--seconds 60] [--steady-from 20]
//! [--cases 150,250,500,1000,2500,2500q300,fall] [--codec vp8|h264] [--json FILE]
//! [--bin-dir DIR]`. A case is a rate in kbit/s with a 50-packet FIFO (`2500`), a rate with
//! another depth (`2500q300`), or `fall`: 2,500 kbit/s falling to 300 at 20 s and back at 40 s.
//! The client and server binaries are taken from `--bin-dir`, else `STRANGERS_BIN_DIR`, else
//! the folder of this program, and linked into a folder of the run's own at the start, so a
//! rebuild during the run changes nothing.
//!
//! Latencies pool the clients' per-second figures: the p50 column is the median of the
//! per-second p50s, the p95 column the 95th percentile of the per-second p95s; seconds with no
//! verified frame have no latency and show up as frozen instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use strangers_system_tests::shaped::{
    format_size, record_call, CallOptions, Case, RateChange, Received, Recording, Recovery, SIDES,
};
use strangers_system_tests::{bin_dir, is_root};

/// The FIFO depth of a case that names none, packets.
const DEFAULT_QUEUE: u32 = 50;
/// The `fall` case: its rates and when they change.
const FALL_FROM_KBIT: u32 = 2500;
const FALL_TO_KBIT: u32 = 300;
const FALL_AT_S: f64 = 20.0;
const RISE_AT_S: f64 = 40.0;
/// How long each client may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Set by SIGINT or SIGTERM: the running case stops and everything it started is removed.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Args {
    seconds: f64,
    steady_from: f64,
    cases: Vec<Case>,
    codec: Option<String>,
    json: Option<String>,
    bin_dir: Option<String>,
}

const USAGE: &str = "link-bench [--seconds 60] [--steady-from 20] [--cases 150,250,500,1000,2500,2500q300,fall] \
                     [--codec vp8|h264] [--json FILE] [--bin-dir DIR]";

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        seconds: 60.0,
        steady_from: 20.0,
        cases: parse_cases("150,250,500,1000,2500,2500q300,fall")?,
        codec: None,
        json: None,
        bin_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().context("--seconds")?,
            "--steady-from" => args.steady_from = value.parse().context("--steady-from")?,
            "--cases" => args.cases = parse_cases(&value)?,
            "--codec" => match value.to_ascii_lowercase().as_str() {
                "vp8" | "h264" => args.codec = Some(value.to_ascii_lowercase()),
                _ => bail!("--codec is vp8 or h264"),
            },
            "--json" => args.json = Some(value),
            "--bin-dir" => args.bin_dir = Some(value),
            other => bail!("unknown flag {other}\nusage: {USAGE}"),
        }
    }
    if args.steady_from >= args.seconds {
        bail!("--steady-from must come before the call ends (--seconds)");
    }
    Ok(args)
}

/// Reads `150,2500q300,fall` into cases.
fn parse_cases(list: &str) -> anyhow::Result<Vec<Case>> {
    list.split(',').map(str::trim).filter(|name| !name.is_empty()).map(parse_case).collect()
}

fn parse_case(name: &str) -> anyhow::Result<Case> {
    if name == "fall" {
        let mut case = Case::steady(name, FALL_FROM_KBIT, DEFAULT_QUEUE);
        case.changes = vec![
            RateChange { at_s: FALL_AT_S, rate_kbit: FALL_TO_KBIT },
            RateChange { at_s: RISE_AT_S, rate_kbit: FALL_FROM_KBIT },
        ];
        return Ok(case);
    }
    let (rate, queue) = name.split_once('q').unwrap_or((name, ""));
    let rate: u32 = rate.parse().with_context(|| format!("case {name:?}: a rate in kbit/s, RATEqDEPTH or fall"))?;
    let queue =
        if queue.is_empty() { DEFAULT_QUEUE } else { queue.parse().with_context(|| format!("case {name:?}"))? };
    if rate == 0 || queue == 0 {
        bail!("case {name:?}: the rate and the depth must be positive");
    }
    Ok(Case::steady(name, rate, queue))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if !is_root() {
        bail!("link-bench needs root: it builds network namespaces and shapes them with tc");
    }
    if let Some(dir) = &args.bin_dir {
        // Read by the helpers that start the binaries; set before any thread starts.
        std::env::set_var("STRANGERS_BIN_DIR", dir);
    }
    let bins = bin_dir();
    eprintln!("link-bench: binaries from {}", bins.display());
    if bins.ends_with("debug") {
        eprintln!("link-bench: these are debug builds; figures that matter come from release builds (--bin-dir)");
    }
    // Every case runs the binaries as they were now, even if they are rebuilt meanwhile.
    let snapshot = Snapshot::take(&bins)?;
    std::env::set_var("STRANGERS_BIN_DIR", &snapshot.dir);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }

    let options = CallOptions { seconds: args.seconds, codec: args.codec.clone(), connect_timeout: CONNECT_TIMEOUT };
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let mut failed = 0;
    for case in &args.cases {
        eprintln!("link-bench: case {} ({} s of call)", describe(case), args.seconds);
        match record_call(case, &options, &STOP) {
            Ok(recording) => {
                let received = [0, 1].map(|side| recording.received(side, args.steady_from, args.seconds));
                for (side, got) in received.iter().enumerate() {
                    rows.push(row(&recording, side, got));
                }
                for line in &recording.trouble {
                    eprintln!("link-bench: {}: {line}", case.name);
                }
                let mut value = recording.to_json();
                value["received"] = json!({ "a": received[0].to_json(), "b": received[1].to_json() });
                results.push(value);
            }
            Err(error) if STOP.load(Ordering::Relaxed) => {
                eprintln!("link-bench: stopped during case {}: {error:#}", case.name);
                break;
            }
            Err(error) => {
                failed += 1;
                eprintln!("link-bench: case {} failed: {error:#}", case.name);
                rows.push(format!("| {} | | failed: {} |", describe(case), first_line(&format!("{error:#}"))));
                results.push(json!({ "case": case.name, "error": format!("{error:#}") }));
            }
        }
    }

    println!(
        "\nlink-bench: {} s calls, steady window {}..{} s, codec {}, 640x480@30 pattern and tone",
        args.seconds,
        args.steady_from,
        args.seconds,
        args.codec.as_deref().unwrap_or("the client's choice")
    );
    println!("Each row is one client: what it received (video, audio, loss) and what it sent.\n");
    println!("{}", HEADER.join("\n"));
    for line in &rows {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let report = json!({
            "seconds": args.seconds,
            "steady_from": args.steady_from,
            "codec": args.codec,
            "bin_dir": bins.display().to_string(),
            "cases": results,
        });
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {path}"))?;
        eprintln!("link-bench: wrote {path}");
    }
    if STOP.load(Ordering::Relaxed) {
        bail!("stopped by a signal");
    }
    if failed > 0 {
        bail!("{failed} case(s) failed");
    }
    Ok(())
}

const HEADER: [&str; 2] = [
    "| case | side | first frame ms | recv fps | frozen s (longest) | g2g p50 ms | g2g p95 ms | recv size | codec \
     | recv kbit/s | % of link | sent kbit/s | target kbit/s | send size | loss % | audio gaps (FEC / concealed) | p50 < 200 ms after fall |",
    "|---|---|--:|--:|--:|--:|--:|---|---|--:|--:|--:|--:|---|--:|--:|--:|",
];

/// One markdown row: what `side` of `recording` received over the window.
fn row(recording: &Recording, side: usize, got: &Received) -> String {
    let ms = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    let recovery = match got.recovery {
        None => "".to_owned(),
        Some(Recovery::After(s)) => format!("{s:.0} s"),
        Some(Recovery::NotWithin(s)) => format!("not in {s:.0} s"),
    };
    let cells = [
        describe(&recording.case),
        SIDES[side].to_owned(),
        recording.first_frame_ms[side].map_or_else(|| "none".to_owned(), |ms| ms.to_string()),
        format!("{:.1}", got.mean_fps),
        format!("{} of {} ({})", got.frozen_seconds, got.seconds, got.longest_freeze),
        ms(got.latency_p50),
        ms(got.latency_p95),
        format_size(got.size),
        got.codec.clone().unwrap_or_else(|| "-".to_owned()),
        format!("{:.0}", got.recv_kbps),
        format!("{:.0}", got.link_share * 100.0),
        format!("{:.0}", got.sent_kbps),
        format!("{:.0}", got.target_kbps),
        format_size(got.send_size),
        format!("{:.1}", got.loss * 100.0),
        match (got.audio_gaps, got.audio_fec, got.audio_concealed) {
            (Some(gaps), Some(fec), Some(concealed)) => format!("{gaps} ({fec} / {concealed})"),
            (Some(gaps), _, _) => gaps.to_string(),
            _ => "-".to_owned(),
        },
        recovery,
    ];
    format!("| {} |", cells.join(" | "))
}

/// The client and server binaries, linked (or copied) into a folder of this run's own, which
/// is removed when it drops.
struct Snapshot {
    dir: PathBuf,
}

impl Snapshot {
    fn take(from: &Path) -> anyhow::Result<Snapshot> {
        let dir = std::env::temp_dir().join(format!("link-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let snapshot = Snapshot { dir };
        for name in ["strangers", "signal-server"] {
            let (source, copy) = (from.join(name), snapshot.dir.join(name));
            if !source.exists() {
                bail!("{} is missing: build the binaries first (cargo build --workspace --bins)", source.display());
            }
            if std::fs::hard_link(&source, &copy).is_err() {
                std::fs::copy(&source, &copy).with_context(|| format!("copying {}", source.display()))?;
            }
        }
        Ok(snapshot)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `500 kbit/s, 50 pkts`, or the fall's schedule.
fn describe(case: &Case) -> String {
    let mut text = format!("{} kbit/s, {} pkts", case.rate_kbit, case.queue_packets);
    for change in &case.changes {
        text.push_str(&format!(", {} at {} s", change.rate_kbit, change.at_s));
    }
    text
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().replace('|', "/")
}

//! Runs the real `signal-bench` against the real `signal-server` binary for a moment each:
//! every subcommand finishes, prints its table and a JSON line with plausible figures, and
//! leaves no server process behind, Ctrl-C included. `scripts/test.sh` builds the server
//! first (`cargo build --workspace --bins`), as it does for every system test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_signal-bench");

fn require_server() {
    let server = Path::new(BENCH).with_file_name("signal-server");
    assert!(server.exists(), "{} is missing: build it first with `cargo build -p signal-server`", server.display());
}

/// The process id in the bench's "spawned the server at URL (pid N)" line.
fn spawned_pid(stderr: &str) -> Option<u32> {
    let line = stderr.lines().find(|l| l.contains("spawned the server"))?;
    line.rsplit_once("(pid ")?.1.trim_end_matches(')').parse().ok()
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs the bench with `--json` and returns the JSON line, after checking the table came
/// first and the spawned server is gone.
fn run_json(args: &[&str]) -> Value {
    require_server();
    let out = Command::new(BENCH).args(args).arg("--json").output().expect("the bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "signal-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("signal-bench "), "no table header:\n{stdout}");
    let pid = spawned_pid(&stderr).expect("the bench names the server it spawned");
    assert!(gone(pid), "server {pid} outlived the bench");
    serde_json::from_str(stdout.lines().last().expect("some output")).expect("the last line is JSON")
}

#[test]
fn cycles_completes_full_cycles() {
    let json = run_json(&["cycles", "--pairs", "4", "--seconds", "1", "--warmup", "0.2"]);
    let cycles = &json["cycles"];
    assert!(cycles["cycles"].as_u64().unwrap() > 0, "{json}");
    assert!(cycles["server_cpu_us_per_cycle"].as_f64().unwrap() > 0.0, "{json}");
    assert_eq!(cycles["server_errors"], 0, "{json}");
    assert_eq!(cycles["connections"], 8);
    assert!(cycles["relay_latency"]["samples"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(
        json["machine"]["cores"].as_u64().unwrap() as usize,
        std::thread::available_parallelism().unwrap().get()
    );
}

#[test]
fn idle_reads_memory_at_each_count() {
    let json = run_json(&["idle", "--counts", "20,60", "--settle-ms", "100"]);
    let points = json["idle"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{json}");
    assert_eq!(points[1]["connections"], 60);
    assert!(points[1]["rss_bytes"].as_u64().unwrap() > json["idle"]["baseline_rss_bytes"].as_u64().unwrap());
    assert_eq!(json["idle"]["dropped"], 0);
}

#[test]
fn latency_samples_idle_and_loaded() {
    let json =
        run_json(&["latency", "--samples", "100", "--probe-interval-us", "200", "--pairs", "2", "--seconds", "0.5"]);
    let latency = &json["latency"];
    assert_eq!(latency["idle"]["samples"], 100, "{json}");
    assert!(latency["idle"]["p50_us"].as_f64().unwrap() > 0.0);
    assert!(latency["probe_under_load"]["samples"].as_u64().unwrap() > 0, "{json}");
    assert!(latency["load"]["cycles"].as_u64().unwrap() > 0, "{json}");
}

#[test]
fn ctrl_c_kills_the_spawned_server() {
    require_server();
    let mut bench = Command::new(BENCH)
        .args(["cycles", "--pairs", "2", "--seconds", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bench runs");
    let mut stderr = BufReader::new(bench.stderr.take().unwrap());
    let mut seen = String::new();
    let pid = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the bench ended early:\n{seen}");
        seen.push_str(&line);
        if let Some(pid) = spawned_pid(&line) {
            break pid;
        }
    };
    assert!(!gone(pid));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill only sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(bench.id() as libc::pid_t, libc::SIGINT) }, 0);
    let status = bench.wait().unwrap();
    assert!(!status.success(), "an interrupted run reports failure");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(pid), "server {pid} outlived an interrupted bench");
}

#[test]
fn refuses_servers_off_loopback() {
    let out = Command::new(BENCH)
        .args(["cycles", "--server-url", "ws://192.0.2.1:8686/ws", "--seconds", "1"])
        .output()
        .expect("the bench runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

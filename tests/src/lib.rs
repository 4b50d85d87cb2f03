//! Helpers for system tests: start the real `signal-server` and `strangers` binaries as
//! processes, read the JSON events a headless client prints, and clean up when done. Every
//! process is killed when its handle drops, so a failing test leaves nothing behind.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

pub mod browser;
pub mod link;
pub mod lossy;
pub mod nat;
pub mod packages;
pub mod ports;
pub mod shaped;
pub mod turn_probe;

/// The directory holding the workspace's binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("STRANGERS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in target/<profile>/deps; the binaries one level up.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let mut dir = exe.parent().expect("an executable has a folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

pub mod desktop;

/// The path of the workspace binary `name`, which must have been built.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!("{} is missing: build the workspace binaries first (cargo build --workspace --bins)", path.display());
    }
    Ok(path)
}

/// A command for the workspace binary `name`, run inside network namespace `netns` if given.
fn program(netns: Option<&str>, name: &str) -> anyhow::Result<Command> {
    let path = binary(name)?;
    Ok(match netns {
        // `ip netns exec` execs the program in place, so the child's pid is the program's own.
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns]).arg(path);
            command
        }
        None => Command::new(path),
    })
}

/// Whether the tests run as root (network namespaces and nftables need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status.lines().find_map(|line| line.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// Whether a test that needs root (`why`) can run. Without root it says so loudly on stderr and
/// the test returns early; under CI (`CI` set, as `.ci/run` runs) a skip is a failure, so a
/// suite that lost its root can never pass by skipping.
pub fn root_or_skip(test: &str, why: &str) -> bool {
    if is_root() {
        return true;
    }
    let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!under_ci, "{test} needs root ({why}) and CI must run it: run the suite as root");
    eprintln!("\n**********\nSKIPPED {test}: it needs root ({why})\n**********\n");
    false
}

/// A network namespace of the test's own with its loopback up, deleted when dropped (drop it
/// after the processes running in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` (it must not exist yet) and brings its loopback up, with a
    /// multicast route: WebRTC's mDNS socket cannot join its group without one (ENODEV).
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        run("ip", &["netns", "add", name])?;
        let netns = Netns { name: name.to_owned() };
        netns.exec(&["ip", "link", "set", "lo", "up", "multicast", "on"])?;
        netns.exec(&["ip", "route", "add", "224.0.0.0/4", "dev", "lo"])?;
        Ok(netns)
    }

    /// Runs a command inside the namespace and waits for it to succeed.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Drops, with a counter, the UDP packets received in the namespace that match `matches`
    /// (nftables expressions such as `numgen random mod 100 lt 5`), in a chain of its own named
    /// `chain`. Dropping on input rather than output matters: a packet dropped on output fails
    /// the sender's `sendto` with EPERM, which a real lossy network never does.
    pub fn drop_udp_input(&self, chain: &str, matches: &[&str]) -> anyhow::Result<()> {
        let hook = "{ type filter hook input priority 0; }";
        self.exec(&["nft", "add", "table", "inet", "strangers_test"]).context("nftables (is nftables installed?)")?;
        self.exec(&["nft", "add", "chain", "inet", "strangers_test", chain, hook])?;
        let mut rule = vec!["nft", "add", "rule", "inet", "strangers_test", chain, "meta", "l4proto", "udp"];
        rule.extend_from_slice(matches);
        rule.extend_from_slice(&["counter", "drop"]);
        self.exec(&rule)
    }

    /// How many packets the rules of [`Netns::drop_udp_input`]'s `chain` dropped so far.
    pub fn dropped(&self, chain: &str) -> anyhow::Result<u64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "list", "chain", "inet", "strangers_test", chain])
            .output()
            .context("running nft")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let counts = text.split("counter packets ").skip(1).map(|rest| rest.split_whitespace().next().unwrap_or(""));
        counts.map(|n| n.parse::<u64>().with_context(|| format!("odd nft counter in {text}"))).sum()
    }

    /// Runs `work` on a thread of its own that has entered the namespace, so the sockets it
    /// opens live there (the test's other threads stay where they were).
    pub fn run_inside<T: Send>(&self, work: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                    // SAFETY: setns only reads the descriptor, which stays open for the call, and
                    // changes the network namespace of this thread alone.
                    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        bail!("setns into {}: {}", self.name, std::io::Error::last_os_error());
                    }
                    work()
                })
                .join()
                .map_err(|_| anyhow!("the thread inside {} panicked", self.name))?
        })
    }
}

impl Netns {
    /// Deletes the namespaces named `PREFIX<pid>-...` (and kills their processes) whose creating
    /// process is gone: what a killed run left behind.
    pub fn remove_stale(prefix: &str) {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let Some(rest) = name.strip_prefix(prefix) else { continue };
            let pid = rest.split('-').next().unwrap_or_default();
            // A zombie (killed, not yet reaped) counts as gone.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
            if state.is_some_and(|s| s != "Z") {
                continue;
            }
            drop(Netns { name: name.to_owned() });
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever still runs inside (a process a test forgot, or a panicking test's) goes first.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).stderr(Stdio::null()).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()) {
                // SAFETY: kill only sends a signal; the pids were just listed inside this namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// Runs a command to completion, failing with its stderr if it fails.
pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// A running signal server.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `signal-server` on a free loopback port with extra flags.
    pub fn start(args: &[&str]) -> anyhow::Result<Server> {
        Self::start_in(None, args)
    }

    /// Starts `signal-server` on a free loopback port, inside network namespace `netns` if given.
    pub fn start_in(netns: Option<&str>, args: &[&str]) -> anyhow::Result<Server> {
        Self::start_listening_in(netns, "127.0.0.1:0", args)
    }

    /// Starts `signal-server` listening on `listen`, inside network namespace `netns` if given.
    pub fn start_listening_in(netns: Option<&str>, listen: &str, args: &[&str]) -> anyhow::Result<Server> {
        let mut command = program(netns, "signal-server")?;
        command.args(["--listen", listen]).args(args);
        Self::spawn(command)
    }

    /// Runs `command`, a signal server with its flags and environment, and waits for the line
    /// that says where it listens.
    pub fn spawn(mut command: Command) -> anyhow::Result<Server> {
        let mut child =
            command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().context("starting signal-server")?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut lines = BufReader::new(stdout).lines();
        let Some(first) = lines.next() else {
            let status = child.wait()?;
            bail!("signal-server exited at once: {status}");
        };
        let first = first?;
        let addr = first.strip_prefix("listening on ").ok_or_else(|| anyhow!("unexpected first line {first:?}"))?;
        let addr = addr.to_owned();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, addr })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Sends SIGTERM (what systemd's stop sends) and waits up to `limit` for the server to exit.
    pub fn terminate(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        // SAFETY: kill only sends a signal, to our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("signal-server still runs {limit:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The value of metric `strangers_<name>` on the server's /metrics.
    pub fn metric(&self, name: &str) -> anyhow::Result<u64> {
        read_metric(&self.addr, name)
    }
}

/// The value of metric `strangers_<name>` on the /metrics of the signal server at `addr`
/// (reached from the calling thread's network namespace).
pub fn read_metric(addr: &str, name: &str) -> anyhow::Result<u64> {
    let mut conn = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: strangers\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut conn, &mut text)?;
    let wanted = format!("strangers_{name} ");
    let line = text.lines().find(|l| l.starts_with(&wanted)).with_context(|| format!("no {wanted}in /metrics"))?;
    line[wanted.len()..].trim().parse().with_context(|| format!("unreadable metric: {line}"))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The signal server tests' redis-server helper, shared rather than written twice.
#[allow(dead_code)]
#[path = "../../signal-server/tests/support/redis.rs"]
mod redis_server;

/// A redis-server of the test's own on a free loopback port (one only it answers on), with no
/// persistence; killed on drop. Several signal servers given its [`Redis::url`] make a cluster.
pub struct Redis {
    _server: redis_server::RedisServer,
    pub url: String,
}

impl Redis {
    pub fn start() -> anyhow::Result<Redis> {
        let server = redis_server::RedisServer::start();
        Ok(Redis { url: server.url(), _server: server })
    }
}

/// A running headless client and the events it printed.
pub struct Client {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    /// Every event seen so far, in order.
    pub seen: Vec<Value>,
    /// Where the process's log (its stderr) goes; quoted when a wait fails, removed on drop.
    log: Option<PathBuf>,
}

impl Client {
    /// Starts `strangers --headless` against `server` with extra flags.
    pub fn start(name: &str, server: &str, args: &[&str]) -> anyhow::Result<Client> {
        Self::start_in(None, name, server, args)
    }

    /// Starts `strangers --headless` against `server`, inside network namespace `netns` if given.
    pub fn start_in(netns: Option<&str>, name: &str, server: &str, args: &[&str]) -> anyhow::Result<Client> {
        let mut command = program(netns, "strangers")?;
        command.args(["--headless", "--server", server]).args(args);
        Self::spawn(name, command)
    }

    /// Runs `command` as a client: JSON lines on its stdout are its events.
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Client> {
        let log = log_path(name);
        let stderr = std::fs::File::create(&log).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Client { name: name.to_owned(), child, stdin, events, seen: Vec::new(), log: Some(log) })
    }

    /// Types a command on the client's stdin (`next`, `chat hi`, ...).
    pub fn command(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("stdin closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for the first event (after those already seen) that satisfies `want`.
    pub fn wait_for(&mut self, timeout: Duration, what: &str, want: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if want(&event) {
                        return Ok(event);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "{}: no {what} within {timeout:?}; last events: {}{}",
                        self.name,
                        self.tail(8),
                        self.log_tail()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("{}: exited before {what}; last events: {}{}", self.name, self.tail(8), self.log_tail())
                }
            }
        }
    }

    /// Waits for an event named `name`.
    pub fn wait_event(&mut self, timeout: Duration, name: &str) -> anyhow::Result<Value> {
        self.wait_for(timeout, name, |e| e["event"] == name)
    }

    /// Every event that arrived since the last look, without keeping them in `seen` (for long
    /// runs, whose events would pile up).
    pub fn drain(&mut self) -> Vec<Value> {
        self.events.try_iter().collect()
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// All events named `name` seen so far.
    pub fn seen_named(&self, name: &str) -> Vec<&Value> {
        self.seen.iter().filter(|e| e["event"] == name).collect()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.seen.push(event);
            }
            if let Some(status) = self.child.try_wait()? {
                while let Ok(event) = self.events.recv_timeout(Duration::from_millis(100)) {
                    self.seen.push(event);
                }
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tail(&self, n: usize) -> String {
        let start = self.seen.len().saturating_sub(n);
        self.seen[start..].iter().map(|e| truncate(&e.to_string(), 300)).collect::<Vec<_>>().join(" | ")
    }

    /// The last lines of the client's log, for a failure message (empty when it logged nothing).
    fn log_tail(&self) -> String {
        const LINES: usize = 20;
        let Some(text) = self.log.as_ref().and_then(|path| std::fs::read_to_string(path).ok()) else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let start = lines.len().saturating_sub(LINES);
        let tail: Vec<String> = lines[start..].iter().map(|line| truncate(line, 300)).collect();
        format!("\n{}'s log, last {} lines:\n{}", self.name, lines.len() - start, tail.join("\n"))
    }
}

/// A fresh file in the temporary directory for a client's log.
fn log_path(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    std::env::temp_dir().join(format!("strangers-test-{}-{n}-{name}.log", std::process::id()))
}

/// Starts a server and two headless clients, `a` and `b` (with `args`), inside `netns`, and
/// waits until both are connected and have decoded the other's first frame. The namespace
/// must outlive what this returns.
pub fn call_in(netns: &Netns, args: &[&str], timeout: Duration) -> anyhow::Result<(Server, Client, Client)> {
    let ns = Some(netns.name.as_str());
    let server = Server::start_in(ns, &[])?;
    let mut a = Client::start_in(ns, "a", &server.ws_url(), args)?;
    let mut b = Client::start_in(ns, "b", &server.ws_url(), args)?;
    for c in [&mut a, &mut b] {
        c.wait_event(timeout, "connected")?;
        c.wait_event(timeout, "first_frame")?;
    }
    Ok((server, a, b))
}

/// Checks that a call survived an interruption of `a`'s signaling: `a` resumed its session
/// (`first_welcome` is its welcome before), media kept flowing on both sides (60 more frames
/// verified on `a` than `frames_before`), nobody heard `partner_left`, and `a`'s `next` still
/// reaches `b` through the server(s).
pub fn assert_call_survived(
    a: &mut Client,
    b: &mut Client,
    first_welcome: &Value,
    frames_before: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let welcome = a.wait_event(timeout, "welcome")?;
    anyhow::ensure!(welcome["resumed"] == true, "not resumed: {welcome}");
    anyhow::ensure!(welcome["id"] == first_welcome["id"], "another session came back: {welcome}");
    let frames = |e: &Value| e["frames_verified"].as_u64().unwrap_or(0);
    let after = a.wait_for(timeout, "more frames", |e| e["event"] == "stats" && frames(e) >= frames_before + 60)?;
    anyhow::ensure!(after["verify_errors"] == 0, "frames failed verification: {after}");
    b.wait_for(timeout, "b frames", |e| e["event"] == "stats" && frames(e) >= 120)?;
    anyhow::ensure!(a.seen_named("partner_left").is_empty(), "a lost its partner");
    anyhow::ensure!(b.seen_named("partner_left").is_empty(), "b lost its partner");
    a.command("next")?;
    let left = b.wait_event(timeout, "partner_left")?;
    anyhow::ensure!(left["reason"] == "next", "b heard {left}");
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_owned()
    } else {
        format!("{}...", &s[..s.char_indices().take_while(|(i, _)| *i < max).last().map_or(0, |(i, _)| i)])
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(log) = self.log.take() {
            if std::env::var_os("STRANGERS_KEEP_LOGS").is_none() {
                let _ = std::fs::remove_file(log);
            }
        }
    }
}

/// CPU time (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = &stat[stat.rfind(')').ok_or_else(|| anyhow!("odd /proc stat"))? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// A TCP proxy on loopback whose connections can be cut at will, to break a client's socket
/// without a close frame (as a network drop would).
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CutProxy {
    /// Forwards every connection made to it to `target`.
    pub fn start(target: &str) -> anyhow::Result<CutProxy> {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let target = target.to_owned();
        {
            let (conns, stop) = (conns.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    let Ok(upstream) = TcpStream::connect(&target) else { continue };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    if let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) {
                        let mut held = conns.lock().expect("proxy lock");
                        held.push(c2);
                        held.push(u2);
                    }
                    pipe(client.try_clone(), upstream.try_clone());
                    pipe(upstream.try_clone(), client.try_clone());
                }
            });
        }
        Ok(CutProxy { addr, conns, stop })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Breaks every open connection (no WebSocket close frame is sent).
    pub fn cut(&self) {
        for conn in self.conns.lock().expect("proxy lock").drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.cut();
    }
}

fn pipe(from: std::io::Result<std::net::TcpStream>, to: std::io::Result<std::net::TcpStream>) {
    let (Ok(mut from), Ok(mut to)) = (from, to) else { return };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// A bare protocol client for playing a misbehaving stranger in tests.
pub struct RawPeer {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
}

impl RawPeer {
    pub fn connect(url: &str) -> anyhow::Result<RawPeer> {
        let (ws, _) = tungstenite::connect(url)?;
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        }
        Ok(RawPeer { ws })
    }

    pub fn send(&mut self, json: &str) -> anyhow::Result<()> {
        self.ws.send(tungstenite::Message::text(json))?;
        Ok(())
    }

    /// Every message that arrives within `window`.
    pub fn collect(&mut self, window: Duration) -> anyhow::Result<Vec<Value>> {
        let until = Instant::now() + window;
        let mut seen = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
                tcp.set_read_timeout(Some(left))?;
            }
            match self.ws.read() {
                Ok(tungstenite::Message::Text(text)) => seen.push(serde_json::from_str(text.as_str())?),
                Ok(tungstenite::Message::Close(_)) => break,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        }
        Ok(seen)
    }

    /// Reads messages until one of type `kind` arrives (20 s at most).
    pub fn expect(&mut self, kind: &str) -> anyhow::Result<Value> {
        loop {
            match self.ws.read()? {
                tungstenite::Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str())?;
                    if value["type"] == kind {
                        return Ok(value);
                    }
                }
                tungstenite::Message::Close(_) => bail!("closed while waiting for {kind}"),
                _ => {}
            }
        }
    }
}

/// A real coturn TURN server on loopback, with REST credentials (`use-auth-secret`).
pub struct Turn {
    child: Child,
    pub port: u16,
    pub secret: String,
    /// Its relay ports, held for it alone while it runs.
    relay: ports::PortBlock,
}

/// A free UDP port on loopback (free when asked; good enough for tests).
pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How many listening ports `Turn::start` tries before it gives up.
const TURN_ATTEMPTS: usize = 10;

impl Turn {
    /// Starts `turnserver` (Debian package `coturn`, installed by scripts/setup.sh), with
    /// relay ports of a block no other test holds. A listening port taken by someone else
    /// before coturn binds it makes coturn log "Cannot bind" (and keep trying): then it is
    /// stopped and another port is tried.
    pub fn start() -> anyhow::Result<Turn> {
        let relay = ports::PortBlock::claim()?;
        let secret = format!("test-secret-{}", std::process::id());
        for _ in 0..TURN_ATTEMPTS {
            let port = free_udp_port()?;
            let mut child = Command::new("turnserver")
                .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp-relay"])
                .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port"])
                .arg(port.to_string())
                .args(["--min-port", &relay.first.to_string(), "--max-port", &relay.last().to_string()])
                .args(["--use-auth-secret", "--static-auth-secret", &secret, "--realm", "strangers.test"])
                // The test's two clients live on loopback too.
                .args(["--allow-loopback-peers", "--log-file", "stdout", "--simple-log"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting turnserver: is coturn installed (bash scripts/setup.sh)?")?;
            // Its log, read to the end (so that coturn never blocks on a full pipe); only
            // what it says while starting is looked at.
            let log = child.stdout.take().context("turnserver's stdout")?;
            let (lines, said) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(log).lines().map_while(Result::ok) {
                    let _ = lines.send(line);
                }
            });
            // Wait until it answers on its port.
            std::thread::sleep(Duration::from_millis(300));
            let port_taken = said.try_iter().any(|line| line.contains("Cannot bind"));
            if !port_taken && child.try_wait()?.is_none() {
                return Ok(Turn { child, port, secret, relay });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        bail!("turnserver did not stay up on any of {TURN_ATTEMPTS} ports")
    }

    /// The first and last of its relay ports.
    pub fn relay_ports(&self) -> (u16, u16) {
        (self.relay.first, self.relay.last())
    }

    /// Flags for `signal-server` handing this TURN server to clients.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--turn-url".into(),
            format!("turn:127.0.0.1:{}?transport=udp", self.port),
            "--turn-secret".into(),
            self.secret.clone(),
        ]
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

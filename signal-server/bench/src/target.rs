//! The server under test: either a `signal-server` this bench spawns on 127.0.0.1 port 0 (and
//! kills when the [`Target`] is dropped, on error and Ctrl-C included), or one it attaches to
//! by URL and, optionally, process id. Only loopback addresses are accepted.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::procfs;

/// How long a spawned server has to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Server output lines kept to explain a server that died.
const KEPT_LINES: usize = 20;

/// Flags the bench passes unless `--server-arg` sets them: loopback on a free port, and no
/// per-address or rate limits, since every bench client comes from 127.0.0.1 and sends fast.
const DEFAULT_FLAGS: [(&str, &str); 3] =
    [("--listen", "127.0.0.1:0"), ("--max-conns-per-ip", "0"), ("--rate-limit", "0")];

/// How to reach the server under test.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    Spawn { bin: PathBuf, extra_args: Vec<String> },
    Attach { url: String, pid: Option<u32> },
}

/// A server ready for clients.
pub struct Target {
    pub addr: SocketAddr,
    pub url: String,
    pub pid: Option<u32>,
    /// Processes whose CPU counts as the server's too (redis-server and the other nodes in
    /// Redis mode).
    pub companions: Vec<u32>,
    /// Redis mode with several nodes: the other nodes, sharing the load with this one.
    pub others: Vec<Target>,
    spawned: Option<Spawned>,
}

struct Spawned {
    child: Child,
    recent: Arc<Mutex<VecDeque<String>>>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SIGKILL: the figures are already taken, and a graceful drain of thousands of
        // sockets would only slow the exit down.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    /// Starts or attaches to the server `spec` names.
    pub fn open(spec: &TargetSpec) -> anyhow::Result<Target> {
        match spec {
            TargetSpec::Spawn { bin, extra_args } => spawn(bin, extra_args),
            TargetSpec::Attach { url, pid } => attach(url, *pid),
        }
    }

    /// Every node's address and URL: this one, then the others.
    pub fn nodes(&self) -> Vec<(SocketAddr, String)> {
        std::iter::once(self).chain(&self.others).map(|t| (t.addr, t.url.clone())).collect()
    }

    /// Whether this bench started the server (and so may read its CPU and memory at will).
    pub fn spawned(&self) -> bool {
        self.spawned.is_some()
    }

    /// The server's CPU time so far (with its companions'), in microseconds, if its process id
    /// is known.
    pub fn cpu_micros(&self) -> anyhow::Result<Option<u64>> {
        let Some(own) = self.pid.map(procfs::cpu_micros).transpose()? else { return Ok(None) };
        Ok(Some(own + self.companion_cpu_micros()?.iter().map(|(_, cpu)| cpu).sum::<u64>()))
    }

    /// Each companion's CPU time so far, in microseconds, by process id.
    pub fn companion_cpu_micros(&self) -> anyhow::Result<Vec<(u32, u64)>> {
        self.companions.iter().map(|pid| Ok((*pid, procfs::cpu_micros(*pid)?))).collect()
    }

    /// The server process's own kernel (system) CPU time so far, in microseconds.
    pub fn kernel_cpu_micros(&self) -> anyhow::Result<Option<u64>> {
        self.pid.map(|pid| procfs::cpu_split_micros(pid).map(|(_, system)| system)).transpose()
    }

    /// The server's resident memory, in bytes, if its process id is known.
    pub fn rss_bytes(&self) -> anyhow::Result<Option<u64>> {
        self.pid.map(procfs::rss_bytes).transpose()
    }

    /// Fails, with the server's last output lines, if a spawned server has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let Some(spawned) = &mut self.spawned else { return Ok(()) };
        if let Some(status) = spawned.child.try_wait().context("cannot check the server process")? {
            let lines = spawned.recent.lock().map(|l| l.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
            bail!("the server exited ({status}); its last output:\n{}", lines.join("\n"));
        }
        Ok(())
    }
}

/// The `signal-server` built next to this bench (both live in `target/<profile>/`).
pub fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("signal-server")))
        .unwrap_or_else(|| PathBuf::from("signal-server"))
}

fn spawn(bin: &Path, extra_args: &[String]) -> anyhow::Result<Target> {
    if !bin.exists() {
        bail!(
            "no server binary at {} (build it with `cargo build --release -p signal-server`, or pass --server-bin)",
            bin.display()
        );
    }
    let mut command = Command::new(bin);
    for (flag, value) in DEFAULT_FLAGS {
        let overridden = extra_args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        if !overridden {
            command.args([flag, value]);
        }
    }
    command.args(extra_args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    // SAFETY: the closure runs in the child between fork and exec and makes only the
    // async-signal-safe `prctl` system call.
    unsafe {
        command.pre_exec(|| {
            // If the bench dies without running its destructors (SIGKILL), the server dies too.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout was piped above");
    let recent = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
    let (addr_tx, addr_rx) = mpsc::channel();
    let kept = recent.clone();
    // The server logs to stdout too: this thread keeps draining it, so the server never
    // blocks on a full pipe, and keeps the last lines for error messages.
    std::thread::Builder::new()
        .name("server-stdout".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = addr_tx.send(addr.trim().to_owned());
                }
                if let Ok(mut kept) = kept.lock() {
                    if kept.len() == KEPT_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            }
        })
        .context("cannot start the thread reading the server's output")?;
    let mut target = Target {
        addr: "127.0.0.1:0".parse()?,
        url: String::new(),
        pid: Some(pid),
        companions: Vec::new(),
        spawned: None,
        others: Vec::new(),
    };
    target.spawned = Some(Spawned { child, recent });
    let addr = match addr_rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => addr,
        Err(_) => {
            target.check_alive()?;
            bail!("the server did not print \"listening on ADDR\" within {START_TIMEOUT:?}");
        }
    };
    target.addr = addr.parse().with_context(|| format!("the server printed an unreadable address {addr:?}"))?;
    if !target.addr.ip().is_loopback() {
        bail!("the server listens on {}, not a loopback address: pass --server-arg=--listen=127.0.0.1:0", target.addr);
    }
    target.url = format!("ws://{}/ws", target.addr);
    Ok(target)
}

fn attach(url: &str, pid: Option<u32>) -> anyhow::Result<Target> {
    let rest = url.strip_prefix("ws://").context("--server-url must start with ws:// (TLS is not benchmarked)")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority:?}"))?
        .next()
        .with_context(|| format!("{authority:?} names no address"))?;
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address: this bench only loads servers on this machine");
    }
    if let Some(pid) = pid {
        procfs::cpu_micros(pid).with_context(|| format!("--server-pid {pid} is not a readable process"))?;
    }
    Ok(Target { addr, url: url.to_owned(), pid, companions: Vec::new(), others: Vec::new(), spawned: None })
}

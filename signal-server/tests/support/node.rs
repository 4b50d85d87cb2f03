//! The real `signal-server` binary as a separate process, so a test can `kill -9` it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::{RedisServer, TestServer};

/// A signal-server process on a free loopback port, killed on drop.
pub struct NodeProcess {
    child: Option<Child>,
    /// A handle to connect clients to it (no in-process server behind it).
    pub server: TestServer,
}

impl NodeProcess {
    /// Starts a node sharing `redis`, with extra flags; returns once it listens.
    pub fn start(redis: &RedisServer, flags: &[&str]) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_signal-server"))
            .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()])
            .args(flags)
            .env("RUST_LOG", std::env::var("STRANGERS_TEST_NODE_LOG").unwrap_or_else(|_| "off".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // STRANGERS_TEST_NODE_LOG=info shows the nodes' logs.
            .stderr(if std::env::var_os("STRANGERS_TEST_NODE_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("starting the signal-server binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reading the listening line");
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("signal-server did not start: {line:?}"))
            .parse()
            .expect("a socket address");
        NodeProcess { child: Some(child), server: TestServer::at(addr) }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// `kill -9`: the node dies without a word to anyone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

//! A real `redis-server` for tests: started on a free loopback port with no persistence,
//! killed on drop. Tests never rely on a system service.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

/// A redis-server process owned by a test.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

/// A port the kernel just handed out on 127.0.0.1 (and took back).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// How many ports [`RedisServer::start`] tries before it gives up.
const ATTEMPTS: usize = 20;

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_from(std::iter::repeat_with(free_port))
    }

    /// Starts redis-server on the first of `ports` where it is the one answering. A port is
    /// free only when asked, so another process (another test's redis-server) may take it
    /// before ours binds: then ours exits, or someone else answers, and the next port is tried.
    pub fn start_from(ports: impl IntoIterator<Item = u16>) -> RedisServer {
        for port in ports.into_iter().take(ATTEMPTS) {
            let mut server = RedisServer { child: None, port };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server found no free port in {ATTEMPTS} tries");
    }

    /// Starts redis-server on `self.port`; true once it answers there itself, false if the
    /// port turned out to be taken.
    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning", "--dir", &std::env::temp_dir().to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (install it with scripts/setup.sh)");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                // It could not bind: the port is taken.
                return false;
            }
            if self.answers_ping() {
                if self.command(&["INFO", "server"]).contains(&format!("process_id:{pid}\r\n")) {
                    self.child = Some(child);
                    return true;
                }
                // Someone else answers on this port.
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer on port {} in 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// The URL to give `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL): everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "port {} was taken while redis-server restarted", self.port);
    }

    /// Runs one command through redis-cli-free RESP and returns the raw reply (for checks).
    pub fn command(&self, args: &[&str]) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).expect("connecting to redis");
        stream.set_read_timeout(Some(Duration::from_secs(2))).expect("setting a timeout");
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).expect("writing to redis");
        let mut reply = Vec::new();
        let mut buf = [0u8; 65536];
        // Replies of the checks are small: one read after a short pause gets them whole.
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(n) = stream.read(&mut buf) {
            reply.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&reply).into_owned()
    }
}

impl RedisServer {
    /// The violations of the shared state's invariants (`invariants.lua`), read in one
    /// atomic step; empty when everything holds.
    pub fn violations(&self) -> Vec<String> {
        let script = include_str!("../../src/redis/invariants.lua");
        let reply = self.command(&["EVAL", script, "0"]);
        assert!(reply.starts_with('*'), "the invariants script failed: {reply}");
        reply.split("\r\n").skip(1).filter(|l| !l.is_empty() && !l.starts_with('$')).map(String::from).collect()
    }

    /// The keys matching `pattern` (KEYS: fine for a test's small database).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&["KEYS", pattern]);
        reply
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
            .map(String::from)
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

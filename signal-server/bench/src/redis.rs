//! Redis mode (`--redis`): the bench starts its own `redis-server` on a free loopback port (no
//! persistence, killed with the bench), gives every spawned signal server `--redis`, counts
//! redis-server's CPU with the server's, reads the Redis round trips per match from the
//! server's /metrics, and probes relay latency between two nodes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A redis-server this bench owns.
pub struct RedisProcess {
    child: Child,
    pub url: String,
}

impl RedisProcess {
    pub fn start() -> anyhow::Result<RedisProcess> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server (install it with scripts/setup.sh)")?;
        let redis = RedisProcess { child, url: format!("redis://127.0.0.1:{port}/") };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One counter or gauge from a server's /metrics.
pub fn metric(addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    body.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .with_context(|| format!("no {name} in /metrics"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

/// Redis round trips per match that clients caused (heartbeats and timers left out), and
/// the client commands run in Redis per match (a round trip carries a batch of them).
pub fn round_trips_per_match(nodes: &[SocketAddr]) -> anyhow::Result<(f64, f64)> {
    let (mut trips, mut operations) = (0.0, 0.0);
    for node in nodes {
        trips += metric(*node, "strangers_redis_round_trips_total")?
            - metric(*node, "strangers_redis_background_round_trips_total")?;
        operations += metric(*node, "strangers_redis_operations_total")?;
    }
    // The whole cluster's count, read from Redis by any node.
    let matches = metric(nodes[0], "strangers_matches_total")?.max(1.0);
    Ok((trips / matches, operations / matches))
}

//! The server's one typed configuration, parsed at the edge from flags with environment
//! fallbacks. Nothing deeper in the server reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Strangers signal server: pairs strangers and relays their WebRTC signaling.
#[derive(Debug, Clone, Parser)]
#[command(name = "signal-server", version, about)]
pub struct Config {
    /// Address to listen on (WebSocket at /ws, plus /healthz and /metrics). `[::]:PORT` serves
    /// IPv4 and IPv6 alike.
    #[arg(long, env = "STRANGERS_LISTEN", default_value = "127.0.0.1:8686")]
    pub listen: SocketAddr,

    /// Seconds a session whose socket dropped is held for a resume.
    #[arg(long, env = "STRANGERS_RESUME_GRACE", default_value_t = 10.0, value_name = "SECS")]
    pub resume_grace: f64,

    /// Seconds a client with interests waits for a common interest before meeting anyone.
    #[arg(long, env = "STRANGERS_INTEREST_WAIT", default_value_t = 5.0, value_name = "SECS")]
    pub interest_wait: f64,

    /// A STUN server URL handed to clients (repeatable; the variable takes a comma list).
    #[arg(long = "stun-url", env = "STRANGERS_STUN_URLS", value_delimiter = ',', value_name = "URL")]
    pub stun_urls: Vec<String>,

    /// UDP address on which to answer STUN Binding requests (off by default; `[::]:PORT` for
    /// both families). The server cannot know its public name: pair it with --stun-url
    /// stun:PUBLIC_HOST:PORT so clients use it (one URL per family, `stun:[V6]:PORT`).
    #[arg(long, env = "STRANGERS_STUN_LISTEN", value_name = "ADDR")]
    pub stun_listen: Option<SocketAddr>,

    /// A TURN server URL handed to clients with short-lived credentials (repeatable).
    #[arg(long = "turn-url", env = "STRANGERS_TURN_URLS", value_delimiter = ',', value_name = "URL")]
    pub turn_urls: Vec<String>,

    /// Secret shared with the TURN server (coturn `static-auth-secret`).
    #[arg(long, env = "STRANGERS_TURN_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub turn_secret: Option<String>,

    /// Seconds TURN credentials stay valid.
    #[arg(long, env = "STRANGERS_TURN_TTL", default_value_t = 3600, value_name = "SECS")]
    pub turn_ttl: u64,

    /// Messages per second a connection may send (0 turns the limit off, for benchmarks).
    #[arg(long, env = "STRANGERS_RATE_LIMIT", default_value_t = 20, value_name = "MSGS_PER_SEC")]
    pub rate_limit: u32,

    /// Messages a connection may send in one burst (default: three seconds' worth, at least 50).
    #[arg(long, env = "STRANGERS_RATE_BURST", value_name = "MSGS")]
    pub rate_burst: Option<u32>,

    /// Most open connections from one address (0: unlimited).
    #[arg(long, env = "STRANGERS_MAX_CONNS_PER_IP", default_value_t = 32, value_name = "N")]
    pub max_conns_per_ip: u32,

    /// Most open connections in all (0: unlimited).
    #[arg(long, env = "STRANGERS_MAX_CONNS", default_value_t = 0, value_name = "N")]
    pub max_conns: u32,

    /// Threads serving sockets. One is the cheapest per match (no wake-ups between threads)
    /// and serves thousands of matches a second; more help with TLS or a busier box.
    #[arg(long, env = "STRANGERS_THREADS", default_value_t = 1, value_name = "N")]
    pub threads: usize,

    /// Reports against one address, within the report window, that ban it (0: never).
    #[arg(long, env = "STRANGERS_REPORT_THRESHOLD", default_value_t = 3, value_name = "N")]
    pub report_threshold: u32,

    /// Seconds a report counts towards a ban.
    #[arg(long, env = "STRANGERS_REPORT_WINDOW", default_value_t = 3600, value_name = "SECS")]
    pub report_window: u64,

    /// Seconds a ban lasts.
    #[arg(long, env = "STRANGERS_BAN_DURATION", default_value_t = 3600, value_name = "SECS")]
    pub ban_duration: u64,

    /// Seconds of silence after which the server pings a socket.
    #[arg(long, env = "STRANGERS_PING_INTERVAL", default_value_t = 10.0, value_name = "SECS")]
    pub ping_interval: f64,

    /// Seconds of silence after which a socket counts as dropped (half-open detection).
    #[arg(long, env = "STRANGERS_IDLE_TIMEOUT", default_value_t = 25.0, value_name = "SECS")]
    pub idle_timeout: f64,

    /// Most signals held for a partner who is reconnecting.
    #[arg(long, env = "STRANGERS_MAX_PENDING_SIGNALS", default_value_t = 256, value_name = "N")]
    pub max_pending_signals: usize,

    /// TLS certificate chain (PEM); with --tls-key, serves wss:// and https://.
    #[arg(long, env = "STRANGERS_TLS_CERT", requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "STRANGERS_TLS_KEY", requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// A reverse proxy (load balancer) whose `X-Real-IP` header names the client (repeatable).
    /// Connections from anyone else are taken at their TCP address. Caps, reports and bans
    /// apply to the client's address, not the proxy's.
    #[arg(long = "trusted-proxy", env = "STRANGERS_TRUSTED_PROXIES", value_delimiter = ',', value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Share the pairing state with other signal servers through this Redis (redis://HOST:PORT[/DB]).
    /// Without it, everything stays in this process's memory.
    #[arg(long, env = "STRANGERS_REDIS", hide_env_values = true, value_name = "URL")]
    pub redis: Option<String>,

    /// With --redis: seconds without a heartbeat after which a node is taken for dead and its
    /// sessions are held for a resume on another node.
    #[arg(long, env = "STRANGERS_NODE_TIMEOUT", default_value_t = 5.0, value_name = "SECS")]
    pub node_timeout: f64,

    /// With --redis: milliseconds a pairing command (hello, find, next, stop, report, close)
    /// may wait for others to share its round trip to Redis (0: send at once). Far less CPU at
    /// low and moderate load, in the node and in Redis, for at most this much more time to
    /// meet the next stranger (a call then takes a hundred milliseconds or more to connect).
    #[arg(long, env = "STRANGERS_REDIS_BATCH_MS", default_value_t = 10.0, value_name = "MS")]
    pub redis_batch_ms: f64,

    /// With --redis: milliseconds a signal for a stranger on another node may wait for
    /// others to share its round trip (0: none; signals that come while one round trip is
    /// out still share the next). Signals set up the call, so by default they do not wait; one
    /// that goes through a call ends the wait of the batch it joins.
    #[arg(long, env = "STRANGERS_REDIS_SIGNAL_BATCH_MS", default_value_t = 0.0, value_name = "MS")]
    pub redis_signal_batch_ms: f64,

    /// The community's name, shown to people before their first stranger on this server.
    #[arg(long, env = "STRANGERS_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// A plain text file with the community's rules (at most 16 KiB). Clients show them and
    /// ask people to accept them, and to confirm they are 18 or older, before their first
    /// stranger here.
    #[arg(long, env = "STRANGERS_RULES_FILE", value_name = "FILE")]
    pub rules_file: Option<PathBuf>,

    /// The name and rules once read (`load_community`): the file is read once, at start.
    #[arg(skip)]
    pub community: Option<crate::community::Community>,

    /// Log format: "text" or "json".
    #[arg(long, env = "STRANGERS_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Config {
    /// Checks what clap cannot: relations between flags and value ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !self.turn_urls.is_empty() && self.turn_secret.as_deref().is_none_or(str::is_empty) {
            return Err("--turn-url needs --turn-secret (the coturn static-auth-secret)".into());
        }
        for url in &self.stun_urls {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return Err(format!("--stun-url {url:?} must start with stun: or stuns:"));
            }
        }
        for url in &self.turn_urls {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return Err(format!("--turn-url {url:?} must start with turn: or turns:"));
            }
        }
        for (name, secs) in [
            ("--resume-grace", self.resume_grace),
            ("--interest-wait", self.interest_wait),
            ("--ping-interval", self.ping_interval),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if !(0.0..=86_400.0).contains(&secs) {
                return Err(format!("{name} must be between 0 and 86400 seconds"));
            }
        }
        if self.ping_interval <= 0.0 || self.idle_timeout <= self.ping_interval {
            return Err("--idle-timeout must be longer than --ping-interval, which must be positive".into());
        }
        if self.threads == 0 || self.threads > 1024 {
            return Err("--threads must be between 1 and 1024".into());
        }
        if let Some(url) = &self.redis {
            if !url.starts_with("redis://") && !url.starts_with("redis+unix://") && !url.starts_with("unix://") {
                return Err("--redis must be a redis://HOST:PORT URL (or unix://PATH)".into());
            }
        }
        if !(0.3..=3600.0).contains(&self.node_timeout) {
            return Err("--node-timeout must be between 0.3 and 3600 seconds".into());
        }
        for (name, ms) in
            [("--redis-batch-ms", self.redis_batch_ms), ("--redis-signal-batch-ms", self.redis_signal_batch_ms)]
        {
            if !(0.0..=100.0).contains(&ms) {
                return Err(format!("{name} must be between 0 and 100"));
            }
        }
        if self.turn_ttl == 0 {
            return Err("--turn-ttl must be positive".into());
        }
        Ok(())
    }

    pub fn resume_grace(&self) -> Duration {
        Duration::from_secs_f64(self.resume_grace)
    }

    pub fn interest_wait(&self) -> Duration {
        Duration::from_secs_f64(self.interest_wait)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs_f64(self.ping_interval)
    }

    pub fn redis_batch_window(&self) -> Duration {
        Duration::from_secs_f64(self.redis_batch_ms / 1000.0)
    }

    pub fn redis_signal_batch_window(&self) -> Duration {
        Duration::from_secs_f64(self.redis_signal_batch_ms / 1000.0)
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.node_timeout)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout)
    }

    /// Reads the community's rules file (a clear error if it cannot serve as rules).
    pub fn load_community(&mut self) -> Result<(), String> {
        self.community = Some(crate::community::Community::load(self.name.as_deref(), self.rules_file.as_deref())?);
        Ok(())
    }

    /// The community's name and rules: as loaded, or read now.
    pub fn community(&self) -> Result<crate::community::Community, String> {
        match &self.community {
            Some(community) => Ok(community.clone()),
            None => crate::community::Community::load(self.name.as_deref(), self.rules_file.as_deref()),
        }
    }

    /// The burst size in force.
    pub fn rate_burst(&self) -> u32 {
        self.rate_burst.unwrap_or_else(|| (self.rate_limit.saturating_mul(3)).max(50))
    }

    /// A configuration for tests: loopback, every default, no limits that tests trip over.
    pub fn for_tests() -> Config {
        Config::parse_from(["signal-server", "--listen", "127.0.0.1:0"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str]) -> Result<Config, String> {
        let config = Config::try_parse_from(["signal-server"].iter().chain(args)).map_err(|e| e.to_string())?;
        config.validate().map(|()| config)
    }

    #[test]
    fn the_redis_batch_windows_default_to_ten_and_zero_milliseconds_and_are_bounded() {
        assert_eq!(check(&[]).unwrap().redis_batch_window(), Duration::from_millis(10));
        assert_eq!(check(&[]).unwrap().redis_signal_batch_window(), Duration::ZERO);
        assert_eq!(check(&["--redis-batch-ms", "0"]).unwrap().redis_batch_window(), Duration::ZERO);
        assert_eq!(check(&["--redis-batch-ms", "0.5"]).unwrap().redis_batch_window(), Duration::from_micros(500));
        let signals = check(&["--redis-signal-batch-ms", "2"]).unwrap();
        assert_eq!(signals.redis_signal_batch_window(), Duration::from_millis(2));
        for flag in ["--redis-batch-ms", "--redis-signal-batch-ms"] {
            for bad in ["-1", "101", "NaN"] {
                assert!(check(&[flag, bad]).is_err(), "{flag} {bad} accepted");
            }
        }
    }
}

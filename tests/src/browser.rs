//! Chromium as a stranger: serves `tests/browser/peer.html` from a small HTTP server on
//! loopback, runs Debian's headless Chromium on it with fake camera and microphone, and reads
//! the JSON events the page prints with `console.log` from Chromium's log on stderr. The
//! browser's processes and profile folder go when its handle drops, also when a test fails.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// The page the browser runs, compiled into the tests so that they find it from any folder.
const PAGE: &str = include_str!("../browser/peer.html");
/// Chromium log lines kept for a failure message.
const LOG_LINES: usize = 40;

/// A static HTTP server on a free loopback port serving the page at `/peer.html`. An
/// `http://127.0.0.1` page is a secure context, so the page may ask for camera and microphone.
struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    fn start() -> anyhow::Result<PageServer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the page server")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                // One thread per connection: a connection the browser opens ahead of need and
                // leaves silent must not hold up the page.
                if let Ok(conn) = conn {
                    std::thread::spawn(move || serve(conn));
                }
            }
        });
        Ok(PageServer { addr, stop })
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag and ends.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers one request: the page for `GET /peer.html` (whatever its query), 404 for anything
/// else. Every response closes its connection.
fn serve(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.lines().next().and_then(|line| line.strip_prefix("GET ")).unwrap_or("");
    let path = target.split([' ', '?']).next().unwrap_or("");
    let (status, kind, body) = if path == "/peer.html" {
        ("200 OK", "text/html; charset=utf-8", PAGE)
    } else {
        ("404 Not Found", "text/plain", "not found")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes());
}

/// What a browser joins with: the signal server and the page's codec choice.
#[derive(Debug, Clone, Default)]
pub struct BrowserConfig {
    /// The signal server's WebSocket URL.
    pub server: String,
    /// `prefer=CODEC`: list this video codec first (`h264`, `vp8`).
    pub prefer: Option<String>,
    /// `only=CODEC`: list only this video codec.
    pub only: Option<String>,
}

impl BrowserConfig {
    pub fn new(server: &str) -> BrowserConfig {
        BrowserConfig { server: server.to_owned(), ..BrowserConfig::default() }
    }

    /// The page's query string.
    fn query(&self) -> String {
        let mut query = format!("server={}", encode(&self.server));
        if let Some(codec) = &self.prefer {
            query += &format!("&prefer={}", encode(codec));
        }
        if let Some(codec) = &self.only {
            query += &format!("&only={}", encode(codec));
        }
        query
    }
}

/// Percent-encodes everything but unreserved characters, for a query parameter's value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A headless Chromium running the page, and the events the page reported.
pub struct Browser {
    pub name: String,
    child: Child,
    events: Receiver<Value>,
    /// Every event seen so far, in order.
    pub seen: Vec<Value>,
    /// The last lines Chromium logged that were not the page's events.
    log: Arc<Mutex<VecDeque<String>>>,
    profile: PathBuf,
    _page: PageServer,
}

impl Browser {
    /// Starts Chromium (Debian package `chromium`, installed by scripts/setup.sh) on the page.
    pub fn start(name: &str, config: &BrowserConfig) -> anyhow::Result<Browser> {
        let page = PageServer::start()?;
        let url = format!("http://{}/peer.html?{}", page.addr, config.query());
        let profile = profile_dir(name);
        std::fs::create_dir_all(&profile).with_context(|| format!("creating {}", profile.display()))?;
        let mut command = Command::new("chromium");
        command
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.display()))
            // Fake camera (a moving test picture) at 30 fps and microphone (beeps), granted
            // without asking.
            .args(["--use-fake-device-for-media-stream=fps=30", "--use-fake-ui-for-media-stream"])
            // Host candidates on 127.0.0.1, and real addresses rather than mDNS names.
            .args(["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"])
            .arg("--autoplay-policy=no-user-gesture-required")
            // Nothing leaves the machine: no background requests, no name resolves but the
            // loopback address, and any other request goes to a closed loopback port.
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .args(["--disable-default-apps", "--disable-extensions", "--no-pings", "--disable-domain-reliability"])
            .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
            .arg("--proxy-server=127.0.0.1:9")
            // Console messages (the page's events) go to stderr.
            .args(["--enable-logging=stderr", "--v=0"])
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // A process group of its own, so that drop ends the renderer and helpers too.
            .process_group(0);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                return Err(e).context("starting chromium: is it installed (bash scripts/setup.sh)?");
            }
        };
        let stderr = child.stderr.take().expect("stderr was piped");
        let (tx, events) = mpsc::channel();
        let log: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                match console_text(&line) {
                    Some(text) => {
                        let event = serde_json::from_str::<Value>(text)
                            .unwrap_or_else(|_| serde_json::json!({ "event": "console", "text": text }));
                        if tx.send(event).is_err() {
                            break;
                        }
                    }
                    None => {
                        let mut kept = kept.lock().expect("log lock");
                        if kept.len() == LOG_LINES {
                            kept.pop_front();
                        }
                        kept.push_back(line);
                    }
                }
            }
        });
        Ok(Browser { name: name.to_owned(), child, events, seen: Vec::new(), log, profile, _page: page })
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
                    bail!("{}: no {what} within {timeout:?}; {}", self.name, self.describe())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("{}: chromium exited before {what}; {}", self.name, self.describe())
                }
            }
        }
    }

    /// Waits for an event named `name`.
    pub fn wait_event(&mut self, timeout: Duration, name: &str) -> anyhow::Result<Value> {
        self.wait_for(timeout, name, |e| e["event"] == name)
    }

    /// All events named `name` seen so far.
    pub fn seen_named(&self, name: &str) -> Vec<&Value> {
        self.seen.iter().filter(|e| e["event"] == name).collect()
    }

    /// The last events and Chromium's last log lines, for a failure message.
    pub fn describe(&self) -> String {
        let start = self.seen.len().saturating_sub(10);
        let events: Vec<String> = self.seen[start..].iter().map(Value::to_string).collect();
        let log = self.log.lock().expect("log lock");
        let lines: Vec<&str> = log.iter().map(String::as_str).collect();
        format!("last events: {}\nchromium's last log lines:\n{}", events.join(" | "), lines.join("\n"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal, to the process group Chromium leads (its pid).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The text of a console message in a Chromium log line
/// (`[..:INFO:CONSOLE:12] "text", source: URL (12)`), or `None` for any other line.
fn console_text(line: &str) -> Option<&str> {
    let at = line.find(":CONSOLE")?;
    let rest = &line[at..];
    let start = rest.find("] \"")? + 3;
    let end = rest.rfind("\", source: ")?;
    rest.get(start..end)
}

/// A fresh folder in the temporary directory for a browser's profile.
fn profile_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    std::env::temp_dir().join(format!("strangers-chromium-{}-{n}-{name}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_are_recognised() {
        let line = r#"[7885:7885:1207/153713.293564:INFO:CONSOLE:3] "{"event":"queued"}", source: http://127.0.0.1:1/peer.html (3)"#;
        assert_eq!(console_text(line), Some(r#"{"event":"queued"}"#));
        let old = r#"[1:1:0101/000000.000000:INFO:CONSOLE(40)] "hi", source: x (40)"#;
        assert_eq!(console_text(old), Some("hi"));
        assert_eq!(console_text("[1:1:0101/000000.000000:ERROR:gpu_init.cc(1)] no GPU"), None);
    }

    #[test]
    fn the_query_encodes_the_server_url() {
        let mut config = BrowserConfig::new("ws://127.0.0.1:5/ws");
        config.only = Some("h264".into());
        assert_eq!(config.query(), "server=ws%3A%2F%2F127.0.0.1%3A5%2Fws&only=h264");
    }
}

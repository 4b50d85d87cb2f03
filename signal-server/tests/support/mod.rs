//! A harness shared by the integration tests of the signal server: a [`TestServer`] running
//! the real server in-process on `127.0.0.1:0`, and a [`Client`] speaking WebSocket to it
//! from any loopback address. Every wait is bounded, so no test can hang, and every byte
//! goes to the loopback interface only.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod cert;
pub mod node;
pub mod redis;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signal_server::Config;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub use self::redis::RedisServer;

/// Where a test server keeps its pairing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The default: in this process's memory.
    Memory,
    /// A real redis-server the test starts (`--redis`).
    Redis,
}

/// Generates, for each named `async fn(Backend)`, one test per backend: `memory::NAME` and
/// `redis::NAME`. Both backends must pass the same contract.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $name() { super::$name($crate::support::Backend::Memory).await })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $name() { super::$name($crate::support::Backend::Redis).await })*
        }
    };
}

/// The longest any single expected event may take.
pub const STEP: Duration = Duration::from_secs(5);

/// The shortest window a client is expected to stay silent for: long enough for a message
/// already on its way over loopback to arrive.
pub const QUIET_MS: u64 = 20;

/// The address every client connects from unless a test picks another one.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A loopback address other than 127.0.0.1, for tests that need clients on distinct
/// addresses (per-address caps, reports and bans).
pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A configuration for tests from flags, as an operator would write them.
pub fn config(flags: &[&str]) -> Config {
    use clap::Parser;
    let mut args = vec!["signal-server", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    let config = Config::parse_from(args);
    config.validate().expect("test configurations are valid");
    config
}

/// The real server, running in this process until [`TestServer::shutdown`] or drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Where the STUN responder listens, if the configuration has `--stun-listen`.
    pub stun_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    tls: Option<TlsConnector>,
    /// The Redis this server uses, when the test started one for it alone.
    redis: Option<Arc<RedisServer>>,
}

impl TestServer {
    /// A handle on a server running elsewhere (a process), to connect clients to it.
    pub fn at(addr: SocketAddr) -> TestServer {
        TestServer { addr, stun_addr: None, stop: None, task: None, tls: None, redis: None }
    }

    /// The same for a server (or proxy) that speaks TLS as `localhost`, trusted by `connector`.
    pub fn at_tls(addr: SocketAddr, connector: TlsConnector) -> TestServer {
        let mut server = TestServer::at(addr);
        server.tls = Some(connector);
        server
    }

    /// Starts a plain server on `backend`; for Redis, with a redis-server of its own.
    pub async fn start_on(backend: Backend, config: Config) -> TestServer {
        match backend {
            Backend::Memory => TestServer::start(config).await,
            Backend::Redis => TestServer::start_with_redis(config, &Arc::new(RedisServer::start())).await,
        }
    }

    /// Starts a plain server sharing `redis` (several of them make a cluster).
    pub async fn start_with_redis(mut config: Config, redis: &Arc<RedisServer>) -> TestServer {
        config.redis = Some(redis.url());
        let mut server = TestServer::start(config).await;
        server.redis = Some(redis.clone());
        server
    }

    /// Starts a plain (ws://) server.
    pub async fn start(config: Config) -> TestServer {
        TestServer::start_with(config, None, None).await
    }

    /// Starts a server with `acceptor` for TLS; clients trust what `connector` trusts.
    pub async fn start_tls(config: Config, acceptor: TlsAcceptor, connector: TlsConnector) -> TestServer {
        TestServer::start_with(config, Some(acceptor), Some(connector)).await
    }

    async fn start_with(config: Config, acceptor: Option<TlsAcceptor>, tls: Option<TlsConnector>) -> TestServer {
        // Bound as the server binary binds (`[::]` is dual-stack).
        let listener = signal_server::listen::tcp(config.listen).expect("binding the listen address");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let stun = config.stun_listen.map(|at| signal_server::listen::udp(at).expect("binding the STUN address"));
        let stun_addr = stun.as_ref().map(|socket| socket.local_addr().expect("a bound socket has an address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(signal_server::run(listener, stun, config, acceptor, async {
            let _ = stopped.await;
        }));
        // With Redis, `run` connects before it accepts; early clients wait in the backlog.
        TestServer { addr, stun_addr, stop: Some(stop), task: Some(task), tls, redis: None }
    }

    /// Asks the server to shut down and waits for `run` to return; returns how long it took.
    pub async fn shutdown(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("the server is shut down only once");
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the server stops within its drain timeout")
            .expect("the server task does not panic");
        result.expect("run returns Ok after a shutdown");
        started.elapsed()
    }

    /// Opens a TCP (and, for a TLS server, TLS) connection from `from`, to the server's
    /// address (its loopback in `from`'s family when it listens on every address).
    pub async fn transport_from(&self, from: IpAddr) -> io::Result<Transport> {
        let socket = if from.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.bind(SocketAddr::new(from, 0))?;
        let to = match self.addr.ip() {
            ip if ip.is_unspecified() && from.is_ipv4() => SocketAddr::new(LOCALHOST, self.addr.port()),
            ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), self.addr.port()),
            _ => self.addr,
        };
        let tcp = tokio::time::timeout(STEP, socket.connect(to))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Transport::Plain(tcp)),
            Some(connector) => {
                let name = ServerName::try_from("localhost").expect("a valid DNS name");
                let tls = tokio::time::timeout(STEP, connector.connect(name, tcp))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                Ok(Transport::Tls(Box::new(tls)))
            }
        }
    }

    /// The WebSocket URL of this server.
    pub fn ws_url(&self) -> String {
        match self.tls {
            None => format!("ws://{}/ws", self.addr),
            Some(_) => format!("wss://localhost:{}/ws", self.addr.port()),
        }
    }

    /// Connects a WebSocket client from 127.0.0.1 (not yet greeted).
    pub async fn connect(&self) -> Client {
        self.connect_from(LOCALHOST).await
    }

    /// Connects a WebSocket client from the loopback address `from`.
    pub async fn connect_from(&self, from: IpAddr) -> Client {
        let transport = self.transport_from(from).await.expect("connecting to the test server");
        let (ws, response) = tokio::time::timeout(STEP, tokio_tungstenite::client_async(self.ws_url(), transport))
            .await
            .expect("the WebSocket upgrade finishes in time")
            .expect("the WebSocket upgrade succeeds");
        assert_eq!(response.status().as_u16(), 101);
        Client::from_stream(ws)
    }

    /// Connects from 127.0.0.1 as a reverse proxy would, naming `client` in `X-Real-IP`.
    pub async fn connect_as_proxy_for(&self, client: IpAddr) -> Client {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let transport = self.transport_from(LOCALHOST).await.expect("connecting to the test server");
        let mut request = self.ws_url().into_client_request().expect("a valid URL");
        request.headers_mut().insert("X-Real-IP", client.to_string().parse().expect("a valid header value"));
        let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::client_async(request, transport))
            .await
            .expect("the WebSocket upgrade finishes in time")
            .expect("the WebSocket upgrade succeeds");
        Client::from_stream(ws)
    }

    /// Connects and says hello from 127.0.0.1.
    pub async fn greeted(&self) -> Client {
        let mut client = self.connect().await;
        client.hello().await;
        client
    }

    /// Two greeted clients, matched with each other: `a` waited first and is the initiator.
    pub async fn pair(&self) -> (Client, Client, String) {
        let mut a = self.greeted().await;
        let mut b = self.greeted().await;
        let room = match_pair(&mut a, &mut b).await;
        (a, b, room)
    }

    /// Sends one plain HTTP/1.1 GET from 127.0.0.1 and reads the whole answer.
    pub async fn get(&self, path: &str) -> HttpResponse {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()).await
    }

    /// Sends raw bytes as a request and reads the whole answer (the server closes after it).
    pub async fn request(&self, raw: &[u8]) -> HttpResponse {
        let mut stream = self.transport_from(LOCALHOST).await.expect("connecting to the test server");
        stream.write_all(raw).await.expect("writing the request");
        stream.flush().await.expect("flushing the request");
        let mut bytes = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut bytes))
            .await
            .expect("the server answers and closes in time")
            .expect("reading the answer");
        HttpResponse::parse(&bytes)
    }

    /// Scrapes /metrics.
    pub async fn metrics(&self) -> Metrics {
        let response = self.get("/metrics").await;
        assert_eq!(response.status, 200, "GET /metrics: {}", response.body);
        Metrics::parse(&response.body)
    }

    /// Waits until the metric `name` reads `value`.
    pub async fn wait_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + STEP;
        loop {
            let metrics = self.metrics().await;
            if metrics.get(name) == value {
                return;
            }
            assert!(Instant::now() < deadline, "{name} is {} after {STEP:?}, expected {value}", metrics.get(name));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Makes two greeted clients find each other, `a` first; returns the room id.
pub async fn match_pair(a: &mut Client, b: &mut Client) -> String {
    a.send_json(json!({"type": "find"}));
    a.expect("queued").await;
    b.send_json(json!({"type": "find"}));
    b.expect("queued").await;
    let mb = b.expect("matched").await;
    let ma = a.expect("matched").await;
    assert_eq!(ma["room"], mb["room"], "both sides are told the same room");
    assert_eq!(ma["initiator"], json!(true), "the one who waited longer makes the offer");
    assert_eq!(mb["initiator"], json!(false));
    ma["room"].as_str().expect("room is a string").to_owned()
}

/// The `data` of a signal carrying an ICE candidate tagged with `n`, spaced unusually so
/// that a verbatim relay is told apart from a re-serialised one.
pub fn candidate_data(n: usize) -> String {
    format!(r#"{{ "candidate": {{"candidate": "candidate:{n} 1 udp 1 127.0.0.1 {n} typ host", "sdpMid": "0"}} }}"#)
}

/// The exact text a client sends for the candidate tagged `n`.
pub fn candidate(n: usize) -> String {
    format!(r#"{{"data": {}, "type": "signal"}}"#, candidate_data(n))
}

/// The exact text the partner receives for [`candidate`]`(n)`.
pub fn relayed(n: usize) -> String {
    format!(r#"{{"type":"signal","data":{}}}"#, candidate_data(n))
}

/// A plain TCP stream or a TLS stream over one, with access to the TCP socket underneath.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Transport {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Something a client saw on its socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame: its code and reason.
    Closed(u16, String),
    /// The socket ended (after a close frame, or without one).
    Ended(String),
}

enum Cmd {
    Send(Message),
    /// Drop the socket without a close frame; with `reset`, as a TCP reset.
    Drop {
        reset: bool,
    },
    /// Stop reading and writing while keeping the socket open.
    Freeze,
}

/// A WebSocket client. A background task reads the socket all the time (so pings are
/// answered as a browser would) and hands every frame to the test in order.
pub struct Client {
    cmds: mpsc::UnboundedSender<Cmd>,
    events: mpsc::UnboundedReceiver<Event>,
    pings: Arc<AtomicUsize>,
    /// Set by [`Client::hello`].
    pub id: String,
    /// Set by [`Client::hello`].
    pub token: String,
}

impl Client {
    /// Wraps a WebSocket that is already upgraded.
    pub fn from_stream(ws: WebSocketStream<Transport>) -> Client {
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let pings = Arc::new(AtomicUsize::new(0));
        tokio::spawn(pump(ws, cmd_rx, event_tx, pings.clone()));
        Client { cmds, events, pings, id: String::new(), token: String::new() }
    }

    /// Sends a JSON value as a text frame.
    pub fn send_json(&self, value: Value) {
        self.send_text(&value.to_string());
    }

    /// Sends a text frame.
    pub fn send_text(&self, text: &str) {
        self.send(Message::text(text));
    }

    /// Sends any frame.
    pub fn send(&self, message: Message) {
        let _ = self.cmds.send(Cmd::Send(message));
    }

    /// The next event, or a failed test after `timeout`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Event {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => Event::Ended("the client task is gone".into()),
            Err(_) => panic!("client {:?}: nothing received within {timeout:?}", self.id),
        }
    }

    /// An event already received, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The next event, or a failed test after [`STEP`].
    pub async fn recv(&mut self) -> Event {
        self.recv_within(STEP).await
    }

    /// The next text frame as raw text; anything else fails the test.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Event::Text(text) => text,
            other => panic!("client {:?}: expected a text frame, got {other:?}", self.id),
        }
    }

    /// The next message as JSON.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("the server sent invalid JSON {text:?}: {e}"))
    }

    /// The next message, which must have type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let msg = self.recv_json().await;
        assert_eq!(msg["type"], json!(kind), "client {:?}: expected {kind}, got {msg}", self.id);
        msg
    }

    /// The next message, which must be an error with this code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let msg = self.expect("error").await;
        assert_eq!(msg["code"], json!(code), "client {:?}: expected error {code}, got {msg}", self.id);
        assert!(msg["message"].as_str().is_some_and(|m| !m.is_empty()), "an error explains itself: {msg}");
        msg
    }

    /// The next message, which must be `partner_left` for `reason`.
    pub async fn expect_partner_left(&mut self, reason: &str) {
        assert_eq!(self.recv_json().await, json!({"type": "partner_left", "reason": reason}));
    }

    /// Asserts that nothing arrives for `ms` milliseconds.
    pub async fn expect_silence(&mut self, ms: u64) {
        // A zero window would check only what has already arrived.
        assert!(ms > 0, "expect_silence needs a real window (QUIET_MS at least)");
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(ms), self.events.recv()).await {
            panic!("client {:?}: expected silence for {ms} ms, got {event:?}", self.id);
        }
    }

    /// The next event, which must be a close frame with `code`; then the socket must end.
    pub async fn expect_close(&mut self, code: u16) -> String {
        let reason = match self.recv().await {
            Event::Closed(got, reason) => {
                assert_eq!(got, code, "client {:?}: close code (reason {reason:?})", self.id);
                reason
            }
            other => panic!("client {:?}: expected close {code}, got {other:?}", self.id),
        };
        self.expect_end().await;
        reason
    }

    /// The next event, which must be the end of the socket.
    pub async fn expect_end(&mut self) {
        match self.recv().await {
            Event::Ended(_) => {}
            other => panic!("client {:?}: expected the socket to end, got {other:?}", self.id),
        }
    }

    /// Sends `hello` (version 1, no interests) and returns the `welcome`.
    pub async fn hello(&mut self) -> Value {
        self.hello_with(json!({"type": "hello", "version": 1})).await
    }

    /// Sends `hello` with a resume token and returns the `welcome`.
    pub async fn resume(&mut self, token: &str) -> Value {
        self.hello_with(json!({"type": "hello", "version": 1, "resume": token})).await
    }

    /// Sends this `hello` and returns the `welcome`, remembering its id and token.
    pub async fn hello_with(&mut self, hello: Value) -> Value {
        self.send_json(hello);
        let welcome = self.expect("welcome").await;
        self.id = welcome["id"].as_str().expect("welcome.id is a string").to_owned();
        self.token = welcome["resume"].as_str().expect("welcome.resume is a string").to_owned();
        welcome
    }

    /// Closes cleanly (close frame 1000) and waits for the server's answer.
    pub async fn close(mut self) {
        self.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })));
        self.expect_close(1000).await;
    }

    /// Drops the socket without a close frame (TCP FIN).
    pub fn drop_abruptly(self) {
        let _ = self.cmds.send(Cmd::Drop { reset: false });
    }

    /// Drops the socket without a close frame as a TCP reset (SO_LINGER 0).
    pub fn reset(self) {
        let _ = self.cmds.send(Cmd::Drop { reset: true });
    }

    /// Stops reading, writing and answering pings, keeping the socket open: a half-open
    /// connection as the server sees it.
    pub fn freeze(&self) {
        let _ = self.cmds.send(Cmd::Freeze);
    }

    /// Pings received from the server so far.
    pub fn pings(&self) -> usize {
        self.pings.load(Ordering::Relaxed)
    }
}

async fn pump(
    mut ws: WebSocketStream<Transport>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<Event>,
    pings: Arc<AtomicUsize>,
) {
    // After a failed write (the server closed while the client was still sending), what the
    // server sent before closing is still there to read, as a browser would.
    let mut writable = true;
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::Send(message)) => {
                    if writable && ws.send(message).await.is_err() {
                        writable = false;
                    }
                }
                Some(Cmd::Drop { reset }) => {
                    if reset {
                        ws.get_ref().tcp().set_zero_linger().expect("setting SO_LINGER 0");
                    }
                    return;
                }
                Some(Cmd::Freeze) => {
                    while cmds.recv().await.is_some() {}
                    return;
                }
            },
            frame = ws.next() => {
                let event = match frame {
                    Some(Ok(Message::Text(text))) => Event::Text(text.to_string()),
                    Some(Ok(Message::Binary(bytes))) => Event::Binary(bytes.to_vec()),
                    Some(Ok(Message::Ping(_))) => {
                        pings.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(frame))) => match frame {
                        Some(frame) => Event::Closed(u16::from(frame.code), frame.reason.to_string()),
                        None => Event::Closed(1005, String::new()),
                    },
                    Some(Err(e)) => {
                        let _ = events.send(Event::Ended(e.to_string()));
                        return;
                    }
                    None => {
                        let _ = events.send(Event::Ended("end of stream".into()));
                        return;
                    }
                };
                let _ = events.send(event);
            }
        }
    }
}

/// A raw WebSocket peer speaking through a plain TCP stream: it upgrades, writes frames it
/// builds by hand, and reads only when asked (so it never answers a ping by itself).
pub struct RawPeer {
    pub tcp: TcpStream,
}

impl RawPeer {
    /// Connects and completes the upgrade; fails the test if the server refuses it.
    pub async fn upgrade(server: &TestServer) -> RawPeer {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connecting to the test server");
        let request = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        tcp.write_all(request.as_bytes()).await.expect("writing the upgrade request");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(STEP, tcp.read(&mut byte))
                .await
                .expect("the upgrade answer arrives in time")
                .expect("reading the upgrade answer");
            assert_eq!(n, 1, "the server closed during the upgrade");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("an ASCII answer head");
        assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "the accept key of RFC 6455's example: {head}");
        RawPeer { tcp }
    }

    /// Writes one masked frame with this opcode and payload, as a client must.
    pub async fn write_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.tcp.write_all(&client_frame(opcode, payload)).await.expect("writing a frame");
    }

    /// Writes one masked text frame.
    pub async fn write_text(&mut self, text: &str) {
        self.write_frame(0x1, text.as_bytes()).await;
    }
}

/// One final, masked client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HttpResponse {
    fn parse(bytes: &[u8]) -> HttpResponse {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer head in {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        HttpResponse { status, headers, body: body.to_owned() }
    }
}

/// Samples from a /metrics page, keyed by name with labels (`strangers_errors_total{code="banned"}`).
#[derive(Debug)]
pub struct Metrics {
    pub samples: HashMap<String, f64>,
    pub text: String,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
                (name.to_owned(), value.parse().unwrap_or_else(|_| panic!("bad sample value in {line:?}")))
            })
            .collect();
        Metrics { samples, text: text.to_owned() }
    }

    /// A sample's value; fails the test if the page lacks it.
    pub fn get(&self, name: &str) -> f64 {
        *self.samples.get(name).unwrap_or_else(|| panic!("/metrics lacks {name}:\n{}", self.text))
    }

    /// The error counter for one code.
    pub fn errors(&self, code: &str) -> f64 {
        self.get(&format!("strangers_errors_total{{code=\"{code}\"}}"))
    }
}

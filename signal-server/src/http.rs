//! The front door of every TCP (or TLS) connection: reads one HTTP/1.1 request head and
//! routes it. `GET /ws` upgrades to a WebSocket; `GET /healthz` and `GET /metrics` answer and
//! close. Hand-rolled over `httparse` because the WebSocket must share the port with plain
//! HTTP and an idle socket must cost as little memory as possible: after the upgrade nothing
//! of the HTTP layer remains.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::debug;

use crate::hub::Hub;
use crate::metrics;

/// Largest request head accepted.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection whose WebSocket upgrade was accepted.
pub struct Upgraded<S> {
    pub stream: S,
    /// Bytes read past the request head.
    pub leftover: Vec<u8>,
    /// The client address a reverse proxy named in `X-Real-IP`, if any.
    pub real_ip: Option<IpAddr>,
}

/// Serves the HTTP part of one accepted connection. Returns the stream and the bytes read past
/// the request head once a WebSocket upgrade was accepted; `None` when the request was
/// answered (or failed) and the connection is done.
///
/// Callers box this future: its state (the request head and the response) then lives only
/// until the upgrade, not for the whole life of the WebSocket.
pub async fn front_door<S>(mut stream: S, hub: &Hub) -> Option<Upgraded<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(status)) => {
            let _ = respond(&mut stream, status, "text/plain", status.1.as_bytes(), &[]).await;
            return None;
        }
        Err(_) => {
            let _ = respond(&mut stream, REQUEST_TIMEOUT, "text/plain", b"request timeout\n", &[]).await;
            return None;
        }
    };
    let Head { method, path, upgrade_key, version_ok, wants_upgrade, real_ip, leftover } = head;
    let path = path.split('?').next().unwrap_or("");
    // Every other request is answered, and the connection closed, whether or not that works.
    let _ = match (method.as_str(), path) {
        ("GET", "/ws") => {
            let Some(key) = upgrade_key.filter(|_| wants_upgrade) else {
                let _ = respond(
                    &mut stream,
                    UPGRADE_REQUIRED,
                    "text/plain",
                    b"this endpoint speaks WebSocket\n",
                    &[("Upgrade", "websocket")],
                )
                .await;
                return None;
            };
            if !version_ok {
                let _ = respond(
                    &mut stream,
                    UPGRADE_REQUIRED,
                    "text/plain",
                    b"WebSocket version 13 is required\n",
                    &[("Sec-WebSocket-Version", "13")],
                )
                .await;
                return None;
            }
            let accept = derive_accept_key(key.as_bytes());
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if stream.write_all(response.as_bytes()).await.is_err() || stream.flush().await.is_err() {
                return None;
            }
            return Some(Upgraded { stream, leftover, real_ip });
        }
        ("GET", "/healthz") => match hub.remote() {
            Some(remote) if !remote.is_healthy() => {
                respond(&mut stream, UNAVAILABLE, "text/plain", b"redis unreachable\n", &[]).await
            }
            _ => respond(&mut stream, OK, "text/plain", b"ok\n", &[]).await,
        },
        ("GET", "/metrics") => {
            let stats = hub.stats().await;
            let body = metrics::render(hub, &stats);
            respond(&mut stream, OK, "text/plain; version=0.0.4", body.as_bytes(), &[]).await
        }
        ("GET", _) => {
            respond(&mut stream, NOT_FOUND, "text/plain", b"not found: try /ws, /healthz or /metrics\n", &[]).await
        }
        _ => respond(&mut stream, METHOD_NOT_ALLOWED, "text/plain", b"only GET is served\n", &[("Allow", "GET")]).await,
    };
    None
}

type Status = (u16, &'static str);
const OK: Status = (200, "OK");
const BAD_REQUEST: Status = (400, "Bad Request");
const NOT_FOUND: Status = (404, "Not Found");
const METHOD_NOT_ALLOWED: Status = (405, "Method Not Allowed");
const REQUEST_TIMEOUT: Status = (408, "Request Timeout");
const HEADERS_TOO_LARGE: Status = (431, "Request Header Fields Too Large");
const UPGRADE_REQUIRED: Status = (426, "Upgrade Required");
const UNAVAILABLE: Status = (503, "Service Unavailable");

struct Head {
    method: String,
    path: String,
    upgrade_key: Option<String>,
    version_ok: bool,
    wants_upgrade: bool,
    /// `X-Real-IP`, as a reverse proxy sets it (trusted only from `--trusted-proxy` peers).
    real_ip: Option<IpAddr>,
    /// Bytes read past the head (a client may send its first frame at once).
    leftover: Vec<u8>,
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Head, Status> {
    let mut buf = Vec::new();
    loop {
        // Read straight into the head's buffer: no stack buffer in this future's state.
        buf.reserve(1024);
        let n = stream.read_buf(&mut buf).await.map_err(|_| BAD_REQUEST)?;
        if n == 0 {
            return Err(BAD_REQUEST);
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::trim)
                };
                let has_token = |name: &str, token: &str| {
                    header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                };
                let head = Head {
                    method: req.method.unwrap_or("").to_owned(),
                    path: req.path.unwrap_or("").to_owned(),
                    upgrade_key: header("Sec-WebSocket-Key").map(str::to_owned),
                    version_ok: header("Sec-WebSocket-Version") == Some("13"),
                    wants_upgrade: has_token("Upgrade", "websocket") && has_token("Connection", "upgrade"),
                    real_ip: header("X-Real-IP").and_then(|v| v.parse::<IpAddr>().ok()).map(|ip| ip.to_canonical()),
                    leftover: buf[len..].to_vec(),
                };
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => continue,
            Ok(httparse::Status::Partial) => return Err(HEADERS_TOO_LARGE),
            Err(httparse::Error::TooManyHeaders) => return Err(HEADERS_TOO_LARGE),
            Err(e) => {
                debug!(error = %e, "bad request head");
                return Err(BAD_REQUEST);
            }
        }
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    (code, reason): Status,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await
}

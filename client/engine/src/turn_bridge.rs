//! TURN over TCP and TLS. webrtc-rs speaks TURN over UDP only (it skips `turns:` and
//! `?transport=tcp` URLs), yet networks that block UDP leave TCP, often only port 443, as the
//! one way out. Each such ICE server gets a bridge: a UDP socket on loopback that webrtc-rs is
//! told is the TURN server, and, per client socket that talks to it, one TCP (or TLS) stream to
//! the real server. TURN's framing makes the bridge exact: a STUN message carries its length, a
//! ChannelData message too (padded to four bytes on a stream, RFC 8656 §12.5), so each datagram
//! is written to the stream as it is and each message read from the stream goes back as one
//! datagram. The bridge also notes the relayed address each allocation gets, so the statistics
//! can say a call runs through TURN over TCP or TLS.
//!
//! It never reads or changes what it carries beyond that: credentials and message integrity
//! are between webrtc-rs and the TURN server.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc::stun::message::{Getter, Message, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE};
use rtc::turn::proto::relayaddr::RelayedAddress;
use strangers_protocol::IceServer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::host_addresses;

/// How long connecting to a TURN server (TCP and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Datagrams waiting for a stream that is still connecting, per client socket.
const QUEUE: usize = 256;

/// Where a bridge tells of a server it cannot use (once per URL).
pub type Report = Arc<dyn Fn(String) + Send + Sync>;

/// How a TURN URL reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    Udp,
    Tcp,
    Tls,
}

impl TurnTransport {
    pub fn name(self) -> &'static str {
        match self {
            TurnTransport::Udp => "udp",
            TurnTransport::Tcp => "tcp",
            TurnTransport::Tls => "tls",
        }
    }
}

/// What an ICE server URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceUrl {
    /// A STUN server, or TURN over UDP: webrtc-rs uses it as it is.
    Direct,
    /// TURN over a stream: bridged.
    Stream { host: String, port: u16, transport: TurnTransport },
}

/// Reads a `stun:`, `turn:` or `turns:` URL (RFC 7064, RFC 7065).
pub fn parse_ice_url(url: &str) -> Result<IceUrl, String> {
    let (scheme, rest) = url.split_once(':').ok_or_else(|| "not a URL".to_owned())?;
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    let transport = match query {
        None => None,
        Some(query) => match query.strip_prefix("transport=") {
            Some("udp") => Some(TurnTransport::Udp),
            Some("tcp") => Some(TurnTransport::Tcp),
            _ => return Err(format!("unknown parameter {query:?}")),
        },
    };
    let (host, port) = split_host_port(authority)?;
    match (scheme, transport) {
        ("stun" | "stuns", None) | ("turn", None | Some(TurnTransport::Udp)) => Ok(IceUrl::Direct),
        ("turn", Some(_)) => Ok(IceUrl::Stream { host, port: port.unwrap_or(3478), transport: TurnTransport::Tcp }),
        ("turns", None | Some(TurnTransport::Tcp)) => {
            Ok(IceUrl::Stream { host, port: port.unwrap_or(5349), transport: TurnTransport::Tls })
        }
        ("turns", Some(_)) => Err("TURN over DTLS is not supported".into()),
        ("stun" | "stuns", Some(_)) => Err("a STUN URL takes no transport".into()),
        _ => Err(format!("unknown scheme {scheme:?}")),
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| "an unclosed IPv6 address".to_owned())?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = port.map(|p| p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))).transpose()?;
    Ok((host.to_owned(), port))
}

/// The length of the first TURN message in `buf` (a STUN message or ChannelData), and how many
/// bytes it takes on a stream (ChannelData is padded to four); `None` until the header is there.
pub fn stream_frame(buf: &[u8]) -> Option<Result<(usize, usize), String>> {
    if buf.len() < 4 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    Some(match buf[0] >> 6 {
        0b00 => Ok((20 + length, 20 + length)),
        0b01 => Ok((4 + length, (4 + length).next_multiple_of(4))),
        _ => Err(format!("not a TURN message (first byte {:#04x})", buf[0])),
    })
}

/// TLS for `turns:`: the system's roots, plus an extra CA file for servers with a private CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnTls {
    pub extra_ca_file: Option<PathBuf>,
}

impl TurnTls {
    fn connector(&self) -> Result<tokio_rustls::TlsConnector, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &self.extra_ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("reading the CA file {}: {e}", path.display()))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("the CA file {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("the CA file {}: {e}", path.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("the CA file {} holds no certificate", path.display()));
            }
        }
        if roots.is_empty() {
            return Err("no trusted root certificates on this system".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

/// The relayed addresses allocated through bridges, and the transport of each.
#[derive(Debug, Clone, Default)]
pub struct RelayedVia(Arc<Mutex<HashMap<SocketAddr, TurnTransport>>>);

impl RelayedVia {
    /// How the TURN server of this relayed address of ours is reached: `Udp` unless bridged.
    pub fn transport_of(&self, relayed: SocketAddr) -> TurnTransport {
        let map = self.0.lock().expect("the relayed map lock is never poisoned");
        map.get(&relayed).copied().unwrap_or(TurnTransport::Udp)
    }

    fn note(&self, relayed: SocketAddr, transport: TurnTransport) {
        self.0.lock().expect("the relayed map lock is never poisoned").insert(relayed, transport);
    }
}

/// The bridges of one peer connection. Dropping it stops them.
#[derive(Default)]
pub struct Bridges {
    tasks: Vec<JoinHandle<()>>,
    pub relayed: RelayedVia,
}

impl Drop for Bridges {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The ICE servers as webrtc-rs can use them (stream URLs replaced by their bridges', which
/// listen on the loopback of a family our sockets `binds` use), the bridges, and a sentence for
/// each URL that cannot be used. A URL naming an address of a family we have no socket of is
/// left out quietly, as webrtc-rs does with UDP ones (a server hands out a URL per family, and
/// an IPv4-only host simply has no use for the IPv6 one). Problems met later (a server that
/// cannot be reached, a certificate that does not verify) go to `problems` as they happen.
pub async fn prepare(
    servers: &[IceServer],
    tls: &TurnTls,
    binds: &[SocketAddr],
    problems: Report,
) -> (Vec<IceServer>, Bridges, Vec<String>) {
    let loopback = host_addresses::loopback_for(binds);
    let mut usable = Vec::new();
    let mut bridges = Bridges::default();
    let mut unusable = Vec::new();
    let mut connector = None;
    for server in servers {
        let mut direct = Vec::new();
        for url in &server.urls {
            let (host, port, transport) = match parse_ice_url(url) {
                Ok(IceUrl::Direct) => {
                    direct.push(url.clone());
                    continue;
                }
                Ok(IceUrl::Stream { host, .. })
                    if host.parse::<IpAddr>().is_ok_and(|ip| !binds.iter().any(|b| b.is_ipv4() == ip.is_ipv4())) =>
                {
                    debug!(%url, "no socket of this TURN server's family here");
                    continue;
                }
                Ok(IceUrl::Stream { host, port, transport }) => (host, port, transport),
                Err(why) => {
                    unusable.push(format!("ICE server {url} is unusable: {why}"));
                    continue;
                }
            };
            let tls_connector = if transport == TurnTransport::Tls {
                if connector.is_none() {
                    connector = Some(tls.connector());
                }
                match connector.as_ref().expect("just set") {
                    Ok(c) => Some(c.clone()),
                    Err(why) => {
                        unusable.push(format!("ICE server {url} is unusable: {why}"));
                        continue;
                    }
                }
            } else {
                None
            };
            let socket = match UdpSocket::bind((loopback, 0)).await {
                Ok(socket) => socket,
                Err(e) => {
                    unusable.push(format!("ICE server {url} is unusable: no local socket for its bridge: {e}"));
                    continue;
                }
            };
            let local = socket.local_addr().expect("a bound socket has an address");
            let target =
                Target { url: url.clone(), host, port, tls: tls_connector, transport, reported: Arc::default() };
            debug!(%url, %local, "bridging TURN over {}", transport.name());
            bridges.tasks.push(tokio::spawn(bridge(
                Arc::new(socket),
                target,
                bridges.relayed.clone(),
                problems.clone(),
            )));
            usable.push(IceServer {
                // `local` is written `[::1]:PORT` for IPv6, as a URL wants it.
                urls: vec![format!("turn:{local}?transport=udp")],
                username: server.username.clone(),
                credential: server.credential.clone(),
            });
        }
        if !direct.is_empty() {
            usable.push(IceServer {
                urls: direct,
                username: server.username.clone(),
                credential: server.credential.clone(),
            });
        }
    }
    (usable, bridges, unusable)
}

/// Where a bridge leads.
#[derive(Clone)]
struct Target {
    url: String,
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    transport: TurnTransport,
    /// Whether a problem with this server was told already.
    reported: Arc<AtomicBool>,
}

/// One bridge: datagrams from each client socket go to that socket's own stream.
async fn bridge(socket: Arc<UdpSocket>, target: Target, relayed: RelayedVia, problems: Report) {
    let mut streams: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                debug!(error = %e, "TURN bridge socket failed");
                return;
            }
        };
        let datagram = buf[..n].to_vec();
        let sender = streams.entry(from).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            connections.spawn(connection(socket.clone(), from, target.clone(), rx, relayed.clone(), problems.clone()));
            tx
        });
        if sender.try_send(datagram).is_err() && sender.is_closed() {
            // The stream ended: the next datagram from this socket opens a new one.
            streams.remove(&from);
        }
    }
}

/// One client socket's stream to the TURN server.
async fn connection(
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    target: Target,
    datagrams: mpsc::Receiver<Vec<u8>>,
    relayed: RelayedVia,
    problems: Report,
) {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((target.host.as_str(), target.port))).await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return report(&problems, &target, &format!("cannot connect: {e}")),
        Err(_) => return report(&problems, &target, "no answer to connect"),
    };
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => carry(tcp, socket, client, datagrams, &target, relayed, &problems).await,
        Some(connector) => {
            let name = match rustls::pki_types::ServerName::try_from(target.host.clone()) {
                Ok(name) => name,
                Err(e) => return report(&problems, &target, &format!("not a server name: {e}")),
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => carry(tls, socket, client, datagrams, &target, relayed, &problems).await,
                Ok(Err(e)) => report(&problems, &target, &format!("TLS failed: {e}")),
                Err(_) => report(&problems, &target, "no answer to the TLS handshake"),
            }
        }
    }
}

fn report(problems: &Report, target: &Target, why: &str) {
    if !target.reported.swap(true, Ordering::Relaxed) {
        problems(format!("ICE server {} is unusable: {why}", target.url));
    }
}

/// Moves datagrams onto the stream and messages off it until either side ends.
async fn carry<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    mut datagrams: mpsc::Receiver<Vec<u8>>,
    target: &Target,
    relayed: RelayedVia,
    problems: &Report,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let outbound = async {
        while let Some(mut datagram) = datagrams.recv().await {
            if let Some(Ok((_, padded))) = stream_frame(&datagram) {
                datagram.resize(padded.max(datagram.len()), 0);
            }
            if writer.write_all(&datagram).await.is_err() {
                return;
            }
        }
    };
    let inbound = async {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16_384];
        loop {
            let n = match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(frame) = stream_frame(&buf) {
                let (length, padded) = match frame {
                    Ok(lengths) => lengths,
                    Err(why) => return report(problems, target, &why),
                };
                if buf.len() < padded {
                    break;
                }
                note_relayed_address(&buf[..length], target.transport, &relayed);
                let _ = socket.send_to(&buf[..length], client).await;
                buf.drain(..padded);
            }
        }
    };
    tokio::select! {
        () = outbound => {}
        () = inbound => {}
    }
}

/// Records the relayed address of a successful Allocate answer.
fn note_relayed_address(message: &[u8], transport: TurnTransport, relayed: &RelayedVia) {
    if message.first().is_none_or(|b| b >> 6 != 0) {
        return;
    }
    let mut m = Message::new();
    if m.unmarshal_binary(message).is_err() || m.typ.method != METHOD_ALLOCATE || m.typ.class != CLASS_SUCCESS_RESPONSE
    {
        return;
    }
    let mut address = RelayedAddress { ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), port: 0 };
    if address.get_from(&m).is_ok() {
        relayed.note(SocketAddr::new(address.ip, address.port), transport);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(host: &str, port: u16, transport: TurnTransport) -> Result<IceUrl, String> {
        Ok(IceUrl::Stream { host: host.into(), port, transport })
    }

    #[test]
    fn urls_are_read_as_rfc_7064_and_7065_say() {
        assert_eq!(parse_ice_url("stun:20.0.0.1:3479"), Ok(IceUrl::Direct));
        assert_eq!(parse_ice_url("turn:20.0.0.1:3478"), Ok(IceUrl::Direct));
        assert_eq!(parse_ice_url("turn:20.0.0.1:3478?transport=udp"), Ok(IceUrl::Direct));
        assert_eq!(
            parse_ice_url("turn:turn.example.org?transport=tcp"),
            stream("turn.example.org", 3478, TurnTransport::Tcp)
        );
        assert_eq!(parse_ice_url("turns:turn.example.org:443"), stream("turn.example.org", 443, TurnTransport::Tls));
        assert_eq!(
            parse_ice_url("turns:turn.example.org?transport=tcp"),
            stream("turn.example.org", 5349, TurnTransport::Tls)
        );
        assert_eq!(
            parse_ice_url("turn:[2001:db8::1]:3478?transport=tcp"),
            stream("2001:db8::1", 3478, TurnTransport::Tcp)
        );
    }

    #[test]
    fn urls_we_cannot_use_say_why() {
        for (url, why) in [
            ("turns:turn.example.org:5349?transport=udp", "DTLS"),
            ("turn:turn.example.org:3478?transport=sctp", "unknown parameter"),
            ("http://turn.example.org", "unknown scheme"),
            ("turn:turn.example.org:99999?transport=tcp", "bad port"),
            ("turn:?transport=tcp", "no host"),
            ("nothing", "not a URL"),
        ] {
            let err = parse_ice_url(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    fn servers(urls: &[&str]) -> Vec<IceServer> {
        vec![IceServer {
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            username: Some("1:u".into()),
            credential: Some("c".into()),
        }]
    }

    fn no_report() -> Report {
        Arc::new(|problem| panic!("unexpected problem: {problem}"))
    }

    #[tokio::test]
    async fn a_stream_url_of_a_family_we_lack_is_left_out_quietly() {
        let v4: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let urls = ["turn:[2001:db8::1]:3478?transport=tcp", "turn:20.0.0.1:3478?transport=udp"];
        let (usable, bridges, unusable) = prepare(&servers(&urls), &TurnTls::default(), &[v4], no_report()).await;
        assert!(unusable.is_empty(), "{unusable:?}");
        assert!(bridges.tasks.is_empty());
        assert_eq!(usable.len(), 1);
        assert_eq!(usable[0].urls, ["turn:20.0.0.1:3478?transport=udp"]);
    }

    /// An IPv6-only host's bridge listens on the IPv6 loopback, written as a URL wants it.
    #[tokio::test]
    async fn an_ipv6_only_host_bridges_on_the_ipv6_loopback() {
        if std::net::UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback here; skipping");
            return;
        }
        let v6: SocketAddr = "[::]:0".parse().unwrap();
        let urls = ["turn:[2001:db8::1]:3478?transport=tcp"];
        let (usable, bridges, unusable) = prepare(&servers(&urls), &TurnTls::default(), &[v6], no_report()).await;
        assert!(unusable.is_empty(), "{unusable:?}");
        assert_eq!(bridges.tasks.len(), 1);
        let url = &usable[0].urls[0];
        assert!(url.starts_with("turn:[::1]:") && url.ends_with("?transport=udp"), "{url}");
        assert_eq!(parse_ice_url(url), Ok(IceUrl::Direct));
    }

    #[test]
    fn stream_frames_are_measured_with_channel_data_padding() {
        assert_eq!(stream_frame(&[0x00, 0x01]), None);
        // A Binding request with 8 bytes of attributes.
        assert_eq!(stream_frame(&[0x00, 0x01, 0x00, 0x08]), Some(Ok((28, 28))));
        // ChannelData of 5 bytes: 9 on the wire, 12 on a stream.
        assert_eq!(stream_frame(&[0x40, 0x00, 0x00, 0x05]), Some(Ok((9, 12))));
        assert_eq!(stream_frame(&[0x40, 0x00, 0x00, 0x08]), Some(Ok((12, 12))));
        assert!(matches!(stream_frame(&[0x80, 0, 0, 0]), Some(Err(_))));
    }
}

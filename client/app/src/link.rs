//! `strangers://` links: a pure parse from a link to the signal server URL it names, with a
//! plain error for a malformed one. No IO; the desktop entry hands links to the binary.
//!
//! `strangers://HOST[:PORT][/PATH][?tls=0|1]` names the server at `wss://HOST[:PORT]/PATH`.
//! The path defaults to `/ws`, where the signal server listens. Plain `ws://` is used only for
//! a loopback host (`localhost`, `127.x.x.x`, `[::1]`) or when the link says `tls=0`; `tls=1`
//! asks for `wss://` even on loopback. Without a port, `wss://` uses 443 and `ws://` the
//! server's default, 8686.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The scheme of a link, as registered by the desktop entry.
pub const SCHEME: &str = "strangers";

/// The port a plain `ws://` link without one goes to: the signal server's default.
const PLAIN_PORT: u16 = 8686;

/// Why a link is not a Strangers link, in words for the person who clicked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    Scheme,
    NoHost,
    BadHost(String),
    BadPort(String),
    BadPath,
    BadQuery(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Scheme => write!(f, "a Strangers link starts with {SCHEME}://"),
            LinkError::NoHost => write!(f, "the link names no server"),
            LinkError::BadHost(host) => write!(f, "{host:?} is not a server name or address"),
            LinkError::BadPort(port) => write!(f, "{port:?} is not a port number (1 to 65535)"),
            LinkError::BadPath => write!(f, "the link's path holds characters a server address cannot"),
            LinkError::BadQuery(query) => write!(f, "the link's {query:?} is not understood (only tls=0 or tls=1 is)"),
        }
    }
}

impl std::error::Error for LinkError {}

/// Parses `strangers://HOST[:PORT][/PATH][?tls=0|1]` into the signal server URL it names.
pub fn server_url(link: &str) -> Result<String, LinkError> {
    let link = link.trim();
    let rest = strip_scheme(link).ok_or(LinkError::Scheme)?;
    // A fragment never matters to the server.
    let rest = rest.split('#').next().unwrap_or_default();
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = split_host_port(authority)?;
    let tls = match query {
        None | Some("") => !is_loopback(&host),
        Some("tls=0") => false,
        Some("tls=1") => true,
        Some(other) => return Err(LinkError::BadQuery(other.to_owned())),
    };
    let path = match path.trim_end_matches('/') {
        "" => "/ws",
        path => path,
    };
    if !path.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '\\' | '"' | '<' | '>' | '`' | '{' | '}' | '|' | '^'))
    {
        return Err(LinkError::BadPath);
    }
    let (scheme, default_port) = if tls { ("wss", 443) } else { ("ws", PLAIN_PORT) };
    let port = port.unwrap_or(default_port);
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Ok(if tls && port == 443 { format!("{scheme}://{host}{path}") } else { format!("{scheme}://{host}:{port}{path}") })
}

/// What a person may type or paste as the server: a link (`strangers://...`), a server URL
/// (`ws://...` or `wss://...`, checked like a link), or a bare `HOST[:PORT][/PATH]` taken as a
/// link. Gives the server URL, or what is wrong in a sentence that says what would do.
pub fn server_from_input(text: &str) -> Result<String, String> {
    const EXAMPLES: &str =
        "a link looks like strangers://chat.example.org, a server address like wss://chat.example.org/ws";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("Type or paste your community's server: {EXAMPLES}."));
    }
    let link = match text.split_once("://") {
        None => format!("{SCHEME}://{text}"),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case(SCHEME) => text.to_owned(),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("wss") => {
            if rest.contains('?') {
                return Err(format!("{text:?} is not a server address: {EXAMPLES}."));
            }
            let tls = if scheme.eq_ignore_ascii_case("wss") { 1 } else { 0 };
            format!("{SCHEME}://{rest}?tls={tls}")
        }
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
            return Err(format!(
                "{text:?} is a web page's address. Ask your community for its Strangers server: {EXAMPLES}."
            ));
        }
        Some(_) => return Err(format!("{text:?} is not a server address: {EXAMPLES}.")),
    };
    server_url(&link).map_err(|e| format!("{text:?} is not a server address ({e}): {EXAMPLES}."))
}

/// The rest of `link` after `strangers://`, the scheme in any case.
fn strip_scheme(link: &str) -> Option<&str> {
    let (scheme, rest) = link.split_once("://")?;
    scheme.eq_ignore_ascii_case(SCHEME).then_some(rest)
}

/// Splits `HOST[:PORT]` (`[V6][:PORT]` for an IPv6 address), checking both parts. The host
/// comes back in lower case, an IPv6 address without brackets.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), LinkError> {
    if authority.is_empty() {
        return Err(LinkError::NoHost);
    }
    if authority.contains('@') {
        return Err(LinkError::BadHost(authority.to_owned()));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (v6, after) = bracketed.split_once(']').ok_or_else(|| LinkError::BadHost(authority.to_owned()))?;
        v6.parse::<Ipv6Addr>().map_err(|_| LinkError::BadHost(v6.to_owned()))?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or_else(|| LinkError::BadHost(authority.to_owned()))?),
        };
        (v6.to_ascii_lowercase(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if !is_host_name(host) {
            return Err(if host.is_empty() { LinkError::NoHost } else { LinkError::BadHost(host.to_owned()) });
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 && text.chars().all(|c| c.is_ascii_digit()) => Some(port),
            _ => return Err(LinkError::BadPort(text.to_owned())),
        },
    };
    Ok((host, port))
}

/// A DNS name or an IPv4 address: dot-separated labels of letters, digits and inner hyphens.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Whether a host is this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_host_gets_tls_and_the_default_path() {
        assert_eq!(server_url("strangers://chat.example.org").unwrap(), "wss://chat.example.org/ws");
        assert_eq!(server_url("strangers://chat.example.org/").unwrap(), "wss://chat.example.org/ws");
        assert_eq!(
            server_url("strangers://Chat.Example.ORG:8443/rooms/ws").unwrap(),
            "wss://chat.example.org:8443/rooms/ws"
        );
        assert_eq!(server_url("STRANGERS://203.0.113.5:443/ws").unwrap(), "wss://203.0.113.5/ws");
    }

    #[test]
    fn loopback_is_plain_unless_the_link_asks_for_tls() {
        assert_eq!(server_url("strangers://127.0.0.1:9000").unwrap(), "ws://127.0.0.1:9000/ws");
        assert_eq!(server_url("strangers://localhost").unwrap(), "ws://localhost:8686/ws");
        assert_eq!(server_url("strangers://[::1]:9000/x").unwrap(), "ws://[::1]:9000/x");
        assert_eq!(server_url("strangers://127.0.0.1?tls=1").unwrap(), "wss://127.0.0.1/ws");
    }

    #[test]
    fn tls_0_asks_for_plain_websocket_anywhere() {
        assert_eq!(server_url("strangers://10.0.0.5?tls=0").unwrap(), "ws://10.0.0.5:8686/ws");
        assert_eq!(server_url("strangers://chat.example.org:80/ws?tls=0").unwrap(), "ws://chat.example.org:80/ws");
        assert_eq!(server_url("strangers://[2001:db8::1]:8686?tls=0").unwrap(), "ws://[2001:db8::1]:8686/ws");
    }

    #[test]
    fn typed_servers_may_be_links_urls_or_bare_hosts() {
        assert_eq!(server_from_input(" strangers://chat.example.org ").unwrap(), "wss://chat.example.org/ws");
        assert_eq!(server_from_input("chat.example.org").unwrap(), "wss://chat.example.org/ws");
        assert_eq!(server_from_input("127.0.0.1:9000").unwrap(), "ws://127.0.0.1:9000/ws");
        assert_eq!(server_from_input("wss://chat.example.org/ws").unwrap(), "wss://chat.example.org/ws");
        assert_eq!(
            server_from_input("WS://chat.example.org:8686/signal").unwrap(),
            "ws://chat.example.org:8686/signal"
        );
        assert_eq!(server_from_input("wss://localhost:8443").unwrap(), "wss://localhost:8443/ws");
        for (bad, says) in [
            ("", "Type or paste"),
            ("https://chat.example.org", "web page"),
            ("ftp://x", "not a server address"),
            ("strangers://bad host", "not a server address"),
            ("wss://x/ws?token=1", "not a server address"),
            ("ws://:80", "not a server address"),
        ] {
            let error = server_from_input(bad).unwrap_err();
            assert!(error.contains(says) && error.contains("strangers://chat.example.org"), "{bad}: {error}");
        }
    }

    #[test]
    fn malformed_links_are_refused_with_the_reason() {
        assert_eq!(server_url("https://chat.example.org"), Err(LinkError::Scheme));
        assert_eq!(server_url("chat.example.org"), Err(LinkError::Scheme));
        assert_eq!(server_url("strangers://"), Err(LinkError::NoHost));
        assert_eq!(server_url("strangers://:8686"), Err(LinkError::NoHost));
        assert_eq!(server_url("strangers://bad host"), Err(LinkError::BadHost("bad host".into())));
        assert_eq!(server_url("strangers://user@host"), Err(LinkError::BadHost("user@host".into())));
        assert_eq!(server_url("strangers://-x.org"), Err(LinkError::BadHost("-x.org".into())));
        assert_eq!(server_url("strangers://[::1"), Err(LinkError::BadHost("[::1".into())));
        assert_eq!(server_url("strangers://[zz]:1"), Err(LinkError::BadHost("zz".into())));
        assert_eq!(server_url("strangers://host:0"), Err(LinkError::BadPort("0".into())));
        assert_eq!(server_url("strangers://host:99999"), Err(LinkError::BadPort("99999".into())));
        assert_eq!(server_url("strangers://host:+80"), Err(LinkError::BadPort("+80".into())));
        assert_eq!(server_url("strangers://host/a b"), Err(LinkError::BadPath));
        assert_eq!(server_url("strangers://host?tls=yes"), Err(LinkError::BadQuery("tls=yes".into())));
        let words = server_url("strangers://host:abc").unwrap_err().to_string();
        assert!(words.contains("not a port number"), "{words}");
    }
}

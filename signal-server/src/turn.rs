//! ICE servers for `welcome`: STUN URLs as given, TURN URLs with short-lived credentials in
//! the coturn REST scheme (`use-auth-secret`): username `<unix expiry>:<session id>`,
//! credential `base64(HMAC-SHA1(secret, username))`.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use strangers_protocol::IceServer;

/// What the server hands out.
#[derive(Clone)]
pub struct IceConfig {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    pub turn_secret: Option<String>,
    pub turn_ttl_secs: u64,
}

impl IceConfig {
    /// The ICE servers for one session, at wall-clock time `unix_now` (seconds).
    pub fn ice_servers(&self, session_id: &str, unix_now: u64) -> Vec<IceServer> {
        let mut servers: Vec<IceServer> = self
            .stun_urls
            .iter()
            .map(|url| IceServer { urls: vec![url.clone()], username: None, credential: None })
            .collect();
        if let Some(secret) = &self.turn_secret {
            let username = format!("{}:{session_id}", unix_now + self.turn_ttl_secs);
            let credential = turn_credential(secret, &username);
            servers.extend(self.turn_urls.iter().map(|url| IceServer {
                urls: vec![url.clone()],
                username: Some(username.clone()),
                credential: Some(credential.clone()),
            }));
        }
        servers
    }
}

/// `base64(HMAC-SHA1(secret, username))`, as coturn computes it.
pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_reference_hmac() {
        // Computed independently: python3 -c 'import hmac,hashlib,base64;
        // print(base64.b64encode(hmac.new(b"s3cret", b"1700003600:abc", hashlib.sha1).digest()))'
        assert_eq!(turn_credential("s3cret", "1700003600:abc"), "Fe5EJwoqvfV1NLt6WgDwx7yTyxg=");
    }

    #[test]
    fn hands_out_stun_then_turn_with_expiring_usernames() {
        let config = IceConfig {
            stun_urls: vec!["stun:a:3478".into()],
            turn_urls: vec!["turn:b:3478?transport=udp".into(), "turns:b:5349".into()],
            turn_secret: Some("k".into()),
            turn_ttl_secs: 600,
        };
        let servers = config.ice_servers("sid", 1_000);
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[0].urls, vec!["stun:a:3478".to_string()]);
        assert!(servers[0].username.is_none());
        for turn in &servers[1..] {
            assert_eq!(turn.username.as_deref(), Some("1600:sid"));
            assert_eq!(turn.credential.as_deref(), Some(turn_credential("k", "1600:sid").as_str()));
        }
    }
}

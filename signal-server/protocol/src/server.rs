//! Messages the server sends. Serialisation only: the server never parses these, but
//! clients and tests do, so they derive both directions.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::signal::SignalData;
#[cfg(test)]
use crate::signal::SignalKind;

/// One entry of `welcome.ice_servers`, shaped like the browser's `RTCIceServer`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl std::fmt::Debug for IceServer {
    // Credentials are secrets: never print them, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username.as_ref().map(|_| "<redacted>"))
            .field("credential", &self.credential.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a partner is gone (`partner_left.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerLeftReason {
    Next,
    Stop,
    Disconnect,
    Timeout,
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Welcome {
        id: String,
        resume: String,
        ice_servers: Vec<IceServer>,
        /// Extension: true when `hello.resume` re-attached an existing session.
        #[serde(default)]
        resumed: bool,
        /// Extension: on a resume into a live room, that room's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Extension: the community's name, as its operator gave it (`--name`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Extension: the community's rules, plain text (`--rules-file`), which clients show
        /// and have accepted before looking for anyone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rules: Option<String>,
    },
    Queued,
    Matched {
        room: String,
        initiator: bool,
        common_interests: Vec<String>,
    },
    Signal {
        #[serde(with = "raw_signal")]
        data: SignalData,
    },
    PartnerLeft {
        reason: PartnerLeftReason,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ServerMsg {
    /// A convenience for `error` messages.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
        ServerMsg::Error { code, message: message.into() }
    }

    /// The JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        match self {
            // The hot path: the message text is kept with the data.
            ServerMsg::Signal { data } => data.wire().to_string(),
            // Serialising plain enums and strings into a String cannot fail.
            other => serde_json::to_string(other).expect("server messages always serialise"),
        }
    }

    /// The JSON text sent on the wire, taking the message: a signal's text is moved, not
    /// copied.
    pub fn into_json(self) -> String {
        match self {
            ServerMsg::Signal { data } => data.into_wire(),
            other => other.to_json(),
        }
    }

    /// Parses a server message (for clients, tests and the server's Redis backend). A
    /// `signal` in the form the server writes keeps its data's exact text, so relaying what
    /// was parsed is verbatim.
    pub fn parse(text: &str) -> Result<ServerMsg, serde_json::Error> {
        if let Some(data) = SignalData::from_wire(text) {
            return Ok(ServerMsg::Signal { data });
        }
        serde_json::from_str(text)
    }

    /// The wire name of the message type.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMsg::Welcome { .. } => "welcome",
            ServerMsg::Queued => "queued",
            ServerMsg::Matched { .. } => "matched",
            ServerMsg::Signal { .. } => "signal",
            ServerMsg::PartnerLeft { .. } => "partner_left",
            ServerMsg::Error { .. } => "error",
        }
    }
}

mod raw_signal {
    use super::*;

    pub fn serialize<S: serde::Serializer>(data: &SignalData, s: S) -> Result<S::Ok, S::Error> {
        data.raw().serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SignalData, D::Error> {
        // Inside an internally tagged enum serde buffers the value, which a `RawValue` cannot
        // borrow from: go through a `Value` (clients need the content, not the exact bytes).
        let value = serde_json::Value::deserialize(d)?;
        SignalData::from_json(&value.to_string()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_documented_shapes() {
        let welcome = ServerMsg::Welcome {
            id: "s1".into(),
            resume: "t".into(),
            ice_servers: vec![IceServer { urls: vec!["stun:x:3478".into()], username: None, credential: None }],
            resumed: false,
            room: None,
            name: None,
            rules: None,
        };
        assert_eq!(
            welcome.to_json(),
            r#"{"type":"welcome","id":"s1","resume":"t","ice_servers":[{"urls":["stun:x:3478"]}],"resumed":false}"#
        );
        // A community's name and rules are extra fields; a welcome without them still parses.
        let community = ServerMsg::Welcome {
            id: "s1".into(),
            resume: "t".into(),
            ice_servers: vec![],
            resumed: false,
            room: None,
            name: Some("Chess fans".into()),
            rules: Some("Be kind.".into()),
        };
        let text = community.to_json();
        assert!(text.ends_with(r#""name":"Chess fans","rules":"Be kind."}"#), "{text}");
        assert_eq!(ServerMsg::parse(&text).unwrap(), community);
        assert_eq!(ServerMsg::parse(&welcome.to_json()).unwrap(), welcome);
        assert_eq!(ServerMsg::Queued.to_json(), r#"{"type":"queued"}"#);
        assert_eq!(
            ServerMsg::Matched { room: "r".into(), initiator: true, common_interests: vec!["a".into()] }.to_json(),
            r#"{"type":"matched","room":"r","initiator":true,"common_interests":["a"]}"#
        );
        assert_eq!(
            ServerMsg::PartnerLeft { reason: PartnerLeftReason::Disconnect }.to_json(),
            r#"{"type":"partner_left","reason":"disconnect"}"#
        );
        assert_eq!(
            ServerMsg::error(ErrorCode::NotMatched, "no partner").to_json(),
            r#"{"type":"error","code":"not_matched","message":"no partner"}"#
        );
    }

    #[test]
    fn relays_signal_data_verbatim_and_round_trips() {
        let data = SignalData::from_json(r#"{"candidate": {"candidate":"c", "sdpMLineIndex":0}}"#).unwrap();
        let msg = ServerMsg::Signal { data };
        let text = msg.to_json();
        assert_eq!(text, r#"{"type":"signal","data":{"candidate": {"candidate":"c", "sdpMLineIndex":0}}}"#);
        let ServerMsg::Signal { data: parsed } = ServerMsg::parse(&text).unwrap() else { panic!("not a signal") };
        assert_eq!(parsed.kind(), SignalKind::Candidate);
        // Parsing keeps the exact text of a signal in the server's form.
        assert_eq!(parsed.as_json(), r#"{"candidate": {"candidate":"c", "sdpMLineIndex":0}}"#);
        // The serde path prints the same bytes as the hot path.
        assert_eq!(serde_json::to_string(&msg).unwrap(), text);
    }
}

//! Messages a client sends, and their strict but forgiving parser: unknown fields are
//! ignored, everything else that is wrong is a [`ParseError`] naming the problem.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{ErrorCode, ParseError};
use crate::interests::normalize_interests;
use crate::limits::{MAX_MESSAGE_BYTES, MAX_REPORT_REASON_CHARS, MAX_RESUME_TOKEN_CHARS};
use crate::signal::SignalData;
use crate::PROTOCOL_VERSION;

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    Hello(Hello),
    Find,
    Next,
    Stop,
    Signal(SignalData),
    Report { reason: String },
}

/// The first message of every connection.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// Normalised interest tags (see [`normalize_interests`]).
    pub interests: Vec<String>,
    /// A resume token from an earlier `welcome`, if the client holds one.
    pub resume: Option<String>,
}

impl std::fmt::Debug for Hello {
    // A resume token is a secret (it takes over a session): never print it, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("interests", &self.interests)
            .field("resume", &self.resume.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Every field any message may carry, each kept raw so that a field a message type does not
/// use is ignored whatever its value, as unknown fields are.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version: Option<&'a RawValue>,
    #[serde(borrow)]
    interests: Option<&'a RawValue>,
    #[serde(borrow)]
    resume: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    reason: Option<&'a RawValue>,
}

impl ClientMsg {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<ClientMsg, ParseError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::with_code(
                ErrorCode::TooLarge,
                format!("message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES}", text.len()),
            ));
        }
        if let Some(data) = SignalData::from_wire(text) {
            return Ok(ClientMsg::Signal(data));
        }
        let env: Envelope = serde_json::from_str(text).map_err(|e| {
            ParseError::bad(if e.is_data() {
                format!("a message must be a JSON object with a string \"type\": {e}")
            } else {
                format!("invalid JSON: {e}")
            })
        })?;
        let kind = env.kind.as_deref().ok_or_else(|| ParseError::bad("missing field \"type\""))?;
        match kind {
            "hello" => parse_hello(&env).map(ClientMsg::Hello),
            "find" => Ok(ClientMsg::Find),
            "next" => Ok(ClientMsg::Next),
            "stop" => Ok(ClientMsg::Stop),
            "signal" => {
                let data = env.data.ok_or_else(|| ParseError::bad("signal: missing field \"data\""))?;
                SignalData::from_raw(data).map(ClientMsg::Signal)
            }
            "report" => {
                let reason = match env.reason {
                    None => String::new(),
                    Some(raw) => field::<Option<String>>("report", "reason", raw)?.unwrap_or_default(),
                };
                Ok(ClientMsg::Report { reason: reason.chars().take(MAX_REPORT_REASON_CHARS).collect() })
            }
            other => Err(ParseError::bad(format!("unknown message type {:?}", truncate(other, 40)))),
        }
    }

    /// The wire name of the message type, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMsg::Hello(_) => "hello",
            ClientMsg::Find => "find",
            ClientMsg::Next => "next",
            ClientMsg::Stop => "stop",
            ClientMsg::Signal(_) => "signal",
            ClientMsg::Report { .. } => "report",
        }
    }

    /// Prints the message as the JSON a client sends (clients, tests and benchmarks use it).
    pub fn to_json(&self) -> String {
        let value = match self {
            ClientMsg::Hello(h) => {
                let mut v = serde_json::json!({ "type": "hello", "version": PROTOCOL_VERSION });
                if !h.interests.is_empty() {
                    v["interests"] = serde_json::json!(h.interests);
                }
                if let Some(token) = &h.resume {
                    v["resume"] = serde_json::json!(token);
                }
                v
            }
            ClientMsg::Find => serde_json::json!({ "type": "find" }),
            ClientMsg::Next => serde_json::json!({ "type": "next" }),
            ClientMsg::Stop => serde_json::json!({ "type": "stop" }),
            ClientMsg::Signal(data) => {
                return data.wire().to_string();
            }
            ClientMsg::Report { reason } => serde_json::json!({ "type": "report", "reason": reason }),
        };
        value.to_string()
    }
}

fn parse_hello(env: &Envelope) -> Result<Hello, ParseError> {
    let version_raw = env.version.ok_or_else(|| ParseError::bad("hello: missing field \"version\""))?;
    let version: u64 = serde_json::from_str(version_raw.get()).map_err(|_| {
        ParseError::bad(format!("hello: \"version\" must be a whole number, got {}", truncate(version_raw.get(), 40)))
    })?;
    if version != PROTOCOL_VERSION {
        return Err(ParseError::with_code(
            ErrorCode::Version,
            format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}"),
        ));
    }
    let interests = match env.interests {
        None => Vec::new(),
        Some(raw) => field::<Option<Vec<String>>>("hello", "interests", raw)?.unwrap_or_default(),
    };
    let interests = normalize_interests(interests)?;
    let resume = match env.resume {
        None => None,
        Some(raw) => field::<Option<String>>("hello", "resume", raw)?,
    };
    if resume.as_ref().is_some_and(|t| t.chars().count() > MAX_RESUME_TOKEN_CHARS) {
        return Err(ParseError::bad("hello: \"resume\" token is too long"));
    }
    Ok(Hello { interests, resume: resume.filter(|t| !t.is_empty()) })
}

fn field<T: serde::de::DeserializeOwned>(kind: &str, name: &str, raw: &RawValue) -> Result<T, ParseError> {
    serde_json::from_str(raw.get())
        .map_err(|e| ParseError::bad(format!("{kind}: field {name:?} has the wrong type: {e}")))
}

fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().take(max).chain("...".chars()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerMsg;

    #[test]
    fn debug_output_redacts_the_resume_token() {
        let msg = ClientMsg::parse(r#"{"type":"hello","version":1,"resume":"s3cr3t-token","interests":["chess"]}"#);
        let printed = format!("{:?}", msg.unwrap());
        assert!(!printed.contains("s3cr3t-token"), "the token leaked: {printed}");
        assert!(printed.contains("<redacted>") && printed.contains("chess"), "{printed}");
    }

    fn code(text: &str) -> ErrorCode {
        ClientMsg::parse(text).unwrap_err().code()
    }

    #[test]
    fn parses_every_message_type() {
        assert_eq!(
            ClientMsg::parse(r#"{"type":"hello","version":1,"interests":["Music"," Art "],"resume":"tok"}"#).unwrap(),
            ClientMsg::Hello(Hello { interests: vec!["music".into(), "art".into()], resume: Some("tok".into()) })
        );
        assert_eq!(ClientMsg::parse(r#"{"type":"hello","version":1}"#).unwrap(), ClientMsg::Hello(Hello::default()));
        assert_eq!(ClientMsg::parse(r#"{"type":"find"}"#).unwrap(), ClientMsg::Find);
        assert_eq!(ClientMsg::parse(r#"{"type":"next"}"#).unwrap(), ClientMsg::Next);
        assert_eq!(ClientMsg::parse(r#"{"type":"stop"}"#).unwrap(), ClientMsg::Stop);
        assert_eq!(
            ClientMsg::parse(r#"{"type":"report","reason":"rude"}"#).unwrap(),
            ClientMsg::Report { reason: "rude".into() }
        );
        assert_eq!(ClientMsg::parse(r#"{"type":"report"}"#).unwrap(), ClientMsg::Report { reason: String::new() });
        let ClientMsg::Signal(data) =
            ClientMsg::parse(r#"{"type":"signal","data":{"sdp":{"type":"offer","sdp":"v=0\r\n"}}}"#).unwrap()
        else {
            panic!("not a signal")
        };
        assert_eq!(data.as_json(), r#"{"sdp":{"type":"offer","sdp":"v=0\r\n"}}"#);
    }

    /// A signal written the usual way is checked in one pass and relayed as it came; any
    /// other layout takes the general path, with the same outcome.
    #[test]
    fn signals_in_any_layout_parse_alike() {
        let data = r#"{"candidate":{"candidate":"c","sdpMid":"0"}}"#;
        let layouts = [
            format!(r#"{{"type":"signal","data":{data}}}"#),
            format!(r#"{{"type":"signal","data":{data},"extra":[1,"}}"]}}"#),
            format!(r#"{{"data":{data},"type":"signal"}}"#),
            format!(r#" {{ "type" : "signal", "data" : {data} }} "#),
        ];
        for text in &layouts {
            let Ok(ClientMsg::Signal(parsed)) = ClientMsg::parse(text) else { panic!("{text} did not parse") };
            assert_eq!(parsed.as_json(), data, "{text}");
            assert_eq!(ServerMsg::Signal { data: parsed.clone() }.into_json(), layouts[0]);
            assert_eq!(ServerMsg::Signal { data: parsed }.to_json(), layouts[0]);
        }
        for bad in [
            r#"{"type":"signal","data":{"candidate":"c"}}"#,
            r#"{"type":"signal","data":{"restart":true}, "data":{"restart":true}}"#,
            r#"{"type":"signal","data":{"restart":true}"#,
            r#"{"type":"signal","data":}"#,
            r#"{"type":"signal","data":{"restart":true}}}"#,
        ] {
            let error = ClientMsg::parse(bad).expect_err(bad);
            assert_eq!(error.code(), ErrorCode::BadMessage, "{bad}");
        }
    }

    #[test]
    fn ignores_unknown_and_irrelevant_fields() {
        assert_eq!(ClientMsg::parse(r#"{"type":"find","extra":[1,2],"version":"x"}"#).unwrap(), ClientMsg::Find);
        assert_eq!(
            ClientMsg::parse(r#"{"version":1,"resume":null,"type":"hello","zzz":{}}"#).unwrap(),
            ClientMsg::Hello(Hello::default())
        );
    }

    #[test]
    fn refuses_bad_messages_with_the_right_code() {
        assert_eq!(code("not json"), ErrorCode::BadMessage);
        assert_eq!(code("[1,2]"), ErrorCode::BadMessage);
        assert_eq!(code(r#""find""#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"kind":"find"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"hello"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"hello","version":"1"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"hello","version":2}"#), ErrorCode::Version);
        assert_eq!(code(r#"{"type":"hello","version":1,"interests":"music"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"hello","version":1,"interests":[1]}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"hello","version":1,"resume":7}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"signal"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"signal","data":"x"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"find","type":"stop"}"#), ErrorCode::BadMessage);
        let big = format!(r#"{{"type":"report","reason":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(code(&big), ErrorCode::TooLarge);
    }

    #[test]
    fn round_trips_what_clients_print() {
        let msgs = [
            ClientMsg::Hello(Hello { interests: vec!["chess".into()], resume: Some("abc".into()) }),
            ClientMsg::Hello(Hello::default()),
            ClientMsg::Find,
            ClientMsg::Next,
            ClientMsg::Stop,
            ClientMsg::Report { reason: "spam \"bot\"".into() },
            ClientMsg::Signal(SignalData::from_json(r#"{"candidate":{"candidate":"a","sdpMid":"0"}}"#).unwrap()),
        ];
        for m in msgs {
            assert_eq!(ClientMsg::parse(&m.to_json()).unwrap(), m);
        }
    }
}

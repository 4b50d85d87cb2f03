//! The `data` of a `signal` message: checked to be one of the three shapes the protocol
//! names, then kept as the exact JSON text the sender wrote so it is relayed verbatim. It is
//! kept inside the text of the `signal` message the partner gets, so relaying it is a move.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ParseError;

/// What a signal carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
    Candidate,
    Restart,
}

/// Validated signal data, holding the sender's JSON text unchanged.
#[derive(Debug, Clone)]
pub struct SignalData {
    /// `{"type":"signal","data":` + the data + `}`: the message the partner gets.
    wire: Box<str>,
    kind: SignalKind,
}

/// How a `signal` message starts when its `data` comes right after its type, as every
/// client of this protocol writes it (and as the server sends it).
pub(crate) const WIRE_PREFIX: &str = r#"{"type":"signal","data":"#;

impl PartialEq for SignalData {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

/// The shape of signal data, parsed in one pass: the `sdp` object is checked where it lies
/// rather than kept raw and parsed again.
#[derive(Deserialize)]
struct Shape<'a> {
    #[serde(borrow)]
    sdp: Option<Sdp<'a>>,
    #[serde(borrow)]
    candidate: Option<&'a RawValue>,
    #[serde(borrow)]
    restart: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Sdp<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    sdp: &'a RawValue,
}

impl SignalData {
    /// Checks raw JSON taken from a `signal` message.
    pub fn from_raw(raw: &RawValue) -> Result<SignalData, ParseError> {
        let kind = Self::classify(raw.get())?;
        let mut wire = String::with_capacity(WIRE_PREFIX.len() + raw.get().len() + 1);
        wire.push_str(WIRE_PREFIX);
        wire.push_str(raw.get());
        wire.push('}');
        Ok(SignalData { wire: wire.into(), kind })
    }

    /// The one-pass path for a whole `signal` message written as `{"type":"signal","data":`
    /// DATA `}`: DATA is checked in place (one JSON value and nothing after it, or this
    /// returns `None` and the message goes the general way) and the message text becomes
    /// the partner's message as it is.
    pub(crate) fn from_wire(text: &str) -> Option<SignalData> {
        let data = text.strip_prefix(WIRE_PREFIX)?.strip_suffix('}')?;
        let kind = Self::classify(data).ok()?;
        Some(SignalData { wire: text.into(), kind })
    }

    /// Checks a JSON text (clients and tests build signals with it).
    pub fn from_json(json: &str) -> Result<SignalData, ParseError> {
        let raw: &RawValue =
            serde_json::from_str(json).map_err(|e| ParseError::bad(format!("signal: invalid JSON data: {e}")))?;
        Self::from_raw(raw)
    }

    fn classify(raw: &str) -> Result<SignalKind, ParseError> {
        let shape: Shape = serde_json::from_str(raw).map_err(|_| Self::explain(raw))?;
        exactly_one([shape.sdp.is_some(), shape.candidate.is_some(), shape.restart.is_some()])?;
        if let Some(sdp) = shape.sdp {
            if !sdp.sdp.get().starts_with('"') {
                return Err(ParseError::bad("signal: \"sdp.sdp\" must be a string"));
            }
            return match sdp.kind.as_ref() {
                "offer" => Ok(SignalKind::Offer),
                "answer" => Ok(SignalKind::Answer),
                other => Err(ParseError::bad(format!(
                    "signal: sdp type must be \"offer\" or \"answer\", not {:?}",
                    other.chars().take(20).collect::<String>()
                ))),
            };
        }
        if let Some(candidate) = shape.candidate {
            if !candidate.get().starts_with('{') {
                return Err(ParseError::bad("signal: \"candidate\" must be an RTCIceCandidateInit object"));
            }
            return Ok(SignalKind::Candidate);
        }
        match shape.restart.map(RawValue::get) {
            Some("true") => Ok(SignalKind::Restart),
            _ => Err(ParseError::bad("signal: \"restart\" must be true")),
        }
    }

    /// Says what is wrong with data that did not parse as a [`Shape`]. A slow path, taken
    /// only for errors, so that the fast path can check the `sdp` object in the same pass.
    fn explain(raw: &str) -> ParseError {
        #[derive(Deserialize)]
        struct Loose<'a> {
            #[serde(borrow)]
            sdp: Option<&'a RawValue>,
            #[serde(borrow)]
            candidate: Option<&'a RawValue>,
            #[serde(borrow)]
            restart: Option<&'a RawValue>,
        }
        let Ok(loose) = serde_json::from_str::<Loose>(raw) else {
            return ParseError::bad("signal: \"data\" must be an object holding \"sdp\", \"candidate\" or \"restart\"");
        };
        if let Err(e) = exactly_one([loose.sdp.is_some(), loose.candidate.is_some(), loose.restart.is_some()]) {
            return e;
        }
        ParseError::bad("signal: \"sdp\" must be {\"type\": \"offer\"|\"answer\", \"sdp\": string}")
    }

    /// What the signal carries.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// The JSON text exactly as the sender wrote it.
    pub fn as_json(&self) -> &str {
        &self.wire[WIRE_PREFIX.len()..self.wire.len() - 1]
    }

    /// Size of the JSON text in bytes (what buffers account for).
    pub fn len(&self) -> usize {
        self.as_json().len()
    }

    /// The `signal` message that carries this data, as sent on the wire.
    pub fn wire(&self) -> &str {
        &self.wire
    }

    /// The same, taken without a copy.
    pub fn into_wire(self) -> String {
        self.wire.into()
    }

    /// Never true: valid data is at least `{}`-sized. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub(crate) fn raw(&self) -> &RawValue {
        serde_json::from_str(self.as_json()).expect("signal data was checked to be one JSON value")
    }
}

/// Signal data names exactly one of its three shapes.
fn exactly_one(present: [bool; 3]) -> Result<(), ParseError> {
    if present.iter().filter(|p| **p).count() == 1 {
        Ok(())
    } else {
        Err(ParseError::bad("signal: \"data\" must hold exactly one of \"sdp\", \"candidate\" or \"restart\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_shapes() {
        let offer = SignalData::from_json(r#"{"sdp":{"type":"offer","sdp":"v=0"}}"#).unwrap();
        assert_eq!(offer.kind(), SignalKind::Offer);
        let answer = SignalData::from_json(r#"{ "sdp" : { "sdp":"v=0\r\n", "type":"answer" } }"#).unwrap();
        assert_eq!(answer.kind(), SignalKind::Answer);
        assert_eq!(answer.as_json(), r#"{ "sdp" : { "sdp":"v=0\r\n", "type":"answer" } }"#);
        let cand = SignalData::from_json(
            r#"{"candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0"}}"#,
        );
        assert_eq!(cand.unwrap().kind(), SignalKind::Candidate);
        assert_eq!(SignalData::from_json(r#"{"restart":true}"#).unwrap().kind(), SignalKind::Restart);
        assert_eq!(SignalData::from_json(r#"{"restart":true,"hint":1}"#).unwrap().kind(), SignalKind::Restart);
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in [
            "1",
            "[]",
            "{}",
            r#"{"sdp":"v=0"}"#,
            r#"{"sdp":{"type":"pranswer","sdp":"v=0"}}"#,
            r#"{"sdp":{"type":"offer","sdp":5}}"#,
            r#"{"candidate":"x"}"#,
            r#"{"restart":false}"#,
            r#"{"restart":true,"candidate":{}}"#,
        ] {
            assert!(SignalData::from_json(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn names_the_problem() {
        let message = |json: &str| SignalData::from_json(json).unwrap_err().to_string();
        assert!(message("[]").contains("must be an object"));
        assert!(message(r#"{"sdp":"v=0","candidate":{}}"#).contains("exactly one"));
        assert!(message(r#"{"sdp":"v=0"}"#).contains("\"sdp\" must be"));
        assert!(message(r#"{"sdp":{"type":"offer"}}"#).contains("\"sdp\" must be"));
        assert!(message(r#"{"sdp":{"type":"pranswer","sdp":""}}"#).contains("offer\" or \"answer"));
        assert!(message(r#"{"sdp":{"type":"offer","sdp":1}}"#).contains("must be a string"));
    }
}

//! The `data` of a `signal` message: checked to be one of the three shapes the protocol
//! names, then kept as the exact JSON text the sender wrote so it is relayed verbatim.

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
    raw: Box<RawValue>,
    kind: SignalKind,
}

impl PartialEq for SignalData {
    fn eq(&self, other: &Self) -> bool {
        self.raw.get() == other.raw.get()
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
        let kind = Self::classify(raw)?;
        Ok(SignalData { raw: raw.to_owned(), kind })
    }

    /// Checks a JSON text (clients and tests build signals with it).
    pub fn from_json(json: &str) -> Result<SignalData, ParseError> {
        let raw: &RawValue =
            serde_json::from_str(json).map_err(|e| ParseError::bad(format!("signal: invalid JSON data: {e}")))?;
        Self::from_raw(raw)
    }

    fn classify(raw: &RawValue) -> Result<SignalKind, ParseError> {
        let shape: Shape = serde_json::from_str(raw.get()).map_err(|_| Self::explain(raw))?;
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
    fn explain(raw: &RawValue) -> ParseError {
        #[derive(Deserialize)]
        struct Loose<'a> {
            #[serde(borrow)]
            sdp: Option<&'a RawValue>,
            #[serde(borrow)]
            candidate: Option<&'a RawValue>,
            #[serde(borrow)]
            restart: Option<&'a RawValue>,
        }
        let Ok(loose) = serde_json::from_str::<Loose>(raw.get()) else {
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
        self.raw.get()
    }

    /// Size of the JSON text in bytes (what buffers account for).
    pub fn len(&self) -> usize {
        self.raw.get().len()
    }

    /// Never true: valid data is at least `{}`-sized. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub(crate) fn raw(&self) -> &RawValue {
        &self.raw
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

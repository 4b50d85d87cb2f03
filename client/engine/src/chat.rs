//! What travels on the chat data channel: JSON objects with a `type`, peer to peer (the server
//! never sees them). `{"type":"chat","text":...}` and `{"type":"typing","active":bool}`.

use serde::{Deserialize, Serialize};

/// Longest chat message sent or accepted, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatMessage {
    Chat { text: String },
    Typing { active: bool },
}

impl ChatMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("chat messages always serialise")
    }

    /// Parses a message from the partner; anything unknown or oversized is ignored (`None`).
    pub fn parse(text: &str) -> Option<ChatMessage> {
        if text.len() > MAX_CHAT_CHARS * 4 + 64 {
            return None;
        }
        match serde_json::from_str(text).ok()? {
            ChatMessage::Chat { text } if text.chars().count() > MAX_CHAT_CHARS => None,
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_junk() {
        for m in [ChatMessage::Chat { text: "hi \"you\"".into() }, ChatMessage::Typing { active: true }] {
            assert_eq!(ChatMessage::parse(&m.to_json()), Some(m));
        }
        assert_eq!(ChatMessage::parse("{}"), None);
        assert_eq!(ChatMessage::parse("not json"), None);
        assert_eq!(ChatMessage::parse(&ChatMessage::Chat { text: "x".repeat(MAX_CHAT_CHARS + 1) }.to_json()), None);
    }
}

//! Preferences kept between runs (through eframe's storage, a small file in the user's data
//! directory): the server, interests, chosen devices, privacy and display options.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Storage key of the preferences.
pub const KEY: &str = "strangers-preferences";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    /// Signal server URL (empty: none chosen yet).
    pub server: String,
    /// Rules accepted, by server URL: the fingerprint of the name and rules accepted there
    /// (rules that change are asked again).
    pub accepted_rules: BTreeMap<String, String>,
    /// Interests, comma-separated as typed.
    pub interests: String,
    /// Chosen devices by name (none: the system's default).
    pub camera: Option<String>,
    pub microphone: Option<String>,
    pub speaker: Option<String>,
    /// Relay-only privacy mode: the stranger never learns our address.
    pub relay_only: bool,
    /// Echo cancellation, noise suppression and gain control on the microphone.
    pub echo_cancellation: bool,
    /// Show the call statistics over the video.
    pub show_stats: bool,
    pub mic_muted: bool,
    pub camera_muted: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            server: built_in_server().unwrap_or_default(),
            accepted_rules: BTreeMap::new(),
            interests: String::new(),
            camera: None,
            microphone: None,
            speaker: None,
            relay_only: false,
            echo_cancellation: true,
            show_stats: false,
            mic_muted: false,
            camera_muted: false,
        }
    }
}

/// The server this build was made for: `STRANGERS_DEFAULT_SERVER` when it was compiled (a
/// `strangers://` link or a `ws://`/`wss://` URL), so an operator can hand out a build of
/// their own. Without it, the first run asks which server to use.
pub fn built_in_server() -> Option<String> {
    let given = option_env!("STRANGERS_DEFAULT_SERVER")?.trim();
    if given.is_empty() {
        return None;
    }
    match crate::link::server_from_input(given) {
        Ok(url) => Some(url),
        Err(e) => {
            tracing::warn!("the built-in server is not usable: {e}");
            None
        }
    }
}

impl Prefs {
    /// The interests as a list: trimmed, empty entries dropped.
    pub fn interest_list(&self) -> Vec<String> {
        split_interests(&self.interests)
    }
}

pub fn split_interests(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_or_partial_preferences_fill_in_defaults() {
        let prefs: Prefs = serde_json::from_str(r#"{"server":"wss://example.org/ws","unknown":1}"#).expect("parses");
        assert_eq!(prefs.server, "wss://example.org/ws");
        assert!(prefs.echo_cancellation);
        assert_eq!(split_interests(" music, ,chess "), vec!["music", "chess"]);
    }
}

//! The matchmaker's settings. Durations are compared with the `now` given to every input;
//! the core never reads a clock.

use std::time::Duration;

/// Settings of a [`crate::Matchmaker`].
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a session whose socket dropped is kept (its queue place or room held).
    pub resume_grace: Duration,
    /// How long a client with interests waits for someone sharing one before it accepts
    /// anyone. Zero: at once.
    pub interest_wait: Duration,
    /// Most messages held for a session whose socket is down.
    pub pending_max_msgs: usize,
    /// Most bytes of signal data held for a session whose socket is down.
    pub pending_max_bytes: usize,
    /// Reports against one address, within `report_window`, that ban it. Zero: never.
    pub report_threshold: u32,
    /// How long a report counts.
    pub report_window: Duration,
    /// How long a ban lasts.
    pub ban_duration: Duration,
    /// Seed of the generator of session ids, resume tokens and room ids. Production seeds it
    /// from the OS; tests fix it.
    pub seed: [u8; 32],
}

impl Default for Config {
    fn default() -> Self {
        Config {
            resume_grace: Duration::from_secs(10),
            interest_wait: Duration::from_secs(5),
            pending_max_msgs: 256,
            pending_max_bytes: 1024 * 1024,
            report_threshold: 3,
            report_window: Duration::from_secs(3600),
            ban_duration: Duration::from_secs(3600),
            seed: [7; 32],
        }
    }
}

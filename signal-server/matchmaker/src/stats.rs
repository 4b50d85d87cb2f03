//! Numbers the matchmaker keeps for metrics.

/// A snapshot of gauges and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sockets open (greeted or not).
    pub connections: usize,
    /// Sessions held, connected or waiting for a resume.
    pub sessions: usize,
    /// Sessions waiting in the queue.
    pub queued: usize,
    /// Rooms (matched pairs).
    pub rooms: usize,
    /// Sessions whose socket is down, held for a resume.
    pub sessions_dropped: usize,
    /// Addresses banned now.
    pub bans_active: usize,
    pub matches_total: u64,
    pub signals_relayed_total: u64,
    pub resumes_total: u64,
    pub reports_total: u64,
    pub bans_total: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) matches: u64,
    pub(crate) signals_relayed: u64,
    pub(crate) resumes: u64,
    pub(crate) reports: u64,
    pub(crate) bans: u64,
}

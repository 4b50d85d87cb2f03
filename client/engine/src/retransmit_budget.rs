//! A budget for retransmissions. webrtc-rs's NACK responder resends whatever the partner asks
//! for, at once and outside congestion control. When a link falls, most of what we sent in the
//! moment before is lost in its full router queue, the partner asks for all of it, and the
//! answers keep that queue full for seconds after the estimate has fallen (measured: video 1.5 s
//! late 4 s after a fall from 2.5 Mbit/s to 300 kbit/s). Retransmissions may take a share of the
//! estimate, with a short burst; the rest are dropped before they are numbered for feedback, and
//! the receiver's jitter buffer gives up on them as on any other loss (a keyframe request, if it
//! mattered).
//!
//! [`RetransmitBudget`] is the pure rule (time and the estimate are inputs); [`BudgetGate`] is
//! the interceptor that applies it in the chain's pacer slot, where retransmissions pass on their
//! way to the congestion controller's send history.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

use crate::send_budget::SendBudget;

/// The share of the estimate retransmissions may use. At 5 % random loss they need about 5 %
/// (a little more when a retransmission is lost too).
pub const SHARE: f64 = 0.25;
/// The burst allowed, in seconds of the share: one frame's worth of losses answered at once.
pub const BURST_S: f64 = 0.1;
/// The smallest burst, bytes: a couple of full packets on the thinnest link.
pub const MIN_BURST_BYTES: f64 = 2_500.0;

/// A token bucket filled at [`SHARE`] of the estimate.
#[derive(Debug, Clone, Default)]
pub struct RetransmitBudget {
    tokens: f64,
    last: Option<Instant>,
    /// Retransmissions let through and dropped.
    pub sent: u64,
    pub dropped: u64,
}

impl RetransmitBudget {
    /// Whether a retransmission of `bytes` may leave at `now`, with the estimate at
    /// `estimate_bps`; it is charged if so.
    pub fn admit(&mut self, now: Instant, bytes: usize, estimate_bps: f64) -> bool {
        let rate = estimate_bps.max(0.0) * SHARE / 8.0;
        let burst = (rate * BURST_S).max(MIN_BURST_BYTES);
        let elapsed = self.last.map_or(f64::INFINITY, |last| now.saturating_duration_since(last).as_secs_f64());
        self.last = Some(now);
        self.tokens = (self.tokens + rate * elapsed).min(burst);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            self.sent += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// The interceptor: every packet passes, but retransmissions only within the budget.
pub struct BudgetGate {
    budget: RetransmitBudget,
    estimate: Arc<SendBudget>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl BudgetGate {
    pub(crate) fn new(estimate: Arc<SendBudget>) -> Self {
        BudgetGate { budget: RetransmitBudget::default(), estimate, read: VecDeque::new(), write: VecDeque::new() }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for BudgetGate {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let (Packet::Rtp(packet), true) = (&msg.message.packet, msg.message.has(&Attribute::Retransmission)) {
            let bytes = 12 + packet.payload.len();
            if !self.budget.admit(msg.now, bytes, self.estimate.estimate()) {
                tracing::trace!(seq = packet.header.sequence_number, "retransmission over budget: dropped");
                return Ok(());
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for BudgetGate {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retransmissions_get_a_share_of_the_estimate_with_a_short_burst() {
        let mut budget = RetransmitBudget::default();
        let start = Instant::now();
        // 1 Mbit/s: 250 kbit/s for retransmissions, a burst of 3,125 bytes.
        let burst = (0..10).filter(|_| budget.admit(start, 1000, 1_000_000.0)).count();
        assert_eq!(burst, 3, "the burst");
        // Over the next second, about 31 more 1,000-byte packets, whatever is asked.
        let mut later = 0;
        for ms in 1..=1000u64 {
            let now = start + Duration::from_millis(ms);
            later += (0..5).filter(|_| budget.admit(now, 1000, 1_000_000.0)).count();
        }
        assert!((30..=33).contains(&later), "{later} retransmissions in a second");
        assert_eq!(budget.sent, (burst + later) as u64);
        assert_eq!(budget.dropped, 10 + 5000 - budget.sent);
    }

    #[test]
    fn a_thin_link_still_gets_a_packet_or_two_at_once_and_nothing_when_the_estimate_is_gone() {
        let mut budget = RetransmitBudget::default();
        let now = Instant::now();
        assert!(budget.admit(now, 1200, 60_000.0));
        assert!(budget.admit(now, 1200, 60_000.0));
        assert!(!budget.admit(now, 1200, 60_000.0));
        let mut empty = RetransmitBudget::default();
        assert!(empty.admit(now, 1200, 0.0), "the first burst is there");
        let mut refused = 0;
        for ms in 1..100u64 {
            refused += usize::from(!empty.admit(now + Duration::from_millis(ms * 10), 1200, 0.0));
        }
        assert!(refused >= 98, "nothing refills at no estimate: {refused}");
    }
}

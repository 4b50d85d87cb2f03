//! What congestion control lets us send, shared between the estimator (which runs inside
//! webrtc-rs's interceptor chain) and the video sender and statistics (which run beside it): the
//! estimate, whether it rests on the partner's feedback yet, and when our newest video packet
//! left, so the estimator can tell feedback that stopped coming from feedback with nothing to
//! report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct SendBudget {
    /// Bits per second, audio and video together (an `f64` stored as bits).
    estimate: AtomicU64,
    measured: AtomicBool,
    last_sent: Mutex<Option<Instant>>,
}

impl SendBudget {
    pub(crate) fn new(start_bps: f64) -> Self {
        SendBudget {
            estimate: AtomicU64::new(start_bps.to_bits()),
            measured: AtomicBool::new(false),
            last_sent: Mutex::new(None),
        }
    }

    /// The estimate, bits per second.
    pub(crate) fn estimate(&self) -> f64 {
        f64::from_bits(self.estimate.load(Ordering::Relaxed))
    }

    pub(crate) fn set_estimate(&self, bps: f64) {
        self.estimate.store(bps.to_bits(), Ordering::Relaxed);
    }

    /// The estimate once it rests on the partner's feedback.
    pub(crate) fn measured(&self) -> Option<f64> {
        self.measured.load(Ordering::Relaxed).then(|| self.estimate())
    }

    pub(crate) fn set_measured(&self) {
        self.measured.store(true, Ordering::Relaxed);
    }

    /// Notes that a packet of ours left at `at`.
    pub(crate) fn sent(&self, at: Instant) {
        *self.last_sent.lock().expect("send clock lock is never poisoned") = Some(at);
    }

    /// When our newest packet left.
    pub(crate) fn last_sent(&self) -> Option<Instant> {
        *self.last_sent.lock().expect("send clock lock is never poisoned")
    }
}

//! What congestion control lets us send, shared between the estimator (which runs inside
//! webrtc-rs's interceptor chain) and the video sender and statistics (which run beside it): the
//! estimate, whether it rests on the partner's feedback yet, and when our newest video packet
//! left, so the estimator can tell feedback that stopped coming from feedback with nothing to
//! report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Opus's bitrate on links with room for it: clear wideband speech.
pub(crate) const AUDIO_MAX_BPS: f64 = 32_000.0;
/// The least Opus is given: still wideband speech, a little less crisp.
pub(crate) const AUDIO_MIN_BPS: f64 = 16_000.0;
/// Audio's share of the estimate between those bounds: at 32 kbit/s from an estimate of
/// 160 kbit/s up; below, the picture would lose more than the voice gains.
const AUDIO_SHARE: f64 = 0.2;
/// What audio costs beyond Opus's bitrate in the estimate's terms (its packets' RTP headers).
const AUDIO_OVERHEAD_BPS: f64 = 8_000.0;
/// Video never targets less than this.
const MIN_VIDEO_BPS: f64 = 30_000.0;

/// Opus's bitrate at an estimate of `estimate_bps`.
pub(crate) fn audio_bps(estimate_bps: f64) -> f64 {
    (estimate_bps * AUDIO_SHARE).clamp(AUDIO_MIN_BPS, AUDIO_MAX_BPS)
}

/// What video may send at an estimate of `estimate_bps`: the rest after audio, which goes first.
pub(crate) fn video_bps(estimate_bps: f64) -> f64 {
    (estimate_bps - audio_bps(estimate_bps) - AUDIO_OVERHEAD_BPS).max(MIN_VIDEO_BPS)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_keeps_its_full_rate_from_160_kbit_and_never_falls_below_16() {
        assert_eq!(audio_bps(2_500_000.0), AUDIO_MAX_BPS);
        assert_eq!(audio_bps(160_000.0), AUDIO_MAX_BPS);
        assert_eq!(audio_bps(100_000.0), 20_000.0);
        assert_eq!(audio_bps(60_000.0), AUDIO_MIN_BPS);
        assert_eq!(audio_bps(0.0), AUDIO_MIN_BPS);
        // Video gets the rest, and some even when there is no rest.
        assert_eq!(video_bps(1_000_000.0), 1_000_000.0 - 40_000.0);
        assert_eq!(video_bps(100_000.0), 72_000.0);
        assert_eq!(video_bps(20_000.0), MIN_VIDEO_BPS);
        // More estimate never means less video.
        let mut last = 0.0;
        for kbps in 0..3_000 {
            let video = video_bps(f64::from(kbps) * 1000.0);
            assert!(video >= last, "{kbps} kbit/s");
            last = video;
        }
    }
}

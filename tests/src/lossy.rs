//! Measuring a call under packet loss: both clients' statistics second by second over a
//! window, folded into what each side received (frames verified, mean and frozen seconds,
//! corrupt frames, keyframes asked for), and the check that video recovered from the losses
//! through NACK rather than freezing or asking for a keyframe per loss. Shared by the loss test
//! on one host and the NAT lab's loss test across routers.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Client;

/// A second with fewer frames than this counts as frozen.
pub const FROZEN_BELOW_FPS: f64 = 10.0;

/// What one side received over the measured window.
#[derive(Debug)]
pub struct Window {
    pub seconds: usize,
    pub frames_verified: f64,
    pub mean_fps: f64,
    pub frozen_seconds: usize,
    /// The longest run of consecutive frozen seconds.
    pub longest_freeze: usize,
    pub verify_errors: f64,
    /// Keyframes this side asked the other for (counted at the sender).
    pub keyframes_asked: f64,
    pub loss: f64,
}

fn number(stats: &Value, field: &str) -> f64 {
    stats[field].as_f64().unwrap_or_else(|| panic!("no {field} in {stats}"))
}

/// The window of one side, with the keyframes its partner was asked for from `partner`'s
/// statistics over the same seconds.
fn window(stats: &[Value], partner: &[Value]) -> Window {
    let (first, last) = (&stats[0], &stats[stats.len() - 1]);
    let fps: Vec<f64> = stats[1..].iter().map(|s| number(s, "recv_fps")).collect();
    let requested = |s: &[Value]| number(&s[s.len() - 1], "keyframes_requested") - number(&s[0], "keyframes_requested");
    Window {
        seconds: fps.len(),
        frames_verified: number(last, "frames_verified") - number(first, "frames_verified"),
        mean_fps: fps.iter().sum::<f64>() / fps.len() as f64,
        frozen_seconds: fps.iter().filter(|&&f| f < FROZEN_BELOW_FPS).count(),
        longest_freeze: fps.split(|&f| f >= FROZEN_BELOW_FPS).map(<[f64]>::len).max().unwrap_or(0),
        verify_errors: number(last, "verify_errors"),
        keyframes_asked: requested(partner),
        loss: number(last, "loss"),
    }
}

/// Lets congestion control settle for `settle`, then reads both sides' statistics for
/// `measured` and returns what a and b received. The call must hold throughout.
pub fn measure(a: &mut Client, b: &mut Client, settle: Duration, measured: Duration) -> [Window; 2] {
    std::thread::sleep(settle);
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    let end = Instant::now() + measured;
    while Instant::now() < end || sa.len() < 2 || sb.len() < 2 {
        sa.push(a.wait_event(Duration::from_secs(5), "stats").unwrap());
        sb.push(b.wait_event(Duration::from_secs(5), "stats").unwrap());
    }
    for c in [&*a, &*b] {
        let news: Vec<String> = c.seen.iter().filter(|e| e["event"] != "stats").map(|e| e.to_string()).collect();
        assert!(c.seen_named("partner_left").is_empty(), "{}: the call ended: {news:?}", c.name);
        assert_eq!(c.seen_named("matched").len(), 1, "{}: the call was replaced by another", c.name);
    }
    // a's keyframe requests are counted at b (the sender), and the other way round.
    [window(&sa, &sb), window(&sb, &sa)]
}

impl Window {
    /// The side saw loss, showed nothing corrupt (only whole frames are decoded), and the
    /// picture recovered from every loss: no freeze lasted more than three seconds, and most
    /// seconds moved. (Bounds that hold on a starved CPU too: with two cores shared by several
    /// builds, even a lossless call loses a frozen second or two.)
    pub fn assert_recovered(&self, who: &str) {
        // What is left after NACK repairs it (audio has none): some, however little.
        assert!(self.loss > 0.0, "{who}: the network drops packets: {self:?}");
        assert_eq!(self.verify_errors, 0.0, "{who}: corrupt frames: {self:?}");
        assert!(self.longest_freeze <= 3, "{who}: a freeze lasted too long: {self:?}");
        assert!(self.frozen_seconds * 2 <= self.seconds, "{who}: frozen too often: {self:?}");
    }

    /// At most two frozen seconds in the whole window.
    pub fn assert_rarely_frozen(&self, who: &str) {
        assert!(self.frozen_seconds <= 2, "{who}: frozen too often: {self:?}");
    }

    /// The picture stayed watchable (20 fps or more), and NACK with the video jitter buffer
    /// repaired nearly every loss without a keyframe: at 5 % loss and several packets a frame,
    /// well over 100 frames a window lose a packet, yet at most one keyframe a second is asked
    /// for.
    pub fn assert_repaired_by_nack(&self, who: &str) {
        assert!(self.mean_fps >= 20.0, "{who}: {self:?}");
        assert!(self.frames_verified >= 20.0 * self.seconds as f64, "{who}: too few frames verified: {self:?}");
        assert!(self.keyframes_asked <= self.seconds as f64, "{who} asked for too many keyframes: {self:?}");
    }
}

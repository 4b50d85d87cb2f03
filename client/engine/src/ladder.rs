//! The resolution ladder: which picture size (and, below the smallest, which frame rate) the
//! video sender uses for a congestion-control target. Sizes step down from the source's own in
//! the source's aspect ratio (for 640x480: 480x360, 320x240, 240x180, 160x120), each with a
//! bitrate above which it is worth moving up to and one below which it must be left. Moving
//! down is immediate; moving up needs the higher rate held for a while and some time since the
//! last move down (longer after each larger size that did not fit), so the size never flaps,
//! and goes to the largest size the target is then worth. The frame rate drops only below the smallest
//! size's floor. Pure: time is an input.

use std::time::{Duration, Instant};

/// How long a target must stay above the next size's threshold before moving up to it.
const UP_AFTER: Duration = Duration::from_secs(2);
/// How long after moving down before moving up again.
const UP_NOT_BEFORE: Duration = Duration::from_secs(4);
/// A move down this soon after a move up means the larger size did not fit: the wait before the
/// next try doubles, up to [`UP_NOT_BEFORE_MAX`]. On a link just below a size's needs the
/// target reaches its threshold every few seconds, and each try costs a keyframe at the larger
/// size and a queue that breaks up the audio.
const FAILED_UP_WITHIN: Duration = Duration::from_secs(15);
const UP_NOT_BEFORE_MAX: Duration = Duration::from_secs(64);
/// Bits per second at which 640x480 is worth sending; other sizes scale with the pixel count
/// to the power 0.75 (smaller pictures need more bits per pixel).
const VGA_UP_BPS: f64 = 500_000.0;
const VGA_PIXELS: f64 = 640.0 * 480.0;
/// A size is left when the target falls below this share of its threshold.
const DOWN_SHARE: f64 = 0.75;
/// The most a size is sent at, as a multiple of its threshold (640x480: 1 Mbit/s). More bits
/// than this barely show on camera video, and the encoder's work grows with them: VP8 at
/// 640x480 and 1 Mbit/s runs about as many instructions a frame as OpenH264 did at the
/// 2.5 Mbit/s it used to be given (18.2 M against 18.5 M), at 2.5 Mbit/s 37 % more.
const MAX_SHARE: f64 = 2.0;
/// The smallest width a size may have.
const MIN_WIDTH: usize = 160;
/// The lowest frame rate sent.
const MIN_FPS: u32 = 5;

/// Why the size last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeReason {
    /// The call's first choice.
    Start,
    /// The target fell below what this size needs.
    BandwidthLow,
    /// The target stayed above what a larger size needs.
    BandwidthHigh,
}

impl SizeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SizeReason::Start => "start",
            SizeReason::BandwidthLow => "bandwidth_low",
            SizeReason::BandwidthHigh => "bandwidth_high",
        }
    }
}

/// One size of the ladder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rung {
    pub width: usize,
    pub height: usize,
    /// Worth moving up to at this target (bits per second).
    pub up_bps: f64,
    /// Left below this target.
    pub down_bps: f64,
    /// Never sent above this bitrate.
    pub max_bps: f64,
}

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    /// The most this size is sent at, bits per second.
    pub max_bps: f64,
    pub reason: SizeReason,
}

/// The ladder for one source. See the module documentation.
#[derive(Debug, Clone)]
pub struct Ladder {
    /// Largest first.
    rungs: Vec<Rung>,
    fps: u32,
    current: Option<usize>,
    reason: SizeReason,
    /// Since when the target has been above the next size's threshold.
    above_since: Option<Instant>,
    last_down: Option<Instant>,
    last_up: Option<Instant>,
    /// The wait after a move down before moving up again.
    up_not_before: Duration,
}

impl Ladder {
    /// The ladder for a source of `width`x`height` at `fps` frames per second.
    pub fn new(width: usize, height: usize, fps: u32) -> Self {
        let mut rungs: Vec<Rung> = Vec::new();
        // Halvings of the source and three quarters of each.
        let mut scale = 1.0;
        while rungs.is_empty() || (width as f64 * scale).round() as usize >= MIN_WIDTH {
            for factor in [scale, scale * 0.75] {
                let w = even((width as f64 * factor).round() as usize);
                let h = even((height as f64 * factor).round() as usize);
                if (w >= MIN_WIDTH || rungs.is_empty()) && !rungs.iter().any(|r| r.width == w) && w > 0 && h > 0 {
                    let up_bps = VGA_UP_BPS * ((w * h) as f64 / VGA_PIXELS).powf(0.75);
                    rungs.push(Rung {
                        width: w,
                        height: h,
                        up_bps,
                        down_bps: up_bps * DOWN_SHARE,
                        max_bps: up_bps * MAX_SHARE,
                    });
                }
            }
            scale /= 2.0;
        }
        Ladder {
            rungs,
            fps: fps.max(1),
            current: None,
            reason: SizeReason::Start,
            above_since: None,
            last_down: None,
            last_up: None,
            up_not_before: UP_NOT_BEFORE,
        }
    }

    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    /// The size and frame rate for `target_bps` at `now`.
    pub fn choose(&mut self, now: Instant, target_bps: f64) -> Choice {
        let smallest = self.rungs.len() - 1;
        let current = match self.current {
            None => {
                // The largest size the target is worth.
                let first = self.rungs.iter().position(|r| target_bps >= r.up_bps).unwrap_or(smallest);
                self.current = Some(first);
                first
            }
            Some(index) if index < smallest && target_bps < self.rungs[index].down_bps => {
                // Down to the largest size the target still holds.
                let lower = (index + 1..=smallest).find(|i| target_bps >= self.rungs[*i].down_bps).unwrap_or(smallest);
                self.current = Some(lower);
                self.reason = SizeReason::BandwidthLow;
                let failed_up = self.last_up.is_some_and(|t| now.saturating_duration_since(t) < FAILED_UP_WITHIN);
                self.up_not_before =
                    if failed_up { (self.up_not_before * 2).min(UP_NOT_BEFORE_MAX) } else { UP_NOT_BEFORE };
                self.last_down = Some(now);
                self.above_since = None;
                lower
            }
            Some(index) if index > 0 && target_bps >= self.rungs[index - 1].up_bps => {
                let since = *self.above_since.get_or_insert(now);
                let settled = self.last_down.is_none_or(|t| now.saturating_duration_since(t) >= self.up_not_before);
                if now.saturating_duration_since(since) >= UP_AFTER && settled {
                    // Up to the largest size the target is now worth: while the rate ramps at
                    // the call's start, one size at a time would reach 640x480 only after 5 s.
                    let upper = (0..index).find(|i| target_bps >= self.rungs[*i].up_bps).unwrap_or(index - 1);
                    self.current = Some(upper);
                    self.reason = SizeReason::BandwidthHigh;
                    self.above_since = None;
                    self.last_up = Some(now);
                    upper
                } else {
                    index
                }
            }
            Some(index) => {
                self.above_since = None;
                index
            }
        };
        let rung = self.rungs[current];
        let fps = if current == smallest && target_bps < rung.down_bps {
            ((f64::from(self.fps) * target_bps / rung.down_bps).round() as u32).clamp(MIN_FPS.min(self.fps), self.fps)
        } else {
            self.fps
        };
        Choice { width: rung.width, height: rung.height, fps, max_bps: rung.max_bps, reason: self.reason }
    }
}

/// Rounds down to an even number (chroma subsampling needs even sizes).
fn even(n: usize) -> usize {
    n & !1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(ladder: &Ladder) -> Vec<(usize, usize)> {
        ladder.rungs().iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn the_sizes_follow_the_source_aspect() {
        assert_eq!(sizes(&Ladder::new(640, 480, 30)), [(640, 480), (480, 360), (320, 240), (240, 180), (160, 120)]);
        assert_eq!(sizes(&Ladder::new(640, 360, 30)), [(640, 360), (480, 270), (320, 180), (240, 134), (160, 90)]);
        let hd = sizes(&Ladder::new(1280, 720, 30));
        assert_eq!(hd.first(), Some(&(1280, 720)));
        assert_eq!(hd.last(), Some(&(160, 90)));
        // Each size has a most it is sent at: 640x480 at 1 Mbit/s.
        let mut ladder = Ladder::new(640, 480, 30);
        assert_eq!(ladder.choose(Instant::now(), 5_000_000.0).max_bps, 1_000_000.0);
        assert!(ladder.rungs().iter().all(|r| r.max_bps > r.up_bps));
        // A source smaller than the smallest width still has one size: its own.
        assert_eq!(sizes(&Ladder::new(128, 96, 30)), [(128, 96)]);
        // Larger sizes need more bits, but fewer per pixel.
        let ladder = Ladder::new(640, 480, 30);
        for pair in ladder.rungs().windows(2) {
            assert!(pair[0].up_bps > pair[1].up_bps);
            let per_pixel = |r: &Rung| r.up_bps / ((r.width * r.height) as f64);
            assert!(per_pixel(&pair[0]) < per_pixel(&pair[1]));
        }
    }

    #[test]
    fn it_starts_at_the_largest_size_the_target_is_worth() {
        let now = Instant::now();
        assert_eq!(Ladder::new(640, 480, 30).choose(now, 2_000_000.0).width, 640);
        assert_eq!(Ladder::new(640, 480, 30).choose(now, 300_000.0).width, 320);
        let tiny = Ladder::new(640, 480, 30).choose(now, 10_000.0);
        assert_eq!((tiny.width, tiny.reason), (160, SizeReason::Start));
    }

    #[test]
    fn it_moves_down_at_once_and_up_only_after_the_rate_held() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut ladder = Ladder::new(640, 480, 30);
        assert_eq!(ladder.choose(at(0), 1_000_000.0).width, 640);
        let down = ladder.choose(at(100), 200_000.0);
        assert_eq!((down.width, down.reason, down.fps), (320, SizeReason::BandwidthLow, 30));
        // Back up: not before the target held above the next size's threshold, and not soon
        // after a move down.
        for ms in (200..4_000).step_by(100) {
            assert_eq!(ladder.choose(at(ms), 1_000_000.0).width, 320, "moved up at {ms} ms");
        }
        let mut widths = Vec::new();
        for ms in (4_000..20_000).step_by(100) {
            widths.push(ladder.choose(at(ms), 1_000_000.0).width);
        }
        assert_eq!(widths.last(), Some(&640));
        // Straight to the largest size the target is worth, once it held.
        let steps: Vec<_> = widths.windows(2).filter(|w| w[0] != w[1]).map(|w| (w[0], w[1])).collect();
        assert_eq!(steps, [(320, 640)]);
        assert_eq!(ladder.choose(at(20_000), 1_000_000.0).reason, SizeReason::BandwidthHigh);
    }

    #[test]
    fn a_target_between_thresholds_never_flaps() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(640, 480, 30);
        ladder.choose(t0, 1_000_000.0);
        let rung = ladder.rungs()[0];
        let mut changes = 0;
        let mut last = 640;
        // The target wanders around between the down and up thresholds of 640x480.
        for i in 0..600u64 {
            let wobble = if i % 2 == 0 { 0.95 } else { 1.05 };
            let target = (rung.down_bps + rung.up_bps) / 2.0 * wobble;
            let width = ladder.choose(t0 + Duration::from_millis(100 * i), target).width;
            changes += usize::from(width != last);
            last = width;
        }
        assert_eq!(changes, 0);
    }

    #[test]
    fn a_larger_size_that_does_not_fit_is_tried_less_and_less_often() {
        // The target climbs past 480x360's threshold every few seconds and falls back as soon as
        // the larger picture is sent (a link just below what it needs).
        let t0 = Instant::now();
        let mut ladder = Ladder::new(640, 480, 30);
        let (small, large) = (ladder.rungs()[2], ladder.rungs()[1]);
        let mut ups = Vec::new();
        let mut width = ladder.choose(t0, small.up_bps * 1.1).width;
        for ms in (0..120_000u64).step_by(100) {
            let target = if width == large.width { small.up_bps * 1.1 } else { large.up_bps * 1.1 };
            let now = t0 + Duration::from_millis(ms);
            let next = ladder.choose(now, target).width;
            if next == large.width && width != large.width {
                ups.push(ms);
            }
            width = next;
        }
        let gaps: Vec<u64> = ups.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(ups.len() <= 6, "tried {} times in two minutes: {ups:?}", ups.len());
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "the waits grow: {gaps:?}");
        // The wait stays long while the larger size keeps failing.
        assert!(ladder.up_not_before > UP_NOT_BEFORE);
    }

    #[test]
    fn the_frame_rate_drops_only_below_the_smallest_size() {
        let now = Instant::now();
        let mut ladder = Ladder::new(640, 480, 30);
        let smallest = *ladder.rungs().last().expect("a size");
        assert_eq!(ladder.choose(now, smallest.down_bps).fps, 30);
        let slow = ladder.choose(now, smallest.down_bps / 2.0);
        assert_eq!((slow.width, slow.fps), (160, 15));
        assert_eq!(ladder.choose(now, 0.0).fps, MIN_FPS);
    }
}

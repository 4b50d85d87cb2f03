//! Shortening a frame of decoded audio without losing what it says, so that the playout can
//! catch up after its delay grew (a queue swell it waited out) instead of dropping a packet.
//!
//! A voiced sound repeats itself every pitch period; two neighbouring periods sound alike, so one
//! can be cross-faded into the next and the frame comes out a period shorter, at the same pitch
//! and with no click. The period is the lag, between 2.5 and 10 ms, at which the frame best
//! matches itself (normalised cross-correlation); a frame that matches itself nowhere well
//! enough (noise, a consonant, a sound that is changing) is left alone, unless it is nearly
//! silent, where anything can go. Pure: samples in, samples out.

use crate::media::pitch;

/// Shortest lag tried: 2.5 ms at 48 kHz. Shorter periods (tones above 400 Hz) are matched at a
/// multiple of theirs.
pub const MIN_LAG: usize = 120;
/// Longest lag tried, and so the most a frame is shortened by at once: 10 ms at 48 kHz.
pub const MAX_LAG: usize = 480;
/// How alike two neighbouring stretches must be (normalised cross-correlation) for one to be
/// faded into the other.
const MATCH: f64 = 0.9;
/// Below this RMS (about -50 dBFS of full scale) a frame counts as silence and loses
/// [`MAX_LAG`] samples whatever it holds.
const QUIET_RMS: f32 = 100.0 / 32768.0;

/// Shortens `samples` by one matching lag (between [`MIN_LAG`] and [`MAX_LAG`], at most half of
/// `samples`), cross-fading the stretch before it into the stretch after it. Returns `None` when
/// no lag matches well enough and the frame is not quiet, or when `samples` is too short.
pub fn shorten(samples: &[i16]) -> Option<Vec<i16>> {
    let longest = MAX_LAG.min(samples.len() / 2);
    if longest < MIN_LAG {
        return None;
    }
    let lag = if pitch::rms(samples) < QUIET_RMS { longest } else { best_lag(samples, longest)? };
    let mut out = Vec::with_capacity(samples.len() - lag);
    // The first `lag` samples fade from the first stretch into the second, so the output starts
    // as the input did (continuous with the frame before) and ends the fade where the second
    // stretch goes on (continuous with the rest).
    for i in 0..lag {
        let weight = (i as f64 + 0.5) / lag as f64;
        let mixed = f64::from(samples[i]) * (1.0 - weight) + f64::from(samples[i + lag]) * weight;
        out.push(mixed.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
    }
    out.extend_from_slice(&samples[2 * lag..]);
    Some(out)
}

/// The lag in `MIN_LAG..=longest` at which the first stretch of that length best matches the
/// one that follows it, if it matches well enough. Among lags that match about equally well the
/// longest wins (it catches up faster).
fn best_lag(samples: &[i16], longest: usize) -> Option<usize> {
    let scores: Vec<(usize, f64)> =
        (MIN_LAG..=longest).map(|lag| (lag, correlation(&samples[..lag], &samples[lag..2 * lag]))).collect();
    let top = scores.iter().map(|&(_, score)| score).fold(f64::MIN, f64::max);
    if top < MATCH {
        return None;
    }
    scores.iter().rev().find(|&&(_, score)| score >= top - 0.005).map(|&(lag, _)| lag)
}

/// Normalised cross-correlation of two equally long stretches: 1 when one is a positive multiple
/// of the other, 0 when either is silent.
fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{SAMPLES_PER_FRAME, SAMPLE_RATE};
    use crate::media::tone::ToneSource;

    /// Frames of a tone at `hz`, one after another.
    fn tone(hz: f64, frames: usize) -> Vec<Vec<i16>> {
        let mut source = ToneSource::new(hz, 8192);
        (0..frames).map(|_| source.next_frame().samples.to_vec()).collect()
    }

    /// The largest step between neighbouring samples.
    fn largest_step(samples: &[i16]) -> i32 {
        samples.windows(2).map(|w| (i32::from(w[1]) - i32::from(w[0])).abs()).max().unwrap_or(0)
    }

    #[test]
    fn a_tone_loses_whole_periods_and_keeps_its_pitch_without_a_click() {
        for hz in [150.0, 440.0, 1000.0, 2000.0] {
            let frames = tone(hz, 20);
            let mut out: Vec<i16> = Vec::new();
            let mut removed = 0;
            for (i, frame) in frames.iter().enumerate() {
                // Every other frame is shortened, as a playout catching up would.
                if i % 2 == 1 {
                    let short = shorten(frame).expect("a tone matches itself");
                    removed += frame.len() - short.len();
                    out.extend(short);
                } else {
                    out.extend_from_slice(frame);
                }
            }
            let period = f64::from(SAMPLE_RATE) / hz;
            let per_frame = removed as f64 / 10.0;
            assert!(per_frame >= MIN_LAG as f64 && per_frame <= MAX_LAG as f64, "{hz} Hz: {per_frame}");
            // What goes is close to a whole number of periods.
            let periods = per_frame / period;
            assert!((periods - periods.round()).abs() < 0.1, "{hz} Hz: {periods} periods a frame");
            let found = pitch::dominant_frequency(&out, SAMPLE_RATE).expect("a tone");
            assert!((f64::from(found) - hz).abs() < 2.0, "{hz} Hz came out as {found}");
            let natural = largest_step(&frames.concat());
            assert!(largest_step(&out) <= natural + natural / 10 + 2, "{hz} Hz: a click");
        }
    }

    #[test]
    fn silence_goes_quickly_and_noise_stays() {
        let quiet = vec![3i16; SAMPLES_PER_FRAME];
        assert_eq!(shorten(&quiet).map(|s| s.len()), Some(SAMPLES_PER_FRAME - MAX_LAG));

        let mut next = crate::media::test_rng::xorshift(7);
        let noise: Vec<i16> = (0..SAMPLES_PER_FRAME).map(|_| next(20_000) as i16 - 10_000).collect();
        assert_eq!(shorten(&noise), None, "noise never matches itself");
    }

    #[test]
    fn frames_too_short_to_hold_two_stretches_are_left_alone() {
        assert_eq!(shorten(&[]), None);
        assert_eq!(shorten(&vec![1000i16; 2 * MIN_LAG - 1]), None);
        let short = shorten(&vec![0i16; 2 * MIN_LAG]).expect("quiet");
        assert_eq!(short.len(), MIN_LAG);
    }
}

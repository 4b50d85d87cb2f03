//! A streaming linear-interpolation resampler for mono audio between a device's rate and the
//! engine's 48 kHz. Linear interpolation is enough for speech at the rates devices use (44.1
//! and 48 kHz); it keeps no allocation once made and no state beyond one sample.

/// Converts a stream of samples at `from` Hz to `to` Hz, one input sample at a time.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Input samples per output sample.
    step: f64,
    /// Position of the next output sample, in input samples after `prev`.
    pos: f64,
    prev: f32,
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Resampler {
        Resampler { step: f64::from(from.max(1)) / f64::from(to.max(1)), pos: 0.0, prev: 0.0 }
    }

    /// Whether it passes samples through unchanged.
    pub fn is_identity(&self) -> bool {
        self.step == 1.0
    }

    /// Feeds one input sample; `out` receives the output samples it completes (zero or more).
    pub fn push(&mut self, sample: f32, mut out: impl FnMut(f32)) {
        if self.is_identity() {
            out(sample);
            return;
        }
        // Output samples fall between `prev` (at 0) and `sample` (at 1).
        while self.pos < 1.0 {
            let t = self.pos as f32;
            out(self.prev + (sample - self.prev) * t);
            self.pos += self.step;
        }
        self.pos -= 1.0;
        self.prev = sample;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(from: u32, to: u32, input: &[f32]) -> Vec<f32> {
        let mut resampler = Resampler::new(from, to);
        let mut out = Vec::new();
        for &s in input {
            resampler.push(s, |o| out.push(o));
        }
        out
    }

    #[test]
    fn rates_change_the_sample_count_in_proportion() {
        let input = vec![0.25f32; 44_100];
        let out = run(44_100, 48_000, &input);
        assert!((out.len() as i64 - 48_000).abs() <= 1, "{}", out.len());
        let back = run(48_000, 44_100, &out);
        assert!((back.len() as i64 - 44_100).abs() <= 1, "{}", back.len());
        assert_eq!(run(48_000, 48_000, &input[..10]), input[..10].to_vec());
    }

    #[test]
    fn a_tone_keeps_its_frequency() {
        let tone: Vec<f32> =
            (0..44_100).map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 44_100.0).sin()).collect();
        let out = run(44_100, 48_000, &tone);
        // Count rising zero crossings over one second at 48 kHz.
        let crossings = out.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((439..=441).contains(&crossings), "{crossings}");
    }
}

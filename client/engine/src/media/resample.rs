//! Sample rate conversion of mono audio, for every place audio changes rate: a microphone or
//! speaker running at its own rate (streamed), and a WAV file of any rate (a whole clip). One
//! band-limited resampler (rubato's windowed sinc) fed in fixed chunks: its cutoff sits below the
//! lower of the two Nyquist frequencies, so going down does not alias and going up leaves no
//! images. Because the chunks are fixed, how the input is split into calls changes nothing in
//! the output. No devices, files or clock here.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler as _, SincInterpolationParameters, SincInterpolationType, WindowFunction};

/// Input samples per processed chunk: a device's audio waits at most this long (1.3 ms at
/// 48 kHz) before it comes out.
const CHUNK: usize = 64;
/// Taps of the sinc filter. 128 with a Blackman-Harris window keeps the passband to about 90 %
/// of the lower Nyquist frequency and what aliases 90 dB down, at a cost a device can afford.
const SINC_LEN: usize = 128;
/// Filter phases kept in a table (linearly interpolated between).
const OVERSAMPLING: usize = 256;

/// Converts a stream of samples at one rate to another, keeping the filter's state between
/// calls. Allocates only when made.
pub struct Resampler {
    /// `None` when the rates are equal: samples pass through unchanged.
    inner: Option<Box<Async<f32>>>,
    /// Input gathered towards the next full chunk.
    pending: Vec<f32>,
    /// One chunk's output.
    out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler").field("identity", &self.is_identity()).field("delay", &self.delay()).finish()
    }
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz (a rate of 0 counts as 1).
    pub fn new(from: u32, to: u32) -> Resampler {
        let (from, to) = (from.max(1), to.max(1));
        if from == to {
            return Resampler { inner: None, pending: Vec::new(), out: Vec::new() };
        }
        let parameters = SincInterpolationParameters::new(SINC_LEN, WindowFunction::BlackmanHarris2)
            .oversampling_factor(OVERSAMPLING)
            .interpolation(SincInterpolationType::Linear);
        let ratio = f64::from(to) / f64::from(from);
        let inner = Async::<f32>::new_sinc(ratio, 1.0, &parameters, CHUNK, 1, FixedAsync::Input)
            .expect("a positive ratio, one channel and a non-empty chunk are always accepted");
        let out = vec![0.0; inner.output_frames_max()];
        Resampler { inner: Some(Box::new(inner)), pending: Vec::with_capacity(CHUNK), out }
    }

    /// Whether samples pass through unchanged.
    pub fn is_identity(&self) -> bool {
        self.inner.is_none()
    }

    /// How many output samples come before the first input sample's own: the filter's delay.
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |inner| inner.output_delay())
    }

    /// Feeds `input`; `out` receives every output sample this completes, in order.
    pub fn process(&mut self, mut input: &[f32], mut out: impl FnMut(f32)) {
        let Some(inner) = self.inner.as_mut() else {
            input.iter().for_each(|&s| out(s));
            return;
        };
        while !input.is_empty() {
            let take = (CHUNK - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < CHUNK {
                break;
            }
            let source =
                InterleavedSlice::new(&self.pending[..], 1, CHUNK).expect("the pending buffer holds exactly one chunk");
            let frames = self.out.len();
            let mut target =
                InterleavedSlice::new_mut(&mut self.out[..], 1, frames).expect("sized to the most one chunk makes");
            let (_, written) = inner
                .process_into_buffer(&source, &mut target, None)
                .expect("buffers are sized from the resampler's own figures");
            self.out[..written].iter().for_each(|&s| out(s));
            self.pending.clear();
        }
    }
}

/// Converts a whole clip from `from` Hz to `to` Hz: `ceil(len * to / from)` samples lined up
/// with the input (the filter's delay removed), samples beyond the ends counting as silence.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    let mut resampler = Resampler::new(from, to);
    if resampler.is_identity() || input.is_empty() {
        return input.to_vec();
    }
    let (from, to) = (u64::from(from.max(1)), u64::from(to.max(1)));
    let wanted = (input.len() as u64 * to).div_ceil(from) as usize;
    let skip = resampler.delay();
    let mut output = Vec::with_capacity(wanted + skip + CHUNK * to.div_ceil(from) as usize);
    resampler.process(input, |s| output.push(s));
    let silence = [0.0; CHUNK];
    while output.len() < skip + wanted {
        resampler.process(&silence, |s| output.push(s));
    }
    output.drain(..skip);
    output.truncate(wanted);
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pitch;

    fn tone(freq: f64, rate: u32, seconds: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n).map(|i| (0.5 * (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin()) as f32).collect()
    }

    fn to_i16(samples: &[f32]) -> Vec<i16> {
        samples.iter().map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16).collect()
    }

    fn streamed(resampler: &mut Resampler, input: &[f32], sizes: &[usize]) -> Vec<f32> {
        let mut out = Vec::new();
        let mut rest = input;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let take = size.min(rest.len());
            resampler.process(&rest[..take], |s| out.push(s));
            rest = &rest[take..];
        }
        out
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_level_at_every_device_and_file_rate() {
        for (from, to) in [
            (44_100, 48_000),
            (48_000, 44_100),
            (8_000, 48_000),
            (16_000, 48_000),
            (22_050, 48_000),
            (96_000, 48_000),
            (192_000, 48_000),
            (48_000, 16_000),
            (32_000, 48_000),
        ] {
            let out = resample(&tone(440.0, from, 0.5), from, to);
            let expected = (0.5 * f64::from(to)) as usize;
            assert!(out.len().abs_diff(expected) <= 1, "{from}->{to}: {} samples", out.len());
            let steady = to_i16(&out[out.len() / 5..out.len() * 4 / 5]);
            let f = pitch::dominant_frequency(&steady, to).expect("a tone");
            assert!((f - 440.0).abs() < 0.5, "{from}->{to}: {f} Hz");
            let level = pitch::rms(&steady);
            assert!((level - 0.5 / 2f32.sqrt()).abs() < 0.01, "{from}->{to}: rms {level}");
        }
    }

    #[test]
    fn a_whole_clip_lines_up_with_its_input() {
        // A click at 10 ms stays at 10 ms.
        let mut input = vec![0.0f32; 4410];
        input[441] = 1.0;
        let out = resample(&input, 44_100, 48_000);
        let peak = out.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).expect("samples");
        assert!(peak.abs_diff(480) <= 1, "click at {peak}");
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed_not_folded() {
        // 30 kHz and 26 kHz cannot exist at 48 kHz: they must vanish rather than alias to
        // 18 kHz and 22 kHz.
        for freq in [30_000.0, 26_000.0] {
            let out = resample(&tone(freq, 96_000, 0.1), 96_000, 48_000);
            let middle = to_i16(&out[1000..3800]);
            assert!(pitch::rms(&middle) < 0.003, "{freq} Hz: aliased energy {}", pitch::rms(&middle));
        }
        // The same going from a 44.1 kHz device to 16 kHz: 12 kHz would fold to 4 kHz.
        let out = resample(&tone(12_000.0, 44_100, 0.1), 44_100, 16_000);
        let middle = to_i16(&out[300..1300]);
        assert!(pitch::rms(&middle) < 0.003, "aliased energy {}", pitch::rms(&middle));
    }

    #[test]
    fn going_up_leaves_no_images() {
        // A 3 kHz tone at 8 kHz has an image at 5 kHz that linear interpolation would leave.
        let out = resample(&tone(3_000.0, 8_000, 0.5), 8_000, 48_000);
        let steady = to_i16(&out[4800..19200]);
        let f = pitch::dominant_frequency(&steady, 48_000).expect("a tone");
        assert!((f - 3_000.0).abs() < 0.5, "{f} Hz");
        // What is left after removing the 3 kHz tone is tiny.
        let fitted = fit_sine(&steady, 3_000.0, 48_000);
        let residue: Vec<i16> = steady.iter().zip(&fitted).map(|(&a, &b)| a.saturating_sub(b)).collect();
        assert!(pitch::rms(&residue) < 0.003, "residue {}", pitch::rms(&residue));
    }

    /// The least-squares sine of `freq` through `samples`.
    fn fit_sine(samples: &[i16], freq: f64, rate: u32) -> Vec<i16> {
        let w = std::f64::consts::TAU * freq / f64::from(rate);
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &x) in samples.iter().enumerate() {
            s += f64::from(x) * (w * i as f64).sin();
            c += f64::from(x) * (w * i as f64).cos();
        }
        let n = samples.len() as f64 / 2.0;
        let (a, b) = (s / n, c / n);
        (0..samples.len()).map(|i| (a * (w * i as f64).sin() + b * (w * i as f64).cos()).round() as i16).collect()
    }

    #[test]
    fn streaming_in_chunks_of_any_size_gives_the_same_as_one_block() {
        let input = tone(997.0, 44_100, 0.3);
        let whole = streamed(&mut Resampler::new(44_100, 48_000), &input, &[input.len()]);
        for sizes in [&[1][..], &[7, 13, 1], &[441], &[63, 65, 64, 2, 500]] {
            let pieces = streamed(&mut Resampler::new(44_100, 48_000), &input, sizes);
            assert_eq!(pieces, whole, "sizes {sizes:?}");
        }
        // And the streamed output, less the filter's delay, is the whole-clip conversion.
        let mut resampler = Resampler::new(44_100, 48_000);
        let delay = resampler.delay();
        let mut padded = input.clone();
        padded.extend(std::iter::repeat_n(0.0, 4096));
        let stream = streamed(&mut resampler, &padded, &[333]);
        let clip = resample(&input, 44_100, 48_000);
        assert_eq!(&stream[delay..delay + clip.len()], &clip[..]);
    }

    #[test]
    fn equal_rates_pass_samples_through_and_odd_rates_are_safe() {
        let input = tone(440.0, 48_000, 0.01);
        let mut same = Resampler::new(48_000, 48_000);
        assert!(same.is_identity());
        assert_eq!(streamed(&mut same, &input, &[7]), input);
        assert_eq!(resample(&input, 48_000, 48_000), input);
        assert!(resample(&[], 44_100, 48_000).is_empty());
        // A rate of zero counts as one rather than dividing by zero.
        assert_eq!(resample(&[0.5; 3], 0, 2).len(), 6);
    }

    #[test]
    fn a_rate_ratio_keeps_the_sample_count_over_a_long_stream() {
        // An hour's worth of 20 ms frames would drift if each chunk rounded: ten seconds show it.
        let mut resampler = Resampler::new(44_100, 48_000);
        let mut count = 0usize;
        for _ in 0..500 {
            resampler.process(&[0.1; 882], |_| count += 1);
        }
        let expected = 48_000 * 10;
        assert!(count.abs_diff(expected) <= CHUNK * 2, "{count} against {expected}");
    }
}

//! A synthetic audio source: a continuous sine tone cut into 20 ms frames of 48 kHz mono.

use super::frame::{AudioFrame, SAMPLE_RATE};

/// Frequency of the default tone (concert A).
pub const DEFAULT_FREQUENCY_HZ: f64 = 440.0;
/// Peak of the default tone: a quarter of full scale, about -12 dBFS.
pub const DEFAULT_AMPLITUDE: i16 = 8192;
/// How often a [`ToneSource::syllables`] tone swells and fades: about the rate of syllables
/// in speech.
pub const SYLLABLE_HZ: f64 = 4.0;
/// The level a syllable tone fades to between swells, as a share of its peak.
const SYLLABLE_FLOOR: f64 = 0.3;

/// Produces a sine tone frame after frame, with no discontinuity between frames.
#[derive(Debug, Clone)]
pub struct ToneSource {
    frequency_hz: f64,
    amplitude: f64,
    /// Phase in cycles, kept in `0..1` so precision does not decay over a long call.
    phase: f64,
    /// Phase of the syllable envelope in cycles, when the level rises and falls.
    syllable: Option<f64>,
}

impl Default for ToneSource {
    fn default() -> Self {
        Self::new(DEFAULT_FREQUENCY_HZ, DEFAULT_AMPLITUDE)
    }
}

impl ToneSource {
    /// A tone of `frequency_hz` (clamped to 0..24 kHz) with peak `amplitude`.
    pub fn new(frequency_hz: f64, amplitude: i16) -> Self {
        let nyquist = f64::from(SAMPLE_RATE) / 2.0;
        let frequency_hz = if frequency_hz.is_finite() { frequency_hz.clamp(0.0, nyquist) } else { 0.0 };
        Self {
            frequency_hz,
            amplitude: f64::from(amplitude.unsigned_abs().min(i16::MAX as u16)),
            phase: 0.0,
            syllable: None,
        }
    }

    /// The same tone with its level rising and falling [`SYLLABLE_HZ`] times a second, from 30 %
    /// of its peak to all of it, as speech does. An encoder's voice activity detection takes a
    /// steady tone for background noise after a second or so and sends almost nothing for it
    /// (Opus with DTX: one-byte packets); this one it keeps sending at the speech bitrate. The
    /// pitch stays the tone's.
    pub fn syllables(mut self) -> Self {
        self.syllable = Some(0.0);
        self
    }

    pub fn frequency_hz(&self) -> f64 {
        self.frequency_hz
    }

    /// The next 20 ms of tone.
    pub fn next_frame(&mut self) -> AudioFrame {
        let mut frame = AudioFrame::silence();
        let increment = self.frequency_hz / f64::from(SAMPLE_RATE);
        let syllable_increment = SYLLABLE_HZ / f64::from(SAMPLE_RATE);
        for sample in frame.samples.iter_mut() {
            let level = match &mut self.syllable {
                Some(phase) => {
                    let rise = 0.5 - 0.5 * (std::f64::consts::TAU * *phase).cos();
                    *phase = (*phase + syllable_increment).fract();
                    SYLLABLE_FLOOR + (1.0 - SYLLABLE_FLOOR) * rise
                }
                None => 1.0,
            };
            *sample = (self.amplitude * level * (std::f64::consts::TAU * self.phase).sin()).round() as i16;
            self.phase = (self.phase + increment).fract();
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pitch;

    #[test]
    fn default_tone_is_440_hz_at_a_quarter_of_full_scale() {
        let mut tone = ToneSource::default();
        let samples: Vec<i16> = (0..5).flat_map(|_| tone.next_frame().samples).collect();
        let f = pitch::dominant_frequency(&samples, SAMPLE_RATE).expect("a tone has a pitch");
        assert!((f - 440.0).abs() < 0.5, "{f} Hz");
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((8180..=8192).contains(&peak), "peak {peak}");
        let rms = pitch::rms(&samples);
        assert!((rms - 0.25 / 2f32.sqrt()).abs() < 0.002, "rms {rms}");
    }

    #[test]
    fn frames_join_without_a_click() {
        let mut tone = ToneSource::new(1000.0, 10_000);
        let a = tone.next_frame();
        let b = tone.next_frame();
        // The largest step of a 1 kHz sine at 48 kHz is amplitude * 2 * pi * 1000 / 48000.
        let max_step = (10_000.0 * std::f64::consts::TAU * 1000.0 / 48_000.0) as i32 + 2;
        let joined: Vec<i16> = a.samples.iter().chain(b.samples.iter()).copied().collect();
        assert!(joined.windows(2).all(|w| (i32::from(w[1]) - i32::from(w[0])).abs() <= max_step));
    }

    #[test]
    fn silly_settings_are_clamped() {
        assert_eq!(ToneSource::new(f64::NAN, 1).frequency_hz(), 0.0);
        assert_eq!(ToneSource::new(1e9, 1).frequency_hz(), 24_000.0);
        let mut loud = ToneSource::new(100.0, i16::MIN);
        assert!(loud.next_frame().samples.iter().all(|&s| s > i16::MIN));
    }

    #[test]
    fn a_syllable_tone_keeps_its_pitch_and_swells_four_times_a_second() {
        let mut tone = ToneSource::new(440.0, 8192).syllables();
        let samples: Vec<i16> = (0..50).flat_map(|_| tone.next_frame().samples).collect();
        let f = pitch::dominant_frequency(&samples, SAMPLE_RATE).expect("a tone has a pitch");
        assert!((f - 440.0).abs() < 0.5, "{f} Hz");
        // Peak level of each 25 ms: loudest at the middle of each 250 ms syllable, 30 % between.
        let peaks: Vec<u16> =
            samples.chunks_exact(1200).map(|c| c.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)).collect();
        for syllable in peaks.chunks_exact(10) {
            assert!(syllable[0] < 3000 && syllable[5] > 8000, "{peaks:?}");
        }
    }
}

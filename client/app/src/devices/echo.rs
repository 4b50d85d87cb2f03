//! Echo cancellation, noise suppression and gain control on the microphone path, with what
//! the speaker plays as the echo reference: sonora, a pure-Rust port of the WebRTC audio
//! processing module (AEC3, NS, AGC2, high-pass filter). Works on 10 ms frames at 48 kHz mono;
//! runs on the engine's audio threads, never in a device callback.

use sonora::config::{EchoCanceller, GainController2, HighPassFilter, NoiseSuppression};
use sonora::{AudioProcessing, Config, StreamConfig};

/// Samples in one 10 ms processing frame at 48 kHz.
pub const CHUNK: usize = 480;

/// What the processor does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoSettings {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub gain_control: bool,
}

impl Default for EchoSettings {
    fn default() -> Self {
        EchoSettings { echo_cancellation: true, noise_suppression: true, gain_control: true }
    }
}

/// The audio processor shared by the microphone (capture) and speaker (render) paths.
pub struct Echo {
    apm: AudioProcessing,
    out: [f32; CHUNK],
}

impl Echo {
    /// `delay_ms` is a first guess of the time from a sample being handed to the speaker to its
    /// echo reaching us from the microphone; AEC3 estimates the true delay itself.
    pub fn new(settings: EchoSettings, delay_ms: i32) -> Echo {
        let config = Config {
            echo_canceller: settings.echo_cancellation.then(EchoCanceller::default),
            noise_suppression: settings.noise_suppression.then(NoiseSuppression::default),
            gain_controller2: settings.gain_control.then(GainController2::default),
            high_pass_filter: Some(HighPassFilter::default()),
            ..Default::default()
        };
        let mut apm = AudioProcessing::builder()
            .config(config)
            .capture_config(StreamConfig::new(48_000, 1))
            .render_config(StreamConfig::new(48_000, 1))
            .build();
        let _ = apm.set_stream_delay_ms(delay_ms);
        Echo { apm, out: [0.0; CHUNK] }
    }

    /// Tells the processor what is about to be played (10 ms, samples in -1..1).
    pub fn render(&mut self, chunk: &[f32; CHUNK]) {
        if let Err(e) = self.apm.process_render_f32(&[&chunk[..]], &mut [&mut self.out[..]]) {
            tracing::trace!(error = ?e, "echo reference not taken");
        }
    }

    /// Cleans 10 ms of microphone signal in place.
    pub fn capture(&mut self, chunk: &mut [f32; CHUNK]) {
        match self.apm.process_capture_f32(&[&chunk[..]], &mut [&mut self.out[..]]) {
            Ok(()) => chunk.copy_from_slice(&self.out),
            Err(e) => tracing::trace!(error = ?e, "capture frame not processed"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RMS of a signal.
    pub(crate) fn rms(samples: &[f32]) -> f32 {
        (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
    }

    /// A far-end tone played to the speaker comes back into the microphone delayed and
    /// quieter, over a little room noise. Returns how much weaker it is in what is sent, dB.
    fn echo_attenuation(settings: EchoSettings) -> f32 {
        let mut echo = Echo::new(settings, 40);
        let delay = 48 * 35; // The acoustic path: 35 ms.
        let seconds = 8;
        let total = 48_000 * seconds;
        let far: Vec<f32> = (0..total + delay)
            .map(|i| 0.3 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin())
            .collect();
        let mut noise = 0x2545_f491u32;
        let mut mic_in = Vec::with_capacity(total);
        let mut sent = Vec::with_capacity(total);
        for start in (0..total).step_by(CHUNK) {
            let mut chunk = [0.0f32; CHUNK];
            chunk.copy_from_slice(&far[start + delay..start + delay + CHUNK]);
            echo.render(&chunk);
            let mut mic = [0.0f32; CHUNK];
            for (i, m) in mic.iter_mut().enumerate() {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let hiss = (noise as f32 / u32::MAX as f32 - 0.5) * 0.002;
                // What the speaker played `delay` samples ago, at half level.
                *m = 0.5 * far[start + i] + hiss;
            }
            mic_in.extend_from_slice(&mic);
            echo.capture(&mut mic);
            sent.extend_from_slice(&mic);
        }
        // After two seconds to converge.
        let tail = 48_000 * 2..total;
        20.0 * (rms(&mic_in[tail.clone()]) / rms(&sent[tail]).max(1e-9)).log10()
    }

    #[test]
    fn a_tone_played_to_the_speaker_is_strongly_attenuated_in_what_is_sent() {
        let full = echo_attenuation(EchoSettings::default());
        let aec_only =
            echo_attenuation(EchoSettings { echo_cancellation: true, noise_suppression: false, gain_control: false });
        println!("echo attenuation: {full:.1} dB with all processing, {aec_only:.1} dB by echo cancellation alone");
        assert!(full > 25.0, "echo attenuated by only {full:.1} dB");
        assert!(aec_only > 20.0, "echo cancellation alone attenuates by only {aec_only:.1} dB");
    }
}

//! `strangers --audio-check SECS`: plays a 440 Hz tone through the speaker path for a few
//! seconds while recording what the microphone path would send, then prints one JSON line with
//! the level of what would be sent. With the speaker's sound reaching the microphone (a laptop,
//! or a sound server's monitor source), it shows how much of the echo the processing removes;
//! `--no-echo-cancellation` gives the level without it.

use std::time::{Duration, Instant};

use strangers_engine::media::frame::SAMPLES_PER_FRAME;
use strangers_engine::media::AudioFrame;
use strangers_engine::sources::{AudioSink, AudioSource};

use super::{DeviceChoice, Devices, Report};

/// What the check found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    pub microphone: bool,
    pub speaker: bool,
    /// RMS (0 to 1) of what would be sent over the last half of the check.
    pub sent_rms: f32,
    /// The same in dB below full scale.
    pub sent_dbfs: f32,
}

/// Runs the check on the chosen devices for `seconds`.
pub fn run(choice: DeviceChoice, seconds: f64, report: Report) -> CheckResult {
    let mut devices = Devices::new(choice);
    devices.open(report);
    let path = devices.audio.clone();
    let ready_by = Instant::now() + Duration::from_secs(5);
    while !(path.has_mic() && path.has_speaker()) && Instant::now() < ready_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (sink, mut source) = (path.sink(), path.source());
    let frames = (seconds * 50.0).max(10.0) as usize;
    let mut sent = Vec::with_capacity(frames * SAMPLES_PER_FRAME);
    let mut phase = 0usize;
    let mut next = Instant::now();
    for _ in 0..frames {
        let mut frame = AudioFrame::silence();
        for s in frame.samples.iter_mut() {
            *s = (9000.0 * (phase as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin()) as i16;
            phase += 1;
        }
        sink.play(&frame);
        let out = source.next_frame().unwrap_or_default();
        sent.extend(out.samples.iter().map(|&s| f32::from(s) / 32768.0));
        next += Duration::from_millis(20);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let tail = &sent[sent.len() / 2..];
    let sent_rms = (tail.iter().map(|s| s * s).sum::<f32>() / tail.len().max(1) as f32).sqrt();
    CheckResult {
        microphone: path.has_mic(),
        speaker: path.has_speaker(),
        sent_rms,
        sent_dbfs: 20.0 * sent_rms.max(1e-6).log10(),
    }
}

//! Microphone and speaker through cpal. Each device runs its stream on a thread of its own
//! (some platforms' streams must stay on the thread that made them). The device callbacks only
//! move samples through bounded wait-free ring buffers (`rtrb`): no allocation, no lock, no
//! logging there. The engine's audio threads do the rest: resampling to and from 48 kHz, echo
//! cancellation ([`Echo`]) and keeping the buffers' latency bounded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};
use strangers_engine::media::frame::SAMPLES_PER_FRAME;
use strangers_engine::media::resample::Resampler;
use strangers_engine::media::AudioFrame;
use strangers_engine::sources::{AudioSink, AudioSource, SourceError};

use super::echo::{Echo, EchoSettings, CHUNK};
use super::{plain, Report};

/// Most microphone audio waiting to be sent (48 kHz samples): more means the device runs fast
/// or we fell behind, and the oldest is dropped.
const MIC_MAX_BACKLOG: usize = 48 * 120;
/// Microphone audio gathered before sending starts (and again after running dry).
const MIC_PRIME: usize = SAMPLES_PER_FRAME * 2;
/// Most audio queued for the speaker, in milliseconds: beyond it a frame is dropped.
const SPEAKER_MAX_MS: usize = 120;
/// First guess of the echo path's delay: the speaker queue plus device buffers.
const ECHO_DELAY_MS: i32 = 60;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain sample buffers behind: still usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The receiving end of the microphone.
struct MicEnd {
    /// Which device thread attached it.
    owner: u64,
    ring: rtrb::Consumer<f32>,
    resampler: Resampler,
    pending: VecDeque<f32>,
    primed: bool,
}

/// The sending end of the speaker.
struct SpeakerEnd {
    owner: u64,
    ring: rtrb::Producer<f32>,
    resampler: Resampler,
    /// Most samples (at the device's rate) allowed in the ring.
    max_queued: usize,
}

/// What the device threads, the per-call microphone source and the speaker sink share.
pub struct AudioPath {
    mic: Mutex<Option<MicEnd>>,
    speaker: Mutex<Option<SpeakerEnd>>,
    echo: Mutex<Option<Echo>>,
}

impl AudioPath {
    pub fn new(echo: Option<EchoSettings>) -> Arc<AudioPath> {
        Arc::new(AudioPath {
            mic: Mutex::new(None),
            speaker: Mutex::new(None),
            echo: Mutex::new(echo.map(|settings| Echo::new(settings, ECHO_DELAY_MS))),
        })
    }

    /// Turns the echo processor on with these settings, or off.
    pub fn set_echo(&self, echo: Option<EchoSettings>) {
        *lock(&self.echo) = echo.map(|settings| Echo::new(settings, ECHO_DELAY_MS));
    }

    /// A microphone source for one call.
    pub fn source(self: &Arc<Self>) -> MicSource {
        MicSource { path: self.clone() }
    }

    /// The speaker sink shared by every call.
    pub fn sink(self: &Arc<Self>) -> SpeakerSink {
        SpeakerSink { path: self.clone() }
    }

    /// Connects a microphone producing `rate` Hz into the path; returns the ring's input.
    fn attach_mic(&self, owner: u64, rate: u32) -> rtrb::Producer<f32> {
        let (producer, consumer) = rtrb::RingBuffer::new(rate as usize / 2);
        *lock(&self.mic) = Some(MicEnd {
            owner,
            ring: consumer,
            resampler: Resampler::new(rate, 48_000),
            pending: VecDeque::with_capacity(MIC_MAX_BACKLOG + SAMPLES_PER_FRAME * 4),
            primed: false,
        });
        producer
    }

    /// Connects a speaker consuming `rate` Hz; returns the ring's output.
    fn attach_speaker(&self, owner: u64, rate: u32) -> rtrb::Consumer<f32> {
        let (producer, consumer) = rtrb::RingBuffer::new(rate as usize * SPEAKER_MAX_MS * 2 / 1000);
        *lock(&self.speaker) = Some(SpeakerEnd {
            owner,
            ring: producer,
            resampler: Resampler::new(48_000, rate),
            max_queued: rate as usize * SPEAKER_MAX_MS / 1000,
        });
        consumer
    }

    pub fn has_mic(&self) -> bool {
        lock(&self.mic).is_some()
    }

    pub fn has_speaker(&self) -> bool {
        lock(&self.speaker).is_some()
    }

    /// Disconnects the device a thread attached, unless a newer one took its place.
    fn detach(&self, direction: Direction, owner: u64) {
        match direction {
            Direction::Input => {
                let mut mic = lock(&self.mic);
                if mic.as_ref().is_some_and(|m| m.owner == owner) {
                    *mic = None;
                }
            }
            Direction::Output => {
                let mut speaker = lock(&self.speaker);
                if speaker.as_ref().is_some_and(|s| s.owner == owner) {
                    *speaker = None;
                }
            }
        }
    }

    /// The microphone's next 20 ms at 48 kHz, cleaned of echo; silence without a microphone.
    fn next_mic_frame(&self) -> AudioFrame {
        let mut frame = AudioFrame::silence();
        let mut guard = lock(&self.mic);
        let Some(mic) = guard.as_mut() else { return frame };
        let MicEnd { ring, resampler, pending, primed, .. } = mic;
        if let Ok(chunk) = ring.read_chunk(ring.slots()) {
            let (first, second) = chunk.as_slices();
            resampler.process(first, |s| pending.push_back(s));
            resampler.process(second, |s| pending.push_back(s));
            chunk.commit_all();
        }
        if pending.len() > MIC_MAX_BACKLOG {
            let excess = pending.len() - MIC_PRIME;
            pending.drain(..excess);
        }
        if !*primed && pending.len() < MIC_PRIME {
            return frame;
        }
        if pending.len() < SAMPLES_PER_FRAME {
            // Ran dry: gather again before sending on.
            *primed = false;
            return frame;
        }
        *primed = true;
        let mut chunk = [0.0f32; CHUNK];
        let mut echo = lock(&self.echo);
        for half in frame.samples.chunks_exact_mut(CHUNK) {
            for c in chunk.iter_mut() {
                *c = pending.pop_front().unwrap_or(0.0);
            }
            if let Some(echo) = echo.as_mut() {
                echo.capture(&mut chunk);
            }
            for (out, c) in half.iter_mut().zip(chunk.iter()) {
                *out = (c.clamp(-1.0, 1.0) * 32767.0) as i16;
            }
        }
        frame
    }

    /// Queues 20 ms of the stranger's audio for the speaker, telling the echo canceller.
    fn play(&self, frame: &AudioFrame) {
        let mut guard = lock(&self.speaker);
        let Some(speaker) = guard.as_mut() else { return };
        let queued = speaker.ring.buffer().capacity() - speaker.ring.slots();
        if queued > speaker.max_queued {
            // The speaker runs slower than the sender: drop a frame rather than lag.
            return;
        }
        let mut chunk = [0.0f32; CHUNK];
        let mut echo = lock(&self.echo);
        for half in frame.samples.chunks_exact(CHUNK) {
            for (c, s) in chunk.iter_mut().zip(half.iter()) {
                *c = f32::from(*s) / 32768.0;
            }
            if let Some(echo) = echo.as_mut() {
                echo.render(&chunk);
            }
            let SpeakerEnd { ring, resampler, .. } = speaker;
            resampler.process(&chunk, |o| {
                let _ = ring.push(o);
            });
        }
    }
}

/// The microphone as a call's audio source.
pub struct MicSource {
    path: Arc<AudioPath>,
}

impl AudioSource for MicSource {
    fn next_frame(&mut self) -> Result<AudioFrame, SourceError> {
        Ok(self.path.next_mic_frame())
    }
}

/// The speaker as the engine's audio sink.
pub struct SpeakerSink {
    path: Arc<AudioPath>,
}

impl AudioSink for SpeakerSink {
    fn play(&self, frame: &AudioFrame) {
        self.path.play(frame);
    }
}

/// Which way a device goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    fn topic(self) -> &'static str {
        match self {
            Direction::Input => "microphone",
            Direction::Output => "speaker",
        }
    }
}

/// Names of the microphones or speakers the default audio host offers.
pub fn list(direction: Direction) -> Vec<String> {
    let host = cpal::default_host();
    let devices = match direction {
        Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    };
    devices.unwrap_or_default().iter().filter_map(|d| d.description().ok().map(|d| d.name().to_owned())).collect()
}

/// A running device thread. Dropping it stops the stream and detaches the device.
pub struct AudioDevice {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::Thread>,
}

impl Drop for AudioDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

impl AudioDevice {
    /// Opens the named device (or the default one) on a thread of its own and connects it to
    /// `path`. A problem is told through `report`, and the path then has no such device
    /// (silence is sent, nothing is played).
    pub fn start(direction: Direction, choice: Option<String>, path: Arc<AudioPath>, report: Report) -> AudioDevice {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        static NEXT_OWNER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let owner = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new().name(direction.topic().into()).spawn(move || {
            let result = run(direction, choice, owner, &path, &thread_stop, &report);
            path.detach(direction, owner);
            if let Err(problem) = result {
                report(direction.topic(), Some(problem));
            }
        });
        let thread = match spawned {
            Ok(handle) => Some(handle.thread().clone()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start an audio device thread");
                None
            }
        };
        AudioDevice { stop, thread }
    }
}

fn run(
    direction: Direction,
    choice: Option<String>,
    owner: u64,
    path: &AudioPath,
    stop: &AtomicBool,
    report: &Report,
) -> Result<(), String> {
    let topic = direction.topic();
    let host = cpal::default_host();
    let device = match direction {
        Direction::Input => pick(host.input_devices().ok(), choice.as_deref()).or_else(|| host.default_input_device()),
        Direction::Output => {
            pick(host.output_devices().ok(), choice.as_deref()).or_else(|| host.default_output_device())
        }
    };
    let fallback = match direction {
        Direction::Input => "The stranger hears silence.",
        Direction::Output => "You will not hear the stranger.",
    };
    let Some(device) = device else {
        return Err(format!("No {topic} found. {fallback}"));
    };
    let name = device.description().map(|d| d.name().to_owned()).unwrap_or_else(|_| topic.to_owned());
    let supported = match direction {
        Direction::Input => device.default_input_config(),
        Direction::Output => device.default_output_config(),
    }
    .map_err(|e| format!("Cannot use the {topic} \"{name}\" ({}). {fallback}", plain(&e)))?;
    let mut config = supported.config();
    // Ask for 10 ms buffers: large ones (some sound servers default to hundreds of
    // milliseconds) would add their length to the delay and deliver audio in bursts.
    if let cpal::SupportedBufferSize::Range { min, max } = supported.buffer_size() {
        config.buffer_size = cpal::BufferSize::Fixed((config.sample_rate / 100).clamp(*min, *max));
    }
    let channels = usize::from(config.channels).max(1);
    let failed = Arc::new(AtomicBool::new(false));
    let on_error = {
        let failed = failed.clone();
        move |_| failed.store(true, Ordering::Relaxed)
    };
    let stream = match direction {
        Direction::Input => {
            let ring = path.attach_mic(owner, config.sample_rate);
            match supported.sample_format() {
                SampleFormat::F32 => device.build_input_stream(config, capture::<f32>(ring, channels), on_error, None),
                SampleFormat::I16 => device.build_input_stream(config, capture::<i16>(ring, channels), on_error, None),
                SampleFormat::I32 => device.build_input_stream(config, capture::<i32>(ring, channels), on_error, None),
                SampleFormat::U16 => device.build_input_stream(config, capture::<u16>(ring, channels), on_error, None),
                other => {
                    return Err(format!(
                        "The {topic} \"{name}\" uses {other:?} samples, which are not supported. {fallback}"
                    ))
                }
            }
        }
        Direction::Output => {
            let ring = path.attach_speaker(owner, config.sample_rate);
            match supported.sample_format() {
                SampleFormat::F32 => {
                    device.build_output_stream(config, playback::<f32>(ring, channels), on_error, None)
                }
                SampleFormat::I16 => {
                    device.build_output_stream(config, playback::<i16>(ring, channels), on_error, None)
                }
                SampleFormat::I32 => {
                    device.build_output_stream(config, playback::<i32>(ring, channels), on_error, None)
                }
                SampleFormat::U16 => {
                    device.build_output_stream(config, playback::<u16>(ring, channels), on_error, None)
                }
                other => {
                    return Err(format!(
                        "The {topic} \"{name}\" uses {other:?} samples, which are not supported. {fallback}"
                    ))
                }
            }
        }
    }
    .map_err(|e| format!("Cannot open the {topic} \"{name}\" ({}). {fallback}", plain(&e)))?;
    stream.play().map_err(|e| format!("Cannot start the {topic} \"{name}\" ({}). {fallback}", plain(&e)))?;
    report(topic, None);
    tracing::info!(device = %name, rate = config.sample_rate, channels, "{topic} open");
    while !stop.load(Ordering::Relaxed) {
        if failed.load(Ordering::Relaxed) {
            return Err(format!("The {topic} \"{name}\" stopped working. {fallback}"));
        }
        std::thread::park_timeout(Duration::from_millis(200));
    }
    Ok(())
}

fn pick(devices: Option<impl Iterator<Item = cpal::Device>>, choice: Option<&str>) -> Option<cpal::Device> {
    let choice = choice?;
    devices?.find(|d| d.description().is_ok_and(|desc| desc.name() == choice))
}

/// The microphone callback: mixes to mono and pushes into the ring (dropping when full).
fn capture<T>(mut ring: rtrb::Producer<f32>, channels: usize) -> impl FnMut(&[T], &cpal::InputCallbackInfo)
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let scale = 1.0 / channels as f32;
    move |data: &[T], _| {
        for frame in data.chunks_exact(channels) {
            let mono = frame.iter().map(|s| f32::from_sample(*s)).sum::<f32>() * scale;
            let _ = ring.push(mono);
        }
    }
}

/// The speaker callback: pops mono samples into every channel, silence when the ring is dry.
fn playback<T>(mut ring: rtrb::Consumer<f32>, channels: usize) -> impl FnMut(&mut [T], &cpal::OutputCallbackInfo)
where
    T: SizedSample + FromSample<f32>,
{
    move |data: &mut [T], _| {
        for frame in data.chunks_exact_mut(channels) {
            let value = T::from_sample(ring.pop().unwrap_or(0.0));
            frame.fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, rate: u32) -> impl Iterator<Item = f32> {
        (0..n).map(move |i| 0.5 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / rate as f32).sin())
    }

    /// The path from a 44.1 kHz microphone ring to 20 ms frames at 48 kHz, without a device.
    #[test]
    fn microphone_samples_come_out_as_48k_frames_after_priming() {
        let path = AudioPath::new(None);
        let mut ring = path.attach_mic(1, 44_100);
        let mut source = path.source();
        assert!(source.next_frame().expect("frame").samples.iter().all(|&s| s == 0), "nothing captured yet");
        for s in tone(4410, 44_100) {
            ring.push(s).expect("room in the ring");
        }
        let frame = source.next_frame().expect("frame");
        let peak = frame.samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 15_000, "the tone comes through, peak {peak}");
    }

    #[test]
    fn without_a_microphone_the_source_sends_silence() {
        let path = AudioPath::new(Some(EchoSettings::default()));
        let mut source = path.source();
        assert_eq!(source.next_frame().expect("frame"), AudioFrame::silence());
        // And the speaker sink takes frames with nowhere to play them.
        path.sink().play(&AudioFrame::silence());
    }

    #[test]
    fn the_speaker_ring_gets_resampled_audio_and_stays_bounded() {
        let path = AudioPath::new(None);
        let mut ring = path.attach_speaker(1, 44_100);
        let sink = path.sink();
        let mut frame = AudioFrame::silence();
        frame.samples.fill(16_384);
        sink.play(&frame);
        // 882 samples, give or take what the resampler's fixed chunks leave for the next call.
        assert!((876..=884).contains(&ring.slots()), "20 ms at 44.1 kHz, got {}", ring.slots());
        for _ in 0..50 {
            sink.play(&frame);
        }
        assert!(ring.slots() <= 44_100 * (SPEAKER_MAX_MS + 20) / 1000, "{} samples queued", ring.slots());
        // Past the filter's delay and its ringing, the level is what was played.
        let settled: Vec<f32> = (0..600).map(|_| ring.pop().expect("a sample")).skip(300).collect();
        assert!(settled.iter().all(|s| (s - 0.5).abs() < 0.01), "{settled:?}");
    }

    /// Plays a 440 Hz tone through the speaker path, feeds what the "speaker" plays back into
    /// the "microphone" 30 ms later at half level over faint noise (a room's echo), and
    /// measures how much of the tone is left in what the microphone source sends. Returns
    /// the attenuation in dB.
    fn echo_through_the_path(echo: Option<EchoSettings>) -> f32 {
        let path = AudioPath::new(echo);
        let mut speaker = path.attach_speaker(1, 48_000);
        let mut mic = path.attach_mic(2, 48_000);
        let (sink, mut source) = (path.sink(), path.source());
        let mut delay_line: VecDeque<f32> = std::iter::repeat_n(0.0, 48 * 30).collect();
        let mut noise = 0x9e37_79b9u32;
        let (mut heard, mut sent) = (Vec::new(), Vec::new());
        let mut phase = 0usize;
        for _ in 0..400 {
            // 20 ms of the stranger's tone arrives and is queued for the speaker.
            let mut frame = AudioFrame::silence();
            for s in frame.samples.iter_mut() {
                *s = (9000.0 * (phase as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin()) as i16;
                phase += 1;
            }
            sink.play(&frame);
            // The speaker plays 20 ms; the microphone picks up the room.
            for _ in 0..SAMPLES_PER_FRAME {
                let played = speaker.pop().unwrap_or(0.0);
                delay_line.push_back(played);
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let hiss = (noise as f32 / u32::MAX as f32 - 0.5) * 0.002;
                let picked = 0.5 * delay_line.pop_front().unwrap_or(0.0) + hiss;
                heard.push(picked);
                mic.push(picked).expect("room in the microphone ring");
            }
            let out = source.next_frame().expect("frame");
            sent.extend(out.samples.iter().map(|&s| f32::from(s) / 32768.0));
        }
        // The last 3 seconds, after the canceller converged.
        let tail = |v: &[f32]| crate::devices::echo::tests::rms(&v[v.len() - 48_000 * 3..]);
        20.0 * (tail(&heard) / tail(&sent).max(1e-9)).log10()
    }

    #[test]
    fn the_speakers_echo_is_removed_from_what_the_microphone_sends() {
        let without = echo_through_the_path(None);
        let with = echo_through_the_path(Some(EchoSettings::default()));
        println!("echo through the audio path: {without:.1} dB without processing, {with:.1} dB with");
        assert!(without.abs() < 3.0, "without processing the echo goes out as it came in ({without:.1} dB)");
        assert!(with > 25.0, "the echo is attenuated by only {with:.1} dB");
    }
}

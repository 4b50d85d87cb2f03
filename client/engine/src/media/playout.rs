//! The stranger's audio from packets to a steady stream of 20 ms frames for the speaker: the
//! jitter buffer orders and times the packets, the Opus decoder turns them into sound (rebuilding
//! a lost frame from the next packet's in-band FEC, or concealing it), and the frames come out
//! through a small queue of samples, so that a packet played shorter (to bring the delay down
//! after the buffer waited out a late stream, see `time_stretch`) does not shorten the output.
//! Pure but for the decoder: the time is an input, one call per 20 ms of sound played.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::frame::{AudioFrame, SAMPLES_PER_FRAME, SAMPLE_RATE};
use crate::media::jitter::{JitterBuffer, JitterConfig, JitterStats, Pushed, Slot};
use crate::media::opus::{Decoder, OpusError};
use crate::media::time_stretch;

/// Counters since the playout was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Frames missing at their turn and rebuilt from the next packet's in-band FEC.
    pub fec_recovered: u64,
    /// Frames missing at their turn with nothing to rebuild them from, concealed. (Frames
    /// concealed while the delay grew are the jitter buffer's `stretched`.)
    pub concealed: u64,
    /// Packets played shorter to bring the delay down.
    pub hurried: u64,
    /// Sound taken out of those packets, ms.
    pub shortened_ms: u64,
    /// Packets that would not decode (concealed instead).
    pub corrupt: u64,
}

/// Turns the partner's audio packets into frames to play. See the module documentation.
pub struct Playout {
    jitter: JitterBuffer,
    decoder: Decoder,
    /// Decoded samples not yet played.
    queued: VecDeque<i16>,
    stats: PlayoutStats,
}

impl std::fmt::Debug for Playout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playout").field("queued", &self.queued.len()).field("stats", &self.stats).finish()
    }
}

impl Playout {
    pub fn new(config: JitterConfig) -> Result<Self, OpusError> {
        Ok(Self {
            jitter: JitterBuffer::new(config),
            decoder: Decoder::new()?,
            queued: VecDeque::with_capacity(2 * SAMPLES_PER_FRAME),
            stats: PlayoutStats::default(),
        })
    }

    /// Takes in a packet that arrived at `now`.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Vec<u8>) -> Pushed {
        self.jitter.push(now, seq, timestamp, payload)
    }

    /// The frame to play from `now`, or `None` while there is nothing to play yet (before the
    /// first packet, or after a long silence until the stream is back at its delay).
    pub fn next_frame(&mut self, now: Instant) -> Option<AudioFrame> {
        while self.queued.len() < SAMPLES_PER_FRAME {
            // A packet taken now starts playing once what is queued has played.
            let at = now + samples_duration(self.queued.len());
            let decoded = match self.jitter.pop(at) {
                Some(Slot::Packet { payload, hurry, .. }) => {
                    let frame = self.decode(Some(&payload));
                    if hurry {
                        if let Some(short) = time_stretch::shorten(&frame.samples) {
                            self.stats.hurried += 1;
                            self.stats.shortened_ms +=
                                ((SAMPLES_PER_FRAME - short.len()) * 1000) as u64 / u64::from(SAMPLE_RATE);
                            self.queued.extend(short);
                            continue;
                        }
                    }
                    frame
                }
                Some(Slot::Missing { next: Some(next), .. }) => {
                    self.stats.fec_recovered += 1;
                    self.decoder.decode_fec(&next).unwrap_or_else(|_| self.decode(None))
                }
                Some(Slot::Missing { next: None, .. }) => {
                    self.stats.concealed += 1;
                    self.decode(None)
                }
                // The buffer holds its packet back while the delay grows (it counts these as
                // `stretched`): a concealed frame stretches the sound rather than leaving a hole.
                None if self.jitter.is_playing() => self.decode(None),
                None if self.queued.is_empty() => return None,
                // The stream paused with part of a frame queued: finish it with silence.
                None => AudioFrame::silence(),
            };
            self.queued.extend(decoded.samples);
        }
        let mut frame = AudioFrame::silence();
        for (out, sample) in frame.samples.iter_mut().zip(self.queued.drain(..SAMPLES_PER_FRAME)) {
            *out = sample;
        }
        Some(frame)
    }

    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    /// The playout delay the jitter buffer aims for.
    pub fn target_delay(&self) -> Duration {
        self.jitter.target_delay()
    }

    /// Decodes a packet (or conceals a missing one); a packet that does not decode is concealed.
    fn decode(&mut self, packet: Option<&[u8]>) -> AudioFrame {
        match self.decoder.decode(packet) {
            Ok(frame) => frame,
            Err(_) => {
                self.stats.corrupt += u64::from(packet.is_some());
                self.decoder.decode(None).unwrap_or_else(|_| AudioFrame::silence())
            }
        }
    }
}

fn samples_duration(samples: usize) -> Duration {
    Duration::from_micros(samples as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::opus::Encoder;
    use crate::media::pitch;
    use crate::media::tone::ToneSource;

    const TICK: Duration = Duration::from_millis(20);
    const HZ: f64 = 440.0;

    /// A call's audio over a network whose one-way delay for packet `seq` is `delay(seq)`
    /// (`None`: lost): a 440 Hz tone encoded in 20 ms packets, one sent every 20 ms, a frame
    /// played every 20 ms. Returns the samples played and the playout.
    fn call(ticks: u32, delay: impl Fn(u16) -> Option<Duration>) -> (Vec<i16>, Playout) {
        let start = Instant::now();
        let mut tone = ToneSource::new(HZ, 8192).syllables();
        let mut encoder = Encoder::new(32_000).expect("encoder");
        let mut arrivals: Vec<(Duration, u16, Vec<u8>)> = (0..ticks as u16)
            .filter_map(|seq| {
                let packet = encoder.encode(&tone.next_frame()).expect("encodes");
                delay(seq).map(|d| (TICK * u32::from(seq) + d, seq, packet))
            })
            .collect();
        arrivals.sort_by_key(|(at, seq, _)| (*at, *seq));
        let mut arrivals = arrivals.into_iter().peekable();
        let mut playout = Playout::new(JitterConfig::default()).expect("playout");
        let mut played = Vec::new();
        for tick in 0..ticks {
            let now = TICK * tick + Duration::from_millis(7);
            while arrivals.peek().is_some_and(|(at, _, _)| *at <= now) {
                let (at, seq, packet) = arrivals.next().expect("peeked");
                playout.push(start + at, seq, u32::from(seq) * 960, packet);
            }
            if let Some(frame) = playout.next_frame(start + now) {
                played.extend_from_slice(&frame.samples);
            }
        }
        (played, playout)
    }

    /// The tone's pitch over each 500 ms of `samples` after the first 200 ms.
    fn pitches(samples: &[i16]) -> Vec<f32> {
        samples[9600..]
            .chunks_exact(24_000)
            .map(|chunk| pitch::dominant_frequency(chunk, SAMPLE_RATE).unwrap_or(0.0))
            .collect()
    }

    #[test]
    fn a_steady_stream_plays_every_packet_at_full_length() {
        let (played, playout) = call(200, |_| Some(Duration::from_millis(5)));
        let stats = playout.stats();
        assert_eq!(stats, PlayoutStats::default(), "{stats:?}");
        assert_eq!(playout.jitter_stats().stretched, 0);
        assert!(played.len() >= 198 * SAMPLES_PER_FRAME);
        let heard = pitches(&played);
        assert!(heard.iter().all(|&hz| (f64::from(hz) - HZ).abs() < 0.1 * HZ), "{heard:?}");
    }

    #[test]
    fn a_swell_is_waited_out_and_the_delay_comes_back_down_without_losing_a_packet() {
        // Every 4 s the queue grows to 250 ms over a second, then drains in half a second: each
        // swell's packets are late, none lost.
        let swell = |seq: u16| {
            let ms = (u64::from(seq) * 20) % 4_000;
            let queue = match ms {
                1_000..2_000 => (ms - 1_000) / 4,
                2_000..2_500 => 250 - (ms - 2_000) / 2,
                _ => 0,
            };
            Some(Duration::from_millis(5 + queue))
        };
        let (played, playout) = call(1_000, swell);
        let (stats, jitter) = (playout.stats(), playout.jitter_stats());
        assert_eq!(
            (stats.fec_recovered, stats.concealed, jitter.late, jitter.missing),
            (0, 0, 0, 0),
            "{stats:?} {jitter:?}"
        );
        assert!(jitter.stretched > 0 && stats.hurried > 0, "{stats:?} {jitter:?}");
        // What was stretched was taken out again (within a few frames), so the sound is not
        // lagging further behind at the end than the target delay.
        let shortened_frames = stats.shortened_ms / 20;
        assert!(jitter.stretched.abs_diff(shortened_frames) <= 15, "{stats:?} {jitter:?}");
        // The tone is heard throughout at its pitch.
        let off: Vec<f32> = pitches(&played).into_iter().filter(|&hz| (f64::from(hz) - HZ).abs() >= 0.1 * HZ).collect();
        assert!(off.is_empty(), "{off:?}");
        // No hole: the concealed frames that stretch the sound fade it, never to silence.
        let levels: Vec<f32> = played[9600..].chunks_exact(960).map(pitch::rms).collect();
        let quietest = levels.iter().copied().fold(f32::MAX, f32::min);
        let mean = levels.iter().sum::<f32>() / levels.len() as f32;
        assert!(quietest > 0.05 * mean, "a 20 ms frame at {quietest} against {mean} on average");
    }

    #[test]
    fn a_lost_packet_is_rebuilt_from_the_next_one() {
        let (played, playout) = call(200, |seq| (seq != 60 && seq != 120).then_some(Duration::from_millis(5)));
        let stats = playout.stats();
        assert_eq!((stats.fec_recovered, stats.concealed), (2, 0), "{stats:?}");
        assert!(played.len() >= 198 * SAMPLES_PER_FRAME);
    }

    #[test]
    fn corrupt_packets_are_concealed_and_nothing_plays_before_the_first_packet() {
        let start = Instant::now();
        let mut playout = Playout::new(JitterConfig::default()).expect("playout");
        assert!(playout.next_frame(start).is_none());
        for seq in 0..5u16 {
            playout.push(start + TICK * u32::from(seq), seq, u32::from(seq) * 960, vec![0xff; 3]);
        }
        let mut frames = 0;
        for tick in 1..10 {
            frames += u32::from(playout.next_frame(start + TICK * tick).is_some());
        }
        assert!(frames >= 5, "{frames}");
        assert_eq!(playout.stats().corrupt, 5);
    }
}

//! Opus encoding and decoding of 20 ms, 48 kHz mono frames (VoIP mode, in-band FEC and DTX on),
//! with packet-loss concealment and FEC recovery when a packet is missing.

use ::opus::{Application, Bitrate, Channels};

use super::frame::{AudioFrame, SAMPLES_PER_FRAME, SAMPLE_RATE};

/// Default Opus bitrate: ample for mono voice and a clean test tone.
pub const DEFAULT_BITRATE_BPS: u32 = 32_000;
/// Loss the encoder protects against with FEC until told otherwise. Opus spends FEC bits only
/// when this is above zero; 10 % keeps one lost packet in a row recoverable at a modest cost.
pub const DEFAULT_EXPECTED_LOSS_PERCENT: u8 = 10;
/// Largest packet the encoder may produce (Opus' recommended buffer size).
const MAX_PACKET: usize = 1275;

/// Why encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("Opus failed to start: {0}")]
    Init(::opus::Error),
    #[error("invalid Opus setting: {0}")]
    Config(::opus::Error),
    #[error("Opus encoding failed: {0}")]
    Encode(::opus::Error),
    /// The packet is corrupt or not Opus; conceal it as lost.
    #[error("corrupt Opus packet: {0}")]
    Corrupt(::opus::Error),
    /// The packet decodes to a duration other than 20 ms.
    #[error("Opus packet holds {samples} samples, not the 960 of a 20 ms frame")]
    WrongDuration { samples: usize },
}

/// Encodes 20 ms frames into Opus packets.
pub struct Encoder {
    inner: ::opus::Encoder,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    /// A VoIP encoder at `bitrate_bps` with in-band FEC, protecting against
    /// [`DEFAULT_EXPECTED_LOSS_PERCENT`] loss until told otherwise.
    pub fn new(bitrate_bps: u32) -> Result<Self, OpusError> {
        let inner = ::opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip).map_err(OpusError::Init)?;
        let mut encoder = Self { inner };
        encoder.set_bitrate(bitrate_bps)?;
        encoder.inner.set_inband_fec(true).map_err(OpusError::Config)?;
        // Discontinuous transmission: silence costs a byte or two a packet instead of the full
        // rate, which leaves that much more of a thin link to video.
        encoder.inner.set_dtx(true).map_err(OpusError::Config)?;
        // Complexity 5 of 10: speech at call bitrates sounds the same, for about half the CPU.
        encoder.inner.set_complexity(5).map_err(OpusError::Config)?;
        encoder.set_expected_loss(DEFAULT_EXPECTED_LOSS_PERCENT)?;
        Ok(encoder)
    }

    /// Changes the bitrate (Opus accepts 500 bps to 512 kbps).
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), OpusError> {
        let bits = i32::try_from(bitrate_bps).unwrap_or(i32::MAX);
        self.inner.set_bitrate(Bitrate::Bits(bits)).map_err(OpusError::Config)
    }

    /// Tells the encoder how much loss to protect against with FEC (0 to 100 percent).
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), OpusError> {
        self.inner.set_packet_loss_perc(i32::from(percent.min(100))).map_err(OpusError::Config)
    }

    /// Encodes one frame into one packet.
    pub fn encode(&mut self, frame: &AudioFrame) -> Result<Vec<u8>, OpusError> {
        self.inner.encode_vec(&frame.samples, MAX_PACKET).map_err(OpusError::Encode)
    }
}

/// Decodes Opus packets into 20 ms frames, concealing or recovering lost ones.
pub struct Decoder {
    inner: ::opus::Decoder,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    pub fn new() -> Result<Self, OpusError> {
        Ok(Self { inner: ::opus::Decoder::new(SAMPLE_RATE, Channels::Mono).map_err(OpusError::Init)? })
    }

    /// Decodes a packet, or conceals a lost one when `packet` is `None` (packet-loss concealment).
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<AudioFrame, OpusError> {
        self.decode_inner(packet.unwrap_or(&[]), false)
    }

    /// Recovers a lost frame from the in-band FEC data of the packet that followed it. Call it for
    /// the missing frame, then [`decode`](Self::decode) `next` itself as usual. Without FEC data in
    /// `next` this conceals like `decode(None)`.
    pub fn decode_fec(&mut self, next: &[u8]) -> Result<AudioFrame, OpusError> {
        self.decode_inner(next, true)
    }

    fn decode_inner(&mut self, packet: &[u8], fec: bool) -> Result<AudioFrame, OpusError> {
        let mut frame = AudioFrame::silence();
        let samples = self.inner.decode(packet, &mut frame.samples, fec).map_err(OpusError::Corrupt)?;
        if samples != SAMPLES_PER_FRAME {
            return Err(OpusError::WrongDuration { samples });
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pitch;
    use crate::media::tone::ToneSource;

    fn encode_tone(freq: f64, frames: usize, bitrate: u32) -> Vec<Vec<u8>> {
        let mut tone = ToneSource::new(freq, 8192);
        let mut encoder = Encoder::new(bitrate).expect("encoder");
        (0..frames).map(|_| encoder.encode(&tone.next_frame()).expect("encodes")).collect()
    }

    #[test]
    fn tones_survive_opus_within_a_few_hertz() {
        for freq in [200.0, 440.0, 1000.0, 2000.0] {
            let packets = encode_tone(freq, 50, DEFAULT_BITRATE_BPS);
            let mut decoder = Decoder::new().expect("decoder");
            let samples: Vec<i16> =
                packets.iter().flat_map(|p| decoder.decode(Some(p)).expect("decodes").samples).collect();
            // Skip the codec's start-up.
            let steady = &samples[4800..];
            let found = pitch::dominant_frequency(steady, SAMPLE_RATE).expect("a tone");
            assert!((f64::from(found) - freq).abs() < 2.0, "{freq} Hz came out as {found}");
            let level = pitch::rms(steady);
            assert!((level - 0.25 / 2f32.sqrt()).abs() < 0.03, "{freq} Hz at rms {level}");
        }
    }

    #[test]
    fn packets_fit_the_bitrate() {
        let packets = encode_tone(440.0, 100, 24_000);
        let bytes: usize = packets.iter().map(Vec::len).sum();
        let bps = bytes as f64 * 8.0 / 2.0;
        assert!(bps < 24_000.0 * 1.3, "{bps} bps");
    }

    /// A speech-like test signal: a tone with 3 Hz tremolo and 5 Hz vibrato. (A steady tone is
    /// not enough here: after half a second Opus' voice detector takes it for background noise and
    /// stops sending FEC data.)
    fn warbling_tone_packets(frames: usize) -> Vec<Vec<u8>> {
        let mut encoder = Encoder::new(DEFAULT_BITRATE_BPS).expect("encoder");
        let mut phase = 0.0f64;
        (0..frames)
            .map(|f| {
                let mut frame = AudioFrame::silence();
                for (i, sample) in frame.samples.iter_mut().enumerate() {
                    let t = (f * 960 + i) as f64 / 48_000.0;
                    let envelope = 0.55 + 0.45 * (std::f64::consts::TAU * 3.0 * t).sin();
                    phase += (440.0 + 30.0 * (std::f64::consts::TAU * 5.0 * t).sin()) / 48_000.0;
                    *sample = (8192.0 * envelope * (std::f64::consts::TAU * phase).sin()) as i16;
                }
                encoder.encode(&frame).expect("encodes")
            })
            .collect()
    }

    /// Distance between two frames (root of the summed squared differences).
    fn distance(a: &AudioFrame, b: &AudioFrame) -> f64 {
        a.samples.iter().zip(&b.samples).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn lost_packets_are_recovered_from_fec_or_concealed() {
        let packets = warbling_tone_packets(60);
        // Frames at the loud peaks of the tremolo (quiet frames may carry no FEC data).
        for lost in [21, 37, 54] {
            let mut reference = Decoder::new().expect("decoder");
            let mut with_fec = Decoder::new().expect("decoder");
            let mut with_plc = Decoder::new().expect("decoder");
            for packet in &packets[..lost] {
                for decoder in [&mut reference, &mut with_fec, &mut with_plc] {
                    decoder.decode(Some(packet)).expect("decodes");
                }
            }
            let original = reference.decode(Some(&packets[lost])).expect("decodes");
            let recovered = with_fec.decode_fec(&packets[lost + 1]).expect("FEC decodes");
            let concealed = with_plc.decode(None).expect("concealment");
            let (fec_error, plc_error) = (distance(&recovered, &original), distance(&concealed, &original));
            assert!(fec_error * 4.0 < plc_error, "frame {lost}: FEC error {fec_error:.0}, concealment {plc_error:.0}");
            assert!(pitch::rms(&concealed.samples) > 0.01, "concealment is not silence");
            // Both go on decoding the next packet normally.
            with_fec.decode(Some(&packets[lost + 1])).expect("decodes");
            with_plc.decode(Some(&packets[lost + 1])).expect("decodes");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut decoder = Decoder::new().expect("decoder");
        // A code-3 packet claiming 48 frames of 20 ms is far over Opus' 120 ms limit.
        assert!(decoder.decode(Some(&[0xfb, 0x30, 1, 2, 3])).is_err());
        // One 10 ms frame is valid Opus but not a 20 ms frame.
        let mut ten_ms = ::opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip).expect("encoder");
        let packet = ten_ms.encode_vec(&[0; 480], MAX_PACKET).expect("encodes");
        assert!(matches!(decoder.decode(Some(&packet)), Err(OpusError::WrongDuration { samples: 480 })));
        let mut encoder = Encoder::new(32_000).expect("encoder");
        assert!(encoder.set_expected_loss(200).is_ok(), "loss is clamped to 100 percent");
    }

    #[test]
    fn a_steady_tone_goes_quiet_under_dtx_and_a_syllable_tone_does_not() {
        let sizes = |mut tone: ToneSource| {
            let mut encoder = Encoder::new(32_000).expect("encoder");
            (0..250).map(|_| encoder.encode(&tone.next_frame()).expect("encodes").len()).collect::<Vec<usize>>()
        };
        // After its first seconds a steady tone is taken for background noise: one-byte packets.
        let steady = sizes(ToneSource::new(440.0, 8192));
        assert!(steady[150..].iter().filter(|&&n| n <= 2).count() > 80, "{steady:?}");
        // A tone that swells and fades like syllables is sent as speech throughout.
        let speaking = sizes(ToneSource::new(440.0, 8192).syllables());
        assert!(speaking[150..].iter().all(|&n| n >= 30), "{speaking:?}");
    }
}

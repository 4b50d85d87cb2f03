//! An audio source reading WAV files of any common rate, channel count and sample format (8, 16,
//! 24 or 32-bit integer, 32-bit float), downmixed to mono, resampled to 48 kHz and looped.
//!
//! The whole file is converted once when opened (clips are capped at five minutes), so playing it
//! costs nothing and cannot fail. Resampling is the devices' band-limited resampler
//! ([`super::resample`]), which neither aliases when rates go down (96 kHz to 48 kHz) nor leaves
//! images when they go up (8 kHz to 48 kHz).

use std::path::{Path, PathBuf};

use super::frame::{AudioFrame, SAMPLE_RATE};
use super::resample::resample;

/// Longest clip accepted, in seconds.
pub const MAX_SECONDS: u32 = 300;

/// Why a WAV file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a WAV file: {path} ({reason})")]
    NotWav { path: PathBuf, reason: String },
    #[error("unsupported WAV format in {path}: {detail}")]
    Unsupported { path: PathBuf, detail: String },
    #[error("{path} holds no audio")]
    Empty { path: PathBuf },
    #[error("{path} is longer than {MAX_SECONDS} seconds")]
    TooLong { path: PathBuf },
}

/// What the file held before conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    pub float: bool,
}

/// Plays a WAV file as 20 ms frames of 48 kHz mono, looping.
#[derive(Clone)]
pub struct WavSource {
    info: WavInfo,
    samples: Vec<i16>,
    position: usize,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource").field("info", &self.info).field("samples", &self.samples.len()).finish()
    }
}

impl WavSource {
    /// Reads and converts the whole file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WavError> {
        let path = path.as_ref();
        let error = |e: hound::Error| match e {
            hound::Error::IoError(source) => WavError::Io { path: path.to_owned(), source },
            hound::Error::FormatError(reason) => WavError::NotWav { path: path.to_owned(), reason: reason.into() },
            other => WavError::Unsupported { path: path.to_owned(), detail: other.to_string() },
        };
        let mut reader = hound::WavReader::open(path).map_err(error)?;
        let spec = reader.spec();
        let info = WavInfo {
            sample_rate: spec.sample_rate,
            channels: spec.channels,
            bits_per_sample: spec.bits_per_sample,
            float: spec.sample_format == hound::SampleFormat::Float,
        };
        let unsupported = |detail: String| WavError::Unsupported { path: path.to_owned(), detail };
        if info.channels == 0 {
            return Err(unsupported("no channels".into()));
        }
        if !(1000..=384_000).contains(&info.sample_rate) {
            return Err(unsupported(format!("sample rate {} Hz", info.sample_rate)));
        }
        match (info.float, info.bits_per_sample) {
            (false, 8 | 16 | 24 | 32) | (true, 32) => {}
            (float, bits) => {
                return Err(unsupported(format!("{bits}-bit {} samples", if float { "float" } else { "integer" })))
            }
        }
        if u64::from(reader.duration()) > u64::from(info.sample_rate) * u64::from(MAX_SECONDS) {
            return Err(WavError::TooLong { path: path.to_owned() });
        }

        // Downmix by averaging the channels, in floating point relative to full scale.
        let channels = usize::from(info.channels);
        let mut mono = Vec::with_capacity(reader.duration() as usize);
        let mut sum = 0.0f32;
        let mut push = |index: usize, value: f32| {
            sum += value;
            if index % channels == channels - 1 {
                mono.push(sum / channels as f32);
                sum = 0.0;
            }
        };
        if info.float {
            for (i, sample) in reader.samples::<f32>().enumerate() {
                push(i, sample.map_err(error)?);
            }
        } else {
            let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f32;
            for (i, sample) in reader.samples::<i32>().enumerate() {
                push(i, sample.map_err(error)? as f32 * scale);
            }
        }
        if mono.is_empty() {
            return Err(WavError::Empty { path: path.to_owned() });
        }
        let resampled = resample(&mono, info.sample_rate, SAMPLE_RATE);
        let samples = resampled.iter().map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16).collect();
        Ok(Self { info, samples, position: 0 })
    }

    pub fn info(&self) -> WavInfo {
        self.info
    }

    /// Length of the converted clip in 48 kHz samples.
    pub fn len_samples(&self) -> usize {
        self.samples.len()
    }

    /// The next 20 ms, wrapping to the start of the clip at its end.
    pub fn next_frame(&mut self) -> AudioFrame {
        let mut frame = AudioFrame::silence();
        let mut filled = 0;
        while filled < frame.samples.len() {
            let take = (frame.samples.len() - filled).min(self.samples.len() - self.position);
            frame.samples[filled..filled + take].copy_from_slice(&self.samples[self.position..self.position + take]);
            filled += take;
            self.position = (self.position + take) % self.samples.len();
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pitch;

    struct TempFile(PathBuf);

    impl TempFile {
        fn path(name: &str) -> Self {
            Self(std::env::temp_dir().join(format!("strangers-wav-{}-{name}", std::process::id())))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Writes `seconds` of a `freq` Hz sine at half scale in every channel.
    fn write_tone(name: &str, spec: hound::WavSpec, freq: f64, seconds: f64) -> TempFile {
        let file = TempFile::path(name);
        let mut writer = hound::WavWriter::create(&file.0, spec).expect("temp dir is writable");
        let frames = (f64::from(spec.sample_rate) * seconds) as usize;
        for i in 0..frames {
            let v = 0.5 * (std::f64::consts::TAU * freq * i as f64 / f64::from(spec.sample_rate)).sin();
            for _ in 0..spec.channels {
                match (spec.sample_format, spec.bits_per_sample) {
                    (hound::SampleFormat::Float, _) => writer.write_sample(v as f32),
                    (_, 8) => writer.write_sample((v * 127.0).round() as i8),
                    (_, 16) => writer.write_sample((v * 32767.0).round() as i16),
                    (_, bits) => writer.write_sample((v * ((1i64 << (bits - 1)) - 1) as f64).round() as i32),
                }
                .expect("write");
            }
        }
        writer.finalize().expect("finalize");
        file
    }

    fn spec(sample_rate: u32, channels: u16, bits: u16, float: bool) -> hound::WavSpec {
        let sample_format = if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int };
        hound::WavSpec { channels, sample_rate, bits_per_sample: bits, sample_format }
    }

    #[test]
    fn common_formats_become_48_khz_mono_at_the_right_pitch_and_level() {
        let cases = [
            spec(8000, 1, 16, false),
            spec(16000, 1, 8, false),
            spec(22050, 2, 16, false),
            spec(44100, 2, 24, false),
            spec(48000, 1, 32, false),
            spec(48000, 6, 32, true),
            spec(96000, 2, 16, false),
        ];
        for (i, spec) in cases.into_iter().enumerate() {
            let file = write_tone(&format!("fmt{i}"), spec, 440.0, 0.5);
            let mut source = WavSource::open(&file.0).expect("opens");
            let expected_len = 24_000usize;
            assert!(source.len_samples().abs_diff(expected_len) <= 1, "{spec:?}: {}", source.len_samples());
            let samples: Vec<i16> = (0..10).flat_map(|_| source.next_frame().samples).collect();
            let steady = &samples[2400..7200];
            let f = pitch::dominant_frequency(steady, SAMPLE_RATE).expect("a tone");
            assert!((f - 440.0).abs() < 0.5, "{spec:?}: {f} Hz");
            let level = pitch::rms(steady);
            assert!((level - 0.5 / 2f32.sqrt()).abs() < 0.01, "{spec:?}: rms {level}");
        }
    }

    #[test]
    fn short_clips_loop_seamlessly() {
        let file = write_tone("short", spec(48000, 1, 16, false), 1000.0, 0.01);
        let mut source = WavSource::open(&file.0).expect("opens");
        assert_eq!(source.len_samples(), 480);
        let a = source.next_frame();
        assert_eq!(a.samples[..480], a.samples[480..]);
        let b = source.next_frame();
        assert_eq!(a, b);
    }

    #[test]
    fn clear_errors() {
        let text = TempFile::path("text");
        std::fs::write(&text.0, b"hello, not a wave").expect("write");
        let err = WavSource::open(&text.0).expect_err("not WAV");
        assert!(matches!(err, WavError::NotWav { .. }), "{err}");
        assert!(err.to_string().starts_with("not a WAV file: "), "{err}");

        let empty = write_tone("empty", spec(44100, 2, 16, false), 440.0, 0.0);
        assert!(matches!(WavSource::open(&empty.0), Err(WavError::Empty { .. })));

        let missing = WavSource::open("/nonexistent/voice.wav").expect_err("no such file");
        assert!(matches!(missing, WavError::Io { .. }), "{missing}");
    }
}

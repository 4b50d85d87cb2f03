//! H.264 encoding and decoding with OpenH264: constrained baseline at level 3.1 (the
//! `profile-level-id=42e01f`, `packetization-mode=1` that browsers expect), one encoder thread,
//! bitrate and frame rate changeable while running (congestion control drives them), keyframes on
//! request. Frames go in and out as [`VideoFrame`]s, bitstreams as Annex B byte strings.

use std::ptr::addr_of_mut;

use openh264::decoder::{Decoder as OpenDecoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Complexity, Encoder as OpenEncoder, FrameRate, FrameType, IntraFramePeriod, Level, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};
use openh264_sys2::{
    SBitrateInfo, ENCODER_OPTION_BITRATE, ENCODER_OPTION_FRAME_RATE, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0,
    SPATIAL_LAYER_ALL,
};

use super::frame::VideoFrame;
use super::video_codec::{EncodedFrame, EncoderConfig};

/// Largest picture level 3.1 allows (1280x720 is 3600 macroblocks).
const MAX_MACROBLOCKS: usize = 3600;

/// Why encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum H264Error {
    #[error("H.264 needs an even picture size no larger than 1280x720 (level 3.1), got {width}x{height}")]
    UnsupportedSize { width: usize, height: usize },
    #[error("invalid H.264 setting: {0}")]
    Config(String),
    #[error("OpenH264 failed to start: {0}")]
    Init(String),
    #[error("H.264 encoding failed: {0}")]
    Encode(String),
    /// The bitstream is not Annex B (no start code at the beginning).
    #[error("not an H.264 Annex B bitstream ({len} bytes, no start code at the beginning)")]
    NotAnnexB { len: usize },
    /// The decoder rejected the bitstream: corrupt, missing references or missing parameter sets.
    /// Ask the sender for a keyframe.
    #[error("corrupt or undecodable H.264 frame: {0}")]
    Corrupt(String),
}

/// An H.264 encoder producing constrained baseline.
pub struct Encoder {
    config: EncoderConfig,
    /// Created on the first frame (and again when the picture size changes).
    inner: Option<(OpenEncoder, usize, usize)>,
    keyframe_requested: bool,
    first_capture_us: Option<u64>,
    last_timestamp_ms: Option<u64>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Encoder {
    /// Checks the settings; the OpenH264 encoder itself starts with the first frame, whose size it
    /// takes.
    pub fn new(config: EncoderConfig) -> Result<Self, H264Error> {
        check_bitrate(config.bitrate_bps)?;
        check_frame_rate(config.frame_rate)?;
        Ok(Self { config, inner: None, keyframe_requested: false, first_capture_us: None, last_timestamp_ms: None })
    }

    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Changes the target bitrate from the next frame on, without a keyframe.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), H264Error> {
        check_bitrate(bitrate_bps)?;
        let old = self.config.bitrate_bps;
        self.config.bitrate_bps = bitrate_bps;
        if let Some((encoder, _, _)) = &mut self.inner {
            // OpenH264 refuses a target above the layer's maximum and a maximum below the target,
            // so the order of the two changes depends on the direction.
            let bps = i32::try_from(bitrate_bps).map_err(|_| H264Error::Config(format!("{bitrate_bps} bps")))?;
            if bitrate_bps >= old {
                set_bitrate_option(encoder, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0, bps)?;
                set_bitrate_option(encoder, ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL, bps)?;
            } else {
                set_bitrate_option(encoder, ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL, bps)?;
                set_bitrate_option(encoder, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0, bps)?;
            }
        }
        Ok(())
    }

    /// Changes the expected frame rate (1 to 60) from the next frame on.
    pub fn set_frame_rate(&mut self, frame_rate: f32) -> Result<(), H264Error> {
        check_frame_rate(frame_rate)?;
        self.config.frame_rate = frame_rate;
        if let Some((encoder, _, _)) = &mut self.inner {
            let mut value = frame_rate;
            // SAFETY: the encoder is initialised (it has encoded a frame), and the frame-rate
            // option reads one `float` through the pointer, which outlives the call.
            let status = unsafe { encoder.raw_api().set_option(ENCODER_OPTION_FRAME_RATE, addr_of_mut!(value).cast()) };
            if status != 0 {
                return Err(H264Error::Config(format!("OpenH264 refused frame rate {frame_rate} (status {status})")));
            }
        }
        Ok(())
    }

    /// Makes the next encoded frame an IDR keyframe (with SPS and PPS).
    pub fn force_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Encodes one frame. `None` when rate control skipped it to hold the bitrate.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Option<EncodedFrame>, H264Error> {
        let (width, height) = (frame.width, frame.height);
        if width % 2 != 0 || height % 2 != 0 || width.div_ceil(16) * height.div_ceil(16) > MAX_MACROBLOCKS {
            return Err(H264Error::UnsupportedSize { width, height });
        }
        let timestamp = self.timestamp_ms(frame.capture_us);
        if !matches!(&self.inner, Some((_, w, h)) if (*w, *h) == (width, height)) {
            // A new size needs a new encoder; its first frame is a keyframe anyway.
            let encoder = OpenEncoder::with_api_config(OpenH264API::from_source(), self.openh264_config())
                .map_err(|e| H264Error::Init(e.to_string()))?;
            self.inner = Some((encoder, width, height));
            self.keyframe_requested = false;
        }
        let Some((encoder, _, _)) = &mut self.inner else {
            return Err(H264Error::Init("no encoder after creating one".into()));
        };
        if std::mem::take(&mut self.keyframe_requested) {
            encoder.force_intra_frame();
        }
        let stream = encoder
            .encode_at(&YuvView(frame), Timestamp::from_millis(timestamp))
            .map_err(|e| H264Error::Encode(e.to_string()))?;
        let frame_type = stream.frame_type();
        if frame_type == FrameType::Skip {
            return Ok(None);
        }
        let data = stream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedFrame {
            data,
            keyframe: frame_type == FrameType::IDR,
            number: frame.number,
            capture_us: frame.capture_us,
        }))
    }

    fn openh264_config(&self) -> openh264::encoder::EncoderConfig {
        openh264::encoder::EncoderConfig::new()
            .profile(Profile::Baseline)
            .level(Level::Level_3_1)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(self.config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(self.config.frame_rate))
            .skip_frames(self.config.allow_frame_skip)
            .intra_frame_period(IntraFramePeriod::from_num_frames(self.config.keyframe_interval))
            // Real-time calls on modest machines: the cheap motion search, and no analysis
            // passes whose gain a video call does not notice (measured: about half the CPU).
            .complexity(Complexity::Low)
            .scene_change_detect(false)
            .background_detection(false)
            .num_threads(1)
    }

    /// Milliseconds since the first frame, from capture times when frames carry them and from
    /// the frame rate otherwise; always increasing, as rate control expects.
    fn timestamp_ms(&mut self, capture_us: u64) -> u64 {
        let step = (1000.0 / self.config.frame_rate).round() as u64;
        let next = match (capture_us, self.first_capture_us, self.last_timestamp_ms) {
            (0, _, last) => last.map_or(0, |t| t + step),
            (_, None, _) => {
                self.first_capture_us = Some(capture_us);
                self.last_timestamp_ms.map_or(0, |t| t + step)
            }
            (_, Some(first), last) => {
                let t = capture_us.saturating_sub(first) / 1000;
                last.map_or(t, |last| t.max(last + 1))
            }
        };
        self.last_timestamp_ms = Some(next);
        next
    }
}

fn check_bitrate(bitrate_bps: u32) -> Result<(), H264Error> {
    if !(10_000..=20_000_000).contains(&bitrate_bps) {
        return Err(H264Error::Config(format!("bitrate {bitrate_bps} bps is outside 10 kbps..20 Mbps")));
    }
    Ok(())
}

fn check_frame_rate(frame_rate: f32) -> Result<(), H264Error> {
    if !(1.0..=60.0).contains(&frame_rate) {
        return Err(H264Error::Config(format!("frame rate {frame_rate} is outside 1..60")));
    }
    Ok(())
}

fn set_bitrate_option(encoder: &mut OpenEncoder, option: i32, layer: i32, bps: i32) -> Result<(), H264Error> {
    let mut info = SBitrateInfo { iLayer: layer, iBitrate: bps };
    // SAFETY: the encoder is initialised (it has encoded a frame), and both bitrate options read
    // one `SBitrateInfo` through the pointer, which outlives the call.
    let status = unsafe { encoder.raw_api().set_option(option, addr_of_mut!(info).cast()) };
    if status != 0 {
        return Err(H264Error::Config(format!("OpenH264 refused bitrate {bps} (option {option}, status {status})")));
    }
    Ok(())
}

/// Lends a [`VideoFrame`]'s planes to OpenH264 without copying.
struct YuvView<'a>(&'a VideoFrame);

impl YUVSource for YuvView<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width, self.0.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.0.y_stride, self.0.uv_stride, self.0.uv_stride)
    }

    fn y(&self) -> &[u8] {
        &self.0.y
    }

    fn u(&self) -> &[u8] {
        &self.0.u
    }

    fn v(&self) -> &[u8] {
        &self.0.v
    }
}

/// An H.264 decoder taking one access unit at a time.
pub struct Decoder {
    inner: OpenDecoder,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    pub fn new() -> Result<Self, H264Error> {
        let inner = OpenDecoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| H264Error::Init(e.to_string()))?;
        Ok(Self { inner })
    }

    /// Decodes one frame's NAL units (Annex B). `None` when they complete no picture (parameter
    /// sets alone, for example). The frame's number and capture time are 0: the caller knows them
    /// from the stripe or the RTP timestamp.
    pub fn decode(&mut self, annex_b: &[u8]) -> Result<Option<VideoFrame>, H264Error> {
        if !(annex_b.starts_with(&[0, 0, 1]) || annex_b.starts_with(&[0, 0, 0, 1])) {
            return Err(H264Error::NotAnnexB { len: annex_b.len() });
        }
        let Some(yuv) = self.inner.decode(annex_b).map_err(|e| H264Error::Corrupt(e.to_string()))? else {
            return Ok(None);
        };
        let (width, height) = yuv.dimensions();
        let (y_stride, u_stride, _) = yuv.strides();
        let (cw, ch) = yuv.dimensions_uv();
        let y = super::frame::copy_plane(yuv.y(), width, height, y_stride);
        let u = super::frame::copy_plane(yuv.u(), cw, ch, u_stride);
        let v = super::frame::copy_plane(yuv.v(), cw, ch, u_stride);
        VideoFrame::from_planes(width, height, (y, u, v), width, cw)
            .map(Some)
            .map_err(|e| H264Error::Corrupt(format!("decoder returned a bad picture: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::media::pattern::PatternSource;
    use crate::media::stripe;

    /// NAL unit payloads (without start codes) of an Annex B stream.
    fn nal_units(data: &[u8]) -> Vec<&[u8]> {
        openh264::nal_units(data)
            .map(|n| n.strip_prefix(&[0, 0, 0, 1]).or(n.strip_prefix(&[0, 0, 1])).unwrap_or(n))
            .collect()
    }

    fn encoder(bitrate_bps: u32) -> Encoder {
        Encoder::new(EncoderConfig { bitrate_bps, ..EncoderConfig::default() }).expect("valid config")
    }

    #[test]
    fn first_frame_is_a_constrained_baseline_keyframe_with_parameter_sets() {
        let mut source = PatternSource::new(640, 480, 30).expect("fits");
        let mut enc = encoder(1_000_000);
        let frame = enc.encode(&source.next_frame(1)).expect("encodes").expect("first frame is not skipped");
        assert!(frame.keyframe);
        let nals = nal_units(&frame.data);
        let types: Vec<u8> = nals.iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(&types[..2], &[7, 8], "SPS and PPS first, got {types:?}");
        assert!(types.contains(&5), "an IDR slice, got {types:?}");
        let sps = nals[0];
        assert_eq!(sps[1], 0x42, "profile_idc 66 (baseline)");
        assert_ne!(sps[2] & 0x40, 0, "constraint_set1_flag marks constrained baseline");
        assert!(sps[3] <= 0x1f, "level {} fits 3.1", sps[3]);
    }

    #[test]
    fn forced_keyframes_arrive_on_the_next_frame() {
        let mut source = PatternSource::new(320, 240, 30).expect("fits");
        let mut enc = encoder(300_000);
        let mut keyframes = Vec::new();
        for i in 0..30u32 {
            if i == 20 {
                enc.force_keyframe();
            }
            if let Some(frame) = enc.encode(&source.next_frame(0)).expect("encodes") {
                if frame.keyframe {
                    keyframes.push(frame.number);
                }
            }
        }
        assert_eq!(keyframes, vec![0, 20]);
    }

    #[test]
    fn bitrate_changes_while_running_are_obeyed() {
        let mut source = PatternSource::new(640, 480, 30).expect("fits");
        let mut enc = encoder(1_500_000);
        let mut dec = Decoder::new().expect("decoder");
        let mut measure = |enc: &mut Encoder, frames: u32| {
            let mut bytes = 0;
            for _ in 0..frames {
                if let Some(frame) = enc.encode(&source.next_frame(0)).expect("encodes") {
                    assert!(!frame.keyframe || frame.number == 0, "no keyframe on a bitrate change");
                    bytes += frame.data.len();
                    let picture = dec.decode(&frame.data).expect("decodes").expect("a picture");
                    assert_eq!(stripe::read(&picture).map(|s| s.number), Ok(frame.number));
                }
            }
            bytes as f64 * 8.0 * 30.0 / f64::from(frames)
        };
        let high = measure(&mut enc, 90);
        enc.set_bitrate(250_000).expect("lower");
        measure(&mut enc, 30);
        let low = measure(&mut enc, 60);
        enc.set_bitrate(1_500_000).expect("higher again");
        measure(&mut enc, 30);
        let high_again = measure(&mut enc, 60);
        assert!(low < 400_000.0, "{low:.0} bps after lowering to 250 kbps");
        assert!(high > 3.0 * low && high_again > 3.0 * low, "{high:.0} / {low:.0} / {high_again:.0} bps");
        assert!(enc.set_bitrate(0).is_err());
        enc.set_frame_rate(15.0).expect("15 fps");
        assert!(enc.set_frame_rate(0.0).is_err());
    }

    #[test]
    fn size_changes_restart_with_a_keyframe_and_bad_sizes_are_refused() {
        let mut enc = encoder(500_000);
        let mut small = PatternSource::new(320, 240, 30).expect("fits");
        let mut large = PatternSource::new(640, 480, 30).expect("fits");
        assert!(enc.encode(&small.next_frame(0)).expect("encodes").is_some_and(|f| f.keyframe));
        assert!(enc.encode(&small.next_frame(0)).expect("encodes").is_some_and(|f| !f.keyframe));
        assert!(enc.encode(&large.next_frame(0)).expect("encodes").is_some_and(|f| f.keyframe));
        assert!(matches!(enc.encode(&VideoFrame::black(321, 240)), Err(H264Error::UnsupportedSize { .. })));
        assert!(matches!(enc.encode(&VideoFrame::black(1920, 1080)), Err(H264Error::UnsupportedSize { .. })));
        assert!(Encoder::new(EncoderConfig { frame_rate: 0.0, ..EncoderConfig::default() }).is_err());
    }

    #[test]
    fn corrupt_and_foreign_input_gives_errors_not_panics() {
        let mut dec = Decoder::new().expect("decoder");
        assert!(matches!(dec.decode(b"hello"), Err(H264Error::NotAnnexB { .. })));
        assert!(matches!(dec.decode(&[]), Err(H264Error::NotAnnexB { .. })));

        // A P frame without its keyframe cannot be decoded.
        let mut source = PatternSource::new(320, 240, 30).expect("fits");
        let mut enc = encoder(300_000);
        let key = enc.encode(&source.next_frame(0)).expect("encodes").expect("a frame");
        let delta = enc.encode(&source.next_frame(0)).expect("encodes").expect("a frame");
        let mut fresh = Decoder::new().expect("decoder");
        assert!(!matches!(fresh.decode(&delta.data), Ok(Some(_))), "a P frame alone gives no picture");

        // Garbage after a start code, and a keyframe with its slice data scrambled.
        let mut garbage = vec![0, 0, 0, 1, 0x65];
        garbage.extend((0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
        let _ = dec.decode(&garbage);
        let mut scrambled = key.data.clone();
        let len = scrambled.len();
        for b in &mut scrambled[len / 2..] {
            *b ^= 0x5a;
        }
        let result = dec.decode(&scrambled);
        if let Ok(Some(picture)) = &result {
            assert!(stripe::read(picture).is_ok() || picture.width == 320);
        }
        // The decoder recovers at the next keyframe.
        enc.force_keyframe();
        let key2 = enc.encode(&source.next_frame(0)).expect("encodes").expect("a frame");
        let picture = dec.decode(&key2.data).expect("decodes").expect("a picture");
        assert_eq!(stripe::read(&picture).map(|s| s.number), Ok(2));
    }

    /// Encode and decode times at 640x480 and 1 Mbps; `cargo test -- --nocapture` prints them.
    #[test]
    fn timing_at_640x480() {
        let mut source = PatternSource::new(640, 480, 30).expect("fits");
        let mut enc = encoder(1_000_000);
        let mut dec = Decoder::new().expect("decoder");
        let frames: Vec<VideoFrame> = (0..120).map(|i| source.next_frame(1 + i * 33_333)).collect();
        let (mut encode_time, mut decode_time, mut decoded) = (Duration::ZERO, Duration::ZERO, 0u32);
        for frame in &frames {
            let start = Instant::now();
            let encoded = enc.encode(frame).expect("encodes");
            encode_time += start.elapsed();
            if let Some(encoded) = encoded {
                let start = Instant::now();
                let picture = dec.decode(&encoded.data).expect("decodes");
                decode_time += start.elapsed();
                assert!(picture.is_some());
                decoded += 1;
            }
        }
        let encode_ms = encode_time.as_secs_f64() * 1000.0 / frames.len() as f64;
        let decode_ms = decode_time.as_secs_f64() * 1000.0 / f64::from(decoded.max(1));
        println!("640x480 at 1 Mbps: encode {encode_ms:.2} ms/frame, decode {decode_ms:.2} ms/frame");
        assert!(encode_ms < 100.0 && decode_ms < 100.0);
    }
}

//! The codec-neutral face of video coding: which codecs exist ([`VideoCodec`]), the settings and
//! output every encoder shares, and one encoder and one decoder type that hold either codec, so
//! that the code sending and receiving video names a codec only when it picks one. Pure media
//! code: no RTP, no WebRTC, no IO; it knows the codecs only through `vp8` and `h264`.

use std::fmt;
use std::str::FromStr;

#[cfg(feature = "h264")]
use super::h264::{self, H264Error};
use super::vp8::{self, Vp8Error};
use super::VideoFrame;

/// A video codec the engine can name. Whether this build can code it is [`VideoCodec::is_available`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    Vp8,
    H264,
}

/// The codecs this build can encode and decode, most preferred first.
#[cfg(feature = "h264")]
const AVAILABLE: &[VideoCodec] = &[VideoCodec::Vp8, VideoCodec::H264];
#[cfg(not(feature = "h264"))]
const AVAILABLE: &[VideoCodec] = &[VideoCodec::Vp8];

impl VideoCodec {
    /// The MIME type SDP and WebRTC use for it.
    pub const fn mime_type(self) -> &'static str {
        match self {
            Self::Vp8 => "video/VP8",
            Self::H264 => "video/H264",
        }
    }

    /// Its encoding name, as in an `a=rtpmap` line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vp8 => "VP8",
            Self::H264 => "H264",
        }
    }

    /// The codec of a MIME type such as `video/vp8` (compared without regard to case).
    pub fn from_mime(mime: &str) -> Option<Self> {
        [Self::Vp8, Self::H264].into_iter().find(|codec| codec.mime_type().eq_ignore_ascii_case(mime))
    }

    /// The codecs this build can encode and decode, most preferred first: VP8, then H.264 when
    /// the `h264` feature compiled OpenH264 in.
    pub fn all_available() -> &'static [Self] {
        AVAILABLE
    }

    /// Whether this build can encode and decode it.
    pub fn is_available(self) -> bool {
        AVAILABLE.contains(&self)
    }
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that is neither `vp8` nor `h264`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown video codec {0:?} (known: vp8, h264)")]
pub struct UnknownCodec(pub String);

impl FromStr for VideoCodec {
    type Err = UnknownCodec;

    /// Reads `vp8` or `h264` in any case, as a command-line flag gives them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            name if name.eq_ignore_ascii_case("vp8") => Ok(Self::Vp8),
            name if name.eq_ignore_ascii_case("h264") => Ok(Self::H264),
            other => Err(UnknownCodec(other.to_owned())),
        }
    }
}

/// Settings of a video encoder, whatever its codec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderConfig {
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Expected frame rate; rate control budgets bits per frame with it (OpenH264 accepts 1 to
    /// 60).
    pub frame_rate: f32,
    /// Frames between periodic keyframes, 0 for keyframes only on request. A periodic keyframe is
    /// a safety net for a lost keyframe request.
    pub keyframe_interval: u32,
    /// Lets rate control drop a frame instead of overshooting the bitrate.
    pub allow_frame_skip: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self { bitrate_bps: 1_000_000, frame_rate: 30.0, keyframe_interval: 300, allow_frame_skip: true }
    }
}

/// One encoded frame.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The bitstream: for H.264 NAL units with Annex B start codes (a keyframe starts with SPS and
    /// PPS), for VP8 one frame as RFC 7741 carries it.
    pub data: Vec<u8>,
    /// Whether a decoder can start from it (an IDR picture, a VP8 key frame).
    pub keyframe: bool,
    /// Number and capture time of the frame it came from.
    pub number: u32,
    pub capture_us: u64,
}

impl fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedFrame")
            .field("bytes", &self.data.len())
            .field("keyframe", &self.keyframe)
            .field("number", &self.number)
            .field("capture_us", &self.capture_us)
            .finish()
    }
}

/// Why a video encoder or decoder failed.
#[derive(Debug, thiserror::Error)]
pub enum VideoCodecError {
    #[error(transparent)]
    Vp8(#[from] Vp8Error),
    #[cfg(feature = "h264")]
    #[error(transparent)]
    H264(#[from] H264Error),
    #[error("this build has no H.264 (built without the h264 feature)")]
    H264NotBuilt,
}

impl VideoCodecError {
    /// Whether the decoder could not make a correct picture of the frame (corrupt, or missing
    /// what it refers to): the sender should be asked for a keyframe.
    pub fn needs_keyframe(&self) -> bool {
        match self {
            Self::Vp8(e) => e.needs_keyframe(),
            #[cfg(feature = "h264")]
            Self::H264(e) => matches!(e, H264Error::Corrupt(_) | H264Error::NotAnnexB { .. }),
            Self::H264NotBuilt => false,
        }
    }
}

/// An encoder of either codec.
#[derive(Debug)]
pub enum VideoEncoder {
    Vp8(vp8::Encoder),
    /// Boxed: OpenH264's encoder state is several kilobytes.
    #[cfg(feature = "h264")]
    H264(Box<h264::Encoder>),
}

impl VideoEncoder {
    /// Checks the settings; the codec itself starts with the first frame, whose size it takes.
    pub fn new(codec: VideoCodec, config: EncoderConfig) -> Result<Self, VideoCodecError> {
        match codec {
            VideoCodec::Vp8 => Ok(Self::Vp8(vp8::Encoder::new(config)?)),
            #[cfg(feature = "h264")]
            VideoCodec::H264 => Ok(Self::H264(Box::new(h264::Encoder::new(config)?))),
            #[cfg(not(feature = "h264"))]
            VideoCodec::H264 => Err(VideoCodecError::H264NotBuilt),
        }
    }

    pub fn codec(&self) -> VideoCodec {
        match self {
            Self::Vp8(_) => VideoCodec::Vp8,
            #[cfg(feature = "h264")]
            Self::H264(_) => VideoCodec::H264,
        }
    }

    pub fn config(&self) -> EncoderConfig {
        match self {
            Self::Vp8(encoder) => encoder.config(),
            #[cfg(feature = "h264")]
            Self::H264(encoder) => encoder.config(),
        }
    }

    /// Changes the target bitrate from the next frame on, without a keyframe.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), VideoCodecError> {
        match self {
            Self::Vp8(encoder) => Ok(encoder.set_bitrate(bitrate_bps)?),
            #[cfg(feature = "h264")]
            Self::H264(encoder) => Ok(encoder.set_bitrate(bitrate_bps)?),
        }
    }

    /// Changes the expected frame rate from the next frame on.
    pub fn set_frame_rate(&mut self, frame_rate: f32) -> Result<(), VideoCodecError> {
        match self {
            Self::Vp8(encoder) => Ok(encoder.set_frame_rate(frame_rate)?),
            #[cfg(feature = "h264")]
            Self::H264(encoder) => Ok(encoder.set_frame_rate(frame_rate)?),
        }
    }

    /// Makes the next encoded frame a keyframe.
    pub fn force_keyframe(&mut self) {
        match self {
            Self::Vp8(encoder) => encoder.force_keyframe(),
            #[cfg(feature = "h264")]
            Self::H264(encoder) => encoder.force_keyframe(),
        }
    }

    /// Encodes one frame. `None` when rate control dropped it to hold the bitrate.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Option<EncodedFrame>, VideoCodecError> {
        match self {
            Self::Vp8(encoder) => Ok(encoder.encode(frame)?),
            #[cfg(feature = "h264")]
            Self::H264(encoder) => Ok(encoder.encode(frame)?),
        }
    }
}

/// A decoder of either codec.
#[derive(Debug)]
pub enum VideoDecoder {
    Vp8(vp8::Decoder),
    #[cfg(feature = "h264")]
    H264(h264::Decoder),
}

impl VideoDecoder {
    pub fn new(codec: VideoCodec) -> Result<Self, VideoCodecError> {
        match codec {
            VideoCodec::Vp8 => Ok(Self::Vp8(vp8::Decoder::new()?)),
            #[cfg(feature = "h264")]
            VideoCodec::H264 => Ok(Self::H264(h264::Decoder::new()?)),
            #[cfg(not(feature = "h264"))]
            VideoCodec::H264 => Err(VideoCodecError::H264NotBuilt),
        }
    }

    pub fn codec(&self) -> VideoCodec {
        match self {
            Self::Vp8(_) => VideoCodec::Vp8,
            #[cfg(feature = "h264")]
            Self::H264(_) => VideoCodec::H264,
        }
    }

    /// Decodes one frame as the reassembler hands it out (Annex B for H.264, a plain VP8 frame).
    /// `None` when it completes no picture. The picture's number and capture time are 0: the
    /// caller knows them from the stripe or the RTP timestamp. An error whose
    /// [`VideoCodecError::needs_keyframe`] is true means: ask the sender for a keyframe.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, VideoCodecError> {
        match self {
            Self::Vp8(decoder) => Ok(decoder.decode(data)?),
            #[cfg(feature = "h264")]
            Self::H264(decoder) => Ok(decoder.decode(data)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::PatternSource;
    use crate::media::stripe;

    #[test]
    fn names_and_mime_types() {
        assert_eq!(VideoCodec::Vp8.mime_type(), "video/VP8");
        assert_eq!(VideoCodec::H264.mime_type(), "video/H264");
        assert_eq!((VideoCodec::Vp8.name(), VideoCodec::H264.name()), ("VP8", "H264"));
        assert_eq!(VideoCodec::from_mime("video/vp8"), Some(VideoCodec::Vp8));
        assert_eq!(VideoCodec::from_mime("VIDEO/H264"), Some(VideoCodec::H264));
        assert_eq!(VideoCodec::from_mime("video/VP9"), None);
        assert_eq!(VideoCodec::from_mime("VP8"), None);
        assert_eq!(VideoCodec::H264.to_string(), "H264");
    }

    #[test]
    fn codec_flags_parse() {
        assert_eq!("vp8".parse(), Ok(VideoCodec::Vp8));
        assert_eq!("H264".parse(), Ok(VideoCodec::H264));
        assert_eq!(" Vp8".parse(), Ok(VideoCodec::Vp8));
        assert!("h.264".parse::<VideoCodec>().is_err());
        assert!("".parse::<VideoCodec>().is_err());
        let list: Result<Vec<VideoCodec>, _> = "vp8,h264".split(',').map(str::parse).collect();
        assert_eq!(list, Ok(vec![VideoCodec::Vp8, VideoCodec::H264]));
    }

    #[test]
    fn available_codecs_follow_the_build() {
        let available = VideoCodec::all_available();
        assert_eq!(available.first(), Some(&VideoCodec::Vp8), "VP8 is always there, first");
        assert_eq!(available.contains(&VideoCodec::H264), cfg!(feature = "h264"));
        assert_eq!(VideoCodec::H264.is_available(), cfg!(feature = "h264"));
        let h264 = VideoEncoder::new(VideoCodec::H264, EncoderConfig::default());
        let h264_decoder = VideoDecoder::new(VideoCodec::H264);
        if cfg!(feature = "h264") {
            assert!(h264.is_ok() && h264_decoder.is_ok());
        } else {
            let message = h264.expect_err("no H.264 in this build").to_string();
            assert_eq!(message, "this build has no H.264 (built without the h264 feature)");
            assert!(matches!(h264_decoder, Err(VideoCodecError::H264NotBuilt)));
        }
    }

    /// Every available codec through the neutral types: keyframe first, stripes intact, a
    /// keyframe on request, bitrate and frame rate changes accepted.
    #[test]
    fn every_available_codec_round_trips() {
        for &codec in VideoCodec::all_available() {
            let mut source = PatternSource::new(320, 240, 30).expect("fits");
            let mut encoder = VideoEncoder::new(codec, EncoderConfig::default()).expect("encoder");
            let mut decoder = VideoDecoder::new(codec).expect("decoder");
            assert_eq!((encoder.codec(), decoder.codec()), (codec, codec));
            for i in 0..20u32 {
                if i == 10 {
                    encoder.force_keyframe();
                    encoder.set_bitrate(500_000).expect("bitrate");
                    encoder.set_frame_rate(15.0).expect("frame rate");
                }
                let frame = source.next_frame(1_000_000 + u64::from(i) * 33_333);
                let Some(encoded) = encoder.encode(&frame).expect("encodes") else { continue };
                if i == 0 || i == 10 {
                    assert!(encoded.keyframe, "{codec}: frame {i} is a keyframe");
                }
                let picture = decoder.decode(&encoded.data).expect("decodes").expect("a picture");
                assert_eq!(stripe::read(&picture).map(|s| s.number), Ok(i), "{codec}");
            }
            assert_eq!(encoder.config().bitrate_bps, 500_000);
            assert!(encoder.set_bitrate(0).is_err());
            assert!(decoder.decode(b"").is_err());
        }
    }
}

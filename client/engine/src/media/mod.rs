//! Media: raw frames, synthetic and file sources, codecs (VP8, and H.264 with the `h264` feature),
//! RTP reassembly, audio and video jitter buffering, resampling and the
//! machine-readable stripe that lets tests verify every frame. Pure media code: no WebRTC, no
//! tokio, no sockets and no clock reads except where a frame is stamped with its capture time.

pub mod frame;
#[cfg(feature = "h264")]
pub mod h264;
pub mod h264_rtp;
pub mod jitter;
pub mod opus;
pub mod pattern;
pub mod pitch;
pub mod playout;
pub mod png;
pub mod resample;
pub mod rtp_frames;
pub mod scale;
pub mod stripe;
#[cfg(test)]
mod test_rng;
pub mod time_stretch;
pub mod tone;
pub mod video_codec;
pub mod video_jitter;
pub mod vp8;
pub mod vp8_rtp;
pub mod wav;
pub mod y4m;

pub use frame::{AudioFrame, VideoFrame};
pub use video_codec::VideoCodec;

#[cfg(test)]
mod tests {
    /// Sources, codecs and buffers move to the media threads that own them.
    #[test]
    fn media_state_can_move_between_threads() {
        fn is_send<T: Send>() {}
        is_send::<super::video_codec::VideoEncoder>();
        is_send::<super::video_codec::VideoDecoder>();
        is_send::<super::vp8::Encoder>();
        is_send::<super::vp8::Decoder>();
        is_send::<super::opus::Encoder>();
        is_send::<super::opus::Decoder>();
        is_send::<super::jitter::JitterBuffer>();
        is_send::<super::rtp_frames::Reassembler>();
        is_send::<super::video_jitter::VideoJitter>();
        is_send::<super::pattern::PatternSource>();
        is_send::<super::y4m::Y4mSource>();
        is_send::<super::wav::WavSource>();
        is_send::<super::tone::ToneSource>();
    }
}

//! Media: raw frames, synthetic and file sources, codecs, RTP reassembly, jitter buffering and the
//! machine-readable stripe that lets tests verify every frame. Pure media code: no WebRTC, no
//! tokio, no sockets and no clock reads except where a frame is stamped with its capture time.

pub mod frame;
pub mod h264;
pub mod h264_rtp;
pub mod jitter;
pub mod opus;
pub mod pattern;
pub mod pitch;
pub mod png;
pub mod stripe;
pub mod tone;
pub mod wav;
pub mod y4m;

pub use frame::{AudioFrame, VideoFrame};

//! Counters the media pipelines update and the statistics task reads, once a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::api::AudioReceive;

#[derive(Default)]
pub struct Counters {
    pub video_frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub video_frames_decoded: AtomicU64,
    pub bytes_received: AtomicU64,
    pub frames_verified: AtomicU64,
    pub verify_errors: AtomicU64,
    pub out_of_order: AtomicU64,
    pub keyframes_requested: AtomicU64,
    /// The selected candidate pair's round-trip time in microseconds (0 until measured); the
    /// video jitter buffer's wait follows it.
    pub rtt_us: AtomicU64,
    /// Width and height of the last decoded frame (`w << 32 | h`).
    pub size: AtomicU64,
    /// Width and height of the frames we send (`w << 32 | h`).
    pub send_size: AtomicU64,
    /// How the audio receiver fared since the call began (updated every playout tick).
    pub audio_receive: Mutex<AudioReceive>,
    /// The video codec we send, once negotiated, and why the size we send last changed.
    pub codec: Mutex<Option<&'static str>>,
    pub size_reason: Mutex<Option<&'static str>>,
    /// Glass-to-glass latencies (ms) of frames verified since the last report.
    pub latencies: Mutex<Vec<f64>>,
    /// The received audio's dominant frequency and RMS level, over the last second.
    pub audio: Mutex<(Option<f64>, f64)>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

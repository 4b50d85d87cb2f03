//! The video we send: capture, fit to the congestion estimate (size from the resolution ladder,
//! bitrate, and below the smallest size the frame rate), encode in the negotiated codec,
//! packetize, and pace the packets onto the wire at 2.5 times the estimate instead of sending each
//! frame as one burst. It all runs on one thread of its own, so a frame whose packets are still
//! leaving (a keyframe on a thin link) delays the next capture, and frames are skipped rather
//! than queued: the queue stays in the link's router, short, where congestion control sees it.
//! Audio and retransmissions never wait behind this thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp::header::Header;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp::Packet;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;

use crate::call::{CallEvent, Controls, EventSink};
use crate::counters::Counters;
use crate::ladder::Ladder;
use crate::media::video_codec::{EncoderConfig, VideoCodec, VideoEncoder};
use crate::media::{scale, stripe, VideoFrame};
use crate::pipeline::{first_ssrc, sleep_until};
use crate::send_budget::{self, SendBudget};
use crate::slot::FrameSlot;
use crate::sources::VideoSource;

/// Largest RTP packet we make (payload plus the 12-byte header); room is left for header
/// extensions, SRTP and a TURN or VPN envelope within a 1500-byte path.
const RTP_MTU: usize = 1200;
/// On a thin link a packet is smaller, so that it holds the link no longer than this and the
/// audio packets behind it in the router's queue wait less (at 150 kbit/s a 1200-byte packet
/// takes 64 ms); never smaller than `MIN_MTU`.
const PACKET_TIME_S: f64 = 0.025;
const MIN_MTU: usize = 300;
/// Packets leave at this multiple of the estimate: a frame's packets spread over part of the
/// frame interval, and a keyframe over a few intervals, instead of one burst.
const PACING_FACTOR: f64 = 2.5;
/// The RTP clock of video.
const VIDEO_CLOCK: f64 = 90_000.0;

/// What the sender needs from the negotiated connection.
pub(crate) struct VideoOutput {
    pub(crate) track: Arc<TrackLocalStaticRTP>,
    /// The codec the partner and we agreed on, with its payload type.
    pub(crate) codec: Option<RTCRtpCodecParameters>,
}

/// Turns encoded frames into RTP packets: sequence numbers, one timestamp per frame from its
/// capture time, the marker on each frame's last packet.
struct Framer {
    payloader: Box<dyn Payloader>,
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp_base: u32,
    origin_us: Option<u64>,
}

impl Framer {
    /// The packets of one frame, each at most `mtu` bytes with its header.
    fn packets(&mut self, data: Bytes, capture_us: u64, mtu: usize) -> Vec<Packet> {
        let origin = *self.origin_us.get_or_insert(capture_us);
        let ticks = (capture_us.saturating_sub(origin) as f64 * VIDEO_CLOCK / 1e6) as u64;
        let timestamp = self.timestamp_base.wrapping_add(ticks as u32);
        let payloads = match self.payloader.payload(mtu.clamp(MIN_MTU, RTP_MTU) - 12, &data) {
            Ok(payloads) => payloads,
            Err(e) => {
                tracing::debug!(error = %e, "frame not packetized");
                return Vec::new();
            }
        };
        let last = payloads.len().saturating_sub(1);
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let sequence_number = self.sequence;
                self.sequence = self.sequence.wrapping_add(1);
                Packet {
                    header: Header {
                        version: 2,
                        marker: i == last,
                        payload_type: self.payload_type,
                        sequence_number,
                        timestamp,
                        ssrc: self.ssrc,
                        ..Default::default()
                    },
                    payload,
                }
            })
            .collect()
    }
}

/// Releases packets at a rate: each waits until the previous one's share of time has passed.
struct Pacer {
    next: Instant,
}

impl Pacer {
    /// Waits for the packet's turn at `rate_bps` and returns when it may leave.
    fn wait(&mut self, bytes: usize, rate_bps: f64) {
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        }
        self.next = self.next.max(now) + Duration::from_secs_f64(bytes as f64 * 8.0 / rate_bps.max(1.0));
    }
}

/// The stripe is painted again on a scaled picture, so every size verifies.
fn scaled(frame: &VideoFrame, width: usize, height: usize) -> VideoFrame {
    if (width, height) == (frame.width, frame.height) {
        return frame.clone();
    }
    let mut small = scale::scale(frame, width, height);
    let (number, capture_us) = (small.number, small.capture_us);
    let _ = stripe::paint(&mut small, number, capture_us);
    small
}

/// Captures, encodes and sends video until the call stops.
pub(crate) async fn spawn_video_sender(
    output: VideoOutput,
    mut source: Box<dyn VideoSource>,
    controls: Arc<Controls>,
    counters: Arc<Counters>,
    budget: Arc<SendBudget>,
    local_slot: Arc<FrameSlot>,
    events: Arc<EventSink>,
) {
    let ssrc = first_ssrc(output.track.as_ref()).await;
    let (Some(params), Some(ssrc)) = (output.codec, ssrc) else {
        events(CallEvent::MediaError("video was not negotiated; sending none".into()));
        return;
    };
    let Some(codec) = VideoCodec::from_mime(&params.rtp_codec.mime_type) else {
        events(CallEvent::MediaError(format!("cannot send {} video; sending none", params.rtp_codec.mime_type)));
        return;
    };
    let payloader = match params.rtp_codec.payloader() {
        Ok(payloader) => payloader,
        Err(e) => {
            events(CallEvent::MediaError(format!("cannot packetize {}: {e}", codec.name())));
            return;
        }
    };
    *counters.codec.lock().expect("codec lock is never poisoned") = Some(codec.name());
    let mut framer = Framer {
        payloader,
        payload_type: params.payload_type,
        ssrc,
        sequence: rand::random(),
        timestamp_base: rand::random(),
        origin_us: None,
    };
    let track = output.track;
    let runtime = tokio::runtime::Handle::current();
    let thread_events = events.clone();
    let spawned = std::thread::Builder::new().name("video-send".into()).spawn(move || {
        let events = thread_events;
        let source_fps = source.fps().max(1);
        let (width, height) = source.size();
        let mut ladder = Ladder::new(width, height, source_fps);
        let mut fps = source_fps;
        let mut applied = send_budget::video_bps(budget.estimate());
        // No periodic keyframes: each is a burst a thin link pays for in delay, and a receiver
        // that lost one asks again until it comes.
        let config = EncoderConfig {
            bitrate_bps: applied as u32,
            frame_rate: fps as f32,
            keyframe_interval: 0,
            ..Default::default()
        };
        let mut encoder = match VideoEncoder::new(codec, config) {
            Ok(encoder) => encoder,
            Err(e) => {
                events(CallEvent::MediaError(format!("video encoder: {e}")));
                return;
            }
        };
        let mut pacer = Pacer { next: Instant::now() };
        // The first frame goes out at once: every millisecond here is time to first picture.
        let mut next = Instant::now();
        while !controls.stop.load(Ordering::Relaxed) {
            sleep_until(next);
            let interval = Duration::from_secs_f64(1.0 / f64::from(fps));
            next += interval;
            if Instant::now() > next + interval {
                next = Instant::now(); // We fell behind: skip rather than burst.
            }
            let mut frame = match source.next_frame() {
                Ok(frame) => frame,
                Err(e) => {
                    events(CallEvent::MediaError(format!("video source: {e}")));
                    return;
                }
            };
            if controls.mute_video.load(Ordering::Relaxed) {
                let (number, capture_us) = (frame.number, frame.capture_us);
                frame = VideoFrame::black(frame.width, frame.height);
                frame.number = number;
                frame.capture_us = capture_us;
                let _ = stripe::paint(&mut frame, number, capture_us);
            }
            let video_bps = send_budget::video_bps(budget.estimate());
            let choice = ladder.choose(Instant::now(), video_bps);
            let target = video_bps.min(choice.max_bps);
            if choice.fps != fps && encoder.set_frame_rate(choice.fps as f32).is_ok() {
                fps = choice.fps;
            }
            if (target - applied).abs() > applied * 0.05 && encoder.set_bitrate(target as u32).is_ok() {
                applied = target;
            }
            if controls.keyframe.swap(false, Ordering::Relaxed) {
                encoder.force_keyframe();
            }
            let picture = scaled(&frame, choice.width, choice.height);
            counters.send_size.store(((picture.width as u64) << 32) | picture.height as u64, Ordering::Relaxed);
            *counters.size_reason.lock().expect("reason lock is never poisoned") = Some(choice.reason.as_str());
            let encoded = match encoder.encode(&picture) {
                Ok(encoded) => encoded,
                Err(e) => {
                    events(CallEvent::MediaError(format!("video encoder: {e}")));
                    continue;
                }
            };
            let capture_us = frame.capture_us;
            local_slot.put(Arc::new(frame));
            // Rate control may skip a frame to hold the bitrate.
            let Some(encoded) = encoded else { continue };
            Counters::add(&counters.video_frames_sent, 1);
            Counters::add(&counters.bytes_sent, encoded.data.len() as u64);
            let total = budget.estimate();
            let mtu = (total * PACKET_TIME_S / 8.0) as usize;
            for packet in framer.packets(Bytes::from(encoded.data), capture_us, mtu) {
                pacer.wait(packet.payload.len() + 12, total * PACING_FACTOR);
                let written = runtime.block_on(track.write_rtp(packet));
                budget.sent(Instant::now());
                if let Err(e) = written {
                    // Writes fail while the connection closes; the loop ends with the call.
                    tracing::trace!(error = %e, "video write failed");
                }
            }
        }
    });
    if let Err(e) = spawned {
        events(CallEvent::MediaError(format!("cannot start the video thread: {e}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer() -> Framer {
        let params = crate::peer::video_codec_parameters(VideoCodec::Vp8);
        Framer {
            payloader: params.rtp_codec.payloader().expect("VP8 has a payloader"),
            payload_type: 96,
            ssrc: 7,
            sequence: 65_534,
            timestamp_base: u32::MAX - 10,
            origin_us: None,
        }
    }

    #[test]
    fn a_frame_becomes_packets_in_sequence_with_one_timestamp_and_a_final_marker() {
        let mut framer = framer();
        let packets = framer.packets(Bytes::from(vec![0x10; 3000]), 1_000_000, RTP_MTU);
        assert_eq!(packets.len(), 3);
        let seqs: Vec<u16> = packets.iter().map(|p| p.header.sequence_number).collect();
        assert_eq!(seqs, [65_534, 65_535, 0]);
        assert!(packets.iter().all(|p| p.header.timestamp == u32::MAX - 10 && p.header.ssrc == 7));
        let markers: Vec<bool> = packets.iter().map(|p| p.header.marker).collect();
        assert_eq!(markers, [false, false, true]);
        assert!(packets.iter().all(|p| p.payload.len() + 12 <= RTP_MTU));
        // The next frame, 100 ms later, is 9,000 ticks on (wrapping).
        let next = framer.packets(Bytes::from(vec![0x10; 10]), 1_100_000, RTP_MTU);
        assert_eq!(next[0].header.timestamp, (u32::MAX - 10).wrapping_add(9_000));
        assert_eq!(next[0].header.sequence_number, 1);
        // On a thin link the packets are smaller, but never tiny.
        let small = framer.packets(Bytes::from(vec![0x10; 3000]), 1_200_000, 400);
        assert!(small.len() >= 8 && small.iter().all(|p| p.payload.len() + 12 <= 400));
        let floor = framer.packets(Bytes::from(vec![0x10; 3000]), 1_300_000, 10);
        assert!(floor.iter().all(|p| p.payload.len() + 12 <= MIN_MTU) && floor.len() <= 12);
    }

    #[test]
    fn the_pacer_spreads_packets_at_its_rate() {
        let mut pacer = Pacer { next: Instant::now() };
        let start = Instant::now();
        // Ten 1,000-byte packets at 800 kbit/s: the last may leave 90 ms after the first.
        for _ in 0..10 {
            pacer.wait(1000, 800_000.0);
        }
        assert!(start.elapsed() >= Duration::from_millis(90));
    }
}

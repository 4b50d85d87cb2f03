//! Reassembly of encoded video frames from RTP packets, for any codec: the frame logic here, the
//! codec's payload format in `h264_rtp` (RFC 6184) or `vp8_rtp` (RFC 7741). A frame is handed
//! out as soon as its marker packet and every packet before it are in, without waiting for the
//! next frame's first packet (which is what costs a `SampleBuilder` a frame of latency). Packets
//! reordered within a frame are put back in order; a frame whose packets do not all arrive is
//! reported as a [`Gap`] when the next frame begins, and so is every later frame until a keyframe
//! arrives (they depend on the lost one: an H.264 P frame on the pictures before it, a VP8 delta
//! frame on the last frame even with error resilience on), so the caller knows to ask for a
//! keyframe and keeps asking until one comes. The stream starts out waiting for a keyframe too.
//! No IO and no clock; network input never panics here.

use std::collections::BTreeMap;

use super::video_codec::VideoCodec;
use super::{h264_rtp, vp8_rtp};

/// More packets than this in one frame means something is wrong (about 1.4 MB at 1200 bytes).
const MAX_PACKETS_PER_FRAME: usize = 1200;
/// A sequence number this far behind the expected one means the stream restarted.
const RESTART_DISTANCE: i64 = 3000;
/// A packet whose timestamp is at most this far (5 s at 90 kHz) behind a frame already handled
/// or being collected is a straggler of an older frame; anything further back is taken as a jump.
const STRAGGLER_TICKS: i32 = 450_000;

/// What a payload says about where its frame begins, as its codec's payload format tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStart {
    /// It continues something begun in an earlier packet, so it cannot be a frame's first.
    No,
    /// It may be a frame's first packet; packets missing before it may belong to its frame.
    Maybe,
    /// It is certainly a frame's first packet: packets missing before it belonged to earlier
    /// frames.
    Yes,
}

/// One reassembled frame.
#[derive(Clone, PartialEq, Eq)]
pub struct AssembledFrame {
    /// The frame as its decoder takes it: NAL units behind Annex B start codes for H.264, the
    /// plain VP8 frame for VP8.
    pub data: Vec<u8>,
    /// RTP timestamp (90 kHz) of the frame.
    pub timestamp: u32,
    /// Whether a decoder can start from it (it holds an IDR slice, or is a VP8 key frame).
    pub keyframe: bool,
}

impl std::fmt::Debug for AssembledFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssembledFrame")
            .field("bytes", &self.data.len())
            .field("timestamp", &self.timestamp)
            .field("keyframe", &self.keyframe)
            .finish()
    }
}

/// A frame that cannot be decoded correctly: ask the sender for a keyframe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gap {
    /// Packets of the frame with this timestamp never arrived.
    #[error("frame {timestamp} lost packets")]
    Incomplete { timestamp: u32 },
    /// A payload of the frame could not be parsed.
    #[error("frame {timestamp} is malformed: {reason}")]
    Malformed { timestamp: u32, reason: &'static str },
    /// The frame arrived whole but refers to a lost one (or to none yet); it was dropped.
    #[error("frame {timestamp} dropped while waiting for a keyframe")]
    AwaitingKeyframe { timestamp: u32 },
    /// Packets from sequence number `first` on were not retransmitted in time and were given up.
    #[error("{count} packets from sequence {first} never arrived")]
    Unrecovered { first: u16, count: u16 },
}

/// Turns RTP payloads of one codec back into frames. See the module documentation.
#[derive(Debug, Clone)]
pub struct Reassembler {
    codec: VideoCodec,
    /// Newest extended sequence number seen, the reference for unwrapping.
    newest: Option<i64>,
    /// Packets below this extended sequence number belong to frames already handled.
    floor: Option<i64>,
    /// Whether the current frame is known to start at `floor` (the previous frame's marker came).
    start_known: bool,
    /// Timestamp and packets of the frame being collected.
    timestamp: Option<u32>,
    pending: BTreeMap<i64, Vec<u8>>,
    marker: Option<i64>,
    /// Timestamp of the last frame handed out or given up.
    finished: Option<u32>,
    awaiting_keyframe: bool,
}

impl Reassembler {
    /// A reassembler for payloads of `codec`, waiting for a keyframe.
    pub fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            newest: None,
            floor: None,
            start_known: false,
            timestamp: None,
            pending: BTreeMap::new(),
            marker: None,
            finished: None,
            awaiting_keyframe: true,
        }
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Takes one RTP packet's sequence number, timestamp, marker bit and payload. Returns a
    /// finished frame, a [`Gap`], or `None` while a frame is still incomplete.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<Result<AssembledFrame, Gap>> {
        let ext = match self.newest {
            None => i64::from(seq),
            Some(newest) => newest + i64::from(seq.wrapping_sub(newest as u16) as i16),
        };
        if let Some(floor) = self.floor {
            if floor - ext > RESTART_DISTANCE {
                *self = Self::new(self.codec);
                return self.push(seq, timestamp, marker, payload);
            }
            if ext < floor {
                return None;
            }
        }
        // Stragglers of frames already handled, or older than the one being collected, are dropped
        // (a late packet must not cut the current frame short).
        let behind = |reference: u32| (0..=STRAGGLER_TICKS).contains(&(reference.wrapping_sub(timestamp) as i32));
        if self.finished.is_some_and(behind) || self.timestamp.is_some_and(|t| t != timestamp && behind(t)) {
            return None;
        }
        self.newest = Some(self.newest.map_or(ext, |newest| newest.max(ext)));

        let mut gap = None;
        if self.timestamp.is_some_and(|current| current != timestamp) {
            // A new frame began before the current one completed.
            gap = self.abandon();
        }
        if self.pending.contains_key(&ext) {
            return gap;
        }
        self.timestamp = Some(timestamp);
        self.pending.insert(ext, payload.to_vec());
        if marker {
            self.marker = Some(ext);
        }
        if self.pending.len() > MAX_PACKETS_PER_FRAME {
            self.abandon();
            return Some(Err(Gap::Malformed { timestamp, reason: "too many packets in one frame" }));
        }
        match self.try_complete() {
            // A keyframe heals the gap, so report it rather than the gap.
            Some(Ok(frame)) if frame.keyframe => Some(Ok(frame)),
            done => gap.or(done),
        }
    }

    /// Reports the current frame as lost and forgets it.
    fn abandon(&mut self) -> Option<Result<AssembledFrame, Gap>> {
        let timestamp = self.timestamp.take()?;
        self.finished = Some(timestamp);
        let last = self.pending.keys().next_back().copied();
        self.pending.clear();
        self.marker = None;
        if let Some(last) = last {
            self.floor = Some(self.floor.map_or(last + 1, |floor| floor.max(last + 1)));
        }
        self.start_known = false;
        self.awaiting_keyframe = true;
        Some(Err(Gap::Incomplete { timestamp }))
    }

    /// Emits the current frame if its packets from start to marker are all in.
    ///
    /// Packets missing before the first one held are normally waited for (they may be reordered),
    /// except when the payload format says the first held packet certainly begins its frame (an
    /// H.264 frame that starts with a sequence parameter set, any VP8 frame): then the missing
    /// packets belonged to an earlier, lost frame.
    fn try_complete(&mut self) -> Option<Result<AssembledFrame, Gap>> {
        let marker = self.marker?;
        let (&first, first_payload) = self.pending.first_key_value()?;
        let span = usize::try_from(marker - first + 1).ok()?;
        let start = frame_start(self.codec, first_payload);
        if self.pending.range(first..=marker).count() != span || start == FrameStart::No {
            return None;
        }
        let leading_hole = match self.floor {
            Some(floor) if self.start_known => first != floor,
            _ => false,
        };
        if leading_hole {
            if start != FrameStart::Yes {
                return None;
            }
            self.awaiting_keyframe = true;
        }
        let timestamp = self.timestamp.take()?;
        self.finished = Some(timestamp);
        let packets = std::mem::take(&mut self.pending);
        self.marker = None;
        self.floor = Some(marker + 1);
        self.start_known = true;
        let payloads = packets.range(first..=marker).map(|(_, payload)| payload.as_slice());
        let frame = match depacketize(self.codec, payloads) {
            Ok((data, keyframe)) => AssembledFrame { data, timestamp, keyframe },
            Err(reason) => {
                self.awaiting_keyframe = true;
                return Some(Err(Gap::Malformed { timestamp, reason }));
            }
        };
        if frame.keyframe {
            self.awaiting_keyframe = false;
        }
        if self.awaiting_keyframe {
            return Some(Err(Gap::AwaitingKeyframe { timestamp }));
        }
        Some(Ok(frame))
    }
}

fn frame_start(codec: VideoCodec, payload: &[u8]) -> FrameStart {
    match codec {
        VideoCodec::Vp8 => vp8_rtp::frame_start(payload),
        VideoCodec::H264 => h264_rtp::frame_start(payload),
    }
}

/// Joins a frame's payloads, in order, into what the decoder takes; also says whether it is a
/// keyframe.
fn depacketize<'a>(
    codec: VideoCodec,
    payloads: impl Iterator<Item = &'a [u8]>,
) -> Result<(Vec<u8>, bool), &'static str> {
    match codec {
        VideoCodec::Vp8 => vp8_rtp::depacketize(payloads),
        VideoCodec::H264 => h264_rtp::depacketize(payloads),
    }
}

/// The frame logic, shown with H.264 payloads (the VP8 payload format has its own tests in
/// `vp8_rtp`).
/// Pushes `packets` (in `order`) as one frame starting at `seq`, marker on the last; returns
/// the results. Shared by the reassembly tests of each payload format.
#[cfg(test)]
pub(crate) fn push_frame(
    r: &mut Reassembler,
    seq: u16,
    ts: u32,
    packets: &[Vec<u8>],
    order: &[usize],
) -> Vec<Result<AssembledFrame, Gap>> {
    order.iter().filter_map(|&i| r.push(seq.wrapping_add(i as u16), ts, i == packets.len() - 1, &packets[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::h264_rtp::test_packets::{annex_b, fu_a, keyframe_packets, stap_a, IDR_NAL, PPS, P_NAL, SPS};

    fn h264() -> Reassembler {
        Reassembler::new(VideoCodec::H264)
    }

    #[test]
    fn frames_come_out_on_their_marker_without_waiting() {
        let mut r = h264();
        let key = keyframe_packets();
        assert_eq!(r.push(1, 0, false, &key[0]), None);
        assert_eq!(r.push(2, 0, false, &key[1]), None);
        assert_eq!(r.push(3, 0, false, &key[2]), None);
        assert!(matches!(r.push(4, 0, true, &key[3]), Some(Ok(AssembledFrame { keyframe: true, .. }))));
    }

    #[test]
    fn reordering_within_a_frame_is_repaired() {
        let mut r = h264();
        let key = keyframe_packets();
        let out = push_frame(&mut r, 7, 0, &key, &[0, 2, 3, 1]);
        assert!(matches!(&out[..], [Ok(AssembledFrame { keyframe: true, .. })]), "{out:?}");
        assert_eq!(out[0].as_ref().map(|u| u.data.clone()), Ok(annex_b(&[SPS, PPS, IDR_NAL])));
        // The marker first, too.
        let frags = fu_a(P_NAL, 1);
        let out = push_frame(&mut r, 11, 3000, &frags, &[2, 0, 1]);
        assert_eq!(out, vec![Ok(AssembledFrame { data: annex_b(&[P_NAL]), timestamp: 3000, keyframe: false })]);
    }

    #[test]
    fn a_lost_fragment_is_a_gap_when_the_next_frame_starts_and_later_frames_wait_for_a_keyframe() {
        let mut r = h264();
        push_frame(&mut r, 1, 0, &keyframe_packets(), &[0, 1, 2, 3]);
        // Frame 3000 loses its middle fragment (sequence 6).
        let frags = fu_a(P_NAL, 1);
        assert_eq!(push_frame(&mut r, 5, 3000, &frags, &[0, 2]), vec![]);
        // The next frame's first packet reveals it.
        assert_eq!(r.push(8, 6000, true, P_NAL), Some(Err(Gap::Incomplete { timestamp: 3000 })));
        assert_eq!(r.push(9, 9000, true, P_NAL), Some(Err(Gap::AwaitingKeyframe { timestamp: 9000 })));
        // The lost packet turning up late changes nothing.
        assert_eq!(r.push(6, 3000, false, &frags[1]), None);
        let out = push_frame(&mut r, 10, 12000, &keyframe_packets(), &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AssembledFrame { keyframe: true, .. })]), "{out:?}");
        assert!(matches!(r.push(14, 15000, true, P_NAL), Some(Ok(AssembledFrame { keyframe: false, .. }))));
    }

    #[test]
    fn a_late_marker_of_a_given_up_frame_does_not_cut_the_next_one_short() {
        let mut r = h264();
        push_frame(&mut r, 1, 0, &keyframe_packets(), &[0, 1, 2, 3]);
        // Frame 3000's marker packet (sequence 7) is late: frame 6000 begins first.
        let frags = fu_a(P_NAL, 1);
        assert_eq!(push_frame(&mut r, 5, 3000, &frags, &[0, 1]), vec![]);
        let key = keyframe_packets();
        assert_eq!(r.push(8, 6000, false, &key[0]), Some(Err(Gap::Incomplete { timestamp: 3000 })));
        assert_eq!(r.push(7, 3000, true, &frags[2]), None);
        assert_eq!(r.push(9, 6000, false, &key[1]), None);
        assert_eq!(r.push(10, 6000, false, &key[2]), None);
        assert!(matches!(
            r.push(11, 6000, true, &key[3]),
            Some(Ok(AssembledFrame { keyframe: true, timestamp: 6000, .. }))
        ));
    }

    #[test]
    fn a_whole_lost_frame_is_a_gap() {
        let mut r = h264();
        push_frame(&mut r, 1, 0, &keyframe_packets(), &[0, 1, 2, 3]);
        assert!(matches!(r.push(5, 3000, true, P_NAL), Some(Ok(_))));
        // Sequence 6 (frame 6000) is lost entirely; frame 9000 is whole but follows the hole.
        assert_eq!(r.push(7, 9000, true, P_NAL), None);
        assert_eq!(r.push(8, 12000, true, P_NAL), Some(Err(Gap::Incomplete { timestamp: 9000 })));
        assert_eq!(r.push(9, 15000, true, P_NAL), Some(Err(Gap::AwaitingKeyframe { timestamp: 15000 })));
        // Sequence 10 is lost too; the keyframe after it starts with SPS, so it needs no wait.
        let out = push_frame(&mut r, 11, 18000, &keyframe_packets(), &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AssembledFrame { keyframe: true, timestamp: 18000, .. })]), "{out:?}");
        assert!(matches!(r.push(15, 21000, true, P_NAL), Some(Ok(_))));
    }

    #[test]
    fn the_stream_starts_waiting_for_a_keyframe() {
        let mut r = h264();
        assert_eq!(r.push(50, 0, true, P_NAL), Some(Err(Gap::AwaitingKeyframe { timestamp: 0 })));
        let out = push_frame(&mut r, 51, 3000, &keyframe_packets(), &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AssembledFrame { keyframe: true, .. })]));
        // A keyframe that heals a gap is delivered rather than the gap.
        let mut r = h264();
        push_frame(&mut r, 1, 0, &keyframe_packets(), &[0, 1, 2, 3]);
        assert_eq!(r.push(5, 3000, false, P_NAL), None);
        let single_packet_key = stap_a(&[SPS, PPS, IDR_NAL]);
        assert!(matches!(r.push(7, 6000, true, &single_packet_key), Some(Ok(AssembledFrame { keyframe: true, .. }))));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut r = h264();
        let key = keyframe_packets();
        let out = push_frame(&mut r, 65_534, 0, &key, &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AssembledFrame { keyframe: true, .. })]), "{out:?}");
        assert!(matches!(r.push(2, 3000, true, P_NAL), Some(Ok(_))));
        // A restarted stream far away in sequence space is picked up again at a keyframe.
        let out = push_frame(&mut r, 30_000, 6000, &key, &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AssembledFrame { keyframe: true, .. })]), "{out:?}");
        assert_eq!(r.codec(), VideoCodec::H264, "a restart keeps the codec");
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut r = h264();
        let key = keyframe_packets();
        let out = push_frame(&mut r, 1, 0, &key, &[0, 1, 1, 2, 3, 3]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(r.push(4, 0, true, &key[3]), None);
    }

    #[test]
    fn too_many_packets_in_one_frame_are_malformed() {
        let mut r = h264();
        let frags = fu_a(&[0x41; 2000], 1);
        let out: Vec<_> = (0..frags.len()).filter_map(|i| r.push(i as u16, 0, false, &frags[i])).collect();
        assert_eq!(out, vec![Err(Gap::Malformed { timestamp: 0, reason: "too many packets in one frame" })]);
    }
}

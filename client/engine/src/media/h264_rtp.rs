//! Reassembly of H.264 access units from RTP payloads in packetization mode 1 (RFC 6184: single
//! NAL unit, STAP-A and FU-A packets). A frame is handed out as soon as its marker packet and
//! every packet before it are in, without waiting for the next frame's first packet (which is what
//! costs a `SampleBuilder` a frame of latency). Packets reordered within a frame are put back in
//! order; a frame whose packets do not all arrive is reported as a [`Gap`] when the next frame
//! begins, and so is every later frame until a keyframe arrives (they depend on the lost one), so
//! the caller knows to ask for a keyframe and keeps asking until one comes. The stream starts out
//! waiting for a keyframe too. Network input never panics here.

use std::collections::BTreeMap;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
const IDR: u8 = 5;
/// More packets than this in one frame means something is wrong (about 1.4 MB at 1200 bytes).
const MAX_PACKETS_PER_FRAME: usize = 1200;
/// A sequence number this far behind the expected one means the stream restarted.
const RESTART_DISTANCE: i64 = 3000;
/// A packet whose timestamp is at most this far (5 s at 90 kHz) behind a frame already handled
/// or being collected is a straggler of an older frame; anything further back is taken as a jump.
const STRAGGLER_TICKS: i32 = 450_000;

/// One reassembled frame.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// The frame's NAL units, each behind an Annex B start code, ready for the decoder.
    pub data: Vec<u8>,
    /// RTP timestamp (90 kHz) of the frame.
    pub timestamp: u32,
    /// Whether it holds an IDR slice.
    pub keyframe: bool,
}

impl std::fmt::Debug for AccessUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessUnit")
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

/// Turns RTP payloads back into access units. See the module documentation.
#[derive(Debug, Clone)]
pub struct Reassembler {
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

impl Default for Reassembler {
    fn default() -> Self {
        Self {
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
}

impl Reassembler {
    /// Takes one RTP packet's sequence number, timestamp, marker bit and payload. Returns a
    /// finished frame, a [`Gap`], or `None` while a frame is still incomplete.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Option<Result<AccessUnit, Gap>> {
        let ext = match self.newest {
            None => i64::from(seq),
            Some(newest) => newest + i64::from(seq.wrapping_sub(newest as u16) as i16),
        };
        if let Some(floor) = self.floor {
            if floor - ext > RESTART_DISTANCE {
                *self = Self::default();
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
            Some(Ok(unit)) if unit.keyframe => Some(Ok(unit)),
            done => gap.or(done),
        }
    }

    /// Reports the current frame as lost and forgets it.
    fn abandon(&mut self) -> Option<Result<AccessUnit, Gap>> {
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
    /// except when the first held packet begins with a sequence parameter set: then the frame is a
    /// keyframe from its start, and the missing packets belonged to an earlier, lost frame.
    fn try_complete(&mut self) -> Option<Result<AccessUnit, Gap>> {
        let marker = self.marker?;
        let (&first, first_payload) = self.pending.first_key_value()?;
        let span = usize::try_from(marker - first + 1).ok()?;
        if self.pending.range(first..=marker).count() != span || !is_partition_head(first_payload) {
            return None;
        }
        let leading_hole = match self.floor {
            Some(floor) if self.start_known => first != floor,
            _ => false,
        };
        if leading_hole {
            if !starts_with_sps(first_payload) {
                return None;
            }
            self.awaiting_keyframe = true;
        }
        let start = first;
        let timestamp = self.timestamp.take()?;
        self.finished = Some(timestamp);
        let packets = std::mem::take(&mut self.pending);
        self.marker = None;
        self.floor = Some(marker + 1);
        self.start_known = true;
        let unit = match depacketize(packets.range(start..=marker).map(|(_, payload)| payload.as_slice())) {
            Ok((data, keyframe)) => AccessUnit { data, timestamp, keyframe },
            Err(reason) => {
                self.awaiting_keyframe = true;
                return Some(Err(Gap::Malformed { timestamp, reason }));
            }
        };
        if unit.keyframe {
            self.awaiting_keyframe = false;
        }
        if self.awaiting_keyframe {
            return Some(Err(Gap::AwaitingKeyframe { timestamp }));
        }
        Some(Ok(unit))
    }
}

/// Whether a payload begins a NAL unit (anything but an FU-A continuation).
fn is_partition_head(payload: &[u8]) -> bool {
    match payload {
        [indicator, header, ..] if indicator & 0x1f == FU_A => header & 0x80 != 0,
        [_, ..] => true,
        [] => false,
    }
}

/// Whether a payload begins with a sequence parameter set (alone or first in a STAP-A).
fn starts_with_sps(payload: &[u8]) -> bool {
    const SPS: u8 = 7;
    match payload {
        [indicator, ..] if indicator & 0x1f == SPS => true,
        [indicator, _, _, nal, ..] if indicator & 0x1f == STAP_A => nal & 0x1f == SPS,
        _ => false,
    }
}

/// Joins a frame's payloads, in order, into Annex B; also says whether it holds an IDR slice.
fn depacketize<'a>(payloads: impl Iterator<Item = &'a [u8]>) -> Result<(Vec<u8>, bool), &'static str> {
    let mut out = Vec::new();
    let mut keyframe = false;
    let mut in_fragment = false;
    for payload in payloads {
        let Some(&indicator) = payload.first() else { return Err("empty payload") };
        match indicator & 0x1f {
            nal_type @ 1..=23 => {
                if in_fragment {
                    return Err("FU-A interrupted");
                }
                keyframe |= nal_type == IDR;
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(payload);
            }
            STAP_A => {
                if in_fragment {
                    return Err("FU-A interrupted");
                }
                let mut rest = &payload[1..];
                if rest.is_empty() {
                    return Err("empty STAP-A");
                }
                while !rest.is_empty() {
                    let [hi, lo, tail @ ..] = rest else { return Err("truncated STAP-A length") };
                    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                    if len == 0 || len > tail.len() {
                        return Err("STAP-A length beyond the payload");
                    }
                    let (nal, tail) = tail.split_at(len);
                    keyframe |= nal[0] & 0x1f == IDR;
                    out.extend_from_slice(&START_CODE);
                    out.extend_from_slice(nal);
                    rest = tail;
                }
            }
            FU_A => {
                let [_, header, data @ ..] = payload else { return Err("truncated FU-A") };
                let (start, end) = (header & 0x80 != 0, header & 0x40 != 0);
                if start == in_fragment {
                    return Err(if start { "FU-A restarted before its end" } else { "FU-A without its start" });
                }
                if start {
                    let nal_type = header & 0x1f;
                    keyframe |= nal_type == IDR;
                    out.extend_from_slice(&START_CODE);
                    out.push((indicator & 0xe0) | nal_type);
                }
                out.extend_from_slice(data);
                in_fragment = !end;
            }
            _ => return Err("unsupported packet type for packetization mode 1"),
        }
    }
    if in_fragment {
        return Err("FU-A without its end");
    }
    if out.is_empty() {
        return Err("no NAL units");
    }
    Ok((out, keyframe))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rtc::rtp::codec::h264::H264Payloader;
    use rtc::rtp::packetizer::Payloader;

    use super::*;
    use crate::media::h264::{Decoder, Encoder, EncoderConfig};
    use crate::media::pattern::PatternSource;
    use crate::media::stripe;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xaa];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR_NAL: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33, 0x44, 0x55, 0x66, 0x77];
    const P_NAL: &[u8] = &[0x41, 0x9a, 0x02, 0x03];

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|nal| START_CODE.iter().chain(nal.iter()).copied()).collect()
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x78];
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// Splits `nal` into FU-A fragments of at most `size` data bytes.
    fn fu_a(nal: &[u8], size: usize) -> Vec<Vec<u8>> {
        let chunks: Vec<&[u8]> = nal[1..].chunks(size).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut header = nal[0] & 0x1f;
                if i == 0 {
                    header |= 0x80;
                }
                if i == last {
                    header |= 0x40;
                }
                let mut out = vec![(nal[0] & 0xe0) | FU_A, header];
                out.extend_from_slice(chunk);
                out
            })
            .collect()
    }

    /// The packets of a keyframe: STAP-A with SPS and PPS, then the IDR in three fragments.
    fn keyframe_packets() -> Vec<Vec<u8>> {
        let mut packets = vec![stap_a(&[SPS, PPS])];
        packets.extend(fu_a(IDR_NAL, 3));
        packets
    }

    /// Pushes `packets` as one frame starting at `seq`, marker on the last; returns the results.
    fn push_frame(
        r: &mut Reassembler,
        seq: u16,
        ts: u32,
        packets: &[Vec<u8>],
        order: &[usize],
    ) -> Vec<Result<AccessUnit, Gap>> {
        order
            .iter()
            .filter_map(|&i| r.push(seq.wrapping_add(i as u16), ts, i == packets.len() - 1, &packets[i]))
            .collect()
    }

    #[test]
    fn keyframe_from_stap_a_and_fu_a_then_single_nal_frames() {
        let mut r = Reassembler::default();
        let key = keyframe_packets();
        let out = push_frame(&mut r, 100, 9000, &key, &[0, 1, 2, 3]);
        let expected = AccessUnit { data: annex_b(&[SPS, PPS, IDR_NAL]), timestamp: 9000, keyframe: true };
        assert_eq!(out, vec![Ok(expected)]);
        let out = push_frame(&mut r, 104, 12000, &[P_NAL.to_vec()], &[0]);
        assert_eq!(out, vec![Ok(AccessUnit { data: annex_b(&[P_NAL]), timestamp: 12000, keyframe: false })]);
    }

    #[test]
    fn frames_come_out_on_their_marker_without_waiting() {
        let mut r = Reassembler::default();
        let key = keyframe_packets();
        assert_eq!(r.push(1, 0, false, &key[0]), None);
        assert_eq!(r.push(2, 0, false, &key[1]), None);
        assert_eq!(r.push(3, 0, false, &key[2]), None);
        assert!(matches!(r.push(4, 0, true, &key[3]), Some(Ok(AccessUnit { keyframe: true, .. }))));
    }

    #[test]
    fn reordering_within_a_frame_is_repaired() {
        let mut r = Reassembler::default();
        let key = keyframe_packets();
        let out = push_frame(&mut r, 7, 0, &key, &[0, 2, 3, 1]);
        assert!(matches!(&out[..], [Ok(AccessUnit { keyframe: true, .. })]), "{out:?}");
        assert_eq!(out[0].as_ref().map(|u| u.data.clone()), Ok(annex_b(&[SPS, PPS, IDR_NAL])));
        // The marker first, too.
        let frags = fu_a(P_NAL, 1);
        let out = push_frame(&mut r, 11, 3000, &frags, &[2, 0, 1]);
        assert_eq!(out, vec![Ok(AccessUnit { data: annex_b(&[P_NAL]), timestamp: 3000, keyframe: false })]);
    }

    #[test]
    fn a_lost_fragment_is_a_gap_when_the_next_frame_starts_and_later_frames_wait_for_a_keyframe() {
        let mut r = Reassembler::default();
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
        assert!(matches!(&out[..], [Ok(AccessUnit { keyframe: true, .. })]), "{out:?}");
        assert!(matches!(r.push(14, 15000, true, P_NAL), Some(Ok(AccessUnit { keyframe: false, .. }))));
    }

    #[test]
    fn a_late_marker_of_a_given_up_frame_does_not_cut_the_next_one_short() {
        let mut r = Reassembler::default();
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
            Some(Ok(AccessUnit { keyframe: true, timestamp: 6000, .. }))
        ));
    }

    #[test]
    fn a_whole_lost_frame_is_a_gap() {
        let mut r = Reassembler::default();
        push_frame(&mut r, 1, 0, &keyframe_packets(), &[0, 1, 2, 3]);
        assert!(matches!(r.push(5, 3000, true, P_NAL), Some(Ok(_))));
        // Sequence 6 (frame 6000) is lost entirely; frame 9000 is whole but follows the hole.
        assert_eq!(r.push(7, 9000, true, P_NAL), None);
        assert_eq!(r.push(8, 12000, true, P_NAL), Some(Err(Gap::Incomplete { timestamp: 9000 })));
        assert_eq!(r.push(9, 15000, true, P_NAL), Some(Err(Gap::AwaitingKeyframe { timestamp: 15000 })));
        // Sequence 10 is lost too; the keyframe after it starts with SPS, so it needs no wait.
        let out = push_frame(&mut r, 11, 18000, &keyframe_packets(), &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AccessUnit { keyframe: true, timestamp: 18000, .. })]), "{out:?}");
        assert!(matches!(r.push(15, 21000, true, P_NAL), Some(Ok(_))));
    }

    #[test]
    fn the_stream_starts_waiting_for_a_keyframe() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(50, 0, true, P_NAL), Some(Err(Gap::AwaitingKeyframe { timestamp: 0 })));
        let out = push_frame(&mut r, 51, 3000, &keyframe_packets(), &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AccessUnit { keyframe: true, .. })]));
        // A keyframe that heals a gap is delivered rather than the gap.
        let mut r = Reassembler::default();
        push_frame(&mut r, 1, 0, &keyframe_packets(), &[0, 1, 2, 3]);
        assert_eq!(r.push(5, 3000, false, P_NAL), None);
        let single_packet_key = stap_a(&[SPS, PPS, IDR_NAL]);
        assert!(matches!(r.push(7, 6000, true, &single_packet_key), Some(Ok(AccessUnit { keyframe: true, .. }))));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut r = Reassembler::default();
        let key = keyframe_packets();
        let out = push_frame(&mut r, 65_534, 0, &key, &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AccessUnit { keyframe: true, .. })]), "{out:?}");
        assert!(matches!(r.push(2, 3000, true, P_NAL), Some(Ok(_))));
        // A restarted stream far away in sequence space is picked up again at a keyframe.
        let out = push_frame(&mut r, 30_000, 6000, &key, &[0, 1, 2, 3]);
        assert!(matches!(&out[..], [Ok(AccessUnit { keyframe: true, .. })]), "{out:?}");
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x78],
            vec![0x78, 0x00],
            vec![0x78, 0x00, 0x09, 0x67],
            vec![0x78, 0x00, 0x00],
            vec![0x7c],
            vec![0x7c, 0x05, 0x01],
            vec![0x7c, 0x45, 0x01],
            vec![0x79, 0x00, 0x01],
            vec![0x60],
            vec![0x7f, 0x01],
        ];
        for (i, payload) in cases.iter().enumerate() {
            let mut r = Reassembler::default();
            push_frame(&mut r, 1, 0, &keyframe_packets(), &[0, 1, 2, 3]);
            let out = r.push(5, 3000, true, payload);
            assert!(matches!(out, Some(Err(Gap::Malformed { .. })) | None), "case {i}: {out:?}");
        }
        // An FU-A start that never ends inside the frame.
        let mut r = Reassembler::default();
        let mut frags = fu_a(IDR_NAL, 3);
        frags.pop();
        frags.push(P_NAL.to_vec());
        let out = push_frame(&mut r, 1, 0, &frags, &[0, 1, 2]);
        assert!(matches!(&out[..], [Err(Gap::Malformed { .. })]), "{out:?}");
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut r = Reassembler::default();
        let key = keyframe_packets();
        let out = push_frame(&mut r, 1, 0, &key, &[0, 1, 1, 2, 3, 3]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(r.push(4, 0, true, &key[3]), None);
    }

    /// Real encoder output through the `rtc` crate's packetizer, with loss and recovery.
    #[test]
    fn real_encoder_output_through_the_rtc_packetizer() {
        let mut source = PatternSource::new(640, 480, 30).expect("fits");
        let mut encoder =
            Encoder::new(EncoderConfig { bitrate_bps: 1_000_000, ..EncoderConfig::default() }).expect("encoder");
        let mut decoder = Decoder::new().expect("decoder");
        let mut payloader = H264Payloader::default();
        let mut r = Reassembler::default();
        let mut seq = 40_000u16;
        let (mut decoded, mut gaps) = (0, 0);
        for i in 0..90u32 {
            if i == 50 || i == 53 {
                encoder.force_keyframe(); // The keyframe request a gap leads to.
            }
            let Some(frame) = encoder.encode(&source.next_frame(1 + u64::from(i))).expect("encodes") else {
                continue;
            };
            let payloads = payloader.payload(1200, &Bytes::from(frame.data.clone())).expect("packetizes");
            let ts = i * 3000;
            let last = payloads.len() - 1;
            for (k, payload) in payloads.iter().enumerate() {
                let this = seq;
                seq = seq.wrapping_add(1);
                // Frame 40 loses its second packet (or its only one); frame 52 loses its last.
                if (i == 40 && k == last.min(1)) || (i == 52 && k == last) {
                    continue;
                }
                match r.push(this, ts, k == last, payload) {
                    Some(Ok(unit)) => {
                        assert_eq!(unit.keyframe, frame.keyframe);
                        assert_eq!(unit.timestamp, ts);
                        if i <= 40 || i >= 50 {
                            assert_eq!(unit.data, frame.data, "frame {i} reassembled exactly");
                        }
                        let picture = decoder.decode(&unit.data).expect("decodes").expect("a picture");
                        assert_eq!(stripe::read(&picture).map(|s| s.number), Ok(i));
                        decoded += 1;
                    }
                    Some(Err(gap)) => {
                        assert!((40..=52).contains(&i) || i == 53, "unexpected {gap:?} at frame {i}");
                        gaps += 1;
                    }
                    None => {}
                }
            }
        }
        // Frames 40..=49 are lost (40 itself, then waiting for the keyframe at 50), and so is 52
        // (53 is a keyframe, so it is delivered). A gap report can stand for a single-packet
        // frame dropped with it, so only the lost frames count exactly.
        assert!((1..=11).contains(&gaps), "{gaps} gap reports");
        assert_eq!(decoded, 90 - 11);
    }

    /// Random loss, reordering and duplication of real packets: whatever gets through is never a
    /// frame with packets missing in its middle or end, and frames flow again after keyframes.
    #[test]
    fn random_damage_never_yields_a_broken_frame() {
        let mut source = PatternSource::new(320, 240, 30).expect("fits");
        let mut encoder =
            Encoder::new(EncoderConfig { bitrate_bps: 600_000, ..EncoderConfig::default() }).expect("encoder");
        let mut payloader = H264Payloader::default();
        let mut frames = Vec::new();
        let mut packets = Vec::new();
        let mut seq = 65_000u16;
        for i in 0..150u32 {
            if i % 15 == 0 {
                encoder.force_keyframe();
            }
            let Some(frame) = encoder.encode(&source.next_frame(1 + u64::from(i))).expect("encodes") else {
                continue;
            };
            let payloads = payloader.payload(300, &Bytes::from(frame.data.clone())).expect("packetizes");
            let last = payloads.len() - 1;
            for (k, payload) in payloads.into_iter().enumerate() {
                packets.push((seq, i * 3000, k == last, payload.to_vec()));
                seq = seq.wrapping_add(1);
            }
            frames.push((i * 3000, frame.data));
        }
        for seed in 1..=10u64 {
            let mut next_random = crate::media::test_rng::xorshift(seed);
            // Damage only the first two thirds, so the end shows recovery.
            let damaged = packets.len() * 2 / 3;
            let mut order: Vec<(u64, usize)> = Vec::new();
            for index in 0..packets.len() {
                if index < damaged && next_random(100) < 3 {
                    continue;
                }
                let jitter = if index < damaged { next_random(4) } else { 0 };
                order.push((index as u64 * 2 + jitter, index));
                if index < damaged && next_random(100) < 2 {
                    order.push((index as u64 * 2 + next_random(6), index));
                }
            }
            order.sort();
            let mut r = Reassembler::default();
            let mut delivered = Vec::new();
            for (_, index) in order {
                let (seq, ts, marker, payload) = &packets[index];
                if let Some(Ok(unit)) = r.push(*seq, *ts, *marker, payload) {
                    let original = &frames.iter().find(|(t, _)| *t == unit.timestamp).expect("a sent frame").1;
                    assert!(original.ends_with(&unit.data), "seed {seed}: frame {} is damaged", unit.timestamp);
                    delivered.push(unit.timestamp);
                }
            }
            assert!(delivered.windows(2).all(|w| w[0] < w[1]), "seed {seed}: frames out of order");
            let tail: Vec<u32> = frames.iter().rev().take(10).map(|(t, _)| *t).collect();
            assert!(tail.iter().all(|t| delivered.contains(t)), "seed {seed}: no recovery");
        }
    }
}

//! The H.264 RTP payload format in packetization mode 1 (RFC 6184: single NAL unit, STAP-A and
//! FU-A packets), as the frame reassembler (`rtp_frames`) uses it: where a frame can begin, and
//! how a frame's payloads join into an Annex B access unit for the decoder. Pure parsing: no
//! OpenH264, so it is built whether or not the `h264` feature is. Network input never panics
//! here.

use super::rtp_frames::FrameStart;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
const IDR: u8 = 5;
const SPS: u8 = 7;

/// Where a payload stands in its frame: an FU-A continuation cannot begin one; a payload that
/// begins with a sequence parameter set (alone or first in a STAP-A) begins a keyframe, so it is
/// certainly its frame's first; anything else may be.
pub fn frame_start(payload: &[u8]) -> FrameStart {
    match payload {
        [] => FrameStart::No,
        [indicator, header, ..] if indicator & 0x1f == FU_A && header & 0x80 == 0 => FrameStart::No,
        [indicator, ..] if indicator & 0x1f == SPS => FrameStart::Yes,
        [indicator, _, _, nal, ..] if indicator & 0x1f == STAP_A && nal & 0x1f == SPS => FrameStart::Yes,
        _ => FrameStart::Maybe,
    }
}

/// Joins a frame's payloads, in order, into Annex B; also says whether it holds an IDR slice.
pub fn depacketize<'a>(payloads: impl Iterator<Item = &'a [u8]>) -> Result<(Vec<u8>, bool), &'static str> {
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

/// Made-up H.264 payloads for the tests of the frame logic and of this payload format.
#[cfg(test)]
pub(crate) mod test_packets {
    use super::{FU_A, START_CODE};

    pub(crate) const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xaa];
    pub(crate) const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    pub(crate) const IDR_NAL: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33, 0x44, 0x55, 0x66, 0x77];
    pub(crate) const P_NAL: &[u8] = &[0x41, 0x9a, 0x02, 0x03];

    pub(crate) fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|nal| START_CODE.iter().chain(nal.iter()).copied()).collect()
    }

    pub(crate) fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x78];
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// Splits `nal` into FU-A fragments of at most `size` data bytes.
    pub(crate) fn fu_a(nal: &[u8], size: usize) -> Vec<Vec<u8>> {
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
    pub(crate) fn keyframe_packets() -> Vec<Vec<u8>> {
        let mut packets = vec![stap_a(&[SPS, PPS])];
        packets.extend(fu_a(IDR_NAL, 3));
        packets
    }
}

#[cfg(test)]
mod tests {
    use super::test_packets::{annex_b, fu_a, keyframe_packets, stap_a, IDR_NAL, PPS, P_NAL, SPS};
    use super::*;
    use crate::media::rtp_frames::{push_frame, AssembledFrame, Gap, Reassembler};
    use crate::media::video_codec::VideoCodec;

    #[test]
    fn keyframe_from_stap_a_and_fu_a_then_single_nal_frames() {
        let mut r = Reassembler::new(VideoCodec::H264);
        let key = keyframe_packets();
        let out = push_frame(&mut r, 100, 9000, &key, &[0, 1, 2, 3]);
        let expected = AssembledFrame { data: annex_b(&[SPS, PPS, IDR_NAL]), timestamp: 9000, keyframe: true };
        assert_eq!(out, vec![Ok(expected)]);
        let out = push_frame(&mut r, 104, 12000, &[P_NAL.to_vec()], &[0]);
        assert_eq!(out, vec![Ok(AssembledFrame { data: annex_b(&[P_NAL]), timestamp: 12000, keyframe: false })]);
    }

    #[test]
    fn where_frames_can_start() {
        assert_eq!(frame_start(&[]), FrameStart::No);
        assert_eq!(frame_start(&fu_a(P_NAL, 1)[1]), FrameStart::No, "an FU-A continuation");
        assert_eq!(frame_start(&fu_a(P_NAL, 1)[0]), FrameStart::Maybe, "an FU-A start");
        assert_eq!(frame_start(P_NAL), FrameStart::Maybe);
        assert_eq!(frame_start(SPS), FrameStart::Yes);
        assert_eq!(frame_start(&stap_a(&[SPS, PPS])), FrameStart::Yes);
        assert_eq!(frame_start(&stap_a(&[PPS, SPS])), FrameStart::Maybe);
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
            let mut r = Reassembler::new(VideoCodec::H264);
            push_frame(&mut r, 1, 0, &keyframe_packets(), &[0, 1, 2, 3]);
            let out = r.push(5, 3000, true, payload);
            assert!(matches!(out, Some(Err(Gap::Malformed { .. })) | None), "case {i}: {out:?}");
        }
        // An FU-A start that never ends inside the frame.
        let mut r = Reassembler::new(VideoCodec::H264);
        let mut frags = fu_a(IDR_NAL, 3);
        frags.pop();
        frags.push(P_NAL.to_vec());
        let out = push_frame(&mut r, 1, 0, &frags, &[0, 1, 2]);
        assert!(matches!(&out[..], [Err(Gap::Malformed { .. })]), "{out:?}");
    }

    /// Tests on OpenH264's output, when the `h264` feature builds it in.
    #[cfg(feature = "h264")]
    mod encoded {
        use bytes::Bytes;
        use rtc::rtp::codec::h264::H264Payloader;
        use rtc::rtp::packetizer::Payloader;

        use crate::media::h264::{Decoder, Encoder};
        use crate::media::pattern::PatternSource;
        use crate::media::rtp_frames::Reassembler;
        use crate::media::stripe;
        use crate::media::video_codec::{EncoderConfig, VideoCodec};

        /// Real encoder output through the `rtc` crate's packetizer, with loss and recovery.
        #[test]
        fn real_encoder_output_through_the_rtc_packetizer() {
            let mut source = PatternSource::new(640, 480, 30).expect("fits");
            let mut encoder =
                Encoder::new(EncoderConfig { bitrate_bps: 1_000_000, ..EncoderConfig::default() }).expect("encoder");
            let mut decoder = Decoder::new().expect("decoder");
            let mut payloader = H264Payloader::default();
            let mut r = Reassembler::new(VideoCodec::H264);
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
                let mut r = Reassembler::new(VideoCodec::H264);
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
}

//! The VP8 RTP payload format (RFC 7741), as the frame reassembler (`rtp_frames`) uses it: the
//! payload descriptor in front of every packet's data, where a frame begins (S set in partition
//! 0), and how a frame's payloads join into the plain VP8 frame the decoder takes. Pure parsing,
//! no libvpx; network input never panics here.

use super::rtp_frames::FrameStart;

/// The start code every VP8 key frame carries after its 3-byte frame tag (RFC 6386, 9.1).
const KEY_FRAME_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];
/// A key frame's tag, start code, width and height.
const KEY_FRAME_HEADER: usize = 10;

/// The VP8 payload descriptor at the front of a packet.
///
/// ```text
///       0 1 2 3 4 5 6 7
///      +-+-+-+-+-+-+-+-+
///      |X|R|N|S|R| PID |  required
///      +-+-+-+-+-+-+-+-+
///   X: |I|L|T|K| RSV   |  if X
///      +-+-+-+-+-+-+-+-+
///   I: |M| PictureID   |  if I; M says a second byte follows (15 bits)
///      +-+-+-+-+-+-+-+-+
///   L: |   TL0PICIDX   |  if L
///      +-+-+-+-+-+-+-+-+
/// T/K: |TID|Y| KEYIDX  |  if T or K
///      +-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// S: the packet's data begins a VP8 partition.
    pub start: bool,
    /// PID: the partition the data begins or continues.
    pub partition: u8,
    /// The picture ID, 7 or 15 bits, when the sender includes it.
    pub picture_id: Option<u16>,
    /// Bytes the descriptor takes; the VP8 data follows.
    pub len: usize,
}

/// Reads the payload descriptor at the front of `payload`.
pub fn parse_descriptor(payload: &[u8]) -> Result<Descriptor, &'static str> {
    let truncated = "truncated VP8 payload descriptor";
    let &first = payload.first().ok_or("empty VP8 payload")?;
    let mut descriptor = Descriptor { start: first & 0x10 != 0, partition: first & 0x07, picture_id: None, len: 1 };
    if first & 0x80 == 0 {
        return Ok(descriptor);
    }
    let &extension = payload.get(1).ok_or(truncated)?;
    descriptor.len = 2;
    if extension & 0x80 != 0 {
        let &high = payload.get(2).ok_or(truncated)?;
        if high & 0x80 != 0 {
            let &low = payload.get(3).ok_or(truncated)?;
            descriptor.picture_id = Some(u16::from_be_bytes([high & 0x7f, low]));
            descriptor.len += 2;
        } else {
            descriptor.picture_id = Some(u16::from(high));
            descriptor.len += 1;
        }
    }
    if extension & 0x40 != 0 {
        descriptor.len += 1;
    }
    if extension & 0x30 != 0 {
        descriptor.len += 1;
    }
    if payload.len() < descriptor.len {
        return Err(truncated);
    }
    Ok(descriptor)
}

/// Where a payload stands in its frame: a frame's first packet, and only it, has S set in
/// partition 0. A payload whose descriptor cannot be read may begin one, so that it reaches
/// [`depacketize`] and is reported as malformed.
pub fn frame_start(payload: &[u8]) -> FrameStart {
    match parse_descriptor(payload) {
        Ok(Descriptor { start: true, partition: 0, .. }) => FrameStart::Yes,
        Ok(_) => FrameStart::No,
        Err(_) => FrameStart::Maybe,
    }
}

/// Joins a frame's payloads, in order and without their descriptors, into one VP8 frame; also
/// says whether it is a key frame (the P bit of the frame tag, the first data byte, is 0).
pub fn depacketize<'a>(payloads: impl Iterator<Item = &'a [u8]>) -> Result<(Vec<u8>, bool), &'static str> {
    let mut out = Vec::new();
    let mut first: Option<Descriptor> = None;
    let mut partition = 0;
    for payload in payloads {
        let descriptor = parse_descriptor(payload)?;
        let data = &payload[descriptor.len..];
        if data.is_empty() {
            return Err("VP8 payload without data");
        }
        match first {
            None => {
                if !descriptor.start || descriptor.partition != 0 {
                    return Err("VP8 frame does not begin at the start of partition 0");
                }
                first = Some(descriptor);
            }
            Some(head) => {
                if descriptor.picture_id != head.picture_id {
                    return Err("VP8 picture ID changes within a frame");
                }
                if descriptor.partition < partition || (descriptor.start && descriptor.partition == 0) {
                    return Err("VP8 partitions out of order");
                }
            }
        }
        partition = descriptor.partition;
        out.extend_from_slice(data);
    }
    let Some(&tag) = out.first() else { return Err("no VP8 data") };
    let keyframe = tag & 0x01 == 0;
    if keyframe && (out.len() < KEY_FRAME_HEADER || out[3..6] != KEY_FRAME_START_CODE) {
        return Err("VP8 key frame without its start code");
    }
    Ok((out, keyframe))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rtc::rtp::codec::vp8::Vp8Payloader;
    use rtc::rtp::packetizer::Payloader;

    use super::*;
    use crate::media::pattern::PatternSource;
    use crate::media::rtp_frames::{AssembledFrame, Gap, Reassembler};
    use crate::media::stripe;
    use crate::media::video_codec::{EncodedFrame, EncoderConfig, VideoCodec};
    use crate::media::vp8::{Decoder, Encoder};

    /// The smallest data a key frame can have: tag, start code, 16x16.
    const KEY_DATA: &[u8] = &[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00, 0xaa];
    const DELTA_DATA: &[u8] = &[0x31, 0x01, 0x00, 0x55, 0x66];

    /// A packet: descriptor with a 7-bit picture ID, then `data`.
    fn packet(start: bool, picture_id: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | if start { 0x10 } else { 0 }, 0x80, picture_id & 0x7f];
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn descriptors_of_every_shape() {
        let parse = |bytes: &[u8]| parse_descriptor(bytes);
        assert_eq!(parse(&[0x10, 0xaa]), Ok(Descriptor { start: true, partition: 0, picture_id: None, len: 1 }));
        assert_eq!(parse(&[0x03, 0xaa]), Ok(Descriptor { start: false, partition: 3, picture_id: None, len: 1 }));
        // X with a 7-bit and a 15-bit picture ID.
        assert_eq!(parse(&[0x90, 0x80, 0x05, 0xaa]).map(|d| (d.picture_id, d.len)), Ok((Some(5), 3)));
        assert_eq!(parse(&[0x90, 0x80, 0x81, 0x02, 0xaa]).map(|d| (d.picture_id, d.len)), Ok((Some(0x102), 4)));
        // X with I, L, T and K.
        assert_eq!(
            parse(&[0x90, 0xf0, 0x81, 0x02, 0x07, 0x40, 0xaa]).map(|d| (d.picture_id, d.len)),
            Ok((Some(0x102), 6))
        );
        // X with L alone, with K alone, with nothing.
        assert_eq!(parse(&[0x90, 0x40, 0x07, 0xaa]).map(|d| d.len), Ok(3));
        assert_eq!(parse(&[0x90, 0x10, 0x07, 0xaa]).map(|d| d.len), Ok(3));
        assert_eq!(parse(&[0x90, 0x00, 0xaa]).map(|d| (d.picture_id, d.len)), Ok((None, 2)));
        for truncated in
            [&[][..], &[0x80], &[0x80, 0x80], &[0x80, 0x80, 0x80], &[0x80, 0x60, 0x01], &[0x80, 0xf0, 0x81, 0x02, 0x07]]
        {
            assert!(parse(truncated).is_err(), "{truncated:?}");
        }
    }

    #[test]
    fn frames_start_at_s_in_partition_0() {
        assert_eq!(frame_start(&packet(true, 1, DELTA_DATA)), FrameStart::Yes);
        assert_eq!(frame_start(&packet(false, 1, DELTA_DATA)), FrameStart::No);
        assert_eq!(frame_start(&[0x11, 0xaa]), FrameStart::No, "S in partition 1");
        assert_eq!(frame_start(&[0x80]), FrameStart::Maybe, "unreadable");
    }

    #[test]
    fn payloads_join_without_descriptors_and_key_frames_are_recognised() {
        let (key_a, key_b) = KEY_DATA.split_at(4);
        let packets = [packet(true, 9, key_a), packet(false, 9, key_b)];
        let joined = depacketize(packets.iter().map(Vec::as_slice));
        assert_eq!(joined, Ok((KEY_DATA.to_vec(), true)));
        let joined = depacketize([&[0x10u8, 0x31, 0x01][..], &[0x00, 0x00, 0x55][..]].into_iter());
        assert_eq!(joined, Ok((vec![0x31, 0x01, 0x00, 0x55], false)));

        let malformed: Vec<Vec<Vec<u8>>> = vec![
            vec![],
            vec![vec![0x10]],
            vec![packet(false, 1, DELTA_DATA)],
            vec![packet(true, 1, DELTA_DATA), packet(false, 2, DELTA_DATA)],
            vec![packet(true, 1, DELTA_DATA), packet(true, 1, DELTA_DATA)],
            vec![vec![0x12, 0xaa], vec![0x01, 0xaa]],
            vec![packet(true, 1, &KEY_DATA[..9])],
            vec![packet(true, 1, &[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2b, 0x10, 0x00, 0x10, 0x00])],
            vec![packet(true, 1, DELTA_DATA), vec![0x80]],
        ];
        for (i, packets) in malformed.iter().enumerate() {
            let result = depacketize(packets.iter().map(Vec::as_slice));
            assert!(result.is_err(), "case {i}: {result:?}");
        }
    }

    /// A packet as sent: sequence number, timestamp, marker and payload.
    type SentPacket = (u16, u32, bool, Vec<u8>);

    /// Encodes `count` pattern frames at 640x480 and packetizes them with the `rtc` crate's
    /// payloader (picture IDs on, MTU 1200), forcing keyframes at `keyframes_at`. Returns the
    /// frames and their packets as (seq, timestamp, marker, payload); frame `n` has timestamp
    /// `n * 3000`.
    fn encoded_stream(count: u32, keyframes_at: &[u32], first_seq: u16) -> (Vec<EncodedFrame>, Vec<SentPacket>) {
        let mut source = PatternSource::new(640, 480, 30).expect("fits");
        let mut encoder =
            Encoder::new(EncoderConfig { bitrate_bps: 1_000_000, ..EncoderConfig::default() }).expect("encoder");
        let mut payloader = Vp8Payloader::default();
        payloader.enable_picture_id = true;
        let (mut frames, mut packets) = (Vec::new(), Vec::new());
        let mut seq = first_seq;
        for i in 0..count {
            if keyframes_at.contains(&i) {
                encoder.force_keyframe();
            }
            let Some(frame) = encoder.encode(&source.next_frame(1_000_000 + u64::from(i) * 33_333)).expect("encodes")
            else {
                continue;
            };
            // Small packets, so that even a small keyframe spans several.
            let payloads = payloader.payload(300, &Bytes::from(frame.data.clone())).expect("packetizes");
            let last = payloads.len() - 1;
            for (k, payload) in payloads.into_iter().enumerate() {
                assert!(payload.len() <= 300);
                packets.push((seq, i * 3000, k == last, payload.to_vec()));
                seq = seq.wrapping_add(1);
            }
            frames.push(frame);
        }
        (frames, packets)
    }

    /// libvpx's frames through the `rtc` payloader come back exactly; a lost packet is a gap,
    /// the frames after it are dropped until the keyframe it leads to, and packets reordered
    /// within a frame are put back in order.
    #[test]
    fn real_encoder_output_through_the_rtc_payloader() {
        let (frames, packets) = encoded_stream(60, &[30], 65_000);
        let numbers: Vec<u32> = frames.iter().map(|f| f.number).collect();
        assert!(packets.iter().filter(|p| p.1 == 0).count() >= 2, "the keyframe takes several packets");
        // Frame 20 loses its first packet, which carries the S bit; frame 40 arrives in reverse.
        let frame_packets =
            |n: u32| -> Vec<usize> { (0..packets.len()).filter(|&i| packets[i].1 == n * 3000).collect() };
        let lost = frame_packets(20)[0];
        let reversed = frame_packets(40);
        assert!(reversed.len() > 1, "frame 40 takes several packets");
        let mut order: Vec<usize> = (0..packets.len()).filter(|&i| i != lost).collect();
        let at = order.iter().position(|&i| i == reversed[0]).expect("frame 40 was sent");
        order.splice(at..at + reversed.len(), reversed.iter().rev().copied());

        let mut r = Reassembler::new(VideoCodec::Vp8);
        let mut decoder = Decoder::new().expect("decoder");
        let (mut delivered, mut gaps) = (Vec::new(), Vec::new());
        for &i in &order {
            let (seq, ts, marker, payload) = &packets[i];
            match r.push(*seq, *ts, *marker, payload) {
                Some(Ok(frame)) => {
                    let sent = frames.iter().find(|f| f.number * 3000 == frame.timestamp).expect("a sent frame");
                    assert_eq!((&frame.data, frame.keyframe), (&sent.data, sent.keyframe), "frame {}", sent.number);
                    let picture = decoder.decode(&frame.data).expect("decodes").expect("a picture");
                    assert_eq!(stripe::read(&picture).map(|s| s.number), Ok(sent.number));
                    delivered.push(sent.number);
                }
                Some(Err(gap)) => gaps.push(gap),
                None => {}
            }
        }
        assert_eq!(gaps.first(), Some(&Gap::Incomplete { timestamp: 20 * 3000 }), "{gaps:?}");
        assert!(gaps[1..].iter().all(|gap| matches!(gap, Gap::AwaitingKeyframe { .. })), "{gaps:?}");
        let dropped = numbers.iter().filter(|n| (20..30).contains(*n)).count();
        assert_eq!(gaps.len(), dropped, "the lost frame and those after it until the keyframe: {gaps:?}");
        let expected: Vec<u32> = numbers.iter().copied().filter(|n| !(20..30).contains(n)).collect();
        assert_eq!(delivered, expected);
    }

    /// Random loss, reordering and duplication of real packets: whatever gets through is never a
    /// frame with packets missing, and frames flow again after keyframes.
    #[test]
    fn random_damage_never_yields_a_broken_frame() {
        let keyframes: Vec<u32> = (0..90).step_by(15).collect();
        let (frames, packets) = encoded_stream(90, &keyframes, 100);
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
            let mut r = Reassembler::new(VideoCodec::Vp8);
            let mut delivered = Vec::new();
            for (_, index) in order {
                let (seq, ts, marker, payload) = &packets[index];
                if let Some(Ok(frame)) = r.push(*seq, *ts, *marker, payload) {
                    let sent = frames.iter().find(|f| f.number * 3000 == frame.timestamp).expect("a sent frame");
                    assert_eq!(frame.data, sent.data, "seed {seed}: frame {} is damaged", sent.number);
                    delivered.push(frame.timestamp);
                }
            }
            assert!(delivered.windows(2).all(|w| w[0] < w[1]), "seed {seed}: frames out of order");
            let tail: Vec<u32> = frames.iter().rev().take(10).map(|f| f.number * 3000).collect();
            assert!(tail.iter().all(|t| delivered.contains(t)), "seed {seed}: no recovery");
        }
    }

    proptest::proptest! {
        /// Garbage payloads never panic the parser or the reassembler, and whatever the
        /// reassembler hands out went through the payload format's checks.
        #[test]
        fn garbage_payloads_are_errors_not_panics(
            packets in proptest::collection::vec(
                (0u16..12, 0u32..3, proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..24)),
                0..40,
            ),
        ) {
            let mut r = Reassembler::new(VideoCodec::Vp8);
            for (seq, ts, marker, payload) in &packets {
                let _ = parse_descriptor(payload);
                let _ = frame_start(payload);
                if let Some(Ok(AssembledFrame { data, keyframe, .. })) = r.push(*seq, ts * 3000, *marker, payload) {
                    proptest::prop_assert!(!data.is_empty());
                    proptest::prop_assert_eq!(keyframe, data[0] & 1 == 0);
                }
            }
            let _ = depacketize(packets.iter().map(|p| p.3.as_slice()));
        }
    }
}

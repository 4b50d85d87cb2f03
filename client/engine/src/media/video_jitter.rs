//! The video jitter buffer: the stranger's RTP video packets are put back in sequence order
//! before reassembly, and a missing packet is waited for (NACK asks the sender to send it again)
//! for a time that follows the round-trip time, holding the frames behind it, before it is given
//! up. Nothing is delayed while no packet is missing: a packet in sequence goes straight to the
//! [`Reassembler`] of the stream's codec, which hands out each frame on its marker. A given-up packet becomes a
//! [`Gap`], and the reassembler then drops frames until a keyframe, so the caller asks for one.
//! Time is an input (`push(now, ..)`, `poll(now)`, `next_deadline()`): no clock, no IO. Network
//! input never panics here, and what is held is bounded whatever arrives.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::rtp_frames::{AssembledFrame, Gap, Reassembler};
use super::video_codec::VideoCodec;

/// Held packets span at most this many sequence numbers (a few MB of payload at most); a packet
/// further ahead than that gives up every missing one before it at once.
const MAX_SPAN: i64 = 2048;
/// A packet this far behind the next expected one means the stream restarted.
const RESTART_DISTANCE: i64 = 3000;

/// How long a missing packet is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// How long after a loss shows the receiver may send its NACK. webrtc-rs's NACK generator
    /// lists missing packets once per 100 ms cycle, so a retransmission can come that much plus
    /// a round trip after the loss was noticed.
    pub nack_delay: Duration,
    /// The shortest wait, whatever the round-trip time.
    pub min_wait: Duration,
    /// The longest wait: past it a freeze costs more than the keyframe that ends it.
    pub max_wait: Duration,
    /// Round-trip time assumed until one is measured.
    pub initial_rtt: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            nack_delay: Duration::from_millis(100),
            min_wait: Duration::from_millis(40),
            max_wait: Duration::from_millis(200),
            initial_rtt: Duration::from_millis(20),
        }
    }
}

impl JitterConfig {
    /// The wait for a missing packet at round-trip time `rtt`: the NACK's delay, two round trips
    /// (one for the retransmission, one of margin for a slow one) and 10 ms, within the bounds.
    pub fn wait_for(&self, rtt: Duration) -> Duration {
        (self.nack_delay + rtt * 2 + Duration::from_millis(10)).clamp(self.min_wait, self.max_wait.max(self.min_wait))
    }
}

/// One packet held behind a missing one.
#[derive(Debug, Clone)]
struct Held {
    arrived: Instant,
    timestamp: u32,
    marker: bool,
    payload: Vec<u8>,
}

/// Reorders RTP video packets, waits for retransmissions and reassembles frames. See the module
/// documentation.
#[derive(Debug, Clone)]
pub struct VideoJitter {
    config: JitterConfig,
    wait: Duration,
    reassembler: Reassembler,
    /// Newest extended sequence number seen, the reference for unwrapping.
    newest: Option<i64>,
    /// Extended sequence number of the next packet to hand to the reassembler.
    next: Option<i64>,
    /// Packets that arrived after a missing one, by extended sequence number.
    held: BTreeMap<i64, Held>,
    out: VecDeque<Result<AssembledFrame, Gap>>,
    recovered: u64,
    given_up: u64,
    late: u64,
}

impl VideoJitter {
    /// A jitter buffer for a stream of `codec`, waiting for its first keyframe.
    pub fn new(config: JitterConfig, codec: VideoCodec) -> Self {
        Self {
            config,
            wait: config.wait_for(config.initial_rtt),
            reassembler: Reassembler::new(codec),
            newest: None,
            next: None,
            held: BTreeMap::new(),
            out: VecDeque::new(),
            recovered: 0,
            given_up: 0,
            late: 0,
        }
    }

    pub fn codec(&self) -> VideoCodec {
        self.reassembler.codec()
    }

    /// Takes a new round-trip time measurement; the wait for missing packets follows it.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.wait = self.config.wait_for(rtt);
    }

    /// How long a missing packet is waited for now.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Packets that filled a hole (retransmitted or reordered) so far.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// Packets given up on so far.
    pub fn given_up(&self) -> u64 {
        self.given_up
    }

    /// Packets that came after they were handed on or given up (duplicates or too late).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// How many packets are held behind a missing one.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes one RTP packet that arrived at `now`. Frames and gaps come out of [`Self::poll`].
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) {
        let ext = match self.newest {
            None => i64::from(seq),
            Some(newest) => newest + i64::from(seq.wrapping_sub(newest as u16) as i16),
        };
        let next = *self.next.get_or_insert(ext);
        if ext < next {
            if next - ext > RESTART_DISTANCE {
                self.restart();
                self.push(now, seq, timestamp, marker, payload);
            }
            // Otherwise it was handed on or given up already.
            self.late += 1;
            return;
        }
        if ext - next >= MAX_SPAN {
            // So far ahead that whatever is missing before it will not come in time.
            self.give_up_until(ext);
        }
        self.newest = Some(self.newest.map_or(ext, |newest| newest.max(ext)));
        if self.held.is_empty() && Some(ext) == self.next {
            self.next = Some(ext + 1);
            self.reassemble(ext, timestamp, marker, payload);
            return;
        }
        if self.held.contains_key(&ext) {
            return;
        }
        if self.held.last_key_value().is_some_and(|(&last, _)| ext < last) {
            self.recovered += 1;
        }
        self.held.insert(ext, Held { arrived: now, timestamp, marker, payload: payload.to_vec() });
        self.release();
    }

    /// Gives up missing packets whose wait ended by `now`, then returns the next finished frame
    /// or [`Gap`], in order. Call it until it returns `None` after every push and at every
    /// deadline.
    pub fn poll(&mut self, now: Instant) -> Option<Result<AssembledFrame, Gap>> {
        while self.out.is_empty() && self.next_deadline().is_some_and(|deadline| deadline <= now) {
            let first_held = self.held.keys().next().copied();
            if let Some(first_held) = first_held {
                self.give_up_until(first_held);
            }
        }
        self.out.pop_front()
    }

    /// When the oldest wait for a missing packet ends, if one is missing.
    pub fn next_deadline(&self) -> Option<Instant> {
        // The hole was noticed when the first packet behind it arrived.
        self.held.values().map(|held| held.arrived).min().map(|noticed| noticed + self.wait)
    }

    /// Gives up every missing packet before extended sequence number `until`, handing on the
    /// held ones in order.
    fn give_up_until(&mut self, until: i64) {
        let Some(mut next) = self.next else { return };
        while next < until {
            match self.held.remove(&next) {
                Some(held) => self.reassemble(next, held.timestamp, held.marker, &held.payload),
                None => {
                    let missing = self.held.range(next..until).next().map_or(until, |(&k, _)| k) - next;
                    self.given_up += missing as u64;
                    let count = u16::try_from(missing).unwrap_or(u16::MAX);
                    self.out.push_back(Err(Gap::Unrecovered { first: next as u16, count }));
                    next += missing;
                    continue;
                }
            }
            next += 1;
        }
        self.next = Some(next);
        self.release();
    }

    /// Hands on held packets while they are next in sequence.
    fn release(&mut self) {
        while let Some(next) = self.next {
            let Some(held) = self.held.remove(&next) else { break };
            self.next = Some(next + 1);
            self.reassemble(next, held.timestamp, held.marker, &held.payload);
        }
    }

    fn reassemble(&mut self, ext: i64, timestamp: u32, marker: bool, payload: &[u8]) {
        if let Some(result) = self.reassembler.push(ext as u16, timestamp, marker, payload) {
            self.out.push_back(result);
        }
    }

    /// Forgets the stream (it restarted), keeping the configuration and counts.
    fn restart(&mut self) {
        let (recovered, given_up, late, wait) = (self.recovered, self.given_up, self.late, self.wait);
        let out = std::mem::take(&mut self.out);
        *self = Self::new(self.config, self.codec());
        self.out = out;
        self.recovered = recovered;
        self.given_up = given_up;
        self.late = late;
        self.wait = wait;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rtc::rtp::codec::h264::H264Payloader;
    use rtc::rtp::codec::vp8::Vp8Payloader;
    use rtc::rtp::packetizer::Payloader;

    use super::*;
    use crate::media::pattern::PatternSource;
    use crate::media::stripe;
    use crate::media::video_codec::{EncoderConfig, VideoDecoder, VideoEncoder};

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xaa];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR_NAL: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33, 0x44, 0x55, 0x66, 0x77];
    const P_NAL: &[u8] = &[0x41, 0x9a, 0x02, 0x03, 0x04, 0x05];
    const MS: Duration = Duration::from_millis(1);

    /// A keyframe in one STAP-A packet.
    fn keyframe() -> Vec<Vec<u8>> {
        let mut out = vec![0x78];
        for nal in [SPS, PPS, IDR_NAL] {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(nal);
        }
        vec![out]
    }

    /// A predicted frame in `n` FU-A fragments (1 to 5).
    fn p_frame(n: usize) -> Vec<Vec<u8>> {
        let chunks: Vec<&[u8]> = P_NAL[1..].chunks((P_NAL.len() - 1).div_ceil(n)).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let header = (P_NAL[0] & 0x1f) | if i == 0 { 0x80 } else { 0 } | if i == last { 0x40 } else { 0 };
                let mut out = vec![(P_NAL[0] & 0xe0) | 28, header];
                out.extend_from_slice(chunk);
                out
            })
            .collect()
    }

    /// An RTP packet as the test sends it.
    #[derive(Debug, Clone)]
    struct Packet {
        seq: u16,
        ts: u32,
        marker: bool,
        payload: Vec<u8>,
    }

    /// A stream: a keyframe, then `frames - 1` predicted frames of three packets each.
    fn stream(first_seq: u16, frames: u32) -> Vec<Packet> {
        let mut seq = first_seq;
        let mut out = Vec::new();
        for f in 0..frames {
            let payloads = if f == 0 { keyframe() } else { p_frame(3) };
            let last = payloads.len() - 1;
            for (i, payload) in payloads.into_iter().enumerate() {
                out.push(Packet { seq, ts: f * 3000, marker: i == last, payload });
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    fn push(jb: &mut VideoJitter, now: Instant, p: &Packet) -> Vec<Result<AssembledFrame, Gap>> {
        jb.push(now, p.seq, p.ts, p.marker, &p.payload);
        drain(jb, now)
    }

    fn drain(jb: &mut VideoJitter, now: Instant) -> Vec<Result<AssembledFrame, Gap>> {
        std::iter::from_fn(|| jb.poll(now)).collect()
    }

    fn timestamps(out: &[Result<AssembledFrame, Gap>]) -> Vec<u32> {
        out.iter().filter_map(|r| r.as_ref().ok().map(|u| u.timestamp)).collect()
    }

    fn gaps(out: &[Result<AssembledFrame, Gap>]) -> usize {
        out.iter().filter(|r| r.is_err()).count()
    }

    #[test]
    fn frames_come_out_at_once_when_nothing_is_missing() {
        let t0 = Instant::now();
        let mut jb = VideoJitter::new(JitterConfig::default(), VideoCodec::H264);
        for (i, p) in stream(100, 10).iter().enumerate() {
            let out = push(&mut jb, t0 + MS * i as u32, p);
            if p.marker {
                assert_eq!(timestamps(&out), vec![p.ts], "frame {} on its marker", p.ts);
            } else {
                assert!(out.is_empty(), "{out:?}");
            }
            assert_eq!(jb.next_deadline(), None, "nothing waits");
        }
    }

    #[test]
    fn a_retransmission_within_the_wait_delivers_every_frame_in_order() {
        let t0 = Instant::now();
        let mut jb = VideoJitter::new(JitterConfig::default(), VideoCodec::H264);
        let packets = stream(1000, 8);
        // Frame 2's middle packet (index 1 + 3 + 1 = 5) is lost and comes back 60 ms later.
        let lost = 5;
        let mut delivered = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i == lost {
                continue;
            }
            let now = t0 + MS * (i as u32 * 4);
            delivered.extend(push(&mut jb, now, p));
        }
        assert_eq!(timestamps(&delivered), vec![0, 3000], "frames behind the hole are held");
        let deadline = jb.next_deadline().expect("a wait is running");
        assert_eq!(deadline, t0 + MS * 24 + jb.wait(), "the wait starts when the hole shows");
        let now = t0 + MS * 84;
        assert!(now < deadline);
        delivered.extend(drain(&mut jb, now));
        delivered.extend(push(&mut jb, now, &packets[lost]));
        assert_eq!(timestamps(&delivered), (0..8).map(|f| f * 3000).collect::<Vec<_>>());
        assert_eq!(gaps(&delivered), 0, "{delivered:?}");
        assert_eq!((jb.recovered(), jb.given_up(), jb.held()), (1, 0, 0));
        assert_eq!(jb.next_deadline(), None);
    }

    #[test]
    fn a_retransmission_too_late_is_a_gap_and_frames_wait_for_a_keyframe() {
        let t0 = Instant::now();
        let mut jb = VideoJitter::new(JitterConfig::default(), VideoCodec::H264);
        let mut packets = stream(500, 6);
        let lost = 5;
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i != lost {
                out.extend(push(&mut jb, t0, p));
            }
        }
        assert_eq!(timestamps(&out), vec![0, 3000]);
        let deadline = jb.next_deadline().expect("a wait is running");
        assert!(drain(&mut jb, deadline - MS).is_empty(), "nothing given up before the deadline");
        let out = drain(&mut jb, deadline);
        assert_eq!(out.first(), Some(&Err(Gap::Unrecovered { first: 505, count: 1 })), "{out:?}");
        assert!(timestamps(&out).is_empty(), "frames after the loss are dropped: {out:?}");
        assert_eq!((jb.given_up(), jb.held(), jb.next_deadline()), (1, 0, None));
        // The retransmission turning up late changes nothing.
        assert!(push(&mut jb, deadline, &packets[lost]).is_empty());
        // A keyframe heals the stream.
        let next_seq = packets.last().expect("packets").seq.wrapping_add(1);
        packets = stream(next_seq, 2).into_iter().map(|p| Packet { ts: p.ts + 90_000, ..p }).collect();
        let out: Vec<_> = packets.iter().flat_map(|p| push(&mut jb, deadline, p)).collect();
        assert_eq!(timestamps(&out), vec![90_000, 93_000], "{out:?}");
    }

    #[test]
    fn reordered_packets_are_put_back_in_order_without_waiting_out_the_deadline() {
        let t0 = Instant::now();
        let mut jb = VideoJitter::new(JitterConfig::default(), VideoCodec::H264);
        let packets = stream(65_000, 6);
        // Swap neighbours across frame boundaries: 1<->2, 3<->4, ...
        let mut order: Vec<usize> = (0..packets.len()).collect();
        for pair in order[1..].chunks_mut(2) {
            pair.reverse();
        }
        let out: Vec<_> = order.iter().flat_map(|&i| push(&mut jb, t0, &packets[i])).collect();
        assert_eq!(timestamps(&out), (0..6).map(|f| f * 3000).collect::<Vec<_>>());
        assert_eq!(gaps(&out), 0, "{out:?}");
        assert_eq!(jb.held(), 0);
    }

    #[test]
    fn sequence_numbers_wrap_during_a_wait() {
        let t0 = Instant::now();
        let mut jb = VideoJitter::new(JitterConfig::default(), VideoCodec::H264);
        let packets = stream(65_530, 6);
        let lost = packets.iter().position(|p| p.seq == 65_535).expect("the stream wraps");
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i != lost {
                out.extend(push(&mut jb, t0, p));
            }
        }
        out.extend(push(&mut jb, t0 + MS * 50, &packets[lost]));
        assert_eq!(timestamps(&out), (0..6).map(|f| f * 3000).collect::<Vec<_>>());
        assert_eq!(gaps(&out), 0, "{out:?}");
    }

    #[test]
    fn a_lost_whole_frame_and_a_lost_marker_are_waited_for_too() {
        let t0 = Instant::now();
        let mut jb = VideoJitter::new(JitterConfig::default(), VideoCodec::H264);
        let packets = stream(7, 8);
        // Frame 3 (packets 7, 8, 9) entirely, and frame 5's marker (packet 15).
        let lost = [7, 8, 9, 15];
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if !lost.contains(&i) {
                out.extend(push(&mut jb, t0 + MS * i as u32, p));
            }
        }
        assert_eq!(timestamps(&out), vec![0, 3000, 6000]);
        for &i in lost.iter().rev() {
            out.extend(push(&mut jb, t0 + MS * 40, &packets[i]));
        }
        assert_eq!(timestamps(&out), (0..8).map(|f| f * 3000).collect::<Vec<_>>());
        assert_eq!((gaps(&out), jb.recovered()), (0, 4));
    }

    #[test]
    fn the_wait_follows_the_round_trip_time_within_bounds() {
        let config = JitterConfig::default();
        assert_eq!(config.wait_for(Duration::ZERO), MS * 110);
        assert_eq!(config.wait_for(MS * 30), MS * 170);
        assert_eq!(config.wait_for(Duration::from_secs(2)), config.max_wait);
        let eager = JitterConfig { nack_delay: Duration::ZERO, ..config };
        assert_eq!(eager.wait_for(MS), eager.min_wait);
        let mut jb = VideoJitter::new(config, VideoCodec::H264);
        assert_eq!(jb.wait(), MS * 150, "the initial guess of 20 ms");
        jb.set_rtt(MS * 5);
        assert_eq!(jb.wait(), MS * 120);
    }

    #[test]
    fn memory_stays_bounded_under_garbage_and_a_clean_stream_recovers() {
        let t0 = Instant::now();
        let mut jb = VideoJitter::new(JitterConfig::default(), VideoCodec::H264);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next_random = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for i in 0..50_000u32 {
            let r = next_random();
            let len = (r >> 40) as usize % 40;
            let payload: Vec<u8> = (0..len).map(|_| next_random() as u8).collect();
            let now = t0 + MS * (i / 10);
            // Mostly near the last sequence number, sometimes anywhere.
            let seq = if r % 8 == 0 { (r >> 16) as u16 } else { (i as u16).wrapping_add((r >> 24) as u16 % 64) };
            jb.push(now, seq, (r >> 32) as u32 % 10 * 3000, r & 2 == 0, &payload);
            drain(&mut jb, now);
            assert!(jb.held() <= MAX_SPAN as usize, "held {} packets", jb.held());
        }
        // A clean stream far away in sequence space is picked up at its keyframe.
        let later = t0 + Duration::from_secs(10);
        let out: Vec<_> = stream(30_000, 5)
            .iter()
            .map(|p| Packet { ts: p.ts + 1_000_000, ..p.clone() })
            .flat_map(|p| push(&mut jb, later, &p))
            .collect();
        let waited = jb.next_deadline().map_or(Vec::new(), |deadline| drain(&mut jb, deadline));
        let delivered: Vec<u32> = timestamps(&out).into_iter().chain(timestamps(&waited)).collect();
        assert!(delivered.ends_with(&[1_009_000, 1_012_000]), "{delivered:?}");
    }

    /// Encodes `frames` pattern frames at 320x240 with `codec`, forcing keyframes at
    /// `keyframes_at`, and packetizes them with the `rtc` crate's payloader for the codec (MTU
    /// 300); frame `n` has timestamp `n * 3000`. Returns the packets and how many frames were
    /// sent.
    fn encoded_packets(codec: VideoCodec, frames: u32, keyframes_at: &[u32], first_seq: u16) -> (Vec<Packet>, usize) {
        let mut source = PatternSource::new(320, 240, 30).expect("fits");
        let config = EncoderConfig { bitrate_bps: 800_000, ..EncoderConfig::default() };
        let mut encoder = VideoEncoder::new(codec, config).expect("encoder");
        let mut payloader: Box<dyn Payloader> = match codec {
            VideoCodec::Vp8 => {
                let mut payloader = Vp8Payloader::default();
                payloader.enable_picture_id = true;
                Box::new(payloader)
            }
            VideoCodec::H264 => Box::new(H264Payloader::default()),
        };
        let mut packets = Vec::new();
        let mut seq = first_seq;
        let mut sent = 0;
        for i in 0..frames {
            if keyframes_at.contains(&i) {
                encoder.force_keyframe();
            }
            let Some(frame) = encoder.encode(&source.next_frame(1 + u64::from(i) * 33_333)).expect("encodes") else {
                continue;
            };
            sent += 1;
            let payloads = payloader.payload(300, &Bytes::from(frame.data)).expect("packetizes");
            let last = payloads.len() - 1;
            for (k, payload) in payloads.into_iter().enumerate() {
                packets.push(Packet { seq, ts: i * 3000, marker: k == last, payload: payload.to_vec() });
                seq = seq.wrapping_add(1);
            }
        }
        (packets, sent)
    }

    /// Feeds `arrivals` (time, order, packet) in order to a jitter buffer, waking at each deadline
    /// before the next packet as the pipeline does; decodes what comes out and checks each
    /// picture's stripe against its timestamp. Returns the frame numbers decoded and the gaps.
    fn receive(
        codec: VideoCodec,
        jb: &mut VideoJitter,
        mut arrivals: Vec<(Instant, usize, Packet)>,
    ) -> (Vec<u32>, Vec<Gap>) {
        arrivals.sort_by_key(|(at, order, _)| (*at, *order));
        let mut decoder = VideoDecoder::new(codec).expect("decoder");
        let mut decoded = Vec::new();
        let mut gaps = Vec::new();
        let mut handle = |out: Vec<Result<AssembledFrame, Gap>>| {
            for result in out {
                match result {
                    Ok(unit) => {
                        let picture = decoder.decode(&unit.data).expect("decodes").expect("a picture");
                        let number = stripe::read(&picture).expect("a clean picture").number;
                        assert_eq!(number * 3000, unit.timestamp);
                        decoded.push(number);
                    }
                    Err(gap) => gaps.push(gap),
                }
            }
        };
        for (at, _, packet) in &arrivals {
            while let Some(deadline) = jb.next_deadline().filter(|deadline| deadline < at) {
                handle(drain(jb, deadline));
            }
            handle(push(jb, *at, packet));
        }
        if let Some(deadline) = jb.next_deadline() {
            handle(drain(jb, deadline));
        }
        (decoded, gaps)
    }

    /// Real encoder output, 5 % random loss with each lost packet retransmitted one RTT plus up
    /// to a NACK cycle later: every frame is decoded whole and in order.
    fn real_encoder_output_with_loss_and_retransmission(codec: VideoCodec) {
        let mut jb = VideoJitter::new(JitterConfig::default(), codec);
        jb.set_rtt(MS * 10);
        let t0 = Instant::now();
        let mut next_random = crate::media::test_rng::xorshift(1);
        let (packets, sent) = encoded_packets(codec, 120, &[], 65_400);
        let arrivals: Vec<(Instant, usize, Packet)> = packets
            .into_iter()
            .enumerate()
            .map(|(order, packet)| {
                // Sent 33 ms apart per frame.
                let at = t0 + MS * (packet.ts / 3000 * 33);
                let arrives = if packet.ts > 5 * 3000 && next_random(100) < 5 {
                    // Lost; the NACK goes out within 100 ms and the copy takes a round trip.
                    at + MS * (next_random(100) as u32 + 10)
                } else {
                    at
                };
                (arrives, order, packet)
            })
            .collect();
        let (decoded, gaps) = receive(codec, &mut jb, arrivals);
        assert_eq!(gaps, vec![], "{codec}");
        assert_eq!(decoded.len(), sent, "{codec}: every frame decoded");
        assert!(decoded.windows(2).all(|w| w[0] < w[1]), "{codec}: in order");
        assert!(jb.recovered() > 0, "{codec}");
    }

    #[cfg(feature = "h264")]
    #[test]
    fn h264_output_with_loss_and_retransmission() {
        real_encoder_output_with_loss_and_retransmission(VideoCodec::H264);
    }

    #[test]
    fn vp8_output_with_loss_and_retransmission() {
        real_encoder_output_with_loss_and_retransmission(VideoCodec::Vp8);
    }

    /// VP8 through the jitter buffer: packets swapped across a frame boundary and within a frame
    /// are put back in order; a packet never retransmitted is given up, and the frames after it
    /// are dropped until the keyframe its gap asks for.
    #[test]
    fn vp8_loss_without_retransmission_waits_for_a_keyframe_and_reordering_is_repaired() {
        let codec = VideoCodec::Vp8;
        let (mut packets, sent) = encoded_packets(codec, 40, &[20], 1000);
        assert_eq!(sent, 40);
        let first_of = |packets: &[Packet], n: u32| packets.iter().position(|p| p.ts == n * 3000).expect("sent");
        // The last packet of frame 5 and the first of frame 6 trade places, and so do the first
        // two of frame 15.
        let boundary = first_of(&packets, 6);
        packets.swap(boundary - 1, boundary);
        let within = first_of(&packets, 15);
        packets.swap(within, within + 1);
        // Frame 10's second packet is lost for good.
        let lost = packets.remove(first_of(&packets, 10) + 1);
        let t0 = Instant::now();
        // One packet a millisecond, in the order above.
        let arrivals: Vec<(Instant, usize, Packet)> =
            packets.into_iter().enumerate().map(|(order, p)| (t0 + MS * order as u32, order, p)).collect();
        let mut jb = VideoJitter::new(JitterConfig::default(), codec);
        assert_eq!(jb.codec(), VideoCodec::Vp8);
        let (decoded, gaps) = receive(codec, &mut jb, arrivals);
        assert_eq!(gaps.first(), Some(&Gap::Unrecovered { first: lost.seq, count: 1 }), "{gaps:?}");
        assert_eq!(gaps.get(1), Some(&Gap::Incomplete { timestamp: 10 * 3000 }), "{gaps:?}");
        assert!(gaps[2..].iter().all(|gap| matches!(gap, Gap::AwaitingKeyframe { .. })), "{gaps:?}");
        assert_eq!(gaps.len(), 2 + 9, "frames 11 to 19 wait for the keyframe: {gaps:?}");
        let expected: Vec<u32> = (0..40).filter(|n| !(10..20).contains(n)).collect();
        assert_eq!(decoded, expected);
        assert_eq!((jb.recovered(), jb.given_up()), (2, 1));
    }
}

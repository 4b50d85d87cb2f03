//! Fuzzing of what the client reads from strangers and from the network, on stable Rust with
//! proptest: the RTP payload formats (H.264, VP8), frame reassembly, the video and audio jitter
//! buffers, and the partner's signals (descriptions and candidates), read by our code and then
//! by webrtc-rs's own peer connection as a call would. Inputs are random bytes and inputs built
//! near each format (real packets and descriptions, then cut, reordered, repeated and edited),
//! and each target checks that nothing panics, that every loop ends, and that what is held or
//! produced stays within a bound set by what arrived. Tests only; no sockets.
//!
//! The suite runs a small budget; `STRANGERS_FUZZ_CASES=1000000 cargo test -p strangers-engine
//! --lib fuzz` is the long run (docs/BENCHMARKS.md).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodecParameters, RtpCodecKind};
use webrtc::peer_connection::MediaEngine;

use crate::candidate_privacy;
use crate::media::jitter::{JitterBuffer, JitterConfig, Slot};
use crate::media::playout::Playout;
use crate::media::rtp_frames::Reassembler;
use crate::media::video_codec::VideoCodec;
use crate::media::video_jitter::{self, VideoJitter};
use crate::media::{h264_rtp, vp8_rtp};
use crate::peer::{self, RemoteSignal};

/// Cases per target: a small budget unless `STRANGERS_FUZZ_CASES` asks for more.
fn config() -> Config {
    let cases = std::env::var("STRANGERS_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    Config { cases, failure_persistence: None, ..Config::default() }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// An H.264 RTP payload: mostly single NAL units, STAP-A aggregates whose lengths may lie and
/// FU-A fragments with any start and end bits; now and then anything.
fn h264_payload() -> impl Strategy<Value = Vec<u8>> {
    fn nal_type() -> impl Strategy<Value = u8> {
        prop_oneof![Just(1u8), Just(5), Just(7), Just(8), 0u8..32]
    }
    fn nal() -> impl Strategy<Value = Vec<u8>> {
        (nal_type(), bytes(40)).prop_map(|(t, mut body)| {
            body.insert(0, 0x60 | t);
            body
        })
    }
    let single = nal();
    let stap = prop::collection::vec((nal(), prop::option::weighted(0.2, any::<u16>())), 0..5).prop_map(|units| {
        let mut out = vec![0x78];
        for (unit, lie) in units {
            out.extend_from_slice(&lie.unwrap_or(unit.len() as u16).to_be_bytes());
            out.extend_from_slice(&unit);
        }
        out
    });
    let fu = (any::<bool>(), any::<bool>(), nal_type(), bytes(60)).prop_map(|(start, end, t, data)| {
        let mut out = vec![0x7c, (u8::from(start) << 7) | (u8::from(end) << 6) | t];
        out.extend_from_slice(&data);
        out
    });
    prop_oneof![4 => single, 2 => stap, 4 => fu, 1 => bytes(64)]
}

/// A VP8 RTP payload: a descriptor of any shape (extensions, 7 or 15-bit picture IDs, any
/// partition), then key frame or delta frame data, truncated or not; now and then anything.
fn vp8_payload() -> impl Strategy<Value = Vec<u8>> {
    let key = vec![0x10u8, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00];
    let data = prop_oneof![
        2 => (0..=key.len(), bytes(40)).prop_map(move |(cut, tail)| {
            let mut out = key[..cut].to_vec();
            out.extend_from_slice(&tail);
            out
        }),
        2 => bytes(40).prop_map(|mut d| {
            d.insert(0, 0x31);
            d
        }),
        1 => bytes(8),
    ];
    let descriptor = (any::<bool>(), any::<bool>(), 0u8..8, any::<u8>(), any::<u16>()).prop_map(
        |(extended, start, partition, extension, picture_id)| {
            let mut out = vec![(u8::from(extended) << 7) | (u8::from(start) << 4) | partition];
            if extended {
                out.push(extension);
                if extension & 0x80 != 0 {
                    if picture_id & 1 == 0 {
                        out.push((picture_id >> 8) as u8 & 0x7f);
                    } else {
                        out.extend_from_slice(&(picture_id | 0x8000).to_be_bytes());
                    }
                }
                out.extend(std::iter::repeat_n(0x55, usize::from(extension.count_ones().min(2) as u8)));
            }
            out
        },
    );
    prop_oneof![6 => (descriptor, data).prop_map(|(mut d, data)| {
        d.extend_from_slice(&data);
        d
    }), 1 => bytes(64)]
}

fn payload(codec: VideoCodec) -> BoxedStrategy<Vec<u8>> {
    match codec {
        VideoCodec::H264 => h264_payload().boxed(),
        VideoCodec::Vp8 => vp8_payload().boxed(),
    }
}

fn codec() -> impl Strategy<Value = VideoCodec> {
    prop::sample::select(vec![VideoCodec::Vp8, VideoCodec::H264])
}

/// One RTP packet of a stream, as steps from the previous one: mostly the next sequence number
/// within the same or the next frame, sometimes reordered, repeated, or far away.
#[derive(Debug, Clone)]
struct Step {
    seq_step: u16,
    ts_step: u32,
    marker: bool,
    payload: Vec<u8>,
    /// Milliseconds since the previous packet arrived.
    after_ms: u16,
}

fn steps(codec: VideoCodec, max: usize) -> impl Strategy<Value = Vec<Step>> {
    let seq_step = prop_oneof![12 => Just(1u16), 3 => (0u16..6).prop_map(|d| d.wrapping_sub(2)), 1 => any::<u16>()];
    let ts_step = prop_oneof![8 => Just(0u32), 4 => Just(3000), 1 => any::<u32>()];
    let after = prop_oneof![6 => 0u16..5, 2 => 0u16..300, 1 => any::<u16>()];
    prop::collection::vec(
        (seq_step, ts_step, prop::bool::weighted(0.3), payload(codec), after).prop_map(
            |(seq_step, ts_step, marker, payload, after_ms)| Step { seq_step, ts_step, marker, payload, after_ms },
        ),
        0..max,
    )
}

/// Walks `steps` from a random start: (arrival offset, seq, timestamp, marker, payload).
fn packets(start: (u16, u32), steps: &[Step]) -> impl Iterator<Item = (Duration, u16, u32, bool, &[u8])> {
    let (mut seq, mut ts, mut at) = (start.0, start.1, Duration::ZERO);
    steps.iter().map(move |step| {
        seq = seq.wrapping_add(step.seq_step);
        ts = ts.wrapping_add(step.ts_step);
        at += Duration::from_millis(u64::from(step.after_ms));
        (at, seq, ts, step.marker, step.payload.as_slice())
    })
}

/// The most a frame's data may hold, given its payloads: what came in plus, for H.264, a start
/// code for every two bytes of STAP-A length at most.
fn bound(total_in: usize, packets: usize) -> usize {
    2 * total_in + 4 * packets
}

// A real offer made by webrtc-rs with our codecs, the answer it makes to it, and an offer as a
// browser writes one (audio, video with retransmission and several codecs, a data channel).
/// The ICE and DTLS lines every media section of [`BROWSER_OFFER`] carries.
macro_rules! transport {
    () => {
        "a=ice-ufrag:EsAw\r\n\
         a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
         a=ice-options:trickle\r\n\
         a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
         a=setup:actpass\r\n"
    };
}

const BROWSER_OFFER: &str = concat!(
    "v=0\r\n\
o=- 4215775240449105457 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1467250027 1 udp 2122260223 192.168.1.23 50000 typ host generation 0 network-id 1\r\n\
a=candidate:842163049 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 192.168.1.23 rport 50000 generation 0\r\n\
",
    transport!(),
    "a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendrecv\r\n\
a=msid:stream audio\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:3570614608 cname:4TOk42mSjXCkVIa6\r\n\
a=ssrc:3570614608 msid:stream audio\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
",
    transport!(),
    "a=mid:1\r\n\
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\n\
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:13 urn:3gpp:video-orientation\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
a=sendrecv\r\n\
a=msid:stream video\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=rtcp-fb:96 transport-cc\r\n\
a=rtcp-fb:96 ccm fir\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n\
a=rtpmap:45 AV1/90000\r\n\
a=fmtp:45 level-idx=5;profile=0;tier=0\r\n\
a=rtpmap:46 rtx/90000\r\n\
a=fmtp:46 apt=45\r\n\
a=ssrc-group:FID 1011260289 2417349733\r\n\
a=ssrc:1011260289 cname:4TOk42mSjXCkVIa6\r\n\
a=ssrc:1011260289 msid:stream video\r\n\
a=ssrc:2417349733 cname:4TOk42mSjXCkVIa6\r\n\
a=ssrc:2417349733 msid:stream video\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
",
    transport!(),
    "a=mid:2\r\n\
a=sctp-port:5000\r\n\
a=max-message-size:262144\r\n"
);

/// Candidates as strangers send them: host (UDP, TCP, mDNS, IPv6), reflexive and relayed.
const CANDIDATES: &[&str] = &[
    "candidate:1467250027 1 udp 2122260223 192.168.1.23 50000 typ host generation 0 ufrag EsAw network-id 1",
    "candidate:1467250028 1 tcp 1518280447 192.168.1.23 9 typ host tcptype active generation 0",
    "candidate:2 1 udp 2122262783 6f3a1c52-8d1e-4a5b-9f3e-2b1c0d9e8f7a.local 54400 typ host",
    "candidate:3 1 udp 2122197247 2001:db8::7 50001 typ host generation 0",
    "candidate:842163049 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 192.168.1.23 rport 50000",
    "candidate:4 1 udp 41885439 198.51.100.9 49152 typ relay raddr 203.0.113.7 rport 61000 generation 0",
];

/// One edit of a text made of lines and space-separated fields.
#[derive(Debug, Clone)]
enum Edit {
    DropLine(usize),
    RepeatLine(usize),
    SwapLines(usize, usize),
    ReplaceField { line: usize, field: usize, with: String },
    InsertLine(usize, String),
    Cut(usize),
    Byte(usize, u8),
}

/// Tokens that parsers tend to mishandle: empty, signs, huge numbers, separators, odd text.
fn nasty_token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", "0", "-1", "65536", "4294967296", "18446744073709551616", "99999999999999999999999",
            ":", "/", "a=", "IN", "IP6", "::", "0.0.0.0", "256.1.1.1", "typ", "raddr", "rport",
            "host", "relay", "udp", "tcp", "VP8/90000", "H264/0", "rtx/90000", "apt=", "é", "\u{0}",
            "\t", "sha-256", "ZZ:ZZ", "actpass", "webrtc-datachannel", "UDP/TLS/RTP/SAVPF",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,16}",
    ]
}

/// Lines that shape a description's structure: media sections, codec lines, groups.
fn nasty_line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "m=video 9 UDP/TLS/RTP/SAVPF", "m=video 9 UDP/TLS/RTP/SAVPF 96 96 96", "m=audio 0 RTP/AVP 0",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=", "a=rtpmap:96", "a=rtpmap:96 VP8",
            "a=rtpmap:300 VP8/90000", "a=fmtp:96 ", "a=fmtp:97 apt=97", "a=rtcp-fb:* nack",
            "a=ssrc:", "a=ssrc:1 cname:", "a=ssrc-group:FID", "a=ssrc-group:FID 1 1 1",
            "a=extmap:99999 urn:x", "a=extmap:0/sendonly urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=sctp-port:-1", "a=max-message-size:99999999999999999999", "a=mid:", "a=mid:1",
            "a=group:BUNDLE 7 7", "a=group:BUNDLE", "c=IN IP6 ::", "c=IN", "a=fingerprint:sha-256 ZZ",
            "a=fingerprint:md5 00", "a=setup:", "a=setup:passive", "a=rid:1 send", "a=simulcast:send 1;2",
            "a=ice-ufrag:", "a=ice-pwd:", "a=candidate:", "a=end-of-candidates", "a=recvonly",
            "a=inactive", "a=msid:", "t=", "o=", "v=1", "s=", "b=AS:", "b=TIAS:-5",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,40}",
    ]
}

fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        3 => any::<usize>().prop_map(Edit::DropLine),
        1 => any::<usize>().prop_map(Edit::RepeatLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        4 => (any::<usize>(), 0usize..8, nasty_token())
            .prop_map(|(line, field, with)| Edit::ReplaceField { line, field, with }),
        3 => (any::<usize>(), nasty_line()).prop_map(|(at, line)| Edit::InsertLine(at, line)),
        1 => any::<usize>().prop_map(Edit::Cut),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Byte(at, b)),
    ];
    prop::collection::vec(edit, 0..max)
}

/// `text` (lines ending in `line_end`) with `edits` applied.
fn edited(text: &str, line_end: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.split(line_end).map(str::to_owned).collect();
    for edit in edits {
        let n = lines.len().max(1);
        match edit {
            Edit::DropLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::RepeatLine(i) if !lines.is_empty() => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::ReplaceField { line, field, with } if !lines.is_empty() => {
                let target = &mut lines[line % n];
                let mut fields: Vec<&str> = target.split(' ').collect();
                let i = field % fields.len();
                fields[i] = with;
                *target = fields.join(" ");
            }
            Edit::InsertLine(at, line) => lines.insert(at % (lines.len() + 1), line.clone()),
            Edit::Cut(at) => {
                let mut whole = lines.join(line_end);
                let mut at = at % (whole.len() + 1);
                while !whole.is_char_boundary(at) {
                    at -= 1;
                }
                whole.truncate(at);
                lines = whole.split(line_end).map(str::to_owned).collect();
            }
            Edit::Byte(at, byte) => {
                let mut whole = lines.join(line_end).into_bytes();
                if !whole.is_empty() {
                    let i = at % whole.len();
                    whole[i] = *byte;
                }
                let whole = String::from_utf8_lossy(&whole).into_owned();
                lines = whole.split(line_end).map(str::to_owned).collect();
            }
            _ => {}
        }
    }
    lines.join(line_end)
}

/// A peer connection of webrtc-rs's sans-IO core with the codecs a call registers.
fn rtc_peer() -> RTCPeerConnection {
    let mut media = MediaEngine::default();
    for &codec in VideoCodec::all_available() {
        media.register_codec(peer::video_codec_parameters(codec), RtpCodecKind::Video).expect("our codecs register");
    }
    let opus = RTCRtpCodecParameters { rtp_codec: peer::opus_codec(), payload_type: peer::OPUS_PT };
    media.register_codec(opus, RtpCodecKind::Audio).expect("Opus registers");
    RTCPeerConnectionBuilder::new().with_media_engine(media).build(Instant::now()).expect("a peer connection builds")
}

/// A peer connection that made and holds an offer (audio, video), and that offer.
fn offering_peer() -> (RTCPeerConnection, String) {
    let mut pc = rtc_peer();
    pc.add_transceiver_from_kind(RtpCodecKind::Audio, None).expect("audio transceiver");
    pc.add_transceiver_from_kind(RtpCodecKind::Video, None).expect("video transceiver");
    let offer = pc.create_offer(None).expect("an offer");
    pc.set_local_description(Instant::now(), offer.clone()).expect("our own offer applies");
    (pc, offer.sdp)
}

/// Real descriptions to edit: webrtc-rs's offer and its answer to it, and a browser's offer.
fn real_descriptions() -> &'static [(&'static str, String)] {
    static REAL: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    REAL.get_or_init(|| {
        let (_, offer) = offering_peer();
        let mut answerer = rtc_peer();
        let remote = webrtc::peer_connection::RTCSessionDescription::offer(offer.clone()).expect("our offer parses");
        answerer.set_remote_description(Instant::now(), remote).expect("our offer applies");
        let answer = answerer.create_answer(None).expect("an answer").sdp;
        vec![("offer", offer), ("answer", answer), ("offer", BROWSER_OFFER.to_owned())]
    })
}

/// Reads a partner's description as a call does, then hands it to a fresh webrtc-rs peer
/// connection: an offer to one that answers it, an answer to one that made an offer.
fn apply_description(kind: &str, sdp: &str) {
    let json = serde_json::json!({ "sdp": { "type": kind, "sdp": sdp } }).to_string();
    let Ok(Some(RemoteSignal::Description(desc))) = peer::read_signal(&json) else { return };
    let _ = peer::first_video_codec(&desc.sdp, VideoCodec::all_available());
    let _ = peer::sdp_session_id(&desc.sdp);
    let shared = candidate_privacy::shareable_sdp(&desc.sdp);
    assert!(shared.len() <= desc.sdp.len() + desc.sdp.matches("raddr").count() * 8);
    if kind == "offer" {
        let mut pc = rtc_peer();
        if pc.set_remote_description(Instant::now(), *desc).is_ok() {
            if let Ok(answer) = pc.create_answer(None) {
                let _ = pc.set_local_description(Instant::now(), answer);
            }
        }
    } else {
        let (mut pc, _) = offering_peer();
        let _ = pc.set_remote_description(Instant::now(), *desc);
    }
}

/// Small JSON of any shape, with the keys signals use.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec!["offer", "answer", "pranswer", "rollback", "", "v=0", "candidate:"])
            .prop_map(Value::from),
        "[ -~]{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            4 => prop::sample::select(vec![
                "sdp", "type", "candidate", "sdpMid", "sdpMLineIndex", "usernameFragment",
            ])
            .prop_map(str::to_owned),
            1 => "[a-z]{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..4).prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Adds `candidate` as a call does (after the partner's offer) to a webrtc-rs peer connection,
/// if reading it lets it through.
fn add_candidate(json: &str) {
    let Ok(Some(RemoteSignal::Candidate(Some(init)))) = peer::read_signal(json) else { return };
    let _ = candidate_privacy::shareable(&init.candidate);
    let mut pc = rtc_peer();
    let (_, offer) = &real_descriptions()[0];
    let desc = webrtc::peer_connection::RTCSessionDescription::offer(offer.clone()).expect("our offer parses");
    pc.set_remote_description(Instant::now(), desc).expect("our offer applies");
    let _ = pc.add_remote_candidate(init);
}

/// Found by the long run: a component beyond 256 with priority 0 made webrtc-rs's priority
/// computation overflow (`256 - component`), a panic with overflow checks on.
#[test]
fn a_candidate_whose_component_is_out_of_range_is_refused() {
    for candidate in [
        "candidate:3 50001 udp 0 2001:db8::7 1 typ host generation 0",
        "candidate:3 0 udp 0 192.0.2.1 1 typ host",
        "3 257 udp 0 192.0.2.1 1 typ host",
    ] {
        let json = serde_json::json!({ "candidate": { "candidate": candidate, "sdpMid": "0" } }).to_string();
        assert!(
            matches!(peer::read_signal(&json), Ok(Some(RemoteSignal::Unusable("component out of range")))),
            "{candidate}"
        );
        add_candidate(&json);
    }
    // The same candidate inside a description.
    let offer = BROWSER_OFFER.replace(
        "a=candidate:1467250027 1 udp 2122260223 192.168.1.23 50000 typ host",
        "a=candidate:1467250027 50001 udp 0 192.168.1.23 50000 typ host",
    );
    assert_ne!(offer, BROWSER_OFFER);
    apply_description("offer", &offer);
    // The edges of the range still pass.
    for component in [1, 256] {
        let candidate = format!("candidate:3 {component} udp 0 192.0.2.1 1 typ host");
        let json = serde_json::json!({ "candidate": { "candidate": candidate, "sdpMid": "0" } }).to_string();
        assert!(matches!(peer::read_signal(&json), Ok(Some(RemoteSignal::Candidate(Some(_))))), "{component}");
        add_candidate(&json);
    }
}

#[test]
fn the_descriptions_edited_by_the_fuzzer_apply_as_they_are() {
    for (kind, sdp) in real_descriptions() {
        let json = serde_json::json!({ "sdp": { "type": kind, "sdp": sdp } }).to_string();
        let Ok(Some(RemoteSignal::Description(desc))) = peer::read_signal(&json) else { panic!("{kind} not read") };
        if *kind == "offer" {
            let mut pc = rtc_peer();
            pc.set_remote_description(Instant::now(), *desc).expect("the offer applies");
            assert!(pc.create_answer(None).is_ok(), "an answer to it");
        } else {
            offering_peer().0.set_remote_description(Instant::now(), *desc).expect("the answer applies");
        }
    }
    assert_eq!(
        peer::first_video_codec(BROWSER_OFFER, VideoCodec::all_available()),
        Some(VideoCodec::Vp8),
        "the browser's offer puts VP8 first"
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_h264_payloads_depacketize_or_are_refused(payloads in prop::collection::vec(h264_payload(), 0..12)) {
        for payload in &payloads {
            let _ = h264_rtp::frame_start(payload);
        }
        if let Ok((data, _)) = h264_rtp::depacketize(payloads.iter().map(Vec::as_slice)) {
            let total: usize = payloads.iter().map(Vec::len).sum();
            prop_assert!(data.len() <= bound(total, payloads.len()), "{} bytes from {total}", data.len());
        }
    }

    #[test]
    fn fuzz_vp8_payloads_depacketize_or_are_refused(payloads in prop::collection::vec(vp8_payload(), 0..12)) {
        for payload in &payloads {
            if let Ok(descriptor) = vp8_rtp::parse_descriptor(payload) {
                prop_assert!(descriptor.len <= payload.len());
            }
            let _ = vp8_rtp::frame_start(payload);
        }
        if let Ok((data, _)) = vp8_rtp::depacketize(payloads.iter().map(Vec::as_slice)) {
            let total: usize = payloads.iter().map(Vec::len).sum();
            prop_assert!(data.len() <= total);
        }
    }

    #[test]
    fn fuzz_reassembly_of_any_packet_stream(
        (codec, steps) in codec().prop_flat_map(|c| (Just(c), steps(c, 120))),
        start in any::<(u16, u32)>(),
    ) {
        let mut reassembler = Reassembler::new(codec);
        let mut total = 0;
        for (i, (_, seq, ts, marker, payload)) in packets(start, &steps).enumerate() {
            total += payload.len();
            if let Some(Ok(frame)) = reassembler.push(seq, ts, marker, payload) {
                prop_assert!(frame.data.len() <= bound(total, i + 1));
            }
        }
    }

    #[test]
    fn fuzz_video_jitter_holds_a_bounded_amount_and_always_drains(
        (codec, steps) in codec().prop_flat_map(|c| (Just(c), steps(c, 120))),
        start in any::<(u16, u32)>(),
        rtt_ms in prop::option::of(0u64..5_000),
    ) {
        let mut jitter = VideoJitter::new(video_jitter::JitterConfig::default(), codec);
        if let Some(rtt) = rtt_ms {
            jitter.set_rtt(Duration::from_millis(rtt));
        }
        let epoch = Instant::now();
        let mut total = 0;
        let mut last = epoch;
        for (i, (at, seq, ts, marker, payload)) in packets(start, &steps).enumerate() {
            let now = epoch + at;
            last = now;
            total += payload.len();
            jitter.push(now, seq, ts, marker, payload);
            prop_assert!(jitter.held() <= 2048, "{} packets held", jitter.held());
            let mut polls = 0;
            while let Some(out) = jitter.poll(now) {
                polls += 1;
                prop_assert!(polls <= 4 * (i + 1), "poll does not run dry");
                if let Ok(frame) = out {
                    prop_assert!(frame.data.len() <= bound(total, i + 1));
                }
            }
        }
        // Once every wait is over, nothing is held and polling ends.
        let later = last + Duration::from_secs(10);
        let mut polls = 0;
        while jitter.poll(later).is_some() {
            polls += 1;
            prop_assert!(polls <= 4 * steps.len() + 4, "poll does not run dry");
        }
        prop_assert_eq!(jitter.held(), 0);
        prop_assert!(jitter.next_deadline().is_none());
    }

    #[test]
    fn fuzz_audio_jitter_holds_a_bounded_amount(
        ops in prop::collection::vec(
            (any::<bool>(), prop_oneof![8 => Just(1u16), 2 => 0u16..8, 1 => any::<u16>()],
             prop_oneof![8 => Just(960u32), 1 => any::<u32>()], 0u64..60, bytes(8)),
            0..200,
        ),
        start in any::<(u16, u32)>(),
    ) {
        let config = JitterConfig::default();
        let mut buffer = JitterBuffer::new(config);
        // The same packets, whatever bytes they hold, through the decoder and the playout's
        // shortening too: every frame it plays is whole.
        let mut playout = Playout::new(config).expect("an Opus decoder");
        let (mut seq, mut ts) = start;
        let mut now = Instant::now();
        let mut pushed = 0;
        for (push, seq_step, ts_step, after_ms, payload) in ops {
            now += Duration::from_millis(after_ms);
            if push {
                seq = seq.wrapping_add(seq_step);
                ts = ts.wrapping_add(ts_step);
                buffer.push(now, seq, ts, payload.clone());
                playout.push(now, seq, ts, payload);
                pushed += 1;
            } else {
                if let Some(Slot::Packet { payload, .. }) = buffer.pop(now) {
                    prop_assert!(payload.len() < 8);
                }
                if let Some(frame) = playout.next_frame(now) {
                    prop_assert_eq!(frame.samples.len(), crate::media::frame::SAMPLES_PER_FRAME);
                }
            }
            prop_assert!(buffer.len() <= config.capacity.min(pushed), "{} held", buffer.len());
        }
    }

    #[test]
    fn fuzz_descriptions_from_strangers_are_read_or_refused(
        base in 0usize..3,
        edits in edits(6),
        as_answer in prop::bool::weighted(0.1),
    ) {
        let (kind, sdp) = &real_descriptions()[base];
        let sdp = edited(sdp, "\r\n", &edits);
        // Now and then a description comes under the other type.
        let kind = match (*kind, as_answer) {
            ("offer", true) => "answer",
            ("answer", true) => "offer",
            (kind, _) => kind,
        };
        apply_description(kind, &sdp);
    }

    #[test]
    fn fuzz_candidates_from_strangers_are_read_or_refused(
        base in 0..CANDIDATES.len(),
        edits in edits(6),
        mid in prop::option::of(prop_oneof!["[0-9]{0,2}", "[ -~]{0,6}"]),
        index in prop::option::of(any::<u16>()),
    ) {
        let candidate = edited(CANDIDATES[base], " ", &edits);
        let json = serde_json::json!({
            "candidate": { "candidate": candidate, "sdpMid": mid, "sdpMLineIndex": index, "usernameFragment": "EsAw" }
        })
        .to_string();
        add_candidate(&json);
    }

    #[test]
    fn fuzz_signals_of_any_shape_are_read_or_refused(value in json_value(), raw in bytes(48)) {
        let _ = peer::read_signal(&value.to_string());
        let _ = peer::read_signal(&String::from_utf8_lossy(&raw));
    }
}

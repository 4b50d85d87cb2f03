//! The signals bench clients send: a realistic ~3 KB SDP offer and answer (one audio and one
//! video section, as a browser writes them) and host ICE candidates. Each message carries the
//! time it was sent, in nanoseconds of the bench's clock, as an extra `bench_sent_ns` field
//! of the signal data; the server relays data verbatim, so the receiver reads it back.

use std::sync::OnceLock;
use std::time::Instant;

/// ICE candidates each side sends per match.
pub const CANDIDATES_PER_SIDE: usize = 8;

const SENT_FIELD: &str = r#","bench_sent_ns":"#;

/// Nanoseconds since the bench started: one clock for senders and receivers alike.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The send time stamped into signal data by [`Payloads`], if present.
pub fn sent_ns(data: &str) -> Option<u64> {
    let (_, tail) = data.strip_suffix('}')?.rsplit_once(SENT_FIELD)?;
    tail.parse().ok()
}

/// Every message a cycle sends, with the send time left to fill in.
pub struct Payloads {
    /// Each holds a whole `signal` message up to the send time, which [`Payloads::finish`] adds.
    offer_head: String,
    answer_head: String,
    candidate_heads: Vec<String>,
}

impl Default for Payloads {
    fn default() -> Self {
        Self::new()
    }
}

impl Payloads {
    pub fn new() -> Payloads {
        let head = |data_without_close: String| format!(r#"{{"type":"signal","data":{data_without_close}{SENT_FIELD}"#);
        let sdp = |kind: &str, text: String| {
            // serde_json escapes the CRLF line ends and quotes as a browser's JSON.stringify does.
            let text = serde_json::to_string(&text).expect("a string always serialises");
            head(format!(r#"{{"sdp":{{"type":"{kind}","sdp":{text}}}"#))
        };
        let candidate_heads = (0..CANDIDATES_PER_SIDE)
            .map(|i| {
                let foundation = 1_467_250_027u64 + 7919 * i as u64;
                let (protocol, priority) = if i % 2 == 0 { ("udp", 2_122_260_223u64) } else { ("tcp", 1_518_280_447) };
                let candidate = format!(
                    "candidate:{foundation} 1 {protocol} {priority} 192.168.{}.{} {} typ host generation 0 ufrag EsAw network-id {}",
                    1 + i / 4,
                    23 + i,
                    50_000 + 1_117 * i,
                    1 + i / 2
                );
                head(format!(
                    r#"{{"candidate":{{"candidate":"{candidate}","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"EsAw"}}"#
                ))
            })
            .collect();
        Payloads {
            offer_head: sdp("offer", sdp_text(true)),
            answer_head: sdp("answer", sdp_text(false)),
            candidate_heads,
        }
    }

    /// The offer, stamped `sent_ns`.
    pub fn offer(&self, sent_ns: u64) -> String {
        finish(&self.offer_head, sent_ns)
    }

    /// The answer, stamped `sent_ns`.
    pub fn answer(&self, sent_ns: u64) -> String {
        finish(&self.answer_head, sent_ns)
    }

    /// Candidate `index` (below [`CANDIDATES_PER_SIDE`]), stamped `sent_ns`.
    pub fn candidate(&self, index: usize, sent_ns: u64) -> String {
        finish(&self.candidate_heads[index % CANDIDATES_PER_SIDE], sent_ns)
    }
}

fn finish(head: &str, sent_ns: u64) -> String {
    let mut text = String::with_capacity(head.len() + 24);
    text.push_str(head);
    text.push_str(&sent_ns.to_string());
    text.push_str("}}");
    text
}

/// A browser-like SDP: one Opus audio section and one VP8/VP9/H264 video section, bundled,
/// with trickle ICE (no candidates inline), about 3 KB.
fn sdp_text(offer: bool) -> String {
    let (session, ufrag, pwd, setup) = if offer {
        ("4611731400430051336", "EsAw", "P2uYro0UCOQ4zxjKXaWCBui1", "actpass")
    } else {
        ("7339021564198740129", "Kd9q", "gH7t3L0pQx2VbN8mZrW4yE6c", "active")
    };
    let fingerprint =
        "sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08";
    let mut lines = vec![
        "v=0".to_owned(),
        format!("o=- {session} 2 IN IP4 127.0.0.1"),
        "s=-".into(),
        "t=0 0".into(),
        "a=group:BUNDLE 0 1".into(),
        "a=extmap-allow-mixed".into(),
        "a=msid-semantic: WMS 5c1fa2b6-3b3d-4c4b-9a4e-0f2d1c9e7a11".into(),
    ];
    let transport = |mid: &str| {
        vec![
            "c=IN IP4 0.0.0.0".to_owned(),
            "a=rtcp:9 IN IP4 0.0.0.0".into(),
            format!("a=ice-ufrag:{ufrag}"),
            format!("a=ice-pwd:{pwd}"),
            "a=ice-options:trickle".into(),
            format!("a=fingerprint:{fingerprint}"),
            format!("a=setup:{setup}"),
            format!("a=mid:{mid}"),
        ]
    };
    lines.push("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126".into());
    lines.extend(transport("0"));
    lines.extend(
        [
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=sendrecv",
            "a=msid:5c1fa2b6-3b3d-4c4b-9a4e-0f2d1c9e7a11 0b6e3f4a-8d52-4f0e-9c1b-2a7d5e6f8c90",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            "a=rtcp-fb:111 transport-cc",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:63 red/48000/2",
            "a=fmtp:63 111/111",
            "a=rtpmap:9 G722/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:13 CN/8000",
            "a=rtpmap:110 telephone-event/48000",
            "a=rtpmap:126 telephone-event/8000",
            "a=ssrc:3735928559 cname:Zm9vYmFyYmF6cXV4",
            "a=ssrc:3735928559 msid:5c1fa2b6-3b3d-4c4b-9a4e-0f2d1c9e7a11 0b6e3f4a-8d52-4f0e-9c1b-2a7d5e6f8c90",
        ]
        .map(str::to_owned),
    );
    lines.push("m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 104 105".into());
    lines.extend(transport("1"));
    lines.extend(
        [
            "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
            "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "a=extmap:13 urn:3gpp:video-orientation",
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=sendrecv",
            "a=msid:5c1fa2b6-3b3d-4c4b-9a4e-0f2d1c9e7a11 9f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
            "a=rtcp-mux",
            "a=rtcp-rsize",
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 goog-remb",
            "a=rtcp-fb:96 transport-cc",
            "a=rtcp-fb:96 ccm fir",
            "a=rtcp-fb:96 nack",
            "a=rtcp-fb:96 nack pli",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=rtpmap:98 VP9/90000",
            "a=rtcp-fb:98 transport-cc",
            "a=rtcp-fb:98 nack pli",
            "a=fmtp:98 profile-id=0",
            "a=rtpmap:99 rtx/90000",
            "a=fmtp:99 apt=98",
            "a=rtpmap:102 H264/90000",
            "a=rtcp-fb:102 transport-cc",
            "a=rtcp-fb:102 nack pli",
            "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            "a=rtpmap:103 rtx/90000",
            "a=fmtp:103 apt=102",
            "a=rtpmap:104 red/90000",
            "a=rtpmap:105 ulpfec/90000",
            "a=ssrc-group:FID 2882400001 2882400002",
            "a=ssrc:2882400001 cname:Zm9vYmFyYmF6cXV4",
            "a=ssrc:2882400001 msid:5c1fa2b6-3b3d-4c4b-9a4e-0f2d1c9e7a11 9f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
            "a=ssrc:2882400002 cname:Zm9vYmFyYmF6cXV4",
            "a=ssrc:2882400002 msid:5c1fa2b6-3b3d-4c4b-9a4e-0f2d1c9e7a11 9f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        ]
        .map(str::to_owned),
    );
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use strangers_protocol::{ClientMsg, SignalKind};

    #[test]
    fn messages_are_valid_signals_of_realistic_size() {
        let p = Payloads::new();
        for (text, kind) in [(p.offer(7), SignalKind::Offer), (p.answer(7), SignalKind::Answer)] {
            assert!((2_800..=3_600).contains(&text.len()), "{kind:?} is {} bytes", text.len());
            let ClientMsg::Signal(data) = ClientMsg::parse(&text).unwrap() else { panic!("not a signal") };
            assert_eq!(data.kind(), kind);
            assert_eq!(sent_ns(data.as_json()), Some(7));
        }
        for i in 0..CANDIDATES_PER_SIDE {
            let ClientMsg::Signal(data) = ClientMsg::parse(&p.candidate(i, u64::MAX)).unwrap() else { panic!() };
            assert_eq!(data.kind(), SignalKind::Candidate);
            assert!(data.as_json().contains(" typ host "));
            assert_eq!(sent_ns(data.as_json()), Some(u64::MAX));
        }
    }

    #[test]
    fn unstamped_data_has_no_send_time() {
        assert_eq!(sent_ns(r#"{"restart":true}"#), None);
    }
}

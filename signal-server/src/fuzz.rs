//! Fuzzing of the parsers that read bytes from strangers or from Redis, on stable Rust with
//! proptest: WebSocket frame headers, the reassembly of messages from reads cut anywhere, and
//! the records the scripts publish. Each target gets random bytes and inputs built near the
//! formats (frames that lie about their length, records with wrong lengths and fields), and
//! checks that nothing panics, nothing hangs and nothing allocates beyond what arrived.
//! Tests only; it must not touch sockets or Redis.
//!
//! The suite runs a small budget; `STRANGERS_FUZZ_CASES=1000000 cargo test -p
//! signal-server --lib fuzz` is the long run (docs/BENCHMARKS.md).

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::redis::records;
use crate::ws::frame;
use crate::ws::inbound::Inbound;
use crate::ws::Incoming;

/// Cases per target: a small budget unless `STRANGERS_FUZZ_CASES` asks for more.
fn config() -> Config {
    let cases = std::env::var("STRANGERS_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// One client frame as bytes, true to the format or not: any first byte (FIN, reserved bits,
/// opcode), masked or not, and a length field that may announce more than follows.
#[derive(Debug, Clone)]
struct RawFrame {
    first: u8,
    masked: bool,
    announced: u64,
    payload: Vec<u8>,
}

impl RawFrame {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.first);
        let mask_bit = if self.masked { 0x80 } else { 0 };
        match self.announced {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= u64::from(u16::MAX) => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        if self.masked {
            out.extend_from_slice(&[0x37, 0xfa, 0x21, 0x3d]);
        }
        out.extend_from_slice(&self.payload);
    }
}

fn raw_frame() -> impl Strategy<Value = RawFrame> {
    // Mostly well-formed text, binary, continuation and control frames, now and then anything.
    let first = prop_oneof![
        8 => (any::<bool>(), prop::sample::select(vec![0x0u8, 0x1, 0x2, 0x8, 0x9, 0xa]))
            .prop_map(|(fin, op)| if fin { 0x80 | op } else { op }),
        1 => any::<u8>(),
    ];
    let payload = prop_oneof![
        3 => "[ -~é€]{0,40}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ];
    (first, prop::bool::weighted(0.95), payload, prop_oneof![6 => Just(None), 1 => any::<u64>().prop_map(Some)])
        .prop_map(|(first, masked, payload, lie)| {
            let announced = match lie {
                None => payload.len() as u64,
                // A length that may be far larger than what follows, or beyond 2^63.
                Some(n) => [n, n % 70_000, n % 126, n % (2 * crate::ws::MAX_READ_BYTES as u64)][(n % 4) as usize],
            };
            RawFrame { first, masked, announced, payload }
        })
}

/// A stream of bytes to read: frames, or random bytes, then cut into reads of random sizes.
fn reads() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let bytes = prop_oneof![
        4 => prop::collection::vec(raw_frame(), 0..12).prop_map(|frames| {
            let mut out = Vec::new();
            for f in &frames {
                f.write(&mut out);
            }
            out
        }),
        1 => prop::collection::vec(any::<u8>(), 0..400),
    ];
    (bytes, prop::collection::vec(1usize..300, 1..20))
}

/// Feeds `bytes` in reads of the sizes in `cuts` (cycled), reading every message; checks that
/// each call ends, the buffers hold a small multiple of what arrived at most (the read buffer
/// and the fragments' copy each grow to twice their bytes at most), and the reading stops at
/// the first error as the connection would.
fn read_all(bytes: &[u8], cuts: &[usize]) {
    let mut inbound = Inbound::default();
    let mut replies = Vec::new();
    let (mut at, mut fed) = (0, 0);
    for cut in cuts.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + cut).min(bytes.len());
        inbound.push(&bytes[at..end]);
        fed += end - at;
        at = end;
        // Every message takes at least two bytes, so more calls than that would be a hang.
        let mut calls = 0;
        while let Some(read) = inbound.next(&mut replies) {
            calls += 1;
            assert!(calls <= fed / 2 + 1, "next() keeps answering without consuming");
            match read {
                Ok(Incoming::Text(text)) => assert!(text.len() <= fed),
                Ok(_) => {}
                Err(_) => return,
            }
        }
        assert!(inbound.held() <= 4 * fed + 64, "{} bytes held after {fed} arrived", inbound.held());
    }
}

/// A record batch as the scripts write it, or with its lengths and fields wrong.
fn record_batch() -> impl Strategy<Value = String> {
    let conn = prop_oneof![8 => (0u64..100).prop_map(|n| n.to_string()), 1 => "[-0-9a-z ]{0,4}"];
    let kind = prop_oneof![8 => prop::sample::select(vec!["T", "E", "W", "C", "M", "L", "S"]).prop_map(String::from), 1 => "[A-Z ]{0,2}"];
    let body = prop_oneof![
        Just(r#"{"type":"queued"}"#.to_string()),
        Just(r#"{"type":"partner_left","reason":"next"}"#.to_string()),
        Just(r#"{"type":"signal","data":{"candidate":{"candidate":"c"}}}"#.to_string()),
        Just(r#"{"type":"signal","data":{"sdp":{"type":"offer","sdp":1}}}"#.to_string()),
        Just("not_matched no partner".to_string()),
        Just("s1 tok 1 room".to_string()),
        Just(
            "r1 s1 s2 n2 12 {\"type\":\"matched\",\"room\":\"r1\",\"initiator\":true,\"common_interests\":[]}"
                .to_string()
        ),
        Just("r1 s2 {\"type\":\"signal\",\"data\":{\"restart\":true}}".to_string()),
        Just("4000".to_string()),
        "[ -~é]{0,40}",
    ];
    let record = (conn, kind, body, prop_oneof![6 => Just(0i64), 1 => -3i64..4]).prop_map(|(conn, kind, body, off)| {
        let len = (body.len() as i64 + off).max(0);
        format!("{conn} {kind} {len}:{body}")
    });
    prop_oneof![
        4 => prop::collection::vec(record, 0..6).prop_map(|r| r.concat()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_frame_headers_parse_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        if let Ok(Some(header)) = frame::parse_header(&bytes) {
            prop_assert!(header.header_len <= bytes.len());
            prop_assert!(header.payload_len >> 63 == 0);
        }
    }

    #[test]
    fn fuzz_reassembly_of_reads_cut_anywhere((bytes, cuts) in reads()) {
        read_all(&bytes, &cuts);
    }

    #[test]
    fn fuzz_record_batches_parse_or_are_refused(batch in record_batch()) {
        if let Ok(parsed) = records::parse(&batch) {
            prop_assert!(parsed.len() <= batch.len() / 6 + 1, "every record takes at least six bytes");
        }
    }

    #[test]
    fn fuzz_signal_records_round_trip(
        conn in any::<u64>(),
        room in "[a-z0-9]{1,12}",
        sender in "[a-f0-9]{1,16}",
        candidate in "[ -~é]{0,60}",
    ) {
        let text = signal_text(&candidate);
        let mut batch = String::new();
        records::write_signal(&mut batch, conn, &room, &sender, &text);
        let parsed = records::parse(&batch).expect("what a node writes, a node reads");
        let [records::Record::Signal { conn: c, room: r, sender: s, msg }] = &parsed[..] else {
            panic!("one signal record expected: {parsed:?}")
        };
        prop_assert_eq!((*c, *r, *s), (conn, room.as_str(), sender.as_str()));
        prop_assert_eq!(msg.to_json(), text, "relayed verbatim");
    }
}

/// A `signal` message carrying a candidate with this text, as a client writes it.
fn signal_text(candidate: &str) -> String {
    let data = serde_json::json!({ "candidate": { "candidate": candidate, "sdpMLineIndex": 0 } });
    format!(r#"{{"type":"signal","data":{data}}}"#)
}

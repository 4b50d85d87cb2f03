//! Tests of [`Inbound`]: messages split across reads, fragments, control frames and limits.

use super::*;
use crate::ws::frame::{FrameError, MAX_CONTROL_PAYLOAD};

use crate::ws::frame::tests::client_frame as frame;

/// What `next` says, owned, until it says `None`.
#[derive(Debug, PartialEq)]
enum Seen {
    Text(String),
    Binary,
    Ping,
    Pong,
    Close(Option<u16>),
    Error(ReadError),
}

fn drain(inbound: &mut Inbound, replies: &mut Vec<u8>) -> Vec<Seen> {
    let mut seen = Vec::new();
    while let Some(read) = inbound.next(replies) {
        let stop = read.is_err();
        seen.push(match read {
            Ok(Incoming::Text(t)) => Seen::Text(t.to_owned()),
            Ok(Incoming::Binary) => Seen::Binary,
            Ok(Incoming::Ping) => Seen::Ping,
            Ok(Incoming::Pong) => Seen::Pong,
            Ok(Incoming::Close(code)) => Seen::Close(code),
            Err(e) => Seen::Error(e),
        });
        if stop {
            break;
        }
    }
    seen
}

/// Feeds `bytes` in pieces of `step` bytes, collecting every message.
fn feed(bytes: &[u8], step: usize) -> (Vec<Seen>, Vec<u8>) {
    let mut inbound = Inbound::default();
    let mut replies = Vec::new();
    let mut seen = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        inbound.push(piece);
        seen.extend(drain(&mut inbound, &mut replies));
        if matches!(seen.last(), Some(Seen::Error(_))) {
            // The connection ends after an error.
            break;
        }
    }
    (seen, replies)
}

#[test]
fn reads_messages_whatever_the_read_boundaries() {
    let big = "x".repeat(70_000);
    let mut bytes = frame(0x81, br#"{"type":"find"}"#);
    bytes.extend(frame(0x81, big.as_bytes()));
    bytes.extend(frame(0x82, &[1, 2, 3]));
    bytes.extend(frame(0x81, "é€".as_bytes()));
    for step in [1, 2, 3, 7, 100, 4096, 1 << 20] {
        let (seen, replies) = feed(&bytes, step);
        assert_eq!(
            seen,
            [Seen::Text(r#"{"type":"find"}"#.into()), Seen::Text(big.clone()), Seen::Binary, Seen::Text("é€".into())],
            "step {step}"
        );
        assert!(replies.is_empty());
    }
}

#[test]
fn keeps_no_buffer_once_everything_is_read() {
    let mut inbound = Inbound::new(&frame(0x81, b"hello"));
    let mut replies = Vec::new();
    assert_eq!(drain(&mut inbound, &mut replies), [Seen::Text("hello".into())]);
    assert_eq!(inbound.held(), 0);
    let bytes = [frame(0x01, b"he"), frame(0x80, b"llo")].concat();
    inbound.push(&bytes[..bytes.len() - 1]);
    assert!(drain(&mut inbound, &mut replies).is_empty());
    assert!(inbound.held() > 0, "an incomplete frame is kept");
    inbound.push(&bytes[bytes.len() - 1..]);
    assert_eq!(drain(&mut inbound, &mut replies), [Seen::Text("hello".into())]);
    assert_eq!(inbound.held(), 0);
}

#[test]
fn reassembles_fragments_with_control_frames_between() {
    let bytes = [
        frame(0x01, b"{\"ty"),
        frame(0x89, b"p"),
        frame(0x00, b"pe\":"),
        frame(0x8a, b""),
        frame(0x80, b"1}"),
        frame(0x02, &[1]),
        frame(0x80, &[2]),
    ]
    .concat();
    for step in [1, 5, 1000] {
        let (seen, replies) = feed(&bytes, step);
        assert_eq!(seen, [Seen::Ping, Seen::Pong, Seen::Text("{\"type\":1}".into()), Seen::Binary]);
        assert_eq!(replies, [0x8a, 1, b'p'], "the ping is answered with its payload");
    }
}

#[test]
fn refuses_broken_sequences() {
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (frame(0x80, b"continuation without a start"), FrameError::BadContinuation),
        ([frame(0x01, b"a"), frame(0x81, b"b")].concat(), FrameError::BadContinuation),
        ([frame(0x01, b"a"), frame(0x82, b"b")].concat(), FrameError::BadContinuation),
        (frame(0x83, b"reserved"), FrameError::ReservedOpcode(3)),
        (frame(0xc1, b"rsv1"), FrameError::ReservedBits),
        (frame(0x89, &[0; MAX_CONTROL_PAYLOAD + 1]), FrameError::BadControl),
        (frame(0x88, &[3]), FrameError::BadClose),
        ([vec![0x81, 0x05], b"hello".to_vec()].concat(), FrameError::Unmasked),
    ];
    for (bytes, error) in cases {
        let (seen, _) = feed(&bytes, 1000);
        assert_eq!(seen.last(), Some(&Seen::Error(ReadError::Protocol(error))), "{bytes:?}");
    }
}

#[test]
fn answers_close_with_the_same_code() {
    let (seen, replies) = feed(&frame(0x88, &[0x03, 0xe9, b'b', b'y', b'e']), 1000);
    assert_eq!(seen, [Seen::Close(Some(1001))]);
    assert_eq!(replies, [0x88, 2, 0x03, 0xe9]);
    let (seen, replies) = feed(&frame(0x88, &[]), 1000);
    assert_eq!(seen, [Seen::Close(None)]);
    assert_eq!(replies, [0x88, 0]);
}

#[test]
fn refuses_invalid_utf8_in_whole_and_fragmented_text() {
    let (seen, _) = feed(&frame(0x81, &[0xc3, 0x28]), 1000);
    assert_eq!(seen, [Seen::Error(ReadError::InvalidUtf8)]);
    // A character split between fragments is fine; a broken one at the end is not.
    let split = [frame(0x01, &[0xc3]), frame(0x80, &[0xa9])].concat();
    assert_eq!(feed(&split, 1).0, [Seen::Text("é".into())]);
    let broken = [frame(0x01, b"ok"), frame(0x80, &[0xc3])].concat();
    assert_eq!(feed(&broken, 1000).0, [Seen::Error(ReadError::InvalidUtf8)]);
}

#[test]
fn refuses_messages_above_the_limit_from_the_header_alone() {
    let header = [0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4];
    let (seen, _) = feed(&header, 1000);
    assert_eq!(seen, [Seen::Error(ReadError::TooLarge(0x20_0000))]);
    let huge = [0x82, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
    assert_eq!(feed(&huge, 3).0, [Seen::Error(ReadError::TooLarge((1 << 63) - 1))]);
    let (seen, _) = feed(&frame(0x81, &vec![b'a'; MAX_READ_BYTES]), 1 << 16);
    assert!(matches!(&seen[..], [Seen::Text(t)] if t.len() == MAX_READ_BYTES), "exactly the limit is read");
    // Fragments count together.
    let half = vec![b'a'; MAX_READ_BYTES / 2 + 1];
    let (seen, _) = feed(&[frame(0x01, &half), frame(0x80, &half)].concat(), 1 << 16);
    assert_eq!(seen, [Seen::Error(ReadError::TooLarge(2 * half.len() as u64))]);
}

#[test]
fn a_frame_header_reserves_nothing_beyond_the_bytes_that_came() {
    let payload = "y".repeat(60_000);
    let bytes = frame(0x81, payload.as_bytes());
    let mut inbound = Inbound::default();
    let mut replies = Vec::new();
    // The header (8 bytes: length 60,000 and the mask) and a few bytes of payload.
    inbound.push(&bytes[..20]);
    assert!(drain(&mut inbound, &mut replies).is_empty());
    assert!(inbound.held() < 1024, "a header alone made the buffer hold {} bytes", inbound.held());
    // The rest arrives in pieces; the buffer grows with it and the message is whole.
    let mut seen = Vec::new();
    for piece in bytes[20..].chunks(4096) {
        inbound.push(piece);
        assert!(inbound.held() <= 2 * bytes.len(), "the buffer grows at most twice what arrived");
        seen.extend(drain(&mut inbound, &mut replies));
    }
    assert_eq!(seen, vec![Seen::Text(payload)]);
    assert_eq!(inbound.held(), 0);
}

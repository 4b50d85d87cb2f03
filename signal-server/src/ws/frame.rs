//! RFC 6455 frames as a server sees them: parsing the header of a client frame (masked,
//! no extensions), unmasking its payload, and writing unmasked server frames. Pure functions
//! over byte slices; the socket and message reassembly live elsewhere.

/// Continuation of a fragmented message.
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// Largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The header of one client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    /// Bytes of the header itself, mask included.
    pub header_len: usize,
    pub payload_len: u64,
}

/// A frame no client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1-3 set, but no extension was negotiated.
    ReservedBits,
    /// An opcode RFC 6455 reserves.
    ReservedOpcode(u8),
    /// Client frames must be masked.
    Unmasked,
    /// A control frame that is fragmented or longer than 125 bytes.
    BadControl,
    /// A 64-bit length with its most significant bit set.
    BadLength,
    /// A continuation without a message to continue, or a new message inside a fragmented one.
    BadContinuation,
    /// A close frame with a one-byte payload, a code no endpoint may send, or a reason that is
    /// not UTF-8.
    BadClose,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::ReservedBits => f.write_str("reserved bits set"),
            FrameError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameError::Unmasked => f.write_str("unmasked client frame"),
            FrameError::BadControl => f.write_str("fragmented or oversized control frame"),
            FrameError::BadLength => f.write_str("frame length with the top bit set"),
            FrameError::BadContinuation => f.write_str("continuation frame out of sequence"),
            FrameError::BadClose => f.write_str("malformed close frame"),
        }
    }
}

/// Whether `opcode` names a control frame (close, ping, pong).
pub fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// Parses the header at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = b0 & 0x0f;
    if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(FrameError::ReservedOpcode(opcode));
    }
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (payload_len, len_end) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(bytes) => (u64::from_be_bytes(bytes), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if payload_len >> 63 != 0 {
        return Err(FrameError::BadLength);
    }
    if is_control(opcode) && (!fin || payload_len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(FrameError::BadControl);
    }
    let Some(mask) = buf.get(len_end..len_end + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return Ok(None);
    };
    Ok(Some(Header { fin, opcode, mask, header_len: len_end + 4, payload_len }))
}

/// Unmasks (or masks: the operation is its own inverse) a payload that starts at offset 0
/// of its frame.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the mask phase is back at 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Appends one unmasked, unfragmented server frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.reserve(len + 10);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and as much of `reason` as fits in a control frame.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    write_frame(out, OP_CLOSE, &payload[..2 + end]);
}

/// Reads the status code of a received close payload: `None` for an empty payload.
pub fn parse_close(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::BadClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // RFC 6455 section 7.4: codes an endpoint may put on the wire.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) || std::str::from_utf8(reason).is_err() {
                return Err(FrameError::BadClose);
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    pub(crate) fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut frame = vec![first];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn parses_the_three_length_forms() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 100_000] {
            let frame = client_frame(0x81, &vec![b'a'; len]);
            let header = parse_header(&frame).unwrap().unwrap();
            assert_eq!(header.payload_len, len as u64);
            assert_eq!(header.header_len + len, frame.len());
            assert!(header.fin);
            assert_eq!(header.opcode, OP_TEXT);
            assert_eq!(header.mask, [0x37, 0xfa, 0x21, 0x3d]);
        }
    }

    #[test]
    fn waits_for_a_whole_header() {
        for len in [5usize, 300, 70_000] {
            let frame = client_frame(0x81, &vec![0; len]);
            let header_len = parse_header(&frame).unwrap().unwrap().header_len;
            for cut in 0..header_len {
                assert_eq!(parse_header(&frame[..cut]), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn refuses_what_a_client_may_not_send() {
        assert_eq!(parse_header(&[0x81, 0x05, b'h']), Err(FrameError::Unmasked));
        assert_eq!(parse_header(&[0xc1, 0x80]), Err(FrameError::ReservedBits));
        assert_eq!(parse_header(&[0x91, 0x80]), Err(FrameError::ReservedBits));
        assert_eq!(parse_header(&[0x83, 0x80]), Err(FrameError::ReservedOpcode(3)));
        assert_eq!(parse_header(&[0x8b, 0x80]), Err(FrameError::ReservedOpcode(0xb)));
        assert_eq!(parse_header(&[0x09, 0x80]), Err(FrameError::BadControl), "fragmented ping");
        assert_eq!(parse_header(&[0x89, 0x80 | 126, 0, 126]), Err(FrameError::BadControl), "long ping");
        let huge = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(parse_header(&huge), Err(FrameError::BadLength));
        let big = [0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        assert_eq!(parse_header(&big).unwrap().unwrap().payload_len, (1 << 63) - 1);
    }

    #[test]
    fn unmasks_at_every_length() {
        let mask = [1, 2, 3, 0xff];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut data: Vec<u8> = plain.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            unmask(&mut data, mask);
            assert_eq!(data, plain);
        }
    }

    #[test]
    fn writes_server_frames_unmasked() {
        let mut out = Vec::new();
        write_frame(&mut out, OP_TEXT, b"hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        for (len, header) in [(126usize, 4usize), (65_535, 4), (65_536, 10)] {
            let mut out = Vec::new();
            write_frame(&mut out, OP_BINARY, &vec![7; len]);
            assert_eq!(out.len(), len + header);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1], if header == 4 { 126 } else { 127 });
        }
    }

    #[test]
    fn close_frames_carry_code_and_a_cut_reason() {
        let mut out = Vec::new();
        write_close(&mut out, 1009, "message too big");
        assert_eq!(&out[..4], &[0x88, 17, 0x03, 0xf1]);
        assert_eq!(&out[4..], b"message too big");
        let mut out = Vec::new();
        write_close(&mut out, 1000, &"é".repeat(100));
        assert!(out.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&out[4..]).is_ok(), "cut on a character boundary");
    }

    #[test]
    fn reads_close_codes() {
        assert_eq!(parse_close(&[]), Ok(None));
        assert_eq!(parse_close(&[0x03]), Err(FrameError::BadClose));
        assert_eq!(parse_close(&[0x03, 0xe8]), Ok(Some(1000)));
        assert_eq!(parse_close(&[0x0f, 0xa0, b'o', b'k']), Ok(Some(4000)));
        assert_eq!(parse_close(&[0x03, 0xe7]), Err(FrameError::BadClose), "999");
        assert_eq!(parse_close(&[0x03, 0xed]), Err(FrameError::BadClose), "1005 never goes on the wire");
        assert_eq!(parse_close(&[0x03, 0xe8, 0xff, 0xfe]), Err(FrameError::BadClose), "reason not UTF-8");
    }
}

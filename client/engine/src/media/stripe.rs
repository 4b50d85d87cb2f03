//! The machine-readable stripe: a frame number and capture time painted as large black and white
//! luma blocks across the top of a picture, protected by a CRC-16, so that a receiver can check
//! every decoded frame (which frame, how late, intact or not) after lossy video coding.
//!
//! Layout: blocks of `max(8, round(width / 32))` pixels square, left to right and then row by row
//! from the top-left corner; one bit per block, white is 1. The 112 bits are the frame number
//! (32 bits, most significant first), the capture time in microseconds (64 bits) and the
//! CRC-16/CCITT-FALSE of those 12 bytes. A reader averages the inner half of each block and
//! thresholds at mid-grey, so ringing and deblocking at the block edges do not matter. Chroma under
//! the stripe is set to neutral grey.

use super::frame::VideoFrame;

/// Luma of a 0 bit (video black).
pub const BLACK: u8 = 16;
/// Luma of a 1 bit (video white).
pub const WHITE: u8 = 235;
const THRESHOLD: u32 = 128;

const PAYLOAD_BYTES: usize = 12;
const TOTAL_BYTES: usize = PAYLOAD_BYTES + 2;
const TOTAL_BITS: usize = TOTAL_BYTES * 8;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// What a stripe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripe {
    pub number: u32,
    /// Wall-clock capture time in microseconds since the UNIX epoch.
    pub capture_us: u64,
}

/// Why a stripe could not be painted or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    #[error("a {width}x{height} frame is too small for the stripe ({needed} rows needed)")]
    FrameTooSmall { width: usize, height: usize, needed: usize },
    /// The blocks were read but do not carry a valid stripe: a verify error.
    #[error("stripe checksum mismatch (read {read:#06x}, computed {computed:#06x})")]
    Checksum { read: u16, computed: u16 },
}

/// Where the stripe's blocks sit in a frame of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Side of one square block in pixels.
    pub block: usize,
    /// Blocks per row.
    pub columns: usize,
    /// Rows of blocks.
    pub rows: usize,
}

impl Layout {
    /// The layout for a frame `width` pixels wide.
    pub fn for_width(width: usize) -> Self {
        let block = ((width + 16) / 32).max(8);
        let columns = (width / block).max(1);
        Self { block, columns, rows: TOTAL_BITS.div_ceil(columns) }
    }

    /// Height of the stripe in pixels (the rows below it are free for the picture).
    pub fn height(&self) -> usize {
        self.rows * self.block
    }

    fn fits(&self, frame: &VideoFrame) -> Result<(), StripeError> {
        if frame.width < self.block * self.columns || frame.height < self.height() {
            return Err(StripeError::FrameTooSmall { width: frame.width, height: frame.height, needed: self.height() });
        }
        Ok(())
    }

    /// Top-left pixel of bit `index`.
    fn origin(&self, index: usize) -> (usize, usize) {
        ((index % self.columns) * self.block, (index / self.columns) * self.block)
    }
}

/// Paints `number` and `capture_us` into the top of `frame`.
///
/// The whole stripe area (every block row, full frame width) is overwritten, unused blocks black.
pub fn paint(frame: &mut VideoFrame, number: u32, capture_us: u64) -> Result<(), StripeError> {
    let layout = Layout::for_width(frame.width);
    layout.fits(frame)?;
    let bytes = encode(number, capture_us);
    let height = layout.height();
    for row in 0..height {
        frame.y_row_mut(row).fill(BLACK);
    }
    for index in 0..TOTAL_BITS {
        if bytes[index / 8] & (0x80 >> (index % 8)) == 0 {
            continue;
        }
        let (x0, y0) = layout.origin(index);
        for row in y0..y0 + layout.block {
            frame.y_row_mut(row)[x0..x0 + layout.block].fill(WHITE);
        }
    }
    let (cw, _) = frame.chroma_size();
    for row in 0..height.div_ceil(2) {
        let start = row * frame.uv_stride;
        frame.u[start..start + cw].fill(128);
        frame.v[start..start + cw].fill(128);
    }
    Ok(())
}

/// Reads the stripe from the top of `frame`.
pub fn read(frame: &VideoFrame) -> Result<Stripe, StripeError> {
    let layout = Layout::for_width(frame.width);
    layout.fits(frame)?;
    let inset = layout.block / 4;
    let inner = layout.block - 2 * inset;
    let mut bytes = [0u8; TOTAL_BYTES];
    for index in 0..TOTAL_BITS {
        let (x0, y0) = layout.origin(index);
        let mut sum = 0u32;
        for row in y0 + inset..y0 + inset + inner {
            sum += frame.y_row(row)[x0 + inset..x0 + inset + inner].iter().map(|&p| u32::from(p)).sum::<u32>();
        }
        if sum >= THRESHOLD * (inner * inner) as u32 {
            bytes[index / 8] |= 0x80 >> (index % 8);
        }
    }
    let computed = CRC.checksum(&bytes[..PAYLOAD_BYTES]);
    let read = u16::from_be_bytes([bytes[12], bytes[13]]);
    if read != computed {
        return Err(StripeError::Checksum { read, computed });
    }
    let number = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut time = [0u8; 8];
    time.copy_from_slice(&bytes[4..12]);
    Ok(Stripe { number, capture_us: u64::from_be_bytes(time) })
}

fn encode(number: u32, capture_us: u64) -> [u8; TOTAL_BYTES] {
    let mut bytes = [0u8; TOTAL_BYTES];
    bytes[..4].copy_from_slice(&number.to_be_bytes());
    bytes[4..12].copy_from_slice(&capture_us.to_be_bytes());
    let crc = CRC.checksum(&bytes[..PAYLOAD_BYTES]);
    bytes[12..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::PatternSource;
    use crate::media::video_codec::{EncoderConfig, VideoCodec, VideoDecoder, VideoEncoder};

    #[test]
    fn layout_follows_width() {
        assert_eq!(Layout::for_width(320), Layout { block: 10, columns: 32, rows: 4 });
        assert_eq!(Layout::for_width(640), Layout { block: 20, columns: 32, rows: 4 });
        assert_eq!(Layout::for_width(1280).height(), 160);
        // Small frames keep 8-pixel blocks and need more rows.
        assert_eq!(Layout::for_width(96), Layout { block: 8, columns: 12, rows: 10 });
    }

    #[test]
    fn paint_then_read_round_trips() {
        let mut frame = VideoFrame::black(320, 240);
        paint(&mut frame, 0xDEAD_BEEF, 1_764_000_000_123_456).expect("320x240 fits the stripe");
        assert_eq!(read(&frame), Ok(Stripe { number: 0xDEAD_BEEF, capture_us: 1_764_000_000_123_456 }));
    }

    #[test]
    fn odd_and_padded_frames_work() {
        let (w, h) = (333, 101);
        let y = vec![90; 400 * h];
        let u = vec![60; 200 * h.div_ceil(2)];
        let mut frame = VideoFrame::from_planes(w, h, (y, u.clone(), u), 400, 200).expect("planes fit");
        paint(&mut frame, 7, 8).expect("fits");
        assert_eq!(read(&frame), Ok(Stripe { number: 7, capture_us: 8 }));
    }

    #[test]
    fn blank_frames_and_flipped_bits_fail_the_checksum() {
        let black = VideoFrame::black(320, 240);
        assert!(matches!(read(&black), Err(StripeError::Checksum { .. })));
        let mut white = VideoFrame::black(320, 240);
        white.y.fill(255);
        assert!(matches!(read(&white), Err(StripeError::Checksum { .. })));

        let mut frame = VideoFrame::black(320, 240);
        paint(&mut frame, 42, 43).expect("fits");
        // Invert one block of the capture time.
        let layout = Layout::for_width(320);
        let (x0, y0) = layout.origin(50);
        for row in y0..y0 + layout.block {
            for p in &mut frame.y_row_mut(row)[x0..x0 + layout.block] {
                *p = if *p == WHITE { BLACK } else { WHITE };
            }
        }
        assert!(matches!(read(&frame), Err(StripeError::Checksum { .. })));
    }

    #[test]
    fn tiny_frames_are_refused() {
        let mut frame = VideoFrame::black(64, 32);
        assert!(matches!(paint(&mut frame, 1, 1), Err(StripeError::FrameTooSmall { .. })));
        assert!(matches!(read(&frame), Err(StripeError::FrameTooSmall { .. })));
    }

    /// Encodes `frames` pattern frames at `bitrate` with `codec` and checks every decoded stripe;
    /// at least `min_percent` of the frames must be encoded (not dropped by rate control).
    fn survives(codec: VideoCodec, (width, height): (usize, usize), bitrate: u32, frames: u32, min_percent: u32) {
        let mut source = PatternSource::new(width, height, 30).expect("the pattern fits");
        let config = EncoderConfig { bitrate_bps: bitrate, frame_rate: 30.0, ..EncoderConfig::default() };
        let mut encoder = VideoEncoder::new(codec, config).expect("encoder starts");
        let mut decoder = VideoDecoder::new(codec).expect("decoder starts");
        let mut decoded = 0;
        let mut bytes = 0;
        for i in 0..frames {
            let capture_us = 1_764_000_000_000_000 + u64::from(i) * 33_333;
            let frame = source.next_frame(capture_us);
            let Some(encoded) = encoder.encode(&frame).expect("encodes") else { continue };
            bytes += encoded.data.len();
            let picture = decoder.decode(&encoded.data).expect("decodes").expect("one frame in, one frame out");
            assert_eq!(read(&picture), Ok(Stripe { number: i, capture_us }), "{codec}: frame {i} at {width}x{height}");
            decoded += 1;
        }
        let kbps = bytes as f64 * 8.0 * 30.0 / f64::from(frames) / 1000.0;
        assert!(decoded * 100 >= frames * min_percent, "{codec}: only {decoded} of {frames} frames were encoded");
        assert!(kbps < f64::from(bitrate) / 1000.0 * 1.5, "{codec}: {kbps:.0} kbps for a {bitrate} bps target");
    }

    #[cfg(feature = "h264")]
    #[test]
    fn survives_h264_at_320x240_300_kbps() {
        survives(VideoCodec::H264, (320, 240), 300_000, 300, 90);
    }

    #[cfg(feature = "h264")]
    #[test]
    fn survives_h264_at_640x480_1_mbps() {
        survives(VideoCodec::H264, (640, 480), 1_000_000, 300, 90);
    }

    #[cfg(feature = "h264")]
    #[test]
    fn survives_h264_at_640x480_300_kbps() {
        survives(VideoCodec::H264, (640, 480), 300_000, 150, 90);
    }

    #[test]
    fn survives_vp8_at_320x240_300_kbps() {
        survives(VideoCodec::Vp8, (320, 240), 300_000, 300, 90);
    }

    #[test]
    fn survives_vp8_at_640x480_1_mbps() {
        survives(VideoCodec::Vp8, (640, 480), 1_000_000, 300, 90);
    }

    #[test]
    fn survives_vp8_at_640x480_300_kbps() {
        // VP8 drops frames rather than go past its coarsest quantizer, and the grain makes 640x480
        // costly: 300 kbps is below what the resolution ladder gives 640x480.
        survives(VideoCodec::Vp8, (640, 480), 300_000, 150, 75);
    }

    #[test]
    fn survives_vp8_at_160x120_150_kbps() {
        survives(VideoCodec::Vp8, (160, 120), 150_000, 150, 90);
    }
}

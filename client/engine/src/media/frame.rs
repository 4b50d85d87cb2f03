//! Raw media frames: an I420 video picture with its capture time and number, and 20 ms of 48 kHz
//! mono audio. Plain data; it knows nothing about codecs or transport.

use std::time::{SystemTime, UNIX_EPOCH};

/// Audio sample rate used everywhere in the engine (Opus' native rate).
pub const SAMPLE_RATE: u32 = 48_000;
/// Length of one audio frame in milliseconds.
pub const AUDIO_FRAME_MS: u32 = 20;
/// Samples in one mono audio frame: 20 ms at 48 kHz.
pub const SAMPLES_PER_FRAME: usize = (SAMPLE_RATE / 1000 * AUDIO_FRAME_MS) as usize;

/// Microseconds of wall-clock time since the UNIX epoch.
///
/// Both peers of a test run on one machine, so a capture time taken here on one side and compared
/// with this clock on the other gives glass-to-glass latency. A clock before 1970 reads as 0.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Why planes could not be turned into a [`VideoFrame`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a video frame needs a non-zero size, got {width}x{height}")]
    EmptySize { width: usize, height: usize },
    #[error("{plane} plane is too small: {len} bytes for {rows} rows of stride {stride} and width {width}")]
    PlaneTooSmall { plane: &'static str, len: usize, rows: usize, stride: usize, width: usize },
}

/// One I420 (planar 4:2:0 YUV, 8 bit) picture.
///
/// The chroma planes are `(width + 1) / 2` by `(height + 1) / 2`. Rows are `y_stride` and
/// `uv_stride` bytes apart, which lets a decoder's padded buffers be copied as they are; frames
/// made here have tight planes (stride equal to the plane width).
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrame {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    pub y_stride: usize,
    pub uv_stride: usize,
    /// Wall-clock capture time in microseconds since the UNIX epoch (see [`now_us`]).
    pub capture_us: u64,
    /// Position of the frame in its source's sequence, starting at 0.
    pub number: u32,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("y_stride", &self.y_stride)
            .field("uv_stride", &self.uv_stride)
            .field("capture_us", &self.capture_us)
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

/// One pixel from BT.601 limited-range YUV (what cameras and OpenH264 use by default) to 8-bit
/// RGB, in integer arithmetic.
#[inline]
pub fn bt601_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let y = 298 * (i32::from(y) - 16);
    let u = i32::from(u) - 128;
    let v = i32::from(v) - 128;
    let clamp = |x: i32| x.clamp(0, 255) as u8;
    [clamp((y + 409 * v + 128) >> 8), clamp((y - 100 * u - 208 * v + 128) >> 8), clamp((y + 516 * u + 128) >> 8)]
}

impl VideoFrame {
    /// A black frame with tight planes.
    ///
    /// # Panics
    ///
    /// Panics if `width` or `height` is zero: sizes come from code, not from the network.
    pub fn black(width: usize, height: usize) -> Self {
        assert!(width > 0 && height > 0, "a video frame needs a non-zero size");
        let (cw, ch) = chroma_size(width, height);
        Self {
            width,
            height,
            y: vec![16; width * height],
            u: vec![128; cw * ch],
            v: vec![128; cw * ch],
            y_stride: width,
            uv_stride: cw,
            capture_us: 0,
            number: 0,
        }
    }

    /// Wraps existing planes, checking that they are large enough for the size and strides.
    pub fn from_planes(
        width: usize,
        height: usize,
        (y, u, v): (Vec<u8>, Vec<u8>, Vec<u8>),
        y_stride: usize,
        uv_stride: usize,
    ) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::EmptySize { width, height });
        }
        let (cw, ch) = chroma_size(width, height);
        check_plane("Y", &y, width, height, y_stride)?;
        check_plane("U", &u, cw, ch, uv_stride)?;
        check_plane("V", &v, cw, ch, uv_stride)?;
        Ok(Self { width, height, y, u, v, y_stride, uv_stride, capture_us: 0, number: 0 })
    }

    /// Checks that the planes are large enough for the size and strides (the fields are public,
    /// so a frame may have been put together by hand).
    pub fn check_planes(&self) -> Result<(), FrameError> {
        if self.width == 0 || self.height == 0 {
            return Err(FrameError::EmptySize { width: self.width, height: self.height });
        }
        let (cw, ch) = self.chroma_size();
        check_plane("Y", &self.y, self.width, self.height, self.y_stride)?;
        check_plane("U", &self.u, cw, ch, self.uv_stride)?;
        check_plane("V", &self.v, cw, ch, self.uv_stride)
    }

    /// Width and height of each chroma plane.
    pub fn chroma_size(&self) -> (usize, usize) {
        chroma_size(self.width, self.height)
    }

    /// The visible part of luma row `row`.
    pub fn y_row(&self, row: usize) -> &[u8] {
        let start = row * self.y_stride;
        &self.y[start..start + self.width]
    }

    /// The visible part of luma row `row`, writable.
    pub fn y_row_mut(&mut self, row: usize) -> &mut [u8] {
        let start = row * self.y_stride;
        &mut self.y[start..start + self.width]
    }

    /// Copies the frame into tight planes (strides equal to plane widths), keeping time and number.
    pub fn to_tight(&self) -> Self {
        let (cw, ch) = self.chroma_size();
        Self {
            width: self.width,
            height: self.height,
            y: copy_plane(&self.y, self.width, self.height, self.y_stride),
            u: copy_plane(&self.u, cw, ch, self.uv_stride),
            v: copy_plane(&self.v, cw, ch, self.uv_stride),
            y_stride: self.width,
            uv_stride: cw,
            capture_us: self.capture_us,
            number: self.number,
        }
    }
}

fn chroma_size(width: usize, height: usize) -> (usize, usize) {
    (width.div_ceil(2), height.div_ceil(2))
}

fn check_plane(plane: &'static str, data: &[u8], width: usize, rows: usize, stride: usize) -> Result<(), FrameError> {
    let needed = stride.checked_mul(rows - 1).and_then(|n| n.checked_add(width));
    match needed {
        Some(needed) if stride >= width && data.len() >= needed => Ok(()),
        _ => Err(FrameError::PlaneTooSmall { plane, len: data.len(), rows, stride, width }),
    }
}

/// Copies `rows` rows of `width` bytes, `stride` apart, into a tight buffer.
pub(crate) fn copy_plane(src: &[u8], width: usize, rows: usize, stride: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(width * rows);
    for row in 0..rows {
        out.extend_from_slice(&src[row * stride..row * stride + width]);
    }
    out
}

/// 20 ms of 48 kHz mono audio, signed 16-bit samples.
#[derive(Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub samples: [i16; SAMPLES_PER_FRAME],
}

impl AudioFrame {
    /// A frame of silence.
    pub fn silence() -> Self {
        Self { samples: [0; SAMPLES_PER_FRAME] }
    }
}

impl Default for AudioFrame {
    fn default() -> Self {
        Self::silence()
    }
}

impl std::fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peak = self.samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        f.debug_struct("AudioFrame").field("samples", &self.samples.len()).field("peak", &peak).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_frame_is_20_ms_of_48_khz() {
        assert_eq!(SAMPLES_PER_FRAME, 960);
        assert_eq!(AudioFrame::silence().samples.len(), 960);
    }

    #[test]
    fn black_frame_has_tight_planes_and_odd_sizes_round_chroma_up() {
        let frame = VideoFrame::black(7, 5);
        assert_eq!(frame.chroma_size(), (4, 3));
        assert_eq!(frame.y.len(), 35);
        assert_eq!(frame.u.len(), 12);
        assert!(frame.y.iter().all(|&y| y == 16));
    }

    #[test]
    fn from_planes_checks_sizes() {
        let ok = VideoFrame::from_planes(4, 2, (vec![0; 8], vec![0; 2], vec![0; 2]), 4, 2);
        assert!(ok.is_ok());
        let padded = VideoFrame::from_planes(4, 2, (vec![0; 12], vec![0; 4], vec![0; 4]), 6, 3);
        assert!(padded.is_ok());
        let short = VideoFrame::from_planes(4, 2, (vec![0; 7], vec![0; 2], vec![0; 2]), 4, 2);
        assert!(matches!(short, Err(FrameError::PlaneTooSmall { plane: "Y", .. })));
        let narrow = VideoFrame::from_planes(4, 2, (vec![0; 8], vec![0; 2], vec![0; 2]), 3, 2);
        assert!(narrow.is_err());
        let mut broken = VideoFrame::black(4, 2);
        assert_eq!(broken.check_planes(), Ok(()));
        broken.v.pop();
        assert!(matches!(broken.check_planes(), Err(FrameError::PlaneTooSmall { plane: "V", .. })));
        assert!(matches!(
            VideoFrame::from_planes(0, 2, (vec![], vec![], vec![]), 0, 0),
            Err(FrameError::EmptySize { .. })
        ));
    }

    #[test]
    fn to_tight_drops_padding() {
        let y: Vec<u8> = (0..12).collect();
        let frame = VideoFrame::from_planes(4, 2, (y, vec![1; 4], vec![2; 4]), 6, 3).expect("planes are large enough");
        let tight = frame.to_tight();
        assert_eq!(tight.y, vec![0, 1, 2, 3, 6, 7, 8, 9]);
        assert_eq!(tight.y_stride, 4);
        assert_eq!(tight.u.len(), 2);
        assert_eq!(tight.y_row(1), frame.y_row(1));
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(now_us() > 1_577_836_800_000_000);
    }
}

//! A synthetic video source: colour bars scrolling left, a luma ramp scrolling right and a
//! bouncing grey square, with light grain that changes every frame (like a camera's sensor noise)
//! and the stripe painted on top. Every frame differs from the last, so the encoder does real
//! motion search and rate control work, as it would on camera video.

use super::frame::VideoFrame;
use super::stripe::{self, Layout, StripeError};

/// BT.601 limited-range YUV of the classic bars: white, yellow, cyan, green, magenta, red, blue,
/// black.
const BARS: [(u8, u8, u8); 8] = [
    (235, 128, 128),
    (210, 16, 146),
    (170, 166, 16),
    (145, 54, 34),
    (106, 202, 222),
    (81, 90, 240),
    (41, 240, 110),
    (16, 128, 128),
];

/// Produces pattern frames of one size.
#[derive(Debug, Clone)]
pub struct PatternSource {
    width: usize,
    height: usize,
    fps: u32,
    number: u32,
    /// Horizontal motion of bars and ramp in pixels per frame (even, so chroma moves by whole
    /// samples).
    step: usize,
    /// Two periods of the bars' luma, so that any window of `width` pixels is one slice.
    bar_luma: Vec<u8>,
    bar_u: Vec<u8>,
    bar_v: Vec<u8>,
    ramp: Vec<u8>,
    /// Grain added to luma, read at a different offset for every row and frame.
    grain: Vec<i8>,
}

/// Peak grain in luma levels.
const GRAIN: i8 = 3;
/// Length of the grain table (a prime, so offsets do not repeat in step with the picture).
const GRAIN_LEN: usize = 65_521;

impl PatternSource {
    /// A source of `width` x `height` frames meant to be shown `fps` times a second (the motion is
    /// about a quarter of the width per second whatever the rate).
    pub fn new(width: usize, height: usize, fps: u32) -> Result<Self, StripeError> {
        let needed = Layout::for_width(width).height() + 8;
        if width < 16 || height < needed {
            return Err(StripeError::FrameTooSmall { width, height, needed });
        }
        let fps = fps.max(1);
        let step = (width / (4 * fps as usize)).max(1).next_multiple_of(2);
        let cw = width.div_ceil(2);
        let bar_luma: Vec<u8> = (0..2 * width).map(|x| BARS[x % width * 8 / width].0).collect();
        let bar_u: Vec<u8> = (0..2 * cw).map(|x| BARS[x % cw * 8 / cw].1).collect();
        let bar_v: Vec<u8> = (0..2 * cw).map(|x| BARS[x % cw * 8 / cw].2).collect();
        let ramp: Vec<u8> = (0..2 * width).map(|x| (16 + (x % width) * 219 / width) as u8).collect();
        let mut state = 0x9e37_79b9u32;
        let grain = (0..GRAIN_LEN + width)
            .map(|_| {
                // Xorshift: cheap, deterministic, and plenty for grain.
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % (2 * GRAIN as u32 + 1)) as i8 - GRAIN
            })
            .collect();
        Ok(Self { width, height, fps, number: 0, step, bar_luma, bar_u, bar_v, ramp, grain })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// Time between frames in microseconds.
    pub fn frame_interval_us(&self) -> u64 {
        1_000_000 / u64::from(self.fps)
    }

    /// The next frame, stamped and striped with its number and `capture_us`.
    pub fn next_frame(&mut self, capture_us: u64) -> VideoFrame {
        let (w, h) = (self.width, self.height);
        let mut frame = VideoFrame::black(w, h);
        let (cw, ch) = frame.chroma_size();
        let n = self.number as usize;
        let top = Layout::for_width(w).height();
        let ramp_top = (h * 3 / 4).max(top);

        // Bars scroll left.
        let shift = n * self.step % w;
        let cshift = shift / 2 % cw;
        for row in top..ramp_top {
            frame.y_row_mut(row).copy_from_slice(&self.bar_luma[shift..shift + w]);
        }
        for row in top / 2..ramp_top / 2 {
            frame.u[row * cw..row * cw + cw].copy_from_slice(&self.bar_u[cshift..cshift + cw]);
            frame.v[row * cw..row * cw + cw].copy_from_slice(&self.bar_v[cshift..cshift + cw]);
        }
        // The ramp scrolls right; its chroma stays neutral.
        let rshift = w - shift;
        for row in ramp_top..h {
            frame.y_row_mut(row).copy_from_slice(&self.ramp[rshift..rshift + w]);
        }
        // Grain over everything below the stripe.
        for row in top..h {
            let offset = (n * 7919 + row * 104_729) % GRAIN_LEN;
            for (p, &g) in frame.y_row_mut(row).iter_mut().zip(&self.grain[offset..offset + w]) {
                *p = p.saturating_add_signed(g);
            }
        }
        // A square bounces around the picture below the stripe.
        let side = ((h - top) / 4).clamp(4, w / 2);
        let x = bounce(n * 3, w - side);
        let y = top + bounce(n * 2, h - top - side);
        let luma = (64 + (n * 4) % 128) as u8;
        for row in y..y + side {
            frame.y_row_mut(row)[x..x + side].fill(luma);
        }
        for row in y / 2..((y + side) / 2).min(ch) {
            frame.u[row * cw + x / 2..row * cw + (x + side) / 2].fill(128);
            frame.v[row * cw + x / 2..row * cw + (x + side) / 2].fill(128);
        }

        frame.number = self.number;
        frame.capture_us = capture_us;
        // The size was checked in `new`, so the stripe fits.
        stripe::paint(&mut frame, self.number, capture_us).expect("the stripe fits a checked size");
        self.number = self.number.wrapping_add(1);
        frame
    }
}

/// Position after `travel` pixels of moving back and forth over `0..=span`.
fn bounce(travel: usize, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let t = travel % (2 * span);
    if t <= span {
        t
    } else {
        2 * span - t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_numbered_striped_and_moving() {
        let mut source = PatternSource::new(320, 240, 30).expect("fits");
        let first = source.next_frame(1000);
        let second = source.next_frame(2000);
        assert_eq!((first.number, first.capture_us), (0, 1000));
        assert_eq!((second.number, second.capture_us), (1, 2000));
        assert_eq!(stripe::read(&first).map(|s| s.number), Ok(0));
        assert_eq!(stripe::read(&second).map(|s| (s.number, s.capture_us)), Ok((1, 2000)));
        let changed = first.y.iter().zip(&second.y).filter(|(a, b)| a != b).count();
        assert!(changed > 320 * 240 / 10, "only {changed} luma samples changed");
        assert_ne!(first.u, second.u, "the bars' colours move too");
    }

    #[test]
    fn odd_sizes_and_low_rates_work() {
        let mut source = PatternSource::new(333, 201, 1).expect("fits");
        for i in 0..50 {
            let frame = source.next_frame(i);
            assert_eq!(stripe::read(&frame).map(|s| s.number), Ok(i as u32));
        }
        assert_eq!(source.frame_interval_us(), 1_000_000);
    }

    #[test]
    fn too_small_sizes_are_refused() {
        assert!(PatternSource::new(320, 40, 30).is_err());
        assert!(PatternSource::new(8, 240, 30).is_err());
    }

    #[test]
    fn bounce_reflects() {
        let positions: Vec<usize> = (0..8).map(|t| bounce(t, 3)).collect();
        assert_eq!(positions, vec![0, 1, 2, 3, 2, 1, 0, 1]);
        assert_eq!(bounce(5, 0), 0);
    }
}

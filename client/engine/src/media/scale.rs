//! Picture scaling for the resolution ladder: an I420 frame made smaller by averaging the source
//! pixels each output pixel covers (a box filter, which does not alias the way picking or
//! bilinear sampling does when shrinking by two or more), each plane on its own. Pure.

use super::frame::VideoFrame;

/// `frame` scaled to `width`x`height` (no larger than the frame; even sizes), with its number
/// and capture time. A frame already of that size is returned as it is.
pub fn scale(frame: &VideoFrame, width: usize, height: usize) -> VideoFrame {
    let (width, height) = (width.clamp(1, frame.width), height.clamp(1, frame.height));
    if (width, height) == (frame.width, frame.height) {
        return frame.clone();
    }
    let mut out = VideoFrame::black(width, height);
    scale_plane(&frame.y, frame.width, frame.height, frame.y_stride, &mut out.y, width, height);
    let (cw, ch) = frame.chroma_size();
    let (ow, oh) = out.chroma_size();
    scale_plane(&frame.u, cw, ch, frame.uv_stride, &mut out.u, ow, oh);
    scale_plane(&frame.v, cw, ch, frame.uv_stride, &mut out.v, ow, oh);
    out.number = frame.number;
    out.capture_us = frame.capture_us;
    out
}

/// Box-filters a `sw`x`sh` plane (rows `stride` apart) into a tight `dw`x`dh` one.
fn scale_plane(src: &[u8], sw: usize, sh: usize, stride: usize, dst: &mut [u8], dw: usize, dh: usize) {
    // Source column span of each output column, computed once.
    let columns: Vec<(usize, usize)> =
        (0..dw).map(|x| (x * sw / dw, ((x + 1) * sw / dw).max(x * sw / dw + 1).min(sw))).collect();
    let mut sums = vec![0u32; dw];
    for y in 0..dh {
        let (y0, y1) = (y * sh / dh, ((y + 1) * sh / dh).max(y * sh / dh + 1).min(sh));
        sums.iter_mut().for_each(|s| *s = 0);
        for row in y0..y1 {
            let line = &src[row * stride..row * stride + sw];
            for (sum, &(x0, x1)) in sums.iter_mut().zip(&columns) {
                *sum += line[x0..x1].iter().map(|&p| u32::from(p)).sum::<u32>();
            }
        }
        let rows = (y1 - y0) as u32;
        for (x, (sum, &(x0, x1))) in sums.iter().zip(&columns).enumerate() {
            let count = rows * (x1 - x0) as u32;
            dst[y * dw + x] = ((sum + count / 2) / count) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::stripe;

    #[test]
    fn halving_averages_each_two_by_two_block() {
        let mut frame = VideoFrame::black(4, 2);
        frame.y = vec![0, 100, 200, 200, 100, 0, 50, 50];
        frame.number = 7;
        frame.capture_us = 99;
        let half = scale(&frame, 2, 1);
        assert_eq!(half.y, [50, 125]);
        assert_eq!((half.width, half.height, half.number, half.capture_us), (2, 1, 7, 99));
        assert_eq!(half.u.len(), 1);
    }

    #[test]
    fn every_ladder_size_keeps_a_readable_stripe_when_painted_again() {
        let mut frame = VideoFrame::black(640, 480);
        (frame.number, frame.capture_us) = (42, 1234);
        stripe::paint(&mut frame, 42, 1234).expect("the stripe fits");
        for (w, h) in [(480, 360), (320, 240), (240, 180), (160, 120)] {
            let mut small = scale(&frame, w, h);
            assert_eq!((small.width, small.height), (w, h));
            let (number, capture_us) = (small.number, small.capture_us);
            stripe::paint(&mut small, number, capture_us).expect("the stripe fits");
            let read = stripe::read(&small).expect("the stripe reads");
            assert_eq!(read.number, 42);
        }
    }

    #[test]
    fn the_same_size_or_larger_is_the_frame_itself() {
        let frame = VideoFrame::black(64, 48);
        assert_eq!(scale(&frame, 64, 48), frame);
        assert_eq!(scale(&frame, 1000, 1000), frame);
    }
}

//! The camera: a capture thread that opens a camera with nokhwa (V4L2, AVFoundation or Media
//! Foundation), asks for 640x480 at 30 fps or the closest the camera offers, converts each
//! picture to I420 at 640x480 and keeps the newest in a [`FrameSlot`]. Calls read that slot
//! through [`CameraSource`], which sends the synthetic pattern whenever there is no camera, so a
//! call never waits for, or fails on, a camera.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use strangers_engine::media::frame::now_us;
use strangers_engine::media::pattern::PatternSource;
use strangers_engine::media::VideoFrame;
use strangers_engine::slot::FrameSlot;
use strangers_engine::sources::{SourceError, VideoSource};

use super::{permission, plain, Report};

/// Size and rate of what we send.
pub const WIDTH: usize = 640;
pub const HEIGHT: usize = 480;
pub const FPS: u32 = 30;
/// A camera frame older than this is not live any more: the pattern is sent instead.
const STALE: Duration = Duration::from_millis(500);

/// Names of the cameras found, in the order the platform lists them.
pub fn list() -> Vec<String> {
    match nokhwa::query(ApiBackend::Auto) {
        Ok(cameras) => cameras.iter().map(nokhwa::utils::CameraInfo::human_name).collect(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list cameras");
            Vec::new()
        }
    }
}

/// A running capture thread. Dropping it stops the thread.
pub struct Camera {
    stop: Arc<AtomicBool>,
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Camera {
    /// Starts capturing from the camera named `choice` (or the first one) into `slot`.
    /// Problems are told through `report` in plain words; the thread then ends.
    pub fn start(choice: Option<String>, slot: Arc<FrameSlot>, report: Report) -> Camera {
        Self::spawn(slot, report, move || pick(choice))
    }

    /// Starts capturing from the camera the platform numbers `index`, whether or not it
    /// exists (to see what happens when one cannot be opened).
    #[cfg(test)]
    pub fn start_index(index: u32, slot: Arc<FrameSlot>, report: Report) -> Camera {
        Self::spawn(slot, report, move || Ok((CameraIndex::Index(index), format!("number {index}"))))
    }

    fn spawn(
        slot: Arc<FrameSlot>,
        report: Report,
        pick: impl FnOnce() -> Result<(CameraIndex, String), String> + Send + 'static,
    ) -> Camera {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let spawned = std::thread::Builder::new().name("camera".into()).spawn(move || {
            let captured = pick().and_then(|(index, name)| capture(index, &name, &slot, &thread_stop, &report));
            if let Err(problem) = captured {
                report("camera", Some(problem));
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the camera thread");
        }
        Camera { stop }
    }
}

/// The camera named `choice` (or the first one, also when no camera has that name): its index
/// and name.
fn pick(choice: Option<String>) -> Result<(CameraIndex, String), String> {
    let cameras = nokhwa::query(ApiBackend::Auto).unwrap_or_default();
    let info = match &choice {
        Some(name) => cameras.iter().find(|c| &c.human_name() == name).or(cameras.first()),
        None => cameras.first(),
    };
    let Some(info) = info else {
        return Err("No camera found. The stranger sees a test pattern instead.".into());
    };
    Ok((info.index().clone(), info.human_name()))
}

fn capture(index: CameraIndex, name: &str, slot: &FrameSlot, stop: &AtomicBool, report: &Report) -> Result<(), String> {
    permission::ask()?;
    let wanted = CameraFormat::new_from(WIDTH as u32, HEIGHT as u32, FrameFormat::MJPEG, FPS);
    let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
    let mut camera = nokhwa::Camera::new(index, format).map_err(|e| {
        permission::explain_refusal(&e.to_string()).unwrap_or_else(|| {
            format!("Cannot open the camera \"{name}\" ({}). The stranger sees a test pattern instead.", plain(&e))
        })
    })?;
    camera.open_stream().map_err(|e| {
        permission::explain_refusal(&e.to_string()).unwrap_or_else(|| {
            format!("Cannot start the camera \"{name}\" ({}). The stranger sees a test pattern instead.", plain(&e))
        })
    })?;
    report("camera", None);
    let mut number = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let buffer = camera.frame().map_err(|e| {
            format!("The camera \"{name}\" stopped ({}). The stranger sees a test pattern instead.", plain(&e))
        })?;
        let Ok(image) = buffer.decode_image::<RgbFormat>() else { continue };
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut frame = rgb_to_i420_scaled(image.as_raw(), w, h, WIDTH, HEIGHT);
        frame.number = number;
        frame.capture_us = now_us();
        number = number.wrapping_add(1);
        slot.put(Arc::new(frame));
    }
    let _ = camera.stop_stream();
    Ok(())
}

/// Converts packed RGB to I420 (BT.601 limited range), scaling to `out_w` x `out_h` by nearest
/// neighbour after a centre crop to the output's aspect ratio.
pub fn rgb_to_i420_scaled(rgb: &[u8], w: usize, h: usize, out_w: usize, out_h: usize) -> VideoFrame {
    let mut frame = VideoFrame::black(out_w, out_h);
    if w == 0 || h == 0 || rgb.len() < w * h * 3 {
        return frame;
    }
    // Crop the source to the output's aspect ratio, centred.
    let (crop_w, crop_h) = if w * out_h > h * out_w { (h * out_w / out_h, h) } else { (w, w * out_h / out_w) };
    let (x0, y0) = ((w - crop_w) / 2, (h - crop_h) / 2);
    let pixel = |x: usize, y: usize| {
        let sx = x0 + x * crop_w / out_w;
        let sy = y0 + y * crop_h / out_h;
        let i = (sy * w + sx) * 3;
        (i32::from(rgb[i]), i32::from(rgb[i + 1]), i32::from(rgb[i + 2]))
    };
    for y in 0..out_h {
        for x in 0..out_w {
            let (r, g, b) = pixel(x, y);
            frame.y[y * frame.y_stride + x] = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16).clamp(0, 255) as u8;
        }
    }
    for cy in 0..out_h.div_ceil(2) {
        for cx in 0..out_w.div_ceil(2) {
            let (r, g, b) = pixel((cx * 2).min(out_w - 1), (cy * 2).min(out_h - 1));
            frame.u[cy * frame.uv_stride + cx] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128).clamp(0, 255) as u8;
            frame.v[cy * frame.uv_stride + cx] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128).clamp(0, 255) as u8;
        }
    }
    frame
}

/// What a call sends: the camera's newest picture while the camera is live, otherwise the
/// synthetic pattern. Paced by the engine's sender thread.
pub struct CameraSource {
    slot: Arc<FrameSlot>,
    seen: u64,
    last: Option<(Arc<VideoFrame>, Instant)>,
    pattern: PatternSource,
    number: u32,
}

impl CameraSource {
    pub fn new(slot: Arc<FrameSlot>) -> Result<CameraSource, SourceError> {
        let pattern = PatternSource::new(WIDTH, HEIGHT, FPS).map_err(|e| SourceError(format!("test pattern: {e}")))?;
        Ok(CameraSource { slot, seen: 0, last: None, pattern, number: 0 })
    }
}

impl VideoSource for CameraSource {
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError> {
        let now = Instant::now();
        if let Some(Some(frame)) = self.slot.take_newer(&mut self.seen) {
            self.last = Some((frame, now));
        }
        let number = self.number;
        self.number = self.number.wrapping_add(1);
        match &self.last {
            Some((frame, at)) if now.duration_since(*at) < STALE => {
                let mut frame = VideoFrame::clone(frame);
                frame.number = number;
                frame.capture_us = now_us();
                Ok(frame)
            }
            _ => Ok(self.pattern.next_frame(now_us())),
        }
    }

    fn fps(&self) -> u32 {
        FPS
    }

    fn size(&self) -> (usize, usize) {
        (WIDTH, HEIGHT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_converts_and_scales_to_i420() {
        // A 4x2 source: left half white, right half black, scaled to 2x2.
        let mut rgb = vec![0u8; 4 * 2 * 3];
        for y in 0..2 {
            for x in 0..2 {
                let i = (y * 4 + x) * 3;
                rgb[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        // The 2:1 source is cropped to the 1:1 output: its middle two columns remain.
        let frame = rgb_to_i420_scaled(&rgb, 4, 2, 2, 2);
        assert_eq!(frame.y, vec![235, 16, 235, 16]);
        assert_eq!(frame.u, vec![128]);
        assert_eq!(frame.v, vec![128]);
    }

    #[test]
    fn without_a_camera_the_source_sends_the_pattern() {
        let slot = Arc::new(FrameSlot::default());
        let mut source = CameraSource::new(slot.clone()).expect("pattern");
        let pattern = source.next_frame().expect("frame");
        assert_eq!((pattern.width, pattern.height), (WIDTH, HEIGHT));
        // A live camera frame is sent as it is, renumbered.
        let mut camera = VideoFrame::black(WIDTH, HEIGHT);
        camera.y.fill(200);
        slot.put(Arc::new(camera));
        let sent = source.next_frame().expect("frame");
        assert_eq!(sent.y[0], 200);
        assert_eq!(sent.number, 1);
    }
}

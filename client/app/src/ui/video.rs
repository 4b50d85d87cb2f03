//! Video on screen: takes the newest frame from a [`FrameSlot`] (stale frames were already
//! dropped there), converts it from I420 to RGB once, and keeps it as a texture. Drawing fits
//! the picture into a rectangle keeping its aspect ratio.

use std::sync::Arc;

use eframe::egui;
use strangers_engine::media::frame::bt601_to_rgb;
use strangers_engine::media::VideoFrame;
use strangers_engine::slot::FrameSlot;

/// One picture on screen fed from a slot.
pub struct VideoView {
    name: &'static str,
    /// Every how many pixels one is shown (2 for the small self-view).
    step: usize,
    seen: u64,
    texture: Option<egui::TextureHandle>,
    /// Frames uploaded since the start (tests and the first-frame report read it).
    pub frames_shown: u64,
}

impl VideoView {
    pub fn new(name: &'static str) -> Self {
        VideoView { name, step: 1, seen: 0, texture: None, frames_shown: 0 }
    }

    /// A view that shows one pixel in `step` each way (a small picture costs less).
    pub fn reduced(name: &'static str, step: usize) -> Self {
        VideoView { step: step.max(1), ..VideoView::new(name) }
    }

    /// Takes the slot's newest frame, if it changed, into the texture. Returns true if the
    /// picture changed.
    pub fn update(&mut self, ctx: &egui::Context, slot: &FrameSlot) -> bool {
        let Some(frame) = slot.take_newer(&mut self.seen) else { return false };
        match frame {
            Some(frame) => {
                let image = to_color_image(&frame, self.step);
                match &mut self.texture {
                    Some(texture) if texture.size() == image.size => {
                        texture.set(image, egui::TextureOptions::LINEAR);
                    }
                    _ => self.texture = Some(ctx.load_texture(self.name, image, egui::TextureOptions::LINEAR)),
                }
                self.frames_shown += 1;
            }
            None => self.texture = None,
        }
        true
    }

    pub fn has_picture(&self) -> bool {
        self.texture.is_some()
    }

    /// Size in pixels of the current picture.
    pub fn picture_size(&self) -> Option<[usize; 2]> {
        self.texture.as_ref().map(egui::TextureHandle::size)
    }

    /// Paints the picture fitted into `rect` (letterboxed), or nothing.
    pub fn paint(&self, painter: &egui::Painter, rect: egui::Rect, mirror: bool) {
        let Some(texture) = &self.texture else { return };
        let [w, h] = texture.size();
        let rect = fit(rect, w as f32 / h.max(1) as f32);
        let uv = if mirror {
            egui::Rect::from_min_max(egui::pos2(1.0, 0.0), egui::pos2(0.0, 1.0))
        } else {
            egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0))
        };
        painter.image(texture.id(), rect, uv, egui::Color32::WHITE);
    }
}

/// The largest rectangle of the given aspect ratio centred in `outer`.
pub fn fit(outer: egui::Rect, aspect: f32) -> egui::Rect {
    let size = outer.size();
    let (w, h) = if size.x / size.y.max(1.0) > aspect { (size.y * aspect, size.y) } else { (size.x, size.x / aspect) };
    egui::Rect::from_center_size(outer.center(), egui::vec2(w, h))
}

/// Converts an I420 frame to RGB (BT.601, limited range, the encoder's convention), keeping
/// one pixel in `step` each way.
pub fn to_color_image(frame: &Arc<VideoFrame>, step: usize) -> egui::ColorImage {
    let step = step.max(1);
    let (w, h) = (frame.width.div_ceil(step), frame.height.div_ceil(step));
    let mut pixels = Vec::with_capacity(w * h);
    for row in (0..frame.height).step_by(step) {
        let y_row = &frame.y[row * frame.y_stride..row * frame.y_stride + frame.width];
        let c = (row / 2) * frame.uv_stride;
        let u_row = &frame.u[c..];
        let v_row = &frame.v[c..];
        for (col, &y) in y_row.iter().enumerate().step_by(step) {
            let [r, g, b] = bt601_to_rgb(y, u_row[col / 2], v_row[col / 2]);
            pixels.push(egui::Color32::from_rgb(r, g, b));
        }
    }
    egui::ColorImage::new([w, h], pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_colour_convert_as_bt601() {
        let mut frame = VideoFrame::black(4, 2);
        frame.y.fill(235);
        let image = to_color_image(&Arc::new(frame.clone()), 1);
        assert_eq!(image.pixels[0], egui::Color32::from_rgb(255, 255, 255));
        // Pure red in BT.601 limited range: Y 81, U 90, V 240.
        frame.y.fill(81);
        frame.u.fill(90);
        frame.v.fill(240);
        let image = to_color_image(&Arc::new(frame.clone()), 1);
        let p = image.pixels[5];
        assert!(p.r() > 250 && p.g() < 5 && p.b() < 5, "{p:?}");
        let half = to_color_image(&Arc::new(frame), 2);
        assert_eq!(half.size, [2, 1]);
        assert_eq!(half.pixels[1], p);
    }

    #[test]
    fn fitting_keeps_the_aspect_ratio() {
        let outer = egui::Rect::from_min_size(egui::pos2(0.0, 0.0), egui::vec2(800.0, 400.0));
        let inner = fit(outer, 4.0 / 3.0);
        assert!((inner.width() / inner.height() - 4.0 / 3.0).abs() < 1e-3);
        assert_eq!(inner.height(), 400.0);
        assert_eq!(inner.center(), outer.center());
    }
}

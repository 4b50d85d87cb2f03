//! Saving video frames as PNG pictures (I420 converted to RGB), for `--record-dir` and for looking
//! at what a test received.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::frame::{bt601_to_rgb, VideoFrame};

/// Why a frame could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot encode PNG: {0}")]
    Encode(#[from] ::png::EncodingError),
    #[error("a {width}x{height} frame is too large for PNG")]
    TooLarge { width: usize, height: usize },
}

/// Converts a frame to packed 8-bit RGB (BT.601 limited range), upsampling chroma by
/// repetition.
pub fn to_rgb(frame: &VideoFrame) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(frame.width * frame.height * 3);
    for row in 0..frame.height {
        let c = row / 2 * frame.uv_stride;
        for (x, &luma) in frame.y_row(row).iter().enumerate() {
            rgb.extend_from_slice(&bt601_to_rgb(luma, frame.u[c + x / 2], frame.v[c + x / 2]));
        }
    }
    rgb
}

/// Writes `frame` as an RGB PNG to `out`.
pub fn write(frame: &VideoFrame, out: impl Write) -> Result<(), PngError> {
    let too_large = || PngError::TooLarge { width: frame.width, height: frame.height };
    let width = u32::try_from(frame.width).map_err(|_| too_large())?;
    let height = u32::try_from(frame.height).map_err(|_| too_large())?;
    let mut encoder = ::png::Encoder::new(out, width, height);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.set_compression(::png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&to_rgb(frame))?;
    writer.finish()?;
    Ok(())
}

/// Writes `frame` as a PNG file at `path`.
pub fn save(frame: &VideoFrame, path: &Path) -> Result<(), PngError> {
    let io = |source| PngError::Io { path: path.to_owned(), source };
    let mut file = BufWriter::new(File::create(path).map_err(io)?);
    write(frame, &mut file)?;
    file.flush().map_err(io)
}

/// Saves received frames into a directory as `{prefix}-{number:08}.png`.
#[derive(Debug, Clone)]
pub struct Recorder {
    dir: PathBuf,
    prefix: String,
}

impl Recorder {
    /// Creates `dir` if needed. `prefix` names the stream (for example `remote`).
    pub fn new(dir: impl Into<PathBuf>, prefix: &str) -> Result<Self, PngError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| PngError::Io { path: dir.clone(), source })?;
        Ok(Self { dir, prefix: prefix.to_owned() })
    }

    /// Saves one frame under `number` (the stripe's frame number, or a count) and returns its path.
    pub fn record(&self, frame: &VideoFrame, number: u32) -> Result<PathBuf, PngError> {
        let path = self.dir.join(format!("{}-{number:08}.png", self.prefix));
        save(frame, &path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::PatternSource;

    #[test]
    fn limited_range_extremes_map_to_black_white_and_primaries() {
        let mut frame = VideoFrame::black(2, 2);
        assert_eq!(to_rgb(&frame)[..3], [0, 0, 0]);
        frame.y.fill(235);
        assert_eq!(to_rgb(&frame)[..3], [255, 255, 255]);
        // BT.601 red: Y 81, U 90, V 240.
        frame.y.fill(81);
        frame.u.fill(90);
        frame.v.fill(240);
        let red = to_rgb(&frame);
        assert!(red[0] > 250 && red[1] < 5 && red[2] < 5, "{:?}", &red[..3]);
    }

    #[test]
    fn recorded_frames_read_back_as_the_same_picture() {
        let dir = std::env::temp_dir().join(format!("strangers-png-test-{}", std::process::id()));
        let recorder = Recorder::new(&dir, "remote").expect("temp dir is writable");
        let frame = PatternSource::new(320, 240, 30).expect("fits").next_frame(5);
        let path = recorder.record(&frame, 12).expect("saved");
        assert!(path.ends_with("remote-00000012.png"));

        let decoder = ::png::Decoder::new(std::io::BufReader::new(File::open(&path).expect("exists")));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size().expect("fits memory")];
        let info = reader.next_frame(&mut pixels).expect("decodes");
        assert_eq!((info.width, info.height, info.color_type), (320, 240, ::png::ColorType::Rgb));
        assert_eq!(pixels, to_rgb(&frame));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn unwritable_paths_give_errors() {
        let frame = VideoFrame::black(4, 4);
        let err = save(&frame, Path::new("/nonexistent-dir/x.png")).expect_err("no such directory");
        assert!(err.to_string().contains("/nonexistent-dir/x.png"), "{err}");
    }
}

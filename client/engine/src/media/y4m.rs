//! A video source reading YUV4MPEG2 (`.y4m`) files: 8-bit 4:2:0 only (`C420`, `C420jpeg`,
//! `C420paldv`, `C420mpeg2`, or no `C` tag), frame rate from the header, looping back to the
//! first frame at the end of the file. Chroma siting differences between the 4:2:0 variants are
//! ignored; all are read as I420.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::frame::VideoFrame;

/// Frames larger than this are refused (a 4:2:0 frame of 64 MiB is about 6000x7500 pixels).
const MAX_FRAME_BYTES: usize = 64 << 20;
const MAGIC: &[u8] = b"YUV4MPEG2 ";

/// Why a Y4M file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Y4mError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a Y4M file: {path} (it does not start with \"YUV4MPEG2 \")")]
    NotY4m { path: PathBuf },
    #[error(
        "unsupported colour space {colour_space} in {path}: only 8-bit 4:2:0 \
         (C420, C420jpeg, C420paldv, C420mpeg2) is supported"
    )]
    UnsupportedColourSpace { path: PathBuf, colour_space: String },
    #[error("bad Y4M header in {path}: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("bad Y4M frame {number} in {path}: {reason}")]
    BadFrame { path: PathBuf, number: u64, reason: String },
    #[error("{path} holds no frames")]
    NoFrames { path: PathBuf },
}

/// Reads frames from a Y4M file, forever (it loops).
pub struct Y4mSource {
    path: PathBuf,
    decoder: y4m::Decoder<BufReader<File>>,
    width: usize,
    height: usize,
    frame_rate: (u32, u32),
    /// Frames read since the file was last (re)opened.
    read_in_pass: u64,
    number: u32,
}

impl std::fmt::Debug for Y4mSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Y4mSource")
            .field("path", &self.path)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("frame_rate", &self.frame_rate)
            .finish_non_exhaustive()
    }
}

impl Y4mSource {
    /// Opens `path` and checks its header; the first frame is read by [`next_frame`](Self::next_frame).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Y4mError> {
        let path = path.as_ref().to_owned();
        let decoder = open_decoder(&path)?;
        let (width, height) = (decoder.get_width(), decoder.get_height());
        let rate = decoder.get_framerate();
        let frame_rate = match (u32::try_from(rate.num), u32::try_from(rate.den)) {
            (Ok(num), Ok(den)) if num > 0 && den > 0 => (num, den),
            _ => return Err(Y4mError::BadHeader { path, reason: format!("frame rate {rate} is not usable") }),
        };
        Ok(Self { path, decoder, width, height, frame_rate, read_in_pass: 0, number: 0 })
    }

    /// Picture size in pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Frame rate from the header as numerator and denominator (30000 and 1001 for 29.97).
    pub fn frame_rate(&self) -> (u32, u32) {
        self.frame_rate
    }

    /// Frame rate rounded to whole frames per second, at least 1.
    pub fn fps(&self) -> u32 {
        let (num, den) = self.frame_rate;
        ((f64::from(num) / f64::from(den)).round() as u32).max(1)
    }

    /// The next frame, numbered from 0 across loops. Its capture time is 0: the caller stamps it
    /// when it is actually shown or sent.
    pub fn next_frame(&mut self) -> Result<VideoFrame, Y4mError> {
        let mut frame = match self.read() {
            Err(Y4mError::NoFrames { .. }) if self.read_in_pass > 0 => {
                self.decoder = open_decoder(&self.path)?;
                self.read_in_pass = 0;
                self.read()?
            }
            other => other?,
        };
        self.read_in_pass += 1;
        frame.number = self.number;
        self.number = self.number.wrapping_add(1);
        Ok(frame)
    }

    /// Reads one frame; the end of the file is reported as `NoFrames`.
    fn read(&mut self) -> Result<VideoFrame, Y4mError> {
        let (width, height) = (self.width, self.height);
        let number = self.read_in_pass;
        let raw = match self.decoder.read_frame() {
            Ok(raw) => raw,
            // A truncated last frame also reads as the end of the file.
            Err(y4m::Error::EOF) => return Err(Y4mError::NoFrames { path: self.path.clone() }),
            Err(y4m::Error::IoError(source)) => return Err(Y4mError::Io { path: self.path.clone(), source }),
            Err(e) => return Err(Y4mError::BadFrame { path: self.path.clone(), number, reason: e.to_string() }),
        };
        let cw = width.div_ceil(2);
        let planes = (raw.get_y_plane().to_vec(), raw.get_u_plane().to_vec(), raw.get_v_plane().to_vec());
        VideoFrame::from_planes(width, height, planes, width, cw).map_err(|e| Y4mError::BadFrame {
            path: self.path.clone(),
            number,
            reason: e.to_string(),
        })
    }
}

/// Opens the file and parses its header, accepting only 8-bit 4:2:0.
fn open_decoder(path: &Path) -> Result<y4m::Decoder<BufReader<File>>, Y4mError> {
    let io = |source| Y4mError::Io { path: path.to_owned(), source };
    let mut header = Vec::with_capacity(1024);
    File::open(path).map_err(io)?.take(1024).read_to_end(&mut header).map_err(io)?;
    if !header.starts_with(MAGIC) {
        return Err(Y4mError::NotY4m { path: path.to_owned() });
    }
    let line_end = header.iter().position(|&b| b == b'\n').unwrap_or(header.len());
    let tag = header[MAGIC.len()..line_end]
        .split(|&b| b == b' ')
        .find(|field| field.first() == Some(&b'C'))
        .map(|field| String::from_utf8_lossy(field).into_owned());
    let unsupported = |colour_space: String| Y4mError::UnsupportedColourSpace { path: path.to_owned(), colour_space };

    let file = File::open(path).map_err(io)?;
    let limits = y4m::Limits { bytes: MAX_FRAME_BYTES };
    let decoder = match y4m::Decoder::new_with_limits(BufReader::new(file), limits) {
        Ok(decoder) => decoder,
        Err(y4m::Error::UnknownColorspace) => return Err(unsupported(tag.unwrap_or_default())),
        Err(y4m::Error::IoError(source)) => return Err(io(source)),
        Err(y4m::Error::OutOfMemory) => {
            return Err(Y4mError::BadHeader {
                path: path.to_owned(),
                reason: format!("frames larger than {} MiB are not supported", MAX_FRAME_BYTES >> 20),
            })
        }
        Err(e) => return Err(Y4mError::BadHeader { path: path.to_owned(), reason: e.to_string() }),
    };
    match decoder.get_colorspace() {
        y4m::Colorspace::C420 | y4m::Colorspace::C420jpeg | y4m::Colorspace::C420paldv | y4m::Colorspace::C420mpeg2 => {
            Ok(decoder)
        }
        other => Err(unsupported(tag.unwrap_or_else(|| format!("{other:?}")))),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A temporary file removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!("strangers-y4m-{}-{name}", std::process::id()));
            let mut file = File::create(&path).expect("temp dir is writable");
            file.write_all(contents).expect("write");
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A Y4M file of `frames` frames whose samples all equal the frame index (Y) and 100 + index
    /// (U) and 200 + index (V).
    fn y4m_bytes(header: &str, width: usize, height: usize, frames: u8) -> Vec<u8> {
        let mut out = format!("YUV4MPEG2 {header}\n").into_bytes();
        let chroma = width.div_ceil(2) * height.div_ceil(2);
        for i in 0..frames {
            out.extend_from_slice(b"FRAME\n");
            out.extend(std::iter::repeat_n(i, width * height));
            out.extend(std::iter::repeat_n(100 + i, chroma));
            out.extend(std::iter::repeat_n(200 + i, chroma));
        }
        out
    }

    #[test]
    fn reads_4_2_0_variants_and_loops() {
        for tag in ["", " C420", " C420jpeg", " C420paldv", " C420mpeg2"] {
            let file =
                TempFile::new(&format!("loop{tag}"), &y4m_bytes(&format!("W6 H4 F30000:1001 Ip A1:1{tag}"), 6, 4, 3));
            let mut source = Y4mSource::open(&file.0).expect("opens");
            assert_eq!(source.size(), (6, 4));
            assert_eq!(source.frame_rate(), (30000, 1001));
            assert_eq!(source.fps(), 30);
            let lumas: Vec<(u32, u8, u8, u8)> = (0..7)
                .map(|_| {
                    let f = source.next_frame().expect("a frame");
                    (f.number, f.y[0], f.u[5], f.v[0])
                })
                .collect();
            assert_eq!(
                lumas,
                vec![
                    (0, 0, 100, 200),
                    (1, 1, 101, 201),
                    (2, 2, 102, 202),
                    (3, 0, 100, 200),
                    (4, 1, 101, 201),
                    (5, 2, 102, 202),
                    (6, 0, 100, 200)
                ],
                "tag {tag:?}"
            );
        }
    }

    #[test]
    fn odd_sizes_round_chroma_up() {
        let file = TempFile::new("odd", &y4m_bytes("W5 H3 F25:1", 5, 3, 1));
        let frame = Y4mSource::open(&file.0).expect("opens").next_frame().expect("a frame");
        assert_eq!((frame.width, frame.height, frame.u.len()), (5, 3, 6));
    }

    #[test]
    fn clear_errors() {
        let not_y4m = TempFile::new("png", b"\x89PNG\r\n\x1a\n....");
        let err = Y4mSource::open(&not_y4m.0).expect_err("not Y4M");
        assert!(err.to_string().starts_with("not a Y4M file: "), "{err}");

        let empty = TempFile::new("empty", b"");
        assert!(matches!(Y4mSource::open(&empty.0), Err(Y4mError::NotY4m { .. })));

        for tag in ["C422", "C444", "Cmono", "C420p10", "C411"] {
            let file = TempFile::new(tag, format!("YUV4MPEG2 W4 H4 F30:1 {tag}\n").as_bytes());
            let err = Y4mSource::open(&file.0).expect_err("unsupported");
            assert!(
                matches!(&err, Y4mError::UnsupportedColourSpace { colour_space, .. } if colour_space == tag),
                "{err}"
            );
            assert!(err.to_string().contains("unsupported colour space"), "{err}");
        }

        let no_frames = TempFile::new("noframes", b"YUV4MPEG2 W4 H4 F30:1\n");
        let mut source = Y4mSource::open(&no_frames.0).expect("the header is fine");
        assert!(matches!(source.next_frame(), Err(Y4mError::NoFrames { .. })));

        let zero_rate = TempFile::new("zerorate", b"YUV4MPEG2 W4 H4 F30:0\n");
        assert!(matches!(Y4mSource::open(&zero_rate.0), Err(Y4mError::BadHeader { .. })));
        let no_size = TempFile::new("nosize", b"YUV4MPEG2 F30:1\n");
        assert!(matches!(Y4mSource::open(&no_size.0), Err(Y4mError::BadHeader { .. })));
        let huge = TempFile::new("huge", b"YUV4MPEG2 W99999 H99999 F30:1\n");
        assert!(matches!(Y4mSource::open(&huge.0), Err(Y4mError::BadHeader { .. })));

        let mut bad_frame = y4m_bytes("W2 H2 F30:1", 2, 2, 1);
        bad_frame.extend_from_slice(b"FRAMX\n123456");
        let bad_frame = TempFile::new("badframe", &bad_frame);
        let mut source = Y4mSource::open(&bad_frame.0).expect("opens");
        assert!(source.next_frame().is_ok());
        assert!(matches!(source.next_frame(), Err(Y4mError::BadFrame { number: 1, .. })));

        let missing = Y4mSource::open("/nonexistent/clip.y4m").expect_err("no such file");
        assert!(matches!(missing, Y4mError::Io { .. }));
    }
}

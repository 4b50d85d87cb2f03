//! Where outgoing media comes from: the synthetic pattern and tone, Y4M and WAV files, and (in
//! the desktop app) the camera and microphone, all behind two small traits. Every video frame
//! leaves a source stamped with its number and capture time and carrying the stripe, so the
//! receiver can verify it whatever the source.

use std::path::PathBuf;
use std::sync::Arc;

use crate::media::frame::now_us;
use crate::media::{AudioFrame, VideoFrame};

/// Why a source cannot deliver.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// A source of video frames at a steady rate.
pub trait VideoSource: Send {
    /// The next frame, stamped and striped.
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError>;
    fn fps(&self) -> u32;
    fn size(&self) -> (usize, usize);
}

/// A source of 20 ms audio frames at 48 kHz.
pub trait AudioSource: Send {
    fn next_frame(&mut self) -> Result<AudioFrame, SourceError>;
}

/// Where the stranger's decoded audio goes (a speaker). `play` is called on the call's audio
/// decoding thread with each 20 ms frame at 48 kHz; it must not block for long.
pub trait AudioSink: Send + Sync {
    fn play(&self, frame: &AudioFrame);
}

/// Makes a source for each call: how an application plugs in its own devices (a camera, a
/// microphone) without the engine knowing them.
pub struct SourceFactory<T: ?Sized>(pub Arc<dyn Fn() -> Result<Box<T>, SourceError> + Send + Sync>);

impl<T: ?Sized> Clone for SourceFactory<T> {
    fn clone(&self) -> Self {
        SourceFactory(self.0.clone())
    }
}

impl<T: ?Sized> std::fmt::Debug for SourceFactory<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceFactory")
    }
}

/// Two factories are equal when they are the same factory.
impl<T: ?Sized> PartialEq for SourceFactory<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// An [`AudioSink`] shared by every call of an engine.
#[derive(Clone)]
pub struct AudioOut(pub Arc<dyn AudioSink>);

impl std::fmt::Debug for AudioOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AudioOut")
    }
}

/// Which video source a call uses.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoSpec {
    Pattern {
        width: usize,
        height: usize,
        fps: u32,
    },
    Y4m(PathBuf),
    /// A source the application makes (the desktop app's camera).
    Custom(SourceFactory<dyn VideoSource>),
}

/// Which audio source a call uses.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSpec {
    Tone {
        hz: f64,
    },
    Wav(PathBuf),
    Silence,
    /// A source the application makes (the desktop app's microphone).
    Custom(SourceFactory<dyn AudioSource>),
}

impl VideoSpec {
    /// Opens the source (files are checked here, before any call starts).
    pub fn open(&self) -> Result<Box<dyn VideoSource>, SourceError> {
        match self {
            VideoSpec::Pattern { width, height, fps } => {
                let pattern = crate::media::pattern::PatternSource::new(*width, *height, *fps)
                    .map_err(|e| SourceError(format!("test pattern: {e}")))?;
                Ok(Box::new(Pattern(pattern)))
            }
            VideoSpec::Y4m(path) => {
                let reader = crate::media::y4m::Y4mSource::open(path)
                    .map_err(|e| SourceError(format!("{}: {e}", path.display())))?;
                Ok(Box::new(Y4m { reader, number: 0 }))
            }
            VideoSpec::Custom(factory) => (factory.0)(),
        }
    }
}

impl AudioSpec {
    pub fn open(&self) -> Result<Box<dyn AudioSource>, SourceError> {
        match self {
            AudioSpec::Tone { hz } => Ok(Box::new(Tone(crate::media::tone::ToneSource::new(*hz, 8000).syllables()))),
            AudioSpec::Wav(path) => {
                let wav = crate::media::wav::WavSource::open(path)
                    .map_err(|e| SourceError(format!("{}: {e}", path.display())))?;
                Ok(Box::new(Wav(wav)))
            }
            AudioSpec::Silence => Ok(Box::new(Silence)),
            AudioSpec::Custom(factory) => (factory.0)(),
        }
    }
}

struct Pattern(crate::media::pattern::PatternSource);

impl VideoSource for Pattern {
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError> {
        Ok(self.0.next_frame(now_us()))
    }
    fn fps(&self) -> u32 {
        self.0.fps()
    }
    fn size(&self) -> (usize, usize) {
        (self.0.width(), self.0.height())
    }
}

struct Y4m {
    reader: crate::media::y4m::Y4mSource,
    number: u32,
}

impl VideoSource for Y4m {
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError> {
        let mut frame = self.reader.next_frame().map_err(|e| SourceError(e.to_string()))?;
        frame.number = self.number;
        frame.capture_us = now_us();
        self.number = self.number.wrapping_add(1);
        let (number, capture_us) = (frame.number, frame.capture_us);
        crate::media::stripe::paint(&mut frame, number, capture_us).map_err(|e| SourceError(format!("stripe: {e}")))?;
        Ok(frame)
    }
    fn fps(&self) -> u32 {
        self.reader.fps()
    }
    fn size(&self) -> (usize, usize) {
        self.reader.size()
    }
}

struct Tone(crate::media::tone::ToneSource);

impl AudioSource for Tone {
    fn next_frame(&mut self) -> Result<AudioFrame, SourceError> {
        Ok(self.0.next_frame())
    }
}

struct Wav(crate::media::wav::WavSource);

impl AudioSource for Wav {
    fn next_frame(&mut self) -> Result<AudioFrame, SourceError> {
        Ok(self.0.next_frame())
    }
}

struct Silence;

impl AudioSource for Silence {
    fn next_frame(&mut self) -> Result<AudioFrame, SourceError> {
        Ok(AudioFrame::silence())
    }
}

//! Real devices behind the engine's source and sink traits: the camera ([`camera`]), the
//! microphone and speaker ([`audio`]) with resampling (the engine's `media::resample`) and echo
//! cancellation ([`echo`]). Every device runs on a thread of its own and is opened there, so the window
//! never waits for one; a missing or failing device is reported in plain words and replaced by
//! the synthetic pattern or silence.

pub mod audio;
pub mod camera;
pub mod check;
pub mod echo;
pub mod permission;

use std::sync::Arc;

use strangers_engine::slot::FrameSlot;
use strangers_engine::sources::{AudioOut, AudioSource, AudioSpec, SourceFactory, VideoSource, VideoSpec};

use audio::{AudioDevice, AudioPath, Direction};
use camera::{Camera, CameraSource};
use echo::EchoSettings;

/// Tells the window about a device: its topic ("camera", "microphone", "speaker") and a
/// problem in plain words, or none when the device works. Called from device threads.
pub type Report = Arc<dyn Fn(&str, Option<String>) + Send + Sync>;

/// An error's message without its closing full stop, to sit inside a sentence.
pub(crate) fn plain(error: &impl std::fmt::Display) -> String {
    error.to_string().trim_end_matches('.').to_owned()
}

/// Which devices to use: a device's name, or none for the system's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceChoice {
    pub camera: Option<String>,
    pub microphone: Option<String>,
    pub speaker: Option<String>,
    pub echo_cancellation: bool,
}

/// The devices in use.
pub struct Devices {
    /// The camera's newest picture (the self-view and what calls send).
    pub camera_slot: Arc<FrameSlot>,
    pub audio: Arc<AudioPath>,
    choice: DeviceChoice,
    camera: Option<Camera>,
    mic: Option<AudioDevice>,
    speaker: Option<AudioDevice>,
    report: Report,
}

impl Devices {
    /// The devices' shared parts, with no device opened yet: until [`Devices::open`], calls
    /// send the synthetic pattern and silence.
    pub fn new(choice: DeviceChoice) -> Devices {
        let echo = choice.echo_cancellation.then(EchoSettings::default);
        Devices {
            camera_slot: Arc::new(FrameSlot::default()),
            audio: AudioPath::new(echo),
            choice,
            camera: None,
            mic: None,
            speaker: None,
            report: Arc::new(|_: &str, _: Option<String>| {}),
        }
    }

    /// Opens every chosen device, each on its thread; returns at once. Problems go to `report`.
    pub fn open(&mut self, report: Report) {
        self.report = report;
        self.open_camera();
        self.open_mic();
        self.open_speaker();
    }

    /// Switches to the chosen devices, reopening only those that changed.
    pub fn apply(&mut self, choice: DeviceChoice) {
        let old = std::mem::replace(&mut self.choice, choice);
        if old.camera != self.choice.camera {
            self.open_camera();
        }
        if old.microphone != self.choice.microphone {
            self.open_mic();
        }
        if old.speaker != self.choice.speaker {
            self.open_speaker();
        }
        if old.echo_cancellation != self.choice.echo_cancellation {
            self.audio.set_echo(self.choice.echo_cancellation.then(EchoSettings::default));
        }
    }

    fn open_camera(&mut self) {
        // The old capture thread stops before the new one opens the camera.
        self.camera = None;
        self.camera = Some(Camera::start(self.choice.camera.clone(), self.camera_slot.clone(), self.report.clone()));
    }

    fn open_mic(&mut self) {
        self.mic = None;
        let (choice, path, report) = (self.choice.microphone.clone(), self.audio.clone(), self.report.clone());
        self.mic = Some(AudioDevice::start(Direction::Input, choice, path, report));
    }

    fn open_speaker(&mut self) {
        self.speaker = None;
        let (choice, path, report) = (self.choice.speaker.clone(), self.audio.clone(), self.report.clone());
        self.speaker = Some(AudioDevice::start(Direction::Output, choice, path, report));
    }

    /// What calls send as video: the camera, or the pattern without one.
    pub fn video_spec(&self) -> VideoSpec {
        let slot = self.camera_slot.clone();
        VideoSpec::Custom(SourceFactory(Arc::new(move || {
            CameraSource::new(slot.clone()).map(|s| Box::new(s) as Box<dyn VideoSource>)
        })))
    }

    /// What calls send as audio: the microphone, or silence without one.
    pub fn audio_spec(&self) -> AudioSpec {
        let path = self.audio.clone();
        AudioSpec::Custom(SourceFactory(Arc::new(move || Ok(Box::new(path.source()) as Box<dyn AudioSource>))))
    }

    /// Where calls play the stranger's audio.
    pub fn audio_out(&self) -> AudioOut {
        AudioOut(Arc::new(self.audio.sink()))
    }
}

/// Names of the cameras, microphones and speakers found (slow on some systems: call it off
/// the window's thread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceLists {
    pub cameras: Vec<String>,
    pub microphones: Vec<String>,
    pub speakers: Vec<String>,
}

impl DeviceLists {
    pub fn scan() -> DeviceLists {
        DeviceLists {
            cameras: camera::list(),
            microphones: audio::list(Direction::Input),
            speakers: audio::list(Direction::Output),
        }
    }
}

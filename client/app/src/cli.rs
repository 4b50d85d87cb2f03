//! Command-line flags of the `strangers` binary.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use strangers_engine::call::CallSettings;
use strangers_engine::engine::EngineConfig;
use strangers_engine::media::video_codec::VideoCodec;
use strangers_engine::peer::PeerSettings;
use strangers_engine::signaling::SignalingConfig;
use strangers_engine::sources::{AudioSpec, VideoSpec};
use strangers_engine::turn_bridge::TurnTls;

/// Strangers: meet a random stranger face to face.
#[derive(Debug, Clone, Parser)]
#[command(name = "strangers", version, about)]
pub struct Cli {
    /// A link to a server, strangers://HOST[:PORT][/PATH] (wss:// unless the host is loopback
    /// or the link ends in ?tls=0); it wins over --server.
    #[arg(value_name = "LINK")]
    pub link: Option<String>,

    /// Run without a window, printing one JSON event per line on stdout.
    #[arg(long)]
    pub headless: bool,

    /// Window: start looking for a stranger at once, as if Start were pressed.
    #[arg(long)]
    pub start: bool,

    /// Window: show the call statistics over the video.
    #[arg(long)]
    pub stats: bool,

    /// Check the microphone and speaker for this many seconds: play a tone, measure what would
    /// be sent, print one JSON line, exit.
    #[arg(long, value_name = "SECS")]
    pub audio_check: Option<f64>,

    /// Turn echo cancellation, noise suppression and gain control off (they are on by default).
    #[arg(long)]
    pub no_echo_cancellation: bool,

    /// Window: also print the engine's events as JSON lines on stdout, and a `video_on_screen`
    /// line when a stranger's picture is first drawn and whenever its size changes (tests,
    /// scripts).
    #[arg(long)]
    pub events: bool,

    /// Signal server URL (repeatable: the next one is tried when one fails). Default: the
    /// server this build was made for, if any; in the window, the one chosen there before.
    #[arg(long = "server", env = "STRANGERS_SERVER", value_delimiter = ',')]
    pub servers: Vec<String>,

    /// Headless: accept the server's rules (and confirm being 18 or older) without showing
    /// them. Without it, on a server with rules, nobody is looked for: a `rules_required` event, exit code 3.
    #[arg(long)]
    pub accept_rules: bool,

    /// Interests to match on (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub interests: Vec<String>,

    /// Video to send: "pattern" (a synthetic test pattern) or a .y4m file.
    #[arg(long, default_value = "pattern")]
    pub video: String,

    /// Test pattern size and rate.
    #[arg(long, default_value_t = 640)]
    pub width: usize,
    #[arg(long, default_value_t = 480)]
    pub height: usize,
    #[arg(long, default_value_t = 30)]
    pub fps: u32,

    /// Audio to send: "tone", "silence" or a .wav file.
    #[arg(long, default_value = "tone")]
    pub audio: String,

    /// Frequency of the test tone, Hz.
    #[arg(long, default_value_t = 440.0)]
    pub tone_hz: f64,

    /// Calls to take before exiting (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub calls: u32,

    /// Press Next this many seconds into each connected call.
    #[arg(long, value_name = "SECS")]
    pub next_after: Option<f64>,

    /// Exit after this many seconds in all.
    #[arg(long, value_name = "SECS")]
    pub exit_after: Option<f64>,

    /// Send this chat message once the chat channel of a call opens.
    #[arg(long, value_name = "TEXT")]
    pub say: Option<String>,

    /// Relay-only privacy mode: media goes through TURN, the stranger never learns our address.
    #[arg(long)]
    pub relay_only: bool,

    /// Save received frames as PNG in this directory (one per `--record-every` frames).
    #[arg(long, value_name = "DIR")]
    pub record_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub record_every: u32,

    /// Local address to gather ICE host candidates on. An address chosen here is offered to the
    /// stranger as it is; with the default (every interface) private addresses are never sent.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Offer loopback candidates (both clients on one machine, no network).
    #[arg(long)]
    pub loopback: bool,

    /// Send bitrate (audio and video) congestion control starts at and stays within, kbit/s.
    #[arg(long, default_value_t = 300)]
    pub start_kbps: u32,
    #[arg(long, default_value_t = 60)]
    pub min_kbps: u32,
    #[arg(long, default_value_t = 2700)]
    pub max_kbps: u32,

    /// Video codecs to offer and accept, most preferred first (vp8, h264).
    #[arg(long, value_delimiter = ',', default_values_t = VideoCodec::all_available().to_vec())]
    pub video_codecs: Vec<VideoCodec>,

    /// Trust this CA (a PEM file) for `turns:` servers, beside the system's roots: for TURN
    /// servers with a certificate from a private CA.
    #[arg(long, value_name = "FILE")]
    pub turn_ca: Option<PathBuf>,
}

impl Cli {
    pub fn engine_config(&self) -> EngineConfig {
        let video = match self.video.as_str() {
            "pattern" => VideoSpec::Pattern { width: self.width, height: self.height, fps: self.fps },
            path => VideoSpec::Y4m(PathBuf::from(path)),
        };
        let audio = match self.audio.as_str() {
            "tone" => AudioSpec::Tone { hz: self.tone_hz },
            "silence" => AudioSpec::Silence,
            path => AudioSpec::Wav(PathBuf::from(path)),
        };
        let bind_ip =
            if self.loopback && self.bind.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { self.bind };
        EngineConfig {
            signaling: SignalingConfig {
                urls: self.servers.clone(),
                interests: self.interests.clone(),
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(5),
            },
            call: CallSettings {
                peer: PeerSettings {
                    relay_only: self.relay_only,
                    bind_ip,
                    include_loopback: self.loopback,
                    ice_check_interval: Duration::from_millis(20),
                    bitrate_start: self.start_kbps * 1000,
                    bitrate_min: self.min_kbps * 1000,
                    bitrate_max: self.max_kbps * 1000,
                    video_codecs: self.video_codecs.clone(),
                    turn_tls: TurnTls { extra_ca_file: self.turn_ca.clone() },
                },
                video,
                audio,
                record_dir: self.record_dir.clone(),
                record_every: self.record_every.max(1),
                audio_out: None,
            },
        }
    }
}

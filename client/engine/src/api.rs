//! The engine's interface, shared by the desktop window, the headless mode and tests:
//! [`Command`]s in, [`Event`]s out. Events serialise to the JSON lines of headless mode.

use serde::Serialize;
use strangers_protocol::ErrorCode;

/// What the user (or a test) asks the engine to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start looking for a stranger.
    Find,
    /// Leave the current stranger (if any) and look for another.
    Next,
    /// Leave the stranger or the queue and stay idle.
    Stop,
    /// Send a chat message to the stranger.
    Chat(String),
    /// Tell the stranger whether we are typing.
    Typing(bool),
    /// Stop or resume sending audio (silence is sent while muted).
    MuteAudio(bool),
    /// Stop or resume sending video (black frames are sent while muted).
    MuteVideo(bool),
    /// Ask the stranger's encoder for a keyframe (diagnostics; the engine does it by itself
    /// after a loss).
    RequestKeyframe,
    /// Report the current stranger.
    Report(String),
    /// Leave everything and end the engine.
    Shutdown,
}

/// Candidate types of the selected ICE pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PathInfo {
    pub local: String,
    pub remote: String,
    /// The address family of the pair (`ipv4` or `ipv6`, `unknown` when neither address can be
    /// read): the family of the pair's addresses, which for a relayed candidate is the relay's,
    /// however we reach the TURN server.
    pub family: String,
    /// When our side is relayed: how we reach the TURN server (`udp`, `tcp` or `tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// One second of call statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallStats {
    pub sent_fps: f64,
    pub recv_fps: f64,
    pub sent_kbps: f64,
    pub recv_kbps: f64,
    /// Target bitrate of the video encoder (congestion control), kbit/s.
    pub target_kbps: f64,
    pub rtt_ms: Option<f64>,
    /// Fraction of inbound packets lost, 0 to 1, since the call began.
    pub loss: f64,
    /// Inbound RTP packets lost (after retransmission) and received since the call began.
    pub packets_lost: u64,
    pub packets_received: u64,
    /// Frames whose stripe was read back intact since the call began.
    pub frames_verified: u64,
    /// Frames decoded whose stripe did not verify (corruption) since the call began.
    pub verify_errors: u64,
    /// Frames that arrived out of order since the call began.
    pub out_of_order: u64,
    /// Glass-to-glass latency of this second's verified frames (capture to decode), ms.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_max: Option<f64>,
    /// Size of the last decoded frame of the stranger's video.
    pub width: u32,
    pub height: u32,
    /// The video codec in use (`VP8` or `H264`), once negotiated.
    pub codec: Option<String>,
    /// Size we send, and why it last changed (`start`, `bandwidth_low`, `bandwidth_high`).
    pub send_width: u32,
    pub send_height: u32,
    pub size_reason: Option<String>,
    /// Audio frames (20 ms) the receiver had to conceal since the call began: lost or late
    /// packets, each a gap in what the stranger said.
    pub audio_gaps: u64,
    /// How those gaps and the playout delay came about.
    pub audio_receive: AudioReceive,
    /// Dominant frequency of the received audio, Hz, and its level (RMS, 0 to 1).
    pub audio_hz: Option<f64>,
    pub audio_rms: f64,
    pub path: Option<PathInfo>,
    /// How many times the call has moved to another candidate pair since its first one (from
    /// a relayed pair to a direct one that worked later, an ICE restart), also switches that
    /// came and went between two reports.
    pub path_switches: u32,
    pub keyframes_requested: u64,
}

/// The audio receiver's account since the call began: what became of the stranger's 20 ms
/// frames, and the playout delay it holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AudioReceive {
    /// Frames missing at their turn and rebuilt from the next packet's in-band FEC.
    pub fec_recovered: u64,
    /// Frames missing at their turn with nothing to rebuild them from: concealed.
    pub concealed: u64,
    /// Packets that arrived after their turn (already counted as missing).
    pub late: u64,
    /// Frames played from concealment while the playout delay grew (waiting for a late stream,
    /// or building up to a larger target): sound stretched, nothing lost.
    pub stretched: u64,
    /// Of those, frames spent waiting for a late stream.
    pub waited_late: u64,
    /// Packets played shorter (a pitch period or more taken out) to bring the delay down.
    pub hurried: u64,
    /// Sound taken out of those packets, ms.
    pub shortened_ms: u64,
    /// The playout delay the jitter buffer aims for now, ms.
    pub delay_ms: f64,
}

/// What an `error` event is about. It is written as its name (`call`, `chat`, `media`,
/// `signal`, `ice`, `ice_server`, `refused`, `outdated`, or the server's error code such as
/// `rate_limited`), so the JSON is what it always was; in code it is matched, not compared as
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The call could not start or had to be given up.
    Call,
    /// A chat message could not be sent.
    Chat,
    /// A media source or codec failed; the call goes on without it.
    Media,
    /// The stranger sent a signal we cannot use.
    Signal,
    /// An ICE restart could not be made.
    Ice,
    /// An ICE server URL cannot be used.
    IceServer,
    /// The server refused us (banned).
    Refused,
    /// The server does not speak our protocol version (it is newer, or older, than this app).
    Outdated,
    /// The server answered with this error.
    Server(ErrorCode),
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Call => "call",
            ErrorKind::Chat => "chat",
            ErrorKind::Media => "media",
            ErrorKind::Signal => "signal",
            ErrorKind::Ice => "ice",
            ErrorKind::IceServer => "ice_server",
            ErrorKind::Refused => "refused",
            ErrorKind::Outdated => "outdated",
            ErrorKind::Server(code) => code.as_str(),
        }
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Why the server could not be reached, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DownKind {
    /// No such host, or nothing listening there, or no answer in time.
    Unreachable,
    /// Something answers there, but it is not a Strangers signal server (no WebSocket, or no
    /// `welcome`).
    NotStrangers,
    /// The address is not a usable WebSocket URL.
    BadAddress,
    /// A Strangers server that cannot take us now (full, restarting).
    Busy,
    /// The connection was up and broke.
    Lost,
}

/// Everything the engine reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Welcome {
        id: String,
        resumed: bool,
        /// The community's name and rules, when the server has them (shown, and the rules
        /// accepted, before looking for anyone).
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rules: Option<String>,
    },
    /// The signaling socket is down; it retries.
    ServerDown {
        url: String,
        /// What went wrong, in a word the window turns into plain words.
        kind: DownKind,
        reason: String,
        retry_in_ms: u64,
    },
    Queued,
    Matched {
        room: String,
        initiator: bool,
        common_interests: Vec<String>,
    },
    IceState {
        state: String,
    },
    /// A local ICE candidate was gathered (and sent, unless it is a host candidate on a private
    /// network); only its type is told, never the address.
    LocalCandidate {
        kind: String,
    },
    ConnectionState {
        state: String,
    },
    Connected {
        ms_since_find: u64,
    },
    FirstFrame {
        ms_since_find: u64,
        width: u32,
        height: u32,
    },
    Stats(Box<CallStats>),
    /// The call moved to another candidate pair (a better pair nominated, an ICE restart, a
    /// move between the relay and a direct path): the path before and after, as `stats.path`
    /// tells them. Noticed within a second of the switch.
    PathChanged {
        from: PathInfo,
        to: PathInfo,
    },
    Chat {
        text: String,
    },
    Typing {
        active: bool,
    },
    PartnerLeft {
        reason: String,
    },
    Idle,
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// Recovery from an ICE restart took this long.
    IceRestarted {
        ms: u64,
    },
    /// The peer connection was replaced by a new one with the same stranger, because it never
    /// connected: `stalled`, `never_connected` (we renewed it) or `partner_renewed`.
    CallRenewed {
        reason: String,
    },
    /// Calls failed one after another on our side (the last for `reason`): the next find waits
    /// `wait_ms` so as not to hammer the server and the strangers it meets.
    BackingOff {
        wait_ms: u64,
        failures: u32,
        reason: String,
    },
    Exited,
}

impl Event {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialise")
    }
}

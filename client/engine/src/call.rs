//! One call: the peer connection plus the media pipelines around it. Outgoing video and audio
//! each run on a thread of their own (encoding must not stall the async runtime), paced by
//! their source; incoming packets are polled by async tasks and decoded on threads. Every
//! event carries the call's id in the engine, so news of an ended call is ignored.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodecParameters, RtpCodecKind};
use strangers_protocol::{IceServer, SignalData};
use tokio::sync::mpsc;
use tracing::debug;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{RTCIceConnectionState, RTCPeerConnectionState};

use crate::api::{CallStats, PathInfo};
use crate::call_tasks::CallTasks;
use crate::chat::ChatMessage;
use crate::counters::Counters;
use crate::keyframe_tap::holds_keyframe_request;
use crate::media::video_codec::VideoCodec;
use crate::peer::{Peer, PeerError, PeerEvent, PeerSettings};
use crate::sources::{AudioOut, AudioSpec, SourceError, VideoSpec};
use crate::{pipeline, slot::FrameSlot, video_sender};

/// Settings of every call.
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub peer: PeerSettings,
    pub video: VideoSpec,
    pub audio: AudioSpec,
    /// Save received frames as PNG here, one in `record_every`.
    pub record_dir: Option<PathBuf>,
    pub record_every: u32,
    /// Where the stranger's audio is played (none: it is only measured).
    pub audio_out: Option<AudioOut>,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            peer: PeerSettings::default(),
            video: VideoSpec::Pattern { width: 640, height: 480, fps: 30 },
            audio: AudioSpec::Tone { hz: 440.0 },
            record_dir: None,
            record_every: 30,
            audio_out: None,
        }
    }
}

/// What a call reports to the engine.
#[derive(Debug, Clone)]
pub enum CallEvent {
    LocalSignal(SignalData),
    LocalCandidate(String),
    /// An ICE server that cannot be used, and why.
    IceServerProblem(String),
    IceState(String),
    Connected,
    Disconnected,
    Failed,
    FirstFrame {
        width: u32,
        height: u32,
    },
    /// The call cannot go on (a bad signal, a codec we lack).
    Broken(String),
    Stats(Box<CallStats>),
    /// The selected candidate pair changed: from, to.
    PathChanged(PathInfo, PathInfo),
    Chat(String),
    Typing(bool),
    /// A media source or codec failed; the call goes on without it.
    MediaError(String),
}

/// Where a call's events go.
pub type EventSink = Box<dyn Fn(CallEvent) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("media source: {0}")]
    Source(#[from] SourceError),
    #[error("relay-only mode needs a TURN server, and the signal server offered none")]
    NoRelay,
}

/// Flags shared with the pipelines.
#[derive(Default)]
pub(crate) struct Controls {
    pub(crate) stop: AtomicBool,
    pub(crate) mute_audio: AtomicBool,
    pub(crate) mute_video: AtomicBool,
    pub(crate) keyframe: AtomicBool,
    /// Set to make the video receiver ask the partner for a keyframe (PLI).
    pub(crate) need_keyframe: Arc<AtomicBool>,
}

pub struct Call {
    peer: Peer,
    controls: Arc<Controls>,
    chat: Arc<Mutex<Option<Arc<dyn DataChannel>>>>,
    chat_open: Arc<AtomicBool>,
    tasks: CallTasks,
}

impl Call {
    /// Builds the peer connection and starts listening to it. Media starts flowing once ICE
    /// and DTLS are up.
    pub async fn start(
        settings: &CallSettings,
        initiator: bool,
        ice_servers: Vec<IceServer>,
        events: EventSink,
        slots: (Arc<FrameSlot>, Arc<FrameSlot>),
    ) -> Result<Call, CallError> {
        let offers_turn = ice_servers.iter().any(|s| s.urls.iter().any(|u| u.starts_with("turn")));
        if settings.peer.relay_only && !offers_turn {
            return Err(CallError::NoRelay);
        }
        // Open sources first: a bad file is a clear error before anything else happens.
        // Opening may decode and resample a whole file: not on a runtime worker.
        let (video, audio) = (settings.video.clone(), settings.audio.clone());
        let (video_source, audio_source) =
            tokio::task::spawn_blocking(move || Ok::<_, SourceError>((video.open()?, audio.open()?)))
                .await
                .map_err(|e| SourceError(format!("opening the media sources failed: {e}")))??;
        let (peer_tx, mut peer_rx) = mpsc::unbounded_channel();
        let peer = Peer::start(&settings.peer, &ice_servers, initiator, peer_tx).await?;
        let controls = Arc::new(Controls::default());
        let counters = Arc::new(Counters::default());
        let chat: Arc<Mutex<Option<Arc<dyn DataChannel>>>> = Arc::new(Mutex::new(None));
        let chat_open = Arc::new(AtomicBool::new(false));
        let events: Arc<EventSink> = Arc::new(events);
        let tasks = CallTasks::default();

        // The peer connection's events.
        {
            let events = events.clone();
            let controls = controls.clone();
            let counters = counters.clone();
            let chat = chat.clone();
            let chat_open = chat_open.clone();
            let video = peer.video.clone();
            let audio = peer.audio.clone();
            let pc = peer.connection();
            let record = settings.record_dir.clone().map(|dir| (dir, settings.record_every.max(1)));
            let remote_slot = slots.0.clone();
            let local_slot = slots.1.clone();
            let mut sources = Some((video_source, audio_source));
            let audio_out = settings.audio_out.clone();
            let budget = peer.budget();
            let call_tasks = tasks.clone();
            tasks.spawn(async move {
                while let Some(event) = peer_rx.recv().await {
                    match event {
                        PeerEvent::LocalSignal(data) => events(CallEvent::LocalSignal(data)),
                        PeerEvent::LocalCandidate(kind) => events(CallEvent::LocalCandidate(kind)),
                        PeerEvent::IceServerProblem(problem) => events(CallEvent::IceServerProblem(problem)),
                        PeerEvent::IceState(state) => {
                            events(CallEvent::IceState(ice_state_name(state).into()));
                        }
                        PeerEvent::State(RTCPeerConnectionState::Connected) => {
                            if let Some((video_source, audio_source)) = sources.take() {
                                // Keyframe requests from the partner. The track only has an
                                // event channel once bound, that is after negotiation.
                                let (track, controls_, counters_) = (video.clone(), controls.clone(), counters.clone());
                                call_tasks.spawn(async move {
                                    while let Some(event) = track.poll().await {
                                        let TrackLocalEvent::OnRtcpPacket(packets) = event else { continue };
                                        debug!(count = packets.len(), "feedback for our video");
                                        if holds_keyframe_request(&packets) {
                                            controls_.keyframe.store(true, Ordering::Relaxed);
                                            counters_.keyframes_requested.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                });
                                let video_codec = negotiated(&pc, RtpCodecKind::Video).await;
                                let audio_pt = negotiated(&pc, RtpCodecKind::Audio).await.map(|c| c.payload_type);
                                video_sender::spawn_video_sender(
                                    video_sender::VideoOutput { track: video.clone(), codec: video_codec },
                                    video_source,
                                    controls.clone(),
                                    counters.clone(),
                                    budget.clone(),
                                    local_slot.clone(),
                                    events.clone(),
                                )
                                .await;
                                pipeline::spawn_audio_sender(
                                    audio.clone(),
                                    audio_pt,
                                    audio_source,
                                    controls.clone(),
                                    counters.clone(),
                                    budget.clone(),
                                    events.clone(),
                                )
                                .await;
                            }
                            events(CallEvent::Connected);
                        }
                        PeerEvent::State(RTCPeerConnectionState::Failed) => events(CallEvent::Failed),
                        PeerEvent::State(RTCPeerConnectionState::Disconnected) => events(CallEvent::Disconnected),
                        PeerEvent::State(_) => {}
                        PeerEvent::Track(track) => {
                            let kind = track.kind().await;
                            if kind == RtpCodecKind::Video {
                                let codec = receiving_codec(&pc, track.as_ref()).await;
                                pipeline::spawn_video_receiver(
                                    &call_tasks,
                                    track,
                                    codec,
                                    controls.clone(),
                                    counters.clone(),
                                    pipeline::VideoSink { slot: remote_slot.clone(), record: record.clone() },
                                    events.clone(),
                                );
                            } else {
                                pipeline::spawn_audio_receiver(
                                    &call_tasks,
                                    track,
                                    controls.clone(),
                                    counters.clone(),
                                    audio_out.clone(),
                                );
                            }
                        }
                        PeerEvent::DataChannel(channel) => {
                            *chat.lock().expect("chat lock is never poisoned") = Some(channel.clone());
                            let events = events.clone();
                            let chat_open = chat_open.clone();
                            call_tasks.spawn(async move {
                                while let Some(event) = channel.poll().await {
                                    match event {
                                        DataChannelEvent::OnOpen => chat_open.store(true, Ordering::Relaxed),
                                        DataChannelEvent::OnMessage(msg) => {
                                            let Ok(text) = std::str::from_utf8(&msg.data) else { continue };
                                            match ChatMessage::parse(text) {
                                                Some(ChatMessage::Chat { text }) => events(CallEvent::Chat(text)),
                                                Some(ChatMessage::Typing { active }) => {
                                                    events(CallEvent::Typing(active))
                                                }
                                                None => debug!("unreadable chat message ignored"),
                                            }
                                        }
                                        DataChannelEvent::OnClose => {
                                            chat_open.store(false, Ordering::Relaxed);
                                            break;
                                        }
                                        _ => {}
                                    }
                                }
                            });
                        }
                    }
                }
            });
        }

        // Statistics, once a second.
        tasks.spawn(pipeline::report_stats(peer.connection(), peer.relayed_via(), counters, peer.budget(), events));

        Ok(Call { peer, controls, chat, chat_open, tasks })
    }

    pub async fn apply(&mut self, data: &SignalData) -> Result<(), PeerError> {
        self.peer.apply(data).await
    }

    pub async fn restart_ice(&self) -> Result<(), PeerError> {
        self.peer.restart_ice().await
    }

    pub fn chat_open(&self) -> bool {
        self.chat_open.load(Ordering::Relaxed)
    }

    pub async fn send_chat(&self, text: String) {
        let text: String = text.chars().take(crate::chat::MAX_CHAT_CHARS).collect();
        self.send_on_chat(ChatMessage::Chat { text }).await;
    }

    pub async fn send_typing(&self, active: bool) {
        self.send_on_chat(ChatMessage::Typing { active }).await;
    }

    async fn send_on_chat(&self, msg: ChatMessage) {
        let channel = self.chat.lock().expect("chat lock is never poisoned").clone();
        if let Some(channel) = channel {
            if let Err(e) = channel.send_text(&msg.to_json()).await {
                debug!(error = %e, "chat send failed");
            }
        }
    }

    /// Asks the partner for a keyframe (as after a loss the decoder cannot hide).
    pub fn request_keyframe(&self) {
        self.controls.need_keyframe.store(true, Ordering::Relaxed);
    }

    pub fn mute_audio(&self, muted: bool) {
        self.controls.mute_audio.store(muted, Ordering::Relaxed);
    }

    pub fn mute_video(&self, muted: bool) {
        self.controls.mute_video.store(muted, Ordering::Relaxed);
    }

    /// What the congestion controller learned of the path, bits per second, once it had
    /// feedback: the next call starts from it.
    pub fn measured_estimate(&self) -> Option<f64> {
        self.peer.measured_estimate()
    }

    /// Stops the pipelines first, so nothing writes into a closing connection.
    pub async fn close(self) {
        self.stop();
        self.peer.close().await;
    }

    fn stop(&self) {
        self.controls.stop.store(true, Ordering::Relaxed);
        self.tasks.abort_all();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The codec (with its payload type) our sender of `kind` uses, once negotiated: the first one
/// of the answer, which is the first the offer lists that both sides have.
async fn negotiated(
    pc: &Arc<dyn webrtc::peer_connection::PeerConnection>,
    kind: RtpCodecKind,
) -> Option<RTCRtpCodecParameters> {
    for sender in pc.get_senders().await {
        if sender.track().kind().await != kind {
            continue;
        }
        let params = sender.get_parameters().await.ok()?;
        return params.rtp_parameters.codecs.first().cloned();
    }
    None
}

/// The codec the stranger's video comes in: the remote track's, or failing that the one we
/// send (both directions take the answer's first codec).
async fn receiving_codec(pc: &Arc<dyn webrtc::peer_connection::PeerConnection>, track: &dyn TrackRemote) -> VideoCodec {
    let remote = match pipeline::first_ssrc(track).await {
        Some(ssrc) => track.codec(ssrc).await.and_then(|c| VideoCodec::from_mime(&c.mime_type)),
        None => None,
    };
    match remote {
        Some(codec) => codec,
        None => negotiated(pc, RtpCodecKind::Video)
            .await
            .and_then(|c| VideoCodec::from_mime(&c.rtp_codec.mime_type))
            .unwrap_or(VideoCodec::Vp8),
    }
}

fn ice_state_name(state: RTCIceConnectionState) -> &'static str {
    match state {
        RTCIceConnectionState::New => "new",
        RTCIceConnectionState::Checking => "checking",
        RTCIceConnectionState::Connected => "connected",
        RTCIceConnectionState::Completed => "completed",
        RTCIceConnectionState::Disconnected => "disconnected",
        RTCIceConnectionState::Failed => "failed",
        RTCIceConnectionState::Closed => "closed",
        _ => "unknown",
    }
}

//! The engine's event loop: the one place where user commands, server messages and the
//! current call's news meet the session state machine, and where its actions are carried out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strangers_protocol::PartnerLeftReason;
use tokio::sync::mpsc;
use tracing::debug;

use crate::api::{Command, ErrorKind, Event};
use crate::call::{Call, CallEvent, CallSettings};
use crate::peer::PeerError;
use crate::session::{Action, Notice, PeerInput, Phase, Session, UserInput};
use crate::signaling::{self, SignalingConfig, SignalingEvent, SignalingHandle};
use crate::slot::FrameSlot;

/// The highest send rate a call starts at from what the last call learned (bits per second):
/// enough for a sharp picture at once, not enough to flood a thin link for long.
const LEARNED_START_MAX: f64 = 1_000_000.0;

/// Everything the engine needs to run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub signaling: SignalingConfig,
    pub call: CallSettings,
}

/// Sends commands to a running engine. Dropping every handle shuts it down.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// The stranger's newest decoded frame (the window draws from it).
    pub remote_video: Arc<FrameSlot>,
    /// Our own newest captured frame (the self-view).
    pub local_video: Arc<FrameSlot>,
}

impl EngineHandle {
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

/// Starts the engine on the current tokio runtime.
pub fn start(config: EngineConfig) -> (EngineHandle, mpsc::UnboundedReceiver<Event>) {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (event_tx, events) = mpsc::unbounded_channel();
    let remote_video = Arc::new(FrameSlot::default());
    let local_video = Arc::new(FrameSlot::default());
    let slots = (remote_video.clone(), local_video.clone());
    tokio::spawn(async move {
        let (signaling, signaling_events) = signaling::spawn(config.signaling.clone());
        let mut engine = Engine {
            config,
            session: Session::new(),
            signaling,
            call: None,
            next_call_id: 1,
            events: event_tx,
            slots,
            muted: (false, false),
            first_frame_size: (0, 0),
            learned_estimate: None,
        };
        engine.run(command_rx, signaling_events).await;
    });
    (EngineHandle { commands, remote_video, local_video }, events)
}

struct Engine {
    config: EngineConfig,
    session: Session,
    signaling: SignalingHandle,
    call: Option<(u64, Call)>,
    next_call_id: u64,
    events: mpsc::UnboundedSender<Event>,
    slots: (Arc<FrameSlot>, Arc<FrameSlot>),
    muted: (bool, bool),
    first_frame_size: (u32, u32),
    /// The congestion estimate the last call with feedback ended on, bits per second.
    learned_estimate: Option<f64>,
}

impl Engine {
    async fn run(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut signaling_events: mpsc::UnboundedReceiver<SignalingEvent>,
    ) {
        let (call_tx, mut call_events) = mpsc::unbounded_channel::<(u64, CallEvent)>();
        // The signaling task ends after the server refused us; the engine lives on (idle) until
        // it is shut down, without polling the closed channel.
        let mut signaling_open = true;
        loop {
            let timeout = self.session.poll_timeout();
            let wake_at = timeout.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = tokio::time::sleep_until(wake_at.into()), if timeout.is_some() => {
                    self.session.handle_timeout(Instant::now());
                }
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.handle_command(command).await,
                },
                event = signaling_events.recv(), if signaling_open => match event {
                    Some(SignalingEvent::Message(msg)) => self.session.handle_server(Instant::now(), msg),
                    Some(SignalingEvent::Down { url, kind, reason, retry_in }) => {
                        self.emit(Event::ServerDown { url, kind, reason, retry_in_ms: retry_in.as_millis() as u64 });
                    }
                    Some(SignalingEvent::Refused { outdated, reason }) => {
                        let kind = if outdated { ErrorKind::Outdated } else { ErrorKind::Refused };
                        self.emit(Event::Error { kind, message: reason });
                    }
                    None => signaling_open = false,
                },
                Some((id, event)) = call_events.recv() => {
                    if self.call.as_ref().is_some_and(|(current, _)| *current == id) {
                        self.handle_call_event(event).await;
                    }
                }
            }
            self.carry_out(&call_tx).await;
        }
        self.session.handle_user(Instant::now(), UserInput::Stop);
        self.carry_out(&call_tx).await;
        if let Some((_, call)) = self.call.take() {
            call.close().await;
        }
        // Give the stop a moment to reach the server before the socket closes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.emit(Event::Exited);
    }

    async fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Find => self.session.handle_user(now, UserInput::Find),
            Command::Next => self.session.handle_user(now, UserInput::Next),
            Command::Stop => self.session.handle_user(now, UserInput::Stop),
            Command::Report(reason) => self.session.handle_user(now, UserInput::Report(reason)),
            Command::Chat(text) => match &self.call {
                Some((_, call)) if call.chat_open() => call.send_chat(text).await,
                _ => self.emit(Event::Error { kind: ErrorKind::Chat, message: "no stranger to chat with yet".into() }),
            },
            Command::Typing(active) => {
                if let Some((_, call)) = &self.call {
                    call.send_typing(active).await;
                }
            }
            Command::MuteAudio(muted) => {
                self.muted.0 = muted;
                if let Some((_, call)) = &self.call {
                    call.mute_audio(muted);
                }
            }
            Command::MuteVideo(muted) => {
                self.muted.1 = muted;
                if let Some((_, call)) = &self.call {
                    call.mute_video(muted);
                }
            }
            Command::RequestKeyframe => {
                if let Some((_, call)) = &self.call {
                    call.request_keyframe();
                }
            }
            Command::Shutdown => {}
        }
    }

    async fn handle_call_event(&mut self, event: CallEvent) {
        let now = Instant::now();
        match event {
            CallEvent::LocalSignal(data) => self.session.handle_local_signal(data),
            CallEvent::IceState(state) => {
                if matches!(state.as_str(), "connected" | "completed") {
                    self.session.handle_peer(now, PeerInput::IceConnected);
                }
                self.emit(Event::IceState { state });
            }
            CallEvent::LocalCandidate(kind) => self.emit(Event::LocalCandidate { kind }),
            CallEvent::IceServerProblem(message) => self.emit(Event::Error { kind: ErrorKind::IceServer, message }),
            CallEvent::Connected => {
                self.emit(Event::ConnectionState { state: "connected".into() });
                self.session.handle_peer(now, PeerInput::Connected);
            }
            CallEvent::Disconnected => {
                self.emit(Event::ConnectionState { state: "disconnected".into() });
                self.session.handle_peer(now, PeerInput::Disconnected);
            }
            CallEvent::Failed => {
                self.emit(Event::ConnectionState { state: "failed".into() });
                self.session.handle_peer(now, PeerInput::Failed);
            }
            CallEvent::FirstFrame { width, height } => {
                self.session.handle_peer(now, PeerInput::FirstFrame);
                self.first_frame_size = (width, height);
            }
            CallEvent::Broken(why) => self.session.handle_peer(now, PeerInput::Broken(why)),
            CallEvent::Stats(stats) => self.emit(Event::Stats(stats)),
            CallEvent::PathChanged(from, to) => self.emit(Event::PathChanged { from, to }),
            CallEvent::Chat(text) => self.emit(Event::Chat { text }),
            CallEvent::Typing(active) => self.emit(Event::Typing { active }),
            CallEvent::MediaError(message) => self.emit(Event::Error { kind: ErrorKind::Media, message }),
        }
    }

    /// Carries out what the session decided, in order.
    async fn carry_out(&mut self, call_tx: &mpsc::UnboundedSender<(u64, CallEvent)>) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Send(msg) => self.signaling.send(msg),
                Action::StartPeer { room, initiator, ice_servers } => {
                    if let Some((_, old)) = self.call.take() {
                        self.close_call(old).await;
                    }
                    let id = self.next_call_id;
                    self.next_call_id += 1;
                    let tx = call_tx.clone();
                    let events = Box::new(move |event| {
                        let _ = tx.send((id, event));
                    });
                    debug!(%room, initiator, "starting call");
                    let mut settings = self.config.call.clone();
                    if let Some(learned) = self.learned_estimate {
                        // Start where the last call ended, within reason: the next stranger's
                        // path shares at least our own link, but may be thinner.
                        let peer = &mut settings.peer;
                        peer.bitrate_start =
                            (learned * 0.9).clamp(f64::from(peer.bitrate_min), LEARNED_START_MAX) as u32;
                    }
                    match Call::start(&settings, initiator, ice_servers, events, self.slots.clone()).await {
                        Ok(call) => {
                            call.mute_audio(self.muted.0);
                            call.mute_video(self.muted.1);
                            self.call = Some((id, call));
                        }
                        Err(e) => {
                            self.emit(Event::Error { kind: ErrorKind::Call, message: e.to_string() });
                            self.session.handle_peer(Instant::now(), PeerInput::Broken(e.to_string()));
                        }
                    }
                }
                Action::ClosePeer => {
                    if let Some((_, call)) = self.call.take() {
                        self.close_call(call).await;
                    }
                    self.slots.0.clear();
                }
                Action::ApplySignal(data) => {
                    if let Some((_, call)) = &mut self.call {
                        match call.apply(&data).await {
                            Ok(()) => {}
                            Err(PeerError::NewSession) => {
                                debug!("the partner renewed its connection");
                                self.session.handle_peer(Instant::now(), PeerInput::NewSession(data));
                            }
                            Err(e) => {
                                self.emit(Event::Error { kind: ErrorKind::Signal, message: e.to_string() });
                                self.session.handle_peer(Instant::now(), PeerInput::Broken(e.to_string()));
                            }
                        }
                    }
                }
                Action::RestartIce => {
                    if let Some((_, call)) = &self.call {
                        if let Err(e) = call.restart_ice().await {
                            self.emit(Event::Error { kind: ErrorKind::Ice, message: e.to_string() });
                        }
                    }
                }
                Action::Notify(notice) => self.notify(notice),
            }
        }
    }

    /// Closes a call, keeping what its congestion controller learned for the next one.
    async fn close_call(&mut self, call: Call) {
        if let Some(estimate) = call.measured_estimate() {
            self.learned_estimate = Some(estimate);
        }
        call.close().await;
    }

    fn notify(&mut self, notice: Notice) {
        let event = match notice {
            Notice::Welcome { id, resumed, name, rules } => Event::Welcome { id, resumed, name, rules },
            Notice::Phase(Phase::Queued) => Event::Queued,
            Notice::Phase(Phase::Idle) => Event::Idle,
            Notice::Phase(_) => return,
            Notice::Matched { room, initiator, common_interests } => {
                Event::Matched { room, initiator, common_interests }
            }
            Notice::Connected { since_find } => Event::Connected { ms_since_find: since_find.as_millis() as u64 },
            Notice::FirstFrame { since_find } => Event::FirstFrame {
                ms_since_find: since_find.as_millis() as u64,
                width: self.first_frame_size.0,
                height: self.first_frame_size.1,
            },
            Notice::PartnerLeft { reason } => Event::PartnerLeft { reason: reason_name(reason).into() },
            Notice::ServerError { code, message } => Event::Error { kind: ErrorKind::Server(code), message },
            Notice::CallFailed(message) => Event::Error { kind: ErrorKind::Call, message },
            Notice::Renewed(reason) => Event::CallRenewed { reason: reason.name().into() },
            Notice::IceRestarted { took } => Event::IceRestarted { ms: took.as_millis() as u64 },
            Notice::BackingOff { wait, failures, reason } => {
                Event::BackingOff { wait_ms: wait.as_millis() as u64, failures, reason }
            }
        };
        self.emit(event);
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

fn reason_name(reason: PartnerLeftReason) -> &'static str {
    match reason {
        PartnerLeftReason::Next => "next",
        PartnerLeftReason::Stop => "stop",
        PartnerLeftReason::Disconnect => "disconnect",
        PartnerLeftReason::Timeout => "timeout",
    }
}

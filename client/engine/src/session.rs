//! The client's session state machine: what the user asked for, what the server said and what
//! the peer connection did, folded into one state (idle, queued, matched, negotiating, in
//! call) and a list of things to do. Pure: no sockets, no WebRTC, no clock (time is an input).
//!
//! Negotiation is glare-free by construction: only the initiator ever makes offers. When the
//! other side needs an ICE restart it asks with `{"restart": true}` and the initiator offers.
//!
//! A peer connection that never connected is not restarted but renewed: ICE restarts redo
//! connectivity, not the secure (DTLS) handshake, so the initiator builds a new connection
//! and offers again (a new SDP session), and the other side answers that offer with a new
//! connection of its own. It happens when the connection stalls (the IO layer says
//! [`PeerInput::Stalled`]) or the connection fails before it ever connected; at most
//! [`MAX_RENEWALS`] times a call, then the call is given up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use strangers_protocol::{ClientMsg, IceServer, PartnerLeftReason, ServerMsg, SignalData, SignalKind};

/// How many times one call's peer connection may be renewed before the call is given up.
pub const MAX_RENEWALS: u32 = 3;

/// Where the session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Queued,
    /// Paired; the peer connection is being set up, no description exchanged yet.
    Matched,
    /// Descriptions or candidates are flowing; media not connected yet.
    Negotiating,
    InCall,
}

/// What happened to the peer connection (reported by the IO layer).
#[derive(Debug, Clone, PartialEq)]
pub enum PeerInput {
    /// ICE and DTLS are up.
    Connected,
    /// Connectivity was lost; ICE may recover by itself or need a restart.
    Disconnected,
    /// The connection failed for good (or an ICE restart is needed).
    Failed,
    /// The connection made no progress for a while (ICE is up but the secure handshake is not
    /// done, or nothing connected long after it was made): it will not connect.
    Stalled,
    /// The partner offered a new session (it renewed its peer connection): this offer is
    /// for a new connection, not the current one.
    NewSession(SignalData),
    /// The first remote video frame was decoded.
    FirstFrame,
    /// The peer connection could not apply the partner's signal (a malformed SDP, a codec
    /// we cannot use): the call cannot go on.
    Broken(String),
}

/// What the user asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserInput {
    Find,
    Next,
    Stop,
    Report(String),
}

/// Something for the IO layer to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send to the server (the signaling client holds it while the socket is down).
    Send(ClientMsg),
    /// Create the peer connection for this room.
    StartPeer { room: String, initiator: bool, ice_servers: Vec<IceServer> },
    /// Tear the peer connection down.
    ClosePeer,
    /// Apply the partner's signal to the peer connection.
    ApplySignal(SignalData),
    /// The initiator must make a new offer that restarts ICE.
    RestartIce,
    /// Tell the user (the engine turns these into `Event`s).
    Notify(Notice),
}

/// Milestones and changes for the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Welcome {
        id: String,
        resumed: bool,
    },
    Phase(Phase),
    Matched {
        room: String,
        initiator: bool,
        common_interests: Vec<String>,
    },
    Connected {
        since_find: Duration,
    },
    FirstFrame {
        since_find: Duration,
    },
    PartnerLeft {
        reason: PartnerLeftReason,
    },
    /// The server answered with an error.
    ServerError {
        code: String,
        message: String,
    },
    /// The call was ended on our side because it could not work.
    CallFailed(String),
    /// The peer connection was replaced by a new one (see the module's notes).
    Renewed(RenewReason),
}

/// Why a peer connection was renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewReason {
    /// Our connection stalled (we are the initiator).
    Stalled,
    /// Our connection failed before it ever connected (we are the initiator).
    NeverConnected,
    /// The partner renewed its connection and offered a new session.
    Partner,
}

impl RenewReason {
    pub fn name(self) -> &'static str {
        match self {
            RenewReason::Stalled => "stalled",
            RenewReason::NeverConnected => "never_connected",
            RenewReason::Partner => "partner_renewed",
        }
    }
}

/// The session. Feed it inputs; drain [`Session::poll_action`].
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    room: Option<String>,
    initiator: bool,
    ice_servers: Vec<IceServer>,
    /// When the user last asked to find someone (for time-to-connect figures).
    find_at: Option<Instant>,
    connected_reported: bool,
    first_frame_reported: bool,
    /// Whether the current peer connection (not the call: it may have been renewed) ever
    /// connected.
    peer_connected: bool,
    /// How many times this call's peer connection was renewed.
    renewals: u32,
    /// Whether the user wants to be matched (queued or in a call), so a lost session can be
    /// re-entered after a reconnect.
    wants_match: bool,
    /// Whether a `welcome` was ever received.
    welcomed: bool,
    actions: VecDeque<Action>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Session {
            phase: Phase::Idle,
            room: None,
            initiator: false,
            ice_servers: Vec::new(),
            find_at: None,
            connected_reported: false,
            first_frame_reported: false,
            peer_connected: false,
            renewals: 0,
            wants_match: false,
            welcomed: false,
            actions: VecDeque::new(),
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The user's wish.
    pub fn handle_user(&mut self, now: Instant, input: UserInput) {
        match input {
            UserInput::Find => {
                if self.phase == Phase::Idle {
                    self.find_at = Some(now);
                    self.wants_match = true;
                    self.send(ClientMsg::Find);
                    self.set_phase(Phase::Queued);
                }
            }
            UserInput::Next => {
                self.find_at = Some(now);
                self.wants_match = true;
                if self.in_room() {
                    self.end_call();
                }
                self.send(ClientMsg::Next);
                // From a room as from idle: the server queues us (the peer is already closed).
                self.set_phase(Phase::Queued);
            }
            UserInput::Stop => {
                self.wants_match = false;
                if self.phase != Phase::Idle {
                    if self.in_room() {
                        self.end_call();
                    }
                    self.send(ClientMsg::Stop);
                    self.set_phase(Phase::Idle);
                }
            }
            UserInput::Report(reason) => {
                if self.in_room() {
                    self.send(ClientMsg::Report { reason });
                }
            }
        }
    }

    /// A message from the server.
    pub fn handle_server(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { id, ice_servers, resumed, .. } => {
                self.ice_servers = ice_servers;
                self.notify(Notice::Welcome { id, resumed });
                // A resumed session keeps its room (if the room ended meanwhile, the held
                // `partner_left` follows); a fresh one means the server forgot us.
                if self.in_room() && !resumed {
                    // The server no longer knows our room: the call is over for it.
                    self.end_call();
                    self.notify(Notice::PartnerLeft { reason: PartnerLeftReason::Disconnect });
                    self.set_phase(Phase::Idle);
                }
                if !resumed && self.welcomed && self.phase == Phase::Queued {
                    // The server lost our session while we waited: queue the new one. (Before
                    // the first welcome, the signaling client still holds our `find`.)
                    self.send(ClientMsg::Find);
                }
                self.welcomed = true;
            }
            ServerMsg::Queued => {
                // Confirms what `find` or `next` already set; a late answer to a find the user has
                // since cancelled changes nothing.
                if self.wants_match && !self.in_room() {
                    self.set_phase(Phase::Queued);
                }
            }
            ServerMsg::Matched { room, initiator, common_interests } => {
                if self.in_room() {
                    self.end_call();
                }
                if !self.wants_match {
                    // Matched after the user pressed stop, before the server saw it.
                    self.send(ClientMsg::Stop);
                    return;
                }
                self.room = Some(room.clone());
                self.initiator = initiator;
                self.connected_reported = false;
                self.first_frame_reported = false;
                self.renewals = 0;
                self.notify(Notice::Matched { room, initiator, common_interests });
                self.set_phase(Phase::Matched);
                self.start_peer();
            }
            ServerMsg::Signal { data } => {
                if !self.in_room() {
                    return; // A straggler from a call we already left.
                }
                if data.kind() == SignalKind::Restart {
                    if self.initiator {
                        self.recover();
                    }
                    return;
                }
                if self.phase == Phase::Matched {
                    self.set_phase(Phase::Negotiating);
                }
                self.actions.push_back(Action::ApplySignal(data));
            }
            ServerMsg::PartnerLeft { reason } => {
                if !self.in_room() {
                    // News of a room we already left (our next, stop or failure crossed the
                    // partner's leaving): the server has since taken, or will take, our own
                    // request, which this must not undo.
                    return;
                }
                self.end_call();
                self.notify(Notice::PartnerLeft { reason });
                self.wants_match = false;
                self.set_phase(Phase::Idle);
            }
            ServerMsg::Error { code, message } => {
                let code = code.as_str().to_owned();
                if code == "not_matched" && self.in_room() {
                    // The server ended our room without telling us (a lost partner_left).
                    self.end_call();
                    self.set_phase(Phase::Idle);
                }
                self.notify(Notice::ServerError { code, message });
            }
        }
    }

    /// The local peer connection produced a signal (description or candidate) to send.
    pub fn handle_local_signal(&mut self, data: SignalData) {
        if !self.in_room() {
            return;
        }
        if self.phase == Phase::Matched {
            self.set_phase(Phase::Negotiating);
        }
        self.send(ClientMsg::Signal(data));
    }

    /// The peer connection's news.
    pub fn handle_peer(&mut self, now: Instant, input: PeerInput) {
        if !self.in_room() {
            return;
        }
        match input {
            PeerInput::Connected => {
                self.peer_connected = true;
                if !self.connected_reported {
                    self.connected_reported = true;
                    let since_find = self.since_find(now);
                    self.notify(Notice::Connected { since_find });
                }
                self.set_phase(Phase::InCall);
            }
            PeerInput::FirstFrame => {
                if !self.first_frame_reported {
                    self.first_frame_reported = true;
                    let since_find = self.since_find(now);
                    self.notify(Notice::FirstFrame { since_find });
                }
            }
            PeerInput::Disconnected => {}
            PeerInput::Failed => {
                if self.initiator {
                    self.recover();
                } else {
                    let restart = SignalData::from_json(r#"{"restart":true}"#).expect("a valid restart signal");
                    self.send(ClientMsg::Signal(restart));
                }
            }
            PeerInput::Stalled => {
                // Only the initiator renews; the other side's stall ends with the new offer.
                if self.initiator && !self.peer_connected {
                    self.renew(RenewReason::Stalled);
                }
            }
            PeerInput::NewSession(offer) => {
                if self.initiator {
                    self.give_up("the stranger offered a session although we are the one who offers".into());
                    return;
                }
                self.replace_peer(RenewReason::Partner);
                self.set_phase(Phase::Negotiating);
                self.actions.push_back(Action::ApplySignal(offer));
            }
            PeerInput::Broken(why) => self.give_up(why),
        }
    }

    /// The initiator's answer to a failed connection: an ICE restart for one that had
    /// connected, a new connection for one that never did.
    fn recover(&mut self) {
        if self.peer_connected {
            self.actions.push_back(Action::RestartIce);
        } else {
            self.renew(RenewReason::NeverConnected);
        }
    }

    /// Replaces the peer connection with a new one that offers a new session, or gives the
    /// call up when it was renewed too often already.
    fn renew(&mut self, reason: RenewReason) {
        if self.renewals >= MAX_RENEWALS {
            self.give_up(format!("no secure connection to the stranger after {} attempts", MAX_RENEWALS + 1));
            return;
        }
        self.renewals += 1;
        self.replace_peer(reason);
    }

    /// Closes the peer connection and starts the next one for the same room.
    fn replace_peer(&mut self, reason: RenewReason) {
        self.notify(Notice::Renewed(reason));
        self.actions.push_back(Action::ClosePeer);
        self.start_peer();
    }

    fn start_peer(&mut self) {
        let Some(room) = self.room.clone() else { return };
        self.peer_connected = false;
        self.actions.push_back(Action::StartPeer {
            room,
            initiator: self.initiator,
            ice_servers: self.ice_servers.clone(),
        });
    }

    /// Ends a call that cannot work.
    fn give_up(&mut self, why: String) {
        self.end_call();
        self.notify(Notice::CallFailed(why));
        self.send(ClientMsg::Stop);
        self.wants_match = false;
        self.set_phase(Phase::Idle);
    }

    fn since_find(&self, now: Instant) -> Duration {
        self.find_at.map(|t| now.saturating_duration_since(t)).unwrap_or_default()
    }

    fn in_room(&self) -> bool {
        matches!(self.phase, Phase::Matched | Phase::Negotiating | Phase::InCall)
    }

    fn end_call(&mut self) {
        self.room = None;
        self.actions.push_back(Action::ClosePeer);
    }

    fn set_phase(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase.clone();
            self.notify(Notice::Phase(phase));
        }
    }

    fn send(&mut self, msg: ClientMsg) {
        self.actions.push_back(Action::Send(msg));
    }

    fn notify(&mut self, notice: Notice) {
        self.actions.push_back(Action::Notify(notice));
    }
}

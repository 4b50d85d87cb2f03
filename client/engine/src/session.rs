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
//! connection of its own. It happens when the connection stalls (it has not connected
//! [`CONNECT_STALL`] after it was made, or [`HANDSHAKE_STALL`] after ICE connected) or fails
//! before it ever connected; at most [`MAX_RENEWALS`] times a call, then the call is given up.
//!
//! Time-based rules are timeouts, as in the matchmaker: the IO layer asks
//! [`Session::poll_timeout`] when to wake it and calls [`Session::handle_timeout`] then. Besides
//! stalls, a failed connection asks for its ICE restart again every [`RESTART_RETRY`], and
//! after calls that failed one after another a find is held back a while ([`backoff`]), so a
//! client whose calls cannot work (a broken network, a broken build) does not hammer the
//! server and the strangers it meets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use strangers_protocol::{ClientMsg, ErrorCode, IceServer, PartnerLeftReason, ServerMsg, SignalData, SignalKind};

/// How many times one call's peer connection may be renewed before the call is given up.
pub const MAX_RENEWALS: u32 = 3;

/// While a call stays failed, its ICE restart is asked for again this often: the restart's
/// offer or answer can be lost with a signaling socket that died in the same network change
/// (the server may relay into the dead socket before it notices).
pub const RESTART_RETRY: Duration = Duration::from_secs(6);

/// A secure (DTLS) handshake still unfinished this long after ICE connected has stalled: it
/// takes tens of milliseconds, or a second or two when a flight is lost and sent again. Some
/// losses leave it waiting for good (a flight repeated by the partner stops the retransmission
/// timer of the side whose flight was lost), so the session renews the connection.
pub const HANDSHAKE_STALL: Duration = Duration::from_secs(4);

/// A peer connection not connected this long after it was made has stalled too, whatever the
/// reason (an offer or answer lost with a signaling server that failed in the meantime leaves
/// ICE with nothing to check). Calls connect in well under a second, relayed ones in a few.
pub const CONNECT_STALL: Duration = Duration::from_secs(10);

/// Calls that failed in a row on our side before a find is held back.
pub const FAILURES_BEFORE_BACKOFF: u32 = 2;

/// How long a find waits after `failures` calls in a row failed on our side: nothing for the
/// first, then 5 s, doubling up to a minute. A client whose every call fails makes five
/// attempts in its first minute and one or two a minute after that.
pub fn backoff(failures: u32) -> Duration {
    if failures < FAILURES_BEFORE_BACKOFF {
        return Duration::ZERO;
    }
    let doublings = (failures - FAILURES_BEFORE_BACKOFF).min(4);
    (Duration::from_secs(5) * 2u32.pow(doublings)).min(Duration::from_secs(60))
}

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
    /// ICE found a working path (the secure handshake follows).
    IceConnected,
    /// Connectivity was lost; ICE may recover by itself or need a restart.
    Disconnected,
    /// The connection failed for good (or an ICE restart is needed).
    Failed,
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
        /// The community's name and rules, if the server has them.
        name: Option<String>,
        rules: Option<String>,
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
        code: ErrorCode,
        message: String,
    },
    /// The call was ended on our side because it could not work.
    CallFailed(String),
    /// The peer connection was replaced by a new one (see the module's notes).
    Renewed(RenewReason),
    /// An ICE restart brought the connection back, this long after it began.
    IceRestarted {
        took: Duration,
    },
    /// Calls keep failing on our side: the next find waits this long.
    BackingOff {
        wait: Duration,
        failures: u32,
        reason: String,
    },
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
    /// While the current peer connection has not connected: when it counts as stalled.
    stall_at: Option<Instant>,
    /// While the connection is failed: when to ask for the ICE restart again.
    restart_retry_at: Option<Instant>,
    /// When the current ICE restart began (to report how long recovery took).
    restart_started: Option<Instant>,
    /// Calls in a row that failed on our side before connecting, and the last one's reason.
    failures: u32,
    last_failure: Option<(Instant, String)>,
    /// A find held back by the backoff, and when it goes out.
    held_find: Option<Instant>,
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
            stall_at: None,
            restart_retry_at: None,
            restart_started: None,
            failures: 0,
            last_failure: None,
            held_find: None,
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

    /// When the session next wants [`Session::handle_timeout`], if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.stall_at, self.restart_retry_at, self.held_find].into_iter().flatten().min()
    }

    /// Time has come to `now`: acts on every deadline that has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.held_find.is_some_and(|at| at <= now) {
            self.held_find = None;
            self.send(ClientMsg::Find);
        }
        if self.stall_at.is_some_and(|at| at <= now) {
            self.stall_at = None;
            // Only the initiator renews; the other side's stall ends with the new offer.
            if self.initiator && !self.peer_connected {
                self.renew(now, RenewReason::Stalled);
            }
        }
        if self.restart_retry_at.is_some_and(|at| at <= now) {
            self.restart_retry_at = Some(now + RESTART_RETRY);
            self.peer_failed(now);
        }
    }

    /// The user's wish.
    pub fn handle_user(&mut self, now: Instant, input: UserInput) {
        match input {
            UserInput::Find => {
                if self.phase == Phase::Idle {
                    self.find_at = Some(now);
                    self.wants_match = true;
                    if !self.hold_find(now) {
                        self.send(ClientMsg::Find);
                    }
                    self.set_phase(Phase::Queued);
                }
            }
            UserInput::Next => {
                self.find_at = Some(now);
                self.wants_match = true;
                if self.held_find.is_some() {
                    return; // Already waiting to look again.
                }
                if self.hold_find(now) {
                    if self.in_room() {
                        // Leave the room now; the find follows when the wait is over.
                        self.end_call();
                        self.send(ClientMsg::Stop);
                    }
                } else {
                    if self.in_room() {
                        self.end_call();
                    }
                    self.send(ClientMsg::Next);
                }
                // From a room as from idle: the server queues us (the peer is already closed).
                self.set_phase(Phase::Queued);
            }
            UserInput::Stop => {
                self.wants_match = false;
                self.held_find = None;
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
    pub fn handle_server(&mut self, now: Instant, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { id, ice_servers, resumed, name, rules, .. } => {
                self.ice_servers = ice_servers;
                self.notify(Notice::Welcome { id, resumed, name, rules });
                // A resumed session keeps its room (if the room ended meanwhile, the held
                // `partner_left` follows); a fresh one means the server forgot us.
                if self.in_room() && !resumed {
                    // The server no longer knows our room: the call is over for it.
                    self.end_call();
                    self.notify(Notice::PartnerLeft { reason: PartnerLeftReason::Disconnect });
                    self.set_phase(Phase::Idle);
                }
                if !resumed && self.welcomed && self.phase == Phase::Queued && self.held_find.is_none() {
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
                self.start_peer(now);
            }
            ServerMsg::Signal { data } => {
                if !self.in_room() {
                    return; // A straggler from a call we already left.
                }
                if data.kind() == SignalKind::Restart {
                    if self.initiator {
                        self.recover(now);
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
                if code == ErrorCode::NotMatched && self.in_room() {
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
                self.failures = 0;
                self.stall_at = None;
                self.restart_retry_at = None;
                if let Some(started) = self.restart_started.take() {
                    self.notify(Notice::IceRestarted { took: now.saturating_duration_since(started) });
                }
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
            PeerInput::IceConnected => {
                // Only while a deadline runs: the connection has not connected yet.
                self.stall_at = self.stall_at.map(|at| at.min(now + HANDSHAKE_STALL));
            }
            PeerInput::Disconnected => {}
            PeerInput::Failed => {
                self.restart_started.get_or_insert(now);
                self.restart_retry_at.get_or_insert(now + RESTART_RETRY);
                self.peer_failed(now);
            }
            PeerInput::NewSession(offer) => {
                if self.initiator {
                    self.give_up(now, "the stranger offered a session although we are the one who offers".into());
                    return;
                }
                self.replace_peer(now, RenewReason::Partner);
                self.set_phase(Phase::Negotiating);
                self.actions.push_back(Action::ApplySignal(offer));
            }
            PeerInput::Broken(why) => self.give_up(now, why),
        }
    }

    /// A failed connection: the initiator recovers it, the other side asks the initiator to.
    fn peer_failed(&mut self, now: Instant) {
        if self.initiator {
            self.recover(now);
        } else {
            let restart = SignalData::from_json(r#"{"restart":true}"#).expect("a valid restart signal");
            self.send(ClientMsg::Signal(restart));
        }
    }

    /// The initiator's answer to a failed connection: an ICE restart for one that had
    /// connected, a new connection for one that never did.
    fn recover(&mut self, now: Instant) {
        if self.peer_connected {
            self.restart_started.get_or_insert(now);
            self.actions.push_back(Action::RestartIce);
        } else {
            self.renew(now, RenewReason::NeverConnected);
        }
    }

    /// Replaces the peer connection with a new one that offers a new session, or gives the
    /// call up when it was renewed too often already.
    fn renew(&mut self, now: Instant, reason: RenewReason) {
        if self.renewals >= MAX_RENEWALS {
            self.give_up(now, format!("no secure connection to the stranger after {} attempts", MAX_RENEWALS + 1));
            return;
        }
        self.renewals += 1;
        self.replace_peer(now, reason);
    }

    /// Closes the peer connection and starts the next one for the same room.
    fn replace_peer(&mut self, now: Instant, reason: RenewReason) {
        self.notify(Notice::Renewed(reason));
        self.close_peer();
        self.start_peer(now);
    }

    fn start_peer(&mut self, now: Instant) {
        let Some(room) = self.room.clone() else { return };
        self.peer_connected = false;
        self.stall_at = Some(now + CONNECT_STALL);
        self.actions.push_back(Action::StartPeer {
            room,
            initiator: self.initiator,
            ice_servers: self.ice_servers.clone(),
        });
    }

    /// Ends a call that cannot work. One that never connected counts toward the backoff.
    fn give_up(&mut self, now: Instant, why: String) {
        if !self.connected_reported {
            self.failures += 1;
            self.last_failure = Some((now, why.clone()));
        }
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
        self.close_peer();
    }

    /// Closes the peer connection; its deadlines go with it.
    fn close_peer(&mut self) {
        self.stall_at = None;
        self.restart_retry_at = None;
        self.restart_started = None;
        self.actions.push_back(Action::ClosePeer);
    }

    /// Holds a find back while the backoff after failed calls runs, and says so. Returns
    /// whether it did.
    fn hold_find(&mut self, now: Instant) -> bool {
        let Some((failed_at, reason)) = &self.last_failure else { return false };
        let until = *failed_at + backoff(self.failures);
        if until <= now {
            return false;
        }
        let notice = Notice::BackingOff { wait: until - now, failures: self.failures, reason: reason.clone() };
        self.held_find = Some(until);
        self.notify(notice);
        true
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

//! Tests of the session state machine through its public API: scripted scenarios with an
//! explicit clock, then random sequences of user, server and peer inputs. An observer that
//! sees only the actions the session emits checks the invariants after every step: at most
//! one live peer, peer work only while one is live, offers only from the initiator, and a
//! phase that agrees with the peer.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use strangers_engine::session::{
    backoff, Action, Notice, PeerInput, Phase, RenewReason, Session, UserInput, CONNECT_STALL, HANDSHAKE_STALL,
    MAX_RENEWALS, RESTART_RETRY,
};
use strangers_protocol::{ClientMsg, ErrorCode, IceServer, PartnerLeftReason, ServerMsg, SignalData, SignalKind};

const WELCOME: &str = r#"{"type":"welcome","id":"s1","resume":"tok-1","ice_servers":[
    {"urls":["stun:stun.example.org:3478"]},
    {"urls":["turn:turn.example.org:3478"],"username":"1700000000:s1","credential":"c2VjcmV0"}]}"#;
const QUEUED: &str = r#"{"type":"queued"}"#;
const MATCHED_INITIATOR: &str = r#"{"type":"matched","room":"r1","initiator":true,"common_interests":["chess"]}"#;
const MATCHED_ANSWERER: &str = r#"{"type":"matched","room":"r1","initiator":false,"common_interests":[]}"#;
const OFFER: &str = r#"{"sdp":{"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}}"#;
/// An offer of a new session (a renewed peer connection: another session id).
const NEW_OFFER: &str = r#"{"sdp":{"type":"offer","sdp":"v=0\r\no=- 7 1 IN IP4 0.0.0.0\r\n"}}"#;
const ANSWER: &str = r#"{"sdp":{"type":"answer","sdp":"v=0\r\no=- 2 1 IN IP4 0.0.0.0\r\n"}}"#;
const CANDIDATE: &str =
    r#"{"candidate":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host","sdpMid":"0"}}"#;
const RESTART: &str = r#"{"restart":true}"#;

// The observer.

/// The peer connection the session asked for and has not closed yet.
#[derive(Debug)]
struct LivePeer {
    room: String,
    initiator: bool,
    connected_notices: usize,
    first_frame_notices: usize,
}

/// Checks the session's promises from its outputs alone.
#[derive(Debug)]
struct Observer {
    peer: Option<LivePeer>,
    /// The phase announced last (the session starts idle and announces only changes).
    phase: Phase,
    /// Whether the user pressed stop and has not pressed find or next since.
    stopped: bool,
    /// The `ice_servers` of the last `welcome`, which every new peer must use.
    ice_servers: Vec<IceServer>,
    /// Renewals of our own since the last match.
    renewals: u32,
}

impl Observer {
    fn new() -> Self {
        Observer { peer: None, phase: Phase::Idle, stopped: false, ice_servers: Vec::new(), renewals: 0 }
    }

    fn saw_user(&mut self, input: &UserInput) {
        match input {
            UserInput::Find | UserInput::Next => self.stopped = false,
            UserInput::Stop => self.stopped = true,
            UserInput::Report(_) => {}
        }
    }

    fn saw_server(&mut self, msg: &ServerMsg) {
        if let ServerMsg::Welcome { ice_servers, .. } = msg {
            self.ice_servers = ice_servers.clone();
        }
    }

    /// Checks the actions of one step, then the session's state after it.
    fn check(&mut self, session: &Session, actions: &[Action]) {
        for (i, action) in actions.iter().enumerate() {
            self.check_action(action, actions);
            if let Action::Notify(Notice::Renewed(_)) = action {
                // A renewal closes the peer and starts the next one at once.
                assert!(
                    matches!(&actions[i + 1..], [Action::ClosePeer, Action::StartPeer { .. }, ..]),
                    "a renewal without a new peer; step: {actions:?}"
                );
            }
        }
        assert_eq!(session.phase(), &self.phase, "phase() differs from the last announced phase; step: {actions:?}");
        let in_room = matches!(session.phase(), Phase::Matched | Phase::Negotiating | Phase::InCall);
        assert_eq!(
            in_room,
            self.peer.is_some(),
            "phase {:?} disagrees with the peer being live ({:?}); step: {actions:?}",
            session.phase(),
            self.peer
        );
        assert_eq!(session.room(), self.peer.as_ref().map(|p| p.room.as_str()), "room() is not the live peer's room");
        if let Some(peer) = &self.peer {
            assert_eq!(session.is_initiator(), peer.initiator, "is_initiator() is not the live peer's role");
        }
        if self.stopped {
            assert_eq!(session.phase(), &Phase::Idle, "the user pressed stop but the session is not idle");
        }
    }

    fn check_action(&mut self, action: &Action, step: &[Action]) {
        match action {
            Action::StartPeer { room, initiator, ice_servers } => {
                assert!(self.peer.is_none(), "a second StartPeer without a ClosePeer between; step: {step:?}");
                assert!(!self.stopped, "a peer was started after the user pressed stop; step: {step:?}");
                assert_eq!(ice_servers, &self.ice_servers, "the peer does not use the last welcome's ICE servers");
                self.peer = Some(LivePeer {
                    room: room.clone(),
                    initiator: *initiator,
                    connected_notices: 0,
                    first_frame_notices: 0,
                });
            }
            Action::ClosePeer => {
                assert!(self.peer.take().is_some(), "ClosePeer without a live peer; step: {step:?}");
            }
            Action::ApplySignal(data) => {
                assert!(self.peer.is_some(), "ApplySignal without a live peer; step: {step:?}");
                assert_ne!(data.kind(), SignalKind::Restart, "a restart request is not for the peer connection");
            }
            Action::RestartIce => {
                let peer = self.peer.as_ref().unwrap_or_else(|| panic!("RestartIce without a live peer; {step:?}"));
                assert!(peer.initiator, "the non-initiator emitted RestartIce (it would offer); step: {step:?}");
            }
            Action::Send(ClientMsg::Signal(data)) => {
                let peer = self.peer.as_ref().unwrap_or_else(|| panic!("a signal sent without a live peer; {step:?}"));
                if data.kind() == SignalKind::Restart {
                    assert!(!peer.initiator, "the initiator asked for a restart instead of offering; step: {step:?}");
                }
            }
            Action::Send(ClientMsg::Report { .. }) => {
                assert!(self.peer.is_some(), "a report sent outside a room; step: {step:?}");
            }
            Action::Send(_) => {}
            Action::Notify(Notice::Phase(phase)) => {
                assert_ne!(phase, &self.phase, "a phase announced twice in a row; step: {step:?}");
                self.phase = phase.clone();
            }
            Action::Notify(Notice::Connected { .. }) => {
                let peer = self.peer.as_mut().unwrap_or_else(|| panic!("Connected without a live peer; {step:?}"));
                peer.connected_notices += 1;
                assert_eq!(peer.connected_notices, 1, "Connected announced twice for one call");
            }
            Action::Notify(Notice::Matched { .. }) => self.renewals = 0,
            Action::Notify(Notice::Renewed(reason)) => {
                let peer = self.peer.as_ref().unwrap_or_else(|| panic!("a renewal without a live peer; {step:?}"));
                if *reason == RenewReason::Partner {
                    assert!(!peer.initiator, "the initiator followed a renewal; step: {step:?}");
                } else {
                    assert!(peer.initiator, "the non-initiator renewed (it would offer); step: {step:?}");
                    self.renewals += 1;
                    assert!(self.renewals <= MAX_RENEWALS, "renewed more than {MAX_RENEWALS} times; step: {step:?}");
                }
            }
            Action::Notify(Notice::FirstFrame { .. }) => {
                let peer = self.peer.as_mut().unwrap_or_else(|| panic!("FirstFrame without a live peer; {step:?}"));
                peer.first_frame_notices += 1;
                assert_eq!(peer.first_frame_notices, 1, "FirstFrame announced twice for one call");
            }
            Action::Notify(_) => {}
        }
    }
}

// The harness.

/// A session, its virtual clock and its observer. Every input drains the session's actions,
/// has the observer check them, and returns them.
struct Harness {
    session: Session,
    start: Instant,
    now: Instant,
    observer: Observer,
}

impl Harness {
    fn new() -> Self {
        let start = Instant::now();
        Harness { session: Session::new(), start, now: start, observer: Observer::new() }
    }

    /// A session that has had its first `welcome`.
    fn welcomed() -> Self {
        let mut h = Harness::new();
        h.server(WELCOME);
        h
    }

    /// A welcomed session that pressed find at 0 ms and was matched with the given role.
    fn in_room(initiator: bool) -> Self {
        let mut h = Harness::welcomed();
        h.user(UserInput::Find);
        h.server(QUEUED);
        h.server(if initiator { MATCHED_INITIATOR } else { MATCHED_ANSWERER });
        h
    }

    /// A session in a connected call with the given role (offer and answer exchanged).
    fn in_call(initiator: bool) -> Self {
        let mut h = Harness::in_room(initiator);
        if initiator {
            h.local(OFFER);
            h.remote(ANSWER);
        } else {
            h.remote(OFFER);
            h.local(ANSWER);
        }
        h.at(1_000);
        h.peer(PeerInput::Connected);
        assert_eq!(h.session.phase(), &Phase::InCall);
        h
    }

    /// Moves the clock to `ms` after the start.
    fn at(&mut self, ms: u64) {
        let at = self.start + Duration::from_millis(ms);
        assert!(at >= self.now, "the clock only moves forward");
        self.now = at;
    }

    fn user(&mut self, input: UserInput) -> Vec<Action> {
        self.observer.saw_user(&input);
        self.session.handle_user(self.now, input);
        self.drain()
    }

    fn server(&mut self, json: &str) -> Vec<Action> {
        self.server_msg(ServerMsg::parse(json).expect("the test's server message parses"))
    }

    fn server_msg(&mut self, msg: ServerMsg) -> Vec<Action> {
        self.observer.saw_server(&msg);
        self.session.handle_server(self.now, msg);
        self.drain()
    }

    /// The partner's signal, relayed by the server.
    fn remote(&mut self, data: &str) -> Vec<Action> {
        self.server(&server_signal(data))
    }

    /// A signal our own peer connection produced.
    fn local(&mut self, data: &str) -> Vec<Action> {
        self.session.handle_local_signal(signal(data));
        self.drain()
    }

    fn peer(&mut self, input: PeerInput) -> Vec<Action> {
        self.session.handle_peer(self.now, input);
        self.drain()
    }

    /// Moves the clock to the session's next deadline and hands it the timeout.
    fn timeout(&mut self) -> Vec<Action> {
        let at = self.session.poll_timeout().expect("the session has a deadline");
        self.now = self.now.max(at);
        self.session.handle_timeout(self.now);
        self.drain()
    }

    /// Moves the clock on by `ms`, handing the session every deadline passed on the way.
    fn wait(&mut self, ms: u64) {
        let until = self.now + Duration::from_millis(ms);
        while let Some(at) = self.session.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    fn drain(&mut self) -> Vec<Action> {
        let actions: Vec<Action> = std::iter::from_fn(|| self.session.poll_action()).collect();
        self.observer.check(&self.session, &actions);
        actions
    }
}

fn signal(data: &str) -> SignalData {
    SignalData::from_json(data).expect("the test's signal data is valid")
}

fn server_signal(data: &str) -> String {
    format!(r#"{{"type":"signal","data":{data}}}"#)
}

/// The data the session gets from a relayed signal (the client's parser normalises the JSON).
fn relayed(data: &str) -> SignalData {
    match ServerMsg::parse(&server_signal(data)).expect("the test's signal parses") {
        ServerMsg::Signal { data } => data,
        other => panic!("not a signal: {other:?}"),
    }
}

fn phase(phase: Phase) -> Action {
    Action::Notify(Notice::Phase(phase))
}

fn send(msg: ClientMsg) -> Action {
    Action::Send(msg)
}

fn is_restart_request(action: &Action) -> bool {
    matches!(action, Action::Send(ClientMsg::Signal(data)) if data.kind() == SignalKind::Restart)
}

fn welcome_ice_servers() -> Vec<IceServer> {
    match ServerMsg::parse(WELCOME).expect("WELCOME parses") {
        ServerMsg::Welcome { ice_servers, .. } => ice_servers,
        other => panic!("not a welcome: {other:?}"),
    }
}

// The call's life.

#[test]
fn find_match_negotiate_connect_and_see_the_first_frame() {
    let mut h = Harness::new();
    assert_eq!(h.session.phase(), &Phase::Idle);
    assert_eq!(
        h.server(WELCOME),
        [Action::Notify(Notice::Welcome { id: "s1".into(), resumed: false, name: None, rules: None })]
    );

    assert_eq!(h.user(UserInput::Find), [send(ClientMsg::Find), phase(Phase::Queued)]);
    // The server's confirmation changes nothing: find already queued us.
    assert_eq!(h.server(QUEUED), []);

    h.at(400);
    assert_eq!(
        h.server(MATCHED_INITIATOR),
        [
            Action::Notify(Notice::Matched {
                room: "r1".into(),
                initiator: true,
                common_interests: vec!["chess".into()]
            }),
            phase(Phase::Matched),
            Action::StartPeer { room: "r1".into(), initiator: true, ice_servers: welcome_ice_servers() },
        ]
    );
    assert_eq!(h.session.room(), Some("r1"));
    assert!(h.session.is_initiator());

    // Our offer and candidates go to the server; the first one starts the negotiation.
    assert_eq!(h.local(OFFER), [phase(Phase::Negotiating), send(ClientMsg::Signal(signal(OFFER)))]);
    assert_eq!(h.local(CANDIDATE), [send(ClientMsg::Signal(signal(CANDIDATE)))]);
    // The partner's answer and candidates go to the peer connection.
    assert_eq!(h.remote(ANSWER), [Action::ApplySignal(relayed(ANSWER))]);
    assert_eq!(h.remote(CANDIDATE), [Action::ApplySignal(relayed(CANDIDATE))]);
    assert_eq!(h.session.phase(), &Phase::Negotiating);

    h.at(1_500);
    assert_eq!(
        h.peer(PeerInput::Connected),
        [Action::Notify(Notice::Connected { since_find: Duration::from_millis(1_500) }), phase(Phase::InCall)]
    );
    h.at(1_800);
    assert_eq!(
        h.peer(PeerInput::FirstFrame),
        [Action::Notify(Notice::FirstFrame { since_find: Duration::from_millis(1_800) })]
    );

    // Milestones are announced once per call, even when the connection recovers.
    h.at(5_000);
    assert_eq!(h.peer(PeerInput::FirstFrame), []);
    assert_eq!(h.peer(PeerInput::Disconnected), []);
    assert_eq!(h.peer(PeerInput::Connected), []);
    assert_eq!(h.session.phase(), &Phase::InCall);
}

#[test]
fn the_answerer_negotiates_when_the_offer_arrives() {
    let mut h = Harness::in_room(false);
    assert!(!h.session.is_initiator());
    assert_eq!(h.session.phase(), &Phase::Matched);
    assert_eq!(h.remote(OFFER), [phase(Phase::Negotiating), Action::ApplySignal(relayed(OFFER))]);
    assert_eq!(h.local(ANSWER), [send(ClientMsg::Signal(signal(ANSWER)))]);
    h.at(900);
    assert_eq!(
        h.peer(PeerInput::Connected),
        [Action::Notify(Notice::Connected { since_find: Duration::from_millis(900) }), phase(Phase::InCall)]
    );
}

#[test]
fn find_is_ignored_unless_idle_and_does_not_reset_the_clock() {
    let mut h = Harness::welcomed();
    h.user(UserInput::Find);
    h.at(5_000);
    assert_eq!(h.user(UserInput::Find), []);
    h.server(MATCHED_INITIATOR);
    assert_eq!(h.user(UserInput::Find), []);
    h.local(OFFER);
    h.at(7_000);
    let actions = h.peer(PeerInput::Connected);
    assert_eq!(actions[0], Action::Notify(Notice::Connected { since_find: Duration::from_secs(7) }));
}

#[test]
fn the_latest_welcome_gives_the_ice_servers_of_the_next_peer() {
    let mut h = Harness::welcomed();
    let fresh = r#"{"type":"welcome","id":"s1","resume":"tok-1","resumed":true,
        "ice_servers":[{"urls":["turn:turn.example.org:3478"],"username":"1700003600:s1","credential":"bmV3"}]}"#;
    h.server(fresh);
    h.user(UserInput::Find);
    let actions = h.server(MATCHED_ANSWERER);
    let Some(Action::StartPeer { ice_servers, .. }) = actions.last() else { panic!("no StartPeer in {actions:?}") };
    assert_eq!(ice_servers.len(), 1);
    assert_eq!(ice_servers[0].username.as_deref(), Some("1700003600:s1"));
}

// Leaving a call.

#[test]
fn partner_left_mid_negotiation_closes_the_peer_and_ignores_the_old_room() {
    let mut h = Harness::in_room(true);
    h.local(OFFER);
    h.remote(CANDIDATE);
    assert_eq!(h.session.phase(), &Phase::Negotiating);

    assert_eq!(
        h.server(r#"{"type":"partner_left","reason":"next"}"#),
        [
            Action::ClosePeer,
            Action::Notify(Notice::PartnerLeft { reason: PartnerLeftReason::Next }),
            phase(Phase::Idle)
        ]
    );
    assert_eq!(h.session.room(), None);

    // Stragglers of the old room reach nothing.
    assert_eq!(h.remote(ANSWER), []);
    assert_eq!(h.remote(CANDIDATE), []);
    assert_eq!(h.remote(RESTART), []);
    assert_eq!(h.local(CANDIDATE), []);
    assert_eq!(h.peer(PeerInput::Connected), []);
    assert_eq!(h.peer(PeerInput::FirstFrame), []);
    assert_eq!(h.peer(PeerInput::Failed), []);
    assert_eq!(h.peer(PeerInput::Broken("late".into())), []);
    assert_eq!(h.session.phase(), &Phase::Idle);

    // The session stays idle until the user asks again: a late `queued` does not queue it.
    assert_eq!(h.server(QUEUED), []);
    assert_eq!(h.user(UserInput::Find), [send(ClientMsg::Find), phase(Phase::Queued)]);
}

#[test]
fn next_in_a_call_closes_the_peer_then_sends_next_and_queues() {
    let mut h = Harness::in_call(true);
    h.at(10_000);
    assert_eq!(h.user(UserInput::Next), [Action::ClosePeer, send(ClientMsg::Next), phase(Phase::Queued)]);
    assert_eq!(h.session.room(), None);

    // What was in flight from the old room is dropped.
    assert_eq!(h.remote(CANDIDATE), []);
    assert_eq!(h.local(CANDIDATE), []);
    assert_eq!(h.peer(PeerInput::Failed), []);
    assert_eq!(h.user(UserInput::Report("rude".into())), []);

    assert_eq!(h.server(QUEUED), []);
    let actions = h.server(r#"{"type":"matched","room":"r2","initiator":false,"common_interests":[]}"#);
    assert_eq!(
        actions.last(),
        Some(&Action::StartPeer { room: "r2".into(), initiator: false, ice_servers: welcome_ice_servers() })
    );
    h.remote(OFFER);
    h.at(11_200);
    // The time to connect counts from the press of next.
    assert_eq!(
        h.peer(PeerInput::Connected)[0],
        Action::Notify(Notice::Connected { since_find: Duration::from_millis(1_200) })
    );
}

#[test]
fn next_while_idle_queues_like_find() {
    let mut h = Harness::welcomed();
    assert_eq!(h.user(UserInput::Next), [send(ClientMsg::Next), phase(Phase::Queued)]);
    assert_eq!(h.user(UserInput::Next), [send(ClientMsg::Next)]);
    assert_eq!(h.session.phase(), &Phase::Queued);
}

/// Regression: the partner's `next` crossed ours on the wire. The server ends the room for
/// the partner's `next`, tells us `partner_left`, then takes our `next` as a `find`; the
/// session must not drop back to idle (and refuse the coming match) on the stale news.
#[test]
fn partner_left_crossing_our_next_does_not_cancel_it() {
    let mut h = Harness::in_call(false);
    assert_eq!(h.user(UserInput::Next), [Action::ClosePeer, send(ClientMsg::Next), phase(Phase::Queued)]);
    assert_eq!(h.server(r#"{"type":"partner_left","reason":"next"}"#), []);
    assert_eq!(h.session.phase(), &Phase::Queued);
    assert_eq!(h.server(QUEUED), []);
    let actions = h.server(r#"{"type":"matched","room":"r2","initiator":true,"common_interests":[]}"#);
    assert_eq!(
        actions.last(),
        Some(&Action::StartPeer { room: "r2".into(), initiator: true, ice_servers: welcome_ice_servers() })
    );
    assert!(!actions.contains(&send(ClientMsg::Stop)), "the new match was refused: {actions:?}");
}

#[test]
fn stop_while_matched_closes_the_peer_and_goes_idle() {
    let mut h = Harness::in_room(false);
    assert_eq!(h.user(UserInput::Stop), [Action::ClosePeer, send(ClientMsg::Stop), phase(Phase::Idle)]);
    assert_eq!(h.session.room(), None);
    assert_eq!(h.remote(OFFER), []);
    assert_eq!(h.server(QUEUED), []);
    // A second stop has nothing left to stop.
    assert_eq!(h.user(UserInput::Stop), []);
}

#[test]
fn stop_while_queued_leaves_the_queue() {
    let mut h = Harness::welcomed();
    h.user(UserInput::Find);
    assert_eq!(h.user(UserInput::Stop), [send(ClientMsg::Stop), phase(Phase::Idle)]);
    // A late `queued` for the cancelled find changes nothing.
    assert_eq!(h.server(QUEUED), []);
    assert_eq!(h.session.phase(), &Phase::Idle);
}

#[test]
fn matched_after_stop_sends_stop_and_starts_no_peer() {
    let mut h = Harness::welcomed();
    h.user(UserInput::Find);
    h.user(UserInput::Stop);
    // The server paired us before it read our stop.
    assert_eq!(h.server(MATCHED_INITIATOR), [send(ClientMsg::Stop)]);
    assert_eq!(h.session.phase(), &Phase::Idle);
    assert_eq!(h.session.room(), None);
    // The partner's offer and its departure are news of a room we never entered.
    assert_eq!(h.remote(OFFER), []);
    assert_eq!(h.server(r#"{"type":"partner_left","reason":"stop"}"#), []);
    assert_eq!(h.user(UserInput::Find), [send(ClientMsg::Find), phase(Phase::Queued)]);
}

// Reconnecting.

#[test]
fn a_resumed_welcome_into_the_same_room_keeps_the_call() {
    let mut h = Harness::in_call(true);
    assert_eq!(
        h.server(r#"{"type":"welcome","id":"s1","resume":"tok-1","ice_servers":[],"resumed":true,"room":"r1"}"#),
        [Action::Notify(Notice::Welcome { id: "s1".into(), resumed: true, name: None, rules: None })]
    );
    assert_eq!(h.session.phase(), &Phase::InCall);
    assert_eq!(h.session.room(), Some("r1"));
    // Signals the server held for us arrive after the welcome and still count.
    assert_eq!(h.remote(CANDIDATE), [Action::ApplySignal(relayed(CANDIDATE))]);
    assert_eq!(h.local(CANDIDATE), [send(ClientMsg::Signal(signal(CANDIDATE)))]);
}

#[test]
fn a_resumed_welcome_without_the_room_waits_for_the_held_partner_left() {
    let mut h = Harness::in_call(false);
    assert_eq!(
        h.server(r#"{"type":"welcome","id":"s1","resume":"tok-1","ice_servers":[],"resumed":true}"#),
        [Action::Notify(Notice::Welcome { id: "s1".into(), resumed: true, name: None, rules: None })]
    );
    assert_eq!(
        h.server(r#"{"type":"partner_left","reason":"disconnect"}"#),
        [
            Action::ClosePeer,
            Action::Notify(Notice::PartnerLeft { reason: PartnerLeftReason::Disconnect }),
            phase(Phase::Idle)
        ]
    );
}

#[test]
fn a_fresh_welcome_during_a_call_ends_it() {
    let mut h = Harness::in_call(true);
    assert_eq!(
        h.server(r#"{"type":"welcome","id":"s2","resume":"tok-2","ice_servers":[]}"#),
        [
            Action::Notify(Notice::Welcome { id: "s2".into(), resumed: false, name: None, rules: None }),
            Action::ClosePeer,
            Action::Notify(Notice::PartnerLeft { reason: PartnerLeftReason::Disconnect }),
            phase(Phase::Idle),
        ]
    );
    assert_eq!(h.session.room(), None);
    assert_eq!(h.remote(ANSWER), []);
    assert_eq!(h.user(UserInput::Find), [send(ClientMsg::Find), phase(Phase::Queued)]);
}

#[test]
fn a_fresh_welcome_during_negotiation_ends_it() {
    let mut h = Harness::in_room(false);
    h.remote(OFFER);
    let actions = h.server(r#"{"type":"welcome","id":"s2","resume":"tok-2","ice_servers":[],"resumed":false}"#);
    assert!(actions.contains(&Action::ClosePeer), "{actions:?}");
    assert_eq!(h.session.phase(), &Phase::Idle);
}

#[test]
fn a_fresh_welcome_while_queued_finds_again() {
    let mut h = Harness::welcomed();
    h.user(UserInput::Find);
    h.server(QUEUED);
    assert_eq!(
        h.server(r#"{"type":"welcome","id":"s2","resume":"tok-2","ice_servers":[],"resumed":false}"#),
        [
            Action::Notify(Notice::Welcome { id: "s2".into(), resumed: false, name: None, rules: None }),
            send(ClientMsg::Find)
        ]
    );
    assert_eq!(h.session.phase(), &Phase::Queued);
    // A resumed session keeps its queue place: nothing to ask again.
    assert_eq!(
        h.server(r#"{"type":"welcome","id":"s2","resume":"tok-2","ice_servers":[],"resumed":true}"#),
        [Action::Notify(Notice::Welcome { id: "s2".into(), resumed: true, name: None, rules: None })]
    );
}

#[test]
fn a_fresh_welcome_after_next_finds_again() {
    // Next was pressed while the socket was down; the signaling client dropped it with the
    // old session, so the session asks the new one.
    let mut h = Harness::in_call(true);
    h.user(UserInput::Next);
    assert_eq!(
        h.server(r#"{"type":"welcome","id":"s2","resume":"tok-2","ice_servers":[]}"#),
        [
            Action::Notify(Notice::Welcome { id: "s2".into(), resumed: false, name: None, rules: None }),
            send(ClientMsg::Find)
        ]
    );
    assert_eq!(h.session.phase(), &Phase::Queued);
}

#[test]
fn the_first_welcome_does_not_repeat_a_held_find() {
    // Find pressed before the socket was up: the signaling client holds it and sends it after
    // the first welcome, so the session must not send a second one.
    let mut h = Harness::new();
    assert_eq!(h.user(UserInput::Find), [send(ClientMsg::Find), phase(Phase::Queued)]);
    assert_eq!(
        h.server(WELCOME),
        [Action::Notify(Notice::Welcome { id: "s1".into(), resumed: false, name: None, rules: None })]
    );
    assert_eq!(h.session.phase(), &Phase::Queued);
}

#[test]
fn a_welcome_while_idle_changes_nothing_but_the_ice_servers() {
    let mut h = Harness::welcomed();
    assert_eq!(
        h.server(r#"{"type":"welcome","id":"s2","resume":"tok-2","ice_servers":[]}"#),
        [Action::Notify(Notice::Welcome { id: "s2".into(), resumed: false, name: None, rules: None })]
    );
    assert_eq!(h.session.phase(), &Phase::Idle);
}

// Renegotiation without glare.

#[test]
fn a_restart_request_makes_the_initiator_restart_ice() {
    let mut h = Harness::in_call(true);
    assert_eq!(h.remote(RESTART), [Action::RestartIce]);
    assert_eq!(h.session.phase(), &Phase::InCall);
    // The restart's offer goes out like any other.
    assert_eq!(h.local(OFFER), [send(ClientMsg::Signal(signal(OFFER)))]);
}

#[test]
fn a_restart_request_is_ignored_by_the_non_initiator() {
    let mut h = Harness::in_call(false);
    assert_eq!(h.remote(RESTART), []);
    let mut h = Harness::in_room(false);
    assert_eq!(h.remote(RESTART), []);
    assert_eq!(h.session.phase(), &Phase::Matched);
}

#[test]
fn a_failed_connection_makes_the_initiator_restart_ice() {
    let mut h = Harness::in_call(true);
    assert_eq!(h.peer(PeerInput::Failed), [Action::RestartIce]);
    assert_eq!(h.session.phase(), &Phase::InCall);
}

#[test]
fn a_failed_connection_makes_the_non_initiator_ask_for_a_restart() {
    let mut h = Harness::in_call(false);
    let actions = h.peer(PeerInput::Failed);
    assert_eq!(actions, [send(ClientMsg::Signal(signal(RESTART)))]);
    assert!(is_restart_request(&actions[0]));
}

/// Two sessions whose signals the test relays to each other, as the server would.
struct Pair {
    offerer: Harness,
    answerer: Harness,
}

impl Pair {
    fn in_call() -> Self {
        Pair { offerer: Harness::in_call(true), answerer: Harness::in_call(false) }
    }

    /// Relays every signal in `actions` to the other side and returns what that side did.
    fn relay(to: &mut Harness, actions: &[Action]) -> Vec<Action> {
        let mut out = Vec::new();
        for action in actions {
            if let Action::Send(ClientMsg::Signal(data)) = action {
                out.extend(to.server_msg(ServerMsg::Signal { data: data.clone() }));
            }
        }
        out
    }
}

#[test]
fn when_both_sides_fail_only_the_initiator_offers() {
    let mut pair = Pair::in_call();
    let from_offerer = pair.offerer.peer(PeerInput::Failed);
    let from_answerer = pair.answerer.peer(PeerInput::Failed);
    assert_eq!(from_offerer, [Action::RestartIce]);
    assert!(from_answerer.iter().all(|a| *a != Action::RestartIce), "{from_answerer:?}");

    // The answerer's request reaches the initiator, which restarts (the IO layer makes at
    // most one restart offer however often it is asked).
    assert_eq!(Pair::relay(&mut pair.offerer, &from_answerer), [Action::RestartIce]);
    assert_eq!(Pair::relay(&mut pair.answerer, &from_offerer), []);

    // The new offer and answer flow one way each; neither side offers twice.
    let offer = pair.offerer.local(OFFER);
    assert_eq!(Pair::relay(&mut pair.answerer, &offer), [Action::ApplySignal(signal(OFFER))]);
    let answer = pair.answerer.local(ANSWER);
    assert_eq!(Pair::relay(&mut pair.offerer, &answer), [Action::ApplySignal(signal(ANSWER))]);
    // Both report the restart's recovery (no time passed on the test's clocks).
    let recovered = [Action::Notify(Notice::IceRestarted { took: Duration::ZERO })];
    assert_eq!(pair.offerer.peer(PeerInput::Connected), recovered);
    assert_eq!(pair.answerer.peer(PeerInput::Connected), recovered);
}

// Connections that never connect are renewed, not restarted.

fn renewal(reason: RenewReason, initiator: bool) -> [Action; 3] {
    [
        Action::Notify(Notice::Renewed(reason)),
        Action::ClosePeer,
        Action::StartPeer { room: "r1".into(), initiator, ice_servers: welcome_ice_servers() },
    ]
}

/// The initiator of a call whose offer was answered but whose connection never came up.
fn negotiated_initiator() -> Harness {
    let mut h = Harness::in_room(true);
    h.local(OFFER);
    h.remote(ANSWER);
    h.remote(CANDIDATE);
    assert_eq!(h.session.phase(), &Phase::Negotiating);
    h
}

#[test]
fn a_stalled_handshake_makes_the_initiator_renew_its_connection() {
    let mut h = negotiated_initiator();
    h.at(500);
    assert_eq!(h.peer(PeerInput::IceConnected), []);
    // The handshake gets HANDSHAKE_STALL from ICE connecting, not the whole CONNECT_STALL.
    assert_eq!(h.session.poll_timeout(), Some(h.start + Duration::from_millis(500) + HANDSHAKE_STALL));
    assert_eq!(h.timeout(), renewal(RenewReason::Stalled, true));
    assert_eq!(h.session.phase(), &Phase::Negotiating);
    // The new connection's offer goes out, and its connection counts from the find.
    assert_eq!(h.local(NEW_OFFER), [send(ClientMsg::Signal(signal(NEW_OFFER)))]);
    h.at(5_500);
    assert_eq!(
        h.peer(PeerInput::Connected)[0],
        Action::Notify(Notice::Connected { since_find: Duration::from_millis(5_500) })
    );
    // Once connected, nothing can stall any more, and a failure is an ICE restart again.
    assert_eq!(h.session.poll_timeout(), None);
    assert_eq!(h.peer(PeerInput::Failed), [Action::RestartIce]);
}

#[test]
fn the_answerer_waits_for_the_initiator_to_renew() {
    let mut h = Harness::in_room(false);
    h.remote(OFFER);
    h.local(ANSWER);
    assert_eq!(h.session.poll_timeout(), Some(h.start + CONNECT_STALL));
    assert_eq!(h.timeout(), []);
    assert_eq!(h.session.phase(), &Phase::Negotiating);
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn a_connection_that_never_connected_is_renewed_when_it_fails_or_the_partner_asks() {
    let mut h = negotiated_initiator();
    assert_eq!(h.peer(PeerInput::Failed), renewal(RenewReason::NeverConnected, true));
    h.local(NEW_OFFER);
    assert_eq!(h.remote(RESTART), renewal(RenewReason::NeverConnected, true));
    // Before any offer was even made.
    let mut h = Harness::in_room(true);
    assert_eq!(h.peer(PeerInput::Failed), renewal(RenewReason::NeverConnected, true));
    assert_eq!(h.session.phase(), &Phase::Matched);
}

#[test]
fn an_offer_of_a_new_session_gets_a_new_connection() {
    let mut h = Harness::in_room(false);
    h.remote(OFFER);
    h.local(ANSWER);
    let mut expected = renewal(RenewReason::Partner, false).to_vec();
    expected.push(Action::ApplySignal(signal(NEW_OFFER)));
    assert_eq!(h.peer(PeerInput::NewSession(signal(NEW_OFFER))), expected);
    assert_eq!(h.session.phase(), &Phase::Negotiating);
    assert_eq!(h.local(ANSWER), [send(ClientMsg::Signal(signal(ANSWER)))]);
    // An answerer in a call follows too (its side may have finished the handshake first) and
    // is negotiating again.
    let mut h = Harness::in_call(false);
    expected.insert(3, phase(Phase::Negotiating));
    assert_eq!(h.peer(PeerInput::NewSession(signal(NEW_OFFER))), expected);
}

#[test]
fn an_initiator_offered_a_new_session_gives_the_call_up() {
    let mut h = negotiated_initiator();
    let actions = h.peer(PeerInput::NewSession(signal(NEW_OFFER)));
    assert_eq!(actions[0], Action::ClosePeer);
    assert!(matches!(&actions[1], Action::Notify(Notice::CallFailed(_))), "{actions:?}");
    assert_eq!(h.session.phase(), &Phase::Idle);
}

#[test]
fn renewals_are_bounded_then_the_call_is_given_up_and_a_new_match_starts_afresh() {
    let mut h = negotiated_initiator();
    for _ in 0..MAX_RENEWALS {
        assert_eq!(h.timeout(), renewal(RenewReason::Stalled, true));
        h.local(NEW_OFFER);
    }
    let actions = h.timeout();
    assert_eq!(actions[0], Action::ClosePeer);
    let Action::Notify(Notice::CallFailed(why)) = &actions[1] else { panic!("{actions:?}") };
    assert!(why.contains("no secure connection"), "{why}");
    assert_eq!(&actions[2..], [send(ClientMsg::Stop), phase(Phase::Idle)]);

    // One failed call does not hold the next find back.
    assert!(h.user(UserInput::Find).contains(&send(ClientMsg::Find)));
    h.server(MATCHED_INITIATOR);
    for _ in 0..MAX_RENEWALS {
        assert_eq!(h.timeout(), renewal(RenewReason::Stalled, true));
    }
}

// Failures.

#[test]
fn a_broken_peer_ends_the_call_and_the_session_can_find_again() {
    let mut h = Harness::in_room(false);
    h.remote(OFFER);
    assert_eq!(
        h.peer(PeerInput::Broken("the offer has no usable codec".into())),
        [
            Action::ClosePeer,
            Action::Notify(Notice::CallFailed("the offer has no usable codec".into())),
            send(ClientMsg::Stop),
            phase(Phase::Idle),
        ]
    );
    assert_eq!(h.session.room(), None);
    assert_eq!(h.remote(CANDIDATE), []);
    // The partner's departure, crossing our stop, is old news.
    assert_eq!(h.server(r#"{"type":"partner_left","reason":"stop"}"#), []);

    h.at(30_000);
    assert_eq!(h.user(UserInput::Find), [send(ClientMsg::Find), phase(Phase::Queued)]);
    let actions = h.server(r#"{"type":"matched","room":"r9","initiator":true,"common_interests":[]}"#);
    assert!(matches!(actions.last(), Some(Action::StartPeer { room, .. }) if room == "r9"), "{actions:?}");
    h.local(OFFER);
    h.at(31_000);
    assert_eq!(
        h.peer(PeerInput::Connected)[0],
        Action::Notify(Notice::Connected { since_find: Duration::from_secs(1) })
    );
}

#[test]
fn a_broken_peer_in_a_call_also_ends_it() {
    let mut h = Harness::in_call(true);
    let actions = h.peer(PeerInput::Broken("bad candidate".into()));
    assert_eq!(actions[0], Action::ClosePeer);
    assert!(actions.contains(&send(ClientMsg::Stop)));
    assert_eq!(h.session.phase(), &Phase::Idle);
}

#[test]
fn not_matched_in_a_room_ends_the_call() {
    let mut h = Harness::in_call(true);
    assert_eq!(
        h.server(r#"{"type":"error","code":"not_matched","message":"signal needs a partner"}"#),
        [
            Action::ClosePeer,
            phase(Phase::Idle),
            Action::Notify(Notice::ServerError {
                code: ErrorCode::NotMatched,
                message: "signal needs a partner".into()
            }),
        ]
    );
    assert_eq!(h.session.room(), None);
    assert_eq!(h.remote(CANDIDATE), []);
}

#[test]
fn other_errors_and_not_matched_outside_a_room_only_notify() {
    let mut h = Harness::in_call(false);
    assert_eq!(
        h.server_msg(ServerMsg::error(ErrorCode::RateLimited, "slow down")),
        [Action::Notify(Notice::ServerError { code: ErrorCode::RateLimited, message: "slow down".into() })]
    );
    assert_eq!(h.session.phase(), &Phase::InCall);

    let mut h = Harness::welcomed();
    h.user(UserInput::Find);
    assert_eq!(
        h.server_msg(ServerMsg::error(ErrorCode::NotMatched, "report needs a partner")),
        [Action::Notify(Notice::ServerError { code: ErrorCode::NotMatched, message: "report needs a partner".into() })]
    );
    assert_eq!(h.session.phase(), &Phase::Queued);
}

#[test]
fn a_report_is_sent_only_in_a_room() {
    let mut h = Harness::welcomed();
    assert_eq!(h.user(UserInput::Report("spam".into())), []);
    h.user(UserInput::Find);
    assert_eq!(h.user(UserInput::Report("spam".into())), []);
    h.server(MATCHED_ANSWERER);
    assert_eq!(h.user(UserInput::Report("spam".into())), [send(ClientMsg::Report { reason: "spam".into() })]);
    h.remote(OFFER);
    assert_eq!(h.user(UserInput::Report("rude".into())), [send(ClientMsg::Report { reason: "rude".into() })]);
    h.server(r#"{"type":"partner_left","reason":"disconnect"}"#);
    assert_eq!(h.user(UserInput::Report("rude".into())), []);
}

// Random sequences.

/// Which room a random `welcome` names.
#[derive(Debug, Clone)]
enum RoomPick {
    None,
    /// The session's current room, if it has one.
    Current,
    Named(u8),
}

/// The shape of a random signal.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Offer,
    Answer,
    Candidate,
    Restart,
}

impl Shape {
    fn json(self) -> &'static str {
        match self {
            Shape::Offer => OFFER,
            Shape::Answer => ANSWER,
            Shape::Candidate => CANDIDATE,
            Shape::Restart => RESTART,
        }
    }
}

// Deadlines.

#[test]
fn a_connection_without_ice_stalls_after_the_connect_deadline() {
    let mut h = Harness::in_room(true);
    h.at(2_000);
    h.local(OFFER);
    assert_eq!(h.session.poll_timeout(), Some(h.start + CONNECT_STALL));
    h.wait(7_000);
    assert_eq!(h.session.room(), Some("r1"), "nothing happened before the deadline");
    assert_eq!(h.timeout(), renewal(RenewReason::Stalled, true));
    // The new connection gets a deadline of its own.
    assert_eq!(h.session.poll_timeout(), Some(h.start + CONNECT_STALL + CONNECT_STALL));
}

#[test]
fn a_failed_connection_asks_for_its_restart_again_until_it_is_back() {
    let mut h = Harness::in_call(false);
    h.at(2_000);
    assert!(h.peer(PeerInput::Failed).iter().any(is_restart_request));
    assert_eq!(h.session.poll_timeout(), Some(h.start + Duration::from_millis(2_000) + RESTART_RETRY));
    // A second failure report does not push the deadline back.
    h.at(3_000);
    h.peer(PeerInput::Failed);
    assert_eq!(h.session.poll_timeout(), Some(h.start + Duration::from_millis(2_000) + RESTART_RETRY));
    let again = h.timeout();
    assert!(again.iter().any(is_restart_request), "{again:?}");
    assert_eq!(h.session.poll_timeout(), Some(h.now + RESTART_RETRY));
    h.at(9_500);
    let back = h.peer(PeerInput::Connected);
    assert!(back.contains(&Action::Notify(Notice::IceRestarted { took: Duration::from_millis(7_500) })), "{back:?}");
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn the_initiator_reports_how_long_its_ice_restart_took() {
    let mut h = Harness::in_call(true);
    h.at(4_000);
    assert_eq!(h.peer(PeerInput::Failed), [Action::RestartIce]);
    h.at(4_300);
    assert_eq!(
        h.peer(PeerInput::Connected),
        [Action::Notify(Notice::IceRestarted { took: Duration::from_millis(300) })]
    );
}

#[test]
fn the_backoff_grows_from_five_seconds_to_a_minute() {
    let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [0, 0, 5, 10, 20, 40, 60, 60, 60]);
}

/// A session whose call fails at once (as on a host where no peer connection can be made).
fn fail_a_call(h: &mut Harness) -> Vec<Action> {
    h.server(MATCHED_ANSWERER);
    h.peer(PeerInput::Broken("WebRTC: io error: No such device (os error 19)".into()))
}

#[test]
fn calls_failing_in_a_row_hold_the_next_find_back_and_say_why() {
    let mut h = Harness::welcomed();
    h.user(UserInput::Find);
    fail_a_call(&mut h);
    h.at(100);
    assert!(h.user(UserInput::Find).contains(&send(ClientMsg::Find)), "one failure holds nothing back");
    h.at(200);
    fail_a_call(&mut h);
    h.at(300);
    let held = h.user(UserInput::Find);
    assert_eq!(
        held,
        [
            Action::Notify(Notice::BackingOff {
                wait: Duration::from_millis(4_900),
                failures: 2,
                reason: "WebRTC: io error: No such device (os error 19)".into(),
            }),
            phase(Phase::Queued),
        ]
    );
    // Next while waiting changes nothing; the find goes out when the wait is over.
    assert_eq!(h.user(UserInput::Next), []);
    assert_eq!(h.session.poll_timeout(), Some(h.start + Duration::from_millis(5_200)));
    assert_eq!(h.timeout(), [send(ClientMsg::Find)]);
    // A call that connects clears the record.
    h.server(MATCHED_ANSWERER);
    h.peer(PeerInput::Connected);
    h.user(UserInput::Next);
    fail_a_call(&mut h);
    assert!(h.user(UserInput::Find).contains(&send(ClientMsg::Find)));
}

#[test]
fn stop_cancels_a_held_find() {
    let mut h = Harness::welcomed();
    for _ in 0..2 {
        h.user(UserInput::Find);
        fail_a_call(&mut h);
    }
    h.user(UserInput::Find);
    assert!(h.session.poll_timeout().is_some());
    assert_eq!(h.user(UserInput::Stop), [send(ClientMsg::Stop), phase(Phase::Idle)]);
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn a_client_whose_calls_always_fail_makes_a_few_attempts_a_minute() {
    // A bot that looks again 100 ms after every failure, against a server that matches it at
    // once, on a host where every call fails at once.
    let mut h = Harness::welcomed();
    let mut finds = 0;
    let mut minute_marks = Vec::new();
    let mut pending_find = true;
    while h.now < h.start + Duration::from_secs(180) {
        if pending_find {
            let actions = h.user(UserInput::Find);
            pending_find = false;
            if actions.contains(&send(ClientMsg::Find)) {
                finds += 1;
                fail_a_call(&mut h);
                pending_find = true;
                h.wait(100);
                continue;
            }
        }
        let actions = h.timeout();
        if actions.contains(&send(ClientMsg::Find)) {
            finds += 1;
            fail_a_call(&mut h);
            pending_find = true;
            h.wait(100);
        }
        minute_marks.push((h.now.duration_since(h.start).as_secs() / 60, finds));
    }
    let by_minute = |m: u64| minute_marks.iter().filter(|(at, _)| *at <= m).map(|(_, n)| *n).max().unwrap_or(0);
    assert!(by_minute(0) <= 5, "{} attempts in the first minute", by_minute(0));
    assert!(by_minute(2) - by_minute(1) <= 2, "{} attempts in the third minute", by_minute(2) - by_minute(1));
    assert!(finds >= 6, "it kept trying ({finds} attempts in three minutes)");
}

#[derive(Debug, Clone)]
enum Op {
    Wait(u64),
    User(UserInput),
    Welcome { resumed: bool, room: RoomPick, stun: bool },
    Queued,
    Matched { room: u8, initiator: bool },
    Remote(Shape),
    PartnerLeft(PartnerLeftReason),
    Error(ErrorCode),
    Local(Shape),
    Peer(PeerInput),
}

fn op() -> impl Strategy<Value = Op> {
    let user = prop_oneof![
        Just(UserInput::Find),
        Just(UserInput::Next),
        Just(UserInput::Stop),
        Just(UserInput::Report("spam".into())),
    ];
    let room = prop_oneof![Just(RoomPick::None), Just(RoomPick::Current), (0u8..3).prop_map(RoomPick::Named)];
    let shape = || prop_oneof![Just(Shape::Offer), Just(Shape::Answer), Just(Shape::Candidate), Just(Shape::Restart)];
    let reason = prop_oneof![
        Just(PartnerLeftReason::Next),
        Just(PartnerLeftReason::Stop),
        Just(PartnerLeftReason::Disconnect),
        Just(PartnerLeftReason::Timeout),
    ];
    let error = prop_oneof![Just(ErrorCode::NotMatched), Just(ErrorCode::RateLimited), Just(ErrorCode::BufferFull)];
    let peer = prop_oneof![
        Just(PeerInput::Connected),
        Just(PeerInput::Disconnected),
        Just(PeerInput::Failed),
        Just(PeerInput::FirstFrame),
        Just(PeerInput::Broken("broken".into())),
        Just(PeerInput::IceConnected),
        Just(PeerInput::NewSession(signal(NEW_OFFER))),
    ];
    prop_oneof![
        2 => (0u64..3_000).prop_map(Op::Wait),
        6 => user.prop_map(Op::User),
        2 => (any::<bool>(), room, any::<bool>()).prop_map(|(resumed, room, stun)| Op::Welcome { resumed, room, stun }),
        2 => Just(Op::Queued),
        4 => (0u8..3, any::<bool>()).prop_map(|(room, initiator)| Op::Matched { room, initiator }),
        5 => shape().prop_map(Op::Remote),
        2 => reason.prop_map(Op::PartnerLeft),
        1 => error.prop_map(Op::Error),
        // A peer connection makes descriptions and candidates; only the session asks for restarts.
        4 => prop_oneof![Just(Shape::Offer), Just(Shape::Answer), Just(Shape::Candidate)].prop_map(Op::Local),
        5 => peer.prop_map(Op::Peer),
    ]
}

fn room_name(i: u8) -> String {
    format!("room-{i}")
}

impl Harness {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Wait(ms) => self.wait(ms),
            Op::User(input) => {
                self.user(input);
            }
            Op::Welcome { resumed, room, stun } => {
                let room = match room {
                    RoomPick::None => None,
                    RoomPick::Current => self.session.room().map(str::to_owned),
                    RoomPick::Named(i) => Some(room_name(i)),
                };
                // Each welcome brings its own ICE servers, so a peer started with stale ones shows.
                let ice_servers = if stun {
                    vec![IceServer {
                        urls: vec!["stun:stun.example.org:3478".into()],
                        username: None,
                        credential: None,
                    }]
                } else {
                    Vec::new()
                };
                self.server_msg(ServerMsg::Welcome {
                    id: "s".into(),
                    resume: "tok".into(),
                    ice_servers,
                    resumed,
                    room,
                    name: None,
                    rules: None,
                });
            }
            Op::Queued => {
                self.server_msg(ServerMsg::Queued);
            }
            Op::Matched { room, initiator } => {
                self.server_msg(ServerMsg::Matched { room: room_name(room), initiator, common_interests: Vec::new() });
            }
            Op::Remote(shape) => {
                self.remote(shape.json());
            }
            Op::PartnerLeft(reason) => {
                self.server_msg(ServerMsg::PartnerLeft { reason });
            }
            Op::Error(code) => {
                self.server_msg(ServerMsg::error(code, "random"));
            }
            Op::Local(shape) => {
                self.local(shape.json());
            }
            Op::Peer(input) => {
                self.peer(input);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // A thousand cases by default; PROPTEST_CASES asks for another number.
        cases: std::env::var_os("PROPTEST_CASES").map_or(1_000, |_| ProptestConfig::default().cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/session.txt"))),
        ..ProptestConfig::default()
    })]

    /// Random inputs keep every invariant (the harness checks them after each step), and
    /// whatever happened, stop brings the session back to idle and find queues it again.
    #[test]
    fn random_sequences_keep_the_invariants(ops in prop::collection::vec(op(), 1..150)) {
        let mut h = Harness::new();
        for op in ops {
            h.apply(op);
        }
        h.user(UserInput::Stop);
        prop_assert_eq!(h.session.phase(), &Phase::Idle);
        prop_assert!(h.observer.peer.is_none());
        let mut actions = h.user(UserInput::Find);
        prop_assert_eq!(h.session.phase(), &Phase::Queued);
        if !actions.contains(&send(ClientMsg::Find)) {
            // Held back after failed calls: it goes out when the wait is over.
            prop_assert!(
                actions.iter().any(|a| matches!(a, Action::Notify(Notice::BackingOff { .. }))),
                "find after stop neither sent nor held: {:?}", actions
            );
            actions = h.timeout();
            prop_assert!(actions.contains(&send(ClientMsg::Find)), "the held find was not sent: {:?}", actions);
        }
    }
}

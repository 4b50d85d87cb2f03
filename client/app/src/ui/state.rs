//! The window's view model: what the window shows, built from engine [`Event`]s, and the user's
//! intents turned into engine [`Command`]s. Pure: no egui, no engine, no clock, so every rule
//! about what the window says is unit-tested here.

use std::collections::BTreeMap;

use strangers_engine::api::ErrorKind;
use strangers_engine::{CallStats, Command, DownKind, Event};

/// What the status line says while nothing has happened yet.
pub const WELCOME: &str = "Press Start to meet a random stranger.";
pub const LOOKING: &str = "Looking for someone...";
pub const CONNECTING: &str = "Found someone. Connecting...";
pub const CHATTING: &str = "You're now chatting with a random stranger.";
pub const PARTNER_LEFT: &str = "Stranger has disconnected.";
pub const YOU_LEFT: &str = "You have disconnected.";
pub const UNSTABLE: &str = "The connection is unstable. Reconnecting...";
pub const CONFIRM_NEXT: &str = "Press Esc again to leave this stranger.";
pub const TYPING: &str = "Stranger is typing...";
pub const CHOOSE_SERVER: &str = "Choose a server to meet strangers.";
pub const SERVER_CONNECTING: &str = "Connecting to the server...";
pub const RULES_FIRST: &str = "Read the rules and accept them to meet someone.";
pub const OUTDATED: &str =
    "This server speaks a newer version of Strangers than this app. Update Strangers to meet people here.";
/// The confirmation a person gives before their first stranger on a server with rules.
pub const ACCEPT_RULES: &str = "I am 18 or older and accept these rules";

/// Where the window stands with its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// None chosen yet (a first run without a built-in server).
    Unset,
    /// Connecting; not welcomed yet.
    Connecting,
    /// Welcomed.
    Up,
    /// Cannot be reached or used for now (it keeps trying): what to tell the person.
    Down(String),
    /// Refused us for good: what to tell the person.
    Refused(String),
}

/// A community's rules, as its server's welcome gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub name: Option<String>,
    pub text: String,
    /// What is remembered once they are accepted (see [`fingerprint`]).
    pub fingerprint: String,
}

/// Whether the server's rules allow looking for someone yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesState {
    /// The server has not said yet (no welcome).
    Unknown,
    /// The server has no rules.
    NoRules,
    /// Shown, waiting for the person's confirmation.
    Pending(Rules),
    Accepted,
}

/// A short, stable fingerprint of a community's name and rules (64-bit FNV-1a, hex): what is
/// remembered as accepted, so that changed rules are shown again.
pub fn fingerprint(name: Option<&str>, rules: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.unwrap_or_default().bytes().chain([0]).chain(rules.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Where the user stands, as the window sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Searching,
    Connecting,
    InCall,
}

/// Who wrote a chat line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    You,
    Stranger,
    /// A line from the app itself ("You both like music.").
    Notice,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub who: Who,
    pub text: String,
}

/// What the user asked for, from a button, a key or a text field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Start,
    Next,
    Stop,
    /// Esc: Start when idle, otherwise Next on a second press.
    Escape,
    SendChat(String),
    /// The chat input became empty or not empty.
    Typing(bool),
    ToggleMic,
    ToggleCamera,
    Report(ReportReason),
    /// The person confirmed they are 18 or older and accept the server's rules.
    AcceptRules,
}

/// Why the user reports a stranger; the server counts reports per address whatever the reason,
/// and the reason goes with the report for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportReason {
    Nudity,
    Harassment,
    Spam,
    Underage,
    Other,
}

impl ReportReason {
    /// In the order of the Report menu.
    pub const ALL: [ReportReason; 5] = [
        ReportReason::Nudity,
        ReportReason::Harassment,
        ReportReason::Spam,
        ReportReason::Underage,
        ReportReason::Other,
    ];

    /// The words in the menu.
    pub fn label(self) -> &'static str {
        match self {
            ReportReason::Nudity => "Nudity or sexual content",
            ReportReason::Harassment => "Harassment or hate",
            ReportReason::Spam => "Spam or a scam",
            ReportReason::Underage => "Looks under 18",
            ReportReason::Other => "Something else",
        }
    }

    /// The `reason` sent with the report.
    pub fn wire(self) -> &'static str {
        match self {
            ReportReason::Nudity => "nudity",
            ReportReason::Harassment => "harassment",
            ReportReason::Spam => "spam",
            ReportReason::Underage => "underage",
            ReportReason::Other => "other",
        }
    }
}

/// The view model.
#[derive(Debug, Clone)]
pub struct ViewModel {
    pub phase: Phase,
    pub status: String,
    pub chat: Vec<ChatLine>,
    pub stranger_typing: bool,
    pub stats: Option<CallStats>,
    /// The stranger's first picture has arrived in this call.
    pub stranger_video: bool,
    /// Problems worth a line in the window, by topic ("server", "camera", ...), in plain words.
    pub problems: BTreeMap<String, String>,
    pub mic_muted: bool,
    pub camera_muted: bool,
    /// Esc was pressed once in a call: the next press leaves.
    pub next_armed: bool,
    /// The stranger in this call has been reported.
    pub reported: bool,
    pub server: ServerState,
    pub rules: RulesState,
    /// The community's name, once the server told it.
    pub community: Option<String>,
    /// The rules fingerprint accepted on this server (kept in the preferences).
    pub accepted: Option<String>,
    /// Start was pressed before looking was allowed (no welcome yet, or rules to accept):
    /// looking starts as soon as it is.
    pub want_search: bool,
    typing_sent: bool,
}

impl Default for ViewModel {
    fn default() -> Self {
        ViewModel {
            phase: Phase::Idle,
            status: WELCOME.to_owned(),
            chat: Vec::new(),
            stranger_typing: false,
            stats: None,
            stranger_video: false,
            problems: BTreeMap::new(),
            mic_muted: false,
            camera_muted: false,
            next_armed: false,
            reported: false,
            server: ServerState::Connecting,
            rules: RulesState::Unknown,
            community: None,
            accepted: None,
            want_search: false,
            typing_sent: false,
        }
    }
}

impl ViewModel {
    /// A view model for a new server: `None` when none is chosen yet; `accepted` is the rules
    /// fingerprint remembered as accepted there.
    pub fn for_server(server: Option<&str>, accepted: Option<String>) -> ViewModel {
        let mut vm = ViewModel::default();
        vm.switch_server(server, accepted);
        vm
    }

    /// Forgets what the last server said (its state, name and rules) for another one.
    pub fn switch_server(&mut self, server: Option<&str>, accepted: Option<String>) {
        self.server = if server.is_some_and(|s| !s.is_empty()) { ServerState::Connecting } else { ServerState::Unset };
        self.rules = RulesState::Unknown;
        self.community = None;
        self.accepted = accepted;
        self.problems.remove("server");
    }

    /// Whether `find` may go to the server: it has no rules, or they were accepted.
    pub fn may_search(&self) -> bool {
        matches!(self.rules, RulesState::NoRules | RulesState::Accepted)
    }

    /// No server to look on: none chosen, or it refused us.
    fn server_gone(&self) -> bool {
        matches!(self.server, ServerState::Unset | ServerState::Refused(_))
    }

    /// What the status line says: the call's status, unless the server is the news.
    pub fn headline(&self) -> &str {
        let waiting = matches!(self.phase, Phase::Idle | Phase::Searching);
        match &self.server {
            ServerState::Unset => CHOOSE_SERVER,
            ServerState::Refused(text) => text,
            ServerState::Down(text) if waiting => text,
            ServerState::Connecting if self.phase == Phase::Searching => SERVER_CONNECTING,
            _ if matches!(self.rules, RulesState::Pending(_)) && waiting => RULES_FIRST,
            _ => &self.status,
        }
    }

    /// Folds one engine event into what the window shows; gives what the engine should do
    /// because of it (looking, once the server allows it).
    pub fn handle_event(&mut self, event: &Event) -> Vec<Command> {
        match event {
            Event::Welcome { name, rules, .. } => {
                self.problems.remove("server");
                self.server = ServerState::Up;
                self.community = name.clone();
                self.rules = match rules {
                    None => RulesState::NoRules,
                    Some(text) => {
                        let fingerprint = fingerprint(name.as_deref(), text);
                        if self.accepted.as_ref() == Some(&fingerprint) {
                            RulesState::Accepted
                        } else {
                            RulesState::Pending(Rules { name: name.clone(), text: text.clone(), fingerprint })
                        }
                    }
                };
                if self.want_search && self.may_search() {
                    self.want_search = false;
                    self.begin_search();
                    return vec![Command::Find];
                }
                if self.want_search && self.phase == Phase::Searching {
                    // Rules to accept first: nothing was asked of the server yet.
                    self.phase = Phase::Idle;
                    self.status = WELCOME.into();
                }
            }
            Event::ServerDown { url, kind, reason, retry_in_ms } => {
                let secs = retry_in_ms.div_ceil(1000).max(1);
                let text = match kind {
                    DownKind::Unreachable => {
                        format!("Can't reach the server at {url}. Check the address; it may also be down. Trying again in {secs} s.")
                    }
                    DownKind::NotStrangers => format!(
                        "{url} is not a Strangers server. Check the address (a link looks like strangers://chat.example.org)."
                    ),
                    DownKind::BadAddress => format!(
                        "{url} is not a server address. Choose the server again under Settings (a link looks like strangers://chat.example.org)."
                    ),
                    DownKind::Busy => format!("The server is busy. Trying again in {secs} s."),
                    DownKind::Lost => format!("Lost the connection to the server. Trying again in {secs} s."),
                };
                self.server = ServerState::Down(text);
                self.problems.insert("server".into(), format!("Details: {reason}"));
            }
            Event::Queued => {
                self.leave_call();
                self.phase = Phase::Searching;
                self.status = LOOKING.into();
            }
            Event::Matched { common_interests, .. } => {
                self.leave_call();
                self.chat.clear();
                self.phase = Phase::Connecting;
                self.status = CONNECTING.into();
                if !common_interests.is_empty() {
                    self.notice(format!("You both like {}.", common_interests.join(", ")));
                }
            }
            Event::Connected { .. } => {
                self.phase = Phase::InCall;
                self.status = CHATTING.into();
            }
            Event::ConnectionState { state } if self.phase == Phase::InCall => {
                self.status = if state == "connected" { CHATTING.into() } else { UNSTABLE.into() };
            }
            Event::IceRestarted { .. } if self.phase == Phase::InCall => self.status = CHATTING.into(),
            Event::BackingOff { wait_ms, failures, reason } => {
                let secs = wait_ms.div_ceil(1000).max(1);
                self.problems.insert(
                    "call".into(),
                    format!("The last {failures} calls failed ({reason}). Looking again in {secs} s."),
                );
            }
            Event::FirstFrame { .. } => self.stranger_video = true,
            Event::Stats(stats) => self.stats = Some(stats.as_ref().clone()),
            Event::Chat { text } => {
                self.stranger_typing = false;
                self.chat.push(ChatLine { who: Who::Stranger, text: text.clone() });
            }
            Event::Typing { active } => self.stranger_typing = *active,
            Event::PartnerLeft { .. } => {
                self.leave_call();
                self.status = PARTNER_LEFT.into();
                self.notice(PARTNER_LEFT.into());
            }
            Event::Idle | Event::Exited => {
                self.leave_call();
                self.phase = Phase::Idle;
                if self.status != PARTNER_LEFT && self.status != YOU_LEFT {
                    self.status = WELCOME.into();
                }
            }
            Event::Error { kind: ErrorKind::Refused | ErrorKind::Outdated, message } => {
                let text = if matches!(event, Event::Error { kind: ErrorKind::Outdated, .. }) {
                    OUTDATED.to_owned()
                } else {
                    format!("The server refused this app ({message}).")
                };
                self.server = ServerState::Refused(text);
                self.want_search = false;
                if self.phase == Phase::Searching {
                    self.phase = Phase::Idle;
                    self.status = WELCOME.into();
                }
            }
            Event::Error { kind, message } => match kind {
                ErrorKind::Chat => self.notice(format!("Not sent: {message}.")),
                ErrorKind::Media => {
                    self.problems.insert("media".into(), format!("Media problem: {message}."));
                }
                _ => {
                    self.problems.insert("call".into(), format!("Something went wrong: {message}."));
                }
            },
            _ => {}
        }
        Vec::new()
    }

    /// Turns a user intent into what the engine should do, updating the view at once.
    pub fn handle_intent(&mut self, intent: Intent) -> Vec<Command> {
        if !matches!(intent, Intent::Escape) && self.next_armed {
            self.disarm();
        }
        match intent {
            Intent::Start | Intent::Next if !self.may_search() || self.server_gone() => {
                if self.server_gone() {
                    return Vec::new();
                }
                // Looking starts once the server has welcomed us and its rules are accepted.
                self.want_search = true;
                if !matches!(self.rules, RulesState::Pending(_)) {
                    self.begin_search();
                }
                Vec::new()
            }
            Intent::Start => {
                if self.phase != Phase::Idle {
                    return Vec::new();
                }
                self.begin_search();
                vec![Command::Find]
            }
            Intent::Next => {
                self.begin_search();
                vec![Command::Next]
            }
            Intent::AcceptRules => {
                let RulesState::Pending(rules) = &self.rules else { return Vec::new() };
                self.accepted = Some(rules.fingerprint.clone());
                self.rules = RulesState::Accepted;
                if std::mem::take(&mut self.want_search) {
                    self.begin_search();
                    return vec![Command::Find];
                }
                Vec::new()
            }
            Intent::Stop => {
                self.want_search = false;
                if self.phase == Phase::Idle {
                    return Vec::new();
                }
                let was_in_room = matches!(self.phase, Phase::Connecting | Phase::InCall);
                self.leave_call();
                self.phase = Phase::Idle;
                self.status = if was_in_room { YOU_LEFT.into() } else { WELCOME.into() };
                if was_in_room {
                    self.notice(YOU_LEFT.into());
                }
                vec![Command::Stop]
            }
            Intent::Escape => match self.phase {
                Phase::Idle => self.handle_intent(Intent::Start),
                Phase::Searching => Vec::new(),
                Phase::Connecting | Phase::InCall if self.next_armed => self.handle_intent(Intent::Next),
                Phase::Connecting | Phase::InCall => {
                    self.next_armed = true;
                    self.status = CONFIRM_NEXT.into();
                    Vec::new()
                }
            },
            Intent::SendChat(text) => {
                let text = text.trim();
                if text.is_empty() {
                    return Vec::new();
                }
                if self.phase != Phase::InCall {
                    self.notice("Not sent: there is no stranger to chat with yet.".into());
                    return Vec::new();
                }
                self.chat.push(ChatLine { who: Who::You, text: text.to_owned() });
                let mut commands = vec![Command::Chat(text.to_owned())];
                if self.typing_sent {
                    self.typing_sent = false;
                    commands.push(Command::Typing(false));
                }
                commands
            }
            Intent::Typing(active) => {
                if self.phase != Phase::InCall || active == self.typing_sent {
                    return Vec::new();
                }
                self.typing_sent = active;
                vec![Command::Typing(active)]
            }
            Intent::ToggleMic => {
                self.mic_muted = !self.mic_muted;
                vec![Command::MuteAudio(self.mic_muted)]
            }
            Intent::ToggleCamera => {
                self.camera_muted = !self.camera_muted;
                vec![Command::MuteVideo(self.camera_muted)]
            }
            Intent::Report(reason) => {
                if !matches!(self.phase, Phase::Connecting | Phase::InCall) || self.reported {
                    return Vec::new();
                }
                self.reported = true;
                self.notice("You reported this stranger. Thank you.".into());
                vec![Command::Report(reason.wire().into())]
            }
        }
    }

    /// Whether a call (or its setting up) is on, so Next and Report make sense.
    pub fn in_room(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::InCall)
    }

    fn begin_search(&mut self) {
        self.leave_call();
        self.chat.clear();
        self.phase = Phase::Searching;
        self.status = LOOKING.into();
    }

    fn leave_call(&mut self) {
        self.stranger_typing = false;
        self.stranger_video = false;
        self.stats = None;
        self.next_armed = false;
        self.reported = false;
        self.typing_sent = false;
    }

    fn disarm(&mut self) {
        self.next_armed = false;
        if self.status == CONFIRM_NEXT {
            self.status = CHATTING.into();
        }
    }

    fn notice(&mut self, text: String) {
        self.chat.push(ChatLine { who: Who::Notice, text });
    }

    /// Records a device or settings problem shown in the window (none: the problem is gone).
    pub fn set_problem(&mut self, topic: &str, problem: Option<String>) {
        match problem {
            Some(text) => {
                self.problems.insert(topic.to_owned(), text);
            }
            None => {
                self.problems.remove(topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(name: Option<&str>, rules: Option<&str>) -> Event {
        Event::Welcome { id: "a".into(), resumed: false, name: name.map(Into::into), rules: rules.map(Into::into) }
    }

    /// Welcomed by a server without rules.
    fn welcomed() -> ViewModel {
        let mut vm = ViewModel::default();
        assert_eq!(vm.handle_event(&welcome(None, None)), vec![]);
        vm
    }

    fn in_call() -> ViewModel {
        let mut vm = welcomed();
        assert_eq!(vm.handle_intent(Intent::Start), vec![Command::Find]);
        vm.handle_event(&Event::Queued);
        vm.handle_event(&Event::Matched { room: "r".into(), initiator: true, common_interests: vec![] });
        vm.handle_event(&Event::Connected { ms_since_find: 50 });
        vm
    }

    #[test]
    fn start_looks_then_meets_someone() {
        let mut vm = welcomed();
        assert_eq!(vm.status, WELCOME);
        assert_eq!(vm.handle_intent(Intent::Start), vec![Command::Find]);
        assert_eq!(vm.status, LOOKING);
        assert_eq!(vm.handle_intent(Intent::Start), vec![], "a second Start while looking does nothing");
        vm.handle_event(&Event::Matched {
            room: "r".into(),
            initiator: false,
            common_interests: vec!["music".into(), "chess".into()],
        });
        assert_eq!(vm.phase, Phase::Connecting);
        assert_eq!(vm.chat.last().map(|l| l.text.as_str()), Some("You both like music, chess."));
        vm.handle_event(&Event::Connected { ms_since_find: 80 });
        assert_eq!(vm.status, CHATTING);
        assert_eq!(vm.phase, Phase::InCall);
    }

    #[test]
    fn partner_leaving_says_so_and_stays_said_when_idle() {
        let mut vm = in_call();
        vm.handle_event(&Event::PartnerLeft { reason: "next".into() });
        assert_eq!(vm.status, PARTNER_LEFT);
        vm.handle_event(&Event::Idle);
        assert_eq!(vm.phase, Phase::Idle);
        assert_eq!(vm.status, PARTNER_LEFT);
        assert_eq!(vm.chat.last().map(|l| (l.who, l.text.as_str())), Some((Who::Notice, PARTNER_LEFT)));
    }

    #[test]
    fn escape_twice_leaves_for_the_next_stranger() {
        let mut vm = in_call();
        assert_eq!(vm.handle_intent(Intent::Escape), vec![]);
        assert_eq!(vm.status, CONFIRM_NEXT);
        assert_eq!(vm.handle_intent(Intent::Escape), vec![Command::Next]);
        assert_eq!(vm.status, LOOKING);
        // Esc when idle starts looking.
        let mut idle = welcomed();
        assert_eq!(idle.handle_intent(Intent::Escape), vec![Command::Find]);
    }

    #[test]
    fn another_action_disarms_escape() {
        let mut vm = in_call();
        vm.handle_intent(Intent::Escape);
        vm.handle_intent(Intent::ToggleMic);
        assert!(!vm.next_armed);
        assert_eq!(vm.status, CHATTING);
        assert_eq!(vm.handle_intent(Intent::Escape), vec![], "the first press arms again");
    }

    #[test]
    fn chat_goes_out_only_in_a_call_and_typing_is_sent_on_change() {
        let mut vm = ViewModel::default();
        assert_eq!(vm.handle_intent(Intent::SendChat("hi".into())), vec![]);
        let mut vm = in_call();
        assert_eq!(vm.handle_intent(Intent::Typing(true)), vec![Command::Typing(true)]);
        assert_eq!(vm.handle_intent(Intent::Typing(true)), vec![]);
        assert_eq!(
            vm.handle_intent(Intent::SendChat("  hello  ".into())),
            vec![Command::Chat("hello".into()), Command::Typing(false)]
        );
        assert_eq!(vm.chat.last(), Some(&ChatLine { who: Who::You, text: "hello".into() }));
        assert_eq!(vm.handle_intent(Intent::SendChat("   ".into())), vec![]);
    }

    #[test]
    fn stranger_typing_shows_until_the_message_arrives() {
        let mut vm = in_call();
        vm.handle_event(&Event::Typing { active: true });
        assert!(vm.stranger_typing);
        vm.handle_event(&Event::Chat { text: "hey".into() });
        assert!(!vm.stranger_typing);
        assert_eq!(vm.chat.last(), Some(&ChatLine { who: Who::Stranger, text: "hey".into() }));
    }

    #[test]
    fn stop_mute_and_report() {
        let mut vm = in_call();
        assert_eq!(vm.handle_intent(Intent::ToggleMic), vec![Command::MuteAudio(true)]);
        assert_eq!(vm.handle_intent(Intent::ToggleCamera), vec![Command::MuteVideo(true)]);
        assert_eq!(vm.handle_intent(Intent::ToggleMic), vec![Command::MuteAudio(false)]);
        assert_eq!(vm.handle_intent(Intent::Report(ReportReason::Spam)), vec![Command::Report("spam".into())]);
        assert_eq!(vm.handle_intent(Intent::Report(ReportReason::Other)), vec![], "one report per stranger");
        assert_eq!(vm.handle_intent(Intent::Stop), vec![Command::Stop]);
        assert_eq!(vm.status, YOU_LEFT);
        vm.handle_event(&Event::Idle);
        assert_eq!(vm.status, YOU_LEFT);
        assert_eq!(vm.handle_intent(Intent::Stop), vec![]);
    }

    #[test]
    fn server_trouble_is_shown_until_welcomed() {
        let mut vm = ViewModel::default();
        assert_eq!(vm.handle_intent(Intent::Start), vec![], "nothing is asked before the welcome");
        assert_eq!(vm.headline(), SERVER_CONNECTING);
        vm.handle_event(&Event::ServerDown {
            url: "ws://x/ws".into(),
            kind: DownKind::Unreachable,
            reason: "connection refused".into(),
            retry_in_ms: 1500,
        });
        assert_eq!(
            vm.headline(),
            "Can't reach the server at ws://x/ws. Check the address; it may also be down. Trying again in 2 s."
        );
        assert_eq!(vm.problems.get("server").map(String::as_str), Some("Details: connection refused"));
        vm.handle_event(&Event::ServerDown {
            url: "ws://x/ws".into(),
            kind: DownKind::NotStrangers,
            reason: "HTTP error: 404 Not Found".into(),
            retry_in_ms: 3000,
        });
        assert!(vm.headline().starts_with("ws://x/ws is not a Strangers server."), "{}", vm.headline());
        assert_eq!(vm.handle_event(&welcome(None, None)), vec![Command::Find], "looking starts once welcomed");
        assert!(vm.problems.is_empty());
        assert_eq!(vm.headline(), LOOKING);
    }

    #[test]
    fn an_unstable_connection_is_told_and_recovers() {
        let mut vm = in_call();
        vm.handle_event(&Event::ConnectionState { state: "disconnected".into() });
        assert_eq!(vm.status, UNSTABLE);
        vm.handle_event(&Event::ConnectionState { state: "connected".into() });
        assert_eq!(vm.status, CHATTING);
    }

    #[test]
    fn rules_are_accepted_before_anyone_is_looked_for() {
        let mut vm = ViewModel::for_server(Some("wss://chess.example.org/ws"), None);
        assert_eq!(vm.handle_intent(Intent::Start), vec![]);
        assert!(vm.want_search);
        assert_eq!(
            vm.handle_event(&welcome(Some("Chess fans"), Some("Be kind."))),
            vec![],
            "no find before acceptance"
        );
        let RulesState::Pending(rules) = vm.rules.clone() else { panic!("rules not pending: {:?}", vm.rules) };
        assert_eq!((rules.name.as_deref(), rules.text.as_str()), (Some("Chess fans"), "Be kind."));
        assert_eq!(vm.phase, Phase::Idle);
        assert_eq!(vm.headline(), RULES_FIRST);
        assert_eq!(vm.handle_intent(Intent::Next), vec![], "Next does not get round the rules");
        assert_eq!(vm.handle_intent(Intent::Escape), vec![]);
        // Accepting starts the search that was asked for.
        assert_eq!(vm.handle_intent(Intent::AcceptRules), vec![Command::Find]);
        assert_eq!(vm.accepted.as_deref(), Some(rules.fingerprint.as_str()));
        assert_eq!(vm.headline(), LOOKING);
        assert_eq!(vm.handle_intent(Intent::AcceptRules), vec![], "accepted once");
    }

    #[test]
    fn accepted_rules_are_remembered_until_they_change() {
        let accepted = fingerprint(Some("Chess fans"), "Be kind.");
        let mut vm = ViewModel::for_server(Some("wss://chess.example.org/ws"), Some(accepted.clone()));
        vm.handle_event(&welcome(Some("Chess fans"), Some("Be kind.")));
        assert_eq!(vm.rules, RulesState::Accepted);
        assert_eq!(vm.community.as_deref(), Some("Chess fans"));
        assert_eq!(vm.handle_intent(Intent::Start), vec![Command::Find]);
        // New rules (after a reconnect) are asked again; the name counts too.
        let mut vm = ViewModel::for_server(Some("wss://chess.example.org/ws"), Some(accepted.clone()));
        vm.handle_event(&welcome(Some("Chess fans"), Some("Be kind. No spam.")));
        assert!(matches!(vm.rules, RulesState::Pending(_)));
        assert_ne!(fingerprint(Some("Chess"), "fans\0Be kind."), accepted);
        assert_ne!(fingerprint(None, "Be kind."), accepted);
        // Idle, accepting does not start looking by itself.
        assert_eq!(vm.handle_intent(Intent::AcceptRules), vec![]);
        assert_eq!(vm.phase, Phase::Idle);
        // Another server starts over.
        vm.switch_server(Some("wss://other.example.org/ws"), None);
        assert_eq!(
            (vm.rules.clone(), vm.server.clone(), vm.community.clone()),
            (RulesState::Unknown, ServerState::Connecting, None)
        );
    }

    #[test]
    fn without_a_server_the_window_asks_for_one() {
        let mut vm = ViewModel::for_server(None, None);
        assert_eq!(vm.server, ServerState::Unset);
        assert_eq!(vm.headline(), CHOOSE_SERVER);
        assert_eq!(vm.handle_intent(Intent::Start), vec![]);
        assert_eq!(vm.phase, Phase::Idle);
        assert!(!vm.want_search);
    }

    #[test]
    fn a_newer_server_or_a_ban_is_said_plainly_and_stops_looking() {
        let mut vm = ViewModel::default();
        vm.handle_intent(Intent::Start);
        vm.handle_event(&Event::Error { kind: ErrorKind::Outdated, message: "version: speaks 2".into() });
        assert_eq!(vm.headline(), OUTDATED);
        assert_eq!(vm.phase, Phase::Idle);
        assert_eq!(vm.handle_intent(Intent::Start), vec![]);
        let mut vm = welcomed();
        vm.handle_event(&Event::Error { kind: ErrorKind::Refused, message: "banned: too many reports".into() });
        assert_eq!(vm.headline(), "The server refused this app (banned: too many reports).");
    }
}

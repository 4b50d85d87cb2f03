//! UI tests: the real window code driven headlessly by egui_kittest, finding widgets by their
//! labels, with the engine's side played by a channel of events and a list of commands.

use std::sync::{Arc, Mutex};

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use strangers_engine::slot::FrameSlot;
use strangers_engine::{Command, Event};

use super::{Link, Window};
use crate::prefs::Prefs;

const SERVER: &str = "ws://127.0.0.1:8686/ws";

struct Rig {
    harness: Harness<'static, Window>,
    commands: Arc<Mutex<Vec<Command>>>,
    events: std::sync::mpsc::Sender<Event>,
    /// What the window told its UI hook.
    told: Arc<Mutex<Vec<serde_json::Value>>>,
}

fn welcome(name: Option<&str>, rules: Option<&str>) -> Event {
    Event::Welcome { id: "s".into(), resumed: false, name: name.map(Into::into), rules: rules.map(Into::into) }
}

impl Rig {
    /// A window on a server without rules, welcomed.
    fn new() -> Rig {
        let mut rig = Rig::with(Prefs { server: SERVER.into(), ..Prefs::default() });
        rig.send(welcome(None, None));
        rig
    }

    /// A window with these preferences, not welcomed yet.
    fn with(prefs: Prefs) -> Rig {
        let commands = Arc::new(Mutex::new(Vec::new()));
        let (events, rx) = std::sync::mpsc::channel();
        let sent = commands.clone();
        let link = Link {
            send: Box::new(move |c| sent.lock().expect("test lock").push(c)),
            events: rx,
            remote: Arc::new(FrameSlot::default()),
            local: Arc::new(FrameSlot::default()),
        };
        let mut window = Window::new(prefs, link, Arc::new(FrameSlot::default()));
        let told = Arc::new(Mutex::new(Vec::new()));
        let hook = told.clone();
        window.on_ui_event = Some(Box::new(move |event| hook.lock().expect("test lock").push(event)));
        let harness = Harness::builder()
            .with_size([1100.0, 700.0])
            .build_ui_state(|ui, window: &mut Window| window.ui(ui), window);
        Rig { harness, commands, events, told }
    }

    /// The events of this name told so far.
    fn told(&self, name: &str) -> Vec<serde_json::Value> {
        self.told.lock().expect("test lock").iter().filter(|e| e["event"] == name).cloned().collect()
    }

    fn send(&mut self, event: Event) {
        self.events.send(event).expect("window alive");
        self.harness.run();
    }

    fn commands(&self) -> Vec<Command> {
        std::mem::take(&mut *self.commands.lock().expect("test lock"))
    }

    fn enter_call(&mut self) {
        self.send(Event::Queued);
        self.send(Event::Matched { room: "r".into(), initiator: true, common_interests: vec![] });
        self.send(Event::Connected { ms_since_find: 40 });
    }
}

#[test]
fn clicking_next_asks_the_engine_for_the_next_stranger() {
    let mut rig = Rig::new();
    rig.harness.run();
    rig.harness.get_by_label("Next").click();
    rig.harness.run();
    assert_eq!(rig.commands(), vec![Command::Next]);
    rig.harness.get_by_label(super::state::LOOKING);
}

#[test]
fn start_and_stop_and_escape() {
    let mut rig = Rig::new();
    rig.harness.run();
    rig.harness.get_by_label("Start").click();
    rig.harness.run();
    assert_eq!(rig.commands(), vec![Command::Find]);
    rig.enter_call();
    rig.harness.get_by_label(super::state::CHATTING);
    rig.harness.key_press(egui::Key::Escape);
    rig.harness.run();
    assert_eq!(rig.commands(), vec![], "the first Esc only asks to confirm");
    rig.harness.get_by_label(super::state::CONFIRM_NEXT);
    rig.harness.key_press(egui::Key::Escape);
    rig.harness.run();
    assert_eq!(rig.commands(), vec![Command::Next]);
    rig.enter_call();
    rig.harness.get_by_label("Stop").click();
    rig.harness.run();
    assert_eq!(rig.commands(), vec![Command::Stop]);
}

#[test]
fn partner_leaving_shows_the_message() {
    let mut rig = Rig::new();
    rig.enter_call();
    rig.send(Event::PartnerLeft { reason: "next".into() });
    rig.send(Event::Idle);
    // In the status line and in the chat.
    assert_eq!(rig.harness.query_all_by_label(super::state::PARTNER_LEFT).count(), 2);
}

#[test]
fn chat_is_sent_with_enter_and_received_with_typing_shown() {
    let mut rig = Rig::new();
    rig.enter_call();
    rig.harness.get_by_label("Message").focus();
    rig.harness.run();
    rig.harness.get_by_label("Message").type_text("hello there");
    rig.harness.run();
    rig.harness.key_press(egui::Key::Enter);
    rig.harness.run();
    assert_eq!(
        rig.commands(),
        vec![Command::Typing(true), Command::Chat("hello there".into()), Command::Typing(false)]
    );
    rig.harness.get_by_label("You: hello there");
    rig.send(Event::Typing { active: true });
    rig.harness.get_by_label(super::state::TYPING);
    rig.send(Event::Chat { text: "hi!".into() });
    rig.harness.get_by_label("Stranger: hi!");
    assert!(rig.harness.query_by_label(super::state::TYPING).is_none());
}

#[test]
fn mute_shortcut_and_checkbox_reach_the_engine() {
    let mut rig = Rig::new();
    rig.harness.run();
    rig.harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::M);
    rig.harness.run();
    assert_eq!(rig.commands(), vec![Command::MuteAudio(true)]);
    rig.harness.get_by_label("Camera off").click();
    rig.harness.run();
    assert_eq!(rig.commands(), vec![Command::MuteVideo(true)]);
    assert!(rig.harness.state().prefs.camera_muted, "remembered in the preferences");
}

#[test]
fn a_device_problem_shows_in_the_window() {
    let mut rig = Rig::new();
    let report = rig.harness.state().device_reporter(None);
    report("camera", Some("No camera found. The stranger sees a test pattern instead.".into()));
    rig.harness.run();
    rig.harness.get_by_label("No camera found. The stranger sees a test pattern instead.");
    report("camera", None);
    rig.harness.run();
    assert!(rig.harness.query_by_label("No camera found. The stranger sees a test pattern instead.").is_none());
}

#[test]
fn a_real_missing_camera_is_reported_and_the_pattern_is_sent() {
    use strangers_engine::media::stripe;
    use strangers_engine::sources::VideoSource;

    let mut rig = Rig::new();
    let report = rig.harness.state().device_reporter(None);
    let slot = Arc::new(FrameSlot::default());
    // No machine has a camera numbered 4242, so opening it really fails, camera or not.
    let _camera = crate::devices::camera::Camera::start_index(4242, slot.clone(), report);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rig.harness.query_by_label_contains("The stranger sees a test pattern instead.").is_none() {
        assert!(std::time::Instant::now() < deadline, "no camera message within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
        rig.harness.run();
    }
    rig.harness.get_by_label_contains("Cannot open the camera \"number 4242\"");
    // What a call sends from that camera is the pattern: frames whose stripe reads back, in order.
    assert!(slot.take_newer(&mut 0).is_none(), "the failed camera put no picture in the slot");
    let mut source = crate::devices::camera::CameraSource::new(slot).expect("pattern");
    for expected in 0..3 {
        let frame = source.next_frame().expect("frame");
        let read = stripe::read(&frame).expect("the pattern carries a stripe");
        assert_eq!(read.number, expected);
    }
}

#[test]
fn changed_interests_restart_the_engine_before_looking() {
    let mut rig = Rig::new();
    rig.harness.run();
    rig.harness.get_by_label("Interests").focus();
    rig.harness.run();
    rig.harness.get_by_label("Interests").type_text("music");
    rig.harness.run();
    rig.harness.get_by_label("Start").click();
    rig.harness.run();
    assert_eq!(rig.commands(), vec![]);
    assert_eq!(rig.harness.state_mut().take_requests(), vec![super::Request::Restart(vec![Command::Find])]);
    assert_eq!(rig.harness.state().prefs.interest_list(), vec!["music"]);
}

#[test]
fn stats_overlay_tells_resolution_rate_and_path() {
    let stats = strangers_engine::CallStats {
        width: 640,
        height: 480,
        recv_fps: 30.0,
        recv_kbps: 900.0,
        sent_kbps: 880.0,
        rtt_ms: Some(12.0),
        loss: 0.01,
        path: Some(strangers_engine::api::PathInfo {
            local: "host".into(),
            remote: "host".into(),
            family: "ipv4".into(),
            relay: None,
        }),
        codec: Some("VP8".into()),
        send_width: 320,
        send_height: 240,
        target_kbps: 400.0,
        size_reason: Some("bandwidth_low".into()),
        ..Default::default()
    };
    let text = super::stats_text(Some(&stats));
    assert!(text.contains("in 640x480 @ 30 fps, 900 kbit/s"), "{text}");
    assert!(text.contains("out 320x240 (link too thin), 880 of 400 kbit/s VP8"), "{text}");
    assert!(text.contains("RTT 12 ms, loss 1.0 %"), "{text}");
    assert!(text.ends_with("direct"), "{text}");
}

#[test]
fn settings_hold_the_server_devices_and_privacy() {
    let mut rig = Rig::new();
    rig.harness.run();
    rig.harness.get_by_label("Settings").click();
    rig.harness.run();
    assert_eq!(rig.harness.state_mut().take_requests(), vec![super::Request::ScanDevices]);
    rig.harness.state_mut().device_lists.microphones = vec!["Desk microphone".into()];
    rig.harness.run();
    for label in ["Server address", "Camera", "Microphone", "Speaker"] {
        rig.harness.get_by_label(label);
    }
    // The server address is shown and, once changed and applied, restarts the engine.
    assert_eq!(rig.harness.get_by_label("Server address").value().as_deref(), Some(SERVER));
    rig.harness.get_by_label("Relay only (hide my IP address from strangers)").click();
    rig.harness.run();
    assert!(rig.harness.state().prefs.relay_only);
    assert_eq!(rig.harness.state_mut().take_requests(), vec![super::Request::Restart(vec![])]);
    rig.harness.get_by_label("Echo cancellation and noise suppression").click();
    rig.harness.run();
    assert!(!rig.harness.state().prefs.echo_cancellation);
    assert_eq!(rig.harness.state_mut().take_requests(), vec![super::Request::Devices]);
}

#[test]
fn report_asks_why_and_sends_the_reason_once_per_stranger() {
    let mut rig = Rig::new();
    rig.harness.run();
    rig.enter_call();
    rig.commands();
    rig.harness.get_by_label("Report").click();
    rig.harness.run();
    rig.harness.get_by_label("Spam or a scam").click();
    rig.harness.run();
    assert_eq!(rig.commands(), vec![Command::Report("spam".into())]);
    rig.harness.get_by_label("You reported this stranger. Thank you.");
    // The menu is closed and cannot be opened again for this stranger.
    assert!(rig.harness.query_by_label("Harassment or hate").is_none());
    rig.harness.get_by_label("Report").click();
    rig.harness.run();
    assert!(rig.harness.query_by_label("Harassment or hate").is_none());
    assert_eq!(rig.commands(), vec![]);
}

#[test]
fn rules_are_shown_and_accepted_before_the_first_stranger() {
    let mut rig = Rig::with(Prefs { server: SERVER.into(), ..Prefs::default() });
    rig.harness.run();
    rig.harness.get_by_label("Start").click();
    rig.harness.run();
    assert_eq!(rig.commands(), vec![], "nothing is asked before the welcome");
    rig.harness.get_by_label(super::state::SERVER_CONNECTING);
    rig.send(welcome(Some("Chess fans"), Some("1. Be kind.\n2. No spam.")));
    rig.harness.run();
    assert_eq!(rig.commands(), vec![], "no find before the rules are accepted");
    rig.harness.get_by_label("Welcome to Chess fans");
    rig.harness.get_by_label("1. Be kind.\n2. No spam.");
    rig.harness.get_by_label(super::state::RULES_FIRST);
    let shown = rig.told("rules_shown");
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["name"], "Chess fans");
    rig.harness.get_by_label(super::state::ACCEPT_RULES).click();
    rig.harness.run();
    assert_eq!(rig.commands(), vec![Command::Find], "accepting starts the search asked for");
    assert!(rig.harness.query_by_label(super::state::ACCEPT_RULES).is_none());
    let fingerprint = super::state::fingerprint(Some("Chess fans"), "1. Be kind.\n2. No spam.");
    assert_eq!(rig.harness.state().prefs.accepted_rules.get(SERVER), Some(&fingerprint), "remembered");

    // The next run on this server does not ask again.
    let prefs = rig.harness.state().prefs.clone();
    let mut again = Rig::with(prefs);
    again.send(welcome(Some("Chess fans"), Some("1. Be kind.\n2. No spam.")));
    assert!(again.harness.query_by_label(super::state::ACCEPT_RULES).is_none());
    again.harness.get_by_label("Start").click();
    again.harness.run();
    assert_eq!(again.commands(), vec![Command::Find]);
}

#[test]
fn a_first_run_without_a_server_asks_for_one_in_plain_words() {
    let mut rig = Rig::with(Prefs { server: String::new(), ..Prefs::default() });
    rig.harness.run();
    rig.harness.get_by_label(super::state::CHOOSE_SERVER);
    rig.harness.get_by_label_contains("every community runs its own");
    assert_eq!(rig.told("server_prompt").len(), 1);
    rig.harness.get_by_label("Server address").focus();
    rig.harness.run();
    rig.harness.get_by_label("Server address").type_text("https://chat.example.org");
    rig.harness.run();
    rig.harness.get_by_label("Connect").click();
    rig.harness.run();
    rig.harness.get_by_label_contains("is a web page's address");
    assert_eq!(rig.harness.state_mut().take_requests(), vec![]);
    rig.harness.state_mut().server_input = "strangers://chat.example.org".into();
    rig.harness.run();
    rig.harness.get_by_label("Connect").click();
    rig.harness.run();
    assert_eq!(rig.harness.state().prefs.server, "wss://chat.example.org/ws");
    assert_eq!(rig.harness.state_mut().take_requests(), vec![super::Request::Restart(vec![])]);
    assert!(rig.harness.query_by_label("Connect").is_none(), "the prompt is gone");
    assert_eq!(rig.told("server_chosen")[0]["server"], "wss://chat.example.org/ws");
}

#[test]
fn a_link_from_another_launch_switches_server_or_says_what_is_wrong() {
    let mut rig = Rig::new();
    rig.harness.state_mut().open_link("strangers://bad host");
    rig.harness.run();
    rig.harness.get_by_label_contains("Cannot open the link \"strangers://bad host\"");
    assert_eq!(rig.harness.state_mut().take_requests(), vec![]);
    rig.harness.state_mut().open_link("strangers://chat.example.org:8443");
    rig.harness.run();
    assert!(rig.harness.query_by_label_contains("Cannot open the link").is_none());
    assert_eq!(rig.harness.state().prefs.server, "wss://chat.example.org:8443/ws");
    assert_eq!(rig.harness.state_mut().take_requests(), vec![super::Request::Restart(vec![])]);
    rig.harness.get_by_label(super::state::WELCOME);
}

#[test]
fn our_own_picture_shows_from_the_start_without_a_camera() {
    let mut rig = Rig::new();
    rig.harness.run();
    let told = rig.told("self_view");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["source"], "pattern");
    let rect = told[0]["rect"].as_array().expect("a rectangle").clone();
    assert!(rect[2].as_f64().unwrap_or(0.0) >= 120.0, "{rect:?}");
}

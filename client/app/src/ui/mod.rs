//! The window: draws the [`ViewModel`](state::ViewModel) with egui and turns clicks and keys
//! into intents. It talks to the engine only through a [`Link`] (commands out, events in, frame
//! slots), so tests drive it without an engine; settings that need a new engine or new devices
//! become [`Request`]s for the shell (`desktop.rs`), which carries them out off this thread.

pub mod state;
pub mod video;

use std::sync::Arc;

use eframe::egui;
use strangers_engine::media::pattern::PatternSource;
use strangers_engine::slot::FrameSlot;
use strangers_engine::{CallStats, Command, Event};

use crate::devices::DeviceLists;
use crate::prefs::{split_interests, Prefs};
use state::{ChatLine, Intent, Phase, ReportReason, RulesState, ServerState, ViewModel, Who};
use video::VideoView;

/// The window's connection to an engine.
pub struct Link {
    pub send: Box<dyn Fn(Command) + Send>,
    pub events: std::sync::mpsc::Receiver<Event>,
    /// The stranger's newest picture and our own newest sent picture.
    pub remote: Arc<FrameSlot>,
    pub local: Arc<FrameSlot>,
}

/// What the window needs the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Start a new engine from the preferences, then send it these commands.
    Restart(Vec<Command>),
    /// Switch to the devices the preferences name.
    Devices,
    /// List the devices again.
    ScanDevices,
}

/// A device's topic and its problem (none: it works).
type DeviceNews = (String, Option<String>);

/// Told what the window shows, as JSON objects with an `event` name (with `--events`):
/// `video_on_screen` when the stranger's picture first shows and at each new size,
/// `self_view` when our own picture's source changes, `server_prompt` and `rules_shown` with
/// the screen positions of their controls, `server_chosen` and `link_refused`.
pub type UiHook = Box<dyn FnMut(serde_json::Value)>;

/// Where our own picture comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnPicture {
    Camera,
    /// What the call sends (the test pattern, without a camera).
    Sent,
    /// A still of the test pattern: no camera, no call yet.
    Pattern,
}

pub struct Window {
    pub vm: ViewModel,
    pub prefs: Prefs,
    link: Link,
    /// The interests and settings the running engine was started with.
    engine_prefs: Prefs,
    chat_input: String,
    server_input: String,
    pub settings_open: bool,
    pub device_lists: DeviceLists,
    remote: VideoView,
    local: VideoView,
    camera: VideoView,
    camera_slot: Arc<FrameSlot>,
    requests: Vec<Request>,
    /// A still of the test pattern, our picture without a camera before a call.
    pattern: VideoView,
    pattern_slot: Arc<FrameSlot>,
    /// Told what the window shows (tests, scripts).
    pub on_ui_event: Option<UiHook>,
    picture_told: Option<[usize; 2]>,
    own_told: Option<OwnPicture>,
    /// Where the server prompt's controls, or the rules' button, were last drawn, and
    /// whether that was told to `on_ui_event` (once they stay put: a new window is laid out
    /// over its first frames).
    prompt_at: Option<serde_json::Value>,
    prompt_told: bool,
    rules_at: Option<serde_json::Value>,
    rules_told: Option<String>,
    /// What is wrong with the server typed in the prompt or under Settings.
    server_error: Option<String>,
    device_news: (std::sync::mpsc::Sender<DeviceNews>, std::sync::mpsc::Receiver<DeviceNews>),
}

impl Window {
    pub fn new(prefs: Prefs, link: Link, camera_slot: Arc<FrameSlot>) -> Window {
        let server = Some(prefs.server.as_str()).filter(|s| !s.is_empty());
        let mut vm = ViewModel::for_server(server, prefs.accepted_rules.get(&prefs.server).cloned());
        vm.mic_muted = prefs.mic_muted;
        vm.camera_muted = prefs.camera_muted;
        Window {
            vm,
            server_input: prefs.server.clone(),
            engine_prefs: prefs.clone(),
            prefs,
            link,
            chat_input: String::new(),
            settings_open: false,
            device_lists: DeviceLists::default(),
            remote: VideoView::new("stranger"),
            local: VideoView::reduced("you", 2),
            camera: VideoView::reduced("camera", 2),
            camera_slot,
            requests: Vec::new(),
            pattern: VideoView::reduced("pattern", 2),
            pattern_slot: Arc::new(FrameSlot::default()),
            on_ui_event: None,
            picture_told: None,
            own_told: None,
            prompt_at: None,
            prompt_told: false,
            rules_at: None,
            rules_told: None,
            server_error: None,
            device_news: std::sync::mpsc::channel(),
        }
    }

    /// How devices tell the window about problems (from any thread); `repaint` wakes the
    /// window up.
    pub fn device_reporter(&self, repaint: Option<egui::Context>) -> crate::devices::Report {
        let tx = self.device_news.0.clone();
        Arc::new(move |topic: &str, problem: Option<String>| {
            let _ = tx.send((topic.to_owned(), problem));
            if let Some(ctx) = &repaint {
                ctx.request_repaint();
            }
        })
    }

    /// Connects the window to a new engine (after a restart), keeping what it shows.
    pub fn relink(&mut self, link: Link) {
        self.link = link;
        self.engine_prefs = self.prefs.clone();
        self.remote = VideoView::new("stranger");
        self.local = VideoView::reduced("you", 2);
        // The new engine starts unmuted: tell it what the user chose.
        (self.link.send)(Command::MuteAudio(self.vm.mic_muted));
        (self.link.send)(Command::MuteVideo(self.vm.camera_muted));
    }

    /// What the shell must do, taken out.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    /// Carries out an intent: the view model decides, commands go to the engine. Looking for
    /// someone with changed interests or server settings first restarts the engine.
    pub fn act(&mut self, intent: Intent) {
        let starts_search = matches!(intent, Intent::Start | Intent::Next)
            || (intent == Intent::Escape && self.vm.phase == Phase::Idle);
        let restart = starts_search && self.engine_outdated();
        let commands = self.vm.handle_intent(intent);
        if restart && (!commands.is_empty() || self.vm.want_search) {
            self.requests.push(Request::Restart(commands));
        } else {
            self.send_all(commands);
        }
        self.prefs.mic_muted = self.vm.mic_muted;
        self.prefs.camera_muted = self.vm.camera_muted;
        if let Some(accepted) = &self.vm.accepted {
            if self.prefs.accepted_rules.get(&self.prefs.server) != Some(accepted) {
                self.prefs.accepted_rules.insert(self.prefs.server.clone(), accepted.clone());
            }
        }
    }

    fn send_all(&mut self, commands: Vec<Command>) {
        for command in commands {
            (self.link.send)(command);
        }
    }

    /// Opens a `strangers://` link (from another launch of the app): its server is used from
    /// now on, or the window says why the link cannot be opened.
    pub fn open_link(&mut self, text: &str) {
        match crate::link::server_url(text) {
            Ok(url) => {
                self.vm.set_problem("link", None);
                self.use_server(url);
            }
            Err(e) => {
                self.vm.set_problem("link", Some(format!("Cannot open the link {text:?}: {e}.")));
                self.tell(serde_json::json!({ "event": "link_refused", "link": text, "reason": e.to_string() }));
            }
        }
    }

    /// Uses the server typed in the prompt or under Settings, if it is one.
    fn choose_server(&mut self) {
        match crate::link::server_from_input(&self.server_input) {
            Ok(url) => {
                self.server_error = None;
                self.use_server(url);
            }
            Err(problem) => self.server_error = Some(problem),
        }
    }

    /// Switches to another server at once: a new engine, its own rules, looking again there
    /// if we were looking here.
    fn use_server(&mut self, url: String) {
        self.server_input = url.clone();
        self.tell(serde_json::json!({ "event": "server_chosen", "server": url }));
        if url == self.prefs.server && self.vm.server != ServerState::Unset {
            return;
        }
        let accepted = self.prefs.accepted_rules.get(&url).cloned();
        self.vm.switch_server(Some(&url), accepted);
        self.prefs.server = url;
        self.restart_now();
    }

    fn tell(&mut self, event: serde_json::Value) {
        if let Some(hook) = self.on_ui_event.as_mut() {
            hook(event);
        }
    }

    /// Whether the running engine was started with other interests or server settings.
    fn engine_outdated(&self) -> bool {
        split_interests(&self.prefs.interests) != split_interests(&self.engine_prefs.interests)
            || self.prefs.server != self.engine_prefs.server
            || self.prefs.relay_only != self.engine_prefs.relay_only
    }

    /// Takes in what the engine said.
    fn pump_events(&mut self) {
        while let Ok(event) = self.link.events.try_recv() {
            if matches!(event, Event::Matched { .. } | Event::PartnerLeft { .. } | Event::Idle) {
                self.picture_told = None;
            }
            let commands = self.vm.handle_event(&event);
            self.send_all(commands);
        }
        while let Ok((topic, problem)) = self.device_news.1.try_recv() {
            self.vm.set_problem(&topic, problem);
        }
    }

    /// Draws the whole window.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        self.pump_events();
        self.keys(ui);
        let ctx = ui.ctx().clone();
        self.remote.update(&ctx, &self.link.remote);
        self.camera.update(&ctx, &self.camera_slot);
        if !self.camera.has_picture() {
            // Without a camera, the self-view shows what calls send (the test pattern).
            self.local.update(&ctx, &self.link.local);
        }
        let size = self.remote.picture_size().filter(|_| self.remote.has_picture());
        if size.is_some() && size != self.picture_told {
            self.picture_told = size;
            if let Some([width, height]) = size {
                self.tell(serde_json::json!({ "event": "video_on_screen", "width": width, "height": height }));
            }
        }

        egui::Panel::top("status").resizable(false).show(ui, |ui| self.status_bar(ui));
        egui::Panel::bottom("controls").resizable(false).show(ui, |ui| self.controls(ui));
        egui::Panel::right("chat").default_size(320.0).min_size(240.0).show(ui, |ui| self.chat(ui));
        if self.settings_open {
            egui::Panel::left("settings").default_size(300.0).show(ui, |ui| self.settings(ui));
        }
        egui::CentralPanel::default().show(ui, |ui| self.video(ui));
        if self.vm.server == ServerState::Unset {
            self.server_prompt(ui);
        } else if matches!(self.vm.rules, RulesState::Pending(_)) && !self.vm.in_room() {
            self.rules(ui);
        }
    }

    /// Where a control is on the screen, in physical pixels from the window's top left.
    fn at(ui: &egui::Ui, rect: egui::Rect) -> [i64; 2] {
        let scale = ui.ctx().pixels_per_point();
        [(rect.center().x * scale).round() as i64, (rect.center().y * scale).round() as i64]
    }

    /// The first run without a built-in server: which server, in plain words.
    fn server_prompt(&mut self, ui: &mut egui::Ui) {
        let mut told = None;
        egui::Window::new("Choose a server")
            .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
            .collapsible(false)
            .resizable(false)
            .default_width(460.0)
            .show(ui.ctx(), |ui| {
                ui.label(
                    "Strangers has no central server: every community runs its own. Paste the link \
                     or the address your community gave you.",
                );
                ui.add_space(4.0);
                ui.label(
                    egui::RichText::new(
                        "A link looks like strangers://chat.example.org; a server address like \
                         wss://chat.example.org/ws. Clicking a strangers:// link on a web page opens it here too.",
                    )
                    .weak(),
                );
                ui.add_space(8.0);
                let label = ui.label("Server address");
                let field = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.server_input)
                            .hint_text("strangers://chat.example.org")
                            .desired_width(f32::INFINITY),
                    )
                    .labelled_by(label.id);
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                let button = ui.button("Connect");
                if let Some(problem) = &self.server_error {
                    ui.colored_label(ui.visuals().warn_fg_color, problem);
                }
                told = Some((Self::at(ui, field.rect), Self::at(ui, button.rect)));
                if enter || button.clicked() {
                    self.choose_server();
                }
            });
        if let (false, Some((field, button))) = (self.prompt_told, told) {
            let at = serde_json::json!({ "event": "server_prompt", "field": field, "button": button });
            if self.prompt_at.as_ref() == Some(&at) {
                self.prompt_told = true;
                self.tell(at);
            } else {
                self.prompt_at = Some(at);
                ui.ctx().request_repaint();
            }
        }
    }

    /// A community's rules, and the confirmation asked before the first stranger there.
    fn rules(&mut self, ui: &mut egui::Ui) {
        let RulesState::Pending(rules) = self.vm.rules.clone() else { return };
        let title = match &rules.name {
            Some(name) => format!("Welcome to {name}"),
            None => "This server's rules".to_owned(),
        };
        let mut accept_at = None;
        egui::Window::new(title)
            .id(egui::Id::unique("rules"))
            .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
            .collapsible(false)
            .resizable(false)
            .default_width(480.0)
            .show(ui.ctx(), |ui| {
                ui.label("Before you meet anyone here, read the rules of this community:");
                ui.add_space(6.0);
                egui::ScrollArea::vertical().max_height(300.0).show(ui, |ui| {
                    ui.label(&rules.text);
                });
                ui.add_space(8.0);
                let accept = ui.button(egui::RichText::new(state::ACCEPT_RULES).strong());
                accept_at = Some(Self::at(ui, accept.rect));
                if accept.clicked() {
                    self.act(Intent::AcceptRules);
                }
                ui.label(egui::RichText::new("Not for you? Choose another server under Settings.").weak());
            });
        if let Some(accept) = accept_at {
            if self.rules_told.as_ref() != Some(&rules.fingerprint) {
                let at = serde_json::json!({
                    "event": "rules_shown", "name": rules.name, "rules": rules.text, "accept": accept
                });
                if self.rules_at.as_ref() == Some(&at) {
                    self.rules_told = Some(rules.fingerprint.clone());
                    self.tell(at);
                } else {
                    self.rules_at = Some(at);
                    ui.ctx().request_repaint();
                }
            }
        }
    }

    fn keys(&mut self, ui: &mut egui::Ui) {
        let (escape, mute_mic, mute_camera, quit) = ui.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::NONE, egui::Key::Escape),
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::M),
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::E),
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::Q),
            )
        });
        if quit {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if escape {
            self.act(Intent::Escape);
        }
        if mute_mic {
            self.act(Intent::ToggleMic);
        }
        if mute_camera {
            self.act(Intent::ToggleCamera);
        }
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.heading("Strangers");
            if let Some(name) = &self.vm.community {
                ui.label(egui::RichText::new(name).size(16.0));
            }
            ui.separator();
            ui.label(egui::RichText::new(self.vm.headline()).size(18.0).strong());
        });
        for problem in self.vm.problems.values() {
            ui.colored_label(ui.visuals().warn_fg_color, problem);
        }
        ui.add_space(4.0);
    }

    fn controls(&mut self, ui: &mut egui::Ui) {
        ui.add_space(6.0);
        ui.horizontal_wrapped(|ui| {
            let idle = self.vm.phase == Phase::Idle;
            let can_look = !matches!(self.vm.server, ServerState::Unset | ServerState::Refused(_));
            if ui.add_enabled(idle && can_look, egui::Button::new("Start")).clicked() {
                self.act(Intent::Start);
            }
            let next_label = if self.vm.next_armed { "Really? (Esc)" } else { "Next" };
            if ui.add_enabled(can_look, egui::Button::new(next_label)).on_hover_text("Esc twice").clicked() {
                self.act(Intent::Next);
            }
            if ui.add_enabled(!idle, egui::Button::new("Stop")).clicked() {
                self.act(Intent::Stop);
            }
            ui.separator();
            let label = ui.label("Interests");
            ui.add(
                egui::TextEdit::singleline(&mut self.prefs.interests).hint_text("music, chess").desired_width(160.0),
            )
            .labelled_by(label.id)
            .on_hover_text("Comma-separated; used the next time you press Start or Next");
            ui.separator();
            let mut mic_muted = self.vm.mic_muted;
            if ui.checkbox(&mut mic_muted, "Mute microphone").on_hover_text("Ctrl+M").changed() {
                self.act(Intent::ToggleMic);
            }
            let mut camera_muted = self.vm.camera_muted;
            if ui.checkbox(&mut camera_muted, "Camera off").on_hover_text("Ctrl+E").changed() {
                self.act(Intent::ToggleCamera);
            }
            ui.separator();
            ui.add_enabled_ui(self.vm.in_room() && !self.vm.reported, |ui| {
                ui.menu_button("Report", |ui| {
                    for reason in ReportReason::ALL {
                        if ui.button(reason.label()).clicked() {
                            self.act(Intent::Report(reason));
                            ui.close();
                        }
                    }
                });
            });
            ui.checkbox(&mut self.prefs.show_stats, "Stats");
            if ui.selectable_label(self.settings_open, "Settings").clicked() {
                self.settings_open = !self.settings_open;
                if self.settings_open {
                    self.server_input = self.prefs.server.clone();
                    self.requests.push(Request::ScanDevices);
                }
            }
        });
        ui.add_space(6.0);
    }

    fn chat(&mut self, ui: &mut egui::Ui) {
        ui.add_space(4.0);
        egui::Panel::bottom("chat-input").resizable(false).show(ui, |ui| {
            ui.add_space(2.0);
            let typing = if self.vm.stranger_typing { state::TYPING } else { "" };
            ui.label(egui::RichText::new(typing).italics());
            ui.horizontal(|ui| {
                let label = ui.label("Message");
                let input = ui
                    .add(egui::TextEdit::singleline(&mut self.chat_input).desired_width(ui.available_width() - 60.0))
                    .labelled_by(label.id);
                if input.changed() {
                    self.act(Intent::Typing(!self.chat_input.trim().is_empty()));
                }
                let enter = input.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                let send = ui.button("Send").clicked();
                if enter || send {
                    let text = std::mem::take(&mut self.chat_input);
                    self.act(Intent::SendChat(text));
                    input.request_focus();
                }
            });
            ui.add_space(4.0);
        });
        egui::ScrollArea::vertical().stick_to_bottom(true).auto_shrink([false, false]).show(ui, |ui| {
            for ChatLine { who, text } in &self.vm.chat {
                match who {
                    Who::You => {
                        ui.label(
                            egui::RichText::new(format!("You: {text}")).color(egui::Color32::from_rgb(90, 140, 255)),
                        );
                    }
                    Who::Stranger => {
                        ui.label(
                            egui::RichText::new(format!("Stranger: {text}"))
                                .color(egui::Color32::from_rgb(240, 90, 90)),
                        );
                    }
                    Who::Notice => {
                        ui.label(egui::RichText::new(text).italics().weak());
                    }
                }
            }
        });
    }

    fn settings(&mut self, ui: &mut egui::Ui) {
        ui.heading("Settings");
        ui.add_space(6.0);
        let label = ui.label("Server address");
        ui.add(egui::TextEdit::singleline(&mut self.server_input).desired_width(f32::INFINITY)).labelled_by(label.id);
        ui.label(egui::RichText::new("A strangers:// link or a wss:// address, as your community gives it.").weak());
        if ui.button("Use this server").clicked() {
            self.choose_server();
        }
        if let Some(problem) = &self.server_error {
            ui.colored_label(ui.visuals().warn_fg_color, problem);
        }
        ui.add_space(8.0);
        let lists = self.device_lists.clone();
        let mut changed = false;
        changed |= device_picker(ui, "Camera", &lists.cameras, &mut self.prefs.camera);
        changed |= device_picker(ui, "Microphone", &lists.microphones, &mut self.prefs.microphone);
        changed |= device_picker(ui, "Speaker", &lists.speakers, &mut self.prefs.speaker);
        if ui.checkbox(&mut self.prefs.echo_cancellation, "Echo cancellation and noise suppression").changed() {
            changed = true;
        }
        if changed {
            self.requests.push(Request::Devices);
        }
        if ui.button("Look for devices again").clicked() {
            self.requests.push(Request::ScanDevices);
        }
        ui.add_space(8.0);
        if ui
            .checkbox(&mut self.prefs.relay_only, "Relay only (hide my IP address from strangers)")
            .on_hover_text("Media goes through the server's relay; calls may be slower")
            .changed()
        {
            self.restart_now();
        }
    }

    /// Applies server settings at once: a new engine, looking again if we were.
    fn restart_now(&mut self) {
        let commands = if self.vm.phase == Phase::Idle { Vec::new() } else { self.vm.handle_intent(Intent::Next) };
        self.requests.push(Request::Restart(commands));
    }

    fn video(&mut self, ui: &mut egui::Ui) {
        let rect = ui.available_rect_before_wrap();
        let response = ui.allocate_rect(rect, egui::Sense::hover());
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 6.0, egui::Color32::from_gray(18));
        if self.remote.has_picture() {
            self.remote.paint(&painter, rect, false);
        } else {
            let hint = match self.vm.phase {
                Phase::Idle => "Press Start or Esc to meet a stranger",
                Phase::Searching => state::LOOKING,
                Phase::Connecting | Phase::InCall => "Waiting for the stranger's video...",
            };
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                hint,
                egui::FontId::proportional(20.0),
                egui::Color32::GRAY,
            );
        }
        // Our own picture, small, in the bottom right corner, from the moment the window
        // opens: the camera (mirrored, like a mirror), else what the call sends, else a still
        // of the test pattern the stranger would see.
        let source = if self.camera.has_picture() {
            OwnPicture::Camera
        } else if self.local.has_picture() {
            OwnPicture::Sent
        } else {
            if !self.pattern.has_picture() {
                if let Ok(mut pattern) = PatternSource::new(640, 480, 30) {
                    self.pattern_slot.put(Arc::new(pattern.next_frame(0)));
                    self.pattern.update(ui.ctx(), &self.pattern_slot);
                }
            }
            OwnPicture::Pattern
        };
        let has_picture = match source {
            OwnPicture::Camera => self.camera.has_picture(),
            OwnPicture::Sent => self.local.has_picture(),
            OwnPicture::Pattern => self.pattern.has_picture(),
        };
        if has_picture {
            let w = (rect.width() * 0.24).clamp(120.0, 320.0);
            let inset = egui::Rect::from_min_size(
                rect.right_bottom() - egui::vec2(w + 12.0, w * 0.75 + 12.0),
                egui::vec2(w, w * 0.75),
            );
            painter.rect_filled(inset, 4.0, egui::Color32::BLACK);
            if self.own_told != Some(source) {
                self.own_told = Some(source);
                let scale = ui.ctx().pixels_per_point();
                let [x, y, w, h] =
                    [inset.min.x, inset.min.y, inset.width(), inset.height()].map(|v| (v * scale).round() as i64);
                let name = match source {
                    OwnPicture::Camera => "camera",
                    OwnPicture::Sent => "sent",
                    OwnPicture::Pattern => "pattern",
                };
                self.tell(serde_json::json!({ "event": "self_view", "source": name, "rect": [x, y, w, h] }));
            }
            let own = match source {
                OwnPicture::Camera => &self.camera,
                OwnPicture::Sent => &self.local,
                OwnPicture::Pattern => &self.pattern,
            };
            if self.vm.camera_muted {
                painter.text(
                    inset.center(),
                    egui::Align2::CENTER_CENTER,
                    "Camera off",
                    egui::FontId::proportional(14.0),
                    egui::Color32::GRAY,
                );
            } else {
                own.paint(&painter, inset, source == OwnPicture::Camera);
            }
        }
        if self.prefs.show_stats {
            let text = stats_text(self.vm.stats.as_ref());
            let galley = painter.layout_no_wrap(text, egui::FontId::monospace(13.0), egui::Color32::WHITE);
            let at = rect.left_top() + egui::vec2(10.0, 10.0);
            painter.rect_filled(
                egui::Rect::from_min_size(at, galley.size()).expand(6.0),
                4.0,
                egui::Color32::from_black_alpha(160),
            );
            painter.galley(at, galley, egui::Color32::WHITE);
        }
        let _ = response;
    }
}

fn device_picker(ui: &mut egui::Ui, label: &str, names: &[String], choice: &mut Option<String>) -> bool {
    let before = choice.clone();
    let shown = choice.clone().unwrap_or_else(|| "System default".to_owned());
    egui::ComboBox::from_label(label).selected_text(shown).width(220.0).show_ui(ui, |ui| {
        ui.selectable_value(choice, None, "System default");
        for name in names {
            ui.selectable_value(choice, Some(name.clone()), name);
        }
    });
    *choice != before
}

/// The stats overlay's text.
pub fn stats_text(stats: Option<&CallStats>) -> String {
    let Some(s) = stats else { return "No call".to_owned() };
    let rtt = s.rtt_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0} ms"));
    let path = match &s.path {
        Some(p) if p.local == "relay" || p.remote == "relay" => "relayed (TURN)",
        Some(p) if p.family == "ipv6" => "direct (IPv6)",
        Some(_) => "direct",
        None => "-",
    };
    let codec = s.codec.as_deref().unwrap_or("-");
    let reason = match s.size_reason.as_deref() {
        Some("bandwidth_low") => " (link too thin)",
        Some("bandwidth_high") => " (link widened)",
        _ => "",
    };
    format!(
        "in {}x{} @ {:.0} fps, {:.0} kbit/s\nout {}x{}{reason}, {:.0} of {:.0} kbit/s {codec}\nRTT {rtt}, loss {:.1} %\n{path}",
        s.width,
        s.height,
        s.recv_fps,
        s.recv_kbps,
        s.send_width,
        s.send_height,
        s.sent_kbps,
        s.target_kbps,
        s.loss * 100.0
    )
}

#[cfg(test)]
mod tests;

//! The desktop shell: opens the eframe window, owns the async runtime, the engine and the
//! devices, and carries out the window's [`Request`]s. Nothing here blocks the window's thread:
//! the engine runs on the runtime, devices open on their own threads, device lists are scanned
//! on a thread, and events and new frames wake the window with `request_repaint`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use eframe::egui;
use strangers_engine::engine::EngineConfig;
use strangers_engine::{Command, EngineHandle, Event};

use crate::cli::Cli;
use crate::devices::{DeviceChoice, DeviceLists, Devices};
use crate::instance;
use crate::prefs::{self, Prefs};
use crate::ui::{Link, Request, Window};

/// Options of the desktop window that come from the command line.
pub struct Launch {
    pub cli: Cli,
    /// `--server` was given: it wins over the saved server for this run.
    pub server_given: bool,
    /// A link given on the command line that cannot be opened: the window says why.
    pub bad_link: Option<String>,
}

/// Opens the window and runs until it is closed.
pub fn run(launch: Launch) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("engine")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Strangers")
            .with_app_id("strangers")
            .with_inner_size([1100.0, 720.0])
            .with_min_inner_size([640.0, 420.0]),
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    eframe::run_native(
        "Strangers",
        options,
        Box::new(move |cc| Ok(Box::new(Desktop::new(cc, launch, runtime)) as Box<dyn eframe::App>)),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e} (without a display, use --headless)"))
}

struct Desktop {
    window: Window,
    runtime: tokio::runtime::Runtime,
    engine: EngineHandle,
    devices: Devices,
    cli: Cli,
    ctx: egui::Context,
    scan: Option<std::sync::mpsc::Receiver<DeviceLists>>,
    /// The first frame has been drawn (told once with `--events`).
    drawn: bool,
    /// Links handed over by later launches, and whether this window listens for them.
    links: std::sync::mpsc::Receiver<String>,
    listening: bool,
}

fn device_choice(prefs: &Prefs) -> DeviceChoice {
    DeviceChoice {
        camera: prefs.camera.clone(),
        microphone: prefs.microphone.clone(),
        speaker: prefs.speaker.clone(),
        echo_cancellation: prefs.echo_cancellation,
    }
}

impl Desktop {
    fn new(cc: &eframe::CreationContext<'_>, launch: Launch, runtime: tokio::runtime::Runtime) -> Desktop {
        let Launch { cli, server_given, bad_link } = launch;
        let mut prefs: Prefs = cc.storage.and_then(|s| eframe::get_value(s, prefs::KEY)).unwrap_or_default();
        if server_given {
            if let Some(server) = cli.servers.first() {
                prefs.server = server.clone();
            }
        }
        if !cli.interests.is_empty() {
            prefs.interests = cli.interests.join(", ");
        }
        prefs.relay_only |= cli.relay_only;
        prefs.show_stats |= cli.stats;
        if cli.no_echo_cancellation {
            prefs.echo_cancellation = false;
        }
        let ctx = cc.egui_ctx.clone();
        let mut devices = Devices::new(device_choice(&prefs));
        {
            let ctx = ctx.clone();
            devices.camera_slot.on_change(Box::new(move || ctx.request_repaint_after(Duration::from_millis(30))));
        }
        let (engine, link) = start_engine(&runtime, engine_config(&cli, &prefs, &devices), &ctx, cli.events);
        let mut window = Window::new(prefs, link, devices.camera_slot.clone());
        if cli.events {
            window.on_ui_event = Some(Box::new(|event| {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{event}");
                let _ = out.flush();
            }));
        }
        if let Some(link) = bad_link {
            window.open_link(&link);
        }
        let (links_tx, links) = std::sync::mpsc::channel();
        let wake = ctx.clone();
        let listening = instance::listen(links_tx, move || wake.request_repaint());
        devices.open(window.device_reporter(Some(ctx.clone())));
        engine.send(Command::MuteAudio(window.vm.mic_muted));
        engine.send(Command::MuteVideo(window.vm.camera_muted));
        if cli.start {
            window.act(crate::ui::state::Intent::Start);
        }
        let mut desktop =
            Desktop { window, runtime, engine, devices, cli, ctx, scan: None, drawn: false, links, listening };
        desktop.carry_out();
        desktop
    }

    /// Carries out what the window asked for.
    fn carry_out(&mut self) {
        for request in self.window.take_requests() {
            match request {
                Request::Restart(commands) => {
                    self.engine.send(Command::Shutdown);
                    let config = engine_config(&self.cli, &self.window.prefs, &self.devices);
                    let (engine, link) = start_engine(&self.runtime, config, &self.ctx, self.cli.events);
                    self.engine = engine;
                    self.window.relink(link);
                    for command in commands {
                        self.engine.send(command);
                    }
                }
                Request::Devices => self.devices.apply(device_choice(&self.window.prefs)),
                Request::ScanDevices => {
                    let (tx, rx) = std::sync::mpsc::channel();
                    let ctx = self.ctx.clone();
                    let spawned = std::thread::Builder::new().name("device-scan".into()).spawn(move || {
                        let _ = tx.send(DeviceLists::scan());
                        ctx.request_repaint();
                    });
                    if spawned.is_ok() {
                        self.scan = Some(rx);
                    }
                }
            }
        }
        if let Some(lists) = self.scan.as_ref().and_then(|rx| rx.try_recv().ok()) {
            self.window.device_lists = lists;
            self.scan = None;
        }
    }
}

impl eframe::App for Desktop {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        while let Ok(link) = self.links.try_recv() {
            self.window.open_link(&link);
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Focus);
        }
        self.window.ui(ui);
        self.carry_out();
        if !self.drawn {
            self.drawn = true;
            if self.cli.events {
                println!(r#"{{"event":"window_ready"}}"#);
            }
        }
        if self.window.vm.phase != crate::ui::state::Phase::Idle {
            // Keep the stats and status fresh even when no picture arrives.
            ui.ctx().request_repaint_after(Duration::from_millis(500));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, prefs::KEY, &self.window.prefs);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        if self.listening {
            instance::remove_socket();
        }
        self.engine.send(Command::Shutdown);
        // Let the engine say goodbye to the server so the stranger is told at once.
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// The engine's configuration: the command line's network settings, the preferences' server,
/// interests and privacy, and the devices.
fn engine_config(cli: &Cli, prefs: &Prefs, devices: &Devices) -> EngineConfig {
    let mut config = cli.engine_config();
    // No server chosen yet: the engine waits, connecting nowhere.
    config.signaling.urls = Some(prefs.server.clone()).filter(|s| !s.is_empty()).into_iter().collect();
    config.signaling.interests = prefs.interest_list();
    config.call.peer.relay_only = prefs.relay_only;
    config.call.video = devices.video_spec();
    config.call.audio = devices.audio_spec();
    config.call.audio_out = Some(devices.audio_out());
    config
}

/// Starts an engine on the runtime and links it to the window: events are forwarded (and
/// printed with `--events`) and each wakes the window, as does each new frame of the stranger.
fn start_engine(
    runtime: &tokio::runtime::Runtime,
    config: EngineConfig,
    ctx: &egui::Context,
    print_events: bool,
) -> (EngineHandle, Link) {
    let _entered = runtime.enter();
    let (engine, mut events) = strangers_engine::start(config);
    let (tx, rx) = std::sync::mpsc::channel::<Event>();
    let repaint = ctx.clone();
    runtime.spawn(async move {
        while let Some(event) = events.recv().await {
            if print_events {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{}", event.to_json());
                let _ = out.flush();
            }
            if tx.send(event).is_err() {
                break;
            }
            repaint.request_repaint();
        }
    });
    let repaint = ctx.clone();
    engine.remote_video.on_change(Box::new(move || repaint.request_repaint()));
    // Our own sent picture needs no wake-up of its own: it only shows during a call, where the
    // stranger's frames repaint the window at their rate (repainting for both would double it).
    let handle = engine.clone();
    let link = Link {
        send: Box::new(move |command| handle.send(command)),
        events: rx,
        remote: engine.remote_video.clone(),
        local: engine.local_video.clone(),
    };
    (engine, link)
}

//! The real desktop window on a virtual X display (Xvfb, Mesa's software OpenGL): it meets a
//! headless bot through the real signal server, draws the stranger's video, and a screenshot of
//! the screen shows a picture where the video goes. Set `STRANGERS_SCREENSHOT=FILE.png` to keep
//! the screenshot (that is how `assets/screenshot.png` is made).

use std::time::Duration;

use strangers_system_tests::desktop::{image_spread, screenshot, App, Xvfb};
use strangers_system_tests::{Client, Server};

const T: Duration = Duration::from_secs(60);

#[test]
fn the_window_meets_a_bot_and_shows_its_video() {
    let xvfb = Xvfb::start().expect("Xvfb starts (scripts/setup.sh installs it)");
    let server = Server::start(&[]).expect("server starts");
    let _bot =
        Client::start("bot", &server.ws_url(), &["--loopback", "--say", "hello from the bot"]).expect("bot starts");
    let mut app = App::start(&xvfb, &server.ws_url(), &["--loopback", "--start", "--stats"]).expect("app starts");

    // The call starts small and grows with the bandwidth it finds; the window follows each size
    // up to the full picture.
    let first = app.wait_event(T, "video_on_screen").expect("the stranger's video is drawn");
    assert_eq!(first["width"].as_u64().unwrap_or(0) * 3, first["height"].as_u64().unwrap_or(0) * 4, "{first}");
    let shown = app
        .wait_for(T, "the full picture", |e| e["event"] == "video_on_screen" && e["width"] == 640)
        .expect("the window shows the full 640x480 picture");
    assert_eq!(shown["height"], 480, "{shown}");
    if app.seen_named("chat").is_empty() {
        app.wait_for(T, "the bot's chat", |e| e["event"] == "chat").expect("chat arrives");
    }
    // The window sits at the top left of the 1280x800 screen; its video area is left of the
    // chat and between the status line and the controls. The test pattern is far from flat,
    // while outside the window the screen is flat. Look until the picture shows (a loaded
    // machine may draw a little behind the events).
    let shot = xvfb.dir().join("screen.png");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let video = loop {
        screenshot(&xvfb, &shot).expect("screenshot");
        let video = image_spread(&shot, (160, 200, 360, 220)).expect("video area measured");
        if video > 0.08 || std::time::Instant::now() > deadline {
            break video;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    if let Ok(keep) = std::env::var("STRANGERS_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("screenshot kept");
    }
    assert!(video > 0.08, "the video area looks blank (spread {video})");
    let plain = image_spread(&shot, (1100, 100, 150, 300)).expect("outside measured");
    assert!(plain < video, "outside the window ({plain}) varies more than the video ({video})");
    app.quit().expect("the app closes when asked");
    // On the way out it saved the preferences, with the server it was given.
    let saved = std::fs::read_to_string(xvfb.dir().join("data/strangers/app.ron")).expect("preferences saved");
    assert!(saved.contains("strangers-preferences") && saved.contains(&server.ws_url()), "{saved}");
}

/// Runs `strangers LINK --events` on the display as a second launch would, and waits for it
/// to exit (it hands the link to the window already there).
fn launch_with_link(xvfb: &Xvfb, link: &str) -> std::process::ExitStatus {
    let mut command = std::process::Command::new(strangers_system_tests::binary("strangers").expect("built"));
    command.args([link, "--events"]);
    let mut second = App::spawn(xvfb, command).expect("a second launch starts");
    second.wait_exit(T).expect("a second launch exits at once")
}

#[test]
fn a_first_run_asks_for_a_server_and_later_launches_hand_their_links_to_the_window() {
    let xvfb = Xvfb::start().expect("Xvfb starts (scripts/setup.sh installs it)");
    let server = Server::start(&[]).expect("server starts");
    let _bot = Client::start("bot", &server.ws_url(), &["--loopback"]).expect("bot starts");
    let mut app = App::start_bare(&xvfb, &["--loopback"]).expect("app starts");

    // No server built in, none given, none saved: the window asks, and shows our own picture
    // (the test pattern, there being no camera) before anyone is met.
    let prompt = app.wait_event(T, "server_prompt").expect("the window asks for a server");
    let own = match app.seen_named("self_view").first() {
        Some(own) => (*own).clone(),
        None => app.wait_event(T, "self_view").expect("our own picture shows at once"),
    };
    assert_eq!(own["source"], "pattern", "{own}");
    let rect: Vec<u32> = own["rect"].as_array().expect("rect").iter().map(|v| v.as_u64().unwrap_or(0) as u32).collect();
    assert!(rect.len() == 4 && rect[2] > 100 && rect[3] > 75, "{own}");
    let shot = xvfb.dir().join("idle.png");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let spread = loop {
        screenshot(&xvfb, &shot).expect("screenshot");
        let spread = image_spread(&shot, (rect[0] + 4, rect[1] + 4, rect[2] - 8, rect[3] - 8)).expect("measured");
        if spread > 0.08 || std::time::Instant::now() > deadline {
            break spread;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(spread > 0.08, "our own picture looks blank before any call (spread {spread})");
    assert!(app.seen_named("welcome").is_empty(), "the app connected somewhere before being told where");

    // A person types the link they were given, and meets the bot.
    app.click(&prompt["field"]).expect("click in the address field");
    app.type_text(&format!("strangers://{}", server.addr)).expect("typing");
    app.key("Return").expect("Enter");
    let chosen = app.wait_event(T, "server_chosen").expect("the server is taken");
    assert_eq!(chosen["server"], server.ws_url());
    app.wait_event(T, "welcome").expect("welcomed by the server");
    app.key("Escape").expect("Esc starts");
    app.wait_event(T, "connected").expect("a call with the bot");

    // A second launch with a malformed link: the window says so, the launch fails.
    let status = launch_with_link(&xvfb, "strangers://bad host");
    assert_eq!(status.code(), Some(2), "{status}");
    let refused = app.wait_event(T, "link_refused").expect("the window tells the bad link");
    assert_eq!(refused["link"], "strangers://bad host");

    // A second launch with a good link: the window takes it and no second window stays.
    let other = Server::start(&[]).expect("a second server starts");
    let status = launch_with_link(&xvfb, &format!("strangers://{}", other.addr));
    assert!(status.success(), "{status}");
    let chosen = app.wait_event(T, "server_chosen").expect("the window takes the link");
    assert_eq!(chosen["server"], other.ws_url());
    app.wait_event(T, "welcome").expect("welcomed by the second server");
    app.quit().expect("the app closes when asked");
    let saved = std::fs::read_to_string(xvfb.dir().join("data/strangers/app.ron")).expect("preferences saved");
    assert!(saved.contains(&other.ws_url()), "the chosen server is remembered: {saved}");
}

#[test]
fn a_community_s_rules_are_accepted_in_the_window_before_the_first_stranger() {
    let xvfb = Xvfb::start().expect("Xvfb starts (scripts/setup.sh installs it)");
    let rules_file = xvfb.dir().join("rules.txt");
    std::fs::write(&rules_file, "1. Be kind.\n2. Keep it clean.\n").expect("rules written");
    let rules_arg = rules_file.to_string_lossy().into_owned();
    let server = Server::start(&["--name", "Test Town", "--rules-file", &rules_arg]).expect("server starts");
    let _bot = Client::start("bot", &server.ws_url(), &["--loopback", "--accept-rules"]).expect("bot starts");
    let mut app = App::start(&xvfb, &server.ws_url(), &["--loopback", "--start"]).expect("app starts");

    let shown = app.wait_event(T, "rules_shown").expect("the rules are shown");
    assert_eq!(shown["name"], "Test Town");
    assert_eq!(shown["rules"], "1. Be kind.\n2. Keep it clean.");
    // Start was asked for, but nobody is looked for until the rules are accepted.
    assert!(app.wait_event(Duration::from_secs(2), "queued").is_err(), "queued before accepting the rules");
    app.click(&shown["accept"]).expect("click the confirmation");
    app.wait_event(T, "queued").expect("looking once accepted");
    app.wait_event(T, "video_on_screen").expect("the bot's video is drawn");
    app.quit().expect("the app closes when asked");

    // The acceptance is remembered for this server: the next run meets the bot at once.
    let mut again = App::start(&xvfb, &server.ws_url(), &["--loopback", "--start"]).expect("app starts again");
    again.wait_event(T, "connected").expect("a call without being asked again");
    assert!(again.seen_named("rules_shown").is_empty(), "the rules were asked again");
    again.quit().expect("the app closes when asked");
}

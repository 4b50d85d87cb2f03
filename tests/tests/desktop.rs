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

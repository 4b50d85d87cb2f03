//! Chromium meets our headless client through the real signal server on loopback: the page in
//! `tests/browser/peer.html` speaks PROTOCOL-v1 as our client does, sends Chromium's fake
//! camera and plays ours, and each test checks who offered, the video codec used in each
//! direction (from the browser's statistics and from our client's) and that both sides decode
//! the other's pictures. Browsers are heavy for two cores, so the tests run one at a time.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use strangers_system_tests::browser::{Browser, BrowserConfig};
use strangers_system_tests::{Client, Server};

const T: Duration = Duration::from_secs(20);
/// The video codec a call uses when neither side asks for one: what our client prefers (and
/// the browser's first choice too).
const DEFAULT_CODEC: &str = "VP8";
/// Our client sends at most 640x480; the page asks Chromium's fake camera for the same.
const MEDIA: [&str; 7] = ["--loopback", "--width", "640", "--height", "480", "--fps", "30"];
/// Frames the browser must have decoded, and how many more a second later.
const BROWSER_FRAMES: u64 = 60;
/// Seconds in a row our client must decode the browser's video.
const CLIENT_SECONDS: u32 = 3;

/// One browser and one client at a time: two of each would starve two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Who enters the queue first, and so waits longer and offers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum First {
    Browser,
    Client,
}

struct Call {
    // Fields drop in order: the processes before the server they talk to.
    browser: Browser,
    client: Client,
    _server: Server,
}

/// Starts a server, then the browser and our client, `first` queued before the other, and
/// waits until both are matched with the expected roles.
fn meet(first: First, config: impl FnOnce(&str) -> BrowserConfig, client_args: &[&str]) -> Call {
    let server = Server::start(&[]).expect("server starts");
    let config = config(&server.ws_url());
    let mut args: Vec<&str> = MEDIA.to_vec();
    args.extend_from_slice(client_args);
    let start_client = || Client::start("client", &server.ws_url(), &args).expect("client starts");
    let start_browser = || {
        let mut browser = Browser::start("browser", &config).expect("chromium starts");
        let page = browser.wait_event(T, "page").unwrap();
        assert_eq!(page["secure"], true, "the page must be a secure context for getUserMedia: {page}");
        browser
    };
    let (mut browser, mut client) = match first {
        First::Browser => {
            let mut browser = start_browser();
            browser.wait_event(T, "queued").unwrap();
            (browser, start_client())
        }
        First::Client => {
            let mut client = start_client();
            client.wait_event(T, "queued").unwrap();
            (start_browser(), client)
        }
    };
    let matched = browser.wait_event(T, "matched").unwrap();
    let ours = client.wait_event(T, "matched").unwrap();
    let browser_offers = first == First::Browser;
    assert_eq!(matched["role"], if browser_offers { "offerer" } else { "answerer" }, "{matched}");
    assert_eq!(ours["initiator"], !browser_offers, "{ours}");
    assert_eq!(matched["room"], ours["room"], "both in one room");
    Call { browser, client, _server: server }
}

/// Checks that video flows both ways in `codec`: our client decodes the browser's pictures for
/// several seconds in a row at the size the browser sends and names `codec`, and the browser
/// sends and receives `codec` and decodes more of our pictures each second, at a size our
/// client says it sends.
fn assert_video_both_ways(call: &mut Call, codec: &str) {
    let client = &mut call.client;
    let decoding = Cell::new(0);
    let ours = client
        .wait_for(T, "our client decoding the browser's video", |e| {
            if e["event"] != "stats" {
                return false;
            }
            let running = e["recv_fps"].as_f64().unwrap_or(0.0) > 0.0 && e["width"].as_u64().unwrap_or(0) > 0;
            decoding.set(if running { decoding.get() + 1 } else { 0 });
            decoding.get() >= CLIENT_SECONDS
        })
        .unwrap();
    eprintln!("client: {ours}");
    assert_eq!(upper(&ours["codec"]), codec, "the codec our client names: {ours}");

    let browser = &mut call.browser;
    let first = browser
        .wait_for(T, "frames decoded in the browser", |e| {
            e["event"] == "stats"
                && frames_decoded(e) >= BROWSER_FRAMES
                && e["recv_codec"].is_string()
                && e["send_codec"].is_string()
        })
        .unwrap();
    let later = browser
        .wait_for(Duration::from_secs(5), "more frames decoded in the browser", |e| {
            e["event"] == "stats" && frames_decoded(e) >= frames_decoded(&first) + 10
        })
        .unwrap();
    eprintln!("browser: {later}");
    for stats in [&first, &later] {
        assert_eq!(upper(&stats["recv_codec"]), codec, "the codec the browser receives: {stats}");
        assert_eq!(upper(&stats["send_codec"]), codec, "the codec the browser sends: {stats}");
    }
    let browser_sends = size(&later, "send_width", "send_height");
    assert_eq!(browser_sends, (640, 480), "Chromium's fake camera at the size asked for: {later}");
    assert_eq!(size(&ours, "width", "height"), browser_sends, "our client decodes what the browser sends");

    // Our client may change the size it sends with the bandwidth it estimates: the browser's
    // picture must have one of the sizes it reported (the newest included).
    call.client.wait_event(T, "stats").unwrap();
    let sent: Vec<(u64, u64)> =
        call.client.seen_named("stats").iter().map(|e| size(e, "send_width", "send_height")).collect();
    let browser_got = size(&later, "recv_width", "recv_height");
    assert!(browser_got.0 > 0 && browser_got.1 > 0, "the browser decoded no picture: {later}");
    assert!(sent.contains(&browser_got), "the browser decoded {browser_got:?}; our client sent {sent:?}");

    let errors = call.browser.seen_named("error");
    assert!(errors.is_empty(), "the page reported errors: {errors:?}");
}

/// A frame size from two fields of a statistics event, (0, 0) where they are missing.
fn size(stats: &Value, width: &str, height: &str) -> (u64, u64) {
    (stats[width].as_u64().unwrap_or(0), stats[height].as_u64().unwrap_or(0))
}

fn frames_decoded(stats: &Value) -> u64 {
    stats["frames_decoded"].as_u64().unwrap_or(0)
}

/// A codec name in capitals (`VP8`, `H264`), or `-` if there is none.
fn upper(name: &Value) -> String {
    name.as_str().map_or_else(|| "-".to_owned(), str::to_ascii_uppercase)
}

fn with_prefer(codec: &str) -> impl FnOnce(&str) -> BrowserConfig + '_ {
    move |server| BrowserConfig { prefer: Some(codec.to_owned()), ..BrowserConfig::new(server) }
}

fn with_only(codec: &str) -> impl FnOnce(&str) -> BrowserConfig + '_ {
    move |server| BrowserConfig { only: Some(codec.to_owned()), ..BrowserConfig::new(server) }
}

fn serialised() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed holding the lock poisons it; the others still run.
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The browser offers its own codec order (VP8 first); our client answers.
#[test]
fn browser_offers_with_default_codecs() {
    let _one = serialised();
    let mut call = meet(First::Browser, BrowserConfig::new, &[]);
    assert_video_both_ways(&mut call, DEFAULT_CODEC);
}

/// Our client offers its default order; the browser answers.
#[test]
fn client_offers_with_default_codecs() {
    let _one = serialised();
    let mut call = meet(First::Client, BrowserConfig::new, &[]);
    assert_video_both_ways(&mut call, DEFAULT_CODEC);
}

/// The browser offers H.264 first, then its other codecs.
#[test]
fn browser_preferring_h264_offers_it() {
    let _one = serialised();
    let mut call = meet(First::Browser, with_prefer("h264"), &[]);
    assert_video_both_ways(&mut call, "H264");
}

/// Our client offers VP8 and H.264; the browser answers with H.264 alone, the offer's second.
#[test]
fn browser_with_only_h264_answers_in_it() {
    let _one = serialised();
    let mut call = meet(First::Client, with_only("h264"), &[]);
    assert_video_both_ways(&mut call, "H264");
}

/// Our client offers H.264 first (`--video-codecs h264,vp8`); the browser answers.
#[test]
fn client_preferring_h264_offers_it() {
    let _one = serialised();
    let mut call = meet(First::Client, BrowserConfig::new, &["--video-codecs", "h264,vp8"]);
    assert_video_both_ways(&mut call, "H264");
}

/// The browser offers H.264 first; our client, with VP8 alone, answers in VP8.
#[test]
fn client_with_only_vp8_answers_a_browser_preferring_h264() {
    let _one = serialised();
    let mut call = meet(First::Browser, with_prefer("h264"), &["--video-codecs", "vp8"]);
    assert_video_both_ways(&mut call, "VP8");
}

//! Calls under real packet loss: a server and two headless clients run in a network namespace of
//! the test's own, where nftables drops 5 % of all UDP at random (media, RTCP feedback and
//! retransmissions alike). The 640x480 call must hold, keep verifying frames at a watchable rate
//! with few frozen seconds, and recover lost packets through NACK and the video jitter buffer
//! rather than through a keyframe per loss. Needs root (network namespaces and nftables); it is
//! skipped, saying so, without it.

use std::time::Duration;

use strangers_system_tests::lossy::{measure, Window};
use strangers_system_tests::{call_in, root_or_skip, Netns};

const T: Duration = Duration::from_secs(30);
/// How long the call is measured.
const MEASURED: Duration = Duration::from_secs(15);
const MEDIA: [&str; 9] = ["--loopback", "--bind", "127.0.0.1", "--width", "640", "--height", "480", "--fps", "30"];
/// Percent of UDP packets dropped.
const LOSS_PERCENT: u32 = 5;

/// Runs a 640x480 call in a lossy namespace and returns what a and b received; `None` when not
/// root.
fn lossy_call(test: &str) -> Option<[Window; 2]> {
    if !root_or_skip(test, "network namespaces and nftables") {
        return None;
    }
    // Dropped last: the processes below end before their namespace is deleted.
    let netns = Netns::create(&format!("strangers-loss-{}", std::process::id())).expect("network namespace");
    let percent = LOSS_PERCENT.to_string();
    netns.drop_udp_input("loss", &["numgen", "random", "mod", "100", "lt", &percent]).expect("loss rule");
    let (_server, mut a, mut b) = call_in(&netns, &MEDIA, T).unwrap();
    let sides = measure(&mut a, &mut b, Duration::from_secs(2), MEASURED);
    eprintln!("a received: {:?}\nb received: {:?}", sides[0], sides[1]);
    // About 5 % of some 500 packets a second for 17 s.
    let dropped = netns.dropped("loss").expect("drops counted");
    assert!(dropped > 200, "the network dropped only {dropped} packets");
    Some(sides)
}

/// The call holds, nothing corrupt is shown, and NACK with the video jitter buffer repairs
/// nearly every loss without a keyframe, so the picture keeps moving (docs/BENCHMARKS.md, "Calls
/// under packet loss"). One call checks all of it: two would share the two cores.
#[test]
fn a_call_holds_and_video_recovers_under_five_percent_udp_loss() {
    let Some(sides) = lossy_call("a_call_holds_and_video_recovers_under_five_percent_udp_loss") else { return };
    for (who, w) in ["a", "b"].iter().zip(&sides) {
        w.assert_recovered(who);
        w.assert_rarely_frozen(who);
        w.assert_repaired_by_nack(who);
    }
}

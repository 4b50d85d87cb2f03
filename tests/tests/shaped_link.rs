//! A call across a thin link: client A (with the signal server) and client B in two network
//! namespaces joined by a veth pair shaped to 500 kbit/s each way with a 50-packet FIFO, about
//! 25 s of 640x480 pattern and tone. Only outcomes a person notices are checked, loosely: frames
//! arrive intact, the picture never freezes for long, latency stays bounded, and the tone is
//! heard. Needs root (network namespaces and tc); it is skipped, saying so loudly, without it.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use strangers_system_tests::root_or_skip;
use strangers_system_tests::shaped::{record_call, CallOptions, Case, Second, FROZEN_BELOW_FPS, SIDES};

/// How long the call is recorded once connected.
const CALL_SECONDS: f64 = 25.0;
/// The first seconds, when congestion control may still be finding the link, are not judged.
const SETTLE_SECONDS: f64 = 8.0;
/// The longest tolerated freeze, in consecutive frozen seconds.
const LONGEST_FREEZE: usize = 1;
/// The bound on each second's median glass-to-glass latency after settling.
const LATENCY_BOUND_MS: f64 = 1000.0;
/// The tone the clients send, and how near the received audio's median pitch must be: near
/// enough to tell the tone from silence or noise (whose dominant frequency lands anywhere), loose
/// enough for the few percent the pitch read from 170 ms of decoded audio moves when frames are
/// concealed or skipped.
const TONE_HZ: f64 = 440.0;
const TONE_TOLERANCE_HZ: f64 = 0.1 * TONE_HZ;

#[test]
fn a_call_across_a_500_kbit_link_keeps_moving_with_bounded_latency() {
    if !root_or_skip("shaped_link", "network namespaces and tc") {
        return;
    }
    let case = Case::steady("t500", 500, 50);
    let options = CallOptions { seconds: CALL_SECONDS, codec: None, connect_timeout: Duration::from_secs(30) };
    let recording = record_call(&case, &options, &AtomicBool::new(false)).expect("the call runs across the link");
    for (side, name) in SIDES.iter().enumerate() {
        let got = recording.received(side, SETTLE_SECONDS, CALL_SECONDS);
        eprintln!("{name} after {SETTLE_SECONDS} s: {}", got.to_json());
        for second in &recording.sides[side] {
            eprintln!("  {name} {}", second.to_json());
        }
    }
    eprintln!("FIFO drops (leaving a, leaving b): {:?}", recording.fifo_drops);
    assert!(recording.trouble.is_empty(), "the call did not simply go on: {:#?}", recording.trouble);

    for (side, name) in SIDES.iter().enumerate() {
        let seconds = &recording.sides[side];
        let judged: Vec<&Second> = seconds.iter().filter(|s| s.t - 1.0 >= SETTLE_SECONDS).collect();
        let wanted = (CALL_SECONDS - SETTLE_SECONDS) as usize - 3;
        assert!(judged.len() >= wanted, "{name}: only {} seconds of statistics after settling", judged.len());

        let last = seconds.last().expect("statistics were recorded");
        assert!(last.frames_verified > 0, "{name}: no frame verified");
        assert_eq!(last.verify_errors, 0, "{name}: corrupt frames");

        let mut run = 0;
        for second in &judged {
            run = if second.frozen() { run + 1 } else { 0 };
            assert!(
                run <= LONGEST_FREEZE,
                "{name}: frozen (under {FROZEN_BELOW_FPS} fps) for {run} seconds in a row, until t={:.1} s",
                second.t
            );
        }

        for second in &judged {
            if let Some(p50) = second.latency_p50 {
                assert!(p50 < LATENCY_BOUND_MS, "{name}: glass-to-glass p50 {p50:.0} ms at t={:.1} s", second.t);
            }
        }

        let mut pitches: Vec<f64> = judged.iter().filter_map(|s| s.audio_hz).collect();
        pitches.sort_by(f64::total_cmp);
        let median = pitches.get(pitches.len() / 2).copied();
        assert!(
            median.is_some_and(|hz| (hz - TONE_HZ).abs() <= TONE_TOLERANCE_HZ),
            "{name}: the tone is not heard (median pitch {median:?} Hz)"
        );
    }
}

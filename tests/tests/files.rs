//! File sources and recording: a client sending a Y4M clip and a WAV tone is seen and heard
//! by the other, which saves what it receives as PNG; typing indicators travel peer to peer.

use std::f64::consts::PI;
use std::path::Path;
use std::time::Duration;

use strangers_system_tests::{Client, Server};

const T: Duration = Duration::from_secs(30);

/// Writes a 320x240 4:2:0 clip of `frames` frames at 30 fps: a grey ramp that moves.
fn write_y4m(path: &Path, frames: usize) {
    let (w, h) = (320usize, 240usize);
    let mut out = format!("YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n").into_bytes();
    for n in 0..frames {
        out.extend_from_slice(b"FRAME\n");
        for y in 0..h {
            for x in 0..w {
                out.push(((x + y + n * 4) % 200 + 28) as u8);
            }
        }
        out.extend(std::iter::repeat_n(128u8, w * h / 2));
    }
    std::fs::write(path, out).unwrap();
}

/// Writes one second of a 16-bit mono 44.1 kHz sine at `hz` (resampled to 48 kHz by the client).
fn write_wav(path: &Path, hz: f64) {
    let rate = 44_100u32;
    let samples: Vec<i16> =
        (0..rate).map(|i| ((2.0 * PI * hz * f64::from(i) / f64::from(rate)).sin() * 8000.0) as i16).collect();
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn y4m_and_wav_sources_are_seen_heard_and_recorded() {
    let dir = std::env::temp_dir().join(format!("strangers-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (clip, tone, record) = (dir.join("clip.y4m"), dir.join("tone.wav"), dir.join("received"));
    write_y4m(&clip, 45);
    write_wav(&tone, 523.0);

    let server = Server::start(&[]).unwrap();
    let sender_args = ["--loopback", "--video", clip.to_str().unwrap(), "--audio", tone.to_str().unwrap()];
    let mut sender = Client::start("files", &server.ws_url(), &sender_args).unwrap();
    let receiver_args = [
        "--loopback",
        "--width",
        "320",
        "--height",
        "240",
        "--record-dir",
        record.to_str().unwrap(),
        "--record-every",
        "10",
    ];
    let mut receiver = Client::start("viewer", &server.ws_url(), &receiver_args).unwrap();

    receiver.wait_event(T, "first_frame").unwrap();
    let stats = receiver
        .wait_for(T, "frames from the clip", |e| {
            e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= 90
        })
        .unwrap();
    assert_eq!(stats["verify_errors"], 0, "{stats}");
    assert_eq!(stats["width"], 320);
    // The WAV file's tone is heard: a second whose dominant frequency is 523 Hz (within 5 Hz).
    // A second with a jitter-buffer gap (a starved machine) moves the estimate, so one clean
    // second is what counts; a tone that never comes through fails with the last figures.
    receiver
        .wait_for(T, "the WAV file's 523 Hz tone", |e| {
            e["event"] == "stats" && e["audio_hz"].as_f64().is_some_and(|heard| (heard - 523.0).abs() < 5.0)
        })
        .unwrap();

    // Typing indicators go peer to peer.
    sender.wait_event(T, "first_frame").unwrap();
    sender.command("typing on").unwrap();
    let typing = receiver.wait_event(T, "typing").unwrap();
    assert_eq!(typing["active"], true);

    // Received frames were saved as PNG files.
    let pngs: Vec<_> = std::fs::read_dir(&record)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .collect();
    assert!(pngs.len() >= 3, "only {} PNG files recorded", pngs.len());
    let bytes = std::fs::read(pngs[0].path()).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    drop((sender, receiver));
    let _ = std::fs::remove_dir_all(&dir);
}

//! The real microphone and speaker code through a real sound server: a PulseAudio daemon of the
//! test's own with a null sink (no sound card needed), whose monitor is the default source, so
//! whatever the app plays comes straight back into its microphone: the worst echo there is.
//! `strangers --audio-check` plays a tone to the speaker path and measures what the microphone
//! path would send, without and with echo cancellation.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Pulse {
    child: Child,
    dir: PathBuf,
}

impl Pulse {
    fn start() -> Pulse {
        let dir = std::env::temp_dir().join(format!("strangers-pulse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let socket = dir.join("pulse.sock");
        let child = Command::new("pulseaudio")
            .args(["-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm"])
            // Modules load in order: the sink first, so that it exists once the socket does
            // (the other way round, a client quick to connect on a loaded machine found no
            // sink and the speaker did not open).
            .args(["-L", "module-null-sink sink_name=nullsink"])
            .arg("-L")
            .arg(format!("module-native-protocol-unix auth-anonymous=1 socket={}", socket.display()))
            .env("XDG_RUNTIME_DIR", &dir)
            .env("HOME", &dir)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulseaudio starts (scripts/setup.sh installs it)");
        let pulse = Pulse { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "pulseaudio did not open its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        pulse
    }

    fn server(&self) -> String {
        format!("unix:{}", self.dir.join("pulse.sock").display())
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the check and returns the level of what would be sent, dBFS.
fn sent_dbfs(pulse: &Pulse, extra: &[&str]) -> f64 {
    let output = Command::new(env!("CARGO_BIN_EXE_strangers"))
        .args(["--audio-check", "6"])
        .args(extra)
        .env("PULSE_SERVER", pulse.server())
        .env("XDG_RUNTIME_DIR", &pulse.dir)
        .stderr(Stdio::null())
        .output()
        .expect("strangers runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.contains("audio_check")).unwrap_or_else(|| panic!("no result in {text:?}"));
    let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
    let result = &value["result"];
    assert_eq!(result["microphone"], true, "the microphone opened: {value}");
    assert_eq!(result["speaker"], true, "the speaker opened: {value}");
    result["sent_dbfs"].as_f64().expect("a level")
}

#[test]
fn a_tone_played_to_the_speaker_is_strongly_attenuated_in_what_the_microphone_sends() {
    let pulse = Pulse::start();
    let without = sent_dbfs(&pulse, &["--no-echo-cancellation"]);
    let with = sent_dbfs(&pulse, &[]);
    println!("sent: {without:.1} dBFS without echo cancellation, {with:.1} dBFS with");
    // The tone is played at -14 dBFS RMS and comes back whole through the monitor.
    assert!(without > -20.0, "without processing the echo is sent ({without:.1} dBFS)");
    assert!(without - with > 30.0, "echo attenuated by only {:.1} dB", without - with);
}

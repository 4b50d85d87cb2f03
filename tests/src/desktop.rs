//! Helpers for testing the desktop window: a virtual X display (Xvfb) on a free display number,
//! the real app on it, screenshots (ImageMagick's `import`) and a measure of how much a region
//! of a screenshot varies. Everything started here is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::Client;

/// A virtual X display with its own temporary directory (runtime dir, home, screenshots).
pub struct Xvfb {
    child: Child,
    display: String,
    dir: PathBuf,
}

impl Xvfb {
    /// Starts Xvfb (1280x800, 24 bit) on the first free display number from :90.
    pub fn start() -> anyhow::Result<Xvfb> {
        let dir = std::env::temp_dir().join(format!("strangers-xvfb-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        // Tests of one binary start their displays one at a time: two starting together could
        // both see the same number free and share one display.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for n in 90..190 {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() || Path::new(&format!("/tmp/.X{n}-lock")).exists() {
                continue;
            }
            let display = format!(":{n}");
            let mut child = Command::new("Xvfb")
                .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-noreset"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting Xvfb (install it with scripts/setup.sh)")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return Ok(Xvfb { child, display, dir });
                }
                if child.try_wait()?.is_some() {
                    break; // Another Xvfb took the number first: try the next.
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        bail!("no free X display number for Xvfb")
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// A private directory for this display's programs and files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The real desktop app (`strangers` without `--headless`) on an Xvfb display, printing its
/// events (`--events`). Its preferences live in the display's private directory.
pub struct App {
    client: Client,
    display: String,
}

impl App {
    pub fn start(xvfb: &Xvfb, server: &str, args: &[&str]) -> anyhow::Result<App> {
        let mut command = Command::new(crate::binary("strangers")?);
        command.args(["--server", server, "--events"]).args(args);
        Self::spawn(xvfb, command)
    }

    /// The app with no server given: the saved one, or the first run's prompt.
    pub fn start_bare(xvfb: &Xvfb, args: &[&str]) -> anyhow::Result<App> {
        let mut command = Command::new(crate::binary("strangers")?);
        command.arg("--events").args(args).env_remove("STRANGERS_SERVER");
        Self::spawn(xvfb, command)
    }

    /// Runs `command` (a `strangers` program with its arguments, which should include
    /// `--events`) as the app on the display.
    pub fn spawn(xvfb: &Xvfb, mut command: Command) -> anyhow::Result<App> {
        command
            .env("DISPLAY", xvfb.display())
            .env("XDG_RUNTIME_DIR", xvfb.dir())
            .env("HOME", xvfb.dir())
            .env("XDG_DATA_HOME", xvfb.dir().join("data"))
            .env("XDG_CONFIG_HOME", xvfb.dir().join("config"))
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("PULSE_SERVER");
        Ok(App { client: Client::spawn("app", command)?, display: xvfb.display().to_owned() })
    }

    pub fn wait_event(&mut self, timeout: Duration, name: &str) -> anyhow::Result<Value> {
        self.client.wait_event(timeout, name)
    }

    pub fn wait_for(&mut self, timeout: Duration, what: &str, want: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        self.client.wait_for(timeout, what, want)
    }

    /// Every event of this name seen so far.
    pub fn seen_named(&self, name: &str) -> Vec<&Value> {
        self.client.seen_named(name)
    }

    pub fn pid(&self) -> u32 {
        self.client.pid()
    }

    /// Waits for the app to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        self.client.wait_exit(timeout)
    }

    /// Clicks in the window at `at`, in pixels from its top left (as the window's own
    /// `server_prompt` and `rules_shown` events give them).
    pub fn click(&self, at: &Value) -> anyhow::Result<()> {
        let (Some(x), Some(y)) = (at[0].as_f64(), at[1].as_f64()) else { bail!("not a position: {at}") };
        // Point first and let the window see the pointer over the control, then press and
        // release with a pause, as a hand would: a busy window may draw a frame in between.
        self.xdotool(&["mousemove", "--window", "%1", &format!("{x:.0}"), &format!("{y:.0}")])?;
        std::thread::sleep(Duration::from_millis(400));
        self.xdotool(&["mousedown", "1"])?;
        std::thread::sleep(Duration::from_millis(150));
        self.xdotool(&["mouseup", "1"])?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }

    /// Types text on the keyboard into the focused window.
    pub fn type_text(&self, text: &str) -> anyhow::Result<()> {
        self.xdotool(&["windowfocus", "--sync", "type", "--delay", "20", text])
    }

    /// Presses a key (xdotool's names: `Return`, `Escape`, `ctrl+q`).
    pub fn key(&self, key: &str) -> anyhow::Result<()> {
        self.xdotool(&["windowfocus", "--sync", "key", key])
    }

    /// Runs xdotool on the Strangers window (`%1` in `args` is the window), trying again a
    /// few times (a busy X server may not have the window ready for it yet).
    fn xdotool(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            let mut xdotool = Command::new("xdotool");
            xdotool.args(["search", "--sync", "--name", "^Strangers$"]).args(args).env("DISPLAY", &self.display);
            match run_quietly(xdotool, "xdotool") {
                Err(_) if tries < 5 => tries += 1,
                done => return done,
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Presses Ctrl+Q in the window (through xdotool) and waits for the app to exit.
    pub fn quit(&mut self) -> anyhow::Result<()> {
        self.key("ctrl+q")?;
        let status = self.client.wait_exit(Duration::from_secs(10))?;
        if !status.success() {
            bail!("the app exited with {status}");
        }
        Ok(())
    }
}

/// Saves a screenshot of the whole display as PNG.
pub fn screenshot(xvfb: &Xvfb, path: &Path) -> anyhow::Result<()> {
    let mut import = Command::new("import");
    import.args(["-display", xvfb.display(), "-window", "root"]).arg(path);
    run_quietly(import, "import (ImageMagick)")
}

/// Runs a helper tool to its end with its output discarded; an error if it fails.
fn run_quietly(mut command: Command, name: &str) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("running {name}"))?;
    if !output.status.success() {
        bail!("{name} failed: {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The standard deviation of brightness (0 to 1) in a region `(x, y, width, height)` of an
/// image: 0 for a flat colour, larger the more the region varies.
pub fn image_spread(path: &Path, (x, y, w, h): (u32, u32, u32, u32)) -> anyhow::Result<f64> {
    let output = Command::new("convert")
        .arg(path)
        .args(["-crop", &format!("{w}x{h}+{x}+{y}"), "+repage", "-colorspace", "Gray", "-format"])
        .arg("%[fx:standard_deviation]")
        .arg("info:")
        .output()
        .context("running convert (ImageMagick)")?;
    if !output.status.success() {
        bail!("convert failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().parse().with_context(|| format!("reading {text:?}"))
}

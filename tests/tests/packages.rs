//! The Linux packages, built by `scripts/package.sh` from the build the suite made (its dev
//! profile), checked with the real tools and installed with the real dpkg (as root; skipped,
//! saying so, without it): the app's desktop entry and AppStream metainfo validate, the entry's
//! `Exec` line with a `strangers://` link opens the window on a local server where it meets a
//! bot; the server package's unit passes `systemd-analyze`, and the server started exactly as
//! the unit says carries a call. Both packages are purged afterwards. Also: the portable
//! archive and the AppDir hold the app, and the release workflow passes actionlint.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use strangers_system_tests::desktop::{App, Xvfb};
use strangers_system_tests::packages::{self, desktop_exec, environment_file, exec_start, group_values, Installed};
use strangers_system_tests::{root_or_skip, Client, Server};

const T: Duration = Duration::from_secs(60);
/// Packaging may compile the app without H.264 first: a few minutes on a small machine.
const PACKAGING: Duration = Duration::from_secs(40 * 60);

/// The tests here run one at a time: dpkg takes one install at a time, and packaging briefly
/// moves the workspace's `strangers` binary aside.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The packages, built once for all the tests here.
fn built() -> &'static packages::Packages {
    static BUILT: OnceLock<packages::Packages> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = strangers_system_tests::bin_dir().join("packages-test");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("output directory");
        packages::build(&out, PACKAGING).expect("scripts/package.sh builds the packages")
    })
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{program} {args:?} failed: {text}");
    text
}

#[test]
fn the_app_package_installs_and_its_desktop_entry_opens_a_link_on_a_local_server() {
    let _turn = serial();
    if !root_or_skip("packages", "installing a package with dpkg") {
        return;
    }
    let built = built();
    let depends = packages::field(&built.app_deb, "Depends").expect("Depends");
    // Computed from the binary's libraries (the C library, ALSA, libvpx), and those the window
    // loads at run time.
    for library in ["libc6", "libasound2", "libvpx", "libgl1", "libxkbcommon-x11-0"] {
        assert!(depends.contains(library), "Depends lacks {library}: {depends}");
    }
    let _installed = Installed::install(&built.app_deb).expect("the app package installs");

    // What the desktop finds: a valid entry, valid metainfo, the icon at every size.
    let entry_path = "/usr/share/applications/strangers.desktop";
    run("desktop-file-validate", &[entry_path]);
    // The component id is the desktop entry's name, `strangers`, as the window's app id is:
    // the project has no domain of its own for a reverse-DNS id.
    let metainfo = "/usr/share/metainfo/strangers.metainfo.xml";
    run("appstreamcli", &["validate", "--no-net", "--override=cid-desktopapp-is-not-rdns=info", metainfo]);
    let metainfo_text = std::fs::read_to_string(metainfo).expect("metainfo");
    assert!(metainfo_text.contains("assets/screenshot.png") && !metainfo_text.contains('@'), "{metainfo_text}");
    assert!(Path::new("/usr/share/icons/hicolor/scalable/apps/strangers.svg").exists());
    for size in [32, 48, 64, 128, 256, 512] {
        let png = format!("/usr/share/icons/hicolor/{size}x{size}/apps/strangers.png");
        assert_eq!(packages::png_size(Path::new(&png)).expect("icon"), (size, size), "{png}");
    }
    let entry = std::fs::read_to_string(entry_path).expect("desktop entry");
    assert_eq!(group_values(&entry, "Desktop Entry", "MimeType"), ["x-scheme-handler/strangers;"]);
    assert_eq!(group_values(&entry, "Desktop Entry", "Categories"), ["Network;VideoConference;Chat;"]);

    // The installed binary: its version, and VP8 alone (no OpenH264 in what we hand out).
    let version = run("/usr/bin/strangers", &["--version"]);
    assert_eq!(version.trim(), format!("strangers {}", packages::field(&built.app_deb, "Version").unwrap()));
    let help = run("/usr/bin/strangers", &["--help"]);
    assert!(help.contains("[default: VP8]"), "the packaged app offers more than VP8: {help}");
    let bad = Command::new("/usr/bin/strangers").arg("strangers://bad host").output().expect("runs");
    assert_eq!(bad.status.code(), Some(2), "a malformed link is refused");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot open the link"), "{bad:?}");

    // Opened from the menu with a link to a local server where a bot waits, the window meets it.
    let server = Server::start(&[]).expect("server starts");
    let _bot = Client::start("bot", &server.ws_url(), &["--loopback", "--say", "hello"]).expect("bot starts");
    let link = format!("strangers://{}", server.addr);
    let exec = desktop_exec(&entry, &link).expect("an Exec line");
    assert_eq!(exec, ["strangers", link.as_str()]);
    let xvfb = Xvfb::start().expect("Xvfb starts");
    let mut command = Command::new(&exec[0]);
    // The package's binary, found on the PATH as the desktop would; the test's own flags follow
    // the entry's: print events, offer loopback candidates only, look for someone at once.
    command.args(&exec[1..]).args(["--events", "--loopback", "--start"]).env("PATH", "/usr/bin:/bin");
    let started = Instant::now();
    let mut app = App::spawn(&xvfb, command).expect("the installed app starts");
    let search = Command::new("xdotool")
        .args(["search", "--sync", "--onlyvisible", "--name", "^Strangers$"])
        .env("DISPLAY", xvfb.display())
        .stdout(Stdio::null())
        .status();
    assert!(search.is_ok_and(|s| s.success()), "the window shows");
    eprintln!("the installed app showed its window {} ms after it started", started.elapsed().as_millis());
    app.wait_event(T, "video_on_screen").expect("the stranger's video is drawn");
    app.quit().expect("the app closes when asked");
    // The link's server was remembered.
    let saved = std::fs::read_to_string(xvfb.dir().join("data/strangers/app.ron")).expect("preferences saved");
    assert!(saved.contains(&server.ws_url()), "{saved}");
}

#[test]
fn the_server_package_runs_as_its_unit_says_and_carries_a_call() {
    let _turn = serial();
    if !root_or_skip("packages", "installing a package with dpkg") {
        return;
    }
    let built = built();
    let _installed = Installed::install(&built.server_deb).expect("the server package installs");
    let unit_path = "/usr/lib/systemd/system/strangers-signal-server.service";
    let unit = std::fs::read_to_string(unit_path).expect("the unit is installed");

    run("systemd-analyze", &["verify", unit_path]);
    let security = run("systemd-analyze", &["security", "--offline=true", unit_path]);
    let overall = security.lines().find(|l| l.contains("Overall exposure level")).expect("an overall rating");
    eprintln!("systemd-analyze security: {}", overall.trim());
    assert!(["SAFE", "OK"].iter().any(|rating| overall.contains(rating)), "{overall}");
    for setting in ["DynamicUser", "NoNewPrivileges", "PrivateTmp", "ProtectHome", "MemoryDenyWriteExecute"] {
        assert_eq!(group_values(&unit, "Service", setting), ["yes"], "{setting}");
    }
    assert_eq!(group_values(&unit, "Service", "CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(group_values(&unit, "Service", "AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);

    // The environment file lists every flag's variable.
    let files = group_values(&unit, "Service", "EnvironmentFile");
    let [file] = files.as_slice() else { panic!("one EnvironmentFile, not {files:?}") };
    let env_path = PathBuf::from(file.trim_start_matches('-'));
    let defaults = std::fs::read_to_string(&env_path).expect("the environment file is installed");
    let argv = exec_start(&unit).expect("ExecStart");
    let help = run(&argv[0], &["--help"]);
    let mut listed = 0;
    for variable in help.split("[env: ").skip(1).filter_map(|rest| rest.split(['=', ']']).next()) {
        assert!(defaults.contains(&format!("#{variable}=")), "{} lacks {variable}", env_path.display());
        listed += 1;
    }
    assert!(listed >= 20, "only {listed} variables in --help");

    // The operator's edit: listen on a free loopback port. Then start it as systemd would: the
    // unit's command line, a clean environment holding the file's settings, no root.
    std::fs::write(&env_path, format!("{defaults}\nSTRANGERS_LISTEN=127.0.0.1:0\n")).expect("settings edited");
    let settings = environment_file(&std::fs::read_to_string(&env_path).unwrap()).expect("settings read");
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).env_clear().env("PATH", "/usr/bin:/bin").envs(settings);
    {
        use std::os::unix::process::CommandExt;
        command.uid(65534).gid(65534); // nobody, as a stand-in for the dynamic user
    }
    let mut server = Server::spawn(command).expect("the service starts");
    let url = server.ws_url();
    let media = ["--loopback", "--width", "320", "--height", "240"];
    let mut a = Client::start("a", &url, &media).expect("client a");
    let mut b = Client::start("b", &url, &media).expect("client b");
    for c in [&mut a, &mut b] {
        c.wait_event(T, "connected").expect("connected through the packaged server");
        c.wait_event(T, "first_frame").expect("media flows");
    }
    // KillSignal=SIGTERM: it closes its sockets and exits cleanly within TimeoutStopSec.
    let stop: u64 = group_values(&unit, "Service", "TimeoutStopSec")[0].parse().expect("TimeoutStopSec");
    assert_eq!(group_values(&unit, "Service", "KillSignal"), ["SIGTERM"]);
    let status = server.terminate(Duration::from_secs(stop)).expect("the service stops on SIGTERM");
    assert!(status.success(), "the service exited with {status}");
}

#[test]
fn the_portable_archive_and_the_appdir_hold_the_app() {
    let _turn = serial();
    let built = built();
    let listing = run("tar", &["-tzf", built.archive.to_str().unwrap()]);
    let name = built.archive.file_name().unwrap().to_str().unwrap().trim_end_matches(".tar.gz");
    for file in ["strangers", "strangers.desktop", "strangers.svg", "LICENSE-MIT", "LICENSE-APACHE", "README.md"] {
        assert!(listing.lines().any(|l| l == format!("{name}/{file}")), "{file} missing: {listing}");
    }
    let apprun = built.appdir.join("AppRun");
    let version = run(apprun.to_str().unwrap(), &["--version"]);
    assert!(version.starts_with("strangers "), "{version}");
    for file in ["strangers.desktop", "strangers.png", ".DirIcon", "usr/share/metainfo/strangers.appdata.xml"] {
        assert!(built.appdir.join(file).exists(), "the AppDir lacks {file}");
    }
    run("desktop-file-validate", &[built.appdir.join("strangers.desktop").to_str().unwrap()]);
}

#[test]
fn what_the_packages_carry_is_ours_to_hand_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The crates in the packaged binaries: the app as packaged (no default features, so no
    // OpenH264) and the server; build-time-only crates do not end up in them.
    for package in ["strangers", "signal-server"] {
        let tree = Command::new(&cargo)
            .args(["tree", "--locked", "-p", package, "--no-default-features", "-e", "normal", "--prefix", "none"])
            .args(["--target", "x86_64-unknown-linux-gnu", "--format", "{p}|{l}"])
            .current_dir(root)
            .output()
            .expect("cargo tree runs");
        assert!(tree.status.success(), "cargo tree: {}", String::from_utf8_lossy(&tree.stderr));
        let text = String::from_utf8_lossy(&tree.stdout);
        let crates: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(crates.len() > 100, "{package}: only {} crates listed", crates.len());
        for line in crates {
            let (name, licence) = line.split_once('|').unwrap_or((line, ""));
            let licence = licence.trim_end_matches(" (*)");
            assert!(packages::may_hand_out(licence), "{package} holds {name} under {licence:?}");
            assert!(!name.starts_with("openh264"), "{package} holds {name}");
        }
    }
}

#[test]
fn the_release_workflow_passes_actionlint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venv =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/strangers-dev/venv/bin/actionlint"));
    let actionlint = match venv {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("actionlint"),
    };
    let output = Command::new(&actionlint)
        .arg(".github/workflows/release.yml")
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("running {} (scripts/setup.sh installs it): {e}", actionlint.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "actionlint finds problems:\n{text}");
}

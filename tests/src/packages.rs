//! Helpers for testing the Linux packages: build them with `scripts/package.sh`, install and
//! purge them with the real dpkg, and read what they install the way the desktop and systemd
//! would (a desktop entry's `Exec` line, a unit's settings, an environment file).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What `scripts/package.sh` made.
#[derive(Debug, Clone)]
pub struct Packages {
    pub app_deb: PathBuf,
    pub server_deb: PathBuf,
    pub archive: PathBuf,
    pub appdir: PathBuf,
}

/// Runs `scripts/package.sh` on the build the tests run (its profile, its target directory),
/// writing into `out`, and finds what it made. `limit` bounds the run (it may compile).
pub fn build(out: &Path, limit: Duration) -> anyhow::Result<Packages> {
    let built = crate::bin_dir();
    let profile = match built.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let target = built.parent().context("the build directory has a parent")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("the tests crate has a parent")?;
    let mut command = Command::new("bash");
    command
        .arg(root.join("scripts/package.sh"))
        .args(["--profile", &profile, "--out"])
        .arg(out)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(root);
    let output = run_bounded(command, limit).context("running scripts/package.sh")?;
    if !output.status.success() {
        bail!("scripts/package.sh failed: {}\n{}", output.status, tail(&output.stderr, 40));
    }
    let find = |what: &str, test: &dyn Fn(&str) -> bool| -> anyhow::Result<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(out)? {
            let path = entry?.path();
            if path.file_name().and_then(|n| n.to_str()).is_some_and(test) {
                found.push(path);
            }
        }
        match found.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!("expected one {what} in {}, found {found:?}", out.display()),
        }
    };
    Ok(Packages {
        app_deb: find("app .deb", &|n| n.starts_with("strangers_") && n.ends_with("_amd64.deb"))?,
        server_deb: find("server .deb", &|n| n.starts_with("strangers-signal-server_") && n.ends_with("_amd64.deb"))?,
        archive: find("portable archive", &|n| n.starts_with("strangers-") && n.ends_with("-x86_64-linux.tar.gz"))?,
        appdir: find("AppDir", &|n| n == "strangers.AppDir")?,
    })
}

/// Runs a command to its end within `limit`, collecting its output; killed when late.
pub fn run_bounded(mut command: Command, limit: Duration) -> anyhow::Result<Output> {
    let dir = std::env::temp_dir().join(format!("strangers-run-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir)?;
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .spawn()
        .context("starting the command")?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            bail!("still running after {limit:?}: {command:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = Output { status, stdout: std::fs::read(&out)?, stderr: std::fs::read(&err)? };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(output)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The last `lines` lines of a program's output, for a failure message.
pub fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A package installed into this machine with dpkg, purged (files, settings) when dropped.
pub struct Installed {
    pub name: String,
}

impl Installed {
    /// `dpkg --install`s `deb`, whose dependencies must already be installed. Refuses to touch
    /// a package of the same name that was there before the test.
    pub fn install(deb: &Path) -> anyhow::Result<Installed> {
        let name = field(deb, "Package")?;
        let status = Command::new("dpkg-query").args(["-W", "-f=${Status}", &name]).output()?;
        if String::from_utf8_lossy(&status.stdout).trim().ends_with("ok installed") {
            bail!("{name} is installed on this machine already (`dpkg --purge {name}` if a killed test left it); the test installs and purges its own");
        }
        let installed = Installed { name };
        let mut dpkg = Command::new("dpkg");
        dpkg.arg("--install").arg(deb).env("DEBIAN_FRONTEND", "noninteractive");
        let output = run_bounded(dpkg, Duration::from_secs(120))?;
        if !output.status.success() {
            bail!("dpkg --install {} failed: {}", deb.display(), tail(&output.stderr, 20));
        }
        Ok(installed)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let mut dpkg = Command::new("dpkg");
        dpkg.args(["--purge", &self.name]).env("DEBIAN_FRONTEND", "noninteractive");
        let _ = run_bounded(dpkg, Duration::from_secs(120));
    }
}

/// A control field of a .deb (`Package`, `Depends`, ...).
pub fn field(deb: &Path, name: &str) -> anyhow::Result<String> {
    let output = Command::new("dpkg-deb").arg("--field").arg(deb).arg(name).output().context("running dpkg-deb")?;
    if !output.status.success() {
        bail!("dpkg-deb --field {} {name}: {}", deb.display(), String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The command line a desktop environment runs for a desktop entry opened with `link`: the
/// `Exec` key of its `[Desktop Entry]` group split into arguments (double quotes group, `\`
/// escapes), `%u`/`%U`/`%f`/`%F` replaced by the link and other field codes dropped.
pub fn desktop_exec(entry: &str, link: &str) -> anyhow::Result<Vec<String>> {
    let exec = group_values(entry, "Desktop Entry", "Exec").into_iter().next().context("no Exec key")?;
    let mut args = Vec::new();
    for word in split_words(&exec)? {
        match word.as_str() {
            "%u" | "%U" | "%f" | "%F" => args.push(link.to_owned()),
            code if code.len() == 2 && code.starts_with('%') => {}
            _ => args.push(word.replace("%%", "%")),
        }
    }
    if args.is_empty() {
        bail!("an empty Exec line");
    }
    Ok(args)
}

/// The values of `key` in `[group]` of an INI-style file (desktop entries, systemd units), in
/// order; repeated keys give several.
pub fn group_values(text: &str, group: &str, key: &str) -> Vec<String> {
    let mut inside = false;
    let mut values = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{group}]");
        } else if inside && !line.starts_with('#') && !line.starts_with(';') {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    values.push(v.trim().to_owned());
                }
            }
        }
    }
    values
}

/// Splits a command line into words as systemd and desktop entries do for the simple cases:
/// whitespace separates, double quotes group, a backslash escapes the next character.
pub fn split_words(line: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.get_or_insert_with(String::new).push(chars.next().context("a trailing backslash")?),
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quoted {
        bail!("an unclosed quote in {line:?}");
    }
    words.extend(word);
    Ok(words)
}

/// The program and arguments of a unit's `ExecStart=`, without systemd's prefixes (`-`, `@`,
/// `+`, `!`, `:`).
pub fn exec_start(unit: &str) -> anyhow::Result<Vec<String>> {
    let lines = group_values(unit, "Service", "ExecStart");
    let [line] = lines.as_slice() else { bail!("expected one ExecStart, found {lines:?}") };
    let line = line.trim_start_matches(['-', '@', '+', '!', ':']);
    split_words(line)
}

/// Reads an `EnvironmentFile=` as systemd does: `KEY=VALUE` lines, `#` and `;` comments, blank
/// lines, values optionally in single or double quotes.
pub fn environment_file(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line.split_once('=').with_context(|| format!("line {}: not KEY=VALUE: {line}", n + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("line {}: {key:?} is not a variable name", n + 1);
        }
        let value = value.trim();
        let unquoted =
            ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value);
        vars.push((key.to_owned(), unquoted.to_owned()));
    }
    Ok(vars)
}

/// The width and height of a PNG image, from its header.
pub fn png_size(path: &Path) -> anyhow::Result<(u32, u32)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        bail!("{} is not a PNG", path.display());
    }
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Ok((be(16), be(20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exec_line_takes_the_link_for_its_url_field_code() {
        let entry = "[Desktop Entry]\nName=Strangers\nExec=strangers %u\n[Desktop Action x]\nExec=other\n";
        assert_eq!(desktop_exec(entry, "strangers://h").unwrap(), ["strangers", "strangers://h"]);
        let entry = "[Desktop Entry]\nExec=\"/opt/my app/run\" --x %i %U\n";
        assert_eq!(desktop_exec(entry, "l").unwrap(), ["/opt/my app/run", "--x", "l"]);
        assert!(desktop_exec("[Desktop Entry]\nName=x\n", "l").is_err());
    }

    #[test]
    fn unit_settings_and_environment_files_read_as_systemd_reads_them() {
        let unit = "[Unit]\nExecStart=no\n[Service]\n# ExecStart=commented\nExecStart=-/usr/bin/x --a \"b c\"\nEnvironmentFile=-/etc/default/x\n";
        assert_eq!(exec_start(unit).unwrap(), ["/usr/bin/x", "--a", "b c"]);
        assert_eq!(group_values(unit, "Service", "EnvironmentFile"), ["-/etc/default/x"]);
        let vars = environment_file("# c\n;c\n\nA=1\n B = \"two words\" \nC='x'\n").unwrap();
        assert_eq!(vars, [("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "x".into())]);
        assert!(environment_file("not a setting\n").is_err());
    }
}

/// Licences under which we may hand a crate out in a binary package (permissive ones, and
/// MPL-2.0's per-file terms for code we do not change).
const HANDED_OUT: &[&str] = &[
    "MIT",
    "MIT-0",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "CC0-1.0",
    "Unlicense",
    "Unicode-3.0",
    "BSL-1.0",
    "MPL-2.0",
    "IJG",
    "CDLA-Permissive-2.0",
    "OFL-1.1",
    "Ubuntu-font-1.0",
];

/// Whether an SPDX licence expression (`MIT OR Apache-2.0`, `(MIT OR Apache-2.0) AND
/// Unicode-3.0`, the old `MIT/Apache-2.0`) lets us hand the crate out: some choice among its
/// `OR`s is made only of licences in [`HANDED_OUT`] (`WITH` exceptions only add permissions).
pub fn may_hand_out(expression: &str) -> bool {
    let spaced = expression.replace('(', " ( ").replace(')', " ) ").replace('/', " OR ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut at = 0;
    let allowed = any_of(&tokens, &mut at);
    allowed && at == tokens.len()
}

/// `term (OR term)*`
fn any_of(tokens: &[&str], at: &mut usize) -> bool {
    let mut allowed = all_of(tokens, at);
    while tokens.get(*at) == Some(&"OR") {
        *at += 1;
        allowed |= all_of(tokens, at);
    }
    allowed
}

/// `factor (AND factor)*`
fn all_of(tokens: &[&str], at: &mut usize) -> bool {
    let mut allowed = one(tokens, at);
    while tokens.get(*at) == Some(&"AND") {
        *at += 1;
        allowed &= one(tokens, at);
    }
    allowed
}

/// `( expression )` or `LICENCE [WITH EXCEPTION]`; anything unreadable is not allowed.
fn one(tokens: &[&str], at: &mut usize) -> bool {
    match tokens.get(*at) {
        Some(&"(") => {
            *at += 1;
            let allowed = any_of(tokens, at);
            if tokens.get(*at) != Some(&")") {
                return false;
            }
            *at += 1;
            allowed
        }
        Some(licence) => {
            *at += 1;
            if tokens.get(*at) == Some(&"WITH") {
                *at += 2;
            }
            HANDED_OUT.contains(licence)
        }
        None => false,
    }
}

#[cfg(test)]
mod licence_tests {
    use super::may_hand_out;

    #[test]
    fn a_crate_may_be_handed_out_when_some_choice_is_permissive() {
        assert!(may_hand_out("MIT OR Apache-2.0"));
        assert!(may_hand_out("MIT/Apache-2.0"));
        assert!(may_hand_out("(MIT OR Apache-2.0) AND Unicode-3.0"));
        assert!(may_hand_out("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT"));
        assert!(may_hand_out("Apache-2.0 OR GPL-2.0-only"));
        assert!(!may_hand_out("GPL-3.0-only"));
        assert!(!may_hand_out("MIT AND LGPL-2.1-or-later"));
        assert!(!may_hand_out("(MIT OR Apache-2.0"));
        assert!(!may_hand_out(""));
    }
}

//! One window per person: the first window listens on a Unix socket in the user's own runtime
//! directory (`$XDG_RUNTIME_DIR`, or `$TMPDIR` on macOS, which is per user there), and a later
//! launch with a link (a `strangers://` link clicked while the app runs) hands the link to it
//! and exits. The exchange is one line each way: `open LINK`, answered `ok`. Without such a
//! directory, or on other platforms, a later launch simply opens a second window.

use std::path::PathBuf;
use std::sync::mpsc::Sender;

/// Longest line read from the socket.
#[cfg(unix)]
const MAX_LINE: usize = 4096;

/// The socket's path, if this user has a private directory for it.
pub fn socket_path() -> Option<PathBuf> {
    if !cfg!(unix) {
        return None;
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .or_else(|| if cfg!(target_os = "macos") { std::env::var_os("TMPDIR") } else { None })
        .filter(|dir| !dir.is_empty())?;
    Some(PathBuf::from(dir).join("strangers.sock"))
}

/// Hands `link` to the window already running, if there is one: true when it took it.
#[cfg(unix)]
pub fn hand_over(link: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    let Some(path) = socket_path() else { return false };
    let Ok(mut stream) = UnixStream::connect(&path) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(3)));
    let line = format!("open {}\n", link.replace(['\n', '\r'], " "));
    if stream.write_all(line.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).is_ok() && answer.trim() == "ok"
}

#[cfg(not(unix))]
pub fn hand_over(_link: &str) -> bool {
    false
}

/// Listens for links from later launches, passing each to `links` and calling `wake` (the
/// window's repaint). Returns false when this window is not the one that listens (another
/// window listens already, or there is no private directory for the socket).
#[cfg(unix)]
pub fn listen(links: Sender<String>, wake: impl Fn() + Send + 'static) -> bool {
    use std::os::unix::net::{UnixListener, UnixStream};

    let Some(path) = socket_path() else { return false };
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(&path).is_ok() {
                return false; // Another window listens.
            }
            // Left behind by a window that did not exit cleanly.
            let _ = std::fs::remove_file(&path);
            match UnixListener::bind(&path) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot listen for links");
                    return false;
                }
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot listen for links");
            return false;
        }
    };
    let spawned = std::thread::Builder::new().name("links".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Some(link) = serve(stream) {
                if links.send(link).is_err() {
                    break;
                }
                wake();
            }
        }
    });
    spawned.is_ok()
}

#[cfg(not(unix))]
pub fn listen(_links: Sender<String>, _wake: impl Fn() + Send + 'static) -> bool {
    false
}

/// Reads one `open LINK` line and answers it.
#[cfg(unix)]
fn serve(stream: std::os::unix::net::UnixStream) -> Option<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::Duration;

    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reader = BufReader::new(stream.try_clone().ok()?.take(MAX_LINE as u64));
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let link = parse_line(&line)?;
    let _ = (&stream).write_all(b"ok\n");
    Some(link)
}

/// The link in an `open LINK` line.
#[cfg(any(unix, test))]
fn parse_line(line: &str) -> Option<String> {
    let link = line.strip_suffix('\n')?.trim_end_matches('\r').strip_prefix("open ")?;
    Some(link.to_owned())
}

/// Removes the socket when the listening window closes (only the listening window calls it).
pub fn remove_socket() {
    if let Some(path) = socket_path() {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_open_lines_carry_a_link() {
        assert_eq!(parse_line("open strangers://chat.example.org\n").as_deref(), Some("strangers://chat.example.org"));
        assert_eq!(parse_line("open strangers://bad host\r\n").as_deref(), Some("strangers://bad host"));
        assert_eq!(parse_line("open strangers://cut"), None, "a line cut short is dropped");
        assert_eq!(parse_line("close x\n"), None);
    }
}

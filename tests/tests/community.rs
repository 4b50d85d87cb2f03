//! A community's name and rules: the signal server reads them from its flags and tells them in
//! `welcome`; a headless client looks for nobody on such a server unless it accepts the rules
//! (`--accept-rules`), and says why. A rules file that cannot serve is refused at start.

use std::process::Command;
use std::time::Duration;

use strangers_system_tests::{bin_dir, Client, Server};

const T: Duration = Duration::from_secs(30);

fn rules_file(name: &str, text: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("strangers-rules-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("rules.txt");
    std::fs::write(&path, text).expect("rules written");
    path
}

#[test]
fn headless_clients_meet_on_a_server_with_rules_only_when_they_accept_them() {
    let path = rules_file("meet", b"Be kind.\r\nNo spam.\r\n");
    let server = Server::start(&["--name", "Night Owls", "--rules-file", &path.to_string_lossy()]).expect("server");
    let _ = std::fs::remove_dir_all(path.parent().expect("a directory"));

    // Without --accept-rules: told, nobody looked for, exit code 3.
    let mut shy = Client::start("shy", &server.ws_url(), &["--loopback"]).expect("client starts");
    let welcome = shy.wait_event(T, "welcome").expect("welcomed");
    assert_eq!(welcome["name"], "Night Owls");
    assert_eq!(welcome["rules"], "Be kind.\nNo spam.");
    let required = shy.wait_event(T, "rules_required").expect("the client says the rules need accepting");
    assert_eq!(required["name"], "Night Owls");
    let status = shy.wait_exit(T).expect("the client exits");
    assert_eq!(status.code(), Some(3), "{status}");
    assert!(shy.seen_named("queued").is_empty(), "looked for someone without accepting the rules");

    // With it, two clients meet.
    let mut a = Client::start("a", &server.ws_url(), &["--loopback", "--accept-rules"]).expect("a starts");
    let mut b = Client::start("b", &server.ws_url(), &["--loopback", "--accept-rules"]).expect("b starts");
    a.wait_event(T, "connected").expect("a meets b");
    b.wait_event(T, "connected").expect("b meets a");
}

#[test]
fn a_server_without_rules_needs_no_acceptance_and_says_nothing_of_them() {
    let server = Server::start(&[]).expect("server");
    let mut a = Client::start("a", &server.ws_url(), &["--loopback"]).expect("a starts");
    let welcome = a.wait_event(T, "welcome").expect("welcomed");
    assert!(welcome.get("name").is_none() && welcome.get("rules").is_none(), "{welcome}");
    let _b = Client::start("b", &server.ws_url(), &["--loopback"]).expect("b starts");
    a.wait_event(T, "connected").expect("a meets b");
}

#[test]
fn a_rules_file_that_cannot_serve_stops_the_server_with_the_reason() {
    let binary = bin_dir().join("signal-server");
    let oversized = rules_file("large", &vec![b'x'; 20 * 1024]);
    let binary_text = rules_file("binary", &[0xff, 0xfe, 0x00]);
    for (path, says) in [
        (std::path::PathBuf::from("/nonexistent/rules.txt"), "cannot read --rules-file"),
        (oversized.clone(), "at most 16384"),
        (binary_text.clone(), "not UTF-8"),
    ] {
        let output =
            Command::new(&binary).args(["--listen", "127.0.0.1:0", "--rules-file"]).arg(&path).output().expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{path:?} accepted");
        assert!(stderr.contains(says) && !stderr.contains("panicked"), "{path:?}: {stderr}");
        assert!(output.stdout.is_empty(), "it listened before refusing: {}", String::from_utf8_lossy(&output.stdout));
    }
    for path in [oversized, binary_text] {
        let _ = std::fs::remove_dir_all(path.parent().expect("a directory"));
    }
}

//! Headless mode: the engine with no window. It enters the queue as soon as the server
//! welcomes it, finds again after every call until `--calls` is reached, and prints every
//! event as one JSON line. A server with rules is joined only with `--accept-rules`; without
//! it, the client prints a `rules_required` event and exits with code 3, having looked for
//! nobody. Commands can also be typed on stdin, one per line: `find`, `next`, `stop`,
//! `chat TEXT`, `mute-audio on|off`, `mute-video on|off`, `keyframe` (ask the stranger for a
//! keyframe), `quit`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use strangers_engine::{Command, Event};
use tokio::io::AsyncBufReadExt;

use crate::cli::Cli;

/// Pause before a bot looks for the next stranger (immediate after a partner leaves would be
/// fine, but a failing call must not turn into a tight loop).
const REFIND_DELAY: Duration = Duration::from_millis(100);

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.engine_config();
    // A bad file is reported before anything connects.
    config.call.video.open().context("video source")?;
    config.call.audio.open().context("audio source")?;
    if let Some(dir) = &cli.record_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (engine, mut events) = strangers_engine::start(config);

    let exit_after = cli.exit_after.map(Duration::from_secs_f64);
    let deadline = tokio::time::sleep(exit_after.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut calls_done = 0u32;
    let mut in_call = false;
    let mut said = false;
    let mut next_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut paused = false;
    // Nothing is looked for before the server's welcome says whether it has rules.
    let mut welcomed = false;
    let mut rules_refused = false;
    let mut refind: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut stdout = std::io::stdout();

    loop {
        tokio::select! {
            () = &mut deadline => break,
            () = async { next_timer.as_mut().expect("guarded").await }, if next_timer.is_some() => {
                next_timer = None;
                calls_done += 1;
                in_call = false;
                if cli.calls > 0 && calls_done >= cli.calls {
                    engine.send(Command::Stop);
                    break;
                }
                engine.send(Command::Next);
            }
            () = async { refind.as_mut().expect("guarded").await }, if refind.is_some() => {
                refind = None;
                engine.send(Command::Find);
            }
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if let Some(command) = parse_command(line.trim()) {
                        if command == Command::Shutdown {
                            break;
                        }
                        match command {
                            Command::Stop => paused = true,
                            Command::Find | Command::Next => {
                                paused = false;
                                if !welcomed {
                                    continue; // Looking starts with the welcome.
                                }
                            }
                            _ => {}
                        }
                        engine.send(command);
                    }
                }
                _ => stdin_open = false,
            },
            event = events.recv() => {
                let Some(event) = event else { break };
                let _ = writeln!(stdout, "{}", event.to_json());
                let _ = stdout.flush();
                match &event {
                    Event::Welcome { name, rules: Some(_), .. } if !cli.accept_rules => {
                        let told = serde_json::json!({ "event": "rules_required", "name": name });
                        let _ = writeln!(stdout, "{told}");
                        eprintln!(
                            "strangers: this server has rules (in the welcome event above); \
                             pass --accept-rules to accept them and confirm you are 18 or older"
                        );
                        rules_refused = true;
                        break;
                    }
                    Event::Welcome { .. } if !welcomed => {
                        welcomed = true;
                        if !paused {
                            engine.send(Command::Find);
                        }
                    }
                    Event::Connected { .. } => {
                        in_call = true;
                        said = false;
                        if let Some(secs) = cli.next_after {
                            next_timer = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(secs))));
                        }
                    }
                    Event::Stats(_) if in_call && !said => {
                        if let Some(text) = &cli.say {
                            engine.send(Command::Chat(text.clone()));
                        }
                        said = true;
                    }
                    Event::PartnerLeft { .. } => {
                        next_timer = None;
                        if in_call {
                            calls_done += 1;
                        }
                        in_call = false;
                        if cli.calls > 0 && calls_done >= cli.calls {
                            break;
                        }
                    }
                    Event::Idle if !paused => {
                        // The stranger left or the call failed: a bot waits for the next one.
                        next_timer = None;
                        in_call = false;
                        refind = Some(Box::pin(tokio::time::sleep(REFIND_DELAY)));
                    }
                    _ => {}
                }
            }
        }
    }
    engine.send(Command::Shutdown);
    // Let the engine say goodbye to the server and close the call.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(event) = events.recv().await {
            let _ = writeln!(stdout, "{}", event.to_json());
            if event == Event::Exited {
                break;
            }
        }
    })
    .await;
    let _ = stdout.flush();
    if rules_refused {
        return Err(RulesNotAccepted.into());
    }
    Ok(())
}

/// The server has rules and `--accept-rules` was not given (exit code 3).
#[derive(Debug)]
pub struct RulesNotAccepted;

impl std::fmt::Display for RulesNotAccepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server's rules were not accepted")
    }
}

impl std::error::Error for RulesNotAccepted {}

fn parse_command(line: &str) -> Option<Command> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "find" => Some(Command::Find),
        "next" => Some(Command::Next),
        "stop" => Some(Command::Stop),
        "chat" => Some(Command::Chat(rest.to_owned())),
        "typing" => Some(Command::Typing(rest != "off")),
        "mute-audio" => Some(Command::MuteAudio(rest != "off")),
        "mute-video" => Some(Command::MuteVideo(rest != "off")),
        "report" => Some(Command::Report(rest.to_owned())),
        "keyframe" => Some(Command::RequestKeyframe),
        "quit" | "exit" => Some(Command::Shutdown),
        _ => None,
    }
}

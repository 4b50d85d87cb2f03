//! `strangers`: the Strangers client. By default it opens the desktop window; with
//! `--headless` it runs the engine without a window, printing one JSON event per line (bots,
//! tests, benchmarks).

mod cli;
mod desktop;
mod devices;
mod headless;
mod instance;
mod link;
mod prefs;
mod ui;

use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    let matches = cli::Cli::command().get_matches();
    let mut cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let mut server_given = !cli.servers.is_empty();
    let mut bad_link = None;
    if let Some(given) = &cli.link {
        let window = !cli.headless && cli.audio_check.is_none();
        // A window already open takes the link (and says what is wrong with a bad one).
        let handed_over = window && instance::hand_over(given);
        match link::server_url(given) {
            Ok(_) if handed_over => return std::process::ExitCode::SUCCESS,
            Ok(url) => {
                cli.servers = vec![url];
                server_given = true;
            }
            Err(e) => {
                eprintln!("strangers: cannot open the link {given:?}: {e}");
                if !window || handed_over {
                    return std::process::ExitCode::from(2);
                }
                bad_link = Some(given.clone());
            }
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Logs go to stderr; stdout carries only the JSON events.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    if let Some(seconds) = cli.audio_check {
        let report: devices::Report = std::sync::Arc::new(|topic: &str, problem: Option<String>| {
            if let Some(problem) = problem {
                eprintln!("strangers: {topic}: {problem}");
            }
        });
        let choice = devices::DeviceChoice { echo_cancellation: !cli.no_echo_cancellation, ..Default::default() };
        let result = devices::check::run(choice, seconds, report);
        println!("{}", serde_json::json!({ "event": "audio_check", "result": result }));
        return std::process::ExitCode::SUCCESS;
    }
    if !cli.headless {
        let link_refused = bad_link.is_some();
        return match desktop::run(desktop::Launch { cli, server_given, bad_link }) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("strangers: {e:#}");
                // Without a window to say so, a bad link is the command's failure.
                std::process::ExitCode::from(if link_refused { 2 } else { 1 })
            }
        };
    }
    if cli.servers.is_empty() {
        match prefs::built_in_server() {
            Some(server) => cli.servers = vec![server],
            None => {
                eprintln!("strangers: no server: pass --server ws://HOST:PORT/ws or a strangers:// link");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("strangers: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(headless::run(cli));
    // A blocking read of stdin may still be pending: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<headless::RulesNotAccepted>() => std::process::ExitCode::from(3),
        Err(e) => {
            eprintln!("strangers: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

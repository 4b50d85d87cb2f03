//! `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use strangers_matchmaker::Stats;
use strangers_protocol::ErrorCode;

use crate::hub::Hub;

/// Renders every gauge and counter.
pub fn render(hub: &Hub, stats: &Stats) -> String {
    let c = hub.counters();
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ =
            writeln!(out, "# HELP strangers_{name} {help}\n# TYPE strangers_{name} {kind}\nstrangers_{name} {value}");
    };
    metric("connections", "gauge", "Open WebSocket connections.", hub.open_connections() as u64);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        metric("tasks", "gauge", "Tasks alive on the server's runtime.", runtime.metrics().num_alive_tasks() as u64);
    }
    metric("sessions", "gauge", "Sessions held, connected or awaiting a resume.", stats.sessions as u64);
    metric(
        "sessions_dropped",
        "gauge",
        "Sessions whose socket dropped, held for a resume.",
        stats.sessions_dropped as u64,
    );
    metric("queued", "gauge", "Clients waiting for a stranger.", stats.queued as u64);
    metric("rooms", "gauge", "Matched pairs.", stats.rooms as u64);
    metric("bans_active", "gauge", "Addresses banned now.", stats.bans_active as u64);
    metric("matches_total", "counter", "Pairs formed.", stats.matches_total);
    metric("signals_relayed_total", "counter", "Signal messages relayed to a partner.", stats.signals_relayed_total);
    metric("resumes_total", "counter", "Sessions resumed on a new socket.", stats.resumes_total);
    metric("reports_total", "counter", "Reports counted.", stats.reports_total);
    metric("bans_total", "counter", "Bans imposed.", stats.bans_total);
    metric(
        "connections_total",
        "counter",
        "WebSocket connections admitted.",
        c.connections_total.load(Ordering::Relaxed),
    );
    metric(
        "connections_refused_total",
        "counter",
        "WebSocket connections refused by a cap.",
        c.refused_total.load(Ordering::Relaxed),
    );
    metric(
        "stun_requests_total",
        "counter",
        "STUN Binding requests answered (--stun-listen).",
        c.stun_requests.load(Ordering::Relaxed),
    );
    metric("messages_received_total", "counter", "Client messages received.", c.messages_in.load(Ordering::Relaxed));
    metric("messages_sent_total", "counter", "Server messages sent.", c.messages_out.load(Ordering::Relaxed));
    if let Some(remote) = hub.remote() {
        let r = &remote.counters;
        for (name, help, value) in [
            ("redis_round_trips_total", "Round trips to Redis (a batch of operations counts once).", &r.round_trips),
            ("redis_background_round_trips_total", "Of those, heartbeats and timer runs.", &r.background),
            ("redis_scripts_total", "Function calls this node ran in Redis (a batch counts once).", &r.scripts),
            ("redis_operations_total", "Client commands this node ran in Redis, in batches.", &r.operations),
            ("redis_errors_total", "Operations and scripts that failed.", &r.errors),
            ("redis_signals_published_total", "Signals sent straight to the partner's node.", &r.relayed),
            ("redis_signals_local_total", "Signals handed to a partner on this node without Redis.", &r.local),
            ("redis_node_matches_total", "Pairs formed by scripts this node ran.", &r.matches),
            ("redis_restarts_total", "Times this node asked its sockets to reconnect and resume.", &r.restarts),
        ] {
            metric(name, "counter", help, value.load(Ordering::Relaxed));
        }
    }
    let _ = writeln!(
        out,
        "# HELP strangers_errors_total Error messages sent, by code.\n# TYPE strangers_errors_total counter"
    );
    for (code, count) in ErrorCode::ALL.iter().zip(&c.errors) {
        let _ = writeln!(out, "strangers_errors_total{{code=\"{}\"}} {}", code.as_str(), count.load(Ordering::Relaxed));
    }
    out
}

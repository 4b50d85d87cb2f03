//! The node's heartbeat in Redis, and the cluster's timers. Every node beats every third of
//! the node timeout and runs `tick.lua` every [`TICK`]; any node may reap a dead one, and the
//! script's atomicity makes sure only one does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tracing::{info, warn};

use super::{Function, Shared};

/// How often a node runs the cluster's timers (grace periods, interest waits, dead nodes).
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Most timers of each kind one tick handles.
const TICK_LIMIT: &str = "500";

/// How many beats between refreshes of the TTLs of this node's sessions.
const BEATS_PER_REFRESH: u32 = 30;

/// How often a node with this timeout extends the TTLs of its sessions' keys (which must
/// outlive it by a wide margin).
pub fn refresh_interval(node_timeout: Duration) -> Duration {
    node_timeout / 3 * BEATS_PER_REFRESH
}

async fn beat(shared: &Shared, con: &mut ConnectionManager, refresh: bool, first: bool) -> redis::RedisResult<String> {
    let timeout = shared.settings.node_timeout.as_millis().to_string();
    let flag = |b: bool| if b { "1" } else { "0" };
    shared.link.counters.background.fetch_add(1, Ordering::Relaxed);
    let _reporting = shared.link.reporting.lock().await;
    let unreported = &shared.link.counters.unreported;
    let relayed = unreported.swap(0, Ordering::Relaxed);
    let args = [&timeout, flag(refresh), flag(first), &relayed.to_string()];
    let outcome = shared.run(con, Function::Heartbeat, &args).await;
    if outcome.is_err() {
        // Counted again at the next beat.
        unreported.fetch_add(relayed, Ordering::Relaxed);
    }
    shared.link.healthy.store(outcome.is_ok(), Ordering::Relaxed);
    outcome
}

pub(crate) async fn first_beat(shared: &Shared, con: &mut ConnectionManager) {
    if let Err(e) = beat(shared, con, false, true).await {
        warn!(error = %e, "first heartbeat failed");
    }
}

pub(crate) async fn heartbeat(shared: Arc<Shared>, mut con: ConnectionManager) {
    let mut ticker = tokio::time::interval(shared.settings.node_timeout / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats: u32 = 0;
    loop {
        ticker.tick().await;
        beats = beats.wrapping_add(1);
        match beat(&shared, &mut con, beats % BEATS_PER_REFRESH == 0, false).await {
            Ok(outcome) if outcome == "reaped" => {
                info!("this node was taken for dead: asking every socket to reconnect and resume");
                shared.link.restart_all();
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "heartbeat failed"),
        }
    }
}

pub(crate) async fn ticker(shared: Arc<Shared>, mut con: ConnectionManager) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        shared.link.counters.background.fetch_add(1, Ordering::Relaxed);
        // Failures are counted and show in metrics; the next tick tries again.
        let _ = shared.run(&mut con, Function::Tick, &[TICK_LIMIT]).await;
    }
}

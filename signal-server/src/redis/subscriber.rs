//! Hears this node's channel and the `bans` channel, and applies what the scripts published
//! for this node's sockets, in order.
//!
//! The subscription lives on the node's one connection to Redis (RESP3: published messages
//! come as pushes between the replies), so a batch's reply and the records it published for
//! this node arrive in the same read, and Redis writes them in one go. When the connection
//! breaks (Redis restarted or unreachable), what was published meanwhile is lost to this
//! node, so once the subscription is back the node closes every socket with 1012: clients
//! reconnect and resume, and get what was held for them.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{node_channel, records, Shared};

const BANS: &str = "strangers:bans";

/// Subscribes the connection to this node's channel and the bans channel; what is
/// published there comes as pushes to the connection's push sender.
pub(crate) async fn subscribe(con: &mut ConnectionManager, node: &str) -> redis::RedisResult<()> {
    con.subscribe(&[node_channel(node), BANS.to_string()]).await
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut con: ConnectionManager,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message => {
                let [Value::BulkString(channel), Value::BulkString(payload)] = &push.data[..] else { continue };
                let Ok(payload) = std::str::from_utf8(payload) else { continue };
                if channel == BANS.as_bytes() {
                    heard_ban(&shared, payload);
                    continue;
                }
                match records::parse(payload) {
                    Ok(batch) => shared.link.apply(batch),
                    Err(e) => error!(error = %e, "unreadable batch from a script"),
                }
            }
            PushKind::Disconnection => {
                shared.link.subscribed.store(false, Ordering::Relaxed);
                warn!("Redis connection lost: subscribing again");
                resubscribe(&shared, &mut con).await;
                info!("Redis subscription back: asking every socket to reconnect and resume");
                shared.link.counters.restarts.fetch_add(1, Ordering::Relaxed);
                shared.link.restart_all();
                shared.link.subscribed.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// Subscribes again until it works (the connection reconnects by itself on the way).
async fn resubscribe(shared: &Shared, con: &mut ConnectionManager) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match super::bounded(subscribe(con, &shared.link.node)).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "Redis subscription failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// `IP DURATION_MS` from the bans channel.
fn heard_ban(shared: &Shared, payload: &str) {
    let Some((ip, ms)) = payload.split_once(' ') else { return };
    if let (Ok(ip), Ok(ms)) = (ip.parse::<IpAddr>(), ms.parse::<u64>()) {
        shared.link.heard_ban(ip, Duration::from_millis(ms));
        shared.link.close_banned(ip);
    }
}

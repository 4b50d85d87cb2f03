//! Listens on this node's channel and the `bans` channel, and applies what scripts published
//! for this node's sockets, in order. When the subscription breaks (Redis restarted or
//! unreachable), what was published meanwhile is lost to this node, so once it is back the
//! node closes every socket with 1012: clients reconnect and resume, and get what was held.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tracing::{error, info, warn};

use super::{node_channel, records, Shared};
use crate::hub::Hub;

const BANS: &str = "strangers:bans";

/// Opens a subscription to this node's channel and the bans channel.
pub(crate) async fn subscribe(client: &redis::Client, node: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(node_channel(node)).await?;
    pubsub.subscribe(BANS).await?;
    Ok(pubsub)
}

pub(crate) async fn run(shared: Arc<Shared>, client: redis::Client, first: redis::aio::PubSub, hub: Arc<Hub>) {
    let mut pubsub = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut current = match pubsub.take() {
            Some(p) => p,
            None => match subscribe(&client, &shared.node).await {
                Ok(p) => {
                    info!("Redis subscription back: asking every socket to reconnect and resume");
                    shared.link.counters.restarts.fetch_add(1, Ordering::Relaxed);
                    hub.restart_all();
                    shared.link.subscribed.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    p
                }
                Err(e) => {
                    warn!(error = %e, "Redis subscription failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        };
        let mut messages = current.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
            if msg.get_channel_name() == BANS {
                heard_ban(&shared, payload);
                continue;
            }
            match records::parse(payload) {
                Ok(batch) => hub.apply(&shared.link, &batch),
                Err(e) => error!(error = %e, "unreadable batch from a script"),
            }
        }
        shared.link.subscribed.store(false, Ordering::Relaxed);
        warn!("Redis subscription lost");
    }
}

/// `IP DURATION_MS` from the bans channel.
fn heard_ban(shared: &Shared, payload: &str) {
    let Some((ip, ms)) = payload.split_once(' ') else { return };
    if let (Ok(ip), Ok(ms)) = (ip.parse::<IpAddr>(), ms.parse::<u64>()) {
        shared.link.heard_ban(ip, Duration::from_millis(ms));
    }
}

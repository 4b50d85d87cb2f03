//! Signals on the fast path (see `route.rs`) for a partner on another node: published
//! straight to that node's channel as `signal` records, as soon as the worker sees them,
//! without a function call and without waiting for the batch (they set up a call). One
//! pipeline carries all that are waiting, one message per node, in the order the sockets sent
//! them.
//!
//! A node that nobody hears (dead, or between two connections) gets nothing: each of its
//! signals goes back to the worker's batch as a `relay` operation, which holds it for the
//! partner or sends it where the partner is now. If Redis cannot be reached, the senders are
//! told `unavailable`, as for any operation.

use std::sync::atomic::Ordering;

use redis::aio::ConnectionManager;
use strangers_matchmaker::ConnId;

use super::{bounded, node_channel, records, Command, Shared};

/// A signal to publish: from socket `conn` of `session` to socket `partner_conn` on `node`.
#[derive(Debug)]
pub(crate) struct Signal {
    pub conn: ConnId,
    pub node: String,
    pub partner_conn: ConnId,
    pub room: String,
    pub session: String,
    pub text: String,
}

/// Takes the `Publish` commands out of `batch` (the others keep their order) and publishes
/// them; those nobody heard come back at the end of `batch` as `Reroute` commands, whose
/// number is returned.
pub(crate) async fn publish_waiting(shared: &Shared, con: &mut ConnectionManager, batch: &mut Vec<Command>) -> usize {
    if !batch.iter().any(|c| matches!(c, Command::Publish(_))) {
        return 0;
    }
    let mut signals = Vec::new();
    let mut rest = Vec::with_capacity(batch.len());
    for command in batch.drain(..) {
        match command {
            Command::Publish(signal) => signals.push(signal),
            other => rest.push(other),
        }
    }
    *batch = rest;
    // One message per node, in order.
    let mut nodes: Vec<(&str, String, Vec<&Signal>)> = Vec::new();
    for signal in &signals {
        let at = match nodes.iter().position(|(node, _, _)| *node == signal.node) {
            Some(at) => at,
            None => {
                nodes.push((&signal.node, String::new(), Vec::new()));
                nodes.len() - 1
            }
        };
        let (_, message, members) = &mut nodes[at];
        records::write_signal(message, signal.partner_conn, &signal.room, &signal.session, &signal.text);
        members.push(signal);
    }
    let mut pipe = redis::pipe();
    for (node, message, _) in &nodes {
        pipe.cmd("PUBLISH").arg(node_channel(node)).arg(message);
    }
    let counters = &shared.link.counters;
    counters.round_trips.fetch_add(1, Ordering::Relaxed);
    let before = batch.len();
    match bounded(pipe.query_async::<Vec<u64>>(con)).await {
        Ok(heard) => {
            for ((_, _, members), listeners) in nodes.iter().zip(heard) {
                if listeners > 0 {
                    let n = members.len() as u64;
                    counters.relayed.fetch_add(n, Ordering::Relaxed);
                    // Added to the cluster's signal count at the next heartbeat.
                    counters.unreported.fetch_add(n, Ordering::Relaxed);
                    continue;
                }
                for signal in members {
                    let (session, room, text) = (signal.session.clone(), signal.room.clone(), signal.text.clone());
                    batch.push(Command::Reroute { session, room, text });
                }
            }
        }
        Err(_) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            for signal in &signals {
                super::worker::tell_unavailable(&shared.link.sockets, signal.conn);
            }
        }
    }
    batch.len() - before
}

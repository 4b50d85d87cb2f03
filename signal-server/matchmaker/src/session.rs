//! A session (one client across reconnects) and a room (two matched sessions).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use strangers_protocol::ServerMsg;

use crate::{ConnId, RoomKey, SessionKey};

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Idle,
    /// In the queue with this ticket, waiting since `since` (for the interest wait).
    Waiting {
        ticket: u64,
        since: Instant,
    },
    /// Was waiting when its socket dropped: out of the queue, ticket kept for the resume.
    Parked {
        ticket: u64,
        since: Instant,
    },
    InRoom {
        room: RoomKey,
    },
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) ip: IpAddr,
    pub(crate) interests: Vec<String>,
    /// The live socket, or `None` while the session waits for a resume.
    pub(crate) conn: Option<ConnId>,
    pub(crate) grace_until: Option<Instant>,
    pub(crate) place: Place,
    /// Messages held while the socket is down, in order.
    pub(crate) pending: VecDeque<ServerMsg>,
    /// Bytes of signal data in `pending`.
    pub(crate) pending_bytes: usize,
}

impl Session {
    pub(crate) fn new(id: String, token: String, ip: IpAddr, conn: ConnId, interests: Vec<String>) -> Self {
        Session {
            id,
            token,
            ip,
            interests,
            conn: Some(conn),
            grace_until: None,
            place: Place::Idle,
            pending: VecDeque::new(),
            pending_bytes: 0,
        }
    }

    /// Holds a signal for later; false if that would pass either bound.
    pub(crate) fn hold(&mut self, msg: ServerMsg, max_msgs: usize, max_bytes: usize) -> bool {
        let size = signal_size(&msg);
        let signals = self.pending.iter().filter(|m| matches!(m, ServerMsg::Signal { .. })).count();
        if signals >= max_msgs || self.pending_bytes + size > max_bytes {
            return false;
        }
        self.pending_bytes += size;
        self.pending.push_back(msg);
        true
    }

    pub(crate) fn drop_pending_signals(&mut self) {
        self.pending.retain(|m| !matches!(m, ServerMsg::Signal { .. }));
        self.pending_bytes = 0;
    }
}

fn signal_size(msg: &ServerMsg) -> usize {
    match msg {
        ServerMsg::Signal { data } => data.len(),
        _ => 0,
    }
}

#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) id: String,
    /// The initiator first.
    pub(crate) members: [SessionKey; 2],
    /// Whether each member already reported the other.
    pub(crate) reported: [bool; 2],
}

impl Room {
    pub(crate) fn side_of(&self, key: SessionKey) -> usize {
        usize::from(self.members[1] == key)
    }

    pub(crate) fn partner_of(&self, key: SessionKey) -> SessionKey {
        self.members[1 - self.side_of(key)]
    }
}

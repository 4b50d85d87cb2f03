//! The matchmaker's invariants, checked by tests after every step (and cheap enough for
//! debug builds of the server to check too).

use std::time::Instant;

use crate::session::Place;
use crate::Matchmaker;

impl Matchmaker {
    /// Checks every invariant of the state at `now` (after `handle_timeout(now)`), naming the
    /// first one broken.
    pub fn check_invariants(&self, now: Instant) -> Result<(), String> {
        for (conn, c) in &self.conns {
            if let Some(key) = c.session {
                let s = self.sessions.get(&key).ok_or(format!("conn {conn} names a missing session"))?;
                if s.conn != Some(*conn) {
                    return Err(format!("conn {conn} -> session {key}, whose socket is {:?}", s.conn));
                }
            }
        }
        if self.tokens.len() != self.sessions.len() {
            return Err("tokens and sessions differ in number".into());
        }
        let mut waiting = 0;
        for (key, s) in &self.sessions {
            if self.tokens.get(&s.token) != Some(key) {
                return Err(format!("session {key}'s token does not lead back to it"));
            }
            match s.conn {
                Some(conn) => {
                    if self.conns.get(&conn).and_then(|c| c.session) != Some(*key) {
                        return Err(format!("session {key} -> conn {conn}, which does not name it"));
                    }
                    if s.grace_until.is_some() || !s.pending.is_empty() {
                        return Err(format!("connected session {key} has a grace deadline or held messages"));
                    }
                }
                None => {
                    if s.grace_until.is_none() {
                        return Err(format!("dropped session {key} has no grace deadline"));
                    }
                    if s.grace_until.is_some_and(|t| t <= now) {
                        return Err(format!("dropped session {key} outlived its grace period"));
                    }
                }
            }
            let signals =
                s.pending.iter().filter(|m| matches!(m, strangers_protocol::ServerMsg::Signal { .. })).count();
            if signals > self.config.pending_max_msgs || s.pending_bytes > self.config.pending_max_bytes {
                return Err(format!("session {key} holds more than the bound"));
            }
            match s.place {
                Place::Idle => {}
                Place::Waiting { ticket, since } => {
                    waiting += 1;
                    if s.conn.is_none() {
                        return Err(format!("session {key} waits in the queue with its socket down"));
                    }
                    if !self.queue.iter().any(|(t, k)| t == ticket && k == *key) {
                        return Err(format!("waiting session {key} is not in the queue"));
                    }
                    let should_be_open = s.interests.is_empty() || now >= since + self.config.interest_wait;
                    if self.queue.is_open(ticket) != should_be_open {
                        return Err(format!(
                            "session {key}: open to anyone = {}, should be {should_be_open}",
                            !should_be_open
                        ));
                    }
                }
                Place::Parked { .. } => {
                    if s.conn.is_some() {
                        return Err(format!("session {key} is parked with a live socket"));
                    }
                }
                Place::InRoom { room } => {
                    let r = self.rooms.get(&room).ok_or(format!("session {key} is in a missing room"))?;
                    if !r.members.contains(key) {
                        return Err(format!("session {key} is in room {room}, which does not hold it"));
                    }
                }
            }
        }
        if waiting != self.queue.len() {
            return Err(format!("{} queue entries for {waiting} waiting sessions", self.queue.len()));
        }
        for (room, r) in &self.rooms {
            let [a, b] = r.members;
            if a == b {
                return Err(format!("room {room} pairs session {a} with itself"));
            }
            for m in r.members {
                match self.sessions.get(&m).map(|s| s.place) {
                    Some(Place::InRoom { room: r2 }) if r2 == *room => {}
                    other => return Err(format!("room {room} holds session {m}, whose place is {other:?}")),
                }
            }
        }
        // The queue is settled: no two waiting sessions could be paired.
        let queued: Vec<_> = self.queue.iter().collect();
        for (i, (ta, ka)) in queued.iter().enumerate() {
            for (tb, kb) in &queued[i + 1..] {
                let (sa, sb) = (&self.sessions[ka], &self.sessions[kb]);
                let share = sa.interests.iter().any(|t| sb.interests.contains(t));
                if share || (self.queue.is_open(*ta) && self.queue.is_open(*tb)) {
                    return Err(format!("sessions {ka} and {kb} both wait though they could be paired"));
                }
            }
        }
        Ok(())
    }
}

//! The in-memory backend: the one matchmaker of this server behind its own lock, and the task
//! that drives its timers. It decides and pushes the matchmaker's outputs into the socket
//! layer while holding that lock; it must not touch Redis or sockets' frames.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use strangers_matchmaker::{ConnId, Disconnect, Matchmaker, Stats};
use strangers_protocol::ClientMsg;
use tokio::sync::Notify;

use crate::outbox::Outbox;
use crate::sockets::{Refusal, Sockets};

struct State {
    core: Matchmaker,
    /// The deadline the timer task sleeps towards.
    armed: Option<Instant>,
}

/// The in-memory backend. See the module documentation.
pub struct Memory {
    state: Mutex<State>,
    timer_changed: Notify,
    sockets: Arc<Sockets>,
}

impl Memory {
    pub fn new(core: Matchmaker, sockets: Arc<Sockets>) -> Arc<Memory> {
        Arc::new(Memory { state: Mutex::new(State { core, armed: None }), timer_changed: Notify::new(), sockets })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held (the core's inputs never panic it), so a
        // poisoned lock would be a bug worth stopping for.
        self.state.lock().expect("matchmaker lock poisoned")
    }

    /// Admits a socket and tells the matchmaker (a banned address is told so and closed).
    pub fn open(&self, ip: IpAddr, outbox: Arc<Outbox>) -> Result<ConnId, Refusal> {
        let mut state = self.lock();
        let conn = self.sockets.admit(ip, outbox)?;
        state.core.handle_open(Instant::now(), conn, ip);
        self.dispatch(&mut state);
        Ok(conn)
    }

    pub fn message(&self, conn: ConnId, msg: ClientMsg) {
        let mut state = self.lock();
        state.core.handle_message(Instant::now(), conn, msg);
        self.dispatch(&mut state);
    }

    pub fn close(&self, conn: ConnId, how: Disconnect) {
        let mut state = self.lock();
        self.sockets.remove(conn);
        state.core.handle_close(Instant::now(), conn, how);
        self.dispatch(&mut state);
    }

    pub fn stats(&self) -> Stats {
        self.lock().core.stats(Instant::now())
    }

    /// Pushes the core's outputs into the socket layer, in order, then rearms the timer if
    /// needed.
    fn dispatch(&self, state: &mut State) {
        let core = &mut state.core;
        self.sockets.push(std::iter::from_fn(|| core.poll_output()));
        let next = state.core.poll_timeout();
        if next.is_some() && (state.armed.is_none() || next < state.armed) {
            state.armed = next;
            self.timer_changed.notify_one();
        }
    }

    /// Drives the matchmaker's timers until the backend is dropped by everyone else.
    pub async fn run_timers(self: Arc<Memory>) {
        loop {
            let deadline = {
                let mut state = self.lock();
                let now = Instant::now();
                if state.core.poll_timeout().is_some_and(|t| t <= now) {
                    state.core.handle_timeout(now);
                    self.dispatch(&mut state);
                }
                state.armed = state.core.poll_timeout();
                state.armed
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = self.timer_changed.notified() => {}
                    }
                }
                None => self.timer_changed.notified().await,
            }
        }
    }
}

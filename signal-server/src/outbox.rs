//! One socket's queue of outgoing frames. The socket layer pushes (under the backend's lock,
//! so the order the backend decided is the order on the wire); the socket's task takes and
//! writes them in one flush. Small on purpose: it exists once per connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Beyond this many queued bytes the client is not reading: it is cut off.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Something for a socket's task to do.
#[derive(Debug)]
pub enum Outgoing {
    Text(String),
    Ping,
    /// Send a close frame and stop.
    Close(u16, &'static str),
    /// The socket is silent or too slow: drop it without ceremony (its session is held for
    /// a resume).
    Abandon,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Outgoing>,
    bytes: usize,
    finished: bool,
    abandoned: bool,
}

/// The queue plus the bits the socket layer's sweeper reads.
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
    /// When the socket last sent anything, in milliseconds of the socket layer's clock.
    last_heard: AtomicU64,
}

impl Outbox {
    /// Queues a frame. After a `Close`, only an `Abandon` is still queued (the close frame may
    /// be stuck behind a peer that does not read); after an `Abandon`, nothing.
    pub fn push(&self, item: Outgoing) {
        let mut state = self.state.lock().expect("outbox lock is never poisoned: no panics under it");
        if state.abandoned || (state.finished && !matches!(item, Outgoing::Abandon)) {
            return;
        }
        match &item {
            Outgoing::Text(text) => {
                state.bytes += text.len();
                if state.bytes > MAX_QUEUED_BYTES {
                    state.queue.clear();
                    state.queue.push_back(Outgoing::Abandon);
                    state.finished = true;
                    state.abandoned = true;
                    drop(state);
                    self.waker.wake();
                    return;
                }
            }
            Outgoing::Close(..) => state.finished = true,
            Outgoing::Abandon => {
                state.finished = true;
                state.abandoned = true;
            }
            Outgoing::Ping => {}
        }
        state.queue.push_back(item);
        drop(state);
        self.waker.wake();
    }

    /// Takes everything queued (leaving no allocation behind), or registers to be woken when
    /// something is.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<VecDeque<Outgoing>> {
        self.waker.register(cx.waker());
        let mut state = self.state.lock().expect("outbox lock is never poisoned: no panics under it");
        if state.queue.is_empty() {
            return Poll::Pending;
        }
        state.bytes = 0;
        Poll::Ready(std::mem::take(&mut state.queue))
    }

    /// Whether a close or an abandon is queued: the socket's remaining input is not read.
    pub fn is_finished(&self) -> bool {
        self.state.lock().expect("outbox lock is never poisoned: no panics under it").finished
    }

    /// Ready once the socket is to be dropped without ceremony, so that its task stops even
    /// while it is stuck writing to a peer that never reads.
    pub fn poll_abandoned(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        let state = self.state.lock().expect("outbox lock is never poisoned: no panics under it");
        if state.abandoned {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub fn heard_at(&self, millis: u64) {
        self.last_heard.store(millis, Ordering::Relaxed);
    }

    pub fn last_heard(&self) -> u64 {
        self.last_heard.load(Ordering::Relaxed)
    }
}

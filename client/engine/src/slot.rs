//! A newest-frame slot: the producer overwrites, the consumer takes the latest if it changed.
//! Stale frames are dropped, never queued, so a slow window never builds up latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::media::VideoFrame;

#[derive(Default)]
pub struct FrameSlot {
    frame: Mutex<Option<Arc<VideoFrame>>>,
    version: AtomicU64,
    /// Called after every change (a window asks for a repaint here).
    notify: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl FrameSlot {
    pub fn put(&self, frame: Arc<VideoFrame>) {
        *self.frame.lock().expect("frame slot lock is never poisoned") = Some(frame);
        self.version.fetch_add(1, Ordering::Release);
        self.notify();
    }

    /// Sets what to call after each change; only the first call takes effect.
    pub fn on_change(&self, notify: Box<dyn Fn() + Send + Sync>) {
        let _ = self.notify.set(notify);
    }

    fn notify(&self) {
        if let Some(notify) = self.notify.get() {
            notify();
        }
    }

    pub fn clear(&self) {
        *self.frame.lock().expect("frame slot lock is never poisoned") = None;
        self.version.fetch_add(1, Ordering::Release);
        self.notify();
    }

    /// The newest frame if it changed since `seen` (updated to the current version).
    pub fn take_newer(&self, seen: &mut u64) -> Option<Option<Arc<VideoFrame>>> {
        let version = self.version.load(Ordering::Acquire);
        if version == *seen {
            return None;
        }
        *seen = version;
        Some(self.frame.lock().expect("frame slot lock is never poisoned").clone())
    }
}

//! The async tasks of one call (the peer connection's events, packet readers, the chat
//! channel, statistics), kept together so that ending the call stops every one of them: a
//! task left behind would hold the ended call's tracks and buffers until its stream closed, or
//! for ever. Threads are stopped by the call's `stop` flag instead.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

#[derive(Clone, Default)]
pub(crate) struct CallTasks(Arc<Mutex<Vec<AbortHandle>>>);

impl CallTasks {
    /// Runs `future` as one of the call's tasks.
    pub(crate) fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(future).abort_handle();
        let mut tasks = self.0.lock().expect("the task list lock is never poisoned");
        tasks.retain(|task| !task.is_finished());
        tasks.push(handle);
    }

    /// Stops every task of the call.
    pub(crate) fn abort_all(&self) {
        for task in self.0.lock().expect("the task list lock is never poisoned").drain(..) {
            task.abort();
        }
    }
}

//! The Strangers client engine: everything a client does except drawing a window. It talks to
//! the signal server, runs the session state machine, owns the WebRTC peer connection of the
//! current call, and captures, encodes, decodes and verifies media. The desktop window and
//! the headless mode are thin layers over it. It must not depend on any GUI crate.

pub mod api;
pub mod call;
mod call_tasks;
pub mod candidate_privacy;
pub mod chat;
pub mod congestion;
mod counters;
pub mod engine;
#[cfg(test)]
mod fuzz;
pub mod host_addresses;
pub mod keyframe_tap;
pub mod ladder;
pub mod media;
pub mod path_watch;
pub mod peer;
mod pipeline;
pub mod retransmit_budget;
mod send_budget;
pub mod session;
pub mod signaling;
pub mod slot;
pub mod sources;
pub mod turn_bridge;
mod video_sender;

pub use api::{CallStats, Command, DownKind, Event};
pub use engine::{start, EngineConfig, EngineHandle};

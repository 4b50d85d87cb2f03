//! Two real calls in one process, joined by passing each one's signals to the other over
//! loopback: once both have decoded video and are closed, every task they started has ended.

use std::time::Duration;

use strangers_engine::call::{Call, CallEvent, CallSettings};
use strangers_engine::peer::PeerSettings;
use strangers_engine::slot::FrameSlot;
use strangers_engine::sources::{AudioSpec, VideoSpec};
use tokio::sync::mpsc;

fn settings() -> CallSettings {
    CallSettings {
        peer: PeerSettings { bind_ip: [127, 0, 0, 1].into(), include_loopback: true, ..PeerSettings::default() },
        video: VideoSpec::Pattern { width: 160, height: 120, fps: 15 },
        audio: AudioSpec::Tone { hz: 440.0 },
        ..CallSettings::default()
    }
}

async fn start(initiator: bool) -> (Call, mpsc::UnboundedReceiver<CallEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = Box::new(move |event| {
        let _ = tx.send(event);
    });
    let slots = (std::sync::Arc::new(FrameSlot::default()), std::sync::Arc::new(FrameSlot::default()));
    let call = Call::start(&settings(), initiator, Vec::new(), sink, slots).await.expect("the call starts");
    (call, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_of_a_call_outlives_it() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let (mut offerer, mut offerer_events) = start(true).await;
    let (mut answerer, mut answerer_events) = start(false).await;
    let mut first_frames = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    while first_frames < 2 {
        tokio::select! {
            () = &mut deadline => panic!("no video both ways within 30 s ({first_frames} first frames)"),
            Some(event) = offerer_events.recv() => match event {
                CallEvent::LocalSignal(data) => answerer.apply(&data).await.expect("the answerer takes the signal"),
                CallEvent::FirstFrame { .. } => first_frames += 1,
                _ => {}
            },
            Some(event) = answerer_events.recv() => match event {
                CallEvent::LocalSignal(data) => offerer.apply(&data).await.expect("the offerer takes the signal"),
                CallEvent::FirstFrame { .. } => first_frames += 1,
                _ => {}
            },
        }
    }
    let during = metrics.num_alive_tasks();
    assert!(during > before, "a live call runs tasks ({during} alive, {before} before)");
    offerer.close().await;
    answerer.close().await;
    // Aborted tasks end at their next poll; give them (and the connections' own) a moment.
    let mut alive = metrics.num_alive_tasks();
    for _ in 0..50 {
        if alive <= before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive = metrics.num_alive_tasks();
    }
    assert!(alive <= before, "{alive} tasks alive after both calls ended, {before} before they began");
}

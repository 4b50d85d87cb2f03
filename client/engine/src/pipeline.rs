//! The media pipelines of a call (video sending has its own module, `video_sender`): audio
//! capture, encode and send; receive, reassemble, decode and verify; and the statistics report. Encoding and decoding run on threads of their own so
//! the async runtime (and the peer connection's driver on it) never waits for a codec.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::PayloadType;
use rtc::statistics::stats::ice_candidate::RTCIceCandidateStats;
use tracing::debug;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::Track;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateType, StatsSelector};

use crate::api::{AudioReceive, CallStats, PathInfo};
use crate::call::{CallEvent, Controls, EventSink};
use crate::call_tasks::CallTasks;
use crate::counters::Counters;
use crate::media::frame::{now_us, SAMPLES_PER_FRAME, SAMPLE_RATE};
use crate::media::jitter::JitterConfig as AudioJitterConfig;
use crate::media::playout::Playout;
use crate::media::video_codec::{VideoCodec, VideoDecoder};
use crate::media::video_jitter::{JitterConfig, VideoJitter};
use crate::media::{opus, pitch, stripe};
use crate::path_watch::{pair_family, PathWatch};
use crate::send_budget::{self, SendBudget};
use crate::slot::FrameSlot;
use crate::sources::{AudioOut, AudioSource};
use crate::turn_bridge::{RelayedVia, TurnTransport};

/// Samples of received audio the pitch and level are measured on.
const PITCH_WINDOW: usize = 8192;
/// Shortest time between two keyframe requests we send.
const PLI_SPACING: Duration = Duration::from_millis(300);

pub(crate) async fn first_ssrc(track: &dyn Track) -> Option<u32> {
    track.ssrcs().await.first().copied()
}

/// Sleeps a task until `deadline`, or forever without one.
async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Sleeps a thread until `deadline`, or returns at once if it passed.
pub(crate) fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// Captures, encodes and sends audio until the call stops.
pub(crate) async fn spawn_audio_sender(
    track: Arc<TrackLocalStaticSample>,
    payload_type: Option<PayloadType>,
    mut source: Box<dyn AudioSource>,
    controls: Arc<Controls>,
    counters: Arc<Counters>,
    budget: Arc<SendBudget>,
    events: Arc<EventSink>,
) {
    let (Some(pt), Some(ssrc)) = (payload_type, first_ssrc(track.as_ref()).await) else {
        events(CallEvent::MediaError("audio was not negotiated; sending none".into()));
        return;
    };
    let runtime = tokio::runtime::Handle::current();
    let thread_events = events.clone();
    let spawned = std::thread::Builder::new().name("audio-send".into()).spawn(move || {
        let events = thread_events;
        let mut applied = send_budget::audio_bps(budget.estimate());
        let mut encoder = match opus::Encoder::new(applied as u32) {
            Ok(encoder) => encoder,
            Err(e) => {
                events(CallEvent::MediaError(format!("audio encoder: {e}")));
                return;
            }
        };
        let interval = Duration::from_millis(20);
        let mut next = Instant::now();
        while !controls.stop.load(Ordering::Relaxed) {
            sleep_until(next);
            next += interval;
            if Instant::now() > next + interval * 5 {
                next = Instant::now();
            }
            let frame = match source.next_frame() {
                Ok(frame) if !controls.mute_audio.load(Ordering::Relaxed) => frame,
                Ok(_) => crate::media::AudioFrame::silence(),
                Err(e) => {
                    events(CallEvent::MediaError(format!("audio source: {e}")));
                    return;
                }
            };
            // Audio's share follows the estimate on thin links (see send_budget).
            let wanted = send_budget::audio_bps(budget.estimate());
            if (wanted - applied).abs() >= 2_000.0 && encoder.set_bitrate(wanted as u32).is_ok() {
                applied = wanted;
            }
            let packet = match encoder.encode(&frame) {
                Ok(packet) => packet,
                Err(e) => {
                    events(CallEvent::MediaError(format!("audio encoder: {e}")));
                    continue;
                }
            };
            Counters::add(&counters.bytes_sent, packet.len() as u64);
            let sample = Sample { data: Bytes::from(packet), duration: interval, ..Sample::new(Instant::now()) };
            if let Err(e) = runtime.block_on(track.sample_writer(ssrc, pt).write_sample(&sample)) {
                tracing::trace!(error = %e, "audio write failed");
            }
        }
    });
    if let Err(e) = spawned {
        events(CallEvent::MediaError(format!("cannot start the audio thread: {e}")));
    }
}

/// Where the stranger's decoded video goes: the window's slot, and every `n`th frame as PNG
/// in a directory when recording.
pub(crate) struct VideoSink {
    pub slot: Arc<FrameSlot>,
    pub record: Option<(PathBuf, u32)>,
}

/// Receives, reassembles, decodes and verifies the stranger's video.
pub(crate) fn spawn_video_receiver(
    tasks: &CallTasks,
    track: Arc<dyn TrackRemote>,
    codec: VideoCodec,
    controls: Arc<Controls>,
    counters: Arc<Counters>,
    sink: VideoSink,
    events: Arc<EventSink>,
) {
    let VideoSink { slot, record } = sink;
    // Room for the frames a filled hole releases at once (a wait's worth at 30 fps).
    let (units_tx, units_rx) = std_mpsc::sync_channel::<Vec<u8>>(16);
    // Shared with the call, so a keyframe can also be asked for on purpose.
    let need_keyframe = controls.need_keyframe.clone();
    {
        let need_keyframe = need_keyframe.clone();
        let counters = counters.clone();
        tasks.spawn(async move {
            let media_ssrc = first_ssrc(track.as_ref()).await.unwrap_or(0);
            let mut jitter = VideoJitter::new(JitterConfig::default(), codec);
            let mut rtt_us = 0;
            let mut last_pli: Option<Instant> = None;
            loop {
                // Wake at the end of a wait for a missing packet even when no packet comes.
                let deadline = jitter.next_deadline();
                let event = tokio::select! {
                    event = track.poll() => match event {
                        Some(event) => Some(event),
                        None => break,
                    },
                    () = sleep_until_deadline(deadline) => None,
                };
                let now = Instant::now();
                let measured = Counters::get(&counters.rtt_us);
                if measured != rtt_us && measured > 0 {
                    rtt_us = measured;
                    jitter.set_rtt(Duration::from_micros(measured));
                }
                if let Some(TrackRemoteEvent::OnRtpPacket(packet)) = event {
                    Counters::add(&counters.bytes_received, packet.payload.len() as u64);
                    let header = &packet.header;
                    jitter.push(now, header.sequence_number, header.timestamp, header.marker, &packet.payload);
                }
                while let Some(result) = jitter.poll(now) {
                    match result {
                        Ok(unit) => {
                            // A full queue means the decoder fell behind: skip to a keyframe.
                            let full = units_tx.try_send(unit.data).is_err();
                            if full {
                                need_keyframe.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(gap) => {
                            debug!(%gap, recovered = jitter.recovered(), given_up = jitter.given_up(), late = jitter.late(), wait = ?jitter.wait(), "video gap");
                            need_keyframe.store(true, Ordering::Relaxed);
                        }
                    }
                }
                if need_keyframe.load(Ordering::Relaxed) && last_pli.is_none_or(|t| t.elapsed() >= PLI_SPACING) {
                    need_keyframe.store(false, Ordering::Relaxed);
                    last_pli = Some(Instant::now());
                    let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                    match track.write_rtcp(vec![Box::new(pli)]).await {
                        Ok(()) => debug!(media_ssrc, "keyframe requested"),
                        Err(e) => debug!(error = %e, "keyframe request failed"),
                    }
                }
            }
            debug!(
                recovered = jitter.recovered(),
                given_up = jitter.given_up(),
                late = jitter.late(),
                "video receive ended"
            );
        });
    }
    let spawned = std::thread::Builder::new().name("video-recv".into()).spawn(move || {
        let mut decoder = match VideoDecoder::new(codec) {
            Ok(decoder) => decoder,
            Err(e) => {
                events(CallEvent::MediaError(format!("video decoder: {e}")));
                return;
            }
        };
        let mut last_number: Option<u32> = None;
        let mut decoded = 0u64;
        while let Ok(unit) = units_rx.recv() {
            if controls.stop.load(Ordering::Relaxed) {
                return;
            }
            let frame = match decoder.decode(&unit) {
                Ok(Some(frame)) => frame,
                Ok(None) => continue,
                Err(e) => {
                    debug!(error = %e, "undecodable frame; asking for a keyframe");
                    need_keyframe.store(true, Ordering::Relaxed);
                    continue;
                }
            };
            let arrived_us = now_us();
            decoded += 1;
            Counters::add(&counters.video_frames_decoded, 1);
            counters.size.store(((frame.width as u64) << 32) | frame.height as u64, Ordering::Relaxed);
            match stripe::read(&frame) {
                Ok(s) => {
                    Counters::add(&counters.frames_verified, 1);
                    if last_number.is_some_and(|n| s.number <= n) {
                        Counters::add(&counters.out_of_order, 1);
                    }
                    last_number = Some(s.number);
                    let latency_ms = arrived_us.saturating_sub(s.capture_us) as f64 / 1000.0;
                    counters.latencies.lock().expect("latency lock is never poisoned").push(latency_ms);
                }
                Err(_) => Counters::add(&counters.verify_errors, 1),
            }
            if decoded == 1 {
                events(CallEvent::FirstFrame { width: frame.width as u32, height: frame.height as u32 });
            }
            if let Some((dir, every)) = &record {
                if (decoded - 1) % u64::from(*every) == 0 {
                    let path = dir.join(format!("frame-{decoded:06}.png"));
                    if let Err(e) = crate::media::png::save(&frame, &path) {
                        events(CallEvent::MediaError(format!("recording {}: {e}", path.display())));
                    }
                }
            }
            slot.put(Arc::new(frame));
        }
    });
    if let Err(e) = spawned {
        debug!(error = %e, "cannot start the video decoding thread");
    }
}

/// Receives the stranger's audio through a jitter buffer, decodes it (concealing losses) and
/// measures it, and plays it on `out` if there is one.
pub(crate) fn spawn_audio_receiver(
    tasks: &CallTasks,
    track: Arc<dyn TrackRemote>,
    controls: Arc<Controls>,
    counters: Arc<Counters>,
    out: Option<AudioOut>,
) {
    let Ok(playout) = Playout::new(AudioJitterConfig::default()) else {
        debug!("cannot make the audio decoder");
        return;
    };
    let playout = Arc::new(Mutex::new(playout));
    {
        let playout = playout.clone();
        let counters = counters.clone();
        tasks.spawn(async move {
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
                Counters::add(&counters.bytes_received, packet.payload.len() as u64);
                let mut playout = playout.lock().expect("playout lock is never poisoned");
                playout.push(
                    Instant::now(),
                    packet.header.sequence_number,
                    packet.header.timestamp,
                    packet.payload.to_vec(),
                );
            }
        });
    }
    let spawned = std::thread::Builder::new().name("audio-recv".into()).spawn(move || {
        let mut window: VecDeque<i16> = VecDeque::with_capacity(SAMPLE_RATE as usize);
        let mut next = Instant::now();
        let mut frames = 0u32;
        while !controls.stop.load(Ordering::Relaxed) {
            next += Duration::from_millis(20);
            sleep_until(next);
            let (frame, stats, jitter_stats, delay) = {
                let mut playout = playout.lock().expect("playout lock is never poisoned");
                let frame = playout.next_frame(Instant::now());
                (frame, playout.stats(), playout.jitter_stats(), playout.target_delay())
            };
            *counters.audio_receive.lock().expect("audio lock is never poisoned") = AudioReceive {
                fec_recovered: stats.fec_recovered,
                concealed: stats.concealed,
                late: jitter_stats.late,
                stretched: jitter_stats.stretched,
                waited_late: jitter_stats.waited_late,
                hurried: stats.hurried,
                shortened_ms: stats.shortened_ms,
                delay_ms: delay.as_secs_f64() * 1000.0,
            };
            let Some(frame) = frame else { continue };
            if let Some(out) = &out {
                out.0.play(&frame);
            }
            for s in frame.samples.iter().take(SAMPLES_PER_FRAME) {
                if window.len() == SAMPLE_RATE as usize {
                    window.pop_front();
                }
                window.push_back(*s);
            }
            frames += 1;
            if frames % 50 == 0 {
                // The newest ~170 ms tell the pitch as well as a whole second, for a sixth of
                // the work.
                let skip = window.len().saturating_sub(PITCH_WINDOW);
                let samples: Vec<i16> = window.iter().skip(skip).copied().collect();
                let hz = pitch::dominant_frequency(&samples, SAMPLE_RATE).map(f64::from);
                let rms = f64::from(pitch::rms(&samples));
                *counters.audio.lock().expect("audio lock is never poisoned") = (hz, rms);
            }
        }
    });
    if let Err(e) = spawned {
        debug!(error = %e, "cannot start the audio decoding thread");
    }
}

/// Emits a [`CallStats`] every second until the call ends.
pub(crate) async fn report_stats(
    pc: Arc<dyn PeerConnection>,
    relayed_via: RelayedVia,
    counters: Arc<Counters>,
    budget: Arc<SendBudget>,
    events: Arc<EventSink>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = (0u64, 0u64, 0u64, 0u64);
    let mut last_at = Instant::now();
    let mut path_watch = PathWatch::default();
    loop {
        ticker.tick().await;
        let elapsed = last_at.elapsed().as_secs_f64().max(0.001);
        last_at = Instant::now();
        let now = (
            Counters::get(&counters.video_frames_sent),
            Counters::get(&counters.video_frames_decoded),
            Counters::get(&counters.bytes_sent),
            Counters::get(&counters.bytes_received),
        );
        let mut latencies = std::mem::take(&mut *counters.latencies.lock().expect("latency lock is never poisoned"));
        latencies.sort_by(|a, b| a.total_cmp(b));
        let (audio_hz, audio_rms) = *counters.audio.lock().expect("audio lock is never poisoned");
        let size = Counters::get(&counters.size);
        let send_size = Counters::get(&counters.send_size);
        let audio_receive = *counters.audio_receive.lock().expect("audio lock is never poisoned");
        let mut stats = CallStats {
            sent_fps: (now.0 - last.0) as f64 / elapsed,
            recv_fps: (now.1 - last.1) as f64 / elapsed,
            sent_kbps: (now.2 - last.2) as f64 * 8.0 / 1000.0 / elapsed,
            recv_kbps: (now.3 - last.3) as f64 * 8.0 / 1000.0 / elapsed,
            target_kbps: budget.estimate() / 1000.0,
            frames_verified: Counters::get(&counters.frames_verified),
            verify_errors: Counters::get(&counters.verify_errors),
            out_of_order: Counters::get(&counters.out_of_order),
            latency_ms_p50: latencies.get(latencies.len() / 2).copied(),
            latency_ms_p95: latencies.get(latencies.len() * 95 / 100).copied(),
            latency_ms_max: latencies.last().copied(),
            width: (size >> 32) as u32,
            height: (size & 0xffff_ffff) as u32,
            codec: (*counters.codec.lock().expect("codec lock is never poisoned")).map(str::to_owned),
            send_width: (send_size >> 32) as u32,
            send_height: (send_size & 0xffff_ffff) as u32,
            size_reason: (*counters.size_reason.lock().expect("reason lock is never poisoned")).map(str::to_owned),
            audio_gaps: audio_receive.fec_recovered + audio_receive.concealed,
            audio_receive,
            audio_hz,
            audio_rms,
            keyframes_requested: Counters::get(&counters.keyframes_requested),
            ..CallStats::default()
        };
        last = now;
        let pair = transport_stats(pc.as_ref(), &relayed_via, &mut stats).await;
        if let (Some(pair), Some(path)) = (pair, &stats.path) {
            if let Some((from, to)) = path_watch.observe(&pair, path) {
                events(CallEvent::PathChanged(from, to));
            }
        }
        if let Some(rtt_ms) = stats.rtt_ms.filter(|rtt| rtt.is_finite() && *rtt > 0.0) {
            counters.rtt_us.store((rtt_ms * 1000.0) as u64, Ordering::Relaxed);
        }
        events(CallEvent::Stats(Box::new(stats)));
    }
}

fn address_of(candidate: Option<&RTCIceCandidateStats>) -> Option<&str> {
    candidate?.address.as_deref()
}

/// Fills in RTT, loss and the selected candidate pair from the connection's own statistics,
/// and returns that pair's id.
async fn transport_stats(pc: &dyn PeerConnection, relayed_via: &RelayedVia, stats: &mut CallStats) -> Option<String> {
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let mut selected = None;
    if let Some(transport) = report.transport() {
        // The count includes the first selection.
        stats.path_switches = transport.selected_candidate_pair_changes.saturating_sub(1);
        if let Some(webrtc::peer_connection::RTCStatsReportEntry::IceCandidatePair(pair)) =
            report.get(&transport.selected_candidate_pair_id)
        {
            stats.rtt_ms = Some(pair.current_round_trip_time * 1000.0);
            // Candidate entries are keyed by a type prefix plus the id the pair names. A remote
            // candidate learned from a connectivity check was never signalled, so it has no
            // entry: it is peer-reflexive.
            let candidate = |id: &str| {
                report.iter().find_map(|entry| match entry {
                    webrtc::peer_connection::RTCStatsReportEntry::LocalCandidate(c)
                    | webrtc::peer_connection::RTCStatsReportEntry::RemoteCandidate(c)
                        if entry.id().ends_with(id) =>
                    {
                        Some(c)
                    }
                    _ => None,
                })
            };
            let local = candidate(&pair.local_candidate_id);
            let kind = |c: Option<&RTCIceCandidateStats>| c.map(|c| c.candidate_type.to_string());
            // Our relayed candidate's own address tells which TURN transport it came through.
            let relay = local.filter(|c| c.candidate_type == RTCIceCandidateType::Relay).map(|c| {
                let address = c.address.as_deref().and_then(|a| a.parse::<IpAddr>().ok());
                let transport =
                    address.map_or(TurnTransport::Udp, |ip| relayed_via.transport_of(SocketAddr::new(ip, c.port)));
                transport.name().to_owned()
            });
            let remote = candidate(&pair.remote_candidate_id);
            stats.path = Some(PathInfo {
                local: kind(local).unwrap_or_else(|| "unknown".into()),
                remote: kind(remote).unwrap_or_else(|| "prflx".into()),
                family: pair_family(address_of(local), address_of(remote)).to_owned(),
                relay,
            });
            selected = Some(transport.selected_candidate_pair_id.clone());
        }
    }
    let (mut lost, mut received) = (0i64, 0u64);
    for inbound in report.inbound_rtp_streams() {
        lost += inbound.received_rtp_stream_stats.packets_lost;
        received += inbound.received_rtp_stream_stats.packets_received;
    }
    let total = lost.max(0) as f64 + received as f64;
    stats.loss = if total > 0.0 { lost.max(0) as f64 / total } else { 0.0 };
    stats.packets_lost = lost.max(0) as u64;
    stats.packets_received = received;
    selected
}

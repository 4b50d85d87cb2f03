//! A call on a simulated link, both ways: each direction a bottleneck with a FIFO of a number of
//! packets (tail drop) and a propagation delay; each side a sender whose video follows its own
//! [`CongestionController`] (paced packets of a frame every 33 ms, audio every 20 ms) and a
//! receiver that reports what arrived every 100 ms in a feedback packet that travels back
//! through the other direction's queue, behind the partner's media, and may be dropped there.
//! That is what makes a fall on both directions at once hard: the news of the queue waits in a
//! queue itself.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{CongestionConfig, CongestionController, PacketFate};

const STEP: f64 = 0.001;
const FEEDBACK_INTERVAL: f64 = 0.1;
const FEEDBACK_BYTES: usize = 80;
const AUDIO_BYTES: usize = 120;
const AUDIO_BPS: f64 = 40_000.0;
const FRAME_INTERVAL: f64 = 1.0 / 30.0;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A media packet with its transport-wide sequence number.
    Media(u64),
    /// A feedback batch (an index into the receiver's sent feedback).
    Feedback(usize),
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    kind: Kind,
    size: usize,
}

/// One direction of the link.
struct Direction {
    rate: f64,
    queue_packets: usize,
    propagation: f64,
    /// Packets waiting or being sent, in order; the front leaves at `front_done`.
    queue: VecDeque<InFlight>,
    front_done: f64,
    /// Packets on the wire after the bottleneck, with their arrival time.
    wire: VecDeque<(f64, InFlight)>,
}

impl Direction {
    fn new(rate: f64, queue_packets: usize) -> Self {
        Direction {
            rate,
            queue_packets,
            propagation: 0.01,
            queue: VecDeque::new(),
            front_done: 0.0,
            wire: VecDeque::new(),
        }
    }

    fn send(&mut self, t: f64, packet: InFlight) {
        if self.queue.len() >= self.queue_packets {
            return; // Tail drop.
        }
        if self.queue.is_empty() {
            self.front_done = t + packet.size as f64 * 8.0 / self.rate;
        }
        self.queue.push_back(packet);
    }

    /// Moves what the bottleneck finished by `t` onto the wire; returns what arrived by `t`.
    fn advance(&mut self, t: f64) -> Vec<(f64, InFlight)> {
        while let Some(front) = self.queue.front().copied() {
            if self.front_done > t {
                break;
            }
            self.queue.pop_front();
            self.wire.push_back((self.front_done + self.propagation, front));
            if let Some(next) = self.queue.front() {
                self.front_done += next.size as f64 * 8.0 / self.rate;
            }
        }
        let mut arrived = Vec::new();
        while self.wire.front().is_some_and(|(at, _)| *at <= t) {
            arrived.extend(self.wire.pop_front());
        }
        arrived
    }

    /// How long a packet entering now would wait before leaving the bottleneck.
    fn queue_delay(&self, t: f64) -> f64 {
        let bytes: usize = self.queue.iter().skip(1).map(|p| p.size).sum();
        (self.front_done - t).max(0.0) * f64::from(u8::from(!self.queue.is_empty())) + bytes as f64 * 8.0 / self.rate
    }
}

/// One side: its controller, its sender's state and its receiver's.
struct Side {
    cc: CongestionController,
    next_seq: u64,
    /// Departure and size of each packet sent, by sequence number.
    sent: Vec<(f64, usize)>,
    next_frame: f64,
    next_audio: f64,
    /// Packets of the current frame still to leave, and when the next may.
    pacing: VecDeque<usize>,
    pace_at: f64,
    /// Receiver: arrivals of the partner's packets (sequence, arrival), since the last report.
    arrivals: Vec<(u64, f64)>,
    /// Receiver: the highest sequence number reported so far.
    reported_up_to: Option<u64>,
    next_feedback: f64,
    /// Receiver: feedback batches sent, each the fates of a range of the partner's packets.
    feedback: Vec<Vec<(u64, Option<f64>)>>,
}

impl Side {
    fn new(start_offset: f64) -> Self {
        Side {
            cc: CongestionController::new(CongestionConfig::default()),
            next_seq: 0,
            sent: Vec::new(),
            next_frame: start_offset,
            next_audio: start_offset,
            pacing: VecDeque::new(),
            pace_at: 0.0,
            arrivals: Vec::new(),
            reported_up_to: None,
            next_feedback: FEEDBACK_INTERVAL + start_offset,
            feedback: Vec::new(),
        }
    }

    fn media(&mut self, t: f64, size: usize) -> InFlight {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent.push((t, size));
        InFlight { kind: Kind::Media(seq), size }
    }

    /// What this side sends at `t`: audio, the packets of a new frame, paced.
    fn send(&mut self, t: f64, out: &mut Direction) {
        if t >= self.next_audio {
            self.next_audio += 0.02;
            let packet = self.media(t, AUDIO_BYTES);
            out.send(t, packet);
        }
        let estimate = self.cc.estimate();
        if t >= self.next_frame {
            self.next_frame += FRAME_INTERVAL;
            // Frames are skipped while the last one's packets are still leaving.
            if self.pacing.is_empty() {
                let video = (estimate - AUDIO_BPS).max(30_000.0);
                let mut bytes = (video * FRAME_INTERVAL / 8.0) as usize;
                let mtu = ((estimate * 0.025 / 8.0) as usize).clamp(300, 1200);
                while bytes > 0 {
                    let size = bytes.min(mtu);
                    self.pacing.push_back(size);
                    bytes -= size;
                }
            }
        }
        while t >= self.pace_at {
            let Some(size) = self.pacing.pop_front() else { break };
            let packet = self.media(t, size);
            out.send(t, packet);
            self.pace_at = self.pace_at.max(t) + size as f64 * 8.0 / (estimate * 2.5);
        }
    }

    /// The receiver's report of what arrived since the last, as a feedback packet.
    fn report(&mut self) -> Option<InFlight> {
        let highest = self.arrivals.iter().map(|(seq, _)| *seq).max()?;
        let from = self.reported_up_to.map_or(0, |r| r + 1);
        if highest < from {
            self.arrivals.clear();
            return None;
        }
        let batch: Vec<(u64, Option<f64>)> = (from..=highest)
            .map(|seq| (seq, self.arrivals.iter().find(|(s, _)| *s == seq).map(|(_, at)| *at)))
            .collect();
        self.arrivals.retain(|(seq, _)| *seq > highest);
        self.reported_up_to = Some(highest);
        self.feedback.push(batch);
        Some(InFlight { kind: Kind::Feedback(self.feedback.len() - 1), size: FEEDBACK_BYTES })
    }
}

/// What the simulation saw every 100 ms: the time, and per direction (A to B, B to A) the
/// sender's estimate and the queueing delay a packet would meet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub t: f64,
    pub estimate: [f64; 2],
    pub queue: [f64; 2],
}

/// Runs a call of `seconds` over a link of `rate(t)` bits per second both ways with FIFOs of
/// `queue_packets`; returns a sample every 100 ms.
pub(super) fn run(seconds: f64, queue_packets: usize, rate: impl Fn(f64) -> f64) -> Vec<Sample> {
    let origin = Instant::now();
    let at = |t: f64| origin + Duration::from_secs_f64(t);
    let mut sides = [Side::new(0.0), Side::new(0.007)];
    let mut links = [Direction::new(rate(0.0), queue_packets), Direction::new(rate(0.0), queue_packets)];
    let mut samples = Vec::new();
    let mut next_sample = 0.1;
    let mut t = 0.0;
    while t < seconds {
        for link in &mut links {
            link.rate = rate(t);
        }
        for (d, link) in links.iter_mut().enumerate() {
            let (sender, receiver) = (d, 1 - d);
            for (arrival, packet) in link.advance(t) {
                match packet.kind {
                    Kind::Media(seq) => sides[receiver].arrivals.push((seq, arrival)),
                    Kind::Feedback(index) => {
                        // Feedback on direction d was sent by side d about side 1 - d's media.
                        let batch = sides[sender].feedback[index].clone();
                        let about = &mut sides[receiver];
                        let fates: Vec<PacketFate> = batch
                            .iter()
                            .map(|(seq, arrived)| {
                                let (departure, size) = about.sent[*seq as usize];
                                PacketFate {
                                    departure: at(departure),
                                    arrival: arrived.map(|a| Duration::from_secs_f64(a + 100.0)),
                                    size,
                                }
                            })
                            .collect();
                        about.cc.on_feedback(at(t), &fates);
                    }
                }
            }
        }
        for (d, side) in sides.iter_mut().enumerate() {
            let last_sent = side.sent.last().map(|(sent, _)| at(*sent));
            side.cc.on_timeout(at(t), last_sent);
            side.send(t, &mut links[d]);
            if t >= side.next_feedback {
                side.next_feedback += FEEDBACK_INTERVAL;
                if let Some(packet) = side.report() {
                    links[d].send(t, packet);
                }
            }
        }
        if t >= next_sample {
            next_sample += 0.1;
            samples.push(Sample {
                t,
                estimate: [sides[0].cc.estimate(), sides[1].cc.estimate()],
                queue: [links[0].queue_delay(t), links[1].queue_delay(t)],
            });
        }
        t += STEP;
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(samples: &[Sample], from: f64, to: f64) -> String {
        samples
            .iter()
            .filter(|s| s.t >= from && s.t < to)
            .map(|s| {
                format!(
                    "{:.1}s {:.0}k/{:.0}ms {:.0}k/{:.0}ms",
                    s.t,
                    s.estimate[0] / 1000.0,
                    s.queue[0] * 1000.0,
                    s.estimate[1] / 1000.0,
                    s.queue[1] * 1000.0
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn after_the_link_falls_both_ways_the_queues_drain_within_three_seconds() {
        let samples = run(70.0, 50, |t| if (20.0..40.0).contains(&t) { 300_000.0 } else { 2_500_000.0 });
        let shown = trace(&samples, 15.0, 70.0);
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("{shown}");
        }
        for d in 0..2 {
            // Latency (queue plus 10 ms of propagation) under 200 ms from 3 s after the fall.
            let late = samples.iter().filter(|s| s.t >= 23.0 && s.t < 40.0 && s.queue[d] > 0.19).count();
            assert_eq!(late, 0, "direction {d}: the queue stayed long after the fall:\n{shown}");
            let during: Vec<f64> =
                samples.iter().filter(|s| s.t >= 25.0 && s.t < 40.0).map(|s| s.estimate[d]).collect();
            let mean = during.iter().sum::<f64>() / during.len() as f64;
            assert!(
                mean > 150_000.0 && mean < 320_000.0,
                "direction {d}: {mean:.0} while the link gives 300k:\n{shown}"
            );
            // Back up within about 22 s: gently near the old rate for 5 s, then 12 % a second.
            let after = samples.iter().filter(|s| s.t >= 62.0).map(|s| s.estimate[d]).fold(f64::INFINITY, f64::min);
            assert!(after > 1_500_000.0, "direction {d}: {after:.0} 22 s after the link came back:\n{shown}");
        }
    }

    #[test]
    fn steady_thin_links_used_both_ways_without_long_queues() {
        for (rate, packets) in [(150_000.0, 50), (250_000.0, 50), (500_000.0, 50), (2_500_000.0, 300)] {
            let samples = run(40.0, packets, |_| rate);
            let shown = trace(&samples, 0.0, 40.0);
            for d in 0..2 {
                let tail: Vec<&Sample> = samples.iter().filter(|s| s.t >= 15.0).collect();
                let mean = tail.iter().map(|s| s.estimate[d]).sum::<f64>() / tail.len() as f64;
                let worst = tail.iter().map(|s| s.queue[d]).fold(0.0, f64::max);
                assert!(mean > rate * 0.6 && mean < rate * 1.05, "{rate} dir {d}: estimate {mean:.0}:\n{shown}");
                assert!(worst < 0.3, "{rate} dir {d}: queue {worst:.3} s:\n{shown}");
            }
        }
    }

    #[test]
    fn a_link_thinner_than_the_start_is_found_in_the_first_batches_and_a_wide_one_is_not_mistaken() {
        // 250 kbit/s under a 300 kbit/s start: the first cut comes from the first batches that
        // show us sending faster than packets arrive, before the standing queue passes the
        // threshold.
        let samples = run(4.0, 50, |_| 250_000.0);
        let shown = trace(&samples, 0.0, 4.0);
        for d in 0..2 {
            let cut = samples.iter().find(|s| s.estimate[d] < 250_000.0).map(|s| s.t);
            assert!(cut.is_some_and(|t| t < 0.45), "direction {d}: first cut at {cut:?}:\n{shown}");
            let worst = samples.iter().map(|s| s.queue[d]).fold(0.0, f64::max);
            assert!(worst < 0.13, "direction {d}: queue {worst:.3} s:\n{shown}");
        }
        // A wide link ramps on undisturbed.
        let samples = run(4.0, 50, |_| 2_500_000.0);
        let shown = trace(&samples, 0.0, 4.0);
        for d in 0..2 {
            let at_3s = samples.iter().find(|s| s.t >= 3.0).map_or(0.0, |s| s.estimate[d]);
            assert!(at_3s > 2_000_000.0, "direction {d}: {at_3s:.0} at 3 s:\n{shown}");
        }
    }
}

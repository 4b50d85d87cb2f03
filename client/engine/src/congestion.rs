//! Congestion control for what we send: an estimate of the rate the path to the stranger carries
//! without building a queue, from the partner's transport-wide feedback (when each packet left
//! us, when it arrived or that it never did). Pure: time is an input, no IO, no clock.
//!
//! Four signals drive it:
//! - **Queueing delay.** A packet's one-way delay minus the smallest one-way delay seen in the
//!   last 30 s (the path's base delay; the two clocks' offset cancels out) is the time it spent
//!   in queues. The smallest queueing delay of each feedback batch (about 100 ms of packets) is
//!   the standing queue, free of the short bursts within a frame. A standing queue above a
//!   threshold (30 ms plus two of our largest packets at the current rate, so a thin link's own
//!   serialisation does not count), or above half of it and rising by 10 ms a batch (we send
//!   well above the link, as when ramping past it), means we send more than the path carries:
//!   the estimate drops below the rate that arrived, by enough to drain the queue within about
//!   a second. The arrival rate is remembered as the link's rate when we sent faster than it.
//!   Before congestion first shows, sending 30 % faster than packets arrive while a batch's
//!   queue grows is acted on at once: a link thinner than the start is cut to within the first
//!   batches instead of after the standing queue passed the threshold.
//! - **Loss.** More than 10 % of the packets of the last second lost (the last 100 packets
//!   when a second holds fewer) lowers the estimate in proportion, never below half of what
//!   arrived; random loss below that leaves it alone, so a few lost packets never pin it to the
//!   floor. Losses of packets sent before a decrease are paid for by it and not counted again.
//! - **Silence.** Feedback that stops coming while we send (250 ms later than the latest of the
//!   last second's batches) means a queue grew faster than feedback can tell, ours or the one
//!   our partner's feedback waits in behind its media: the estimate halves every 100 ms until
//!   feedback returns (see [`CongestionController::on_timeout`]).
//! - **Room.** With little queueing the estimate grows: doubling each second until the first
//!   congestion and after a deep cut (below 70 % of the link's rate as last seen), 12 % a
//!   second far above that rate or past it with no congestion for 5 s (the link may have
//!   widened), and gently (5 % a second) near it. It never runs further than twice ahead of the rate that actually
//!   arrived, so an encoder sending less than allowed does not let it climb blindly; past the last
//!   congestion point it grows only while we send at least 80 % of it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bounds and start of the estimate, bits per second (the whole send rate, audio included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CongestionConfig {
    pub start_bps: f64,
    pub min_bps: f64,
    pub max_bps: f64,
}

impl Default for CongestionConfig {
    fn default() -> Self {
        CongestionConfig { start_bps: 300_000.0, min_bps: 60_000.0, max_bps: 2_700_000.0 }
    }
}

/// What the partner said about one packet we sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacketFate {
    /// When it left us.
    pub departure: Instant,
    /// When it arrived, on the partner's clock (an arbitrary origin), or `None` if lost.
    pub arrival: Option<Duration>,
    /// Its size in bytes.
    pub size: usize,
}

/// Why the estimate last moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    /// Halved because feedback stopped coming while we sent.
    Stall,
    /// Not moved yet.
    Start,
    /// Growing quickly: no congestion yet, or far above where it last showed.
    Ramp,
    /// Growing gently near the rate where congestion last showed.
    Probe,
    /// Held: some queueing or loss, not enough to act on.
    Hold,
    /// Lowered for a standing queue.
    Delay,
    /// Lowered for loss.
    Loss,
}

/// Queueing delay above which the estimate drops, at an arrival rate of `rate` bits per second
/// with packets of at most `packet` bytes.
fn delay_threshold(rate: f64, packet: usize) -> Duration {
    let one_packet = packet as f64 * 8.0 / rate.max(30_000.0);
    Duration::from_millis(30) + Duration::from_secs_f64(one_packet.min(0.1))
}

/// How long the base delay is remembered.
const BASE_WINDOW: Duration = Duration::from_secs(30);
/// The window the arrival rate is measured over.
const RATE_WINDOW: Duration = Duration::from_millis(500);
/// The window loss is measured over, stretched to hold at least the fewest packets it needs: a
/// smaller sample of 5 % random loss too often shows more than 10 % by chance (at 300 kbit/s,
/// about 80 packets a second, one second in twenty would), and each such second cut the
/// estimate.
const LOSS_WINDOW: Duration = Duration::from_secs(1);
const LOSS_MIN_PACKETS: usize = 100;
/// Shortest time between two decreases: the feedback of the first must have had time to show.
const DECREASE_SPACING: Duration = Duration::from_millis(350);
/// Growth per second while ramping and near the last congestion point.
const RAMP_PER_SECOND: f64 = 2.0;
const PROBE_PER_SECOND: f64 = 1.05;
/// Growth per second past the last congestion point once it is stale. Faster growth (25 %)
/// overshot a thin link every 10 s by enough to queue 250 ms, and audio broke up each time
/// (150 kbit/s: 5-7 % of audio frames concealed, against 1-2 % at 12 %); the price is a slower
/// climb when a link widens (300 kbit/s to 1.5 Mbit/s in about 20 s).
const WIDEN_PER_SECOND: f64 = 1.12;
/// A standing queue growing this much from one feedback batch to the next (about 100 ms)
/// means we send at least 10 % more than the link carries.
const QUEUE_RISE: Duration = Duration::from_millis(10);
/// Sending this much faster than packets arrive shows the link is saturated.
const SATURATED: f64 = 1.03;
/// Before the first congestion, sending this much faster than packets arrive, with a queue
/// growing, is acted on at once (see `update`).
const START_SATURATED: f64 = 1.3;
/// Past the rate where congestion last showed, the estimate grows only while we send at least
/// this share of it (or within [`UNUSED_SLACK_BPS`] of it, for thin links where audio and the
/// smallest picture leave little to use): an estimate the encoder does not use is unproven, and
/// when a larger picture or a busier scene suddenly used it all at once, the queue grew by
/// 300 ms before the feedback could tell (250 kbit/s: estimates of 270 kbit/s while 190 were
/// sent).
const USED_SHARE: f64 = 0.8;
const UNUSED_SLACK_BPS: f64 = 50_000.0;
/// How long after the last decrease its rate stops counting as the link's, once passed.
const FORGET_AFTER: Duration = Duration::from_secs(5);
/// Feedback this much later than the latest of the last second's batches came (measured from
/// the newest packet each reported) means a queue has formed that feedback cannot show yet:
/// ours, or the partner's that our feedback waits in. The margin covers a lost feedback batch
/// or two (they come every 100 ms).
const STALL_MARGIN: Duration = Duration::from_millis(250);
/// How long the lag of recent feedback is remembered.
const LAG_WINDOW: Duration = Duration::from_secs(1);
/// While feedback stays away the estimate halves this often.
const STALL_CUT_SPACING: Duration = Duration::from_millis(100);

/// The estimator. See the module documentation.
#[derive(Debug, Clone)]
pub struct CongestionController {
    config: CongestionConfig,
    estimate: f64,
    trend: Trend,
    /// The reference departure instant one-way delays are measured from.
    epoch: Option<Instant>,
    /// Minimum one-way delay (seconds) per second of feedback, for the base delay's window.
    base: VecDeque<(Instant, f64)>,
    /// The standing queue seen in the last feedback batch, and how much it grew since the one
    /// before.
    queue: Option<Duration>,
    queue_rise: Duration,
    /// The longest queueing delay of the last feedback batch.
    batch_max_queue: Duration,
    /// Arrivals (partner's clock) and sizes of the packets of the last rate window.
    arrivals: VecDeque<(Duration, usize)>,
    /// Departures (since `epoch`) and sizes of the packets, arrived or lost, of the last rate window.
    departures: VecDeque<(Duration, usize)>,
    /// Feedback time and fate (arrived or not) of the packets of the last loss window.
    fates: VecDeque<(Instant, bool)>,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    /// The arrival rate when congestion last showed.
    congested_at: Option<f64>,
    /// The newest departure any feedback reported.
    newest_reported: Option<Instant>,
    /// When each recent batch came and how long after its newest packet left.
    lags: VecDeque<(Instant, Duration)>,
}

impl CongestionController {
    pub fn new(config: CongestionConfig) -> Self {
        let estimate = config.start_bps.clamp(config.min_bps, config.max_bps);
        CongestionController {
            config,
            estimate,
            trend: Trend::Start,
            epoch: None,
            base: VecDeque::new(),
            queue: None,
            queue_rise: Duration::ZERO,
            batch_max_queue: Duration::ZERO,
            arrivals: VecDeque::new(),
            departures: VecDeque::new(),
            fates: VecDeque::new(),
            last_update: None,
            last_decrease: None,
            congested_at: None,
            newest_reported: None,
            lags: VecDeque::new(),
        }
    }

    /// The estimate, bits per second.
    pub fn estimate(&self) -> f64 {
        self.estimate
    }

    pub fn trend(&self) -> Trend {
        self.trend
    }

    /// The standing queue of the last feedback batch.
    pub fn queue_delay(&self) -> Option<Duration> {
        self.queue
    }

    /// The rate that arrived at the partner over the last half second, bits per second.
    pub fn arrival_rate(&self) -> Option<f64> {
        window_rate(&self.arrivals)
    }

    /// The rate the reported packets of the last half second left at, bits per second.
    fn departure_rate(&self) -> Option<f64> {
        window_rate(&self.departures)
    }

    /// The fraction of the last second's packets that were lost, when enough were reported.
    pub fn loss(&self) -> Option<f64> {
        if self.fates.len() < LOSS_MIN_PACKETS {
            return None;
        }
        let lost = self.fates.iter().filter(|(_, arrived)| !arrived).count();
        Some(lost as f64 / self.fates.len() as f64)
    }

    /// Takes one feedback batch (packets in send order) and updates the estimate.
    pub fn on_feedback(&mut self, now: Instant, fates: &[PacketFate]) {
        let (mut batch_min, mut batch_max): (Option<f64>, Option<f64>) = (None, None);
        for fate in fates {
            let epoch = *self.epoch.get_or_insert(fate.departure);
            // Losses of packets sent before the last decrease are paid for by it.
            if self.last_decrease.is_none_or(|cut| fate.departure >= cut) {
                self.fates.push_back((now, fate.arrival.is_some()));
            }
            let sent = fate.departure.checked_duration_since(epoch).unwrap_or_default();
            self.departures.push_back((sent, fate.size));
            let Some(arrival) = fate.arrival else { continue };
            let one_way = arrival.as_secs_f64() - sent.as_secs_f64();
            batch_min = Some(batch_min.map_or(one_way, |m: f64| m.min(one_way)));
            batch_max = Some(batch_max.map_or(one_way, |m: f64| m.max(one_way)));
            self.arrivals.push_back((arrival, fate.size));
        }
        keep_rate_window(&mut self.departures);
        while self.fates.len() > LOSS_MIN_PACKETS
            && self.fates.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > LOSS_WINDOW)
        {
            self.fates.pop_front();
        }
        keep_rate_window(&mut self.arrivals);
        if let Some(newest) = fates.iter().map(|f| f.departure).max() {
            self.newest_reported = Some(self.newest_reported.map_or(newest, |n| n.max(newest)));
            self.lags.push_back((now, now.saturating_duration_since(newest)));
            while self.lags.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > LAG_WINDOW) {
                self.lags.pop_front();
            }
        }
        if let Some((one_way, longest)) = batch_min.zip(batch_max) {
            self.remember_base(now, one_way);
            let base = self.base.iter().map(|(_, d)| *d).fold(f64::INFINITY, f64::min);
            let queue = Duration::from_secs_f64((one_way - base).max(0.0));
            self.queue_rise = self.queue.map_or(Duration::ZERO, |last| queue.saturating_sub(last));
            self.queue = Some(queue);
            self.batch_max_queue = Duration::from_secs_f64((longest - base).max(0.0));
        }
        self.update(now);
    }

    /// Checks that feedback still comes while we send (`last_sent`: when our newest packet
    /// left). When it stops, a queue has grown faster than feedback can tell: after a sudden
    /// fall of the link both ways, each side's feedback waits behind the other's media in a full
    /// router queue, for as long as that queue holds (1.6 s at 300 kbit/s behind 50 packets).
    /// Waiting for it to arrive would keep the queue full all that time, so the estimate halves
    /// every 100 ms until feedback comes again and shows where the link is.
    pub fn on_timeout(&mut self, now: Instant, last_sent: Option<Instant>) {
        let (Some(newest), Some(sent)) = (self.newest_reported, last_sent) else { return };
        let Some(lag) = self.lags.iter().map(|(_, lag)| *lag).max() else { return };
        if sent <= newest || now.saturating_duration_since(newest) <= lag + STALL_MARGIN {
            return;
        }
        if self.trend == Trend::Stall
            && self.last_decrease.is_some_and(|t| now.saturating_duration_since(t) < STALL_CUT_SPACING)
        {
            return;
        }
        self.estimate = (self.estimate * 0.5).max(self.config.min_bps);
        self.decreased(now, None, Trend::Stall);
    }

    /// Keeps the smallest one-way delay per second of feedback, for the last 30 s.
    fn remember_base(&mut self, now: Instant, one_way: f64) {
        match self.base.back_mut() {
            Some((at, d)) if now.saturating_duration_since(*at) < Duration::from_secs(1) => *d = d.min(one_way),
            _ => self.base.push_back((now, one_way)),
        }
        while self.base.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > BASE_WINDOW) {
            self.base.pop_front();
        }
    }

    fn update(&mut self, now: Instant) {
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_millis(500));
        self.last_update = Some(now);
        let arrived = match self.arrival_rate() {
            Some(rate) => rate,
            None if self.loss().is_some() => 0.0,
            None => return,
        };
        let queue = self.queue.unwrap_or_default();
        let loss = self.loss().unwrap_or(0.0);
        // Too few packets since the last cut to decrease on, but enough to see that losses go
        // on: no growth meanwhile.
        let lost = self.fates.iter().filter(|(_, arrived)| !arrived).count();
        let losing = self.fates.len() >= LOSS_MIN_PACKETS / 5 && lost * 10 > self.fates.len();
        let largest = self.arrivals.iter().map(|(_, size)| *size).max().unwrap_or(1200);
        let threshold = delay_threshold(arrived, largest);
        let may_decrease = self.last_decrease.is_none_or(|t| now.saturating_duration_since(t) >= DECREASE_SPACING);
        let (min, max) = (self.config.min_bps, self.config.max_bps);
        // A queue halfway to the threshold and rising fast (we send well above the link, as
        // when ramping past it) is acted on before it gets there.
        let rising = queue > threshold / 2 && self.queue_rise > QUEUE_RISE;
        // Before congestion first shows, a link thinner than the start is seen in the first
        // batches: we send clearly faster than packets arrive and the queue grows within the
        // batch. The batch's smallest delay (the standing queue) shows it a batch later, and
        // the partner's feedback comes through its own flooded queue, so waiting for it let a
        // 300 kbit/s start fill a 150 kbit/s link's queue by half a second.
        let saturated_start = self.congested_at.is_none()
            && self.batch_max_queue > threshold / 2
            && self.departure_rate().is_some_and(|sent| sent > arrived * START_SATURATED);
        if queue > threshold || rising || saturated_start {
            // A standing queue while we send more than arrives means the link is full: what
            // arrives is what it carries, worth remembering even when too soon after the last
            // decrease to act on it. While we send less than that (the queue drains), the
            // rate says nothing of the link's.
            if self.departure_rate().is_some_and(|sent| sent > arrived * SATURATED)
                || self.congested_at.is_none_or(|at| arrived > at)
            {
                self.congested_at = Some(arrived);
            }
            if may_decrease {
                // Below what arrives, and further below the longer the queue: what is queued
                // drains within about a second.
                let factor = (0.85 - queue.as_secs_f64()).max(0.0);
                self.estimate = (arrived * factor).min(self.estimate).max(min);
                self.decreased(now, None, Trend::Delay);
            }
        } else if loss > 0.1 {
            if may_decrease {
                self.estimate = (self.estimate * (1.0 - 0.5 * loss)).max(arrived * 0.5).min(self.estimate).max(min);
                // Loss with a queue building is congestion: its rate is where the link ends.
                // Loss without one may be a lossy radio; it says nothing of the link's rate.
                let congested = (queue > threshold / 2).then_some(arrived);
                self.decreased(now, congested, Trend::Loss);
            }
        } else if queue < threshold / 2 && !losing {
            // Random loss below the decrease threshold is no reason to stop growing: loss from
            // congestion comes with a queue on the links we meet, and the queue rules it.
            // Quickly back up to where congestion last showed after a deep cut; past it,
            // faster once no congestion came for a while (the link may have widened) or far
            // above it; gently near it.
            let stale = self.last_decrease.is_none_or(|t| now.saturating_duration_since(t) > FORGET_AFTER);
            let (per_second, trend) = match self.congested_at {
                None => (RAMP_PER_SECOND, Trend::Ramp),
                Some(at) if self.estimate < at * 0.7 => (RAMP_PER_SECOND, Trend::Ramp),
                // Past the old rate only while no queue at all shows: a widened link carries
                // more without one, an unchanged one starts queueing at once.
                Some(at) if (self.estimate > at * 1.5 || (stale && self.estimate > at)) && queue < threshold / 4 => {
                    (WIDEN_PER_SECOND, Trend::Ramp)
                }
                Some(_) => (PROBE_PER_SECOND, Trend::Probe),
            };
            let needed = (self.estimate * USED_SHARE).min(self.estimate - UNUSED_SLACK_BPS);
            let unused = self.departure_rate().is_none_or(|sent| sent < needed);
            if self.congested_at.is_some_and(|at| self.estimate > at) && unused {
                self.trend = Trend::Hold;
                return;
            }
            let grown = self.estimate * per_second.powf(elapsed.as_secs_f64());
            // Never far ahead of what actually arrives (an encoder may send less than allowed).
            let ceiling = (arrived * 2.0 + 100_000.0).max(self.estimate);
            self.estimate = grown.min(ceiling).clamp(min, max);
            self.trend = trend;
        } else {
            self.trend = Trend::Hold;
        }
    }

    /// Notes a decrease, and the rate where congestion showed if it did.
    fn decreased(&mut self, now: Instant, congested_at: Option<f64>, trend: Trend) {
        self.last_decrease = Some(now);
        // Losses so far, and those of packets already on their way, are paid for by this cut.
        self.fates.clear();
        if congested_at.is_some() {
            self.congested_at = congested_at;
        }
        self.trend = trend;
    }
}

/// The rate of a window of (time, bytes) packets, bits per second, over at least 100 ms (a
/// burst must not read as a huge rate).
fn window_rate(window: &VecDeque<(Duration, usize)>) -> Option<f64> {
    let (first, last) = (window.front()?.0, window.back()?.0);
    let span = last.saturating_sub(first).max(Duration::from_millis(100));
    let bytes: usize = window.iter().map(|(_, size)| size).sum();
    Some(bytes as f64 * 8.0 / span.as_secs_f64())
}

/// Drops what is older than [`RATE_WINDOW`] before the newest packet of the window.
fn keep_rate_window(window: &mut VecDeque<(Duration, usize)>) {
    if let Some(newest) = window.iter().map(|(at, _)| *at).max() {
        while window.front().is_some_and(|(at, _)| newest.saturating_sub(*at) > RATE_WINDOW) {
            window.pop_front();
        }
    }
}

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated path: a bottleneck of `rate` bits per second with a FIFO of `queue` packets
    /// (tail drop), a fixed propagation delay, and a sender that sends at the estimate in
    /// 1200-byte packets, getting feedback every 100 ms.
    struct Path {
        rate: f64,
        queue_packets: usize,
        propagation: Duration,
        /// When the bottleneck is free again (seconds since start).
        busy_until: f64,
        /// Departure times (seconds) of the packets in the queue, for its occupancy.
        in_queue: VecDeque<f64>,
        /// Every `lose_every`th packet is lost on the wire, if set.
        lose_every: Option<u64>,
        /// Each packet is lost with this probability (a fixed pseudo-random sequence), if set.
        lose_randomly: Option<f64>,
        rng: u64,
        sent: u64,
        /// The most the sender sends, bits per second, whatever the estimate (an encoder with
        /// little to say), if set.
        sender_limit: Option<f64>,
    }

    impl Path {
        fn new(rate: f64, queue_packets: usize) -> Self {
            Path {
                rate,
                queue_packets,
                propagation: Duration::from_millis(10),
                busy_until: 0.0,
                in_queue: VecDeque::new(),
                lose_every: None,
                lose_randomly: None,
                rng: 0x2545_f491_4f6c_dd1d,
                sent: 0,
                sender_limit: None,
            }
        }

        /// Sends a packet of `size` bytes at `t` seconds; returns its arrival (seconds) or None.
        fn send(&mut self, t: f64, size: usize) -> Option<f64> {
            self.sent += 1;
            while self.in_queue.front().is_some_and(|done| *done <= t) {
                self.in_queue.pop_front();
            }
            if self.in_queue.len() >= self.queue_packets {
                return None;
            }
            let start = self.busy_until.max(t);
            self.busy_until = start + size as f64 * 8.0 / self.rate;
            self.in_queue.push_back(self.busy_until);
            if self.lose_every.is_some_and(|n| self.sent % n == 0) {
                return None;
            }
            if let Some(p) = self.lose_randomly {
                // xorshift64: a fixed, well-spread sequence.
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                if (self.rng % 10_000) as f64 / 10_000.0 < p {
                    return None;
                }
            }
            Some(self.busy_until + self.propagation.as_secs_f64())
        }
    }

    /// Runs `seconds` of sending at the estimate through `path`; returns the estimate and the
    /// standing queue (s) each 100 ms.
    fn run(
        cc: &mut CongestionController,
        path: &mut Path,
        start: Instant,
        from: f64,
        seconds: f64,
        change: impl Fn(f64, &mut Path),
    ) -> Vec<(f64, f64, f64)> {
        let mut t = from;
        let mut pending: Vec<PacketFate> = Vec::new();
        let mut next_feedback = from + 0.1;
        let mut trace = Vec::new();
        let mut credit = 0.0;
        while t < from + seconds {
            change(t, path);
            let step = 0.002;
            credit += cc.estimate().min(path.sender_limit.unwrap_or(f64::INFINITY)) * step / 8.0;
            while credit >= 1200.0 {
                credit -= 1200.0;
                let arrival = path.send(t, 1200);
                pending.push(PacketFate {
                    departure: start + Duration::from_secs_f64(t),
                    arrival: arrival.map(|a| Duration::from_secs_f64(a + 1000.0)),
                    size: 1200,
                });
            }
            t += step;
            if t >= next_feedback {
                next_feedback += 0.1;
                // Feedback covers packets that arrived by now (or were lost), and itself takes
                // the propagation delay to come back.
                let ready: Vec<PacketFate> = pending
                    .iter()
                    .filter(|f| f.arrival.is_none_or(|a| a.as_secs_f64() - 1000.0 <= t - 0.01))
                    .copied()
                    .collect();
                pending.retain(|f| !f.arrival.is_none_or(|a| a.as_secs_f64() - 1000.0 <= t - 0.01));
                cc.on_feedback(start + Duration::from_secs_f64(t), &ready);
                let queued = (path.busy_until - t).max(0.0);
                trace.push((t, cc.estimate(), queued));
            }
        }
        trace
    }

    fn steady(trace: &[(f64, f64, f64)], from: f64) -> (f64, f64) {
        let tail: Vec<_> = trace.iter().filter(|(t, _, _)| *t >= from).collect();
        let mean_rate = tail.iter().map(|(_, r, _)| r).sum::<f64>() / tail.len() as f64;
        let max_queue = tail.iter().map(|(_, _, q)| *q).fold(0.0, f64::max);
        (mean_rate, max_queue)
    }

    #[test]
    fn it_follows_a_thin_link_down_and_keeps_the_queue_short() {
        for (rate, packets) in [(500_000.0, 50), (250_000.0, 50), (150_000.0, 50), (2_500_000.0, 300)] {
            let mut cc = CongestionController::new(CongestionConfig::default());
            let mut path = Path::new(rate, packets);
            let trace = run(&mut cc, &mut path, Instant::now(), 0.0, 30.0, |_, _| {});
            let (mean, max_queue) = steady(&trace, 10.0);
            assert!(mean > rate * 0.6, "{rate}: estimate {mean:.0} uses too little of the link");
            assert!(mean < rate * 1.05, "{rate}: estimate {mean:.0} above the link");
            assert!(max_queue < 0.35, "{rate}: queue grew to {max_queue:.3} s");
        }
    }

    #[test]
    fn it_ramps_up_quickly_on_a_wide_link() {
        let mut cc = CongestionController::new(CongestionConfig::default());
        let mut path = Path::new(10_000_000.0, 300);
        let trace = run(&mut cc, &mut path, Instant::now(), 0.0, 4.0, |_, _| {});
        let at_3s = trace.iter().find(|(t, _, _)| *t >= 3.0).expect("3 s of trace").1;
        assert!(at_3s >= 2_000_000.0, "only {at_3s:.0} after 3 s");
        assert!(cc.estimate() <= CongestionConfig::default().max_bps);
    }

    #[test]
    fn random_loss_below_ten_percent_does_not_pin_it_to_the_floor() {
        let mut cc = CongestionController::new(CongestionConfig::default());
        let mut path = Path::new(2_000_000.0, 50);
        path.lose_every = Some(20); // 5 % loss.
        let trace = run(&mut cc, &mut path, Instant::now(), 0.0, 20.0, |_, _| {});
        let (mean, _) = steady(&trace, 10.0);
        assert!(mean > 1_000_000.0, "5 % loss held the estimate at {mean:.0}");
    }

    #[test]
    fn random_loss_on_a_thin_link_leaves_it_near_the_link_rate() {
        // Few packets a second make 5 % random loss look like more now and then; that must not
        // drag the estimate down.
        let mut cc = CongestionController::new(CongestionConfig::default());
        let mut path = Path::new(1_000_000.0, 50);
        path.lose_randomly = Some(0.05);
        let trace = run(&mut cc, &mut path, Instant::now(), 0.0, 40.0, |_, _| {});
        let (mean, _) = steady(&trace, 20.0);
        assert!(mean > 700_000.0, "5 % random loss held the estimate at {mean:.0}");
    }

    #[test]
    fn heavy_loss_lowers_it() {
        let mut cc = CongestionController::new(CongestionConfig::default());
        let mut path = Path::new(5_000_000.0, 300);
        path.lose_every = Some(3); // 33 % loss.
        let trace = run(&mut cc, &mut path, Instant::now(), 0.0, 10.0, |_, _| {});
        let (mean, _) = steady(&trace, 5.0);
        assert!(mean < 1_000_000.0, "33 % loss left the estimate at {mean:.0}");
    }

    #[test]
    fn after_a_fall_the_queue_drains_within_three_seconds_and_it_climbs_back() {
        let mut cc = CongestionController::new(CongestionConfig::default());
        let mut path = Path::new(2_500_000.0, 50);
        let trace = run(&mut cc, &mut path, Instant::now(), 0.0, 70.0, |t, path| {
            path.rate = if (20.0..40.0).contains(&t) { 300_000.0 } else { 2_500_000.0 };
        });
        // Latency back under 200 ms (queue plus propagation) within 3 s of the fall.
        let late = trace.iter().filter(|(t, _, q)| *t >= 23.0 && *t < 40.0 && *q > 0.19).count();
        assert_eq!(late, 0, "the queue stayed long after the fall: {trace:?}");
        let (during, _) = steady(&trace.iter().copied().filter(|(t, _, _)| *t < 40.0).collect::<Vec<_>>(), 25.0);
        assert!(during > 150_000.0 && during < 320_000.0, "estimate {during:.0} while the link gives 300k");
        let (after, _) = steady(&trace, 62.0);
        assert!(after > 1_500_000.0, "estimate {after:.0} 22 s after the link came back");
    }

    #[test]
    fn an_estimate_the_sender_does_not_use_stops_growing_past_the_link_rate() {
        // The link widens at 15 s, but the sender has only 300 kbit/s to say until 40 s: the
        // estimate stays near what is sent; then it uses everything and the estimate climbs.
        let mut cc = CongestionController::new(CongestionConfig::default());
        let mut path = Path::new(500_000.0, 50);
        let trace = run(&mut cc, &mut path, Instant::now(), 0.0, 70.0, |t, path| {
            path.rate = if t < 15.0 { 500_000.0 } else { 5_000_000.0 };
            path.sender_limit = (15.0..40.0).contains(&t).then_some(300_000.0);
        });
        let held = trace.iter().filter(|(t, _, _)| (20.0..40.0).contains(t)).map(|(_, r, _)| *r).fold(0.0, f64::max);
        assert!(held < 600_000.0, "an unused estimate grew to {held:.0}");
        let (after, _) = steady(&trace, 60.0);
        assert!(after > 1_500_000.0, "estimate {after:.0} 20 s after the sender used it all");
    }

    #[test]
    fn it_stays_within_its_bounds() {
        let config = CongestionConfig { start_bps: 1e9, min_bps: 50_000.0, max_bps: 1_000_000.0 };
        let cc = CongestionController::new(config);
        assert_eq!(cc.estimate(), 1_000_000.0);
        let mut cc = CongestionController::new(CongestionConfig::default());
        let now = Instant::now();
        // Every packet lost: the estimate falls, but not below its floor.
        for i in 0..100u64 {
            let at = now + Duration::from_millis(100 * i);
            let fates: Vec<_> = (0..30).map(|_| PacketFate { departure: at, arrival: None, size: 1200 }).collect();
            cc.on_feedback(at, &fates);
        }
        assert_eq!(cc.estimate(), CongestionConfig::default().min_bps);
    }
}

//! The audio jitter buffer: packets keyed by RTP sequence number and timestamp go in as they
//! arrive, and come out in order, one per 20 ms playout tick, after a delay that follows the
//! observed jitter (between 20 and 200 ms by default). A packet that is not there when its turn
//! comes is reported missing, with the following packet attached when it already arrived, so the
//! decoder can recover it from in-band FEC or conceal it. Pure: the time is an input, no clock
//! reads, and the buffer holds a bounded number of packets.
//!
//! A packet that is late rather than lost is waited for: when neither it nor anything after it
//! has arrived, the stream as a whole is running late (a router queue swelling), so the tick
//! plays nothing (the caller conceals a frame, stretching the delay) and the packet plays when it
//! comes, up to [`LATE_LIMIT`] behind the fastest path. Only a packet overtaken by a later one,
//! or one later than that, is reported missing.
//!
//! Timing: a packet's transit is its arrival time minus its RTP time. The smallest transit over
//! the last [`WINDOW`] packets is the network's base delay; the largest over the last
//! [`PEAK_MEMORY`] above it is the jitter, and the target delay is the jitter plus half a frame,
//! clamped. The peak is remembered longer than the base: a congested link's queue swells every
//! few seconds as the sender probes for more bandwidth, and a target that forgot the last swell
//! after two seconds of calm would lose packets to the next one.
//!
//! At each tick the buffer compares how long the due packet has been (or would have been)
//! waiting for the base-delay path with the target: too early and it plays nothing (the caller
//! conceals one frame, stretching the delay); more than a frame too late and the packet comes
//! out marked [`Slot::Packet::hurry`], for the caller to play it shorter (see
//! `time_stretch`), so the delay comes down without a packet going unplayed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Packets whose transit times set the jitter estimate (about 2.5 s of 20 ms packets).
pub const WINDOW: usize = 128;
/// How long the largest transit counts towards the target delay.
pub const PEAK_MEMORY: Duration = Duration::from_secs(10);
/// Most transits remembered for the peak (10 s of 20 ms packets, with room for duplicates).
const PEAK_CAPACITY: usize = 1024;
/// Playout ticks of consecutive loss with an empty buffer after which the buffer starts over
/// (waits for the target delay again) when packets return.
const RESYNC_AFTER_MISSING: u32 = 50;
/// How far behind the fastest path a packet that nothing has overtaken is still waited for.
pub const LATE_LIMIT: Duration = Duration::from_millis(400);
/// A sequence number this far from the newest one means the stream restarted.
const RESET_DISTANCE: i64 = 3000;

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate (48 kHz for Opus).
    pub clock_rate: u32,
    /// RTP timestamp ticks per packet (960 for 20 ms Opus).
    pub frame_ticks: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Most packets held; the oldest go first when more arrive.
    pub capacity: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            clock_rate: 48_000,
            frame_ticks: 960,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            capacity: 32,
        }
    }
}

/// What the buffer did with a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Accepted,
    /// Its turn has passed (played or reported missing); dropped.
    Late,
    /// Already held; dropped.
    Duplicate,
    /// The sequence number jumped so far that the stream must have restarted: the buffer was
    /// emptied and starts over with this packet.
    Restarted,
}

/// What to play at this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// The packet due now. `hurry`: the delay is more than a frame above the target; play this
    /// packet shorter if its sound allows.
    Packet { seq: u16, timestamp: u32, payload: Vec<u8>, hurry: bool },
    /// The packet due now is lost or too late. `next` is the following packet's payload if it has
    /// already arrived (decode its in-band FEC for this frame); otherwise conceal the frame.
    Missing { seq: u16, next: Option<Vec<u8>> },
}

/// Counters since the buffer was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub accepted: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Packets reported as [`Slot::Missing`].
    pub missing: u64,
    /// Packets handed out with `hurry` set, to bring the delay down to the target.
    pub hurried: u64,
    /// Packets dropped because the buffer was full.
    pub overflowed: u64,
    /// Ticks that played nothing to build the delay up to the target, or to wait for a late
    /// packet.
    pub stretched: u64,
    /// Of those, ticks spent waiting for a late packet.
    pub waited_late: u64,
    pub restarts: u64,
}

#[derive(Debug, Clone)]
struct Held {
    seq: u16,
    timestamp: u32,
    /// RTP time in microseconds on the unwrapped timeline.
    rtp_us: i64,
    payload: Vec<u8>,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new(JitterConfig::default())
    }
}

/// Reorders, delays and reports lost audio packets. See the module documentation.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    /// Time zero of the local timeline.
    epoch: Option<Instant>,
    packets: BTreeMap<i64, Held>,
    /// Newest extended sequence number and unwrapped timestamp seen.
    newest: Option<(i64, i64)>,
    /// Next extended sequence number to play; `None` before the first tick that plays.
    next: Option<i64>,
    /// Whether ticks are playing (false while buffering up to the target delay).
    playing: bool,
    /// RTP time of the last packet played or reported missing.
    last_rtp_us: i64,
    missing_run: u32,
    /// (arrival, transit) of the packets of the last [`PEAK_MEMORY`], and at least of the last
    /// [`WINDOW`] packets, in arrival order.
    recent: VecDeque<(i64, i64)>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        Self {
            config,
            epoch: None,
            packets: BTreeMap::new(),
            newest: None,
            next: None,
            playing: false,
            last_rtp_us: 0,
            missing_run: 0,
            recent: VecDeque::new(),
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Whether ticks are playing the stream (false before it starts, and after a long silence
    /// until it is back at the target delay).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The delay the buffer aims for: the largest transit of the last [`PEAK_MEMORY`] above the
    /// smallest of the last [`WINDOW`] packets.
    pub fn target_delay(&self) -> Duration {
        let spread = match (self.peak_transit(), self.base_transit()) {
            (Some(max), Some(min)) => (max - min).max(0),
            _ => 0,
        };
        let frame = self.frame_us();
        let wanted = Duration::from_micros(u64::try_from(spread + frame / 2).unwrap_or(0));
        wanted.clamp(self.config.min_delay, self.config.max_delay.max(self.config.min_delay))
    }

    /// Takes in a packet that arrived at `now`.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Vec<u8>) -> Pushed {
        let now_us = self.local_us(now);
        let mut outcome = Pushed::Accepted;
        let (ext_seq, ext_ts) = match self.newest {
            None => (i64::from(seq), i64::from(timestamp)),
            Some((newest_seq, newest_ts)) => {
                let ext_seq = newest_seq + i64::from(seq.wrapping_sub(newest_seq as u16) as i16);
                let ext_ts = newest_ts + i64::from(timestamp.wrapping_sub(newest_ts as u32) as i32);
                if (ext_seq - newest_seq).abs() > RESET_DISTANCE {
                    self.restart();
                    outcome = Pushed::Restarted;
                    (i64::from(seq), i64::from(timestamp))
                } else {
                    (ext_seq, ext_ts)
                }
            }
        };
        if self.newest.is_none_or(|(newest_seq, _)| ext_seq > newest_seq) {
            self.newest = Some((ext_seq, ext_ts));
        }
        let rtp_us = ext_ts * 1_000_000 / i64::from(self.config.clock_rate.max(1));
        self.recent.push_back((now_us, now_us - rtp_us));
        let memory = Self::peak_memory_us();
        while self.recent.len() > PEAK_CAPACITY
            || (self.recent.len() > WINDOW && self.recent.front().is_some_and(|&(at, _)| at < now_us - memory))
        {
            self.recent.pop_front();
        }

        if self.next.is_some_and(|next| ext_seq < next) {
            self.stats.late += 1;
            return Pushed::Late;
        }
        if self.packets.contains_key(&ext_seq) {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        self.packets.insert(ext_seq, Held { seq, timestamp, rtp_us, payload });
        self.stats.accepted += 1;
        while self.packets.len() > self.config.capacity.max(1) {
            if let Some((oldest, _)) = self.packets.pop_first() {
                self.stats.overflowed += 1;
                if self.next.is_some_and(|next| next <= oldest) {
                    self.next = Some(oldest + 1);
                }
            }
        }
        outcome
    }

    /// What to play at the playout tick `now`; call once per 20 ms of audio played. `None` means
    /// nothing is due: play silence before the first packet, or a concealed frame (or silence)
    /// while the buffer builds up its delay.
    pub fn pop(&mut self, now: Instant) -> Option<Slot> {
        let now_us = self.local_us(now);
        let base = self.base_transit()?;
        let target = i64::try_from(self.target_delay().as_micros()).unwrap_or(i64::MAX);
        let frame = self.frame_us();

        if !self.playing {
            // Start when the oldest packet has waited the target delay along the fastest path.
            let (first, rtp_us) = self
                .packets
                .iter()
                .find(|(&seq, _)| self.next.is_none_or(|next| seq >= next))
                .map(|(&seq, held)| (seq, held.rtp_us))?;
            if now_us - (rtp_us + base) < target - frame / 2 {
                return None;
            }
            self.playing = true;
            self.next = Some(first);
            self.last_rtp_us = rtp_us - frame;
            self.missing_run = 0;
        }

        let next = self.next?;
        let due_rtp =
            |buffer: &Self, seq: i64| buffer.packets.get(&seq).map_or(buffer.last_rtp_us + frame, |held| held.rtp_us);
        let waited = now_us - (due_rtp(self, next) + base);
        if waited < target - frame / 2 {
            // Too early: the target grew (or the base delay did). Play nothing this tick.
            self.stats.stretched += 1;
            return None;
        }
        let overtaken = self.packets.range(next..).next().is_some();
        let late_limit = i64::try_from(LATE_LIMIT.as_micros()).unwrap_or(i64::MAX);
        if !overtaken && self.missing_run == 0 && waited < late_limit {
            // Neither this packet nor any after it is here: the stream is late, not lost.
            self.stats.stretched += 1;
            self.stats.waited_late += 1;
            return None;
        }
        self.next = Some(next + 1);

        if let Some(held) = self.packets.remove(&next) {
            self.missing_run = 0;
            self.last_rtp_us = held.rtp_us;
            let hurry = waited > target + frame;
            self.stats.hurried += u64::from(hurry);
            return Some(Slot::Packet { seq: held.seq, timestamp: held.timestamp, payload: held.payload, hurry });
        }
        self.stats.missing += 1;
        self.missing_run += 1;
        self.last_rtp_us += frame;
        if self.missing_run >= RESYNC_AFTER_MISSING && self.packets.is_empty() {
            // A long silence: when packets come back, wait for the target delay again.
            self.playing = false;
        }
        let next_payload = self.packets.get(&(next + 1)).map(|held| held.payload.clone());
        Some(Slot::Missing { seq: next as u16, next: next_payload })
    }

    fn restart(&mut self) {
        self.packets.clear();
        self.newest = None;
        self.next = None;
        self.playing = false;
        self.recent.clear();
        self.stats.restarts += 1;
    }

    /// The smallest transit of the last [`WINDOW`] packets: the network's base delay.
    fn base_transit(&self) -> Option<i64> {
        self.recent.iter().rev().take(WINDOW).map(|&(_, transit)| transit).min()
    }

    /// The largest transit of the packets of the last [`PEAK_MEMORY`] before the newest.
    fn peak_transit(&self) -> Option<i64> {
        let &(newest, _) = self.recent.back()?;
        let memory = Self::peak_memory_us();
        self.recent.iter().filter(|&&(at, _)| at >= newest - memory).map(|&(_, transit)| transit).max()
    }

    fn peak_memory_us() -> i64 {
        i64::try_from(PEAK_MEMORY.as_micros()).unwrap_or(i64::MAX)
    }

    fn frame_us(&self) -> i64 {
        i64::from(self.config.frame_ticks) * 1_000_000 / i64::from(self.config.clock_rate.max(1))
    }

    fn local_us(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        i64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(20);

    fn payload(seq: u16) -> Vec<u8> {
        seq.to_be_bytes().to_vec()
    }

    /// Pushes packet `seq` (timestamp `seq * 960`) at `at`.
    fn push(buffer: &mut JitterBuffer, at: Instant, seq: u16) -> Pushed {
        buffer.push(at, seq, u32::from(seq).wrapping_mul(960), payload(seq))
    }

    /// What a tick played, compactly: `"7"` for packet 7 (`"7>"` when hurried), `"x7"` for a
    /// missing packet 7 (`"x7+fec"` when packet 8 came with it) and `"-"` for nothing.
    fn describe(slot: Option<Slot>) -> String {
        match slot {
            None => "-".into(),
            Some(Slot::Packet { seq, payload, hurry, .. }) => {
                assert_eq!(payload, super::tests::payload(seq));
                if hurry {
                    format!("{seq}>")
                } else {
                    format!("{seq}")
                }
            }
            Some(Slot::Missing { seq, next: Some(next) }) => {
                assert_eq!(next, super::tests::payload(seq.wrapping_add(1)));
                format!("x{seq}+fec")
            }
            Some(Slot::Missing { seq, next: None }) => format!("x{seq}"),
        }
    }

    /// The packet a tick played, if it played one.
    fn number(played: &str) -> Option<u16> {
        played.trim_end_matches('>').parse().ok()
    }

    /// Runs a scenario: packet `i` is sent at `i * 20 ms` and arrives `delay(i)` later (`None`
    /// loses it); a tick runs every 20 ms, offset by 7 ms from the sends. Returns what each tick
    /// played.
    fn run(ticks: u32, delay: impl Fn(u16) -> Option<Duration>, config: JitterConfig) -> (Vec<String>, JitterBuffer) {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(config);
        let mut arrivals: Vec<(Duration, u16)> =
            (0..ticks as u16).filter_map(|seq| delay(seq).map(|d| (TICK * u32::from(seq) + d, seq))).collect();
        arrivals.sort();
        let mut arrivals = arrivals.into_iter().peekable();
        let mut played = Vec::new();
        for tick in 0..ticks {
            let now = TICK * tick + Duration::from_millis(7);
            while let Some(&(at, seq)) = arrivals.peek() {
                if at > now {
                    break;
                }
                push(&mut buffer, start + at, seq);
                arrivals.next();
            }
            played.push(describe(buffer.pop(start + now)));
            assert!(buffer.len() <= config.capacity);
        }
        (played, buffer)
    }

    #[test]
    fn steady_stream_plays_in_order_after_the_minimum_delay() {
        let (played, buffer) = run(50, |_| Some(Duration::from_millis(5)), JitterConfig::default());
        assert_eq!(played[0], "-", "the first tick waits for the delay");
        let expected: Vec<String> = (0..49).map(|s| s.to_string()).collect();
        assert_eq!(played[1..], expected[..]);
        assert_eq!(buffer.target_delay(), Duration::from_millis(20));
        assert_eq!(buffer.stats().missing, 0);
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        // Every pair arrives swapped: odd packets 5 ms early, even ones 25 ms late.
        let delay = |seq: u16| Some(Duration::from_millis(if seq % 2 == 0 { 30 } else { 5 }));
        let (played, buffer) = run(60, delay, JitterConfig::default());
        let numbers: Vec<u16> = played.iter().filter_map(|p| number(p)).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{played:?}");
        assert!(numbers.len() >= 55, "{played:?}");
        assert_eq!(buffer.stats().missing, 0, "{played:?}");
        assert_eq!(buffer.stats().late, 0);
    }

    #[test]
    fn lost_packets_are_reported_with_the_next_payload_for_fec() {
        let delay = |seq: u16| (seq != 10 && seq != 20 && seq != 21).then_some(Duration::from_millis(5));
        let (played, buffer) = run(40, delay, JitterConfig::default());
        assert!(played.contains(&"x10+fec".to_string()), "{played:?}");
        assert!(played.contains(&"x20".to_string()), "{played:?}");
        assert!(played.contains(&"x21+fec".to_string()), "{played:?}");
        assert_eq!(buffer.stats().missing, 3);
        let numbers: Vec<u16> = played.iter().filter_map(|p| number(p)).collect();
        assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{played:?}");
        // Packet 20's turn came with neither it nor 21 there: the buffer waited one tick for the
        // stream (it might have been late), then packet 22 showed both lost.
        assert_eq!(buffer.stats().waited_late, 1, "{played:?}");
        assert_eq!(numbers.len(), 35);
    }

    #[test]
    fn late_packets_are_dropped_and_counted() {
        // Packet 15 arrives 150 ms late, long after its turn.
        let delay = |seq: u16| Some(Duration::from_millis(if seq == 15 { 150 } else { 5 }));
        let config = JitterConfig { max_delay: Duration::from_millis(40), ..JitterConfig::default() };
        let (played, buffer) = run(40, delay, config);
        assert!(played.iter().any(|p| p.starts_with("x15")), "{played:?}");
        assert!(!played.contains(&"15".to_string()));
        assert_eq!(buffer.stats().late, 1);
    }

    #[test]
    fn delay_grows_with_jitter_and_stays_bounded() {
        // Delays alternate between 5 and 85 ms: 80 ms of jitter.
        let delay = |seq: u16| Some(Duration::from_millis(if seq % 4 == 0 { 85 } else { 5 }));
        let (played, buffer) = run(200, delay, JitterConfig::default());
        let target = buffer.target_delay();
        assert!(target >= Duration::from_millis(80) && target <= Duration::from_millis(100), "{target:?}");
        // Once adapted, nothing is lost.
        let tail = &played[100..];
        assert!(tail.iter().all(|p| number(p).is_some()), "{tail:?}");
        let numbers: Vec<u16> = played.iter().filter_map(|p| number(p)).collect();
        assert!(numbers.windows(2).all(|w| w[1] > w[0]));

        // Huge jitter is capped at the maximum delay.
        let wild = |seq: u16| Some(Duration::from_millis(if seq % 5 == 0 { 900 } else { 1 }));
        let (_, buffer) = run(100, wild, JitterConfig::default());
        assert_eq!(buffer.target_delay(), Duration::from_millis(200));
    }

    #[test]
    fn packets_are_hurried_while_the_delay_is_above_the_target() {
        // 150 ms spikes early on, then a clean network: once the spikes are forgotten (after
        // PEAK_MEMORY) the target falls and every packet comes out hurried, none dropped (this
        // harness plays each at full length, so the delay stays where it was).
        let delay = |seq: u16| Some(Duration::from_millis(if seq < 40 && seq % 10 == 0 { 150 } else { 2 }));
        let (played, buffer) = run(800, delay, JitterConfig::default());
        assert_eq!(buffer.target_delay(), Duration::from_millis(20));
        assert!(played[..500].iter().all(|p| !p.ends_with('>')), "{:?}", &played[..500]);
        assert!(played[700..].iter().all(|p| p.ends_with('>')), "{:?}", &played[700..]);
        let numbers: Vec<u16> = played.iter().filter_map(|p| number(p)).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "nothing skipped: {played:?}");
        assert_eq!(buffer.stats().hurried, played.iter().filter(|p| p.ends_with('>')).count() as u64);

        // A steady stream is never hurried.
        let (played, buffer) = run(300, |_| Some(Duration::from_millis(5)), JitterConfig::default());
        assert!(played.iter().all(|p| !p.ends_with('>')), "{played:?}");
        assert_eq!(buffer.stats().hurried, 0);
    }

    #[test]
    fn a_late_stream_is_waited_for_and_a_lost_packet_is_not() {
        // Packets 20..30 are held 120 ms more by a swelling queue (in order); packet 50 is lost.
        let delay = |seq: u16| match seq {
            20..30 => Some(Duration::from_millis(125)),
            50 => None,
            _ => Some(Duration::from_millis(5)),
        };
        let (played, buffer) = run(120, delay, JitterConfig::default());
        let numbers: Vec<u16> = played.iter().filter_map(|p| number(p)).collect();
        assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{played:?}");
        for seq in 20..30 {
            assert!(numbers.contains(&seq), "late packet {seq} was not played: {played:?}");
        }
        assert!(played.contains(&"x50+fec".to_string()), "{played:?}");
        let stats = buffer.stats();
        assert_eq!((stats.missing, stats.late), (1, 0), "{stats:?} {played:?}");
        assert!(stats.waited_late >= 5, "{stats:?}");
    }

    #[test]
    fn a_late_packet_is_not_waited_for_beyond_the_limit() {
        // Everything from packet 20 on arrives a second late: the buffer waits LATE_LIMIT, then
        // reports the missing packets rather than waiting on.
        let delay = |seq: u16| Some(Duration::from_millis(if seq >= 20 { 1_005 } else { 5 }));
        let (played, buffer) = run(60, delay, JitterConfig::default());
        // The first tick waits for the delay; ticks 1-20 play packets 0-19.
        assert_eq!(played[20], "19", "{played:?}");
        let waits = played.iter().skip(21).take_while(|p| *p == "-").count();
        let limit = (LATE_LIMIT.as_millis() / 20) as usize;
        assert!((limit - 2..=limit).contains(&waits), "{waits} ticks waited: {played:?}");
        assert!(played[21 + waits].starts_with('x'), "{played:?}");
        assert!(buffer.stats().missing > 0);
    }

    #[test]
    fn a_queue_that_swells_every_few_seconds_loses_nothing_after_the_first_swell() {
        // A congested link: every 8 s the queue grows to 120 ms over a second, then drains over
        // half a second (the sender probing for bandwidth and backing off).
        let swell = |seq: u16| {
            let ms = (u64::from(seq) * 20) % 8_000;
            let queue = match ms {
                0..1_000 => ms * 120 / 1_000,
                1_000..1_500 => 120 - (ms - 1_000) * 120 / 500,
                _ => 0,
            };
            Some(Duration::from_millis(5 + queue))
        };
        let (played, buffer) = run(2_000, swell, JitterConfig::default());
        let missing_after_first: Vec<&String> = played[500..].iter().filter(|p| p.starts_with('x')).collect();
        assert!(missing_after_first.is_empty(), "{missing_after_first:?} {:?}", buffer.stats());
        assert_eq!(buffer.stats().late, buffer.stats().missing, "every loss was a late packet");
        assert!(buffer.target_delay() >= Duration::from_millis(120), "{:?}", buffer.target_delay());
    }

    #[test]
    fn overflow_drops_the_oldest_and_stays_bounded() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig { capacity: 8, ..JitterConfig::default() });
        for seq in 0..20 {
            assert_eq!(push(&mut buffer, start, seq), Pushed::Accepted);
        }
        assert_eq!(buffer.len(), 8);
        assert_eq!(buffer.stats().overflowed, 12);
        // The oldest packets were dropped; the survivors play (the buffer may skip one more to
        // bring the delay of this burst down).
        let first = buffer.pop(start + Duration::from_millis(500));
        assert!(matches!(first, Some(Slot::Packet { seq: 12..=13, .. })), "{first:?}");
    }

    #[test]
    fn duplicates_wraparound_and_restarts() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        let mut t = start;
        let mut played = Vec::new();
        for i in 0..10u16 {
            let seq = 65_530u16.wrapping_add(i);
            let ts = (u32::MAX - 3 * 960).wrapping_add(u32::from(i) * 960);
            assert_eq!(buffer.push(t, seq, ts, vec![i as u8]), Pushed::Accepted);
            assert_eq!(buffer.push(t, seq, ts, vec![i as u8]), Pushed::Duplicate);
            if let Some(Slot::Packet { payload, .. }) = buffer.pop(t + Duration::from_millis(25)) {
                played.push(payload[0]);
            }
            t += TICK;
        }
        assert_eq!(played, (0..10).collect::<Vec<u8>>(), "order survives the sequence wrap");
        assert_eq!(buffer.stats().duplicates, 10);
        // A stream restart far away in sequence space starts over.
        assert_eq!(buffer.push(t, 30_000, 5, vec![]), Pushed::Restarted);
        assert_eq!(buffer.stats().restarts, 1);
        assert_eq!(buffer.len(), 1);
    }

    #[test]
    fn an_outage_resynchronises_instead_of_reporting_stale_losses() {
        // Packets 20..120 (two seconds) never arrive.
        let delay = |seq: u16| (!(20..120).contains(&seq)).then_some(Duration::from_millis(5));
        let (played, buffer) = run(200, delay, JitterConfig::default());
        assert!(played[180..].iter().all(|p| number(p).is_some()), "{:?}", &played[120..]);
        assert!(buffer.stats().missing <= 100);
    }

    #[test]
    fn nothing_to_play_before_the_first_packet() {
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        assert_eq!(buffer.pop(Instant::now()), None);
        assert!(buffer.is_empty());
    }

    /// Random networks: jitter up to 60 ms, 5 % loss, occasional duplicates. Whatever happens,
    /// slots come out in strictly increasing sequence order, every packet plays at most once,
    /// only lost or late packets are reported missing, and the buffer stays within its bounds.
    #[test]
    fn random_networks_keep_the_invariants() {
        for seed in 1..=20u64 {
            let mut next_random = crate::media::test_rng::xorshift(seed);
            let start = Instant::now();
            let config = JitterConfig::default();
            let mut buffer = JitterBuffer::new(config);
            let mut arrivals = Vec::new();
            let mut lost = 0u64;
            for seq in 0..500u16 {
                if next_random(100) < 5 {
                    lost += 1;
                    continue;
                }
                let at = Duration::from_millis(u64::from(seq) * 20 + next_random(60));
                arrivals.push((at, seq));
                if next_random(100) < 2 {
                    arrivals.push((at + Duration::from_millis(next_random(30)), seq));
                }
            }
            arrivals.sort();
            let mut arrivals = arrivals.into_iter().peekable();
            let mut last: Option<u16> = None;
            let (mut played, mut missing) = (std::collections::HashSet::new(), 0u64);
            for tick in 0..540u32 {
                let now = start + TICK * tick + Duration::from_millis(3);
                while let Some(&(at, seq)) = arrivals.peek() {
                    if start + at > now {
                        break;
                    }
                    push(&mut buffer, start + at, seq);
                    arrivals.next();
                }
                let seq = match buffer.pop(now) {
                    Some(Slot::Packet { seq, payload, .. }) => {
                        assert_eq!(payload, super::tests::payload(seq));
                        assert!(played.insert(seq), "seed {seed}: {seq} played twice");
                        seq
                    }
                    Some(Slot::Missing { seq, .. }) => {
                        // After the last packet (499) the stream has simply stopped.
                        missing += u64::from(seq < 500);
                        seq
                    }
                    None => continue,
                };
                assert!(last.is_none_or(|last| seq > last), "seed {seed}: {seq} after {last:?}");
                last = Some(seq);
                assert!(buffer.len() <= config.capacity);
                assert!(buffer.target_delay() <= config.max_delay);
            }
            let stats = buffer.stats();
            assert!(missing <= lost + stats.late, "seed {seed}: {missing} missing, {lost} lost, {stats:?}");
            assert!(played.len() as u64 + lost + stats.late >= 490, "seed {seed}: {stats:?}");
        }
    }
}

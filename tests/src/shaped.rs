//! Measuring a call across a shaped link ([`crate::link`]): the signal server and client A on
//! side A, client B on side B, both sending the synthetic pattern and tone. The link's rate may
//! change on a schedule while both clients' per-second `stats` are recorded; a recording is then
//! folded into what each side received over a window. Shared by the `link-bench` benchmark and
//! the shaped-link system test; it asserts nothing.
//!
//! Every figure is read from the clients' `stats` events. Fields that not every client version
//! prints (`latency_ms_p95`, `codec`, `send_width`, `send_height`, `size_reason`, `audio_gaps`)
//! are optional: a missing one is unknown, never zero.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};

use crate::link::{Link, A_IP, B_IP};
use crate::{Client, Server};

/// A second with fewer frames received than this counts as frozen.
pub const FROZEN_BELOW_FPS: f64 = 5.0;
/// Glass-to-glass latency (per-second p50) under which a call counts as interactive again after
/// the link fell.
pub const RECOVERED_BELOW_MS: f64 = 200.0;

/// What the link does during one call.
#[derive(Debug, Clone)]
pub struct Case {
    /// A short name of letters and digits (it is part of the namespaces' names).
    pub name: String,
    /// The rate both directions start at, kbit/s.
    pub rate_kbit: u32,
    /// The depth of each direction's FIFO, packets.
    pub queue_packets: u32,
    /// Rate changes, in order, timed from the moment both clients connected.
    pub changes: Vec<RateChange>,
}

/// The link's rate becomes `rate_kbit` at `at_s` seconds into the call.
#[derive(Debug, Clone, Copy)]
pub struct RateChange {
    pub at_s: f64,
    pub rate_kbit: u32,
}

impl Case {
    /// A link that keeps one rate throughout.
    pub fn steady(name: &str, rate_kbit: u32, queue_packets: u32) -> Case {
        Case { name: name.to_owned(), rate_kbit, queue_packets, changes: Vec::new() }
    }

    /// The rate in force `t` seconds into the call.
    pub fn rate_at(&self, t: f64) -> u32 {
        self.changes.iter().take_while(|change| change.at_s <= t).last().map_or(self.rate_kbit, |c| c.rate_kbit)
    }

    /// When the rate first falls, and when it changes next (`None`: it stays down).
    pub fn fall(&self) -> Option<(f64, Option<f64>)> {
        let mut rate = self.rate_kbit;
        for (i, change) in self.changes.iter().enumerate() {
            if change.rate_kbit < rate {
                return Some((change.at_s, self.changes.get(i + 1).map(|next| next.at_s)));
            }
            rate = change.rate_kbit;
        }
        None
    }
}

/// How a call is run across the link.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// How long the call is recorded once both clients are connected.
    pub seconds: f64,
    /// The video codec the clients are asked to use (`--video-codecs`); `None` leaves the
    /// client's own choice and passes no flag.
    pub codec: Option<String>,
    /// How long each client may take to connect.
    pub connect_timeout: Duration,
}

/// One second of one client's statistics, `t` seconds after the call connected (when the line
/// arrived; it covers the second before).
#[derive(Debug, Clone)]
pub struct Second {
    pub t: f64,
    pub recv_fps: f64,
    pub recv_kbps: f64,
    pub sent_kbps: f64,
    pub target_kbps: f64,
    pub latency_p50: Option<f64>,
    pub latency_p95: Option<f64>,
    pub latency_max: Option<f64>,
    /// Size of the last received frame (0x0 before the first).
    pub size: (u32, u32),
    /// Size this client sends, when it tells.
    pub send_size: Option<(u32, u32)>,
    pub codec: Option<String>,
    pub size_reason: Option<String>,
    /// Fraction of inbound packets lost since the call began, and the counts behind it.
    pub loss: f64,
    pub packets_lost: Option<u64>,
    pub packets_received: Option<u64>,
    /// Audio frames missing at their turn since the call began.
    pub audio_gaps: Option<u64>,
    /// The audio receiver's whole account (`audio_receive` in the stats), as the client wrote
    /// it: of those gaps how many were rebuilt from in-band FEC and how many concealed, and more.
    pub audio_receive: Value,
    pub audio_hz: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub frames_verified: u64,
    pub verify_errors: u64,
}

impl Second {
    /// Reads a `stats` event that arrived `t` seconds into the call.
    pub fn parse(t: f64, stats: &Value) -> Second {
        let number = |field: &str| stats[field].as_f64().unwrap_or(0.0);
        let optional = |field: &str| stats[field].as_f64();
        let count = |field: &str| stats[field].as_u64().unwrap_or(0);
        let size = |w: &str, h: &str| (count(w) as u32, count(h) as u32);
        let text = |field: &str| stats[field].as_str().map(str::to_owned);
        let send_size = Some(size("send_width", "send_height")).filter(|&(w, h)| w > 0 && h > 0);
        Second {
            t,
            recv_fps: number("recv_fps"),
            recv_kbps: number("recv_kbps"),
            sent_kbps: number("sent_kbps"),
            target_kbps: number("target_kbps"),
            latency_p50: optional("latency_ms_p50"),
            latency_p95: optional("latency_ms_p95"),
            latency_max: optional("latency_ms_max"),
            size: size("width", "height"),
            send_size,
            codec: text("codec"),
            size_reason: text("size_reason"),
            loss: number("loss"),
            packets_lost: stats["packets_lost"].as_u64(),
            packets_received: stats["packets_received"].as_u64(),
            audio_gaps: stats["audio_gaps"].as_u64(),
            audio_receive: stats["audio_receive"].clone(),
            audio_hz: optional("audio_hz"),
            rtt_ms: optional("rtt_ms"),
            frames_verified: count("frames_verified"),
            verify_errors: count("verify_errors"),
        }
    }

    /// The middle of the second this line covers.
    fn middle(&self) -> f64 {
        self.t - 0.5
    }

    /// Whether this second's picture was frozen.
    pub fn frozen(&self) -> bool {
        self.recv_fps < FROZEN_BELOW_FPS
    }

    pub fn to_json(&self) -> Value {
        json!({
            "t": round(self.t, 2),
            "recv_fps": round(self.recv_fps, 1),
            "recv_kbps": round(self.recv_kbps, 0),
            "sent_kbps": round(self.sent_kbps, 0),
            "target_kbps": round(self.target_kbps, 0),
            "latency_ms_p50": self.latency_p50,
            "latency_ms_p95": self.latency_p95,
            "latency_ms_max": self.latency_max,
            "size": format_size(Some(self.size)),
            "send_size": self.send_size.map(|s| format_size(Some(s))),
            "codec": self.codec,
            "size_reason": self.size_reason,
            "loss": round(self.loss, 4),
            "packets_lost": self.packets_lost,
            "packets_received": self.packets_received,
            "audio_gaps": self.audio_gaps,
            "audio_receive": self.audio_receive,
            "audio_hz": self.audio_hz.map(|hz| round(hz, 1)),
            "rtt_ms": self.rtt_ms.map(|ms| round(ms, 1)),
            "frames_verified": self.frames_verified,
            "verify_errors": self.verify_errors,
        })
    }
}

/// Both clients' statistics over one call.
#[derive(Debug, Clone)]
pub struct Recording {
    pub case: Case,
    /// What A saw, then what B saw (each line mostly about what that client received).
    pub sides: [Vec<Second>; 2],
    /// `first_frame`'s `ms_since_find` of each side, if it came.
    pub first_frame_ms: [Option<u64>; 2],
    /// What says the call did not simply go on: a client that exited, and events such as
    /// `partner_left`, `call_renewed`, a second `matched` or `error` (as JSON text).
    pub trouble: Vec<String>,
    /// Packets each direction's FIFO dropped: leaving A (towards B), then leaving B.
    pub fifo_drops: [u64; 2],
}

/// The names of the two sides, in the order of [`Recording::sides`].
pub const SIDES: [&str; 2] = ["a", "b"];

/// Builds the link of `case`, runs a call across it for `options.seconds` after both clients
/// connected, changing the rate on the case's schedule, and returns what both clients reported.
/// Setting `stop` ends it early with an error; everything started is gone when this returns.
pub fn record_call(case: &Case, options: &CallOptions, stop: &AtomicBool) -> anyhow::Result<Recording> {
    // Dropped in reverse: the clients, then the server, then the link's namespaces.
    let mut link = Link::build(&case.name, case.rate_kbit, case.queue_packets)?;
    let server = Server::start_listening_in(link.ns_a(), &format!("{A_IP}:0"), &[])?;
    let url = server.ws_url();
    let bound = (options.connect_timeout.as_secs_f64() * 2.0 + options.seconds + 30.0).ceil().to_string();
    let args = |ip: Ipv4Addr| {
        let mut args: Vec<String> =
            ["--width", "640", "--height", "480", "--fps", "30", "--exit-after", &bound, "--bind"]
                .iter()
                .map(|arg| arg.to_string())
                .collect();
        args.push(ip.to_string());
        if let Some(codec) = &options.codec {
            args.extend(["--video-codecs".to_owned(), codec.clone()]);
        }
        args
    };
    let (args_a, args_b) = (args(A_IP), args(B_IP));
    let mut a = Client::start_in(link.ns_a(), &format!("{}/a", case.name), &url, &as_strs(&args_a))?;
    let mut b = Client::start_in(link.ns_b(), &format!("{}/b", case.name), &url, &as_strs(&args_b))?;
    for client in [&mut a, &mut b] {
        client.wait_event(options.connect_timeout, "connected")?;
    }
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(options.seconds);
    let abort = AtomicBool::new(false);
    let halt = || stop.load(Ordering::Relaxed) || abort.load(Ordering::Relaxed);
    let (sides, scheduled) = std::thread::scope(|scope| {
        let a_side = scope.spawn(|| collect(&mut a, started, end, &halt));
        let b_side = scope.spawn(|| collect(&mut b, started, end, &halt));
        let scheduled = follow_schedule(&mut link, &case.changes, started, &halt);
        if scheduled.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        let join = |side: std::thread::ScopedJoinHandle<'_, Vec<Second>>| side.join().unwrap_or_default();
        ([join(a_side), join(b_side)], scheduled)
    });
    scheduled?;
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }

    let first_frame = |c: &Client| c.seen_named("first_frame").first().and_then(|e| e["ms_since_find"].as_u64());
    let mut trouble = Vec::new();
    for client in [&mut a, &mut b] {
        if let Ok(status) = client.wait_exit(Duration::ZERO) {
            trouble.push(format!("{}: exited during the call ({status})", client.name));
        }
    }
    for client in [&a, &b] {
        let matched = client.seen_named("matched").len();
        for event in &client.seen {
            let name = event["event"].as_str().unwrap_or_default();
            let later_match = name == "matched" && matched > 1;
            if later_match || ["partner_left", "call_renewed", "error"].contains(&name) {
                trouble.push(format!("{}: {event}", client.name));
            }
        }
    }
    let fifo_drops = link.dropped()?;
    Ok(Recording { case: case.clone(), first_frame_ms: [first_frame(&a), first_frame(&b)], sides, trouble, fifo_drops })
}

/// Borrows owned arguments as the `&str`s the client helpers take.
fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Applies each rate change at its time; stops early when `halt` says so.
fn follow_schedule(
    link: &mut Link,
    changes: &[RateChange],
    started: Instant,
    halt: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    for change in changes {
        let at = started + Duration::from_secs_f64(change.at_s);
        while Instant::now() < at {
            if halt() {
                return Ok(());
            }
            std::thread::sleep(at.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
        }
        link.set_rate(change.rate_kbit)?;
    }
    Ok(())
}

/// Reads a client's `stats` lines until `end`, until it exits, or until `halt` says so.
fn collect(client: &mut Client, started: Instant, end: Instant, halt: &dyn Fn() -> bool) -> Vec<Second> {
    let mut seconds = Vec::new();
    let mut next = client.seen.len();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || halt() {
            return seconds;
        }
        // Short waits, so that a stop is noticed; every event lands in `client.seen`.
        let waited = client.wait_for(left.min(Duration::from_secs(2)), "an event", |_| true);
        let exited = waited.is_err() && client.wait_exit(Duration::ZERO).is_ok();
        let t = started.elapsed().as_secs_f64();
        for event in &client.seen[next..] {
            if event["event"] == "stats" {
                seconds.push(Second::parse(t, event));
            }
        }
        next = client.seen.len();
        if exited {
            return seconds;
        }
    }
}

/// How long latency took to come back after the link fell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recovery {
    /// Per-second p50 stayed under [`RECOVERED_BELOW_MS`] from this many seconds after the fall
    /// until the link came back (0: it never rose).
    After(f64),
    /// It was still not under the bound when the link came back (or the call ended) this many
    /// seconds after the fall.
    NotWithin(f64),
}

/// What one side received (and sent) over a window of the call.
#[derive(Debug, Clone)]
pub struct Received {
    /// Seconds of statistics in the window.
    pub seconds: usize,
    pub mean_fps: f64,
    /// Seconds with fewer than [`FROZEN_BELOW_FPS`] frames.
    pub frozen_seconds: usize,
    /// The longest run of consecutive frozen seconds.
    pub longest_freeze: usize,
    /// Frames verified within the window, and verification errors since the call began.
    pub frames_verified: u64,
    pub verify_errors: u64,
    /// The median of the per-second p50s (seconds without a verified frame have none and do not
    /// count here: they count as frozen).
    pub latency_p50: Option<f64>,
    /// The 95th percentile of the per-second p95s.
    pub latency_p95: Option<f64>,
    /// The highest per-second maximum.
    pub latency_max: Option<f64>,
    /// The most common received size over seconds that received one.
    pub size: Option<(u32, u32)>,
    /// The most common size this side sent, when told.
    pub send_size: Option<(u32, u32)>,
    pub codec: Option<String>,
    pub recv_kbps: f64,
    /// Received bitrate over the link's rate, second by second (sum over sum).
    pub link_share: f64,
    pub sent_kbps: f64,
    pub target_kbps: f64,
    /// Fraction of inbound packets lost within the window (since the call began for clients
    /// that do not report packet counts).
    pub loss: f64,
    /// Audio frames missing at their turn within the window, and of those how many were rebuilt
    /// from in-band FEC and how many concealed.
    pub audio_gaps: Option<u64>,
    pub audio_fec: Option<u64>,
    pub audio_concealed: Option<u64>,
    /// The median dominant frequency of the received audio.
    pub audio_hz: Option<f64>,
    pub rtt_ms: Option<f64>,
    /// After the fall, when the case has one (measured over the whole call, not the window).
    pub recovery: Option<Recovery>,
}

impl Recording {
    /// What side `side` (0: A, 1: B) received over the seconds from `from_s` to `to_s` into the
    /// call.
    pub fn received(&self, side: usize, from_s: f64, to_s: f64) -> Received {
        let all = &self.sides[side];
        let inside = |s: &&Second| (from_s..=to_s).contains(&s.middle());
        let window: Vec<&Second> = all.iter().filter(inside).collect();
        // Counters run since the call began: the window's share is its last value less the one
        // before the window (zero when the window starts with the call).
        let before = all.iter().take_while(|s| s.middle() < from_s).last();
        let last = window.last().copied();
        let n = window.len().max(1) as f64;
        let mean = |f: fn(&Second) -> f64| window.iter().map(|s| f(s)).sum::<f64>() / n;
        let fps: Vec<f64> = window.iter().map(|s| s.recv_fps).collect();
        let link_kbps: f64 = window.iter().map(|s| f64::from(self.case.rate_at(s.middle()))).sum();
        // A counter's growth over the window.
        let grew = |counter: fn(&Second) -> Option<u64>| {
            let start = before.map_or(Some(0), counter);
            last.and_then(counter).zip(start).map(|(end, start)| end.saturating_sub(start))
        };
        Received {
            seconds: window.len(),
            mean_fps: mean(|s| s.recv_fps),
            frozen_seconds: window.iter().filter(|s| s.frozen()).count(),
            longest_freeze: fps.split(|&f| f >= FROZEN_BELOW_FPS).map(<[f64]>::len).max().unwrap_or(0),
            frames_verified: last.map_or(0, |s| s.frames_verified) - before.map_or(0, |s| s.frames_verified),
            verify_errors: last.map_or(0, |s| s.verify_errors),
            latency_p50: percentile(window.iter().filter_map(|s| s.latency_p50).collect(), 50.0),
            latency_p95: percentile(window.iter().filter_map(|s| s.latency_p95).collect(), 95.0),
            latency_max: window.iter().filter_map(|s| s.latency_max).reduce(f64::max),
            size: most_common(window.iter().map(|s| s.size).filter(|&(w, h)| w > 0 && h > 0)),
            send_size: most_common(window.iter().filter_map(|s| s.send_size)),
            codec: window.iter().rev().find_map(|s| s.codec.clone()),
            recv_kbps: mean(|s| s.recv_kbps),
            link_share: if link_kbps > 0.0 { window.iter().map(|s| s.recv_kbps).sum::<f64>() / link_kbps } else { 0.0 },
            sent_kbps: mean(|s| s.sent_kbps),
            target_kbps: mean(|s| s.target_kbps),
            loss: match (grew(|s| s.packets_lost), grew(|s| s.packets_received)) {
                (Some(lost), Some(received)) if lost + received > 0 => lost as f64 / (lost + received) as f64,
                _ => last.map_or(0.0, |s| s.loss),
            },
            audio_gaps: grew(|s| s.audio_gaps),
            audio_fec: grew(|s| s.audio_receive["fec_recovered"].as_u64()),
            audio_concealed: grew(|s| s.audio_receive["concealed"].as_u64()),
            audio_hz: percentile(window.iter().filter_map(|s| s.audio_hz).collect(), 50.0),
            rtt_ms: percentile(window.iter().filter_map(|s| s.rtt_ms).collect(), 50.0),
            recovery: self.recovery(side),
        }
    }

    /// Seconds from the fall until the per-second p50 went under [`RECOVERED_BELOW_MS`] for
    /// good (until the rate changed again); a second without a verified frame counts as not
    /// recovered. `None` when the case has no fall.
    pub fn recovery(&self, side: usize) -> Option<Recovery> {
        let (fall, rise) = self.case.fall()?;
        let all = &self.sides[side];
        let end = rise.unwrap_or(f64::INFINITY);
        let during: Vec<&Second> = all.iter().filter(|s| s.middle() > fall && s.middle() < end).collect();
        let bad = |s: &&Second| s.latency_p50.is_none_or(|ms| ms >= RECOVERED_BELOW_MS);
        let Some(last) = during.last() else { return Some(Recovery::NotWithin(0.0)) };
        if bad(last) {
            return Some(Recovery::NotWithin(last.t - fall));
        }
        Some(match during.iter().rposition(bad) {
            Some(i) => Recovery::After(during[i].t - fall),
            None => Recovery::After(0.0),
        })
    }

    /// The whole recording as JSON: the case, each side's seconds, first frames and trouble.
    pub fn to_json(&self) -> Value {
        json!({
            "case": self.case.name,
            "rate_kbit": self.case.rate_kbit,
            "queue_packets": self.case.queue_packets,
            "changes": self.case.changes.iter().map(|c| json!({"at_s": c.at_s, "rate_kbit": c.rate_kbit})).collect::<Vec<_>>(),
            "first_frame_ms": self.first_frame_ms,
            "fifo_drops": self.fifo_drops,
            "trouble": self.trouble,
            "seconds": SIDES.iter().zip(&self.sides).map(|(name, seconds)| {
                (name.to_string(), Value::from(seconds.iter().map(Second::to_json).collect::<Vec<_>>()))
            }).collect::<serde_json::Map<_, _>>(),
        })
    }
}

impl Received {
    pub fn to_json(&self) -> Value {
        let recovery = match self.recovery {
            None => Value::Null,
            Some(Recovery::After(s)) => json!({"after_s": round(s, 1)}),
            Some(Recovery::NotWithin(s)) => json!({"not_within_s": round(s, 1)}),
        };
        json!({
            "seconds": self.seconds,
            "mean_fps": round(self.mean_fps, 1),
            "frozen_seconds": self.frozen_seconds,
            "longest_freeze": self.longest_freeze,
            "frames_verified": self.frames_verified,
            "verify_errors": self.verify_errors,
            "latency_ms_p50": self.latency_p50,
            "latency_ms_p95": self.latency_p95,
            "latency_ms_max": self.latency_max,
            "size": self.size.map(|s| format_size(Some(s))),
            "send_size": self.send_size.map(|s| format_size(Some(s))),
            "codec": self.codec,
            "recv_kbps": round(self.recv_kbps, 0),
            "link_share": round(self.link_share, 3),
            "sent_kbps": round(self.sent_kbps, 0),
            "target_kbps": round(self.target_kbps, 0),
            "loss": round(self.loss, 4),
            "audio_gaps": self.audio_gaps,
            "audio_fec": self.audio_fec,
            "audio_concealed": self.audio_concealed,
            "audio_hz": self.audio_hz.map(|hz| round(hz, 1)),
            "rtt_ms": self.rtt_ms.map(|ms| round(ms, 1)),
            "recovery": recovery,
        })
    }
}

/// The `p`th percentile (nearest rank) of `values`; `None` when there are none.
pub fn percentile(mut values: Vec<f64>, p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// The value seen most often (the latest of equals).
fn most_common<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(seen, _)| *seen == value) {
            Some((_, n)) => *n += 1,
            None => counts.push((value, 1)),
        }
    }
    counts.into_iter().max_by_key(|&(_, n)| n).map(|(value, _)| value)
}

/// `640x480`, or `-` when unknown.
pub fn format_size(size: Option<(u32, u32)>) -> String {
    size.map_or_else(|| "-".to_owned(), |(w, h)| format!("{w}x{h}"))
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

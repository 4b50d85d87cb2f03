//! Reports and bans, per address. A report counts once per match and reporter; enough of them
//! within the window ban the reported address for a while.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct Moderation {
    reports: HashMap<IpAddr, VecDeque<Instant>>,
    bans: HashMap<IpAddr, Instant>,
}

/// What a report led to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReportOutcome {
    Counted,
    Banned { until: Instant },
}

impl Moderation {
    pub(crate) fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.bans.get(&ip).is_some_and(|until| now < *until)
    }

    /// Counts a report against `ip`; `threshold` reports within `window` ban it for `ban`.
    pub(crate) fn report(
        &mut self,
        ip: IpAddr,
        now: Instant,
        threshold: u32,
        window: Duration,
        ban: Duration,
    ) -> ReportOutcome {
        let recent = self.reports.entry(ip).or_default();
        while recent.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
            recent.pop_front();
        }
        recent.push_back(now);
        if threshold > 0 && recent.len() >= threshold as usize {
            self.reports.remove(&ip);
            let until = now + ban;
            self.bans.insert(ip, until);
            ReportOutcome::Banned { until }
        } else {
            ReportOutcome::Counted
        }
    }

    /// Forgets bans that ended and reports that no longer count.
    pub(crate) fn expire(&mut self, now: Instant, window: Duration) {
        self.bans.retain(|_, until| now < *until);
        self.reports.retain(|_, times| {
            while times.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    pub(crate) fn active_bans(&self, now: Instant) -> usize {
        self.bans.values().filter(|until| now < **until).count()
    }

    /// The next instant at which something here expires.
    pub(crate) fn next_expiry(&self, window: Duration) -> Option<Instant> {
        let ban = self.bans.values().min().copied();
        let report = self.reports.values().filter_map(|t| t.front()).min().map(|t| *t + window);
        ban.into_iter().chain(report).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_bans_for_a_while_and_old_reports_fade() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        let (window, ban) = (Duration::from_secs(60), Duration::from_secs(600));
        let mut m = Moderation::default();
        assert_eq!(m.report(ip, t0, 2, window, ban), ReportOutcome::Counted);
        // The first report has faded by the time the second comes.
        assert_eq!(m.report(ip, t0 + window, 2, window, ban), ReportOutcome::Counted);
        let t = t0 + window + Duration::from_secs(1);
        assert_eq!(m.report(ip, t, 2, window, ban), ReportOutcome::Banned { until: t + ban });
        assert!(m.is_banned(ip, t));
        assert!(!m.is_banned(ip, t + ban));
        m.expire(t + ban, window);
        assert_eq!(m.next_expiry(window), None);
    }
}

//! Notices when a call's selected candidate pair changes (an ICE restart, a nomination of a
//! better pair, a move between relay and direct), so that the switch is told as an event of
//! its own and not only seen in the next second's statistics. Pure: it is shown each
//! statistics report's pair and says what changed.

use crate::api::PathInfo;

/// The pair last seen, by its identity in the connection's statistics.
#[derive(Debug, Default)]
pub struct PathWatch {
    last: Option<(String, PathInfo)>,
}

impl PathWatch {
    /// Takes the selected pair now (`id` names it; `None` before there is one) and returns the
    /// old and new path when it is another pair than the last one seen. The first pair is no
    /// switch, nor is a moment with none (it keeps the last). A new pair whose candidate types
    /// are the same (an ICE restart onto the same kinds of address) is still a switch.
    pub fn observe(&mut self, id: &str, path: &PathInfo) -> Option<(PathInfo, PathInfo)> {
        let switched = match &self.last {
            Some((last_id, last_path)) if last_id != id => Some((last_path.clone(), path.clone())),
            _ => None,
        };
        self.last = Some((id.to_owned(), path.clone()));
        switched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(local: &str, remote: &str) -> PathInfo {
        PathInfo { local: local.into(), remote: remote.into(), ..PathInfo::default() }
    }

    #[test]
    fn the_first_pair_is_no_switch_and_the_same_pair_is_none_either() {
        let mut watch = PathWatch::default();
        assert_eq!(watch.observe("p1", &path("host", "srflx")), None);
        assert_eq!(watch.observe("p1", &path("host", "srflx")), None);
    }

    #[test]
    fn another_pair_is_a_switch_from_the_old_path_to_the_new() {
        let mut watch = PathWatch::default();
        watch.observe("p1", &path("relay", "srflx"));
        assert_eq!(watch.observe("p2", &path("host", "host")), Some((path("relay", "srflx"), path("host", "host"))));
        assert_eq!(watch.observe("p2", &path("host", "host")), None);
        // Same kinds, new pair (after an ICE restart): still a switch.
        assert_eq!(watch.observe("p3", &path("host", "host")), Some((path("host", "host"), path("host", "host"))));
    }
}

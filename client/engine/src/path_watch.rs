//! Notices when a call's selected candidate pair changes (an ICE restart, a nomination of a
//! better pair, a move between relay and direct), so that the switch is told as an event of
//! its own and not only seen in the next second's statistics, and names a pair's address
//! family. Pure: it is shown each statistics report's pair and says what changed.

use std::net::IpAddr;

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

/// The address family of a candidate pair (`ipv4`, `ipv6`, or `unknown`), from the addresses
/// of its local and remote candidates as the statistics give them. Our host candidate may be
/// known by its mDNS name only; we give one to our IPv4 LAN address alone (see
/// `peer::multicast_dns`). Else the partner's address tells (a peer-reflexive one has none).
pub fn pair_family(local: Option<&str>, remote: Option<&str>) -> &'static str {
    let family = |address: Option<&str>| match address?.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("ipv4"),
        IpAddr::V6(_) => Some("ipv6"),
    };
    let named = local.is_some_and(|a| a.ends_with(".local"));
    family(local).or(named.then_some("ipv4")).or_else(|| family(remote)).unwrap_or("unknown")
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

    #[test]
    fn a_pairs_family_comes_from_our_address_or_else_the_partners() {
        assert_eq!(pair_family(Some("2a00:20:1::2"), Some("2a00:20:2::2")), "ipv6");
        assert_eq!(pair_family(Some("20.0.0.1"), None), "ipv4");
        // Our mDNS-named host candidate is our IPv4 LAN address.
        assert_eq!(pair_family(Some("0b9e2f4c-6a3d-4f7e-9a51-2f7d1c3e8b90.local"), None), "ipv4");
        assert_eq!(pair_family(None, Some("2a00:20:2::2")), "ipv6");
        assert_eq!(pair_family(None, None), "unknown");
    }
}

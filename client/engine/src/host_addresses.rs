//! Which local addresses a peer connection gathers on: IPv4, IPv6, or both, from the addresses
//! the host's interfaces have. webrtc-rs turns a wildcard (`0.0.0.0`, `[::]`) into one socket
//! per interface address of that family, so a dual-stack host offers both. The choice itself is
//! pure ([`udp_binds`]); only [`interface_ips`] asks the system.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether an interface address can carry a call: not loopback, not unspecified, not
/// link-local (an IPv6 link-local address is useless to a partner without its scope id, and
/// webrtc-rs skips both kinds).
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// The UDP addresses to bind: the address the user chose, or else a wildcard per family the
/// host has a usable address of. IPv4 is kept when neither family has one (a host with only
/// loopback still binds, and may reach a relay), so nothing changes for an IPv4-only host.
pub fn udp_binds(bind_ip: IpAddr, interface_ips: &[IpAddr]) -> Vec<SocketAddr> {
    if !bind_ip.is_unspecified() {
        return vec![SocketAddr::new(bind_ip, 0)];
    }
    let has = |v4: bool| interface_ips.iter().any(|ip| ip.is_ipv4() == v4 && usable(*ip));
    let (v4, v6) = (has(true), has(false));
    let mut binds = Vec::new();
    if v4 || !v6 {
        binds.push(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    }
    if v6 {
        binds.push(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)));
    }
    binds
}

/// The loopback address of the family our sockets use, for local relays such as the TURN
/// bridge (webrtc-rs talks to a TURN server only from sockets of the server's family).
pub fn loopback_for(binds: &[SocketAddr]) -> IpAddr {
    if binds.iter().any(SocketAddr::is_ipv4) {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    }
}

/// The addresses of the host's interfaces now (none when they cannot be listed).
pub fn interface_ips() -> Vec<IpAddr> {
    match rtc::shared::ifaces::ifaces() {
        Ok(interfaces) => interfaces.iter().filter_map(|i| i.addr.map(|a| a.ip())).collect(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the interfaces");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    fn binds(bind: &str, list: &[&str]) -> Vec<String> {
        udp_binds(bind.parse().unwrap(), &ips(list)).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_family_the_host_has_is_gathered_on() {
        let v4 = ["127.0.0.1", "::1", "192.168.1.2", "fe80::1"];
        assert_eq!(binds("0.0.0.0", &v4), ["0.0.0.0:0"]);
        let dual = ["127.0.0.1", "192.168.1.2", "2a00:20:1::2", "fd00::2"];
        assert_eq!(binds("0.0.0.0", &dual), ["0.0.0.0:0", "[::]:0"]);
        let v6_only = ["127.0.0.1", "::1", "2a00:20:3::2", "fe80::2"];
        assert_eq!(binds("0.0.0.0", &v6_only), ["[::]:0"]);
        // A ULA is an address a LAN call can use.
        assert_eq!(binds("0.0.0.0", &["fd00::2"]), ["[::]:0"]);
    }

    #[test]
    fn a_host_with_nothing_usable_still_binds_ipv4() {
        assert_eq!(binds("0.0.0.0", &[]), ["0.0.0.0:0"]);
        assert_eq!(binds("0.0.0.0", &["127.0.0.1", "::1", "fe80::1", "169.254.0.9"]), ["0.0.0.0:0"]);
    }

    #[test]
    fn a_chosen_address_is_bound_alone_in_either_family() {
        assert_eq!(binds("127.0.0.1", &["2a00:20:1::2"]), ["127.0.0.1:0"]);
        assert_eq!(binds("2a00:20:1::2", &["192.168.1.2"]), ["[2a00:20:1::2]:0"]);
    }

    #[test]
    fn local_relays_use_the_loopback_of_our_family() {
        let v4: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let v6: SocketAddr = "[::]:0".parse().unwrap();
        assert_eq!(loopback_for(&[v4, v6]), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(loopback_for(&[v6]), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
}

//! What a stranger may learn of our addresses. Host candidates on a private network (a home
//! LAN, a VPN, a container bridge) would tell any stranger the layout of our network, so they
//! are never sent: the one on the LAN that reaches the partner's LAN goes out under a random
//! mDNS name (`….local`, as browsers do), and the server-reflexive candidate covers the rest.
//! The related address of reflexive and relayed candidates (the private address they were
//! gathered from) is blanked for the same reason. Pure text in, text out: it touches no socket.

use std::net::IpAddr;

/// Whether an address belongs to a private network: RFC 1918, shared (carrier-grade NAT),
/// link-local, and IPv6 unique-local and link-local. Loopback is not private in this sense: it
/// says nothing about a network (and tests on one machine use it).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The candidate (`candidate:…` as in SDP and trickle ICE) as a stranger may see it: `None`
/// for a host candidate with a private address, the related address blanked when it is
/// private, otherwise unchanged. A line we cannot read is passed on as it is: it holds no
/// address we could recognise.
pub fn shareable(candidate: &str) -> Option<String> {
    let mut fields: Vec<&str> = candidate.split(' ').collect();
    // candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ TYPE [raddr A rport P] …
    if fields.len() < 8 || fields[6] != "typ" {
        return Some(candidate.to_owned());
    }
    let private = |text: &str| text.parse::<IpAddr>().is_ok_and(is_private);
    if fields[7] == "host" && private(fields[4]) {
        return None;
    }
    let mut blanked = false;
    let mut i = 8;
    while i + 1 < fields.len() {
        match fields[i] {
            "raddr" if private(fields[i + 1]) => {
                let unspecified = if fields[i + 1].contains(':') { "::" } else { "0.0.0.0" };
                fields[i + 1] = unspecified;
                blanked = true;
            }
            "rport" if blanked => fields[i + 1] = "0",
            _ => {}
        }
        i += 2;
    }
    Some(fields.join(" "))
}

/// A session description with every candidate line made [`shareable`] (dropped or blanked).
pub fn shareable_sdp(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let Some(candidate) = line.strip_prefix("a=") else {
            out.push_str(line);
            continue;
        };
        if !candidate.starts_with("candidate:") {
            out.push_str(line);
            continue;
        }
        let body = candidate.trim_end_matches(['\r', '\n']);
        if let Some(kept) = shareable(body) {
            out.push_str("a=");
            out.push_str(&kept);
            out.push_str(&candidate[body.len()..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for private in [
            "10.78.0.2",
            "172.16.5.4",
            "172.31.255.1",
            "192.168.1.20",
            "169.254.3.3",
            "100.64.0.1",
            "fd12::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["20.0.0.5", "172.32.0.1", "100.128.0.1", "8.8.8.8", "127.0.0.1", "::1", "2001:db8::1"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_private_host_candidate_is_not_shared() {
        assert_eq!(shareable("candidate:1 1 udp 2130706431 10.78.0.2 52813 typ host"), None);
        assert_eq!(shareable("candidate:1 1 udp 2130706431 fe80::1 52813 typ host generation 0"), None);
    }

    #[test]
    fn public_loopback_and_mdns_host_candidates_are_shared_unchanged() {
        for line in [
            "candidate:1 1 udp 2130706431 20.0.0.5 52813 typ host",
            "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
            "candidate:1 1 udp 2130706431 0b9e2f4c-6a3d-4f7e-9a51-2f7d1c3e8b90.local 52813 typ host",
            "candidate:1 1 udp 2130706431 2001:db8::5 52813 typ host",
        ] {
            assert_eq!(shareable(line).as_deref(), Some(line));
        }
    }

    #[test]
    fn a_private_related_address_is_blanked() {
        assert_eq!(
            shareable("candidate:2 1 udp 1694498815 20.0.0.9 61000 typ srflx raddr 10.78.0.2 rport 52813").as_deref(),
            Some("candidate:2 1 udp 1694498815 20.0.0.9 61000 typ srflx raddr 0.0.0.0 rport 0")
        );
        assert_eq!(
            shareable("candidate:3 1 udp 16777215 20.0.0.1 50000 typ relay raddr fd00::7 rport 9 generation 0")
                .as_deref(),
            Some("candidate:3 1 udp 16777215 20.0.0.1 50000 typ relay raddr :: rport 0 generation 0")
        );
        let public = "candidate:2 1 udp 1694498815 20.0.0.9 61000 typ srflx raddr 20.0.0.9 rport 61000";
        assert_eq!(shareable(public).as_deref(), Some(public));
    }

    #[test]
    fn unreadable_lines_pass_unchanged() {
        assert_eq!(shareable("candidate:garbage").as_deref(), Some("candidate:garbage"));
    }

    #[test]
    fn a_description_loses_its_private_candidates_and_keeps_everything_else() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=candidate:1 1 udp 2130706431 192.168.1.20 5000 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 20.0.0.9 6000 typ srflx raddr 192.168.1.20 rport 5000\r\n\
                   a=mid:0\r\n";
        assert_eq!(
            shareable_sdp(sdp),
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             a=candidate:2 1 udp 1694498815 20.0.0.9 6000 typ srflx raddr 0.0.0.0 rport 0\r\n\
             a=mid:0\r\n"
        );
    }
}

//! IPv6 in the NAT lab: which families a home has, and how a home gets its routed /64 behind a
//! stateful firewall (see the module above for the whole topology).

use std::net::Ipv6Addr;

use super::nft;
use crate::Netns;

/// The public side's IPv6 address, in a dual-stack lab (its /64 is the public network).
pub const PUBLIC_IP6: Ipv6Addr = Ipv6Addr::new(0x2a00, 0x20, 0, 0, 0, 0, 0, 1);

/// Which address families a home's host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// IPv4 behind the router's NAT only (the lab's homes before IPv6).
    V4,
    /// IPv4 behind the NAT and a public IPv6 address, as most homes have now.
    Dual,
    /// IPv6 only (the router still has its IPv4 side; the host has no IPv4 address at all).
    V6Only,
}

impl Stack {
    pub fn name(self) -> &'static str {
        match self {
            Stack::V4 => "IPv4",
            Stack::Dual => "dual-stack",
            Stack::V6Only => "IPv6-only",
        }
    }

    pub(super) fn has_v4(self) -> bool {
        self != Stack::V6Only
    }

    pub(super) fn has_v6(self) -> bool {
        self != Stack::V4
    }
}

/// Makes IPv6 addresses of the interfaces created from now on in `netns` usable at once.
/// Duplicate address detection would hold every link-local address back for a second or two,
/// and neighbour discovery meanwhile lost a call's first packets for good (no direct path
/// between two fresh homes).
pub(super) fn without_dad(netns: &Netns) -> anyhow::Result<()> {
    netns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
}

/// Gives home `n` IPv6: the router's WAN address on the public /64, the home's own /64 routed
/// to it (no NAT), a stateful firewall that lets in only answers to what went out (so a direct
/// call needs both sides to send, as with real home routers), and the host's public address
/// and a unique-local one. Returns the host's two addresses.
pub(super) fn route_ipv6(
    public: &Netns,
    router: &Netns,
    host: &Netns,
    n: u8,
) -> anyhow::Result<(Option<Ipv6Addr>, Option<Ipv6Addr>)> {
    let wan = Ipv6Addr::new(0x2a00, 0x20, 0, 0, 0, 0, 0, 0x10 + u16::from(n));
    let lan_gateway = Ipv6Addr::new(0x2a00, 0x20, u16::from(n), 0, 0, 0, 0, 1);
    let address = Ipv6Addr::new(0x2a00, 0x20, u16::from(n), 0, 0, 0, 0, 2);
    let ula_gateway = Ipv6Addr::new(0xfd00, 0x20, u16::from(n), 0, 0, 0, 0, 1);
    let ula = Ipv6Addr::new(0xfd00, 0x20, u16::from(n), 0, 0, 0, 0, 2);
    router.exec(&["ip", "-6", "addr", "add", &format!("{wan}/64"), "dev", "wan", "nodad"])?;
    router.exec(&["ip", "-6", "addr", "add", &format!("{lan_gateway}/64"), "dev", "lan", "nodad"])?;
    router.exec(&["ip", "-6", "addr", "add", &format!("{ula_gateway}/64"), "dev", "lan", "nodad"])?;
    router.exec(&["ip", "-6", "route", "add", "default", "via", &PUBLIC_IP6.to_string()])?;
    router.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
    nft(
        router,
        "table ip6 home {
  chain forward { type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
    meta l4proto ipv6-icmp accept
  }
}
",
    )?;
    public.exec(&["ip", "-6", "route", "add", &format!("2a00:20:{n:x}::/64"), "via", &wan.to_string()])?;
    host.exec(&["ip", "-6", "addr", "add", &format!("{address}/64"), "dev", "eth0", "nodad"])?;
    host.exec(&["ip", "-6", "addr", "add", &format!("{ula}/64"), "dev", "eth0", "nodad"])?;
    host.exec(&["ip", "-6", "route", "add", "default", "via", &lan_gateway.to_string()])?;
    Ok((Some(address), Some(ula)))
}

//! The NAT lab: hosts in Linux network namespaces joined by veth pairs. A "public" namespace
//! holds the internet's switch (a bridge on 20.0.0.0/24, outside every range TURN refuses to
//! relay to), the signal server with its STUN responder, and a real coturn running the shipped
//! `assets/turnserver.conf`. Each home network is a router namespace (nftables NAT of one of
//! four kinds) with one client namespace behind it on an RFC 1918 network.
//!
//!
//! A dual-stack lab ([`Lab::build_dual_stack`]) adds IPv6: the public network gets the prefix
//! `2a00:20::/64` (the server, STUN and TURN listen on both families) and each home of a
//! [`Stack`] with IPv6 a routed /64 of its own (`2a00:20:N::/64`, no NAT, behind the router's
//! stateful firewall as real homes have) plus a unique-local address that must stay private.
//!
//! Namespaces are named `strangers-lab-<pid>-<tag>-<host>`, so labs of parallel tests never
//! meet, and a lab left by a crashed run (its pid gone) is removed when the next one starts.
//! Dropping a [`Lab`] kills every process left in its namespaces and deletes them, even when a
//! test panics. This module only builds topology; tests live in `tests/tests/nat_lab.rs`.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{run, Netns, Server};

mod ipv6;
use ipv6::{route_ipv6, without_dad};
pub use ipv6::{Stack, PUBLIC_IP6};

/// Every lab namespace starts with this.
const PREFIX: &str = "strangers-lab-";
/// The public side's address: signal server, STUN and TURN all listen here.
pub const PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 1);
/// A private address of the server's machine (on its loopback), which TURN must never reach.
pub const SERVER_PRIVATE_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
pub const STUN_PORT: u16 = 3479;
pub const TURN_PORT: u16 = 3478;
/// With [`Lab::build_for_firewalls`]: coturn's address (one of its own, so that it and the
/// signal server can both listen on port 443), and that port.
pub const TURN_TLS_IP: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 5);
pub const HTTPS_PORT: u16 = 443;

/// How a home router translates and filters (RFC 4787 terms in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Full cone: one mapping per internal port, and anyone may send to it
    /// [endpoint-independent mapping and filtering].
    FullCone,
    /// One mapping per internal port; replies are let in from any port of an address the
    /// client has sent to [endpoint-independent mapping, address-dependent filtering].
    AddressRestricted,
    /// One mapping per internal port; only the exact address and port the client sent to may
    /// answer [endpoint-independent mapping, address-and-port-dependent filtering].
    PortRestricted,
    /// A new random external port for every destination [address-and-port-dependent mapping
    /// and filtering].
    Symmetric,
}

impl NatKind {
    pub const ALL: [NatKind; 4] =
        [NatKind::FullCone, NatKind::AddressRestricted, NatKind::PortRestricted, NatKind::Symmetric];

    pub fn name(self) -> &'static str {
        match self {
            NatKind::FullCone => "full cone",
            NatKind::AddressRestricted => "address-restricted",
            NatKind::PortRestricted => "port-restricted",
            NatKind::Symmetric => "symmetric",
        }
    }

    /// The router's nftables ruleset. `wan` faces the public network, `lan` the home; `client`
    /// is the one host at home.
    fn ruleset(self, client: Ipv4Addr) -> String {
        // Masquerade keeps the internal port when it is free (one client per home, so always),
        // which makes the mapping endpoint-independent; fully-random picks a fresh port per flow.
        let masquerade = if self == NatKind::Symmetric { "masquerade fully-random" } else { "masquerade" };
        // Unsolicited inbound UDP is handed to the client on the same port, from anyone (full
        // cone) or from addresses the client has sent to (address-restricted); what is left
        // is dropped before conntrack records it, as home routers do. A recorded flow to the
        // router itself would take the tuple the client's own mapping needs later, and
        // masquerade would then move the client to another port (a Linux artefact that turns
        // every NAT symmetric when the stranger's first check arrives early).
        let admit = match self {
            NatKind::FullCone => format!("iifname \"wan\" meta l4proto udp ct state new dnat to {client}"),
            NatKind::AddressRestricted => {
                format!("iifname \"wan\" meta l4proto udp ct state new ip saddr @contacted dnat to {client}")
            }
            NatKind::PortRestricted | NatKind::Symmetric => String::new(),
        };
        format!(
            "table ip lab {{
  set contacted {{ type ipv4_addr; flags dynamic, timeout; timeout 5m; }}
  chain admit_in {{ type nat hook prerouting priority dstnat; policy accept;
    {admit}
  }}
  chain map_out {{ type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" {masquerade}
  }}
  chain to_router {{ type filter hook input priority filter; policy accept;
    iifname \"wan\" meta l4proto udp ct state new drop
  }}
  chain filter_through {{ type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" update @contacted {{ ip daddr }} accept
    iifname \"wan\" ct status dnat accept
  }}
}}
"
        )
    }
}

/// Which of a router's mappings to forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    Udp,
    All,
}

/// What a home's router lets out, beside answers to what went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    Open,
    /// No UDP at all: TURN over TCP or TLS is the only way to a stranger.
    NoUdp,
    /// Only TCP to port 443 (an office or hotel network).
    Tcp443Only,
}

/// One home network: a NAT router and the client's host behind it, on a LAN that is a bridge
/// in the router (so more hosts can be plugged in).
pub struct Home {
    pub kind: NatKind,
    /// The client's namespace (dropped before its router).
    pub host: Netns,
    pub router: Netns,
    /// The router's public address: what strangers see of this home.
    pub public_ip: Ipv4Addr,
    /// The host's LAN address (unassigned on an IPv6-only host).
    pub private_ip: Ipv4Addr,
    pub stack: Stack,
    /// With IPv6: the host's public address, and its unique-local one (private, never to be
    /// shown to a stranger).
    pub ipv6: Option<Ipv6Addr>,
    pub ula: Option<Ipv6Addr>,
}

impl Home {
    pub fn ns(&self) -> Option<&str> {
        Some(self.host.name.as_str())
    }

    /// Lets out only what `egress` allows (dropped on the router, as a firewall does), over
    /// IPv4 and IPv6 alike.
    pub fn restrict_egress(&self, egress: Egress) -> anyhow::Result<()> {
        let rules = match egress {
            Egress::Open => return Ok(()),
            Egress::NoUdp => "iifname \"lan\" meta l4proto udp drop",
            Egress::Tcp443Only => "iifname \"lan\" meta l4proto != tcp drop\n    iifname \"lan\" tcp dport != 443 drop",
        };
        nft(
            &self.router,
            &format!(
                "table inet egress {{
  chain out {{ type filter hook forward priority filter - 5; policy accept;
    {rules}
  }}
}}
"
            ),
        )
    }

    /// Drops `percent` % of the UDP packets reaching the home from outside, at random (media,
    /// feedback, retransmissions and STUN alike), on the router's way in.
    pub fn add_inbound_udp_loss(&self, percent: u32) -> anyhow::Result<()> {
        let rules = format!(
            "table ip loss {{
  chain inbound {{ type filter hook forward priority filter - 5; policy accept;
    iifname \"wan\" meta l4proto udp numgen random mod 100 < {percent} drop
  }}
}}
"
        );
        nft(&self.router, &rules)
    }

    /// Plugs another host into this home's LAN, `n` addresses after the first host's (`n` from
    /// 1), and returns its namespace, to be dropped before the lab.
    pub fn add_neighbour(&self, n: u8) -> anyhow::Result<Netns> {
        let [a, b, c, d] = self.private_ip.octets();
        let ip = Ipv4Addr::new(a, b, c, d.checked_add(n).context("a free address on the LAN")?);
        let host = Netns::create(&format!("{}-n{n}", self.host.name))?;
        attach_to_lan(&self.router, &host, &format!("lan{n}"), Some(ip))?;
        Ok(host)
    }

    /// Drops every UDP packet from `source` on its way into the home, until
    /// [`Home::unblock_udp`]: a direct path that does not work yet.
    pub fn block_udp_from(&self, source: Ipv4Addr) -> anyhow::Result<()> {
        let rules = format!(
            "table ip block {{
  chain inbound {{ type filter hook forward priority filter - 5; policy accept;
    iifname \"wan\" ip saddr {source} meta l4proto udp drop
  }}
}}
"
        );
        nft(&self.router, &rules)
    }

    /// Lifts [`Home::block_udp_from`].
    pub fn unblock_udp(&self) -> anyhow::Result<()> {
        self.router.exec(&["nft", "delete", "table", "ip", "block"])
    }

    /// Forgets the router's mappings: only the UDP ones, as a NAT does when they time out (UDP
    /// mappings live for tens of seconds, TCP ones for hours, so the signaling connection
    /// survives), or all of them, as a router restart does (signaling breaks too).
    pub fn flush_mappings(&self, flush: Flush) -> anyhow::Result<()> {
        let args: &[&str] = match flush {
            Flush::Udp => &["conntrack", "-D", "-p", "udp"],
            Flush::All => &["conntrack", "-F"],
        };
        self.router.exec(args).context("conntrack (is the conntrack package installed?)")
    }
}

/// coturn on the public network, run with the shipped configuration.
pub struct LabTurn {
    child: Child,
    pub secret: String,
    conf: std::path::PathBuf,
    /// With TLS: the directory of the test CA and coturn's certificate.
    tls_dir: Option<std::path::PathBuf>,
}

impl LabTurn {
    /// The test CA's certificate (PEM), with TLS.
    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        self.tls_dir.as_ref().map(|dir| dir.join("ca.pem"))
    }
}

impl Drop for LabTurn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.conf);
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A STUN server for NAT behaviour discovery (RFC 5780: answers from a second address and
/// port on request), coturn with no relay, on the public network.
pub struct BehaviourStun {
    child: Child,
}

impl Drop for BehaviourStun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The behaviour discovery server's two addresses and port.
pub const BEHAVIOUR_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(20, 0, 0, 2), Ipv4Addr::new(20, 0, 0, 3)];
pub const BEHAVIOUR_PORT: u16 = 3490;

/// A whole lab. Fields drop in order: processes, homes, then the public namespace.
pub struct Lab {
    pub server: Server,
    pub turn: LabTurn,
    pub homes: Vec<Home>,
    pub public: Netns,
}

impl Lab {
    /// Builds the public network with the signal server (given extra `server_args`) and coturn,
    /// and one home per entry of `homes`. `tag` tells this lab's namespaces apart from other
    /// labs of the same run.
    pub fn build(tag: &str, homes: &[NatKind], server_args: &[&str]) -> anyhow::Result<Lab> {
        let homes: Vec<(NatKind, Stack)> = homes.iter().map(|&kind| (kind, Stack::V4)).collect();
        Lab::build_with(tag, &homes, server_args, Options::default())
    }

    /// A dual-stack lab: the public network has IPv6 too, the signal server listens on `[::]`
    /// (both families on one socket), STUN and coturn listen on both families and the server
    /// hands out a STUN and a TURN URL for each. Each home has the NAT kind and families given.
    pub fn build_dual_stack(tag: &str, homes: &[(NatKind, Stack)], server_args: &[&str]) -> anyhow::Result<Lab> {
        Lab::build_with(tag, homes, server_args, Options { firewalls: false, ipv6: true })
    }

    /// A lab for networks behind firewalls: coturn also listens for TCP on its usual port and
    /// for TLS on [`TURN_TLS_IP`]:443 with a certificate from a test CA made here
    /// ([`LabTurn::ca_file`]), the signal server listens on port 443 and hands out the TCP and
    /// TLS URLs beside the UDP one.
    pub fn build_for_firewalls(tag: &str, homes: &[NatKind], server_args: &[&str]) -> anyhow::Result<Lab> {
        let homes: Vec<(NatKind, Stack)> = homes.iter().map(|&kind| (kind, Stack::V4)).collect();
        Lab::build_with(tag, &homes, server_args, Options { firewalls: true, ipv6: false })
    }

    fn build_with(
        tag: &str,
        homes: &[(NatKind, Stack)],
        server_args: &[&str],
        options: Options,
    ) -> anyhow::Result<Lab> {
        let Options { firewalls, ipv6 } = options;
        Netns::remove_stale(PREFIX);
        let prefix = format!("{PREFIX}{}-{tag}", std::process::id());
        let public = Netns::create(&format!("{prefix}-pub"))?;
        public.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        public.exec(&["ip", "addr", "add", &format!("{PUBLIC_IP}/24"), "dev", "br0"])?;
        public.exec(&["ip", "link", "set", "br0", "up"])?;
        public.exec(&["ip", "addr", "add", &format!("{SERVER_PRIVATE_IP}/32"), "dev", "lo"])?;
        if ipv6 {
            without_dad(&public)?;
            // The public namespace is also the IPv6 internet's router between the homes.
            public.exec(&["ip", "-6", "addr", "add", &format!("{PUBLIC_IP6}/64"), "dev", "br0", "nodad"])?;
            public.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        }

        let mut built = Vec::new();
        for (i, &(kind, stack)) in homes.iter().enumerate() {
            anyhow::ensure!(ipv6 || stack == Stack::V4, "a home with IPv6 needs a dual-stack lab");
            built.push(build_home(&prefix, &public, i, kind, stack)?);
        }

        if firewalls {
            public.exec(&["ip", "addr", "add", &format!("{TURN_TLS_IP}/24"), "dev", "br0"])?;
        }
        let turn = start_turn(&public, &prefix, firewalls, ipv6)?;
        let (mut stun_listen, mut stun_url) =
            (format!("{PUBLIC_IP}:{STUN_PORT}"), format!("stun:{PUBLIC_IP}:{STUN_PORT}"));
        let turn_ip = if firewalls { TURN_TLS_IP } else { PUBLIC_IP };
        let mut turn_urls = format!("turn:{turn_ip}:{TURN_PORT}?transport=udp");
        if ipv6 {
            stun_listen = format!("[::]:{STUN_PORT}");
            stun_url.push_str(&format!(",stun:[{PUBLIC_IP6}]:{STUN_PORT}"));
            // TCP too, for IPv6 networks that block UDP (coturn listens for TCP on its port).
            turn_urls.push_str(&format!(
                ",turn:[{PUBLIC_IP6}]:{TURN_PORT}?transport=udp,turn:[{PUBLIC_IP6}]:{TURN_PORT}?transport=tcp"
            ));
        }
        if firewalls {
            turn_urls.push_str(&format!(
                ",turn:{turn_ip}:{TURN_PORT}?transport=tcp,turns:{turn_ip}:{HTTPS_PORT}?transport=tcp"
            ));
        }
        let mut args = vec![
            "--stun-listen",
            &stun_listen,
            "--stun-url",
            &stun_url,
            "--turn-url",
            &turn_urls,
            "--turn-secret",
            &turn.secret,
        ];
        args.extend_from_slice(server_args);
        let listen = match (firewalls, ipv6) {
            (true, _) => format!("{PUBLIC_IP}:{HTTPS_PORT}"),
            (false, true) => "[::]:0".to_owned(),
            (false, false) => "0.0.0.0:0".to_owned(),
        };
        let server = Server::start_listening_in(Some(public.name.as_str()), &listen, &args)?;
        Ok(Lab { server, turn, homes: built, public })
    }

    /// Starts a STUN server for NAT behaviour discovery on two more public addresses.
    pub fn start_behaviour_stun(&self) -> anyhow::Result<BehaviourStun> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.public.name, "turnserver", "-n", "--stun-only", "--no-cli"]);
        for ip in BEHAVIOUR_IPS {
            self.public.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "br0"])?;
            command.args(["--listening-ip", &ip.to_string()]);
        }
        let port = BEHAVIOUR_PORT.to_string();
        command.args([
            "--listening-port",
            &port,
            "--no-tls",
            "--no-dtls",
            "--log-file",
            "stdout",
            "--pidfile",
            "/dev/null",
        ]);
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting turnserver")?;
        let stun = BehaviourStun { child };
        wait_udp_listener(&self.public, BEHAVIOUR_PORT)?;
        Ok(stun)
    }

    /// The signal server's port.
    pub fn server_port(&self) -> u16 {
        self.server.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the server prints ADDR:PORT")
    }

    /// The signal server's WebSocket URL as the homes reach it (over IPv4).
    pub fn ws_url(&self) -> String {
        format!("ws://{PUBLIC_IP}:{}/ws", self.server_port())
    }

    /// The signal server's WebSocket URL as `home` reaches it: over IPv6 from an IPv6-only
    /// host, else over IPv4.
    pub fn ws_url_for(&self, home: &Home) -> String {
        match home.stack {
            Stack::V6Only => format!("ws://[{PUBLIC_IP6}]:{}/ws", self.server_port()),
            Stack::V4 | Stack::Dual => self.ws_url(),
        }
    }

    /// The value of counter `strangers_<name>` on the signal server's /metrics.
    pub fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let addr = format!("{PUBLIC_IP}:{}", self.server_port());
        self.public.run_inside(|| crate::read_metric(&addr, name))
    }
}

/// What a lab has beside its homes.
#[derive(Debug, Clone, Copy, Default)]
struct Options {
    /// coturn on its own address with TCP and TLS on 443 (see [`Lab::build_for_firewalls`]).
    firewalls: bool,
    /// IPv6 on the public network (see [`Lab::build_dual_stack`]).
    ipv6: bool,
}

fn build_home(prefix: &str, public: &Netns, i: usize, kind: NatKind, stack: Stack) -> anyhow::Result<Home> {
    let n = u8::try_from(i + 1).context("at most 200 homes")?;
    let public_ip = Ipv4Addr::new(20, 0, 0, 10 + n);
    let private_ip = Ipv4Addr::new(192, 168, n, 2);
    let router = Netns::create(&format!("{prefix}-r{n}"))?;
    let host = Netns::create(&format!("{prefix}-h{n}"))?;
    if stack.has_v6() {
        without_dad(&router)?;
        without_dad(&host)?;
    }
    let uplink = format!("up{n}");
    // The router's wan end is created in the router, its other end on the public bridge.
    run(
        "ip",
        &["link", "add", "wan", "netns", &router.name, "type", "veth", "peer", "name", &uplink, "netns", &public.name],
    )?;
    public.exec(&["ip", "link", "set", &uplink, "master", "br0", "up"])?;
    // The LAN is a bridge named `lan` in the router, so more hosts can join it.
    router.exec(&["ip", "link", "add", "lan", "type", "bridge"])?;
    router.exec(&["ip", "addr", "add", &format!("{}/24", lan_gateway(private_ip)), "dev", "lan"])?;
    router.exec(&["ip", "addr", "add", &format!("{public_ip}/24"), "dev", "wan"])?;
    router.exec(&["ip", "link", "set", "wan", "up"])?;
    router.exec(&["ip", "link", "set", "lan", "up"])?;
    // The LAN is a switch: its hosts reach each other without the router's filter. Where the
    // kernel passes bridged packets through the IP hooks (br_netfilter), the router's forward
    // policy would drop them, multicast and mDNS included.
    router.exec(&[
        "sh",
        "-c",
        "[ ! -d /proc/sys/net/bridge ] || sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0",
    ])?;
    router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let rules = kind.ruleset(private_ip);
    nft(&router, &rules).with_context(|| format!("{} router rules", kind.name()))?;
    attach_to_lan(&router, &host, "lan0", stack.has_v4().then_some(private_ip))?;
    let (ipv6, ula) = if stack.has_v6() { route_ipv6(public, &router, &host, n)? } else { (None, None) };
    Ok(Home { kind, host, router, public_ip, private_ip, stack, ipv6, ula })
}

/// The router's address on the LAN of a host at `ip` (`.1` of its /24).
fn lan_gateway(ip: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, _] = ip.octets();
    Ipv4Addr::new(a, b, c, 1)
}

/// Plugs `host` into the router's LAN bridge through a veth (`port` on the router's side,
/// `eth0` on the host's), at `ip` with the router as its default route (with no IPv4 address
/// when `ip` is `None`).
fn attach_to_lan(router: &Netns, host: &Netns, port: &str, ip: Option<Ipv4Addr>) -> anyhow::Result<()> {
    run(
        "ip",
        &["link", "add", port, "netns", &router.name, "type", "veth", "peer", "name", "eth0", "netns", &host.name],
    )?;
    router.exec(&["ip", "link", "set", port, "master", "lan", "up"])?;
    host.exec(&["ip", "link", "set", "eth0", "up"])?;
    if let Some(ip) = ip {
        host.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        host.exec(&["ip", "route", "add", "default", "via", &lan_gateway(ip).to_string()])?;
        // Multicast goes out on the LAN, as on any host with one (a fresh namespace sends it
        // to its loopback, where a neighbour never hears an mDNS query).
        host.exec(&["ip", "route", "replace", "224.0.0.0/4", "dev", "eth0"])?;
    }
    Ok(())
}

/// coturn with `assets/turnserver.conf` as shipped, except what a lab must change: where it
/// listens and relays, its secret, and where it logs (TLS is off: the lab has no certificate).
/// coturn lets its configuration file win over command-line flags, so the lab writes a copy of
/// the file with those lines replaced.
fn start_turn(public: &Netns, prefix: &str, tls: bool, ipv6: bool) -> anyhow::Result<LabTurn> {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/turnserver.conf");
    let text = std::fs::read_to_string(shipped).with_context(|| format!("reading {shipped}"))?;
    let replaced = ["listening-port", "tls-listening-port", "static-auth-secret", "cert", "pkey", "log-file"];
    let mut conf: String = text
        .lines()
        .filter(|line| {
            let key = line.split('=').next().unwrap_or_default().trim();
            !replaced.contains(&key)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let secret = format!("lab-secret-{}", std::process::id());
    let ip = if tls { TURN_TLS_IP } else { PUBLIC_IP };
    conf.push_str(&format!(
        "\n# Lab overrides.\nlistening-ip={ip}\nrelay-ip={ip}\nlistening-port={TURN_PORT}\n\
         static-auth-secret={secret}\nno-dtls\nlog-file=stdout\npidfile=/dev/null\n"
    ));
    if ipv6 {
        // Clients reach it over either family; allocations stay IPv4 unless a client asks
        // (coturn's default, RFC 6156), which is how an IPv6-only client meets an IPv4 one.
        conf.push_str(&format!("listening-ip={PUBLIC_IP6}\nrelay-ip={PUBLIC_IP6}\n"));
    }
    let tls_dir = if tls {
        let dir = std::env::temp_dir().join(format!("{prefix}-tls"));
        make_test_certificates(&dir, TURN_TLS_IP)?;
        conf.push_str(&format!(
            "tls-listening-port={HTTPS_PORT}\ncert={}\npkey={}\n",
            dir.join("turn.pem").display(),
            dir.join("turn.key").display()
        ));
        Some(dir)
    } else {
        conf.push_str("no-tls\n");
        None
    };
    let path = std::env::temp_dir().join(format!("{prefix}-turnserver.conf"));
    std::fs::write(&path, conf)?;
    let child = Command::new("ip")
        .args(["netns", "exec", &public.name, "turnserver", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting turnserver: is coturn installed (bash scripts/setup.sh)?")?;
    let turn = LabTurn { child, secret, conf: path, tls_dir };
    wait_udp_listener(public, TURN_PORT)?;
    Ok(turn)
}

/// Makes a test CA (`ca.pem`) and a certificate for `ip` signed by it (`turn.pem`, `turn.key`)
/// in `dir`, with the openssl command.
fn make_test_certificates(dir: &std::path::Path, ip: Ipv4Addr) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let at = |name: &str| dir.join(name).display().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Strangers lab CA", "-keyout"];
    let (ca_key, ca_pem) = (at("ca.key"), at("ca.pem"));
    ca.extend([ca_key.as_str(), "-out", ca_pem.as_str()]);
    ca.extend(ec);
    run("openssl", &ca).context("making the test CA (is openssl installed?)")?;
    let (key, csr, pem, ext) = (at("turn.key"), at("turn.csr"), at("turn.pem"), at("san.ext"));
    let mut request = vec!["req", "-subj", "/CN=lab TURN", "-keyout", key.as_str(), "-out", csr.as_str()];
    request.extend(ec);
    run("openssl", &request)?;
    std::fs::write(&ext, format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"))?;
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ],
    )?;
    Ok(())
}

/// Loads an nftables ruleset into the namespace.
fn nft(netns: &Netns, rules: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &netns.name, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (is nftables installed?)")?;
    child.stdin.take().context("stdin was piped")?.write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft in {} failed: {}\n{rules}", netns.name, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Waits until something listens on UDP `port` in the namespace.
fn wait_udp_listener(netns: &Netns, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let wanted = format!(":{port} ");
    while Instant::now() < deadline {
        let out = Command::new("ip").args(["netns", "exec", &netns.name, "ss", "-uln"]).output()?;
        if String::from_utf8_lossy(&out.stdout).contains(&wanted) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on UDP port {port} in {}", netns.name)
}

/// Counts packets arriving at a host, with nftables counters in the host's own namespace
/// (after its router's translation, so sources are what the host really receives from).
pub struct Capture<'a> {
    netns: &'a Netns,
}

impl<'a> Capture<'a> {
    /// Starts one counter per `(name, nft match)`, e.g. `("relay", "ip saddr 20.0.0.1 udp sport
    /// 49160-65535")`. Names are single words.
    pub fn start(netns: &'a Netns, watched: &[(&str, String)]) -> anyhow::Result<Capture<'a>> {
        let mut rules = String::from("table ip capture {\n  chain in { type filter hook input priority -10;\n");
        for (name, matcher) in watched {
            rules.push_str(&format!("    {matcher} counter comment \"{name}\"\n"));
        }
        rules.push_str("  }\n}\n");
        nft(netns, &rules)?;
        Ok(Capture { netns })
    }

    /// Packets counted by counter `name` so far.
    pub fn packets(&self, name: &str) -> anyhow::Result<u64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns.name, "nft", "list", "table", "ip", "capture"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let wanted = format!("comment \"{name}\"");
        let line = text.lines().find(|l| l.contains(&wanted)).with_context(|| format!("no counter {name}"))?;
        let packets = line.split("packets ").nth(1).and_then(|s| s.split_whitespace().next());
        packets.and_then(|p| p.parse().ok()).with_context(|| format!("unreadable counter: {line}"))
    }
}

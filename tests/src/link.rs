//! An emulated thin link: two network namespaces joined by a veth pair whose two ends are
//! shaped alike, with an HTB class at one rate feeding a FIFO of a fixed depth in packets, as a
//! home uplink with a modem's buffer. The rate can change while traffic flows. This module only
//! builds and shapes the link; what runs across it is up to its callers.
//!
//! Namespaces are named `strangers-link-<pid>-<tag>-a` and `-b`, so links of parallel runs never
//! meet, and a link left by a run that was killed (its pid gone) is removed when the next one is
//! built. Dropping a [`Link`] kills what still runs in its namespaces and deletes them.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::Context;

use crate::{run, Netns};

/// Every link namespace starts with this.
const PREFIX: &str = "strangers-link-";
/// The name of the veth end inside each namespace.
const DEVICE: &str = "thin";
/// Side A's address on the link (the signal server and client A live there).
pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// Side B's address on the link.
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
/// How many bytes HTB may send at once above the rate after an idle spell.
const BURST: &str = "4k";

/// Two namespaces joined by a shaped veth pair. Fields drop in order: B, then A.
pub struct Link {
    pub b: Netns,
    pub a: Netns,
    rate_kbit: u32,
    queue_packets: u32,
}

impl Link {
    /// Builds the two namespaces, joins them, gives each a default route over the link and
    /// shapes both ends to `rate_kbit` with a FIFO of `queue_packets` packets. `tag` tells this
    /// link's namespaces apart from other links of the same run.
    pub fn build(tag: &str, rate_kbit: u32, queue_packets: u32) -> anyhow::Result<Link> {
        Netns::remove_stale(PREFIX);
        let prefix = format!("{PREFIX}{}-{tag}", std::process::id());
        let a = Netns::create(&format!("{prefix}-a"))?;
        let b = Netns::create(&format!("{prefix}-b"))?;
        run("ip", &["link", "add", DEVICE, "netns", &a.name, "type", "veth", "peer", "name", DEVICE, "netns", &b.name])
            .context("creating the veth pair")?;
        let link = Link { b, a, rate_kbit, queue_packets };
        for (netns, ip, peer) in [(&link.a, A_IP, B_IP), (&link.b, B_IP, A_IP)] {
            netns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", DEVICE])?;
            netns.exec(&["ip", "link", "set", DEVICE, "up"])?;
            netns.exec(&["ip", "route", "add", "default", "via", &peer.to_string(), "dev", DEVICE])?;
            shape(netns, rate_kbit, queue_packets).with_context(|| format!("shaping {}", netns.name))?;
        }
        Ok(link)
    }

    /// Side A's namespace, for `Server::start_listening_in` and `Client::start_in`.
    pub fn ns_a(&self) -> Option<&str> {
        Some(self.a.name.as_str())
    }

    /// Side B's namespace.
    pub fn ns_b(&self) -> Option<&str> {
        Some(self.b.name.as_str())
    }

    /// The rate both ends are shaped to now, kbit/s.
    pub fn rate_kbit(&self) -> u32 {
        self.rate_kbit
    }

    /// The depth of each end's FIFO, packets.
    pub fn queue_packets(&self) -> u32 {
        self.queue_packets
    }

    /// Changes the rate of both ends at once, without emptying their queues.
    pub fn set_rate(&mut self, rate_kbit: u32) -> anyhow::Result<()> {
        for netns in [&self.a, &self.b] {
            let class = class_args("change", rate_kbit);
            let args: Vec<&str> = class.iter().map(String::as_str).collect();
            netns.exec(&args).with_context(|| format!("changing the rate of {}", netns.name))?;
        }
        self.rate_kbit = rate_kbit;
        Ok(())
    }

    /// Packets each end's FIFO dropped so far because it was full: A's, then B's.
    pub fn dropped(&self) -> anyhow::Result<[u64; 2]> {
        Ok([fifo_drops(&self.a)?, fifo_drops(&self.b)?])
    }
}

/// The `tc class` command (`add` or `change`) of the one HTB class every packet goes through.
fn class_args(verb: &str, rate_kbit: u32) -> Vec<String> {
    let rate = format!("{rate_kbit}kbit");
    let args = ["tc", "class", verb, "dev", DEVICE, "parent", "1:", "classid", "1:10", "htb"];
    let shaping = ["rate", &rate, "ceil", &rate, "burst", BURST];
    args.iter().chain(&shaping).map(|arg| arg.to_string()).collect()
}

/// Puts an HTB root on the namespace's end of the link, with one default class at `rate_kbit`
/// whose queue is a FIFO of `queue_packets` packets.
fn shape(netns: &Netns, rate_kbit: u32, queue_packets: u32) -> anyhow::Result<()> {
    netns.exec(&["tc", "qdisc", "add", "dev", DEVICE, "root", "handle", "1:", "htb", "default", "10"])?;
    let class = class_args("add", rate_kbit);
    netns.exec(&class.iter().map(String::as_str).collect::<Vec<_>>())?;
    let limit = queue_packets.to_string();
    netns.exec(&["tc", "qdisc", "add", "dev", DEVICE, "parent", "1:10", "handle", "10:", "pfifo", "limit", &limit])
}

/// The drop counter of the namespace's FIFO.
fn fifo_drops(netns: &Netns) -> anyhow::Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &netns.name, "tc", "-s", "qdisc", "show", "dev", DEVICE, "parent", "1:10"])
        .output()
        .context("running tc")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dropped = text.split("(dropped ").nth(1).and_then(|rest| rest.split(',').next());
    dropped.and_then(|n| n.trim().parse().ok()).with_context(|| format!("no drop counter in {text}"))
}

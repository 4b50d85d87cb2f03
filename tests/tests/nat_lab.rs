//! The NAT lab (`tests/src/nat.rs`): real clients behind real NAT routers in network
//! namespaces meet through the real signal server, with the signal server's STUN responder and
//! a real coturn running the shipped configuration on the "public" network.
//!
//! - The routers are what they are named: coturn's NAT behaviour discovery says so.
//! - Every pairing of the four NAT kinds connects and carries verified video; the candidate
//!   types of the winning pair are recorded (direct wherever a direct path exists, through TURN
//!   where none does, symmetric to symmetric included).
//! - Relay-only mode connects in every pairing, and the far side never receives a packet from
//!   the privacy user's real (public) address.
//! - NAT mappings flushed mid-call (UDP ones, or all with signaling) are recovered by an ICE
//!   restart within the same call.
//! - A relayed call across routers dropping 5 % of inbound UDP holds and recovers.
//! - coturn refuses to relay into private and loopback addresses, and refuses expired and
//!   forged credentials.
//! - On a dual-stack internet, dual-stack homes call each other and IPv6-only hosts directly
//!   over IPv6, and an IPv6-only host meets an IPv4-only one through the relay.
//! - A call whose selected pair changes (an ICE restart) says so in a `path_changed` event.
//!
//! Needs root (namespaces, nftables); each test says it is skipped without it. The heavy tests
//! take turns (the machine may have two cores); `--nocapture` prints the figures that
//! docs/NAT.md reports.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use strangers_system_tests::lossy::measure;
use strangers_system_tests::nat::{
    Capture, Egress, Flush, Home, Lab, NatKind, Stack, BEHAVIOUR_IPS, BEHAVIOUR_PORT, PUBLIC_IP, SERVER_PRIVATE_IP,
    TURN_PORT,
};
use strangers_system_tests::turn_probe::{Answer, TurnProbe};
use strangers_system_tests::{root_or_skip, Client, RawPeer};

const T: Duration = Duration::from_secs(30);
/// Small video keeps four calls at once affordable; the NAT, not the codec, is under test.
const MEDIA: [&str; 6] = ["--width", "320", "--height", "240", "--fps", "15"];
/// Frames each side must verify before a call counts as carrying video.
const FRAMES: u64 = 30;
/// coturn's relay ports (assets/turnserver.conf `min-port`..`max-port`).
const RELAY_PORTS: &str = "49160-65535";

/// Calls take turns across tests: each test runs up to four at once.
static CALLS: Mutex<()> = Mutex::new(());

/// Builds a lab with these homes once this test's turn to make calls comes; `None` (the test
/// is skipped, saying so) without root. The lab drops before the turn is handed on.
fn lab_for_calls(
    test: &str,
    tag: &str,
    homes: &[NatKind],
    server_args: &[&str],
) -> Option<(MutexGuard<'static, ()>, Lab)> {
    if !root_or_skip(test, "network namespaces and nftables") {
        return None;
    }
    let turn = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    Some((turn, Lab::build(tag, homes, server_args).expect("the lab builds")))
}

/// One call between two homes, as measured on the side that joined second.
#[derive(Debug, Clone)]
struct CallResult {
    /// Candidate types of the selected pair, seen from `a`: (a's local, a's remote).
    path: (String, String),
    /// How `a` reaches TURN when its side is relayed (`udp`, `tcp`, `tls`).
    relay: Option<String>,
    /// The pair's address family, seen from `a` (`ipv4`, `ipv6`).
    family: String,
    /// From the second client's find to ICE and DTLS up, and to its first decoded frame.
    connected_ms: u64,
    first_frame_ms: u64,
}

fn path_of(stats: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    (text(&stats["path"]["local"]), text(&stats["path"]["remote"]))
}

/// Waits until a client has verified `FRAMES` frames with no error, and returns that stats line.
fn verified(c: &mut Client) -> anyhow::Result<Value> {
    let stats = c.wait_for(T, "verified frames", |e| {
        e["event"] == "stats" && e["frames_verified"].as_u64().unwrap_or(0) >= FRAMES
    })?;
    anyhow::ensure!(stats["verify_errors"] == 0, "{}: corrupt frames: {stats}", c.name);
    Ok(stats)
}

/// Starts a client in `a`, then one in `b` once `a` waits, and returns both once each has
/// verified video. They meet through an interest of their own, so calls running at once in the
/// same lab pair as meant.
fn meet(
    lab: &Lab,
    (a, b): (&Home, &Home),
    tag: &str,
    media: &[&str],
    a_flags: &[&str],
) -> anyhow::Result<(Client, Client, CallResult)> {
    meet_in(((a.ns(), lab.ws_url_for(a)), (b.ns(), lab.ws_url_for(b))), tag, media, a_flags)
}

/// Where a client runs (a namespace, or the test's own) and the signal server URL it uses.
type Place<'a> = (Option<&'a str>, String);

/// [`meet`] between any two namespaces, each reaching the signal server at its URL.
fn meet_in(
    ((a, a_url), (b, b_url)): (Place<'_>, Place<'_>),
    tag: &str,
    media: &[&str],
    a_flags: &[&str],
) -> anyhow::Result<(Client, Client, CallResult)> {
    let interest = format!("cell-{tag}");
    let mut args: Vec<&str> = vec!["--interests", &interest, "--exit-after", "120"];
    args.extend_from_slice(media);
    let mut a_args = args.clone();
    a_args.extend_from_slice(a_flags);
    let mut ca = Client::start_in(a, &format!("{tag}/a"), &a_url, &a_args)?;
    ca.wait_event(T, "queued")?;
    let mut cb = Client::start_in(b, &format!("{tag}/b"), &b_url, &args)?;
    let connected = cb.wait_event(T, "connected")?;
    let first = cb.wait_event(T, "first_frame")?;
    ca.wait_event(T, "first_frame")?;
    let stats = verified(&mut ca)?;
    verified(&mut cb)?;
    let result = CallResult {
        path: path_of(&stats),
        relay: stats["path"]["relay"].as_str().map(str::to_owned),
        family: stats["path"]["family"].as_str().unwrap_or("?").to_owned(),
        connected_ms: connected["ms_since_find"].as_u64().unwrap_or_default(),
        first_frame_ms: first["ms_since_find"].as_u64().unwrap_or_default(),
    };
    Ok((ca, cb, result))
}

/// A lab with a home of every kind on side a (homes 0-3) and on side b (homes 4-7).
fn matrix_lab(test: &str, tag: &str) -> Option<(MutexGuard<'static, ()>, Lab)> {
    let kinds: Vec<NatKind> = NatKind::ALL.iter().chain(NatKind::ALL.iter()).copied().collect();
    lab_for_calls(test, tag, &kinds, &["--interest-wait", "300"])
}

/// Runs every cell of the 4x4 matrix, four at a time (each a-home and b-home in one call per
/// round), and returns the results in row order with `check` run on each call.
fn run_matrix<F>(lab: &Lab, a_flags: &[&str], check: F) -> Vec<((NatKind, NatKind), anyhow::Result<CallResult>)>
where
    F: Fn(&Home, &Home, &mut Client, &mut Client) -> anyhow::Result<()> + Sync,
{
    let mut results = Vec::new();
    for round in 0..4 {
        let cells: Vec<(usize, usize)> = (0..4).map(|i| (i, 4 + (i + round) % 4)).collect();
        let outcomes = run_cells(lab, &cells, "", &MEDIA, a_flags, &check);
        for (&(i, j), outcome) in cells.iter().zip(outcomes) {
            results.push(((NatKind::ALL[i], NatKind::ALL[j - 4]), outcome));
        }
    }
    results.sort_by_key(|((a, b), _)| {
        (NatKind::ALL.iter().position(|k| k == a), NatKind::ALL.iter().position(|k| k == b))
    });
    results
}

/// Runs one call per `(a, b)` pair of home indices at once, tagged `{tag}{a}{b}`, with `check`
/// run on each, and returns the outcomes in the order of `cells`.
fn run_cells<F>(
    lab: &Lab,
    cells: &[(usize, usize)],
    tag: &str,
    media: &[&str],
    a_flags: &[&str],
    check: &F,
) -> Vec<anyhow::Result<CallResult>>
where
    F: Fn(&Home, &Home, &mut Client, &mut Client) -> anyhow::Result<()> + Sync,
{
    std::thread::scope(|scope| {
        let handles: Vec<_> = cells
            .iter()
            .map(|&(i, j)| {
                let (a, b) = (&lab.homes[i], &lab.homes[j]);
                scope.spawn(move || {
                    let (mut ca, mut cb, result) = meet(lab, (a, b), &format!("{tag}{i}{j}"), media, a_flags)?;
                    check(a, b, &mut ca, &mut cb)?;
                    Ok(result)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a cell's thread does not panic")).collect()
    })
}

fn print_table(title: &str, results: &[((NatKind, NatKind), anyhow::Result<CallResult>)]) {
    eprintln!("\n{title}\n| a \\ b | pair (a local / a remote) | connected ms | first frame ms |\n|---|---|---|---|");
    for ((a, b), outcome) in results {
        match outcome {
            Ok(r) => eprintln!(
                "| {} / {} | {} / {} | {} | {} |",
                a.name(),
                b.name(),
                r.path.0,
                r.path.1,
                r.connected_ms,
                r.first_frame_ms
            ),
            Err(e) => eprintln!("| {} / {} | FAILED: {e:#} | | |", a.name(), b.name()),
        }
    }
}

/// Whether theory says two NATs of these kinds can talk directly: only a symmetric NAT facing
/// a symmetric or port-restricted one leaves no hole that both sides can find.
fn direct_possible(a: NatKind, b: NatKind) -> bool {
    use NatKind::{PortRestricted, Symmetric};
    !matches!((a, b), (Symmetric, Symmetric) | (Symmetric, PortRestricted) | (PortRestricted, Symmetric))
}

#[test]
fn every_nat_pairing_connects_with_verified_video() {
    let Some((_turn, lab)) = matrix_lab("every_nat_pairing_connects_with_verified_video", "m") else { return };
    let started = Instant::now();
    let results = run_matrix(&lab, &[], |_, _, ca, cb| {
        for c in [ca, cb] {
            let kinds: Vec<_> = c.seen_named("local_candidate").iter().map(|e| e["kind"].clone()).collect();
            anyhow::ensure!(kinds.iter().any(|k| k == "srflx"), "{}: no server-reflexive candidate: {kinds:?}", c.name);
        }
        Ok(())
    });
    print_table("NAT matrix (direct allowed)", &results);
    eprintln!("matrix wall time: {:.1} s", started.elapsed().as_secs_f64());
    // Server-reflexive candidates came from the signal server's own STUN responder.
    let stun = lab.metric("stun_requests_total").expect("metrics");
    assert!(stun >= 8, "the STUN responder answered {stun} requests");
    for ((a, b), outcome) in &results {
        let r = outcome.as_ref().unwrap_or_else(|e| panic!("{} / {}: {e:#}", a.name(), b.name()));
        let relayed = r.path.0 == "relay" || r.path.1 == "relay";
        if !direct_possible(*a, *b) {
            assert!(relayed, "{} / {} cannot go direct, yet the pair is {:?}", a.name(), b.name(), r.path);
        } else {
            assert!(!relayed, "{} / {} can go direct, yet it went through TURN: {:?}", a.name(), b.name(), r.path);
        }
    }
}

#[test]
fn relay_only_connects_everywhere_and_hides_the_address() {
    let Some((_turn, lab)) = matrix_lab("relay_only_connects_everywhere_and_hides_the_address", "r") else { return };
    let started = Instant::now();
    // On every b host: count UDP from each a router's public address (must stay zero: a is
    // the privacy user) and from coturn's relay ports (where a's media must come from).
    let mut watched: Vec<(String, String)> = lab.homes[..4]
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("a{i}"), format!("ip saddr {} meta l4proto udp", h.public_ip)))
        .collect();
    watched.push(("relay".into(), format!("ip saddr {PUBLIC_IP} udp sport {RELAY_PORTS}")));
    let watched: Vec<(&str, String)> = watched.iter().map(|(n, m)| (n.as_str(), m.clone())).collect();
    let captures: Vec<Capture<'_>> =
        lab.homes[4..].iter().map(|h| Capture::start(&h.host, &watched).expect("counters")).collect();
    let results = run_matrix(&lab, &["--relay-only"], |a, b, ca, cb| {
        let kinds: Vec<_> = ca.seen_named("local_candidate").iter().map(|e| e["kind"].clone()).collect();
        anyhow::ensure!(!kinds.is_empty() && kinds.iter().all(|k| k == "relay"), "a sent {kinds:?}");
        let stats = verified(cb)?;
        anyhow::ensure!(stats["path"]["remote"] == "relay", "b's remote is not a relay: {stats}");
        let capture = &captures[lab.homes[4..].iter().position(|h| std::ptr::eq(h, b)).expect("a b home")];
        let a_index = lab.homes[..4].iter().position(|h| std::ptr::eq(h, a)).expect("an a home");
        let leaked = capture.packets(&format!("a{a_index}"))?;
        let relayed = capture.packets("relay")?;
        anyhow::ensure!(leaked == 0, "{leaked} packets from a's real address reached b");
        anyhow::ensure!(relayed > 0, "no relay packet reached b");
        Ok(())
    });
    print_table("Relay-only matrix (a is relay-only)", &results);
    eprintln!("relay-only wall time: {:.1} s", started.elapsed().as_secs_f64());
    for ((a, b), outcome) in &results {
        let r = outcome.as_ref().unwrap_or_else(|e| panic!("{} / {}: {e:#}", a.name(), b.name()));
        assert_eq!(r.path.0, "relay", "{} / {}: {:?}", a.name(), b.name(), r.path);
    }
    // Every a was relay-only all along: nothing from any of their real addresses anywhere.
    for (capture, home) in captures.iter().zip(&lab.homes[4..]) {
        for i in 0..4 {
            assert_eq!(capture.packets(&format!("a{i}")).unwrap(), 0, "a{i} leaked to {}", home.host.name);
        }
    }
}

#[test]
fn a_flushed_nat_mapping_is_recovered_by_an_ice_restart() {
    recovers_from_a_flush("a_flushed_nat_mapping_is_recovered_by_an_ice_restart", "i", Flush::Udp);
}

/// The router forgets its TCP mappings too, so the signaling socket dies in the same moment:
/// the restart's first offer or answer can be relayed into the dead socket and lost, and the
/// failed side asks again until the call is back.
#[test]
fn a_router_that_forgets_every_mapping_is_recovered_by_an_ice_restart() {
    recovers_from_a_flush("a_router_that_forgets_every_mapping_is_recovered_by_an_ice_restart", "j", Flush::All);
}

/// A full-cone / symmetric call; then the symmetric router forgets its mappings. The symmetric
/// side gets a new port for every flow, so after the flush its packets come from an address the
/// stranger never checked, and the stranger's reach the old, dead port.
fn recovers_from_a_flush(test: &str, tag: &str, flush: Flush) {
    let Some((_turn, lab)) = lab_for_calls(test, tag, &[NatKind::FullCone, NatKind::Symmetric], &[]) else { return };
    let (mut a, mut b, result) =
        meet(&lab, (&lab.homes[0], &lab.homes[1]), "restart", &MEDIA, &[]).expect("the call starts");
    let frames = |e: &Value| e["frames_verified"].as_u64().unwrap_or(0);
    let flushed = Instant::now();
    lab.homes[1].flush_mappings(flush).expect("flush");
    // Media stops, ICE notices (failed), restarts, and video flows both ways again. Events are
    // read as they come, so the times below are when they happened (to a tenth of a second).
    let deadline = flushed + Duration::from_secs(40);
    let (mut failed_at, mut restarted) = (None, None);
    // Per side: frames verified when the restart completed, and when the count moved again.
    let mut frames_then: [Option<u64>; 2] = [None, None];
    let mut back_at: [Option<Duration>; 2] = [None, None];
    while back_at.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "video did not come back; a: {:?}\nb: {:?}", tail(&a), tail(&b));
        for (i, c) in [&mut a, &mut b].into_iter().enumerate() {
            while let Ok(e) = c.wait_for(Duration::from_millis(50), "any event", |_| true) {
                let now = flushed.elapsed();
                if e["event"] == "connection_state" && e["state"] == "failed" {
                    failed_at.get_or_insert(now);
                }
                if e["event"] == "ice_restarted" && restarted.is_none() {
                    restarted = Some((now, e["ms"].as_u64().unwrap_or_default()));
                }
                if e["event"] != "stats" || restarted.is_none() {
                    continue;
                }
                let then = *frames_then[i].get_or_insert(frames(&e));
                if frames(&e) > then {
                    back_at[i].get_or_insert(now);
                }
            }
        }
    }
    // And it lasts: each side verifies a run of frames on the new path.
    let mut path = None;
    for c in [&mut a, &mut b] {
        let now = c.seen_named("stats").last().map(|e| frames(e)).unwrap_or(0);
        let stats =
            c.wait_for(T, "video after the restart", |e| e["event"] == "stats" && frames(e) >= now + FRAMES).unwrap();
        assert_eq!(stats["verify_errors"], 0, "{}: corrupt frames: {stats}", c.name);
        path.get_or_insert(path_of(&stats));
    }
    let (restarted_at, restart_ms) = restarted.expect("the loop ends only after a restart");
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    eprintln!(
        "ICE restart after a flush of {flush:?} mappings: failed at {:.1} s, restarted at {:.1} s ({restart_ms} ms from failure to \
         connected), video back at {:.1} s (a) and {:.1} s (b) after the flush; pair {:?} -> {:?}",
        secs(failed_at),
        restarted_at.as_secs_f64(),
        secs(back_at[0]),
        secs(back_at[1]),
        result.path,
        path.expect("two sides"),
    );
    for c in [&a, &b] {
        assert!(c.seen_named("partner_left").is_empty(), "{}: the call ended", c.name);
        assert_eq!(c.seen_named("matched").len(), 1, "{}: a new call replaced this one", c.name);
        // The restart moved the call to a new pair (new sockets, a new mapping), and each side
        // said so, with the path before and after.
        let switches = c.seen_named("path_changed");
        assert!(!switches.is_empty(), "{}: no path_changed after the restart: {:?}", c.name, tail(c));
        for e in &switches {
            assert!(e["from"]["local"].is_string() && e["to"]["local"].is_string(), "{}: {e}", c.name);
        }
        eprintln!("{}: {}", c.name, switches.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" "));
    }
}

#[test]
fn a_relayed_call_across_lossy_routers_holds_and_recovers() {
    // Port-restricted and symmetric cannot meet directly: every packet crosses coturn, and each
    // router drops 5 % of what comes in, so each direction loses about 5 % on its way.
    let test = "a_relayed_call_across_lossy_routers_holds_and_recovers";
    let homes = [NatKind::PortRestricted, NatKind::Symmetric];
    let Some((_turn, lab)) = lab_for_calls(test, "l", &homes, &[]) else { return };
    for home in &lab.homes {
        home.add_inbound_udp_loss(5).expect("loss rules");
    }
    let media = ["--width", "320", "--height", "240", "--fps", "30"];
    let (mut a, mut b, result) =
        meet(&lab, (&lab.homes[0], &lab.homes[1]), "loss", &media, &[]).expect("the call starts");
    assert!(result.path.0 == "relay" || result.path.1 == "relay", "not relayed: {:?}", result.path);
    let sides = measure(&mut a, &mut b, Duration::from_secs(2), Duration::from_secs(15));
    eprintln!("relayed call at 5 % loss per direction:\na received: {:?}\nb received: {:?}", sides[0], sides[1]);
    // Frozen seconds, frame rate and keyframe requests are reported and bounded loosely: on a
    // loaded machine more retransmissions come too late through the relay, and each costs a
    // keyframe (tests/tests/loss.rs bounds all three tightly on one host).
    for (who, w) in ["a", "b"].iter().zip(&sides) {
        w.assert_recovered(who);
    }
}

/// coturn's own NAT behaviour discovery (RFC 5780), run from every home, finds the mapping and
/// filtering each router claims to do.
#[test]
fn the_lab_routers_behave_as_named() {
    if !root_or_skip("the_lab_routers_behave_as_named", "network namespaces") {
        return;
    }
    let lab = Lab::build("n", &NatKind::ALL, &[]).expect("the lab builds");
    let _stun = lab.start_behaviour_stun().expect("the discovery server starts");
    // What turnutils_natdiscovery prints for each kind: mapping, then filtering.
    let expected = |kind: NatKind| match kind {
        NatKind::FullCone => ["Endpoint Independent Mapping", "Endpoint Independent Filtering"],
        NatKind::AddressRestricted => ["Endpoint Independent Mapping", "Address Dependent Filtering"],
        NatKind::PortRestricted => ["Endpoint Independent Mapping", "Address and Port Dependent Filtering"],
        NatKind::Symmetric => ["Address and Port Dependent Mapping", "Address and Port Dependent Filtering"],
    };
    // Filtering first: the mapping test sends to the server's second address, which an
    // address-restricted router would then admit.
    let discover = |home: &Home, test: &str| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &home.host.name, "turnutils_natdiscovery", test, "-p"])
            .arg(BEHAVIOUR_PORT.to_string())
            .arg(BEHAVIOUR_IPS[0].to_string())
            .output()
            .expect("turnutils_natdiscovery runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let found = text.lines().find_map(|l| l.strip_prefix("NAT with")).map(|l| l.trim().trim_end_matches('!'));
        found
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{}: no verdict from natdiscovery {test}:\n{text}", home.kind.name()))
    };
    std::thread::scope(|scope| {
        for home in &lab.homes {
            scope.spawn(move || {
                let filtering = discover(home, "-f");
                let mapping = discover(home, "-m");
                eprintln!("{}: {mapping}, {filtering}", home.kind.name());
                assert_eq!([mapping.as_str(), filtering.as_str()], expected(home.kind), "{}", home.kind.name());
            });
        }
    });
}

/// A client's events other than statistics, for failure messages.
fn tail(c: &Client) -> Vec<String> {
    c.seen.iter().filter(|e| e["event"] != "stats").map(|e| e.to_string()).collect()
}

/// A TURN credential in the REST scheme the signal server uses.
fn credential(lab: &Lab, username: &str) -> String {
    signal_server::turn::turn_credential(&lab.turn.secret, username)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}

#[test]
fn turn_refuses_private_peers_and_bad_credentials() {
    if !root_or_skip("turn_refuses_private_peers_and_bad_credentials", "network namespaces") {
        return;
    }
    // No calls: this test does not wait for a turn.
    let lab = Lab::build("s", &[NatKind::PortRestricted, NatKind::FullCone], &[]).expect("the lab builds");
    let turn = SocketAddr::from((PUBLIC_IP, TURN_PORT));
    let home = &lab.homes[0];
    let stranger = SocketAddr::from((lab.homes[1].public_ip, 40_000));
    let server_port = lab.server_port();
    let url = lab.ws_url();
    home.host
        .run_inside(|| {
            // Real credentials, as the signal server hands them to a client.
            let mut peer = RawPeer::connect(&url)?;
            peer.send(r#"{"type":"hello","version":1}"#)?;
            let welcome = peer.expect("welcome")?;
            let server = welcome["ice_servers"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["username"].is_string()))
                .ok_or_else(|| anyhow::anyhow!("no TURN server in {welcome}"))?;
            let (user, pass) = (server["username"].as_str().unwrap_or(""), server["credential"].as_str().unwrap_or(""));
            let mut probe = TurnProbe::new(turn, user, pass)?;
            assert_eq!(probe.allocate()?, Answer::Success, "a fresh credential allocates");
            // A public lab address may be relayed to.
            assert_eq!(probe.permit(stranger)?, Answer::Success, "relaying to a public address");
            // The server's loopback, its private address, its home network and another home's
            // private address are all refused.
            let forbidden: [Ipv4Addr; 5] = [
                Ipv4Addr::LOCALHOST,
                SERVER_PRIVATE_IP,
                Ipv4Addr::new(127, 0, 0, 53),
                lab.homes[1].private_ip,
                Ipv4Addr::new(172, 16, 0, 1),
            ];
            for ip in forbidden {
                let answer = probe.permit(SocketAddr::from((ip, server_port)))?;
                assert_eq!(answer.code(), Some(403), "relaying to {ip}: {answer:?}");
            }
            for ip in [Ipv4Addr::new(100, 64, 0, 1), Ipv4Addr::new(169, 254, 0, 1), Ipv4Addr::new(0, 1, 2, 3)] {
                let answer = probe.permit(SocketAddr::from((ip, 9)))?;
                assert_eq!(answer.code(), Some(403), "relaying to {ip}: {answer:?}");
            }

            // Nor can they be reached written as IPv4-mapped IPv6 addresses.
            for ip in [Ipv4Addr::LOCALHOST, SERVER_PRIVATE_IP] {
                let mapped = SocketAddr::from((ip.to_ipv6_mapped(), server_port));
                let answer = probe.permit(mapped)?;
                assert_ne!(answer, Answer::Success, "relaying to {mapped}");
            }

            // An expired credential, correctly signed, is refused.
            let expired = format!("{}:someone", unix_now() - 60);
            let answer = TurnProbe::new(turn, &expired, &credential(&lab, &expired))?.allocate()?;
            assert_eq!(answer.code(), Some(401), "an expired credential: {answer:?}");
            // A forged one (signed with another secret) is refused.
            let forged_user = format!("{}:someone", unix_now() + 3600);
            let forged = signal_server::turn::turn_credential("not-the-secret", &forged_user);
            let answer = TurnProbe::new(turn, &forged_user, &forged)?.allocate()?;
            assert_eq!(answer.code(), Some(401), "a forged credential: {answer:?}");
            // The same username with its true signature works (the probe itself is sound).
            let good = TurnProbe::new(turn, &forged_user, &credential(&lab, &forged_user))?.allocate()?;
            assert_eq!(good, Answer::Success);
            Ok(())
        })
        .expect("probing TURN from a home");
}

#[test]
fn networks_that_block_udp_reach_every_nat_kind_through_turn_over_tcp_and_tls() {
    let test = "networks_that_block_udp_reach_every_nat_kind_through_turn_over_tcp_and_tls";
    if !root_or_skip(test, "network namespaces and nftables") {
        return;
    }
    let _turn = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    // Homes 0 and 1 are behind firewalls (no UDP at all; only TCP to port 443), 2-5 are one
    // home of each NAT kind.
    let mut kinds = vec![NatKind::PortRestricted, NatKind::PortRestricted];
    kinds.extend(NatKind::ALL);
    let lab = Lab::build_for_firewalls("f", &kinds, &["--interest-wait", "300"]).expect("the lab builds");
    lab.homes[0].restrict_egress(Egress::NoUdp).expect("firewall");
    lab.homes[1].restrict_egress(Egress::Tcp443Only).expect("firewall");
    let ca = lab.turn.ca_file().expect("a TLS lab has a CA").display().to_string();
    let mut media: Vec<&str> = MEDIA.to_vec();
    media.extend(["--turn-ca", ca.as_str()]);
    let mut failures = Vec::new();
    for (firewalled, allowed) in [(0usize, &["tcp", "tls"][..]), (1, &["tls"][..])] {
        let cells: Vec<(usize, usize)> = (0..4).map(|j| (firewalled, 2 + j)).collect();
        let no_check = |_: &Home, _: &Home, _: &mut Client, _: &mut Client| Ok(());
        let outcomes = run_cells(&lab, &cells, "f", &media, &[], &no_check);
        eprintln!(
            "\n| {} / b | pair | relay | connected ms |\n|---|---|---|---|",
            ["no UDP", "TCP 443 only"][firewalled]
        );
        for (j, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(r) => {
                    eprintln!(
                        "| {} | {} / {} | {:?} | {} |",
                        NatKind::ALL[j].name(),
                        r.path.0,
                        r.path.1,
                        r.relay,
                        r.connected_ms
                    );
                    let via = r.relay.as_deref().unwrap_or("none");
                    if r.path.0 != "relay" || !allowed.contains(&via) {
                        failures.push(format!(
                            "home {firewalled} / {}: {:?} via {via}",
                            NatKind::ALL[j].name(),
                            r.path
                        ));
                    }
                }
                Err(e) => failures.push(format!("home {firewalled} / {}: {e:#}", NatKind::ALL[j].name())),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A call that went straight across a shared link: our host candidate to the stranger's host
/// candidate, or to its address learned from its first check (peer-reflexive).
fn assert_on_the_link(result: &CallResult, what: &str) {
    let (local, remote) = (result.path.0.as_str(), result.path.1.as_str());
    assert!(local == "host" && matches!(remote, "host" | "prflx"), "{what}: {:?}", result.path);
}

#[test]
fn a_host_with_no_default_route_and_no_multicast_route_still_calls() {
    let test = "a_host_with_no_default_route_and_no_multicast_route_still_calls";
    let Some((_turn, lab)) = lab_for_calls(test, "n", &[], &[]) else { return };
    // The public network is such a link: an address on a bridge, no gateway, no multicast route.
    let routes = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.public.name, "ip", "route", "show", "default"])
        .output()
        .expect("ip route");
    assert!(routes.stdout.is_empty(), "the public namespace has a default route");
    let public = (Some(lab.public.name.as_str()), lab.ws_url());
    let (ca, cb, result) = meet_in((public.clone(), public), "noroute", &MEDIA, &[]).expect("the call works");
    for c in [&ca, &cb] {
        let errors = c.seen_named("error");
        assert!(errors.is_empty(), "{}: {errors:?}", c.name);
    }
    eprintln!(
        "no default route: {} / {}, connected {} ms, first frame {} ms",
        result.path.0, result.path.1, result.connected_ms, result.first_frame_ms
    );
    assert_on_the_link(&result, "a direct call on the link");
}

#[test]
fn a_direct_path_that_opens_late_takes_over_from_the_relay() {
    let test = "a_direct_path_that_opens_late_takes_over_from_the_relay";
    let homes = [NatKind::FullCone, NatKind::FullCone];
    let Some((_turn, lab)) = lab_for_calls(test, "o", &homes, &["--interest-wait", "300"]) else { return };
    let (a, b) = (&lab.homes[0], &lab.homes[1]);
    // Until the call is up, each router drops UDP from the other home: only the relay works.
    a.block_udp_from(b.public_ip).expect("block");
    b.block_udp_from(a.public_ip).expect("block");
    let args = ["--interests", "late", "--exit-after", "120"].iter().chain(MEDIA.iter()).copied().collect::<Vec<_>>();
    let mut ca = Client::start_in(a.ns(), "late/a", &lab.ws_url_for(a), &args).expect("a starts");
    ca.wait_event(T, "queued").expect("a waits");
    let mut cb = Client::start_in(b.ns(), "late/b", &lab.ws_url_for(b), &args).expect("b starts");
    let connected = cb.wait_event(T, "connected").expect("the call connects through the relay");
    a.unblock_udp().expect("unblock");
    b.unblock_udp().expect("unblock");
    // The direct path now works: both sides move to it, count the switch, and verify video.
    for c in [&mut ca, &mut cb] {
        let stats = c
            .wait_for(T, "video on a direct path after a switch", |e| {
                e["event"] == "stats"
                    && e["frames_verified"].as_u64().unwrap_or(0) >= FRAMES
                    && e["path_switches"].as_u64().unwrap_or(0) >= 1
                    && e["path"]["local"] != "relay"
                    && e["path"]["remote"] != "relay"
            })
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(stats["verify_errors"], 0, "{}: corrupt frames: {stats}", c.name);
        let changes = c.seen_named("path_changed");
        eprintln!(
            "{}: now {} / {}, {} switch(es), path_changed events: {changes:?}",
            c.name, stats["path"]["local"], stats["path"]["remote"], stats["path_switches"]
        );
        // A switch seen between two reports is told as an event, from the relay.
        for change in changes {
            assert!(change["from"]["local"] == "relay" || change["from"]["remote"] == "relay", "{change}");
        }
    }
    let first = cb.seen_named("first_frame").first().map(|e| e["ms_since_find"].clone());
    eprintln!(
        "late direct path: connected at {} ms (relayed), first frame at {first:?} ms",
        connected["ms_since_find"]
    );
}

#[test]
fn neighbours_on_one_lan_call_directly() {
    let test = "neighbours_on_one_lan_call_directly";
    // Behind a symmetric NAT, whose router cannot take a call back into its own LAN: the two
    // neighbours meet on their LAN or through the relay, and must meet on the LAN.
    let Some((_turn, lab)) = lab_for_calls(test, "l", &[NatKind::Symmetric], &["--interest-wait", "300"]) else {
        return;
    };
    let home = &lab.homes[0];
    let neighbour = home.add_neighbour(1).expect("a neighbour on the LAN");
    let (a, b) = ((home.ns(), lab.ws_url_for(home)), (Some(neighbour.name.as_str()), lab.ws_url_for(home)));
    let (ca, cb, result) = meet_in((a, b), "lan", &MEDIA, &[]).expect("neighbours call");
    eprintln!(
        "neighbours: {} / {}, connected {} ms, first frame {} ms, path changes seen by a: {}",
        result.path.0,
        result.path.1,
        result.connected_ms,
        result.first_frame_ms,
        ca.seen_named("path_changed").len()
    );
    assert_on_the_link(&result, "neighbours call directly on their LAN");
    for c in [&ca, &cb] {
        let errors = c.seen_named("error");
        assert!(errors.is_empty(), "{}: {errors:?}", c.name);
    }
    drop((ca, cb));
    drop(neighbour);
}

#[test]
fn strangers_never_see_a_private_address() {
    let test = "strangers_never_see_a_private_address";
    if !root_or_skip(test, "network namespaces and nftables") {
        return;
    }
    let _turn = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    // A home of every NAT kind, and a dual-stack one with a public and a unique-local IPv6
    // address beside its private IPv4 one.
    let mut homes: Vec<(NatKind, Stack)> = NatKind::ALL.iter().map(|&kind| (kind, Stack::V4)).collect();
    homes.push((NatKind::PortRestricted, Stack::Dual));
    let lab = Lab::build_dual_stack("p", &homes, &["--interest-wait", "300"]).expect("the lab builds");
    // A bare protocol peer on the public network plays the stranger: it records every signal
    // a client behind each kind of NAT sends it.
    for (i, home) in lab.homes.iter().enumerate() {
        let interest = format!("privacy-{i}");
        let mut client = Client::start_in(
            home.ns(),
            &format!("privacy/{i}"),
            &lab.ws_url(),
            &["--interests", &interest, "--exit-after", "60", "--width", "160", "--height", "120"],
        )
        .expect("client");
        client.wait_event(T, "queued").expect("queued");
        let url = lab.ws_url();
        let signals = lab
            .public
            .run_inside(|| {
                let mut peer = RawPeer::connect(&url)?;
                peer.send(&format!(r#"{{"type":"hello","version":1,"interests":["{interest}"]}}"#))?;
                peer.expect("welcome")?;
                // The client must offer; it does when it waited longer. Should the stranger
                // still be the older of the two, it leaves and comes back once the client has
                // queued again.
                for _ in 0..3 {
                    peer.send(r#"{"type":"find"}"#)?;
                    let matched = peer.expect("matched")?;
                    if matched["initiator"] == false {
                        return peer.collect(Duration::from_secs(3));
                    }
                    peer.send(r#"{"type":"stop"}"#)?;
                    std::thread::sleep(Duration::from_secs(1));
                }
                anyhow::bail!("the client never made the offer")
            })
            .expect("the stranger's view");
        let text: String = signals.iter().filter(|m| m["type"] == "signal").map(|m| m["data"].to_string()).collect();
        assert!(
            text.contains("typ srflx"),
            "{}: no reflexive candidate reached the stranger: {text}",
            home.kind.name()
        );
        assert!(text.contains(".local"), "{}: the LAN address is not under an mDNS name: {text}", home.kind.name());
        let private = home.private_ip.to_string();
        assert!(!text.contains(&private), "{}: the stranger learned {private}: {text}", home.kind.name());
        assert!(!text.contains("192.168."), "{}: a private address reached the stranger: {text}", home.kind.name());
        if let (Some(public), Some(ula)) = (home.ipv6, home.ula) {
            // A public IPv6 address is what the stranger would see of any packet anyway.
            assert!(
                text.contains(&public.to_string()),
                "dual-stack: the public IPv6 host candidate was not sent: {text}"
            );
            assert!(!text.contains(&ula.to_string()), "dual-stack: the stranger learned {ula}: {text}");
        }
        assert!(!text.contains("fd00:"), "{}: a unique-local address reached the stranger: {text}", home.kind.name());
    }
}

/// How a call of the dual-stack test must go.
#[derive(Debug, Clone, Copy)]
enum Path {
    DirectOverIpv6,
    /// Through TURN (on either side, reached over any transport).
    Relayed,
    /// a's side through TURN reached over TCP.
    RelayedOverTcp,
}

/// The dual-stack internet: two dual-stack homes (IPv4 behind symmetric NATs, which could only
/// meet through the relay over IPv4), IPv6-only hosts (one behind a firewall that drops all UDP)
/// and an IPv4-only home behind a port-restricted NAT. The signal server listens on `[::]` and
/// the IPv6-only hosts reach it over IPv6, everyone else over IPv4.
#[test]
fn dual_stack_homes_call_over_ipv6_and_ipv6_only_meets_ipv4_only_through_the_relay() {
    let test = "dual_stack_homes_call_over_ipv6_and_ipv6_only_meets_ipv4_only_through_the_relay";
    if !root_or_skip(test, "network namespaces and nftables") {
        return;
    }
    let _turn = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    let homes = [
        (NatKind::Symmetric, Stack::Dual),
        (NatKind::Symmetric, Stack::Dual),
        (NatKind::PortRestricted, Stack::V6Only),
        (NatKind::PortRestricted, Stack::V4),
        (NatKind::PortRestricted, Stack::V6Only),
    ];
    let lab = Lab::build_dual_stack("6", &homes, &["--interest-wait", "300"]).expect("the lab builds");
    // Home 4 drops all UDP: TURN over TCP on IPv6 is its only way out (through the engine's
    // bridge, on the IPv6 loopback).
    lab.homes[4].restrict_egress(Egress::NoUdp).expect("firewall");
    // (a, b, how the call must go)
    let rounds: [&[(usize, usize, Path)]; 3] = [
        &[(0, 1, Path::DirectOverIpv6), (2, 3, Path::Relayed)],
        &[(2, 0, Path::DirectOverIpv6), (1, 3, Path::Relayed)],
        &[(4, 3, Path::RelayedOverTcp)],
    ];
    let no_check = |_: &Home, _: &Home, _: &mut Client, _: &mut Client| Ok(());
    let mut failures = Vec::new();
    eprintln!(
        "\n| a / b | pair (a local / a remote) | family | relay | connected ms | first frame ms |\n|---|---|---|---|---|---|"
    );
    for round in rounds {
        let cells: Vec<(usize, usize)> = round.iter().map(|&(a, b, _)| (a, b)).collect();
        let outcomes = run_cells(&lab, &cells, "6", &MEDIA, &[], &no_check);
        for (&(a, b, expected), outcome) in round.iter().zip(outcomes) {
            let name = |i: usize| {
                let home = &lab.homes[i];
                let firewall = if i == 4 { ", no UDP" } else { "" };
                format!("{} {}{firewall}", home.stack.name(), home.kind.name())
            };
            let cell = format!("{} / {}", name(a), name(b));
            match outcome {
                Ok(r) => {
                    let via = r.relay.as_deref().unwrap_or("-");
                    eprintln!(
                        "| {cell} | {} / {} | {} | {via} | {} | {} |",
                        r.path.0, r.path.1, r.family, r.connected_ms, r.first_frame_ms
                    );
                    let relayed = r.path.0 == "relay" || r.path.1 == "relay";
                    let as_expected = match expected {
                        Path::DirectOverIpv6 => !relayed && r.family == "ipv6",
                        Path::Relayed => relayed,
                        Path::RelayedOverTcp => r.path.0 == "relay" && via == "tcp",
                    };
                    if !as_expected {
                        failures.push(format!("{cell}: {:?} over {}, TURN via {via}", r.path, r.family));
                    }
                }
                Err(e) => failures.push(format!("{cell}: {e:#}")),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

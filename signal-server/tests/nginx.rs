//! The shipped load-balancer example, `assets/nginx-cluster.conf`, in front of real nodes:
//! real nginx, a real redis-server and `signal-server` processes. The test renders the file
//! for loopback (the nodes' addresses, a port and a certificate of its own) and changes
//! nothing else, so what runs is what is shipped.

mod support;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::cert::Cert;
use support::node::NodeProcess;
use support::redis::free_port;
use support::{candidate, loopback, match_pair, relayed, RedisServer, TestServer};
use tempfile::TempDir;

const EXAMPLE: &str = include_str!("../../assets/nginx-cluster.conf");

/// How many ports nginx tries before the test gives up.
const ATTEMPTS: usize = 10;

/// An nginx of the test's own (not the system service), stopped on drop.
struct Nginx {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
}

impl Nginx {
    /// Runs the example with `nodes` as its upstream servers, listening on a free port: a
    /// port someone else takes before nginx binds it is passed over for another.
    fn start(nodes: &[SocketAddr], cert: &Cert) -> Nginx {
        for _ in 0..ATTEMPTS {
            if let Some(nginx) = Nginx::start_on(nodes, cert, free_port()) {
                return nginx;
            }
        }
        panic!("nginx found no free port in {ATTEMPTS} tries");
    }

    /// Runs the example on `port`; `None` if the port turned out to be taken.
    fn start_on(nodes: &[SocketAddr], cert: &Cert, port: u16) -> Option<Nginx> {
        let dir = tempfile::tempdir().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (cert_path, key_path) = (cert.cert(), cert.key());
        let mut site = EXAMPLE.to_string();
        let mut swap = |from: &str, to: &str| {
            assert!(site.contains(from), "the example no longer holds {from:?}: update this test");
            site = site.replace(from, to);
        };
        for (i, node) in nodes.iter().enumerate() {
            swap(&format!("server 10.0.0.1{}:8686", i + 1), &format!("server {node}"));
        }
        swap("listen 443 ssl;", &format!("listen {addr} ssl;"));
        swap("server_name chat.example.org;", "server_name localhost;");
        swap("/etc/letsencrypt/live/chat.example.org/fullchain.pem", cert_path.to_str().unwrap());
        swap("/etc/letsencrypt/live/chat.example.org/privkey.pem", key_path.to_str().unwrap());
        let site_path = dir.path().join("strangers.conf");
        std::fs::write(&site_path, site).unwrap();
        // The main file a distribution ships, reduced to what runs unprivileged in a folder, as
        // one process (no workers), so that killing it leaves nothing behind.
        let d = dir.path().display();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {};\n}}\n",
            site_path.display()
        );
        let main_path = dir.path().join("nginx.conf");
        std::fs::write(&main_path, main).unwrap();
        let child = Command::new(nginx_binary())
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", main_path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx (install it with scripts/setup.sh)");
        let mut nginx = Nginx { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        // nginx writes its pid file once its sockets are bound; a failed bind it logs at once
        // (and tries again for a while before it exits).
        let pid_file = nginx.dir.path().join("nginx.pid");
        loop {
            if nginx.log().contains("Address already in use") {
                return None;
            }
            if pid_file.exists() && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}) with the example config:\n{}", nginx.log());
            }
            assert!(Instant::now() < deadline, "nginx did not listen in 10 s:\n{}", nginx.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(nginx)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx lives in /usr/sbin, which is not on every user's PATH.
fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// Sends a plain request through the proxy and returns the status code.
async fn status_of(proxy: &TestServer, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    proxy.request(request.as_bytes()).await.status
}

/// The live node (of `nodes`, `dead` left out) holding `count` open connections.
async fn node_with(nodes: &[NodeProcess], count: f64, dead: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for (i, node) in nodes.iter().enumerate() {
            if Some(i) != dead && node.server.metrics().await.get("strangers_connections") == count {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no node holds {count} connections");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nginx_example_carries_the_protocol_and_a_resume_to_the_next_node() {
    let redis = RedisServer::start();
    let flags = ["--trusted-proxy", "127.0.0.1", "--max-conns-per-ip", "2", "--node-timeout", "1"];
    let mut nodes: Vec<NodeProcess> = (0..3).map(|_| NodeProcess::start(&redis, &flags)).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.server.addr).collect();
    let cert = Cert::new();
    let nginx = Nginx::start(&addrs, &cert);
    let proxy = TestServer::at_tls(nginx.addr, cert.connector());

    assert_eq!(status_of(&proxy, "/healthz").await, 200, "{}", nginx.log());
    assert_eq!(status_of(&proxy, "/metrics").await, 404, "metrics stay inside");

    // Two strangers meet and talk over wss through nginx.
    let client: IpAddr = loopback(7);
    let mut a = proxy.connect_from(client).await;
    a.hello().await;
    let mut b = proxy.connect_from(client).await;
    b.hello().await;
    let room = match_pair(&mut a, &mut b).await;
    a.send_text(&candidate(1));
    assert_eq!(b.recv_text().await, relayed(1));
    b.send_text(&candidate(2));
    assert_eq!(a.recv_text().await, relayed(2));

    // The nodes see the client's address, not the proxy's: its cap of 2 applies to it...
    let mut third = proxy.connect_from(client).await;
    third.expect_error("too_many_connections").await;
    third.expect_close(1008).await;
    // ...and not to another client behind the same proxy.
    let mut other = proxy.connect_from(loopback(8)).await;
    other.hello().await;
    other.close().await;

    // The address hash keeps one client on one node. That node dies; nginx sends the
    // reconnects to the next node, where the tokens resume the room.
    let dead = node_with(&nodes, 2.0, None).await;
    nodes[dead].kill9();
    a.expect_end().await;
    b.expect_end().await;
    let mut a2 = proxy.connect_from(client).await;
    let welcome = a2.resume(&a.token).await;
    assert_eq!((welcome["resumed"].clone(), welcome["room"].clone()), (json!(true), json!(room)));
    let mut b2 = proxy.connect_from(client).await;
    let welcome = b2.resume(&b.token).await;
    assert_eq!((welcome["resumed"].clone(), welcome["room"].clone()), (json!(true), json!(room)));
    a2.send_text(&candidate(3));
    assert_eq!(b2.recv_text().await, relayed(3));
    b2.send_text(&candidate(4));
    assert_eq!(a2.recv_text().await, relayed(4));
    node_with(&nodes, 2.0, Some(dead)).await;
    a2.expect_silence(100).await;
    assert!(redis.violations().is_empty(), "{:?}", redis.violations());
}

/// A port taken between the moment it was found free and nginx's bind is passed over.
#[test]
fn a_taken_port_is_passed_over() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let node = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cert = Cert::new();
    assert!(Nginx::start_on(&[node; 3], &cert, port).is_none(), "nginx cannot listen where someone else does");
}

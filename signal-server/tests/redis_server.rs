//! The tests' own redis-server never ends up shared: a port taken between the moment it was
//! found free and the moment redis-server binds it (here by a stand-in that answers PING like
//! another test's redis-server would) is passed over for the next.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;

use support::redis::{free_port, RedisServer};

#[test]
fn a_port_someone_else_answers_on_is_passed_over() {
    let impostor = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let taken = impostor.local_addr().expect("a bound address").port();
    std::thread::spawn(move || {
        for stream in impostor.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 512];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || stream.write_all(b"+PONG\r\n").is_err() {
                    break;
                }
            }
        }
    });
    let server = RedisServer::start_from([taken].into_iter().chain(std::iter::repeat_with(free_port)));
    assert_ne!(server.port, taken, "the impostor's port was passed over");
    assert!(server.command(&["INFO", "server"]).contains("redis_version"), "the server found is a real one");
}

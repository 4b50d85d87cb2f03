//! Property tests of the matchmaker over random operation sequences: sockets opening from a
//! few addresses, hellos with random interests and resume tokens, find, next, stop, signals,
//! reports, clean closes, drops and clock moves. After every step the core's own invariants
//! are checked (by the harness), its outputs are compared with those of a small reference
//! model, and an observer that sees only inputs and outputs checks the promises clients rely
//! on: who is matched with whom, in which order, and where signals go.
//!
//! Timers run exactly when `poll_timeout` asks. Most operations happen a millisecond after
//! the one before, some at the same instant, so interest waits sometimes end together.

mod common;
#[path = "properties/model.rs"]
mod model;
#[path = "properties/observer.rs"]
mod observer;
#[path = "properties/world.rs"]
mod world;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use common::{Got, Harness};
use strangers_matchmaker::{ConnId, Disconnect};
use strangers_protocol::ClientMsg;
use world::{Subject, World};

impl Subject for Harness {
    fn t0(&self) -> Instant {
        self.t0
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn next_timer(&self) -> Option<Instant> {
        self.mm.poll_timeout()
    }

    fn runs_timers(&self) -> bool {
        true
    }

    fn tick(&mut self, at: Instant) {
        Harness::tick(self, at);
    }

    fn advance(&mut self, by: Duration) {
        Harness::advance(self, by);
    }

    fn open(&mut self, ip: &str) -> ConnId {
        Harness::open(self, ip)
    }

    fn send(&mut self, conn: ConnId, msg: ClientMsg) {
        Harness::send(self, conn, msg);
    }

    fn close(&mut self, conn: ConnId, how: Disconnect) {
        Harness::close(self, conn, how);
    }

    fn take_log(&mut self) -> Vec<(ConnId, Got)> {
        Harness::take_log(self)
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // A few hundred cases; PROPTEST_CASES asks for a longer run.
        cases: std::env::var_os("PROPTEST_CASES").map_or(300, |_| ProptestConfig::default().cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/properties.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_keep_every_promise(steps in world::steps(true)) {
        let mut world = World::new(Harness::new(world::config()), world::config());
        for step in &steps {
            world.apply(step);
        }
    }
}

//! Scripted scenarios of the matchmaker with an explicit clock: each test plays a short story
//! through the harness and reads back exactly what every socket was told. The invariants are
//! checked after every step by the harness.

mod common;

use common::{candidate, hello, millis, resume, secs, signal, Got, Harness};
use strangers_matchmaker::{Config, Disconnect};
use strangers_protocol::{close, ClientMsg};

/// The defaults, spelled out where a test depends on them.
fn config() -> Config {
    Config {
        resume_grace: secs(10),
        interest_wait: secs(5),
        pending_max_msgs: 256,
        pending_max_bytes: 1024 * 1024,
        report_threshold: 3,
        report_window: secs(3600),
        ban_duration: secs(3600),
        seed: [7; 32],
    }
}

/// Matches two fresh clients (the first waits longer) and returns them with their room.
fn matched_pair(h: &mut Harness) -> (common::Client, common::Client, String) {
    let a = h.join("10.0.0.1", &[]);
    let b = h.join("10.0.0.2", &[]);
    h.send(a.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(a.conn), ["queued"]);
    h.advance(secs(1));
    h.send(b.conn, ClientMsg::Find);
    let (room_b, initiator_b, _) = h.take_queued_matched(b.conn);
    let (room_a, initiator_a, _) = h.take_matched(a.conn);
    assert_eq!(room_a, room_b);
    assert!(initiator_a && !initiator_b, "the one who waited longer makes the offer");
    (a, b, room_a)
}

// Greeting and resuming.

#[test]
fn hello_gets_a_fresh_welcome_with_distinct_ids() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &["chess"]);
    let b = h.join("10.0.0.1", &[]);
    assert_ne!(a.id, b.id);
    assert_ne!(a.token, b.token);
    assert_eq!(a.id.len(), 16);
    assert_eq!(a.token.len(), 64);
    assert!(a.token.chars().all(|c| c.is_ascii_hexdigit()));
    h.assert_quiet();
}

#[test]
fn resume_after_a_drop_gets_the_same_session() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &[]);
    h.close(a.conn, Disconnect::Dropped);
    h.advance(secs(3));
    let (_, welcome) = h.resume("10.0.0.9", &a.token);
    assert_eq!(welcome, Got::Welcome { id: a.id.clone(), token: a.token.clone(), resumed: true, room: None });
    assert_eq!(h.mm.stats(h.now).resumes_total, 1);
    h.assert_quiet();
}

#[test]
fn resume_with_an_unknown_token_starts_a_fresh_session() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &[]);
    let (_, welcome) = h.resume("10.0.0.1", "not-a-token");
    match welcome {
        Got::Welcome { id, resumed: false, room: None, .. } => assert_ne!(id, a.id),
        other => panic!("expected a fresh welcome, got {other:?}"),
    }
}

#[test]
fn resume_while_the_old_socket_is_live_closes_it_with_4000() {
    let mut h = Harness::new(config());
    let (a, b, room) = matched_pair(&mut h);
    let (a2, welcome) = h.resume("10.0.0.1", &a.token);
    assert_eq!(welcome, Got::Welcome { id: a.id.clone(), token: a.token.clone(), resumed: true, room: Some(room) });
    assert_eq!(h.take(a.conn), [Got::Close(close::REPLACED)]);
    // The old socket is forgotten: what it says is ignored and its end changes nothing.
    h.mm.handle_message(h.now, a.conn, ClientMsg::Stop);
    h.mm.handle_close(h.now, a.conn, Disconnect::Clean);
    assert_eq!(h.mm.poll_output(), None);
    // The room lives on, through the new socket.
    h.send(b.conn, signal(r#"{"restart":true}"#));
    assert_eq!(h.take_summary(a2), [r#"signal {"restart":true}"#]);
    h.send(a2, signal(r#"{"restart":true}"#));
    assert_eq!(h.take_summary(b.conn), [r#"signal {"restart":true}"#]);
    h.assert_quiet();
}

// Messages out of order.

#[test]
fn messages_before_hello_are_bad_and_the_socket_stays_usable() {
    let mut h = Harness::new(config());
    let conn = h.open("10.0.0.1");
    for msg in [ClientMsg::Find, ClientMsg::Next, ClientMsg::Stop, signal(r#"{"restart":true}"#)] {
        h.send(conn, msg);
        assert_eq!(h.take_summary(conn), ["error bad_message"]);
    }
    h.send(conn, ClientMsg::Report { reason: "x".into() });
    assert_eq!(h.take_summary(conn), ["error bad_message"]);
    h.send(conn, hello(&[]));
    assert_eq!(h.take_summary(conn), ["welcome"]);
}

#[test]
fn a_second_hello_is_bad() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &[]);
    h.send(a.conn, hello(&[]));
    assert_eq!(h.take_summary(a.conn), ["error bad_message"]);
    h.send(a.conn, resume(&a.token));
    assert_eq!(h.take_summary(a.conn), ["error bad_message"]);
    assert_eq!(h.mm.stats(h.now).sessions, 1);
}

#[test]
fn find_while_matched_is_bad_and_keeps_the_room() {
    let mut h = Harness::new(config());
    let (a, b, _) = matched_pair(&mut h);
    h.send(b.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(b.conn), ["error bad_message"]);
    h.send(b.conn, signal(r#"{"restart":true}"#));
    assert_eq!(h.take_summary(a.conn), [r#"signal {"restart":true}"#]);
    h.assert_quiet();
}

#[test]
fn signal_or_report_while_unmatched_is_not_matched() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &[]);
    h.send(a.conn, signal(r#"{"restart":true}"#));
    h.send(a.conn, ClientMsg::Report { reason: "rude".into() });
    assert_eq!(h.take_summary(a.conn), ["error not_matched", "error not_matched"]);
    h.send(a.conn, ClientMsg::Find);
    h.send(a.conn, signal(r#"{"restart":true}"#));
    h.send(a.conn, ClientMsg::Report { reason: "rude".into() });
    assert_eq!(h.take_summary(a.conn), ["queued", "error not_matched", "error not_matched"]);
    assert_eq!(h.mm.stats(h.now).reports_total, 0);
}

// The queue and rooms.

#[test]
fn find_queues_then_matches_with_the_longer_waiter_as_initiator() {
    let mut h = Harness::new(config());
    let (a, b, room) = matched_pair(&mut h);
    assert_ne!(a.id, b.id);
    assert_eq!(room.len(), 16);
    let stats = h.mm.stats(h.now);
    assert_eq!((stats.rooms, stats.queued, stats.matches_total), (1, 0, 1));
    h.assert_quiet();
}

#[test]
fn find_while_queued_is_a_no_op() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &[]);
    h.send(a.conn, ClientMsg::Find);
    h.send(a.conn, ClientMsg::Find);
    h.send(a.conn, ClientMsg::Next);
    assert_eq!(h.take_summary(a.conn), ["queued"]);
    assert_eq!(h.mm.stats(h.now).queued, 1);
}

#[test]
fn next_while_matched_tells_the_partner_and_requeues_the_leaver() {
    let mut h = Harness::new(config());
    let (a, b, room) = matched_pair(&mut h);
    h.advance(secs(1));
    h.send(a.conn, ClientMsg::Next);
    assert_eq!(h.take_summary(b.conn), ["partner_left next"]);
    assert_eq!(h.take_summary(a.conn), ["queued"]);
    // The partner is idle, not queued: the leaver meets a third client, not it again.
    h.advance(secs(1));
    let c = h.join("10.0.0.3", &[]);
    h.send(c.conn, ClientMsg::Find);
    let (room_c, initiator_c, _) = h.take_queued_matched(c.conn);
    let (room_a, initiator_a, _) = h.take_matched(a.conn);
    assert_eq!(room_a, room_c);
    assert_ne!(room_a, room);
    assert!(initiator_a && !initiator_c);
    // Signals now go to the new partner only.
    h.send(a.conn, signal(r#"{"restart":true}"#));
    assert_eq!(h.take_summary(c.conn), [r#"signal {"restart":true}"#]);
    h.send(b.conn, signal(r#"{"restart":true}"#));
    assert_eq!(h.take_summary(b.conn), ["error not_matched"]);
    h.assert_quiet();
}

#[test]
fn stop_leaves_the_partner_or_the_queue() {
    let mut h = Harness::new(config());
    let (a, b, _) = matched_pair(&mut h);
    h.send(b.conn, ClientMsg::Stop);
    assert_eq!(h.take_summary(a.conn), ["partner_left stop"]);
    assert!(h.take(b.conn).is_empty());
    // Stop while queued leaves the queue: a newcomer does not meet the stopped client.
    h.send(a.conn, ClientMsg::Find);
    h.send(a.conn, ClientMsg::Stop);
    h.send(a.conn, ClientMsg::Stop);
    assert_eq!(h.take_summary(a.conn), ["queued"]);
    let c = h.join("10.0.0.3", &[]);
    h.send(c.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(c.conn), ["queued"]);
    h.assert_quiet();
}

#[test]
fn signals_are_relayed_verbatim_to_the_partner_only() {
    let mut h = Harness::new(config());
    let (a, b, _) = matched_pair(&mut h);
    let (c, d, _) = matched_pair(&mut h);
    let offer = r#"{ "sdp" : {"type":"offer", "sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"} }"#;
    h.send(a.conn, signal(offer));
    h.send(b.conn, signal(&candidate("b1", 3)));
    h.send(a.conn, signal(r#"{"restart":true, "extra": [1, 2]}"#));
    assert_eq!(
        h.take_summary(b.conn),
        [format!("signal {offer}"), r#"signal {"restart":true, "extra": [1, 2]}"#.into()]
    );
    assert_eq!(h.take_summary(a.conn), [format!("signal {}", candidate("b1", 3))]);
    assert!(h.take(c.conn).is_empty() && h.take(d.conn).is_empty());
    assert_eq!(h.mm.stats(h.now).signals_relayed_total, 3);
}

// Drops, grace and resume.

#[test]
fn an_abrupt_drop_keeps_the_room_and_holds_signals_until_the_resume() {
    let mut h = Harness::new(config());
    let (a, b, room) = matched_pair(&mut h);
    h.close(a.conn, Disconnect::Dropped);
    assert!(h.take(b.conn).is_empty(), "the partner is not told about a drop");
    for i in 0..3 {
        h.advance(secs(2));
        h.send(b.conn, signal(&candidate(&format!("c{i}"), i)));
    }
    assert!(h.take(b.conn).is_empty(), "held signals are accepted silently");
    // Just before the grace period ends, the session is still held.
    h.advance_to(secs(1) + secs(10) - millis(1));
    assert!(h.take(b.conn).is_empty());
    let (a2, welcome) = h.resume("10.0.0.1", &a.token);
    assert_eq!(welcome, Got::Welcome { id: a.id.clone(), token: a.token.clone(), resumed: true, room: Some(room) });
    let expected: Vec<String> = (0..3).map(|i| format!("signal {}", candidate(&format!("c{i}"), i))).collect();
    assert_eq!(h.take_summary(a2), expected);
    // Long after the old grace deadline, the room still stands.
    h.advance(secs(30));
    h.send(a2, signal(r#"{"restart":true}"#));
    assert_eq!(h.take_summary(b.conn), [r#"signal {"restart":true}"#]);
    h.assert_quiet();
}

#[test]
fn held_signals_of_an_ended_room_are_never_delivered() {
    let mut h = Harness::new(config());
    let (a, b, _) = matched_pair(&mut h);
    h.close(a.conn, Disconnect::Dropped);
    h.send(b.conn, signal(&candidate("old", 0)));
    h.send(b.conn, ClientMsg::Next);
    assert_eq!(h.take_summary(b.conn), ["queued"]);
    // The partner meets someone else; nothing of that room reaches the dropped client either.
    let c = h.join("10.0.0.3", &[]);
    h.send(c.conn, ClientMsg::Find);
    h.take_queued_matched(c.conn);
    h.take_matched(b.conn);
    h.send(b.conn, signal(&candidate("new", 0)));
    assert_eq!(h.take_summary(c.conn), [format!("signal {}", candidate("new", 0))]);
    let (a2, welcome) = h.resume("10.0.0.1", &a.token);
    assert!(matches!(welcome, Got::Welcome { resumed: true, room: None, .. }), "{welcome:?}");
    assert_eq!(h.take_summary(a2), ["partner_left next"]);
    h.send(a2, signal(r#"{"restart":true}"#));
    assert_eq!(h.take_summary(a2), ["error not_matched"]);
    h.assert_quiet();
}

#[test]
fn grace_expiry_ends_the_session_and_tells_the_partner() {
    let mut h = Harness::new(config());
    let (a, b, _) = matched_pair(&mut h);
    let dropped_at = h.now;
    h.close(a.conn, Disconnect::Dropped);
    assert_eq!(h.mm.poll_timeout(), Some(dropped_at + secs(10)));
    h.advance(secs(10) - millis(1));
    assert!(h.take(b.conn).is_empty());
    h.advance(millis(1));
    assert_eq!(h.take_summary(b.conn), ["partner_left disconnect"]);
    assert_eq!(h.mm.stats(h.now).sessions, 1);
    // The token is spent: it starts a fresh session.
    let (_, welcome) = h.resume("10.0.0.1", &a.token);
    assert!(matches!(welcome, Got::Welcome { resumed: false, .. }), "{welcome:?}");
    h.assert_quiet();
}

#[test]
fn a_clean_close_tells_the_partner_at_once() {
    let mut h = Harness::new(config());
    let (a, b, _) = matched_pair(&mut h);
    h.close(a.conn, Disconnect::Clean);
    assert_eq!(h.take_summary(b.conn), ["partner_left disconnect"]);
    assert_eq!(h.mm.stats(h.now).sessions, 1);
    let (_, welcome) = h.resume("10.0.0.1", &a.token);
    assert!(matches!(welcome, Got::Welcome { resumed: false, .. }), "{welcome:?}");
}

#[test]
fn a_dropped_partner_hears_of_the_leave_on_resume() {
    let mut h = Harness::new(config());
    let (a, b, _) = matched_pair(&mut h);
    h.close(b.conn, Disconnect::Dropped);
    h.send(a.conn, ClientMsg::Stop);
    h.advance(secs(5));
    let (b2, welcome) = h.resume("10.0.0.2", &b.token);
    assert!(matches!(welcome, Got::Welcome { resumed: true, room: None, .. }), "{welcome:?}");
    assert_eq!(h.take_summary(b2), ["partner_left stop"]);
    h.assert_quiet();
}

#[test]
fn a_queued_session_whose_socket_drops_is_never_matched() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &[]);
    h.send(a.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(a.conn), ["queued"]);
    h.close(a.conn, Disconnect::Dropped);
    h.advance(secs(1));
    let b = h.join("10.0.0.2", &[]);
    h.send(b.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(b.conn), ["queued"]);
    // The grace period ends quietly; the waiting client meets the next newcomer.
    h.advance(secs(20));
    let c = h.join("10.0.0.3", &[]);
    h.send(c.conn, ClientMsg::Find);
    h.take_queued_matched(c.conn);
    let (_, initiator_b, _) = h.take_matched(b.conn);
    assert!(initiator_b);
    h.assert_quiet();
}

#[test]
fn a_parked_session_rejoins_at_its_old_place() {
    let mut h = Harness::new(config());
    // The interest wait keeps both waiting: they share nothing.
    let a = h.join("10.0.0.1", &["art"]);
    h.send(a.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(a.conn), ["queued"]);
    h.advance(secs(1));
    h.close(a.conn, Disconnect::Dropped);
    h.advance(secs(1));
    let b = h.join("10.0.0.2", &["go"]);
    h.send(b.conn, ClientMsg::Find);
    h.advance(secs(1));
    let (a2, _) = h.resume("10.0.0.1", &a.token);
    assert_eq!(h.take_summary(a2), ["queued"]);
    // A newcomer sharing an interest with both meets the one who asked first.
    let c = h.join("10.0.0.3", &["go", "art"]);
    h.send(c.conn, ClientMsg::Find);
    let (room_c, initiator_c, common) = h.take_queued_matched(c.conn);
    let (room_a, initiator_a, _) = h.take_matched(a2);
    assert_eq!(room_a, room_c);
    assert!(initiator_a && !initiator_c);
    assert_eq!(common, ["art"]);
    assert_eq!(h.take_summary(b.conn), ["queued"]);
    h.assert_quiet();
}

/// Regression: a session resuming into its old, earlier queue place used to be matched as
/// the answerer, although it waited longer than the partner found for it.
#[test]
fn a_resumed_session_that_waited_longer_makes_the_offer() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &[]);
    h.send(a.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(a.conn), ["queued"]);
    h.close(a.conn, Disconnect::Dropped);
    h.advance(secs(1));
    let b = h.join("10.0.0.2", &[]);
    h.send(b.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(b.conn), ["queued"]);
    h.advance(secs(1));
    let (a2, _) = h.resume("10.0.0.1", &a.token);
    let (room_a, initiator_a, _) = h.take_queued_matched(a2);
    let (room_b, initiator_b, _) = h.take_matched(b.conn);
    assert_eq!(room_a, room_b);
    assert!(initiator_a && !initiator_b, "the session with the older queue place makes the offer");
}

// Interests.

#[test]
fn a_common_interest_is_preferred_over_an_older_stranger() {
    let mut h = Harness::new(config());
    let stranger = h.join("10.0.0.1", &[]);
    h.send(stranger.conn, ClientMsg::Find);
    h.advance(secs(1));
    let s = h.join("10.0.0.2", &["chess", "art"]);
    h.send(s.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(s.conn), ["queued"], "a client with interests waits for them first");
    h.advance(secs(1));
    let n = h.join("10.0.0.3", &["go", "art", "chess"]);
    h.send(n.conn, ClientMsg::Find);
    let (room_n, initiator_n, mut common_n) = h.take_queued_matched(n.conn);
    let (room_s, initiator_s, mut common_s) = h.take_matched(s.conn);
    assert_eq!(room_n, room_s);
    assert!(initiator_s && !initiator_n);
    common_n.sort();
    common_s.sort();
    assert_eq!(common_n, ["art", "chess"]);
    assert_eq!(common_s, common_n);
    assert_eq!(h.take_summary(stranger.conn), ["queued"]);
    h.assert_quiet();
}

/// Regression: when an interest wait ended, the session found for it was made initiator even
/// when it had waited less.
#[test]
fn after_the_interest_wait_anyone_is_matched() {
    let mut h = Harness::new(config());
    let s = h.join("10.0.0.1", &["chess"]);
    h.send(s.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(s.conn), ["queued"]);
    let open_at = h.now + secs(5);
    h.advance(secs(1));
    let o = h.join("10.0.0.2", &[]);
    h.send(o.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(o.conn), ["queued"]);
    assert_eq!(h.mm.poll_timeout(), Some(open_at));
    h.advance(secs(4) - millis(1));
    h.assert_quiet();
    h.advance(millis(1));
    assert_eq!(h.now, open_at);
    let (room_s, initiator_s, common) = h.take_matched(s.conn);
    let (room_o, initiator_o, _) = h.take_matched(o.conn);
    assert_eq!(room_s, room_o);
    assert!(common.is_empty());
    assert!(initiator_s && !initiator_o, "the client with interests waited longer");
}

#[test]
fn two_clients_without_a_common_interest_meet_when_their_waits_end() {
    let mut h = Harness::new(config());
    let a = h.join("10.0.0.1", &["chess"]);
    let b = h.join("10.0.0.2", &["go"]);
    h.send(a.conn, ClientMsg::Find);
    h.advance(secs(2));
    h.send(b.conn, ClientMsg::Find);
    // The first wait ending finds no one open yet; the second does.
    h.advance(secs(3));
    assert_eq!(h.take_summary(a.conn), ["queued"]);
    h.advance(secs(2));
    let (room_b, initiator_b, _) = h.take_queued_matched(b.conn);
    let (room_a, initiator_a, _) = h.take_matched(a.conn);
    assert_eq!(room_a, room_b);
    assert!(initiator_a && !initiator_b);
}

/// Regression: interest waits ending at the same instant were handled in the order the
/// sessions said hello, so a later arrival in the queue could take the partner of an earlier.
#[test]
fn interest_waits_ending_together_follow_the_queue_not_the_hello_order() {
    let mut h = Harness::new(config());
    let x = h.join("10.0.0.1", &["art"]);
    let y = h.join("10.0.0.2", &["go"]);
    // At the same instant, y asks first.
    h.send(y.conn, ClientMsg::Find);
    h.send(x.conn, ClientMsg::Find);
    h.advance(secs(1));
    let p = h.join("10.0.0.3", &[]);
    h.send(p.conn, ClientMsg::Find);
    h.advance(secs(4));
    let (room_y, initiator_y, _) = h.take_queued_matched(y.conn);
    let (room_x, initiator_x, _) = h.take_queued_matched(x.conn);
    assert_eq!(room_y, room_x);
    assert!(initiator_y && !initiator_x);
    assert_eq!(h.take_summary(p.conn), ["queued"]);
    h.assert_quiet();
}

/// Regression: when two interest waits ended together, the first to end took the client
/// that was open already instead of the longer waiter whose wait ended with it.
#[test]
fn interest_waits_ending_together_pair_the_longest_waiters() {
    let mut h = Harness::new(config());
    let k = h.join("10.0.0.1", &["art"]);
    let q = h.join("10.0.0.2", &["go"]);
    let p = h.join("10.0.0.3", &[]);
    for c in [&k, &q, &p] {
        h.send(c.conn, ClientMsg::Find);
    }
    h.advance(secs(5));
    let (room_k, initiator_k, _) = h.take_queued_matched(k.conn);
    let (room_q, initiator_q, _) = h.take_queued_matched(q.conn);
    assert_eq!(room_k, room_q);
    assert!(initiator_k && !initiator_q);
    assert_eq!(h.take_summary(p.conn), ["queued"]);
    assert_eq!(h.mm.stats(h.now).queued, 1);
    // The one left over meets the next newcomer.
    let n = h.join("10.0.0.4", &[]);
    h.send(n.conn, ClientMsg::Find);
    h.take_queued_matched(n.conn);
    h.take_matched(p.conn);
}

#[test]
fn with_no_interest_wait_interests_only_break_ties() {
    let mut h = Harness::new(Config { interest_wait: secs(0), ..config() });
    let a = h.join("10.0.0.1", &["chess"]);
    h.send(a.conn, ClientMsg::Find);
    let b = h.join("10.0.0.2", &["go"]);
    h.send(b.conn, ClientMsg::Find);
    let (_, initiator_b, common) = h.take_queued_matched(b.conn);
    assert!(!initiator_b && common.is_empty());
    assert_eq!(h.mm.poll_timeout(), None);
}

// Bounded buffering.

#[test]
fn the_pending_buffer_is_bounded_in_messages() {
    let mut h = Harness::new(Config { pending_max_msgs: 2, ..config() });
    let (a, b, _) = matched_pair(&mut h);
    h.close(a.conn, Disconnect::Dropped);
    for i in 0..3 {
        h.send(b.conn, signal(&candidate(&format!("c{i}"), 0)));
    }
    assert_eq!(h.take_summary(b.conn), ["error buffer_full"]);
    let (a2, _) = h.resume("10.0.0.1", &a.token);
    assert_eq!(
        h.take_summary(a2),
        [format!("signal {}", candidate("c0", 0)), format!("signal {}", candidate("c1", 0))]
    );
    assert_eq!(h.mm.stats(h.now).signals_relayed_total, 2);
    // After the resume, signals flow again.
    h.send(b.conn, signal(&candidate("c3", 0)));
    assert_eq!(h.take_summary(a2), [format!("signal {}", candidate("c3", 0))]);
}

#[test]
fn the_pending_buffer_is_bounded_in_bytes() {
    let small = candidate("small", 0);
    let big = candidate("big", 200);
    let mut h = Harness::new(Config { pending_max_bytes: 2 * small.len() + 10, ..config() });
    let (a, b, _) = matched_pair(&mut h);
    h.close(a.conn, Disconnect::Dropped);
    h.send(b.conn, signal(&small));
    h.send(b.conn, signal(&big));
    assert_eq!(h.take_summary(b.conn), ["error buffer_full"]);
    h.send(b.conn, signal(&small));
    assert!(h.take(b.conn).is_empty(), "a smaller signal still fits");
    let (a2, _) = h.resume("10.0.0.1", &a.token);
    assert_eq!(h.take_summary(a2), [format!("signal {small}"), format!("signal {small}")]);
}

// Reports and bans.

/// Matches `reporter` (queued first) with a fresh client from `ip` and returns the latter.
fn meet_newcomer(h: &mut Harness, reporter: &common::Client, ip: &str) -> common::Client {
    h.send(reporter.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(reporter.conn), ["queued"]);
    let other = h.join(ip, &[]);
    h.send(other.conn, ClientMsg::Find);
    h.take_queued_matched(other.conn);
    h.take_matched(reporter.conn);
    other
}

#[test]
fn reports_from_distinct_matches_ban_the_address() {
    let mut h = Harness::new(config());
    let bad_ip = "10.6.6.6";
    let idle_from_bad_ip = h.open(bad_ip);
    let reporters: Vec<_> = (1..=3).map(|i| h.join(&format!("10.0.0.{i}"), &[])).collect();
    let mut bad = Vec::new();
    for (i, reporter) in reporters.iter().enumerate() {
        h.advance(secs(1));
        bad.push(meet_newcomer(&mut h, reporter, bad_ip));
        h.send(reporter.conn, ClientMsg::Report { reason: "rude".into() });
        if i < 2 {
            assert!(h.take(reporter.conn).is_empty() && h.take(bad[i].conn).is_empty());
            // The reported client moves on; its session stays (no ban yet).
            h.send(bad[i].conn, ClientMsg::Stop);
            assert_eq!(h.take_summary(reporter.conn), ["partner_left stop"]);
        }
    }
    let banned_at = h.now;
    // Every socket of the address is told and closed, and the last partner learns it left.
    for conn in bad.iter().map(|c| c.conn).chain([idle_from_bad_ip]) {
        assert_eq!(h.take_summary(conn), ["error banned", "close 1008"]);
    }
    assert_eq!(h.take_summary(reporters[2].conn), ["partner_left disconnect"]);
    let stats = h.mm.stats(h.now);
    assert_eq!((stats.reports_total, stats.bans_total, stats.bans_active), (3, 1, 1));
    // The earlier sessions from that address are gone too.
    assert_eq!(stats.sessions, 3);
    h.assert_quiet();
    // The address is refused until the ban ends.
    h.advance_to(banned_at - h.t0 + secs(3600) - millis(1));
    let refused = h.open(bad_ip);
    assert_eq!(h.take_summary(refused), ["error banned", "close 1008"]);
    assert!(h.mm.is_banned(bad_ip.parse().unwrap(), h.now));
    h.send(refused, hello(&[]));
    assert!(h.take(refused).is_empty(), "a refused socket is not known");
    h.advance(millis(1));
    assert!(!h.mm.is_banned(bad_ip.parse().unwrap(), h.now));
    let back = h.join(bad_ip, &[]);
    h.send(back.conn, ClientMsg::Find);
    assert_eq!(h.take_summary(back.conn), ["queued"]);
    assert_eq!(h.mm.stats(h.now).bans_active, 0);
}

#[test]
fn the_same_reporter_counts_once_per_match() {
    let mut h = Harness::new(config());
    let bad_ip = "10.6.6.6";
    let reporter = h.join("10.0.0.1", &[]);
    let bad = meet_newcomer(&mut h, &reporter, bad_ip);
    for _ in 0..3 {
        h.send(reporter.conn, ClientMsg::Report { reason: "rude".into() });
    }
    assert_eq!(h.mm.stats(h.now).reports_total, 1);
    h.assert_quiet();
    // A second match with the same reporter counts again, a third report bans.
    h.send(reporter.conn, ClientMsg::Next);
    assert_eq!(h.take_summary(bad.conn), ["partner_left next"]);
    h.send(bad.conn, ClientMsg::Find);
    h.take_queued_matched(reporter.conn);
    h.send(reporter.conn, ClientMsg::Report { reason: "rude".into() });
    h.send(reporter.conn, ClientMsg::Report { reason: "rude".into() });
    assert_eq!(h.mm.stats(h.now).reports_total, 2);
    assert_eq!(h.take_summary(bad.conn), ["queued", "matched"]);
    h.send(reporter.conn, ClientMsg::Stop);
    assert_eq!(h.take_summary(bad.conn), ["partner_left stop"]);
    let other = h.join("10.0.0.2", &[]);
    let bad2 = meet_newcomer(&mut h, &other, bad_ip);
    h.send(other.conn, ClientMsg::Report { reason: "rude".into() });
    assert_eq!(h.take_summary(bad.conn), ["error banned", "close 1008"]);
    assert_eq!(h.take_summary(bad2.conn), ["error banned", "close 1008"]);
    assert_eq!(h.take_summary(other.conn), ["partner_left disconnect"]);
    h.assert_quiet();
}

#[test]
fn a_ban_also_ends_a_dropped_session_of_the_address() {
    let mut h = Harness::new(Config { report_threshold: 1, ..config() });
    let dropped = h.join("10.6.6.6", &[]);
    h.close(dropped.conn, Disconnect::Dropped);
    let reporter = h.join("10.0.0.1", &[]);
    let bad = meet_newcomer(&mut h, &reporter, "10.6.6.6");
    h.send(reporter.conn, ClientMsg::Report { reason: "rude".into() });
    assert_eq!(h.take_summary(bad.conn), ["error banned", "close 1008"]);
    assert_eq!(h.take_summary(reporter.conn), ["partner_left disconnect"]);
    assert_eq!(h.mm.stats(h.now).sessions, 1);
    let (_, welcome) = h.resume("10.0.0.9", &dropped.token);
    assert!(matches!(welcome, Got::Welcome { resumed: false, .. }), "{welcome:?}");
}

#[test]
fn old_reports_stop_counting_after_the_window() {
    let mut h = Harness::new(Config { report_threshold: 2, report_window: secs(60), ..config() });
    let reporter = h.join("10.0.0.1", &[]);
    let bad = meet_newcomer(&mut h, &reporter, "10.6.6.6");
    h.send(reporter.conn, ClientMsg::Report { reason: "rude".into() });
    h.send(bad.conn, ClientMsg::Next);
    assert_eq!(h.take_summary(reporter.conn), ["partner_left next"]);
    h.advance(secs(60));
    h.send(reporter.conn, ClientMsg::Find);
    h.take_summary(bad.conn);
    h.take_summary(reporter.conn);
    h.send(reporter.conn, ClientMsg::Report { reason: "rude".into() });
    assert!(h.take(bad.conn).is_empty(), "a report older than the window still counted");
    assert_eq!(h.mm.poll_timeout(), Some(h.now + secs(60)));
}

//! What the scripts (and other nodes) tell a node to do, as published on the node's channel:
//! a run of records `CONN KIND LEN:BODY`, in the order Redis ran them, read into the
//! matchmaker's output vocabulary (`Output`), plus what only this backend needs (routes).
//! Pure parsing, no IO.

use strangers_matchmaker::{ConnId, Output};
use strangers_protocol::{close, ErrorCode, ServerMsg};

/// One thing to do on one local socket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record<'a> {
    /// Send, welcome or close, as the in-memory matchmaker would say it.
    Output(Output),
    /// Send `matched` (`msg`); the socket's signals now go to `route`.
    Matched { conn: ConnId, route: RouteText<'a>, msg: ServerMsg },
    /// Send `partner_left` (`msg`); the socket's room is over.
    Left { conn: ConnId, msg: ServerMsg },
    /// A signal another node relayed straight to this one for a socket in `room`, from
    /// session `sender`. `msg` is the `signal` message to send.
    Signal { conn: ConnId, room: &'a str, sender: &'a str, msg: ServerMsg },
}

/// Where a matched socket's partner is, as the pairing script saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteText<'a> {
    pub room: &'a str,
    /// The socket's own session.
    pub session: &'a str,
    pub partner: &'a str,
    /// The partner's node and socket there (none if its socket was down).
    pub node: &'a str,
    pub partner_conn: Option<ConnId>,
}

/// A published batch the node cannot read (a script and its node disagree: a bug).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed record batch at byte {at}: {what}")]
pub(crate) struct BadBatch {
    at: usize,
    what: &'static str,
}

/// Why the server closes a socket with `code`, as the close frame says.
fn close_reason(code: u16) -> &'static str {
    match code {
        close::REPLACED => "resumed elsewhere",
        close::POLICY => "banned",
        _ => "closed by the server",
    }
}

/// Parses one published batch.
pub(crate) fn parse(batch: &str) -> Result<Vec<Record<'_>>, BadBatch> {
    let mut records = Vec::new();
    let mut rest = batch;
    while !rest.is_empty() {
        let at = batch.len() - rest.len();
        let bad = |what| BadBatch { at, what };
        let (conn, after) = rest.split_once(' ').ok_or(bad("no connection"))?;
        let conn: ConnId = conn.parse().map_err(|_| bad("connection is not a number"))?;
        let (kind, after) = after.split_once(' ').ok_or(bad("no kind"))?;
        let (len, after) = after.split_once(':').ok_or(bad("no length"))?;
        let len: usize = len.parse().map_err(|_| bad("length is not a number"))?;
        let body = after.get(..len).ok_or(bad("body shorter than its length"))?;
        rest = &after[len..];
        let message = |text| ServerMsg::parse(text).map_err(|_| bad("text is not a server message"));
        records.push(match kind {
            "T" => Record::Output(Output::Send { conn, msg: message(body)? }),
            "E" => {
                let (code, message) = body.split_once(' ').ok_or(bad("error without message"))?;
                let code =
                    ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code).ok_or(bad("unknown error code"))?;
                Record::Output(Output::Send { conn, msg: ServerMsg::error(code, message) })
            }
            "W" => {
                let mut parts = body.splitn(4, ' ');
                let (Some(session_id), Some(token), Some(resumed), Some(room)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad("welcome needs four fields"));
                };
                Record::Output(Output::Welcome {
                    conn,
                    session_id: session_id.into(),
                    resume_token: token.into(),
                    resumed: resumed == "1",
                    room: Some(room).filter(|r| !r.is_empty()).map(str::to_string),
                })
            }
            "C" => {
                let code = body.parse().map_err(|_| bad("close code is not a number"))?;
                Record::Output(Output::Close { conn, code, reason: close_reason(code) })
            }
            "M" => {
                let mut parts = body.splitn(6, ' ');
                let mut next = || parts.next().ok_or(bad("matched needs six fields"));
                let (room, session, partner, node, partner_conn, text) =
                    (next()?, next()?, next()?, next()?, next()?, next()?);
                let partner_conn = match partner_conn {
                    "" => None,
                    c => Some(c.parse().map_err(|_| bad("partner connection is not a number"))?),
                };
                let route = RouteText { room, session, partner, node, partner_conn };
                Record::Matched { conn, route, msg: message(text)? }
            }
            "L" => Record::Left { conn, msg: message(body)? },
            "S" => {
                let mut parts = body.splitn(3, ' ');
                let (Some(room), Some(sender), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(bad("signal needs three fields"));
                };
                Record::Signal { conn, room, sender, msg: message(text)? }
            }
            _ => return Err(bad("unknown kind")),
        });
    }
    Ok(records)
}

/// Appends a `signal` record (what a node publishes straight to its partner's node) to `out`.
pub(crate) fn write_signal(out: &mut String, conn: ConnId, room: &str, sender: &str, text: &str) {
    use std::fmt::Write;
    let len = room.len() + 1 + sender.len() + 1 + text.len();
    let _ = write!(out, "{conn} S {len}:{room} {sender} {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(conn: u64, kind: &str, body: &str) -> String {
        format!("{conn} {kind} {}:{body}", body.len())
    }

    fn signal_record(conn: u64, room: &str, sender: &str, text: &str) -> String {
        let mut out = String::new();
        write_signal(&mut out, conn, room, sender, text);
        assert_eq!(out, rec(conn, "S", &format!("{room} {sender} {text}")));
        out
    }

    fn msg(text: &str) -> ServerMsg {
        ServerMsg::parse(text).unwrap()
    }

    #[test]
    fn parses_every_kind_in_order() {
        let signal = "{\"type\":\"signal\",\"data\":{\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\\r\\n a:b\"}}}";
        let matched = "{\"type\":\"matched\",\"room\":\"r1\",\"initiator\":true,\"common_interests\":[]}";
        let left = "{\"type\":\"partner_left\",\"reason\":\"next\"}";
        let batch = [
            rec(7, "W", "abc tok 1 room1"),
            rec(7, "T", signal),
            rec(8, "E", "not_matched signal needs a partner"),
            rec(9, "W", "def tok2 0 "),
            rec(9, "C", "4000"),
            rec(3, "M", &format!("r1 s1 s2 n2 12 {matched}")),
            rec(3, "L", left),
            signal_record(4, "r1", "s2", signal),
        ]
        .concat();
        let records = parse(&batch).unwrap();
        let welcome = |conn, session_id: &str, token: &str, resumed, room: Option<&str>| {
            Record::Output(Output::Welcome {
                conn,
                session_id: session_id.into(),
                resume_token: token.into(),
                resumed,
                room: room.map(str::to_string),
            })
        };
        assert_eq!(
            records,
            vec![
                welcome(7, "abc", "tok", true, Some("room1")),
                Record::Output(Output::Send { conn: 7, msg: msg(signal) }),
                Record::Output(Output::Send {
                    conn: 8,
                    msg: ServerMsg::error(ErrorCode::NotMatched, "signal needs a partner")
                }),
                welcome(9, "def", "tok2", false, None),
                Record::Output(Output::Close { conn: 9, code: 4000, reason: "resumed elsewhere" }),
                Record::Matched {
                    conn: 3,
                    route: RouteText { room: "r1", session: "s1", partner: "s2", node: "n2", partner_conn: Some(12) },
                    msg: msg(matched),
                },
                Record::Left { conn: 3, msg: msg(left) },
                Record::Signal { conn: 4, room: "r1", sender: "s2", msg: msg(signal) },
            ]
        );
        let Record::Signal { msg, .. } = &records[7] else { unreachable!("checked above") };
        assert_eq!(msg.to_json(), signal, "a relayed signal keeps its exact text");
    }

    #[test]
    fn lengths_count_bytes_and_bodies_may_hold_anything() {
        let body = "{\"type\":\"error\",\"code\":\"bad_message\",\"message\":\"héllo 12 T 3:x\"}";
        let batch = format!("{}{}", rec(1, "T", body), rec(2, "T", "{\"type\":\"queued\"}"));
        let records = parse(&batch).unwrap();
        assert_eq!(records[0], Record::Output(Output::Send { conn: 1, msg: msg(body) }));
        assert_eq!(records[1], Record::Output(Output::Send { conn: 2, msg: ServerMsg::Queued }));
    }

    #[test]
    fn malformed_batches_are_errors_not_panics() {
        for bad in [
            "x T 2:{}",
            "1 T 9:{}",
            "1 Q 2:{}",
            "1 E 3:bad",
            "1 C 2:ab",
            "1 W 3:a b",
            "1 T",
            "1 T 1:é",
            "1 M 9:r s p n 1",
            "1 M 12:r s p n x {}",
            "1 S 1:r",
            "1 S 3:r s",
            "1 T 2:{}",
            "1 L 4:null",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(parse("").unwrap(), vec![]);
    }
}

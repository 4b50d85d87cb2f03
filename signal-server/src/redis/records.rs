//! What the scripts tell a node to do, as published on the node's channel: a run of records
//! `CONN KIND LEN:BODY`, in the order the scripts decided. Pure parsing, no IO.

use strangers_matchmaker::ConnId;
use strangers_protocol::ErrorCode;

/// One thing to do on one local socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// Send this JSON text (a server message built by the script).
    Text { conn: ConnId, text: &'a str },
    /// Send an `error` message.
    Error { conn: ConnId, code: ErrorCode, message: &'a str },
    /// Send `welcome`; the node adds the ICE servers.
    Welcome { conn: ConnId, session_id: &'a str, token: &'a str, resumed: bool, room: Option<&'a str> },
    /// Close the socket with this code.
    Close { conn: ConnId, code: u16 },
}

/// A published batch the node cannot read (a script and its node disagree: a bug).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed record batch at byte {at}: {what}")]
pub(crate) struct BadBatch {
    at: usize,
    what: &'static str,
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
        records.push(match kind {
            "T" => Record::Text { conn, text: body },
            "E" => {
                let (code, message) = body.split_once(' ').ok_or(bad("error without message"))?;
                let code =
                    ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code).ok_or(bad("unknown error code"))?;
                Record::Error { conn, code, message }
            }
            "W" => {
                let mut parts = body.splitn(4, ' ');
                let (Some(session_id), Some(token), Some(resumed), Some(room)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad("welcome needs four fields"));
                };
                let room = Some(room).filter(|r| !r.is_empty());
                Record::Welcome { conn, session_id, token, resumed: resumed == "1", room }
            }
            "C" => Record::Close { conn, code: body.parse().map_err(|_| bad("close code is not a number"))? },
            _ => return Err(bad("unknown kind")),
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(conn: u64, kind: &str, body: &str) -> String {
        format!("{conn} {kind} {}:{body}", body.len())
    }

    #[test]
    fn parses_every_kind_in_order() {
        let signal = "{\"type\":\"signal\",\"data\":{\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\\r\\n a:b\"}}}";
        let batch = [
            rec(7, "W", "abc tok 1 room1"),
            rec(7, "T", signal),
            rec(8, "E", "not_matched signal needs a partner"),
            rec(9, "W", "def tok2 0 "),
            rec(9, "C", "4000"),
        ]
        .concat();
        let records = parse(&batch).unwrap();
        assert_eq!(
            records,
            vec![
                Record::Welcome { conn: 7, session_id: "abc", token: "tok", resumed: true, room: Some("room1") },
                Record::Text { conn: 7, text: signal },
                Record::Error { conn: 8, code: ErrorCode::NotMatched, message: "signal needs a partner" },
                Record::Welcome { conn: 9, session_id: "def", token: "tok2", resumed: false, room: None },
                Record::Close { conn: 9, code: 4000 },
            ]
        );
    }

    #[test]
    fn lengths_count_bytes_and_bodies_may_hold_anything() {
        let body = "{\"data\":\"héllo 12 T 3:x\"}";
        let batch = format!("{}{}", rec(1, "T", body), rec(2, "T", "{}"));
        let records = parse(&batch).unwrap();
        assert_eq!(records[0], Record::Text { conn: 1, text: body });
        assert_eq!(records[1], Record::Text { conn: 2, text: "{}" });
    }

    #[test]
    fn malformed_batches_are_errors_not_panics() {
        for bad in ["x T 2:{}", "1 T 9:{}", "1 Q 2:{}", "1 E 3:bad", "1 C 2:ab", "1 W 3:a b", "1 T", "1 T 1:é"] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(parse("").unwrap(), vec![]);
    }
}

//! This node's sockets as the Redis backend sees them: their opens, messages and closes go
//! to the worker in arrival order, and what Redis published for them is pushed into the
//! socket layer, both under the routes lock, so the order Redis decided is the order on the
//! wire. It holds the routes (`route.rs`) and hands signals between two local sockets of one
//! room; it must not write frames (the socket layer does) or decide pairings (the scripts do).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, MutexGuard};

use strangers_matchmaker::{ConnId, Disconnect, Output};
use strangers_protocol::{close, ClientMsg, ErrorCode, ServerMsg};

use super::{publish, Command, Link, Record, Route};
use crate::outbox::Outbox;
use crate::sockets::Refusal;

impl Link {
    /// The backend's lock: held while anything is pushed into the socket layer.
    fn routes(&self) -> MutexGuard<'_, HashMap<ConnId, Route>> {
        // Nothing panics while it is held, so a poisoned lock would be a bug worth stopping for.
        self.routes.lock().expect("route lock poisoned")
    }

    /// Admits a socket; a banned address heard of is told so and closed at once.
    pub(crate) fn open(&self, ip: IpAddr, outbox: Arc<Outbox>) -> Result<ConnId, Refusal> {
        let _routes = self.routes();
        let conn = self.sockets.admit(ip, outbox)?;
        if self.is_banned(ip) {
            self.sockets.push(refuse_banned(conn, "this address is banned for a while"));
        } else {
            self.submit(Command::Open { conn, ip });
        }
        Ok(conn)
    }

    /// A parsed message from a socket: a signal goes the short way when the socket has a
    /// route, anything else to the scripts.
    pub(crate) fn message(&self, conn: ConnId, msg: ClientMsg) {
        let mut routes = self.routes();
        match msg {
            ClientMsg::Signal(data) => {
                let Some(route) = routes.get(&conn) else {
                    return self.submit(Command::Signal { conn, text: data.into_wire() });
                };
                if !route.local {
                    return self.publish(conn, route, data.into_wire());
                }
                let partner =
                    route.partner_conn.filter(|p| takes_signal(&routes, *p, &route.room) && self.sockets.takes(*p));
                match partner {
                    Some(partner) => {
                        self.sockets.push([Output::Send { conn: partner, msg: ServerMsg::Signal { data } }]);
                        self.relayed_locally();
                    }
                    None => self.submit(Command::Signal { conn, text: data.into_wire() }),
                }
            }
            ClientMsg::Find | ClientMsg::Next | ClientMsg::Stop => {
                routes.remove(&conn);
                self.submit(Command::Message { conn, msg });
            }
            msg => self.submit(Command::Message { conn, msg }),
        }
    }

    /// A socket's task ended.
    pub(crate) fn close(&self, conn: ConnId, how: Disconnect) {
        let mut routes = self.routes();
        routes.remove(&conn);
        self.sockets.remove(conn);
        self.submit(Command::Close { conn, how });
    }

    fn publish(&self, conn: ConnId, route: &Route, text: String) {
        let Some(partner_conn) = route.partner_conn else { return self.submit(Command::Signal { conn, text }) };
        let (node, room, session) = (route.node.to_string(), route.room.to_string(), route.session.to_string());
        self.submit(Command::Publish(publish::Signal { conn, node, partner_conn, room, session, text }));
    }

    /// Pushes what Redis published for this node's sockets into the socket layer, in order.
    pub(crate) fn apply(&self, batch: Vec<Record<'_>>) {
        let mut routes = self.routes();
        for record in batch {
            let output = match record {
                Record::Output(output) => {
                    if let Output::Welcome { conn, session_id, .. } = &output {
                        if self.sockets.is_open(*conn) {
                            self.welcomed(*conn, session_id);
                        }
                    }
                    output
                }
                Record::Matched { conn, route, msg } => {
                    if self.sockets.is_open(conn) {
                        routes.insert(conn, Route::new(&route, &self.node));
                    }
                    Output::Send { conn, msg }
                }
                Record::Left { conn, msg } => {
                    routes.remove(&conn);
                    Output::Send { conn, msg }
                }
                Record::Signal { conn, room, sender, msg } => {
                    if !(takes_signal(&routes, conn, room) && self.sockets.takes(conn)) {
                        self.submit(Command::Reroute {
                            session: sender.into(),
                            room: room.into(),
                            text: msg.into_json(),
                        });
                        continue;
                    }
                    Output::Send { conn, msg }
                }
            };
            if let Output::Close { conn, .. } = &output {
                routes.remove(conn);
            }
            self.sockets.push([output]);
        }
    }

    /// A ban was heard of: the sockets of that address here that speak for no session yet are
    /// told and closed. (Redis knows only sessions: the script closes their sockets itself.)
    pub(crate) fn close_banned(&self, ip: IpAddr) {
        let _routes = self.routes();
        for conn in self.sockets.conns_from(ip) {
            if self.session_of(conn).is_empty() {
                self.sockets.push(refuse_banned(conn, BANNED_BY_REPORTS));
            }
        }
    }

    /// Asks every open socket to reconnect and resume (close 1012), keeping the door open:
    /// this node lost what Redis had published for it.
    pub(crate) fn restart_all(&self) {
        let mut routes = self.routes();
        routes.clear();
        self.sockets.restart_all();
    }

    /// Stops admitting sockets and asks every open one to close with 1012.
    pub(crate) fn shut_down(&self) {
        let mut routes = self.routes();
        routes.clear();
        self.sockets.shut_down();
    }
}

/// What an address banned after reports is told (as `report.lua` says it).
pub(crate) const BANNED_BY_REPORTS: &str = "this address was reported too often and is banned for a while";

/// What a socket of a banned address gets: the error, then a policy close.
pub(crate) fn refuse_banned(conn: ConnId, message: &str) -> [Output; 2] {
    [
        Output::Send { conn, msg: ServerMsg::error(ErrorCode::Banned, message) },
        Output::Close { conn, code: close::POLICY, reason: "banned" },
    ]
}

/// Whether a signal of `room` may go straight to socket `conn`: it holds a route to that room
/// (the socket layer must also still take it); if not, the scripts decide.
fn takes_signal(routes: &HashMap<ConnId, Route>, conn: ConnId, room: &str) -> bool {
    routes.get(&conn).is_some_and(|r| &*r.room == room)
}

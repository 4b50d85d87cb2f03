//! Where a matched socket's signals go in Redis mode. A node learns a route from the pairing
//! script's `matched` record and forgets it when the room ends (`partner_left`), when the
//! socket leaves the room itself (`next`, `stop`, `find`) or closes. While it holds one, the
//! socket's signals skip the scripts: handed straight to the partner's outbox when the
//! partner is on this node, or published straight to the partner's node otherwise; that node
//! hands it over only if its socket is still in the same room, else `relay.lua` decides.
//!
//! Why this keeps the order of signals: a route for a socket exists only from its `matched`
//! record until it is forgotten, never again for that socket and room, and both sides of a
//! room on one node learn their routes from one published message. So for a given partner
//! socket and room, every signal before the route is gone takes the fast path, and every one
//! after it takes the script path; the worker takes both from one queue in order, and
//! publishes the fast ones (`publish.rs`) before it sends any batch that follows them.

use strangers_matchmaker::ConnId;

use super::RouteText;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub room: Box<str>,
    /// The socket's own session (the sender of its signals).
    pub session: Box<str>,
    /// The partner's node, and its socket there if it was up when the room was made.
    pub node: Box<str>,
    pub partner_conn: Option<ConnId>,
    /// Whether the partner's node is this one.
    pub local: bool,
}

impl Route {
    pub(crate) fn new(text: &RouteText<'_>, this_node: &str) -> Route {
        Route {
            room: text.room.into(),
            session: text.session.into(),
            node: text.node.into(),
            partner_conn: text.partner_conn,
            local: text.node == this_node,
        }
    }
}

//! The Lua scripts of the Redis backend, each one atomic step of the shared pairing state.
//! They live in `*.lua` files beside this one; `common.lua` (the key layout and the shared
//! pairing steps) is prepended to each. `redis::Script` calls them with EVALSHA and loads them
//! again by itself when Redis answers NOSCRIPT (after a restart).

use redis::aio::ConnectionManager;
use redis::Script;

const COMMON: &str = include_str!("common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

/// The operations `batch.lua` runs, one file each.
const OPERATIONS: [&str; 7] = [
    include_str!("hello.lua"),
    include_str!("queue.lua"),
    include_str!("signal.lua"),
    include_str!("pub.lua"),
    include_str!("relay.lua"),
    include_str!("report.lua"),
    include_str!("close.lua"),
];

/// Every script, loaded once per node.
pub(crate) struct Scripts {
    /// The sockets' commands, any number in one call.
    pub(crate) batch: Script,
    pub(crate) tick: Script,
    pub(crate) heartbeat: Script,
    pub(crate) stats: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            batch: script(&format!("{}\n{}", OPERATIONS.join("\n"), include_str!("batch.lua"))),
            tick: script(include_str!("tick.lua")),
            heartbeat: script(include_str!("heartbeat.lua")),
            stats: script(include_str!("stats.lua")),
        }
    }

    /// Loads every script (after Redis forgot them by restarting).
    pub(crate) async fn load_all(&self, con: &mut ConnectionManager) -> redis::RedisResult<()> {
        for script in [&self.batch, &self.tick, &self.heartbeat] {
            script.load_async(con).await?;
        }
        Ok(())
    }
}

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

/// Every script, loaded once per node.
pub(crate) struct Scripts {
    pub(crate) hello: Script,
    pub(crate) queue: Script,
    pub(crate) signal: Script,
    pub(crate) report: Script,
    pub(crate) close: Script,
    pub(crate) tick: Script,
    pub(crate) heartbeat: Script,
    pub(crate) stats: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            hello: script(include_str!("hello.lua")),
            queue: script(include_str!("queue.lua")),
            signal: script(include_str!("signal.lua")),
            report: script(include_str!("report.lua")),
            close: script(include_str!("close.lua")),
            tick: script(include_str!("tick.lua")),
            heartbeat: script(include_str!("heartbeat.lua")),
            stats: script(include_str!("stats.lua")),
        }
    }

    /// A script the workers call by name.
    pub(crate) fn by_name(&self, name: &str) -> &Script {
        match name {
            "hello" => &self.hello,
            "queue" => &self.queue,
            "signal" => &self.signal,
            "report" => &self.report,
            "close" => &self.close,
            _ => unreachable!("workers only name their own scripts"),
        }
    }

    /// Loads every script (after Redis forgot them by restarting).
    pub(crate) async fn load_all(&self, con: &mut ConnectionManager) -> redis::RedisResult<()> {
        for script in [&self.hello, &self.queue, &self.signal, &self.report, &self.close, &self.tick, &self.heartbeat] {
            script.load_async(con).await?;
        }
        Ok(())
    }
}

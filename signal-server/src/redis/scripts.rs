//! The Lua code of the Redis backend, as one Redis function library: `common.lua` (the key
//! layout and the shared pairing steps), the operations (one file each), then one function
//! per entry point (`batch`, `tick`, `heartbeat`, `stats`). Redis runs the library's top
//! level once, when it is loaded; a call (FCALL) then runs only its function. (As separate
//! EVAL scripts, every call ran the whole prelude again: that alone cost Redis about as much
//! as the operations of a small batch.)
//!
//! The library's name carries a hash of its code, so nodes of different versions (a rolling
//! upgrade) each call their own code. When Redis has forgotten the library (it restarted
//! without persistence), a call fails with "Function not found" and `Shared::query` loads it
//! again.

use redis::aio::ConnectionManager;
use sha1::{Digest, Sha1};

const COMMON: &str = include_str!("common.lua");

/// The operations `batch.lua` runs, one file each.
const OPERATIONS: [&str; 6] = [
    include_str!("hello.lua"),
    include_str!("queue.lua"),
    include_str!("signal.lua"),
    include_str!("relay.lua"),
    include_str!("report.lua"),
    include_str!("close.lua"),
];

/// The functions: (entry point, body, whether it only reads).
const FUNCTIONS: [(&str, &str, bool); 4] = [
    ("batch", include_str!("batch.lua"), false),
    ("tick", include_str!("tick.lua"), false),
    ("heartbeat", include_str!("heartbeat.lua"), false),
    ("stats", include_str!("stats.lua"), true),
];

/// An entry point of the library.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Function {
    /// The sockets' commands, any number in one call.
    Batch,
    Tick,
    Heartbeat,
    Stats,
}

/// The library as Redis loads it, and the names of its functions.
#[derive(Debug, Clone)]
pub(crate) struct Library {
    code: String,
    /// Function names, in the order of [`Function`].
    names: [String; 4],
}

impl Library {
    pub(crate) fn new() -> Library {
        let mut body = format!("{COMMON}\n{}\n", OPERATIONS.join("\n"));
        let digest = Sha1::digest(format!("{body}{FUNCTIONS:?}").as_bytes());
        let hash = format!("{:08x}", u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]));
        let names = FUNCTIONS.map(|(entry, _, _)| format!("strangers_{hash}_{entry}"));
        for ((_, code, read_only), name) in FUNCTIONS.iter().zip(&names) {
            let flags = if *read_only { "'no-writes'" } else { "" };
            body.push_str(&format!(
                "redis.register_function{{function_name = '{name}', flags = {{ {flags} }}, \
                 callback = function(_, ARGV)\nbegin(ARGV)\n{code}\nend}}\n"
            ));
        }
        Library { code: format!("#!lua name=strangers_{hash}\n{body}"), names }
    }

    /// An FCALL of `function` (no keys: the functions name their keys themselves, which
    /// is fine for one Redis, not for Redis Cluster).
    pub(crate) fn call(&self, function: Function) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(&self.names[function as usize]).arg(0);
        cmd
    }

    /// Loads the library (again: the same name always holds the same code).
    pub(crate) async fn load(&self, con: &mut ConnectionManager) -> redis::RedisResult<()> {
        self.load_cmd().exec_async(con).await
    }

    /// The command that loads the library.
    pub(crate) fn load_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(&self.code);
        cmd
    }
}

/// Whether Redis answered that it does not know the function (it lost the library).
pub(crate) fn is_not_loaded(error: &redis::RedisError) -> bool {
    error.detail().is_some_and(|detail| detail.contains("Function not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_code_hash_and_differ() {
        let library = Library::new();
        assert!(library.code.starts_with("#!lua name=strangers_"));
        let names: std::collections::HashSet<_> = library.names.iter().collect();
        assert_eq!(names.len(), 4);
        let first_line = library.code.lines().next().unwrap();
        let library_name = first_line.strip_prefix("#!lua name=").unwrap();
        for name in &library.names {
            assert!(name.starts_with(&format!("{library_name}_")), "{name} is not in {library_name}");
        }
        assert_eq!(Library::new().names, library.names, "the same code gets the same names");
    }
}

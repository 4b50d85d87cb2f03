//! Blocks of ports a test process holds for itself while a server it started uses them (the
//! TURN relay ports of a coturn): an exclusive lock on one file per block, so test processes
//! running side by side never hand the same block to two servers. It starts nothing itself.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// Ports in a block.
pub const BLOCK_PORTS: u16 = 100;

/// Blocks from 40,000 up.
const BLOCKS: u16 = 200;
const FIRST_PORT: u16 = 40_000;

/// A block of ports, held until dropped (or the process ends: the kernel drops the lock).
pub struct PortBlock {
    pub first: u16,
    _lock: File,
}

impl PortBlock {
    /// The last port of the block.
    pub fn last(&self) -> u16 {
        self.first + BLOCK_PORTS - 1
    }

    /// Claims a block no other holder (in this process or another) holds, starting the search
    /// at one picked from the process id so that processes seldom try the same one first.
    pub fn claim() -> anyhow::Result<PortBlock> {
        let start = (std::process::id() % u32::from(BLOCKS)) as u16;
        for k in 0..BLOCKS {
            let block = (start + k) % BLOCKS;
            let path = lock_path(block);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(PortBlock { first: FIRST_PORT + block * BLOCK_PORTS, _lock: file });
            }
        }
        bail!("all {BLOCKS} port blocks are held by other tests")
    }
}

fn lock_path(block: u16) -> PathBuf {
    std::env::temp_dir().join(format!("strangers-test-ports-{block}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_holders_never_get_the_same_block() {
        let a = PortBlock::claim().unwrap();
        let b = PortBlock::claim().unwrap();
        assert_ne!(a.first, b.first);
        assert!(a.last() < b.first || b.last() < a.first, "blocks overlap");
        let first = a.first;
        drop(a);
        let mut again = Vec::new();
        while let Ok(block) = PortBlock::claim() {
            if block.first == first {
                return;
            }
            again.push(block);
        }
        panic!("a dropped block was never handed out again");
    }

    #[test]
    fn two_coturns_side_by_side_get_blocks_and_ports_of_their_own() {
        let a = crate::Turn::start().unwrap();
        let b = crate::Turn::start().unwrap();
        assert_ne!(a.port, b.port);
        assert_ne!(a.relay_ports(), b.relay_ports());
    }
}

//! Reads a process's CPU time and resident memory from `/proc`, and raises this process's
//! open-file limit. Linux only; it knows nothing of WebSockets or the server.

use std::io;

use anyhow::Context;

/// Clock ticks per second, the unit of `utime` and `stime` in `/proc/<pid>/stat`.
fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// User plus system CPU time the process has used so far (all threads), in microseconds.
pub fn cpu_micros(pid: u32) -> anyhow::Result<u64> {
    let (user, system) = cpu_split_micros(pid)?;
    Ok(user + system)
}

/// User and system (kernel) CPU time the process has used so far, in microseconds.
pub fn cpu_split_micros(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name come state (field 3) ... utime (14) and stime (15): indices 11 and 12 here.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).context("short /proc stat")?.parse::<u64>().context("non-numeric CPU time in /proc stat")
    };
    let micros = |t: u64| t * 1_000_000 / clock_ticks_per_sec();
    Ok((micros(ticks(11)?), micros(ticks(12)?)))
}

/// Resident set size (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line (a zombie process?)")?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .context("malformed VmRSS line")?;
    Ok(kib * 1024)
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it).
/// Returns the limit now in force.
pub fn raise_open_files_limit() -> io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        assert!(cpu_micros(pid).unwrap() > 0);
    }
}

//! CPU time, resident memory and open files of a process, from Linux
//! `/proc` (and the process CPU-time clock, for nanosecond CPU times).

use std::fs;
use std::io;
use std::time::Duration;

/// User plus system CPU time consumed so far by process `pid` (all its
/// threads, exited ones included), to the nanosecond from the process's
/// CPU-time clock (`clock_getcpuclockid`); where that clock is not
/// available, from `/proc/<pid>/stat` ([`stat_cpu_time`], clock-tick
/// resolution, usually 10 ms).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    clock_cpu_time(pid).or_else(|_| stat_cpu_time(pid))
}

/// User plus system CPU time of process `pid` from fields 14 and 15 of
/// `/proc/<pid>/stat`, in clock ticks converted to a duration.
pub fn stat_cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat)?;
    Ok(ticks_to_duration(ticks, clock_ticks_per_sec()?))
}

/// The process CPU-time clock of `pid`, read once.
fn clock_cpu_time(pid: u32) -> io::Result<Duration> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| bad("pid out of range"))?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid clockid_t to write to.
    let rc = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).map_err(|_| bad("negative CPU time"))?;
    let nanos = u32::try_from(ts.tv_nsec).map_err(|_| bad("bad CPU time nanoseconds"))?;
    Ok(Duration::new(secs, nanos))
}

/// Resident set size of process `pid` in bytes (`VmRSS` of
/// `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status)
}

/// Number of file descriptors process `pid` has open (entries of
/// `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
fn parse_stat_ticks(stat: &str) -> io::Result<u64> {
    // The command name (field 2) is in parentheses and may contain spaces
    // or ')'; everything after the last ')' is space-separated, starting
    // at field 3 (state). utime and stime are fields 14 and 15.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| bad("no ')' in /proc stat"))?;
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let mut next = || -> io::Result<u64> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("missing utime/stime in /proc stat"))
    };
    Ok(next()? + next()?)
}

/// `VmRSS` in bytes from the text of `/proc/<pid>/status`.
fn parse_vm_rss(status: &str) -> io::Result<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .ok_or_else(|| bad("no VmRSS in /proc status"))?;
    let mut parts = line.split_ascii_whitespace();
    let value: u64 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("bad VmRSS value"))?;
    match parts.next() {
        Some("kB") | None => Ok(value * 1024),
        Some(unit) => Err(bad(&format!("unexpected VmRSS unit {unit:?}"))),
    }
}

fn clock_ticks_per_sec() -> io::Result<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz)
        .ok()
        .filter(|&hz| hz > 0)
        .ok_or_else(|| bad("sysconf(_SC_CLK_TCK) failed"))
}

fn ticks_to_duration(ticks: u64, hz: u64) -> Duration {
    let secs = ticks / hz;
    let rem = ticks % hz;
    Duration::from_secs(secs) + Duration::from_nanos(rem * 1_000_000_000 / hz)
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_name() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_stat_ticks(stat).ok(), Some(325));
        assert!(parse_stat_ticks("1234 (x) S 1").is_err());
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1536 kB\nThreads:\t2\n";
        assert_eq!(parse_vm_rss(status).ok(), Some(1536 * 1024));
        assert!(parse_vm_rss("Name:\tx\n").is_err());
    }

    #[test]
    fn converts_ticks() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_ok());
        assert!(stat_cpu_time(pid).is_ok());
        assert!(clock_cpu_time(pid).is_ok());
        assert!(rss_bytes(pid).expect("rss") > 0);
        assert!(open_fds(pid).expect("fds") >= 3);
    }
}

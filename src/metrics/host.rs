//! The machine the server runs on, as Linux's /proc describes it: CPU use between two readings
//! of /proc/stat, memory from /proc/meminfo, the load from /proc/loadavg (pure parsing; the
//! metrics worker reads the files and the data directory's file system, `server.rs`).

/// CPU time since boot, in clock ticks: all of it, and the part spent idle (idle + iowait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub total: u64,
    pub idle: u64,
}

/// The first line of /proc/stat: `cpu user nice system idle iowait irq softirq steal guest
/// guest_nice` (guest time is already counted in user, so it is left out of the total).
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|n| n.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    Some(CpuTimes { total: v.iter().sum(), idle: v[3] + v[4] })
}

/// The share of CPU time spent busy between two readings (0..1), None when no time passed.
pub fn cpu_busy_ratio(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total.checked_sub(before.total).filter(|t| *t > 0)?;
    let idle = after.idle.saturating_sub(before.idle).min(total);
    Some((total - idle) as f64 / total as f64)
}

/// `(MemTotal, MemAvailable)` in bytes from /proc/meminfo (kB there).
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse::<u64>().ok().map(|kb| kb * 1024)
    };
    let total = field("MemTotal:")?;
    Some((total, field("MemAvailable:")?.min(total)))
}

/// The one-minute load average, the first field of /proc/loadavg.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The used share of a file system: (total - available to unprivileged users) / total, as df
/// shows it, from statvfs's blocks.
pub fn disk_used_ratio(total_blocks: u64, available_blocks: u64) -> Option<f64> {
    (total_blocks > 0).then(|| (total_blocks - available_blocks.min(total_blocks)) as f64 / total_blocks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 800 50 0 0 0 20 0\ncpu0 50 0 25 400 25 0 0 0 10 0\nintr 1\n";

    #[test]
    fn cpu_use_is_the_busy_share_between_two_readings() {
        let a = parse_stat(STAT).unwrap();
        assert_eq!(a, CpuTimes { total: 1000, idle: 850 });
        let b = parse_stat("cpu  160 0 90 860 90 0 0 0 30 0\n").unwrap();
        assert_eq!(cpu_busy_ratio(a, b), Some(0.5));
        assert_eq!(cpu_busy_ratio(a, a), None, "no time passed");
        assert_eq!(parse_stat("intr 1\n"), None);
        assert_eq!(parse_stat("cpu  1 2 x 4 5\n"), None);
    }

    #[test]
    fn memory_and_load_are_read_from_their_files() {
        let mem = "MemTotal:       16000000 kB\nMemFree:  1000 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(parse_meminfo(mem), Some((16_000_000 * 1024, 4_000_000 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 10 kB\n"), None, "no MemAvailable (kernels before 3.14)");
        assert_eq!(parse_loadavg("0.52 0.58 0.59 1/467 12345\n"), Some(0.52));
        assert_eq!(disk_used_ratio(1000, 250), Some(0.75));
        assert_eq!(disk_used_ratio(0, 0), None);
    }
}

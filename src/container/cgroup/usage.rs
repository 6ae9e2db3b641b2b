//! What a box used, from its cgroups' own counters: `--stats`.

use crate::lines::line;
use std::fs;
use std::path::{Path, PathBuf};

/// What a box used, from its cgroups' own statistics (whichever files exist).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub memory_peak: Option<u64>,
    pub oom_kills: Option<u64>,
    pub cpu_usec: Option<u64>,
    pub throttled: Option<(u64, u64)>,
    pub forks_refused: Option<u64>,
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The number after `key` in a flat keyed file like memory.events or cpu.stat.
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Usage {
    /// Read the statistics of the box's cgroup directories, v1 or v2. Call it after
    /// init has been waited for: where no cgroup counts CPU time (v1's cpu does not,
    /// and the box joins no cpuacct), the CPU time is that of the runtime's children
    /// (getrusage(RUSAGE_CHILDREN)): init and all it waited for, which is the box.
    pub fn read(dirs: &[PathBuf]) -> Usage {
        let mut u = Usage::default();
        for dir in dirs {
            let or = |a: Option<u64>, b: Option<u64>| a.or(b);
            u.memory_peak = or(
                u.memory_peak,
                read_u64(&dir.join("memory.max_usage_in_bytes"))
                    .or_else(|| read_u64(&dir.join("memory.peak"))),
            );
            u.oom_kills = or(
                u.oom_kills,
                keyed(&dir.join("memory.oom_control"), "oom_kill")
                    .or_else(|| keyed(&dir.join("memory.events"), "oom_kill")),
            );
            u.cpu_usec = or(
                u.cpu_usec,
                keyed(&dir.join("cpu.stat"), "usage_usec")
                    .or_else(|| read_u64(&dir.join("cpuacct.usage")).map(|ns| ns / 1000)),
            );
            let throttled = keyed(&dir.join("cpu.stat"), "nr_throttled").map(|n| {
                let usec = keyed(&dir.join("cpu.stat"), "throttled_usec")
                    .or_else(|| keyed(&dir.join("cpu.stat"), "throttled_time").map(|ns| ns / 1000))
                    .unwrap_or(0);
                (n, usec)
            });
            if u.throttled.is_none_or(|(n, _)| n == 0) && throttled.is_some() {
                u.throttled = throttled;
            }
            u.forks_refused = or(u.forks_refused, keyed(&dir.join("pids.events"), "max"));
        }
        if u.cpu_usec.is_none() {
            use nix::sys::resource::{UsageWho, getrusage};
            u.cpu_usec = getrusage(UsageWho::RUSAGE_CHILDREN).ok().map(|r| {
                let usec =
                    |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
                usec(r.user_time()) + usec(r.system_time())
            });
        }
        u
    }

    /// The statistics as `key: value` lines, like the probe's report.
    pub fn render(&self) -> String {
        let unknown = || "unknown".to_string();
        let ms = |usec: u64| format!("{} ms", usec / 1000);
        let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(unknown);
        [
            (
                Stat::MemoryPeak,
                self.memory_peak
                    .map(|b| format!("{} KiB", b / 1024))
                    .unwrap_or_else(unknown),
            ),
            (Stat::OomKills, count(self.oom_kills)),
            (Stat::CpuTime, self.cpu_usec.map(ms).unwrap_or_else(unknown)),
            (
                Stat::CpuThrottled,
                self.throttled
                    .map(|(n, usec)| format!("{n} times, {}", ms(usec)))
                    .unwrap_or_else(unknown),
            ),
            (Stat::ForksRefused, count(self.forks_refused)),
        ]
        .into_iter()
        .map(|(key, value)| line(key, value) + "\n")
        .collect()
    }
}

crate::keys! {
    /// The lines of a runtime's `--stats`, as [`Usage::render`] writes them.
    pub enum Stat {
        MemoryPeak = "memory peak",
        OomKills = "oom kills",
        CpuTime = "cpu time",
        CpuThrottled = "cpu throttled",
        ForksRefused = "forks refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn usage_reads_v1_and_v2_counters() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("v2");
        fs::create_dir(&v2).unwrap();
        fs::write(v2.join("memory.peak"), "67108864\n").unwrap();
        fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(
            v2.join("cpu.stat"),
            "usage_usec 290000\nnr_periods 6\nnr_throttled 5\nthrottled_usec 246000\n",
        )
        .unwrap();
        fs::write(v2.join("pids.events"), "max 3\n").unwrap();
        let u = Usage::read(&[v2]);
        assert_eq!(
            u,
            Usage {
                memory_peak: Some(64 << 20),
                oom_kills: Some(1),
                cpu_usec: Some(290_000),
                throttled: Some((5, 246_000)),
                forks_refused: Some(3)
            }
        );
    }

    /// Where no cgroup counts CPU time, the runtime's children's count stands in.
    #[test]
    fn cpu_time_without_a_counting_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let u = Usage::read(&[dir.path().to_path_buf()]);
        assert!(u.cpu_usec.is_some(), "{u:?}");
        assert_eq!(u.memory_peak, None);
    }
}

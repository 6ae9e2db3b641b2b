//! `--repeat N`: many VMs one after another in one process, and what the process
//! held after the first and the last, so a leak shows.

use anyhow::{Context, Result};

/// What this process holds right now: open fds, memory mappings, resident memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub fds: usize,
    pub mappings: usize,
    pub rss_kib: u64,
}

impl Footprint {
    pub fn now() -> Result<Footprint> {
        let fds = std::fs::read_dir("/proc/self/fd")
            .context("reading /proc/self/fd")?
            .count();
        let mappings = std::fs::read_to_string("/proc/self/maps")
            .context("reading /proc/self/maps")?
            .lines()
            .count();
        let status =
            std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS line in /proc/self/status")?;
        Ok(Footprint {
            fds,
            mappings,
            rss_kib,
        })
    }
}

/// Run a VM `times` times, one after another: the first run prints its report
/// (`run(true)`), the others run quietly. With more than one, print what the process
/// held after the first VM and after the last. Every VM closes its fds and unmaps its
/// memory, so the two must match (resident memory may move by a few pages).
pub fn repeat(times: u32, mut run: impl FnMut(bool) -> Result<i32>) -> Result<i32> {
    let code = run(true)?;
    if times > 1 {
        let first = Footprint::now()?;
        for _ in 1..times {
            run(false)?;
        }
        let last = Footprint::now()?;
        println!(
            "ran {times} VMs one after another: open fds {} -> {}, memory mappings {} -> {}, VmRSS {} -> {} KiB",
            first.fds, last.fds, first.mappings, last.mappings, first.rss_kib, last.rss_kib
        );
    }
    Ok(code)
}

impl Footprint {
    /// Read back the line [`repeat`] prints: what the process held after the first
    /// VM and after the last.
    pub fn parse_repeat_line(stdout: &str) -> Option<(Footprint, Footprint)> {
        let line = stdout.lines().find(|l| l.starts_with("ran "))?;
        let numbers: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let [_, fds1, fds2, maps1, maps2, rss1, rss2] = numbers[..] else {
            return None;
        };
        let usage = |fds: u64, mappings: u64, rss_kib| Footprint {
            fds: fds as usize,
            mappings: mappings as usize,
            rss_kib,
        };
        Some((usage(fds1, maps1, rss1), usage(fds2, maps2, rss2)))
    }
}

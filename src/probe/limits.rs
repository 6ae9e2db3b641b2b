//! The probe's own cgroup limits, read the way the kernel shows them to it: find
//! which cgroup it is in (/proc/self/cgroup) and where each hierarchy is mounted
//! (/proc/self/mountinfo), then read the limit files of its own cgroup. Works on
//! cgroup v2, v1 and hybrid layouts.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

pub struct Cgroups {
    /// Our cgroup's directory per v1 controller, and in the v2 hierarchy.
    found: Result<(HashMap<String, PathBuf>, Option<PathBuf>), String>,
}

impl Cgroups {
    pub fn find() -> Cgroups {
        Cgroups { found: find() }
    }

    fn dir_for(&self, controller: &str, v2_file: &str) -> Result<(PathBuf, bool), String> {
        let (v1, v2) = self.found.as_ref().map_err(Clone::clone)?;
        if let Some(dir) = v1.get(controller) {
            return Ok((dir.clone(), true));
        }
        match v2 {
            Some(dir) if dir.join(v2_file).exists() => Ok((dir.clone(), false)),
            _ => Err(format!(
                "not visible (no {controller} controller mounted here)"
            )),
        }
    }

    pub fn memory(&self) -> String {
        let (dir, v1) = match self.dir_for("memory", "memory.max") {
            Ok(found) => found,
            Err(why) => return why,
        };
        let file = if v1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        match read(&dir, file) {
            Some(v) if v == "max" => "none".into(),
            Some(v) => match v.parse::<u64>() {
                // v1 shows "no limit" as a huge number near 2^63.
                Ok(n) if n >= 1 << 62 => "none".into(),
                Ok(n) => bytes(n),
                Err(_) => v,
            },
            None => format!("unreadable ({file})"),
        }
    }

    pub fn pids(&self) -> String {
        let (dir, _) = match self.dir_for("pids", "pids.max") {
            Ok(found) => found,
            Err(why) => return why,
        };
        match read(&dir, "pids.max") {
            Some(v) if v == "max" => "none".into(),
            Some(v) => v,
            // The root cgroup of a hierarchy has no limit files: nothing limits it.
            None => "none".into(),
        }
    }

    pub fn cpu(&self) -> String {
        let (dir, v1) = match self.dir_for("cpu", "cpu.max") {
            Ok(found) => found,
            Err(why) => return why,
        };
        let (quota, period) = if v1 {
            (
                read(&dir, "cpu.cfs_quota_us"),
                read(&dir, "cpu.cfs_period_us"),
            )
        } else {
            let max = read(&dir, "cpu.max").unwrap_or_default();
            let mut parts = max.split_whitespace().map(String::from);
            (parts.next(), parts.next())
        };
        match (quota.as_deref(), period.and_then(|p| p.parse::<u64>().ok())) {
            (Some("max" | "-1"), _) => "none".into(),
            (Some(q), Some(p)) if p > 0 => match q.parse::<u64>() {
                Ok(q) => format!("{} CPU ({q}us of every {p}us)", q as f64 / p as f64),
                Err(_) => format!("unreadable ({q})"),
            },
            _ => "unreadable".into(),
        }
    }
}

fn read(dir: &std::path::Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

type Found = (HashMap<String, PathBuf>, Option<PathBuf>);

fn find() -> Result<Found, String> {
    let (Ok(membership), Ok(mountinfo)) = (
        fs::read_to_string("/proc/self/cgroup"),
        fs::read_to_string("/proc/self/mountinfo"),
    ) else {
        return Err("not visible (/proc is not mounted)".into());
    };
    // Our cgroup in each hierarchy: "ID:controllers:/path" ("0::/path" for v2).
    let mut v1_paths = HashMap::new();
    let mut v2_path = None;
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2_path = Some(path.to_string());
        } else {
            for c in controllers.split(',') {
                v1_paths.insert(c.to_string(), path.to_string());
            }
        }
    }
    let mut v1_dirs = HashMap::new();
    let mut v2_dir = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (root, point) = (fields[3], fields[4]);
        let (fstype, options) = (fields.get(dash + 1), fields.get(dash + 3));
        let place = |path: &str| {
            let rel = path.strip_prefix(root)?.trim_start_matches('/');
            Some(PathBuf::from(point).join(rel))
        };
        match fstype {
            Some(&"cgroup2") => v2_dir = v2_path.as_deref().and_then(place),
            Some(&"cgroup") => {
                for option in options.unwrap_or(&"").split(',') {
                    if let Some(path) = v1_paths.get(option)
                        && let Some(dir) = place(path)
                    {
                        v1_dirs.insert(option.to_string(), dir);
                    }
                }
            }
            _ => {}
        }
    }
    if v1_dirs.is_empty() && v2_dir.is_none() {
        return Err("not visible (no cgroup filesystem mounted here)".into());
    }
    Ok((v1_dirs, v2_dir))
}

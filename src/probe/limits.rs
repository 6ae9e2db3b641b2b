//! The probe's own cgroup limits, read the way the kernel shows them to it: find
//! which cgroup it is in (/proc/self/cgroup) and where each hierarchy is mounted
//! (/proc/self/mountinfo), then read the limit files of its own cgroup. Works on
//! cgroup v2, v1 and hybrid layouts.

use isolab::workshop::report::{Key, Raise, line};
use nix::mount::{MsFlags, mount};
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

/// The v1 controllers whose limits the box could lift.
const LIMITED: [&str; 3] = ["memory", "pids", "cpu"];

/// `probe raise-limits`: what root in a box with CAP_SYS_ADMIN can do to its own
/// budget. The box's cgroup filesystems are mounted read-only, but a new mount of the
/// same hierarchy, made inside the box, is read-write: mounted over the old one, it
/// shows the box's own cgroup (its cgroup namespace's root), whose limit files root
/// may write. Where the box may not mount one (its cgroup namespace is not its
/// own), it makes a user, cgroup and mount namespace of its own, as any process may
/// where user namespaces are allowed, and mounts there. Only the box's own cgroup
/// changes, and the runtime removes it at the end.
pub fn raise(then: &[std::ffi::OsString]) -> std::process::ExitCode {
    let before = Cgroups::find();
    let (memory, pids, cpu) = (before.memory(), before.pids(), before.cpu());
    println!("{}", line(Raise::MountCgroups, remount_read_write()));
    let dirs = Cgroups::find();
    let written = [
        (Key::MemoryLimit, memory, dirs.lift_memory()),
        (
            Key::PidsLimit,
            pids,
            dirs.lift("pids", "pids.max", &[("pids.max", "max")]),
        ),
        (
            Key::CpuLimit,
            cpu,
            dirs.lift(
                "cpu",
                "cpu.max",
                &[("cpu.max", "max"), ("cpu.cfs_quota_us", "-1")],
            ),
        ),
    ];
    let after = Cgroups::find();
    for ((key, was, result), now) in
        written
            .into_iter()
            .zip([after.memory(), after.pids(), after.cpu()])
    {
        match result {
            Ok(()) if now != was => println!("{}", line(key, format!("{was} -> {now}"))),
            Ok(()) => println!("{}", line(key, format!("{now} (unchanged)"))),
            Err(why) => println!("{}", line(key, format!("{now} (unchanged: {why})"))),
        }
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let Some((program, args)) = then.split_first() else {
        return std::process::ExitCode::SUCCESS;
    };
    let err =
        std::os::unix::process::CommandExt::exec(std::process::Command::new(program).args(args));
    eprintln!("probe: error: exec {}: {err}", program.to_string_lossy());
    std::process::ExitCode::from(127)
}

/// Mount each cgroup hierarchy this process sees again, read-write, where it was. The
/// kernel will not stack a filesystem on its own mount, so a fresh tmpfs goes over
/// /sys/fs/cgroup first, and the hierarchies onto it. Refused, try again in
/// namespaces of our own.
fn remount_read_write() -> String {
    let Ok(table) = fs::read_to_string("/proc/self/mountinfo") else {
        return "not tried (/proc is not mounted)".into();
    };
    let mut hierarchies = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (point, fstype) = (fields[4], fields.get(dash + 1).copied().unwrap_or(""));
        let options = fields.get(dash + 3).copied().unwrap_or("");
        let data = match fstype {
            "cgroup2" => None,
            "cgroup" if options.split(',').any(|o| LIMITED.contains(&o)) => Some(
                options
                    .split(',')
                    .filter(|o| *o != "rw" && *o != "ro")
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => continue,
        };
        hierarchies.push((point.to_string(), fstype.to_string(), data));
    }
    if hierarchies.is_empty() {
        return "nothing to mount (no cgroup filesystem here)".into();
    }
    let why = match mount_again(&hierarchies) {
        Ok(points) => return format!("allowed (read-write, at {points})"),
        Err(why) => why,
    };
    match namespaces_of_my_own().and_then(|()| mount_again(&hierarchies)) {
        Ok(points) => format!(
            "allowed, in a user, cgroup and mount namespace of my own (read-write, at {points})"
        ),
        Err(_) => format!("refused ({why})"),
    }
}

type Hierarchies = [(String, String, Option<String>)];

/// Mount a tmpfs over /sys/fs/cgroup, and each hierarchy on it; the mount points.
fn mount_again(hierarchies: &Hierarchies) -> Result<String, String> {
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(
        Some("tmpfs"),
        "/sys/fs/cgroup",
        Some("tmpfs"),
        safe,
        Some("size=16k"),
    ) {
        return Err(format!("{e:?}"));
    }
    for (point, fstype, data) in hierarchies {
        let mounted = fs::create_dir_all(point)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                mount(
                    Some(fstype.as_str()),
                    point.as_str(),
                    Some(fstype.as_str()),
                    safe,
                    data.as_deref(),
                )
                .map_err(|e| format!("{e:?}"))
            });
        if let Err(why) = mounted {
            return Err(format!("{why}, mounting {point}"));
        }
    }
    let points: Vec<&str> = hierarchies.iter().map(|(p, _, _)| p.as_str()).collect();
    Ok(points.join(" "))
}

/// A user namespace of our own, where we are who we were (so our cgroup's files
/// are as much ours as before), with a cgroup namespace rooted at our cgroup and a
/// mount namespace, both owned by it.
fn namespaces_of_my_own() -> Result<(), String> {
    use nix::sched::CloneFlags;
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    nix::sched::unshare(
        CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWCGROUP | CloneFlags::CLONE_NEWNS,
    )
    .map_err(|e| format!("{e:?}"))?;
    for (file, text) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("{uid} {uid} 1")),
        ("/proc/self/gid_map", format!("{gid} {gid} 1")),
    ] {
        fs::write(file, text).map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(())
}

impl Cgroups {
    /// Write `files` (the first that exists gets its value) in the cgroup that holds `controller`.
    fn lift(&self, controller: &str, v2_file: &str, files: &[(&str, &str)]) -> Result<(), String> {
        let (dir, _) = self.dir_for(controller, v2_file)?;
        for (file, value) in files {
            let path = dir.join(file);
            if path.exists() {
                return fs::write(&path, value).map_err(|e| match e.raw_os_error() {
                    Some(n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
                    None => e.to_string(),
                });
            }
        }
        Err("no limit file".into())
    }

    /// v1 keeps memory+swap at least as high as memory alone: lift that first.
    fn lift_memory(&self) -> Result<(), String> {
        let _ = self.lift(
            "memory",
            "memory.max",
            &[("memory.memsw.limit_in_bytes", "-1")],
        );
        self.lift(
            "memory",
            "memory.max",
            &[("memory.max", "max"), ("memory.limit_in_bytes", "-1")],
        )
    }
}

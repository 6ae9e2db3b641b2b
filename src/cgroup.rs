//! How this host lays out its cgroups, read from the kernel's own tables:
//! `/proc/self/mountinfo` says which hierarchies are mounted where (type `cgroup` is
//! v1, one per controller or group of controllers; `cgroup2` is the unified v2
//! hierarchy), and each v2 hierarchy lists its controllers in `cgroup.controllers`.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The layouts a host can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only the unified hierarchy: the common case on current distributions.
    V2,
    /// Only per-controller hierarchies: older distributions.
    V1,
    /// Both: controllers on v1, and a cgroup2 hierarchy (often with none of them).
    Hybrid,
    /// No cgroup filesystem mounted at all.
    None,
}

/// A mounted v1 hierarchy and the controllers bound to it.
#[derive(Debug, Clone)]
pub struct V1Hierarchy {
    pub mount_point: PathBuf,
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub kind: Kind,
    pub v1: Vec<V1Hierarchy>,
    /// Where the cgroup2 hierarchy is mounted, and the controllers it offers.
    pub v2: Option<(PathBuf, Vec<String>)>,
}

/// The v1 controllers the runtime uses; other names in the mount options (rw,
/// relatime, name=systemd, ...) are not controllers we care about.
const KNOWN: [&str; 13] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
];

impl Layout {
    pub fn detect() -> Result<Layout> {
        let table =
            fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in table.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let point = PathBuf::from(fields[4]);
            match fields.get(dash + 1) {
                Some(&"cgroup2") if v2.is_none() => {
                    let listed =
                        fs::read_to_string(point.join("cgroup.controllers")).unwrap_or_default();
                    v2 = Some((point, listed.split_whitespace().map(String::from).collect()));
                }
                Some(&"cgroup") => {
                    let options = fields.get(dash + 3).copied().unwrap_or("");
                    let controllers: Vec<String> = options
                        .split(',')
                        .filter(|o| KNOWN.contains(o))
                        .map(String::from)
                        .collect();
                    if !controllers.is_empty() {
                        v1.push(V1Hierarchy {
                            mount_point: point,
                            controllers,
                        });
                    }
                }
                _ => {}
            }
        }
        let kind = match (v1.is_empty(), v2.is_some()) {
            (true, true) => Kind::V2,
            (false, false) => Kind::V1,
            (false, true) => Kind::Hybrid,
            (true, false) => Kind::None,
        };
        Ok(Layout { kind, v1, v2 })
    }

    /// Where `controller` lives: its v1 hierarchy, or the v2 hierarchy if offered there.
    pub fn place_of(&self, controller: &str) -> Option<String> {
        if let Some(h) = self
            .v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
        {
            return Some(format!("v1 at {}", h.mount_point.display()));
        }
        match &self.v2 {
            Some((point, list)) if list.iter().any(|c| c == controller) => {
                Some(format!("v2 at {}", point.display()))
            }
            _ => None,
        }
    }
}

/// Which cgroup interface a hierarchy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A hierarchy the box joins, and where the runtime itself sits in it.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub version: Version,
    pub mount_point: PathBuf,
    /// v1: the controllers bound to this hierarchy; v2: the controllers the runtime's
    /// own cgroup offers to its children (its `cgroup.controllers`).
    pub controllers: Vec<String>,
    /// The runtime's own cgroup in this hierarchy, as a directory: the mount point
    /// plus the path the kernel gives in /proc/self/cgroup.
    pub own_dir: PathBuf,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The controllers a box's limits use.
pub const BOX_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

impl Layout {
    /// The hierarchies a box joins: each v1 hierarchy that holds one of
    /// [`BOX_CONTROLLERS`], and the v2 hierarchy when it offers one of them too, or
    /// when it is the only hierarchy (a v2 host). A hybrid host's v2 tree usually
    /// offers no controller, and joining it would cost a `cgroup.procs` write, which
    /// can wait milliseconds for an RCU grace period (step 04's `join` says why).
    /// Each hierarchy costs a mkdir, a join and an rmdir, so the box joins no other:
    /// where no cgroup of its counts CPU time, [`Usage::read`] asks the kernel's
    /// count of the runtime's children instead.
    pub fn for_box(&self) -> Result<Vec<Hierarchy>> {
        let membership =
            fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let mut paths: Vec<(Vec<String>, String)> = Vec::new();
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            if let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            {
                let list = controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect();
                paths.push((list, path.to_string()));
            }
        }
        let own = |controllers: &[String]| -> Option<String> {
            paths
                .iter()
                .find(|(list, _)| {
                    if controllers.is_empty() {
                        list.is_empty()
                    } else {
                        list.iter().any(|c| controllers.contains(c))
                    }
                })
                .map(|(_, path)| path.clone())
        };
        let v2 = match &self.v2 {
            Some((point, _)) => own(&[]).map(|path| {
                let own_dir = point.join(path.trim_start_matches('/'));
                let offered =
                    fs::read_to_string(own_dir.join("cgroup.controllers")).unwrap_or_default();
                Hierarchy {
                    version: Version::V2,
                    mount_point: point.clone(),
                    controllers: offered.split_whitespace().map(String::from).collect(),
                    own_dir,
                }
            }),
            None => None,
        }
        .filter(|h| self.v1.is_empty() || BOX_CONTROLLERS.iter().any(|c| h.has(c)));
        let mut found = Vec::new();
        for h in &self.v1 {
            if !h
                .controllers
                .iter()
                .any(|c| BOX_CONTROLLERS.contains(&c.as_str()))
            {
                continue;
            }
            let path = own(&h.controllers).with_context(|| {
                format!(
                    "/proc/self/cgroup has no line for {}",
                    h.controllers.join(",")
                )
            })?;
            found.push(Hierarchy {
                version: Version::V1,
                mount_point: h.mount_point.clone(),
                controllers: h.controllers.clone(),
                own_dir: h.mount_point.join(path.trim_start_matches('/')),
            });
        }
        found.extend(v2);
        Ok(found)
    }
}

/// The name of the cgroup a runtime with this PID creates in each hierarchy.
pub fn box_name(runtime: u32) -> String {
    format!("isolab-{runtime}")
}

/// Remove what earlier runtimes left behind in `dir`: an `isolab-PID` cgroup (or
/// `isolab-PID-runtime` leaf) whose runtime is no longer alive, after killing
/// anything still in it. Only our own names are touched.
pub fn sweep_stale(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(removed);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("isolab-") else {
            continue;
        };
        let Ok(pid) = rest.trim_end_matches("-runtime").parse::<u32>() else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue; // its runtime is still running: not ours to touch
        }
        let path = entry.path();
        kill_all(&path);
        if remove_dir(&path).is_ok() {
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Kill every process in a cgroup: with `cgroup.kill` where the kernel has it (v2,
/// 5.14 and later), else one by one from `cgroup.procs`.
pub fn kill_all(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// rmdir a cgroup. The kernel says EBUSY while processes are left in it: then
/// kill them, and retry for up to a second while they finish exiting.
pub fn remove_dir(dir: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                kill_all(dir);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(e).with_context(|| format!("rmdir({})", dir.display())),
        }
    }
}

/// What the runtime changed to let a v2 box use controllers, so it can be undone.
#[derive(Debug, Default)]
pub struct Delegation {
    /// Controllers we enabled in the parent's `cgroup.subtree_control`.
    pub enabled: Vec<String>,
    /// The leaf cgroup the runtime moved itself into, to empty its own cgroup.
    pub leaf: Option<PathBuf>,
    parent: PathBuf,
    runtime: u32,
}

/// On cgroup v2 a cgroup can use a controller only if its parent lists it in
/// `cgroup.subtree_control`, and a parent (other than the root) may list any only
/// while it holds no process of its own: the "no internal processes" rule. The
/// box's parent is the runtime's own cgroup, which holds the runtime. The way out,
/// as nsjail and the docker-in-docker entry point take it: if the runtime is alone
/// in its cgroup (as under `systemd-run --scope -p Delegate=yes`), it moves itself
/// into a leaf of its own and then enables the controllers. If others share it, the
/// runtime says what to run instead of touching cgroups that are not its own.
pub fn delegate(h: &Hierarchy, needed: &[&str], runtime: u32) -> Result<Delegation> {
    let parent = h.own_dir.clone();
    let mut done = Delegation {
        parent: parent.clone(),
        runtime,
        ..Default::default()
    };
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    if missing.is_empty() {
        return Ok(done);
    }
    if let Some(c) = missing.iter().find(|c| !h.has(c)) {
        anyhow::bail!(
            "cgroup v2: the {c} controller is not offered to this runtime's cgroup {} (not in its cgroup.controllers): leave out the limit that needs it, or run from a cgroup that has it (`cargo run -- doctor` shows the layout)",
            parent.display()
        );
    }
    let plus: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if parent == h.mount_point {
        anyhow::bail!(
            "cgroup v2: the root cgroup does not enable {} for its children: run `echo '{}' > {}`",
            missing.join(", "),
            plus.join(" "),
            parent.join("cgroup.subtree_control").display()
        );
    }
    let procs = fs::read_to_string(parent.join("cgroup.procs"))
        .with_context(|| format!("reading {}", parent.join("cgroup.procs").display()))?;
    let others = procs
        .lines()
        .filter(|l| l.trim() != runtime.to_string())
        .count();
    if others > 0 {
        anyhow::bail!(
            "cgroup v2: this runtime's cgroup {} also holds {others} other process(es), so it cannot hand {} to a child cgroup (the no-internal-processes rule): run the step in a cgroup of its own, `sudo systemd-run --scope -p Delegate=yes --quiet <the same command>`",
            parent.display(),
            missing.join(", ")
        );
    }
    let leaf = parent.join(format!("{}-runtime", box_name(runtime)));
    fs::create_dir(&leaf).with_context(|| format!("mkdir({})", leaf.display()))?;
    done.leaf = Some(leaf.clone());
    fs::write(leaf.join("cgroup.procs"), runtime.to_string())
        .with_context(|| format!("moving the runtime into {}", leaf.display()))?;
    fs::write(parent.join("cgroup.subtree_control"), plus.join(" ")).with_context(|| {
        format!(
            "writing '{}' to {}/cgroup.subtree_control",
            plus.join(" "),
            parent.display()
        )
    })?;
    done.enabled = missing.iter().map(|c| c.to_string()).collect();
    Ok(done)
}

impl Delegation {
    /// Put things back: disable what we enabled, move the runtime back, remove the leaf.
    pub fn undo(&self) -> Result<()> {
        let Some(leaf) = &self.leaf else {
            return Ok(());
        };
        if !self.enabled.is_empty() {
            let minus: Vec<String> = self.enabled.iter().map(|c| format!("-{c}")).collect();
            fs::write(self.parent.join("cgroup.subtree_control"), minus.join(" ")).with_context(
                || {
                    format!(
                        "writing '{}' to {}/cgroup.subtree_control",
                        minus.join(" "),
                        self.parent.display()
                    )
                },
            )?;
        }
        fs::write(self.parent.join("cgroup.procs"), self.runtime.to_string())
            .with_context(|| format!("moving the runtime back to {}", self.parent.display()))?;
        remove_dir(leaf)
    }
}

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
        [
            (
                "memory peak",
                self.memory_peak
                    .map(|b| format!("{} KiB", b / 1024))
                    .unwrap_or_else(unknown),
            ),
            (
                "oom kills",
                self.oom_kills
                    .map(|n| n.to_string())
                    .unwrap_or_else(unknown),
            ),
            ("cpu time", self.cpu_usec.map(ms).unwrap_or_else(unknown)),
            (
                "cpu throttled",
                self.throttled
                    .map(|(n, usec)| format!("{n} times, {}", ms(usec)))
                    .unwrap_or_else(unknown),
            ),
            (
                "forks refused",
                self.forks_refused
                    .map(|n| n.to_string())
                    .unwrap_or_else(unknown),
            ),
        ]
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v2 hierarchy: a mount point with the runtime's own cgroup below it.
    fn fake(procs: &str, subtree: &str) -> (tempfile::TempDir, Hierarchy) {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("user.slice/run-1.scope");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.procs"), procs).unwrap();
        fs::write(own.join("cgroup.subtree_control"), subtree).unwrap();
        let h = Hierarchy {
            version: Version::V2,
            mount_point: root.path().to_path_buf(),
            controllers: vec!["cpu".into(), "memory".into(), "pids".into()],
            own_dir: own,
        };
        (root, h)
    }

    #[test]
    fn a_runtime_alone_in_its_cgroup_moves_into_a_leaf_and_enables_controllers() {
        let (_root, h) = fake("4711\n", "");
        let done = delegate(&h, &["memory", "pids"], 4711).unwrap();
        let leaf = h.own_dir.join("isolab-4711-runtime");
        assert_eq!(done.leaf.as_deref(), Some(leaf.as_path()));
        assert_eq!(
            fs::read_to_string(leaf.join("cgroup.procs")).unwrap(),
            "4711"
        );
        assert_eq!(
            fs::read_to_string(h.own_dir.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        // A real kernel would have moved 4711 out; the fake file still lists it.
        fs::remove_file(leaf.join("cgroup.procs")).unwrap();
        done.undo().unwrap();
        assert_eq!(
            fs::read_to_string(h.own_dir.join("cgroup.subtree_control")).unwrap(),
            "-memory -pids"
        );
        assert_eq!(
            fs::read_to_string(h.own_dir.join("cgroup.procs")).unwrap(),
            "4711"
        );
        assert!(!leaf.exists());
    }

    #[test]
    fn controllers_already_enabled_need_nothing() {
        let (_root, h) = fake("4711\n", "cpu memory pids");
        let done = delegate(&h, &["memory"], 4711).unwrap();
        assert!(done.leaf.is_none() && done.enabled.is_empty());
    }

    #[test]
    fn a_cgroup_shared_with_other_processes_is_refused_with_the_remedy() {
        let (_root, h) = fake("4711\n812\n", "");
        let err = delegate(&h, &["memory"], 4711).unwrap_err().to_string();
        assert!(err.contains("also holds 1 other process"), "{err}");
        assert!(err.contains("systemd-run --scope -p Delegate=yes"), "{err}");
    }

    #[test]
    fn a_controller_not_offered_is_refused() {
        let (_root, mut h) = fake("4711\n", "");
        h.controllers = vec!["pids".into()];
        let err = delegate(&h, &["memory"], 4711).unwrap_err().to_string();
        assert!(
            err.contains("the memory controller is not offered"),
            "{err}"
        );
    }

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

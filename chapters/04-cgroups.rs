//! # Step 04: cgroups, a budget the kernel enforces
//!
//! Step 03's box, plus limits. A control group (cgroup) is a directory in a
//! special filesystem: make one, write limits into its files, move a process in
//! (write to its `cgroup.procs`, or on v1 `tasks`), and that process and all its
//! future children are held to the limits. This step gives the box a cgroup in each
//! hierarchy that holds one of its controllers (cgroup v2, v1, or both on a hybrid
//! host), created under the runtime's own cgroup and named `isolab-<runtime PID>`.
//! init joins it before anything else, so the command is inside from its first
//! instruction. When the box ends, the runtime removes it.
//!
//! The flags are `docker run`'s: `--memory 64m`, `--pids-limit 32`, `--cpus 0.5`.
//! With `--stats`, the runtime prints what the box used (from the cgroups' own
//! counters) when it ends, as `time` does.
//!
//! The box also gets a cgroup namespace and a read-only view of its own cgroups at
//! /sys/fs/cgroup, so the probe sees its limits: a memory hog is OOM-killed, a fork
//! bomb stops at the PID limit, a spinner is throttled.
//!
//! Files: memory.max, pids.max, cpu.max (v2); memory.limit_in_bytes, pids.max,
//! cpu.cfs_quota_us, tasks (v1); cgroup.procs (v2). Syscalls: mkdir(2), write(2),
//! rmdir(2), unshare(2) with CLONE_NEWCGROUP, mount(2) of cgroup filesystems.
//!
//! ```text
//! $ sudo target/debug/04-cgroups --rootfs /tmp/rootfs --memory 64m --stats \
//!       -- /bin/probe memory-hog
//! memory hog: allocating up to 512 MiB, 1 MiB at a time
//! oom kills: 1
//! ```

// Your copy of step 04. Replace each todo!() with your code, then run
// `cargo run -- check 4`. (Generated from solutions/04-cgroups.rs:
// `cargo run -- reset 4` brings this version back.)

use isolab::cli::{Cpus, LimitArgs};
use isolab::container::cgroup::{
    self, Delegation, Hierarchy, Layout, Usage, Version,
};
use isolab::prelude::*;
use isolab::run::Lifeline;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::SigSet;
use std::fs;

// The finished steps this one builds on: step 03's own file, and through it
// 00-02's.
#[path = "../solutions/03-mount-namespace.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod mount_namespace;
use mount_namespace::BoxSpec;
pub use mount_namespace::{chroot, namespaces, process};

/// Step 04: run a command in step 03's box, with memory, PID and CPU limits.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    rootfs: RootfsArg,
    #[command(flatten)]
    hostname: HostnameArg,
    /// Mount the box's root read-only
    #[arg(long)]
    read_only: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// When the box ends, print what it used: peak memory, OOM kills, CPU time,
    /// throttling, refused forks (on stderr)
    #[arg(long)]
    stats: bool,
    /// Print the cgroup files and values the limits become, for v1 and v2, and exit
    #[arg(long)]
    show_limit_files: bool,
    /// Get one thing wrong on purpose, to see what it is for (repeatable)
    #[arg(long = "break", value_name = "MISTAKE", value_enum)]
    mistakes: Vec<Mistake>,
    #[command(flatten)]
    command: CommandArgs,
}

/// The chapter's "break it" experiments, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mistake {
    /// the command joins the box's cgroups just before exec, and init never does
    JoinLate,
    /// leave the box's cgroups behind when it ends
    Cleanup,
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        if args.show_limit_files {
            show_limit_files(&args.limits);
            return Ok(0);
        }
        isolab::run::need_root("unshare(2) of new namespaces")?;
        isolab::container::rootfs::need_root_mount()?;
        let rootfs = args.rootfs.checked()?;
        isolab::container::rootfs::need_mount_points(
            &rootfs,
            &["proc", "dev", "sys"],
        )?;
        let command = args.command.in_rootfs(&rootfs)?;
        let spec = BoxSpec {
            rootfs: &rootfs,
            hostname: &args.hostname.hostname,
            read_only: args.read_only,
            command: &command,
        };
        run(&spec, &args.limits, args.stats, &args.mistakes)
    })
}

// ANCHOR: run
fn run(
    spec: &BoxSpec,
    limits: &LimitArgs,
    stats: bool,
    mistakes: &[Mistake],
) -> Result<i32> {
    let signals = namespaces::waited_signals();
    signals.thread_block().context("sigprocmask(SIG_BLOCK)")?;
    // The box's cgroups exist, limits written, before the box does.
    let mut cgroups = BoxCgroups::create(limits)?;
    let lifeline = Lifeline::new()?;
    unshare(CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
    // SAFETY: this program has no other threads, so the child may run any code.
    let code = match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            lifeline.die_with_parent()?;
            init(spec, &cgroups, &signals, mistakes)
        }),
        ForkResult::Parent { child } => namespaces::supervise(child, &signals)?,
    };
    // init has exited, and with it every process of the box.
    if stats {
        eprint!("{}", Usage::read(&cgroups.paths()).render());
    }
    if mistakes.contains(&Mistake::Cleanup) {
        std::mem::forget(cgroups); // no remove, and no Drop either
        return Ok(code);
    }
    cgroups.remove()?;
    Ok(code)
}
// ANCHOR_END: run

/// PID 1 of the box: into its cgroups first, then step 03's box, with a cgroup
/// namespace and a view of its own cgroups.
fn init(
    spec: &BoxSpec,
    cgroups: &BoxCgroups,
    signals: &SigSet,
    mistakes: &[Mistake],
) -> Result<Infallible> {
    prctl::set_name(c"init").context("prctl(PR_SET_NAME, init)")?;
    let join_late = mistakes.contains(&Mistake::JoinLate);
    // Before anything else: everything init forks from here on is inside.
    if !join_late {
        cgroups.join()?;
    }
    mount_namespace::close_inherited_fds()?;
    // The mistake: open the join files now, by path, and let the command write
    // them.
    let late = if join_late {
        cgroups.join_files()?
    } else {
        Vec::new()
    };
    // A cgroup namespace made now has the box's cgroups as its root: the box sees
    // "/" in /proc/self/cgroup, and nothing above its own cgroup.
    let namespaces = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWCGROUP;
    namespaces::enter_namespaces(namespaces, spec.hostname)?;
    mount_namespace::make_mounts_private()?;
    mount_namespace::pivot_into(spec.rootfs)?;
    mount_namespace::mount_proc()?;
    mount_namespace::mount_dev()?;
    mount_cgroupfs(cgroups)?;
    if spec.read_only {
        mount_namespace::remount_read_only("/")?;
    }
    // SAFETY: init has no other threads either.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            signals
                .thread_unblock()
                .context("sigprocmask(SIG_UNBLOCK)")?;
            for mut file in late {
                std::io::Write::write_all(&mut file, b"0")
                    .context("joining late")?;
            }
            process::exec(spec.command)
        }),
        ForkResult::Parent { child } => {
            std::process::exit(namespaces::supervise(child, signals)?)
        }
    }
}

/// The box's cgroup in one hierarchy: a directory we created.
struct BoxDir {
    version: Version,
    path: PathBuf,
    /// The controllers this hierarchy holds (v1), or offers the box (v2).
    controllers: Vec<String>,
    /// Where the box's processes go, if not `path` itself: a cgroup below it
    /// (step 06, see [`BoxCgroups::create_nested`]).
    leaf: Option<PathBuf>,
}

/// The box's cgroups, one per hierarchy, and what we changed to get them.
pub struct BoxCgroups {
    dirs: Vec<BoxDir>,
    delegation: Option<Delegation>,
}

impl BoxCgroups {
    /// Make the box's cgroup in every hierarchy, under the runtime's own cgroup,
    /// and write the limits into the hierarchy that holds each controller.
    pub fn create(limits: &LimitArgs) -> Result<BoxCgroups> {
        let hierarchies = Layout::detect()?.for_box()?;
        need_controllers(&hierarchies, limits)?;
        let name = cgroup::box_name(std::process::id());
        let mut cgroups = BoxCgroups {
            dirs: Vec::new(),
            delegation: None,
        };
        for h in &hierarchies {
            // A runtime killed with SIGKILL could not remove its cgroups: do it
            // now.
            cgroup::sweep_stale(&h.own_dir)?;
            if h.version == Version::V2 {
                let needed: Vec<&str> = needed_controllers(limits)
                    .into_iter()
                    .filter(|c| h.has(c))
                    .collect();
                cgroups.delegation =
                    Some(cgroup::delegate(h, &needed, std::process::id())?);
            }
            let path = h.own_dir.join(&name);
            fs::create_dir(&path)
                .with_context(|| format!("mkdir({})", path.display()))?;
            let dir = BoxDir {
                version: h.version,
                path,
                controllers: h.controllers.clone(),
                leaf: None,
            };
            cgroups.dirs.push(dir);
            write_limits(cgroups.dirs.last().expect("just pushed"), limits)?;
        }
        Ok(cgroups)
    }

    /// The box's cgroups as [`create`](BoxCgroups::create) makes them, with the box
    /// one level further down, in a cgroup `box` of each, which holds the same
    /// limits. A box sees only its own cgroup and below, even through a cgroup
    /// namespace and filesystem it makes itself; a box that may write its own limit
    /// files (step 06's, whose root owns them) may raise the limits there, but not
    /// the ones above it, which still hold.
    pub fn create_nested(limits: &LimitArgs) -> Result<BoxCgroups> {
        let mut cgroups = BoxCgroups::create(limits)?;
        for dir in &mut cgroups.dirs {
            if dir.version == Version::V2 {
                // A v2 cgroup has the controllers its parent's subtree_control
                // hands down: hand the leaf all of its parent's that a box uses.
                let path = dir.path.join("cgroup.controllers");
                let has = fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let plus: Vec<String> = has
                    .split_whitespace()
                    .filter(|c| cgroup::BOX_CONTROLLERS.contains(c))
                    .map(|c| format!("+{c}"))
                    .collect();
                if !plus.is_empty() {
                    let control = dir.path.join("cgroup.subtree_control");
                    fs::write(&control, plus.join(" ")).with_context(|| {
                        format!("write({}, {})", plus.join(" "), control.display())
                    })?;
                }
            }
            let leaf = BoxDir {
                version: dir.version,
                path: dir.path.join("box"),
                controllers: dir.controllers.clone(),
                leaf: None,
            };
            fs::create_dir(&leaf.path)
                .with_context(|| format!("mkdir({})", leaf.path.display()))?;
            dir.leaf = Some(leaf.path.clone());
            write_limits(&leaf, limits)?;
        }
        Ok(cgroups)
    }

    /// No cgroups at all: a box without limits (step 06, where none was delegated
    /// to its user).
    pub fn none() -> BoxCgroups {
        BoxCgroups {
            dirs: Vec::new(),
            delegation: None,
        }
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Put the calling process into the box's cgroup in every hierarchy.
    pub fn join(&self) -> Result<()> {
        // ANCHOR: join
        // TODO: For each directory in self.dirs, write "0" (the kernel reads it as
        //       "the one writing this") into the file that moves a process in: on
        //       v2 its cgroup.procs; on v1 its `tasks`, which moves just the
        //       calling thread (init has only one) without the global lock that
        //       cgroup.procs takes. Children inherit their parent's cgroups, so all
        //       that init forks later is inside too.
        todo!(
            "step 04, `join`: not written yet. Read the TODO above this line in \
             chapters/04-cgroups.rs, or run `cargo run -- hint 4`"
        );
        // ANCHOR_END: join
    }

    /// For `--break join-late`: the files `join` writes, opened now (by path,
    /// before the pivot hides the host's cgroup tree), for the command to write
    /// later.
    fn join_files(&self) -> Result<Vec<fs::File>> {
        let open = |dir: &BoxDir| {
            let path = dir.path.join(match dir.version {
                Version::V1 => "tasks",
                Version::V2 => "cgroup.procs",
            });
            let file = fs::OpenOptions::new().write(true).open(&path);
            file.with_context(|| format!("open({}, O_WRONLY)", path.display()))
        };
        self.dirs.iter().map(open).collect()
    }

    /// Kill whatever is left in the box's cgroups, remove them, and undo any
    /// delegation. What is removed is forgotten, so a second call does nothing.
    pub fn remove(&mut self) -> Result<()> {
        while let Some(dir) = self.dirs.pop() {
            cgroup::remove_dir(&dir.path)?;
        }
        if let Some(delegation) = self.delegation.take() {
            delegation.undo()?;
        }
        Ok(())
    }
}

/// A runtime that fails halfway still removes what it created.
impl Drop for BoxCgroups {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            let me = isolab::run::program_name();
            eprintln!("{me}: warning: cleaning up the box's cgroups: {e:#}");
        }
    }
}

/// The controllers these limits need.
fn needed_controllers(limits: &LimitArgs) -> Vec<&'static str> {
    let mut needed = Vec::new();
    if limits.memory.is_some() {
        needed.push("memory");
    }
    if limits.pids_limit.is_some() {
        needed.push("pids");
    }
    if limits.cpus.is_some() {
        needed.push("cpu");
    }
    needed
}

/// Fail with one line if a limit needs a controller no hierarchy offers.
fn need_controllers(hierarchies: &[Hierarchy], limits: &LimitArgs) -> Result<()> {
    for controller in needed_controllers(limits) {
        if !hierarchies.iter().any(|h| h.has(controller)) {
            bail!(
                "this host has no {controller} controller for the box's cgroup (see `cargo run -- doctor`): leave out the limit that needs it"
            );
        }
    }
    Ok(())
}

/// The limit files for a cgroup of this `version`, and what to write in each, for
/// the limits that were asked for, in the order to write them.
fn limit_files(
    version: Version,
    limits: &LimitArgs,
) -> Vec<(&'static str, String)> {
    // ANCHOR: limit_files
    // TODO: Return (file name, contents) for each limit that is Some, in this
    //       order: v2: "memory.max" = bytes, "pids.max" = n, "cpu.max" = "QUOTA
    //       PERIOD" (in us); v1: "memory.limit_in_bytes" = bytes, "pids.max" = n,
    //       "cpu.cfs_period_us" = period, then "cpu.cfs_quota_us" = quota. Limits
    //       are plain decimal numbers. limits.memory and limits.pids_limit are
    //       Option<u64>; limits.cpus is Option<Cpus>, and a Cpus has quota_us and
    //       period_us.
    todo!(
        "step 04, `limit_files`: not written yet. Read the TODO above this line in \
         chapters/04-cgroups.rs, or run `cargo run -- hint 4`"
    );
    // ANCHOR_END: limit_files
}

/// Write the limits that belong to this directory's hierarchy.
fn write_limits(dir: &BoxDir, limits: &LimitArgs) -> Result<()> {
    for (file, value) in limit_files(dir.version, limits) {
        let controller = file.split('.').next().unwrap_or_default();
        if !dir.controllers.iter().any(|c| c == controller) {
            continue; // another hierarchy holds this controller
        }
        let path = dir.path.join(file);
        fs::write(&path, &value)
            .with_context(|| format!("write({value}, {})", path.display()))?;
    }
    // No swap either: a box over its memory limit must be killed, not paged out.
    if let Some(bytes) = limits.memory {
        for (file, value) in [
            ("memory.swap.max", "0".to_string()),
            ("memory.memsw.limit_in_bytes", bytes.to_string()),
        ] {
            let path = dir.path.join(file);
            if path.exists() {
                fs::write(&path, &value).with_context(|| {
                    format!("write({value}, {})", path.display())
                })?;
            }
        }
    }
    Ok(())
}

/// Let the box read its own cgroups at /sys/fs/cgroup, read-only, as docker does:
/// inside the cgroup namespace, each hierarchy's root is the box's own cgroup.
pub fn mount_cgroupfs(cgroups: &BoxCgroups) -> Result<()> {
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mount_at =
        |source: &str, target: &str, fstype: &str, data: Option<&str>| {
            // The cgroup filesystems themselves read-only; the tmpfs that holds
            // their mount points is made read-only once they are in place.
            let flags = if fstype == "tmpfs" {
                safe
            } else {
                safe | MsFlags::MS_RDONLY
            };
            fs::create_dir_all(target)
                .with_context(|| format!("mkdir -p {target}"))?;
            mount(Some(source), target, Some(fstype), flags, data).with_context(
                || format!("mount({source}, {target}, {fstype}, {data:?})"),
            )
        };
    mount_at("tmpfs", "/sys", "tmpfs", Some("mode=755,size=16k"))?;
    let v1: Vec<&BoxDir> = cgroups
        .dirs
        .iter()
        .filter(|d| d.version == Version::V1)
        .collect();
    if v1.is_empty() {
        mount_at("cgroup2", "/sys/fs/cgroup", "cgroup2", None)?;
    } else {
        mount_at(
            "tmpfs",
            "/sys/fs/cgroup",
            "tmpfs",
            Some("mode=755,size=16k"),
        )?;
        for dir in v1 {
            let controllers = dir.controllers.join(",");
            mount_at(
                "cgroup",
                &format!("/sys/fs/cgroup/{controllers}"),
                "cgroup",
                Some(&controllers),
            )?;
        }
        if cgroups.dirs.iter().any(|d| d.version == Version::V2) {
            mount_at("cgroup2", "/sys/fs/cgroup/unified", "cgroup2", None)?;
        }
        mount_namespace::remount_read_only("/sys/fs/cgroup")?;
    }
    mount_namespace::remount_read_only("/sys")
}

/// What `--show-limit-files` prints: the lesson in one table.
fn show_limit_files(limits: &LimitArgs) {
    for (version, name) in [(Version::V2, "v2"), (Version::V1, "v1")] {
        println!("cgroup {name}:");
        let files = limit_files(version, limits);
        if files.is_empty() {
            println!("  (no limits given: nothing to write)");
        }
        for (file, value) in files {
            println!("  {file:<22} {value}");
        }
    }
}

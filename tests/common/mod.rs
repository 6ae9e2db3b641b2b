//! The harness every step's test file shares.
//!
//! - `step("01-chroot")` is the binary under test: the reference
//!   (`01-chroot-solution`) by default, the learner's (`01-chroot`, built from
//!   chapters/) when `ISOLAB_CHECK=chapters`.
//! - `Lab::new()` builds a fresh rootfs around the probe and a host canary, in
//!   temporary directories that are removed when the lab is dropped, and starts
//!   `probe hold-key`: a key of the caller's, in a session that no box is started
//!   from, whose serial the probe gets with `--key-serial` (`lab.key_arg()`).
//! - `needs!(root)` / `needs!(kvm)` return early from a test that this machine cannot
//!   run, with one line saying why and what to do; with `ISOLAB_NO_SKIP=1` (CI) the
//!   test fails instead, so CI never passes by skipping.
//! - Every run checks afterwards that it left nothing behind: the host's mount table
//!   is unchanged and no process runs from the rootfs.
#![allow(dead_code)]

use isolab::container::canary::{Canary, KeyHolder};
/// The keys of every `key: value` output the tests read: the probe's report, its
/// `raise-limits` and timer lines, and a runtime's `--stats`.
#[allow(unused_imports)]
pub use isolab::container::cgroup::Stat;
#[allow(unused_imports)]
pub use isolab::workshop::report::{Key, Raise, Report};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where cargo put the binaries of this package (the probe, the references) and of
/// the chapters package.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_probe"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

pub fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_probe"))
}

/// Are we checking the learner's chapters rather than the references?
pub fn checking_chapters() -> bool {
    isolab::workshop::env::checking_chapters()
}

/// The binary under test for step `name` (e.g. "01-chroot").
pub fn step(name: &str) -> PathBuf {
    if !checking_chapters() {
        return target_dir().join(format!("{name}-solution"));
    }
    static BUILT: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if !isolab::workshop::env::prebuilt() && !built.iter().any(|b| b == name) {
        build_chapter(name);
        built.push(name.to_string());
    }
    target_dir().join(name)
}

/// Build the learner's binary for one step, and only that one, so that another
/// unfinished chapter cannot get in the way.
pub fn build_chapter(name: &str) {
    build_chapters(&[name]);
}

/// Build several steps' binaries with one cargo: cargo's own start (reading the
/// workspace, checking every dependency's freshness) is paid once, not per step.
pub fn build_chapters<S: AsRef<str>>(names: &[S]) {
    if names.is_empty() {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--package", "isolab-chapters"]);
    for name in names {
        cmd.args(["--bin", name.as_ref()]);
    }
    let out = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo build");
    let names: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
    assert!(
        out.status.success(),
        "chapters/{} does not compile yet:\n{}",
        names.join(".rs, chapters/") + ".rs",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why a test cannot run here, and what to do about it.
pub fn missing(requirement: &str) -> Option<String> {
    match requirement {
        "root" if !nix::unistd::geteuid().is_root() => Some(
            "needs root: `cargo run -- check N` runs step N's tests through sudo (and builds as you)".into(),
        ),
        // The same one line, with the same remedy, as the KVM steps print.
        "kvm" => isolab::vm::open(Path::new("/dev/kvm"))
            .err()
            .map(|e| format!("needs /dev/kvm: {e:#}")),
        // The Linux guest (tests/linux_guest.rs): QEMU, a kernel, and a static
        // busybox for its init; each missing piece says the one command that fixes it.
        "guest" => isolab::vm::linux::qemu::find()
            .and_then(|_| isolab::vm::linux::kernel::find())
            .err()
            .map(|e| format!("needs the Linux guest: {e:#}"))
            .or_else(|| {
                isolab::container::rootfs::find_static_busybox().is_none().then(|| {
                    "needs the Linux guest's busybox: apt-get install busybox-static".into()
                })
            }),
        // A normal user for the rootless step: ourselves, or the one CI names.
        "user" => normal_user().err(),
        // A shell for the box (the rootfs builder copies the host's static busybox).
        "busybox" => isolab::container::rootfs::find_static_busybox()
            .is_none()
            .then(|| "needs a static busybox on the host: apt-get install busybox-static".into()),
        // Another user than the tests' own, who has no range in /etc/subuid.
        "nobody" if !nix::unistd::geteuid().is_root() => Some(
            "needs root (to run it as user 65534), or to be run by a user without a range".into(),
        ),
        // The kernel lets a normal user make a user namespace.
        "userns" => userns_refused(),
        // --map-range: newuidmap and a range in /etc/subuid for the user.
        "subuid" => normal_user().ok().and_then(|user| {
            let tools = ["/usr/bin/newuidmap", "/usr/bin/newgidmap"];
            if !tools.iter().all(|t| Path::new(t).exists()) {
                return Some("needs newuidmap and newgidmap: apt-get install uidmap".into());
            }
            let name = user.name.clone();
            let range = |file: &str| {
                isolab::container::subid::range_for(Path::new(file), &name, user.uid, 65535)
            };
            range("/etc/subuid")
                .and_then(|_| range("/etc/subgid"))
                .err()
                .map(|e| format!("needs a range of IDs for {name}: {e}"))
        }),
        _ => None,
    }
}

/// A normal user (not root) that runs the rootless step.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Is it someone else, whom this (root) process must become to run the step?
    pub other: bool,
}

/// Ourselves when we are not root; as root, the user ISOLAB_TEST_USER names.
pub fn normal_user() -> Result<User, String> {
    let me = nix::unistd::geteuid();
    let var = isolab::workshop::env::TEST_USER;
    let (user, other) = if me.is_root() {
        let Ok(name) = std::env::var(var) else {
            return Err(format!(
                "needs a normal user to run as: run the tests as one, or as root set {var} to one's name (.ci/run makes isolab-test with `useradd`)"
            ));
        };
        match nix::unistd::User::from_name(&name) {
            Ok(Some(u)) if !u.uid.is_root() => (u, true),
            _ => {
                return Err(format!(
                    "{var}={name}: no such normal user: `useradd -m {name}`"
                ));
            }
        }
    } else {
        match nix::unistd::User::from_uid(me) {
            Ok(Some(u)) => (u, false),
            _ => return Err(format!("uid {me} has no entry in /etc/passwd")),
        }
    };
    Ok(User {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        other,
    })
}

/// Why a normal user may not make a user namespace here, if they may not.
fn userns_refused() -> Option<String> {
    let setting = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if !Path::new("/proc/self/ns/user").exists() {
        return Some("needs a kernel with user namespaces (CONFIG_USER_NS)".into());
    }
    if setting("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("needs user namespaces: sysctl -w user.max_user_namespaces=15000".into());
    }
    if setting("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some(
            "needs unprivileged user namespaces: sysctl -w kernel.unprivileged_userns_clone=1"
                .into(),
        );
    }
    None
}

/// A rootfs and a copy of a step's binary that `user` owns, in a directory every
/// user may enter (under target/ if each directory above it lets others in, else
/// /var/tmp), a host canary that stays root's, and a key of the user's, held in a
/// session of theirs that no box is started from. Removed when dropped.
pub struct UserLab {
    dir: tempfile::TempDir,
    pub user: User,
    pub canary: Canary,
    key: Option<KeyHolder>,
}

impl UserLab {
    pub fn new(user: &User) -> UserLab {
        use std::os::unix::fs::PermissionsExt;
        let here = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let open_to_all = here
            .ancestors()
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
        let parent = if open_to_all || !user.other {
            here
        } else {
            Path::new("/var/tmp")
        };
        let dir = tempfile::Builder::new()
            .prefix("isolab-user-test-")
            .tempdir_in(parent)
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 755 the lab");
        isolab::container::rootfs::build(&dir.path().join("rootfs"), &probe())
            .expect("building the rootfs");
        let mut lab = UserLab {
            dir,
            user: user.clone(),
            canary: Canary::create().expect("creating the canary"),
            key: None,
        };
        if user.other {
            lab.give_to_user(lab.dir.path());
        }
        let mut holder = Command::new(lab.runnable(probe()));
        if user.other {
            use std::os::unix::process::CommandExt;
            holder.uid(user.uid).gid(user.gid);
        }
        lab.key = Some(KeyHolder::start(holder).expect("starting probe hold-key"));
        lab
    }

    /// The serial of the user's key, for the probe's `--key-serial`.
    pub fn key_arg(&self) -> String {
        serial_arg(self.key.as_ref().expect("started in UserLab::new"))
    }

    /// Make everything under `path` the user's, as if they had made it.
    pub fn give_to_user(&self, path: &Path) {
        let (uid, gid) = (Some(self.user.uid), Some(self.user.gid));
        let mut pending = vec![path.to_path_buf()];
        while let Some(p) = pending.pop() {
            std::os::unix::fs::lchown(&p, uid, gid)
                .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
            if p.is_dir() && !p.is_symlink() {
                for entry in std::fs::read_dir(&p).expect("read_dir").flatten() {
                    pending.push(entry.path());
                }
            }
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn canary_arg(&self) -> String {
        self.canary.path().display().to_string()
    }

    /// The step's binary as the user runs it: a copy of theirs in the lab when the
    /// user is someone else (the build's own may sit where they cannot reach).
    pub fn step(&self, name: &str) -> PathBuf {
        self.runnable(step(name))
    }

    /// `built` as the user runs it (see [`UserLab::step`]).
    pub fn runnable(&self, built: PathBuf) -> PathBuf {
        if !self.user.other {
            return built;
        }
        let copy = self
            .dir
            .path()
            .join(built.file_name().expect("a file name"));
        if !copy.exists() {
            // By cp, not std::fs::copy: a descriptor open for writing here would be
            // inherited by whatever another test thread forks meanwhile, and the
            // kernel refuses to run a file open for writing anywhere (ETXTBSY).
            let status = Command::new("cp")
                .arg("--")
                .args([&built, &copy])
                .status()
                .expect("running cp");
            assert!(
                status.success(),
                "cp {} {}",
                built.display(),
                copy.display()
            );
            self.give_to_user(&copy);
        }
        copy
    }

    /// `command` for `bin`, run as the user.
    pub fn command<S: AsRef<OsStr>>(&self, bin: &Path, args: &[S], leak: Option<&Path>) -> Command {
        let mut cmd = command(bin, args, leak);
        if self.user.other {
            use std::os::unix::process::CommandExt;
            cmd.uid(self.user.uid).gid(self.user.gid);
        }
        cmd
    }

    /// The step's arguments: `--rootfs` this lab's rootfs, `flags`, `--`, `command`.
    pub fn args(&self, flags: &[&str], command: &[&str]) -> Vec<String> {
        let mut args = vec!["--rootfs".to_string(), self.rootfs().display().to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        args.push("--".into());
        args.extend(command.iter().map(|s| s.to_string()));
        args
    }
}

/// Say on the terminal that a test was skipped and why. Written to stderr
/// directly, not with eprintln!, which the test harness captures and would show
/// only for a failing test.
pub fn say_skipped(why: &str) {
    use std::io::Write;
    let name = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(
        std::io::stderr(),
        "skipped {}: {name} {why}",
        env!("CARGO_CRATE_NAME")
    );
}

/// What a test does when this machine lacks what it needs. Normally it says so in
/// one line and returns. It fails instead under ISOLAB_NO_SKIP=1 (CI), and when
/// checking a learner's step: a check that could not run has not passed.
pub fn skip(why: &str) {
    if isolab::workshop::env::no_skip() {
        panic!("ISOLAB_NO_SKIP is set and this test {why}");
    }
    if checking_chapters() {
        panic!("this check cannot run here: it {why}");
    }
    say_skipped(why);
}

/// Can a test compare its step with something beyond it here: with a root box of
/// an earlier step, or as another user? `requirement` is one [`missing`] knows. If
/// not, the comparison is left out, and one line says which and why: under
/// ISOLAB_NO_SKIP (CI) the test fails instead, but a learner's check passes without
/// it, and `cargo run -- check N` lists it. For step 06, whose learner may have no
/// root at all: what it needs of the step itself is checked as that learner.
pub fn can_compare(requirement: &str, what: &str) -> bool {
    let Some(why) = missing(requirement) else {
        return true;
    };
    // Not the remedy `missing` gives a root step's test: this one is the step's
    // own, and sudo is no part of it.
    let why = if requirement == "root" {
        "needs root".to_string()
    } else {
        why
    };
    if isolab::workshop::env::no_skip() {
        panic!("ISOLAB_NO_SKIP is set and this test's comparison ({what}) {why}");
    }
    use std::io::Write;
    let name = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(
        std::io::stderr(),
        "{} {}: {name}: {what}: it {why}",
        isolab::workshop::env::LEFT_OUT,
        env!("CARGO_CRATE_NAME")
    );
    false
}

/// Return early from a test whose whole point is a comparison this machine cannot
/// make (see [`can_compare`]).
#[macro_export]
macro_rules! compares {
    ($req:ident, $what:expr) => {
        if !$crate::common::can_compare(stringify!($req), $what) {
            return;
        }
    };
}

/// Return early from a test this machine cannot run (see [`skip`]).
#[macro_export]
macro_rules! needs {
    ($($req:ident),+) => {
        $(
            if let Some(why) = $crate::common::missing(stringify!($req)) {
                $crate::common::skip(&why);
                return;
            }
        )+
    };
}

/// A fresh rootfs and a host canary, removed when dropped, and a key of the
/// caller's (this process's user), held until then.
pub struct Lab {
    dir: tempfile::TempDir,
    pub canary: Canary,
    key: KeyHolder,
}

impl Lab {
    pub fn new() -> Lab {
        // Under target/, not /tmp: a tmpfs /tmp is often mounted nosuid, which would
        // change what the probe's setuid check can show.
        let dir = tempfile::Builder::new()
            .prefix("isolab-test-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        isolab::container::rootfs::build(&dir.path().join("rootfs"), &probe())
            .expect("building the rootfs");
        Lab {
            dir,
            canary: Canary::create().expect("creating the canary"),
            key: KeyHolder::start(Command::new(probe())).expect("starting probe hold-key"),
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn canary_arg(&self) -> String {
        self.canary.path().display().to_string()
    }

    /// The serial of the caller's key, for the probe's `--key-serial`.
    pub fn key_arg(&self) -> String {
        serial_arg(&self.key)
    }
}

/// A key's serial for `--key-serial`: 0 on a kernel without keyrings, where every
/// key call says so whatever its serial.
fn serial_arg(key: &KeyHolder) -> String {
    key.serial().unwrap_or(0).to_string()
}

/// Does the lab's rootfs have busybox (the host had a static one)? If not, the
/// test that wants a shell skips (or fails under ISOLAB_NO_SKIP: CI installs it).
pub fn has_busybox(lab: &Lab) -> bool {
    let found = lab.rootfs().join("bin/busybox").exists();
    if !found {
        skip("needs a static busybox on the host: apt-get install busybox-static");
    }
    found
}

/// A container step's arguments: `--rootfs` the lab's rootfs, then `flags`, then
/// `--` and the command to run in the box.
pub fn box_args(lab: &Lab, flags: &[&str], command: &[&str]) -> Vec<String> {
    let mut args = vec!["--rootfs".to_string(), lab.rootfs().display().to_string()];
    args.extend(flags.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.extend(command.iter().map(|s| s.to_string()));
    args
}

/// What a finished run gave back.
#[derive(Debug)]
pub struct Run {
    /// The PID of the process we started (the runtime).
    pub pid: u32,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The learner's skeleton stops at its first todo!(): say so plainly.
    fn explain_todo(&self, bin: &Path) {
        let name = bin.file_name().unwrap_or_default().to_string_lossy();
        if let Some(line) = self
            .stderr
            .lines()
            .find(|l| l.contains("not yet implemented"))
        {
            panic!(
                "{name} stopped at a todo!() (exit code {:?}):\n  {}\nFill it in, then check again.",
                self.code,
                line.trim()
            );
        }
    }
}

/// A command for `bin` that inherits only stdin, stdout and stderr, and with `leak`
/// set also fd 3 on that host directory. Its environment is PATH and the canary
/// variable, the same on every machine, so reports do not depend on the caller's,
/// and it starts in a session keyring of its own that holds the canary key.
pub fn command<S: AsRef<OsStr>>(bin: &Path, args: &[S], leak: Option<&Path>) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            isolab::container::canary::ENV,
            isolab::container::canary::ENV_VALUE,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isolab::run::std_fds_only(&mut cmd, leak).expect("setting up descriptors");
    isolab::container::canary::in_a_session_keyring(&mut cmd);
    cmd
}

/// Run `bin` with a terminal of its own, as a shell would start it (or `script`
/// does): a new session whose controlling terminal is a fresh pseudo-terminal, on its
/// stdin, stdout and stderr. `dialogue` is what a person at that terminal does: for
/// each pair, wait until the terminal shows the first text, then type the second.
/// What the terminal showed comes back as stdout, with the terminal's `\r\n` as `\n`.
pub fn run_in_terminal<S: AsRef<OsStr>>(bin: &Path, args: &[S], dialogue: &[(&str, &str)]) -> Run {
    run_command_in_terminal(command(bin, args, None), dialogue)
}

/// [`run_in_terminal`] for a command made already (by a `UserLab`, say).
pub fn run_command_in_terminal(cmd: Command, dialogue: &[(&str, &str)]) -> Run {
    run_command_on_terminal(cmd, dialogue, &[0, 1, 2])
}

/// [`run_command_in_terminal`] with only `fds` (some of 0, 1 and 2, in order) on the
/// terminal, as `cmd | less` or `cmd > file` from a shell has; the others stay what
/// `cmd` says (set them: a pipe nobody reads fills up).
pub fn run_command_on_terminal(mut cmd: Command, dialogue: &[(&str, &str)], fds: &[i32]) -> Run {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex};
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = || Stdio::from(pty.slave.try_clone().expect("dup pty slave"));
    for fd in fds {
        match fd {
            0 => cmd.stdin(slave()),
            1 => cmd.stdout(slave()),
            _ => cmd.stderr(slave()),
        };
    }
    let first = fds[0];
    // SAFETY: between fork and exec the closure only calls setsid and ioctl, which are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(first, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mounts = mount_table();
    let mut child = cmd.spawn().expect("starting the step in a terminal");
    drop(cmd); // its copies of the slave
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut keyboard = master.try_clone().expect("dup pty master");
    let shown = Arc::new(Mutex::new(Vec::new()));
    let (done, ended) = std::sync::mpsc::channel();
    let reader = {
        let shown = Arc::clone(&shown);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            // Reading ends with EIO once no process holds the slave any more.
            while let Ok(n) = master.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
            let _ = done.send(());
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    for (wait, typed) in dialogue {
        loop {
            let text = String::from_utf8_lossy(&shown.lock().unwrap()[seen..]).into_owned();
            if let Some(at) = text.find(wait) {
                seen += at + wait.len();
                break;
            }
            if let Some(status) = child.try_wait().ok().flatten() {
                // Everything it wrote is in by the time the terminal closes.
                let _ = ended.recv_timeout(Duration::from_secs(5));
                let all = String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
                panic!(
                    "the step ended ({status}) before the terminal showed {wait:?}; it showed:\n{all}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {wait:?}; it showed:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        keyboard
            .write_all(typed.as_bytes())
            .expect("typing into the terminal");
    }
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the step") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill(); // and its box with it (the lifeline)
            panic!("the step did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    ended
        .recv_timeout(Duration::from_secs(5))
        .expect("the terminal is still held open after the step ended: by what?");
    let _ = reader.join();
    use std::os::unix::process::ExitStatusExt;
    let text = String::from_utf8_lossy(&shown.lock().unwrap()).replace("\r\n", "\n");
    let run = Run {
        pid: child.id(),
        code: status.code().or_else(|| status.signal().map(|s| 128 + s)),
        stdout: text,
        stderr: String::new(),
    };
    assert_eq!(
        mount_table(),
        mounts,
        "the run changed the host's mount table"
    );
    run
}

/// Run `bin` with `args` to the end (at most 60 s), then check it left nothing behind.
pub fn run<S: AsRef<OsStr>>(bin: &Path, args: &[S]) -> Run {
    run_with(command(bin, args, None))
}

/// Run a prepared command to the end, then check it left nothing behind.
pub fn run_with(mut cmd: Command) -> Run {
    let bin = PathBuf::from(cmd.get_program());
    let mounts = mount_table();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let pid = child.id();
    let out = wait_output(child, Duration::from_secs(60));
    let run = Run {
        pid,
        code: out.0.code().or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            out.0.signal().map(|s| 128 + s)
        }),
        stdout: out.1,
        stderr: out.2,
    };
    run.explain_todo(&bin);
    assert_eq!(
        mount_table(),
        mounts,
        "the run changed the host's mount table"
    );
    run
}

fn wait_output(mut child: Child, limit: Duration) -> (ExitStatus, String, String) {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the step") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the step did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        status,
        out_reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default(),
    )
}

/// A step started in the background, for signal tests: `wait_for_line` reads its
/// stdout until a line appears.
pub struct Running {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    pub seen: Vec<String>,
    mounts: String,
    bin: PathBuf,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        use std::io::Read;
        let mounts = mount_table();
        let bin = PathBuf::from(cmd.get_program());
        let mut child = cmd.spawn().expect("starting the step");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            stderr,
            seen: Vec::new(),
            mounts,
            bin,
        }
    }

    /// Read stdout until `wanted`; fail (with the step's stderr) if it ends first.
    pub fn wait_for_line(&mut self, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let found = line == wanted;
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        let _ = self.child.kill();
        let status = self.child.wait().ok().and_then(|s| s.code());
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        let run = Run {
            pid: self.child.id(),
            code: status,
            stdout: self.seen.join("\n"),
            stderr: stderr.join().unwrap_or_default(),
        };
        run.explain_todo(&self.bin);
        panic!(
            "no line {wanted:?} from the step; stdout {:?}; stderr {:?}",
            self.seen, run.stderr
        );
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("kill(runtime)");
    }

    /// Wait for the end; returns the exit code (128+N for signal N) and the rest of stdout.
    pub fn finish(mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the step did not end within 20 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        assert_eq!(
            mount_table(),
            self.mounts,
            "the run changed the host's mount table"
        );
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .expect("status");
        (code, self.seen)
    }
}

/// The host's mount table as this test process sees it, without the fields that
/// change when nothing really changed (none today: mount IDs are stable).
pub fn mount_table() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo")
}

/// Processes whose executable lies inside `rootfs`: the box's, if any outlived it.
pub fn processes_from(rootfs: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe.starts_with(rootfs) {
            found.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                exe.display()
            ));
        }
    }
    found
}

/// The children of process `pid`, from the host's /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces, so split after its ')'.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid)
            && let Ok(child) = entry.file_name().to_string_lossy().parse()
        {
            found.push(child);
        }
    }
    found
}

/// The PID namespace of the box a runtime started (its init's), as the host names
/// it (`pid:[INODE]`). After a pivot_root the box's executables no longer show
/// their host paths in /proc/PID/exe, so this is how the host finds the box.
/// A normal user may not read the link of an init that is not dumpable (step 06's):
/// then it is read from init's child, the command, which is.
pub fn box_pid_namespace(runtime: u32) -> String {
    let init = children_of(runtime);
    assert_eq!(init.len(), 1, "the runtime {runtime} has one child, init");
    let link = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid"));
    let found = link(init[0]).or_else(|e| match children_of(init[0]).first() {
        Some(&command) if e.kind() == std::io::ErrorKind::PermissionDenied => link(command),
        _ => Err(e),
    });
    found
        .expect("readlink /proc/INIT/ns/pid")
        .display()
        .to_string()
}

/// Wait up to 2 s for every process in PID namespace `ns` to be gone.
pub fn assert_no_process_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path().join("ns/pid"))
                    .is_ok_and(|l| l.display().to_string() == ns)
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the box outlived it: {left:?} in {ns}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait up to 2 s for every process from `rootfs` to be gone.
pub fn assert_no_process_from(rootfs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = processes_from(rootfs);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the box outlived it: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A runtime's error: non-zero exit, exactly one line on stderr, naming the program
/// and containing `text`.
pub fn assert_one_line_error(run: &Run, code: i32, text: &str) {
    assert_eq!(run.code, Some(code), "exit code; stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "want one line on stderr, got: {:?}",
        run.stderr
    );
    assert!(
        lines[0].contains(": error: "),
        "no `NAME: error:` prefix: {}",
        lines[0]
    );
    assert!(
        lines[0].contains(text),
        "stderr {:?} does not say {text:?}",
        lines[0]
    );
    assert!(
        !run.stderr.contains("panicked"),
        "it panicked: {}",
        run.stderr
    );
}

/// Snapshot filters for values that belong to the host, not the box: each replaces
/// the whole value of one report line. Steps pass the keys that are host noise for
/// them; everything else stays literal.
pub fn host_filters(keys: &[&str]) -> Vec<(String, String)> {
    keys.iter()
        .map(|key| {
            let pattern = format!(r"(?m)^{}: .*$", regex_escape(key));
            (pattern, format!("{key}: [the host's]"))
        })
        .collect()
}

/// A filter for a line whose value starts with a count that is the host's (how
/// many processes the host runs): only the number is replaced.
pub fn count_filter(key: &str) -> (String, String) {
    (
        format!(r"(?m)^{}: \d+ ", regex_escape(key)),
        format!("{key}: [N] "),
    )
}

/// Filters that apply in every step: the kernel's release, whether the machine is
/// bare metal or a VM (and whose), the count of
/// capabilities root has (which a sandboxed host may trim), and whether the host's
/// kernel was built with modules and vsock at all: where a call is not refused, a
/// kernel without the feature answers "impossible" and one with it "allowed".
pub fn common_filters() -> Vec<(String, String)> {
    vec![
        (r"(?m)^(kernel: Linux) \S+".into(), "$1 [release]".into()),
        (
            r"(?m)^machine: (bare metal|a virtual machine).*$".into(),
            "machine: [bare metal, or a VM and whose]".into(),
        ),
        (
            r"all \d+ that root has on this host".into(),
            "all [N] that root has on this host".into(),
        ),
        (
            r"(?m)^(load a module|vsock socket): (allowed|impossible).*$".into(),
            "$1: [not refused: allowed, or impossible in this kernel]".into(),
        ),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$/".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Snapshot `text` as tests/snapshots/STEP__NAME.snap (STEP is the test file's
/// name, e.g. `chroot__report.snap`), with the given filters.
pub fn snapshot(name: &str, text: &str, filters: Vec<(String, String)>) {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in filters.iter().chain(common_filters().iter()) {
        settings.add_filter(pattern, replacement.as_str());
    }
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(format!("{}: {name}", env!("CARGO_CRATE_NAME")));
    let name = format!("{}__{name}", env!("CARGO_CRATE_NAME"));
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// A KVM step run with `--repeat 200`: 200 VMs one after another in one process
/// leave its open fds and memory mappings as they were, and its resident memory
/// within 1 MiB (steps 07 and 08).
pub fn assert_many_vms_leave_nothing_behind(bin: &Path) {
    let run = run(bin, &["--repeat", "200"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let (first, last) = isolab::vm::repeat::Footprint::parse_repeat_line(&run.stdout)
        .unwrap_or_else(|| panic!("no `ran 200 VMs` line in:\n{}", run.stdout));
    assert_eq!(last.fds, first.fds, "open fds grew: {}", run.stdout);
    assert_eq!(
        last.mappings, first.mappings,
        "mappings grew: {}",
        run.stdout
    );
    assert!(
        last.rss_kib < first.rss_kib + 1024,
        "resident memory grew by more than 1 MiB: {}",
        run.stdout
    );
}

/// A KVM step pointed at a device that does not exist says so in one line, with
/// what to do (steps 07 and 08).
pub fn assert_a_missing_device_is_one_line(bin: &Path) {
    let run = run(bin, &["--device", "/nonexistent/kvm"]);
    assert_one_line_error(
        &run,
        125,
        "cannot open /nonexistent/kvm: no such device: enable virtualization",
    );
}

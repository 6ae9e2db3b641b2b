//! The command-line pieces every step shares: `--rootfs DIR` and `-- COMMAND [ARGS]`,
//! each checked before anything is forked, so bad input is one clear line.

use crate::run::Command;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The command to run in the box, after `--`.
#[derive(Args, Debug, Clone)]
pub struct CommandArgs {
    /// The command to run and its arguments, after `--` (for example `-- /bin/probe`)
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// The directory that becomes the box's root.
#[derive(Args, Debug, Clone)]
pub struct RootfsArg {
    /// The directory that becomes the box's root (make one with `cargo run -- rootfs DIR`)
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
}

/// The box's hostname.
#[derive(Args, Debug, Clone)]
pub struct HostnameArg {
    /// The hostname inside the box (1 to 64 bytes, the kernel's limit)
    #[arg(long, value_name = "NAME", default_value = "isolab", value_parser = hostname)]
    pub hostname: String,
}

/// A hostname the kernel will take: sethostname(2) refuses more than 64 bytes
/// (HOST_NAME_MAX), and an empty one would only confuse.
fn hostname(name: &str) -> std::result::Result<String, String> {
    if name.is_empty() {
        return Err("the hostname is empty: give one, e.g. --hostname box1".into());
    }
    if name.len() > 64 {
        return Err(format!(
            "the hostname is {} bytes long: the kernel allows at most 64",
            name.len()
        ));
    }
    Ok(name.to_string())
}

/// Parse a step's arguments. `--help` and `--version` print as usual; any other
/// mistake is one line and exit code 2, instead of clap's usage block.
pub fn parse<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                err.exit();
            }
            let message = match err.kind() {
                ErrorKind::MissingRequiredArgument if err.to_string().contains("<COMMAND>") => {
                    "no command given: put it after `--`, for example `-- /bin/probe`".to_string()
                }
                _ => one_line(&err.to_string()),
            };
            eprintln!(
                "{}: error: {message} (see --help)",
                crate::run::program_name()
            );
            std::process::exit(2);
        }
    }
}

/// clap's message without its `error:` prefix, usage block and advice, on one line.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

impl RootfsArg {
    /// The rootfs as an absolute path, once we know it is a directory.
    pub fn checked(&self) -> Result<PathBuf> {
        let dir = &self.rootfs;
        let meta = match std::fs::metadata(dir) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                "rootfs {} does not exist: make one with `cargo run -- rootfs {}`",
                dir.display(),
                dir.display()
            ),
            Err(err) => return Err(err).with_context(|| format!("stat({})", dir.display())),
        };
        if !meta.is_dir() {
            bail!(
                "rootfs {} is not a directory: give a directory that holds the box's files",
                dir.display()
            );
        }
        dir.canonicalize()
            .with_context(|| format!("realpath({})", dir.display()))
    }
}

const BOX_PATH: [&str; 4] = ["/bin", "/sbin", "/usr/bin", "/usr/sbin"];

impl CommandArgs {
    /// The command as the host sees it (step 00 has no rootfs): searched on `$PATH`.
    pub fn on_host(&self) -> Result<Command> {
        let name = &self.command[0];
        let path = if name.as_bytes().contains(&b'/') {
            PathBuf::from(name)
        } else {
            let dirs = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
            std::env::split_paths(&dirs)
                .map(|dir| dir.join(name))
                .find(|p| is_executable(p))
                .with_context(|| {
                    format!("command `{}` not found on $PATH", name.to_string_lossy())
                })?
        };
        check_executable(&path, &path, None)?;
        self.command_at(&path)
    }

    /// The command as the box will see it: looked up inside `rootfs` (following
    /// symlinks inside it, never out of it), so a missing command is reported here,
    /// before anything is forked, rather than as a failed exec inside the box.
    pub fn in_rootfs(&self, rootfs: &Path) -> Result<Command> {
        let name = &self.command[0];
        let candidates: Vec<PathBuf> = if name.as_bytes().contains(&b'/') {
            vec![Path::new("/").join(name)]
        } else {
            BOX_PATH.iter().map(|d| Path::new(d).join(name)).collect()
        };
        for inside in &candidates {
            if let Some(host) = resolve_within(rootfs, inside)? {
                check_executable(&host, inside, Some(rootfs))?;
                return self.command_at(inside);
            }
        }
        let looked = candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>();
        bail!(
            "command `{}` is not in the rootfs {} (looked for {}): copy it in, or run one that is there, such as /bin/probe",
            name.to_string_lossy(),
            rootfs.display(),
            looked.join(", ")
        )
    }

    fn command_at(&self, path: &Path) -> Result<Command> {
        let cstring = |s: &OsStr| {
            CString::new(s.as_bytes())
                .with_context(|| format!("argument {:?} contains a NUL byte", s))
        };
        Ok(Command {
            path: cstring(path.as_os_str())?,
            argv: self
                .command
                .iter()
                .map(|a| cstring(a))
                .collect::<Result<_>>()?,
        })
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn check_executable(host: &Path, shown: &Path, rootfs: Option<&Path>) -> Result<()> {
    let place = rootfs
        .map(|r| format!(" in the rootfs {}", r.display()))
        .unwrap_or_default();
    let meta = std::fs::metadata(host)
        .with_context(|| format!("command {}{place} does not exist", shown.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        bail!(
            "command {}{place} is not an executable file",
            shown.display()
        );
    }
    Ok(())
}

/// Where `inside` (an absolute path as the box sees it) is on the host, following
/// symlinks as the kernel would once `root` is `/`: an absolute link target starts
/// again at `root`, and `..` never climbs above it. `None` when it does not exist.
pub fn resolve_within(root: &Path, inside: &Path) -> Result<Option<PathBuf>> {
    let mut pending: Vec<PathBuf> = inside
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut current = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            Some(Component::RootDir) | Some(Component::CurDir) | None => continue,
            Some(Component::ParentDir) => {
                current.pop();
                continue;
            }
            _ => {}
        }
        let next = current.join(&part);
        let host = root.join(&next);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("lstat({})", host.display())),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                bail!(
                    "too many symlinks resolving {} in {}",
                    inside.display(),
                    root.display()
                );
            }
            let target = std::fs::read_link(&host)
                .with_context(|| format!("readlink({})", host.display()))?;
            if target.is_absolute() {
                current = PathBuf::new();
            }
            for c in target.components().rev() {
                pending.push(PathBuf::from(c.as_os_str()));
            }
        } else {
            current = next;
        }
    }
    Ok(Some(root.join(current)))
}

/// The box's budget, with the flags `docker run` uses, so habits carry over. Each
/// is off unless given.
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Memory limit: a number with b, k, m or g, e.g. 64m (at least 4m)
    #[arg(long, value_name = "SIZE", value_parser = memory_size, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// Most processes and threads the box may have at once, e.g. 32
    #[arg(long, value_name = "N", value_parser = pids_limit, allow_hyphen_values = true)]
    pub pids_limit: Option<u64>,
    /// CPU time the box may use, in CPUs: 0.5 is half of one CPU
    #[arg(long, value_name = "CPUS", value_parser = cpus, allow_hyphen_values = true)]
    pub cpus: Option<Cpus>,
}

/// A CPU quota: `quota_us` of CPU time in every `period_us` of wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus {
    pub quota_us: u64,
    pub period_us: u64,
}

/// The CFS period docker uses: quotas are fractions of 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The most tasks any pids limit can name: the kernel's PID_MAX_LIMIT.
pub const PID_MAX_LIMIT: u64 = 4_194_304;

/// Sizes like `64m`, `1g`, `512k`, `1048576` or `1048576b`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let s = text.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => {
            return Err(format!(
                "{text} is not a size: use a number with b, k, m or g, e.g. 64m"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text} is not a size: use a number with b, k, m or g, e.g. 64m"))?;
    n.checked_mul(1 << shift)
        .filter(|bytes| *bytes <= i64::MAX as u64)
        .ok_or_else(|| format!("{text} is more than a cgroup can express (at most 8 EiB)"))
}

fn memory_size(text: &str) -> std::result::Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < 4 << 20 {
        return Err(format!(
            "{text} is too little memory for a box to start: give at least 4m"
        ));
    }
    Ok(bytes)
}

fn pids_limit(text: &str) -> std::result::Result<u64, String> {
    let n: u64 = text.trim().parse().map_err(|_| {
        format!("{text} is not a number of processes: give a whole number from 1, e.g. 32")
    })?;
    match n {
        0 => Err("0 processes would not even let the box start: give at least 1".into()),
        n if n > PID_MAX_LIMIT => Err(format!(
            "{n} is more than the kernel allows ({PID_MAX_LIMIT})"
        )),
        n => Ok(n),
    }
}

fn cpus(text: &str) -> std::result::Result<Cpus, String> {
    let n: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| format!("{text} is not a number of CPUs: give one like 0.5 or 2"))?;
    let online = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    if n < 0.01 {
        return Err(format!("{text} CPUs is too little: give at least 0.01"));
    }
    if n > online {
        return Err(format!(
            "{text} CPUs is more than this machine has ({online})"
        ));
    }
    Ok(Cpus {
        quota_us: (n * CPU_PERIOD_US as f64).round() as u64,
        period_us: CPU_PERIOD_US,
    })
}

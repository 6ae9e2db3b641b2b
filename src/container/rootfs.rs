//! Building a minimal root filesystem: the probe and the shared libraries it links to,
//! a static busybox with its applets when the host has one, and the directories and
//! files a box expects (`/proc`, `/dev`, `/sys`, `/tmp`, `/etc/hostname`, `/etc/passwd`).
//!
//! ```text
//! ROOTFS/
//! ├── bin/probe          the instrument (and busybox + applet links, if the host has it)
//! ├── lib/               libc.so.6 and friends, found by asking the dynamic loader
//! ├── lib64/ld-linux-x86-64.so.2   the loader named in the probe's ELF header
//! ├── etc/{hostname,passwd,group}
//! └── dev/ proc/ sys/ tmp/         empty mount points
//! ```

use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the host's static busybox usually is (Debian's `busybox-static`).
pub const BUSYBOX_CANDIDATES: [&str; 3] = ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"];

/// What a build put into the rootfs.
#[derive(Debug)]
pub struct Built {
    pub libraries: Vec<PathBuf>,
    pub busybox: Option<PathBuf>,
}

/// One thing in a rootfs, at a path relative to its top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        path: PathBuf,
        mode: u32,
    },
    /// A copy of the host file `from`, with its permissions.
    Copy {
        path: PathBuf,
        from: PathBuf,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    File {
        path: PathBuf,
        contents: Vec<u8>,
    },
}

impl Entry {
    pub fn path(&self) -> &Path {
        match self {
            Entry::Dir { path, .. }
            | Entry::Copy { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::File { path, .. } => path,
        }
    }
}

/// The rootfs builder's output before it is written anywhere: its entries in the
/// order to create them (parents first). [`build`] writes them into a directory;
/// the Linux guest writes them into its initramfs (`crate::vm::linux::initramfs`).
#[derive(Debug)]
pub struct Plan {
    pub entries: Vec<Entry>,
    /// The host libraries the probe needs (the loader not included).
    pub libraries: Vec<PathBuf>,
    /// The host's static busybox, when there is one.
    pub busybox: Option<PathBuf>,
}

/// What a rootfs around the `probe` executable holds. Busybox is added when the
/// host has a static one.
pub fn plan(probe: &Path) -> Result<Plan> {
    let mut entries: Vec<Entry> = [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("lib", 0o755),
        ("lib64", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("tmp", 0o1777),
    ]
    .into_iter()
    .map(|(path, mode)| Entry::Dir {
        path: path.into(),
        mode,
    })
    .collect();
    entries.push(Entry::Copy {
        path: "bin/probe".into(),
        from: probe.to_path_buf(),
    });
    let (libraries, mut needed) = libraries(probe)?;
    entries.append(&mut needed);
    let busybox = find_static_busybox();
    if let Some(busybox) = &busybox {
        add_busybox(busybox, &mut entries)?;
    }
    for (path, contents) in [
        ("etc/hostname", "isolab\n"),
        (
            "etc/passwd",
            "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        entries.push(Entry::File {
            path: path.into(),
            contents: contents.into(),
        });
    }
    Ok(Plan {
        entries,
        libraries,
        busybox,
    })
}

/// Build a rootfs in `dir` (created if missing; must be empty) around the `probe`
/// executable. Busybox is added when the host has a static one.
pub fn build(dir: &Path, probe: &Path) -> Result<Built> {
    fs::create_dir_all(dir).with_context(|| format!("mkdir -p {}", dir.display()))?;
    if fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty: it may be a rootfs already (use it as it is), or remove it (rm -rf) and build again",
            dir.display()
        );
    }
    let plan = plan(probe)?;
    for entry in &plan.entries {
        write(entry, dir)?;
    }
    Ok(Built {
        libraries: plan.libraries,
        busybox: plan.busybox,
    })
}

/// Create one entry under `root`.
fn write(entry: &Entry, root: &Path) -> Result<()> {
    let to = root.join(entry.path());
    match entry {
        Entry::Dir { mode, .. } => {
            fs::create_dir(&to).with_context(|| format!("mkdir {}", to.display()))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(*mode))
                .with_context(|| format!("chmod {mode:o} {}", to.display()))?;
        }
        Entry::Copy { from, .. } => {
            fs::copy(from, &to)
                .with_context(|| format!("cp {} {}", from.display(), to.display()))?;
        }
        Entry::Symlink { target, .. } => {
            symlink(target, &to)
                .with_context(|| format!("ln -s {} {}", target.display(), to.display()))?;
        }
        Entry::File { contents, .. } => {
            fs::write(&to, contents).with_context(|| format!("writing {}", to.display()))?;
        }
    }
    Ok(())
}

/// What `exe` needs to start: the dynamic loader (at the path the ELF header
/// names) and every shared library the loader resolves for it (in `/lib`, where
/// the probe's run path points), as entries. Also returns the libraries' host paths.
pub fn libraries(exe: &Path) -> Result<(Vec<PathBuf>, Vec<Entry>)> {
    let Some(interp) = elf_interpreter(exe)? else {
        return Ok((Vec::new(), Vec::new())); // a static executable needs nothing
    };
    let mut entries = vec![Entry::Copy {
        path: interp.strip_prefix("/").unwrap_or(&interp).to_path_buf(),
        from: interp.clone(),
    }];
    // `ld.so --list` is what ldd runs: the loader resolves the libraries exactly as
    // it would at start-up and prints `name => /path (address)` for each.
    let out = Command::new(&interp)
        .arg("--list")
        .arg(exe)
        .output()
        .with_context(|| format!("{} --list {}", interp.display(), exe.display()))?;
    if !out.status.success() {
        bail!(
            "{} --list {} failed: {}",
            interp.display(),
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut libraries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((_, rest)) = line.split_once("=> ") else {
            continue;
        };
        let Some(path) = rest.split_whitespace().next() else {
            continue;
        };
        let path = PathBuf::from(path);
        if path == interp || !path.is_absolute() {
            continue;
        }
        let name = path
            .file_name()
            .context("library path without a file name")?;
        entries.push(Entry::Copy {
            path: Path::new("lib").join(name),
            from: path.clone(),
        });
        libraries.push(path);
    }
    Ok((libraries, entries))
}

/// The program interpreter (PT_INTERP) named in a 64-bit little-endian ELF file, or
/// `None` for a static executable.
pub fn elf_interpreter(exe: &Path) -> Result<Option<PathBuf>> {
    let bytes = fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    let bad = || anyhow::anyhow!("{} is not a 64-bit little-endian ELF file", exe.display());
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    let phoff = u64_at(0x20).ok_or_else(bad)?;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = bytes.get(ph..ph + 4).ok_or_else(bad)?;
        if p_type == [3, 0, 0, 0] {
            // PT_INTERP: p_offset at +8, p_filesz at +32; a NUL-terminated path.
            let (off, size) = (
                u64_at(ph + 8).ok_or_else(bad)?,
                u64_at(ph + 32).ok_or_else(bad)?,
            );
            let raw = bytes.get(off..off + size).ok_or_else(bad)?;
            let path = raw.split(|b| *b == 0).next().unwrap_or_default();
            return Ok(Some(PathBuf::from(
                String::from_utf8_lossy(path).into_owned(),
            )));
        }
    }
    Ok(None)
}

/// The host's busybox, if it is statically linked (a dynamic one would need its
/// libraries too, and Debian's `busybox-static` is one package away).
pub fn find_static_busybox() -> Option<PathBuf> {
    BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file() && matches!(elf_interpreter(p), Ok(None)))
}

fn add_busybox(busybox: &Path, entries: &mut Vec<Entry>) -> Result<()> {
    entries.push(Entry::Copy {
        path: "bin/busybox".into(),
        from: busybox.to_path_buf(),
    });
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("{} --list", busybox.display()))?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let link = Path::new("bin").join(applet);
        if applet.is_empty() || applet.contains('/') || entries.iter().any(|e| e.path() == link) {
            continue;
        }
        entries.push(Entry::Symlink {
            path: link,
            target: "busybox".into(),
        });
    }
    Ok(())
}

/// Fail with one line unless `rootfs` has each of `dirs` as a directory to mount
/// on. The runtime never creates them: the rootfs is the user's, and the box must
/// not change it.
pub fn need_mount_points(rootfs: &Path, dirs: &[&str]) -> Result<()> {
    for dir in dirs {
        let path = rootfs.join(dir);
        // Not followed: a symlink there would move the box's /proc, /dev or /sys
        // somewhere else in the rootfs (or over its root), wherever it points.
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => bail!(
                "the rootfs's /{dir} is a symlink ({} -> {}): a mount point must be a real directory; replace it with `rm {0} && mkdir {0}`",
                path.display(),
                fs::read_link(&path).unwrap_or_default().display()
            ),
            _ => bail!(
                "the rootfs {} has no /{dir} directory to mount on: create it with `mkdir {}`",
                rootfs.display(),
                path.display()
            ),
        }
    }
    Ok(())
}

/// Fail with one line unless "/" is a mount point in our mount namespace. Making
/// "/" private and pivot_root(2) both need that, and it is not so when the runtime
/// itself runs inside a chroot (or on a machine still in its initial ramfs).
pub fn need_root_mount() -> Result<()> {
    let table = fs::read_to_string("/proc/self/mountinfo").context(
        "reading /proc/self/mountinfo: mount /proc, or run the runtime from the host's own root, not from inside a chroot",
    )?;
    if table.lines().any(|l| l.split(' ').nth(4) == Some("/")) {
        return Ok(());
    }
    bail!(
        "\"/\" is not a mount point here, so its mounts cannot be made private nor the root pivoted: is this runtime itself inside a chroot? Run it from the host's own root"
    )
}

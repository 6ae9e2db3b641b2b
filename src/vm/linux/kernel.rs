//! The guest's kernel: Debian's cloud kernel, a real distribution kernel small
//! enough to fetch in a second (about 26 MB, of which the kernel image is 14 MB).
//!
//! [`fetch`] asks apt which versioned package `linux-image-cloud-amd64` depends on,
//! downloads that package with `apt-get download` (no install, no root, no
//! initramfs tools) and unpacks it with `dpkg -x`, keeping only the kernel image
//! and its config in the cache directory: `$XDG_CACHE_HOME/isolab/kernel`, or
//! `~/.cache/isolab/kernel`. [`find`] takes `ISOLAB_KERNEL` when it is set, else
//! the newest image in that cache (run through sudo, it also looks in the cache of
//! the user who ran sudo).

use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian metapackage that always depends on the current cloud kernel.
pub const PACKAGE: &str = "linux-image-cloud-amd64";
/// The environment variable that points at a kernel image to use instead.
pub const ENV: &str = "ISOLAB_KERNEL";
/// The one command that fills the cache.
pub const FETCH: &str = "cargo run -- guest-kernel";

/// A kernel image to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub path: PathBuf,
    /// What `uname -r` will say in the guest, read from the image's header.
    pub release: String,
}

/// The cache directory of the user running this: `$XDG_CACHE_HOME/isolab/kernel`,
/// else `$HOME/.cache/isolab/kernel`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => bail!(
                "neither XDG_CACHE_HOME nor HOME is set, so there is no cache directory for the guest kernel: set {ENV}=/path/to/vmlinuz"
            ),
        },
    };
    Ok(base.join("isolab/kernel"))
}

/// Where [`find`] looks: our cache, and under sudo also the invoking user's, where
/// `cargo run -- guest-kernel` (run as that user) put the kernel.
fn cache_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = cache_dir().into_iter().collect();
    if let Some(user) = std::env::var_os("SUDO_USER")
        && let Ok(Some(user)) = nix::unistd::User::from_name(&user.to_string_lossy())
    {
        let theirs = user.dir.join(".cache/isolab/kernel");
        if !dirs.contains(&theirs) {
            dirs.push(theirs);
        }
    }
    dirs
}

/// The kernel to boot: `ISOLAB_KERNEL` if set, else the newest in the cache.
/// Missing, it is one line that says the one command that fetches it.
pub fn find() -> Result<Kernel> {
    if let Some(path) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        let release = release_of(&path).with_context(|| format!("{ENV}={}", path.display()))?;
        return Ok(Kernel { path, release });
    }
    let dirs = cache_dirs();
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for dir in &dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with("vmlinuz-") {
                continue;
            }
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                newest = Some((modified, entry.path()));
            }
        }
    }
    let Some((_, path)) = newest else {
        let shown = dirs
            .first()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "the cache".into());
        bail!("no guest kernel in {shown}: run `{FETCH}` (or set {ENV}=/path/to/vmlinuz)");
    };
    let release = release_of(&path)?;
    Ok(Kernel { path, release })
}

/// The release of an x86 kernel image (bzImage), from its setup header: the
/// header's magic `HdrS` is at 0x202, and the 16-bit field at 0x20E, plus 0x200,
/// is where the version string starts ("6.1.0-57-cloud-amd64 (debian-kernel@...) #1 ...").
pub fn release_of(image: &Path) -> Result<String> {
    use std::io::Read;
    let mut head = vec![0; 0x8000];
    let mut file = fs::File::open(image).with_context(|| format!("open({})", image.display()))?;
    let n = file
        .read(&mut head)
        .with_context(|| format!("read({})", image.display()))?;
    head.truncate(n);
    let not_a_kernel = || {
        anyhow::anyhow!(
            "{} is not an x86 Linux kernel image (bzImage, like /boot/vmlinuz-*)",
            image.display()
        )
    };
    if head.get(0x202..0x206) != Some(b"HdrS") {
        return Err(not_a_kernel());
    }
    let offset = u16::from_le_bytes([head[0x20E], head[0x20F]]) as usize + 0x200;
    let text = head.get(offset..).ok_or_else(not_a_kernel)?;
    let end = text.iter().position(|b| *b == 0).ok_or_else(not_a_kernel)?;
    let version = String::from_utf8_lossy(&text[..end]);
    version
        .split_whitespace()
        .next()
        .map(String::from)
        .ok_or_else(not_a_kernel)
}

/// Fill the cache with the current cloud kernel, unless it is there already.
/// Returns the kernel, and whether it was downloaded now.
pub fn fetch() -> Result<(Kernel, bool)> {
    if std::env::consts::ARCH != "x86_64" {
        bail!(
            "the guest kernel is Debian's {PACKAGE}, for x86-64, and this machine is {}",
            std::env::consts::ARCH
        );
    }
    for tool in ["apt-cache", "apt-get", "dpkg"] {
        if which(tool).is_none() {
            bail!(
                "fetching the guest kernel needs Debian's {tool} (Debian, Ubuntu): elsewhere, get an x86-64 kernel image (bzImage) and set {ENV}=/path/to/vmlinuz"
            );
        }
    }
    let package = versioned_package()?;
    let release = package.strip_prefix("linux-image-").unwrap_or(&package);
    let dir = cache_dir()?;
    let image = dir.join(format!("vmlinuz-{release}"));
    if image.is_file() {
        let release = release_of(&image)?;
        return Ok((
            Kernel {
                path: image,
                release,
            },
            false,
        ));
    }
    fs::create_dir_all(&dir).with_context(|| format!("mkdir -p {}", dir.display()))?;
    // Download and unpack next to the cache, and move only the two files we keep
    // into it, so that the cache never holds half a kernel.
    let work = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&dir)
        .with_context(|| format!("creating a directory in {}", dir.display()))?;
    run(
        Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(work.path()),
        &format!("apt-get download {package}"),
    )?;
    let deb = fs::read_dir(work.path())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb file"))?;
    let unpacked = work.path().join("unpacked");
    run(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked),
        &format!("dpkg -x {}", deb.display()),
    )?;
    let boot = unpacked.join("boot");
    for name in [format!("config-{release}"), format!("vmlinuz-{release}")] {
        let from = boot.join(&name);
        let to = dir.join(&name);
        fs::rename(&from, &to)
            .with_context(|| format!("mv {} {}", from.display(), to.display()))?;
    }
    let release = release_of(&image)?;
    Ok((
        Kernel {
            path: image,
            release,
        },
        true,
    ))
}

/// `linux-image-6.1.0-57-cloud-amd64`: the package the metapackage depends on, as
/// apt's lists say. When apt knows no such package, root updates the lists once;
/// anyone else is told to.
fn versioned_package() -> Result<String> {
    let ask = || {
        Command::new("apt-cache")
            .args(["show", "--no-all-versions", PACKAGE])
            .output()
            .context("running apt-cache show")
    };
    let mut out = ask()?;
    if !out.status.success() && nix::unistd::geteuid().is_root() {
        run(
            Command::new("apt-get").args(["update", "-qq"]),
            "apt-get update",
        )?;
        out = ask()?;
    }
    if !out.status.success() {
        bail!(
            "apt does not know {PACKAGE}: run `sudo apt-get update`, then `{FETCH}` again (Debian has this package; on Ubuntu set {ENV}=/path/to/vmlinuz instead)"
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let depends = text
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .with_context(|| format!("apt-cache show {PACKAGE} gives no Depends: line"))?;
    // "linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)"
    depends
        .split([',', ' '])
        .find(|p| p.starts_with("linux-image-"))
        .map(String::from)
        .with_context(|| format!("{PACKAGE} depends on no linux-image package: {depends}"))
}

/// Run a command to the end; on failure, one line with what it said.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said
            .lines()
            .rfind(|l| !l.trim().is_empty() && !l.starts_with("W: "))
            .unwrap_or("no message");
        bail!("{what} failed ({}): {}", out.status, said.trim());
    }
    Ok(())
}

/// A program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_comes_from_the_setup_header() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("vmlinuz");
        let mut bytes = vec![0u8; 0x1000];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        // kernel_version = 0x300 - 0x200
        bytes[0x20E..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let version = b"6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        bytes[0x300..0x300 + version.len()].copy_from_slice(version);
        fs::write(&image, &bytes).unwrap();
        assert_eq!(release_of(&image).unwrap(), "6.1.0-57-cloud-amd64");
    }

    #[test]
    fn anything_else_is_not_a_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("notes.txt");
        fs::write(&image, "hello").unwrap();
        let err = release_of(&image).unwrap_err().to_string();
        assert!(err.contains("is not an x86 Linux kernel image"), "{err}");
    }
}

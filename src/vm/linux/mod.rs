//! # A real Linux kernel in the lab
//!
//! Steps 07-08's guests are a few hundred bytes of our own. This boots a real
//! one: Debian's cloud kernel ([`kernel`]) under QEMU ([`qemu`]), from an
//! initramfs ([`initramfs`], written by [`cpio`]) that holds the rootfs builder's
//! output, the step binaries asked for, a list of shell commands, and our init
//! (`init.sh`). Init moves into a tmpfs, mounts proc, sysfs, devtmpfs and a pure
//! cgroup v2 hierarchy with memory, pids and cpu handed down, runs the commands one
//! by one, prints their output between markers ([`console`]), and powers off.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use isolab::vm::linux::{Guest, run};
//! let mut guest = Guest::new("target/debug/probe".into());
//! guest.binaries.push("target/debug/04-cgroups-solution".into());
//! guest.commands.push("04-cgroups-solution --rootfs /rootfs --memory 32m -- /bin/probe".into());
//! let ran = run(&guest)?;
//! println!("{ran}"); // QEMU, emulated: Linux 6.1.0-57-cloud-amd64, init up 2.9 s after QEMU started
//! print!("{}", ran.outputs[0].stdout);
//! # Ok(()) }
//! ```

pub mod console;
pub mod cpio;
pub mod initramfs;
pub mod kernel;
pub mod qemu;

pub use console::Output;
pub use kernel::Kernel;
pub use qemu::Accel;

use anyhow::{Context, Result, bail};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The variable that chooses the accelerator: `auto` (the default), `tcg` or `kvm`.
pub const ACCEL_ENV: &str = "ISOLAB_GUEST_ACCEL";

/// The kernel's command line: the console on the serial port; notices and worse
/// on it, so the first line (the kernel's banner) comes early and a failed boot
/// says why; and a reboot, which QEMU turns into its exit, on a panic.
pub const APPEND: &str = "console=ttyS0 loglevel=6 panic=-1";

/// What to boot and what to run in it.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The probe, for the rootfs builder.
    pub probe: PathBuf,
    /// Executables to put in /isolab/bin, on the guest's PATH by their file names.
    pub binaries: Vec<PathBuf>,
    /// Shell scripts, run in order by init, each from "/" with stdin empty. The
    /// rootfs builder's output is also at /rootfs, for a container step's --rootfs.
    pub commands: Vec<String>,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The whole run, boot included, after which QEMU is killed.
    pub timeout: Duration,
}

impl Guest {
    /// A guest of 512 MiB and one CPU, with two minutes to do everything.
    pub fn new(probe: PathBuf) -> Guest {
        Guest {
            probe,
            binaries: Vec::new(),
            commands: Vec::new(),
            memory_mib: 512,
            cpus: 1,
            timeout: Duration::from_secs(120),
        }
    }
}

/// What a boot gave back.
#[derive(Debug)]
pub struct GuestRun {
    /// Which accelerator ran the guest: "QEMU, emulated" or "QEMU, KVM".
    pub accel: Accel,
    /// Why it is not KVM, when KVM was tried first and given up.
    pub accel_note: Option<String>,
    pub kernel: Kernel,
    /// `uname -r` in the guest.
    pub release: String,
    /// From QEMU's start to init's first line.
    pub boot: Duration,
    /// From QEMU's start to its end.
    pub wall: Duration,
    /// One per command, in order.
    pub outputs: Vec<Output>,
    /// Init's other lines: `cgroup2 controllers`, `cgroup2 subtree_control`, ...
    pub facts: Vec<(String, String)>,
    /// The whole serial console, kernel lines included.
    pub console: String,
}

impl GuestRun {
    /// The rest of init's line that starts with `key`.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for GuestRun {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: Linux {}, init up {:.1} s after QEMU started",
            self.accel,
            self.release,
            self.boot.as_secs_f64()
        )?;
        if let Some(note) = &self.accel_note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// Which accelerators to try, from `ISOLAB_GUEST_ACCEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when /dev/kvm opens and the kernel speaks within
    /// [`qemu::KVM_FIRST_LINE`], else emulated.
    Auto,
    Emulated,
    Kvm,
}

impl AccelChoice {
    pub fn from_env() -> Result<AccelChoice> {
        match std::env::var(ACCEL_ENV).as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(AccelChoice::Auto),
            Ok("tcg") => Ok(AccelChoice::Emulated),
            Ok("kvm") => Ok(AccelChoice::Kvm),
            Ok(other) => bail!("{ACCEL_ENV}={other}: give auto, tcg or kvm"),
        }
    }
}

/// Boot the guest, run its commands, and power it off. Nothing is left behind,
/// whatever happens: see [`qemu`] and [`initramfs`].
pub fn run(guest: &Guest) -> Result<GuestRun> {
    let choice = AccelChoice::from_env()?;
    let qemu = qemu::find()?;
    let kernel = kernel::find()?;
    let kvm_opens = crate::vm::open(Path::new("/dev/kvm"));
    let kvm_opens_ok = kvm_opens.is_ok();
    let tries: Vec<Accel> = match choice {
        AccelChoice::Emulated => vec![Accel::Emulated],
        AccelChoice::Kvm => {
            kvm_opens.with_context(|| format!("{ACCEL_ENV}=kvm"))?;
            vec![Accel::Kvm]
        }
        AccelChoice::Auto if kvm_opens.is_ok() && kvm_too_slow(&kernel) => {
            vec![Accel::Emulated]
        }
        AccelChoice::Auto if kvm_opens.is_ok() => vec![Accel::Kvm, Accel::Emulated],
        AccelChoice::Auto => vec![Accel::Emulated],
    };
    let initramfs = initramfs::build(&guest.probe, &guest.binaries, &guest.commands)?;
    let machine = qemu::Machine {
        qemu: &qemu,
        kernel: &kernel.path,
        initramfs: &initramfs,
        append: APPEND,
        memory_mib: guest.memory_mib,
        cpus: guest.cpus,
    };
    let remembered = choice == AccelChoice::Auto && kvm_opens_ok && tries == [Accel::Emulated];
    let mut note = remembered.then(|| {
        "emulated: an earlier boot of this kernel on this host found KVM too slow for it \
             (delete ~/.cache/isolab/kernel/kvm-too-slow to try KVM again)"
            .to_string()
    });
    for accel in &tries {
        let limits = qemu::Limits {
            total: guest.timeout,
            first_line: (*accel == Accel::Kvm).then_some(qemu::KVM_FIRST_LINE),
            done: console::DONE,
        };
        let session = qemu::run(&machine, *accel, &limits)?;
        if let qemu::Ending::Silent(after) = session.ending
            && *accel == Accel::Kvm
            && tries.len() > 1
        {
            note = Some(format!(
                "KVM was tried first, and the kernel printed nothing within {} s: this /dev/kvm is too slow for a real kernel",
                after.as_secs()
            ));
            remember_kvm_too_slow(&kernel);
            continue;
        }
        return finish(guest, kernel, session, note);
    }
    unreachable!("the last accelerator tried returns")
}

/// Where a boot notes that KVM gave this kernel nothing to print in time on this
/// host, so that later boots go straight to emulation instead of waiting for it
/// again: one line, the host's release and the guest kernel's. Another host kernel
/// or another guest kernel, and KVM is tried again.
fn kvm_verdict_file() -> Option<PathBuf> {
    kernel::cache_dir().ok().map(|d| d.join("kvm-too-slow"))
}

fn verdict_key(kernel: &Kernel) -> String {
    let host = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{host} {}", kernel.release)
}

fn kvm_too_slow(kernel: &Kernel) -> bool {
    kvm_verdict_file()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .is_some_and(|text| text.lines().any(|l| l == verdict_key(kernel)))
}

fn remember_kvm_too_slow(kernel: &Kernel) {
    if let Some(file) = kvm_verdict_file() {
        // A cache: if it cannot be written, the next boot tries KVM again.
        let _ = std::fs::create_dir_all(file.parent().unwrap_or(Path::new("/")));
        let _ = std::fs::write(&file, verdict_key(kernel) + "\n");
    }
}

fn finish(
    guest: &Guest,
    kernel: Kernel,
    session: qemu::Session,
    accel_note: Option<String>,
) -> Result<GuestRun> {
    let parsed = console::parse(&session.console, &guest.commands);
    if let Some(error) = &parsed.error {
        bail!(
            "{}: the guest's init failed: {error} (kernel {})",
            session.accel,
            kernel.path.display()
        );
    }
    qemu::explain(&session)?;
    if parsed.outputs.len() != guest.commands.len() {
        bail!(
            "{}: the guest ran {} of the {} commands",
            session.accel,
            parsed.outputs.len(),
            guest.commands.len()
        );
    }
    let release = parsed
        .fact("kernel")
        .map(String::from)
        .unwrap_or_else(|| kernel.release.clone());
    let console: String = session
        .console
        .iter()
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    Ok(GuestRun {
        accel: session.accel,
        accel_note,
        kernel,
        release,
        boot: parsed.up.unwrap_or(session.wall),
        wall: session.wall,
        outputs: parsed.outputs,
        facts: parsed.facts,
        console,
    })
}

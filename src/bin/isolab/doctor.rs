//! `cargo run -- doctor`: what this machine offers the workshop, and what to do about
//! what it lacks.

use anyhow::Result;
use std::process::ExitCode;

pub fn doctor() -> Result<ExitCode> {
    let mut problems = 0;
    let mut row = |what: &str, ok: bool, detail: String| {
        let mark = if ok { "ok " } else { "-- " };
        if !ok {
            problems += 1;
        }
        println!("{mark} {what:<16} {detail}");
    };
    let root = nix::unistd::geteuid().is_root();
    let sudo = ["/usr/bin/sudo", "/bin/sudo"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    row(
        "root",
        root || sudo,
        match (root, sudo) {
            (true, _) => "yes: every step can run".into(),
            (false, true) => "no, but sudo is here: isolab builds as you and runs steps 01-05 \
                              (and their checks) through sudo; it may ask for your password"
                .into(),
            (false, false) => "no, and no sudo: run the steps and `cargo run -- check` as root \
                               (`su -c 'target/debug/isolab check N'`)"
                .into(),
        },
    );
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    row(
        "user namespaces",
        userns != "0",
        format!("max_user_namespaces = {userns}"),
    );
    match isolab::container::cgroup::Layout::detect() {
        Ok(layout) => {
            use isolab::container::cgroup::Kind;
            let kind = match layout.kind {
                Kind::V2 => "cgroup v2 (unified)",
                Kind::V1 => "cgroup v1",
                Kind::Hybrid => "hybrid: controllers on v1, plus a cgroup2 hierarchy",
                Kind::None => "none mounted",
            };
            row("cgroups", layout.kind != Kind::None, kind.into());
            for c in ["memory", "pids", "cpu"] {
                let place = layout.place_of(c);
                row(
                    &format!("  {c}"),
                    place.is_some(),
                    place.unwrap_or_else(|| "not available: step 04 cannot limit it".into()),
                );
            }
        }
        Err(e) => row("cgroups", false, format!("{e:#}")),
    }
    let kvm = kvm_status();
    let kvm_ok = kvm.is_ok() || (std::path::Path::new("/dev/kvm").exists() && (root || sudo));
    row(
        "/dev/kvm",
        kvm_ok,
        match kvm {
            Ok(ok) => ok,
            Err(_) if kvm_ok => {
                "you may not open it, but isolab runs steps 07-10 (and their checks) through sudo"
                    .into()
            }
            Err(why) => why,
        },
    );
    let busybox = isolab::container::rootfs::find_static_busybox();
    row("busybox", busybox.is_some(), match busybox {
        Some(p) => format!("{} (static): the rootfs gets a shell", p.display()),
        None => "no static busybox: `apt-get install busybox-static` for a shell in the box (optional)".into(),
    });
    guest_rows(&mut row);
    println!();
    if problems == 0 {
        println!("Everything the workshop uses is here.");
    } else {
        println!("Lines marked -- say what is missing and how to get it.");
    }
    Ok(ExitCode::SUCCESS)
}

// Step 07's own file: doctor asks KVM what step 07 asks first, the same way.
#[path = "../../../solutions/07-kvm-real-mode.rs"]
#[allow(dead_code)] // a whole step, of which doctor uses one function
#[rustfmt::skip] // formatted as its own step, to solutions/rustfmt.toml's width
mod kvm_real_mode;

pub fn kvm_status() -> std::result::Result<String, String> {
    // The same open, and so the same advice, as steps 07-10 give.
    let device = std::path::Path::new("/dev/kvm");
    let file = isolab::vm::open(device).map_err(|e| format!("{e:#}"))?;
    let version = kvm_real_mode::api_version(&file, device).map_err(|e| format!("{e:#}"))?;
    Ok(format!("usable (KVM API version {version})"))
}

/// The Linux guest: QEMU and a kernel, each with the one command that fixes it.
fn guest_rows(row: &mut impl FnMut(&str, bool, String)) {
    use isolab::vm::linux::{kernel, qemu};
    match qemu::find() {
        Ok(path) => {
            let version = qemu::version(&path).unwrap_or_default();
            row("QEMU", true, format!("{} ({version})", path.display()));
        }
        Err(e) => row(
            "QEMU",
            false,
            format!("{e:#} (for the tests that boot a real Linux kernel)"),
        ),
    }
    match kernel::find() {
        Ok(k) => row(
            "guest kernel",
            true,
            format!("Linux {} at {}", k.release, k.path.display()),
        ),
        Err(e) => row("guest kernel", false, format!("{e:#}")),
    }
}

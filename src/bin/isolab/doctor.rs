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
            (true, _) => "yes: steps 01-05 and 07-10 can run; step 06 runs as a normal user \
                          (see `step 06 user`)"
                .into(),
            (false, true) => "no, but sudo is here: isolab builds as you and runs steps 01-05 \
                              and 07-10 (and their checks) through sudo; it may ask for your \
                              password. Steps 00 and 06 need no root"
                .into(),
            (false, false) => "no, and no sudo: steps 00 and 06 run as you; for steps 01-05 and \
                               07-10, run isolab as root (`su -c 'target/debug/isolab check N'`)"
                .into(),
        },
    );
    step06_rows(&mut row, root);
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

/// What step 06, the rootless box, needs: a normal user (as root, the one
/// ISOLAB_TEST_USER or SUDO_USER names), a kernel that lets that user make a user
/// namespace and hold capabilities in it, and, for `--map-range`, newuidmap,
/// newgidmap and the user's range in /etc/subuid and /etc/subgid.
fn step06_rows(row: &mut impl FnMut(&str, bool, String), root: bool) {
    use isolab::workshop::env::TEST_USER;
    let named = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty() && v != "root")
    };
    let user = if root {
        named(TEST_USER)
            .or_else(|| named("SUDO_USER"))
            .and_then(|name| nix::unistd::User::from_name(&name).ok().flatten())
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
    };
    let Some(user) = user.filter(|u| !u.uid.is_root()) else {
        row(
            "step 06 user",
            false,
            format!(
                "step 06 refuses root: name a normal user with {TEST_USER}=NAME (then `check 6` \
                 runs its box as NAME), or run isolab as that user, with a checkout and a Rust \
                 toolchain of their own (Setting up, in the book, says how)"
            ),
        );
        return;
    };
    let (uid, name) = (user.uid.as_raw(), user.name.clone());
    if root {
        row(
            "step 06 user",
            true,
            format!("{name} (uid {uid}) runs step 06's box"),
        );
    }
    let userns = unprivileged_user_namespace(uid, user.gid.as_raw());
    let ok = userns.is_ok();
    row("user namespaces", ok, userns.unwrap_or_else(|why| why));
    let missing: Vec<&str> = ["newuidmap", "newgidmap"]
        .into_iter()
        .filter(|t| {
            !["/usr/bin", "/bin", "/usr/sbin"]
                .iter()
                .any(|d| std::path::Path::new(d).join(t).exists())
        })
        .collect();
    row(
        "uidmap",
        missing.is_empty(),
        if missing.is_empty() {
            "newuidmap and newgidmap: for step 06's --map-range".into()
        } else {
            format!(
                "no {}: `sudo apt-get install uidmap` (Fedora: shadow-utils), for step 06's \
                 --map-range only",
                missing.join(" or ")
            )
        },
    );
    let range = |file: &str| {
        isolab::container::subid::range_for(std::path::Path::new(file), &name, uid, 65535)
    };
    let ranges = range("/etc/subuid").and_then(|u| Ok((u, range("/etc/subgid")?)));
    row(
        "subuid",
        ranges.is_ok(),
        match ranges {
            Ok((u, g)) => format!(
                "{name}: uids {}+{}, gids {}+{}: for step 06's --map-range",
                u.start, u.count, g.start, g.count
            ),
            Err(e) => format!("{e:#} (for step 06's --map-range only)"),
        },
    );
}

/// Can `uid` make a user namespace, and hold a capability in it? Tried for real, in
/// a child that becomes that user first (when we are root): a kernel setting, a
/// seccomp filter or an AppArmor policy may each say no, and only trying tells.
fn unprivileged_user_namespace(uid: u32, gid: u32) -> std::result::Result<String, String> {
    use nix::sched::{CloneFlags, unshare};
    let setting = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    };
    let max = setting("/proc/sys/user/max_user_namespaces");
    // SAFETY: doctor has no other threads, so the child may run any code; it ends
    // with _exit.
    let code = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let become_user = || {
                nix::unistd::setgroups(&[])?;
                nix::unistd::setgid(gid.into())?;
                nix::unistd::setuid(uid.into())
            };
            let code = if nix::unistd::geteuid().is_root() && become_user().is_err() {
                3
            } else if unshare(CloneFlags::CLONE_NEWUSER).is_err() {
                1
            } else if unshare(CloneFlags::CLONE_NEWNS).is_err() {
                2 // made, but no capability in it: AppArmor's restriction does that
            } else {
                0
            };
            // SAFETY: _exit takes no pointers and ends the child at once.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
                _ => 3,
            }
        }
        Err(_) => 3,
    };
    match code {
        0 => Ok(format!(
            "uid {uid} may make one and hold capabilities in it (max_user_namespaces = {max})"
        )),
        _ if max == "0" => Err(
            "user.max_user_namespaces is 0: `sudo sysctl -w user.max_user_namespaces=15000`".into(),
        ),
        _ if setting("/proc/sys/kernel/unprivileged_userns_clone") == "0" => {
            Err("kernel.unprivileged_userns_clone is 0: \
             `sudo sysctl -w kernel.unprivileged_userns_clone=1`"
                .into())
        }
        _ if setting("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1" => Err(
            "AppArmor restricts them (kernel.apparmor_restrict_unprivileged_userns is 1): \
             `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or an AppArmor \
             profile that allows userns for the step's binary"
                .into(),
        ),
        2 => Err(format!(
            "uid {uid} may make one but holds no capability in it (a security policy)"
        )),
        _ => Err(format!(
            "uid {uid} may not make one here (a seccomp filter, or a policy: inside a container?)"
        )),
    }
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

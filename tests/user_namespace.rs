//! Step 06, user-namespace: a rootless box, run by a real unprivileged user (the
//! tests' own user, or as root the one ISOLAB_TEST_USER names: CI makes
//! `isolab-test`). Root in the box is that user on the host: the tests check it from
//! both sides, inside (the probe's report, the maps) and outside (who the host says
//! the box's processes are, who owns what it leaves behind), and compare with the
//! root boxes of steps 04 and 05: what the user namespace closes, and what it opens.
//!
//! The comparisons need root (to run those boxes, to leave a file of root's in the
//! rootfs, to run the step as root or as a user without a range). A learner who is
//! a normal user checks everything else, and `cargo run -- check 6` lists what it
//! left out (`compares!`, `can_compare`); CI runs it all.

mod common;
use common::*;
use isolab::workshop::report::Report;
use std::path::Path;

const STEP: &str = "06-user-namespace";

/// Run the step as the lab's user, to the end; check it left nothing behind.
fn run_as_user(lab: &UserLab, flags: &[&str], command: &[&str]) -> Run {
    let cmd = lab.command(&lab.step(STEP), &lab.args(flags, command), None);
    let run = run_with(cmd);
    assert_no_process_from(&lab.rootfs());
    run
}

/// The probe's report from the box, told the serial of the user's key.
fn report_as_user(lab: &UserLab, flags: &[&str]) -> Report {
    let key = lab.key_arg();
    let run = run_as_user(lab, flags, &["/bin/probe", "--key-serial", &key]);
    assert_eq!(run.code, Some(0), "{flags:?}: {}", run.stderr);
    Report::parse(&run.stdout)
}

/// The user's uid and the subordinate range's start are the host's: filtered.
fn user_filters(user: &User) -> Vec<(String, String)> {
    let uid = user.uid;
    vec![
        (format!(r"\b{uid}\b"), "[uid]".into()),
        (
            r"(?m)^(uid on the host: .*, 1) \d+ ".into(),
            "$1 [subuid] ".into(),
        ),
    ]
}

/// The whole report, run by a normal user with the tests' canary and fd 3 leaked.
#[test]
fn report() {
    needs!(user, userns);
    let user = normal_user().unwrap();
    let lab = UserLab::new(&user);
    let (canary, key) = (lab.canary_arg(), lab.key_arg());
    let probe = ["/bin/probe", "--canary", &canary, "--key-serial", &key];
    let cmd = lab.command(
        &lab.step(STEP),
        &lab.args(&[], &probe),
        Some(lab.canary.dir()),
    );
    let run = run_with(cmd);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(
        run.stderr, "",
        "nothing asked for limits, so nothing to say"
    );
    assert_no_process_from(&lab.rootfs());
    // Whether the box sees limit files depends on whether the host delegated a
    // cgroup to the user (see the test of that below): the host's.
    let mut filters = user_filters(&user);
    filters.extend(host_filters(&["memory limit", "pids limit", "cpu limit"]));
    snapshot("report", &run.stdout, filters);
}

/// Root inside is the caller outside: the maps say so inside, and the host's own
/// view of the box's processes says so outside.
#[test]
fn root_inside_is_the_caller_outside() {
    needs!(user, userns);
    let user = normal_user().unwrap();
    let lab = UserLab::new(&user);
    let r = report_as_user(&lab, &[]);
    assert_eq!(&r[Key::Uid], "0 (root)");
    assert_eq!(
        &r[Key::UidOnTheHost],
        format!("{} (my uid_map: 0 {} 1)", user.uid, user.uid)
    );
    assert_eq!(
        &r[Key::Capabilities],
        format!(
            "all {} in my own user namespace",
            isolab::container::caps::last_cap() + 1
        )
    );
    // From the host: every process of the box has the caller's uid and gid.
    let mut running = Running::start(lab.command(
        &lab.step(STEP),
        &lab.args(&[], &["/bin/probe", "wait-signal"]),
        None,
    ));
    running.wait_for_line("ready");
    let init = children_of(running.child.id());
    assert_eq!(init.len(), 1, "the runtime's child, init");
    let probe = children_of(init[0]);
    assert_eq!(probe.len(), 1, "init's child, the probe");
    let pid = probe[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("Uid:"), [user.uid; 4], "{status}");
    assert_eq!(ids("Gid:"), [user.gid; 4], "{status}");
    running.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(running.finish().0, 143);
    assert_no_process_from(&lab.rootfs());
}

/// The walls the user namespace puts up by itself, with every capability held in
/// the box and no filter at all (`--break keyctl` leaves out the one on the key
/// calls): the host's settings, the clock, a higher priority and device nodes are
/// refused, and a setuid file it plants belongs to the caller.
#[test]
fn the_host_does_not_trust_the_boxs_root() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let r = report_as_user(&lab, &["--break", "keyctl"]);
    assert_eq!(
        &r[Key::ChangeAKernelSetting],
        "refused (EACCES: they are the host root's, and I am root only in my own user namespace)"
    );
    assert_eq!(&r[Key::SetTheClock], "refused (EPERM)");
    assert_eq!(&r[Key::RaiseMyPriority], "refused (EACCES)");
    assert_eq!(&r[Key::PlantADeviceNode], "refused (EPERM)");
    assert!(
        r[Key::PlantASetuidFile].starts_with("planted, but my root is uid "),
        "{}",
        &r[Key::PlantASetuidFile]
    );
    assert_eq!(&r[Key::Seccomp], "off", "none of this is a filter's doing");
}

/// Both sides: step 04's box is root with every capability and no filter, as step
/// 06's box is in its own namespace with `--break keyctl`; the difference is the
/// user namespace alone.
#[test]
fn what_root_could_do_in_step_04_the_user_namespace_refuses() {
    needs!(user, userns);
    compares!(root, "step 04's root box, beside yours");
    let lab = UserLab::new(&normal_user().unwrap());
    let rootful = run(
        &target_dir().join("04-cgroups-solution"),
        &lab.args(&[], &["/bin/probe"]),
    );
    assert_eq!(rootful.code, Some(0), "{}", rootful.stderr);
    let open = Report::parse(&rootful.stdout);
    let closed = report_as_user(&lab, &["--break", "keyctl"]);
    for (key, was) in [
        (Key::ChangeAKernelSetting, "WRITABLE"),
        (Key::SetTheClock, "allowed"),
        (Key::RaiseMyPriority, "allowed"),
        (Key::PlantADeviceNode, "PLANTED"),
        (Key::PlantASetuidFile, "PLANTED"),
        (Key::UidOnTheHost, "the same"),
    ] {
        assert!(
            open[key].starts_with(was),
            "{key:?} in step 04: {}",
            &open[key]
        );
        assert!(
            !closed[key].starts_with(was),
            "{key:?} in step 06: {}",
            &closed[key]
        );
    }
}

/// What step 06 opens that step 05 closed: root in its own namespace may mount, make
/// namespaces, trace and switch ASLR off, all kernel code a normal user reaches
/// through it (the chapter's CVE history), and no filter refuses a vsock socket.
/// `--harden` closes them again. io_uring stays refused without it: the key filter
/// refuses it (see `af_alg_and_io_uring_go_with_the_key_calls`).
#[test]
fn what_the_user_namespace_opens_and_harden_closes() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let opened = [
        Key::MountAFilesystem,
        Key::NewUserNamespace,
        Key::PtraceMyParent,
        Key::TurnOffAslr,
    ];
    let open = report_as_user(&lab, &[]);
    let hardened = report_as_user(&lab, &["--harden"]);
    for key in opened {
        assert_eq!(&open[key], "allowed", "{key:?} in step 06");
        assert_eq!(&hardened[key], "refused (EPERM)", "{key:?} with --harden");
    }
    assert_eq!(&open[Key::IoUring], "refused (EPERM)", "the key filter");
    assert_eq!(&hardened[Key::IoUring], "refused (EPERM)");
    assert_eq!(&hardened[Key::Seccomp], "filter");
    assert!(
        !hardened[Key::Capabilities].starts_with("all"),
        "{}",
        &hardened[Key::Capabilities]
    );
    assert_eq!(&hardened[Key::PlantASetuidFile], "refused (EPERM)");
    // vsock needs no capability, and has no namespace: only the filter refuses it.
    let vsock = &open[Key::VsockSocket];
    assert!(
        vsock.starts_with("allowed") || vsock.starts_with("impossible"),
        "{vsock}"
    );
    assert_eq!(&hardened[Key::VsockSocket], "refused (EPERM)");
    // The same routes in step 05's root box: closed there, by the same walls.
    if can_compare("root", "step 05's root box, beside yours") {
        let rootful = run(
            &target_dir().join("05-hardening-solution"),
            &lab.args(&[], &["/bin/probe"]),
        );
        let closed = Report::parse(&rootful.stdout);
        for key in opened {
            assert_eq!(&closed[key], "refused (EPERM)", "{key:?} in step 05");
        }
        assert_eq!(&hardened[Key::Capabilities], &closed[Key::Capabilities]);
    }
}

/// `--map-range` gives the box 65536 IDs, as podman does: root is the caller, and
/// 1-65535 the caller's range from /etc/subuid. setgroups(2) stays denied in it,
/// unless `--allow-setgroups` asks for it (su and package managers want it).
#[test]
fn map_range_maps_65536_ids_from_the_callers_range() {
    needs!(user, userns);
    compares!(subuid, "--map-range, which maps the caller's range of IDs");
    let user = normal_user().unwrap();
    let lab = UserLab::new(&user);
    let range =
        isolab::container::subid::range_for(Path::new("/etc/subuid"), &user.name, user.uid, 65535)
            .unwrap();
    let r = report_as_user(&lab, &["--map-range"]);
    assert_eq!(
        &r[Key::UidOnTheHost],
        format!(
            "{} (my uid_map: 0 {} 1, 1 {} 65535)",
            user.uid, user.uid, range.start
        )
    );
    assert_eq!(
        &r[Key::SetuidRootBinary],
        format!(
            "grants my namespace's root (euid 0 here, uid {} on the host)",
            user.uid
        )
    );
    if has_busybox_in(&lab.rootfs()) {
        let script = "cat /proc/self/setgroups; cat /proc/self/gid_map | wc -l";
        let ranged = run_as_user(&lab, &["--map-range"], &["/bin/sh", "-c", script]);
        assert_eq!(ranged.stdout, "deny\n2\n", "{}", ranged.stderr);
        let allowed = run_as_user(
            &lab,
            &["--map-range", "--allow-setgroups"],
            &["/bin/sh", "-c", script],
        );
        assert_eq!(allowed.stdout, "allow\n2\n", "{}", allowed.stderr);
        let own = run_as_user(&lab, &[], &["/bin/sh", "-c", script]);
        assert_eq!(own.stdout, "deny\n1\n", "{}", own.stderr);
    }
    // --allow-setgroups means something only for a range: one line without one.
    let run = run_as_user(&lab, &["--allow-setgroups"], &["/bin/probe"]);
    assert_one_line_error(&run, 125, "--allow-setgroups needs --map-range");
}

/// The hole `deny` closes (CVE-2014-8989): a file whose group bits shut out a group
/// of the caller's (mode 0604, group "banned"). With `--map-range` the box's root
/// holds CAP_SETGID over IDs of its own; if it may call setgroups(2), it sheds the
/// group and reads the file as "others". The runtime denies setgroups before
/// newgidmap writes the map, and newgidmap leaves it denied.
#[test]
fn with_a_range_the_box_still_cannot_shed_the_callers_groups() {
    needs!(user, userns);
    compares!(root, "a group of the caller's that a file's mode shuts out");
    compares!(subuid, "--map-range, which maps the caller's range of IDs");
    let user = normal_user().unwrap();
    let lab = UserLab::new(&user);
    // A group nobody else uses: it needs no name, only a number.
    const BANNED: u32 = 64_999;
    let file = lab.rootfs().join("banned");
    std::fs::write(&file, "a secret the banned group may not read\n").unwrap();
    std::os::unix::fs::chown(&file, Some(0), Some(BANNED)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o604)).unwrap();
    let in_the_banned_group = |flags: &[&str]| {
        // Started as the user, in the banned group besides their own.
        let mut cmd = command(
            &lab.step(STEP),
            &lab.args(flags, &["/bin/probe", "drop-groups", "/banned"]),
            None,
        );
        let (uid, gid) = (user.uid, user.gid);
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure makes three system calls with
        // a buffer made before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let groups = [BANNED];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let run = run_with(cmd);
        assert_eq!(run.code, Some(0), "{flags:?}: {}", run.stderr);
        run.stdout
    };
    let lines = |text: &str| text.lines().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        lines(&in_the_banned_group(&["--map-range"])),
        [
            "with my groups: not read: refused (EACCES)",
            "setgroups: refused (EPERM)",
            "without them: not read: refused (EACCES)",
        ]
    );
    assert_eq!(
        lines(&in_the_banned_group(&["--map-range", "--allow-setgroups"])),
        [
            "with my groups: not read: refused (EACCES)",
            "setgroups: allowed",
            "without them: read /banned",
        ],
        "--allow-setgroups opens the hole again, as the chapter says"
    );
}

/// Is there a shell in the lab's rootfs? If not, the part of a test that wants one
/// is left out (see `can_compare`), with what to install.
fn has_busybox_in(rootfs: &Path) -> bool {
    rootfs.join("bin/busybox").exists() || can_compare("busybox", "a shell in the box")
}

/// A setuid file the box plants is the caller's on the host: a host user who runs
/// it becomes the caller, never root. (Step 04's made root: tests/hardening.rs.)
#[test]
fn a_setuid_file_planted_in_the_box_belongs_to_the_caller() {
    needs!(user, userns);
    let user = normal_user().unwrap();
    let lab = UserLab::new(&user);
    let run = run_as_user(&lab, &[], &["/bin/probe", "plant-setuid", "/tmp/planted"]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let planted = lab.rootfs().join("tmp/planted");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&planted).unwrap();
    assert_eq!(meta.uid(), user.uid, "owned by the caller on the host");
    assert_ne!(meta.mode() & 0o4000, 0, "the setuid bit is there");
    if can_compare("root", "the planted file, run by another user of the host") {
        let nosuid = nix::sys::statvfs::statvfs(&planted)
            .unwrap()
            .flags()
            .contains(nix::sys::statvfs::FsFlags::ST_NOSUID);
        let want = if nosuid { 65534 } else { user.uid };
        assert_eq!(run_as_nobody(&planted), want.to_string());
    }
}

/// Run `file euid` as user 65534 and return what it printed (see tests/hardening.rs).
fn run_as_nobody(file: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(file)
        .arg("euid")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("running the planted file as user 65534");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A file of the host's root, in the box's reach: step 04's root reads it, step
/// 06's root may not. Root in the box has CAP_DAC_OVERRIDE in its namespace, but
/// the kernel honours it only for files whose owner is mapped there.
#[test]
fn a_file_of_the_hosts_root_is_refused_to_the_boxs_root() {
    needs!(user, userns);
    compares!(
        root,
        "a file of the host root's in your rootfs, and step 04's box"
    );
    let lab = UserLab::new(&normal_user().unwrap());
    let secret = lab.rootfs().join("etc/host-secret");
    std::fs::copy(lab.canary.path(), &secret).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let probe = ["/bin/probe", "--canary", "/etc/host-secret"];
    let rootful = run(
        &target_dir().join("04-cgroups-solution"),
        &lab.args(&[], &probe),
    );
    assert_eq!(
        &Report::parse(&rootful.stdout)[Key::CanaryByPath],
        "READABLE"
    );
    let rootless = run_as_user(&lab, &[], &probe);
    assert_eq!(
        &Report::parse(&rootless.stdout)[Key::CanaryByPath],
        "refused (permission denied)"
    );
}

/// The chapter's "break it": mknod refused, a tmpfs allowed, in a shell in the box.
/// The hostname is refused too: the UTS namespace, like the PID and network ones,
/// belongs to the runtime's user namespace; the box's owns only its mount table.
#[test]
fn a_shell_in_the_box_may_mount_but_not_mknod() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    if !has_busybox_in(&lab.rootfs()) {
        return;
    }
    let script = "mknod /tmp/null c 1 3 2>&1; mount -t tmpfs none /tmp && echo mounted; \
                  hostname box2 2>&1; echo done";
    let run = run_as_user(&lab, &[], &["/bin/sh", "-c", script]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(lines[0].contains("Operation not permitted"), "{}", lines[0]);
    assert_eq!(lines[1], "mounted");
    assert!(lines[2].contains("Operation not permitted"), "{}", lines[2]);
    assert_eq!(lines[3], "done");
}

/// The walls init built in /proc are mounts, and a mount is a wall only if the
/// box's root, which holds CAP_SYS_ADMIN over its own mount namespace, may not take
/// it off. Its mount table is a copy made into its own user namespace, one level
/// below the runtime's, so the kernel locked every mount in it: no unmount, no
/// remount, and no fresh procfs (the PID namespace is not its to mount one for).
/// `--break lock` makes the masks from inside the box's own user namespace: the
/// probe takes them off.
#[test]
fn the_box_cannot_take_its_walls_down() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let locked = report_as_user(&lab, &[]);
    assert_eq!(
        &locked[Key::ReadTheKernelsTables],
        "masked (empty or refused)"
    );
    // Nor may it end its PID namespace, which is the runtime's namespace's.
    assert_eq!(&locked[Key::Reboot], "refused (EPERM)");
    let unlocked = report_as_user(&lab, &["--break", "lock"]);
    assert_eq!(
        &unlocked[Key::ReadTheKernelsTables],
        "READABLE once unmasked: the masks are mounts I may unmount"
    );
    if !has_busybox_in(&lab.rootfs()) {
        return;
    }
    let script = "umount /proc/keys 2>/dev/null && echo unmounted; \
                  umount /proc/key-users 2>/dev/null && echo unmounted; \
                  mount -o remount,bind,rw /proc/sys 2>/dev/null && echo rw; \
                  mount -o remount,bind,rw /sys/fs/cgroup 2>/dev/null && echo rw; \
                  mount -o remount,bind,suid,dev,exec /dev 2>/dev/null && echo suid; \
                  mkdir /tmp/p && mount -t proc proc /tmp/p 2>/dev/null && echo fresh; \
                  echo done";
    let run = run_as_user(&lab, &[], &["/bin/sh", "-c", script]);
    assert_eq!(run.stdout, "done\n", "{}", run.stderr);
}

/// Keyrings belong to no namespace: a box started by a process that holds a session
/// keyring holds it too, and may read the keys in it. The tests start every
/// runtime with the canary key in a session keyring of its own, as a login session
/// with a token in it would; init joins a new one, and `--break keyring` does not.
/// The key filter stands on the same route: a box that kept the caller's keyring
/// still may not search it (request_key is refused) until `--break keyctl` too.
#[test]
fn the_callers_session_keyring_stays_out() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let session =
        |flags: &[&str]| report_as_user(&lab, flags)[Key::CanaryViaSessionKeyring].to_string();
    assert_eq!(session(&[]), "refused (EPERM)");
    assert_eq!(
        session(&["--break", "keyctl"]),
        "not found (the session keyring I hold is not the caller's)"
    );
    assert_eq!(session(&["--break", "keyring"]), "refused (EPERM)");
    let open = session(&["--break", "keyring", "--break", "keyctl"]);
    assert!(open.starts_with("READABLE"), "{open}");
}

/// A new session keyring is not enough. Keys belong to no namespace, keyctl(2)
/// takes any key by its serial number, and the kernel checks the key's permissions
/// by uid: a key of the caller's that lets its user read it (the tests' `probe
/// hold-key` holds one, in a session of the user's that no box is started from) is
/// read by the box's root, the caller's uid, by its number alone. A filter refuses
/// the key calls in every box; `--break keyctl` leaves it off. Step 05's filter
/// (`--harden`) refuses the same calls, and a key of another user's stays shut by
/// its permissions, filter or not.
#[test]
fn the_callers_keys_stay_out_even_by_their_serial_number() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let by_serial =
        |flags: &[&str]| report_as_user(&lab, flags)[Key::CanaryByKeySerial].to_string();
    let read = "READABLE (keyctl(KEYCTL_READ) by its number; KEYCTL_DESCRIBE: \
                user;0;0;3f030000;isolab-canary)";
    assert_eq!(by_serial(&[]), "refused (EPERM)");
    assert_eq!(by_serial(&["--break", "keyctl"]), read);
    assert_eq!(by_serial(&["--harden"]), "refused (EPERM)");
    assert_eq!(
        by_serial(&["--harden", "--break", "keyctl"]),
        "refused (EPERM)",
        "step 05's filter refuses keyctl too"
    );
    // The serial number is the whole key: the keyring the box holds is no part of it.
    assert_eq!(
        by_serial(&["--break", "keyring", "--break", "keyctl"]),
        read
    );
    if can_compare("root", "a key of root's, beside the user's") {
        let root = isolab::container::canary::KeyHolder::start(std::process::Command::new(probe()))
            .unwrap();
        let serial = root.serial().unwrap_or(0).to_string();
        let run = run_as_user(
            &lab,
            &["--break", "keyctl"],
            &["/bin/probe", "--key-serial", &serial],
        );
        assert_eq!(
            &Report::parse(&run.stdout)[Key::CanaryByKeySerial],
            "refused (EACCES: the key's permissions keep my uid out)",
            "{}",
            run.stderr
        );
    }
}

/// The other routes to a key by its number. An AF_ALG socket (Linux 6.2+) takes a
/// key the caller may search as a hash's key (ALG_SET_KEY_BY_KEY_SERIAL), without
/// keyctl; io_uring makes sockets and sets their options past every seccomp filter.
/// The key filter refuses socket(AF_ALG) and io_uring with EPERM, in every box;
/// `--break keyctl` leaves it off, and then this host's kernel answers for itself:
/// io_uring is there, AF_ALG is not (EAFNOSUPPORT). Step 05's filter refuses both.
#[test]
fn af_alg_and_io_uring_go_with_the_key_calls() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let key = lab.key_arg();
    let alg = |flags: &[&str]| {
        let run = run_as_user(
            &lab,
            flags,
            &["/bin/probe", "--key-serial", &key, "alg-key"],
        );
        assert_eq!(run.code, Some(0), "{flags:?}: {}", run.stderr);
        run.stdout
    };
    let refused = "AF_ALG key by serial: refused (socket(AF_ALG): EPERM)\n";
    assert_eq!(alg(&[]), refused);
    assert_eq!(alg(&["--harden"]), refused, "step 05's filter");
    assert_eq!(alg(&["--harden", "--break", "keyctl"]), refused);
    let open = alg(&["--break", "keyctl"]);
    if open.contains("impossible") {
        // This host: no AF_ALG in its kernel, so the route is shut without us.
        assert_eq!(
            open,
            "AF_ALG key by serial: impossible (socket(AF_ALG): EAFNOSUPPORT, \
             this kernel has no AF_ALG)\n"
        );
    } else {
        // A kernel with AF_ALG: past the filter, the key's permissions decide (the
        // canary lets its user read, not search: EACCES; a searchable one: KEYED).
        assert!(!open.contains("EPERM"), "{open}");
    }
    let uring = |flags: &[&str]| report_as_user(&lab, flags)[Key::IoUring].to_string();
    assert_eq!(uring(&[]), "refused (EPERM)");
    assert_eq!(uring(&["--break", "keyctl"]), "allowed");
}

/// The box's root is the caller, and may reopen whatever descriptor it holds, as
/// the caller, through /proc/self/fd: a file its output goes to (to read what was
/// in it before, or empty it), or the caller's terminal (to change its settings for
/// good). So the box gets pipes, and the runtime relays, as step 05 does for a
/// terminal (and to a file, byte for byte); `--tty` gives it a terminal of its own.
#[test]
fn the_callers_files_and_terminal_stay_out() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    if !has_busybox_in(&lab.rootfs()) {
        return;
    }
    // Its stdout a file of the caller's, with something in it already.
    let out = lab.rootfs().parent().unwrap().join("out.log");
    std::fs::write(&out, "earlier: a secret of the caller's\n").unwrap();
    lab.give_to_user(&out);
    let script = "readlink /proc/self/fd/0 >&2; readlink /proc/self/fd/1 >&2; \
                  : > /proc/self/fd/1 2>/dev/null; echo from the box; \
                  printf '\\033]52;c;aGk=\\007\\r\\377\\n'";
    let mut cmd = lab.command(
        &lab.step(STEP),
        &lab.args(&[], &["/bin/sh", "-c", script]),
        None,
    );
    cmd.stdout(std::fs::File::options().append(true).open(&out).unwrap());
    let ran = cmd.output().expect("running the step");
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    for link in stderr.lines() {
        assert!(link.starts_with("pipe:["), "{stderr}");
    }
    assert_no_process_from(&lab.rootfs());
    // What the box wrote is there byte for byte: the relay escapes only for a
    // terminal.
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"earlier: a secret of the caller's\nfrom the box\n\x1b]52;c;aGk=\x07\r\xff\n",
        "the box could not empty the caller's file, nor change what it wrote there"
    );
    // Started from a terminal: none in the box, its settings stay the caller's, and
    // what the box writes reaches it as text.
    let in_terminal = |command: &[&str]| {
        run_command_in_terminal(
            lab.command(&lab.step(STEP), &lab.args(&[], command), None),
            &[],
        )
    };
    let terminal = in_terminal(&[
        "/bin/sh",
        "-c",
        "test -t 0 || echo no-terminal; printf '\\033]0;a title\\007\\n'; stty -echo 2>&1",
    ]);
    assert!(
        terminal.stdout.contains("no-terminal"),
        "{}",
        terminal.stdout
    );
    assert!(
        terminal.stdout.contains("\\u{1b}]0;a title\\u{7}\n"),
        "{:?}",
        terminal.stdout
    );
    assert_eq!(
        terminal.code,
        Some(1),
        "stty found no terminal: {}",
        terminal.stdout
    );
    let probe = in_terminal(&["/bin/probe"]);
    let r = Report::parse(&probe.stdout);
    assert_eq!(&r[Key::TypeIntoMyTerminal], "no terminal on fds 0-2");
}

/// Step 05's `nodev` root: a device node someone with root left in the rootfs (an
/// image unpacked by root, a copied /dev) opens nothing in the box, though its mode
/// lets everyone open it; the box's own /dev still works.
#[test]
fn a_device_node_left_in_the_rootfs_opens_nothing() {
    needs!(user, userns);
    compares!(
        root,
        "a device node of root's in your rootfs, and step 04's box"
    );
    let lab = UserLab::new(&normal_user().unwrap());
    let node = lab.rootfs().join("tmp/null");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666)).unwrap();
    let rootful = run(
        &target_dir().join("04-cgroups-solution"),
        &lab.args(&[], &["/bin/probe", "open", "/tmp/null"]),
    );
    assert_eq!(rootful.stdout, "opened /tmp/null\n", "{}", rootful.stderr);
    let rootless = run_as_user(&lab, &[], &["/bin/probe", "open", "/tmp/null"]);
    assert_eq!(
        rootless.stdout, "not opened: refused (EACCES)\n",
        "{}",
        rootless.stderr
    );
    let own = run_as_user(&lab, &[], &["/bin/probe", "open", "/dev/null"]);
    assert_eq!(own.stdout, "opened /dev/null\n", "{}", own.stderr);
}

/// --break setgroups: the kernel refuses the gid_map; --break map: it refuses a
/// map to anyone but the caller. One line each, naming the file and the rule.
#[test]
fn the_maps_broken_are_refused_in_one_line() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let run = run_as_user(&lab, &["--break", "setgroups"], &["/bin/probe"]);
    assert_one_line_error(
        &run,
        125,
        "/proc/self/gid_map): an unprivileged process may write gid_map only after writing \"deny\" to /proc/self/setgroups",
    );
    let run = run_as_user(&lab, &["--break", "map"], &["/bin/probe"]);
    assert_one_line_error(
        &run,
        125,
        "write(\"0 0 1\", /proc/self/uid_map): an unprivileged process may map only its own uid",
    );
}

/// Bad input, one line each: run as root; a rootfs the user cannot read; no range
/// for --map-range; user namespaces switched off, or refused by a seccomp filter.
#[test]
fn root_is_refused_in_one_line() {
    compares!(root, "the step run as root");
    let lab = Lab::new();
    let run = run(&step(STEP), &box_args(&lab, &[], &["/bin/probe"]));
    assert_one_line_error(&run, 125, "this step is for a normal user, without sudo");
}

#[test]
fn a_rootfs_the_user_cannot_read_is_one_line() {
    needs!(user, userns);
    let user = normal_user().unwrap();
    if !user.other {
        // Our own lab is ours: make one nobody may enter.
        let lab = UserLab::new(&user);
        let closed = lab.rootfs().join("tmp/closed");
        std::fs::create_dir(&closed).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o000)).unwrap();
        let run = run_with(lab.command(
            &lab.step(STEP),
            &[
                "--rootfs",
                &closed.display().to_string(),
                "--",
                "/bin/probe",
            ],
            None,
        ));
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_one_line_error(&run, 125, "is not readable by uid");
        return;
    }
    // A lab of root's, in a directory closed to others, run by the test user.
    let users = UserLab::new(&user);
    let roots = Lab::new();
    let closed = roots.rootfs().parent().unwrap().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let run = run_with(users.command(
        &users.step(STEP),
        &box_args(&roots, &[], &["/bin/probe"]),
        None,
    ));
    assert_one_line_error(&run, 125, &format!("is not readable by uid {}", user.uid));
}

#[test]
fn no_subuid_range_is_one_line() {
    needs!(user, userns);
    let user = normal_user().unwrap();
    let lab = UserLab::new(&user);
    // Someone without a range: nobody, as root; else ourselves, if we have none.
    let mut cmd = if user.other {
        use std::os::unix::process::CommandExt;
        let mut cmd = command(
            &lab.step(STEP),
            &lab.args(&["--map-range"], &["/bin/probe"]),
            None,
        );
        cmd.uid(65534).gid(65534);
        cmd
    } else if missing("subuid").is_some() {
        lab.command(
            &lab.step(STEP),
            &lab.args(&["--map-range"], &["/bin/probe"]),
            None,
        )
    } else {
        can_compare(
            "nobody",
            "the step run by a user without a range in /etc/subuid",
        );
        return;
    };
    cmd.env("PATH", "/usr/bin:/bin");
    let run = run_with(cmd);
    if Path::new("/usr/bin/newuidmap").exists() {
        assert_one_line_error(&run, 125, "no range of IDs to map");
        assert_one_line_error(&run, 125, "usermod --add-subuids");
    } else {
        assert_one_line_error(&run, 125, "sudo apt-get install uidmap");
    }
}

/// user.max_user_namespaces is a limit of each user namespace: the test sets it to
/// 0 in a namespace of its own (mapping the user to themselves, so the step still
/// runs as a normal user), and runs the step there.
#[test]
fn user_namespaces_switched_off_are_one_line() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let mut cmd = lab.command(&lab.step(STEP), &lab.args(&[], &["/bin/probe"]), None);
    let (uid, gid) = (lab.user.uid, lab.user.gid);
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure makes system calls and writes files
    // of /proc with buffers made before the fork; it allocates nothing.
    unsafe {
        let maps = [
            ("/proc/self/setgroups\0", "deny".to_string()),
            ("/proc/self/uid_map\0", format!("{uid} {uid} 1")),
            ("/proc/self/gid_map\0", format!("{gid} {gid} 1")),
            ("/proc/sys/user/max_user_namespaces\0", "0".to_string()),
        ];
        cmd.pre_exec(move || {
            // The uid changed from root: let this process write its own /proc files.
            if libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) != 0
                || libc::unshare(libc::CLONE_NEWUSER) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for (path, text) in &maps {
                let fd = libc::open(path.as_ptr().cast(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, text.as_ptr().cast(), text.len()) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            Ok(())
        });
    }
    let run = run_with(cmd);
    assert_one_line_error(&run, 125, "user.max_user_namespaces is 0");
}

/// A seccomp filter that refuses unshare(CLONE_NEWUSER), as a container's does:
/// EPERM, and the step says a filter is the cause. One that answers EINVAL stands
/// for a kernel without user namespaces.
#[test]
fn user_namespaces_refused_are_one_line() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    for (refusal, says) in [
        (libc::EPERM, "a seccomp filter refuses it (Seccomp: 2"),
        (libc::EINVAL, "this kernel has no user namespaces"),
    ] {
        use isolab::container::seccomp::*;
        let program = [
            load(NR),
            jump_if_equal(libc::SYS_unshare as u32, 0, 1),
            ret(errno_value(refusal)),
            ret(ALLOW),
        ];
        let mut cmd = lab.command(&lab.step(STEP), &lab.args(&[], &["/bin/probe"]), None);
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only calls prctl and seccomp
        // with a program made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let prog = libc::sock_fprog {
                    len: program.len() as u16,
                    filter: program.as_ptr() as *mut _,
                };
                if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let run = run_with(cmd);
        assert_one_line_error(&run, 125, says);
    }
}

fn errno_value(errno: i32) -> u32 {
    isolab::container::seccomp::errno(nix::errno::Errno::from_raw(errno))
}

/// On a host that gives this user no cgroup (v1, hybrid, or v2 not delegated), the
/// box runs without limits and says so in one line, with the command that would
/// give them. Where a cgroup is delegated, tests/linux_guest.rs checks the limits.
#[test]
fn without_a_delegated_cgroup_the_box_runs_without_limits_and_says_so() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let run = run_as_user(&lab, &["--memory", "64m"], &["/bin/probe", "exit", "3"]);
    if run.stderr.is_empty() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "note: a cgroup is delegated to this user here: the limits ran (see tests/linux_guest.rs)"
        );
        return;
    }
    assert_eq!(run.code, Some(3), "the box ran: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains(": no limits: "), "{}", lines[0]);
    assert!(
        lines[0].contains("systemd-run --user --scope -p Delegate=yes --"),
        "{}",
        lines[0]
    );
    // Asked for no limit, it says nothing of them.
    let quiet = run_as_user(&lab, &[], &["/bin/probe", "exit", "3"]);
    assert_eq!(quiet.code, Some(3), "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("no limits"), "{}", quiet.stderr);
}

#[test]
fn a_killed_runtime_leaves_nothing() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    let mut box_ = Running::start(lab.command(
        &lab.step(STEP),
        &lab.args(&[], &["/bin/probe", "wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    let ns = box_pid_namespace(box_.child.id());
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(box_.finish().0, 137);
    assert_no_process_in(&ns);
    assert_no_process_from(&lab.rootfs());
}

/// `isolab run --reference 6` run by the lab's user, with its run directories in a
/// directory of the user's own, `tmp`.
struct IsolabRun {
    isolab: std::path::PathBuf,
    tmp: std::path::PathBuf,
}

impl IsolabRun {
    fn new(lab: &UserLab) -> IsolabRun {
        // isolab finds the probe and the steps next to its own binary.
        let isolab = lab.runnable(std::path::PathBuf::from(env!("CARGO_BIN_EXE_isolab")));
        lab.runnable(target_dir().join("probe"));
        lab.runnable(target_dir().join(format!("{STEP}-solution")));
        let tmp = lab.rootfs().parent().unwrap().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        lab.give_to_user(&tmp);
        IsolabRun { isolab, tmp }
    }

    /// `isolab run --reference 6 --map-range -- COMMAND`.
    fn command(&self, lab: &UserLab, command: &[&str]) -> std::process::Command {
        let mut args = vec!["run", "--reference", "6", "--map-range", "--"];
        args.extend(command);
        let mut cmd = lab.command(&self.isolab, &args, None);
        cmd.env("ISOLAB_PREBUILT", "1").env("TMPDIR", &self.tmp);
        cmd
    }

    /// How many entries its runs left in `tmp`.
    fn left(&self) -> usize {
        std::fs::read_dir(&self.tmp).unwrap().count()
    }
}

/// `cargo run -- run 6` leaves nothing behind. A box with `--map-range` may leave
/// files owned by IDs of the caller's range, which the caller may not remove on
/// the host, and close a directory to its owner: `isolab run` removes its rootfs
/// through a helper mapped to the range. Killed with SIGKILL, it takes the box
/// along (the kernel kills the step with it), and the next run removes the
/// directory it left.
#[test]
fn cargo_run_6_leaves_nothing_behind() {
    needs!(user, userns);
    compares!(subuid, "--map-range, which maps the caller's range of IDs");
    let lab = UserLab::new(&normal_user().unwrap());
    if !has_busybox_in(&lab.rootfs()) {
        return;
    }
    let isolab = IsolabRun::new(&lab);
    let script = "mkdir /tmp/k && touch /tmp/k/x && chown -R 1:1 /tmp/k && chmod 000 /tmp/k";
    let run = run_with(isolab.command(&lab, &["/bin/sh", "-c", script]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        isolab.left(),
        0,
        "left in {}: {}",
        isolab.tmp.display(),
        run.stderr
    );
    // SIGKILL isolab while its box runs, after it made files of its range.
    let script =
        "mkdir /tmp/k && chown 1:1 /tmp/k && touch /tmp/k/x && exec /bin/probe wait-signal";
    let mut running = Running::start(isolab.command(&lab, &["/bin/sh", "-c", script]));
    running.wait_for_line("ready");
    // isolab's children: the runtime, and the probe that holds the caller's key.
    let runtime: Vec<u32> = children_of(running.child.id())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() != "probe")
        })
        .collect();
    assert_eq!(runtime.len(), 1, "isolab's child, the runtime");
    let ns = box_pid_namespace(runtime[0]);
    running.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(running.finish().0, 137);
    assert_no_process_in(&ns);
    assert!(
        isolab.left() > 0,
        "a killed isolab cannot remove its directory"
    );
    let run = run_with(isolab.command(&lab, &["/bin/probe", "exit", "0"]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        isolab.left(),
        0,
        "the next run removed what the killed one left: {}",
        run.stderr
    );
}

/// What a hostile box leaves, `isolab run` removes without running any of it and
/// without following it. The box replaces /bin/probe with a script that says so
/// on stderr if anything runs it again (isolab's cleanup once ran `probe remove` in
/// a box on this rootfs), and leaves a tree 4000 levels deep (its path twice
/// PATH_MAX, made 1000 levels at a time), directories closed to their owners, one
/// of them an ID of the caller's range, and links to a file and a directory of the
/// caller's outside the box. All of it goes, and what the links point to stays.
#[test]
fn isolab_run_removes_what_a_hostile_box_left_without_running_it() {
    needs!(user, userns);
    compares!(subuid, "--map-range, which maps the caller's range of IDs");
    let lab = UserLab::new(&normal_user().unwrap());
    if !has_busybox_in(&lab.rootfs()) {
        return;
    }
    let isolab = IsolabRun::new(&lab);
    // The caller's: a link the cleanup followed would remove them.
    let host = lab.rootfs().parent().unwrap().join("host");
    std::fs::create_dir_all(host.join("dir")).unwrap();
    std::fs::write(host.join("file"), "the caller's\n").unwrap();
    std::fs::write(host.join("dir/inner"), "the caller's too\n").unwrap();
    lab.give_to_user(&host);
    // What the script says when it runs: not in its text, which isolab echoes.
    const RAN: &str = "the /bin/probe the box left ran: 42";
    let script = format!(
        r#"set -e
rm /bin/probe
printf '#!/bin/sh\necho "the /bin/probe the box left ran: $((6 * 7))" >&2\n' > /bin/probe
chmod 755 /bin/probe
p=d; i=1; while [ $i -lt 1000 ]; do p=$p/d; i=$((i + 1)); done
mkdir -p /tmp/deep/$p
for n in 1 2 3; do mkdir -p /tmp/x/$p; mv /tmp/deep /tmp/x/$p/; mv /tmp/x /tmp/deep; done
ln -s {dir} /tmp/deep/$p/to-a-dir
mkdir -p /tmp/range/inner; touch /tmp/range/inner/x; chown -R 1:1 /tmp/range
chmod 000 /tmp/range/inner /tmp/range
mkdir /tmp/shut; touch /tmp/shut/x; chmod 000 /tmp/shut
ln -s {file} /tmp/to-a-file
ln -s {dir} /tmp/to-a-dir
ln -s {dir} /tmp/shut-link
echo made"#,
        file = host.join("file").display(),
        dir = host.join("dir").display(),
    );
    let run = run_with(isolab.command(&lab, &["/bin/sh", "-c", &script]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "made\n", "{}", run.stderr);
    assert!(!run.stderr.contains(RAN), "{}", run.stderr);
    assert_eq!(
        isolab.left(),
        0,
        "left in {}: {}",
        isolab.tmp.display(),
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(host.join("file")).unwrap(),
        "the caller's\n"
    );
    let inner = std::fs::read_to_string(host.join("dir/inner")).unwrap();
    assert_eq!(inner, "the caller's too\n");
}

#[test]
fn the_rootless_box_runs_ordinary_work() {
    needs!(user, userns);
    let lab = UserLab::new(&normal_user().unwrap());
    for (command, code) in [
        (&["/bin/probe", "exit", "3"][..], 3),
        (&["/bin/probe", "kill-self", "TERM"], 143),
    ] {
        let run = run_as_user(&lab, &[], command);
        assert_eq!(run.code, Some(code), "{command:?}: {}", run.stderr);
    }
    let orphan = run_as_user(&lab, &[], &["/bin/probe", "orphan"]);
    assert!(
        orphan.stdout.contains("orphan reaped: yes"),
        "{}",
        orphan.stdout
    );
}

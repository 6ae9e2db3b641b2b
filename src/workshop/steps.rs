//! The ladder of steps: what the CLI, the tour and the tests know about each one.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// What a step needs from the machine to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing special (step 00 runs as any user, though the probe sees more as root).
    Nothing,
    /// Root, for chroot, namespaces, mounts and cgroups.
    Root,
    /// A normal user, not root: the step makes a user namespace of its own, and
    /// refuses to run as root (step 06).
    NormalUser,
    /// Read-write access to /dev/kvm.
    Kvm,
    /// Both: root for the container steps it runs, and /dev/kvm for its VMs (step 10).
    RootAndKvm,
}

#[derive(Debug)]
pub struct Step {
    pub number: u8,
    /// The binary's name after the number: `chroot` for `01-chroot`.
    pub slug: &'static str,
    pub title: &'static str,
    pub needs: Needs,
    /// Does it run its command from a rootfs (`--rootfs DIR`)? The container steps
    /// after 00 do; step 00 runs it on the host, the VM steps run a guest.
    pub rootfs: bool,
    /// The reference program's source, for the exercise generator and `cargo run -- hint`.
    pub solution: &'static str,
    /// A nudge beyond the TODO comments, for `cargo run -- hint N`.
    pub hint: &'static str,
    /// What the learner has built once the check passes.
    pub built: &'static str,
    /// Extra arguments the tour gives this step (before `--`).
    pub tour_args: &'static [&'static str],
}

impl Step {
    /// `01-chroot`: the learner's binary and the chapter file's stem.
    pub fn name(&self) -> String {
        format!("{:02}-{}", self.number, self.slug)
    }

    /// `01-chroot-solution`: the reference binary.
    pub fn solution_bin(&self) -> String {
        format!("{}-solution", self.name())
    }

    /// `chroot`: the test file (tests/chroot.rs) and its snapshots.
    pub fn test_name(&self) -> String {
        self.slug.replace('-', "_")
    }

    /// Does it run a guest, for the tour's table of VMs? The KVM steps do, and the
    /// jailed VM, which also needs root for its box.
    pub fn runs_a_guest(&self) -> bool {
        self.needs == Needs::Kvm || self.slug == "jailed-vm"
    }

    /// `01-chroot.rs`, under both solutions/ and chapters/.
    pub fn file(&self) -> String {
        format!("{}.rs", self.name())
    }

    /// The probe as this step's box sees it: `/bin/probe` in the rootfs, or, for a
    /// step without one, the probe on the host (`on_host`).
    pub fn probe(&self, on_host: &Path) -> PathBuf {
        if self.rootfs {
            PathBuf::from("/bin/probe")
        } else {
            on_host.to_path_buf()
        }
    }

    /// The arguments that run `command` in this step's box: `--rootfs ROOTFS` when
    /// the step takes one, then `flags`, `--` and the command. The one place a step's
    /// command line is made (the tour and `cargo run -- run N` use it).
    pub fn args<S: AsRef<OsStr>>(
        &self,
        rootfs: &Path,
        flags: &[S],
        command: &[S],
    ) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if self.rootfs {
            args.extend(["--rootfs".into(), rootfs.as_os_str().to_owned()]);
        }
        args.extend(flags.iter().map(|f| f.as_ref().to_owned()));
        args.push("--".into());
        args.extend(command.iter().map(|c| c.as_ref().to_owned()));
        args
    }
}

pub const STEPS: &[Step] = &[
    Step {
        number: 0,
        slug: "process",
        title: "a plain process: fork, exec, wait",
        needs: Needs::Nothing,
        rootfs: false,
        solution: include_str!("../../solutions/00-process.rs"),
        hint: "fork(2) returns twice. In the child, execv(2) replaces the program and only \
               returns on error. In the parent, waitpid(2) returns a WaitStatus: Exited(pid, code) \
               passes the code on; Signaled(pid, signal, core) becomes 128 + the signal's number, \
               as a shell reports it.",
        built: "a runtime that starts any command and passes its exit status on, exactly as a shell does",
        tour_args: &[],
    },
    Step {
        number: 1,
        slug: "chroot",
        title: "chroot: a root filesystem of its own",
        needs: Needs::Root,
        rootfs: true,
        solution: include_str!("../../solutions/01-chroot.rs"),
        hint: "chroot(2) changes what \"/\" means for this process, but not its working directory, \
               which still points into the host's tree. Call chdir(\"/\") right after, so that \".\" is \
               inside the new root too.",
        built: "a box whose \"/\" is the rootfs: the canary is hidden by path, though the chroot escape still finds it",
        tour_args: &[],
    },
    Step {
        number: 2,
        slug: "namespaces",
        title: "namespaces: its own hostname and PIDs, and a real init",
        needs: Needs::Root,
        rootfs: true,
        solution: include_str!("../../solutions/02-namespaces.rs"),
        hint: "unshare(CLONE_NEWPID) moves the caller's next child, not the caller, so it comes \
               right before the fork. In init, unshare UTS, IPC and mount namespaces for itself, \
               then sethostname. In supervise, signals.wait() returns one signal at a time: pass \
               TERM, INT and HUP on with kill(child, signal); on SIGCHLD call \
               waitpid(None, Some(WaitPidFlag::WNOHANG)) in a loop, because one SIGCHLD may stand \
               for several dead children, and stop at StillAlive or ECHILD.",
        built: "a box with its own hostname and PID numbers, run by an init that reaps orphans and passes signals on",
        tour_args: &[],
    },
    Step {
        number: 3,
        slug: "mount-namespace",
        title: "mount namespace: pivot_root, a /proc and /dev of its own",
        needs: Needs::Root,
        rootfs: true,
        solution: include_str!("../../solutions/03-mount-namespace.rs"),
        hint: "Order matters. Make every mount private (MS_REC | MS_PRIVATE on \"/\") before \
               mounting anything, or your mounts show up on the host. pivot_root needs the new \
               root to be a mount point: bind-mount the rootfs onto itself first. After \
               chdir(rootfs) and pivot_root(\".\", \".\"), the old root sits under the new one \
               at \".\"; umount2(\".\", MNT_DETACH) removes it. Mount /proc only after the pivot, \
               from init, so it shows init's PID namespace.",
        built: "a box with its own mount table and root: only its own processes in /proc, and every route to the host canary closed",
        tour_args: &[],
    },
    Step {
        number: 4,
        slug: "cgroups",
        title: "cgroups: memory, PID and CPU limits",
        needs: Needs::Root,
        rootfs: true,
        solution: include_str!("../../solutions/04-cgroups.rs"),
        hint: "A limit is a number written into a file of the box's cgroup directory; joining \
               is writing \"0\" into its cgroup.procs (v2) or tasks (v1). v2 names: memory.max, pids.max, and \
               cpu.max holding \"QUOTA PERIOD\". v1 names: memory.limit_in_bytes, pids.max, and \
               cpu.cfs_period_us then cpu.cfs_quota_us. Try `04-cgroups --show-limit-files \
               --memory 64m --pids-limit 32 --cpus 0.5 --rootfs DIR -- /bin/probe` against the \
               reference to see what each limit becomes.",
        built: "a box with a budget the kernel enforces: a memory hog is killed, a fork bomb stops, a spinner is throttled",
        tour_args: &["--memory", "64m", "--pids-limit", "32", "--cpus", "0.5"],
    },
    Step {
        number: 5,
        slug: "hardening",
        title: "hardening: capabilities, no_new_privs, seccomp, a network namespace",
        needs: Needs::Root,
        rootfs: true,
        solution: include_str!("../../solutions/05-hardening.rs"),
        hint: "Drop from the bounding set first (it needs CAP_SETPCAP, which you keep), then \
               clear the ambient set, then capset effective = permitted = the kept set (a \
               caps::Sets; the kept set is a u64 mask, bit N for capability N). A bounding set \
               you forgot to cut shows when no_new_privs is off: `cargo run -- run 5 --break \
               no-new-privs` then reports root's capabilities again. In the filter, each refused \
               call is two instructions: jump_if_equal(nr, 0, 1) falls through to \
               ret(errno(EPERM)) when it matches, and skips it when not; the other way round, \
               the filter refuses everything else and the box dies at once without a word. In \
               mask_proc, /dev/null must exist before it is mounted over a file (mask_proc runs \
               after mount_dev), and a read-only bind takes two mounts: the bind, then the \
               remount.",
        built: "a box that may not mount, reboot, load modules, set the clock, trace, make namespaces or reach the network, nor reach the host through /proc, its terminal, planted files or its environment",
        tour_args: &["--memory", "64m", "--pids-limit", "32", "--cpus", "0.5"],
    },
    Step {
        number: 6,
        slug: "user-namespace",
        title: "user namespace: a rootless box, run by a normal user",
        needs: Needs::NormalUser,
        rootfs: true,
        solution: include_str!("../../solutions/06-user-namespace.rs"),
        hint: "Before the unshare, remember who you are: after unshare(CLONE_NEWUSER) you are \
               uid 65534 (\"nobody\") until the map is written. Write \"deny\" to \
               /proc/self/setgroups before gid_map, or the kernel refuses the gid_map (EPERM); \
               map only your own IDs, to themselves. In build_root, the rootfs must be a mount \
               of its own (a bind onto itself) before lock_down_root: mount_setattr(2) acts \
               on whole mounts, and says EINVAL for a directory inside one. Mount the \
               new /proc inside the rootfs before pivot_into: once the host's /proc has been \
               detached, the kernel refuses a user namespace a fresh one. Compare your report \
               with the reference: `uid on the host` says whom the host sees.",
        built: "a box a normal user runs without sudo, whose root the host treats as that user: host settings, device nodes and root's files refused, its walls locked, your environment, keyring, terminal and files kept out",
        tour_args: &["--memory", "64m", "--pids-limit", "32", "--cpus", "0.5"],
    },
    Step {
        number: 7,
        slug: "kvm-real-mode",
        title: "a virtual machine on KVM, in real mode",
        needs: Needs::Kvm,
        rootfs: false,
        solution: include_str!("../../solutions/07-kvm-real-mode.rs"),
        hint: "Every _IO ioctl is declared with ioctl_write_int_bad!(name, request_code_none!(KVMIO, nr)) \
               and called with an explicit 0 (or its integer argument): KVM answers EINVAL to a stray \
               argument. The fds come back as the ioctl's return value. In real mode an address is \
               segment base + offset, and KVM wants both the selector and the base: selector 0x100, \
               base 0x1000. In decode, the exit reason says which member of the union is valid.",
        built: "a hypervisor: a VM with its own memory and vCPU, running your guest's code and handling each of its exits",
        tour_args: &[],
    },
    Step {
        number: 8,
        slug: "kvm-long-mode",
        title: "long mode: page tables, MMIO and hypercalls",
        needs: Needs::Kvm,
        rootfs: false,
        solution: include_str!("../../solutions/08-kvm-long-mode.rs"),
        hint: "KVM_SET_SREGS sets the state after the switch to long mode, so EFER needs LMA as well \
               as LME, and CR4 needs PAE, or the ioctl says EINVAL. The CPU runs on the segment copies \
               in kvm_segment: cs needs l = 1 (64-bit) and present = 1. For an MMIO read, write the \
               answer into run.run_mut().__bindgen_anon_1.mmio.data before the next KVM_RUN.",
        built: "a 64-bit guest in the long mode you switched on, a device it reaches by MMIO, and an exit code it hands back",
        tour_args: &[],
    },
    Step {
        number: 9,
        slug: "jailed-vm",
        title: "the hypervisor in a jail: both walls at once",
        needs: Needs::RootAndKvm,
        rootfs: false,
        solution: include_str!("../../solutions/09-jailed-vm.rs"),
        hint: "bind_device: `mount(...): ENOENT` means nothing is at the target yet, ENOTDIR \
               that a directory is there where the device needs a file, and `type annotations \
               needed` that None wants its type: None::<&str>. allow_list: `the seccomp filter \
               stopped the VMM at NAME` means that NAME never reached its ALLOW (a jump that skips \
               too far or not far enough); `cargo run -- run 9 --show-filter` runs your filter over \
               every call and lists what it lets through, and `openat ... ALLOW` there means a \
               jump the wrong way round.",
        built: "a VMM in a jail of its own: its guest's memory and CPU time charged to the box, and a VMM the guest takes over still held by an allow-list",
        tour_args: &["--memory", "64m", "--pids-limit", "16", "--cpus", "0.5"],
    },
    Step {
        number: 10,
        slug: "compare",
        title: "both worlds, measured",
        needs: Needs::RootAndKvm,
        rootfs: false,
        solution: include_str!("../../solutions/10-compare.rs"),
        hint: "time_run: Instant::now() before command.status(), elapsed() right after it, and \
               only then the status: if !status.success(), bail! with command.get_program() and \
               the status. summarize: let mut sorted = samples.to_vec(); \
               sorted.sort_by(f64::total_cmp); with n samples the median is sorted[n / 2] when n is \
               odd, and (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 when it is even; min is \
               sorted[0], max is sorted[n - 1]. The check compares each row's median, min and max \
               with its samples in the JSON.",
        built: "a measuring harness: the medians and spreads of both worlds, on your own machine",
        tour_args: &["--runs", "1"],
    },
];

/// The step with this number.
pub fn find(number: u8) -> Option<&'static Step> {
    STEPS.iter().find(|s| s.number == number)
}

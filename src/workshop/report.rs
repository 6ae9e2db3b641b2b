//! The probe's report: its sections and the keys of its lines, defined once. The
//! probe prints with them (an exhaustive match, so a new key cannot go unprinted),
//! and the scorecard, the tests and step 10 read with them.

pub use crate::lines::{Key as _, Lines as Report, line};

crate::keys! {
    /// A line of `probe report`, in the order the probe prints them.
    pub enum Key {
        Pid = "pid",
        Ppid = "ppid",
        Uid = "uid",
        UidOnTheHost = "uid on the host",
        Hostname = "hostname",
        Kernel = "kernel",
        Machine = "machine",
        Root = "root",
        RootMount = "root mount",
        WorkingDirectory = "working directory",
        Processes = "processes",
        Mounts = "mounts",
        OpenFds = "open fds",
        CanaryByPath = "canary by path",
        CanaryViaChrootEscape = "canary via chroot escape",
        CanaryViaProcRoot = "canary via /proc/*/root",
        CanaryViaInheritedFd = "canary via inherited fd",
        CanaryViaEnvironment = "canary via environment",
        CanaryViaSessionKeyring = "canary via session keyring",
        CanaryByKeySerial = "canary by key serial",
        MemoryLimit = "memory limit",
        PidsLimit = "pids limit",
        CpuLimit = "cpu limit",
        Capabilities = "capabilities",
        CapabilitiesCountIn = "capabilities count in",
        NoNewPrivs = "no_new_privs",
        Seccomp = "seccomp",
        MountAFilesystem = "mount a filesystem",
        Reboot = "reboot",
        LoadAModule = "load a module",
        SetTheClock = "set the clock",
        RaiseMyPriority = "raise my priority",
        NewUserNamespace = "new user namespace",
        PtraceMyParent = "ptrace my parent",
        TurnOffAslr = "turn off ASLR",
        IoUring = "io_uring",
        SetuidRootBinary = "setuid-root binary",
        Network = "network",
        OutsideNetwork = "outside network",
        VsockSocket = "vsock socket",
        ChangeAKernelSetting = "change a kernel setting",
        ReadTheKernelsTables = "read the kernel's tables",
        OpenInitsProgram = "open init's program",
        TypeIntoMyTerminal = "type into my terminal",
        PlantASetuidFile = "plant a setuid file",
        PlantADeviceNode = "plant a device node",
    }
}

/// The report's sections: a `## title` and the keys under it.
pub const SECTIONS: &[(&str, &[Key])] = {
    use Key::*;
    &[
        (
            "who am I",
            &[Pid, Ppid, Uid, UidOnTheHost, Hostname, Kernel, Machine],
        ),
        (
            "what I can see",
            &[
                Root,
                RootMount,
                WorkingDirectory,
                Processes,
                Mounts,
                OpenFds,
            ],
        ),
        (
            "can I read the host canary",
            &[
                CanaryByPath,
                CanaryViaChrootEscape,
                CanaryViaProcRoot,
                CanaryViaInheritedFd,
                CanaryViaEnvironment,
                CanaryViaSessionKeyring,
                CanaryByKeySerial,
            ],
        ),
        ("what I may spend", &[MemoryLimit, PidsLimit, CpuLimit]),
        (
            "what I may ask the kernel",
            &[
                Capabilities,
                CapabilitiesCountIn,
                NoNewPrivs,
                Seccomp,
                MountAFilesystem,
                Reboot,
                LoadAModule,
                SetTheClock,
                RaiseMyPriority,
                NewUserNamespace,
                PtraceMyParent,
                TurnOffAslr,
                IoUring,
                SetuidRootBinary,
                Network,
                OutsideNetwork,
                VsockSocket,
            ],
        ),
        (
            "what I can do to the host",
            &[
                ChangeAKernelSetting,
                ReadTheKernelsTables,
                OpenInitsProgram,
                TypeIntoMyTerminal,
                PlantASetuidFile,
                PlantADeviceNode,
            ],
        ),
    ]
};

crate::keys! {
    /// The lines of `probe raise-limits` besides the limits (which it prints with
    /// the report's own keys).
    pub enum Raise {
        MountCgroups = "mount my own cgroup filesystems",
    }
}

crate::keys! {
    /// The lines step 09's VMM prints about its jail, looking around from inside it
    /// before its guest runs (the probe cannot run there: the jail holds no programs).
    pub enum Jail {
        User = "user",
        Root = "root",
        Dev = "/dev",
        Processes = "processes",
        Capabilities = "capabilities",
        NoNewPrivs = "no_new_privs",
        Network = "network",
        Environment = "environment",
        Stdin = "stdin",
        Stdout = "stdout",
        SessionKeyring = "session keyring",
        Seccomp = "seccomp",
    }
}

crate::keys! {
    /// The lines of `probe syscalls`, the timer step 10 reads.
    pub enum Timer {
        Syscall = "syscall",
        Calls = "calls",
        Total = "total",
        Each = "each",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_one_section_in_order() {
        let listed: Vec<Key> = SECTIONS
            .iter()
            .flat_map(|(_, keys)| keys.iter().copied())
            .collect();
        assert_eq!(listed, Key::ALL);
    }
}

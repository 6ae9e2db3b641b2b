//! Where the numbers were measured: one line about this machine.

use std::path::Path;

/// Where the numbers were measured.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    /// The CPU says it runs under a hypervisor (the `hypervisor` flag).
    pub virtualized: bool,
    /// Which KVM module provides /dev/kvm.
    pub kvm: String,
    pub cgroups: String,
    /// `release` or `debug`: the profile the step binaries were built with.
    pub build: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let virtualized = field("flags").is_some_and(|f| f.split(' ').any(|f| f == "hypervisor"));
        let kvm = ["kvm_intel", "kvm_amd", "kvm_pvm"]
            .into_iter()
            .filter(|m| Path::new("/sys/module").join(m).exists())
            .collect::<Vec<_>>()
            .join(", ");
        use crate::container::cgroup::Kind;
        let cgroups = match crate::container::cgroup::Layout::detect().map(|l| l.kind) {
            Ok(Kind::V2) => "v2",
            Ok(Kind::V1) => "v1",
            Ok(Kind::Hybrid) => "hybrid",
            _ => "none",
        };
        Machine {
            cpu: field("model name").unwrap_or_else(|| "an unknown CPU".into()),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            virtualized,
            kvm: if kvm.is_empty() { "?".into() } else { kvm },
            cgroups: cgroups.into(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
        }
    }

    /// One line: `Intel(R) Xeon(R) Processor, 2 CPUs, Linux 6.18.44, ...`.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} CPUs, Linux {}, {}, KVM from {}, cgroups {}, {} build",
            self.cpu,
            self.cpus,
            self.kernel,
            if self.virtualized {
                "itself a VM"
            } else {
                "bare metal"
            },
            self.kvm,
            self.cgroups,
            self.build
        )
    }
}

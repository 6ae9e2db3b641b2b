//! The container world: what the container steps share that is not the lesson.
//!
//! - [`rootfs`]: building a minimal root filesystem around the probe;
//! - [`canary`]: the host's canary, a file (and a variable) the box must not reach;
//! - [`cgroup`]: how this host lays out its cgroups, and a box's use of them;
//! - [`caps`] and [`seccomp`]: thin wrappers over capget/capset/prctl and BPF;
//! - [`relay`]: the caller's terminal kept out of the box: pipes, or a
//!   pseudo-terminal of the box's own, relayed by the runtime;
//! - [`subid`]: the ranges of IDs `/etc/subuid` and `/etc/subgid` hand a user, and
//!   a helper of ours that is root over them, mapped from outside;
//! - [`tree`]: removing a tree a box filled (a rootfs, a box's cgroups) without
//!   recursion, long paths or following its symlinks;
//! - [`syscalls`] and [`sigsys`]: the system calls by name, and naming the one a
//!   filter refused (step 09).
//!
//! The lessons themselves (namespaces, pivot_root, the cgroup files, the filter)
//! are in `solutions/`.

pub mod canary;
pub mod caps;
pub mod cgroup;
pub mod relay;
pub mod rootfs;
pub mod seccomp;
pub mod sigsys;
pub mod subid;
pub mod syscalls;
pub mod tree;

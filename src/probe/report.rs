//! The report: sections in a fixed order, one `key: value` line per fact.

use crate::{host, limits, privileges, routes, view};
use std::path::Path;
use std::process::ExitCode;

pub fn print(canary: Option<&Path>) -> ExitCode {
    // Descriptors first: anything we open later must not count as inherited.
    let fds = view::open_fds();

    section("who am I");
    line("pid", view::pid());
    line("ppid", view::ppid());
    line("uid", view::uid());
    line("hostname", view::hostname());
    line("kernel", view::kernel());

    section("what I can see");
    line("root", view::root_entries());
    line("root mount", view::root_mount());
    line("working directory", view::working_directory());
    line("processes", view::processes());
    line("mounts", view::mounts());
    line("open fds", view::describe_fds(&fds));

    section("can I read the host canary");
    line("canary by path", routes::by_path(canary));
    line("canary via chroot escape", routes::chroot_escape(canary));
    line("canary via /proc/*/root", routes::proc_root(canary));
    line(
        "canary via inherited fd",
        routes::inherited_fd(canary, &fds),
    );
    line("canary via environment", routes::environment());

    section("what I may spend");
    let cgroups = limits::Cgroups::find();
    line("memory limit", cgroups.memory());
    line("pids limit", cgroups.pids());
    line("cpu limit", cgroups.cpu());

    section("what I may ask the kernel");
    line("capabilities", privileges::capabilities());
    line(
        "capabilities after exec",
        privileges::capabilities_after_exec(),
    );
    line("no_new_privs", privileges::no_new_privs());
    line("seccomp", privileges::seccomp());
    line("mount a filesystem", privileges::try_mount());
    line("reboot", privileges::try_reboot());
    line("load a module", privileges::try_load_module());
    line("set the clock", privileges::try_set_clock());
    line("raise my priority", privileges::try_raise_priority());
    line("new user namespace", privileges::try_user_namespace());
    line("ptrace my parent", privileges::try_ptrace_parent());
    line("turn off ASLR", privileges::try_personality());
    line("io_uring", privileges::try_io_uring());
    line("setuid-root binary", privileges::try_setuid_binary());
    line("network", privileges::network());
    line("outside network", privileges::outside_network());
    line("vsock socket", privileges::try_vsock());

    section("what I can do to the host");
    line("change a kernel setting", host::kernel_settings());
    line("read the kernel's tables", host::kernel_tables());
    line("open init's program", host::init_program());
    line("type into my terminal", host::type_into_terminal());
    line("plant a setuid file", host::plant_setuid_file());
    line("plant a device node", host::plant_device_node());
    ExitCode::SUCCESS
}

fn section(title: &str) {
    println!("## {title}");
}

fn line(key: &str, value: String) {
    println!("{key}: {value}");
}

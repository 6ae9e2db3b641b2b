//! The report: sections in a fixed order, one `key: value` line per fact. The
//! sections and keys are the workshop's (isolab::workshop::report), shared with
//! everything that reads a report back; here is how the probe finds each value.

use crate::{host, limits, privileges, routes, view};
use isolab::workshop::report::{Key, SECTIONS, line};
use std::os::fd::RawFd;
use std::path::Path;
use std::process::ExitCode;

pub fn print(canary: Option<&Path>, key_serial: Option<i32>) -> ExitCode {
    // Descriptors first: anything we open later must not count as inherited.
    let fds = view::open_fds();
    let cgroups = limits::Cgroups::find();
    for (title, keys) in SECTIONS {
        println!("## {title}");
        for key in *keys {
            let given = Given { canary, key_serial };
            println!("{}", line(*key, value(*key, &given, &fds, &cgroups)));
        }
    }
    ExitCode::SUCCESS
}

/// What the caller told the probe to look for: the host canary's path, and the
/// serial number of a key of the caller's.
struct Given<'a> {
    canary: Option<&'a Path>,
    key_serial: Option<i32>,
}

/// The value of one line. The match has an arm for every key: a key added to the
/// report without a way to find its value does not compile.
fn value(key: Key, given: &Given, fds: &[RawFd], cgroups: &limits::Cgroups) -> String {
    let canary = given.canary;
    match key {
        Key::Pid => view::pid(),
        Key::Ppid => view::ppid(),
        Key::Uid => view::uid(),
        Key::UidOnTheHost => view::uid_on_the_host(),
        Key::Hostname => view::hostname(),
        Key::Kernel => view::kernel(),
        Key::Machine => view::machine(),
        Key::Root => view::root_entries(),
        Key::RootMount => view::root_mount(),
        Key::WorkingDirectory => view::working_directory(),
        Key::Processes => view::processes(),
        Key::Mounts => view::mounts(),
        Key::OpenFds => view::describe_fds(fds),
        Key::CanaryByPath => routes::by_path(canary),
        Key::CanaryViaChrootEscape => routes::chroot_escape(canary),
        Key::CanaryViaProcRoot => routes::proc_root(canary),
        Key::CanaryViaInheritedFd => routes::inherited_fd(canary, fds),
        Key::CanaryViaEnvironment => routes::environment(),
        Key::CanaryViaSessionKeyring => isolab::container::canary::key_in_reach(),
        Key::CanaryByKeySerial => isolab::container::canary::key_by_serial(given.key_serial),
        Key::MemoryLimit => cgroups.memory(),
        Key::PidsLimit => cgroups.pids(),
        Key::CpuLimit => cgroups.cpu(),
        Key::Capabilities => privileges::capabilities(),
        Key::CapabilitiesCountIn => privileges::capabilities_count_in(),
        Key::NoNewPrivs => privileges::no_new_privs(),
        Key::Seccomp => privileges::seccomp(),
        Key::MountAFilesystem => privileges::try_mount(),
        Key::Reboot => privileges::try_reboot(),
        Key::LoadAModule => privileges::try_load_module(),
        Key::SetTheClock => privileges::try_set_clock(),
        Key::RaiseMyPriority => privileges::try_raise_priority(),
        Key::NewUserNamespace => privileges::try_user_namespace(),
        Key::PtraceMyParent => privileges::try_ptrace_parent(),
        Key::TurnOffAslr => privileges::try_personality(),
        Key::IoUring => privileges::try_io_uring(),
        Key::SetuidRootBinary => privileges::try_setuid_binary(),
        Key::Network => privileges::network(),
        Key::OutsideNetwork => privileges::outside_network(),
        Key::VsockSocket => privileges::try_vsock(),
        Key::ChangeAKernelSetting => host::kernel_settings(),
        Key::ReadTheKernelsTables => host::kernel_tables(),
        Key::OpenInitsProgram => host::init_program(),
        Key::TypeIntoMyTerminal => host::type_into_terminal(),
        Key::PlantASetuidFile => host::plant_setuid_file(),
        Key::PlantADeviceNode => host::plant_device_node(),
    }
}

//! `isolab guest`: boot a real Linux kernel under QEMU and run the probe in it, as
//! a plain process of that VM, beside the host's report. The VM half's answer to
//! "a container must share the host's kernel; a VM need not", shown rather than
//! told.

use crate::cargo::{build_references, target_dir};
use anyhow::{Context, Result};
use isolab::vm::linux::{Guest, GuestRun, run};
use std::process::ExitCode;
use std::time::Duration;

/// Boot the guest with `memory_mib` and `cpus`, run the probe in it (with a canary
/// made on the host, which the guest cannot reach), and print what came back.
pub fn guest(memory_mib: u32, cpus: u32) -> Result<ExitCode> {
    if !isolab::workshop::env::prebuilt() {
        build_references()?;
    }
    let ran = probe_in_guest(memory_mib, cpus)?;
    let host = nix::sys::utsname::uname().context("uname()")?;
    println!("{ran}");
    println!(
        "the host's kernel: Linux {}; the guest's: Linux {}",
        host.release().to_string_lossy(),
        ran.release
    );
    println!(
        "the guest: {} MiB, {} CPU{}\n",
        memory_mib,
        cpus,
        if cpus == 1 { "" } else { "s" }
    );
    let out = &ran.outputs[0];
    print!("{}", out.stdout);
    if out.code != 0 {
        eprint!("{}", out.stderr);
    }
    Ok(ExitCode::from(out.code.clamp(0, 255) as u8))
}

/// The probe's report from inside a freshly booted guest (the tour uses it too).
pub fn probe_in_guest(memory_mib: u32, cpus: u32) -> Result<GuestRun> {
    let canary = isolab::container::canary::Canary::create()?;
    let mut guest = Guest::new(target_dir()?.join("probe"));
    guest.memory_mib = memory_mib;
    guest.cpus = cpus;
    guest.timeout = Duration::from_secs(90);
    guest.commands.push(format!(
        "/rootfs/bin/probe --canary {}",
        canary.path().display()
    ));
    eprintln!(
        "isolab: booting Debian's kernel under QEMU with the probe inside (seconds with \
         KVM, 3-10 s emulated)"
    );
    run(&guest)
}

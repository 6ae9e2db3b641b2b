//! A guest that never exits would keep KVM_RUN from returning: the watchdog, and what
//! KVM_RUN's failure means.

use anyhow::{Context, Result};
use nix::errno::Errno;

/// What KVM_RUN's failure means. EINTR is our own watchdog (see [`Watchdog`]): the
/// guest ran for seconds without a single exit.
pub fn run_failed(errno: Errno) -> anyhow::Error {
    if errno == Errno::EINTR {
        anyhow::anyhow!(
            "the guest ran for {} s without an exit, so the watchdog stopped it: is it in an endless loop?",
            Watchdog::SECONDS
        )
    } else {
        anyhow::Error::new(errno).context("ioctl(vcpu, KVM_RUN, 0)")
    }
}

/// A guest in an endless loop never exits, so KVM_RUN would never return. The
/// watchdog sends us SIGALRM after a few seconds; a handler that does nothing is
/// enough to make KVM_RUN return EINTR. Disarmed when dropped.
pub struct Watchdog(());

impl Watchdog {
    pub const SECONDS: u32 = 5;

    pub fn start() -> Result<Watchdog> {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        extern "C" fn wake(_: nix::libc::c_int) {}
        // No SA_RESTART: the point is to interrupt KVM_RUN.
        let action = SigAction::new(SigHandler::Handler(wake), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(Signal::SIGALRM, &action) }.context("sigaction(SIGALRM)")?;
        nix::unistd::alarm::set(Self::SECONDS);
        Ok(Watchdog(()))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        nix::unistd::alarm::cancel();
    }
}

//! Ctrl-C between two runs ends the measuring through its normal path, which
//! removes the rootfs.

use anyhow::{Context, Result, bail};
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turn SIGINT and SIGTERM into a flag that [`check_interrupted`] reads between
/// runs, so that Ctrl-C ends the program through its normal path, which removes
/// the rootfs. (The step being measured gets the terminal's SIGINT too, and its
/// run fails, which also ends the measuring.)
pub fn catch_interrupts() -> Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    extern "C" fn note(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::SeqCst);
    }
    let action = SigAction::new(
        SigHandler::Handler(note),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("sigaction({signal})"))?;
    }
    Ok(())
}

/// Fail if SIGINT or SIGTERM arrived since [`catch_interrupts`].
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: stopped measuring, and removed the rootfs");
    }
    Ok(())
}

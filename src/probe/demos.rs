//! Small demonstrations for the tests and the book. Each one bounds itself (a
//! ceiling, a count, a time), so a missing limit shows up as "not enforced" and never
//! harms the machine.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::{ForkResult, Pid, fork, getpid};
use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn say(text: &str) {
    println!("{text}");
    let _ = std::io::stdout().flush();
}

pub fn kill_self(signal: &str) -> ExitCode {
    let sig = signal
        .parse::<i32>()
        .ok()
        .and_then(|n| Signal::try_from(n).ok())
        .or_else(|| Signal::from_str(&format!("SIG{}", signal.trim_start_matches("SIG"))).ok());
    let Some(sig) = sig else {
        eprintln!("probe: error: unknown signal {signal:?}: give a number or a name like TERM");
        return ExitCode::from(2);
    };
    // The default action of most signals ends us; in case this one is ignored or
    // handled by default as "continue", say so.
    let _ = kill(getpid(), sig);
    std::thread::sleep(Duration::from_millis(100));
    eprintln!("probe: still alive after {sig}: it does not end a process by default");
    ExitCode::from(1)
}

/// Leave an orphan: a child forks a grandchild and exits at once, so the grandchild
/// is re-parented (to the PID namespace's init, or the nearest subreaper). The
/// grandchild exits 100 ms later; until somebody calls wait(2) for it, it stays a
/// zombie, which kill(pid, 0) still finds.
pub fn orphan() -> ExitCode {
    let (read, write) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return fail(&format!("pipe(): {e}")),
    };
    // SAFETY: the probe is single-threaded, so the child can run ordinary code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: as above; this is the child, about to fork the orphan.
            if let Ok(ForkResult::Child) = unsafe { fork() } {
                let _ = nix::unistd::write(&write, &getpid().as_raw().to_ne_bytes());
                std::thread::sleep(Duration::from_millis(100));
                // SAFETY: _exit takes no pointers.
                unsafe { libc::_exit(0) }
            }
            // SAFETY: _exit takes no pointers; the grandchild is now an orphan.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = nix::sys::wait::waitpid(child, None);
        }
        Err(e) => return fail(&format!("fork(): {e}")),
    }
    drop(write);
    let mut pid = [0u8; 4];
    if nix::unistd::read(&read, &mut pid) != Ok(4) {
        return fail("the orphan did not report its pid");
    }
    let orphan = Pid::from_raw(i32::from_ne_bytes(pid));
    // The pipe reaches end-of-file when the orphan, the last writer, has exited.
    let mut rest = [0u8; 1];
    let _ = nix::unistd::read(&read, &mut rest);
    say("orphan: my child exited and left its child behind, which then exited too");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if kill(orphan, None) == Err(Errno::ESRCH) {
            say("orphan reaped: yes (its new parent called wait)");
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    say("orphan reaped: no (still a zombie after 2 s: nobody called wait)");
    ExitCode::SUCCESS
}

/// Print `ready`, then wait for SIGTERM. Without a handler, SIGTERM ends the probe
/// (exit status 143 through a shell or a runtime); with `--exit-code`, the probe
/// catches it and exits with that code. Gives up after 30 s.
pub fn wait_signal(exit_code: Option<u8>) -> ExitCode {
    // SAFETY: alarm takes a number and cannot fail.
    unsafe { libc::alarm(30) };
    if let Some(code) = exit_code {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        if let Err(e) = set.thread_block() {
            return fail(&format!("sigprocmask(SIG_BLOCK, SIGTERM): {e}"));
        }
        say("ready");
        return match set.wait() {
            Ok(sig) => {
                say(&format!("caught {sig}, exiting with {code}"));
                ExitCode::from(code)
            }
            Err(e) => fail(&format!("sigwait(): {e}")),
        };
    }
    say("ready");
    loop {
        nix::unistd::pause();
    }
}

/// Allocate and touch memory 1 MiB at a time, up to `max` bytes.
pub fn memory_hog(max: u64) -> ExitCode {
    say(&format!(
        "memory hog: allocating up to {} MiB, 1 MiB at a time",
        max / MIB
    ));
    let mut held: Vec<Vec<u8>> = Vec::new();
    while (held.len() as u64) * MIB < max {
        // vec![1; n] writes every byte, so each page is really used.
        held.push(vec![1u8; MIB as usize]);
    }
    say(&format!(
        "memory hog: allocated all {} MiB: no memory limit stopped me",
        max / MIB
    ));
    ExitCode::SUCCESS
}

/// Fork children that wait on a pipe, until fork is refused or `max` is reached;
/// then release and reap them all.
pub fn fork_bomb(max: u32) -> ExitCode {
    let (read, write) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return fail(&format!("pipe(): {e}")),
    };
    let mut children: Vec<Pid> = Vec::new();
    let mut refused = None;
    while children.len() < max as usize {
        // SAFETY: the probe is single-threaded, so the child can run ordinary code.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(write);
                let mut buf = [0u8; 1];
                let _ = nix::unistd::read(&read, &mut buf); // returns when the parent closes
                // SAFETY: _exit takes no pointers.
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { child }) => children.push(child),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    drop(write);
    for child in &children {
        let _ = nix::sys::wait::waitpid(*child, None);
    }
    match refused {
        Some(Errno::EAGAIN) => say(&format!(
            "fork bomb: forked {} children, then fork() failed with EAGAIN: the pids limit",
            children.len()
        )),
        Some(e) => say(&format!(
            "fork bomb: forked {} children, then fork() failed with {e}",
            children.len()
        )),
        None => say(&format!(
            "fork bomb: forked all {} children: no pids limit stopped me",
            children.len()
        )),
    }
    ExitCode::SUCCESS
}

/// Spin for `millis` of wall-clock time, then report how much CPU time we got.
pub fn spin(millis: u64, threads: u32) -> ExitCode {
    let start = Instant::now();
    let cpu_start = cpu_time();
    let work = move || {
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(millis) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    };
    // More threads than one keep the quota busy even on a machine where other work
    // takes most of a CPU from any single thread.
    let others: Vec<_> = (1..threads).map(|_| std::thread::spawn(work)).collect();
    work();
    for other in others {
        let _ = other.join();
    }
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    let cpu = (cpu_time() - cpu_start).as_secs_f64() * 1000.0;
    say(&format!(
        "spin: {wall:.0} ms of wall time, {cpu:.0} ms on a CPU ({:.0}% of one CPU)",
        100.0 * cpu / wall
    ));
    ExitCode::SUCCESS
}

fn cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default()
}

fn fail(message: &str) -> ExitCode {
    eprintln!("probe: error: {message}");
    ExitCode::from(1)
}

/// `hold-key`: the canary key in a session keyring of its own, as another session of
/// the caller's would hold a token. Prints the key's serial (`none` on a kernel
/// without keyrings), then holds it until stdin closes: the key goes with us.
pub fn hold_key() -> ExitCode {
    let serial = match isolab::container::canary::hold_key() {
        Ok(serial) => serial,
        Err(e) => {
            eprintln!("probe: error: {e:#}");
            return ExitCode::from(1);
        }
    };
    say(&serial.map_or_else(|| "none".to_string(), |s| s.to_string()));
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    ExitCode::SUCCESS
}

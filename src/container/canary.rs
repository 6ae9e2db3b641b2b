//! The host canary: a file on the host, outside every rootfs, with contents nobody
//! else could guess. Whether the box can read it is the yes/no answer to "can the box
//! read the host's files?". The probe recognises it by its first line.

use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The first line of every canary; the probe checks for it, so a file that merely
/// has the same name inside the box does not count.
pub const MARKER: &str = "isolab host canary";

/// The canary's other form: a variable in the environment of whoever starts a box,
/// as a token or a password in a shell's environment would be. The tests and the
/// tour set it for every runtime they start, with [`ENV_VALUE`].
pub const ENV: &str = "ISOLAB_CANARY";
pub const ENV_VALUE: &str = "isolab host canary, in the caller's environment";

/// The canary's third form: a key in the session keyring of whoever starts a box, as
/// a Kerberos ticket or a token kept with `keyctl` would be. Keyrings belong to no
/// namespace: a process holds the session keyring of the process that started it.
/// [`in_a_session_keyring`] starts a runtime with one `user` key of this name in it.
pub const KEY: &str = "isolab-canary";
pub const KEY_VALUE: &str = "isolab host canary, in the caller's session keyring";

/// The key canary's other form: the same key, in a session of the caller's that no
/// box was started from ([`KeyHolder`]), with permissions that let its user, and
/// not only whoever holds its keyring, view and read it (`keyctl setperm`). Keys
/// belong to no namespace, and the kernel checks a key by its owner's uid: a box
/// whose root is that uid reads it by its serial number alone ([`key_by_serial`]).
pub const KEY_PERMISSIONS: u32 = KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ;

// Key permissions (linux/keyctl.h): a byte for the possessor, then the user's.
const KEY_POS_ALL: u32 = 0x3f00_0000;
const KEY_USR_VIEW: u32 = 0x0001_0000;
const KEY_USR_READ: u32 = 0x0002_0000;

/// A canary in its own temporary directory, removed when dropped.
pub struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    /// A canary in the system's temporary directory.
    pub fn create() -> Result<Canary> {
        Canary::create_in(&std::env::temp_dir())
    }

    /// A canary in a directory of its own under `parent` (which must not be a
    /// box's rootfs: the canary is the host's).
    pub fn create_in(parent: &Path) -> Result<Canary> {
        use std::os::unix::fs::PermissionsExt;
        // Closed to other users: the canary stands for a secret of the caller's.
        let dir = tempfile::Builder::new()
            .prefix("isolab-canary-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .context("creating the canary's temporary directory")?;
        let mut secret = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .context("reading /dev/urandom")?;
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.path().join("canary");
        std::fs::write(&path, format!("{MARKER}\n{hex}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Canary { dir })
    }

    /// The canary's absolute path on the host; pass it to the probe with `--canary`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("canary")
    }

    /// The directory that holds the canary (a host directory outside the rootfs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Start `cmd` in a session keyring of its own that holds the canary key ([`KEY`],
/// [`KEY_VALUE`]), as a login session with a key in it would start it. The keyring
/// is new and anonymous, made between fork and exec (after any change of user), so
/// no keyring of the caller's is touched, and it and its key are freed with the
/// last process that holds them: nothing is left for this user afterwards. On a
/// kernel without keyrings the command starts as it is.
pub fn in_a_session_keyring(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let name = std::ffi::CString::new(KEY).expect("no NUL in the key's name");
    // SAFETY: between fork and exec the closure makes two system calls with
    // buffers made before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            new_keyring_with_key(&name)?;
            Ok(())
        });
    }
}

/// Join a new, anonymous session keyring and add the canary key to it: the key's
/// serial, or `None` on a kernel without keyrings. Two system calls and nothing
/// allocated, so that it may run between fork and exec.
fn new_keyring_with_key(name: &std::ffi::CStr) -> nix::Result<Option<libc::c_long>> {
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a NULL name makes a new, anonymous
    // keyring; the kernel reads no memory of ours.
    let joined = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match nix::errno::Errno::result(joined) {
        Ok(_) => {}
        Err(nix::errno::Errno::ENOSYS) => return Ok(None),
        Err(e) => return Err(e),
    }
    // SAFETY: two C strings and a payload that live across the call, with its length.
    let added = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            name.as_ptr(),
            KEY_VALUE.as_ptr(),
            KEY_VALUE.len(),
            libc::KEY_SPEC_SESSION_KEYRING,
        )
    };
    nix::errno::Errno::result(added).map(Some)
}

/// The canary key, if this process holds a keyring that holds it: the probe's
/// `canary via session keyring` line, and step 09's VMM's `session keyring`. The
/// tests, the tour and `cargo run -- run` start every runtime in a session keyring
/// that holds the canary key: a box that still holds that keyring may read the key,
/// as a box that holds a developer's may read their Kerberos tickets and tokens. request_key(2)
/// without a callout only looks, through every keyring the process holds (its
/// thread's, its process's and its session's); keyctl(KEYCTL_READ) then reads the
/// key, which only a process that holds it may do.
pub fn key_in_reach() -> String {
    let name = std::ffi::CString::new(KEY).expect("no NUL in the key's name");
    // SAFETY: two C strings that live across the call, no callout, no keyring to
    // link the key into; the kernel only searches.
    let found = unsafe {
        libc::syscall(
            libc::SYS_request_key,
            c"user".as_ptr(),
            name.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    let serial = match nix::errno::Errno::result(found) {
        Ok(serial) => serial,
        Err(nix::errno::Errno::ENOKEY) => {
            return "not found (the session keyring I hold is not the caller's)".into();
        }
        Err(nix::errno::Errno::ENOSYS) => {
            return "impossible (this kernel has no keyrings)".into();
        }
        Err(e) => return format!("refused ({e:?})"),
    };
    let mut payload = [0u8; 128];
    // SAFETY: KEYCTL_READ writes at most `payload.len()` bytes into `payload`.
    let read = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_READ,
            serial,
            payload.as_mut_ptr(),
            payload.len(),
        )
    };
    match nix::errno::Errno::result(read) {
        Ok(n) if payload[..(n as usize).min(payload.len())].starts_with(MARKER.as_bytes()) => {
            format!("READABLE (the key {KEY:?}, in the session keyring I was started with)")
        }
        Ok(_) => format!("found a key {KEY:?}, but not an isolab canary"),
        Err(e) => format!("refused ({e:?}: the key is there, but not mine to read)"),
    }
}

/// A process that holds the canary key in a session keyring of its own, as another
/// login session of the caller's would hold a token: `probe hold-key`, started as
/// `cmd` is set up to start it (as the user the boxes run as). Its key's serial is
/// what the probe gets with `--key-serial`. Dropping the holder closes its stdin:
/// it exits, and the kernel frees its keyring and key with it (so does the holder
/// of a caller that was killed, whose end of the pipe the kernel closes).
pub struct KeyHolder {
    child: std::process::Child,
    serial: Option<i32>,
}

impl KeyHolder {
    /// Start `cmd` (the probe) as `probe hold-key`, and read the serial it prints.
    pub fn start(mut cmd: std::process::Command) -> Result<KeyHolder> {
        use std::io::BufRead;
        use std::process::Stdio;
        cmd.arg("hold-key")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::run::std_fds_only(&mut cmd, None)?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {program} hold-key"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("hold-key's stdout")?;
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading hold-key's serial")?;
        let serial = match line.trim() {
            "none" => None,
            text => match text.parse::<i32>() {
                Ok(serial) => Some(serial),
                Err(_) => {
                    drop(child.stdin.take());
                    let out = child.wait_with_output().context("waiting for hold-key")?;
                    anyhow::bail!(
                        "{program} hold-key printed no serial: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            },
        };
        Ok(KeyHolder { child, serial })
    }

    /// The key's serial number; `None` on a kernel without keyrings.
    pub fn serial(&self) -> Option<i32> {
        self.serial
    }

    /// The probe's arguments that name the key: `--key-serial N` (none on a kernel
    /// without keyrings).
    pub fn probe_args(&self) -> Vec<std::ffi::OsString> {
        match self.serial {
            Some(serial) => vec!["--key-serial".into(), serial.to_string().into()],
            None => Vec::new(),
        }
    }
}

impl Drop for KeyHolder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `probe hold-key`'s work: join a new session keyring, add the canary key to it
/// with [`KEY_PERMISSIONS`], and return its serial (`None` on a kernel without
/// keyrings). The caller's own keyrings are not touched.
pub fn hold_key() -> Result<Option<i32>> {
    let name = std::ffi::CString::new(KEY).expect("no NUL in the key's name");
    let Some(serial) = new_keyring_with_key(&name)
        .context("keyctl(KEYCTL_JOIN_SESSION_KEYRING) and add_key(user, isolab-canary)")?
    else {
        return Ok(None);
    };
    // SAFETY: KEYCTL_SETPERM takes a serial and a permission mask, no pointers.
    let set = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_SETPERM,
            serial,
            KEY_PERMISSIONS,
        )
    };
    nix::errno::Errno::result(set).context("keyctl(KEYCTL_SETPERM)")?;
    Ok(Some(serial as i32))
}

/// The probe's `canary by key serial` line: keyctl(KEYCTL_READ) of the key whose
/// serial `--key-serial` gave, a key of the caller's in a keyring the box never
/// held. The kernel lets a process read a key it does not hold when the key's
/// permissions grant read to the key's user and the process's uid is that user:
/// no namespace is asked. KEYCTL_DESCRIBE then says whose it is, as seen here.
pub fn key_by_serial(serial: Option<i32>) -> String {
    let Some(serial) = serial else {
        return "not checked (no --key-serial given)".into();
    };
    let mut payload = [0u8; 128];
    let read = keyctl_text(libc::KEYCTL_READ, serial, &mut payload);
    match read {
        Ok(text) if text.starts_with(MARKER.as_bytes()) => {
            let mut description = [0u8; 128];
            match keyctl_text(libc::KEYCTL_DESCRIBE, serial, &mut description) {
                Ok(d) => format!(
                    "READABLE (keyctl(KEYCTL_READ) by its number; KEYCTL_DESCRIBE: {})",
                    String::from_utf8_lossy(d.strip_suffix(b"\0").unwrap_or(d))
                ),
                Err(_) => "READABLE (keyctl(KEYCTL_READ) by its number)".into(),
            }
        }
        Ok(_) => "found a key with that serial, but not an isolab canary".into(),
        Err(nix::errno::Errno::ENOKEY) => "not found (no key has that serial)".into(),
        Err(nix::errno::Errno::ENOSYS) => "impossible (this kernel has no keyrings)".into(),
        Err(nix::errno::Errno::EACCES) => {
            "refused (EACCES: the key's permissions keep my uid out)".into()
        }
        Err(e) => format!("refused ({e:?})"),
    }
}

/// keyctl(`operation`, `serial`, buffer) for an operation that writes text (READ,
/// DESCRIBE): the bytes it wrote, at most the buffer's length.
fn keyctl_text(operation: u32, serial: i32, buffer: &mut [u8]) -> nix::Result<&[u8]> {
    // SAFETY: the kernel writes at most `buffer.len()` bytes into `buffer`.
    let n = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            operation,
            serial,
            buffer.as_mut_ptr(),
            buffer.len(),
        )
    };
    let n = nix::errno::Errno::result(n)? as usize;
    Ok(&buffer[..n.min(buffer.len())])
}

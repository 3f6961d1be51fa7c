//! Liveness tokens: one POSIX record lock (`fcntl(F_SETLK)`) per process slot,
//! on a file every process using the area has open — the `name=` object itself,
//! or an empty memfd created with an anonymous/file/fd/pointer area (inherited by
//! forked children, who take their own locks on it).
//!
//! The kernel drops a process's record locks when it dies, whatever killed it,
//! and `F_GETLK` asks about them without `/proc`: so "slot `i`'s lock is held"
//! means "the process that owns slot `i` is alive" under `hidepid`, for
//! non-dumpable and setuid processes, without `/proc`, across pid and user
//! namespaces, and regardless of pid reuse.
//!
//! Traps, and what we do about them:
//! * POSIX record locks belong to the *process*: every thread shares them (we
//!   want that: a slot is per process), and a process that closes *any*
//!   descriptor of the file loses *all* its locks on it. The library owns the
//!   only descriptors it uses (`O_CLOEXEC`), never opens an object it already
//!   has attached (a second attach of a `name=` object is found by `stat` and
//!   shares the first mapping), and a waiter that finds a slot's token free
//!   while `/proc` still shows a process with the recorded pid and start time
//!   takes it for alive (an application that closed our descriptor), counting
//!   the case as undecided. An application that closes every descriptor (some
//!   daemonising code does) after attaching an area on a host that hides
//!   `/proc` can be taken for dead: attach after daemonising.
//! * Record locks are not inherited across `fork`: a child takes its own slot.
//!   `exec` closes the descriptor (and with it the locks).
//! * A process's own record locks never conflict with itself, so `F_GETLK` on
//!   a slot this process owns says "free", and `F_SETLK` on it "succeeds": the
//!   lock never asks about its own slot, and token operations inside one
//!   process are serialised by `TOKEN_OPS`.
//! * Locks live far past the end of the file (offset 2^40): they cover no data
//!   and need no file size (no `ftruncate`, so no SIGXFSZ).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

use parking_lot::Mutex;

/// Where slot 0's byte is.
const BASE: i64 = 1 << 40;

/// Serialises this process's token takes and releases (see the module docs).
pub(crate) static TOKEN_OPS: Mutex<()> = Mutex::new(());

/// A file whose bytes `BASE + i` are slot `i`'s token.
pub struct TokenFile {
    file: File,
}

/// What `F_GETLK` says of a slot's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Free,
    /// Held by a live process (its pid as this process sees it; 0 if invisible,
    /// e.g. in another pid namespace).
    Held(i32),
}

fn flock_for(kind: i32, slot: usize) -> libc::flock {
    // SAFETY: flock is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = BASE + slot as i64;
    fl.l_len = 1;
    fl
}

impl TokenFile {
    /// Tokens on an open file (the library keeps it open for the area's life).
    pub fn new(file: File) -> TokenFile {
        TokenFile { file }
    }

    /// A fresh, empty memfd (close-on-exec): for areas whose memory is not a
    /// file every process can open. `None` if the kernel refuses one (the area
    /// then works slotless).
    pub fn memfd() -> Option<TokenFile> {
        // SAFETY: the name is a NUL-terminated literal; memfd_create returns a new
        // descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"sharedarea-tokens".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Some(TokenFile::new(unsafe { File::from_raw_fd(fd) }))
    }

    /// Takes slot `slot`'s token without waiting. `Ok(false)`: another live
    /// process holds it.
    pub fn try_take(&self, slot: usize) -> std::io::Result<bool> {
        let fl = flock_for(libc::F_WRLCK, slot);
        // SAFETY: F_SETLK reads one flock struct that lives across the call.
        if unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLK, &fl) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }

    /// Gives slot `slot`'s token back.
    pub fn release(&self, slot: usize) {
        let fl = flock_for(libc::F_UNLCK, slot);
        // SAFETY: as in try_take.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLK, &fl) };
    }

    /// Who holds slot `slot`'s token, as far as another process can tell. An
    /// error (a descriptor the application closed, say) answers `Held(0)`: never
    /// take a holder for dead on a failed question.
    pub fn holder(&self, slot: usize) -> Token {
        let mut fl = flock_for(libc::F_WRLCK, slot);
        // SAFETY: F_GETLK reads and rewrites one flock struct we own.
        if unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLK, &mut fl) } != 0 {
            return Token::Held(0);
        }
        if fl.l_type == libc::F_UNLCK as libc::c_short {
            Token::Free
        } else {
            Token::Held(fl.l_pid)
        }
    }

    /// The file's (device, inode) while it still has a name (an unlinked
    /// object's inode number may be given to a new object: that one is not ours).
    pub fn identity(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata().ok()?;
        (m.nlink() > 0).then(|| (m.dev(), m.ino()))
    }
}

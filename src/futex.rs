//! The two futex(2) calls the lock and the update waiters need.
//!
//! The words live in `MAP_SHARED` memory used by several processes, so the calls
//! are made WITHOUT `FUTEX_PRIVATE_FLAG` (a private futex is keyed by the process's
//! address space and would never meet a waiter in another process).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Why `wait` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Woken, or the word no longer held `expected` (callers re-check either way).
    Woken,
    TimedOut,
    Interrupted,
}

/// Sleeps while `*word == expected`, at most `timeout` (None: no limit).
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 32-bit word for the duration of the call;
    // FUTEX_WAIT only reads it. `ts_ptr` is NULL or points at a live timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        )
    };
    if r == 0 {
        return Wake::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ETIMEDOUT) => Wake::TimedOut,
        Some(libc::EINTR) => Wake::Interrupted,
        _ => Wake::Woken, // EAGAIN: the value had already changed
    }
}

/// Wakes every sleeper on `word`.
pub fn wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE does not access the word's memory beyond using its
    // address as a key; the address is valid.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

//! The two futex(2) calls the lock and the update waiters need.
//!
//! The words live in `MAP_SHARED` memory used by several processes, so the calls
//! are made WITHOUT `FUTEX_PRIVATE_FLAG` (a private futex is keyed by the process's
//! address space and would never meet a waiter in another process).

use crate::sync::atomic::AtomicU32;
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
#[cfg(not(all(loom, test)))]
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
#[cfg(not(all(loom, test)))]
pub fn wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE does not access the word's memory beyond using its
    // address as a key; the address is valid.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// The lock's model test (`lock::model`) parks waiters on one condition
/// variable, keyed by nothing: a wake-up wakes every sleeper (callers re-check
/// their condition, as after any futex wake-up). Like `FUTEX_WAIT`, it sleeps
/// only while the word still holds `expected`, checked under the mutex that
/// `wake_all` takes, so no wake-up is lost between the check and the sleep; a
/// sleep has no timeout, so a wake-up the lock forgets is a deadlock the model
/// checker reports.
#[cfg(all(loom, test))]
mod park {
    loom::lazy_static! {
        pub static ref PARK: (loom::sync::Mutex<()>, loom::sync::Condvar) =
            (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
    }
}

#[cfg(all(loom, test))]
pub fn wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> Wake {
    use crate::sync::atomic::Ordering::SeqCst;
    let (lock, cond) = &*park::PARK;
    let g = lock.lock().unwrap();
    if word.load(SeqCst) == expected {
        drop(cond.wait(g).unwrap());
    }
    Wake::Woken
}

#[cfg(all(loom, test))]
pub fn wake_all(_word: &AtomicU32) {
    let (lock, cond) = &*park::PARK;
    let _g = lock.lock().unwrap();
    cond.notify_all();
}

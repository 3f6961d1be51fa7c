//! The C boundary. Every exported function body runs inside `boundary`, which
//! turns an error into a negative status (recording the detail for
//! `sharedarea_last_error`) and a panic into `SHAREDAREA_E_PANIC`: no panic ever
//! unwinds into C. Pointer arguments are checked with the `try_*` helpers.
//!
//! Every entry point is an `unsafe extern "C" fn`: callable from C, never from safe
//! Rust. Rust programs use the safe API at the crate root ([`crate::Area`]), which
//! checks its arguments by type; these functions exist for C and the bindings that
//! speak C.
//!
//! # Safety
//!
//! One contract for every entry point, the header's (`include/sharedarea.h`): a
//! pointer argument is NULL (refused with `SHAREDAREA_E_INVALID_ARGUMENT`) or valid
//! for the bytes the function's text names for the length of the call; strings are
//! NUL-terminated; memory given to `sharedarea_init_ptr` stays mapped for the life
//! of the process. Arguments that are not pointers may hold any value: each is
//! checked, and a bad one is a negative status, never undefined behaviour.

// The shared contract is stated once above, not in a `# Safety` section per
// function (that text would be copied into every declaration of the header).
#![allow(clippy::missing_safety_doc)]

use std::cell::{Cell, RefCell};
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::{Error, Result, Status};

pub mod areas;
pub mod errors;
pub mod integers;
pub mod locking;
pub mod notify;
pub mod websocket;

/// Room for this thread's last error text. A fixed buffer, rewritten in place:
/// what that promises callers is stated once, at `sharedarea_last_error`.
const LAST_ERROR_CAP: usize = 4096;

thread_local! {
    static LAST_ERROR: RefCell<[u8; LAST_ERROR_CAP]> = const { RefCell::new([0; LAST_ERROR_CAP]) };
    /// Where the detail starts in LAST_ERROR (after "function: ").
    static DETAIL_AT: Cell<usize> = const { Cell::new(0) };
}

fn set_last_error(function: &str, e: &Error) {
    let text = format!("{function}: {}", e.detail);
    // the prefix has no NUL and is far shorter than the buffer
    DETAIL_AT.with(|d| d.set(function.len() + 2));
    LAST_ERROR.with(|l| {
        let mut buf = l.borrow_mut();
        let mut n = 0;
        // Keep whole characters; NULs inside the text would end it early.
        for ch in text.chars().filter(|&c| c != '\0') {
            let mut tmp = [0u8; 4];
            let bytes = ch.encode_utf8(&mut tmp).as_bytes();
            if n + bytes.len() >= LAST_ERROR_CAP {
                break;
            }
            buf[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        }
        buf[n] = 0;
    });
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|l| l.as_ptr() as *const c_char)
}

/// The same buffer from the detail on (`sharedarea_last_error_detail`).
pub(crate) fn last_error_detail_ptr() -> *const c_char {
    let at = DETAIL_AT.with(Cell::get).min(LAST_ERROR_CAP - 1);
    // SAFETY: `at` < LAST_ERROR_CAP, so the pointer stays inside the buffer, and
    // the text from there is NUL-terminated (the buffer always holds a NUL at or
    // after the detail's start: set_last_error writes "function: " then the
    // detail then a NUL; before any failure the buffer is all NULs).
    LAST_ERROR.with(|l| unsafe { (l.as_ptr() as *const c_char).add(at) })
}

/// A C return type that can carry a status.
pub(crate) trait Ret {
    fn from_status(s: Status) -> Self;
}
impl Ret for i32 {
    fn from_status(s: Status) -> i32 {
        s.code()
    }
}
impl Ret for i64 {
    fn from_status(s: Status) -> i64 {
        s.code() as i64
    }
}

/// Runs an exported function's body: errors become statuses, panics too.
#[inline(always)]
pub(crate) fn boundary<R: Ret>(function: &'static str, f: impl FnOnce() -> Result<R>) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => failed(function, e),
        Err(_) => panicked(function),
    }
}

#[cold]
#[inline(never)]
fn failed<R: Ret>(function: &'static str, e: Error) -> R {
    set_last_error(function, &e);
    R::from_status(e.status)
}

#[cold]
#[inline(never)]
fn panicked<R: Ret>(function: &'static str) -> R {
    set_last_error(
        function,
        &Error::new(
            Status::Panic,
            "internal error (a panic was caught); please report it",
        ),
    );
    R::from_status(Status::Panic)
}

/// Records a note (e.g. a recovery) for `sharedarea_last_error` on success.
pub(crate) fn note(function: &str, detail: String) {
    set_last_error(function, &Error::new(Status::Ok, detail));
}

pub(crate) fn null(what: &str) -> Error {
    Error::new(Status::NullPointer, format!("{what} is NULL"))
}

/// `p` as a mutable reference, or a NullPointer error naming the argument.
///
/// # Safety
/// `p` is NULL or valid for reads and writes of a `T`, and not used through
/// another path while the reference lives (the header's contract for every
/// out-parameter).
pub(crate) unsafe fn try_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: a non-NULL `p` is valid and unaliased (this function's contract).
    unsafe { p.as_mut() }.ok_or_else(|| null(what))
}

/// Writes `v` through an optional out-parameter.
///
/// # Safety
/// As for [`try_mut`]; NULL means "not wanted".
pub(crate) unsafe fn put_opt<T>(p: *mut T, v: T) {
    // SAFETY: a non-NULL `p` is valid for writes (this function's contract).
    if let Some(r) = unsafe { p.as_mut() } {
        *r = v;
    }
}

/// The bytes behind (ptr, len), or NullPointer when ptr is NULL and len > 0.
///
/// # Safety
/// When `len > 0`, `p` is NULL or points at `len` bytes readable and not
/// written to while the slice lives.
pub(crate) unsafe fn try_slice<'a>(p: *const u8, len: u64, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    let len = usize::try_from(len).map_err(|_| {
        Error::new(
            Status::OutOfRange,
            format!("{what}: {len} bytes do not fit memory"),
        )
    })?;
    // SAFETY: `len` readable bytes at a non-NULL `p` (this function's contract).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// The writable bytes behind (ptr, len), or NullPointer.
///
/// # Safety
/// When `len > 0`, `p` is NULL or points at `len` writable bytes used through
/// no other path while the slice lives.
pub(crate) unsafe fn try_slice_mut<'a>(p: *mut u8, len: u64, what: &str) -> Result<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(null(what));
    }
    let len = usize::try_from(len).map_err(|_| {
        Error::new(
            Status::OutOfRange,
            format!("{what}: {len} bytes do not fit memory"),
        )
    })?;
    // SAFETY: `len` writable, unaliased bytes at a non-NULL `p` (this
    // function's contract).
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

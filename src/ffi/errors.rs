//! Status constants, their texts, the ABI version.

use std::ffi::c_char;

use crate::status::Status;

/// The ABI version of this header; `sharedarea_abi_version()` returns the same.
pub const SHAREDAREA_ABI_VERSION: u32 = 1;

pub const SHAREDAREA_OK: i32 = 0;
/// rlock/wlock: taken after clearing a holder that had died (success).
pub const SHAREDAREA_RECOVERED: i32 = 1;
pub const SHAREDAREA_E_NO_SUCH_AREA: i32 = -1;
pub const SHAREDAREA_E_OUT_OF_RANGE: i32 = -2;
pub const SHAREDAREA_E_INVALID_SPEC: i32 = -3;
pub const SHAREDAREA_E_IO: i32 = -4;
pub const SHAREDAREA_E_TIMED_OUT: i32 = -5;
pub const SHAREDAREA_E_LOCK_MISUSE: i32 = -6;
pub const SHAREDAREA_E_INTERRUPTED: i32 = -7;
pub const SHAREDAREA_E_NULL_POINTER: i32 = -8;
pub const SHAREDAREA_E_INVALID_ARGUMENT: i32 = -9;
pub const SHAREDAREA_E_PANIC: i32 = -10;
/// Too many areas in this process, or too many processes on one area.
pub const SHAREDAREA_E_LIMIT: i32 = -11;
/// A WebSocket send found the peer gone.
pub const SHAREDAREA_E_PEER_CLOSED: i32 = -12;
/// name=: the object is not an area, has another version, owner or pid namespace.
pub const SHAREDAREA_E_NOT_AN_AREA: i32 = -13;
/// A WebSocket send failed part-way through a frame (or a later send on that
/// connection): the stream is broken for good and the socket has been shut down.
pub const SHAREDAREA_E_CONNECTION_FAILED: i32 = -14;

pub const SHAREDAREA_BACKING_ANONYMOUS: i32 = 0;
pub const SHAREDAREA_BACKING_FILE: i32 = 1;
pub const SHAREDAREA_BACKING_FD: i32 = 2;
pub const SHAREDAREA_BACKING_NAMED: i32 = 3;
pub const SHAREDAREA_BACKING_POINTER: i32 = 4;

/// The ABI version (equals `SHAREDAREA_ABI_VERSION` of the header compiled against).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_abi_version() -> u32 {
    SHAREDAREA_ABI_VERSION
}

/// Static text for a status; unknown numbers get a text saying so. Never NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_strerror(status: i32) -> *const c_char {
    match Status::from_code(status) {
        Some(s) => s.text_c().as_ptr().cast(),
        None => c"unknown sharedarea status".as_ptr(),
    }
}

/// This thread's last failure in detail: "function: area N: cause" ("" before
/// any failure; a lock taken with RECOVERED leaves its note here too). Never NULL.
/// How long it lasts (the one place that says so): the pointer is to a buffer of
/// the calling thread's own and stays valid until that thread exits; the text is
/// rewritten in place by this thread's next failure or RECOVERED note, never by
/// other threads, so copy it to keep it.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_last_error() -> *const c_char {
    super::last_error_ptr()
}

/// The detail of sharedarea_last_error() without the function's name ("area N:
/// cause", or just the cause for a failure about no area, as init's; the same
/// buffer and lifetime; "" before any failure). For bindings that report the
/// failure under their own function's name.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_last_error_detail() -> *const c_char {
    super::last_error_detail_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_statuses() {
        let pairs = [
            (SHAREDAREA_OK, Status::Ok),
            (SHAREDAREA_RECOVERED, Status::Recovered),
            (SHAREDAREA_E_NO_SUCH_AREA, Status::NoSuchArea),
            (SHAREDAREA_E_OUT_OF_RANGE, Status::OutOfRange),
            (SHAREDAREA_E_INVALID_SPEC, Status::InvalidSpec),
            (SHAREDAREA_E_IO, Status::Io),
            (SHAREDAREA_E_TIMED_OUT, Status::TimedOut),
            (SHAREDAREA_E_LOCK_MISUSE, Status::LockMisuse),
            (SHAREDAREA_E_INTERRUPTED, Status::Interrupted),
            (SHAREDAREA_E_NULL_POINTER, Status::NullPointer),
            (SHAREDAREA_E_INVALID_ARGUMENT, Status::InvalidArgument),
            (SHAREDAREA_E_PANIC, Status::Panic),
            (SHAREDAREA_E_LIMIT, Status::Limit),
            (SHAREDAREA_E_PEER_CLOSED, Status::PeerClosed),
            (SHAREDAREA_E_NOT_AN_AREA, Status::NotAnArea),
            (SHAREDAREA_E_CONNECTION_FAILED, Status::ConnectionFailed),
        ];
        assert_eq!(pairs.len(), Status::ALL.len());
        for (c, s) in pairs {
            assert_eq!(c, s.code());
        }
    }
}

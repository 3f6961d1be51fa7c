//! WebSocket frame sends for the Perl (or any) glue: from a buffer, or straight
//! from an area; and the pending bytes of a send a signal interrupted.

use std::ffi::c_void;

use super::{boundary, try_slice};
use crate::registry;
use crate::status::{Error, Result, Status};
use crate::websocket;

/// Sends one final, unmasked frame (opcode 1 text, 2 binary, 8/9/10 control)
/// carrying `len` bytes at `buf` on socket `fd`. Returns `len` or < 0
/// (PEER_CLOSED when the peer is gone; TIMED_OUT when the client took nothing
/// of the frame for the stall limit, the stream still whole; CONNECTION_FAILED
/// when it stopped part-way through the frame, or an earlier frame on this
/// socket was cut off: the socket is shut down, see
/// `sharedarea_ws_set_stall_limit`). A send that has to wait for the socket
/// returns SHAREDAREA_E_INTERRUPTED when a signal handler runs meanwhile: the
/// frame's unsent rest is kept (a copy: `buf` is free again) and leaves,
/// whole and in order, with `sharedarea_ws_flush(fd)`. While `fd` has such
/// pending bytes a new send on it is refused (INVALID_ARGUMENT, nothing sent).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_send(
    fd: i32,
    opcode: u8,
    buf: *const c_void,
    len: u64,
) -> i64 {
    boundary("sharedarea_ws_send", || {
        // SAFETY: `buf` is NULL or points at `len` readable bytes (the header's contract).
        let payload = unsafe { try_slice(buf.cast(), len, "buf") }?;
        Ok(websocket::send(fd, opcode, payload)? as i64)
    })
}

/// Sends one frame carrying the area's bytes at `pos` (`len` 0: to the end, or to
/// `used` when honoured) on socket `fd`, from shared memory without a user-space
/// copy in the common case; a slow client never holds the area's lock. Returns the
/// payload length or < 0. Interrupted by a signal while waiting for the socket
/// (never while holding the lock), it returns SHAREDAREA_E_INTERRUPTED with the
/// frame's unsent rest kept, exactly as `sharedarea_ws_send` does.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_send_from_area(
    fd: i32,
    opcode: u8,
    id: i32,
    pos: u64,
    len: u64,
) -> i64 {
    boundary("sharedarea_ws_send_from_area", || {
        let area = registry::get(id)?;
        Ok(websocket::send_from_area(fd, opcode, area, pos, len)? as i64)
    })
}

fn check_fd(fd: i32) -> Result<()> {
    if fd < 0 {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("fd {fd} is not an open descriptor"),
        ));
    }
    Ok(())
}

/// Sends the rest of the frame that a signal interrupted on socket `fd` (see
/// `sharedarea_ws_send`), waiting for the socket. Returns that frame's payload
/// length once all of it has left (what the interrupted send would have
/// returned), or 0 when nothing was pending. SHAREDAREA_E_INTERRUPTED again
/// when another signal handler runs (call it again: the stall limit of 60 s
/// without progress counts across the calls); on failure (PEER_CLOSED, or
/// CONNECTION_FAILED when the client stalled or the socket failed) the pending
/// bytes are dropped and the connection is broken for good (the socket is shut
/// down; every later send on it fails with CONNECTION_FAILED). Call it after running your signal
/// handlers, until it returns >= 0.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_flush(fd: i32) -> i64 {
    boundary("sharedarea_ws_flush", || {
        check_fd(fd)?;
        Ok(websocket::flush(fd)?.unwrap_or(0) as i64)
    })
}

/// Drops the unsent rest of an interrupted frame on socket `fd`, for a
/// connection that is ending (a partly sent frame cannot be followed by any
/// other). Call it, too, before using a new connection that may have got the
/// number of an old one. Returns the number of bytes dropped (0 when none),
/// or < 0 (INVALID_ARGUMENT for a negative fd).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_forget(fd: i32) -> i64 {
    boundary("sharedarea_ws_forget", || {
        check_fd(fd)?;
        Ok(websocket::forget(fd) as i64)
    })
}

/// Sets how long a send waits for a client that accepts nothing (`ms`
/// milliseconds, for this whole process; default 60000) before it fails.
/// A send that gives up after part of its frame left fails with
/// CONNECTION_FAILED, and so does every later send on that socket (until
/// `sharedarea_ws_forget`): the socket is shut down. Returns 0, or
/// INVALID_ARGUMENT for 0.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_set_stall_limit(ms: u64) -> i32 {
    boundary("sharedarea_ws_set_stall_limit", || {
        if ms == 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                "a stall limit of 0 ms would fail every send that has to wait",
            ));
        }
        websocket::set_stall_limit(std::time::Duration::from_millis(ms));
        Ok(0)
    })
}

/// Sends one frame like `sharedarea_ws_send`, but never waits: what the socket
/// does not take at once is copied and queued (behind anything already queued
/// on `fd`), for `sharedarea_ws_flush_nb` to send when the socket is writable.
/// Returns the bytes queued on `fd` after the call (0: the whole frame went to
/// the kernel), or < 0. The queue has no bound: check `sharedarea_ws_queued`
/// first and skip frames while a client lags. For event loops.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_send_nb(
    fd: i32,
    opcode: u8,
    buf: *const c_void,
    len: u64,
) -> i64 {
    boundary("sharedarea_ws_send_nb", || {
        check_fd(fd)?;
        // SAFETY: `buf` is NULL or points at `len` readable bytes (the header's contract).
        let payload = unsafe { try_slice(buf.cast(), len, "buf") }?;
        Ok(websocket::send_nb(fd, opcode, payload)? as i64)
    })
}

/// `sharedarea_ws_send_nb` of the area's bytes at `pos` (`len` 0: to the end,
/// or to `used`): straight from shared memory under the read lock, copying only
/// what the socket does not take at once. Returns the bytes queued on `fd`
/// after the call, or < 0.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_send_from_area_nb(
    fd: i32,
    opcode: u8,
    id: i32,
    pos: u64,
    len: u64,
) -> i64 {
    boundary("sharedarea_ws_send_from_area_nb", || {
        check_fd(fd)?;
        let area = registry::get(id)?;
        Ok(websocket::send_from_area_nb(fd, opcode, area, pos, len)? as i64)
    })
}

/// Sends what the socket takes now of the bytes queued on `fd` (by the `_nb`
/// sends, or an interrupted send), never waiting. Returns the bytes still
/// queued (0: none), or < 0: a failure breaks the connection
/// (CONNECTION_FAILED or PEER_CLOSED; the socket is shut down).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_flush_nb(fd: i32) -> i64 {
    boundary("sharedarea_ws_flush_nb", || {
        check_fd(fd)?;
        Ok(websocket::flush_nb(fd)? as i64)
    })
}

/// Bytes on their way to the client of socket `fd`: those queued by this
/// library plus those in the kernel's send queue (SIOCOUTQ). An event loop
/// skips a frame for a client while this exceeds about one frame, so that a
/// slow client always gets the latest frame rather than a queue of old ones.
/// Returns the count, or < 0 (CONNECTION_FAILED once the connection broke).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_ws_queued(fd: i32) -> i64 {
    boundary("sharedarea_ws_queued", || {
        check_fd(fd)?;
        Ok(websocket::queued(fd)? as i64)
    })
}

//! WebSocket frame sends for the Perl (or any) glue: from a buffer, or straight
#![allow(clippy::not_unsafe_ptr_arg_deref)] // C entry points: see ffi/mod.rs
//! from an area.

use std::ffi::c_void;

use super::{boundary, try_slice};
use crate::registry;
use crate::websocket;

/// Sends one final, unmasked frame (opcode 1 text, 2 binary, 8/9/10 control)
/// carrying `len` bytes at `buf` on socket `fd`. Returns `len` or < 0
/// (PEER_CLOSED when the peer is gone).
#[no_mangle]
pub extern "C" fn sharedarea_ws_send(fd: i32, opcode: u8, buf: *const c_void, len: u64) -> i64 {
    boundary("sharedarea_ws_send", || {
        let payload = try_slice(buf.cast(), len, "buf")?;
        Ok(websocket::send(fd, opcode, payload)? as i64)
    })
}

/// Sends one frame carrying the area's bytes at `pos` (`len` 0: to the end, or to
/// `used` when honoured) on socket `fd`, from shared memory without a user-space
/// copy in the common case; a slow client never holds the area's lock. Returns the
/// payload length or < 0.
#[no_mangle]
pub extern "C" fn sharedarea_ws_send_from_area(
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

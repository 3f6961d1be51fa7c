//! The update descriptor for event loops.

use super::boundary;
use crate::notify;
use crate::registry;

/// A descriptor (an eventfd) that becomes readable after area `id` is updated,
/// for an event loop that must not block in `sharedarea_wait`. When it is
/// readable, read its 8-byte counter (non-blocking; that re-arms it), then read
/// the area: updates made meanwhile make one wake-up, and any update after
/// that read makes another. The same descriptor on every call in a process;
/// do not close it. After `fork`, call again in the child (it gets its own
/// counter, on the same descriptor number). Returns the descriptor or < 0.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_notify_fd(id: i32) -> i32 {
    boundary("sharedarea_notify_fd", || notify::fd(registry::get(id)?))
}

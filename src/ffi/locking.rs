//! The lock, waiting for updates, counting updates.
#![allow(clippy::not_unsafe_ptr_arg_deref)] // C entry points: see ffi/mod.rs

use std::time::Duration;

use super::{boundary, note, try_mut};
use crate::registry;
use crate::status::{Error, Status};

/// Blocks until the area is updated after the call began. `timeout_s` 0: no
/// limit; negative: INVALID_ARGUMENT. `freq_ms` (>= 0) is accepted for uWSGI
/// compatibility and ignored: waiters are woken by the update itself. Returns 0,
/// TIMED_OUT, or INTERRUPTED (a signal arrived; see sharedarea_wait_since to resume).
#[no_mangle]
pub extern "C" fn sharedarea_wait(id: i32, freq_ms: i32, timeout_s: i32) -> i32 {
    boundary("sharedarea_wait", || {
        let area = registry::get(id)?;
        if freq_ms < 0 {
            return Err(Error::area(
                Status::InvalidArgument,
                id,
                format!("freq {freq_ms} ms is negative"),
            ));
        }
        if timeout_s < 0 {
            return Err(Error::area(
                Status::InvalidArgument,
                id,
                format!("timeout {timeout_s} s is negative"),
            ));
        }
        let seen = area.updates();
        let timeout = (timeout_s > 0).then(|| Duration::from_secs(timeout_s as u64));
        area.wait_since(seen, timeout)?;
        Ok(0)
    })
}

/// The area's update counter now (for sharedarea_wait_since).
#[no_mangle]
pub extern "C" fn sharedarea_updates(id: i32, out: *mut u64) -> i32 {
    boundary("sharedarea_updates", || {
        let area = registry::get(id)?;
        *try_mut(out, "out")? = area.updates();
        Ok(0)
    })
}

/// Returns 0 as soon as the update counter differs from `seen` (at once if it
/// already does). `timeout_ms` 0: no limit. After INTERRUPTED, call again with
/// the same `seen` and the time left: no update is missed.
#[no_mangle]
pub extern "C" fn sharedarea_wait_since(id: i32, seen: u64, timeout_ms: i64) -> i32 {
    boundary("sharedarea_wait_since", || {
        let area = registry::get(id)?;
        if timeout_ms < 0 {
            return Err(Error::area(
                Status::InvalidArgument,
                id,
                format!("timeout {timeout_ms} ms is negative"),
            ));
        }
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
        area.wait_since(seen, timeout)?;
        Ok(0)
    })
}

/// Counts an update and wakes waiters without changing bytes.
#[no_mangle]
pub extern "C" fn sharedarea_update(id: i32) -> i32 {
    boundary("sharedarea_update", || {
        registry::get(id)?.update()?;
        Ok(0)
    })
}

fn taken(function: &'static str, id: i32, recovered: bool) -> i32 {
    if recovered {
        note(
            function,
            format!("area {id}: took the lock after clearing a holder that died"),
        );
        Status::Recovered.code()
    } else {
        0
    }
}

/// Takes the area's read lock (nests). Returns 0 or RECOVERED.
#[no_mangle]
pub extern "C" fn sharedarea_rlock(id: i32) -> i32 {
    boundary("sharedarea_rlock", || {
        let recovered = registry::get(id)?.rlock()?;
        Ok(taken("sharedarea_rlock", id, recovered))
    })
}

/// Takes the area's write lock (nests). Returns 0 or RECOVERED.
#[no_mangle]
pub extern "C" fn sharedarea_wlock(id: i32) -> i32 {
    boundary("sharedarea_wlock", || {
        let recovered = registry::get(id)?.wlock()?;
        Ok(taken("sharedarea_wlock", id, recovered))
    })
}

/// Releases one level of this thread's rlock/wlock.
#[no_mangle]
pub extern "C" fn sharedarea_unlock(id: i32) -> i32 {
    boundary("sharedarea_unlock", || {
        registry::get(id)?.unlock()?;
        Ok(0)
    })
}

//! The lock, waiting for updates, counting updates.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use super::{boundary, note, try_mut};
use crate::lock::holds::Held;
use crate::lock::Patience;
use crate::registry;
use crate::status::{Error, Result, Status};

/// Blocks until the area is updated after the call began. `timeout_s` 0: no
/// limit; negative: INVALID_ARGUMENT. `freq_ms` (>= 0) is accepted for uWSGI
/// compatibility and ignored: waiters are woken by the update itself. Returns 0,
/// TIMED_OUT, or INTERRUPTED (a signal arrived; see sharedarea_wait_since to resume).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_wait(id: i32, freq_ms: i32, timeout_s: i32) -> i32 {
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
pub unsafe extern "C" fn sharedarea_updates(id: i32, out: *mut u64) -> i32 {
    boundary("sharedarea_updates", || {
        let area = registry::get(id)?;
        // SAFETY: `out` is NULL or valid for writes during the call (the header's contract).
        *unsafe { try_mut(out, "out") }? = area.updates();
        Ok(0)
    })
}

/// Returns 0 as soon as the update counter differs from `seen` (at once if it
/// already does). `timeout_ms` 0: no limit. After INTERRUPTED, call again with
/// the same `seen` and the time left: no update is missed.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_wait_since(id: i32, seen: u64, timeout_ms: i64) -> i32 {
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

/// Returns 0 as soon as the update counter differs from `seen` (at once if it
/// already does), E_TIMED_OUT once CLOCK_MONOTONIC passes `deadline_ns`
/// (nanoseconds; 0: no limit), E_INTERRUPTED when a signal arrives. The
/// deadline is absolute, so a caller that runs its signal handlers on
/// E_INTERRUPTED calls again with the same `seen` and `deadline_ns`: no update
/// is missed and no time is added.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_wait_until(id: i32, seen: u64, deadline_ns: i64) -> i32 {
    boundary("sharedarea_wait_until", || {
        let area = registry::get(id)?;
        if deadline_ns < 0 {
            return Err(Error::area(
                Status::InvalidArgument,
                id,
                format!("deadline {deadline_ns} ns is negative (0 means no limit)"),
            ));
        }
        let timeout = if deadline_ns == 0 {
            None
        } else {
            let left = deadline_ns.saturating_sub(monotonic_ns());
            if left <= 0 {
                if area.updates() != seen {
                    return Ok(0);
                }
                return Err(Error::area(
                    Status::TimedOut,
                    id,
                    "the deadline passed with no update",
                ));
            }
            Some(Duration::from_nanos(left as u64))
        };
        area.wait_since(seen, timeout)?;
        Ok(0)
    })
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock of `sharedarea_wait_until`).
#[allow(clippy::unnecessary_cast)] // time_t and c_long are not i64 on every target
fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as i64)
}

/// Counts an update and wakes waiters without changing bytes.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_update(id: i32) -> i32 {
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
pub unsafe extern "C" fn sharedarea_rlock(id: i32) -> i32 {
    boundary("sharedarea_rlock", || {
        let recovered = registry::get(id)?.rlock()?;
        Ok(taken("sharedarea_rlock", id, recovered))
    })
}

/// Takes the area's write lock (nests). Returns 0 or RECOVERED.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_wlock(id: i32) -> i32 {
    boundary("sharedarea_wlock", || {
        let recovered = registry::get(id)?.wlock()?;
        Ok(taken("sharedarea_wlock", id, recovered))
    })
}

/// Releases one level of this thread's rlock/wlock.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_unlock(id: i32) -> i32 {
    boundary("sharedarea_unlock", || {
        registry::get(id)?.unlock()?;
        Ok(0)
    })
}

/// The patience a `timeout_ms` argument asks for: -1 no limit, 0 one try, > 0
/// that long; interruptible by signals.
fn patience(id: i32, timeout_ms: i64) -> Result<(Patience, Option<Duration>)> {
    match timeout_ms {
        -1 => Ok((
            Patience {
                deadline: None,
                interruptible: true,
                since: None,
            },
            None,
        )),
        t if t >= 0 => {
            let d = Duration::from_millis(t as u64);
            Ok((
                Patience {
                    deadline: Some(Instant::now() + d),
                    interruptible: true,
                    since: None,
                },
                Some(d),
            ))
        }
        t => Err(Error::area(
            Status::InvalidArgument,
            id,
            format!("timeout {t} ms is negative (-1 means no limit)"),
        )),
    }
}

/// The timed lock entry points' one body: the read or write lock, as patient
/// as `patience` works out from the call's arguments.
#[inline(always)]
fn timed_lock(
    function: &'static str,
    id: i32,
    write: bool,
    patience: impl FnOnce() -> Result<(Patience, Option<Duration>)>,
) -> i32 {
    boundary(function, || {
        let area = registry::get(id)?;
        let (p, t) = patience()?;
        let recovered = if write {
            area.wlock_with(p, t)
        } else {
            area.rlock_with(p, t)
        }?;
        Ok(taken(function, id, recovered))
    })
}

/// Takes the area's read lock (nests), waiting at most `timeout_ms` (-1: no
/// limit, 0: one try). Returns 0, RECOVERED, E_TIMED_OUT (the last error names
/// the holder and how long it kept this caller waiting), or E_INTERRUPTED (a signal
/// arrived while blocked; nothing is held: call again with the time left).
/// As with any EINTR-based wait, a signal that lands while the caller is
/// between two of its sleeps (it wakes every 100 ms to check the holders) runs
/// its handler without ending the wait: a language binding that must run its
/// own handlers promptly waits in slices (the Perl and Python modules do).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_rlock_timeout(id: i32, timeout_ms: i64) -> i32 {
    timed_lock("sharedarea_rlock_timeout", id, false, || {
        patience(id, timeout_ms)
    })
}

/// Takes the area's write lock (nests), waiting at most `timeout_ms`; as
/// sharedarea_rlock_timeout.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_wlock_timeout(id: i32, timeout_ms: i64) -> i32 {
    timed_lock("sharedarea_wlock_timeout", id, true, || {
        patience(id, timeout_ms)
    })
}

/// Takes the area's read lock (nests), waiting until CLOCK_MONOTONIC passes
/// `deadline_ns` (nanoseconds; 0: no limit). `since_ns` is when the caller began
/// waiting (CLOCK_MONOTONIC nanoseconds; 0: at this call): a binding that waits
/// in slices, running its own signal handlers between them, passes the same
/// `since_ns` to each slice, and the last slice's E_TIMED_OUT text counts the
/// whole wait ("timed out after <deadline - since> s ... for at least <now -
/// since> s"; a `since_ns` later than either counts as 0 s). Returns as
/// sharedarea_rlock_timeout; a negative `deadline_ns` or `since_ns` is
/// E_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_rlock_until(id: i32, deadline_ns: i64, since_ns: i64) -> i32 {
    timed_lock("sharedarea_rlock_until", id, false, || {
        patience_until(id, deadline_ns, since_ns)
    })
}

/// Takes the area's write lock (nests), waiting until `deadline_ns`; as
/// sharedarea_rlock_until.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_wlock_until(id: i32, deadline_ns: i64, since_ns: i64) -> i32 {
    timed_lock("sharedarea_wlock_until", id, true, || {
        patience_until(id, deadline_ns, since_ns)
    })
}

/// The patience `deadline_ns`/`since_ns` ask for (CLOCK_MONOTONIC, which is
/// `Instant`'s clock here), and the whole wait for the timeout's text.
fn patience_until(
    id: i32,
    deadline_ns: i64,
    since_ns: i64,
) -> Result<(Patience, Option<Duration>)> {
    if deadline_ns < 0 || since_ns < 0 {
        return Err(Error::area(
            Status::InvalidArgument,
            id,
            format!("deadline {deadline_ns} ns / since {since_ns} ns: negative (0 means none)"),
        ));
    }
    let since = (since_ns != 0).then(|| instant_at(since_ns));
    // a deadline too far to represent is no limit
    let deadline = if deadline_ns != 0 {
        instant_at_checked(deadline_ns)
    } else {
        None
    };
    let whole = deadline.map(|d| d.saturating_duration_since(since.unwrap_or_else(Instant::now)));
    Ok((
        Patience {
            deadline,
            interruptible: true,
            since,
        },
        whole,
    ))
}

/// One reading of both clocks, taken once: `Instant` is CLOCK_MONOTONIC here, so
/// a CLOCK_MONOTONIC time in nanoseconds maps to an `Instant` by arithmetic, and
/// a timed lock reads no clock to learn its deadline.
///
/// The `Instant` is paired with the CLOCK_MONOTONIC reading taken just before
/// it, from the try whose next reading came soonest (a preemption between the
/// readings would otherwise shift every deadline of the process): deadlines can
/// only be late, by that gap (under 2 us normally), never early. Kept without a lock (a leaked pair published by
/// compare-exchange): a fork while another thread sets it up leaves nothing half
/// done in the child.
fn clock_base() -> (Instant, i64) {
    static BASE: AtomicPtr<(Instant, i64)> = AtomicPtr::new(std::ptr::null_mut());
    let p = BASE.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: a non-null BASE points at a leaked, never-freed, never-written pair.
        return unsafe { *p };
    }
    // The Instant paired with the CLOCK_MONOTONIC reading taken just before it:
    // late by the gap between the two, never early; the closest pair of a few
    // tries (a preemption inside one only makes that try's gap long).
    let reading = || {
        let before = monotonic_ns();
        let at = Instant::now();
        (at, before, monotonic_ns() - before)
    };
    let (mut at, mut before, mut gap) = reading();
    for _ in 1..16 {
        if gap < 2_000 {
            break;
        }
        let (a, b, g) = reading();
        if g < gap {
            (at, before, gap) = (a, b, g);
        }
    }
    let pair = (at, before);
    let fresh = Box::into_raw(Box::new(pair));
    match BASE.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => pair,
        Err(won) => {
            // SAFETY: `fresh` was never published; `won` is a published pair (above).
            unsafe {
                drop(Box::from_raw(fresh));
                *won
            }
        }
    }
}

/// The `Instant` of CLOCK_MONOTONIC time `ns`; None when not representable.
fn instant_at_checked(ns: i64) -> Option<Instant> {
    let (base, base_ns) = clock_base();
    if ns >= base_ns {
        base.checked_add(Duration::from_nanos(ns.abs_diff(base_ns)))
    } else {
        base.checked_sub(Duration::from_nanos(ns.abs_diff(base_ns)))
    }
}

/// As `instant_at_checked`, clamped to the nearest representable instant.
fn instant_at(ns: i64) -> Instant {
    instant_at_checked(ns).unwrap_or_else(|| clock_base().0)
}

/// How this thread holds the area's lock: 0 not at all, 1 the read lock, 2 the
/// write lock; or a negative status.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_held(id: i32) -> i32 {
    boundary("sharedarea_held", || {
        Ok(match registry::get(id)?.held() {
            Held::None => 0,
            Held::Read => 1,
            Held::Write => 2,
        })
    })
}

/// Releases every nested level of this thread's hold on the area; returns how
/// many levels it released (0 if it held none), or a negative status.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_unlock_all(id: i32) -> i32 {
    boundary("sharedarea_unlock_all", || {
        let n = registry::get(id)?.unlock_all()?;
        Ok(n.min(i32::MAX as u32) as i32)
    })
}

/// The state of an area's lock (`sharedarea_lock_info`).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct sharedarea_lock_info {
    /// Pid of the write lock's holder as it recorded itself (0: none).
    pub writer_pid: u32,
    /// Processes holding read locks now.
    pub reader_processes: u32,
    /// Read locks held now, over all processes.
    pub readers: u64,
    /// Processes that hold a slot in the lock (attached and having used it).
    pub processes: u32,
    pub reserved: u32,
    /// Locks recovered from holders that died (or threads that exited holding).
    pub recoveries: u64,
    /// Times a waiter could not tell whether a holder was alive, and waited.
    pub undecided: u64,
    /// The update count right after the last recovery of a dead writer, whose
    /// update may be torn (0: never).
    pub writer_recovery_updates: u64,
}

/// Fills `out` with the state of the area's lock.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_lock_info(id: i32, out: *mut sharedarea_lock_info) -> i32 {
    boundary("sharedarea_lock_info", || {
        let area = registry::get(id)?;
        // SAFETY: `out` is NULL or valid for writes during the call (the header's contract).
        let out = unsafe { try_mut(out, "out") }?;
        let s = area.lock_snapshot();
        *out = sharedarea_lock_info {
            writer_pid: s.writer_pid,
            reader_processes: s.reader_processes,
            readers: s.readers,
            processes: s.processes,
            reserved: 0,
            recoveries: area.info().recoveries,
            undecided: s.undecided,
            writer_recovery_updates: s.writer_recovery_updates,
        };
        Ok(0)
    })
}

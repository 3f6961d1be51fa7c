//! The area's reader/writer lock: a futex word in shared memory, reader slots for
//! the processes using it, and recovery from holders that die.
//!
//! # The state word (`Control::lock.state`, 32 bits, the futex word)
//!
//! ```text
//!  31 ............ 10 | 9              | 8            | 7 ........ 0
//!  generation         | UPDATE_WAITERS | LOCK_WAITERS | writer slot + 1 (0: no writer)
//! ```
//!
//! * The writer is named by its *slot* (below), not its pid, so a waiter can find
//!   the holder's pid and start time and tell whether it died.
//! * `generation` grows by one at every write acquisition; an optimistic reader
//!   (a seqlock reader) that sees the same writer field and generation before and
//!   after copying knows no writer ran in between.
//! * `LOCK_WAITERS`: someone sleeps on this word; the releasing writer wakes them.
//! * `UPDATE_WAITERS`: someone sleeps on the update counter; the releasing writer
//!   (who is the only one to bump it) wakes them.
//!
//! # Reader slots (`Control::slots`)
//!
//! Each process using the area claims one cache-line slot `{pid, readers, start}`
//! once. A read lock is `readers += 1` in the process's own slot, so readers in
//! different processes never write a shared cache line.
//!
//! # Protocol
//!
//! * Write lock: CAS the writer field from 0 to `my slot + 1` (bumping the
//!   generation), then wait until every slot's `readers` is 0. New readers see
//!   the writer field and back off, so a stream of readers cannot starve a writer.
//! * Read lock: if no writer, `readers += 1`, then re-check the writer field; if a
//!   writer came in, undo (waking it) and wait. Both sides do a read-modify-write
//!   and then a load (Dekker): one of them always sees the other.
//! * Plain reads (`read`, `readN`) take no lock at all when they can: they copy
//!   optimistically and keep the result only if the writer field and generation
//!   are unchanged; after a few failed tries they take the read lock.
//! * Blocked callers spin briefly, then sleep with `FUTEX_WAIT` for at most
//!   `CHECK_INTERVAL`; while blocked they check every `CHECK_INTERVAL` whether the
//!   writer (or, for a writer draining readers, a reader slot's process) is dead —
//!   pid and start time (see `process`). A dead writer's field is cleared with a
//!   CAS from the exact state observed (generation included), a dead reader's
//!   count is zeroed after taking its slot; `recoveries` counts both, and the
//!   caller is told. A dead holder therefore blocks the others for at most about
//!   two check intervals.
//!
//! # This thread's holds
//!
//! `rlock`/`wlock` record per thread which areas it holds and how (`HOLDS`), so an
//! operation on an area this thread holds goes straight through (under a write
//! lock), or is refused (a write under a read lock) instead of deadlocking. The
//! record is per thread and is cleared in a forked child: a child never owns the
//! lock its parent held.

use std::cell::RefCell;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::control::{Control, RESERVED_BIT, SLOTS};
use crate::futex;
use crate::process;
use crate::status::{Error, Result, Status};

pub(crate) const WRITER_MASK: u32 = 0xFF;
pub(crate) const LOCK_WAITERS: u32 = 1 << 8;
pub(crate) const UPDATE_WAITERS: u32 = 1 << 9;
const FLAGS: u32 = LOCK_WAITERS | UPDATE_WAITERS;
const GEN_ONE: u32 = 1 << 10;
const GEN_MASK: u32 = !(GEN_ONE - 1);
/// The bits that identify one write acquisition.
const HOLDING: u32 = WRITER_MASK | GEN_MASK;

/// How long a blocked caller sleeps before it checks whether the holder died.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const SPINS: u32 = 200;
const OPTIMISTIC_TRIES: u32 = 4;

const _: () = assert!(SLOTS < WRITER_MASK as usize + 1);

/// Gives back a slot this process claimed but does not use (it holds nothing).
pub fn release_slot(ctl: &Control, slot: u32) {
    let s = &ctl.slots[slot as usize];
    s.start.store(0, Ordering::Relaxed);
    s.pid.store(0, Ordering::Release);
}

/// What `reclaim_if_dead` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reclaim {
    /// The slot is free now.
    free: bool,
    /// A dead process's lock (its write lock or its read locks) was cleared.
    recovered: bool,
}

/// Claims a reader slot for this process (once per process and area). Returns the
/// slot and whether a dead holder's lock was cleared on the way.
pub fn claim_slot(ctl: &Control) -> Result<(u32, bool)> {
    let (pid, start) = process::current();
    let mut recovered = false;
    for attempt in 0..2 {
        let hwm = (ctl.lock.slot_hwm.load(Ordering::Acquire) as usize).min(SLOTS);
        let first_free = (0..SLOTS).find(|&i| ctl.slots[i].pid.load(Ordering::Relaxed) == 0);
        // Prefer a free slot below the high-water mark, then a dead process's slot
        // below it, then growing it; on the second attempt reclaim anywhere.
        let limit = if attempt == 0 { hwm } else { SLOTS };
        let mut candidates: Vec<usize> = first_free.filter(|&i| i < hwm).into_iter().collect();
        if candidates.is_empty() {
            for i in 0..limit {
                let r = reclaim_if_dead(ctl, i);
                recovered |= r.recovered;
                if r.free {
                    candidates.push(i);
                    break;
                }
            }
            candidates.extend(first_free);
        }
        for i in candidates.into_iter().chain(0..SLOTS) {
            let slot = &ctl.slots[i];
            if slot
                .pid
                .compare_exchange(0, RESERVED_BIT | pid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot.readers.store(0, Ordering::Relaxed);
                slot.start.store(start, Ordering::Relaxed);
                slot.pid.store(pid, Ordering::Release);
                ctl.lock.slot_hwm.fetch_max(i as u32 + 1, Ordering::SeqCst);
                return Ok((i as u32, recovered));
            }
        }
    }
    Err(Error::new(
        Status::Limit,
        format!("{SLOTS} live processes already use this area's lock"),
    ))
}

/// Frees slot `i` if its process is dead, clearing a write lock or read locks it
/// held (and counting that as a recovery).
fn reclaim_if_dead(ctl: &Control, i: usize) -> Reclaim {
    let busy = Reclaim {
        free: false,
        recovered: false,
    };
    let slot = &ctl.slots[i];
    let pid = slot.pid.load(Ordering::Acquire);
    if pid == 0 {
        return Reclaim {
            free: true,
            recovered: false,
        };
    }
    if pid & RESERVED_BIT != 0 {
        return finish_abandoned_reservation(ctl, i, pid);
    }
    let start = slot.start.load(Ordering::Acquire);
    if !process::is_dead(pid, start) {
        return busy;
    }
    let mut recovered = false;
    let s = ctl.lock.state.load(Ordering::Acquire);
    if s & WRITER_MASK == i as u32 + 1 {
        recovered = clear_dead_writer(ctl, s);
        if ctl.lock.state.load(Ordering::Acquire) & WRITER_MASK == i as u32 + 1 {
            return Reclaim {
                free: false,
                recovered,
            };
        }
    }
    let me = RESERVED_BIT | process::current().0;
    if slot
        .pid
        .compare_exchange(pid, me, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return Reclaim {
            free: false,
            recovered,
        };
    }
    if slot.start.load(Ordering::Acquire) != start {
        // Freed and claimed again meanwhile by a new process that got the same
        // pid: not ours to free.
        slot.pid.store(pid, Ordering::Release);
        return Reclaim {
            free: false,
            recovered,
        };
    }
    recovered |= free_reserved_slot(ctl, i);
    Reclaim {
        free: true,
        recovered,
    }
}

/// A slot marked as being claimed or freed by a process that died doing it:
/// finish freeing it (a process killed there must not block anyone).
fn finish_abandoned_reservation(ctl: &Control, i: usize, marked: u32) -> Reclaim {
    let busy = Reclaim {
        free: false,
        recovered: false,
    };
    if !process::pid_is_gone(marked & !RESERVED_BIT) {
        return busy;
    }
    let me = RESERVED_BIT | process::current().0;
    if ctl.slots[i]
        .pid
        .compare_exchange(marked, me, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return busy;
    }
    let recovered = free_reserved_slot(ctl, i);
    Reclaim {
        free: true,
        recovered,
    }
}

/// With slot `i` marked as ours: zero a dead owner's read locks (a recovery,
/// waking a writer that drains them) and free the slot.
fn free_reserved_slot(ctl: &Control, i: usize) -> bool {
    let slot = &ctl.slots[i];
    let mut recovered = false;
    if slot.readers.swap(0, Ordering::AcqRel) != 0 {
        ctl.used.recoveries.fetch_add(1, Ordering::Relaxed);
        // A writer draining this slot sleeps on its readers word.
        futex::wake_all(&slot.readers);
        recovered = true;
    }
    slot.start.store(0, Ordering::Relaxed);
    slot.pid.store(0, Ordering::Release);
    recovered
}

/// Whether the writer named in state `s` is dead.
fn writer_is_dead(ctl: &Control, s: u32) -> bool {
    let w = s & WRITER_MASK;
    if w == 0 {
        return false;
    }
    let slot = &ctl.slots[(w - 1) as usize];
    match slot.pid.load(Ordering::Acquire) {
        0 => true,
        pid if pid & RESERVED_BIT != 0 => process::pid_is_gone(pid & !RESERVED_BIT),
        pid => process::is_dead(pid, slot.start.load(Ordering::Acquire)),
    }
}

/// Clears the write lock described by `s` if its holder is dead, and only that
/// acquisition (same writer and generation). Returns whether it cleared it.
fn clear_dead_writer(ctl: &Control, s: u32) -> bool {
    if !writer_is_dead(ctl, s) {
        return false;
    }
    let mut cur = s;
    loop {
        if cur & HOLDING != s & HOLDING {
            return false; // someone else recovered it, or it changed hands
        }
        match ctl.lock.state.compare_exchange_weak(
            cur,
            cur & !(WRITER_MASK | FLAGS),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                ctl.used.recoveries.fetch_add(1, Ordering::Relaxed);
                futex::wake_all(&ctl.lock.state);
                futex::wake_all(ctl.updates_futex_word());
                return true;
            }
            Err(now) => cur = now,
        }
    }
}

/// Sleeps until the state word changes from `s` (arming `LOCK_WAITERS`), at most
/// `CHECK_INTERVAL`. Checks for a dead writer when `check_due`.
fn sleep_on_state(ctl: &Control, s: u32, next_check: &mut Option<Instant>) -> bool {
    let armed = s | LOCK_WAITERS;
    if s & LOCK_WAITERS == 0
        && ctl
            .lock
            .state
            .compare_exchange(s, armed, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return false;
    }
    let woke = futex::wait(&ctl.lock.state, armed, Some(CHECK_INTERVAL));
    if check_due(woke, next_check) {
        let cur = ctl.lock.state.load(Ordering::Acquire);
        return clear_dead_writer(ctl, cur);
    }
    false
}

/// Whether a blocked caller should now check the holder's liveness: after a whole
/// interval asleep with no wake, or once `CHECK_INTERVAL` has passed since the
/// last check. (Not on every wake: a busy lock wakes its waiters often, and a
/// check reads /proc.)
fn check_due(woke: futex::Wake, next_check: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    let due = match *next_check {
        None => woke == futex::Wake::TimedOut,
        Some(due) => now >= due || woke == futex::Wake::TimedOut,
    };
    if due || next_check.is_none() {
        *next_check = Some(now + CHECK_INTERVAL);
    }
    due
}

/// One step of waiting while a writer holds the lock (state `s`): spin a while,
/// then sleep on the state word. Returns whether a dead writer was cleared.
#[inline]
fn wait_for_writer(
    ctl: &Control,
    s: u32,
    spins: &mut u32,
    next_check: &mut Option<Instant>,
) -> bool {
    if *spins < SPINS {
        *spins += 1;
        std::hint::spin_loop();
        return false;
    }
    sleep_on_state(ctl, s, next_check)
}

/// Takes the write lock. Returns whether a dead holder was cleared on the way.
pub fn lock_exclusive(ctl: &Control, me: u32) -> bool {
    let state = &ctl.lock.state;
    let mut recovered = false;
    let mut spins = 0;
    let mut next_check = None;
    loop {
        let s = state.load(Ordering::Relaxed);
        if s & WRITER_MASK == 0 {
            let new = (s & FLAGS) | ((s & GEN_MASK).wrapping_add(GEN_ONE)) | (me + 1);
            if state
                .compare_exchange_weak(s, new, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
            continue;
        }
        recovered |= wait_for_writer(ctl, s, &mut spins, &mut next_check);
    }
    recovered | drain_readers(ctl)
}

/// With the writer field ours, waits until no process holds a read lock.
fn drain_readers(ctl: &Control) -> bool {
    let hwm = (ctl.lock.slot_hwm.load(Ordering::SeqCst) as usize).min(SLOTS);
    let mut recovered = false;
    for i in 0..hwm {
        if ctl.slots[i].readers.load(Ordering::SeqCst) != 0 {
            recovered |= drain_slot(ctl, i);
        }
    }
    recovered
}

#[cold]
fn drain_slot(ctl: &Control, i: usize) -> bool {
    let slot = &ctl.slots[i];
    let mut recovered = false;
    let mut spins = 0;
    let mut next_check: Option<Instant> = None;
    loop {
        let r = slot.readers.load(Ordering::SeqCst);
        if r == 0 {
            return recovered;
        }
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
            continue;
        }
        let woke = futex::wait(&slot.readers, r, Some(CHECK_INTERVAL));
        if check_due(woke, &mut next_check) {
            recovered |= reclaim_if_dead(ctl, i).recovered;
        }
    }
}

/// Releases the write lock and wakes whoever waits on it or on updates.
pub fn unlock_exclusive(ctl: &Control) {
    let old = ctl
        .lock
        .state
        .fetch_and(!(WRITER_MASK | FLAGS), Ordering::SeqCst);
    if old & LOCK_WAITERS != 0 {
        futex::wake_all(&ctl.lock.state);
    }
    if old & UPDATE_WAITERS != 0 {
        futex::wake_all(ctl.updates_futex_word());
    }
}

/// Takes a read lock in slot `me`. Returns whether a dead writer was cleared.
pub fn lock_shared(ctl: &Control, me: u32) -> bool {
    let state = &ctl.lock.state;
    let slot = &ctl.slots[me as usize];
    let mut recovered = false;
    let mut spins = 0;
    let mut next_check = None;
    loop {
        let s = state.load(Ordering::SeqCst);
        if s & WRITER_MASK == 0 {
            slot.readers.fetch_add(1, Ordering::SeqCst);
            if state.load(Ordering::SeqCst) & WRITER_MASK == 0 {
                return recovered;
            }
            unlock_shared(ctl, me);
            continue;
        }
        recovered |= wait_for_writer(ctl, s, &mut spins, &mut next_check);
    }
}

/// Releases a read lock held in slot `me`, waking a writer that drains readers.
pub fn unlock_shared(ctl: &Control, me: u32) {
    let slot = &ctl.slots[me as usize];
    let before = slot.readers.fetch_sub(1, Ordering::SeqCst);
    if before == 1 && ctl.lock.state.load(Ordering::SeqCst) & WRITER_MASK != 0 {
        futex::wake_all(&slot.readers);
    }
}

/// Runs `f` without taking the lock and returns its result if no writer held or
/// took the lock meanwhile; `None` after a few failed tries (take the read lock).
///
/// `f` must only copy: its result is thrown away when a writer interfered.
/// Interference shows as a writer in the state word, a new generation, or a
/// changed update counter (every write section counts one update): the last
/// makes the check immune to the 22-bit generation wrapping around while a
/// reader is descheduled mid-copy.
#[inline]
pub fn optimistic<T>(ctl: &Control, mut f: impl FnMut() -> T) -> Option<T> {
    let state = &ctl.lock.state;
    let updates = &ctl.updates.updates;
    for _ in 0..OPTIMISTIC_TRIES {
        let before = state.load(Ordering::Acquire);
        if before & WRITER_MASK != 0 {
            std::hint::spin_loop();
            continue;
        }
        let updates_before = updates.load(Ordering::Acquire);
        let value = f();
        fence(Ordering::Acquire);
        let updates_after = updates.load(Ordering::Relaxed);
        let after = state.load(Ordering::Relaxed);
        if (before ^ after) & HOLDING == 0 && updates_before == updates_after {
            return Some(value);
        }
    }
    None
}

/// Arms `UPDATE_WAITERS` so the next writer's release wakes update waiters.
pub fn arm_update_waiters(ctl: &Control) {
    ctl.lock.state.fetch_or(UPDATE_WAITERS, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------
// This thread's holds.

/// How this thread holds an area's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    None,
    Read,
    Write,
}

struct Hold {
    area: i32,
    write: bool,
    depth: u32,
}

/// Set once any thread of this process has taken an explicit lock (rlock/wlock),
/// and never cleared: until then `held` answers without touching thread-locals
/// (from a shared object a thread-local access is a call to `__tls_get_addr`),
/// and afterwards rlock/unlock pay no extra atomic read-modify-write for it.
static EXPLICIT_LOCKS_USED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static HOLDS: RefCell<Vec<Hold>> = const { RefCell::new(Vec::new()) };
}

/// How this thread holds `area`'s lock.
#[inline]
pub fn held(area: i32) -> Held {
    if !EXPLICIT_LOCKS_USED.load(Ordering::Relaxed) {
        return Held::None;
    }
    held_by_this_thread(area)
}

#[inline(never)]
fn held_by_this_thread(area: i32) -> Held {
    HOLDS.with(|h| {
        h.borrow()
            .iter()
            .find(|x| x.area == area)
            .map_or(
                Held::None,
                |x| if x.write { Held::Write } else { Held::Read },
            )
    })
}

/// Records one more hold (a nested one deepens the existing record).
pub fn push_hold(area: i32, write: bool) {
    HOLDS.with(|h| {
        let mut h = h.borrow_mut();
        match h.iter_mut().find(|x| x.area == area) {
            Some(x) => x.depth += 1,
            None => {
                h.push(Hold {
                    area,
                    write,
                    depth: 1,
                });
                if !EXPLICIT_LOCKS_USED.load(Ordering::Relaxed) {
                    EXPLICIT_LOCKS_USED.store(true, Ordering::Relaxed);
                }
            }
        }
    });
}

/// What dropping one level of hold did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Popped {
    /// This thread held nothing on the area.
    NotHeld,
    /// A nested level ended; the lock is still held.
    Nested,
    /// The outermost hold ended: the caller releases the lock (write or read).
    Last { write: bool },
}

/// Drops one level of hold.
pub fn pop_hold(area: i32) -> Popped {
    HOLDS.with(|h| {
        let mut h = h.borrow_mut();
        let Some(i) = h.iter().position(|x| x.area == area) else {
            return Popped::NotHeld;
        };
        if h[i].depth > 1 {
            h[i].depth -= 1;
            return Popped::Nested;
        }
        let write = h.swap_remove(i).write;
        Popped::Last { write }
    })
}

/// Forgets every hold of this thread (in a forked child: the parent's holds are
/// the parent's).
pub fn forget_holds() {
    HOLDS.with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            h.clear();
        }
    });
}

/// For `sharedarea_info`-style reporting and tests: the state word's writer slot.
pub fn writer_slot(ctl: &Control) -> Option<u32> {
    match ctl.lock.state.load(Ordering::Acquire) & WRITER_MASK {
        0 => None,
        w => Some(w - 1),
    }
}

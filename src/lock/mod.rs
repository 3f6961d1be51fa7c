//! The area's reader/writer lock: a futex word in shared memory, one slot per
//! process using the area, a liveness token per slot, and recovery from holders
//! that die.
//!
//! # How the lock knows who holds it (the choice, and why)
//!
//! Each process that takes the lock owns a *slot* (a cache line in the control
//! block), and owning a slot means holding the slot's *token*: a POSIX record
//! lock on one byte of a file every user of the area has open (`token`). The
//! kernel drops a dead process's record locks, and any process can ask about them
//! without `/proc`. So a holder is dead exactly when its slot's token is free —
//! under `hidepid`, for non-dumpable and setuid workers, without `/proc`, across
//! pid namespaces, whatever pid the kernel hands out next. We weighed:
//! * `/proc/PID/stat` (what we had): unreadable is not dead; wrong under hidepid.
//! * `kill(pid, 0)` and pidfds: no answer across namespaces, and a pid may be a
//!   new process (reuse). Used only for slotless holders (below).
//! * Robust futexes / robust pthread mutexes: owned by a *thread* (a slot would
//!   die with the thread that claimed it), glibc's layout in shared memory, and
//!   the robust list is glibc's to manage.
//! * OFD locks: shared with forked children through the inherited description,
//!   so a parent's death would stay hidden while a child lives.
//!
//! Traps of record locks are in `token`'s docs.
//!
//! # The state word (`Control::lock.state`, 32 bits, the futex word)
//!
//! ```text
//!  31 ............ 15 | 14             | 13           | 12 ........ 0
//!  generation         | UPDATE_WAITERS | LOCK_WAITERS | writer: slot + 1, SLOTLESS, or 0
//! ```
//!
//! * `generation` grows by one at every write acquisition; an optimistic reader
//!   that sees the same writer field, generation and update count before and
//!   after copying knows no writer ran in between.
//! * `LOCK_WAITERS`: someone sleeps on this word; the releasing writer wakes them.
//! * `UPDATE_WAITERS`: someone sleeps on the update counter.
//!
//! # Protocol
//!
//! * Write lock: CAS the writer field from 0 to ours (bumping the generation),
//!   `fence(Release)` (a seqlock writer's `smp_wmb`: no data store may be seen
//!   before the new generation), note the acquisition in our slot (`wgen`), then
//!   wait until every slot's `readers` is 0. New readers see the writer field
//!   and back off, so a stream of readers cannot starve a writer.
//! * Read lock: if no writer, `readers += 1` in our own slot, then re-check the
//!   writer field; if a writer came in, undo (waking it) and wait (Dekker: both
//!   sides do a read-modify-write and then a load).
//! * Plain reads copy optimistically with atomic loads (`seqcopy`) and keep the
//!   copy only if the writer field, generation and update count are unchanged.
//! * Unlock checks ownership: the writer field and generation must still be the
//!   ones we installed, a read count never goes below zero. A lock that was
//!   taken from us (we were judged dead) is an error, never someone else's
//!   lock released.
//! * Blocked callers spin briefly, then sleep with `FUTEX_WAIT` for at most
//!   `CHECK_INTERVAL` (or the time left of a timed lock), and every
//!   `CHECK_INTERVAL` check the holders: the writer, or — for a writer draining
//!   readers — *every* slot that still counts readers, in one pass. A dead
//!   holder's slot is taken over through its token (so no live process can
//!   claim it meanwhile), its write lock cleared with a CAS from the exact state
//!   observed, its read count zeroed, and the slot freed; `recoveries` counts
//!   each, and the caller is told (`RECOVERED`). However many died at once, a
//!   waiter is free within about two check intervals.
//! * A writer field that names a slot whose owner does not hold the lock (its
//!   `wgen` disagrees for a whole interval), or no slot at all, was scribbled on:
//!   it is cleared like a dead writer's.
//! * Slotless processes (all `SLOTS` taken, or no token file): their read locks
//!   are write locks, and as writers they name themselves in
//!   `lock.slotless`, checked by pid (`process::untokened_verdict`). When that
//!   cannot tell, waiters wait, count the case (`stats.undecided`) and say why
//!   when their wait times out.
//! * A writer that dies mid-update leaves its bytes as they were: the recovery
//!   counts one update (waking waiters, failing optimistic copies) and records
//!   the update count (`stats.writer_recovery_updates`), as a robust mutex's
//!   `EOWNERDEAD` would tell.

pub mod holds;
#[cfg(all(loom, test))]
mod model;
pub mod token;

use crate::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use crate::control::{Control, Slot, INT_OPS_MASK, INT_UPDATE_ONE, SLOTS};
use crate::futex::{self, Wake};
use crate::process::{self, Liveness};
use holds::Taken;
use token::{Token, TokenFile, TOKEN_OPS};

pub(crate) const WRITER_MASK: u32 = 0x1FFF;
/// The writer field of a writer that has no slot.
pub(crate) const SLOTLESS: u32 = WRITER_MASK;
pub(crate) const LOCK_WAITERS: u32 = 1 << 13;
pub(crate) const UPDATE_WAITERS: u32 = 1 << 14;
const FLAGS: u32 = LOCK_WAITERS | UPDATE_WAITERS;
pub(crate) const GEN_ONE: u32 = 1 << 15;
const GEN_MASK: u32 = !(GEN_ONE - 1);
/// The bits that identify one write acquisition.
pub(crate) const HOLDING: u32 = WRITER_MASK | GEN_MASK;

/// How long a blocked caller sleeps before it checks the holders.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Spins before sleeping (in the model test, a few: each is a yield there).
const SPINS: u32 = if cfg!(all(loom, test)) { 2 } else { 200 };
const OPTIMISTIC_TRIES: u32 = 4;

const _: () = assert!(SLOTS < SLOTLESS as usize);

/// Who takes the lock: a process with slot `i`, or a slotless one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Me {
    Slot(u32),
    Slotless,
}

impl Me {
    fn writer_bits(self) -> u32 {
        match self {
            Me::Slot(i) => i + 1,
            Me::Slotless => SLOTLESS,
        }
    }
    fn slot(self) -> Option<usize> {
        match self {
            Me::Slot(i) => Some(i as usize),
            Me::Slotless => None,
        }
    }
}

/// The area's lock as one process sees it: the control block and the token file.
#[derive(Clone, Copy)]
pub struct Lock<'a> {
    pub ctl: &'a Control,
    pub tokens: Option<&'a TokenFile>,
}

/// How long a caller may block.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// None: no limit.
    pub deadline: Option<Instant>,
    /// Return `Blocked::Interrupted` when a signal arrives while asleep.
    pub interruptible: bool,
    /// When the caller began waiting, if before this call (a binding that waits
    /// in slices): a timed-out caller is told how long the holder kept it out
    /// counting from here. None: from this call's first wait.
    pub since: Option<Instant>,
}

impl Patience {
    pub const FOREVER: Patience = Patience {
        deadline: None,
        interruptible: false,
        since: None,
    };
}

/// Why a lock was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// The deadline passed; who held the lock, for the message.
    TimedOut(String),
    Interrupted,
}

/// A taken lock: how, and whether a dead holder was cleared on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    pub taken: Taken,
    pub recovered: bool,
}

/// The state word changed hands under us: we no longer hold what we took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stolen;

// ---------------------------------------------------------------------------
// Slots.

/// Claims a slot for this process. `Ok(None)`: every slot is taken by a live
/// process, or there is no token file (the caller goes slotless). The bool says
/// whether a dead holder's lock was cleared on the way.
pub fn claim_slot(lk: Lock) -> (Option<u32>, bool) {
    let Some(tokens) = lk.tokens else {
        return (None, false);
    };
    let ctl = lk.ctl;
    let (pid, start) = process::current();
    let ns = process::pid_namespace();
    let _serial = TOKEN_OPS.lock();
    let mut recovered = false;
    // Free slots below the high-water mark first, then slots below it whose
    // owners died, then growing it: the prefix writers scan stays as short as
    // the most processes that ever used the area at once.
    let hwm = ctl.hwm(Ordering::Acquire);
    for pass in 0..3 {
        let range = if pass < 2 { 0..hwm } else { hwm..SLOTS };
        for i in range {
            let slot = &ctl.slots[i];
            let free = slot.pid.load(Ordering::Acquire) == 0;
            if free != (pass != 1) {
                continue;
            }
            if pass == 1 && tokens.holder(i) != Token::Free {
                continue;
            }
            match tokens.try_take(i) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return (None, recovered),
            }
            if !free {
                match process::token_free_verdict(
                    slot.pid.load(Ordering::Acquire),
                    slot.start.load(Ordering::Acquire),
                    slot.ns.load(Ordering::Acquire),
                ) {
                    Liveness::Dead => {}
                    _ => {
                        tokens.release(i);
                        ctl.stats.undecided.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            // The slot is ours: clear what a dead owner left, then name ourselves.
            recovered |= clear_dead_slot_state(ctl, i, Me::Slot(i as u32));
            slot.start.store(start, Ordering::Relaxed);
            slot.ns.store(ns, Ordering::Relaxed);
            slot.since_ms.store(0, Ordering::Relaxed);
            slot.wgen.store(0, Ordering::Relaxed);
            slot.pid.store(pid, Ordering::Release);
            ctl.lock.slot_hwm.fetch_max(i as u32 + 1, Ordering::SeqCst);
            return (Some(i as u32), recovered);
        }
    }
    (None, recovered)
}

/// Gives back a slot this process claimed but does not use (it holds nothing).
pub fn release_slot(lk: Lock, slot: u32) {
    let Some(tokens) = lk.tokens else { return };
    let _serial = TOKEN_OPS.lock();
    free_slot(lk.ctl, slot as usize);
    tokens.release(slot as usize);
}

fn free_slot(ctl: &Control, i: usize) {
    let slot = &ctl.slots[i];
    slot.start.store(0, Ordering::Relaxed);
    slot.ns.store(0, Ordering::Relaxed);
    slot.pid.store(0, Ordering::Release);
}

/// With slot `i`'s token in our hands: clear a write lock its dead owner held and
/// zero its read count. Returns whether either was held (a recovery).
fn clear_dead_slot_state(ctl: &Control, i: usize, me: Me) -> bool {
    let slot = &ctl.slots[i];
    let mut recovered = false;
    let s = ctl.lock.state.load(Ordering::Acquire);
    if s & WRITER_MASK == i as u32 + 1 {
        recovered |= clear_writer(ctl, s, me);
    }
    let r = slot.readers.swap(0, Ordering::AcqRel);
    if r != 0 {
        ctl.used.recoveries.fetch_add(1, Ordering::Relaxed);
        futex::wake_all(&slot.readers);
        gate_leave(ctl, r);
        recovered = true;
    }
    // Integer operations cut off by the owner's death (each is one atomic
    // instruction: none is torn). The slot keeps its update count.
    let mut v = slot.ints.load(Ordering::Acquire);
    while v & INT_OPS_MASK != 0 {
        match slot.ints.compare_exchange_weak(
            v,
            v & !INT_OPS_MASK,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                ctl.used.recoveries.fetch_add(1, Ordering::Relaxed);
                recovered = true;
                break;
            }
            Err(now) => v = now,
        }
    }
    recovered
}

/// Clears the write acquisition described by `s` (same writer and generation
/// only): takes the write lock over as `me` (a new generation), counts a
/// recovery and an update — the dead writer's bytes may be half-written — and
/// releases it. Returns whether it cleared it.
fn clear_writer(ctl: &Control, s: u32, me: Me) -> bool {
    let mut cur = s;
    let ours = loop {
        if cur & HOLDING != s & HOLDING {
            return false; // recovered by someone else, or changed hands
        }
        let ours = (cur & FLAGS) | ((cur & GEN_MASK).wrapping_add(GEN_ONE)) | me.writer_bits();
        match ctl
            .lock
            .state
            .compare_exchange_weak(cur, ours, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => break ours,
            Err(now) => cur = now,
        }
    };
    if let Me::Slot(i) = me {
        ctl.slots[i as usize]
            .wgen
            .store(ours & HOLDING, Ordering::Relaxed);
    }
    ctl.used.recoveries.fetch_add(1, Ordering::Relaxed);
    // We hold the write lock: the counter is ours to bump, as a writer's.
    let u = &ctl.updates.updates;
    let n = u.load(Ordering::Relaxed).wrapping_add(1);
    u.store(n, Ordering::Release);
    ctl.stats
        .writer_recovery_updates
        .store(n, Ordering::Relaxed);
    let _ = unlock_exclusive(ctl, ours);
    futex::wake_all(&ctl.lock.state);
    wake_update_waiters(ctl);
    true
}

/// What a check of one slot found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotCheck {
    Alive,
    Recovered(bool),
    Undecided,
}

/// Checks slot `i` (never this process's own `me`): if its token is free and its
/// owner is dead, take the slot over, clear what it held and free it.
fn check_slot(lk: Lock, i: usize, me: Me) -> SlotCheck {
    if Some(i) == me.slot() {
        return SlotCheck::Alive;
    }
    let Some(tokens) = lk.tokens else {
        return SlotCheck::Undecided;
    };
    if tokens.holder(i) != Token::Free {
        return SlotCheck::Alive;
    }
    let _serial = TOKEN_OPS.lock();
    if !matches!(tokens.try_take(i), Ok(true)) {
        return SlotCheck::Alive;
    }
    let slot = &lk.ctl.slots[i];
    let verdict = process::token_free_verdict(
        slot.pid.load(Ordering::Acquire),
        slot.start.load(Ordering::Acquire),
        slot.ns.load(Ordering::Acquire),
    );
    if verdict != Liveness::Dead {
        tokens.release(i);
        lk.ctl.stats.undecided.fetch_add(1, Ordering::Relaxed);
        return SlotCheck::Undecided;
    }
    let recovered = clear_dead_slot_state(lk.ctl, i, me);
    free_slot(lk.ctl, i);
    tokens.release(i);
    SlotCheck::Recovered(recovered)
}

// ---------------------------------------------------------------------------
// Waiting.

/// A blocked caller's bookkeeping: when to check the holders next, and what it
/// saw at the last check (a state that stays the same for a whole interval with
/// a slot that disagrees was scribbled on).
struct Waiter {
    /// When the caller first had to wait (set lazily: the uncontended path reads
    /// no clock).
    began: Option<Instant>,
    next_check: Option<Instant>,
    last_state: Option<u32>,
    spins: u32,
    undecided: Option<String>,
}

impl Waiter {
    fn new() -> Waiter {
        Waiter {
            began: None,
            next_check: None,
            last_state: None,
            spins: 0,
            undecided: None,
        }
    }

    /// Whether the holders should be checked now: after a whole interval asleep
    /// with no wake, or once `CHECK_INTERVAL` has passed since the last check.
    fn check_due(&mut self, woke: Wake) -> bool {
        // The model test has no processes that die, and a check that depends on
        // the clock would make its runs differ from one replay to the next.
        if cfg!(all(loom, test)) {
            return false;
        }
        let now = Instant::now();
        let due = match self.next_check {
            None => woke == Wake::TimedOut,
            Some(due) => now >= due || woke == Wake::TimedOut,
        };
        if due || self.next_check.is_none() {
            self.next_check = Some(now + CHECK_INTERVAL);
        }
        due
    }

    /// How long to sleep: an interval, or what is left of the caller's patience.
    fn nap(&self, p: Patience) -> Result<Duration, ()> {
        match p.deadline {
            None => Ok(CHECK_INTERVAL),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(left.min(CHECK_INTERVAL)),
                _ => Err(()),
            },
        }
    }
}

/// Checks the writer named in `s`; clears its lock if it is dead (or the field is
/// bogus). Returns whether it cleared it.
fn check_writer(lk: Lock, s: u32, me: Me, w: &mut Waiter) -> bool {
    let ctl = lk.ctl;
    let writer = s & WRITER_MASK;
    let seen_before = w.last_state == Some(s);
    w.last_state = Some(s);
    if writer == 0 {
        return false;
    }
    if writer == SLOTLESS {
        let sl = &ctl.lock.slotless;
        if sl.state.load(Ordering::Acquire) != s & HOLDING {
            // Not named yet (a writer between its CAS and its record), or bogus.
            return seen_before && clear_writer(ctl, s, me);
        }
        return match process::untokened_verdict(
            sl.pid.load(Ordering::Acquire),
            sl.start.load(Ordering::Acquire),
            sl.ns.load(Ordering::Acquire),
        ) {
            Liveness::Dead => clear_writer(ctl, s, me),
            Liveness::Alive => false,
            Liveness::Unknown(why) => {
                ctl.stats.undecided.fetch_add(1, Ordering::Relaxed);
                w.undecided = Some(why);
                false
            }
        };
    }
    let i = (writer - 1) as usize;
    if i >= SLOTS {
        return seen_before && clear_writer(ctl, s, me);
    }
    match check_slot(lk, i, me) {
        SlotCheck::Recovered(r) => r,
        SlotCheck::Undecided => {
            w.undecided = Some(format!(
                "the holder's liveness token is free, but /proc shows pid {} still running (was the area's descriptor closed?)",
                ctl.slots[i].pid.load(Ordering::Relaxed)
            ));
            false
        }
        SlotCheck::Alive => {
            // A live owner whose slot says it does not hold this acquisition, for a
            // whole interval: the word was scribbled on.
            let wgen = ctl.slots[i].wgen.load(Ordering::Acquire);
            seen_before && wgen != s & HOLDING && clear_writer(ctl, s, me)
        }
    }
}

/// Who holds the lock, for a timed-out caller's message.
fn describe_holders(lk: Lock, s: u32, w: &Waiter, draining: bool) -> String {
    let ctl = lk.ctl;
    let waited = crate::area::fmt_secs(w.began.map_or(Duration::ZERO, |b| b.elapsed()));
    let mut text = if draining {
        let pids: Vec<String> = (0..ctl.hwm(Ordering::Acquire))
            .filter(|&i| ctl.slots[i].readers.load(Ordering::Acquire) != 0)
            .take(8)
            .map(|i| ctl.slots[i].pid.load(Ordering::Relaxed).to_string())
            .collect();
        format!(
            "the read lock is held by pid {} (for at least {waited} s)",
            pids.join(", ")
        )
    } else {
        let writer = s & WRITER_MASK;
        let pid = if writer == SLOTLESS {
            ctl.lock.slotless.pid.load(Ordering::Relaxed)
        } else {
            ctl.slot((writer as usize).wrapping_sub(1))
                .map_or(0, |sl| sl.pid.load(Ordering::Relaxed))
        };
        format!("the write lock is held by pid {pid} (for at least {waited} s)")
    };
    if let Some(why) = &w.undecided {
        text.push_str("; whether it is alive cannot be told: ");
        text.push_str(why);
    }
    text
}

/// One step of waiting while a writer holds the lock (state `s`): spin a while,
/// then sleep on the state word. Returns whether a dead writer was cleared.
fn wait_for_writer(lk: Lock, s: u32, me: Me, w: &mut Waiter, p: Patience) -> Result<bool, Blocked> {
    if w.began.is_none() {
        w.began = Some(p.since.unwrap_or_else(Instant::now));
    }
    if w.spins < SPINS {
        w.spins += 1;
        crate::sync::spin_loop();
        return Ok(false);
    }
    let Ok(nap) = w.nap(p) else {
        return Err(Blocked::TimedOut(describe_holders(lk, s, w, false)));
    };
    let state = &lk.ctl.lock.state;
    let armed = s | LOCK_WAITERS;
    if s & LOCK_WAITERS == 0
        && state
            .compare_exchange(s, armed, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return Ok(false);
    }
    let woke = futex::wait(state, armed, Some(nap));
    if woke == Wake::Interrupted && p.interruptible {
        return Err(Blocked::Interrupted);
    }
    if w.check_due(woke) {
        let cur = state.load(Ordering::Acquire);
        return Ok(check_writer(lk, cur, me, w));
    }
    Ok(false)
}

// ---------------------------------------------------------------------------
// Taking and releasing.

/// Takes the write lock. The uncontended case (one CAS, no reader) is inlined;
/// everything that waits lives in `lock_exclusive_slow`.
#[inline]
pub fn lock_exclusive(lk: Lock, me: Me, p: Patience) -> Result<Acquired, Blocked> {
    let ctl = lk.ctl;
    let s = ctl.lock.state.load(Ordering::Relaxed);
    if s & WRITER_MASK == 0 {
        let new = (s & FLAGS) | ((s & GEN_MASK).wrapping_add(GEN_ONE)) | me.writer_bits();
        if ctl
            .lock
            .state
            .compare_exchange(s, new, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            installed(ctl, me, new);
            let hwm = ctl.hwm(Ordering::SeqCst);
            if (0..hwm).all(|i| !slot_busy(&ctl.slots[i])) {
                return Ok(Acquired {
                    taken: Taken::Exclusive(new),
                    recovered: false,
                });
            }
            return finish_exclusive(lk, me, p, new, false, &mut Waiter::new());
        }
    }
    lock_exclusive_slow(lk, me, p)
}

/// Right after our CAS installed `new`: fence, and name the acquisition.
#[inline]
fn installed(ctl: &Control, me: Me, new: u32) {
    // No data store of ours may be seen before the new generation.
    fence(Ordering::Release);
    match me {
        Me::Slot(i) => ctl.slots[i as usize]
            .wgen
            .store(new & HOLDING, Ordering::Relaxed),
        Me::Slotless => {
            let (pid, start) = process::current();
            let sl = &ctl.lock.slotless;
            sl.pid.store(pid, Ordering::Relaxed);
            sl.start.store(start, Ordering::Relaxed);
            sl.ns.store(process::pid_namespace(), Ordering::Relaxed);
            sl.state.store(new & HOLDING, Ordering::Release);
        }
    }
}

#[cold]
#[inline(never)]
fn lock_exclusive_slow(lk: Lock, me: Me, p: Patience) -> Result<Acquired, Blocked> {
    let ctl = lk.ctl;
    let state = &ctl.lock.state;
    let mut recovered = false;
    let mut w = Waiter::new();
    let new = loop {
        let s = state.load(Ordering::Relaxed);
        if s & WRITER_MASK == 0 {
            let new = (s & FLAGS) | ((s & GEN_MASK).wrapping_add(GEN_ONE)) | me.writer_bits();
            if state
                .compare_exchange_weak(s, new, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                break new;
            }
            continue;
        }
        if p.deadline.is_some_and(|d| d <= Instant::now()) && w.spins >= SPINS {
            return Err(Blocked::TimedOut(describe_holders(lk, s, &w, false)));
        }
        recovered |= wait_for_writer(lk, s, me, &mut w, p)?;
    };
    installed(ctl, me, new);
    finish_exclusive(lk, me, p, new, recovered, &mut w)
}

/// With the writer field ours: drain the readers, or back out.
#[cold]
#[inline(never)]
fn finish_exclusive(
    lk: Lock,
    me: Me,
    p: Patience,
    new: u32,
    recovered: bool,
    w: &mut Waiter,
) -> Result<Acquired, Blocked> {
    match drain_readers(lk, me, p, w) {
        Ok(r) => Ok(Acquired {
            taken: Taken::Exclusive(new),
            recovered: recovered | r,
        }),
        Err(b) => {
            let _ = unlock_exclusive(lk.ctl, new);
            Err(b)
        }
    }
}

/// With the writer field ours, waits until no process holds a read lock.
#[inline]
fn drain_readers(lk: Lock, me: Me, p: Patience, w: &mut Waiter) -> Result<bool, Blocked> {
    let ctl = lk.ctl;
    let hwm = ctl.hwm(Ordering::SeqCst);
    if (0..hwm).all(|i| !slot_busy(&ctl.slots[i])) {
        return Ok(false);
    }
    drain_slow(lk, me, p, w)
}

#[cold]
fn drain_slow(lk: Lock, me: Me, p: Patience, w: &mut Waiter) -> Result<bool, Blocked> {
    let ctl = lk.ctl;
    let mut recovered = false;
    w.spins = 0;
    w.next_check = None;
    if w.began.is_none() {
        w.began = Some(p.since.unwrap_or_else(Instant::now));
    }
    loop {
        let hwm = ctl.hwm(Ordering::SeqCst);
        let Some(busy) = (0..hwm).find(|&i| slot_busy(&ctl.slots[i])) else {
            return Ok(recovered);
        };
        if w.spins < SPINS {
            w.spins += 1;
            crate::sync::spin_loop();
            continue;
        }
        let slot: &Slot = &ctl.slots[busy];
        let r = slot.readers.load(Ordering::SeqCst);
        let Ok(nap) = w.nap(p) else {
            let s = ctl.lock.state.load(Ordering::Relaxed);
            return Err(Blocked::TimedOut(describe_holders(lk, s, w, true)));
        };
        let woke = if r == 0 {
            // An integer operation in progress: it lasts one instruction, unless
            // its process was stopped or killed there.
            int_pause(w)
        } else {
            futex::wait(&slot.readers, r, Some(nap))
        };
        if woke == Wake::Interrupted && p.interruptible {
            return Err(Blocked::Interrupted);
        }
        if w.check_due(woke) {
            // Every slot that still counts readers, in one pass.
            for i in 0..hwm {
                if slot_busy(&ctl.slots[i]) {
                    match check_slot(lk, i, me) {
                        SlotCheck::Recovered(r) => recovered |= r,
                        SlotCheck::Undecided => {
                            w.undecided = Some(format!(
                                "the liveness token of pid {} is free, but /proc shows it running",
                                ctl.slots[i].pid.load(Ordering::Relaxed)
                            ))
                        }
                        SlotCheck::Alive => {}
                    }
                }
            }
        }
    }
}

/// Releases the write lock installed as `acquired`, waking whoever waits on it or
/// on updates. `Err(Stolen)` if it is no longer ours (it was recovered from us).
#[inline]
pub fn unlock_exclusive(ctl: &Control, acquired: u32) -> Result<(), Stolen> {
    let state = &ctl.lock.state;
    let mut s = state.load(Ordering::Relaxed);
    loop {
        if s & HOLDING != acquired & HOLDING {
            return Err(Stolen);
        }
        match state.compare_exchange_weak(
            s,
            s & !(WRITER_MASK | FLAGS),
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => s = now,
        }
    }
    if s & LOCK_WAITERS != 0 {
        futex::wake_all(state);
    }
    if s & UPDATE_WAITERS != 0 {
        wake_update_waiters(ctl);
    }
    Ok(())
}

/// Wakes whoever sleeps waiting for an update.
fn wake_update_waiters(ctl: &Control) {
    ctl.updates.wake_seq.fetch_add(1, Ordering::SeqCst);
    futex::wake_all(ctl.updates_futex_word());
}

/// Takes a read lock (a slotless process takes the write lock instead). The
/// uncontended case is inlined.
#[inline]
pub fn lock_shared(lk: Lock, me: Me, p: Patience) -> Result<Acquired, Blocked> {
    if let Me::Slot(my) = me {
        let ctl = lk.ctl;
        if ctl.lock.state.load(Ordering::SeqCst) & WRITER_MASK == 0 {
            let slot = &ctl.slots[my as usize];
            // The gate first: no integer operation starts from here on.
            ctl.lock.rgate.fetch_add(1, Ordering::SeqCst);
            slot.readers.fetch_add(1, Ordering::SeqCst);
            if ctl.lock.state.load(Ordering::SeqCst) & WRITER_MASK == 0 {
                let hwm = ctl.hwm(Ordering::SeqCst);
                if (0..hwm).all(|i| ctl.slots[i].ints.load(Ordering::SeqCst) & INT_OPS_MASK == 0) {
                    return Ok(Acquired {
                        taken: Taken::Shared(my),
                        recovered: false,
                    });
                }
                return drain_ints(lk, me, p, &mut Waiter::new(), false, my);
            }
            let _ = unlock_shared(ctl, my);
        }
    }
    lock_shared_slow(lk, me, p)
}

#[cold]
#[inline(never)]
fn lock_shared_slow(lk: Lock, me: Me, p: Patience) -> Result<Acquired, Blocked> {
    let Me::Slot(my) = me else {
        return lock_exclusive(lk, me, p);
    };
    let ctl = lk.ctl;
    let state = &ctl.lock.state;
    let slot = &ctl.slots[my as usize];
    let mut recovered = false;
    let mut w = Waiter::new();
    loop {
        let s = state.load(Ordering::SeqCst);
        if s & WRITER_MASK == 0 {
            ctl.lock.rgate.fetch_add(1, Ordering::SeqCst);
            slot.readers.fetch_add(1, Ordering::SeqCst);
            if state.load(Ordering::SeqCst) & WRITER_MASK == 0 {
                return drain_ints(lk, me, p, &mut w, recovered, my);
            }
            let _ = unlock_shared(ctl, my);
            continue;
        }
        if p.deadline.is_some_and(|d| d <= Instant::now()) && w.spins >= SPINS {
            return Err(Blocked::TimedOut(describe_holders(lk, s, &w, false)));
        }
        recovered |= wait_for_writer(lk, s, me, &mut w, p)?;
    }
}

/// Releases a read lock counted in slot `me`, waking a writer that drains readers.
/// `Err(Stolen)` if the slot counts none (they were cleared as a dead process's).
#[inline]
pub fn unlock_shared(ctl: &Control, me: u32) -> Result<(), Stolen> {
    let slot = &ctl.slots[me as usize];
    let r = slot.readers.fetch_sub(1, Ordering::SeqCst);
    if r == 0 {
        // Cleared under us (we were judged dead): put the count back, refuse.
        slot.readers.fetch_add(1, Ordering::SeqCst);
        return Err(Stolen);
    }
    gate_leave(ctl, 1);
    if r == 1 && ctl.lock.state.load(Ordering::SeqCst) & WRITER_MASK != 0 {
        futex::wake_all(&slot.readers);
    }
    Ok(())
}

/// Whether a slot holds read locks or has integer operations in progress.
#[inline]
fn slot_busy(slot: &Slot) -> bool {
    slot.readers.load(Ordering::SeqCst) != 0 || slot.ints.load(Ordering::SeqCst) & INT_OPS_MASK != 0
}

/// `n` read locks end: lower the gate, waking integer operations waiting at it
/// once it is down.
fn gate_leave(ctl: &Control, n: u32) {
    let before = ctl.lock.rgate.fetch_sub(n, Ordering::SeqCst);
    if before & GATE_COUNT == n && before & GATE_WAITERS != 0 {
        ctl.lock.rgate.fetch_and(!GATE_WAITERS, Ordering::SeqCst);
        futex::wake_all(&ctl.lock.rgate);
    }
}

/// A pause while an integer operation is in progress elsewhere (one
/// instruction long, unless its process was stopped or killed there).
#[cold]
fn int_pause(w: &mut Waiter) -> Wake {
    w.spins = w.spins.saturating_add(1);
    if w.spins < SPINS * 2 {
        crate::sync::yield_now();
    } else {
        crate::sync::sleep(Duration::from_micros(200));
    }
    match w.next_check {
        Some(due) if Instant::now() < due => Wake::Woken,
        _ => Wake::TimedOut,
    }
}

/// With our read lock counted (gate and slot): wait until no integer operation
/// is in progress anywhere, or back out.
#[cold]
#[inline(never)]
fn drain_ints(
    lk: Lock,
    me: Me,
    p: Patience,
    w: &mut Waiter,
    mut recovered: bool,
    my: u32,
) -> Result<Acquired, Blocked> {
    let ctl = lk.ctl;
    if w.began.is_none() {
        w.began = Some(p.since.unwrap_or_else(Instant::now));
    }
    loop {
        let hwm = ctl.hwm(Ordering::SeqCst);
        let Some(_) =
            (0..hwm).find(|&i| ctl.slots[i].ints.load(Ordering::SeqCst) & INT_OPS_MASK != 0)
        else {
            return Ok(Acquired {
                taken: Taken::Shared(my),
                recovered,
            });
        };
        if w.nap(p).is_err() {
            let _ = unlock_shared(ctl, my);
            let s = ctl.lock.state.load(Ordering::Relaxed);
            return Err(Blocked::TimedOut(describe_holders(lk, s, w, true)));
        }
        let woke = int_pause(w);
        if w.check_due(woke) {
            for i in 0..hwm {
                if ctl.slots[i].ints.load(Ordering::SeqCst) & INT_OPS_MASK != 0 {
                    if let SlotCheck::Recovered(r) = check_slot(lk, i, me) {
                        recovered |= r;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Integer operations: many at once, on different integers, from every process.
//
// An aligned integer operation is one atomic instruction. It runs under no
// lock word write: it counts itself in its own slot (`ints`), checks that no
// writer holds the lock and that the read-lock gate is down, and goes. Writers
// and read lockers wait for the slots' in-progress counts to drain, as writers
// wait for readers (Dekker: both sides do a read-modify-write, then load). The
// update it makes is counted in the slot too, so no line is written by every
// operation; update waiters are woken only when they have said they wait.

/// Read locks held, in `LockLine::rgate`.
pub(crate) const GATE_COUNT: u32 = 0x00FF_FFFF;
/// Someone waits for the gate to go down.
pub(crate) const GATE_WAITERS: u32 = 1 << 31;

/// Runs `op` (one atomic instruction on an aligned integer) as an integer
/// operation of slot `my`, counting one update.
#[inline]
pub fn int_op<T>(lk: Lock, my: u32, op: impl FnOnce() -> T) -> T {
    let ctl = lk.ctl;
    let slot = &ctl.slots[my as usize];
    slot.ints.fetch_add(1, Ordering::SeqCst);
    if ctl.lock.state.load(Ordering::SeqCst) & WRITER_MASK != 0
        || ctl.lock.rgate.load(Ordering::SeqCst) & GATE_COUNT != 0
    {
        slot.ints.fetch_sub(1, Ordering::SeqCst);
        int_wait(lk, my);
        return int_op_slow(lk, my, op);
    }
    let v = op();
    int_done(ctl, slot);
    v
}

#[inline]
fn int_done(ctl: &Control, slot: &Slot) {
    slot.ints.fetch_add(INT_UPDATE_ONE - 1, Ordering::SeqCst);
    if ctl.lock.state.load(Ordering::SeqCst) & UPDATE_WAITERS != 0 {
        clear_update_waiters(ctl);
    }
}

#[cold]
#[inline(never)]
fn int_op_slow<T>(lk: Lock, my: u32, op: impl FnOnce() -> T) -> T {
    let ctl = lk.ctl;
    let slot = &ctl.slots[my as usize];
    loop {
        slot.ints.fetch_add(1, Ordering::SeqCst);
        if ctl.lock.state.load(Ordering::SeqCst) & WRITER_MASK == 0
            && ctl.lock.rgate.load(Ordering::SeqCst) & GATE_COUNT == 0
        {
            let v = op();
            int_done(ctl, slot);
            return v;
        }
        slot.ints.fetch_sub(1, Ordering::SeqCst);
        int_wait(lk, my);
    }
}

/// Waits until no writer holds the lock and the read-lock gate is down,
/// recovering dead holders on the way.
#[cold]
fn int_wait(lk: Lock, my: u32) {
    let ctl = lk.ctl;
    let me = Me::Slot(my);
    let mut w = Waiter::new();
    loop {
        let s = ctl.lock.state.load(Ordering::SeqCst);
        if s & WRITER_MASK != 0 {
            let _ = wait_for_writer(lk, s, me, &mut w, Patience::FOREVER);
            continue;
        }
        let g = ctl.lock.rgate.load(Ordering::SeqCst);
        if g & GATE_COUNT == 0 {
            return;
        }
        if w.spins < SPINS {
            w.spins += 1;
            crate::sync::spin_loop();
            continue;
        }
        if g & GATE_WAITERS == 0
            && ctl
                .lock
                .rgate
                .compare_exchange(g, g | GATE_WAITERS, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        let woke = futex::wait(&ctl.lock.rgate, g | GATE_WAITERS, Some(CHECK_INTERVAL));
        if w.check_due(woke) {
            // Read lockers that died keep the gate up: check them all.
            for i in 0..ctl.hwm(Ordering::SeqCst) {
                if ctl.slots[i].readers.load(Ordering::SeqCst) != 0 {
                    let _ = check_slot(lk, i, me);
                }
            }
        }
    }
}

/// An integer operation saw update waiters: clear the flag and wake them.
#[cold]
fn clear_update_waiters(ctl: &Control) {
    ctl.lock.state.fetch_and(!UPDATE_WAITERS, Ordering::SeqCst);
    wake_update_waiters(ctl);
}

/// Releases a lock taken as `taken`.
pub fn release(ctl: &Control, taken: Taken) -> Result<(), Stolen> {
    match taken {
        Taken::Exclusive(acquired) => unlock_exclusive(ctl, acquired),
        Taken::Shared(slot) => unlock_shared(ctl, slot),
    }
}

/// Runs `f` without taking the lock and returns its result if no writer held or
/// took the lock meanwhile; `None` after a few failed tries (take the read lock).
///
/// `f` must only copy, with atomic loads (`seqcopy`): its result is thrown away
/// when a writer interfered. Interference shows as a writer in the state word, a
/// new generation, or a changed update counter (every write section counts one
/// update, and so does a writer's recovery): the last makes the check immune to
/// the 17-bit generation wrapping while a reader is descheduled mid-copy.
#[inline]
pub fn optimistic<T>(ctl: &Control, mut f: impl FnMut() -> T) -> Option<T> {
    let state = &ctl.lock.state;
    let updates = &ctl.updates.updates;
    for _ in 0..OPTIMISTIC_TRIES {
        let before = state.load(Ordering::Acquire);
        if before & WRITER_MASK != 0 {
            crate::sync::spin_loop();
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

/// A snapshot of the lock for `sharedarea_lock_info` and tools.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// The write lock's holder (pid as recorded; 0: none).
    pub writer_pid: u32,
    /// Processes holding read locks, and read locks held in all.
    pub reader_processes: u32,
    pub readers: u64,
    /// Processes with a slot (attached and having used the lock).
    pub processes: u32,
    pub undecided: u64,
    pub writer_recovery_updates: u64,
}

pub fn snapshot(ctl: &Control) -> Snapshot {
    let s = ctl.lock.state.load(Ordering::Acquire);
    let writer = s & WRITER_MASK;
    let writer_pid = match writer {
        0 => 0,
        SLOTLESS => ctl.lock.slotless.pid.load(Ordering::Relaxed),
        w => ctl
            .slot(w as usize - 1)
            .map_or(0, |sl| sl.pid.load(Ordering::Relaxed)),
    };
    let mut snap = Snapshot {
        writer_pid,
        undecided: ctl.stats.undecided.load(Ordering::Relaxed),
        writer_recovery_updates: ctl.stats.writer_recovery_updates.load(Ordering::Relaxed),
        ..Snapshot::default()
    };
    for slot in &ctl.slots[..ctl.hwm(Ordering::Acquire)] {
        if slot.pid.load(Ordering::Relaxed) != 0 {
            snap.processes += 1;
        }
        let r = slot.readers.load(Ordering::Relaxed);
        if r != 0 {
            snap.reader_processes += 1;
            snap.readers += r as u64;
        }
    }
    snap
}

/// For tests and tools: the state word's writer slot.
pub fn writer_slot(ctl: &Control) -> Option<u32> {
    match ctl.lock.state.load(Ordering::Acquire) & WRITER_MASK {
        0 | SLOTLESS => None,
        w => Some(w - 1),
    }
}

//! This thread's holds: which areas' locks it took with `rlock`/`wlock`, how,
//! and how deeply nested. Reentrancy (SPEC §2) is decided here, per thread and
//! per *object* (two ids attached to one `name=` object share one record), and
//! a thread that exits holding a lock gives it back (the destructor of the
//! thread-local list), marking the area so the next taker learns of it.
//!
//! A forked child forgets its copy of the list: the parent's holds are the
//! parent's (`forget_holds`, from the registry's atfork handler).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::control::Control;

/// How this thread holds an area's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    None,
    Read,
    Write,
}

/// How the lock under a hold was physically taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The write lock (also a slotless process's read lock): the state word's
    /// writer and generation bits it installed.
    Exclusive(u32),
    /// A read lock counted in this slot.
    Shared(u32),
}

/// One object's hold record.
pub struct Hold {
    /// The control block's address: one per object in this process.
    key: usize,
    ctl: *const Control,
    write: bool,
    depth: u32,
    taken: Taken,
    /// This thread's number for the hold (a guard releases only its own hold).
    serial: u64,
}

/// The list, whose destructor runs at thread exit.
struct Holds(RefCell<Vec<Hold>>);

impl Drop for Holds {
    fn drop(&mut self) {
        for h in self.0.get_mut().drain(..) {
            // SAFETY: control blocks are never unmapped while the process lives
            // (areas live until exit), and this runs before the process ends.
            let ctl = unsafe { &*h.ctl };
            let _ = super::release(ctl, h.taken);
            ctl.used.recoveries.fetch_add(1, Ordering::Relaxed);
            ctl.stats.abandoned.store(1, Ordering::Release);
        }
    }
}

/// Set once any thread of this process has taken an explicit lock (rlock/wlock),
/// and never cleared: until then `held` answers without touching thread-locals
/// (from a shared object a thread-local access is a call to `__tls_get_addr`).
static EXPLICIT_LOCKS_USED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static HOLDS: Holds = const { Holds(RefCell::new(Vec::new())) };
    static NEXT_SERIAL: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// How this thread holds the lock of the object whose control block is `ctl`.
#[inline]
pub fn held(ctl: &Control) -> Held {
    if !EXPLICIT_LOCKS_USED.load(Ordering::Relaxed) {
        return Held::None;
    }
    held_by_this_thread(ctl as *const Control as usize)
}

#[inline(never)]
fn held_by_this_thread(key: usize) -> Held {
    HOLDS
        .try_with(|h| {
            h.0.borrow()
                .iter()
                .find(|x| x.key == key)
                .map_or(
                    Held::None,
                    |x| if x.write { Held::Write } else { Held::Read },
                )
        })
        .unwrap_or(Held::None)
}

/// Records a new outermost hold and returns its serial; None when this thread's
/// records are already gone (a thread-local destructor running at thread exit):
/// the caller must give back the lock it took, since nothing would release it.
pub fn push_new(ctl: &Control, write: bool, taken: Taken) -> Option<u64> {
    let key = ctl as *const Control as usize;
    if !EXPLICIT_LOCKS_USED.load(Ordering::Relaxed) {
        EXPLICIT_LOCKS_USED.store(true, Ordering::Relaxed);
    }
    let serial = NEXT_SERIAL
        .try_with(|n| {
            let v = n.get();
            n.set(v.wrapping_add(1));
            v
        })
        .ok()?;
    HOLDS
        .try_with(|h| {
            h.0.borrow_mut().push(Hold {
                key,
                ctl,
                write,
                depth: 1,
                taken,
                serial,
            })
        })
        .ok()?;
    Some(serial)
}

/// One more nested level of an existing hold; returns the hold's serial. None if
/// the depth would wrap (or this thread's records are gone).
pub fn deepen(ctl: &Control) -> Option<u64> {
    let key = ctl as *const Control as usize;
    HOLDS
        .try_with(|h| {
            let mut h = h.0.borrow_mut();
            let x = h.iter_mut().find(|x| x.key == key)?;
            x.depth = x.depth.checked_add(1)?;
            Some(x.serial)
        })
        .ok()
        .flatten()
}

/// What dropping one level of hold did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Popped {
    /// This thread held nothing on the area.
    NotHeld,
    /// A nested level ended; the lock is still held.
    Nested,
    /// The outermost hold ended: the caller releases the lock taken this way.
    Last(Taken),
}

/// Drops one level (or, with `all`, every level) of this thread's hold; with
/// `serial`, only if the hold is that one (a guard whose hold was already
/// released by an explicit unlock leaves a later hold alone).
pub fn pop(ctl: &Control, all: bool, serial: Option<u64>) -> (Popped, u32) {
    let key = ctl as *const Control as usize;
    HOLDS
        .try_with(|h| {
            let mut h = h.0.borrow_mut();
            let Some(i) = h
                .iter()
                .position(|x| x.key == key && serial.is_none_or(|s| s == x.serial))
            else {
                return (Popped::NotHeld, 0);
            };
            if h[i].depth > 1 && !all {
                h[i].depth -= 1;
                return (Popped::Nested, 1);
            }
            let hold = h.swap_remove(i);
            (Popped::Last(hold.taken), hold.depth)
        })
        .unwrap_or((Popped::NotHeld, 0))
}

/// Forgets every hold of this thread (in a forked child: the parent's holds are
/// the parent's).
pub fn forget_holds() {
    let _ = HOLDS.try_with(|h| {
        if let Ok(mut h) = h.0.try_borrow_mut() {
            h.clear();
        }
    });
}

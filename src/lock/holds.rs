//! This thread's holds: which areas' locks it took with `rlock`/`wlock`, how,
//! and how deeply nested. Reentrancy (SPEC §2) is decided here, per thread and
//! per *object* (two ids attached to one `name=` object share one record), and
//! a thread that exits holding a lock gives it back, marking the area so the
//! next taker learns of it.
//!
//! The list lives in a thread-local *without* a destructor (a pointer to a
//! leaked list), so it is there for the whole life of the thread, including
//! code that runs after Rust's thread-locals are destroyed (C `atexit` handlers,
//! pthread-key destructors): a lock taken there is recorded like any other. The
//! release at thread exit is a pthread-key destructor, which glibc runs after
//! the thread-local destructors and again if a destructor took a lock anew. The
//! main thread's holds end with the process (its death frees the lock for
//! others, as for any dead holder).
//!
//! A forked child forgets its copy of the list: the parent's holds are the
//! parent's (`forget_holds`, from the registry's atfork handler).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

thread_local! {
    /// This thread's list (null until its first hold): a raw pointer, so the
    /// thread-local has no destructor and is never "gone".
    static HOLDS: Cell<*mut List> = const { Cell::new(std::ptr::null_mut()) };
}

/// This thread's holds, and the serial its next hold gets.
struct List {
    holds: Vec<Hold>,
    next_serial: u64,
}

/// The pthread key whose destructor releases an exiting thread's holds (0: not
/// made yet; the key's value + 1 otherwise).
static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);

/// Makes the exit destructor's key (once per process; the registry calls this
/// before it makes the first area, so a failure is an error there, not a lock
/// silently left without its release at thread exit).
pub fn exit_key() -> Option<libc::pthread_key_t> {
    let k = EXIT_KEY.load(Ordering::Acquire);
    if k != 0 {
        return Some((k - 1) as libc::pthread_key_t);
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creates a key with a plain extern "C" destructor; `key` is ours.
    if unsafe { libc::pthread_key_create(&mut key, Some(release_at_thread_exit)) } != 0 {
        return None;
    }
    match EXIT_KEY.compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(key),
        Err(won) => {
            // SAFETY: `key` was made above and never used.
            unsafe { libc::pthread_key_delete(key) };
            Some((won - 1) as libc::pthread_key_t)
        }
    }
}

/// Runs `f` on this thread's list, making it on first use; None when it cannot
/// be made with its exit destructor armed (no key, or pthread_setspecific failed).
#[inline(always)]
fn with_list<R>(f: impl FnOnce(&mut List) -> R) -> Option<R> {
    let mut p = HOLDS.get();
    if p.is_null() {
        p = new_list()?;
        HOLDS.set(p);
    }
    // SAFETY: `p` is this thread's own list: leaked by `new_list`, reached only
    // through this thread's HOLDS, freed only by this thread's exit destructor
    // after unhooking it. No function of this module calls another inside `f`,
    // and none is called from a signal handler (the library is not
    // async-signal-safe), so this is the only reference.
    Some(f(unsafe { &mut *p }))
}

/// Runs `f` on this thread's list if it has one (else `none`): the read-only and
/// release paths never make a list (nor arm the exit destructor).
#[inline(always)]
fn with_existing<R>(none: R, f: impl FnOnce(&mut List) -> R) -> R {
    let p = HOLDS.get();
    if p.is_null() {
        return none;
    }
    // SAFETY: as in `with_list`.
    f(unsafe { &mut *p })
}

/// A new list for this thread, with the exit destructor armed (glibc calls it
/// at thread exit, and once more if a destructor made a new list after it ran).
#[cold]
fn new_list() -> Option<*mut List> {
    let key = exit_key()?;
    let p = Box::into_raw(Box::new(List {
        holds: Vec::new(),
        next_serial: 1,
    }));
    // SAFETY: sets this thread's value of our own key to its own list.
    if unsafe { libc::pthread_setspecific(key, p.cast()) } != 0 {
        // SAFETY: `p` was made above and published nowhere.
        drop(unsafe { Box::from_raw(p) });
        return None;
    }
    Some(p)
}

/// The pthread-key destructor: gives back every lock the exiting thread still
/// holds and marks each area, so its next taker is told.
extern "C" fn release_at_thread_exit(list: *mut libc::c_void) {
    let list = list.cast::<List>();
    // Unhook first: a lock taken by a later destructor makes a fresh list.
    if HOLDS.get() == list {
        HOLDS.set(std::ptr::null_mut());
    }
    // SAFETY: the key's value is the list `new_list` leaked for this thread;
    // glibc passes it once, and nothing refers to it any more (unhooked above).
    let holds = unsafe { Box::from_raw(list) }.holds;
    for h in holds.iter() {
        // SAFETY: control blocks are never unmapped while the process lives
        // (areas live until exit), and this runs before the process ends.
        let ctl = unsafe { &*h.ctl };
        let _ = super::release(ctl, h.taken);
        ctl.used.recoveries.fetch_add(1, Ordering::Relaxed);
        ctl.stats.abandoned.store(1, Ordering::Release);
    }
}

/// Set once any thread of this process has taken an explicit lock (rlock/wlock),
/// and never cleared: until then `held` answers without touching thread-locals
/// (from a shared object a thread-local access is a call to `__tls_get_addr`).
static EXPLICIT_LOCKS_USED: AtomicBool = AtomicBool::new(false);

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
    with_existing(Held::None, |h| {
        h.holds
            .iter()
            .find(|x| x.key == key)
            .map_or(
                Held::None,
                |x| {
                    if x.write {
                        Held::Write
                    } else {
                        Held::Read
                    }
                },
            )
    })
}

/// Records a new outermost hold and returns its serial; None when this thread
/// cannot have a list whose release at thread exit is armed (the caller gives
/// back the lock it took: nothing would release it if the thread ended).
#[inline(never)]
pub fn push_new(ctl: &Control, write: bool, taken: Taken) -> Option<u64> {
    let key = ctl as *const Control as usize;
    if !EXPLICIT_LOCKS_USED.load(Ordering::Relaxed) {
        EXPLICIT_LOCKS_USED.store(true, Ordering::Relaxed);
    }
    with_list(|l| {
        let serial = l.next_serial;
        l.next_serial = serial.wrapping_add(1);
        l.holds.push(Hold {
            key,
            ctl,
            write,
            depth: 1,
            taken,
            serial,
        });
        serial
    })
}

/// One more nested level of an existing hold; returns the hold's serial. None if
/// the depth would wrap.
pub fn deepen(ctl: &Control) -> Option<u64> {
    let key = ctl as *const Control as usize;
    with_existing(None, |l| {
        let x = l.holds.iter_mut().find(|x| x.key == key)?;
        x.depth = x.depth.checked_add(1)?;
        Some(x.serial)
    })
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
    with_existing((Popped::NotHeld, 0), |l| {
        let h = &mut l.holds;
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
}

/// Forgets every hold of this thread (in a forked child: the parent's holds are
/// the parent's).
pub fn forget_holds() {
    let p = HOLDS.get();
    if !p.is_null() {
        // SAFETY: this thread's own list (see `with_list`); the forked child runs
        // only this thread, which is in the atfork handler, not in here.
        unsafe { (*p).holds.clear() };
    }
}

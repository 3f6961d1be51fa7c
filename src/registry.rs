//! This process's table of areas. Ids are 0, 1, 2, ... in creation order; an area
//! lives until the process exits, so a lookup is one atomic load and hands out a
//! `&'static Area`. Creation is serialised by a mutex (parking_lot: in-process state).

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

use parking_lot::Mutex;

use crate::area::{Area, Object};
use crate::backing::Made;
use crate::lock::holds;
use crate::lock::token::TOKEN_OPS;
use crate::process::FORK_GENERATION;
use crate::status::{Error, Result, Status};

/// The most areas one process can have.
pub(crate) const MAX_AREAS: usize = 4096;

static AREAS: [AtomicPtr<Area>; MAX_AREAS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_AREAS];
static COUNT: AtomicUsize = AtomicUsize::new(0);
static CREATE: Mutex<()> = Mutex::new(());
static AT_FORK: Once = Once::new();

extern "C" fn in_forked_child() {
    FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
    holds::forget_holds();
    // Another thread of the parent may have been inside a token operation: in
    // the child that thread does not exist, and never will unlock.
    if TOKEN_OPS.is_locked() {
        // SAFETY: the child has one thread, this one, which does not hold the
        // mutex: whoever held it is gone, and what it protected (this process's
        // record locks) was not inherited by the child anyway.
        unsafe { TOKEN_OPS.force_unlock() };
    }
}

/// The area with this id.
#[inline]
pub fn get(id: i32) -> Result<&'static Area> {
    let p = usize::try_from(id)
        .ok()
        .and_then(|i| AREAS.get(i))
        .map_or(std::ptr::null_mut(), |slot| slot.load(Ordering::Acquire));
    if p.is_null() {
        return Err(no_such_area(id));
    }
    // SAFETY: non-null entries point at Areas leaked by `add`, never freed.
    Ok(unsafe { &*p })
}

#[cold]
fn no_such_area(id: i32) -> Error {
    let n = count();
    let have = match n {
        0 => "no area exists yet".to_string(),
        1 => "the only area is 0".to_string(),
        n => format!("areas are 0..{}", n - 1),
    };
    Error::area(Status::NoSuchArea, id, format!("no such area ({have})"))
}

pub fn count() -> usize {
    COUNT.load(Ordering::Acquire)
}

/// The object with this (device, inode), if some area of this process maps it.
pub fn object_with_identity(identity: (u64, u64)) -> Option<&'static Object> {
    (0..count())
        .filter_map(|i| get(i as i32).ok())
        .map(|a| a.object())
        .find(|o| o.identity() == Some(identity))
}

/// Adds an area (a new mapping, or a new id on an object already attached) and
/// returns its id.
pub fn add(make: impl FnOnce() -> Result<Made>) -> Result<i32> {
    AT_FORK.call_once(|| {
        // SAFETY: registering a plain extern "C" fn with no arguments; it only
        // touches atomics and this thread's thread-locals.
        unsafe { libc::pthread_atfork(None, None, Some(in_forked_child)) };
    });
    // The key of the lock's thread-exit release, made before any area exists
    // (so no lock can be taken without it).
    if holds::exit_key().is_none() {
        return Err(Error::new(
            Status::Limit,
            "no pthread key is left for the lock's release at thread exit (PTHREAD_KEYS_MAX)",
        ));
    }
    let _guard = CREATE.lock();
    let id = count();
    if id >= MAX_AREAS {
        return Err(Error::new(
            Status::Limit,
            format!("this process already has {MAX_AREAS} areas"),
        ));
    }
    let obj: &'static Object = match make()? {
        Made::New(mapping) => Box::leak(Box::new(Object::new(mapping))),
        Made::Attached(obj) => obj,
    };
    let area = Box::leak(Box::new(Area::new(id as i32, obj)));
    AREAS[id].store(area, Ordering::Release);
    COUNT.store(id + 1, Ordering::Release);
    Ok(id as i32)
}

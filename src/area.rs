//! Bounds-checked operations on one area. The range check lives here, once
//! ([`Area::check`]); every operation goes through the area's lock (see `lock`),
//! taken through guards that give it back on every path out (an error, a panic).
//!
//! An [`Object`] is one mapped area (one control block) in this process; an
//! [`Area`] is an id naming one. Attaching a `name=` object this process already
//! has gives a new id on the same object, so the lock, this process's slot and
//! this thread's hold records are the object's: locking through one id and
//! writing through the other works.

use std::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering,
};
use std::time::{Duration, Instant};

use crate::backing::{Backing, Mapping};
use crate::control::Control;
use crate::futex::{self, Wake};
use crate::lock::holds::{self, Held, Popped, Taken};
use crate::lock::token::TokenFile;
use crate::lock::{self, Blocked, Lock, Me, Patience, Stolen};
use crate::process::FORK_GENERATION;
use crate::seqcopy;
use crate::status::{Error, Result, Status};

/// One mapped area of this process, shared by every id attached to it.
pub struct Object {
    mapping: Mapping,
    /// This process's slot: `(fork generation << 32) | code`; code 0: none yet,
    /// `SLOTLESS_CODE`: no slot could be had, else slot + 1.
    slot: AtomicU64,
}

const SLOTLESS_CODE: u32 = u32::MAX;

// SAFETY: the raw pointers in `mapping` point into shared mappings that live as
// long as the Object; all access to the control block is through atomics, and data
// access is serialised by the area's cross-process lock (or copied atomically).
unsafe impl Send for Object {}
// SAFETY: as above.
unsafe impl Sync for Object {}

impl Object {
    pub fn new(mapping: Mapping) -> Object {
        Object {
            mapping,
            slot: AtomicU64::new(0),
        }
    }

    /// The `name=` object's (device, inode) while it has a name, for finding a
    /// second attach of it.
    pub fn identity(&self) -> Option<(u64, u64)> {
        if !self.mapping.shareable {
            return None;
        }
        self.mapping.tokens.as_ref()?.identity()
    }

    pub fn size(&self) -> u64 {
        self.mapping.size
    }

    pub(crate) fn control(&self) -> &Control {
        // SAFETY: the control block is mapped for as long as the Object lives and
        // every bit pattern of it is valid (all atomics).
        unsafe { &*self.mapping.control }
    }

    pub(crate) fn tokens(&self) -> Option<&TokenFile> {
        self.mapping.tokens.as_ref()
    }

    fn lock(&self) -> Lock<'_> {
        Lock {
            ctl: self.control(),
            tokens: self.mapping.tokens.as_ref(),
        }
    }
}

/// One area id of this process.
pub struct Area {
    id: i32,
    obj: &'static Object,
}

/// What [`Area::info`] reports about an area at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// Bytes in the area.
    pub size: u64,
    /// Updates counted so far (writes, integer changes, [`Area::update`]).
    pub updates: u64,
    /// Bytes a producer published as valid ([`Area::set_used`]).
    pub used: u64,
    /// Locks recovered from holders that died.
    pub recoveries: u64,
    pub backing: Backing,
    /// Whether reads and sends of length 0 stop at `used`.
    pub honour_used: bool,
}

/// An integer width the area can read, write and count in.
pub trait Int: Copy + std::fmt::Display {
    const BYTES: u64;
    fn wrapping_add(self, other: Self) -> Self;
    fn wrapping_sub(self, other: Self) -> Self;
    fn from_bytes(b: [u8; 8]) -> Self;
    fn to_bytes(self) -> [u8; 8];
}

macro_rules! int_impl {
    ($($t:ty),*) => {$(
        impl Int for $t {
            const BYTES: u64 = std::mem::size_of::<$t>() as u64;
            fn wrapping_add(self, other: Self) -> Self {
                <$t>::wrapping_add(self, other)
            }
            fn wrapping_sub(self, other: Self) -> Self {
                <$t>::wrapping_sub(self, other)
            }
            fn from_bytes(b: [u8; 8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..std::mem::size_of::<$t>()]);
                <$t>::from_ne_bytes(a)
            }
            fn to_bytes(self) -> [u8; 8] {
                let mut b = [0u8; 8];
                b[..std::mem::size_of::<$t>()].copy_from_slice(&self.to_ne_bytes());
                b
            }
        }
    )*};
}
int_impl!(i8, i16, i32, i64);

/// Loads an integer from shared memory atomically when it is aligned (one
/// access), byte by byte otherwise (the optimistic check discards a torn mix).
///
/// # Safety
/// `p` must be valid for `T::BYTES` bytes.
#[inline]
unsafe fn load_int<T: Int>(p: *const u8) -> T {
    let mut b = [0u8; 8];
    let n = T::BYTES as usize;
    // SAFETY: (all arms) p is valid for n bytes (caller) and, in the atomic arms,
    // aligned to n, so it is a valid atomic of that width.
    unsafe {
        if n == 1 {
            b[0] = (*(p as *const AtomicU8)).load(Ordering::Relaxed);
        } else if (p as usize) % n != 0 {
            b = seqcopy::load_unaligned(p, n);
        } else {
            match n {
                1 => b[0] = (*(p as *const AtomicU8)).load(Ordering::Relaxed),
                2 => b[..2].copy_from_slice(
                    &(*(p as *const AtomicU16))
                        .load(Ordering::Relaxed)
                        .to_ne_bytes(),
                ),
                4 => b[..4].copy_from_slice(
                    &(*(p as *const AtomicU32))
                        .load(Ordering::Relaxed)
                        .to_ne_bytes(),
                ),
                _ => {
                    b = (*(p as *const AtomicU64))
                        .load(Ordering::Relaxed)
                        .to_ne_bytes()
                }
            }
        }
    }
    T::from_bytes(b)
}

/// Stores an integer into shared memory (see `load_int`).
///
/// # Safety
/// `p` must be valid for writes of `T::BYTES` bytes.
#[inline]
unsafe fn store_int<T: Int>(p: *mut u8, v: T) {
    let b = v.to_bytes();
    let n = T::BYTES as usize;
    // SAFETY: (all arms) as in load_int.
    unsafe {
        if n == 1 {
            (*(p as *const AtomicU8)).store(b[0], Ordering::Relaxed);
        } else if (p as usize) % n != 0 {
            seqcopy::store_unaligned(p, b, n);
        } else {
            let mut a8 = [0u8; 8];
            a8.copy_from_slice(&b);
            match n {
                1 => (*(p as *const AtomicU8)).store(b[0], Ordering::Relaxed),
                2 => (*(p as *const AtomicU16))
                    .store(u16::from_ne_bytes([b[0], b[1]]), Ordering::Relaxed),
                4 => (*(p as *const AtomicU32)).store(
                    u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                    Ordering::Relaxed,
                ),
                _ => (*(p as *const AtomicU64)).store(u64::from_ne_bytes(a8), Ordering::Relaxed),
            }
        }
    }
}

/// Adds `amount` to the aligned integer at `p` with one atomic instruction and
/// returns the new value.
///
/// # Safety
/// `p` must be valid for `T::BYTES` bytes and aligned to them.
#[inline]
unsafe fn atomic_add<T: Int>(p: *mut u8, amount: T) -> T {
    let a = amount.to_bytes();
    let mut out = [0u8; 8];
    // SAFETY: (all arms) p is valid and aligned for an atomic of this width.
    unsafe {
        match T::BYTES {
            1 => {
                let x = i8::from_ne_bytes([a[0]]);
                let old = (*(p as *const AtomicI8)).fetch_add(x, Ordering::SeqCst);
                out[..1].copy_from_slice(&old.wrapping_add(x).to_ne_bytes());
            }
            2 => {
                let x = i16::from_ne_bytes([a[0], a[1]]);
                let old = (*(p as *const AtomicI16)).fetch_add(x, Ordering::SeqCst);
                out[..2].copy_from_slice(&old.wrapping_add(x).to_ne_bytes());
            }
            4 => {
                let x = i32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
                let old = (*(p as *const AtomicI32)).fetch_add(x, Ordering::SeqCst);
                out[..4].copy_from_slice(&old.wrapping_add(x).to_ne_bytes());
            }
            _ => {
                let x = i64::from_ne_bytes(a);
                let old = (*(p as *const AtomicI64)).fetch_add(x, Ordering::SeqCst);
                out = old.wrapping_add(x).to_ne_bytes();
            }
        }
    }
    T::from_bytes(out)
}

/// A lock taken inside an operation: given back when dropped (an early return, a
/// panic), or by `release`, which reports a lock that was taken from us.
struct Guard<'a> {
    ctl: &'a Control,
    taken: Option<Taken>,
}

impl Guard<'_> {
    fn release(mut self) -> std::result::Result<(), Stolen> {
        match self.taken.take() {
            Some(t) => lock::release(self.ctl, t),
            None => Ok(()),
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.taken.take() {
            let _ = lock::release(self.ctl, t);
        }
    }
}

impl Area {
    pub(crate) fn new(id: i32, obj: &'static Object) -> Area {
        Area { id, obj }
    }

    /// The area's id: the number every binding in this process uses for it.
    pub fn id(&self) -> i32 {
        self.id
    }

    pub(crate) fn object(&self) -> &'static Object {
        self.obj
    }

    /// Bytes in the area.
    pub fn size(&self) -> u64 {
        self.obj.mapping.size
    }

    /// The area's first byte, for zero-copy views that bypass the lock and the
    /// update counter (Python's `sharedarea_memoryview`, as in uWSGI). Valid for
    /// `size()` bytes for the life of the process.
    pub fn data_ptr(&self) -> *mut u8 {
        self.obj.mapping.data
    }

    fn control(&self) -> &Control {
        self.obj.control()
    }

    fn err(&self, status: Status, cause: impl std::fmt::Display) -> Error {
        Error::area(status, self.id, cause)
    }

    /// The one range check: `len` bytes at `pos` lie inside the area. Never
    /// overflows (a sum past 2^64 is out of range too). Returns `pos` as usize.
    #[inline]
    pub fn check(&self, pos: u64, len: u64) -> Result<usize> {
        match pos.checked_add(len) {
            Some(end) if end <= self.obj.mapping.size => Ok(pos as usize),
            _ => Err(self.range_error(pos, len)),
        }
    }

    #[cold]
    fn range_error(&self, pos: u64, len: u64) -> Error {
        let size = self.obj.mapping.size;
        let cause = if pos >= size && len == 0 {
            format!("position {pos} is past the end ({size} bytes)")
        } else if pos >= size {
            format!("position {pos} is at or past the end ({size} bytes)")
        } else {
            format!("{len} bytes at {pos} run past the end ({size} bytes)")
        };
        self.err(Status::OutOfRange, cause)
    }

    /// The length a read of `len` bytes at `pos` covers: `len` itself, or for 0
    /// the rest of the area (to `used` when the area honours it).
    pub fn extent(&self, pos: u64, len: u64) -> Result<u64> {
        if len != 0 {
            self.check(pos, len)?;
            return Ok(len);
        }
        let size = self.obj.mapping.size;
        if pos >= size {
            return Err(self.err(
                Status::OutOfRange,
                format!("position {pos} is at or past the end ({size} bytes)"),
            ));
        }
        let u = &self.control().used;
        let end = if u.honour_used.load(Ordering::Acquire) != 0 {
            u.used.load(Ordering::Acquire).min(size)
        } else {
            size
        };
        Ok(end.saturating_sub(pos))
    }

    fn ptr(&self, pos: usize) -> *mut u8 {
        // SAFETY: callers pass a position validated by `check`, so the offset
        // stays inside the mapping (or one past its end for empty ranges).
        unsafe { self.obj.mapping.data.add(pos) }
    }

    /// This process's place in the lock (a slot, or slotless), claimed on first
    /// use (and again after fork); the bool says whether claiming cleared a dead
    /// holder's lock. One slot per process and object: when two threads claim at
    /// once, the loser gives its slot back.
    #[inline]
    fn me(&self) -> (Me, bool) {
        let generation = FORK_GENERATION.load(Ordering::Acquire) as u64;
        let cached = self.obj.slot.load(Ordering::Acquire);
        if cached != 0 && cached >> 32 == generation {
            return (decode_slot(cached as u32), false);
        }
        self.claim(cached, generation)
    }

    #[cold]
    fn claim(&self, cached: u64, generation: u64) -> (Me, bool) {
        let lk = self.obj.lock();
        let (slot, recovered) = lock::claim_slot(lk);
        let code = slot.map_or(SLOTLESS_CODE, |s| s + 1);
        let mine = (generation << 32) | code as u64;
        match self
            .obj
            .slot
            .compare_exchange(cached, mine, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => (decode_slot(code), recovered),
            Err(winner) if winner != 0 && winner >> 32 == generation => {
                if let Some(s) = slot {
                    lock::release_slot(lk, s);
                }
                (decode_slot(winner as u32), recovered)
            }
            Err(_) => {
                // A stale entry changed under us (a fork bumped the generation):
                // keep ours.
                self.obj.slot.store(mine, Ordering::Release);
                (decode_slot(code), recovered)
            }
        }
    }

    /// Takes the lock for one operation, waiting as long as it takes.
    #[inline]
    fn guard(&self, me: Me, exclusive: bool) -> Result<Guard<'_>> {
        let lk = self.obj.lock();
        let got = if exclusive {
            lock::lock_exclusive(lk, me, Patience::FOREVER)
        } else {
            lock::lock_shared(lk, me, Patience::FOREVER)
        };
        match got {
            Ok(a) => Ok(Guard {
                ctl: lk.ctl,
                taken: Some(a.taken),
            }),
            Err(b) => Err(self.blocked(b, None)),
        }
    }

    #[cold]
    fn blocked(&self, b: Blocked, timeout: Option<Duration>) -> Error {
        match b {
            Blocked::TimedOut(who) => self.err(
                Status::TimedOut,
                format!(
                    "timed out after {} s waiting for the lock: {who}",
                    fmt_secs(timeout.unwrap_or_default())
                ),
            ),
            Blocked::Interrupted => self.err(
                Status::Interrupted,
                "interrupted by a signal while waiting for the lock (nothing is held)",
            ),
        }
    }

    #[cold]
    fn stolen(&self) -> Error {
        self.err(
            Status::LockMisuse,
            "the lock was taken from this process while it held it (another process judged it dead and recovered the lock); the area may have changed meanwhile",
        )
    }

    /// Runs a read-only `f` (which must copy with atomic loads): straight through
    /// under this thread's own lock, optimistically without a lock when possible,
    /// else under the read lock.
    #[inline]
    fn reading<T>(&self, mut f: impl FnMut() -> T) -> Result<T> {
        let ctl = self.control();
        if holds::held(ctl) != Held::None {
            return Ok(f());
        }
        if let Some(v) = lock::optimistic(ctl, &mut f) {
            return Ok(v);
        }
        let (me, _) = self.me();
        let g = self.guard(me, false)?;
        let v = f();
        g.release().map_err(|_| self.stolen())?;
        Ok(v)
    }

    /// Runs a mutating `f` under the write lock (or this thread's own write
    /// lock) and counts one update.
    #[inline]
    fn writing<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let ctl = self.control();
        match holds::held(ctl) {
            Held::Write => {
                let v = f();
                self.count_update(ctl);
                Ok(v)
            }
            Held::Read => Err(self.err(
                Status::LockMisuse,
                "this thread holds the area's read lock; a write needs the write lock (unlock first, or take wlock)",
            )),
            Held::None => {
                let (me, _) = self.me();
                let g = self.guard(me, true)?;
                let v = f();
                self.count_update(ctl);
                g.release().map_err(|_| self.stolen())?;
                Ok(v)
            }
        }
    }

    /// Under the write lock: one more update (waking happens at unlock).
    #[inline]
    fn count_update(&self, ctl: &Control) {
        let u = &ctl.updates.updates;
        u.store(u.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    /// Copies `buf.len()` bytes at `pos` into `buf`: a consistent copy (no write
    /// lands in the middle of it); integers changed meanwhile by integer
    /// operations are each seen before or after (take [`Area::read_lock`] for one
    /// instant of those too).
    pub fn read(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let start = self.check(pos, buf.len() as u64)?;
        let src = self.ptr(start) as *const u8;
        let (dst, len) = (buf.as_mut_ptr(), buf.len());
        let overlaps = (src as usize) < dst as usize + len && (dst as usize) < src as usize + len;
        if overlaps && len != 0 {
            // A buffer inside the area itself (a pointer area over the caller's
            // memory): copy under the lock, with memmove.
            return self.with_bytes_locked(pos, len as u64, |p, n| {
                // SAFETY: both ranges are valid for n bytes; `copy` allows overlap;
                // under the read lock no writer runs.
                unsafe { std::ptr::copy(p, dst, n) }
            });
        }
        self.reading(|| {
            // SAFETY: `check` proved [start, start+len) inside the mapping; `buf` is
            // valid for len bytes and disjoint from it. The copy is atomic loads, so
            // a concurrent writer makes it wrong (and discarded), never undefined.
            unsafe { seqcopy::load(src, dst, len) }
        })
    }

    /// Writes `bytes` at `pos` as one update (readers see all of it or none) and
    /// wakes waiters.
    pub fn write(&self, pos: u64, bytes: &[u8]) -> Result<()> {
        let start = self.check(pos, bytes.len() as u64)?;
        let dst = self.ptr(start);
        let (src, len) = (bytes.as_ptr(), bytes.len());
        let overlaps = (src as usize) < dst as usize + len && (dst as usize) < src as usize + len;
        self.writing(|| {
            // SAFETY: `check` proved the range inside the mapping; we hold the write
            // lock, so no other writer touches it meanwhile. Overlap (bytes taken
            // from the area itself) needs memmove, and only then a plain copy.
            unsafe {
                if overlaps {
                    std::ptr::copy(src, dst, len)
                } else {
                    seqcopy::store(src, dst, len)
                }
            }
        })
    }

    /// Reads an 8-64-bit integer at `pos` (any alignment; native byte order).
    pub fn read_int<T: Int>(&self, pos: u64) -> Result<T> {
        let start = self.check(pos, T::BYTES)?;
        let p = self.ptr(start) as *const u8;
        // SAFETY: in range (checked). A value torn by a concurrent writer is
        // discarded by the optimistic protocol.
        self.reading(|| unsafe { load_int::<T>(p) })
    }

    /// Writes an integer at `pos` as one update.
    pub fn write_int<T: Int>(&self, pos: u64, value: T) -> Result<()> {
        let start = self.check(pos, T::BYTES)?;
        let p = self.ptr(start);
        if let Some(my) = self.int_slot(p, T::BYTES) {
            // SAFETY: in range (checked) and aligned: one atomic store.
            lock::int_op(self.obj.lock(), my, || unsafe { store_int(p, value) });
            return Ok(());
        }
        // SAFETY: in range (checked), under the write lock.
        self.writing(|| unsafe { store_int(p, value) })
    }

    /// The slot to run an integer operation at `p` with, when it can run as
    /// one (an aligned integer — so inside one cache line: no split lock —, a
    /// process with a slot, a thread holding no lock on the area); else the
    /// operation goes through the write lock.
    #[inline]
    fn int_slot(&self, p: *mut u8, bytes: u64) -> Option<u32> {
        if (p as usize) % bytes as usize != 0 || holds::held(self.control()) != Held::None {
            return None;
        }
        match self.me() {
            (Me::Slot(my), _) => Some(my),
            (Me::Slotless, _) => None,
        }
    }

    /// Adds `amount` (wrapping) and returns the new value.
    pub fn add_int<T: Int>(&self, pos: u64, amount: T) -> Result<T> {
        let start = self.check(pos, T::BYTES)?;
        let p = self.ptr(start);
        if let Some(my) = self.int_slot(p, T::BYTES) {
            // SAFETY: in range (checked) and aligned: one atomic add.
            return Ok(lock::int_op(self.obj.lock(), my, || unsafe {
                atomic_add(p, amount)
            }));
        }
        self.writing(|| {
            // SAFETY: in range (checked above); under the write lock no other
            // writer touches it, and lock-free readers discard what they saw.
            unsafe {
                let v = load_int::<T>(p).wrapping_add(amount);
                store_int(p, v);
                v
            }
        })
    }

    /// Subtracts `amount` (wrapping) and returns the new value.
    pub fn sub_int<T: Int>(&self, pos: u64, amount: T) -> Result<T> {
        let zero = T::from_bytes([0; 8]);
        self.add_int(pos, zero.wrapping_sub(amount))
    }

    /// Counts an update and wakes waiters without changing bytes.
    pub fn update(&self) -> Result<()> {
        self.writing(|| ())
    }

    /// Publishes how many bytes from the start are valid and makes reads and
    /// sends of length 0 stop there (one update).
    pub fn set_used(&self, used: u64) -> Result<()> {
        if used > self.obj.mapping.size {
            return Err(self.err(
                Status::OutOfRange,
                format!(
                    "used {used} is past the end ({} bytes)",
                    self.obj.mapping.size
                ),
            ));
        }
        let u = &self.control().used;
        self.writing(|| {
            u.used.store(used, Ordering::Release);
            u.honour_used.store(1, Ordering::Release);
        })
    }

    /// Whether reads and sends of length 0 stop at `used` (for every process).
    pub fn honour_used(&self, on: bool) {
        self.control()
            .used
            .honour_used
            .store(on as u32, Ordering::Release);
    }

    /// Every update counted so far (see `Control::updates_total`).
    pub fn updates(&self) -> u64 {
        self.control().updates_total()
    }

    /// Sleeps until the update counter differs from `seen`. `timeout` None: no
    /// limit. Woken by the update itself (the releasing writer wakes waiters).
    pub fn wait_since(&self, seen: u64, timeout: Option<Duration>) -> Result<()> {
        if holds::held(self.control()) != Held::None && self.updates() == seen {
            return Err(self.err(
                Status::LockMisuse,
                "this thread holds the area's lock, so no other process can update it: unlock before waiting",
            ));
        }
        let ctl = self.control();
        // a timeout too long to represent is no limit
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let word = ctl.updates_futex_word();
        loop {
            // The word first: a wake after it is read changes it, so the sleep
            // below cannot miss an update counted after the check.
            let woken_at = word.load(Ordering::Acquire);
            if self.updates() != seen {
                return Ok(());
            }
            lock::arm_update_waiters(ctl);
            if self.updates() != seen {
                return Ok(());
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(self.timed_out(timeout)),
                },
            };
            match futex::wait(word, woken_at, left) {
                Wake::Interrupted => {
                    if self.updates() != seen {
                        return Ok(());
                    }
                    return Err(
                        self.err(Status::Interrupted, "the wait was interrupted by a signal")
                    );
                }
                Wake::TimedOut | Wake::Woken => {}
            }
        }
    }

    fn timed_out(&self, timeout: Option<Duration>) -> Error {
        let t = timeout.unwrap_or_default();
        self.err(
            Status::TimedOut,
            format!("timed out after {} s with no update", fmt_secs(t)),
        )
    }

    /// How this thread holds the area's lock.
    pub fn held(&self) -> Held {
        holds::held(self.control())
    }

    /// Takes the read lock (nests); waits forever. The uWSGI-style explicit lock,
    /// for bindings: Rust code takes guards ([`Area::read_lock`]), which give the
    /// lock back on every path out. Mixing is safe: a guard whose hold an
    /// explicit [`Area::unlock_all`] ended releases nothing later.
    pub fn rlock(&self) -> Result<bool> {
        self.rlock_with(Patience::FOREVER, None)
    }

    /// Takes the write lock (nests); waits forever (see [`Area::rlock`]).
    pub fn wlock(&self) -> Result<bool> {
        self.wlock_with(Patience::FOREVER, None)
    }

    /// Takes the read lock, as patient as `p`. Returns whether a dead holder was
    /// cleared (or a thread exited holding the lock) since the last taker.
    /// `timeout` is only the figure a timeout's error text states. For the
    /// project's language bindings, which wait in slices.
    #[doc(hidden)]
    pub fn rlock_with(&self, p: Patience, timeout: Option<Duration>) -> Result<bool> {
        self.explicit(false, p, timeout)
    }

    /// Takes the write lock, as patient as `p` (see `rlock_with`).
    #[doc(hidden)]
    pub fn wlock_with(&self, p: Patience, timeout: Option<Duration>) -> Result<bool> {
        self.explicit(true, p, timeout)
    }

    fn explicit(&self, write: bool, p: Patience, timeout: Option<Duration>) -> Result<bool> {
        self.take_hold(write, p, timeout)
            .map(|(recovered, _)| recovered)
    }

    /// Takes (or nests) this thread's hold; returns whether a dead holder was
    /// cleared, and the hold's serial (what a guard releases).
    pub(crate) fn take_hold(
        &self,
        write: bool,
        p: Patience,
        timeout: Option<Duration>,
    ) -> Result<(bool, u64)> {
        let ctl = self.control();
        match (holds::held(ctl), write) {
            (Held::Read, true) => Err(self.err(
                Status::LockMisuse,
                "this thread holds the read lock; it cannot be upgraded to the write lock (unlock first)",
            )),
            (Held::Write, _) | (Held::Read, false) => match holds::deepen(ctl) {
                Some(serial) => Ok((false, serial)),
                None => Err(self.err(Status::Limit, "the lock is nested 2^32 - 1 deep already")),
            },
            (Held::None, _) => {
                let (me, claim_recovered) = self.me();
                let lk = self.obj.lock();
                let got = if write {
                    lock::lock_exclusive(lk, me, p)
                } else {
                    lock::lock_shared(lk, me, p)
                };
                let a = got.map_err(|b| self.blocked(b, timeout))?;
                let Some(serial) = holds::push_new(ctl, write, a.taken) else {
                    // Nothing would release a hold whose thread-exit release
                    // cannot be armed: give the lock back at once.
                    let _ = lock::release(ctl, a.taken);
                    return Err(self.err(
                        Status::Limit,
                        "this thread's hold cannot be recorded (pthread_setspecific failed: out of memory)",
                    ));
                };
                let abandoned = ctl.stats.abandoned.load(Ordering::Relaxed) != 0
                    && ctl.stats.abandoned.swap(0, Ordering::AcqRel) != 0;
                Ok((a.recovered | claim_recovered | abandoned, serial))
            }
        }
    }

    /// Releases one level of this thread's hold.
    pub fn unlock(&self) -> Result<()> {
        self.unlock_levels(false, None).map(|_| ())
    }

    /// Releases every level of this thread's hold; returns how many (0: none).
    pub fn unlock_all(&self) -> Result<u32> {
        self.unlock_levels(true, None)
    }

    /// Releases one level of the hold `serial` (a guard's), if it is still held.
    pub(crate) fn unlock_hold(&self, serial: u64) -> Result<()> {
        self.unlock_levels(false, Some(serial)).map(|_| ())
    }

    fn unlock_levels(&self, all: bool, serial: Option<u64>) -> Result<u32> {
        let ctl = self.control();
        match holds::pop(ctl, all, serial) {
            (Popped::NotHeld, _) if all => Ok(0),
            (Popped::NotHeld, _) => Err(self.err(
                Status::LockMisuse,
                "this thread does not hold the area's lock",
            )),
            (Popped::Nested, n) => Ok(n),
            (Popped::Last(taken), n) => {
                lock::release(ctl, taken).map_err(|_| self.stolen())?;
                Ok(n)
            }
        }
    }

    /// The lock's state, for `sharedarea_lock_info` and tools.
    pub fn lock_snapshot(&self) -> lock::Snapshot {
        lock::snapshot(self.control())
    }

    /// Size, updates, `used` and recoveries at this moment.
    pub fn info(&self) -> Info {
        let ctl = self.control();
        Info {
            size: self.obj.mapping.size,
            updates: ctl.updates_total(),
            used: ctl.used.used.load(Ordering::Acquire),
            recoveries: ctl.used.recoveries.load(Ordering::Acquire),
            backing: self.obj.mapping.backing,
            honour_used: ctl.used.honour_used.load(Ordering::Acquire) != 0,
        }
    }

    /// Runs `f` with a raw view of `len` bytes at `pos` under the read lock (or
    /// this thread's own lock). For sends that must not copy: `f` gets a pointer
    /// valid only during the call, and must not block on anything slow nor call
    /// into this area (the read lock it may take is not a hold of this thread).
    pub(crate) fn with_bytes_locked<T>(
        &self,
        pos: u64,
        len: u64,
        f: impl FnOnce(*const u8, usize) -> T,
    ) -> Result<T> {
        let start = self.check(pos, len)?;
        let p = self.ptr(start) as *const u8;
        if holds::held(self.control()) != Held::None {
            return Ok(f(p, len as usize));
        }
        let (me, _) = self.me();
        let g = self.guard(me, false)?;
        let v = f(p, len as usize);
        g.release().map_err(|_| self.stolen())?;
        Ok(v)
    }
}

fn decode_slot(code: u32) -> Me {
    if code == SLOTLESS_CODE {
        Me::Slotless
    } else {
        Me::Slot(code - 1)
    }
}

pub(crate) fn fmt_secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{:.3}", d.as_secs_f64())
            .trim_end_matches('0')
            .to_string()
    }
}

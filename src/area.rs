//! Bounds-checked operations on one area. The range check lives here, once
//! ([`Area::check`]); every operation goes through the area's lock (see `lock`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::backing::{Backing, Mapping};
use crate::control::Control;
use crate::futex::{self, Wake};
use crate::lock::{self, Held, Popped};
use crate::process::FORK_GENERATION;
use crate::status::{Error, Result, Status};

/// One area of this process.
pub struct Area {
    id: i32,
    mapping: Mapping,
    /// This process's reader slot: `(fork generation << 32) | (slot + 1)`, 0 = none.
    slot: std::sync::atomic::AtomicU64,
}

// SAFETY: the raw pointers in `mapping` point into shared mappings that live as
// long as the Area; all access to the control block is through atomics, and data
// access is serialised by the area's cross-process lock.
unsafe impl Send for Area {}
// SAFETY: as above.
unsafe impl Sync for Area {}

/// Snapshot for `sharedarea_info`.
pub struct Info {
    pub size: u64,
    pub updates: u64,
    pub used: u64,
    pub recoveries: u64,
    pub backing: Backing,
    pub honour_used: bool,
}

/// An integer width the area can read, write and count in.
pub trait Int: Copy + std::fmt::Display {
    const BYTES: u64;
    fn wrapping_add(self, other: Self) -> Self;
    fn wrapping_sub(self, other: Self) -> Self;
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
        }
    )*};
}
int_impl!(i8, i16, i32, i64);

impl Area {
    pub fn new(id: i32, mapping: Mapping) -> Area {
        Area {
            id,
            mapping,
            slot: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> i32 {
        self.id
    }

    pub fn size(&self) -> u64 {
        self.mapping.size
    }

    /// The area's first byte, for zero-copy views that bypass the lock and the
    /// update counter (Python's `sharedarea_memoryview`, as in uWSGI). Valid for
    /// `size()` bytes for the life of the process.
    pub fn data_ptr(&self) -> *mut u8 {
        self.mapping.data
    }

    fn control(&self) -> &Control {
        // SAFETY: the control block is mapped for as long as the Area lives and
        // every bit pattern of it is valid (all atomics).
        unsafe { &*self.mapping.control }
    }

    fn err(&self, status: Status, cause: impl std::fmt::Display) -> Error {
        Error::area(status, self.id, cause)
    }

    /// The one range check: `len` bytes at `pos` lie inside the area. Never
    /// overflows (a sum past 2^64 is out of range too). Returns `pos` as usize.
    #[inline]
    pub fn check(&self, pos: u64, len: u64) -> Result<usize> {
        match pos.checked_add(len) {
            Some(end) if end <= self.mapping.size => Ok(pos as usize),
            _ => Err(self.range_error(pos, len)),
        }
    }

    #[cold]
    fn range_error(&self, pos: u64, len: u64) -> Error {
        let size = self.mapping.size;
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
        let size = self.mapping.size;
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
        unsafe { self.mapping.data.add(pos) }
    }

    /// This process's reader slot, claimed on first use (and again after fork).
    fn my_slot(&self) -> Result<u32> {
        self.my_slot_noting_recovery().map(|(slot, _)| slot)
    }

    /// The slot, and whether claiming it cleared a dead holder's lock. One slot per
    /// process: when two threads claim at once, the loser gives its slot back.
    fn my_slot_noting_recovery(&self) -> Result<(u32, bool)> {
        let generation = FORK_GENERATION.load(Ordering::Acquire) as u64;
        let cached = self.slot.load(Ordering::Acquire);
        if cached != 0 && cached >> 32 == generation {
            return Ok(((cached as u32) - 1, false));
        }
        let (slot, recovered) =
            lock::claim_slot(self.control()).map_err(|e| self.err(e.status, e.detail))?;
        let mine = (generation << 32) | (slot as u64 + 1);
        match self
            .slot
            .compare_exchange(cached, mine, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok((slot, recovered)),
            Err(winner) if winner != 0 && winner >> 32 == generation => {
                lock::release_slot(self.control(), slot);
                Ok(((winner as u32) - 1, recovered))
            }
            Err(_) => {
                // A stale entry changed under us (a fork bumped the generation):
                // keep ours.
                self.slot.store(mine, Ordering::Release);
                Ok((slot, recovered))
            }
        }
    }

    /// Runs a read-only `f`: straight through under this thread's own lock,
    /// optimistically without a lock when possible, else under the read lock.
    #[inline]
    fn reading<T>(&self, mut f: impl FnMut() -> T) -> Result<T> {
        if lock::held(self.id) != Held::None {
            return Ok(f());
        }
        let ctl = self.control();
        if let Some(v) = lock::optimistic(ctl, &mut f) {
            return Ok(v);
        }
        let me = self.my_slot()?;
        lock::lock_shared(ctl, me);
        let v = f();
        lock::unlock_shared(ctl, me);
        Ok(v)
    }

    /// Runs a mutating `f` under the write lock (or this thread's own write
    /// lock) and counts one update.
    #[inline]
    fn writing<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let ctl = self.control();
        match lock::held(self.id) {
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
                let me = self.my_slot()?;
                lock::lock_exclusive(ctl, me);
                let v = f();
                self.count_update(ctl);
                lock::unlock_exclusive(ctl);
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

    pub fn read(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let start = self.check(pos, buf.len() as u64)?;
        let src = self.ptr(start);
        self.reading(|| {
            // SAFETY: `check` proved [start, start+len) inside the mapping; `buf`
            // is valid for len bytes (it may even overlap a pointer area: `copy`
            // allows that). Another process may write these bytes
            // concurrently: such a copy is discarded by the optimistic protocol
            // (or prevented by the read lock).
            unsafe { std::ptr::copy(src, buf.as_mut_ptr(), buf.len()) }
        })
    }

    pub fn write(&self, pos: u64, bytes: &[u8]) -> Result<()> {
        let start = self.check(pos, bytes.len() as u64)?;
        let dst = self.ptr(start);
        self.writing(|| {
            // SAFETY: `check` proved the range inside the mapping; we hold the write
            // lock, so no other caller of this library touches it meanwhile.
            unsafe { std::ptr::copy(bytes.as_ptr(), dst, bytes.len()) }
        })
    }

    pub fn read_int<T: Int>(&self, pos: u64) -> Result<T> {
        let start = self.check(pos, T::BYTES)?;
        let p = self.ptr(start) as *const T;
        // SAFETY: in range (checked); read_unaligned needs no alignment. A value
        // torn by a concurrent writer is discarded by the optimistic protocol.
        self.reading(|| unsafe { std::ptr::read_unaligned(p) })
    }

    pub fn write_int<T: Int>(&self, pos: u64, value: T) -> Result<()> {
        let start = self.check(pos, T::BYTES)?;
        let p = self.ptr(start);
        // SAFETY: in range (checked), under the write lock.
        self.writing(|| unsafe { std::ptr::write_unaligned(p as *mut T, value) })
    }

    /// Adds `amount` (wrapping) and returns the new value.
    pub fn add_int<T: Int>(&self, pos: u64, amount: T) -> Result<T> {
        self.modify_int(pos, |v: T| v.wrapping_add(amount))
    }

    /// Subtracts `amount` (wrapping) and returns the new value.
    pub fn sub_int<T: Int>(&self, pos: u64, amount: T) -> Result<T> {
        self.modify_int(pos, |v: T| v.wrapping_sub(amount))
    }

    fn modify_int<T: Int>(&self, pos: u64, f: impl FnOnce(T) -> T) -> Result<T> {
        let start = self.check(pos, T::BYTES)?;
        let p = self.ptr(start) as *mut T;
        self.writing(|| {
            // SAFETY: in range (checked); under the write lock no other caller
            // writes here, and lock-free readers discard what they saw meanwhile.
            unsafe {
                let v = f(std::ptr::read_unaligned(p));
                std::ptr::write_unaligned(p, v);
                v
            }
        })
    }

    /// Counts an update and wakes waiters without changing bytes.
    pub fn update(&self) -> Result<()> {
        self.writing(|| ())
    }

    pub fn set_used(&self, used: u64) -> Result<()> {
        if used > self.mapping.size {
            return Err(self.err(
                Status::OutOfRange,
                format!("used {used} is past the end ({} bytes)", self.mapping.size),
            ));
        }
        let u = &self.control().used;
        self.writing(|| {
            u.used.store(used, Ordering::Release);
            u.honour_used.store(1, Ordering::Release);
        })
    }

    pub fn honour_used(&self, on: bool) {
        self.control()
            .used
            .honour_used
            .store(on as u32, Ordering::Release);
    }

    pub fn updates(&self) -> u64 {
        self.control().updates.updates.load(Ordering::Acquire)
    }

    /// Sleeps until the update counter differs from `seen`. `timeout` None: no
    /// limit. Woken by the update itself (the releasing writer wakes waiters).
    pub fn wait_since(&self, seen: u64, timeout: Option<Duration>) -> Result<()> {
        if lock::held(self.id) != Held::None && self.updates() == seen {
            return Err(self.err(
                Status::LockMisuse,
                "this thread holds the area's lock, so no other process can update it: unlock before waiting",
            ));
        }
        let ctl = self.control();
        let deadline = timeout.map(|t| Instant::now() + t);
        let word: &AtomicU32 = ctl.updates_futex_word();
        loop {
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
            match futex::wait(word, seen as u32, left) {
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

    pub fn rlock(&self) -> Result<bool> {
        match lock::held(self.id) {
            Held::Write | Held::Read => {
                lock::push_hold(self.id, false);
                Ok(false)
            }
            Held::None => {
                let (me, claimed_after_recovery) = self.my_slot_noting_recovery()?;
                let recovered = lock::lock_shared(self.control(), me);
                lock::push_hold(self.id, false);
                Ok(recovered | claimed_after_recovery)
            }
        }
    }

    pub fn wlock(&self) -> Result<bool> {
        match lock::held(self.id) {
            Held::Write => {
                lock::push_hold(self.id, true);
                Ok(false)
            }
            Held::Read => Err(self.err(
                Status::LockMisuse,
                "this thread holds the read lock; it cannot be upgraded to the write lock (unlock first)",
            )),
            Held::None => {
                let (me, claimed_after_recovery) = self.my_slot_noting_recovery()?;
                let recovered = lock::lock_exclusive(self.control(), me);
                lock::push_hold(self.id, true);
                Ok(recovered | claimed_after_recovery)
            }
        }
    }

    pub fn unlock(&self) -> Result<()> {
        match lock::pop_hold(self.id) {
            Popped::NotHeld => Err(self.err(
                Status::LockMisuse,
                "this thread does not hold the area's lock",
            )),
            Popped::Nested => Ok(()),
            Popped::Last { write: true } => {
                lock::unlock_exclusive(self.control());
                Ok(())
            }
            Popped::Last { write: false } => {
                let me = self.my_slot()?;
                lock::unlock_shared(self.control(), me);
                Ok(())
            }
        }
    }

    pub fn info(&self) -> Info {
        let ctl = self.control();
        Info {
            size: self.mapping.size,
            updates: ctl.updates.updates.load(Ordering::Acquire),
            used: ctl.used.used.load(Ordering::Acquire),
            recoveries: ctl.used.recoveries.load(Ordering::Acquire),
            backing: self.mapping.backing,
            honour_used: ctl.used.honour_used.load(Ordering::Acquire) != 0,
        }
    }

    /// Runs `f` with a raw view of `len` bytes at `pos` under the read lock (or
    /// this thread's own lock). For sends that must not copy: `f` gets a pointer
    /// valid only during the call, and must not block on anything slow.
    pub fn with_bytes_locked<T>(
        &self,
        pos: u64,
        len: u64,
        f: impl FnOnce(*const u8, usize) -> T,
    ) -> Result<T> {
        let start = self.check(pos, len)?;
        let p = self.ptr(start) as *const u8;
        if lock::held(self.id) != Held::None {
            return Ok(f(p, len as usize));
        }
        let ctl = self.control();
        let me = self.my_slot()?;
        lock::lock_shared(ctl, me);
        let v = f(p, len as usize);
        lock::unlock_shared(ctl, me);
        Ok(v)
    }
}

pub fn fmt_secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{:.3}", d.as_secs_f64())
            .trim_end_matches('0')
            .to_string()
    }
}

//! The shared control block: identity, the lock word, the counters and the reader
//! slots of one area. It lives in shared memory: a separate anonymous `MAP_SHARED`
//! block for anonymous/file/fd/pointer areas (so forked children share it, as in
//! uWSGI), or the first pages of the POSIX shared-memory object of a `name=` area
//! (so unrelated processes share it).
//!
//! ```text
//!  offset  line  field
//!       0     0  magic "SHAREA\0\1" (written last at creation) | version | owner uid
//!                pid namespace inode | data size | data offset in the object
//!      64     1  lock: state word (futex) | reader-slot high-water mark
//!     128     2  updates (u64; its low 32 bits are the waiters' futex word)
//!     192     3  used | honour_used | recoveries
//!     256  4..   SLOTS reader slots, one cache line each: pid | readers | start time
//! ```
//!
//! All fields are atomics: the block is written by several processes at once.

use std::sync::atomic::{AtomicU32, AtomicU64};

pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHAREA\0\x01");
pub(crate) const VERSION: u32 = 1;
/// Reader slots: the most processes that can use one area's lock at once.
pub(crate) const SLOTS: usize = 255;

/// One process's record in an area: who it is, and how many read locks its threads hold.
#[repr(C, align(64))]
pub struct Slot {
    /// 0: free; `RESERVED_BIT | P`: being claimed or freed by process P (if P
    /// dies meanwhile, anyone may finish the job); else the owner's pid.
    pub pid: AtomicU32,
    /// Read locks held by the owner's threads.
    pub readers: AtomicU32,
    /// The owner's start time (see `process`).
    pub start: AtomicU64,
}

/// Marks a slot as being claimed or freed; the low bits name the process doing
/// it (pids are below 2^22 on Linux).
pub(crate) const RESERVED_BIT: u32 = 1 << 31;

#[repr(C, align(64))]
pub struct Identity {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub owner_uid: AtomicU32,
    pub pid_namespace: AtomicU64,
    pub size: AtomicU64,
    pub data_offset: AtomicU64,
}

#[repr(C, align(64))]
pub struct LockLine {
    /// See `lock`: writer slot | waiter flags | generation.
    pub state: AtomicU32,
    /// Slots `0..hwm` have ever been claimed; writers scan only those.
    pub slot_hwm: AtomicU32,
}

#[repr(C, align(64))]
pub struct UpdatesLine {
    pub updates: AtomicU64,
}

#[repr(C, align(64))]
pub struct UsedLine {
    pub used: AtomicU64,
    pub honour_used: AtomicU32,
    pub recoveries: AtomicU64,
}

#[repr(C)]
pub struct Control {
    pub identity: Identity,
    pub lock: LockLine,
    pub updates: UpdatesLine,
    pub used: UsedLine,
    pub slots: [Slot; SLOTS],
}

impl Control {
    /// Bytes the block occupies.
    pub const SIZE: usize = std::mem::size_of::<Control>();

    /// The low 32 bits of the update counter, the word update waiters sleep on.
    pub fn updates_futex_word(&self) -> &AtomicU32 {
        let base = self.updates.updates.as_ptr() as *const AtomicU32;
        let low = if cfg!(target_endian = "little") { 0 } else { 1 };
        // SAFETY: the u64 is 8-byte aligned, so each of its two 32-bit halves is a
        // valid, aligned AtomicU32 for as long as `self` lives. Mixed-size atomic
        // access is what futex(2) on a 64-bit counter's half requires; the kernel
        // and the CPU read the half atomically.
        unsafe { &*base.add(low) }
    }
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);
const _: () = assert!(std::mem::offset_of!(Control, lock) == 64);
const _: () = assert!(std::mem::offset_of!(Control, slots) == 256);

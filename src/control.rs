//! The shared control block: identity, the lock word, the counters and the
//! per-process slots of one area. It lives in shared memory: a separate anonymous
//! `MAP_SHARED` block for anonymous/file/fd/pointer areas (so forked children
//! share it, as in uWSGI), or the first pages of the POSIX shared-memory object of
//! a `name=` area (so unrelated processes share it).
//!
//! ```text
//!  offset  line  field
//!       0     0  magic "SHAREA\0\3" (written last at creation) | version | owner uid
//!                creator's pid namespace (informative) | data size | data offset
//!      64     1  lock: state word (futex) | slot high-water mark | read-lock gate
//!                (futex) | slotless writer
//!     128     2  updates counted under the write lock | update waiters' futex word
//!     192     3  used | honour_used | recoveries
//!     256     4  lock statistics: undecided liveness checks, updates at the last
//!                writer recovery, abandoned-by-a-thread flag
//!     320  5..   SLOTS process slots, one cache line each
//! ```
//!
//! All fields are atomics: the block is written by several processes at once, and
//! any of them may scribble on it; every reader of a field treats its value as
//! untrusted (indexes are clamped, pids are only ever used as names).

use crate::sync::atomic::{AtomicU32, AtomicU64};

pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHAREA\0\x03");
pub(crate) const VERSION: u32 = 3;
/// Process slots: the most processes that can hold a slot in one area at once.
/// A process beyond them still works, slotless (see `lock`).
pub const SLOTS: usize = 4096;
/// The slots the block holds: `SLOTS`, or a few in the lock's model test (where
/// every atomic is a model checker's object).
#[cfg(not(all(loom, test)))]
const BLOCK_SLOTS: usize = SLOTS;
#[cfg(all(loom, test))]
const BLOCK_SLOTS: usize = 3;

/// One process's record in an area. The slot is owned by whoever holds its
/// liveness token (a record lock, see `lock::token`); only the owner writes
/// `pid`, `start`, `ns` and `wgen`.
#[repr(C, align(64))]
pub struct Slot {
    /// The owner's pid as it sees itself (0: free). A name for messages and for
    /// the pid-reuse check; liveness is the token's business.
    pub pid: AtomicU32,
    /// Read locks held by the owner's threads.
    pub readers: AtomicU32,
    /// The owner's start time (clock ticks since boot; 0 when unknown).
    pub start: AtomicU64,
    /// The owner's pid namespace (inode; 0 when unknown).
    pub ns: AtomicU64,
    /// While the owner holds the write lock: the state word it installed
    /// (writer and generation bits); a checker that finds the state naming this
    /// slot with another value knows the word was scribbled on.
    pub wgen: AtomicU32,
    /// CLOCK_MONOTONIC milliseconds when the owner took an explicit lock (for
    /// messages naming how long a holder has held it; 0: unknown).
    pub since_ms: AtomicU64,
    /// Integer operations of the slot's owners: the low `INT_OPS_BITS` bits count
    /// those in progress (see `lock`), the rest the updates they made. The count
    /// belongs to the slot, not to one owner: it outlives a process, so the
    /// area's total never goes back.
    pub ints: AtomicU64,
}

/// Bits of `Slot::ints` counting integer operations in progress.
pub(crate) const INT_OPS_BITS: u32 = 16;
/// One update in `Slot::ints`.
pub(crate) const INT_UPDATE_ONE: u64 = 1 << INT_OPS_BITS;
/// The in-progress count of `Slot::ints`.
pub(crate) const INT_OPS_MASK: u64 = INT_UPDATE_ONE - 1;

/// A writer that has no slot (every slot taken, or no token file): named here,
/// with the generation it installed, so waiters can check it.
#[repr(C)]
pub struct SlotlessWriter {
    pub pid: AtomicU32,
    /// The state word's writer+generation bits when `pid` took the lock.
    pub state: AtomicU32,
    pub start: AtomicU64,
    pub ns: AtomicU64,
}

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
    /// Read locks held now in all (low 24 bits), and `GATE_WAITERS`: integer
    /// operations wait while it is non-zero (a read-locked area sees no integer
    /// change). A futex word.
    pub rgate: AtomicU32,
    pub slotless: SlotlessWriter,
}

#[repr(C, align(64))]
pub struct UpdatesLine {
    /// Updates counted under the write lock (writes, `update`, recoveries): what
    /// optimistic reads check. Integer updates are counted in the slots.
    pub updates: AtomicU64,
    /// Bumped to wake update waiters, who sleep on it (only when some wait).
    pub wake_seq: AtomicU32,
}

#[repr(C, align(64))]
pub struct UsedLine {
    pub used: AtomicU64,
    pub honour_used: AtomicU32,
    pub recoveries: AtomicU64,
}

#[repr(C, align(64))]
pub struct StatsLine {
    /// Times a waiter could not tell whether a holder was alive, and waited.
    pub undecided: AtomicU64,
    /// The update count right after the last recovery of a dead *writer* (whose
    /// multi-part update may be torn); 0: never.
    pub writer_recovery_updates: AtomicU64,
    /// Set when a thread exited holding the lock (its holds were released); the
    /// next explicit rlock/wlock reports RECOVERED and clears it.
    pub abandoned: AtomicU32,
}

#[repr(C)]
pub struct Control {
    pub identity: Identity,
    pub lock: LockLine,
    pub updates: UpdatesLine,
    pub used: UsedLine,
    pub stats: StatsLine,
    pub slots: [Slot; BLOCK_SLOTS],
}

/// Why a block is not one this library can use (`Control::validate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// No magic: not an area (or its creator has not finished).
    NoMagic,
    /// Another layout version.
    Version(u32),
    /// The header's data size and offset disagree with the object's length.
    Inconsistent { size: u64 },
}

impl Control {
    /// Bytes the block occupies.
    pub const SIZE: usize = std::mem::size_of::<Control>();

    /// Writes a fresh (zeroed) block's identity; the magic last, with Release,
    /// so a process that sees it sees the rest.
    pub(crate) fn init(&self, size: u64, data_offset: u64, owner_uid: u32, pid_namespace: u64) {
        use std::sync::atomic::Ordering::{Relaxed, Release};
        let id = &self.identity;
        id.version.store(VERSION, Relaxed);
        id.owner_uid.store(owner_uid, Relaxed);
        id.pid_namespace.store(pid_namespace, Relaxed);
        id.size.store(size, Relaxed);
        id.data_offset.store(data_offset, Relaxed);
        id.magic.store(MAGIC, Release);
    }

    /// Whether the block heads an area this library can use: our magic, our
    /// layout version, and a data size and offset that agree with an object of
    /// `total` bytes whose header is `header` bytes. Returns the area's size.
    pub(crate) fn validate(&self, header: u64, total: u64) -> Result<u64, Invalid> {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        let id = &self.identity;
        if id.magic.load(Acquire) != MAGIC {
            return Err(Invalid::NoMagic);
        }
        let version = id.version.load(Relaxed);
        if version != VERSION {
            return Err(Invalid::Version(version));
        }
        let size = id.size.load(Relaxed);
        if id.data_offset.load(Relaxed) != header || header.checked_add(size) != Some(total) {
            return Err(Invalid::Inconsistent { size });
        }
        Ok(size)
    }

    /// Whether the creator has written the magic yet.
    pub(crate) fn has_magic(&self) -> bool {
        self.identity
            .magic
            .load(std::sync::atomic::Ordering::Acquire)
            == MAGIC
    }

    /// The word update waiters sleep on.
    pub fn updates_futex_word(&self) -> &AtomicU32 {
        &self.updates.wake_seq
    }

    /// Every update counted so far: those under the write lock and the integer
    /// operations' in every slot.
    pub fn updates_total(&self) -> u64 {
        let ints: u64 = self.slots[..self.hwm(std::sync::atomic::Ordering::Acquire)]
            .iter()
            .map(|s| s.ints.load(std::sync::atomic::Ordering::Acquire) >> INT_OPS_BITS)
            .fold(0u64, u64::wrapping_add);
        self.updates
            .updates
            .load(std::sync::atomic::Ordering::Acquire)
            .wrapping_add(ints)
    }

    /// Slot `i`, for an index read from shared memory (clamped: never outside).
    pub fn slot(&self, i: usize) -> Option<&Slot> {
        self.slots.get(i)
    }

    /// The slot high-water mark, clamped to `SLOTS`.
    pub fn hwm(&self, order: std::sync::atomic::Ordering) -> usize {
        (self.lock.slot_hwm.load(order) as usize).min(SLOTS)
    }
}

// The layout (normal builds: the model test's atomics are the checker's objects).
#[cfg(not(all(loom, test)))]
const _: () = assert!(std::mem::size_of::<Slot>() == 64);
#[cfg(not(all(loom, test)))]
const _: () = assert!(std::mem::offset_of!(Control, lock) == 64);
#[cfg(not(all(loom, test)))]
const _: () = assert!(std::mem::offset_of!(Control, updates) == 128);
#[cfg(not(all(loom, test)))]
const _: () = assert!(std::mem::offset_of!(Control, used) == 192);
#[cfg(not(all(loom, test)))]
const _: () = assert!(std::mem::offset_of!(Control, stats) == 256);
#[cfg(not(all(loom, test)))]
const _: () = assert!(std::mem::offset_of!(Control, slots) == 320);

/// The lock's model test builds its control block on the heap, its atomics
/// created inside the model (`lock::model`).
#[cfg(all(loom, test))]
impl Control {
    /// A fresh block whose first `processes` slots are claimed. Every word the
    /// lock uses gets a `SeqCst` store first: loom lets a `SeqCst` load return
    /// the initial value past newer `SeqCst` stores (that value is not one), a
    /// behaviour no real `SeqCst` execution has.
    pub(crate) fn for_model(processes: u32) -> Box<Control> {
        use crate::sync::atomic::Ordering::SeqCst;
        let a32 = || AtomicU32::new(0);
        let a64 = || AtomicU64::new(0);
        let ctl = Box::new(Control {
            identity: Identity {
                magic: a64(),
                version: a32(),
                owner_uid: a32(),
                pid_namespace: a64(),
                size: a64(),
                data_offset: a64(),
            },
            lock: LockLine {
                state: a32(),
                slot_hwm: a32(),
                rgate: a32(),
                slotless: SlotlessWriter {
                    pid: a32(),
                    state: a32(),
                    start: a64(),
                    ns: a64(),
                },
            },
            updates: UpdatesLine {
                updates: a64(),
                wake_seq: a32(),
            },
            used: UsedLine {
                used: a64(),
                honour_used: a32(),
                recoveries: a64(),
            },
            stats: StatsLine {
                undecided: a64(),
                writer_recovery_updates: a64(),
                abandoned: a32(),
            },
            slots: std::array::from_fn(|i| Slot {
                pid: AtomicU32::new(if (i as u32) < processes {
                    i as u32 + 100
                } else {
                    0
                }),
                readers: a32(),
                start: a64(),
                ns: a64(),
                wgen: a32(),
                since_ms: a64(),
                ints: a64(),
            }),
        });
        ctl.lock.state.store(0, SeqCst);
        ctl.lock.rgate.store(0, SeqCst);
        ctl.lock.slot_hwm.store(processes, SeqCst);
        for slot in &ctl.slots {
            slot.readers.store(0, SeqCst);
            slot.ints.store(0, SeqCst);
        }
        ctl
    }
}

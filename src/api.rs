//! The safe Rust API: what a Rust program uses (the C entry points in [`crate::ffi`]
//! are `unsafe` and exist for C).
//!
//! An [`Area`] lives as long as the process, so constructors hand out
//! `&'static Area`; its id is the same number C, Perl and Python callers in the
//! process use for it. Every operation checks its range and returns an
//! [`Error`] carrying a [`Status`] (decide on that, never on the text).
//!
//! ```
//! use sharedarea::{Area, Status};
//!
//! let area = Area::init("pages=1")?;
//! area.write(0, b"hello")?;
//! area.add_int::<i64>(64, 5)?;
//! assert_eq!(area.read_int::<i64>(64)?, 5);
//!
//! {
//!     let _w = area.write_lock()?; // released when `_w` goes out of scope
//!     area.write(0, b"HELLO")?;
//! }
//!
//! let mut buf = [0u8; 5];
//! area.read(0, &mut buf)?;
//! assert_eq!(&buf, b"HELLO");
//! assert_eq!(area.write(4095, b"xy").unwrap_err().status, Status::OutOfRange);
//! # Ok::<(), sharedarea::Error>(())
//! ```

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::area::Area;
use crate::backing::{self, Made};
use crate::lock::Patience;
use crate::registry;
use crate::spec::Spec;
use crate::status::{Error, Result, Status};

impl Area {
    /// Creates an area from a uWSGI `--sharedarea` spec: `"4"` (pages),
    /// `"pages=2"`, `"size=64K"`, `"file=PATH[,size=..][,offset=..]"`,
    /// `"fd=N,..."`, `"name=NAME[,size=..]"` (created, or attached when it exists).
    /// A bad spec creates nothing ([`Status::InvalidSpec`]).
    ///
    /// A `file=` or `fd=` area maps a file: if some program truncates that file
    /// below the area's end, touching the lost pages kills the process with
    /// SIGBUS (as with any shared file mapping). Anonymous and `name=` areas
    /// reserve their memory at creation and cannot lose it that way. `fd=N`
    /// names a descriptor this process must own.
    pub fn init(spec: &str) -> Result<&'static Area> {
        let parsed = Spec::parse(spec)?;
        let id = registry::add(|| backing::create(spec, &parsed))?;
        registry::get(id)
    }

    /// Creates an area over `len` bytes of `fd` from `offset` (a multiple of the
    /// page size); `len` `None`: the file's length minus `offset`. The descriptor
    /// stays the caller's (the area keeps its own mapping). As for `file=` areas
    /// (see [`Area::init`]), truncating the file under a live area means SIGBUS.
    pub fn from_fd(fd: BorrowedFd<'_>, len: Option<u64>, offset: u64) -> Result<&'static Area> {
        let id = registry::add(|| backing::from_fd(fd.as_raw_fd(), len, offset).map(Made::New))?;
        registry::get(id)
    }

    /// Creates an area over `len` bytes of the caller's memory at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads and writes of `len` bytes for the rest of the
    /// life of the process; nothing but this area may read or write those bytes
    /// from now on (no Rust references to them, no other area over any of them,
    /// no other code writing them, in this process or another that shares them).
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Result<&'static Area> {
        if len == 0 || len > isize::MAX as usize {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("len {len}: an area needs 1 to 2^63-1 bytes"),
            ));
        }
        if (ptr.as_ptr() as usize).checked_add(len).is_none() {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("ptr {ptr:p} + len {len} wraps around the address space"),
            ));
        }
        // SAFETY: the caller's contract above is `backing::pointer`'s.
        let id =
            registry::add(|| unsafe { backing::pointer(ptr.as_ptr(), len as u64) }.map(Made::New))?;
        registry::get(id)
    }

    /// The area with this id (made by any binding in this process).
    #[inline]
    pub fn get(id: i32) -> Result<&'static Area> {
        registry::get(id)
    }

    /// Takes the read lock, waiting as long as it takes; the guard gives it back.
    /// Nests with this thread's other holds of the area's lock.
    pub fn read_lock(&self) -> Result<LockGuard<'_>> {
        self.guarded(false, None)
    }

    /// Takes the write lock, waiting as long as it takes; the guard gives it back.
    /// A thread holding the read lock gets [`Status::LockMisuse`] (no upgrades).
    pub fn write_lock(&self) -> Result<LockGuard<'_>> {
        self.guarded(true, None)
    }

    /// [`Area::read_lock`], giving up after `timeout` with [`Status::TimedOut`]
    /// (the error names the holder).
    pub fn read_lock_for(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.guarded(false, Some(timeout))
    }

    /// [`Area::write_lock`], giving up after `timeout` with [`Status::TimedOut`].
    pub fn write_lock_for(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.guarded(true, Some(timeout))
    }

    fn guarded(&self, write: bool, timeout: Option<Duration>) -> Result<LockGuard<'_>> {
        let p = Patience {
            // a timeout too long to represent is no limit
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
            interruptible: false,
            since: None,
        };
        let (recovered, serial) = self.take_hold(write, p, timeout)?;
        Ok(LockGuard {
            area: self,
            recovered,
            serial,
            _not_send: PhantomData,
        })
    }
}

/// One level of this thread's hold of an area's lock, given back on drop.
///
/// Not `Send`: a lock belongs to the thread that took it (a thread that exits
/// holding one has its holds released, and the next taker is told).
///
/// ```compile_fail
/// let area = sharedarea::Area::init("1").unwrap();
/// let guard = area.write_lock().unwrap();
/// std::thread::spawn(move || drop(guard)); // a guard cannot change threads
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    area: &'a Area,
    recovered: bool,
    /// The hold this guard has a level of: after an explicit `unlock_all` (or
    /// unlocks) ended that hold, the guard leaves any later hold alone.
    serial: u64,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Whether taking the lock cleared a dead holder (a process killed or a
    /// thread that exited holding it): what it protected may be half-written.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Gives the lock back now, reporting what a drop would ignore:
    /// [`Status::LockMisuse`] when this guard's hold had already ended (an
    /// explicit [`Area::unlock_all`], or another process judged this one dead and
    /// took the lock).
    pub fn unlock(self) -> Result<()> {
        let (area, serial) = (self.area, self.serial);
        std::mem::forget(self);
        area.unlock_hold(serial)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.area.unlock_hold(self.serial);
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("area", &self.area.id())
            .field("held", &self.area.held())
            .field("recovered", &self.recovered)
            .finish()
    }
}

/// How many areas this process has (ids are `0..count()`).
pub fn count() -> usize {
    registry::count()
}

/// The descriptor that becomes readable after `area` is updated, for event loops
/// (epoll, mio, tokio's `AsyncFd`): when it fires, read its 8-byte counter to
/// re-arm it, then read the area. One per area and process, owned by the library
/// and open for the life of the process: do not close it. After `fork`, the
/// child's first call puts the child's own eventfd on the same number (the
/// parent's helper thread does not exist in the child): call this again in the
/// child before watching it.
pub fn notify_fd(area: &'static Area) -> Result<RawFd> {
    crate::notify::fd(area)
}

impl std::fmt::Debug for Area {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = self.info();
        f.debug_struct("Area")
            .field("id", &self.id())
            .field("size", &info.size)
            .field("backing", &info.backing)
            .field("updates", &info.updates)
            .finish()
    }
}

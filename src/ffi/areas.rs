//! Creating areas, bytes in and out, `used`, info.

use std::ffi::{c_char, c_void, CStr};
use std::ptr::NonNull;

use super::{boundary, try_mut, try_slice, try_slice_mut};
use crate::area::Area;
use crate::backing::{self, page_size};
use crate::registry;
use crate::status::{Error, Status};

/// What `sharedarea_info` reports about an area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(non_camel_case_types)]
pub struct sharedarea_info {
    /// Bytes in the area.
    pub size: u64,
    /// Whole pages covering it.
    pub pages: u64,
    pub page_size: u64,
    /// Updates counted so far (writes, incs/decs, sharedarea_update).
    pub updates: u64,
    /// Bytes a producer published as valid (sharedarea_set_used).
    pub used: u64,
    /// Locks recovered from holders that died.
    pub recoveries: u64,
    /// One of the SHAREDAREA_BACKING_* constants.
    pub backing: i32,
    /// 1 when reads and sends with len 0 stop at `used`.
    pub honour_used: i32,
}

/// Creates an area from a uWSGI-style spec ("4", "pages=2", "size=64K",
/// "file=PATH[,size=..][,offset=..]", "fd=N,...", "name=NAME[,size=..]").
/// Returns its id (>= 0) or a negative status; a bad spec creates nothing.
#[allow(rustdoc::broken_intra_doc_links)] // "[,size=..]" is spec syntax (the header's text)
#[no_mangle]
pub unsafe extern "C" fn sharedarea_init(spec: *const c_char) -> i32 {
    boundary("sharedarea_init", || {
        if spec.is_null() {
            return Err(super::null("spec"));
        }
        // SAFETY: the caller passes a NUL-terminated string (checked non-NULL).
        let raw = unsafe { CStr::from_ptr(spec) };
        let text = raw.to_str().map_err(|_| {
            Error::new(
                Status::InvalidSpec,
                format!(
                    "invalid spec \"{}\": it is not UTF-8 text (paths and names in specs must be UTF-8)",
                    raw.to_string_lossy()
                ),
            )
        })?;
        Area::init(text).map(Area::id)
    })
}

/// Creates an area over `len` bytes of the caller's memory at `ptr` (which must
/// stay valid for the life of the process).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_init_ptr(ptr: *mut c_void, len: u64) -> i32 {
    boundary("sharedarea_init_ptr", || {
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| super::null("ptr"))?;
        let size = usize::try_from(len).unwrap_or(usize::MAX);
        // SAFETY: the header's contract for sharedarea_init_ptr is from_raw's:
        // `len` bytes at `ptr`, valid for the life of the process and used by
        // nothing but the area (from_raw checks the length and the range).
        unsafe { Area::from_raw(ptr, size) }.map(Area::id)
    })
}

/// Creates an area over an open descriptor (left open). `len` 0: the file's
/// length minus `offset`; `offset` must be a multiple of the page size.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_init_fd(fd: i32, len: u64, offset: i64) -> i32 {
    boundary("sharedarea_init_fd", || {
        let offset = u64::try_from(offset).map_err(|_| {
            Error::new(
                Status::InvalidArgument,
                format!("offset {offset} is negative"),
            )
        })?;
        let size = if len == 0 { None } else { Some(len) };
        // No spec here: a bad length or offset is a bad argument.
        registry::add(|| backing::from_fd(fd, size, offset).map(backing::Made::New)).map_err(|e| {
            if e.status == Status::InvalidSpec {
                Error::new(
                    Status::InvalidArgument,
                    e.detail.replace("give size=", "give a non-zero len"),
                )
            } else {
                e
            }
        })
    })
}

/// How many areas this process has (ids are 0..count-1).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_count() -> i32 {
    registry::count() as i32
}

/// Resolves a read length: `len` > 0 is checked to fit; 0 means to the end of the
/// area (or to `used` when honoured), which needs `pos` < size.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_extent(id: i32, pos: u64, len: u64, out_len: *mut u64) -> i32 {
    boundary("sharedarea_extent", || {
        // SAFETY: `out_len` is NULL or valid for writes during the call (the header's contract).
        let out = unsafe { try_mut(out_len, "out_len") }?;
        *out = registry::get(id)?.extent(pos, len)?;
        Ok(0)
    })
}

/// Copies exactly `len` bytes at `pos` into `buf`. Returns `len`, or < 0.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_read(id: i32, pos: u64, buf: *mut c_void, len: u64) -> i64 {
    boundary("sharedarea_read", || {
        let area = registry::get(id)?;
        area.check(pos, len)?;
        // SAFETY: `buf` is NULL or points at `len` writable bytes of the caller's (the header's contract).
        let dst = unsafe { try_slice_mut(buf.cast(), len, "buf") }?;
        area.read(pos, dst)?;
        Ok(len as i64)
    })
}

/// Copies `len` bytes from `buf` to `pos`; counts one update (also for len 0).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_write(id: i32, pos: u64, buf: *const c_void, len: u64) -> i32 {
    boundary("sharedarea_write", || {
        let area = registry::get(id)?;
        area.check(pos, len)?;
        // SAFETY: `buf` is NULL or points at `len` readable bytes (the header's contract).
        area.write(pos, unsafe { try_slice(buf.cast(), len, "buf") }?)?;
        Ok(0)
    })
}

/// Publishes how many bytes are valid, and turns honour_used on.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_set_used(id: i32, used: u64) -> i32 {
    boundary("sharedarea_set_used", || {
        registry::get(id)?.set_used(used)?;
        Ok(0)
    })
}

/// Turns honour_used on (non-zero) or off.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_honour_used(id: i32, on: i32) -> i32 {
    boundary("sharedarea_honour_used", || {
        registry::get(id)?.honour_used(on != 0);
        Ok(0)
    })
}

/// Fills `out` with the area's size, counters and kind.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_info(id: i32, out: *mut sharedarea_info) -> i32 {
    boundary("sharedarea_info", || {
        // SAFETY: `out` is NULL or valid for writes during the call (the header's contract).
        let out = unsafe { try_mut(out, "out") }?;
        let i = registry::get(id)?.info();
        let page = page_size();
        *out = sharedarea_info {
            size: i.size,
            pages: i.size.div_ceil(page),
            page_size: page,
            updates: i.updates,
            used: i.used,
            recoveries: i.recoveries,
            backing: i.backing as i32,
            honour_used: i.honour_used as i32,
        };
        Ok(0)
    })
}

/// Removes the named area `name` (as given to `name=`, with or without its
/// leading '/'): its name goes away at once, so the next `name=` with that name
/// creates a new, empty area. Processes that have it attached keep using their
/// memory (and its lock and counters) until they exit; the memory is freed when
/// the last of them has gone. Named areas otherwise persist (in /dev/shm) until
/// removed or the host reboots. Errors: SHAREDAREA_E_NO_SUCH_AREA (no object by
/// that name), SHAREDAREA_E_NOT_AN_AREA (the object is not a sharedarea: nothing
/// is removed), SHAREDAREA_E_INVALID_ARGUMENT (not a valid name),
/// SHAREDAREA_E_IO (not permitted, ...).
#[no_mangle]
pub unsafe extern "C" fn sharedarea_unlink(name: *const c_char) -> i32 {
    boundary("sharedarea_unlink", || {
        if name.is_null() {
            return Err(super::null("name"));
        }
        // SAFETY: the caller passes a NUL-terminated string (checked non-NULL).
        let raw = unsafe { CStr::from_ptr(name) };
        let text = raw.to_str().map_err(|_| {
            Error::new(
                Status::InvalidArgument,
                format!("name \"{}\" is not UTF-8 text", raw.to_string_lossy()),
            )
        })?;
        crate::inspect::unlink(text)?;
        Ok(0)
    })
}

//! `sharedarea._sharedarea`: uWSGI's `sharedarea_*` functions for Python, on the
//! SharedArea Rust core.
//!
//! # Why PyO3 on the core's Rust API, not a thin extension over the C ABI
//!
//! Each call is a few nanoseconds of real work (a read64 is one optimistic
//! load, an inc64 two atomic read-modify-writes), so the binding's own cost is
//! most of what a Python caller pays. Calling the core's Rust API directly
//! (`Area::get(id)?.read_int::<i64>(pos)`) skips what the C ABI adds for C's
//! sake: the `catch_unwind` boundary per call, the out-parameter, and the round
//! trip through `sharedarea_last_error()` to learn why a call failed -- here the
//! core's `sharedarea::Error` (status + detail) becomes the Python exception
//! directly. Error texts and statuses still come from the core (`src/status.rs`
//! and the core's details); only argument errors (a negative position, a float
//! where an int is wanted) are worded here, in [`args`], as the Perl XS words
//! its own.
//!
//! The `sharedarea_*` functions are plain CPython `METH_FASTCALL` functions
//! ([`fast`]), not `#[pyfunction]`s: PyO3's trampoline costs about 10 ns per
//! call (measured: an empty `#[pyfunction]` of two arguments 25 ns, the same
//! through [`fast`] 14 ns, `operator.index(1)` 12 ns), which would double the
//! cost of a `read64`. PyO3 still builds the module, the rarely called helpers
//! (`init`, `info`, ...) and every error path.
//!
//! The extension is built for the stable ABI (abi3, CPython >= 3.11): one wheel
//! for every later CPython. It costs nothing per call that matters here:
//! `METH_FASTCALL` is part of the stable ABI, and the hot paths call the same
//! `PyLong_AsLongLong`/`PyBytes_FromStringAndSize` either way. Free-threaded
//! CPython (3.13t) cannot load abi3 extensions, so it is not supported.
//!
//! # The GIL
//!
//! `wait`, `rlock` and `wlock` always release the GIL while they block, and run
//! Python's signal handlers when a signal interrupts them. Plain operations
//! (`read64`, `inc64`, `write`, ...) take the area's lock for nanoseconds and keep
//! the GIL — releasing and re-taking it would cost more than the operation —
//! except when some thread of this process holds an area's lock through
//! `sharedarea_rlock`/`wlock` and this thread does not: then the operation might
//! wait for that thread, which needs the GIL to reach its `unlock`, so it
//! releases the GIL first. The count of such holds is changed only with the GIL
//! held, before the lock is taken, so no thread can miss it.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_char;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use sharedarea::{page_size, Area, Backing, Held, Patience, Result as CoreResult, Status};

mod args;
mod errors;
#[macro_use]
mod fast;

use args::{area_id, bytes_of, len_arg, pos_arg, seconds_arg, value_arg};
use errors::{fail, fail_text};
use fast::{Args, Def};

/// Holds taken through `sharedarea_rlock`/`wlock` (each nested level counts) by
/// any thread of this process and not yet released. Changed only with the GIL
/// held; a forked child starts at 0 (it holds nothing, as the core says).
static EXPLICIT_HOLDS: AtomicUsize = AtomicUsize::new(0);
static AT_FORK: Once = Once::new();

/// The longest a blocked `wait`/`rlock` sleeps without the GIL before it lets
/// Python run signal handlers (a signal the kernel gave to another thread does
/// not wake this one; one given to this thread ends the slice at once).
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The same for a blocked `wlock`: longer, since a writer that ends a slice gives
/// up its claim on the lock for a moment, and readers that overlap by more than
/// a slice could keep it out.
const WRITER_SIGNAL_SLICE: Duration = Duration::from_secs(1);

extern "C" fn forget_holds_in_child() {
    EXPLICIT_HOLDS.store(0, Ordering::Relaxed);
}

fn release_hold() {
    let _ = EXPLICIT_HOLDS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

/// Runs a non-blocking operation on area `id`: with the GIL unless another
/// thread of this process may hold the area's lock (see the module docs).
#[inline(always)]
fn run<T: Send>(
    py: Python<'_>,
    id: i32,
    f: impl FnOnce() -> CoreResult<T> + Send,
) -> CoreResult<T> {
    if EXPLICIT_HOLDS.load(Ordering::SeqCst) == 0
        || Area::get(id).is_ok_and(|a| a.held() != Held::None)
    {
        f()
    } else {
        py.detach(f)
    }
}

/// The area with this id, or the core's "no such area" error.
#[inline(always)]
fn area(function: &'static str, id: i32) -> PyResult<&'static Area> {
    Area::get(id).map_err(|e| fail(function, e))
}

// ---------------------------------------------------------------- bytes

fn read_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    const F: &str = "sharedarea_read";
    let id = area_id(F, &a.get(0))?;
    let pos = pos_arg(F, id, "position", &a.get(1))?;
    let len = match a.opt(2) {
        Some(l) => len_arg(F, id, "length", &l)?,
        None => 0,
    };
    let area = area(F, id)?;
    let n = area.extent(pos, len).map_err(|e| fail(F, e))?;
    let size = isize::try_from(n).map_err(|_| {
        fail_text(
            F,
            Status::OutOfRange,
            id,
            format!("{n} bytes do not fit memory"),
        )
    })?;
    // SAFETY: a new, private bytes object of `size` bytes; it is filled below
    // before anyone else can see it.
    let obj = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromStringAndSize(std::ptr::null(), size))?
    };
    // SAFETY: PyBytes_AsString of a bytes object points at its `size` bytes.
    let buf = unsafe {
        std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj.as_ptr()) as *mut u8, n as usize)
    };
    run(py, id, || area.read(pos, buf)).map_err(|e| fail(F, e))?;
    Ok(obj.into_ptr())
}
fastcall!(sharedarea_read, 2, 3, "id, pos[, len]", read_body);

fn readinto_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    const F: &str = "sharedarea_readinto";
    let id = area_id(F, &a.get(0))?;
    let pos = pos_arg(F, id, "position", &a.get(1))?;
    let area = area(F, id)?;
    let mut view = args::Buffer::writable(F, id, &a.get(2))?;
    let dst = view.as_mut_slice();
    if dst.is_empty() {
        area.check(pos, 0).map_err(|e| fail(F, e))?;
        return fast::uint(0);
    }
    let avail = area.extent(pos, 0).map_err(|e| fail(F, e))?;
    let n = (dst.len() as u64).min(avail) as usize;
    let dst = &mut dst[..n];
    run(py, id, || area.read(pos, dst)).map_err(|e| fail(F, e))?;
    fast::uint(n as u64)
}
fastcall!(sharedarea_readinto, 3, 3, "id, pos, buffer", readinto_body);

fn write_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    const F: &str = "sharedarea_write";
    let id = area_id(F, &a.get(0))?;
    let pos = pos_arg(F, id, "position", &a.get(1))?;
    let area = area(F, id)?;
    bytes_of(F, id, &a.get(2), |bytes| {
        run(py, id, || area.write(pos, bytes)).map_err(|e| fail(F, e))
    })?;
    fast::none(py)
}
fastcall!(sharedarea_write, 3, 3, "id, pos, data", write_body);

// ---------------------------------------------------------------- integers

/// readN / writeN / incN / decN bodies for one width, under the name `$f`
/// (the older alias names get their own bodies so errors name them).
macro_rules! read_int {
    ($f:ident, $body:ident, $t:ty) => {
        fn $body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
            const F: &str = stringify!($f);
            let id = area_id(F, &a.get(0))?;
            let pos = pos_arg(F, id, "position", &a.get(1))?;
            let area = area(F, id)?;
            let v = run(py, id, || area.read_int::<$t>(pos)).map_err(|e| fail(F, e))?;
            fast::int(v as i64)
        }
        fastcall!($f, 2, 2, "id, pos", $body);
    };
}

macro_rules! write_int {
    ($f:ident, $body:ident, $t:ty) => {
        fn $body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
            const F: &str = stringify!($f);
            let id = area_id(F, &a.get(0))?;
            let pos = pos_arg(F, id, "position", &a.get(1))?;
            let value = value_arg(F, id, "value", &a.get(2))? as $t;
            let area = area(F, id)?;
            run(py, id, || area.write_int::<$t>(pos, value)).map_err(|e| fail(F, e))?;
            fast::none(py)
        }
        fastcall!($f, 3, 3, "id, pos, value", $body);
    };
}

macro_rules! add_int {
    ($f:ident, $body:ident, $t:ty, $op:ident) => {
        fn $body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
            const F: &str = stringify!($f);
            let id = area_id(F, &a.get(0))?;
            let pos = pos_arg(F, id, "position", &a.get(1))?;
            let amount = match a.opt(2) {
                Some(v) => value_arg(F, id, "amount", &v)? as $t,
                None => 1,
            };
            let area = area(F, id)?;
            let v = run(py, id, || area.$op::<$t>(pos, amount)).map_err(|e| fail(F, e))?;
            fast::int(v as i64)
        }
        fastcall!($f, 2, 3, "id, pos[, amount]", $body);
    };
}

read_int!(sharedarea_read8, read8_body, i8);
read_int!(sharedarea_read16, read16_body, i16);
read_int!(sharedarea_read32, read32_body, i32);
read_int!(sharedarea_read64, read64_body, i64);
write_int!(sharedarea_write8, write8_body, i8);
write_int!(sharedarea_write16, write16_body, i16);
write_int!(sharedarea_write32, write32_body, i32);
write_int!(sharedarea_write64, write64_body, i64);
add_int!(sharedarea_inc8, inc8_body, i8, add_int);
add_int!(sharedarea_inc16, inc16_body, i16, add_int);
add_int!(sharedarea_inc32, inc32_body, i32, add_int);
add_int!(sharedarea_inc64, inc64_body, i64, add_int);
add_int!(sharedarea_dec8, dec8_body, i8, sub_int);
add_int!(sharedarea_dec16, dec16_body, i16, sub_int);
add_int!(sharedarea_dec32, dec32_body, i32, sub_int);
add_int!(sharedarea_dec64, dec64_body, i64, sub_int);
// The older names of uWSGI 2.0's Python plugin: id-first aliases.
read_int!(sharedarea_readbyte, readbyte_body, i8);
write_int!(sharedarea_writebyte, writebyte_body, i8);
read_int!(sharedarea_readlong, readlong_body, i64);
write_int!(sharedarea_writelong, writelong_body, i64);
add_int!(sharedarea_inclong, inclong_body, i64, add_int);

// ---------------------------------------------------------------- waiting and locking

fn wait_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    const F: &str = "sharedarea_wait";
    let id = area_id(F, &a.get(0))?;
    let area = area(F, id)?;
    if let Some(f) = a.opt(1) {
        seconds_arg(F, id, "frequency", &f)?;
    }
    let timeout_s = match a.opt(2) {
        Some(t) => seconds_arg(F, id, "timeout", &t)?,
        None => 0.0,
    };
    // 0.0001 s is 1 ms, not forever; beyond ~31 years is forever.
    let total = (timeout_s > 0.0)
        .then(|| (timeout_s * 1000.0).ceil())
        .filter(|ms| *ms <= 1e12)
        .map(|ms| Duration::from_millis(ms as u64));
    let seen = area.updates();
    let since = Instant::now();
    let deadline = total.map(|t| since + t);
    loop {
        let left = match deadline {
            None => SIGNAL_SLICE,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(l) if !l.is_zero() => l.min(SIGNAL_SLICE),
                _ => break,
            },
        };
        match py.detach(|| area.wait_since(seen, Some(left))) {
            Ok(()) => return fast::none(py),
            Err(e) if e.status == Status::Interrupted || e.status == Status::TimedOut => {
                py.check_signals()?
            }
            Err(e) => return Err(fail(F, e)),
        }
    }
    Err(fail_text(
        F,
        Status::TimedOut,
        id,
        format!("timed out after {} s", args::show_secs(timeout_s)),
    ))
}
fastcall!(sharedarea_wait, 1, 3, "id[, freq[, timeout]]", wait_body);

fn update_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    const F: &str = "sharedarea_update";
    let id = area_id(F, &a.get(0))?;
    let area = area(F, id)?;
    run(py, id, || area.update()).map_err(|e| fail(F, e))?;
    fast::none(py)
}
fastcall!(sharedarea_update, 1, 1, "id", update_body);

/// Takes the area's lock for `sharedarea_rlock`/`wlock(id[, timeout])`, with the
/// GIL released while blocked. The hold is counted before the lock is taken (see
/// the module docs) and uncounted if taking it fails. The wait goes in slices of
/// at most [`SIGNAL_SLICE`] ([`WRITER_SIGNAL_SLICE`] for a writer), each ended
/// early by a signal: between them Python's
/// signal handlers run (one that raises ends the call, holding nothing), so
/// Ctrl-C works even when the kernel gave the signal to another thread.
fn take_lock(
    py: Python<'_>,
    function: &'static str,
    a: &Args<'_>,
    write: bool,
) -> PyResult<*mut ffi::PyObject> {
    let id = area_id(function, &a.get(0))?;
    let area = area(function, id)?;
    let total = match a.opt(1) {
        Some(t) if !t.is_none() => {
            let secs = seconds_arg(function, id, "timeout", &t)?;
            // Beyond ~31 years is no limit.
            (secs * 1000.0 <= 1e12).then(|| Duration::from_secs_f64(secs))
        }
        _ => None,
    };
    let since = Instant::now();
    let deadline = total.map(|t| since + t);
    let slice = if write {
        WRITER_SIGNAL_SLICE
    } else {
        SIGNAL_SLICE
    };
    EXPLICIT_HOLDS.fetch_add(1, Ordering::SeqCst);
    loop {
        let slice_end = Instant::now() + slice;
        let (until, last) = match deadline {
            Some(d) if d <= slice_end => (d, true),
            _ => (slice_end, false),
        };
        let p = Patience {
            deadline: Some(until),
            interruptible: true,
            // a timeout's text counts the whole wait, not the last slice
            since: Some(since),
        };
        let taken = py.detach(|| {
            if write {
                area.wlock_with(p, total)
            } else {
                area.rlock_with(p, total)
            }
        });
        match taken {
            Ok(false) => return fast::none(py),
            Ok(true) => {
                errors::warn_recovered(py, function, id)?;
                return fast::none(py);
            }
            Err(e)
                if e.status == Status::Interrupted || (e.status == Status::TimedOut && !last) =>
            {
                if let Err(raised) = py.check_signals() {
                    release_hold();
                    return Err(raised);
                }
            }
            Err(e) => {
                release_hold();
                return Err(fail(function, e));
            }
        }
    }
}

fn rlock_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    take_lock(py, "sharedarea_rlock", a, false)
}
fastcall!(sharedarea_rlock, 1, 2, "id[, timeout]", rlock_body);

fn wlock_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    take_lock(py, "sharedarea_wlock", a, true)
}
fastcall!(sharedarea_wlock, 1, 2, "id[, timeout]", wlock_body);

fn unlock_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    const F: &str = "sharedarea_unlock";
    let id = area_id(F, &a.get(0))?;
    let area = area(F, id)?;
    area.unlock().map_err(|e| fail(F, e))?;
    release_hold();
    fast::none(py)
}
fastcall!(sharedarea_unlock, 1, 1, "id", unlock_body);

// ---------------------------------------------------------------- zero-copy views

fn memoryview_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    const F: &str = "sharedarea_memoryview";
    let id = area_id(F, &a.get(0))?;
    let area = area(F, id)?;
    let size = isize::try_from(area.size()).map_err(|_| {
        fail_text(
            F,
            Status::OutOfRange,
            id,
            format!("{} bytes do not fit a memoryview", area.size()),
        )
    })?;
    // SAFETY: data_ptr() is valid for size() bytes for the life of the process
    // (areas are never unmapped); PyMemoryView_FromMemory takes no ownership.
    let mv = unsafe {
        ffi::PyMemoryView_FromMemory(area.data_ptr() as *mut c_char, size, ffi::PyBUF_WRITE)
    };
    if mv.is_null() {
        return Err(PyErr::fetch(py));
    }
    Ok(mv)
}
fastcall!(sharedarea_memoryview, 1, 1, "id", memoryview_body);

fn object_body(_py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    const F: &str = "sharedarea_object";
    let id = area_id(F, &a.get(0))?;
    area(F, id)?;
    Err(fail_text(
        F,
        Status::InvalidArgument,
        id,
        "the area was not created from a Python object (use sharedarea_memoryview for a zero-copy view)",
    ))
}
fastcall!(sharedarea_object, 1, 1, "id", object_body);

/// The `sharedarea_*` functions: name, entry point, text signature and docstring.
fn uwsgi_functions() -> Vec<Def> {
    macro_rules! def {
        ($f:ident, $sig:literal, $doc:expr) => {
            Def {
                name: stringify!($f),
                f: $f,
                doc: concat!(stringify!($f), $sig, "\n--\n\n", $doc),
            }
        };
    }
    macro_rules! ints {
        ($bits:literal, $read:ident, $write:ident, $inc:ident, $dec:ident) => {
            [
                def!($read, "($module, id, pos, /)", concat!("The signed ", $bits, "-bit integer at `pos` (native byte order, no alignment needed).")),
                def!($write, "($module, id, pos, value, /)", concat!("Stores `value` as a ", $bits,
                    "-bit integer at `pos` and counts one update. A value wider than ", $bits,
                    " bits keeps its low bits (two's complement): write8(0, 0, 255) reads back as -1. \
                    It must lie in -2**63 .. 2**64-1 (IntegerOverflowError otherwise). Returns None.")),
                def!($inc, "($module, id, pos, amount=1, /)", concat!("Adds `amount` (default 1) to the ", $bits,
                    "-bit integer at `pos`, wrapping around, and returns the new value (uWSGI returns None). \
                    Atomic with respect to every other operation on the area, in every process. Counts one update.")),
                def!($dec, "($module, id, pos, amount=1, /)", concat!("Subtracts `amount` (default 1) from the ", $bits,
                    "-bit integer at `pos`, wrapping around, and returns the new value (uWSGI returns None). \
                    Atomic like the inc functions. Counts one update.")),
            ]
        };
    }
    let mut v = vec![
        def!(sharedarea_read, "($module, id, pos, len=0, /)",
            "The `len` bytes at `pos` as new bytes. `len` omitted or 0 reads to the end of the area, or to \
            `used` when the area honours it (see set_used). The range is checked before anything is allocated."),
        def!(sharedarea_readinto, "($module, id, pos, buffer, /)",
            "Copies the bytes at `pos` into `buffer` -- any writable, C-contiguous buffer: bytearray, \
            memoryview, array.array, a NumPy array -- without allocating, and returns how many: the buffer's \
            size, or fewer when the area (or its `used` mark, when honoured) ends first. `pos` must lie \
            inside the area."),
        def!(sharedarea_write, "($module, id, pos, data, /)",
            "Copies `data` into the area at `pos`: bytes or any other buffer (bytearray, memoryview, ...); a \
            str is written as its UTF-8 bytes, as uWSGI does. Counts one update (also for empty data). \
            Returns None."),
        def!(sharedarea_wait, "($module, id, freq=0, timeout=0, /)",
            "Blocks until the area is updated after the call began (every write, writeN, incN, decN and \
            update counts; reads do not). `timeout` is in seconds, fractions honoured; 0 or absent waits \
            forever; when it expires TimedOutError (a ValueError and a TimeoutError) is raised. `freq` \
            (milliseconds) is accepted for compatibility with uWSGI and ignored: the waiter is woken by the \
            update itself, not by polling. The GIL is released while waiting. A signal (Ctrl-C) runs its \
            Python handler promptly; if the handler raises (KeyboardInterrupt), the wait ends with that \
            exception, otherwise it goes on for the time that is left. Returns None."),
        def!(sharedarea_update, "($module, id, /)",
            "Counts an update and wakes the waiters without changing any byte. Returns None."),
        def!(sharedarea_rlock, "($module, id, timeout=None, /)",
            "Takes the area's read lock, shared by every process with the area (locks nest: each rlock needs \
            its unlock; prefer `with sharedarea.rlock_guard(id):`). Every operation takes the lock by \
            itself; this is for making several reads one. Under its own read lock a thread's reads go \
            through and its writes raise LockMisuseError (they do not hang). `timeout` (seconds, fractions \
            honoured; ours, not uWSGI's) bounds the wait: None or absent waits as long as it takes, 0 tries \
            once; when it expires TimedOutError names the process holding the lock and for how long. The \
            GIL is released while waiting; a signal (Ctrl-C) runs its Python handler promptly, and one that \
            raises ends the call holding nothing. A process that died holding the lock blocks the others \
            for about 0.2 s; the caller that clears it gets a LockRecoveredWarning. Returns None."),
        def!(sharedarea_wlock, "($module, id, timeout=None, /)",
            "Takes the area's write lock (nests; prefer `with sharedarea.wlock_guard(id):`). While holding it, \
            this thread can call every function on the area. wlock while holding the read lock raises \
            LockMisuseError. `timeout`, the GIL and signals as for sharedarea_rlock. Returns None."),
        def!(sharedarea_unlock, "($module, id, /)",
            "Releases one level of this thread's rlock/wlock. Without a lock it raises LockMisuseError \
            (uWSGI silently breaks the lock). Returns None."),
        def!(sharedarea_memoryview, "($module, id, /)",
            "A writable memoryview (format 'B') straight onto the area's pages: no copy, exactly the area's \
            length. Like uWSGI's, it bypasses the lock and the update counter: reads through it may see a \
            write in progress, writes through it wake no waiter (call sharedarea_update after writing). \
            The area lives as long as the process, so the view never dangles."),
        def!(sharedarea_object, "($module, id, /)",
            "In uWSGI, the Python object an area was created from (areas made from Python objects, which \
            SharedArea does not have); for any other area uWSGI 2.0.21 raises SystemError. Here it always \
            raises sharedarea.Error (NoSuchAreaError for a bad id). Use sharedarea_memoryview instead."),
        def!(sharedarea_readbyte, "($module, id, pos, /)", "The older name of sharedarea_read8 (id first, as in uWSGI 2.0)."),
        def!(sharedarea_writebyte, "($module, id, pos, value, /)", "The older name of sharedarea_write8 (id first, as in uWSGI 2.0)."),
        def!(sharedarea_readlong, "($module, id, pos, /)", "The older name of sharedarea_read64 (id first, as in uWSGI 2.0)."),
        def!(sharedarea_writelong, "($module, id, pos, value, /)", "The older name of sharedarea_write64 (id first, as in uWSGI 2.0)."),
        def!(sharedarea_inclong, "($module, id, pos, amount=1, /)", "The older name of sharedarea_inc64 (id first, as in uWSGI 2.0)."),
    ];
    v.extend(ints!(
        "8",
        sharedarea_read8,
        sharedarea_write8,
        sharedarea_inc8,
        sharedarea_dec8
    ));
    v.extend(ints!(
        "16",
        sharedarea_read16,
        sharedarea_write16,
        sharedarea_inc16,
        sharedarea_dec16
    ));
    v.extend(ints!(
        "32",
        sharedarea_read32,
        sharedarea_write32,
        sharedarea_inc32,
        sharedarea_dec32
    ));
    v.extend(ints!(
        "64",
        sharedarea_read64,
        sharedarea_write64,
        sharedarea_inc64,
        sharedarea_dec64
    ));
    v
}

// ---------------------------------------------------------------- areas

/// init(spec, /) -> int
///
/// Creates an area from a uWSGI `--sharedarea` spec ("4", "pages=2",
/// "size=64K", "file=PATH,size=...", "fd=N,...", "name=NAME,size=...") and
/// returns its id. A bad spec creates nothing and raises `InvalidSpecError`.
#[pyfunction]
#[pyo3(signature = (spec, /))]
fn init(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<i32> {
    const F: &str = "init";
    let text = args::spec_text(F, spec)?;
    py.detach(|| Area::init(&text).map(|a| a.id()))
    .map_err(|e| fail(F, e))
}

/// count() -> int
///
/// How many areas this process has (their ids are 0 .. count()-1).
#[pyfunction]
fn count() -> usize {
    sharedarea::count()
}

/// info(id, /) -> dict
///
/// The area's size (bytes), pages, page_size, updates (the update counter),
/// used and honour_used (see set_used), recoveries (locks recovered from dead
/// holders) and backing ('anonymous', 'file', 'fd', 'named' or 'pointer').
#[pyfunction]
#[pyo3(signature = (id, /))]
fn info<'py>(py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    const F: &str = "info";
    let id = area_id(F, id)?;
    let i = area(F, id)?.info();
    let page = page_size();
    let d = PyDict::new(py);
    d.set_item("size", i.size)?;
    d.set_item("pages", i.size.div_ceil(page))?;
    d.set_item("page_size", page)?;
    d.set_item("updates", i.updates)?;
    d.set_item("used", i.used)?;
    d.set_item("honour_used", i.honour_used)?;
    d.set_item("recoveries", i.recoveries)?;
    let backing = match i.backing {
        Backing::Anonymous => "anonymous",
        Backing::File => "file",
        Backing::Fd => "fd",
        Backing::Named => "named",
        Backing::Pointer => "pointer",
    };
    d.set_item("backing", backing)?;
    Ok(d)
}

/// set_used(id, used, /) -> None
///
/// Publishes how many bytes of the area are valid and turns honour_used on:
/// from then on reads with no length (or length 0) stop at `used`.
#[pyfunction]
#[pyo3(signature = (id, used, /))]
fn set_used(py: Python<'_>, id: &Bound<'_, PyAny>, used: &Bound<'_, PyAny>) -> PyResult<()> {
    const F: &str = "set_used";
    let id = area_id(F, id)?;
    let used = len_arg(F, id, "used", used)?;
    let area = area(F, id)?;
    run(py, id, || area.set_used(used)).map_err(|e| fail(F, e))
}

/// honour_used(id, on, /) -> None
///
/// Turns the honouring of `used` on or off (`on` is taken as a boolean).
#[pyfunction]
#[pyo3(signature = (id, on, /))]
fn honour_used(id: &Bound<'_, PyAny>, on: &Bound<'_, PyAny>) -> PyResult<()> {
    const F: &str = "honour_used";
    let id = area_id(F, id)?;
    let on = on.is_truthy()?;
    area(F, id)?.honour_used(on);
    Ok(())
}

/// updates(id, /) -> int
///
/// The area's update counter now.
#[pyfunction]
#[pyo3(signature = (id, /))]
fn updates(id: &Bound<'_, PyAny>) -> PyResult<u64> {
    const F: &str = "updates";
    let id = area_id(F, id)?;
    Ok(area(F, id)?.updates())
}

/// held(id, /) -> int
///
/// How this thread holds the area's lock: 0 (not at all), 1 (the read lock) or
/// 2 (the write lock).
#[pyfunction]
#[pyo3(signature = (id, /))]
fn held(id: &Bound<'_, PyAny>) -> PyResult<u8> {
    const F: &str = "held";
    let id = area_id(F, id)?;
    Ok(match area(F, id)?.held() {
        Held::None => 0,
        Held::Read => 1,
        Held::Write => 2,
    })
}

/// unlock_all(id, /) -> int
///
/// Releases every level of this thread's hold on the area's lock (nested
/// rlock/wlock included) and returns how many it released (0 when it held none).
#[pyfunction]
#[pyo3(signature = (id, /))]
fn unlock_all(id: &Bound<'_, PyAny>) -> PyResult<u32> {
    const F: &str = "unlock_all";
    let id = area_id(F, id)?;
    let n = area(F, id)?.unlock_all().map_err(|e| fail(F, e))?;
    for _ in 0..n {
        release_hold();
    }
    Ok(n)
}

/// notify_fd(id, /) -> int
///
/// A descriptor (an eventfd) that becomes readable after the area is updated,
/// for event loops that must not block in `sharedarea_wait` (see
/// `sharedarea.wait_async`, which uses it). When it is readable, read its
/// 8-byte counter (non-blocking; that re-arms it), then read the area. The same
/// descriptor on every call in a process: do not close it.
#[pyfunction]
#[pyo3(signature = (id, /))]
fn notify_fd(id: &Bound<'_, PyAny>) -> PyResult<i32> {
    const F: &str = "notify_fd";
    let id = area_id(F, id)?;
    sharedarea::notify_fd(area(F, id)?).map_err(|e| fail(F, e))
}

/// remove(name, /) -> None
///
/// Removes the named area `name` (as in `name=NAME`, with or without a leading
/// `/`). Processes that have it keep using their memory until they exit; the
/// next `name=NAME` creates a new area. Raises, removing nothing, when there is
/// no such name (`NoSuchAreaError`), when the object is not a sharedarea
/// (`NotAnAreaError`), or when the operating system refuses (`AreaOSError`).
#[pyfunction]
#[pyo3(signature = (name, /))]
fn remove(py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<()> {
    const F: &str = "remove";
    let text = args::name_text(F, name)?;
    py.detach(|| sharedarea::inspect::unlink(&text))
        .map_err(|e| fail(F, e))
}

/// abi_version() -> int
///
/// The version of the core's C ABI this extension was built with.
#[pyfunction]
fn abi_version() -> u32 {
    sharedarea::ffi::errors::SHAREDAREA_ABI_VERSION
}

/// _statuses() -> list[tuple[str, int, str]]
///
/// Every status of the core: (name, code, text). The exception classes of
/// `sharedarea` are keyed by these names; a test checks that none is missing.
#[pyfunction]
fn _statuses<'py>(py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    Status::ALL
        .iter()
        .map(|s| {
            PyTuple::new(
                py,
                [
                    format!("{s:?}").into_pyobject(py)?.into_any(),
                    s.code().into_pyobject(py)?.into_any(),
                    s.text().into_pyobject(py)?.into_any(),
                ],
            )
        })
        .collect()
}

/// _explicit_holds() -> int
///
/// Testing aid: rlock/wlock levels held by this process's threads.
#[pyfunction]
fn _explicit_holds() -> usize {
    EXPLICIT_HOLDS.load(Ordering::SeqCst)
}

#[pymodule]
fn _sharedarea(m: &Bound<'_, PyModule>) -> PyResult<()> {
    AT_FORK.call_once(|| {
        // SAFETY: registers a plain extern "C" fn that only stores an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(forget_holds_in_child)) };
    });
    errors::load(m.py())?;
    fast::add_all(m, &uwsgi_functions())?;
    m.add_function(wrap_pyfunction!(init, m)?)?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    m.add_function(wrap_pyfunction!(info, m)?)?;
    m.add_function(wrap_pyfunction!(set_used, m)?)?;
    m.add_function(wrap_pyfunction!(honour_used, m)?)?;
    m.add_function(wrap_pyfunction!(updates, m)?)?;
    m.add_function(wrap_pyfunction!(held, m)?)?;
    m.add_function(wrap_pyfunction!(unlock_all, m)?)?;
    m.add_function(wrap_pyfunction!(notify_fd, m)?)?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    m.add_function(wrap_pyfunction!(abi_version, m)?)?;
    m.add_function(wrap_pyfunction!(_statuses, m)?)?;
    m.add_function(wrap_pyfunction!(_explicit_holds, m)?)?;
    m.add_function(wrap_pyfunction!(_noop_pyo3, m)?)?;
    fast::add_all(
        m,
        &[Def {
            name: "_noop",
            f: _noop,
            doc: "_noop($module, a, b, /)\n--\n\nMeasurement aid: the cost of a call through this module's machinery, doing nothing.",
        }],
    )?;
    Ok(())
}

fn noop_body(py: Python<'_>, a: &Args<'_>) -> PyResult<*mut ffi::PyObject> {
    let _ = (a.get(0), a.get(1));
    fast::none(py)
}
fastcall!(_noop, 2, 2, "a, b", noop_body);

/// _noop_pyo3(a, b, /) -> None
///
/// Measurement aid: the same empty call through PyO3's `#[pyfunction]`.
#[pyfunction]
#[pyo3(signature = (a, b, /))]
fn _noop_pyo3(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) {
    let _ = (a, b);
}

//! Argument conversion, in one place: every id, position, length, integer value,
//! number of seconds, byte string and buffer a Python caller passes goes through
//! here. The fast paths are one `PyLong_AsLongLong` (via PyO3's extract); what
//! fails is classified on a cold path into an error that names the function,
//! the area and the argument:
//!
//! * not an integer (float, None, str; objects with `__index__` are integers):
//!   `TypeError`, as uWSGI raises;
//! * a negative position or length, or one of 2**64 or more: `OutOfRangeError`
//!   (uWSGI passes -1 on as 2**64-1, then fails);
//! * an id that is negative or does not fit 32 bits: `NoSuchAreaError` (uWSGI
//!   raises OverflowError past 2**31 and crashes on negative ids);
//! * an integer value outside -2**63 .. 2**64-1: `IntegerOverflowError`.

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use sharedarea::{Area, Status};

use crate::errors::{fail_detail, fail_text, overflow, type_error};

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// The integer value of `obj` (through `__index__`) as text, for messages.
fn int_text(obj: &Bound<'_, PyAny>) -> String {
    // SAFETY: PyNumber_Index returns a new reference or NULL with an exception set.
    let index =
        unsafe { Bound::from_owned_ptr_or_err(obj.py(), ffi::PyNumber_Index(obj.as_ptr())) };
    match index.and_then(|i| i.str().map(|s| s.to_string())) {
        Ok(t) => t,
        Err(_) => "?".to_string(),
    }
}

/// The exception an object's own `__index__` raised, when that is why it could
/// not be taken as an integer (it propagates unchanged, as from `operator.index`).
fn raised_by_index(obj: &Bound<'_, PyAny>) -> Option<PyErr> {
    let py = obj.py();
    // SAFETY: PyNumber_Index returns a new reference or NULL with an exception set.
    match unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyNumber_Index(obj.as_ptr())) } {
        Err(e) if !e.is_instance_of::<PyTypeError>(py) => Some(e),
        _ => None,
    }
}

/// Whether the integer `obj` (through `__index__`) is negative.
fn is_negative(obj: &Bound<'_, PyAny>) -> bool {
    obj.lt(0).unwrap_or(false)
}

/// The value of an exact `int` that fits 64 bits: the fast path of every
/// integer argument (anything else goes through PyO3's extract and `__index__`).
#[inline(always)]
fn exact_small_int(obj: &Bound<'_, PyAny>) -> Option<i64> {
    let p = obj.as_ptr();
    // SAFETY: `p` is a live object (borrowed for the call); PyLong_CheckExact
    // only compares its type, PyLong_AsLongLong reads an exact int.
    unsafe {
        if ffi::PyLong_CheckExact(p) == 0 {
            return None;
        }
        let v = ffi::PyLong_AsLongLong(p);
        if v == -1 && !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        Some(v)
    }
}

/// An area id: any integer. Whether the area exists is the core's to say; an id
/// that is negative or does not fit 32 bits "does not exist" (never truncated).
#[inline(always)]
pub fn area_id(function: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<i32> {
    if let Some(v) = exact_small_int(obj) {
        if let Ok(id) = i32::try_from(v) {
            return Ok(id);
        }
    }
    match obj.extract::<i32>() {
        Ok(id) => Ok(id),
        Err(e) => Err(area_id_failed(function, obj, e)),
    }
}

#[cold]
#[inline(never)]
fn area_id_failed(function: &str, obj: &Bound<'_, PyAny>, e: PyErr) -> PyErr {
    let py = obj.py();
    if !e.is_instance_of::<PyOverflowError>(py) {
        if let Some(raised) = raised_by_index(obj) {
            return raised;
        }
        return type_error(
            function,
            format!("the area id must be an integer, not {}", type_name(obj)),
        );
    }
    // The core's own "no such area" text, about this id instead of -1.
    let core = match Area::get(-1) {
        Err(e) => e,
        Ok(_) => unreachable!("area -1 never exists"),
    };
    let detail = core
        .detail
        .replacen("area -1", &format!("area {}", int_text(obj)), 1);
    fail_detail(function, Status::NoSuchArea, detail)
}

/// A position or length: an integer in 0 .. 2**64-1.
#[inline(always)]
pub fn pos_arg(
    function: &'static str,
    id: i32,
    what: &str,
    obj: &Bound<'_, PyAny>,
) -> PyResult<u64> {
    if let Some(v) = exact_small_int(obj) {
        if v >= 0 {
            return Ok(v as u64);
        }
    }
    match obj.extract::<i64>() {
        Ok(v) if v >= 0 => Ok(v as u64),
        Ok(v) => Err(fail_text(
            function,
            Status::OutOfRange,
            id,
            format!("{what} {v} is negative"),
        )),
        Err(e) => pos_arg_slow(function, id, what, obj, e),
    }
}

/// A length: as a position.
#[inline(always)]
pub fn len_arg(
    function: &'static str,
    id: i32,
    what: &str,
    obj: &Bound<'_, PyAny>,
) -> PyResult<u64> {
    pos_arg(function, id, what, obj)
}

#[cold]
#[inline(never)]
fn pos_arg_slow(
    function: &str,
    id: i32,
    what: &str,
    obj: &Bound<'_, PyAny>,
    e: PyErr,
) -> PyResult<u64> {
    let py = obj.py();
    if !e.is_instance_of::<PyOverflowError>(py) {
        if let Some(raised) = raised_by_index(obj) {
            return Err(raised);
        }
        return Err(type_error(
            function,
            format!(
                "area {id}: the {what} must be an integer, not {}",
                type_name(obj)
            ),
        ));
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(v);
    }
    let text = int_text(obj);
    let cause = if is_negative(obj) {
        format!("{what} {text} is negative")
    } else {
        format!("{what} {text} is too large (2**64 or more)")
    };
    Err(fail_text(function, Status::OutOfRange, id, cause))
}

/// An integer value to store or add: -2**63 .. 2**64-1, as its 64 low bits
/// (two's complement); the caller keeps the low bits of its width.
#[inline(always)]
pub fn value_arg(
    function: &'static str,
    id: i32,
    what: &str,
    obj: &Bound<'_, PyAny>,
) -> PyResult<i64> {
    if let Some(v) = exact_small_int(obj) {
        return Ok(v);
    }
    match obj.extract::<i64>() {
        Ok(v) => Ok(v),
        Err(e) => value_arg_slow(function, id, what, obj, e),
    }
}

#[cold]
#[inline(never)]
fn value_arg_slow(
    function: &str,
    id: i32,
    what: &str,
    obj: &Bound<'_, PyAny>,
    e: PyErr,
) -> PyResult<i64> {
    let py = obj.py();
    if !e.is_instance_of::<PyOverflowError>(py) {
        if let Some(raised) = raised_by_index(obj) {
            return Err(raised);
        }
        return Err(type_error(
            function,
            format!(
                "area {id}: the {what} must be an integer, not {}",
                type_name(obj)
            ),
        ));
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(v as i64);
    }
    Err(overflow(
        function,
        id,
        format!(
            "{what} {} does not fit in 64 bits (-2**63 .. 2**64-1)",
            int_text(obj)
        ),
    ))
}

/// A non-negative, finite number of seconds or milliseconds (int or float).
pub fn seconds_arg(function: &str, id: i32, what: &str, obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(type_error(
            function,
            format!(
                "area {id}: the {what} must be a number, not {}",
                type_name(obj)
            ),
        ));
    }
    let v = match obj.extract::<f64>() {
        Ok(v) => v,
        Err(e) if e.is_instance_of::<PyTypeError>(obj.py()) => {
            return Err(type_error(
                function,
                format!(
                    "area {id}: the {what} must be a number, not {}",
                    type_name(obj)
                ),
            ))
        }
        Err(_) => f64::INFINITY,
    };
    if v.is_nan() {
        return Err(fail_text(
            function,
            Status::InvalidArgument,
            id,
            format!("{what} is not a number (NaN)"),
        ));
    }
    if v < 0.0 {
        return Err(fail_text(
            function,
            Status::InvalidArgument,
            id,
            format!("{what} {} is negative", show_secs(v)),
        ));
    }
    if v.is_infinite() {
        return Err(fail_text(
            function,
            Status::InvalidArgument,
            id,
            format!("{what} is too large"),
        ));
    }
    Ok(v)
}

/// A number of seconds as a person writes it: 1, 0.5, 2.25.
pub fn show_secs(v: f64) -> String {
    format!("{v}")
}

/// The spec of `init`: a str of UTF-8 text.
pub fn spec_text(function: &str, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = obj.cast::<PyString>().map_err(|_| {
        type_error(
            function,
            format!("the spec must be a str, not {}", type_name(obj)),
        )
    })?;
    match s.to_str() {
        Ok(t) => Ok(t.to_string()),
        Err(_) => Err(fail_detail(
            function,
            Status::InvalidSpec,
            format!(
                "invalid spec {}: it is not UTF-8 text (paths and names in specs must be UTF-8)",
                s.repr().map(|r| r.to_string()).unwrap_or_default()
            ),
        )),
    }
}

/// The name of `remove`: a str of UTF-8 text.
pub fn name_text(function: &str, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = obj.cast::<PyString>().map_err(|_| {
        type_error(
            function,
            format!("the name must be a str, not {}", type_name(obj)),
        )
    })?;
    s.to_str().map(str::to_string).map_err(|_| {
        fail_detail(
            function,
            Status::InvalidArgument,
            "the name is not UTF-8 text".to_string(),
        )
    })
}

/// Runs `k` on the bytes of `data`: `bytes`, any buffer, or a `str` as UTF-8.
#[inline(always)]
pub fn bytes_of<R>(
    function: &'static str,
    id: i32,
    data: &Bound<'_, PyAny>,
    k: impl FnOnce(&[u8]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return k(b.as_bytes());
    }
    bytes_of_other(function, id, data, k)
}

#[cold]
#[inline(never)]
fn bytes_of_other<R>(
    function: &'static str,
    id: i32,
    data: &Bound<'_, PyAny>,
    k: impl FnOnce(&[u8]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(s) = data.cast::<PyString>() {
        return match s.to_str() {
            Ok(t) => k(t.as_bytes()),
            Err(_) => Err(fail_text(
                function,
                Status::InvalidArgument,
                id,
                "the str cannot be encoded as UTF-8 (it has lone surrogates)",
            )),
        };
    }
    match Buffer::get(data, ffi::PyBUF_SIMPLE) {
        Some(view) => k(view.as_slice()),
        None => Err(type_error(
            function,
            format!(
                "area {id}: the data must be bytes, a buffer or str, not {}",
                type_name(data)
            ),
        )),
    }
}

/// A contiguous buffer borrowed from a Python object (released on drop, which
/// happens with the GIL held: every user is a function called from Python).
pub struct Buffer {
    view: Box<ffi::Py_buffer>,
}

impl Buffer {
    fn get(obj: &Bound<'_, PyAny>, flags: std::ffi::c_int) -> Option<Buffer> {
        let mut view = Box::new(ffi::Py_buffer::new());
        // SAFETY: `view` is a valid, owned Py_buffer; on success the exporter
        // fills it and we release it exactly once (Drop).
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) };
        if rc != 0 {
            // SAFETY: the failed call set an exception; we report our own.
            unsafe { ffi::PyErr_Clear() };
            return None;
        }
        Some(Buffer { view })
    }

    /// A writable, C-contiguous buffer, or a TypeError naming what was given.
    pub fn writable(function: &str, id: i32, obj: &Bound<'_, PyAny>) -> PyResult<Buffer> {
        Buffer::get(obj, ffi::PyBUF_WRITABLE).ok_or_else(|| {
            type_error(
                function,
                format!(
                    "area {id}: the buffer must be a writable, contiguous buffer (bytearray, memoryview, array, numpy array), not {}",
                    type_name(obj)
                ),
            )
        })
    }

    fn len(&self) -> usize {
        if self.view.buf.is_null() {
            return 0;
        }
        usize::try_from(self.view.len).unwrap_or(0)
    }

    /// The bytes, to read.
    pub fn as_slice(&self) -> &[u8] {
        match self.len() {
            0 => &[],
            // SAFETY: the exporter guarantees `len` contiguous bytes at `buf`
            // for as long as the view is held.
            len => unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, len) },
        }
    }

    /// The bytes, to write: only for a view requested with PyBUF_WRITABLE.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self.len() {
            0 => &mut [],
            // SAFETY: as above, and the exporter granted write access
            // (`writable` asks for PyBUF_WRITABLE); `&mut self` keeps it unique.
            len => unsafe { std::slice::from_raw_parts_mut(self.view.buf as *mut u8, len) },
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and is
        // released once, with the GIL held (see the type's docs).
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
    }
}

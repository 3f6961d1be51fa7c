//! The calling machinery of the `sharedarea_*` functions: plain CPython
//! `METH_FASTCALL` functions.
//!
//! PyO3's `#[pyfunction]` trampoline costs about 10 ns per call here (its GIL
//! bookkeeping and argument descriptor) -- as much as a whole `read64` -- so the
//! hot functions are registered directly: CPython hands over the argument
//! array, [`call`] checks the count, runs the body inside `catch_unwind` (no
//! panic unwinds into CPython) and turns an `Err` into the raised exception.
//! Keyword arguments are refused by CPython itself ("takes no keyword
//! arguments"), as for uWSGI's functions.

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::errors;

/// The positional arguments of one call.
pub struct Args<'py> {
    py: Python<'py>,
    ptrs: *const *mut ffi::PyObject,
    n: usize,
}

impl<'py> Args<'py> {
    /// Argument `i` (< the minimum count checked by [`call`]).
    #[inline(always)]
    pub fn get(&self, i: usize) -> Borrowed<'_, 'py, PyAny> {
        debug_assert!(i < self.n);
        // SAFETY: `call` checked that at least `i + 1` arguments were passed;
        // CPython keeps them alive for the duration of the call, which outlives
        // the borrow of `self`.
        unsafe { Borrowed::from_ptr(self.py, *self.ptrs.add(i)) }
    }

    /// Optional argument `i`.
    #[inline(always)]
    pub fn opt(&self, i: usize) -> Option<Borrowed<'_, 'py, PyAny>> {
        (i < self.n).then(|| self.get(i))
    }
}

/// The signature of a body: the Python token, the arguments; a new reference.
pub type Body = for<'py> fn(Python<'py>, &Args<'py>) -> PyResult<*mut ffi::PyObject>;

/// Runs a body for a METH_FASTCALL entry point.
///
/// # Safety
///
/// Called only by CPython as a METH_FASTCALL function: the GIL is held and
/// `args` points at `nargs` valid object pointers.
#[inline(always)]
pub unsafe fn call(
    name: &'static str,
    min: usize,
    max: usize,
    usage: &'static str,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    body: Body,
) -> *mut ffi::PyObject {
    // SAFETY: CPython holds the GIL while it runs a builtin function.
    let py = unsafe { Python::assume_attached() };
    let n = nargs as usize;
    if n < min || n > max {
        errors::arity(name, usage, min, max, n).restore(py);
        return std::ptr::null_mut();
    }
    let a = Args { py, ptrs: args, n };
    match catch_unwind(AssertUnwindSafe(|| body(py, &a))) {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            errors::panicked(name).restore(py);
            std::ptr::null_mut()
        }
    }
}

/// A Python int, as a new reference (NULL with MemoryError set on failure).
#[inline(always)]
pub fn int(v: i64) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: plain C-API constructor; GIL held by every caller.
    Ok(unsafe { ffi::PyLong_FromLongLong(v) })
}

/// A Python int from an unsigned value.
#[inline(always)]
pub fn uint(v: u64) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: as for `int`.
    Ok(unsafe { ffi::PyLong_FromUnsignedLongLong(v) })
}

/// None, as a new reference.
#[inline(always)]
pub fn none(py: Python<'_>) -> PyResult<*mut ffi::PyObject> {
    Ok(py.None().into_ptr())
}

/// One entry of the method table.
pub struct Def {
    pub name: &'static str,
    pub f: unsafe extern "C" fn(
        *mut ffi::PyObject,
        *mut *mut ffi::PyObject,
        ffi::Py_ssize_t,
    ) -> *mut ffi::PyObject,
    /// "name($module, args, /)\n--\n\nDocstring" (CPython's text-signature form).
    pub doc: &'static str,
}

/// Adds the functions of `defs` to module `m`. The table is leaked: CPython
/// keeps pointers into it for as long as the functions exist.
pub fn add_all(m: &Bound<'_, PyModule>, defs: &[Def]) -> PyResult<()> {
    let mut table = Vec::with_capacity(defs.len());
    for d in defs {
        let name: &'static CString =
            Box::leak(Box::new(CString::new(d.name).expect("no NUL in names")));
        let doc: &'static CString =
            Box::leak(Box::new(CString::new(d.doc).expect("no NUL in docs")));
        table.push(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFast: d.f,
            },
            ml_flags: ffi::METH_FASTCALL,
            ml_doc: doc.as_ptr(),
        });
    }
    let table: &'static mut [ffi::PyMethodDef] = Box::leak(table.into_boxed_slice());
    let module_name = m.name()?;
    for (def, d) in table.iter_mut().zip(defs) {
        // SAFETY: `def` lives for the rest of the process; self is the module
        // (a borrowed pointer PyCFunction_NewEx increfs), module its name.
        let f = unsafe {
            Bound::from_owned_ptr_or_err(
                m.py(),
                ffi::PyCFunction_NewEx(def, m.as_ptr(), module_name.as_ptr()),
            )?
        };
        m.add(d.name, f)?;
    }
    Ok(())
}

/// Declares `extern "C" fn $name` calling body `$body` with the argument count
/// checked against `$min..=$max`.
#[macro_export]
macro_rules! fastcall {
    ($name:ident, $min:expr, $max:expr, $usage:expr, $body:path) => {
        unsafe extern "C" fn $name(
            _module: *mut pyo3::ffi::PyObject,
            args: *mut *mut pyo3::ffi::PyObject,
            nargs: pyo3::ffi::Py_ssize_t,
        ) -> *mut pyo3::ffi::PyObject {
            const NAME: &str = stringify!($name);
            const MIN: usize = $min;
            const MAX: usize = $max;
            const USAGE: &str = $usage;
            let body: $crate::fast::Body = $body;
            // SAFETY: CPython calls this as a METH_FASTCALL function (see `call`).
            unsafe { $crate::fast::call(NAME, MIN, MAX, USAGE, args, nargs, body) }
        }
    };
}

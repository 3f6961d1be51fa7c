//! The core's failures as Python exceptions.
//!
//! The classes live in `sharedarea/_errors.py`, one per core status, keyed by
//! the status's name in `src/status.rs` (`OutOfRange` -> `OutOfRangeError`), so
//! the statuses, their numbers and their texts have one source: the core. The
//! message is the core's detail prefixed with the function the caller called,
//! exactly as the C ABI's `sharedarea_last_error()` reads.

use std::ffi::CString;
use std::fmt::Display;

use pyo3::exceptions::{PyRuntimeWarning, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use sharedarea::{Error as CoreError, Status};

/// `sharedarea._errors._new(kind, status, function, message)`.
static NEW_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `sharedarea._errors.LockRecoveredWarning`.
static RECOVERED_WARNING: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Finds the exception factory; called once at module initialisation.
pub fn load(py: Python<'_>) -> PyResult<()> {
    let m = py.import("sharedarea._errors")?;
    let _ = NEW_ERROR.set(py, m.getattr("_new")?.unbind());
    let _ = RECOVERED_WARNING.set(
        py,
        m.getattr("LockRecoveredWarning")?
            .cast_into::<PyType>()?
            .unbind(),
    );
    Ok(())
}

/// Warns that `function` took the lock after clearing a holder that died.
#[cold]
#[inline(never)]
pub fn warn_recovered(py: Python<'_>, function: &str, id: i32) -> PyResult<()> {
    let text = format!("{function}: area {id}: took the lock after clearing a holder that died");
    let text = CString::new(text).unwrap_or_default();
    match RECOVERED_WARNING.get(py) {
        Some(cls) => PyErr::warn(py, cls.bind(py), &text, 1),
        None => PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &text, 1),
    }
}

fn make(kind: &str, status: Status, function: &str, message: String) -> PyErr {
    Python::attach(|py| match NEW_ERROR.get(py) {
        Some(new) => match new.call1(py, (kind, status.code(), function, message)) {
            Ok(exc) => PyErr::from_value(exc.into_bound(py)),
            Err(e) => e,
        },
        None => PyValueError::new_err(message),
    })
}

/// A core failure of `function`: its status's class, "function: detail".
#[cold]
#[inline(never)]
pub fn fail(function: &str, e: CoreError) -> PyErr {
    let kind = format!("{:?}", e.status);
    make(
        &kind,
        e.status,
        function,
        format!("{function}: {}", e.detail),
    )
}

/// A failure worded here: "function: area ID: cause".
#[cold]
#[inline(never)]
pub fn fail_text(function: &str, status: Status, id: i32, cause: impl Display) -> PyErr {
    fail(function, CoreError::area(status, id, cause))
}

/// A failure with a detail already composed (it names the area itself).
#[cold]
#[inline(never)]
pub fn fail_detail(function: &str, status: Status, detail: String) -> PyErr {
    fail(function, CoreError::new(status, detail))
}

/// An integer argument that does not fit: `IntegerOverflowError`, which is an
/// `InvalidArgumentError` and an `OverflowError` (uWSGI raises OverflowError).
#[cold]
#[inline(never)]
pub fn overflow(function: &str, id: i32, cause: impl Display) -> PyErr {
    let e = CoreError::area(Status::InvalidArgument, id, cause);
    make(
        "IntegerOverflow",
        e.status,
        function,
        format!("{function}: {}", e.detail),
    )
}

/// An argument of the wrong type: a plain TypeError, as uWSGI raises.
#[cold]
#[inline(never)]
pub fn type_error(function: &str, what: impl Display) -> PyErr {
    PyTypeError::new_err(format!("{function}: {what}"))
}

/// A wrong number of arguments: TypeError with the usage.
#[cold]
#[inline(never)]
pub fn arity(function: &str, usage: &str, min: usize, max: usize, got: usize) -> PyErr {
    let wanted = if min == max {
        format!("{min}")
    } else {
        format!("{min} to {max}")
    };
    PyTypeError::new_err(format!(
        "{function}() takes {wanted} positional arguments ({usage}) but {got} were given"
    ))
}

/// A panic caught at the boundary: InternalError (status Panic).
#[cold]
#[inline(never)]
pub fn panicked(function: &str) -> PyErr {
    fail(
        function,
        CoreError::new(
            Status::Panic,
            "internal error (a panic was caught); please report it",
        ),
    )
}

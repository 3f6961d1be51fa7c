"""The exceptions of :mod:`sharedarea`.

Every failure of the core raises a subclass of :class:`Error`, which is a
:class:`ValueError` -- the class real uWSGI raises for every sharedarea failure
("error calling uwsgi_sharedarea_read()") -- so ``except ValueError`` code
written for uWSGI keeps working. Each class stands for one status of the core
(``src/status.rs``) and some are also the standard exception a Python
programmer would catch (``IndexError`` for a range, ``TimeoutError`` for a
timed-out wait, ``OSError`` for the operating system, ``OverflowError`` for an
integer that does not fit). Arguments of the wrong type raise a plain
``TypeError``, as in uWSGI.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "NoSuchAreaError",
    "OutOfRangeError",
    "InvalidSpecError",
    "AreaOSError",
    "TimedOutError",
    "SignalInterruptedError",
    "LockMisuseError",
    "NullPointerError",
    "InvalidArgumentError",
    "IntegerOverflowError",
    "InternalError",
    "LimitError",
    "PeerClosedError",
    "ConnectionFailedError",
    "NotAnAreaError",
    "LockRecoveredWarning",
]


class Error(ValueError):
    """A sharedarea failure: the message names the function, the area and the cause.

    ``status`` is the core's status code (a negative int, the same number the C
    ABI returns), ``status_name`` its name in the core (``"OutOfRange"``) and
    ``function`` the function that failed (``"sharedarea_read"``).
    """

    status_name: str = "Unknown"

    def __init__(self, message: str, status: int = 0, function: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.function = function


class NoSuchAreaError(Error, LookupError):
    """The area id does not exist in this process (negative and huge ids never do)."""

    status_name = "NoSuchArea"


class OutOfRangeError(Error, IndexError):
    """A position or length outside the area (also a negative one, or ``pos + len`` past 2**64)."""

    status_name = "OutOfRange"


class InvalidSpecError(Error):
    """``init`` or ``UWSGI_SHAREDAREA`` got a spec that is not valid; nothing was created."""

    status_name = "InvalidSpec"


class AreaOSError(Error, OSError):
    """The operating system refused (mmap, shm_open, ...); the message has its reason."""

    status_name = "Io"


class TimedOutError(Error, TimeoutError):
    """``sharedarea_wait`` saw no update within its timeout."""

    status_name = "TimedOut"


class SignalInterruptedError(Error, InterruptedError):
    """A blocking call was interrupted by a signal. Not raised from Python: there the
    signal's handler runs and either raises (KeyboardInterrupt) or the call resumes."""

    status_name = "Interrupted"


class LockMisuseError(Error, RuntimeError):
    """A lock call that cannot be honoured: unlock without a lock, wlock under rlock,
    a write under this thread's own read lock, a wait while holding the lock."""

    status_name = "LockMisuse"


class NullPointerError(Error):
    """Not raised from Python (the C ABI's NULL-pointer status)."""

    status_name = "NullPointer"


class InvalidArgumentError(Error):
    """An argument with a value the function cannot take (a negative timeout, ...)."""

    status_name = "InvalidArgument"


class IntegerOverflowError(InvalidArgumentError, OverflowError):
    """An integer value outside -2**63 .. 2**64-1 (uWSGI raises ``OverflowError`` too)."""

    status_name = "InvalidArgument"


class InternalError(Error):
    """A bug in sharedarea (a panic was caught): please report it."""

    status_name = "Panic"


class LimitError(Error):
    """Too many areas in this process, or too many processes on one area."""

    status_name = "Limit"


class PeerClosedError(Error):
    """The peer closed the connection (WebSocket sends; not raised by this module)."""

    status_name = "PeerClosed"


class ConnectionFailedError(Error):
    """A WebSocket connection failed for good (not raised by this module)."""

    status_name = "ConnectionFailed"


class NotAnAreaError(Error):
    """A ``name=`` object that is not a usable area (another program's, another version, owner or namespace)."""

    status_name = "NotAnArea"


class LockRecoveredWarning(RuntimeWarning):
    """Warned by ``sharedarea_rlock``/``wlock`` when they took the lock after clearing
    a holder that died (the lock is held: the call succeeded)."""


_BY_KIND: dict[str, type[Error]] = {
    cls.status_name: cls
    for cls in (
        NoSuchAreaError,
        OutOfRangeError,
        InvalidSpecError,
        AreaOSError,
        TimedOutError,
        SignalInterruptedError,
        LockMisuseError,
        NullPointerError,
        InvalidArgumentError,
        InternalError,
        LimitError,
        PeerClosedError,
        ConnectionFailedError,
        NotAnAreaError,
    )
}
_BY_KIND["IntegerOverflow"] = IntegerOverflowError

for _cls in (Error, IntegerOverflowError, LockRecoveredWarning, *_BY_KIND.values()):
    _cls.__module__ = "sharedarea"  # shown as sharedarea.OutOfRangeError in tracebacks


def _new(kind: str, status: int, function: str, message: str) -> Error:
    """Called by the extension: the exception for a failure of status ``kind``."""
    cls = _BY_KIND.get(kind, Error)
    return cls(message, status, function)

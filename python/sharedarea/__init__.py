"""uWSGI's sharedarea for Python apps under any server.

Pages of memory shared by processes on one host, with integer counters, a
reader/writer lock that survives dead holders and wait-for-update -- the
``uwsgi.sharedarea_*`` functions of uWSGI's Python plugin, with the same names,
argument order and return types, for WSGI/ASGI apps under gunicorn, uvicorn,
``multiprocessing`` or anything else, on the same Rust core as SharedArea's C
ABI and Perl module (so a C producer, Perl workers and Python workers can share
one ``name=`` area)::

    import sharedarea
    sharedarea.init("name=counters,size=4096")       # or UWSGI_SHAREDAREA=... in the environment
    n = sharedarea.sharedarea_inc64(0, 0)             # atomic across every process

    import sharedarea.uwsgi                            # then, unchanged uWSGI code:
    import uwsgi
    uwsgi.sharedarea_inc64(0, 0)

Areas come from :func:`init` (``--sharedarea`` specs) or, when the package is
imported and this process has no area yet, from ``UWSGI_SHAREDAREA`` -- the
variable real uWSGI reads for ``--sharedarea`` -- where ``;`` separates several
specs. Inside a real uWSGI worker (its ``uwsgi`` module already has the
functions) ``UWSGI_SHAREDAREA`` is left to uWSGI and ``sharedarea.uwsgi``
changes nothing.

Failures raise :class:`Error` subclasses (all ``ValueError``, as uWSGI's are),
whose message names the function, the area and the cause.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
import types
from collections.abc import Iterator
from typing import SupportsIndex

from . import _errors
from ._errors import *  # noqa: F403  (the exception classes)
from ._errors import Error
from ._sharedarea import *  # noqa: F403  (the sharedarea_* functions, init, info, ...)
from . import _sharedarea
from .aio import wait_async

#: The package's version: the same as the core's (and the Perl modules').
__version__: str = importlib.metadata.version("sharedarea")

#: The uWSGI names this package provides (what ``install_uwsgi_names`` installs): the
#: Python ones of uwsgi-functions.tsv (python/tests/test_names.py checks them against it).
UWSGI_NAMES: tuple[str, ...] = tuple(sorted(n for n in dir(_sharedarea) if n.startswith("sharedarea_")))

__all__ = [
    *UWSGI_NAMES,
    "init",
    "count",
    "info",
    "set_used",
    "honour_used",
    "updates",
    "remove",
    "notify_fd",
    "wait_async",
    "held",
    "unlock_all",
    "rlock_guard",
    "wlock_guard",
    "abi_version",
    "install_uwsgi_names",
    "in_uwsgi_host",
    "UWSGI_NAMES",
    *_errors.__all__,
]


@contextlib.contextmanager
def rlock_guard(id: SupportsIndex, timeout: float | None = None) -> Iterator[None]:
    """``with rlock_guard(id[, timeout]):`` holds the area's read lock for the block
    (``sharedarea_rlock`` on entry, ``sharedarea_unlock`` on exit, also when the block raises)."""
    sharedarea_rlock(id, timeout)
    try:
        yield
    finally:
        sharedarea_unlock(id)


@contextlib.contextmanager
def wlock_guard(id: SupportsIndex, timeout: float | None = None) -> Iterator[None]:
    """``with wlock_guard(id[, timeout]):`` holds the area's write lock for the block, so
    several operations are one (``sharedarea_wlock`` on entry, ``sharedarea_unlock`` on exit)."""
    sharedarea_wlock(id, timeout)
    try:
        yield
    finally:
        sharedarea_unlock(id)


def in_uwsgi_host() -> bool:
    """True inside a real uWSGI worker, whose ``uwsgi`` module has uWSGI's own sharedarea functions."""
    mod = sys.modules.get("uwsgi")
    return mod is not None and not getattr(mod, "__sharedarea__", False) and hasattr(mod, "sharedarea_read")


def install_uwsgi_names() -> types.ModuleType:
    """Make ``import uwsgi; uwsgi.sharedarea_inc64(0, 0)`` work outside uWSGI.

    Puts a module named ``uwsgi`` into ``sys.modules`` (or adds to the one there)
    holding this package's ``sharedarea_*`` functions, each only where the
    module lacks it. Inside a real uWSGI worker it changes nothing: uWSGI's own
    functions keep working on uWSGI's ``--sharedarea`` areas (a name that worked
    on another set of areas than its neighbours would be a trap). Returns the
    ``uwsgi`` module. ``import sharedarea.uwsgi`` does the same.
    """
    mod = sys.modules.get("uwsgi")
    if mod is not None and in_uwsgi_host():
        return mod
    if mod is None:
        mod = types.ModuleType("uwsgi", "uWSGI's sharedarea functions, provided by the sharedarea package.")
        mod.__sharedarea__ = True  # type: ignore[attr-defined]
        sys.modules["uwsgi"] = mod
    for name in UWSGI_NAMES:
        if not hasattr(mod, name):
            setattr(mod, name, getattr(_sharedarea, name))
    return mod


def _init_from_env() -> None:
    """The areas uWSGI would create for ``--sharedarea``: only when none exists yet."""
    env = os.environ.get("UWSGI_SHAREDAREA")
    if in_uwsgi_host() or env is None or not env.strip() or count() > 0:
        return
    for spec in env.split(";"):
        spec = spec.strip()
        if not spec:
            continue
        try:
            init(spec)
        except Error as e:
            raise type(e)(f"sharedarea: UWSGI_SHAREDAREA={env!r}: {e}", e.status, e.function) from e


_init_from_env()

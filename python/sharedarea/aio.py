"""Waiting for an area's updates from asyncio without a thread.

``await sharedarea.wait_async(id[, timeout])`` is ``sharedarea_wait`` for a
coroutine (an ASGI app under uvicorn, say): it returns once the area is
updated after the call began, and the event loop keeps running meanwhile. It
watches the area's notification descriptor (:func:`sharedarea.notify_fd`, an
eventfd the core signals after each update) with ``loop.add_reader``; one
watcher per area and event loop serves every waiting coroutine.
"""

from __future__ import annotations

import asyncio
import os
from typing import SupportsIndex

from ._errors import Error, TimedOutError
from ._sharedarea import _statuses, notify_fd, updates

__all__ = ["wait_async"]

_WATCHES: dict[tuple[asyncio.AbstractEventLoop, int], _Watch] = {}


class _Watch:
    """The waiters of one area on one event loop, woken by its notification fd."""

    def __init__(self, loop: asyncio.AbstractEventLoop, area: int) -> None:
        self.loop = loop
        self.area = area
        self.fd = notify_fd(area)
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []
        loop.add_reader(self.fd, self._ready)

    def _ready(self) -> None:
        try:
            os.read(self.fd, 8)  # re-arms the eventfd
        except BlockingIOError:
            pass
        self.wake()

    def wake(self) -> None:
        """Resolves every waiter whose starting update count has changed."""
        now = updates(self.area)
        keep = []
        for seen, fut in self.waiters:
            if fut.done():
                continue
            if now != seen:
                fut.set_result(None)
            else:
                keep.append((seen, fut))
        self.waiters = keep
        self.close_if_idle()

    def forget(self, fut: asyncio.Future[None]) -> None:
        self.waiters = [(s, f) for s, f in self.waiters if f is not fut]
        self.close_if_idle()

    def close_if_idle(self) -> None:
        if not self.waiters and _WATCHES.get((self.loop, self.area)) is self:
            self.loop.remove_reader(self.fd)
            del _WATCHES[(self.loop, self.area)]


def _named(e: Error, function: str) -> Error:
    """The same failure, naming the function the caller called."""
    text = str(e)
    head, sep, rest = text.partition(": ")
    return type(e)(f"{function}: {rest}" if sep else text, e.status, function)


async def wait_async(id: SupportsIndex, timeout: float | None = None) -> None:
    """Returns once area ``id`` is updated after the call began (every write,
    writeN, incN, decN and update counts), without blocking the event loop.

    ``timeout`` in seconds (None: no limit) raises :class:`sharedarea.TimedOutError`
    (a ``ValueError`` and a ``TimeoutError``) when it expires. Cancelling the
    awaiting task cancels the wait.
    """
    try:
        area = int(id.__index__())
        seen = updates(area)
        loop = asyncio.get_running_loop()
        watch = _WATCHES.get((loop, area))
        if watch is None:
            watch = _WATCHES[(loop, area)] = _Watch(loop, area)
    except Error as e:
        raise _named(e, "wait_async") from None
    fut: asyncio.Future[None] = loop.create_future()
    watch.waiters.append((seen, fut))
    watch.wake()  # an update between reading `seen` and watching: no need to wait
    try:
        await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        code = dict((n, c) for n, c, _ in _statuses())["TimedOut"]
        raise TimedOutError(f"wait_async: area {area}: timed out after {timeout} s", code, "wait_async") from None
    finally:
        watch.forget(fut)

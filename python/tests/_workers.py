"""Process targets for the multiprocessing tests (importable by spawned children)."""

from __future__ import annotations

import sharedarea


def count_up(spec: str, times: int) -> None:
    """Attaches (or, after fork, reuses) the area and increments its counter."""
    area = sharedarea.init(spec)
    for _ in range(times):
        sharedarea.sharedarea_inc64(area, 0)


def count_inherited(area: int, times: int) -> None:
    """Increments an area inherited through fork (no init)."""
    for _ in range(times):
        sharedarea.sharedarea_inc64(area, 0)

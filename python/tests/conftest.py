"""Shared fixtures. Areas live until the process exits, so the tests of one
pytest process share them: each test takes fresh areas from ``new_area``
(ids differ), and tests that need a pristine process run a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sharedarea

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def new_area() -> Callable[[str], int]:
    """Creates an area from a spec (default: one page) and returns its id."""

    def make(spec: str = "1") -> int:
        return sharedarea.init(spec)

    return make


@pytest.fixture
def shm_name() -> Iterator[str]:
    """A fresh name= name, removed from /dev/shm afterwards."""
    name = f"sa-pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        sharedarea.remove(name)
    except sharedarea.NoSuchAreaError:
        pass


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter (the same one as the tests)."""
    full_env = dict(os.environ)
    full_env.pop("UWSGI_SHAREDAREA", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=timeout
    )

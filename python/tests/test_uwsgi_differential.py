"""The same calls under real uWSGI's Python plugin and under sharedarea give
the same answers, except where SPEC §6 and the README's "Migrating from uWSGI"
say we differ (listed in EXPECTED_DIFFERENCES). Skipped when uWSGI's python3
plugin is not installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import _uwsgi_probe

TESTS = Path(__file__).resolve().parent

# Where we answer differently on purpose (README "Migrating from uWSGI"):
# (name, args) -> (uWSGI's answer, ours).
EXPECTED: dict[tuple[str, tuple[Any, ...]], tuple[list[Any], list[Any]]] = {
    # An integer value keeps its low bits for every width (-2**63 .. 2**64-1), as in Perl.
    ("sharedarea_write8", (0, 100, -1)): (["err", "OverflowError"], ["ok", None]),
    ("sharedarea_write64", (0, 104, 2**63)): (["err", "OverflowError"], ["ok", None]),
    ("sharedarea_inc64", (0, 112, 2**63)): (["err", "OverflowError"], ["ok", -(2**63)]),
    # A position of 2**64 or more is out of range (OutOfRangeError, a ValueError).
    ("sharedarea_read", (0, 2**64, 1)): (["err", "OverflowError"], ["err", "ValueError"]),
    # An id past 2**31 does not exist (NoSuchAreaError, a ValueError).
    ("sharedarea_read64", (2**32, 0)): (["err", "OverflowError"], ["err", "ValueError"]),
}
INC_DEC = {"sharedarea_inc64", "sharedarea_dec64", "sharedarea_inc32", "sharedarea_dec32", "sharedarea_inclong"}


def uwsgi_python_plugin() -> bool:
    if shutil.which("uwsgi") is None:
        return False
    r = subprocess.run(["uwsgi", "--plugin", "python3", "--help"], capture_output=True, text=True, timeout=30)
    return r.returncode == 0 and "wsgi-file" in r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def under_uwsgi() -> list[Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "UWSGI"))}
    proc = subprocess.Popen(
        ["uwsgi", "--plugin", "python3", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file",
         str(TESTS / "_uwsgi_probe.py"), "--sharedarea", "4", "--master", "--die-on-term", "--processes", "1",
         "--disable-logging"],
        env=env, cwd=TESTS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                    return json.loads(r.read())  # type: ignore[no-any-return]
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"uWSGI did not answer: {proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ''}")
                time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


def under_sharedarea() -> list[Any]:
    env = dict(os.environ, UWSGI_SHAREDAREA="4")
    r = subprocess.run([sys.executable, str(TESTS / "_uwsgi_probe.py")], env=env, capture_output=True, text=True,
                       timeout=60, cwd=TESTS)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(not uwsgi_python_plugin(), reason="uWSGI's python3 plugin is not installed (uwsgi-plugin-python3)")
def test_same_answers_as_real_uwsgi_except_the_documented_differences() -> None:
    theirs = under_uwsgi()
    ours = under_sharedarea()
    assert len(theirs) == len(ours) == len(_uwsgi_probe.CALLS) + 2
    mismatches = []
    for i, ((name, args), t, o) in enumerate(zip(_uwsgi_probe.CALLS, theirs, ours)):
        if name in INC_DEC and t == ["ok", None] and o[0] == "ok" and isinstance(o[1], int):
            continue  # uWSGI's inc/dec return None; ours return the new value (the area bytes are compared below)
        if (name, args) in EXPECTED:
            assert (t, o) == EXPECTED[name, args], f"#{i} {name}{args!r}"
            continue
        if t != o:
            mismatches.append(f"#{i} {name}{args!r}: uWSGI {t}, sharedarea {o}")
    assert not mismatches, "\n".join(mismatches)
    assert theirs[-2:] == ours[-2:]  # memoryview and the area's bytes

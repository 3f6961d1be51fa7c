"""Real processes sharing areas: multiprocessing (fork and spawn), gunicorn
with 4 workers, and a name= area shared with Perl and with a C program."""

from __future__ import annotations

import asyncio
import importlib.util
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import sharedarea

from conftest import ROOT
import _workers

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_with_a_named_area_counts_exactly(method: str, shm_name: str) -> None:
    spec = f"name={shm_name},size=4096"
    ctx = multiprocessing.get_context(method)
    procs = [ctx.Process(target=_workers.count_up, args=(spec, 5000)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    area = sharedarea.init(f"name={shm_name}")
    assert sharedarea.sharedarea_read64(area, 0) == 20000
    assert sharedarea.info(area)["backing"] == "named"


def test_an_anonymous_area_is_shared_with_forked_children(new_area: Any) -> None:
    a = new_area()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_workers.count_inherited, args=(a, 5000)) for _ in range(3)]
    for p in procs:
        p.start()
    _workers.count_inherited(a, 5000)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sharedarea.sharedarea_read64(a, 0) == 20000


# ---------------------------------------------------------------- gunicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(port: int) -> bytes:
    for attempt in range(50):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.05 * (attempt + 1))
    else:
        raise RuntimeError("could not connect")
    writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def many(port: int, n: int) -> list[bytes]:
    return await asyncio.gather(*(get(port) for _ in range(n)))


def count_in(reply: bytes) -> int:
    """The counter in a reply of the app: body "request N"."""
    body = reply.rsplit(b"\r\n\r\n", 1)[1]
    assert body.startswith(b"request "), reply
    return int(body.split()[1])


def wait_until_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not start")


@pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None, reason="gunicorn is not installed")
@pytest.mark.parametrize("preload", [False, True], ids=["name=", "anonymous+preload"])
def test_gunicorn_4_workers_2000_concurrent_requests_count_exactly(preload: bool, shm_name: str) -> None:
    port = free_port()
    spec = "1" if preload else f"name={shm_name},size=4096"
    env = dict(os.environ, UWSGI_SHAREDAREA=spec, PYTHONPATH=str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}", "--backlog", "4096",
           "--log-level", "warning", "--timeout", "60"]
    if preload:
        cmd.append("--preload")
    cmd.append("_gunicorn_app:app")
    proc = subprocess.Popen(cmd, env=env, cwd=TESTS, start_new_session=True)
    try:
        wait_until_serving(port, proc)
        warm = asyncio.run(get(port))  # one request before the burst, to learn where we start
        start = count_in(warm)
        replies = asyncio.run(asyncio.wait_for(many(port, 2000), 240))
        values = sorted(count_in(r) for r in replies)
        assert all(r.startswith(b"HTTP/1.") and b" 200 " in r.split(b"\r\n", 1)[0] for r in replies)
        assert values == list(range(start + 1, start + 2001)), "every request got its own count"
        final = asyncio.run(get(port))
        assert count_in(final) == start + 2001
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


# ---------------------------------------------------------------- Perl and C


def perl_blib() -> Path:
    blib = ROOT / "blib"
    if not (blib / "arch").is_dir() or shutil.which("perl") is None:
        pytest.skip("the Perl module is not built (perl Makefile.PL && make)")
    return blib


def test_a_named_area_written_by_python_is_read_by_perl_and_back(shm_name: str) -> None:
    blib = perl_blib()
    a = sharedarea.init(f"name={shm_name},size=4096")
    sharedarea.sharedarea_write64(a, 0, 1234567890123)
    sharedarea.sharedarea_write(a, 8, "caf\u00e9")
    perl = (
        'my $id = SharedArea::init("name=' + shm_name + '");'
        'print uwsgi::sharedarea_read64($id, 0), " ", uwsgi::sharedarea_read($id, 8, 5), "\\n";'
        "uwsgi::sharedarea_inc64($id, 0, 10); uwsgi::sharedarea_write($id, 16, 'from perl');"
    )
    r = subprocess.run(["perl", f"-Mblib={blib.parent}", "-MSharedArea", "-e", perl],
                       capture_output=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"1234567890123 caf\xc3\xa9\n"
    assert sharedarea.sharedarea_read64(a, 0) == 1234567890133
    assert sharedarea.sharedarea_read(a, 16, 9) == b"from perl"


C_READER = r"""
#include <stdio.h>
#include <inttypes.h>
#include "sharedarea.h"
int main(int argc, char **argv) {
    char spec[256];
    snprintf(spec, sizeof spec, "name=%s", argv[1]);
    int id = sharedarea_init(spec);
    if (id < 0) { fprintf(stderr, "%s\n", sharedarea_last_error()); return 1; }
    int64_t v = 0; char buf[6] = {0};
    if (sharedarea_read64(id, 0, &v) < 0 || sharedarea_read(id, 8, buf, 5) < 0) {
        fprintf(stderr, "%s\n", sharedarea_last_error()); return 1;
    }
    printf("%" PRId64 " %s\n", v, buf);
    return sharedarea_inc64(id, 0, 1, NULL) < 0;
}
"""


def test_a_named_area_written_by_python_is_read_by_a_c_program(shm_name: str, tmp_path: Path) -> None:
    lib = ROOT / "target" / "release" / "libsharedarea.so"
    cc = shutil.which("cc")
    if not lib.exists() or cc is None:
        pytest.skip("needs cc and target/release/libsharedarea.so (cargo build --release)")
    src = tmp_path / "reader.c"
    src.write_text(C_READER)
    exe = tmp_path / "reader"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", f"-I{ROOT / 'include'}", str(src), "-o", str(exe),
                    f"-L{lib.parent}", "-lsharedarea", f"-Wl,-rpath,{lib.parent}"], check=True, timeout=120)
    a = sharedarea.init(f"name={shm_name},size=4096")
    sharedarea.sharedarea_write64(a, 0, -42)
    sharedarea.sharedarea_write(a, 8, b"hello")
    r = subprocess.run([str(exe), shm_name], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "-42 hello\n"
    assert sharedarea.sharedarea_read64(a, 0) == -41


def test_a_lock_left_by_a_killed_process_is_recovered_with_a_warning(new_area: Any) -> None:
    a = new_area()
    ctx = multiprocessing.get_context("fork")

    def die_holding() -> None:
        sharedarea.sharedarea_wlock(a)
        sharedarea.sharedarea_write64(a, 0, 5)
        os.kill(os.getpid(), 9)

    p = ctx.Process(target=die_holding)
    p.start()
    p.join(30)
    assert p.exitcode == -9
    t0 = time.monotonic()
    with pytest.warns(sharedarea.LockRecoveredWarning, match=rf"sharedarea_wlock: area {a}: took the lock after clearing a holder that died"):
        sharedarea.sharedarea_wlock(a)
    try:
        assert time.monotonic() - t0 < 5
        assert sharedarea.sharedarea_inc64(a, 0) == 6
    finally:
        sharedarea.sharedarea_unlock(a)
    assert sharedarea.info(a)["recoveries"] >= 1

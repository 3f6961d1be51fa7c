#!/usr/bin/env python3
"""Side-by-side speed of sharedarea from Python, in one run (prints ratios; asserts nothing
about time).

    python bench/python-bench.py [--quick]       # after: pip install ./python

Rows:
* per-call cost of read64, inc64, read(..., 8), write(..., 8 bytes) and friends against a
  trivial call into a C extension (operator.index(1)) and an empty PyO3 #[pyfunction];
* 2 processes x N inc64 on one counter (exact total checked), against
  multiprocessing.shared_memory + multiprocessing.Lock and mmap + fcntl.flock doing the same;
* a 64 KiB read: memoryview slice (zero copy), readinto a reused bytearray, bytes copy;
* real uWSGI's uwsgi.sharedarea_* in a uWSGI worker, same loops, when uWSGI's python3 plugin
  is installed (the uWSGI rows come from another interpreter: compare each with the
  operator.index row measured in that same worker).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import mmap
import multiprocessing
import operator
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

import sharedarea
from sharedarea import _sharedarea

# ---------------------------------------------------------------- per-call costs

# The loops are generated as source text so every row runs the same bytecode shape:
# a pre-bound function called with constant arguments in a `for` loop.
LOOP = """
def run(n, f, {names}):
    t0 = perf_counter_ns()
    for _ in range(n):
        {body}
    return perf_counter_ns() - t0
"""


def make_loop(body: str, names: str = "a") -> Callable[..., int]:
    ns: dict[str, Any] = {"perf_counter_ns": time.perf_counter_ns}
    exec(LOOP.format(body=body, names=names), ns)  # noqa: S102 - our own fixed text
    return ns["run"]  # type: ignore[no-any-return]


class Row:
    """One timed loop: `body` calling f, with the named arguments bound."""

    def __init__(self, name: str, f: Any, body: str, **args: Any) -> None:
        self.name = name
        self.run = make_loop(body, ", ".join(args) or "a")
        self.f = f
        self.args = list(args.values()) or [None]
        self.times: list[float] = []

    def once(self, n: int) -> None:
        self.times.append(self.run(n, self.f, *self.args) / n)

    def best(self) -> float:
        return min(self.times)


def measure(rows: list[Row], n: int, repeats: int) -> list[tuple[str, float]]:
    """Runs every row `repeats` times, round-robin (so a burst of load elsewhere on the
    machine hits every row alike), and keeps each row's fastest run (timeit's rule:
    the minimum is the run least disturbed)."""
    for _ in range(repeats):
        for row in rows:
            row.once(n)
    return [(row.name, row.best()) for row in rows]


def per_call_rows(n: int, repeats: int) -> list[tuple[str, float]]:
    area = sharedarea.init("pages=32")  # 128 KiB
    s8 = b"x" * 8
    buf8 = bytearray(8)
    rows = [
        Row("empty loop", None, "pass"),
        Row("operator.index(1)  [trivial C call]", operator.index, "f(1)"),
        Row("empty PyO3 #[pyfunction] (2 args)", _sharedarea._noop_pyo3, "f(0, 0)"),
        Row("empty METH_FASTCALL of this module", _sharedarea._noop, "f(0, 0)"),
        Row("sharedarea_read64(0, 128)", sharedarea.sharedarea_read64, "f(a, 128)", a=area),
        Row("sharedarea_inc64(0, 128)", sharedarea.sharedarea_inc64, "f(a, 128)", a=area),
        Row("sharedarea_write64(0, 128, 12345)", sharedarea.sharedarea_write64, "f(a, 128, 12345)", a=area),
        Row("sharedarea_read(0, 128, 8)", sharedarea.sharedarea_read, "f(a, 128, 8)", a=area),
        Row("sharedarea_write(0, 128, <8 bytes>)", sharedarea.sharedarea_write, "f(a, 128, s)", a=area, s=s8),
        Row("sharedarea_readinto(0, 128, <bytearray(8)>)", sharedarea.sharedarea_readinto, "f(a, 128, b)", a=area, b=buf8),
    ]
    return measure(rows, n, repeats)


# ---------------------------------------------------------------- 64 KiB


def read_64k_rows(n: int, repeats: int) -> list[tuple[str, float]]:
    area = sharedarea.init("size=64K")
    mv = sharedarea.sharedarea_memoryview(area)
    buf = bytearray(65536)
    rows = [
        Row("memoryview slice mv[0:65536] (zero copy)", mv, "f[0:65536]"),
        Row("sharedarea_readinto(0, 0, <bytearray(64 KiB)>)", sharedarea.sharedarea_readinto, "f(a, 0, b)", a=area, b=buf),
        Row("sharedarea_read(0, 0, 65536) (new bytes)", sharedarea.sharedarea_read, "f(a, 0, 65536)", a=area),
        Row("bytes(mv) (a plain 64 KiB copy)", bytes, "f(m)", m=mv),
    ]
    return measure(rows, n, repeats)


# ---------------------------------------------------------------- 2 processes, one counter

Op = Callable[[], None]


def contended(make_op: Callable[[], Op], read_total: Callable[[], int], n: int) -> tuple[float, int]:
    """Two forked processes each run make_op()() n times, starting together.
    Returns (wall seconds for both, final total)."""
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    ready = ctx.Semaphore(0)

    def child() -> None:
        op = make_op()
        ready.release()
        start.wait()
        for _ in range(n):
            op()

    procs = [ctx.Process(target=child) for _ in range(2)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError("a child failed")
    return time.perf_counter() - t0, read_total()


def contended_rows(n: int) -> list[tuple[str, float, bool]]:
    rows = []
    # sharedarea: an anonymous area inherited by fork.
    area = sharedarea.init("1")
    inc = sharedarea.sharedarea_inc64

    def sa_op() -> Op:
        def op() -> None:
            inc(area, 0)

        return op

    secs, total = contended(sa_op, lambda: sharedarea.sharedarea_read64(area, 0), n)
    rows.append(("sharedarea_inc64", secs * 1e9 / (2 * n), total == 2 * n))

    # multiprocessing.shared_memory + multiprocessing.Lock
    shm = shared_memory.SharedMemory(create=True, size=4096)
    lock = multiprocessing.get_context("fork").Lock()
    try:
        shm_buf = shm.buf
        assert shm_buf is not None
        struct.pack_into("q", shm_buf, 0, 0)

        def mp_op() -> Op:
            buf = shm_buf
            unpack, pack = struct.unpack_from, struct.pack_into

            def op() -> None:
                with lock:
                    pack("q", buf, 0, unpack("q", buf, 0)[0] + 1)

            return op

        secs, total = contended(mp_op, lambda: int(struct.unpack_from("q", shm_buf, 0)[0]), n)
        rows.append(("multiprocessing.shared_memory + multiprocessing.Lock", secs * 1e9 / (2 * n), total == 2 * n))
    finally:
        shm.close()
        shm.unlink()

    # mmap of a file + fcntl.flock (each process opens the file itself: flock is per open file)
    with tempfile.NamedTemporaryFile(prefix="sa-bench-") as tmp:
        tmp.write(b"\0" * 4096)
        tmp.flush()
        path = tmp.name

        def flock_op() -> Op:
            f = open(path, "r+b")  # noqa: SIM115 - kept open for the child's life
            mm = mmap.mmap(f.fileno(), 4096)
            fd = f.fileno()
            unpack, pack = struct.unpack_from, struct.pack_into

            def op(f: Any = f) -> None:  # f: keeps the file (and fd) open
                fcntl.flock(fd, fcntl.LOCK_EX)
                pack("q", mm, 0, unpack("q", mm, 0)[0] + 1)
                fcntl.flock(fd, fcntl.LOCK_UN)

            return op

        def flock_total() -> int:
            with open(path, "rb") as f:
                return int(struct.unpack("q", f.read(8))[0])

        secs, total = contended(flock_op, flock_total, n)
        rows.append(("mmap + fcntl.flock", secs * 1e9 / (2 * n), total == 2 * n))
    return rows


# ---------------------------------------------------------------- real uWSGI

UWSGI_APP = """
import json, operator, threading, time, uwsgi
LOOP = '''
def run(n, f, a, s):
    t0 = perf_counter_ns()
    for _ in range(n):
        {body}
    return perf_counter_ns() - t0
'''
def per_call(n, repeats, f, body, s=None):
    ns = {"perf_counter_ns": time.perf_counter_ns}
    exec(LOOP.format(body=body), ns)
    return min(ns["run"](n, f, 0, s) / n for _ in range(repeats))

def application(env, start_response):
    q = dict(p.split("=") for p in env.get("QUERY_STRING", "").split("&") if p)
    n, repeats = int(q.get("n", "200000")), int(q.get("r", "5"))
    if q.get("what") == "inc":
        uwsgi.sharedarea_write64(0, 0, 0) if q.get("reset") else None
        t0 = time.perf_counter()
        for _ in range(n):
            uwsgi.sharedarea_inc64(0, 0)
        out = {"secs": time.perf_counter() - t0, "total": uwsgi.sharedarea_read64(0, 0)}
    else:
        s8 = b"x" * 8
        out = {
            "empty loop": per_call(n, repeats, None, "pass"),
            "operator.index(1)  [trivial C call]": per_call(n, repeats, operator.index, "f(1)"),
            "sharedarea_read64(0, 128)": per_call(n, repeats, uwsgi.sharedarea_read64, "f(a, 128)"),
            "sharedarea_inc64(0, 128)": per_call(n, repeats, uwsgi.sharedarea_inc64, "f(a, 128)"),
            "sharedarea_write64(0, 128, 12345)": per_call(n, repeats, uwsgi.sharedarea_write64, "f(a, 128, 12345)"),
            "sharedarea_read(0, 128, 8)": per_call(n, repeats, uwsgi.sharedarea_read, "f(a, 128, 8)"),
            "sharedarea_write(0, 128, <8 bytes>)": per_call(n, repeats, uwsgi.sharedarea_write, "f(a, 128, s)", s8),
        }
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"""


def uwsgi_rows(n: int, repeats: int, n_inc: int) -> tuple[dict[str, float], tuple[float, int]] | None:
    if shutil.which("uwsgi") is None:
        return None
    probe = subprocess.run(["uwsgi", "--plugin", "python3", "--help"], capture_output=True, text=True)
    if probe.returncode != 0 or "wsgi-file" not in probe.stdout:
        return None
    with tempfile.TemporaryDirectory(prefix="sa-bench-uwsgi-") as d:
        app = os.path.join(d, "app.py")
        with open(app, "w") as f:
            f.write(UWSGI_APP)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "UWSGI"))}
        proc = subprocess.Popen(
            ["uwsgi", "--plugin", "python3", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app,
             "--sharedarea", "32", "--master", "--die-on-term", "--processes", "2", "--disable-logging",
             "--harakiri", "600"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

        def get(query: str, timeout: float = 600) -> Any:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/?{query}", timeout=timeout) as r:
                return json.loads(r.read())

        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    get("what=inc&n=1&reset=1", timeout=5)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.2)
            costs = get(f"n={n}&r={repeats}")
            # Two workers, one counter: two concurrent requests (the area was reset above,
            # then counted 1).
            import threading

            results: list[Any] = []
            threads = [threading.Thread(target=lambda: results.append(get(f"what=inc&n={n_inc}"))) for _ in range(2)]
            get("what=inc&n=0&reset=1")
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            secs = time.perf_counter() - t0
            total = max(r["total"] for r in results)
            return costs, (secs, total)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    opts = ap.parse_args()
    n, repeats, n_64k, n_inc = (1_000_000, 5, 20_000, 200_000)
    if opts.quick:
        n, repeats, n_64k, n_inc = (50_000, 3, 1_000, 20_000)

    print(f"Python {sys.version.split()[0]}, sharedarea (abi {sharedarea.abi_version()}), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; each row: the fastest of {repeats} runs, rows interleaved\n")

    rows = per_call_rows(n, repeats)
    base = dict(rows)
    loop = base["empty loop"]
    trivial = base["operator.index(1)  [trivial C call]"]
    pyo3 = base["empty PyO3 #[pyfunction] (2 args)"]
    print(f"{'per call (ns, in a for loop)':46s} {'ns':>7s} {'/ index(1)':>10s} {'net / net':>10s} {'/ PyO3 noop':>11s}")
    for name, ns in rows:
        print(f"{name:46s} {ns:7.1f} {ns / trivial:9.2f}x {(ns - loop) / (trivial - loop):9.2f}x {ns / pyo3:10.2f}x")
    print("  (net / net: both minus the empty loop)\n")

    print(f"{'64 KiB read (ns per read)':46s} {'ns':>9s} {'/ bytes copy':>12s}")
    rows64 = read_64k_rows(n_64k, repeats)
    copy = rows64[-1][1]
    for name, ns in rows64:
        print(f"{name:46s} {ns:9.0f} {ns / copy:11.3f}x")
    print()

    print(f"2 processes x {n_inc} increments of one counter   ns/increment   exact   / sharedarea")
    crow = contended_rows(n_inc)
    ours = crow[0][1]
    for name, ns, exact in crow:
        print(f"  {name:52s} {ns:8.1f}   {'yes' if exact else 'NO':5s} {ns / ours:8.2f}x")
    print()

    u = uwsgi_rows(max(n // 5, 10_000), repeats, n_inc)
    if u is None:
        print("real uWSGI: not measured (uWSGI's python3 plugin is not installed)")
        return
    costs, (secs, total) = u
    ut = costs["operator.index(1)  [trivial C call]"]
    print("real uWSGI 2.0 python3 plugin, in a worker (another interpreter, measured after the rows above:")
    print("compare the ratios to operator.index(1), each measured in its own interpreter)")
    print(f"{'':46s} {'ns':>7s} {'/ index(1)':>10s} {'ours':>10s} {'uWSGI/ours':>10s}")
    for name, ns in costs.items():
        mine = base.get(name)
        if mine is None or name in ("empty loop", "operator.index(1)  [trivial C call]"):
            print(f"{name:46s} {ns:7.1f} {ns / ut:9.2f}x")
            continue
        print(f"{name:46s} {ns:7.1f} {ns / ut:9.2f}x {mine / trivial:9.2f}x {(ns / ut) / (mine / trivial):9.2f}x")
    exact = total == 2 * n_inc
    print(f"  2 workers x {n_inc} uwsgi.sharedarea_inc64 on one counter: {secs * 1e9 / (2 * n_inc):.1f} ns/increment "
          f"(wall, including the HTTP requests), {'exact' if exact else f'NOT exact ({total})'}; "
          f"{secs * 1e9 / (2 * n_inc) / ours:.2f}x sharedarea")


if __name__ == "__main__":
    main()

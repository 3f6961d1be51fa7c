"""Blocking calls release the GIL and yield to signals; plain operations never
deadlock against a thread of the same process that holds the area's lock.

Every scenario that could hang runs in a subprocess with a timeout, so a
regression fails the test instead of hanging the run."""

from __future__ import annotations

import threading
import time
from typing import Any

import sharedarea

from conftest import run_python


def test_wait_releases_the_gil_so_other_threads_run(new_area: Any) -> None:
    a = new_area()
    done: list[float] = []

    def waiter() -> None:
        t0 = time.monotonic()
        sharedarea.sharedarea_wait(a, 0, 10)
        done.append(time.monotonic() - t0)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    # Pure-Python work in this thread: it can only run while the waiter does not hold the GIL.
    t0 = time.monotonic()
    spins = 0
    while time.monotonic() - t0 < 0.3:
        spins += 1
    assert spins > 10_000
    assert t.is_alive() and not done
    sharedarea.sharedarea_write(a, 0, b"wake")
    t.join(5)
    assert done and done[0] < 5


def test_wait_is_woken_by_a_write_in_another_process(new_area: Any) -> None:
    import multiprocessing

    a = new_area()

    def writer() -> None:
        time.sleep(0.3)
        sharedarea.sharedarea_write(a, 0, b"x")

    p = multiprocessing.get_context("fork").Process(target=writer)
    t0 = time.monotonic()
    p.start()
    sharedarea.sharedarea_wait(a, 0, 10)
    elapsed = time.monotonic() - t0
    p.join(10)
    assert 0.25 < elapsed < 5
    assert sharedarea.sharedarea_read(a, 0, 1) == b"x"


def test_ctrl_c_interrupts_wait_promptly_and_leaves_nothing_held() -> None:
    r = run_python(
        "import os, signal, threading, time, sharedarea\n"
        "a = sharedarea.init('1')\n"
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "t0 = time.monotonic()\n"
        "try:\n"
        "    sharedarea.sharedarea_wait(a, 0, 30)\n"
        "    print('returned')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', round(time.monotonic() - t0, 2))\n"
        "sharedarea.sharedarea_write(a, 0, b'ok')\n"
        "print(sharedarea._sharedarea._explicit_holds(), sharedarea.sharedarea_read(a, 0, 2).decode())\n",
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[0] == "interrupted" and float(words[1]) < 1.5, r.stdout
    assert words[2:] == ["0", "ok"]


def test_a_signal_handler_that_returns_lets_the_wait_go_on() -> None:
    r = run_python(
        "import os, signal, threading, time, sharedarea\n"
        "a = sharedarea.init('1')\n"
        "seen = []\n"
        "signal.signal(signal.SIGUSR1, lambda *_: seen.append(time.monotonic()))\n"
        "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()\n"
        "threading.Timer(0.6, sharedarea.sharedarea_update, (a,)).start()\n"
        "t0 = time.monotonic()\n"
        "sharedarea.sharedarea_wait(a, 0, 30)\n"
        "print(len(seen), round(seen[0] - t0, 2), round(time.monotonic() - t0, 2))\n",
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    n, handler_at, woke_at = r.stdout.split()
    assert n == "1" and float(handler_at) < 0.5 and 0.5 < float(woke_at) < 5, r.stdout


def test_a_timed_wait_that_is_interrupted_keeps_its_deadline() -> None:
    r = run_python(
        "import os, signal, threading, time, sharedarea\n"
        "a = sharedarea.init('1')\n"
        "signal.signal(signal.SIGUSR1, lambda *_: None)\n"
        "for d in (0.1, 0.2, 0.3): threading.Timer(d, os.kill, (os.getpid(), signal.SIGUSR1)).start()\n"
        "t0 = time.monotonic()\n"
        "try: sharedarea.sharedarea_wait(a, 0, 0.5)\n"
        "except sharedarea.TimedOutError as e: print(round(time.monotonic() - t0, 2), e)\n",
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    took = float(r.stdout.split()[0])
    assert 0.45 < took < 1.5 and "timed out after 0.5 s" in r.stdout, r.stdout


def test_an_operation_waits_for_a_thread_holding_the_lock_without_deadlock() -> None:
    # Thread A holds the write lock and needs the GIL to reach unlock; the main
    # thread's inc64 must release the GIL while it waits for the lock.
    r = run_python(
        "import threading, time, sharedarea\n"
        "a = sharedarea.init('1')\n"
        "held = threading.Event()\n"
        "def holder():\n"
        "    sharedarea.sharedarea_wlock(a)\n"
        "    held.set()\n"
        "    time.sleep(0.3)\n"
        "    sharedarea.sharedarea_write64(a, 0, 100)\n"
        "    x = sum(range(100000))\n"
        "    sharedarea.sharedarea_unlock(a)\n"
        "t = threading.Thread(target=holder); t.start(); held.wait()\n"
        "t0 = time.monotonic()\n"
        "print(sharedarea.sharedarea_inc64(a, 0), round(time.monotonic() - t0, 2))\n"
        "t.join()\n"
        "print(sharedarea._sharedarea._explicit_holds())\n",
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    value, waited, holds = r.stdout.split()
    assert value == "101" and 0.2 < float(waited) < 5 and holds == "0", r.stdout


def test_rlock_and_wlock_release_the_gil_while_blocked() -> None:
    # Another process holds the write lock; this process's rlock blocks in one
    # thread while the main thread keeps running Python code.
    r = run_python(
        "import os, threading, time, multiprocessing as mp, sharedarea\n"
        "a = sharedarea.init('1')\n"
        "ready = mp.get_context('fork').Event(); go = mp.get_context('fork').Event()\n"
        "def holder():\n"
        "    sharedarea.sharedarea_wlock(a); ready.set(); go.wait(10); sharedarea.sharedarea_unlock(a)\n"
        "p = mp.get_context('fork').Process(target=holder); p.start(); ready.wait(10)\n"
        "got = []\n"
        "def reader():\n"
        "    for f in (sharedarea.sharedarea_rlock, sharedarea.sharedarea_unlock, sharedarea.sharedarea_wlock, sharedarea.sharedarea_unlock): f(a)\n"
        "    got.append(1)\n"
        "t = threading.Thread(target=reader); t.start()\n"
        "t0 = time.monotonic(); spins = 0\n"
        "while time.monotonic() - t0 < 0.3: spins += 1\n"
        "print(spins > 10000, t.is_alive(), not got)\n"
        "go.set(); t.join(10); p.join(10)\n"
        "print(got == [1], p.exitcode)\n",
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True", "True", "0"], r.stdout


def test_a_wait_in_asyncio_to_thread_keeps_the_event_loop_running(new_area: Any) -> None:
    import asyncio

    a = new_area()

    async def main() -> int:
        waiter = asyncio.create_task(asyncio.to_thread(sharedarea.sharedarea_wait, a, 0, 10))
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert not waiter.done()
        sharedarea.sharedarea_update(a)
        await asyncio.wait_for(waiter, 5)
        return ticks

    assert asyncio.run(main()) == 20


def test_ctrl_c_given_to_another_thread_still_interrupts_wait_promptly() -> None:
    # The kernel may hand a process-directed signal to any thread; Python runs the
    # handler in the main thread only, which must notice it while it waits.
    r = run_python(
        "import signal, threading, time, sharedarea\n"
        "a = sharedarea.init('1')\n"
        "helper = threading.Thread(target=time.sleep, args=(3,), daemon=True); helper.start()\n"
        "threading.Timer(0.3, signal.pthread_kill, (helper.ident, signal.SIGINT)).start()\n"
        "t0 = time.monotonic()\n"
        "try:\n"
        "    sharedarea.sharedarea_wait(a, 0, 30)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', round(time.monotonic() - t0, 2))\n",
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    word, took = r.stdout.split()
    assert word == "interrupted" and float(took) < 1.5, r.stdout


HOLDER = (
    "import multiprocessing as mp, os, signal, threading, time, sharedarea\n"
    "a = sharedarea.init('1')\n"
    "ctx = mp.get_context('fork'); ready = ctx.Event(); go = ctx.Event()\n"
    "def holder():\n"
    "    sharedarea.sharedarea_wlock(a); ready.set(); go.wait(20); sharedarea.sharedarea_unlock(a)\n"
    "p = ctx.Process(target=holder); p.start(); ready.wait(10)\n"
)


def test_a_timed_lock_gives_up_naming_the_holder() -> None:
    r = run_python(
        HOLDER
        + "for f in (sharedarea.sharedarea_rlock, sharedarea.sharedarea_wlock):\n"
        "    for t in (0, 0.3):\n"
        "        t0 = time.monotonic()\n"
        "        try: f(a, t); print('took it')\n"
        "        except sharedarea.TimedOutError as e: print(round(time.monotonic() - t0, 1), e)\n"
        "print('holds', sharedarea._sharedarea._explicit_holds(), sharedarea.held(a))\n"
        "go.set(); p.join(10)\n"
        "sharedarea.sharedarea_wlock(a, 5); print('then', sharedarea.held(a)); sharedarea.sharedarea_unlock(a)\n",
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 6, r.stdout
    for line, t, f in zip(lines, ("0", "0.3", "0", "0.3"), ("rlock", "rlock", "wlock", "wlock")):
        took, rest = line.split(" ", 1)
        assert abs(float(took) - float(t)) < 0.5, line
        assert rest.startswith(f"sharedarea_{f}: area 0: timed out after {t} s waiting for the lock: "), line
        assert "pid" in rest or "process" in rest, line
        # the holder kept it out for the whole wait, not just the last slice
        waited = float(rest.split("(for at least ", 1)[1].split(" ", 1)[0])
        assert waited >= float(t) - 0.01, line
    assert lines[4:] == ["holds 0 0", "then 2"]


def test_ctrl_c_interrupts_a_blocked_wlock_promptly_holding_nothing() -> None:
    r = run_python(
        HOLDER
        + "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "t0 = time.monotonic()\n"
        "try: sharedarea.sharedarea_wlock(a); print('took it')\n"
        "except KeyboardInterrupt: print('interrupted', round(time.monotonic() - t0, 2))\n"
        "print(sharedarea._sharedarea._explicit_holds(), sharedarea.held(a))\n"
        "go.set(); p.join(10)\n"
        "with sharedarea.wlock_guard(a, 5): print(sharedarea.held(a))\n"
        "print(sharedarea.held(a))\n",
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    word, took = lines[0].split()
    assert word == "interrupted" and float(took) < 1.5, r.stdout
    assert lines[1:] == ["0 0", "2", "0"], r.stdout


def test_a_signal_handler_that_returns_lets_rlock_go_on() -> None:
    r = run_python(
        HOLDER
        + "seen = []\n"
        "signal.signal(signal.SIGUSR1, lambda *_: seen.append(1))\n"
        "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()\n"
        "threading.Timer(0.5, go.set).start()\n"
        "t0 = time.monotonic()\n"
        "sharedarea.sharedarea_rlock(a, 10)\n"
        "print(seen, round(time.monotonic() - t0, 1), sharedarea.held(a))\n"
        "sharedarea.sharedarea_unlock(a); p.join(10)\n",
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    seen, took, held = r.stdout.split()
    assert seen == "[1]" and 0.3 < float(took) < 5 and held == "1", r.stdout


def test_wait_async_returns_on_an_update_from_another_process_without_blocking_the_loop(new_area: Any) -> None:
    import asyncio
    import multiprocessing

    a = new_area()

    def writer() -> None:
        time.sleep(0.3)
        sharedarea.sharedarea_inc64(a, 0)

    async def main() -> tuple[int, float]:
        p = multiprocessing.get_context("fork").Process(target=writer)
        p.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        t0 = time.monotonic()
        await asyncio.gather(sharedarea.wait_async(a, 10), sharedarea.wait_async(a))  # two waiters, one watcher
        took = time.monotonic() - t0
        t.cancel()
        p.join(10)
        return ticks, took

    ticks, took = asyncio.run(main())
    assert 0.25 < took < 5 and ticks >= 10
    assert sharedarea.sharedarea_read64(a, 0) == 1


def test_wait_async_times_out_and_is_cancellable(new_area: Any) -> None:
    import asyncio

    a = new_area()

    async def main() -> None:
        t0 = time.monotonic()
        try:
            await sharedarea.wait_async(a, 0.2)
            raise AssertionError("no timeout")
        except sharedarea.TimedOutError as e:
            assert str(e) == f"wait_async: area {a}: timed out after 0.2 s" and isinstance(e, TimeoutError)
        assert 0.15 < time.monotonic() - t0 < 3
        task = asyncio.create_task(sharedarea.wait_async(a))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        from sharedarea import aio

        assert not aio._WATCHES  # the watcher went away with its last waiter
        try:
            await sharedarea.wait_async(10**6)
        except sharedarea.NoSuchAreaError as e:
            assert str(e).startswith("wait_async: area 1000000: no such area")

    asyncio.run(main())


def test_a_waiting_writer_is_not_starved_by_overlapping_readers() -> None:
    # Readers in other processes hold the read lock in overlapping turns for 3 s;
    # a writer waiting in wlock (in slices, for signals) must get in meanwhile.
    r = run_python(
        "import multiprocessing as mp, time, sharedarea\n"
        "a = sharedarea.init('1')\n"
        "ctx = mp.get_context('fork'); stop = ctx.Event()\n"
        "def reader(k):\n"
        "    time.sleep(0.1 * k)\n"
        "    while not stop.is_set():\n"
        "        sharedarea.sharedarea_rlock(a); time.sleep(0.5); sharedarea.sharedarea_unlock(a)\n"
        "ps = [ctx.Process(target=reader, args=(k,)) for k in range(6)]\n"
        "[p.start() for p in ps]; time.sleep(0.5)\n"
        "t0 = time.monotonic(); sharedarea.sharedarea_wlock(a, 10); took = time.monotonic() - t0\n"
        "sharedarea.sharedarea_unlock(a); stop.set(); [p.join(10) for p in ps]\n"
        "print(round(took, 2))\n",
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 3, r.stdout

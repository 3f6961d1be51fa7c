"""The same sharedarea calls under real uWSGI (as a WSGI app of its Python
plugin) and under this package (run as a script: it imports sharedarea.uwsgi
first). Prints/serves one JSON list: per call ["ok", value] or ["err", kind],
then the area's first 64 bytes."""

from __future__ import annotations

import json
from typing import Any

P = 16384  # --sharedarea 4 / UWSGI_SHAREDAREA=4

CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("sharedarea_write", (0, 0, b"hello world")),
    ("sharedarea_read", (0, 0, 11)),
    ("sharedarea_read", (0, 6, 5)),
    ("sharedarea_read", (0, P - 4)),
    ("sharedarea_read", (0, P - 4, 0)),
    ("sharedarea_read", (0, P - 1, 2)),
    ("sharedarea_read", (0, P, 1)),
    ("sharedarea_read", (0, -1, 1)),
    ("sharedarea_read", (1, 0, 1)),
    ("sharedarea_read", (0, 1.5, 1)),
    ("sharedarea_read", (0, None, 1)),
    ("sharedarea_read", (0, "0", 1)),
    ("sharedarea_write", (0, 20, "\u263a")),
    ("sharedarea_read", (0, 20, 3)),
    ("sharedarea_write", (0, P - 2, b"abc")),
    ("sharedarea_write", (0, P, b"x")),
    ("sharedarea_write", (0, -1, b"x")),
    ("sharedarea_write", (0, 0, None)),
    ("sharedarea_write", (0, 0, 5)),
    ("sharedarea_write64", (0, 24, 1234567890123)),
    ("sharedarea_read64", (0, 24)),
    ("sharedarea_read", (0, 24, 8)),
    ("sharedarea_write64", (0, 24, -5)),
    ("sharedarea_read64", (0, 24)),
    ("sharedarea_write64", (0, 24, 2**63 - 1)),
    ("sharedarea_inc64", (0, 24)),
    ("sharedarea_read64", (0, 24)),
    ("sharedarea_write64", (0, 24, 10)),
    ("sharedarea_inc64", (0, 24)),
    ("sharedarea_inc64", (0, 24, 5)),
    ("sharedarea_inc64", (0, 24, -3)),
    ("sharedarea_dec64", (0, 24)),
    ("sharedarea_dec64", (0, 24, 7)),
    ("sharedarea_read64", (0, 24)),
    ("sharedarea_inclong", (0, 24)),
    ("sharedarea_readlong", (0, 24)),
    ("sharedarea_writelong", (0, 24, 77)),
    ("sharedarea_readlong", (0, 24)),
    ("sharedarea_write32", (0, 32, 10)),
    ("sharedarea_inc32", (0, 32)),
    ("sharedarea_inc32", (0, 32, 5)),
    ("sharedarea_dec32", (0, 32, 2)),
    ("sharedarea_dec32", (0, 32)),
    ("sharedarea_read32", (0, 32)),
    ("sharedarea_write32", (0, 32, 0xFFFFFFFF)),
    ("sharedarea_read32", (0, 32)),
    ("sharedarea_write32", (0, 32, 2**32 + 5)),
    ("sharedarea_read32", (0, 32)),
    ("sharedarea_write16", (0, 36, 65535)),
    ("sharedarea_read16", (0, 36)),
    ("sharedarea_write16", (0, 36, 32768)),
    ("sharedarea_read16", (0, 36)),
    ("sharedarea_write8", (0, 40, 255)),
    ("sharedarea_read8", (0, 40)),
    ("sharedarea_write8", (0, 40, 128)),
    ("sharedarea_readbyte", (0, 40)),
    ("sharedarea_writebyte", (0, 41, 7)),
    ("sharedarea_read8", (0, 41)),
    ("sharedarea_read64", (0, P - 8)),
    ("sharedarea_read64", (0, P - 7)),
    ("sharedarea_write64", (0, P - 7, 1)),
    ("sharedarea_read64", (0, -1)),
    ("sharedarea_read64", (1, 0)),
    ("sharedarea_inc64", (1, 0)),
    ("sharedarea_inc64", (0, P - 8, 0)),
    ("sharedarea_inc64", (0, P, 0)),
    ("sharedarea_read64", (0, 1.0)),
    ("sharedarea_rlock", (0,)),
    ("sharedarea_read32", (0, 32)),
    ("sharedarea_unlock", (0,)),
    ("sharedarea_rlock", (9,)),
    ("sharedarea_write32", (0, 44, 1)),
    ("sharedarea_read32", (0, 44)),
    # Documented differences (test_uwsgi_differential.EXPECTED), outside the compared first 64 bytes.
    ("sharedarea_write8", (0, 100, -1)),
    ("sharedarea_write64", (0, 104, 2**63)),
    ("sharedarea_inc64", (0, 112, 2**63)),
    ("sharedarea_read", (0, 2**64, 1)),
    ("sharedarea_read64", (2**32, 0)),
]


def kind(e: BaseException) -> str:
    for cls in (TypeError, OverflowError, ValueError):
        if isinstance(e, cls):
            return cls.__name__
    return type(e).__name__


def run() -> list[Any]:
    import uwsgi  # uWSGI's own, or the one sharedarea.uwsgi installed

    out: list[Any] = []
    for name, args in CALLS:
        try:
            r = getattr(uwsgi, name)(*args)
            out.append(["ok", r.hex() if isinstance(r, bytes) else r])
        except Exception as e:  # noqa: BLE001 - recording every outcome
            out.append(["err", kind(e)])
    mv = uwsgi.sharedarea_memoryview(0)
    out.append(["memoryview", len(mv), mv.readonly, mv.format])
    out.append(["area", uwsgi.sharedarea_read(0, 0, 64).hex()])
    return out


def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps(run()).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    import sharedarea.uwsgi  # noqa: F401

    print(json.dumps(run()))

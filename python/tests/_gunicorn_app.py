"""A WSGI app for the gunicorn test: every request increments a shared counter
and answers with its new value. The area comes from SA_SPEC (a name= spec works
without --preload; an anonymous one needs --preload)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import sharedarea

AREA = sharedarea.init(os.environ["SA_SPEC"])


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    n = sharedarea.sharedarea_inc64(AREA, 0)
    body = f"{n}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

"""``import sharedarea.uwsgi`` makes ``import uwsgi`` work outside uWSGI.

It installs this package's ``sharedarea_*`` functions as a module named
``uwsgi`` (see :func:`sharedarea.install_uwsgi_names`); inside a real uWSGI
worker it changes nothing. The module object is also importable as
``sharedarea.uwsgi.module``.
"""

from __future__ import annotations

import types

from . import install_uwsgi_names

module: types.ModuleType = install_uwsgi_names()

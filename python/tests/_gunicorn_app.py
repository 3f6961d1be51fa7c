"""The README's gunicorn example, as written there: every request increments a
shared counter and answers with its new value. The area comes from
UWSGI_SHAREDAREA (a name= spec works without --preload; an anonymous one needs
--preload)."""

# app.py -- the same calls as under uWSGI's --sharedarea
import sharedarea.uwsgi  # makes `import uwsgi` work outside uWSGI (inside it: changes nothing)
import uwsgi


def app(environ, start_response):  # type: ignore[no-untyped-def]
    n = uwsgi.sharedarea_inc64(0, 0)  # atomic across every worker; returns the new value
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"request {n}\n".encode()]

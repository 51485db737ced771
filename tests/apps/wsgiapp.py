"""A bare WSGI app (no framework) for interpreters pytracer cannot read, such as CPython 3.7:
their spans must still be exact at the wire level."""

import os


def application(environ, start_response):
    body = b"hello" if environ["PATH_INFO"] == "/hello" else b"not found"
    status = "200 OK" if body == b"hello" else "404 Not Found"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _mark_ready():
    # Same readiness marker as testapp.py.
    ready_dir = os.environ.get("PYTRACER_TESTAPP_READY_DIR")
    if ready_dir:
        with open(os.path.join(ready_dir, str(os.getpid())), "w"):
            pass


_mark_ready()

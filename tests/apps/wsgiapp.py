"""A bare WSGI app (no framework) for interpreters pytracer cannot read, such as CPython 3.7:
their spans must still be exact at the wire level."""

from testready import mark_ready


def application(environ, start_response):
    body = b"hello" if environ["PATH_INFO"] == "/hello" else b"not found"
    status = "200 OK" if body == b"hello" else "404 Not Found"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


mark_ready()

"""Flask app served by Gunicorn in pytracer's end-to-end tests.

Every response body is fixed and small so tests can assert exact bytes and
sizes; /pid tells a test which worker served a request.
"""

import gc
import json
import os
import threading
import time

from flask import Flask, Response, request
from testready import mark_ready

app = Flask(__name__)

# Only explicit gc.collect() calls collect, so the runtime-metrics tests can predict every count.
gc.set_threshold(1_000_000, 10, 10)


mark_ready()


def _text(body, status=200):
    return Response(body, status=status, mimetype="text/plain")


@app.get("/hello")
def hello():
    return _text("hello")


@app.get("/users/<int:user_id>")
def user(user_id):
    # json.dumps rather than jsonify: jsonify's separators/newline vary by
    # Flask config, and tests compare the exact body bytes.
    return Response(json.dumps({"id": user_id}), mimetype="application/json")


@app.post("/items")
def create_item():
    body = request.get_data()
    return _text(f"created {len(body)}", status=201)


@app.put("/items/<int:item_id>")
def update_item(item_id):
    request.get_data()
    return _text(f"updated {item_id}")


@app.delete("/items/<int:item_id>")
def delete_item(item_id):
    return _text(f"deleted {item_id}")


@app.get("/fail")
def fail():
    # Returned, not raised: tests want a 500 whose body they know, without
    # a traceback in the Gunicorn log.
    return _text("boom", status=500)


@app.get("/sleep/<int:ms>")
def sleep(ms):
    time.sleep(ms / 1000.0)
    return _text(f"slept {ms}")


@app.post("/upload")
def upload():
    body = request.get_data()
    return _text(str(len(body)))


@app.get("/big/<int:n>")
def big(n):
    return Response(b"x" * n, mimetype="application/octet-stream")


@app.get("/pid")
def pid():
    return _text(str(os.getpid()))


@app.get("/debug/runtime")
def debug_runtime():
    """What the process says of itself, for comparison with what pytracer reads from outside."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    body = {
        "pid": os.getpid(),
        "gc": gc.get_stats(),
        "threads": threading.active_count(),
        "rusage": {"utime": ru.ru_utime, "stime": ru.ru_stime, "maxrss_kib": ru.ru_maxrss},
    }
    return Response(json.dumps(body), mimetype="application/json")


@app.get("/gc/collect/<int:generation>")
def collect(generation):
    gc.collect(generation)
    return _text(str(os.getpid()))



@app.get("/stream/<int:n>")
def stream(n):
    """A response without Content-Length: Gunicorn sends it chunked."""

    def chunks():
        for i in range(n):
            yield f"chunk-{i}\n".encode()

    return Response(chunks(), mimetype="text/plain")

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


# The fault suite's routes (tests/tests/faults.rs).


@app.get("/abort")
def crash():
    """Crashes the worker mid-request, as a C extension's fatal error would: no response."""
    import resource

    # No core file in the app's directory.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.abort()


@app.get("/fork/<int:n>")
def fork_children(n):
    """Forks n children that exit at once, each reaped before the next: short-lived children."""
    for _ in range(n):
        child = os.fork()
        if child == 0:
            os._exit(0)
        os.waitpid(child, 0)
    return _text(str(n))


@app.get("/threads/<int:n>")
def hold_threads(n):
    """Holds n idle threads at once, then lets them end one at a time (woken all at once, 16,500
    threads contend for the GIL: one such run here did not answer within 100 s); says how many
    started."""
    started = []
    old = threading.stack_size(64 * 1024)
    try:
        for _ in range(n):
            gate = threading.Lock()
            gate.acquire()
            t = threading.Thread(target=gate.acquire, daemon=True)
            try:
                t.start()
            except RuntimeError:
                break
            started.append((t, gate))
    finally:
        threading.stack_size(old)
        for t, gate in started:
            gate.release()
            t.join()
    return _text(str(len(started)))


@app.get("/conns/<int:n>/<int:hold_ms>")
def hold_connections(n, hold_ms):
    """Holds n connected loopback TCP pairs at once (n connects and n accepts in this process)
    for hold_ms, then resets them (no TIME_WAIT left behind). Says how many pairs were made, and
    when (CLOCK_MONOTONIC ns) the last was made and the first was let go."""
    import socket
    import struct

    listeners = [socket.create_server(("127.0.0.1", 0), backlog=1024) for _ in range(2)]
    held = []
    try:
        for i in range(n):
            listener = listeners[i % 2]
            c = socket.socket()
            c.connect(listener.getsockname())
            s, _ = listener.accept()
            held.append((c, s))
    except OSError:
        pass
    made = time.monotonic_ns()
    time.sleep(hold_ms / 1000.0)
    released = time.monotonic_ns()
    reset = struct.pack("ii", 1, 0)
    for c, s in held:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
        s.close()
        c.close()
    for listener in listeners:
        listener.close()
    return _text(f"{len(held)} {made} {released}")

"""Flask app for the CPU profile tests: each route spends its time in one known function.

/hash burns CPU in hash_loop, on the line marked `# hot: hash_loop`; /sort in sort_rows; /io
waits on I/O (a sleep), so it should get almost no CPU samples. The tests find lines by their
markers, so edits above them do not break the expected numbers.
"""

import time

from flask import Flask, Response
from testready import mark_ready

app = Flask(__name__)

mark_ready()


def hash_loop(n):
    h = 0
    for i in range(n):
        h = (h * 31 + i * i) % 1000003 ^ (h >> 3)  # hot: hash_loop
    return h


def sort_rows(n):
    rows = [((i * 7919) % n, str(i)) for i in range(n)]
    rows.sort(key=lambda r: (r[0], r[1]))
    result = rows[0][0] + rows[-1][0]
    # Freed here rather than when the frame is popped, which counts in the caller's line.
    del rows
    return result


def wait_io(seconds):
    time.sleep(seconds)
    return 0


@app.get("/hash")
def hash_view():
    return Response(str(hash_loop(400_000)), mimetype="text/plain")


@app.get("/sort")
def sort_view():
    return Response(str(sort_rows(80_000)), mimetype="text/plain")


@app.get("/io")
def io_view():
    return Response(str(wait_io(0.15)), mimetype="text/plain")

"""Flask app served by Gunicorn in pytracer's benchmark (configs A-E).

Routes:
  /              -> "hello" (text)
  /users/<id>    -> small JSON {"id": id, "name": "user<id>"}
  /work          -> ~2 ms of pure-Python CPU work (sum of squares), short text

The /work loop is a fixed iteration count, not a timer: WORK_ITERATIONS was
calibrated to ~2.0 ms per call on the 2-core bench machine (CPython 3.11.7,
median of 200 calls; see bench/README-agents.md). The result is returned so
the loop cannot be skipped.
"""

import json

from flask import Flask, Response

app = Flask(__name__)

# ~30 ns per iteration on the bench machine -> 66_000 iterations ~= 2.0 ms.
WORK_ITERATIONS = 66_000


def _work(n=WORK_ITERATIONS):
    s = 0
    for i in range(n):
        s += i * i
    return s


@app.get("/")
def hello():
    return Response("hello", mimetype="text/plain")


@app.get("/users/<int:id>")
def user(id):
    body = json.dumps({"id": id, "name": f"user{id}"})
    return Response(body, mimetype="application/json")


@app.get("/work")
def work():
    s = _work()
    return Response(f"work {s % 1000}", mimetype="text/plain")

"""A service whose database connections are opened once, at boot, and kept: two PostgreSQL
connections (psycopg 3), one over TCP and one over the server's unix socket, and a Redis one
(redis-py's pool, opened by a PING), as a connection pool would, and a keep-alive HTTP
connection to another service. The restart test starts the agent after them, so the agent never
sees their start-up: it has to adopt them. PYTRACER_PG_DSN, PYTRACER_PG_UNIX_DSN,
PYTRACER_REDIS_URL and PYTRACER_BACKEND_PORT come from the harness.
"""

import http.client
import os
import threading

import psycopg
import redis
from flask import Flask
from testready import mark_ready

app = Flask(__name__)

PG = psycopg.connect(os.environ["PYTRACER_PG_DSN"], autocommit=True)
PG_UNIX = psycopg.connect(os.environ["PYTRACER_PG_UNIX_DSN"], autocommit=True)
REDIS = redis.Redis.from_url(os.environ["PYTRACER_REDIS_URL"])
REDIS.ping()
HTTP = http.client.HTTPConnection("127.0.0.1", int(os.environ["PYTRACER_BACKEND_PORT"]))
HTTP.request("GET", "/hello")
HTTP.getresponse().read()
# One connection each, shared by a gthread worker's threads one request at a time.
LOCK = threading.Lock()

mark_ready()


@app.get("/pooled/<int:n>")
def pooled(n):
    with LOCK:
        # No parameters and prepare=False: a simple-protocol Query, whose text is on the wire at
        # every call (a statement prepared before the agent attached would have none).
        name = PG.execute("SELECT name FROM items WHERE id = 1", prepare=False).fetchone()[0]
        PG_UNIX.execute("SELECT count(*) FROM items", prepare=False).fetchone()
        REDIS.get("pooled")
        HTTP.request("GET", f"/users/{n}")
        HTTP.getresponse().read()
    return f"{n} {name}"
